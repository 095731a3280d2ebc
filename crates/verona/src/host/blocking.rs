//! XEP-0191 blocking as pubsub (DESIGN §2): a blocked JID is an outcast on every node of the
//! user's PEP service, so it can neither subscribe nor read, and its subscriptions end. The
//! blocklist is the outcast list of the `presence` node; the router keeps a copy so that
//! stanzas between the two are stopped where they are routed, set from the engine after each
//! batch's commit or rollback. Blocking is polite (§3.3 implementation notes): the ended
//! subscriptions to the user's presence are not announced, are kept in the user's `roster`
//! node, and come back with the unblock.

use crate::jids::Bare;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use std::collections::BTreeMap;
use verona_pubsub::{Affiliation, Effect, Event, ItemQuery, PublishRequest, SubscriptionState};

use super::roster::ensure_roster_node;
use super::{Done, Origin, PRESENCE_NODE, ROSTER_NODE, ServicesTask};
use crate::eventing::blocking::{
    Command, HELD, Held, held as held_of, hold, item, parse_set, release,
};
use crate::xml::{BuilderExt, StanzaError, builder, error_reply, iq_result, ns};

impl ServicesTask {
    /// The user's blocklist: the outcasts of its `presence` node.
    pub(super) fn blocklist(&self, user: &BareJid) -> Vec<BareJid> {
        let owner = Jid::from(user.clone());
        self.accounts
            .get(user)
            .and_then(|hosted| {
                let affiliations = hosted.service.node_affiliations(&owner, PRESENCE_NODE);
                affiliations.ok()
            })
            .into_iter()
            .flatten()
            .filter(|(_, affiliation)| *affiliation == Affiliation::Outcast)
            .map(|(jid, _)| jid)
            .collect()
    }

    /// New nodes of a user who blocks someone keep them out too.
    pub(super) fn carry_blocks(&mut self, user: &BareJid, nodes: &[String], done: &mut Vec<Done>) {
        if nodes.is_empty() {
            return;
        }
        let changes: BTreeMap<BareJid, Affiliation> = self
            .blocklist(user)
            .into_iter()
            .map(|jid| (jid, Affiliation::Outcast))
            .collect();
        let Some(hosted) = self.accounts.get_mut(user).filter(|_| !changes.is_empty()) else {
            return;
        };
        let owner = Jid::from(user.clone());
        for node in nodes {
            match hosted
                .service
                .set_affiliations(&self.presence, &owner, node, &changes)
            {
                Ok(outcome) => {
                    let origin = Origin::Account(user.clone());
                    done.push(Done::new(origin, outcome.effects, outcome.undo));
                }
                Err(e) => tracing::warn!(%user, node, "carrying blocks: {e}"),
            }
        }
    }

