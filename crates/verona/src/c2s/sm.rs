//! XEP-0198 stream management: acknowledgements both ways, and resumption. A session whose
//! connection is lost while resumable is parked, still bound and still receiving, for
//! `[c2s] resume_timeout_secs`; a new connection of the same account that resumes it takes it
//! over and gets what the client did not acknowledge again. A session that ends for good hands
//! the conversation messages it did not deliver (unacknowledged, or still queued) to offline
//! storage, so they reach the account later: never nowhere.

use crate::jids::Bare;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use verona_stream::Wire;

use super::session::Session;
use crate::eventing::chat::{archive_key, archived_as};
use crate::router::{CloseReason, SessionHandle};
use crate::server::Shared;
use crate::xml::{BuilderExt, builder, ns};

/// Stanzas the client may leave unacknowledged before it is asked to acknowledge them.
const ASK_EVERY: usize = 8;
/// How long a resumption waits for the connection it takes over to let go of the session.
const TAKEOVER: Duration = Duration::from_secs(2);

/// A session's stream management state.
pub(super) struct Sm {
    /// The resumption id, if the session may be resumed.
    pub(super) id: Option<String>,
    /// Stanzas received from the client and handled (`h` of our `<a/>`).
    pub(super) inbound: u32,
    /// Stanzas of ours the client acknowledged (its last `h`).
    pub(super) acked: u32,
    /// Stanzas written since, oldest first, and their bytes.
    pub(super) unacked: VecDeque<Wire>,
    pub(super) unacked_bytes: usize,
    /// An `<r/>` is waiting for its answer.
    asked: bool,
}

/// A client's `h` that cannot be: more than was sent (§4, `handled-count-too-high`), or
/// fewer than it had already acknowledged.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BadAck {
    TooHigh,
    WentBack,
}

impl BadAck {
    /// What the client is told.
    pub(super) fn text(&self) -> &'static str {
        match self {
            BadAck::TooHigh => "acknowledged more than was sent",
            BadAck::WentBack => "acknowledged fewer than it had already acknowledged",
        }
    }
}

impl Sm {
    pub(super) fn new(id: Option<String>) -> Sm {
        Sm {
            id,
            inbound: 0,
            acked: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            asked: false,
        }
    }

    /// A stanza was written; true when the client should now be asked to acknowledge.
    pub(super) fn sent(&mut self, stanza: Wire) -> bool {
        self.unacked_bytes += stanza.len();
        self.unacked.push_back(stanza);
        let ask = !self.asked && self.unacked.len() >= ASK_EVERY;
        self.asked |= ask;
        ask
    }

    /// Stamps what waits for an acknowledgement with when it came ([`stamped`]).
    pub(super) async fn restamp(&mut self, shared: &Shared, account: &BareJid) {
        let unacked: Vec<Wire> = self.unacked.drain(..).collect();
        self.unacked = stamped(shared, account, unacked).await.into();
        self.unacked_bytes = self.unacked.iter().map(Wire::len).sum();
    }

    /// Frees the buffer of acknowledged stanzas when nothing waits for an acknowledgement.
    pub(super) fn release_idle(&mut self) {
        if self.unacked.is_empty() {
            self.unacked = VecDeque::new();
        }
    }

    /// The client acknowledged every stanza up to `h`.
    pub(super) fn ack(&mut self, h: u32) -> Result<(), BadAck> {
        let newly = h.wrapping_sub(self.acked);
        if newly as usize > self.unacked.len() {
            // Counts wrap at 2^32 (§4): one less than the last acknowledged is 2^32 - 1 ahead
            // of it, which no session sends.
            return Err(match newly > u32::MAX / 2 {
                true => BadAck::WentBack,
                false => BadAck::TooHigh,
            });
        }
        let newly = newly as usize;
        for stanza in self.unacked.drain(..newly) {
            self.unacked_bytes -= stanza.len();
        }
        self.acked = h;
        self.asked = false;
        Ok(())
    }
}

/// `<handled-count-too-high/>` (§5): what the client claimed and what was sent.
pub(super) fn too_high(h: u32, sm: &Sm) -> Element {
    let sent = sm.acked.wrapping_add(sm.unacked.len() as u32);
    builder("handled-count-too-high", ns::SM)
        .with("h", h.to_string())
        .with("send-count", sent.to_string())
        .build()
}

/// `<a h='…'/>`.
pub(super) fn answer(h: u32) -> Element {
    builder("a", ns::SM).with("h", h.to_string()).build()
}

/// `<r/>`.
pub(super) fn request() -> Element {
    Element::bare("r", ns::SM)
}

