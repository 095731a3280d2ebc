//! A bound session: capabilities gating of presence (XEP-0115), then each stanza classified
//! once by [`route::classify`](super::route::classify) and dispatched to the service or view
//! that handles it.

use crate::jids::Bare;
use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::time::Instant;

use super::route::{self, Route, is_pep_request, publishes_presence};
use super::{Connection, End, State, fault, random_id};
use crate::eventing::presence::{Farewell, SubscriptionKind, priority, show};
use crate::eventing::{caps, chat, presence};
use crate::host::PubsubHandle;
use crate::iq::{self, EndSessions, Target};
use crate::router::{CloseReason, SessionEnds, SessionHandle};
use crate::xml::{BuilderExt, StanzaError, StreamError, error_reply, set_attr};

/// How long presence waits for the client's answer about its capabilities.
const CAPS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long after that a late answer is still taken (a phone on a slow link), as Prosody
/// takes one whenever it comes.
const CAPS_LATE: std::time::Duration = std::time::Duration::from_secs(60);
/// Presence stanzas held at most while waiting for that answer.
const CAPS_HELD: usize = 16;

pub(super) struct Session {
    pub(super) jid: FullJid,
    pub(super) handle: SessionHandle,
    /// The services, drawing on this session's queue budget.
    pub(super) pubsub: PubsubHandle,
    pub(super) ends: SessionEnds,
    /// A disco#info question about the client's capabilities, waiting for its answer.
    pub(super) caps_wait: Option<Box<caps::Pending>>,
    /// The capabilities whose answer did not verify: not asked about again.
    pub(super) caps_refused: Option<Box<str>>,
    /// XEP-0198, once enabled.
    pub(super) sm: Option<Box<super::sm::Sm>>,
    /// XEP-0352: while the client is inactive, what it need not see at once.
    pub(super) inactive: Option<Box<super::csi::Held>>,
    /// Whom the session sent directed available presence (RFC 6121 §4.6), at most
    /// [`MAX_DIRECTED`]: they get its unavailable presence when it goes offline. Boxed, as
    /// most sessions never send any and an idle one should not carry the room.
    pub(super) directed: Option<Box<Directed>>,
}

#[derive(Default)]
pub(super) struct Directed(Vec<Jid>);

/// What an answer to the capabilities question lets go on.
enum Answered {
    /// The presence held for it.
    Held(Vec<Element>),
    /// Nothing was held any more: the features came late.
    Late,
}

/// Directed presence remembered per session at most; later ones are not followed by an
/// unavailable presence.
const MAX_DIRECTED: usize = 64;

impl Session {
    /// Notes directed presence (available adds its address, unavailable removes it).
    fn note_directed(&mut self, el: &Element) {
        let Some(to) = el.attr("to").and_then(|to| Jid::new(to).ok()) else {
            return;
        };
        let directed = &mut self.directed.get_or_insert_with(Box::default).0;
        match el.attr("type") {
            None if !directed.contains(&to) && directed.len() < MAX_DIRECTED => directed.push(to),
            Some("unavailable") => directed.retain(|jid| *jid != to),
            _ => {}
        }
        if directed.is_empty() {
            self.directed = None;
        }
    }

    /// The unavailable presence each address of the directed presence gets (RFC 6121 §4.6.3),
    /// forgetting them; called before the session's broadcast presence is withdrawn.
    /// `farewell`: what the session's own unavailable presence said, if it sent one.
    pub(super) async fn undirect(
        &mut self,
        router: &crate::router::Router,
        pubsub: &PubsubHandle,
        farewell: Option<&Farewell>,
    ) {
        let Some(directed) = self.directed.take() else {
            return;
        };
        let me = self.jid.bare();
        // Those who follow the account's presence get the broadcast's unavailable presence: a
        // directed one besides would be its twin (Prosody does not track them either).
        let contacts = directed.0.iter().map(Jid::to_bare).collect();
        let reached = pubsub.reached(self.jid.clone(), contacts).await;
        for to in directed.0 {
            // A block made since crosses nothing, this either.
            let them = to.bare();
            if reached.contains(&them) || router.blocks(&me, &them) || router.blocks(&them, &me) {
                continue;
            }
            let mut presence = crate::xml::builder("presence", crate::xml::ns::CLIENT)
                .with("type", "unavailable")
                .with("from", self.jid.as_str())
                .with("to", to.as_str())
                .build();
            if let Some(farewell) = farewell {
                farewell.apply(&mut presence);
            }
            let bytes = Bytes::from(verona_stream::element_bytes(&presence));
            match to.try_as_full() {
                // A local account's available sessions, as the available presence went.
                Err(bare) if !router.sessions_of(bare).is_empty() => {
                    for full in router.available_sessions(bare) {
                        router.deliver(&Jid::from(full), bytes.clone());
                    }
                }
                _ => {
                    router.deliver(&to, bytes);
                }
            }
        }
    }
}