    /// A blocklist get, block or unblock (XEP-0191 §3) from a session.
    pub(super) fn blocking_request(&mut self, from: FullJid, iq: Element, done: &mut Vec<Done>) {
        let user = from.bare();
        if iq.attr("type") == Some("get") {
            // §3.1: a get asks for the list; a block or unblock is a set, never a get.
            if !iq.has_child("blocklist", ns::BLOCKING) {
                let reply = error_reply(&iq, StanzaError::BadRequest, None);
                done.push(Done::reply(from, reply));
                return;
            }
            // §3.2: sessions that asked get the pushes.
            self.blocklist_interested.insert(&from);
            let items = self.blocklist(&user).into_iter().map(|jid| item(&jid));
            let list = builder("blocklist", ns::BLOCKING).append_all(items).build();
            done.push(Done::reply(from, Some(iq_result(&iq, Some(list)))));
            return;
        }
        let Some(Command { block, jids }) = parse_set(&iq) else {
            let reply = error_reply(&iq, StanzaError::BadRequest, None);
            done.push(Done::reply(from, reply));
            return;
        };
        if block {
            // Each blocked JID is an outcast on every node: the list is bounded (issue #11 M7).
            let listed = self.blocklist(&user);
            let new = jids.iter().filter(|jid| !listed.contains(jid)).count();
            if listed.len() + new > self.max_blocklist {
                let reply = error_reply(&iq, StanzaError::PolicyViolation, Some("blocklist full"));
                done.push(Done::reply(from, reply));
                return;
            }
        }
        // §3.4: unblocking with no items unblocks everyone.
        let jids = if !block && jids.is_empty() {
            self.blocklist(&user)
        } else {
            jids
        };
        let affiliation = if block {
            Affiliation::Outcast
        } else {
            Affiliation::None
        };
        // One cannot block oneself: the account owns its nodes.
        let changes: BTreeMap<BareJid, Affiliation> = jids
            .iter()
            .filter(|jid| **jid != user)
            .map(|jid| (jid.clone(), affiliation))
            .collect();
        let origin = Origin::Account(user.clone());
        let owner = Jid::from(user.clone());
        let Some(hosted) = self.accounts.get_mut(&user) else {
            let reply = error_reply(&iq, StanzaError::InternalServerError, None);
            done.push(Done::reply(from, reply));
            return;
        };
        // Polite blocking (XEP-0191 §3.3): the subscriptions to the user's presence that the
        // block ends are kept, to be made again at the unblock.
        let ended = if block {
            ended_by_block(&hosted.service, &user, &changes)
        } else {
            BTreeMap::new()
        };
        let nodes: Vec<String> = hosted.service.node_ids().cloned().collect();
        for node in nodes {
            match hosted
                .service
                .set_affiliations(&self.presence, &owner, &node, &changes)
            {
                Ok(outcome) => {
                    // Nor is the blocked contact told that its subscriptions ended.
                    let effects = unannounced(outcome.effects);
                    done.push(Done::new(origin.clone(), effects, outcome.undo));
                }
                Err(e) => tracing::warn!(%user, node, "blocking: {e}"),
            }
        }
        if block {
            for (contact, held) in ended {
                self.keep_held(&user, &contact, held, done);
            }
        } else {
            self.give_back_held(&user, done);
        }
        self.refresh_presence(&origin);
        // The router's copy follows the engine once the batch is settled (committed, or
        // rolled back): never ahead of what is stored.
        self.blocklists_changed.push(user.clone());
        // Of the account's service: undone with it if its writes fail.
        done.push(Done {
            origin: origin.clone(),
            request: Some(iq.clone()),
            ..Done::reply(from, Some(iq_result(&iq, None)))
        });
        // §3.3, §3.4: every session that asked for the list hears of the change.
        let name = if block { "block" } else { "unblock" };
        let change = builder(name, ns::BLOCKING)
            .append_all(jids.iter().map(item))
            .build();
        for session in self.blocklist_interested.of(&user) {
            let push = crate::xml::push(session.as_str(), change.clone());
            done.push(Done {
                origin: origin.clone(),
                ..Done::reply(session.clone(), Some(push))
            });
        }
    }

    /// Keeps `held` (subscriptions of `contact` the user's block just ended) in the user's
    /// `roster` node item for the contact, with what the item already says.
    fn keep_held(
        &mut self,
        user: &BareJid,
        contact: &BareJid,
        held: Vec<Held>,
        done: &mut Vec<Done>,
    ) {
        let owner = Jid::from(user.clone());
        let origin = Origin::Account(user.clone());
        let Some(hosted) = self.accounts.get_mut(user) else {
            return;
        };
        if let Some(created) = ensure_roster_node(&mut hosted.service, &owner) {
            done.push(Done::new(origin.clone(), created.effects, created.undo));
        }
        let items = hosted
            .service
            .items(&self.presence, &owner, ROSTER_NODE, &ItemQuery::All)
            .map(|page| page.items)
            .unwrap_or_default();
        let current = items
            .iter()
            .find(|item| item.id == contact.as_str())
            .and_then(|item| item.payload.as_deref()?.parse::<Element>().ok());
        let limit = hosted.service.config().limits.max_items_per_node;
        if current.is_none() && items.len() >= limit {
            // Another contact's item would be evicted: the subscriptions end for good.
            tracing::warn!(%user, %contact, "the roster is full: a block's subscriptions not kept");
            return;
        }
        let made = current.is_none();
        let item = current.unwrap_or_else(|| {
            builder("item", ns::ROSTER)
                .with("jid", contact.as_str())
                .build()
        });
        // Kept by an earlier block too (of the contact's domain, say): both are given back.
        let (mut all, made) = match held_of(&item) {
            Some((earlier, made_then)) => (earlier, made_then),
            None => (Vec::new(), made),
        };
        all.extend(held);
        let item = hold(item, &all, made);
        let payload = String::from_utf8(verona_stream::element_bytes(&item))
            .expect("serialised XML is UTF-8");
        let request = PublishRequest::payload(Some(contact.as_str()), payload);
        match hosted.service.publish(&owner, ROSTER_NODE, request) {
            Ok(outcome) => done.push(Done::new(origin, outcome.effects, outcome.undo)),
            Err(e) => tracing::error!(%user, %contact, "keeping a block's subscriptions: {e}"),
        }
    }

