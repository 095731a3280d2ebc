//! The session registry: which resources of which account are bound, and how to reach them.
//!
//! A session is reached through a bounded queue of pre-serialised stanzas. A session whose queue
//! is full is not keeping up; it is told to close instead of letting its queue grow without bound.
//! The queue holds no buffer while it is empty, so an idle session costs only its handle.
//!
//! Every critical section is one map operation, so a task that panics while holding a lock
//! cannot leave a map half-changed: a poisoned lock is used as it is, rather than failing
//! every connection after it.

use crate::jids::Bare;
use std::collections::{HashMap, VecDeque};

use crate::{FastHashMap, FastHashSet};
use std::sync::atomic::{AtomicBool, AtomicI8, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use tokio::sync::{Notify, mpsc, watch};
use verona_pubsub::Show;
use verona_stream::Wire;

use crate::eventing::rendering::{self, Features};
use crate::xml::{StanzaError, StreamError, error_reply};

/// Why the server ends a session from outside its own task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Another session bound the same resource (RFC 6120 §7.7.2.2).
    Conflict,
    /// The session's queue overflowed.
    Overflow,
    /// The account's password changed.
    AccountChanged,
    /// The account was deleted: what its sessions held goes with it.
    AccountDeleted,
    /// A new connection resumed the session (XEP-0198): the old one lets go of it.
    Resumed,
}

impl CloseReason {
    /// The stream error sent before closing.
    pub fn stream_error(self) -> StreamError {
        match self {
            CloseReason::Conflict => StreamError::Conflict,
            CloseReason::Overflow => StreamError::PolicyViolation,
            CloseReason::AccountChanged | CloseReason::AccountDeleted => StreamError::NotAuthorized,
            CloseReason::Resumed => StreamError::Conflict,
        }
    }
}

/// How the router reaches one bound session.
#[derive(Clone)]
pub struct SessionHandle {
    /// Unique among the sessions of this process: a session that ended is told apart from a
    /// newer one bound to the same full JID.
    id: u64,
    outbox: Arc<Outbox>,
    close: Arc<watch::Sender<Option<CloseReason>>>,
    view: Arc<View>,
}

/// The shows a session's view holds, available without `<show/>` first: a new session is so.
const SHOWS: [Show; 5] = [Show::Online, Show::Away, Show::Chat, Show::Dnd, Show::Xa];

/// What decides whether a session gets classic stanzas (`<presence/>`) or pubsub events for
/// XEP-0207 nodes (DESIGN §3).
#[derive(Default)]
struct View {
    /// Its verified XEP-0115 features, once known.
    features: RwLock<Option<Features>>,
    /// Its presence went on before its features were known: what `+notify` brings a session
    /// coming online comes when they are (`Request::FeaturesKnown`), not with the presence,
    /// whichever of the two a shard handles first.
    features_late: AtomicBool,
    /// It publishes its presence with classic `<presence/>`.
    classic: AtomicBool,
    /// It has sent its initial presence (RFC 6121 §4.2) and not gone unavailable: presence
    /// broadcasts reach it.
    available: AtomicBool,
    /// Since when, in microseconds of the Unix epoch: messages to the bare JID that came
    /// before did not reach it.
    available_since: AtomicU64,
    /// It enabled XEP-0280 carbons: it gets copies of its account's conversations.
    carbons: AtomicBool,
    /// Its connection was lost and it waits to be resumed (XEP-0198): nothing reads its queue.
    parked: AtomicBool,
    /// It is ending for good, handing what it did not deliver to offline storage: it will not
    /// keep what another ending session leaves to it.
    ending: AtomicBool,
    /// The archive ids of messages to the bare JID offered to it late, another session having
    /// ended without delivering them: it has those whenever they first came (newest last, the
    /// last [`LATE_REMEMBERED`]).
    offered_late: Mutex<VecDeque<Box<str>>>,
    /// The priority of its last available presence (RFC 6121 §4.7.2.3): a negative one takes
    /// no messages addressed to the bare JID.
    priority: AtomicI8,
    /// The `<show/>` of its last available presence, as an index into [`SHOWS`]: what
    /// `pubsub#show-values` filters on.
    show: AtomicU8,
}

/// How many of the messages offered to a session late it remembers having: past that, an
/// older one may reach offline storage once more when the session ends, never nowhere.
const LATE_REMEMBERED: usize = 256;

/// The stanzas waiting for a session, bounded in count and in bytes (issue #11 H5), so a
/// session costs at most `max_bytes` however large the stanzas.
///
/// A `VecDeque` under a lock rather than a channel: a channel keeps its blocks of slots (3 KiB
/// each) for the life of the session, while this releases its buffer whenever it empties.
struct Outbox {
    queue: Mutex<Queue>,
    /// Woken when a stanza is queued.
    ready: Notify,
    max_stanzas: usize,
    max_bytes: usize,
}

/// How many times `max_stanzas` the server's own output may fill a queue. The answers to a
/// burst of the client's requests come faster than any client reads them: a client joining
/// fifty rooms at once, each answering with its occupants, history and subject (1,150
/// stanzas), was disconnected as if it had fallen behind. Bytes stay bounded as they were;
/// another user's stanzas still find the queue full at `max_stanzas`.
pub(crate) const SERVER_STANZAS_FACTOR: usize = 4;
/// Past [`SERVER_STANZAS_FACTOR`], the server's output may go on filling a queue up to this
/// many times `max_stanzas`, as long as the session keeps taking from it ([`STALL`]): a
/// login that brings the presence and the newest PEP items of a thousand contacts is several
/// thousand stanzas, which a client reading them is not behind on.
pub(crate) const SERVER_STANZAS_CAP: usize = 16;
/// A queue past [`SERVER_STANZAS_FACTOR`] whose session has taken nothing for this long is
/// one whose client stopped reading.
const STALL: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Default)]
struct Queue {
    stanzas: VecDeque<Wire>,
    bytes: usize,
    /// The session's end is gone: nothing is queued any more.
    closed: bool,
    /// Stanzas the session has taken, to see whether it is still taking.
    taken: u64,
    /// While the queue is past [`SERVER_STANZAS_FACTOR`]: since when, and `taken` then, last
    /// seen to move.
    watched: Option<(std::time::Instant, u64)>,
}

impl Queue {
    /// Whether the server's output may go past [`SERVER_STANZAS_FACTOR`] at `now`: the
    /// session is taking from its queue, or only just went past it.
    fn still_taking(&mut self, now: std::time::Instant) -> bool {
        match self.watched {
            Some((since, seen)) if seen == self.taken => now.duration_since(since) < STALL,
            _ => {
                self.watched = Some((now, self.taken));
                true
            }
        }
    }
}

