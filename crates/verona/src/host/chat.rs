//! One-to-one conversations on the shards (seed §6, `eventing::chat`): a classic message is a
//! publish to the pair's conversation node, made on first use; once committed, each of the
//! two accounts' sessions gets it in its rendering (RFC 6121 §8.5 delivery, XEP-0280 carbons,
//! the seed's Ex. 20 event for a session that speaks XEP-0207), and an account with no session
//! to take it gets it kept (XEP-0160) by its own shard, delivered at its next available
//! presence.

use crate::jids::Bare;
use std::cell::OnceCell;
use std::time::{Instant, SystemTime};

use verona_pubsub::Affiliation;

use verona_storage::ToKeep;

use super::request::Passing;
use super::*;
use crate::eventing::chat::{self, Copy};
use crate::router::SessionHandle;
use crate::xml::set_attr;

/// Kept messages one round delivers to a session that came online at most; the rest follow
/// in later batches, as its queue drains.
const FLUSH: usize = 200;

/// What a conversation archived since its archive was last bounded.
#[derive(Default)]
pub(super) struct SinceTrim {
    messages: usize,
    bytes: usize,
}

/// Why a conversation cannot be made.
enum Refused {
    /// RFC 6121 §8.5.2.2.1: a party has no account.
    NoAccount,
    /// Its initiator holds as many subscriptions as it may (`[pubsub]
    /// max_subscriptions_per_jid`): each conversation between local accounts is one more.
    TooMany,
    /// Its initiator's server has started as many as it may for now (`[limits]
    /// remote_conversations_per_minute`).
    TooFast,
    /// The engine refused to make it (logged).
    Failed,
}

impl Refused {
    fn error(&self) -> StanzaError {
        match self {
            Refused::NoAccount => StanzaError::ServiceUnavailable,
            Refused::TooMany => StanzaError::PolicyViolation,
            Refused::TooFast => StanzaError::ResourceConstraint,
            Refused::Failed => StanzaError::InternalServerError,
        }
    }
}

/// Where a kept message is in its conversation: its item's id, and the item's payload (the
/// message serialized), when the item carries it.
#[derive(Clone, Copy)]
struct Archived<'a> {
    id: &'a str,
    stored: Option<&'a str>,
}

/// Who a message handed back to be kept is from: the bare JID of its `from`.
fn sender_of(message: &Element) -> Option<BareJid> {
    let from = Jid::new(message.attr("from")?).ok()?;
    Some(from.bare())
}

/// A kept message as `party` gets it, made from its stored serialization
/// ([`chat::delivered_text`]), when there is one.
fn spliced(archived: Option<Archived<'_>>, party: &BareJid) -> Option<String> {
    let archived = archived?;
    chat::delivered_text(archived.stored?, archived.id, party)
}

impl ServicesTask {
    /// A `chat` or `normal` message from `from` (a session, or another server's account) to a
    /// local account (or its own).
    pub(super) fn chat(&mut self, from: Jid, to: Jid, stanza: Element, done: &mut Vec<Done>) {
        let parties = chat::ordered(from.bare(), to.bare());
        let node = chat::node(&parties.0, &parties.1);
        let message = chat::vetted(stanza, &from, &to);
        let origin = Origin::Conversation(node.clone());
        if !chat::is_kept(&message) {
            let passing = Passing { from, to, message };
            done.push(Done::passing(origin, passing));
            return;
        }
        if let Err(refused) = self.ensure_conversation(&node, parties, &from.bare(), done) {
            done.push(Done::reply(
                from,
                error_reply(&message, refused.error(), None),
            ));
            return;
        }
        let Some(hosted) = self.conversations.get_mut(&node) else {
            return;
        };
        let request = PublishRequest::payload(None, String::from(&message));
        match hosted.service.publish(&from, &node, request) {
            Ok(outcome) => {
                // Delivery uses the message as it is, instead of parsing the item back.
                let kept = Passing { from, to, message };
                done.push(Done {
                    passing: Some(Box::new(kept)),
                    ..Done::new(origin, outcome.effects, outcome.undo)
                });
            }
            Err(e) => {
                tracing::debug!(%from, %to, "keeping a message: {e}");
                let reply =
                    error_reply(&message, StanzaError::PolicyViolation, Some(&e.to_string()));
                done.push(Done::reply(from, reply));
            }
        }
    }