impl Connection {
    /// XEP-0280 §6: a private message to a room occupant, as the sender's other sessions that
    /// enabled carbons get it (`sent`), so that each shows the conversation whole.
    fn carbon_private_message(&self, me: &FullJid, el: &Element) {
        let to_occupant = el
            .attr("to")
            .and_then(|to| Jid::new(to).ok())
            .is_some_and(|to| to.resource().is_some());
        let groupchat = el.attr("type") == Some("groupchat");
        if el.name() != "message" || !to_occupant || groupchat || !chat::is_copied(el) {
            return;
        }
        let account = me.bare();
        for (jid, handle) in self.shared.router.resources_of(&account) {
            if jid != *me && handle.is_available() && handle.carbons() {
                let copy = chat::carbon(el, chat::Copy::Sent, &account, &jid);
                handle.offer(Bytes::from(verona_stream::element_bytes(&copy)));
            }
        }
    }

    /// XEP-0280 §6: an error a session sends another account's session in reply to a message
    /// goes to the other sessions of both accounts that enabled carbons (`sent`, `received`),
    /// so that those which saw the message see that it failed.
    fn carbon_error(&self, me: &FullJid, el: &Element, to: &Jid) {
        if el.name() != "message"
            || el.attr("type") != Some("error")
            || el.has_child("private", chat::CARBONS)
        {
            return;
        }
        let router = &self.shared.router;
        // One to a resource that is not there goes nowhere (RFC 6121 §8.5.3.2.1): nobody is
        // told of it either (found by audit round 28).
        if to
            .try_as_full()
            .is_ok_and(|to| router.session(to).is_none())
        {
            return;
        }
        let copies = |account: &BareJid, except: &FullJid, copy: chat::Copy| {
            for (jid, handle) in router.resources_of(account) {
                if jid != *except && handle.is_available() && handle.carbons() {
                    let carbon = chat::carbon(el, copy, account, &jid);
                    handle.offer(Bytes::from(verona_stream::element_bytes(&carbon)));
                }
            }
        };
        copies(&me.bare(), me, chat::Copy::Sent);
        if let Ok(to) = to.try_as_full()
            && to.bare() != me.bare()
        {
            copies(&to.bare(), to, chat::Copy::Received);
        }
    }

    pub(super) async fn route(&mut self, el: Element) -> Result<(), End> {
        let ready = match self.caps_answer(&el) {
            Some(Answered::Held(released)) => released,
            Some(Answered::Late) => {
                // Its presence went on without them: what `+notify` brings a session coming
                // online comes now (XEP-0163 §4.3).
                if let State::Bound(session) = &self.state {
                    session.pubsub.features_known(session.jid.clone()).await;
                }
                Vec::new()
            }
            None => self.caps_gate(el),
        };
        for el in ready {
            self.dispatch(el).await?;
        }
        Ok(())
    }

    /// The client's answer to the capabilities question: verified features are kept (for
    /// every session with the same hash) and the held presence goes on.
    fn caps_answer(&mut self, el: &Element) -> Option<Answered> {
        let State::Bound(session) = &mut self.state else {
            return None;
        };
        let wait = session.caps_wait.as_ref()?;
        let answers = el.name() == "iq"
            && matches!(el.attr("type"), Some("result" | "error"))
            && el.attr("id") == Some(wait.id.as_str());
        if !answers {
            return None;
        }
        let wait = session.caps_wait.take()?;
        match caps::verify(&wait.caps, el) {
            Some(features) => {
                self.shared.caps.insert(&wait.caps, features.clone());
                session.handle.set_features(features);
                if wait.late {
                    return Some(Answered::Late);
                }
            }
            None => {
                tracing::debug!(jid = %session.jid, "capabilities not verified");
                session.caps_refused = Some(caps::key(&wait.caps).into());
            }
        }
        Some(Answered::Held(wait.held))
    }