/// Emptied queues keep a buffer at most this many stanzas long.
const KEEP_QUEUE_CAPACITY: usize = 4;
/// A full queue's buffer grows by at least this many stanzas.
const GROW_QUEUE_BY: usize = 16;

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `stanza`, unless the session is gone or that passes a bound (one stanza always
    /// fits an empty queue). `server`: the server's own output, which has more room in
    /// stanzas ([`SERVER_STANZAS_FACTOR`], [`SERVER_STANZAS_CAP`]) than another user's stanza.
    fn push(&self, stanza: Wire, server: bool) -> bool {
        let len = stanza.len();
        let mut queue = self.lock();
        let queued = queue.stanzas.len();
        let fits = queued == 0
            || (queue.bytes + len <= self.max_bytes
                && match server {
                    false => queued < self.max_stanzas,
                    true if queued < self.max_stanzas.saturating_mul(SERVER_STANZAS_FACTOR) => {
                        queue.watched = None;
                        true
                    }
                    true => {
                        queued < self.max_stanzas.saturating_mul(SERVER_STANZAS_CAP)
                            && queue.still_taking(std::time::Instant::now())
                    }
                });
        if queue.closed || !fits {
            return false;
        }
        queue.bytes += len;
        // An empty queue gets the small buffer it keeps between stanzas; a fuller one (a
        // fan-out queues several at once) grows once to a useful size, not 8, then 16.
        let stanzas = &mut queue.stanzas;
        if stanzas.len() == stanzas.capacity() {
            stanzas.reserve(match stanzas.len() {
                0 => KEEP_QUEUE_CAPACITY,
                len => len.max(GROW_QUEUE_BY),
            });
        }
        stanzas.push_back(stanza);
        drop(queue);
        self.ready.notify_one();
        true
    }

    fn pop(&self) -> Option<Wire> {
        let mut queue = self.lock();
        let stanza = queue.stanzas.pop_front()?;
        queue.bytes -= stanza.len();
        queue.taken += 1;
        if queue.stanzas.is_empty() && queue.stanzas.capacity() > KEEP_QUEUE_CAPACITY {
            queue.stanzas = VecDeque::new();
        }
        Some(stanza)
    }
}

/// The session's own ends of its handle.
pub struct SessionEnds {
    pub queue: Inbox,
    pub close: watch::Receiver<Option<CloseReason>>,
}

/// The receiving end of a session's queue.
pub struct Inbox(Arc<Outbox>);

impl Inbox {
    /// The bytes of the stanzas queued.
    pub fn queued_bytes(&self) -> usize {
        self.0.lock().bytes
    }

    /// Whether the queue holds a quarter of either of its bounds: worth writing out before
    /// the task handles more of its client's input.
    pub fn filling(&self) -> bool {
        let queue = self.0.lock();
        queue.stanzas.len() >= self.0.max_stanzas / 4 || queue.bytes >= self.0.max_bytes / 4
    }

    /// Frees the buffer an emptied queue keeps (see [`KEEP_QUEUE_CAPACITY`]).
    pub fn release_idle(&self) {
        let mut queue = self.0.lock();
        if queue.stanzas.is_empty() {
            queue.stanzas = VecDeque::new();
        }
    }

    /// The next queued stanza, if any.
    pub fn try_recv(&self) -> Option<Wire> {
        self.0.pop()
    }

    /// The next queued stanza, once there is one. Cancel-safe: a stanza is taken only when
    /// this returns.
    pub async fn recv(&self) -> Wire {
        loop {
            if let Some(stanza) = self.0.pop() {
                return stanza;
            }
            // A stanza queued since `pop` left a permit: this returns at once.
            self.0.ready.notified().await;
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.closed = true;
        queue.stanzas = VecDeque::new();
        queue.bytes = 0;
    }
}

impl SessionHandle {
    /// Which session this is (see the field).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A session's queue holds at most `queue` stanzas and `bytes` bytes.
    pub fn new(queue: usize, bytes: usize) -> (SessionHandle, SessionEnds) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (close_tx, close_rx) = watch::channel(None);
        let outbox = Arc::new(Outbox {
            queue: Mutex::default(),
            ready: Notify::new(),
            max_stanzas: queue,
            max_bytes: bytes,
        });
        let handle = SessionHandle {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            outbox: Arc::clone(&outbox),
            close: Arc::new(close_tx),
            view: Arc::default(),
        };
        let ends = SessionEnds {
            queue: Inbox(outbox),
            close: close_rx,
        };
        (handle, ends)
    }

    /// Queue serialised bytes for the session; false if it is gone or was closed for overflow.
    pub fn send(&self, stanza: impl Into<Wire>) -> bool {
        if !self.enqueue(stanza.into(), true) {
            if !self.outbox.lock().closed {
                self.close(CloseReason::Overflow);
            }
            return false;
        }
        true
    }

    /// Queues a stanza one user sends another: a full queue refuses it (the sender is told to
    /// wait) rather than closing the recipient, so that nobody can get another disconnected
    /// by flooding it (issue #11 M2). False if refused or gone.
    pub fn offer(&self, stanza: impl Into<Wire>) -> bool {
        self.enqueue(stanza.into(), false)
    }

    fn enqueue(&self, stanza: Wire, server: bool) -> bool {
        // Counted whole even when its body is shared with other recipients: the bound is on
        // what this session may make the server write.
        self.outbox.push(stanza, server)
    }

    pub fn close(&self, reason: CloseReason) {
        self.close.send_replace(Some(reason));
    }

    /// How the session publishes its own presence: `<presence/>` (true) or a pubsub publish.
    pub fn set_classic(&self, classic: bool) {
        self.view.classic.store(classic, Ordering::Relaxed);
    }

    /// Its presence goes on before its features are known ([`View::features_late`]).
    pub fn set_features_late(&self) {
        self.view.features_late.store(true, Ordering::Relaxed);
    }

    pub fn features_late(&self) -> bool {
        self.view.features_late.load(Ordering::Relaxed)
    }

    pub fn set_features(&self, features: Features) {
        *self
            .view
            .features
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(features);
    }

    /// Marks the session available (true) or not; returns whether it was available before.
    pub fn set_available(&self, available: bool) -> bool {
        let was = self.view.available.swap(available, Ordering::Relaxed);
        if available && !was {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let micros = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
            self.view.available_since.store(micros, Ordering::Relaxed);
        }
        was
    }

    /// Whether it was available at `at` (as far as its last becoming available tells).
    pub fn available_at(&self, at: SystemTime) -> bool {
        let since =
            UNIX_EPOCH + Duration::from_micros(self.view.available_since.load(Ordering::Relaxed));
        self.is_available() && since <= at
    }

    pub fn is_available(&self) -> bool {
        self.view.available.load(Ordering::Relaxed)
    }

    /// What its last available presence said: its priority and its show.
    pub fn set_presence(&self, priority: i8, show: Show) {
        self.view.priority.store(priority, Ordering::Relaxed);
        let index = SHOWS.iter().position(|s| *s == show).unwrap_or_default();
        self.view.show.store(index as u8, Ordering::Relaxed);
    }

    pub fn priority(&self) -> i8 {
        self.view.priority.load(Ordering::Relaxed)
    }

    /// The show of its last available presence (available without `<show/>` until it sends one).
    pub fn show(&self) -> Show {
        SHOWS[usize::from(self.view.show.load(Ordering::Relaxed))]
    }

    /// Marks the session parked for resumption (true) or resumed.
    pub fn set_parked(&self, parked: bool) {
        self.view.parked.store(parked, Ordering::Relaxed);
    }

    pub fn is_parked(&self) -> bool {
        self.view.parked.load(Ordering::Relaxed)
    }

    /// Marks the session as ending for good.
    pub fn set_ending(&self) {
        self.view.ending.store(true, Ordering::Relaxed);
    }

    pub fn is_ending(&self) -> bool {
        self.view.ending.load(Ordering::Relaxed)
    }

