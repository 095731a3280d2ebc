//! Owner use cases (XEP-0060 §8): create, configure, delete, purge, subscription requests,
//! subscriptions and affiliations management.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use jid::{BareJid, Jid};

use super::publisher::{create_node, evict_over};
use super::subscriber::select_subscription;
use super::{
    Effects, Service, SubscriptionInfo, find_node, fresh_id, info, persist_subscription,
    persist_unsubscription, revoke_denied, send_last_on_subscribe, tell_owners, tell_subscriber,
};
use crate::access::{self, AccessResolver, Action, Affiliation};
use crate::config::{ConfigField, CreatePolicy, NodeConfig, ServiceConfig};
use crate::effects::{AuthorizationRequest, Event, Outcome, StoreOp};
use crate::error::{Limit, PubsubError};
use crate::node::{Held, Node};
use crate::state::{Tx, Undo};
use crate::subscription::{Subscription, SubscriptionOptions, SubscriptionState};
use crate::{NodeId, SubId};

/// A node creation request (XEP-0060 §8.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateRequest {
    /// The NodeID; `None` asks for an instant node with a generated id.
    pub node: Option<NodeId>,
    /// Create-and-configure fields, applied over the service defaults.
    pub config: Vec<ConfigField>,
    /// Affiliations to grant at creation besides the creator's ownership (Verona accepts
    /// `pubsub#publisher` at create time this way). An entry for the creator is ignored.
    pub affiliations: BTreeMap<BareJid, Affiliation>,
    /// Subscribes the creator's bare JID too: the seed's one-to-one node (XEP-0207 §6,
    /// Ex. 18), where the creator is a party of the conversation and gets every message.
    pub subscribe_creator: bool,
}

/// One owner change to a subscription (XEP-0060 §8.8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionChange {
    /// The subscribed JID.
    pub jid: Jid,
    /// Which of its subscriptions; needed when it holds several.
    pub subid: Option<SubId>,
    /// `true` for `subscribed` (approves a pending subscription, or subscribes the JID),
    /// `false` for `none` (removes it). Owners cannot set `pending` or `unconfigured`; the
    /// protocol layer answers those values itself.
    pub subscribed: bool,
}

impl Service {
    /// Creates a node (XEP-0060 §8.1); the creator becomes its owner. The value is the NodeID
    /// (generated for an instant node).
    pub fn create(
        &mut self,
        actor: &Jid,
        request: CreateRequest,
    ) -> Result<Outcome<NodeId>, PubsubError> {
        let creator = actor.to_bare();
        self.check_may_create(&creator)?;
        if let Some(id) = &request.node {
            if id.is_empty() {
                return Err(PubsubError::NodeIdRequired);
            }
            if self.state.nodes.contains_key(id) {
                return Err(PubsubError::NodeExists);
            }
        }
        let mut config = self.config.node_defaults.clone();
        self.config.apply_fields(&mut config, &request.config)?;
        let node_id = match request.node {
            Some(id) => id,
            None => {
                let nodes = &self.state.nodes;
                fresh_id(self.env.as_mut(), |id| nodes.contains_key(id))
            }
        };

        self.check_owners_granted(actor, request.affiliations.iter())?;
        let subscription = if request.subscribe_creator {
            if self.state.held_count(&creator) >= self.config.limits.max_subscriptions_per_jid {
                return Err(PubsubError::PolicyViolation(Limit::TooManySubscriptions));
            }
            let subid = SubId::from(fresh_id(self.env.as_mut(), |_| false));
            let sub = Subscription {
                jid: Jid::from(creator.clone()),
                state: SubscriptionState::Subscribed,
                options: SubscriptionOptions::default(),
            };
            Some((subid, sub))
        } else {
            None
        };
        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        create_node(&mut tx, &mut fx, &node_id, config, actor);
        for (jid, affiliation) in &request.affiliations {
            if *jid != creator && *affiliation != Affiliation::None {
                tx.set_affiliation(&node_id, jid, *affiliation);
                fx.persist(StoreOp::AffiliationSet {
                    node: node_id.clone(),
                    jid: jid.clone(),
                    affiliation: *affiliation,
                });
            }
        }
        if let Some((subid, sub)) = subscription {
            tx.put_subscription(&node_id, &creator, &subid, Some(sub.clone()));
            persist_subscription(&mut fx, &node_id, &subid, &sub);
        }
        Ok(fx.finish(node_id, tx.commit()))
    }