    /// What to route now: the stanza, unless it is presence that must wait for capabilities.
    fn caps_gate(&mut self, el: Element) -> Vec<Element> {
        let State::Bound(session) = &mut self.state else {
            return vec![el];
        };
        let own = el
            .attr("to")
            .is_none_or(|to| crate::jids::parse_bare(to).is_ok_and(|to| to == session.jid.bare()));
        let presence = (el.name() == "presence" && el.attr("to").is_none())
            || (own && is_pep_request(&el) && publishes_presence(&el));
        if !presence {
            return vec![el];
        }
        if let Some(wait) = session.caps_wait.as_mut().filter(|wait| !wait.late) {
            wait.held.push(el);
            if wait.held.len() < CAPS_HELD {
                return Vec::new();
            }
            // A client sending this much presence without answering is not waited for.
            let wait = session.caps_wait.take().expect("waiting");
            session.caps_refused = Some(caps::key(&wait.caps).into());
            return wait.held;
        }
        let Some(advertised) = caps::advertised(&el) else {
            return vec![el];
        };
        if let Some(features) = self.shared.caps.get(&advertised) {
            session.handle.set_features(features);
            return vec![el];
        }
        if session.caps_refused.as_deref() == Some(caps::key(&advertised).as_str()) {
            return vec![el];
        }
        // Asked already and the answer is late: not asked again, nor held again.
        if session
            .caps_wait
            .as_ref()
            .is_some_and(|wait| caps::key(&wait.caps) == caps::key(&advertised))
        {
            return vec![el];
        }
        let id = random_id();
        let query = caps::query(&advertised, &id, &self.shared.domain, session.jid.as_str());
        session.caps_wait = Some(Box::new(caps::Pending {
            id,
            caps: advertised,
            held: vec![el],
            until: Instant::now() + CAPS_TIMEOUT,
            late: false,
        }));
        self.send(&query);
        Vec::new()
    }

    /// The capabilities question went unanswered: the held presence goes on without them,
    /// and a late answer is taken for a while yet ([`CAPS_LATE`]); then the question is
    /// given up.
    pub(super) fn caps_timeout(&mut self) -> Option<Vec<Element>> {
        let State::Bound(session) = &mut self.state else {
            return None;
        };
        let wait = session.caps_wait.as_mut()?;
        let now = Instant::now();
        if wait.until > now {
            return None;
        }
        if !wait.late {
            wait.late = true;
            wait.until = now + CAPS_LATE;
            session.handle.set_features_late();
            return Some(std::mem::take(&mut wait.held));
        }
        let wait = session.caps_wait.take()?;
        session.caps_refused = Some(caps::key(&wait.caps).into());
        Some(Vec::new())
    }