    /// Makes the conversation node of a pair if it is not there, for `initiator`: owned by the
    /// service, both parties its publishers and subscribed by bare JID. `parties`: the pair
    /// as the node names them ([`chat::ordered`]), which the caller has at hand.
    fn ensure_conversation(
        &mut self,
        node: &str,
        (low, high): (BareJid, BareJid),
        initiator: &BareJid,
        done: &mut Vec<Done>,
    ) -> Result<(), Refused> {
        if self.unknown_accounts.contains(&low) || self.unknown_accounts.contains(&high) {
            return Err(Refused::NoAccount);
        }
        let service_jid = self.pubsub_jid.clone();
        let limit = self.conversations_config.limits.max_subscriptions_per_jid;
        let exists = (self.conversations.get(node))
            .is_some_and(|hosted| hosted.service.node_config(node).is_some());
        if exists {
            return Ok(());
        }
        // A conversation between local accounts counts against its initiator's subscriptions.
        // One with another server's user counts against nobody's (nor does storage count it,
        // `quota.rs`): that server can invent senders without end, and counted against the
        // local party they filled its bound and locked it out of every new contact. Those
        // another server's users start are bounded by a rate per domain instead.
        let local_pair = !self.is_remote(&low) && !self.is_remote(&high);
        if local_pair
            && (self.subscriptions_held)
                .get(initiator)
                .is_some_and(|held| *held >= limit)
        {
            return Err(Refused::TooMany);
        }
        // A room of ours inviting one of our accounts is neither: its inviter's invitations are
        // counted as kept messages (`may_invite`).
        let ours = initiator.domain().as_str() == self.rooms_jid.as_str();
        if self.is_remote(initiator) && !ours {
            let domain = initiator.domain().to_string();
            if !self.remote_conversations.take(&domain, Instant::now()) {
                tracing::info!(%initiator, "conversation refused: its server starts too many");
                return Err(Refused::TooFast);
            }
        }
        let Some(hosted) = self.conversations.get_mut(node) else {
            return Err(Refused::NoAccount);
        };
        let request = CreateRequest {
            node: Some(node.to_owned()),
            config: chat::node_config(),
            affiliations: [(low.clone(), Affiliation::Publisher)]
                .into_iter()
                .chain([(high.clone(), Affiliation::Publisher)])
                .collect(),
            subscribe_creator: false,
        };
        let origin = Origin::Conversation(node.to_owned());
        match hosted.service.create(&service_jid, request) {
            Ok(outcome) => done.push(Done::new(origin.clone(), outcome.effects, outcome.undo)),
            Err(e) => {
                tracing::error!(node, "making a conversation: {e}");
                return Err(Refused::Failed);
            }
        }
        let mut parties = vec![low];
        if parties[0] != high {
            parties.push(high);
        }
        if local_pair {
            for party in &parties {
                *self.subscriptions_held.entry(party.clone()).or_default() += 1;
            }
        }
        let Some(hosted) = self.conversations.get_mut(node) else {
            return Err(Refused::NoAccount);
        };
        for party in parties {
            let jid = Jid::from(party);
            match hosted
                .service
                .subscribe(&self.presence, &service_jid, node, &jid, None)
            {
                Ok(outcome) => done.push(Done::new(origin.clone(), outcome.effects, outcome.undo)),
                Err(e) => tracing::error!(node, %jid, "subscribing a party: {e}"),
            }
        }
        Ok(())
    }