    /// The message archived as `id` was offered to the session late.
    pub fn offered_late(&self, id: &str) {
        let mut late = (self.view.offered_late.lock()).unwrap_or_else(PoisonError::into_inner);
        if late.len() == LATE_REMEMBERED {
            late.pop_front();
        }
        late.push_back(id.into());
    }

    /// Whether the message archived as `id` was offered to the session late.
    pub fn was_offered_late(&self, id: &str) -> bool {
        (self
            .view
            .offered_late
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
        .iter()
        .any(|late| **late == *id)
    }

    /// XEP-0280: enables (true) or disables carbon copies for the session.
    pub fn set_carbons(&self, enabled: bool) {
        self.view.carbons.store(enabled, Ordering::Relaxed);
    }

    pub fn carbons(&self) -> bool {
        self.view.carbons.load(Ordering::Relaxed)
    }

    pub fn features(&self) -> Option<Features> {
        self.view
            .features
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the session gets the classic rendering (DESIGN §3): its capabilities decide
    /// when known; otherwise `made_classically`, how the subscription behind the event was
    /// made; otherwise how the session publishes its own presence.
    pub fn wants_classic(&self, made_classically: Option<bool>) -> bool {
        let features = self
            .view
            .features
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let publishes_classically = self.view.classic.load(Ordering::Relaxed);
        rendering::wants_classic(features.as_ref(), made_classically, publishes_classically)
    }
}

#[derive(Default)]
pub struct Router {
    /// Bound sessions by bare JID, then resource: keyed by strings, so that finding a full
    /// JID's session (once per delivery) borrows its bare part instead of building one.
    sessions: RwLock<FastHashMap<String, FastHashMap<String, SessionHandle>>>,
    /// Each account's XEP-0191 blocklist, kept by the pubsub services (whose outcast lists
    /// it mirrors) so that stanzas between blocked parties stop where they are routed.
    blocked: RwLock<FastHashMap<BareJid, FastHashSet<BareJid>>>,
    /// Where stanzas for other domains go, when the server federates.
    federation: OnceLock<Arc<crate::s2s::Federation>>,
    /// Connected XEP-0114 components, by domain: everything addressed to the domain is theirs.
    components: RwLock<FastHashMap<String, SessionHandle>>,
    /// The domains of the configured components, connected or not: what is addressed to one
    /// that is not connected bounces, as it would from another server that cannot be reached.
    component_domains: OnceLock<FastHashSet<String>>,
    /// Where the bounces of what the rooms sent go (see [`Router::bounce_rooms_to`]).
    room_bounces: OnceLock<(String, mpsc::Sender<minidom::Element>)>,
    /// Other servers' users' resources whose available presence reached a local account, with
    /// their verified capabilities once known: XEP-0163 `+notify` for remote contacts.
    remote: RwLock<RemoteResources>,
}

/// Remote resources seen available, by domain, bounded: a server sending presence from
/// made-up JIDs cannot grow it past [`MAX_REMOTE_PER_DOMAIN`] for its domain, nor all
/// servers together past [`MAX_REMOTE_RESOURCES`] ([`MAX_REMOTE_PER_ACCOUNT`] per account).
#[derive(Default)]
struct RemoteResources {
    by_domain: HashMap<String, RemoteDomain>,
    count: usize,
}

#[derive(Default)]
struct RemoteDomain {
    by_account: HashMap<BareJid, HashMap<String, Option<Features>>>,
    count: usize,
}

impl RemoteResources {
    fn resources(&self, bare: &BareJid) -> Option<&HashMap<String, Option<Features>>> {
        self.by_domain
            .get(bare.domain().as_str())?
            .by_account
            .get(bare)
    }
}

const MAX_REMOTE_RESOURCES: usize = 100_000;
const MAX_REMOTE_PER_DOMAIN: usize = 10_000;
const MAX_REMOTE_PER_ACCOUNT: usize = 16;

impl Router {
    /// Stanzas for domains this server does not host go to other servers through `federation`.
    pub fn federate(&self, federation: Arc<crate::s2s::Federation>) {
        let _ = self.federation.set(federation);
    }

    /// Another server's user's resource became available (with its verified features, if
    /// known) or unavailable. True when it is newly available: its initial presence.
    pub fn remote_presence(
        &self,
        full: &FullJid,
        available: bool,
        features: Option<Features>,
    ) -> bool {
        let mut remote = self.remote.write().unwrap_or_else(PoisonError::into_inner);
        let RemoteResources { by_domain, count } = &mut *remote;
        let bare = full.bare();
        let (domain_name, resource) = (bare.domain().as_str(), full.resource().as_str());
        if !available {
            let Some(domain) = by_domain.get_mut(domain_name) else {
                return false;
            };
            let Some(resources) = domain.by_account.get_mut(&bare) else {
                return false;
            };
            if resources.remove(resource).is_none() {
                return false;
            }
            if resources.is_empty() {
                domain.by_account.remove(&bare);
            }
            *count -= 1;
            domain.count -= 1;
            if domain.count == 0 {
                by_domain.remove(domain_name);
            }
            return false;
        }
        if let Some(known) = by_domain
            .get_mut(domain_name)
            .and_then(|domain| domain.by_account.get_mut(&bare))
            .and_then(|resources| resources.get_mut(resource))
        {
            *known = features.or(known.take());
            return false;
        }
        // Nothing is made, not even an empty entry, for a resource that is not kept.
        let (in_domain, of_account) = by_domain.get(domain_name).map_or((0, 0), |domain| {
            let of_account = domain.by_account.get(&bare).map_or(0, HashMap::len);
            (domain.count, of_account)
        });
        if *count >= MAX_REMOTE_RESOURCES
            || in_domain >= MAX_REMOTE_PER_DOMAIN
            || of_account >= MAX_REMOTE_PER_ACCOUNT
        {
            return false;
        }
        let domain = by_domain.entry(domain_name.to_owned()).or_default();
        domain.count += 1;
        *count += 1;
        domain
            .by_account
            .entry(bare)
            .or_default()
            .insert(resource.to_owned(), features);
        true
    }

    /// The last incoming stream from `domain` ended: its users' resources are forgotten (their
    /// server sends their presence again on a new stream, when they are available).
    pub fn forget_remote_domain(&self, domain: &str) {
        let mut remote = self.remote.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(forgotten) = remote.by_domain.remove(domain) {
            remote.count -= forgotten.count;
        }
    }

    /// The verified features of a remote resource, learned after its presence came.
    pub fn set_remote_features(&self, full: &FullJid, features: Features) {
        let mut remote = self.remote.write().unwrap_or_else(PoisonError::into_inner);
        let bare = full.bare();
        if let Some(known) = remote
            .by_domain
            .get_mut(bare.domain().as_str())
            .and_then(|domain| domain.by_account.get_mut(&bare))
            .and_then(|resources| resources.get_mut(full.resource().as_str()))
        {
            *known = Some(features);
        }
    }

    /// The available resources of another server's user, as far as their presence told us.
    pub fn remote_resources(&self, bare: &BareJid) -> Vec<FullJid> {
        let remote = self.remote.read().unwrap_or_else(PoisonError::into_inner);
        remote
            .resources(bare)
            .into_iter()
            .flatten()
            .filter_map(|(resource, _)| bare.with_resource_str(resource).ok())
            .collect()
    }

    pub fn remote_features(&self, full: &FullJid) -> Option<Features> {
        let remote = self.remote.read().unwrap_or_else(PoisonError::into_inner);
        remote
            .resources(&full.bare())?
            .get(full.resource().as_str())?
            .clone()
    }

    /// The domains of the configured components (`[components.secrets]`).
    pub fn expect_components(&self, domains: impl IntoIterator<Item = String>) {
        let _ = self.component_domains.set(domains.into_iter().collect());
    }

    /// Whether `domain` is a configured component's, connected or not.
    pub fn is_component_domain(&self, domain: &str) -> bool {
        (self.component_domains.get()).is_some_and(|domains| domains.contains(domain))
    }

    /// The bounces of what the rooms at `rooms` (`chat.<domain>`) sent go to `to` rather than
    /// to a session: a room learns that way that an occupant (of another server, or of a
    /// component that is not connected) cannot be reached (XEP-0045 333).
    pub fn bounce_rooms_to(&self, rooms: String, to: mpsc::Sender<minidom::Element>) {
        let _ = self.room_bounces.set((rooms, to));
    }

    /// Tells the sender of `stanza` that it could not be delivered. The error names only what
    /// the stanza's start tag says, so that is all that is parsed: bouncing a large
    /// notification to many costs no copy of its payload.
    pub fn bounce(&self, stanza: &Wire, error: StanzaError, text: Option<&str>) {
        let top = crate::s2s::stream::top_tag(stanza);
        let Some(reply) = crate::s2s::stream::start_tag_element(&top)
            .and_then(|original| error_reply(&original, error, text))
        else {
            return;
        };
        let Some(to) = reply.attr("to").and_then(|to| Jid::new(to).ok()) else {
            return;
        };
        if let Some((rooms, bounces)) = self.room_bounces.get()
            && to.domain().as_str() == rooms
        {
            // Full: the room hears of the next bounce instead.
            let _ = bounces.try_send(reply);
            return;
        }
        self.deliver(&to, Bytes::from(verona_stream::element_bytes(&reply)));
    }

    /// A component connected for `domain`; false (nothing changed) if one already is.
    pub fn add_component(&self, domain: &str, handle: SessionHandle) -> bool {
        let mut components = self
            .components
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if components.contains_key(domain) {
            return false;
        }
        components.insert(domain.to_owned(), handle);
        true
    }

    /// The component of `domain` disconnected (unless a newer one took its place).
    pub fn remove_component(&self, domain: &str, handle: &SessionHandle) {
        let mut components = self
            .components
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if components.get(domain).is_some_and(|h| h.id == handle.id) {
            components.remove(domain);
        }
    }

    fn component(&self, to: &Jid) -> Option<SessionHandle> {
        let components = self
            .components
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if components.is_empty() {
            return None;
        }
        components.get(to.domain().as_str()).cloned()
    }

    /// Whether `to` is a component's (without a copy of its handle: once per recipient).
    fn is_component(&self, to: &Jid) -> bool {
        let components = self
            .components
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        !components.is_empty() && components.contains_key(to.domain().as_str())
    }

    /// The way to `to`'s server, when it is another server's.
    fn remote(&self, to: &Jid) -> Option<&Arc<crate::s2s::Federation>> {
        self.federation
            .get()
            .filter(|federation| !federation.hosts(to.domain().as_str()))
    }

    pub fn set_blocked(&self, user: &BareJid, blocked: Vec<BareJid>) {
        let mut lists = self.blocked.write().unwrap_or_else(PoisonError::into_inner);
        if blocked.is_empty() {
            lists.remove(user);
        } else {
            lists.insert(user.clone(), blocked.into_iter().collect());
        }
    }

    /// Whether `user` blocked `other` (or `other`'s domain).
    pub fn blocks(&self, user: &BareJid, other: &BareJid) -> bool {
        let lists = self.blocked.read().unwrap_or_else(PoisonError::into_inner);
        lists.get(user).is_some_and(|list| {
            list.contains(other)
                || BareJid::new(other.domain().as_str()).is_ok_and(|domain| list.contains(&domain))
        })
    }

    /// Drops the items whose recipient blocked one of `authors` (or its domain), under one
    /// read of the blocklists: a fan-out asks for all its recipients at once.
    pub fn drop_blocked<T>(
        &self,
        items: &mut Vec<T>,
        to: impl Fn(&T) -> &Jid,
        authors: &[BareJid],
    ) {
        let lists = self.blocked.read().unwrap_or_else(PoisonError::into_inner);
        if authors.is_empty() || lists.is_empty() {
            return;
        }
        let domains: Vec<BareJid> = authors
            .iter()
            .filter_map(|author| BareJid::new(author.domain().as_str()).ok())
            .collect();
        items.retain(|item| {
            lists
                .get(&to(item).bare())
                .is_none_or(|list| !authors.iter().chain(&domains).any(|jid| list.contains(jid)))
        });
    }

    /// Binds `jid`; an older session on the same full JID is closed with `conflict`.
    pub fn bind(&self, jid: &FullJid, handle: SessionHandle) {
        let old = self
            .sessions
            .write()
            .expect("router lock")
            .entry(bare_part(jid).to_owned())
            .or_default()
            .insert(jid.resource().to_string(), handle);
        if let Some(old) = old {
            old.close(CloseReason::Conflict);
        }
    }

    /// Removes the binding, unless it was already replaced by a newer session.
    pub fn unbind(&self, jid: &FullJid, handle: &SessionHandle) {
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let bare = bare_part(jid);
        if let Some(resources) = sessions.get_mut(bare) {
            if resources
                .get(jid.resource().as_str())
                .is_some_and(|h| h.id == handle.id)
            {
                resources.remove(jid.resource().as_str());
            }
            if resources.is_empty() {
                sessions.remove(bare);
            }
        }
    }

    pub fn session(&self, jid: &FullJid) -> Option<SessionHandle> {
        self.with_session(jid, SessionHandle::clone)
    }

    /// `f` of the session bound to `jid`, under the registry's lock: a delivery (once per
    /// recipient of a fan-out) need not take its own handle.
    fn with_session<T>(&self, jid: &FullJid, f: impl FnOnce(&SessionHandle) -> T) -> Option<T> {
        let sessions = self.sessions.read().expect("router lock");
        sessions
            .get(bare_part(jid))?
            .get(jid.resource().as_str())
            .map(f)
    }

    /// The available sessions of an account (those that get presence broadcasts).
    pub fn available_sessions(&self, bare: &BareJid) -> Vec<FullJid> {
        self.sessions
            .read()
            .expect("router lock")
            .get(bare.as_str())
            .into_iter()
            .flatten()
            .filter(|(_, handle)| handle.is_available())
            .filter_map(|(resource, _)| bare.with_resource_str(resource).ok())
            .collect()
    }

    /// The positions of the JIDs that have no bound session (for a bare JID: no session of
    /// its account that `reach` takes), under one read of the registry: a fan-out asks for
    /// all its recipients.
    pub fn unreachable<'a>(
        &self,
        jids: impl IntoIterator<Item = &'a Jid>,
        reach: Reach,
    ) -> Vec<usize> {
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        let components = self
            .components
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        jids.into_iter()
            .enumerate()
            // Another server's users are reached through it, a component's through it.
            .filter(|(_, jid)| {
                self.remote(jid).is_none()
                    && (components.is_empty() || !components.contains_key(jid.domain().as_str()))
            })
            .filter(|(_, jid)| match jid.try_as_full() {
                Ok(full) => !sessions
                    .get(bare_part(full))
                    .is_some_and(|resources| resources.contains_key(full.resource().as_str())),
                Err(bare) => !sessions.get(bare.as_str()).is_some_and(|resources| {
                    resources.values().any(|handle| reach.takes(handle, None))
                }),
            })
            .map(|(at, _)| at)
            .collect()
    }

    /// Every bound session of an account, with its full JID.
    pub fn resources_of(&self, bare: &BareJid) -> Vec<(FullJid, SessionHandle)> {
        self.sessions
            .read()
            .expect("router lock")
            .get(bare.as_str())
            .into_iter()
            .flatten()
            .filter_map(|(resource, handle)| {
                Some((bare.with_resource_str(resource).ok()?, handle.clone()))
            })
            .collect()
    }

    /// The sessions a message to the account's bare JID reaches (RFC 6121 §8.5.2.1.1): the
    /// available ones with a non-negative priority, with their full JIDs.
    pub fn message_sessions(&self, bare: &BareJid) -> Vec<(FullJid, SessionHandle)> {
        let mut sessions = self.resources_of(bare);
        sessions.retain(|(_, handle)| Reach::Messages.takes(handle, None));
        sessions
    }

    /// Every bound session of an account.
    pub fn sessions_of(&self, bare: &BareJid) -> Vec<SessionHandle> {
        self.sessions
            .read()
            .expect("router lock")
            .get(bare.as_str())
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Delivers to a full JID's session, or to every session of a bare JID; returns how many
    /// sessions took it. What a component's domain does not take (or another server's, see
    /// [`crate::s2s::Federation::send`]) bounces to its sender.
    pub fn deliver(&self, to: &Jid, stanza: impl Into<Wire>) -> usize {
        let stanza = stanza.into();
        if let Some(component) = self.component(to) {
            if component.send(stanza.clone()) {
                return 1;
            }
            self.bounce(&stanza, StanzaError::ResourceConstraint, None);
            return 0;
        }
        if self.is_component_domain(to.domain().as_str()) {
            self.bounce(
                &stanza,
                StanzaError::ServiceUnavailable,
                Some(COMPONENT_ABSENT),
            );
            return 0;
        }
        if let Some(federation) = self.remote(to) {
            return usize::from(federation.send(stanza));
        }
        match to.try_as_full() {
            Ok(full) => self
                .with_session(full, |h| usize::from(h.send(stanza)))
                .unwrap_or(0),
            Err(bare) => self
                .sessions_of(bare)
                .into_iter()
                .filter(|h| h.send(stanza.clone()))
                .count(),
        }
    }

    /// Delivers each stanza as [`Router::deliver`] does, looking up local sessions under one
    /// read of the registry: a fan-out's or a room's copies, one per recipient, which took
    /// the locks and hashed each recipient's domain once per copy. A copy for a bare JID
    /// goes to the sessions of its account that `reach` says.
    pub fn deliver_all<J: std::borrow::Borrow<Jid>>(
        &self,
        outgoing: impl IntoIterator<Item = (J, Wire)>,
        reach: Reach,
    ) {
        // Another server's and a component's recipients go after the locks are released:
        // their sending may route again.
        let mut elsewhere = Vec::new();
        {
            let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
            let components = (self.components.read()).unwrap_or_else(PoisonError::into_inner);
            for (to, stanza) in outgoing {
                let jid = to.borrow();
                if self.remote(jid).is_some()
                    || (!components.is_empty() && components.contains_key(jid.domain().as_str()))
                {
                    elsewhere.push((to, stanza));
                    continue;
                }
                let (bare, resource) = match jid.try_as_full() {
                    Ok(full) => (bare_part(full), Some(full.resource().as_str())),
                    Err(bare) => (bare.as_str(), None),
                };
                // No account here: perhaps a component's that is not connected, whose
                // absence bounces (looked up only then, to keep the usual copy cheap).
                let Some(account) = sessions.get(bare) else {
                    if self.is_component_domain(jid.domain().as_str()) {
                        elsewhere.push((to, stanza));
                    }
                    continue;
                };
                match resource {
                    Some(resource) => {
                        if let Some(session) = account.get(resource) {
                            session.send(stanza);
                        }
                    }
                    None => {
                        for session in (account.values()).filter(|s| reach.takes(s, None)) {
                            session.send(stanza.clone());
                        }
                    }
                }
            }
        }
        for (to, stanza) in elsewhere {
            self.deliver(to.borrow(), stanza);
        }
    }

    /// Delivers an event in two renderings: `native` to sessions that speak XEP-0207, `classic`
    /// (if any) to classic sessions, computed only when one of them is there. A bare `to`
    /// means the account's sessions that `reach` says. `made_classically` tells how the
    /// subscription behind the event was made, if known. `native` is asked once per session
    /// that takes it, with the session's resource (none for another server's user), so that
    /// each copy may be addressed to its session with an id of its own (XEP-0207 Ex. 4).
    pub fn deliver_views(
        &self,
        to: &Jid,
        mut native: impl FnMut(Option<&str>) -> Wire,
        made_classically: Option<bool>,
        reach: Reach,
        classic: impl FnOnce() -> Option<Vec<Wire>>,
    ) -> usize {
        if self.remote(to).is_some() || self.is_component(to) {
            // Another server's user, or a component: it may not speak XEP-0207, and nothing
            // tells us its capabilities, so it gets the classic stanzas wherever there are
            // some, unless its subscription was made natively (DESIGN §3).
            let stanzas = match made_classically {
                Some(false) => vec![native(None)],
                _ => classic().unwrap_or_else(|| vec![native(None)]),
            };
            // One destination: delivered if every stanza went.
            let any = !stanzas.is_empty();
            let mut all = true;
            for stanza in stanzas {
                all &= self.deliver(to, stanza) > 0;
            }
            return usize::from(any && all);
        }
        // Under the registry's read lock, as `deliver` does: a fan-out clones no handle.
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        let (bare, resource) = match to.try_as_full() {
            Ok(full) => (bare_part(full), Some(full.resource().as_str())),
            Err(bare) => (bare.as_str(), None),
        };
        let Some(resources) = sessions.get(bare) else {
            return 0;
        };
        let one = resource.and_then(|resource| resources.get_key_value(resource));
        let all = resource.is_none().then(|| {
            (resources.iter()).filter(|(_, handle)| reach.takes(handle, made_classically))
        });
        let mut targets = one.into_iter().chain(all.into_iter().flatten()).peekable();
        // The classic rendering is made once, when a session first needs it; the last
        // (usually the only) session takes the stanzas themselves rather than a copy.
        let mut classic = Some(classic);
        let mut classic_bytes = None;
        let mut delivered = 0;
        while let Some((resource, session)) = targets.next() {
            let last = targets.peek().is_none();
            if session.wants_classic(made_classically) {
                if let Some(render) = classic.take() {
                    classic_bytes = render();
                }
                let stanzas = if last {
                    classic_bytes.take()
                } else {
                    classic_bytes.clone()
                };
                // Each stanza its own `Wire`: stream management counts them one by one.
                let stanzas = stanzas.unwrap_or_default();
                let any = !stanzas.is_empty();
                let mut all = true;
                for stanza in stanzas {
                    all &= session.send(stanza);
                }
                delivered += usize::from(any && all);
            } else {
                delivered += usize::from(session.send(native(Some(resource.as_str()))));
            }
        }
        delivered
    }

    /// Closes every session of `session`'s account but `session` (its password changed there).
    pub fn close_others(&self, session: &FullJid, reason: CloseReason) {
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        let others = sessions
            .get(bare_part(session))
            .into_iter()
            .flatten()
            .filter(|(resource, _)| resource.as_str() != session.resource().as_str());
        for (_, handle) in others {
            handle.close(reason);
        }
    }

    /// Closes every session of an account (deleted, or its password changed).
    pub fn close_account(&self, bare: &BareJid, reason: CloseReason) {
        for handle in self.sessions_of(bare) {
            handle.close(reason);
        }
    }
}

/// Which sessions of an account an event for its bare JID reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every session.
    Connected,
    /// The available ones (a presence broadcast, RFC 6121 §4.2.2).
    Available,
    /// A session in the classic view once available (a request to subscribe, RFC 6121
    /// §3.1.3: it gets those waiting when it sends its presence), one speaking XEP-0207 as
    /// soon as it is there.
    AvailableIfClassic,
    /// The available ones with a non-negative priority: a message to the bare JID (RFC 6121
    /// §8.5.2.1.1), such as a notification of a node subscribed to by bare JID.
    Messages,
}

impl Reach {
    /// Whether it takes in `session`, whose subscription behind the event was made as
    /// `made_classically` says, if known.
    fn takes(self, session: &SessionHandle, made_classically: Option<bool>) -> bool {
        match self {
            Reach::Connected => true,
            Reach::Available => session.is_available(),
            Reach::AvailableIfClassic => {
                session.is_available() || !session.wants_classic(made_classically)
            }
            Reach::Messages => session.is_available() && session.priority() >= 0,
        }
    }
}

/// Why a stanza for a component's domain bounced while no component is connected for it.
const COMPONENT_ABSENT: &str = "the component is not connected";

/// The bare JID of a full JID, as a slice of it (no node or domain holds a `/`).
fn bare_part(jid: &FullJid) -> &str {
    let full = jid.as_str();
    full.split_once('/').map_or(full, |(bare, _)| bare)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn full(s: &str) -> FullJid {
        FullJid::new(s).unwrap()
    }

    #[test]
    fn bind_route_unbind() {
        let router = Router::default();
        let (h, ends) = SessionHandle::new(4, 1 << 20);
        let jid = full("juliet@capulet.lit/balcony");
        router.bind(&jid, h.clone());
        assert!(
            router
                .session(&jid)
                .unwrap()
                .send(Bytes::from_static(b"<x/>"))
        );
        assert_eq!(ends.queue.try_recv().unwrap(), Wire::from(&b"<x/>"[..]));
        assert_eq!(router.sessions_of(&jid.bare()).len(), 1);
        router.unbind(&jid, &h);
        assert!(router.session(&jid).is_none());
        assert!(router.sessions_of(&jid.bare()).is_empty());
    }

    #[test]
    fn a_resource_with_slashes_is_found_under_its_account() {
        let router = Router::default();
        let (h, _ends) = SessionHandle::new(4, 1 << 20);
        let jid = full("Juliet@Capulet.lit/balcony/east");
        assert_eq!(bare_part(&jid), "juliet@capulet.lit");
        router.bind(&jid, h.clone());
        assert!(
            router
                .session(&full("juliet@capulet.lit/balcony/east"))
                .is_some()
        );
        assert!(
            router
                .session(&full("juliet@capulet.lit/balcony"))
                .is_none()
        );
        assert_eq!(router.sessions_of(&jid.bare()).len(), 1);
        assert_eq!(router.resources_of(&jid.bare())[0].0, jid);
        router.unbind(&jid, &h);
        assert!(router.sessions_of(&jid.bare()).is_empty());
    }

    #[test]
    fn sessions_queue_one_copy_of_a_shared_body() {
        let router = Router::default();
        let mut ends = Vec::new();
        for resource in ["a", "b", "c"] {
            let (h, e) = SessionHandle::new(4, 1 << 20);
            router.bind(&full(&format!("juliet@capulet.lit/{resource}")), h);
            ends.push(e);
        }
        let body = Bytes::from(vec![b'x'; 200 * 1024]);
        let stanza = Wire::new(Bytes::from_static(b"<m>"), body.clone(), Bytes::new());
        let to = Jid::new("juliet@capulet.lit").unwrap();
        assert_eq!(router.deliver(&to, stanza), 3);
        for e in &mut ends {
            let queued = e.queue.try_recv().unwrap();
            assert_eq!(queued.parts()[1].as_ptr(), body.as_ptr());
        }
    }

    #[test]
    fn unreachable_means_no_bound_session() {
        let router = Router::default();
        let (h, _ends) = SessionHandle::new(4, 1 << 20);
        let jid = full("juliet@capulet.lit/balcony");
        router.bind(&jid, h.clone());
        let to: Vec<Jid> = [
            "juliet@capulet.lit",
            "juliet@capulet.lit/balcony",
            "juliet@capulet.lit/chamber",
            "romeo@montague.lit",
        ]
        .iter()
        .map(|j| Jid::new(j).unwrap())
        .collect();
        assert_eq!(router.unreachable(&to, Reach::Connected), [2, 3]);
        router.unbind(&jid, &h);
        assert_eq!(router.unreachable(&to, Reach::Connected), [0, 1, 2, 3]);
    }

    #[test]
    fn delivering_all_reaches_what_delivering_each_does() {
        let router = Router::default();
        let (balcony, balcony_ends) = SessionHandle::new(8, 1 << 20);
        let (chamber, chamber_ends) = SessionHandle::new(8, 1 << 20);
        let (component, component_ends) = SessionHandle::new(8, 1 << 20);
        router.bind(&full("juliet@capulet.lit/balcony"), balcony);
        router.bind(&full("juliet@capulet.lit/chamber"), chamber);
        router.add_component("rooms.capulet.lit", component);
        let stanza = |n: u8| Wire::from(Bytes::from(vec![b'a' + n]));
        let outgoing = [
            "juliet@capulet.lit/balcony",
            "juliet@capulet.lit",
            "juliet@capulet.lit/garden",
            "romeo@montague.lit/pda",
            "hall@rooms.capulet.lit",
        ]
        .iter()
        .enumerate()
        .map(|(n, to)| (Jid::new(to).unwrap(), stanza(n as u8)));
        router.deliver_all(outgoing, Reach::Connected);
        let drain = |ends: &SessionEnds| std::iter::from_fn(|| ends.queue.try_recv()).collect();
        let got: [Vec<Wire>; 3] = [
            drain(&balcony_ends),
            drain(&chamber_ends),
            drain(&component_ends),
        ];
        assert_eq!(
            got,
            [vec![stanza(0), stanza(1)], vec![stanza(1)], vec![stanza(4)]]
        );
    }

    /// RFC 6121 §8.5.2.1.1: a copy for a bare JID sent as a message reaches the available
    /// sessions with a non-negative priority; one that reaches none of them is unreachable.
    #[test]
    fn a_message_to_a_bare_jid_reaches_the_available_sessions_of_priority_zero_and_up() {
        let router = Router::default();
        let mut ends = Vec::new();
        for (resource, available, priority) in
            [("on", true, 0), ("off", false, 0), ("low", true, -1)]
        {
            let (handle, end) = SessionHandle::new(4, 1 << 20);
            handle.set_available(available);
            handle.set_presence(priority, Show::Online);
            router.bind(&full(&format!("juliet@capulet.lit/{resource}")), handle);
            ends.push(end);
        }
        let juliet = Jid::new("juliet@capulet.lit").unwrap();
        let stanza = Wire::from(&b"<message/>"[..]);
        router.deliver_all([(&juliet, stanza)], Reach::Messages);
        let got: Vec<bool> = ends.iter().map(|e| e.queue.try_recv().is_some()).collect();
        assert_eq!(got, [true, false, false]);
        assert!(router.unreachable([&juliet], Reach::Messages).is_empty());
        let on = full("juliet@capulet.lit/on");
        let session = router.session(&on).unwrap();
        session.set_available(false);
        assert_eq!(router.unreachable([&juliet], Reach::Messages), [0]);
        assert!(router.unreachable([&juliet], Reach::Connected).is_empty());
    }

    #[test]
    fn rebinding_closes_the_older_session_and_keeps_the_newer() {
        let router = Router::default();
        let jid = full("juliet@capulet.lit/balcony");
        let (old, old_ends) = SessionHandle::new(4, 1 << 20);
        let (new, _new_ends) = SessionHandle::new(4, 1 << 20);
        router.bind(&jid, old.clone());
        router.bind(&jid, new.clone());
        assert_eq!(*old_ends.close.borrow(), Some(CloseReason::Conflict));
        // The old session's cleanup must not remove the new binding.
        router.unbind(&jid, &old);
        assert_eq!(router.session(&jid).unwrap().id, new.id);
    }

    #[test]
    fn views_go_to_the_sessions_that_want_them() {
        let router = Router::default();
        let (native, native_ends) = SessionHandle::new(4, 1 << 20);
        let (classic, classic_ends) = SessionHandle::new(4, 1 << 20);
        classic.set_classic(true);
        router.bind(&full("romeo@montague.lit/pda"), native);
        router.bind(&full("romeo@montague.lit/mobile"), classic);
        let to = Jid::new("romeo@montague.lit").unwrap();
        let delivered = router.deliver_views(
            &to,
            |_| Wire::from(&b"<event/>"[..]),
            None,
            Reach::Connected,
            || Some(vec![Bytes::from_static(b"<presence/>").into()]),
        );
        assert_eq!(delivered, 2);
        assert_eq!(
            native_ends.queue.try_recv().unwrap(),
            Wire::from(&b"<event/>"[..])
        );
        assert_eq!(
            classic_ends.queue.try_recv().unwrap(),
            Wire::from(&b"<presence/>"[..])
        );
        // No classic rendering: classic sessions get nothing, natives still do.
        let delivered = router.deliver_views(
            &to,
            |_| Wire::from(&b"<event/>"[..]),
            None,
            Reach::Connected,
            || None,
        );
        assert_eq!(delivered, 1);
        assert!(classic_ends.queue.try_recv().is_none());
    }

    /// Which sessions of an account each [`Reach`] takes in: (native?, available?) of four
    /// sessions, and which of them get the event.
    #[test]
    fn reach_picks_the_sessions() {
        let kinds = [(true, false), (true, true), (false, false), (false, true)];
        let table = [
            (Reach::Connected, [true, true, true, true]),
            (Reach::Available, [false, true, false, true]),
            (Reach::AvailableIfClassic, [true, true, false, true]),
            (Reach::Messages, [false, true, false, true]),
        ];
        for (reach, expected) in table {
            let router = Router::default();
            let mut ends = Vec::new();
            for (n, (native, available)) in kinds.into_iter().enumerate() {
                let (handle, end) = SessionHandle::new(4, 1 << 20);
                handle.set_classic(!native);
                handle.set_available(available);
                router.bind(&full(&format!("romeo@montague.lit/{n}")), handle);
                ends.push(end);
            }
            let to = Jid::new("romeo@montague.lit").unwrap();
            router.deliver_views(
                &to,
                |_| Wire::from(&b"<event/>"[..]),
                None,
                reach,
                || Some(vec![Bytes::from_static(b"<presence/>").into()]),
            );
            let got: Vec<bool> = ends.iter().map(|e| e.queue.try_recv().is_some()).collect();
            assert_eq!(got, expected, "{reach:?}");
        }
    }

    /// Issue #11 H5: the queue is bounded in bytes too; one stanza always fits an empty one.
    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let (h, ends) = SessionHandle::new(100, 10);
        assert!(h.offer(Bytes::from_static(b"12345678")));
        assert!(!h.offer(Bytes::from_static(b"12345678")), "16 > 10 bytes");
        assert!(ends.queue.try_recv().is_some());
        assert!(h.offer(Bytes::from(vec![b'x'; 64])), "alone it fits");
        assert!(!h.send(Bytes::from_static(b"x")));
        assert_eq!(*ends.close.borrow(), Some(CloseReason::Overflow));
    }