    /// A stanza from a bound session: `from` checked and stamped, classified once, then
    /// handed to the service or view of its route.
    pub(super) async fn dispatch(&mut self, mut el: Element) -> Result<(), End> {
        let State::Bound(session) = &self.state else {
            unreachable!("route() is only called when bound");
        };
        let me = session.jid.clone();
        let handle = session.handle.clone();
        let pubsub = session.pubsub.clone();
        if let Some(from) = el.attr("from") {
            let matches = Jid::new(from)
                .is_ok_and(|j| j.as_str() == me.as_str() || j.as_str() == me.bare().as_str());
            if !matches {
                return Err(fault(StreamError::InvalidFrom, format!("you are {me}")));
            }
        }
        set_attr(&mut el, "from", me.as_str());
        if let Some(to) = el.attr("to").and_then(crate::jids::canonical) {
            set_attr(&mut el, "to", &to);
        }
        let here = route::Addresses {
            domain: &self.shared.domain,
            pubsub: pubsub.jid(),
            rooms: pubsub.rooms_jid(),
        };
        let classified = route::classify(&el, &me, here);
        if let Some(peer) = &classified.peer
            && self.blocked(&el, &me.bare(), peer)
        {
            return Ok(());
        }
        if el.name() == "presence"
            && matches!(
                classified.route,
                Route::Session(_) | Route::Account(_) | Route::Remote
            )
            && let State::Bound(session) = &mut self.state
        {
            session.note_directed(&el);
        }
        // What reaches a whole room or all of a node's subscribers is refused at its sender
        // past its rate, before any of it is queued for readers slower than the sender.
        let broadcast = route::broadcast_bytes(&classified.route, &el, &me);
        if broadcast > 0 && !pubsub.may_broadcast_bytes(&me.bare(), broadcast) {
            let why = Some("too much sent to rooms and subscribers: wait");
            self.answer(&el, StanzaError::ResourceConstraint, why);
            return Ok(());
        }
        match classified.route {
            Route::JidMalformed => self.answer(&el, StanzaError::JidMalformed, None),
            Route::BadRequest => {
                let why = if el.name() == "iq" && matches!(el.attr("type"), Some("get" | "set")) {
                    "a request carries exactly one payload"
                } else if el.name() == "presence"
                    && el
                        .attr("type")
                        .and_then(SubscriptionKind::from_type)
                        .is_some()
                {
                    "your own address is not a contact"
                } else {
                    "no such type"
                };
                self.answer(&el, StanzaError::BadRequest, Some(why));
            }
            // A presence broadcast published natively (seed Ex. 3) counts as a classic one.
            Route::Pep {
                own_presence: true, ..
            } if !pubsub.may_broadcast(&me.bare()) => {
                let why = Some("too many presence changes: wait");
                self.answer(&el, StanzaError::ResourceConstraint, why);
            }
            Route::Pep {
                account,
                own_presence,
            } => {
                if own_presence {
                    handle.set_classic(false);
                    let published = el
                        .get_child("pubsub", crate::xml::ns::PUBSUB)
                        .and_then(|p| p.get_child("publish", crate::xml::ns::PUBSUB))
                        .and_then(|p| p.get_child("item", crate::xml::ns::PUBSUB))
                        .and_then(|item| item.get_child("presence", crate::xml::ns::CLIENT));
                    if let Some(presence) = published {
                        handle.set_presence(priority(presence), show(presence));
                    }
                }
                // Addressed as the reply will be from (RFC 6120 §8.1.2.1 lets either be the
                // bare JID): errors then name the account, as results do.
                if el.attr("to").is_none() {
                    set_attr(&mut el, "to", account.as_str());
                }
                pubsub.submit_pep(me, account, el).await;
            }
            Route::Stored { account } => match crate::eventing::stored::asked(&el) {
                Ok(asked) => pubsub.stored(me, account, asked).await,
                Err(error) => self.answer(&el, error, None),
            },
            Route::LastActivity { account } => pubsub.last_activity(me, account, el).await,
            Route::Blocking => pubsub.blocking(me, el).await,
            Route::Roster => pubsub.roster(me, el).await,
            // Each reaches all who follow the account, or everyone in a room: a flood of them
            // would fill their queues (sixth review).
            Route::PresenceBroadcast | Route::Room
                if el.name() == "presence"
                    && el.attr("type").is_none()
                    && !pubsub.may_broadcast(&me.bare()) =>
            {
                let why = Some("too many presence changes: wait");
                self.answer(&el, StanzaError::ResourceConstraint, why);
            }
            Route::PresenceBroadcast => {
                handle.set_classic(true);
                let unavailable = el.attr("type") == Some("unavailable");
                // A resource that was available with a negative priority takes no kept
                // messages (XEP-0160 §4); raising it makes it take them.
                let raised = handle.is_available()
                    && handle.priority() < 0
                    && !unavailable
                    && priority(&el) >= 0;
                if !unavailable {
                    handle.set_presence(priority(&el), show(&el));
                }
                let farewell = unavailable.then(|| Farewell::of(&el));
                // The rooms it leaves tell their occupants why, as a leave would (XEP-0045
                // §7.14).
                let status = unavailable
                    .then(|| crate::eventing::shown::status(&el))
                    .flatten();
                if unavailable && let State::Bound(session) = &mut self.state {
                    session
                        .undirect(&self.shared.router, &pubsub, farewell.as_ref())
                        .await;
                }
                pubsub.presence(me.clone(), el).await;
                if raised {
                    pubsub.flush_kept(me.clone()).await;
                }
                if unavailable {
                    // RFC 6121 §4.6.3: going unavailable ends what directed presence began:
                    // the session leaves its rooms (and its `expire=presence` subscriptions).
                    pubsub.unavailable(me, status).await;
                }
            }
            Route::Probe { contact } => pubsub.probe(Jid::from(me), contact).await,
            // A component's domain is this server's to reach, federating or not.
            Route::Subscription { contact, .. }
                if self.shared.federation.is_none()
                    && contact.domain().as_str() != self.shared.domain
                    && !(self.shared.config.components.secrets)
                        .contains_key(contact.domain().as_str()) =>
            {
                self.answer(&el, StanzaError::RemoteServerNotFound, None);
            }
            Route::Subscription { contact, kind } => {
                let keep = match kind {
                    SubscriptionKind::Subscribe => Some((contact.clone(), false)),
                    SubscriptionKind::Subscribed => Some((contact.clone(), true)),
                    _ => None,
                };
                let extensions = crate::eventing::presence::request_extensions(&el);
                pubsub
                    .subscription(me.bare(), contact, kind, extensions)
                    .await;
                if let Some((contact, approval)) = keep {
                    pubsub.keep_on_roster(me.bare(), contact, approval).await;
                }
            }
            Route::PubsubDomain => {
                if let Some(other) = published_conversation(&el, &me.bare()) {
                    if self.blocked(&el, &me.bare(), &other) {
                        return Ok(());
                    }
                    if !self.may_publish_kept(&pubsub, &me, &el) {
                        let why = Some("too many messages: wait");
                        self.answer(&el, StanzaError::ResourceConstraint, why);
                        return Ok(());
                    }
                }
                pubsub.submit(me, el).await;
            }
            Route::RoomsService => pubsub.submit_rooms(me, el).await,
            Route::Room if !self.may_invite(&pubsub, &me, &el) => {
                let why = Some("too many messages kept: wait");
                self.answer(&el, StanzaError::ResourceConstraint, why);
            }
            Route::Room => {
                self.carbon_private_message(&me, &el);
                pubsub.room(me, el).await;
            }
            Route::AuthorizationAnswer => pubsub.submit_answer(me, el).await,
            Route::Remote
                if self.shared.federation.is_some()
                    && is_conversation_message(&el)
                    && let Some(to) = el
                        .attr("to")
                        .and_then(|to| Jid::new(to).ok())
                        .filter(|to| to.node().is_some()) =>
            {
                // A conversation with another server's user is kept here too (seed §6).
                self.converse(&pubsub, me, to, el).await;
            }
            // RFC 6120 §10.1: what goes directly comes after what went through the services.
            Route::Remote => {
                pubsub.settled().await;
                self.send_to_another_domain(&el);
            }
            Route::ServerIq(_)
                if el.has_child("query", crate::xml::ns::REGISTER)
                    && !self.passwords_may_pass() =>
            {
                let why = Some(super::negotiation::INSECURE_REGISTRATION);
                self.answer(&el, StanzaError::NotAuthorized, why);
            }
            Route::ServerIq(target) => {
                // The archive reads what the session sent before; other answers of the server
                // are about other things and wait for nothing (a keepalive ping among them).
                if el.has_child("query", crate::eventing::archive::NS) {
                    pubsub.settled().await;
                }
                self.server_iq(el, target).await;
            }
            Route::ServiceUnavailable => {
                self.answer(&el, StanzaError::ServiceUnavailable, None);
            }
            Route::Session(to) if is_conversation_message(&el) => {
                self.converse(&pubsub, me, Jid::from(to), el).await;
            }
            Route::Account(to) if is_conversation_message(&el) => {
                self.converse(&pubsub, me, Jid::from(to), el).await;
            }
            Route::Session(to) => {
                pubsub.settled().await;
                strip_server_written(&mut el, &me, &self.shared.domain);
                self.carbon_error(&me, &el, &Jid::from(to.clone()));
                self.deliver_to_session(&el, &to);
            }
            Route::Account(to) => {
                pubsub.settled().await;
                strip_server_written(&mut el, &me, &self.shared.domain);
                self.deliver_to_account(&el, &to);
            }
            Route::Drop => {}
        }
        Ok(())
    }