    /// The configuration new nodes get (XEP-0060 §8.3).
    pub fn default_config(&self) -> &NodeConfig {
        &self.config.node_defaults
    }

    /// A node's configuration, for its owners (XEP-0060 §8.2).
    pub fn configuration(&self, actor: &Jid, node_id: &str) -> Result<NodeConfig, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        self.may_manage(node, actor, Action::Configure)?;
        Ok(node.config.clone())
    }

    /// Changes a node's configuration (XEP-0060 §8.2); only the given fields change.
    ///
    /// Consequences: a smaller `max_items` retracts the oldest items; turning `persist_items`
    /// off removes the items from storage (they stay current in memory) and turning it on
    /// stores them; a new access model or roster group list removes the subscriptions it no
    /// longer allows; `notify_config` sends the change.
    pub fn configure(
        &mut self,
        resolver: &dyn AccessResolver,
        actor: &Jid,
        node_id: &str,
        fields: &[ConfigField],
    ) -> Result<Outcome, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        self.may_manage(node, actor, Action::Configure)?;
        let old = node.config.clone();
        let mut config = old.clone();
        self.config.apply_fields(&mut config, fields)?;
        let mut fx = Effects::default();
        if config == old {
            return Ok(fx.finish((), Undo::unchanged()));
        }
        let subscribers: BTreeSet<BareJid> =
            node.subscriptions_by_bare().map(Held::bare_jid).collect();

        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        tx.set_config(node_id, config.clone());
        fx.persist(StoreOp::NodeConfigured {
            node: node_id.to_owned(),
            config: config.clone(),
        });
        let capacity = config.max_items.capacity(&self.config.limits);
        let max_bytes = self.config.limits.max_node_bytes;
        let evicted = evict_over(
            &mut tx,
            &mut fx,
            node_id,
            capacity,
            max_bytes,
            old.persist_items,
        );
        if old.persist_items && !config.persist_items {
            fx.persist(StoreOp::ItemsPurged {
                node: node_id.to_owned(),
            });
        }
        if !old.persist_items && config.persist_items {
            for item in tx
                .node(node_id)
                .into_iter()
                .flat_map(|node| node.items.iter())
            {
                fx.persist(StoreOp::ItemStored {
                    node: node_id.to_owned(),
                    item: item.clone(),
                });
            }
        }
        if old.access_model != config.access_model
            || old.roster_groups_allowed != config.roster_groups_allowed
        {
            for bare in &subscribers {
                revoke_denied(&mut tx, &self.config, resolver, node_id, bare, &mut fx);
            }
        }
        if config.deliver_notifications
            && let Some(recipients) = tx.recipients(node_id)
        {
            if config.notify_retract && !evicted.is_empty() {
                let event = Event::Retract { ids: evicted };
                fx.notify(&config, node_id, event, recipients.clone());
            }
            if config.notify_config {
                let event = Event::Configuration {
                    config: config.deliver_payloads.then(|| Box::new(config.clone())),
                };
                fx.notify(&config, node_id, event, recipients);
            }
        }
        Ok(fx.finish((), tx.commit()))
    }

    /// Deletes a node (XEP-0060 §8.4) with its items, affiliations and subscriptions. Every
    /// subscriber, pending ones included, is told if `notify_delete` is set.
    pub fn delete(
        &mut self,
        actor: &Jid,
        node_id: &str,
        redirect: Option<String>,
    ) -> Result<Outcome, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        self.may_manage(node, actor, Action::Delete)?;
        let config = node.config.clone();
        let recipients = node.all_subscribers();

        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        tx.remove_node(node_id);
        fx.persist(StoreOp::NodeDeleted {
            node: node_id.to_owned(),
        });
        if config.notify_delete && config.deliver_notifications {
            fx.notify(&config, node_id, Event::Delete { redirect }, recipients);
        }
        Ok(fx.finish((), tx.commit()))
    }

    /// Removes every item of a node (XEP-0060 §8.5); one purge notification if
    /// `notify_retract` is set.
    pub fn purge(&mut self, actor: &Jid, node_id: &str) -> Result<Outcome, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        self.may_manage(node, actor, Action::Purge)?;
        let config = node.config.clone();

        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        tx.clear_items(node_id);
        if config.persist_items {
            fx.persist(StoreOp::ItemsPurged {
                node: node_id.to_owned(),
            });
        }
        if config.notify_retract
            && config.deliver_notifications
            && let Some(recipients) = tx.recipients(node_id)
        {
            fx.notify(&config, node_id, Event::Purge, recipients);
        }
        Ok(fx.finish((), tx.commit()))
    }

    /// The approved (`subscribed` and `unconfigured`) subscriptions of a node, for its owners
    /// (XEP-0060 §8.8.1).
    pub fn node_subscriptions(
        &self,
        actor: &Jid,
        node_id: &str,
    ) -> Result<Vec<SubscriptionInfo>, PubsubError> {
        self.node_subscriptions_where(actor, node_id, SubscriptionState::is_approved)
    }

    /// Every subscription of a node, pending ones too, for its owners' list (XEP-0060 §8.8.1).
    pub fn listed_subscriptions(
        &self,
        actor: &Jid,
        node_id: &str,
    ) -> Result<Vec<SubscriptionInfo>, PubsubError> {
        self.node_subscriptions_where(actor, node_id, |_| true)
    }

    /// The pending subscriptions of a node, for its owners (XEP-0060 §8.7).
    pub fn pending_subscriptions(
        &self,
        actor: &Jid,
        node_id: &str,
    ) -> Result<Vec<SubscriptionInfo>, PubsubError> {
        self.node_subscriptions_where(actor, node_id, |state| state == SubscriptionState::Pending)
    }

    /// The authorization requests still waiting for `owner`, across its nodes (to send again
    /// when the owner logs in).
    pub fn pending_for_owner(&self, owner: &BareJid) -> Vec<AuthorizationRequest> {
        let owned = self
            .state
            .affiliations_of(owner)
            .filter(|(_, affiliation)| *affiliation == Affiliation::Owner)
            .filter_map(|(node_id, _)| self.state.nodes.get(node_id));
        let mut requests = Vec::new();
        for node in owned {
            for (subid, sub) in node.subscriptions() {
                if sub.state == SubscriptionState::Pending {
                    requests.push(AuthorizationRequest {
                        node: node.id.clone(),
                        subscriber: sub.jid.clone(),
                        subid: subid.clone(),
                        owners: node.owners().cloned().collect(),
                    });
                }
            }
        }
        requests
    }

    /// An owner's answer to an authorization request (XEP-0060 §8.6): `allow` makes the
    /// pending subscription active (the subscriber is told and gets the last items), denying
    /// removes it (the subscriber is told). Answering a request already answered changes
    /// nothing ("first approval wins").
    pub fn authorize(
        &mut self,
        actor: &Jid,
        node_id: &str,
        jid: &Jid,
        subid: Option<&str>,
        allow: bool,
    ) -> Result<Outcome<SubscriptionInfo>, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        self.may_manage(node, actor, Action::ManageSubscriptions)?;
        let pending = node
            .subscriptions_of_jid(jid)
            .find(|(_, sub)| sub.state == SubscriptionState::Pending)
            .map(|(id, sub)| (id.clone(), sub.clone()));
        let (subid, sub) = match (subid, pending) {
            (None, Some(pending)) => pending,
            (subid, _) => select_subscription(node, jid, subid)?,
        };
        let mut fx = Effects::default();
        if sub.state != SubscriptionState::Pending {
            let value = info(node_id, &subid, &sub);
            return Ok(fx.finish(value, Undo::unchanged()));
        }
        let now = self.env.now();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        let value = if allow {
            approve(&mut tx, &mut fx, &self.config, now, node_id, &subid, sub)
        } else {
            remove_by_owner(&mut tx, &mut fx, node_id, &subid, sub)
        };
        Ok(fx.finish(value, tx.commit()))
    }

    /// Owner changes to subscriptions (XEP-0060 §8.8.2), all or nothing: on error no change is
    /// kept. Subscribing a JID that has no subscription checks that the node admits it.
    pub fn set_subscriptions(
        &mut self,
        resolver: &dyn AccessResolver,
        actor: &Jid,
        node_id: &str,
        changes: &[SubscriptionChange],
    ) -> Result<Outcome<Vec<SubscriptionInfo>>, PubsubError> {
        let outcome = self.set_subscriptions_each(resolver, actor, node_id, changes)?;
        if let Some(error) = outcome
            .value
            .iter()
            .find_map(|result| result.as_ref().err())
        {
            let error = error.clone();
            self.undo(outcome.undo)
                .expect("undone right after it was made");
            return Err(error);
        }
        Ok(outcome.map(|results| results.into_iter().flatten().collect()))
    }

    /// Owner changes to subscriptions (XEP-0060 §8.8.2), each kept or refused on its own: the
    /// value holds one result per change, and what is not refused is done (§8.8.2.4).
    pub fn set_subscriptions_each(
        &mut self,
        resolver: &dyn AccessResolver,
        actor: &Jid,
        node_id: &str,
        changes: &[SubscriptionChange],
    ) -> Result<Outcome<Vec<Result<SubscriptionInfo, PubsubError>>>, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        self.may_manage(node, actor, Action::ManageSubscriptions)?;
        let now = self.env.now();
        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        let mut value = Vec::with_capacity(changes.len());
        for change in changes {
            // Each change validates before it mutates: a refused one leaves nothing behind.
            let Some(node) = tx.node(node_id) else {
                break;
            };
            let selected = select_subscription(node, &change.jid, change.subid.as_deref());
            value.push(match (change.subscribed, selected) {
                (true, Ok((subid, sub))) if sub.state == SubscriptionState::Subscribed => {
                    Ok(info(node_id, &subid, &sub))
                }
                (true, Ok((subid, sub))) => Ok(approve(
                    &mut tx,
                    &mut fx,
                    &self.config,
                    now,
                    node_id,
                    &subid,
                    sub,
                )),
                (true, Err(PubsubError::NotSubscribed))
                    if !self.config.owners_subscribe_others
                        && !invited(node, actor, &change.jid) =>
                {
                    Err(PubsubError::Forbidden)
                }
                (true, Err(PubsubError::NotSubscribed)) if change.subid.is_none() => {
                    let subid = SubId::from(fresh_id(self.env.as_mut(), |id| node.has_subid(id)));
                    subscribe_by_owner(
                        &mut tx,
                        &mut fx,
                        &self.config,
                        resolver,
                        now,
                        node_id,
                        subid,
                        &change.jid,
                    )
                }
                (false, Ok((subid, sub))) => {
                    Ok(remove_by_owner(&mut tx, &mut fx, node_id, &subid, sub))
                }
                (_, Err(error)) => Err(error),
            });
        }
        Ok(fx.finish(value, tx.commit()))
    }

    /// A node's affiliations, for its owners (XEP-0060 §8.9.1).
    pub fn node_affiliations(
        &self,
        actor: &Jid,
        node_id: &str,
    ) -> Result<Vec<(BareJid, Affiliation)>, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        self.may_manage(node, actor, Action::ManageAffiliations)?;
        Ok(node
            .affiliations()
            .map(|(jid, affiliation)| (jid.clone(), affiliation))
            .collect())
    }

    /// Owner changes to affiliations (XEP-0060 §8.9.2), all or nothing; `Affiliation::None`
    /// removes one. The node must keep an owner ([`PubsubError::LastOwner`]). Consequences
    /// follow XEP-0060 §8.7: pending subscriptions of new owners and publishers are approved;
    /// subscriptions the new affiliation no longer allows (outcast, off the whitelist) are
    /// removed, their subscribers told.
    pub fn set_affiliations(
        &mut self,
        resolver: &dyn AccessResolver,
        actor: &Jid,
        node_id: &str,
        changes: &BTreeMap<BareJid, Affiliation>,
    ) -> Result<Outcome, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        self.may_manage(node, actor, Action::ManageAffiliations)?;
        self.check_owners_granted(
            actor,
            changes
                .iter()
                .filter(|(jid, _)| node.affiliation(jid) != Affiliation::Owner),
        )?;
        let kept_owners = node
            .owners()
            .filter(|owner| !changes.contains_key(*owner))
            .count();
        let new_owners = changes
            .values()
            .filter(|affiliation| **affiliation == Affiliation::Owner)
            .count();
        if kept_owners + new_owners == 0 {
            return Err(PubsubError::LastOwner);
        }
        let added = changes
            .iter()
            .filter(|(jid, affiliation)| {
                **affiliation != Affiliation::None && node.affiliation(jid) == Affiliation::None
            })
            .count();
        let removed = changes
            .iter()
            .filter(|(jid, affiliation)| {
                **affiliation == Affiliation::None && node.affiliation(jid) != Affiliation::None
            })
            .count();
        let held = node.affiliation_count();
        if added > removed && held + added - removed > self.config.limits.max_affiliations_per_node
        {
            return Err(PubsubError::PolicyViolation(Limit::TooManyAffiliations));
        }

        let now = self.env.now();
        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        for (jid, affiliation) in changes {
            if tx.set_affiliation(node_id, jid, *affiliation) == *affiliation {
                continue;
            }
            fx.persist(StoreOp::AffiliationSet {
                node: node_id.to_owned(),
                jid: jid.clone(),
                affiliation: *affiliation,
            });
            if matches!(affiliation, Affiliation::Owner | Affiliation::Publisher) {
                let pending: Vec<(SubId, Subscription)> = tx
                    .node(node_id)
                    .and_then(|node| node.subscriptions_of(jid))
                    .into_iter()
                    .flat_map(Held::iter)
                    .filter(|(_, sub)| sub.state == SubscriptionState::Pending)
                    .map(|(subid, sub)| (subid.clone(), sub.clone()))
                    .collect();
                for (subid, sub) in pending {
                    approve(&mut tx, &mut fx, &self.config, now, node_id, &subid, sub);
                }
            }
            // An outcast domain shuts out its accounts' subscriptions too.
            let mut denied = vec![jid.clone()];
            if jid.node().is_none() && *affiliation == Affiliation::Outcast {
                let subscribers: BTreeSet<BareJid> = tx
                    .node(node_id)
                    .into_iter()
                    .flat_map(|node| node.subscriptions_by_bare())
                    .map(Held::bare_jid)
                    .filter(|bare| bare.node().is_some() && bare.domain() == jid.domain())
                    .collect();
                denied.extend(subscribers);
            }
            for bare in &denied {
                revoke_denied(&mut tx, &self.config, resolver, node_id, bare, &mut fx);
            }
        }
        Ok(fx.finish((), tx.commit()))
    }

    /// Re-evaluates `contact`'s subscriptions after its presence subscription or roster
    /// groups changed (XEP-0163 §8.1), removing those the access models no longer allow. The
    /// value lists the removed subscriptions.
    pub fn recheck_access(
        &mut self,
        resolver: &dyn AccessResolver,
        contact: &BareJid,
    ) -> Outcome<Vec<SubscriptionInfo>> {
        let nodes: BTreeSet<NodeId> = self
            .state
            .held_by(contact)
            .map(|(node_id, _, _)| node_id.clone())
            .collect();
        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        let mut removed = Vec::new();
        for node_id in nodes {
            let revoked =
                revoke_denied(&mut tx, &self.config, resolver, &node_id, contact, &mut fx);
            removed.extend(revoked);
        }
        fx.finish(removed, tx.commit())
    }

    /// Forgets a deleted account: its subscriptions and affiliations on every node end, and
    /// the nodes it alone owned are deleted (without notifications: the account is gone), so
    /// that whoever registers the name next inherits nothing. The value lists the deleted
    /// nodes.
    pub fn forget(&mut self, account: &BareJid) -> Outcome<Vec<NodeId>> {
        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        let node_ids: Vec<NodeId> = tx.state().nodes.keys().cloned().collect();
        let mut deleted = Vec::new();
        for node_id in node_ids {
            let Some(node) = tx.node(&node_id) else {
                continue;
            };
            let sole_owner = node.affiliation(account) == Affiliation::Owner
                && node.owners().all(|owner| owner == account);
            if sole_owner {
                tx.remove_node(&node_id);
                fx.persist(StoreOp::NodeDeleted {
                    node: node_id.clone(),
                });
                deleted.push(node_id);
                continue;
            }
            let subscriptions: Vec<(SubId, Subscription)> = node
                .subscriptions_of(account)
                .into_iter()
                .flat_map(Held::iter)
                .map(|(subid, sub)| (subid.clone(), sub.clone()))
                .collect();
            let affiliated = node.affiliation(account) != Affiliation::None;
            for (subid, sub) in subscriptions {
                tx.put_subscription(&node_id, account, &subid, None);
                persist_unsubscription(&mut fx, &node_id, &subid, &sub);
            }
            if affiliated {
                tx.set_affiliation(&node_id, account, Affiliation::None);
                fx.persist(StoreOp::AffiliationSet {
                    node: node_id.clone(),
                    jid: account.clone(),
                    affiliation: Affiliation::None,
                });
            }
        }
        fx.finish(deleted, tx.commit())
    }

    /// Node creation policy and the per-owner node limit.
    pub(super) fn check_may_create(&self, creator: &BareJid) -> Result<(), PubsubError> {
        if self.config.create_policy == CreatePolicy::AdminsOnly && !self.is_admin(creator) {
            return Err(PubsubError::Forbidden);
        }
        // A PEP service's every node is its account's, whoever it made owner since: counting
        // only what the account still owns would let it give nodes away and make more.
        let owned = if self.is_admin(creator) {
            self.state.node_count()
        } else {
            self.state
                .affiliations_of(creator)
                .filter(|(_, affiliation)| *affiliation == Affiliation::Owner)
                .count()
        };
        if owned >= self.config.limits.max_nodes_per_owner {
            return Err(PubsubError::PolicyViolation(Limit::MaxNodesExceeded));
        }
        Ok(())
    }

    /// Refuses making anyone but `actor` an owner where owners do not share nodes
    /// ([`ServiceConfig::owners_share_nodes`]).
    fn check_owners_granted<'a>(
        &self,
        actor: &Jid,
        mut granted: impl Iterator<Item = (&'a BareJid, &'a Affiliation)>,
    ) -> Result<(), PubsubError> {
        let actor = actor.to_bare();
        let others = granted.any(|(jid, affiliation)| {
            *affiliation == Affiliation::Owner && *jid != actor && !self.is_admin(jid)
        });
        if others && !self.config.owners_share_nodes {
            return Err(PubsubError::Forbidden);
        }
        Ok(())
    }

    /// Owner actions never depend on the access model, so no resolver is needed.
    fn may_manage(&self, node: &Node, actor: &Jid, action: Action) -> Result<(), PubsubError> {
        access::may(
            node,
            &self.config.admins,
            &access::NoRoster,
            &actor.to_bare(),
            action,
        )
    }

    fn node_subscriptions_where(
        &self,
        actor: &Jid,
        node_id: &str,
        wanted: impl Fn(SubscriptionState) -> bool,
    ) -> Result<Vec<SubscriptionInfo>, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        self.may_manage(node, actor, Action::ManageSubscriptions)?;
        Ok(node
            .subscriptions()
            .filter(|(_, sub)| wanted(sub.state))
            .map(|(subid, sub)| info(node_id, subid, sub))
            .collect())
    }
}