    #[test]
    fn a_fan_out_skips_those_who_blocked_its_author() {
        let router = Router::default();
        let bare = |s: &str| BareJid::new(s).unwrap();
        let jid = |s: &str| Jid::new(s).unwrap();
        let mut recipients = vec![
            jid("nurse@capulet.lit/kitchen"),
            jid("juliet@capulet.lit"),
            jid("tybalt@capulet.lit/street"),
        ];
        let authors = [bare("romeo@montague.lit")];
        router.drop_blocked(&mut recipients, |j| j, &authors);
        assert_eq!(recipients.len(), 3, "nobody blocks anyone");
        router.set_blocked(&bare("nurse@capulet.lit"), vec![bare("romeo@montague.lit")]);
        router.set_blocked(&bare("tybalt@capulet.lit"), vec![bare("montague.lit")]);
        router.set_blocked(&bare("juliet@capulet.lit"), vec![bare("paris@verona.lit")]);
        router.drop_blocked(&mut recipients, |j| j, &authors);
        assert_eq!(
            recipients,
            [jid("juliet@capulet.lit")],
            "by JID and by domain"
        );
    }

    #[test]
    fn remote_resources_are_remembered_within_bounds() {
        let router = Router::default();
        let features: Features = Arc::new(std::collections::HashSet::from([
            "urn:example+notify".to_owned()
        ]));
        let romeo = BareJid::new("romeo@montague.lit").unwrap();
        for n in 0..MAX_REMOTE_PER_ACCOUNT + 5 {
            router.remote_presence(&full(&format!("romeo@montague.lit/r{n}")), true, None);
        }
        assert_eq!(
            router.remote_resources(&romeo).len(),
            MAX_REMOTE_PER_ACCOUNT
        );
        let r0 = full("romeo@montague.lit/r0");
        assert_eq!(router.remote_features(&r0), None);
        router.set_remote_features(&r0, features.clone());
        assert_eq!(router.remote_features(&r0), Some(features.clone()));
        // Presence again without known features keeps what was learned.
        router.remote_presence(&r0, true, None);
        assert_eq!(router.remote_features(&r0), Some(features));
        for n in 0..MAX_REMOTE_PER_ACCOUNT {
            router.remote_presence(&full(&format!("romeo@montague.lit/r{n}")), false, None);
        }
        assert!(router.remote_resources(&romeo).is_empty());
        assert_eq!(router.remote.read().unwrap().count, 0);
    }