    /// A stanza for a component of this server (XEP-0114) or another server.
    fn send_to_another_domain(&mut self, el: &Element) {
        let Ok(to) = Jid::new(el.attr("to").unwrap_or_default()) else {
            return;
        };
        let component = (self.shared.config.components.secrets).contains_key(to.domain().as_str());
        if !component && self.shared.federation.is_none() {
            let text = "this server does not federate (see [s2s] listen)";
            return self.answer(el, StanzaError::RemoteServerNotFound, Some(text));
        }
        // What the component or the other server does not take bounces to the sender.
        let bytes = if el.name() == "presence" && el.children().any(presence::is_delay) {
            let mut el = el.clone();
            presence::strip_delays(&mut el);
            verona_stream::element_bytes(&el)
        } else {
            verona_stream::element_bytes(el)
        };
        self.shared.router.deliver(&to, Bytes::from(bytes));
    }

    /// A stanza for one session; RFC 6121 §8.5.3.2.1: a message for an unavailable resource
    /// goes to the account, but a headline for one is dropped.
    fn deliver_to_session(&mut self, el: &Element, to: &FullJid) {
        if let Some(handle) = self.shared.router.session(to) {
            if !handle.offer(Bytes::from(verona_stream::element_bytes(el))) {
                self.answer(el, StanzaError::ResourceConstraint, None);
            }
        } else if el.name() == "message" && el.attr("type") != Some("headline") {
            self.deliver_to_account(el, &to.bare());
        } else if el.name() == "iq" {
            self.answer(el, StanzaError::ServiceUnavailable, None);
        }
    }

