//! Subscriber use cases (XEP-0060 §6): subscribe, unsubscribe, subscription options, item
//! retrieval; plus the session hooks (last items on presence, temporary subscriptions).

use jid::{BareJid, FullJid, Jid};

use super::{
    Effects, Service, SubscriptionInfo, find_node, fresh_id, info, last_items,
    persist_subscription, persist_unsubscription, send_last_on_subscribe, tell_owners,
};
use crate::SubId;
use crate::access::{self, AccessResolver, Action, Affiliation};
use crate::config::{AccessModel, SendLastPublishedItem, ServiceConfig, SubscriptionOptionsPolicy};
use crate::effects::{AuthorizationRequest, Effect, LastItems, Outcome};
use crate::error::{Feature, Limit, NotAuthorizedReason, PubsubError};
use crate::item::{ItemQuery, ItemsPage};
use crate::node::Node;
use crate::state::{Tx, Undo};
use crate::subscription::{Subscription, SubscriptionOptions, SubscriptionState};

impl Service {
    /// Subscribes `jid` to `node` (XEP-0060 §6.1).
    ///
    /// `options` are the subscribe options submitted with the request, if any. The result is
    /// `subscribed`, `pending` (access model `authorize` and the subscriber not yet approved; an
    /// [`Effect::AuthorizationRequest`] goes to the owners) or `unconfigured` (the service
    /// requires options and none were given). A JID may hold several subscriptions with
    /// different options; subscribing again without options, or with the options of an
    /// existing subscription, returns that subscription "as if just approved".
    pub fn subscribe(
        &mut self,
        resolver: &dyn AccessResolver,
        actor: &Jid,
        node_id: &str,
        jid: &Jid,
        options: Option<SubscriptionOptions>,
    ) -> Result<Outcome<SubscriptionInfo>, PubsubError> {
        let subscriber = jid.to_bare();
        // Only the service itself (a domain among its admins, as when the server makes a
        // conversation) subscribes others: an account, even one that administers its own
        // PEP service, subscribes only itself, or anyone could be made to follow it.
        let service_acting = actor.node().is_none() && self.is_admin(&actor.to_bare());
        if subscriber != actor.to_bare() && !service_acting {
            return Err(PubsubError::InvalidJid);
        }
        let configured = options.is_some();
        let mut options = options.unwrap_or_default();
        check_custom_options(&self.config, &options)?;

        let node = find_node(&self.state, node_id)?;
        if !node.config.subscribe {
            return Err(PubsubError::Unsupported(Feature::Subscribe));
        }
        access::may(
            node,
            &self.config.admins,
            resolver,
            &subscriber,
            Action::Subscribe,
        )?;
        if node.config.tempsub {
            options.temporary = true;
        }

        // One request waits per account and node, whatever resources it names: otherwise one
        // account could queue any number of forms for the owner (issue #11 H1).
        let waiting = node.subscriptions_of(&subscriber).is_some_and(|subs| {
            subs.values()
                .any(|sub| sub.state == SubscriptionState::Pending)
        });
        if waiting {
            return Err(PubsubError::NotAuthorized(
                NotAuthorizedReason::PendingSubscription,
            ));
        }
        let same = node
            .subscriptions_of_jid(jid)
            .find(|(_, sub)| !configured || sub.options == options);
        if let Some((subid, sub)) = same {
            let mut fx = Effects::default();
            let now = self.env.now();
            send_last_on_subscribe(&mut fx, node, &self.config, now, subid, sub);
            return Ok(fx.finish(info(node_id, subid, sub), Undo::unchanged()));
        }

        check_unique_options(&self.config, node, &subscriber, &options)?;
        let held = self.state.held_count(&subscriber);
        if held >= self.config.limits.max_subscriptions_per_jid {
            return Err(PubsubError::PolicyViolation(Limit::TooManySubscriptions));
        }

        let affiliation = access::affiliation_of(node, &self.config.admins, &subscriber);
        let approved = affiliation != Affiliation::None
            || node.config.access_model != AccessModel::Authorize
            || node.has_approved_subscription(&subscriber);
        if !approved {
            // In all, and from any one domain but the owners' a tenth of it: one other
            // server's made-up users cannot fill a node and keep real askers out.
            let max = self.config.limits.max_pending_per_node;
            let domain = subscriber.domain();
            let foreign = !node.owners().any(|owner| owner.domain() == domain);
            let (mut all, mut from_domain) = (0, 0);
            for (_, sub) in node.subscriptions() {
                if sub.state == SubscriptionState::Pending {
                    all += 1;
                    from_domain += usize::from(sub.jid.domain() == domain);
                }
            }
            if all >= max || (foreign && from_domain >= (max / 10).max(1)) {
                return Err(PubsubError::PolicyViolation(Limit::TooManyPending));
            }
        }
        let state = if !approved {
            SubscriptionState::Pending
        } else if !configured
            && self.config.subscription_options == SubscriptionOptionsPolicy::Required
        {
            SubscriptionState::Unconfigured
        } else {
            SubscriptionState::Subscribed
        };
        let subid = SubId::from(fresh_id(self.env.as_mut(), |id| node.has_subid(id)));
        let sub = Subscription {
            jid: jid.clone(),
            state,
            options,
        };

        let mut fx = Effects::default();
        let now = self.env.now();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        tx.put_subscription(node_id, &subscriber, &subid, Some(sub.clone()));
        persist_subscription(&mut fx, node_id, &subid, &sub);
        if let Some(node) = tx.node(node_id) {
            if state == SubscriptionState::Pending {
                fx.push(Effect::AuthorizationRequest(AuthorizationRequest {
                    node: node_id.to_owned(),
                    subscriber: jid.clone(),
                    subid: subid.clone(),
                    owners: node.owners().cloned().collect(),
                }));
            }
            send_last_on_subscribe(&mut fx, node, &self.config, now, &subid, &sub);
            tell_owners(&mut fx, node, &subid, jid, state);
        }
        Ok(fx.finish(info(node_id, &subid, &sub), tx.commit()))
    }