    /// One server's users cannot take more than their domain's share, a full table makes no
    /// entry (not even an empty one) for a newcomer, and a domain's resources go when its last
    /// stream does.
    #[test]
    fn remote_resources_are_bounded_per_domain_and_forgotten_with_their_server() {
        let router = Router::default();
        let accounts = |router: &Router| -> usize {
            let remote = router.remote.read().unwrap();
            remote.by_domain.values().map(|d| d.by_account.len()).sum()
        };
        let fill = |domain: &str, from: usize, n: usize| {
            for i in from..from + n {
                router.remote_presence(&full(&format!("u{i}@{domain}/r")), true, None);
            }
        };
        fill("evil.lit", 0, MAX_REMOTE_PER_DOMAIN + 10);
        assert_eq!(router.remote.read().unwrap().count, MAX_REMOTE_PER_DOMAIN);
        assert_eq!(accounts(&router), MAX_REMOTE_PER_DOMAIN, "no empty entries");
        let romeo = BareJid::new("romeo@montague.lit").unwrap();
        router.remote_presence(&full("romeo@montague.lit/orchard"), true, None);
        assert_eq!(
            router.remote_resources(&romeo).len(),
            1,
            "other domains get in"
        );
        // All servers together fill the table: a newcomer leaves nothing behind.
        let domains = MAX_REMOTE_RESOURCES / MAX_REMOTE_PER_DOMAIN;
        for d in 1..domains {
            fill(&format!("evil{d}.lit"), 0, MAX_REMOTE_PER_DOMAIN);
        }
        assert_eq!(router.remote.read().unwrap().count, MAX_REMOTE_RESOURCES);
        let before = accounts(&router);
        fill("new.lit", 0, 100);
        assert_eq!(accounts(&router), before);
        assert!(
            !router
                .remote
                .read()
                .unwrap()
                .by_domain
                .contains_key("new.lit")
        );
        router.forget_remote_domain("evil.lit");
        assert!(
            router
                .remote_resources(&BareJid::new("u0@evil.lit").unwrap())
                .is_empty()
        );
        assert_eq!(
            router.remote.read().unwrap().count,
            MAX_REMOTE_RESOURCES - MAX_REMOTE_PER_DOMAIN
        );
        fill("new.lit", 0, 1);
        assert_eq!(
            router
                .remote_resources(&BareJid::new("u0@new.lit").unwrap())
                .len(),
            1
        );
    }