/// Makes a pending or unconfigured subscription active: stored, subscriber and owners told,
/// last items sent.
fn approve(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    config: &ServiceConfig,
    now: SystemTime,
    node_id: &str,
    subid: &SubId,
    sub: Subscription,
) -> SubscriptionInfo {
    let sub = Subscription {
        state: SubscriptionState::Subscribed,
        ..sub
    };
    tx.put_subscription(node_id, &sub.jid.to_bare(), subid, Some(sub.clone()));
    persist_subscription(fx, node_id, subid, &sub);
    if let Some(node) = tx.node(node_id) {
        tell_subscriber(fx, node, subid, &sub.jid, SubscriptionState::Subscribed);
        send_last_on_subscribe(fx, node, config, now, subid, &sub);
        tell_owners(fx, node, subid, &sub.jid, SubscriptionState::Subscribed);
    }
    info(node_id, subid, &sub)
}

/// Removes a subscription on an owner's decision; the subscriber is told.
fn remove_by_owner(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    node_id: &str,
    subid: &SubId,
    sub: Subscription,
) -> SubscriptionInfo {
    tx.put_subscription(node_id, &sub.jid.to_bare(), subid, None);
    persist_unsubscription(fx, node_id, subid, &sub);
    if let Some(node) = tx.node(node_id) {
        tell_subscriber(fx, node, subid, &sub.jid, SubscriptionState::None);
    }
    SubscriptionInfo {
        state: SubscriptionState::None,
        ..info(node_id, subid, &sub)
    }
}