    /// Ends one of `jid`'s subscriptions to `node` (XEP-0060 §6.2). `subid` is required when
    /// the JID holds several.
    pub fn unsubscribe(
        &mut self,
        actor: &Jid,
        node_id: &str,
        jid: &Jid,
        subid: Option<&str>,
    ) -> Result<Outcome<SubscriptionInfo>, PubsubError> {
        self.check_acting_for(actor, jid)?;
        let node = find_node(&self.state, node_id)?;
        let (subid, sub) = select_subscription(node, jid, subid)?;

        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        tx.put_subscription(node_id, &jid.to_bare(), &subid, None);
        persist_unsubscription(&mut fx, node_id, &subid, &sub);
        if let Some(node) = tx.node(node_id) {
            tell_owners(&mut fx, node, &subid, jid, SubscriptionState::None);
        }
        let value = SubscriptionInfo {
            state: SubscriptionState::None,
            ..info(node_id, &subid, &sub)
        };
        Ok(fx.finish(value, tx.commit()))
    }

    /// The options of one of `jid`'s subscriptions (XEP-0060 §6.3).
    pub fn subscription_options(
        &self,
        actor: &Jid,
        node_id: &str,
        jid: &Jid,
        subid: Option<&str>,
    ) -> Result<SubscriptionOptions, PubsubError> {
        self.check_acting_for(actor, jid)?;
        let node = find_node(&self.state, node_id)?;
        let (_, sub) = select_subscription(node, jid, subid)?;
        Ok(sub.options)
    }

    /// The options a new subscription gets when none are given (XEP-0060 §6.4).
    pub fn default_subscription_options(&self) -> SubscriptionOptions {
        SubscriptionOptions {
            temporary: self.config.node_defaults.tempsub,
            ..SubscriptionOptions::default()
        }
    }