    /// After an unblock: the subscriptions the user's blocks ended are made again for each
    /// contact no longer blocked, without asking anyone, and the item is as before the block.
    /// Only the contact's new subscription hears of it, with the user's current presence (as
    /// after an approval).
    fn give_back_held(&mut self, user: &BareJid, done: &mut Vec<Done>) {
        let blocklist = self.blocklist(user);
        let owner = Jid::from(user.clone());
        let origin = Origin::Account(user.clone());
        let Some(hosted) = self.accounts.get_mut(user) else {
            return;
        };
        let kept: Vec<(BareJid, Element)> = hosted
            .service
            .node_items(ROSTER_NODE)
            .filter_map(|item| {
                // Only the items that may keep something are parsed.
                let payload = item.payload.as_deref().filter(|p| p.contains(HELD))?;
                let contact = BareJid::new(&item.id).ok()?;
                Some((contact, payload.parse::<Element>().ok()?))
            })
            .filter(|(contact, payload)| {
                payload.has_child("held", HELD) && !blocked_by(&blocklist, contact)
            })
            .collect();
        for (contact, item) in kept {
            let Some((held, made)) = held_of(&item) else {
                continue;
            };
            for Held { jid, options } in held {
                let subscribed = hosted.service.subscribe(
                    &self.presence,
                    &jid,
                    PRESENCE_NODE,
                    &jid,
                    Some(options),
                );
                let subscribed = match subscribed {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tracing::warn!(%user, %jid, "giving back a subscription: {e}");
                        continue;
                    }
                };
                let subid = subscribed.value.subid.clone();
                done.push(Done::new(
                    origin.clone(),
                    unannounced(subscribed.effects),
                    subscribed.undo,
                ));
                match hosted
                    .service
                    .authorize(&owner, PRESENCE_NODE, &jid, Some(&subid), true)
                {
                    Ok(outcome) => done.push(Done::new(
                        origin.clone(),
                        unannounced(outcome.effects),
                        outcome.undo,
                    )),
                    Err(e) => tracing::warn!(%user, %jid, "giving back a subscription: {e}"),
                }
            }
            let outcome = if made {
                hosted
                    .service
                    .retract(&owner, ROSTER_NODE, contact.as_str(), false)
            } else {
                let payload = String::from_utf8(verona_stream::element_bytes(&release(item)))
                    .expect("serialised XML is UTF-8");
                let request = PublishRequest::payload(Some(contact.as_str()), payload);
                hosted
                    .service
                    .publish(&owner, ROSTER_NODE, request)
                    .map(|outcome| outcome.map(|_| ()))
            };
            match outcome {
                Ok(outcome) => done.push(Done::new(origin.clone(), outcome.effects, outcome.undo)),
                Err(e) => {
                    tracing::error!(%user, %contact, "releasing a block's subscriptions: {e}")
                }
            }
        }
    }
}

/// Whether `contact` (or its domain) is on `blocklist`.
fn blocked_by(blocklist: &[BareJid], contact: &BareJid) -> bool {
    blocklist
        .iter()
        .any(|jid| jid == contact || (jid.node().is_none() && jid.domain() == contact.domain()))
}

/// The approved, lasting subscriptions to `user`'s presence node that `changes` (a block)
/// end, by subscriber account.
fn ended_by_block(
    service: &verona_pubsub::Service,
    user: &BareJid,
    changes: &BTreeMap<BareJid, Affiliation>,
) -> BTreeMap<BareJid, Vec<Held>> {
    let blocked: Vec<BareJid> = changes.keys().cloned().collect();
    let mut ended: BTreeMap<BareJid, Vec<Held>> = BTreeMap::new();
    for sub in service.subscribers(PRESENCE_NODE) {
        let account = sub.jid.to_bare();
        if sub.state != SubscriptionState::Subscribed
            || sub.options.temporary
            || account == *user
            || !blocked_by(&blocked, &account)
        {
            continue;
        }
        ended.entry(account).or_default().push(Held {
            jid: sub.jid,
            options: sub.options,
        });
    }
    ended
}

/// `effects` without the notices that would tell a subscriber its subscription changed, or
/// ask the owner to approve one: a block and an unblock are silent (XEP-0191 §3.3).
fn unannounced(effects: Vec<Effect>) -> Vec<Effect> {
    effects
        .into_iter()
        .filter(|effect| match effect {
            Effect::Notify(notification) => {
                !matches!(notification.event, Event::Subscription { .. })
            }
            Effect::AuthorizationRequest(_) => false,
            Effect::Persist(_) | Effect::SendLastItems(_) => true,
        })
        .collect()
}