/// `<failed/>` with a condition, and the `h` of what was handled where known.
pub(super) fn failed(condition: &str, h: Option<u32>) -> Element {
    let mut failed = builder("failed", ns::SM);
    if let Some(h) = h {
        failed = failed.with("h", h.to_string());
    }
    failed.append(Element::bare(condition, ns::STANZAS)).build()
}

/// The `h` attribute of an `<a/>` or `<resume/>`.
pub(super) fn h_of(el: &Element) -> Option<u32> {
    el.attr("h")?.parse().ok()
}

/// A session parked for resumption.
pub(super) struct Parked {
    pub(super) session: Session,
    pub(super) sm: Sm,
}

/// Resumable sessions: those attached to a connection (to take over a connection not yet
/// known to be dead) and those parked.
#[derive(Default)]
pub struct Resumable {
    attached: Mutex<HashMap<String, (BareJid, SessionHandle)>>,
    /// With the number of the parking: a session parked, resumed and parked again has the
    /// window of its last parking, not of its first.
    parked: Mutex<HashMap<String, (u64, Parked)>>,
    parked_now: tokio::sync::Notify,
    /// Held while an ending session decides what to keep ([`keep`]).
    deciding: Mutex<()>,
}

impl Resumable {
    /// A session became resumable with `id`.
    pub(super) fn attach(&self, id: &str, account: BareJid, handle: SessionHandle) {
        self.attached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), (account, handle));
    }

    /// The session of `id` ended for good.
    pub(super) fn forget(&self, id: &str) {
        self.attached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Parks a session whose connection was lost; it ends for good after `timeout` unless
    /// resumed.
    pub(super) fn park(shared: &Arc<Shared>, id: String, parked: Parked, timeout: Duration) {
        static PARKINGS: AtomicU64 = AtomicU64::new(0);
        let parking = PARKINGS.fetch_add(1, Ordering::Relaxed);
        tracing::info!(jid = %parked.session.jid, "connection lost: session kept for resumption");
        parked.session.handle.set_parked(true);
        let mut close = parked.session.ends.close.clone();
        close.mark_changed();
        shared
            .resumable
            .parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), (parking, parked));
        shared.resumable.parked_now.notify_waiters();
        let shared = shared.clone();
        tokio::spawn(async move {
            // Closed while parked (its account deleted, its password changed): it ends now,
            // and nobody resumes it, the next owner of the name least of all.
            let closed = async {
                while close.changed().await.is_ok() {
                    if ended_while_parked(*close.borrow()) {
                        return;
                    }
                }
                std::future::pending().await
            };
            tokio::select! {
                () = tokio::time::sleep(timeout) => {}
                () = closed => {}
            }
            let expired = {
                let mut parked =
                    (shared.resumable.parked.lock()).unwrap_or_else(PoisonError::into_inner);
                let this_one = parked.get(&id).is_some_and(|(p, _)| *p == parking);
                this_one.then(|| parked.remove(&id)).flatten()
            };
            if let Some((_, parked)) = expired {
                shared.resumable.forget(&id);
                tracing::info!(jid = %parked.session.jid, "resumption window over: session ended");
                end_session(&shared, parked.session, Some(parked.sm)).await;
            }
        });
    }

    /// Ends every parked session at shutdown, as when its window is over: its unavailable
    /// presence goes out (to other servers' contacts too) and what it held to offline
    /// storage, not nowhere with the process.
    pub(crate) async fn end_all_parked(shared: &Shared) {
        let parked: Vec<(String, Parked)> = {
            let mut parked =
                (shared.resumable.parked.lock()).unwrap_or_else(PoisonError::into_inner);
            parked
                .drain()
                .map(|(id, (_, parked))| (id, parked))
                .collect()
        };
        for (id, parked) in parked {
            shared.resumable.forget(&id);
            tracing::info!(jid = %parked.session.jid, "stopping: parked session ended");
            end_session(shared, parked.session, Some(parked.sm)).await;
        }
    }

    /// Takes the parked session bound to `jid`, if there is one, with its resumption id.
    pub(super) fn take_parked(&self, jid: &FullJid) -> Option<(String, Parked)> {
        let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        let id = (parked.iter())
            .find(|(_, (_, p))| p.session.jid == *jid)
            .map(|(id, _)| id.clone())?;
        parked.remove(&id).map(|(_, parked)| (id, parked))
    }

    /// Takes the session of `account` parked longest ago, if there is one, with its
    /// resumption id.
    pub(super) fn take_oldest_parked(&self, account: &BareJid) -> Option<(String, Parked)> {
        let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        let id = (parked.iter())
            .filter(|(_, (_, p))| p.session.jid.bare() == *account)
            .min_by_key(|(_, (parking, _))| *parking)
            .map(|(id, _)| id.clone())?;
        parked.remove(&id).map(|(_, parked)| (id, parked))
    }

    /// Takes the session `id` of `account` for resumption: a parked one, or one still attached
    /// to a connection, which is told to let go of it.
    pub(super) async fn take(&self, id: &str, account: &BareJid) -> Option<Parked> {
        let deadline = tokio::time::Instant::now() + TAKEOVER;
        loop {
            let notified = self.parked_now.notified();
            {
                let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
                if parked
                    .get(id)
                    .is_some_and(|(_, p)| p.session.jid.bare() == *account)
                {
                    return parked.remove(id).map(|(_, parked)| parked);
                }
            }
            let attached = self
                .attached
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(id)
                .filter(|(owner, _)| owner == account)
                .map(|(_, handle)| handle.clone());
            let handle = attached?;
            handle.close(CloseReason::Resumed);
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// Whether a session closed with `reason` while parked may not be resumed.
pub(super) fn ended_while_parked(reason: Option<CloseReason>) -> bool {
    reason.is_some_and(|reason| reason != CloseReason::Resumed)
}

/// Ends a session for good: it leaves the router and the services, and the conversation
/// messages it did not deliver (unacknowledged with `sm`, or still queued) go to offline
/// storage through its account's shard.
pub(super) async fn end_session(shared: &Shared, mut session: Session, sm: Option<Sm>) {
    let account = session.jid.bare();
    // The account is gone, and what was for it is not kept for the next owner of the name
    // (who may have registered it by the time a parked session ends).
    let deleted = *session.ends.close.borrow() == Some(CloseReason::AccountDeleted);
    // What the session did not deliver is read, with when each came, while it is still bound
    // (what comes meanwhile joins its queue), then handed over the moment it leaves the
    // router, ahead of whatever the account's conversations keep for it from then on.
    let mut kept = Vec::new();
    if !deleted {
        // Written but not acknowledged, then held while the client was inactive, then queued.
        let mut undelivered: Vec<Wire> = sm.map(|sm| sm.unacked.into()).unwrap_or_default();
        if let Some(mut held) = session.inactive.take() {
            undelivered.extend(held.release());
        }
        while let Some(stanza) = session.ends.queue.try_recv() {
            undelivered.push(stanza);
        }
        let candidates: Vec<(Element, bool)> = (undelivered.iter())
            .filter_map(|stanza| to_keep(stanza, &session.jid))
            .collect();
        let messages = candidates.iter().map(|(message, _)| message);
        let came = match candidates.is_empty() {
            true => Vec::new(),
            false => arrivals(shared, &account, messages).await,
        };
        kept = keep(shared, &session, candidates.into_iter().zip(came));
    }
    shared.router.unbind(&session.jid, &session.handle);
    let pubsub = &shared.pubsub;
    if !deleted {
        // What came while the archive was read came just now, after the rest.
        let mut late = Vec::new();
        while let Some(stanza) = session.ends.queue.try_recv() {
            late.extend(to_keep(&stanza, &session.jid).map(|c| (c, Some(SystemTime::now()))));
        }
        kept.extend(keep(shared, &session, late.into_iter()));
        if !kept.is_empty() {
            pubsub.session_undelivered(account.clone(), kept);
        }
    }
    session.undirect(&shared.router, pubsub, None).await;
    pubsub
        .session_ended(Jid::from(session.jid.clone()), Some(session.handle.id()))
        .await;
    if shared.router.sessions_of(&account).is_empty() {
        pubsub.session_ended(Jid::from(account.clone()), None).await;
    }
}

/// Which of an ending session's undelivered messages (each with when it came, if known) to
/// keep for its account, as stored: those addressed to it, and those to the bare JID that no
/// other resource has, one available when they came or one they were offered to late.
fn keep(
    shared: &Shared,
    session: &Session,
    candidates: impl Iterator<Item = ((Element, bool), Option<SystemTime>)>,
) -> Vec<String> {
    let own = session.handle.id();
    let account = session.jid.bare();
    // One ending session decides at a time, and none counts on one that is ending too: two
    // ending together each took the other to have what both had, and neither kept it.
    let _deciding = (shared.resumable.deciding.lock()).unwrap_or_else(PoisonError::into_inner);
    session.handle.set_ending();
    let others: Vec<SessionHandle> = (shared.router.message_sessions(&account))
        .into_iter()
        .map(|(_, handle)| handle)
        .filter(|handle| handle.id() != own && !handle.is_ending())
        .collect();
    candidates
        .filter_map(|((mut message, for_this_session), came)| {
            // A message to the bare JID (or to a resource that was not there, RFC 6121
            // §8.5.3.2.1) went to every resource available then, and one an ended session
            // left goes late to every resource available then: one of those still there has
            // it. Not knowing when it came, it is taken to have reached them.
            let others_have_it = || {
                let late = archive_key(&message, shared.pubsub.jid(), &account);
                (others.iter()).any(|other| {
                    came.is_none_or(|came| other.available_at(came))
                        || late.as_deref().is_some_and(|id| other.was_offered_late(id))
                })
            };
            if !for_this_session && others_have_it() {
                return None;
            }
            // One to this session had its `received` carbon go to the others with carbons
            // enabled then (XEP-0280 §6): given to them again, it showed twice.
            let carbon_copied = || {
                crate::eventing::chat::is_copied(&message)
                    && (others.iter()).any(|other| {
                        other.carbons() && came.is_none_or(|came| other.available_at(came))
                    })
            };
            if for_this_session && carbon_copied() {
                return None;
            }
            // The account's own message to this session: its sender has it (and a `sent`
            // carbon went to the others); offered to them late, it came back to its sender.
            let own = message
                .attr("from")
                .and_then(|from| Jid::new(from).ok())
                .is_some_and(|from| from.to_bare() == account);
            if own {
                return None;
            }
            // XEP-0203: stamped with when it came, which the archive knows; the session may
            // have held it for the whole resumption window.
            if let Some(came) = came
                && !crate::eventing::chat::has_delay_from(&message, &shared.domain)
            {
                message.append_child(crate::eventing::chat::delay(came, &shared.domain));
            }
            Some(String::from(&message))
        })
        .collect()
}

/// When each of `messages` came, as its archived item says: one read of the archive per
/// conversation; `None` for a message not found there.
async fn arrivals<'a>(
    shared: &Shared,
    account: &BareJid,
    messages: impl Iterator<Item = &'a Element> + Clone,
) -> Vec<Option<SystemTime>> {
    let mut wanted: HashMap<String, Vec<String>> = HashMap::new();
    for message in messages.clone() {
        if let Some((service, id)) = archived_as(message, shared.pubsub.jid(), account) {
            wanted.entry(service).or_default().push(id);
        }
    }
    let mut came: HashMap<(String, String), SystemTime> = HashMap::new();
    for (service, ids) in wanted {
        let query = verona_storage::ItemsQuery {
            services: vec![service.clone()],
            max: ids.len(),
            ids: Some(ids),
            ..Default::default()
        };
        match shared.archive.items_page(&query).await {
            Ok(page) => came.extend(
                (page.items.into_iter())
                    .map(|found| ((service.clone(), found.item.id), found.item.published)),
            ),
            Err(e) => tracing::warn!(%service, "reading kept messages' times: {e}"),
        }
    }
    messages
        .map(|message| {
            archived_as(message, shared.pubsub.jid(), account)
                .and_then(|key| came.get(&key).copied())
        })
        .collect()
}

/// What a resumed session gets late (again, or first, having come while it was away), with
/// its conversation messages stamped (XEP-0203) with when they came, as their archive says:
/// Prosody and ejabberd stamp what they send on resumption likewise.
pub(super) async fn stamped(shared: &Shared, account: &BareJid, wires: Vec<Wire>) -> Vec<Wire> {
    let archived = |wire: &Wire| {
        let bytes = wire.to_vec();
        let has = |word: &[u8]| bytes.windows(word.len()).any(|w| w == word);
        // Only a message with an archive id can be stamped: others are not parsed.
        if !(has(b"<message") && has(b"stanza-id")) {
            return None;
        }
        let message = std::str::from_utf8(&bytes).ok()?.parse::<Element>().ok()?;
        archived_as(&message, shared.pubsub.jid(), account).map(|_| message)
    };
    let messages: Vec<Option<Element>> = wires.iter().map(archived).collect();
    let came = arrivals(shared, account, messages.iter().flatten()).await;
    let mut came = came.into_iter();
    (wires.into_iter().zip(messages))
        .map(|(wire, message)| {
            let Some(mut message) = message else {
                return wire;
            };
            match came.next().flatten() {
                Some(at) if !crate::eventing::chat::has_delay_from(&message, &shared.domain) => {
                    message.append_child(crate::eventing::chat::delay(at, &shared.domain));
                    Wire::from(bytes::Bytes::from(verona_stream::element_bytes(&message)))
                }
                _ => wire,
            }
        })
        .collect()
}

/// An undelivered stanza of the session `own`, if it is a conversation message to keep for
/// later, and whether it was for `own` alone.
fn to_keep(stanza: &Wire, own: &FullJid) -> Option<(Element, bool)> {
    let bytes = stanza.to_vec();
    if !crate::eventing::chat::may_be_kept(&bytes) {
        return None;
    }
    let el = std::str::from_utf8(&bytes).ok()?.parse::<Element>().ok()?;
    let for_this_session = el
        .attr("to")
        .and_then(|to| FullJid::new(to).ok())
        .is_some_and(|to| to == *own);
    let keep = el.name() == "message"
        && crate::eventing::chat::is_conversational(&el)
        && crate::eventing::chat::is_kept(&el);
    keep.then_some((el, for_this_session))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn acknowledgements_drop_what_they_cover_and_wrap() {
        let mut sm = Sm::new(None);
        let asks: Vec<bool> = (0..10)
            .map(|n| sm.sent(Wire::from(Bytes::from(format!("<m{n}/>")))))
            .collect();
        // Asked once, at the eighth, until answered.
        assert_eq!(asks.iter().filter(|a| **a).count(), 1);
        assert!(asks[ASK_EVERY - 1]);
        sm.ack(3).unwrap();
        assert_eq!(sm.unacked.len(), 7);
        assert_eq!(sm.unacked_bytes, 7 * 5);
        assert_eq!(sm.unacked[0].to_vec(), b"<m3/>");
        assert_eq!(
            sm.ack(11).unwrap_err(),
            BadAck::TooHigh,
            "more than was sent"
        );
        assert_eq!(sm.ack(2).unwrap_err(), BadAck::WentBack, "less than before");
        sm.ack(10).unwrap();
        assert!(sm.unacked.is_empty());
        // The counter wraps at 2^32 (§4).
        let mut sm = Sm::new(None);
        sm.acked = u32::MAX;
        sm.sent(Wire::from(Bytes::from_static(b"<a/>")));
        sm.sent(Wire::from(Bytes::from_static(b"<b/>")));
        sm.ack(0).unwrap();
        assert_eq!(sm.unacked.len(), 1);
        sm.ack(1).unwrap();
        assert!(sm.unacked.is_empty());
    }

    #[test]
    fn only_conversation_messages_are_kept() {
        let cases = [
            (
                "<message xmlns='jabber:client' type='chat'><body>hi</body></message>",
                true,
            ),
            (
                "<m:message xmlns:m='jabber:client'><m:body>hi</m:body></m:message>",
                true,
            ),
            (
                "<message xmlns='jabber:client'><store xmlns='urn:xmpp:hints'/></message>",
                true,
            ),
            (
                "<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
                true,
            ),
            (
                "<message xmlns='jabber:client' type='chat'><received xmlns='urn:xmpp:receipts' id='m1'/></message>",
                true,
            ),
            (
                "<message xmlns='jabber:client'><x xmlns='jabber:x:conference' jid='room@chat.localhost'/></message>",
                true,
            ),
            (
                "<message xmlns='jabber:client' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client' type='headline'><body>news</body></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client' type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='1'><entry xmlns='urn:x'/></item></items></event></message>",
                false,
            ),
            (
                "<presence xmlns='jabber:client'><status>body</status></presence>",
                false,
            ),
            (
                "<iq xmlns='jabber:client' type='result' id='message'/>",
                false,
            ),
        ];
        let own = FullJid::new("romeo@localhost/orchard").unwrap();
        for (xml, kept) in cases {
            let wire = Wire::from(Bytes::from_static(xml.as_bytes()));
            assert_eq!(to_keep(&wire, &own).is_some(), kept, "{xml}");
        }
    }

    /// A message to the bare JID, or to a resource that was not there (RFC 6121
    /// §8.5.3.2.1), went to every available resource: it is not the session's own. One for
    /// the session itself is.
    #[test]
    fn a_message_for_the_session_itself_is_told_apart() {
        let to = |to: &str| {
            Wire::from(Bytes::from(format!(
                "<message xmlns='jabber:client' type='chat' to='{to}'><body>hi</body></message>"
            )))
        };
        let own = FullJid::new("romeo@localhost/orchard").unwrap();
        let cases = [
            ("romeo@localhost", false),
            ("romeo@localhost/gone", false),
            ("romeo@localhost/orchard", true),
        ];
        for (address, for_this_session) in cases {
            let (_, own_only) = to_keep(&to(address), &own).expect("kept");
            assert_eq!(own_only, for_this_session, "{address}");
        }
    }
}