    /// A publish to a conversation by a native client (seed Ex. 19): exactly one
    /// `<message xmlns='jabber:client'/>` per item, which becomes what a classic publish makes
    /// (from the publishing session, to the other party). Anything else is refused.
    pub(super) fn vet_conversation_request(
        &mut self,
        from: &FullJid,
        node: &str,
        stanza: &mut Element,
        done: &mut Vec<Done>,
    ) -> Result<(), StanzaError> {
        let Some((low, high)) = chat::parties(node) else {
            return Err(StanzaError::ItemNotFound);
        };
        let me = from.bare();
        if me != low && me != high {
            return Err(StanzaError::Forbidden);
        }
        // XEP-0191 holds for a native publish as for a classic message: the blocked party
        // hears nothing of the blocker, and the blocker is told it blocked the other.
        let other_party = if me == low { &high } else { &low };
        if self.router.blocks(&me, other_party) {
            return Err(StanzaError::Blocked);
        }
        if self.router.blocks(other_party, &me) {
            return Err(StanzaError::ServiceUnavailable);
        }
        // The server makes conversations, and nobody reconfigures, purges or deletes one,
        // takes back what was said (the archive keeps it), or leaves one: a party's
        // subscription is how the account's archive and its deletion find the conversation.
        if stanza.has_child("pubsub", ns::PUBSUB_OWNER)
            || stanza.get_child("pubsub", ns::PUBSUB).is_some_and(|p| {
                ["create", "retract", "unsubscribe"]
                    .iter()
                    .any(|name| p.has_child(name, ns::PUBSUB))
            })
        {
            return Err(StanzaError::NotAllowed);
        }
        let Some(publish) = stanza
            .get_child_mut("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child_mut("publish", ns::PUBSUB))
        else {
            return Ok(());
        };
        let other = Jid::from(if me == low { high.clone() } else { low.clone() });
        for item in publish.children_mut() {
            let children: Vec<Element> = item.take_contents_as_children().collect();
            let Ok([mut message]) = <[Element; 1]>::try_from(children) else {
                return Err(StanzaError::InvalidPayload);
            };
            if !message.is("message", ns::CLIENT) {
                return Err(StanzaError::InvalidPayload);
            }
            // What the classic face passes between two accounts, and as it passes it: a
            // conversation's message is a chat (DESIGN §3) unless it says it is normal.
            match message.attr("type") {
                None => set_attr(&mut message, "type", "chat"),
                Some("chat" | "normal") => {}
                Some(_) => return Err(StanzaError::InvalidPayload),
            }
            let vetted = chat::vetted(message, from, &other);
            // The item id is the message's archive id (XEP-0359), the server's to give: a
            // party's own could replace what the other said.
            *item = builder("item", ns::PUBSUB).append(vetted).build();
        }
        self.ensure_conversation(node, (low, high), &me, done)
            .map_err(|refused| refused.error())
    }

    /// Delivers a committed notification of a conversation: each of its messages to the two
    /// parties' sessions. `published`: the message of a classic publish, as it was kept.
    pub(super) fn deliver_conversation(
        &self,
        hosted: &Hosted,
        effect: &Effect,
        published: Option<&Passing>,
    ) {
        let Effect::Notify(notification) = effect else {
            return;
        };
        let Event::Items { items } = &notification.event else {
            return;
        };
        let context = ServiceContext {
            jid: &hosted.jid,
            kind: hosted.kind,
            resolver: &self.presence,
        };
        // The seed's Ex. 20, for sessions that speak XEP-0207: rendered once per party, when
        // one of them is there.
        let events = std::cell::OnceCell::new();
        let events = || {
            events
                .get_or_init(|| verona_pubsub_xmpp::render(&context, std::slice::from_ref(effect)))
        };
        for item in items.iter() {
            let native = |party: &BareJid| {
                events()
                    .iter()
                    .find(|out| out.to.bare() == *party)
                    .map(|out| out.stanza.clone())
            };
            let archived = Archived {
                id: &item.id,
                stored: item.payload.as_deref(),
            };
            if let Some(published) = published.filter(|_| items.len() == 1) {
                let (from, to) = (&published.from, &published.to);
                self.pass_on(from, to, &published.message, Some(archived), &native);
                continue;
            }
            let message: Option<Element> = item.payload.as_deref().and_then(|p| p.parse().ok());
            let Some(message) = message else {
                continue;
            };
            let from = &item.publisher;
            let Some(to) = message.attr("to").and_then(|to| Jid::new(to).ok()) else {
                continue;
            };
            self.pass_on(from, &to, &message, Some(archived), &native);
        }
    }

    /// Delivers a message that is not kept.
    pub(super) fn deliver_passing(&self, passing: &Passing) {
        self.pass_on(&passing.from, &passing.to, &passing.message, None, &|_| {
            None
        });
    }

    /// Whom a message kept for later counts against (`[limits] offline_share_percent`, and
    /// the recipient's blocklist): its sender; but for an invitation one of our rooms passes
    /// on, the inviter the room itself named in it, so that the rooms one account makes share
    /// one share of an invitee's queue, and blocking the inviter drops those kept too.
    fn kept_origin(&self, sender: &BareJid, message: &Element) -> BareJid {
        if sender.domain().as_str() != self.rooms_jid.as_str() {
            return sender.clone();
        }
        message
            .get_child("x", ns::MUC_USER)
            .and_then(|x| x.get_child("invite", ns::MUC_USER))
            .and_then(|invite| invite.attr("from"))
            .and_then(|inviter| BareJid::new(inviter).ok())
            .unwrap_or_else(|| sender.clone())
    }

    /// RFC 6121 §8.5.2–§8.5.3 for one message, with XEP-0280 carbons: the recipient's session
    /// it names, if connected, else each available one; the other available sessions of both
    /// accounts with carbons enabled get copies. `archived`: the message was kept; then a
    /// recipient with no session to take it has it kept for later, and sessions speaking
    /// XEP-0207 get the `native` event instead. Everything is offered, never forced: one
    /// user's traffic never disconnects another (issue #11 M2).
    fn pass_on(
        &self,
        from: &Jid,
        to: &Jid,
        message: &Element,
        archived: Option<Archived<'_>>,
        native: &dyn Fn(&BareJid) -> Option<verona_stream::Wire>,
    ) {
        let archive_id = archived.map(|archived| archived.id);
        let sender = from.bare();
        let recipient = to.bare();
        let copied = chat::is_copied(message);
        if self.is_remote(&recipient) {
            // Its server delivers it, keeps it and numbers it in its own archive: no
            // stanza-id of ours goes with it.
            let out = chat::delivered(message, None, &recipient, None);
            self.router
                .deliver(to, Bytes::from(verona_stream::element_bytes(&out)));
        }
        // §8.5.3.1: a full JID names a connected resource, available or not; otherwise the
        // available ones get it (§8.5.2.1.1).
        let sessions: Vec<(FullJid, SessionHandle)> = self
            .router
            .resources_of(&recipient)
            .into_iter()
            .filter(|(jid, _)| **jid != *from || to.try_as_full() == Ok(jid))
            .collect();
        let named = to
            .try_as_full()
            .ok()
            .filter(|full| sessions.iter().any(|(jid, _)| jid == *full));
        let available = sessions
            .iter()
            .filter(|(jid, handle)| handle.is_available() || named == Some(jid));
        let mut received = None;
        // What the addressed sessions get, serialized once for all of them.
        let mut received_bytes: Option<Bytes> = None;
        let mut taken = 0;
        let mut refused = 0;
        for (jid, handle) in available {
            // §8.5.2.1.1: a bare JID's message goes to the available resources with a
            // non-negative priority; the others may still get a carbon.
            let addressed = match named {
                Some(named) => named == jid,
                None => handle.priority() >= 0,
            };
            if archive_id.is_some() && !handle.wants_classic(Some(true)) {
                // The seed's bcc is the carbon of a session speaking XEP-0207: the event goes
                // to the sessions a classic message would reach, and as a copy to the others,
                // unless the sender asked for none (XEP-0280 §6: `<private/>`, `<no-copy/>`).
                if (addressed || copied)
                    && let Some(event) = native(&recipient)
                {
                    let took = handle.offer(event);
                    taken += usize::from(took && addressed);
                }
                continue;
            }
            if addressed {
                let bytes = received_bytes.get_or_insert_with(|| {
                    Bytes::from(spliced(archived, &recipient).unwrap_or_else(|| {
                        String::from(&*received.get_or_insert_with(|| {
                            chat::delivered(message, archive_id, &recipient, None)
                        }))
                    }))
                });
                let took = handle.offer(bytes.clone());
                taken += usize::from(took);
                refused += usize::from(!took && !handle.is_parked());
            } else if copied && handle.carbons() {
                let delivered = received
                    .get_or_insert_with(|| chat::delivered(message, archive_id, &recipient, None));
                let copy = chat::carbon(delivered, Copy::Received, &recipient, jid);
                handle.offer(Bytes::from(verona_stream::element_bytes(&copy)));
            }
        }
        if taken == 0 && refused > 0 {
            // Issue #11 M2: a recipient whose queue is full is not disconnected by a flood;
            // the sender hears it was not delivered now (it is in the archive if kept), as far
            // as its own queue takes such notices: a flooder is not closed by its bounces.
            // A parked session's full queue is not counted: nobody reads it, so what it
            // refuses is kept offline below, and comes after that queue on resumption.
            if let Some(reply) = error_reply(message, StanzaError::ResourceConstraint, None)
                && let Ok(from) = from.try_as_full()
                && let Some(session) = self.router.session(from)
            {
                session.offer(Bytes::from(verona_stream::element_bytes(&reply)));
            }
            return;
        }
        // RFC 6121 §8.5.2.2.1: a message that is not kept (a `no-store` hint, a payload
        // the archive does not take) and that no session took is not lost without a word:
        // the sender hears `service-unavailable`, unless it only said how the chat goes.
        if taken == 0
            && archive_id.is_none()
            && recipient != sender
            && !self.is_remote(&recipient)
            && !chat::is_only_state(message)
            && let Some(reply) = error_reply(message, StanzaError::ServiceUnavailable, None)
        {
            self.router
                .deliver(from, Bytes::from(verona_stream::element_bytes(&reply)));
        }
        if taken == 0
            && archive_id.is_some()
            && let Some(account) =
                (recipient != sender && !self.is_remote(&recipient)).then_some(&recipient)
        {
            let kept = spliced(archived, account).unwrap_or_else(|| {
                String::from(&chat::delivered(message, archive_id, account, None))
            });
            let request = Request::Offline {
                account: account.clone(),
                stanzas: vec![kept],
                origin: Some(self.kept_origin(&sender, message)),
                at: SystemTime::now(),
            };
            self.send_peer(self.shard_of(account.as_str()), request);
        }
        if recipient == sender {
            return;
        }
        let mut sent = None;
        for (jid, handle) in self.router.resources_of(&sender) {
            let sending = *jid == *from;
            if !handle.is_available() && !sending {
                continue;
            }
            if archive_id.is_some() && !handle.wants_classic(Some(true)) {
                // The seed's bcc: the publisher's own sessions get the event too (the
                // sending one always, the others unless it asked for no copies).
                if (sending || copied)
                    && let Some(event) = native(&sender)
                {
                    handle.offer(event);
                }
            } else if !sending && copied && handle.carbons() {
                let delivered =
                    sent.get_or_insert_with(|| chat::delivered(message, archive_id, &sender, None));
                let copy = chat::carbon(delivered, Copy::Sent, &sender, &jid);
                handle.offer(Bytes::from(verona_stream::element_bytes(&copy)));
            }
        }
    }

    /// A message for an account of this shard that had no session to take it: delivered if
    /// one is available now, else kept once the batch is done. `origin`: who it is from (a
    /// sender's or a publisher's bare JID); `None`: each stanza's own sender, its `from`.
    pub(super) fn offline(
        &mut self,
        account: BareJid,
        stanzas: Vec<String>,
        origin: Option<BareJid>,
        at: SystemTime,
    ) {
        let origin_of = |stanza: &str| match &origin {
            Some(origin) => origin.to_string(),
            None => stanza
                .parse::<Element>()
                .ok()
                .and_then(|message| sender_of(&message))
                .map(|from| from.to_string())
                .unwrap_or_default(),
        };
        // A session coming online in this batch gets its kept messages after it: these join
        // them, so that they come in order.
        if self
            .came_online
            .iter()
            .any(|session| session.bare() == account)
        {
            for stanza in stanzas {
                let origin = origin_of(&stanza);
                let kept = ToKeep { stanza, at, origin };
                self.to_keep.push((account.clone(), kept));
            }
            return;
        }
        // As for a message to the bare JID.
        let (sessions, available): (Vec<FullJid>, Vec<SessionHandle>) =
            self.router.message_sessions(&account).into_iter().unzip();
        // Once a queue is full, the rest wait behind what it refused, in order.
        let mut refused = false;
        for stanza in stanzas {
            let Ok(message) = stanza.parse::<Element>() else {
                continue;
            };
            // Each rendering made once, for the sessions that get it.
            let (classic, native) = (OnceCell::new(), OnceCell::new());
            // A session that gets it has it, whenever it first came: if it ends without
            // delivering it, the account's others do not keep it again (sm.rs, `keep`).
            let archived = chat::archive_key(&message, self.pubsub_jid.as_str(), &account);
            let delivered = match refused {
                true => 0,
                false => (available.iter())
                    .filter(|handle| {
                        let speaks_0207 = !handle.wants_classic(Some(true));
                        let rendering = if speaks_0207 { &native } else { &classic };
                        let late = rendering
                            .get_or_init(|| self.late(&account, &message, at, speaks_0207));
                        let took = handle.offer(late.clone());
                        if took && let Some(archived) = &archived {
                            handle.offered_late(archived);
                        }
                        took
                    })
                    .count(),
            };
            if delivered == 0 {
                refused |= !available.is_empty();
                let origin = match &origin {
                    Some(origin) => origin.to_string(),
                    None => sender_of(&message)
                        .map(|from| from.to_string())
                        .unwrap_or_default(),
                };
                let kept = ToKeep { stanza, at, origin };
                self.to_keep.push((account.clone(), kept));
            }
        }
        // What a full queue refused is kept, and comes from storage as the queue drains
        // (as kept messages come at a session's first presence): not at the next one.
        if refused {
            self.came_online.extend(sessions);
        }
    }

    /// A kept message as a session gets it late (XEP-0160), with its delay (XEP-0203): one of
    /// a conversation, to a session that speaks XEP-0207, as the node's event it would have
    /// had live (DESIGN §3, rendering rule 1); anything else as it was kept.
    fn late(
        &self,
        account: &BareJid,
        message: &Element,
        at: SystemTime,
        speaks_0207: bool,
    ) -> verona_stream::Wire {
        let event = speaks_0207
            .then(|| chat::kept_event(message, account, &self.domain_name, at))
            .flatten();
        let context = ServiceContext {
            jid: &Jid::from(self.pubsub_jid.clone()),
            kind: ServiceKind::Pubsub,
            resolver: &self.presence,
        };
        let rendered = event.and_then(|event| verona_pubsub_xmpp::render(&context, &[event]).pop());
        if let Some(out) = rendered {
            return out.stanza;
        }
        let late = Some((at, self.domain_name.as_str()));
        let message = chat::delivered(message, None, account, late);
        Bytes::from(verona_stream::element_bytes(&message)).into()
    }

    /// Keeps each conversation's archive within [`chat::ARCHIVED`] messages and
    /// `[limits] conversation_archive_bytes`: counted as the batches store them, trimmed in
    /// storage once a tenth of either bound has come in since. A conversation first written
    /// to since the server started (or since its count was forgotten) is trimmed at once: its
    /// archive may have grown under larger bounds, or before the byte bound.
    pub(super) async fn bound_archives(&mut self, writes: &[PubsubWrite]) {
        let prefix = chat::key_prefix(self.pubsub_jid.as_str());
        let mut due = Vec::new();
        for write in writes {
            let StoreOp::ItemStored { item, .. } = &write.op else {
                continue;
            };
            if !write.service.starts_with(&prefix) {
                continue;
            }
            let bytes = item.id.len() + item.payload.as_deref().map_or(0, str::len);
            let since = match self.archived_since_trim.get_mut(&write.service) {
                Some(since) => since,
                None => {
                    due.push(write.service.clone());
                    (self.archived_since_trim)
                        .entry(write.service.clone())
                        .or_default()
                }
            };
            since.messages += 1;
            since.bytes += bytes;
            if since.messages >= chat::ARCHIVED / 10 || since.bytes >= self.archive_bytes / 10 {
                due.push(write.service.clone());
            }
        }
        due.sort_unstable();
        due.dedup();
        for service in due {
            self.archived_since_trim
                .insert(service.clone(), SinceTrim::default());
            match self
                .stores
                .pubsub
                .trim_items(&service, chat::ARCHIVED, self.archive_bytes)
                .await
            {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(%service, removed, "archive bounded"),
                Err(e) => tracing::error!(%service, "bounding an archive: {e}"),
            }
        }
        // Counts of conversations long gone are forgotten; their next message trims them.
        if self.archived_since_trim.len() > 100_000 {
            self.archived_since_trim.clear();
        }
    }

    /// Stores the messages the batch kept, each account's queue bounded by `[limits]
    /// max_offline_messages` and `max_offline_bytes`, and what one origin holds of it by
    /// `offline_share_percent` of each, so that one sender's or publisher's flood leaves room
    /// for everyone else's (issue #11). Beyond them a message stays in the archive (or the
    /// node's items) only. Nothing is kept from an origin the account blocks (XEP-0191 §3.3).
    pub(super) async fn keep_offline(&mut self) {
        let mut by_account: BTreeMap<BareJid, Vec<ToKeep>> = BTreeMap::new();
        for (account, kept) in self.to_keep.drain(..) {
            by_account.entry(account).or_default().push(kept);
        }
        let bounds = self.offline;
        let share = bounds.share_percent;
        let (share_messages, share_bytes) = (
            (bounds.messages * share / 100).max(1),
            bounds.bytes * share / 100,
        );
        for (account, stanzas) in by_account {
            // Only an account that exists has a queue (a subscriber of a node may be any JID):
            // nothing waits for whoever registers a name later.
            if !residency::account_exists(&self.stores, &account).await {
                continue;
            }
            self.with_kept.insert(account.clone());
            let offline = &self.stores.offline;
            let held = match offline.held(account.as_str()).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::error!(%account, "counting kept messages: {e}");
                    continue;
                }
            };
            let mut total = (0, 0);
            let mut by_origin: HashMap<String, (usize, usize)> = HashMap::new();
            for held in held {
                total.0 += held.messages;
                total.1 += held.bytes;
                by_origin.insert(held.origin, (held.messages, held.bytes));
            }
            let (mut full, mut over_share, mut blocked) = (0, 0, 0);
            let mut keep = Vec::with_capacity(stanzas.len());
            for kept in stanzas {
                if BareJid::new(&kept.origin)
                    .ok()
                    .is_some_and(|from| self.router.blocks(&account, &from))
                {
                    blocked += 1;
                    continue;
                }
                let bytes = kept.stanza.len();
                if total.0 + 1 > bounds.messages || total.1 + bytes > bounds.bytes {
                    full += 1;
                    self.not_kept(&kept.stanza);
                    continue;
                }
                let origin = by_origin.entry(kept.origin.clone()).or_default();
                if origin.0 + 1 > share_messages || origin.1 + bytes > share_bytes {
                    over_share += 1;
                    self.not_kept(&kept.stanza);
                    continue;
                }
                *origin = (origin.0 + 1, origin.1 + bytes);
                total = (total.0 + 1, total.1 + bytes);
                keep.push(kept);
            }
            // Debug, not info: senders choose how often this happens, at up to one line per
            // message they are allowed to send.
            if full + over_share + blocked > 0 {
                tracing::debug!(%account, full, over_share, blocked, "offline messages not kept");
            }
            if !keep.is_empty()
                && let Err(e) = offline.keep(account.as_str(), &keep).await
            {
                tracing::error!(%account, "keeping {} messages: {e}", keep.len());
            }
        }
    }

    /// XEP-0160 §2: a person's message the recipient's offline storage does not take (full,
    /// or the sender's share of it) is answered `service-unavailable`, so that the sender
    /// knows it waits in the archive only. A node's notification is not: its publisher paid
    /// for the copy, and the node keeps the item.
    fn not_kept(&self, stanza: &str) {
        let Ok(message) = stanza.parse::<Element>() else {
            return;
        };
        let Some(from) = message.attr("from").and_then(|from| Jid::new(from).ok()) else {
            return;
        };
        if from.node().is_none() || !chat::is_conversational(&message) {
            return;
        }
        let why = Some("the recipient's offline storage is full: the message is in the archive");
        if let Some(reply) = error_reply(&message, StanzaError::ServiceUnavailable, why) {
            self.router
                .deliver(&from, Bytes::from(verona_stream::element_bytes(&reply)));
        }
    }

    /// XEP-0160: the sessions that came online in this batch get their account's kept
    /// messages, oldest first, with their delay; delivered ones leave storage.
    pub(super) async fn flush_offline(&mut self) {
        for session in std::mem::take(&mut self.came_online) {
            let Some(handle) = self.router.session(&session) else {
                continue;
            };
            // XEP-0160 §4: not to a resource with a negative priority (it stays kept).
            if !handle.is_available() || handle.priority() < 0 {
                continue;
            }
            let account = session.bare();
            if !self.with_kept.contains(&account) {
                continue;
            }
            let offline = &self.stores.offline;
            let kept = match offline.kept(account.as_str(), FLUSH).await {
                Ok(kept) => kept,
                Err(e) => {
                    tracing::error!(%account, "reading kept messages: {e}");
                    continue;
                }
            };
            let mut through = None;
            for message in &kept {
                let Ok(stanza) = message.stanza.parse::<Element>() else {
                    tracing::error!(%account, seq = message.seq, "a kept message is not XML");
                    through = Some(message.seq);
                    continue;
                };
                // XEP-0191 §3.3: what came from someone the account has blocked since is not
                // delivered; it leaves. (Prosody's mod_blocklist drops stanzas as they are
                // routed, and mod_offline sends what it stored before the block as it is.)
                if BareJid::new(&message.origin)
                    .ok()
                    .is_some_and(|from| self.router.blocks(&account, &from))
                {
                    through = Some(message.seq);
                    continue;
                }
                let speaks_0207 = !handle.wants_classic(Some(true));
                if !handle.offer(self.late(&account, &stanza, message.at, speaks_0207)) {
                    break;
                }
                if let Some(archived) =
                    chat::archive_key(&stanza, self.pubsub_jid.as_str(), &account)
                {
                    handle.offered_late(&archived);
                }
                through = Some(message.seq);
            }
            if kept.is_empty() {
                self.with_kept.remove(&account);
                continue;
            }
            let Some(through) = through else {
                continue;
            };
            if let Err(e) = offline.delivered(account.as_str(), through).await {
                tracing::error!(%account, "removing delivered messages: {e}");
                continue;
            }
            // More wait: the next round comes after the next batch, as the queue drains.
            if kept.len() == FLUSH || kept.last().is_some_and(|last| last.seq != through) {
                self.peers[self.shard].send(Request::Flush(session)).ok();
            } else {
                // The queue is empty: nothing to look for until this shard keeps another.
                self.with_kept.remove(&account);
            }
        }
    }
}