    /// XEP-0191 §3.3: a stanza between an account and one it blocked goes nowhere. The
    /// blocker's own stanzas, presence too, are refused with `not-acceptable`; the blocked
    /// party's look undeliverable, so it learns nothing (presence vanishes silently).
    fn blocked(&mut self, el: &Element, me: &BareJid, to: &BareJid) -> bool {
        let router = &self.shared.router;
        if router.blocks(me, to) {
            self.answer(el, StanzaError::Blocked, None);
            return true;
        }
        if router.blocks(to, me) {
            // Taking back what one gave, or ending what one asked for, still ends it (RFC
            // 6121 §3.2, §3.3); the blocker is sent nothing of it.
            let ending = matches!(el.attr("type"), Some("unsubscribed" | "unsubscribe"));
            if el.name() == "presence" && ending {
                return false;
            }
            if el.name() != "presence" {
                self.answer(el, StanzaError::ServiceUnavailable, None);
            }
            return true;
        }
        false
    }

    async fn server_iq(&mut self, el: Element, target: Target) {
        let State::Bound(session) = &self.state else {
            unreachable!("server_iq() is only called when bound");
        };
        let me = session.jid.clone();
        let handled = iq::handle(&self.shared, &el, &target, &me).await;
        let written = self.out.len();
        for stanza in &handled.before {
            self.send(stanza);
        }
        if let Some(reply) = handled.reply {
            self.send(&reply);
        }
        // An archive page can be a hundred messages for one short query: answers count
        // against the account's read rate, as the services' answers do.
        let answered = self.out.len().saturating_sub(written);
        if let State::Bound(session) = &self.state {
            let until = session.pubsub.answered(answered, Instant::now());
            self.paused_until = self.paused_until.max(until);
        }
        let router = &self.shared.router;
        match handled.end_sessions {
            EndSessions::None => {}
            EndSessions::Others => router.close_others(&me, CloseReason::AccountChanged),
            EndSessions::All => router.close_account(&me.bare(), CloseReason::AccountDeleted),
        }
    }

