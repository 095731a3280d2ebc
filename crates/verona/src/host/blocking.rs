//! XEP-0191 blocking as pubsub (DESIGN §2): a blocked JID is an outcast on every node of the
//! user's PEP service, so it can neither subscribe nor read, and its subscriptions end. The
//! blocklist is the outcast list of the `presence` node; the router keeps a copy so that
//! stanzas between the two are stopped where they are routed, set from the engine after each
//! batch's commit or rollback.

use crate::jids::Bare;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use std::collections::BTreeMap;
use verona_pubsub::Affiliation;

use super::{Done, Origin, PRESENCE_NODE, ServicesTask};
use crate::eventing::blocking::{Command, item, parse_set};
use crate::xml::{StanzaError, builder, error_reply, iq_result, ns};

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
        let nodes: Vec<String> = hosted.service.node_ids().cloned().collect();
        for node in nodes {
            match hosted
                .service
                .set_affiliations(&self.presence, &owner, &node, &changes)
            {
                Ok(outcome) => done.push(Done::new(origin.clone(), outcome.effects, outcome.undo)),
                Err(e) => tracing::warn!(%user, node, "blocking: {e}"),
            }
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
}