    /// Replaces the options of one of `jid`'s subscriptions (XEP-0060 §6.3). An `unconfigured`
    /// subscription becomes `subscribed` (and receives the last items).
    pub fn set_subscription_options(
        &mut self,
        actor: &Jid,
        node_id: &str,
        jid: &Jid,
        subid: Option<&str>,
        mut options: SubscriptionOptions,
    ) -> Result<Outcome<SubscriptionInfo>, PubsubError> {
        self.check_acting_for(actor, jid)?;
        check_custom_options(&self.config, &options)?;
        let node = find_node(&self.state, node_id)?;
        let (subid, old) = select_subscription(node, jid, subid)?;
        let bare = jid.to_bare();
        check_unique_options(&self.config, node, &bare, &options)?;
        if node.config.tempsub {
            options.temporary = true;
        }
        let state = match old.state {
            SubscriptionState::Unconfigured => SubscriptionState::Subscribed,
            state => state,
        };
        let sub = Subscription {
            jid: jid.clone(),
            state,
            options,
        };

        let mut fx = Effects::default();
        let now = self.env.now();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        tx.put_subscription(node_id, &bare, &subid, Some(sub.clone()));
        // Becoming temporary takes the subscription out of storage, and the reverse puts it in.
        if sub.options.temporary && !old.options.temporary {
            persist_unsubscription(&mut fx, node_id, &subid, &old);
        } else {
            persist_subscription(&mut fx, node_id, &subid, &sub);
        }
        if old.state == SubscriptionState::Unconfigured
            && let Some(node) = tx.node(node_id)
        {
            send_last_on_subscribe(&mut fx, node, &self.config, now, &subid, &sub);
        }
        Ok(fx.finish(info(node_id, &subid, &sub), tx.commit()))
    }

    /// Retrieves items (XEP-0060 §6.5), newest first, skipping expired ones. Payloads are
    /// always included (`deliver_payloads` concerns notifications only).
    pub fn items(
        &self,
        resolver: &dyn AccessResolver,
        actor: &Jid,
        node_id: &str,
        query: &ItemQuery,
    ) -> Result<ItemsPage, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        access::may(
            node,
            &self.config.admins,
            resolver,
            &actor.to_bare(),
            Action::RetrieveItems,
        )?;
        let now = self.env.now();
        node.items
            .query(query, |item| super::is_live(&node.config, item, now))
    }

    /// XEP-0060 §6.5.9.1–2: a retrieval by a JID holding several subscriptions to the node
    /// (its own, or its bare JID's when it holds none itself) names the one it is for
    /// (`subid-required`), and a SubID it names must be its own or its bare JID's
    /// (`invalid-subid`). A full JID and its bare JID subscribed once each are two entities
    /// with one subscription each (clients that subscribe both ways read items without a
    /// SubID, as slixmpp does). A JID holding none retrieves as the access model lets it.
    pub fn check_retrieval_subid(
        &self,
        actor: &Jid,
        node_id: &str,
        subid: Option<&str>,
    ) -> Result<(), PubsubError> {
        let node = find_node(&self.state, node_id)?;
        let bare = Jid::from(actor.to_bare());
        let own: Vec<&SubId> = node.subscriptions_of_jid(actor).map(|(id, _)| id).collect();
        let of_bare: Vec<&SubId> = match *actor != bare {
            true => node.subscriptions_of_jid(&bare).map(|(id, _)| id).collect(),
            false => Vec::new(),
        };
        let held = || own.iter().chain(&of_bare);
        let acting_for = if own.is_empty() { &of_bare } else { &own };
        match subid {
            Some(wanted) if held().next().is_some() && !held().any(|id| id.as_str() == wanted) => {
                Err(PubsubError::InvalidSubid)
            }
            None if acting_for.len() > 1 => Err(PubsubError::SubidRequired),
            _ => Ok(()),
        }
    }

    /// The items to send to a session that just came online (`on_sub_and_presence`): for each
    /// node where its bare or full JID holds an active subscription, the last items, addressed
    /// to the full JID.
    pub fn on_presence(&self, session: &FullJid) -> Vec<LastItems> {
        let bare = session.to_bare();
        let full = Jid::from(session.clone());
        let bare_jid = Jid::from(bare.clone());
        let now = self.env.now();
        let mut sent = Vec::new();
        for (node_id, subid, sub) in self.state.held_by(&bare) {
            let Some(node) = self.state.nodes.get(node_id) else {
                continue;
            };
            let wanted = node.config.send_last_published_item
                == SendLastPublishedItem::OnSubAndPresence
                && node.config.deliver_notifications
                && sub.state == SubscriptionState::Subscribed
                && sub.options.deliver
                && (sub.jid == full || sub.jid == bare_jid);
            // One delivery per node even if the JID subscribed several times.
            let already = sent
                .last()
                .is_some_and(|last: &LastItems| last.node == *node_id);
            if !wanted || already {
                continue;
            }
            let items = last_items(node, self.config.last_items(node_id), now);
            if !items.is_empty() {
                let to = full.clone();
                sent.push(LastItems::of(
                    to,
                    node_id.clone(),
                    &node.config,
                    subid.clone(),
                    items,
                ));
            }
        }
        sent
    }

    /// Ends the temporary subscriptions (`pubsub#expire` = `presence`, or on `tempsub` nodes)
    /// held by exactly `jid`, across the service: call it with the full JID when a session
    /// ends, and with the bare JID when the account's last session ends. The value lists the
    /// ended subscriptions (a group chat layer announces the departures from it).
    pub fn end_session(&mut self, jid: &Jid) -> Outcome<Vec<SubscriptionInfo>> {
        let bare = jid.to_bare();
        let ended: Vec<(String, SubId, Subscription)> = self
            .state
            .held_by(&bare)
            .filter(|(_, _, sub)| sub.jid == *jid && sub.options.temporary)
            .map(|(node_id, subid, sub)| (node_id.clone(), subid.clone(), sub.clone()))
            .collect();

        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        let mut value = Vec::with_capacity(ended.len());
        for (node_id, subid, sub) in ended {
            tx.put_subscription(&node_id, &bare, &subid, None);
            if let Some(node) = tx.node(&node_id) {
                tell_owners(&mut fx, node, &subid, jid, SubscriptionState::None);
            }
            value.push(SubscriptionInfo {
                state: SubscriptionState::None,
                ..info(&node_id, &subid, &sub)
            });
        }
        fx.finish(value, tx.commit())
    }

    /// Only the subscriber itself (same bare JID) or an admin acts on a subscription.
    fn check_acting_for(&self, actor: &Jid, jid: &Jid) -> Result<(), PubsubError> {
        let actor = actor.to_bare();
        if actor == jid.to_bare() || self.is_admin(&actor) {
            Ok(())
        } else {
            Err(PubsubError::Forbidden)
        }
    }
}