    /// Issue #9/#15: a burst leaves no buffer behind once written; a session that is gone
    /// takes nothing and is not closed for overflow.
    #[test]
    fn an_emptied_queue_holds_no_buffer() {
        let (h, ends) = SessionHandle::new(1000, 1 << 20);
        for n in 0..100 {
            assert!(h.send(Bytes::from(format!("<x n='{n}'/>"))));
        }
        for n in 0..100 {
            let expected = format!("<x n='{n}'/>");
            assert_eq!(
                ends.queue.try_recv(),
                Some(Wire::from(Bytes::from(expected)))
            );
        }
        assert_eq!(ends.queue.try_recv(), None);
        assert!(h.outbox.lock().stanzas.capacity() <= KEEP_QUEUE_CAPACITY);
        drop(ends);
        assert!(!h.send(Bytes::from_static(b"<late/>")));
        assert_eq!(
            *h.close.borrow(),
            None,
            "a gone session is not closed for overflow"
        );
    }

    /// One stanza at a time (a chat) reuses the small buffer an emptied queue keeps; a burst
    /// grows it in one step, and it is given back once emptied.
    #[test]
    fn a_queue_keeps_a_small_buffer_and_grows_in_steps() {
        let (h, ends) = SessionHandle::new(1000, 1 << 20);
        let capacity = || h.outbox.lock().stanzas.capacity();
        for _ in 0..3 {
            assert!(h.send(Bytes::from_static(b"<one/>")));
            assert_eq!(capacity(), KEEP_QUEUE_CAPACITY);
            assert!(ends.queue.try_recv().is_some());
            assert_eq!(capacity(), KEEP_QUEUE_CAPACITY);
        }
        for _ in 0..=KEEP_QUEUE_CAPACITY {
            assert!(h.send(Bytes::from_static(b"<many/>")));
        }
        assert_eq!(capacity(), KEEP_QUEUE_CAPACITY + GROW_QUEUE_BY);
        while ends.queue.try_recv().is_some() {}
        assert_eq!(capacity(), 0);
        // An idle session gives even the small buffer back, but not while stanzas wait.
        assert!(h.send(Bytes::from_static(b"<one/>")));
        ends.queue.release_idle();
        assert_eq!(capacity(), KEEP_QUEUE_CAPACITY);
        assert!(ends.queue.try_recv().is_some());
        ends.queue.release_idle();
        assert_eq!(capacity(), 0);
    }

