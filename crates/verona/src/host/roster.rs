//! The host side of the roster view ([`crate::eventing::roster`]): a roster get or set run
//! against the user's PEP service and the presence graph in a batch; removing a contact ends
//! the subscriptions both ways; pushes to the sessions that asked for the roster.

use crate::jids::Bare;
use std::collections::HashMap;

use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use verona_pubsub::{AccessResolver, CreateRequest, ItemQuery, PublishRequest};

use super::{Done, Origin, ROSTER_NODE, Request, ServicesTask, SubscriptionKind};
use crate::eventing::roster::{RosterSet, item_element, parse_set, version};
use crate::xml::{BuilderExt, StanzaError, builder, error_reply, iq_result, ns};

impl ServicesTask {
    /// The roster's version: a digest of the derived roster.
    fn roster_ver(&self, user: &BareJid) -> String {
        version(&self.presence.roster(user))
    }

    /// A `jabber:iq:roster` get or set from a session.
    pub(super) fn roster_request(&mut self, from: FullJid, iq: Element, done: &mut Vec<Done>) {
        let user = from.bare();
        if iq.attr("type") == Some("get") {
            // §2.1.3: a get names no items (RFC 6120 §8.3.3.1: what breaks the schema is a
            // bad request, as ejabberd answers it).
            let query = iq.get_child("query", ns::ROSTER);
            if query.is_some_and(|q| q.children().next().is_some()) {
                let why = Some("a roster get has no items");
                done.push(Done::reply(
                    from,
                    error_reply(&iq, StanzaError::BadRequest, why),
                ));
                return;
            }
            // The session now gets pushes (RFC 6121 §2.1.6).
            self.interested.insert(&from);
            let ver = self.roster_ver(&user);
            let known = iq
                .get_child("query", ns::ROSTER)
                .and_then(|q| q.attr("ver"))
                .is_some_and(|v| v == ver);
            // §2.6.3: an unchanged roster is answered with an empty result.
            let payload = (!known).then(|| {
                let items = self.presence.roster(&user);
                builder("query", ns::ROSTER)
                    .with("ver", ver)
                    .append_all(items.iter().map(item_element))
                    .build()
            });
            done.push(Done::reply(from, Some(iq_result(&iq, payload))));
            return;
        }
        let set = match parse_set(&iq) {
            Ok(set) => set,
            Err((error, text)) => {
                done.push(Done::reply(from, error_reply(&iq, error, Some(text))));
                return;
            }
        };
        match set {
            // The account's own presence is no contact's: refused, as Prosody does, rather than
            // answered and then not kept (RFC 6121 §2.3.2).
            RosterSet::Update { contact, .. } if contact == user => {
                let why = Some("your own address is not a contact");
                done.push(Done::reply(
                    from,
                    error_reply(&iq, StanzaError::NotAllowed, why),
                ));
            }
            RosterSet::Update { contact, item } => {
                self.annotate(&from, &iq, &contact, item, done);
            }
            RosterSet::Remove { contact } => self.remove_contact(&from, &iq, &contact, done),
        }
    }