/// Picks one of exactly `jid`'s subscriptions: by SubID, or the only one.
pub(super) fn select_subscription(
    node: &Node,
    jid: &Jid,
    subid: Option<&str>,
) -> Result<(SubId, Subscription), PubsubError> {
    let subs: Vec<_> = node.subscriptions_of_jid(jid).collect();
    let (id, sub) = match (subid, subs.as_slice()) {
        (_, []) => return Err(PubsubError::NotSubscribed),
        (Some(wanted), subs) => *subs
            .iter()
            .find(|(id, _)| id.as_str() == wanted)
            .ok_or(PubsubError::InvalidSubid)?,
        (None, [only]) => *only,
        (None, _) => return Err(PubsubError::SubidRequired),
    };
    Ok((id.clone(), sub.clone()))
}

/// Custom options must be declared by the service.
fn check_custom_options(
    config: &ServiceConfig,
    options: &SubscriptionOptions,
) -> Result<(), PubsubError> {
    if options
        .custom
        .keys()
        .all(|var| config.custom_subscription_options.contains_key(var))
    {
        Ok(())
    } else {
        Err(PubsubError::InvalidOptions)
    }
}

/// Unique options (a room nick) may not be held by another bare JID on the node.
fn check_unique_options(
    config: &ServiceConfig,
    node: &Node,
    subscriber: &BareJid,
    options: &SubscriptionOptions,
) -> Result<(), PubsubError> {
    for (var, value) in options.custom.iter() {
        let unique = config
            .custom_subscription_options
            .get(var)
            .is_some_and(|field| field.unique);
        if unique && node.option_taken(var, value, subscriber) {
            return Err(PubsubError::OptionTaken {
                var: var.to_string(),
            });
        }
    }
    Ok(())
}