    /// The answers to a burst of the client's requests (fifty room joins, each answered
    /// with presence, history and subject) have four times the queue's room in stanzas, not
    /// in bytes; another user's stanza still finds the queue full at its bound.
    #[test]
    fn the_servers_output_has_more_room_in_stanzas() {
        let (h, ends) = SessionHandle::new(4, 1 << 20);
        for _ in 0..16 {
            assert!(h.send(Bytes::from_static(b"<presence/>")));
        }
        assert!(ends.queue.filling());
        assert!(!h.offer(Bytes::from_static(b"<message/>")));
        assert_eq!(*ends.close.borrow(), None);
        assert!(
            h.send(Bytes::from_static(b"<presence/>")),
            "past 4 x 4, just now"
        );
        assert_eq!(*ends.close.borrow(), None);

        let (h, ends) = SessionHandle::new(100, 10);
        assert!(h.send(Bytes::from_static(b"12345678")));
        assert!(!h.send(Bytes::from_static(b"12345678")), "16 > 10 bytes");
        assert_eq!(*ends.close.borrow(), Some(CloseReason::Overflow));
    }

    /// Past four times its bound, the server's output goes on filling a queue while its
    /// session takes from it, up to sixteen times; a session that takes nothing for two
    /// seconds is one whose client stopped reading.
    #[test]
    fn past_four_times_the_bound_the_session_must_be_taking() {
        let start = std::time::Instant::now();
        let at = |ms: u64| start + std::time::Duration::from_millis(ms);
        let mut queue = Queue::default();
        assert!(queue.still_taking(at(0)), "just past the line");
        assert!(
            queue.still_taking(at(1_900)),
            "within two seconds of going past it"
        );
        queue.taken += 1;
        assert!(queue.still_taking(at(3_000)), "taking");
        assert!(
            queue.still_taking(at(4_900)),
            "within two seconds of its last take"
        );
        assert!(
            !queue.still_taking(at(5_000)),
            "nothing taken for two seconds"
        );

        let (h, ends) = SessionHandle::new(4, 1 << 20);
        for n in 0..64 {
            assert!(h.send(Bytes::from_static(b"<presence/>")), "{n}");
        }
        assert_eq!(*ends.close.borrow(), None);
        assert!(
            !h.send(Bytes::from_static(b"<presence/>")),
            "16 x 4 at most"
        );
        assert_eq!(*ends.close.borrow(), Some(CloseReason::Overflow));
    }

    #[test]
    fn a_full_queue_closes_the_session() {
        let (h, ends) = SessionHandle::new(1, 1 << 20);
        for _ in 0..SERVER_STANZAS_CAP {
            assert!(h.send(Bytes::from_static(b"a")));
        }
        assert!(!h.send(Bytes::from_static(b"b")));
        assert_eq!(*ends.close.borrow(), Some(CloseReason::Overflow));
    }
}