/// An owner subscribes a JID that has no subscription: the node must admit it, the JID's
/// subscription limit applies.
/// Whom an owner may subscribe without `owners_subscribe_others`: itself, and those it made
/// members, publishers or owners of the node (the other party of a XEP-0207 §6 conversation,
/// Ex. 18), who can also block it.
/// Another account is named by its bare JID (the seed's `manage1`): one subscription per
/// account and node, not one per made-up resource, each counted against that account.
fn invited(node: &Node, actor: &Jid, jid: &Jid) -> bool {
    jid.to_bare() == actor.to_bare()
        || (jid.resource().is_none()
            && matches!(
                node.affiliation(&jid.to_bare()),
                Affiliation::Owner | Affiliation::Publisher | Affiliation::Member
            ))
}

#[allow(clippy::too_many_arguments)]
fn subscribe_by_owner(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    config: &ServiceConfig,
    resolver: &dyn AccessResolver,
    now: SystemTime,
    node_id: &str,
    subid: SubId,
    jid: &Jid,
) -> Result<SubscriptionInfo, PubsubError> {
    let bare = jid.to_bare();
    let node = tx.node(node_id).ok_or(PubsubError::NodeNotFound)?;
    access::may(node, &config.admins, resolver, &bare, Action::Subscribe)?;
    let held = tx.state().held_count(&bare);
    if held >= config.limits.max_subscriptions_per_jid {
        return Err(PubsubError::PolicyViolation(Limit::TooManySubscriptions));
    }
    let sub = Subscription {
        jid: jid.clone(),
        state: SubscriptionState::Subscribed,
        options: SubscriptionOptions {
            temporary: node.config.tempsub,
            ..SubscriptionOptions::default()
        },
    };
    tx.put_subscription(node_id, &bare, &subid, Some(sub.clone()));
    persist_subscription(fx, node_id, &subid, &sub);
    if let Some(node) = tx.node(node_id) {
        tell_subscriber(fx, node, &subid, jid, SubscriptionState::Subscribed);
        send_last_on_subscribe(fx, node, config, now, &subid, &sub);
        tell_owners(fx, node, &subid, jid, SubscriptionState::Subscribed);
    }
    Ok(info(node_id, &subid, &sub))
}