    /// RFC 6121 §3: a contact the user asked to follow, or let follow it, is on its roster
    /// until the user removes it: an item with neither name nor groups keeps it there when the
    /// subscriptions end, unless it has one already (or the roster is full). An `approval`
    /// keeps the contact only if it now follows the user: a `subscribed` with no request
    /// waiting changes nothing (pre-approval, RFC 6121 §3.4, is not offered), and added a
    /// roster item no session was told of.
    pub(super) fn keep_on_roster(
        &mut self,
        user: &BareJid,
        contact: &BareJid,
        approval: bool,
        done: &mut Vec<Done>,
    ) {
        let entry = self.presence.roster_entry(user, contact);
        if user == contact
            || entry
                .as_ref()
                .is_some_and(|entry| entry.annotation != Default::default())
            || (approval && !entry.is_some_and(|entry| entry.from))
        {
            return;
        }
        let owner = Jid::from(user.clone());
        let origin = Origin::Account(user.clone());
        let Some(hosted) = self.accounts.get_mut(user) else {
            return;
        };
        if let Some(created) = ensure_roster_node(&mut hosted.service, &owner) {
            done.push(Done::new(origin.clone(), created.effects, created.undo));
        }
        let kept = hosted
            .service
            .items(&self.presence, &owner, ROSTER_NODE, &ItemQuery::All)
            .map(|page| page.items)
            .unwrap_or_default();
        let limit = hosted.service.config().limits.max_items_per_node;
        if kept.len() >= limit || kept.iter().any(|i| i.id == contact.as_str()) {
            return;
        }
        let item = builder("item", ns::ROSTER)
            .with("jid", contact.as_str())
            .build();
        let payload = String::from_utf8(verona_stream::element_bytes(&item))
            .expect("serialised XML is UTF-8");
        let request = PublishRequest::payload(Some(contact.as_str()), payload);
        match hosted.service.publish(&owner, ROSTER_NODE, request) {
            Ok(outcome) => {
                done.push(Done::new(origin, outcome.effects, outcome.undo));
                // An item with neither name nor groups looks as the subscription makes it,
                // whose own change pushes it: nothing to push for it here, unless no
                // subscription came of it (a local contact that does not exist), when
                // nothing else would tell the user's sessions of the item.
                let changed = self.presence.refresh(user, &hosted.service);
                let alone = self
                    .presence
                    .roster_entry(user, contact)
                    .is_some_and(|entry| !(entry.from || entry.to || entry.ask));
                self.roster_changes.extend(
                    changed
                        .into_iter()
                        .filter(|(u, c)| alone || !(u == user && c == contact)),
                );
            }
            Err(e) => tracing::error!(%user, "keeping a contact on the roster: {e}"),
        }
    }