    /// A message that is not a conversation's, or directed presence, to a bare JID (RFC 6121
    /// §8.5.2): a headline goes to the available resources with a non-negative priority, or
    /// nowhere; presence to every available resource, or nowhere; a groupchat message is not
    /// delivered (`service-unavailable`), an error is dropped.
    fn deliver_to_account(&mut self, el: &Element, bare: &BareJid) {
        let presence = el.name() == "presence";
        match el.attr("type") {
            Some("groupchat") => {
                return self.answer(el, StanzaError::ServiceUnavailable, None);
            }
            Some("error") => return,
            _ => {}
        }
        let sessions: Vec<_> = (self.shared.router.sessions_of(bare).into_iter())
            .filter(|handle| handle.is_available() && (presence || handle.priority() >= 0))
            .collect();
        if sessions.is_empty() {
            if !presence && el.attr("type") != Some("headline") {
                self.answer(
                    el,
                    StanzaError::ServiceUnavailable,
                    Some("the recipient is not online"),
                );
            }
            return;
        }
        let bytes = Bytes::from(verona_stream::element_bytes(el));
        let taken = sessions
            .iter()
            .filter(|handle| handle.offer(bytes.clone()))
            .count();
        if taken == 0 {
            self.answer(el, StanzaError::ResourceConstraint, None);
        }
    }

    /// A mediated invitation (XEP-0045 §7.8.2) may be kept for each invitee who is away, so
    /// each counts as a kept message of the inviter's (`[limits] kept_messages_per_minute`).
    fn may_invite(&self, pubsub: &PubsubHandle, me: &FullJid, el: &Element) -> bool {
        if el.name() != "message" {
            return true;
        }
        // One past the cap is refused whole by the room: nothing is kept.
        let invitees = crate::eventing::groupchat::invitees(el).map_or(0, |i| i.len());
        (0..invitees).all(|_| pubsub.may_keep(&me.bare()))
    }

    /// A native publish to a conversation (seed Ex. 19) keeps each of its messages, as a
    /// classic message does: each counts against `[limits] kept_messages_per_minute`.
    fn may_publish_kept(&self, pubsub: &PubsubHandle, me: &FullJid, el: &Element) -> bool {
        let items = el
            .get_child("pubsub", crate::xml::ns::PUBSUB)
            .and_then(|p| p.get_child("publish", crate::xml::ns::PUBSUB))
            .map_or(0, |publish| publish.children().count());
        (0..items).all(|_| pubsub.may_keep(&me.bare()))
    }

    /// A message of a conversation, to its pair's node, unless its sender has had as many
    /// messages kept as it may for now (`[limits] kept_messages_per_minute`).
    async fn converse(&mut self, pubsub: &PubsubHandle, me: FullJid, to: Jid, el: Element) {
        if chat::is_kept(&el) && !pubsub.may_keep(&me.bare()) {
            let why = Some("too many messages: wait");
            self.answer(&el, StanzaError::ResourceConstraint, why);
            return;
        }
        pubsub.chat(me.into(), to, el).await;
    }

    fn answer(&mut self, el: &Element, error: StanzaError, text: Option<&str>) {
        if let Some(reply) = error_reply(el, error, text) {
            self.send(&reply);
        }
    }
}

/// The other party of the conversation node a native publish is to, when it is one that
/// `me` is a party of (any other is refused by the service).
fn published_conversation(el: &Element, me: &BareJid) -> Option<BareJid> {
    let node = el
        .get_child("pubsub", crate::xml::ns::PUBSUB)?
        .get_child("publish", crate::xml::ns::PUBSUB)?
        .attr("node")?;
    let (low, high) = chat::parties(node)?;
    if *me == low {
        Some(high)
    } else if *me == high {
        Some(low)
    } else {
        None
    }
}

/// A message of a one-to-one conversation (`eventing::chat`): published to the pair's node.
fn is_conversation_message(el: &Element) -> bool {
    el.name() == "message" && chat::is_conversational(el)
}

/// What a client's stanza to a local session or account may not carry: in a message, what
/// would pass for this server's word ([`chat::strip_forged`]); in presence, delays.
fn strip_server_written(el: &mut Element, me: &FullJid, domain: &str) {
    match el.name() {
        "message" => chat::strip_forged(el, &Jid::from(me.clone()), domain),
        "presence" => presence::strip_delays(el),
        _ => {}
    }
}