    /// Keeps the contact's name and groups as its item in the `roster` node.
    fn annotate(
        &mut self,
        from: &FullJid,
        iq: &Element,
        contact: &BareJid,
        item: Element,
        done: &mut Vec<Done>,
    ) {
        let user = from.bare();
        let owner = Jid::from(user.clone());
        let origin = Origin::Account(user.clone());
        let Some(hosted) = self.accounts.get_mut(&user) else {
            let reply = error_reply(iq, StanzaError::InternalServerError, None);
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        if let Some(created) = ensure_roster_node(&mut hosted.service, &owner) {
            done.push(Done::new(origin.clone(), created.effects, created.undo));
        }
        let limit = hosted.service.config().limits.max_items_per_node;
        let page = hosted
            .service
            .items(&self.presence, &owner, ROSTER_NODE, &ItemQuery::All)
            .map(|page| page.items)
            .unwrap_or_default();
        if page.len() >= limit && !page.iter().any(|i| i.id == contact.as_str()) {
            // Publishing would evict another contact's item: refuse rather than lose it.
            let reply = error_reply(iq, StanzaError::NotAllowed, Some("the roster is full"));
            done.push(Done::reply(from.clone(), reply));
            return;
        }
        let payload = String::from_utf8(verona_stream::element_bytes(&item))
            .expect("serialised XML is UTF-8");
        let request = PublishRequest::payload(Some(contact.as_str()), payload);
        match hosted.service.publish(&owner, ROSTER_NODE, request) {
            Ok(outcome) => {
                done.push(Done {
                    origin: origin.clone(),
                    to: Some(Jid::from(from.clone())),
                    request: Some(iq.clone()),
                    reply: Some(iq_result(iq, None)),
                    effects: outcome.effects,
                    undo: Some(outcome.undo),
                    passing: None,
                    sent: None,
                });
                self.refresh_presence(&origin);
            }
            Err(e) => {
                tracing::error!(%user, "storing a roster item: {e}");
                let reply = error_reply(iq, StanzaError::InternalServerError, None);
                done.push(Done::reply(from.clone(), reply));
            }
        }
    }

    /// RFC 6121 §2.5.2: the item goes, and with it both subscriptions and any pending request.
    fn remove_contact(
        &mut self,
        from: &FullJid,
        iq: &Element,
        contact: &BareJid,
        done: &mut Vec<Done>,
    ) {
        let user = from.bare();
        let Some(entry) = self.presence.roster_entry(&user, contact) else {
            // §2.5.3: removing what is not there.
            let reply = error_reply(iq, StanzaError::ItemNotFound, None);
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        if entry.to || entry.ask {
            self.classic_subscription(
                &user,
                contact,
                SubscriptionKind::Unsubscribe,
                Vec::new(),
                done,
            );
            // The contact's presence node may be another shard's, which ends the relation
            // after this batch: the item pushed now already shows it gone.
            self.presence.set_outbound(&user, contact, false, false);
        }
        // RFC 6121 §2.5.2: removing the item cancels the contact's subscription, or refuses
        // its request still waiting, which would otherwise stay pending for good.
        if entry.from || self.presence.is_pending(&user, contact) {
            self.classic_subscription(
                &user,
                contact,
                SubscriptionKind::Unsubscribed,
                Vec::new(),
                done,
            );
        }
        let origin = Origin::Account(user.clone());
        let mut reply = Done::reply(from.clone(), Some(iq_result(iq, None)));
        reply.origin = origin.clone();
        reply.request = Some(iq.clone());
        if let Some(hosted) = self.accounts.get_mut(&user)
            && let Ok(outcome) = hosted.service.retract(
                &Jid::from(user.clone()),
                ROSTER_NODE,
                contact.as_str(),
                false,
            )
        {
            reply.effects = outcome.effects;
            reply.undo = Some(outcome.undo);
        }
        done.push(reply);
        self.refresh_presence(&origin);
        // The item is gone even if a relation remains for a moment: push it either way.
        self.roster_changes.push((user, contact.clone()));
    }

    /// Of the changed roster items, those of another shard's users: that shard is told how the
    /// relation with the owner (whose presence node is here) now stands, and pushes them
    /// itself. Returns this shard's users' changes.
    pub(super) fn tell_other_rosters(
        &mut self,
        mut changes: Vec<(BareJid, BareJid)>,
    ) -> Vec<(BareJid, BareJid)> {
        changes.sort();
        changes.dedup();
        let shard = self.shard;
        let (mine, theirs): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|(user, _)| self.shard_of(user.as_str()) == shard);
        for (user, owner) in theirs {
            if !self.accounts.contains_key(&owner) {
                continue;
            }
            let request = Request::Relation {
                follows: self.presence.has_presence_subscription(&owner, &user),
                asks: self.presence.is_pending(&owner, &user),
                owner,
                contact: user.clone(),
            };
            self.send_to(
                self.shard_of(user.as_str()),
                request,
                super::request::Committed::Always,
            );
        }
        mine
    }

    /// Roster pushes (RFC 6121 §2.1.6) of this shard's users' changed items, to their sessions
    /// that asked for the roster; an item with no relation and no annotation left is removed.
    pub(super) fn push_rosters(&mut self, changes: Vec<(BareJid, BareJid)>) {
        // One digest per user and batch: it reads the whole roster.
        let mut versions: HashMap<&BareJid, String> = HashMap::new();
        for (user, contact) in &changes {
            let sessions: Vec<&FullJid> = self.interested.of(user).collect();
            if sessions.is_empty() {
                continue;
            }
            let item = match self.presence.roster_entry(user, contact) {
                Some(entry) => item_element(&entry),
                None => builder("item", ns::ROSTER)
                    .with("jid", contact.as_str())
                    .with("subscription", "remove")
                    .build(),
            };
            let query = builder("query", ns::ROSTER)
                .with(
                    "ver",
                    versions
                        .entry(user)
                        .or_insert_with(|| self.roster_ver(user))
                        .as_str(),
                )
                .append(item)
                .build();
            for session in sessions {
                let push = crate::xml::push(session.as_str(), query.clone());
                let bytes = Bytes::from(verona_stream::element_bytes(&push));
                self.router.deliver(&Jid::from(session.clone()), bytes);
            }
        }
    }
}

/// Creates the account's `roster` node if it has none; the creation's outcome, if it did.
fn ensure_roster_node(
    service: &mut verona_pubsub::Service,
    owner: &Jid,
) -> Option<verona_pubsub::Outcome<verona_pubsub::NodeId>> {
    if service.node_config(ROSTER_NODE).is_some() {
        return None;
    }
    let request = CreateRequest {
        node: Some(ROSTER_NODE.to_owned()),
        config: crate::eventing::roster::roster_node_config(),
        ..CreateRequest::default()
    };
    service
        .create(owner, request)
        .inspect_err(|e| tracing::error!(%owner, "creating the roster node: {e}"))
        .ok()
}
