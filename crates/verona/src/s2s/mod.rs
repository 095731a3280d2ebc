//! Federation (RFC 6120 server-to-server streams): outgoing streams, one per pair of a local
//! domain and a remote one, set up on the first stanza and closed when idle; incoming streams
//! from other servers; both authenticated with XEP-0220 dialback over TLS.
//!
//! The router hands every stanza for another domain to [`Federation::send`]; stanzas from
//! other servers enter the server in [`inbound`] as a session's would, routed by the same
//! table, with the remote sender where a local session would be.

pub mod dialback;
pub(crate) mod inbound;
mod incoming;
mod outgoing;
pub mod resolve;
pub(crate) mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use verona_stream::{Limits, Wire};

use crate::config::{Config, S2sConfig};
use crate::router::Router;
use crate::xml::StanzaError;

pub use incoming::serve;

/// ALPN protocol id of direct TLS server-to-server streams (XEP-0368).
const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";
/// Longest wait before trying a domain that could not be reached again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The wait before asking a server that could not check our dialback key again (XEP-0220
/// §3): it answered, so it is up, and the check may work next time; errors in a row do not
/// make it longer, as failures do.
const UNCHECKED_WAIT: Duration = Duration::from_secs(2);
/// How long a failure to reach a domain to check a dialback key answers the keys claiming it
/// without a new try: a peer offering keys for a dead domain cannot make this server dial it
/// at the rate it sends them, and a server that is up again has its keys checked soon (sooner
/// if a stanza for it gets through). Failures of stanzas alone hold no key back.
const VERIFY_WAIT: Duration = Duration::from_secs(10);
/// At shutdown, how long an outgoing stream has to write what waits for it (the unavailable
/// presence of the sessions that ended) and close, set up first if it was being set up: a
/// peer that is dead or slow holds shutdown up no longer.
const STOP_FLUSH: Duration = Duration::from_secs(5);

/// What an outgoing stream is asked to do.
enum Out {
    /// A stanza serialised for clients (`jabber:client`), its body shared with the other
    /// recipients of a fan-out, counted against the queues' bytes until sent or dropped.
    Stanza(Wire, Charge),
    /// XEP-0220 §2.1.2: ask the remote domain whether it made `key` for stream `id`.
    Verify {
        id: String,
        key: String,
        answer: oneshot::Sender<Verdict>,
    },
}

/// What became of a dialback key sent to its authoritative server to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    /// The authoritative server did not make it: a forgery.
    Invalid,
    /// Nobody said whether the key is good (XEP-0220 §3): the condition the other server
    /// is told with `type='error'`, which it does not take for a forgery.
    Unchecked(Unchecked),
}

/// Why a dialback key could not be checked (XEP-0220 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unchecked {
    /// No stream to the authoritative server could be set up.
    ConnectionFailed,
    /// The stream to it ended, or it did not answer in time.
    Timeout,
    /// It answered with an error of its own.
    Error,
}

impl Unchecked {
    /// The stanza error (type, condition) the dialback error carries.
    pub(crate) fn error(self) -> (&'static str, &'static str) {
        match self {
            Unchecked::ConnectionFailed => ("cancel", "remote-connection-failed"),
            Unchecked::Timeout => ("wait", "remote-server-timeout"),
            // XEP-0220 §3: an error in step 3 (the authoritative server's answer).
            Unchecked::Error => ("cancel", "remote-server-not-found"),
        }
    }
}

/// A local domain and a remote one: one outgoing stream each.
type Pair = (String, String);

/// Resolves once `signal` is set, at once if it is already (a receiver made after it was
/// set has seen no change).
async fn raised(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|set| *set).await;
}

/// An outgoing stream's task, counted among those running while it lasts (also if it panics):
/// [`Federation::stop`] waits for them all.
struct Running(Arc<Federation>);

impl Running {
    fn new(federation: Arc<Federation>) -> Running {
        federation.outgoing.send_modify(|running| *running += 1);
        Running(federation)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.outgoing.send_modify(|running| *running -= 1);
    }
}

/// An outgoing stream's queue, with a number telling it apart from a later one and the bytes
/// of the stanzas waiting for it.
struct Link {
    id: u64,
    queue: mpsc::Sender<Out>,
    queued: Arc<AtomicUsize>,
}

/// The bytes of a stanza waiting for another server, held against its pair's and the
/// server's bounds until it is dropped (sent, bounced, or moved to a new stream).
struct Charge {
    bytes: usize,
    pair: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.pair.fetch_sub(self.bytes, Ordering::Relaxed);
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A remote domain that could not be reached, or could not check our key: stanzas for it
/// bounce with `bounce` until `until`.
struct Down {
    until: Instant,
    failures: u32,
    bounce: StanzaError,
    /// When the last stream that failed had a dialback key to check waiting.
    keys_failed_at: Option<Instant>,
}

/// Unreachable domains remembered at most: a user who writes to made-up domains cannot grow
/// the table without bound. One whose wait ended more than [`MAX_BACKOFF`] ago is forgotten to
/// make room; with no room, a failure is not remembered (the next stanza tries again).
const MAX_DOWN_DOMAINS: usize = 10_000;

/// The key of a pair of domains in the table of failures.
fn down_key(local: &str, remote: &str) -> String {
    format!("{local} {remote}")
}

/// Notes that `remote` (a pair's [`down_key`]) could not be reached at `now`: the wait before
/// the next try doubles with each failure in a row, up to [`MAX_BACKOFF`].
fn note_failure(down: &mut HashMap<String, Down>, remote: &str, now: Instant) {
    let Some(entry) = down_entry(down, remote, now) else {
        return;
    };
    entry.failures = entry.failures.saturating_add(1);
    let wait = Duration::from_secs(1u64 << entry.failures.min(9)).min(MAX_BACKOFF);
    entry.until = now + wait;
    entry.bounce = StanzaError::RemoteServerNotFound;
}

/// Notes that the failure of `remote` (a pair's [`down_key`]) just noted left a dialback key
/// unchecked at `now`.
fn note_keys_failed(down: &mut HashMap<String, Down>, remote: &str, now: Instant) {
    if let Some(entry) = down.get_mut(remote) {
        entry.keys_failed_at = Some(now);
    }
}

/// Whether a dialback key claiming `remote` (a pair's [`down_key`]) is answered unchecked
/// without dialling it at `now`: it could not be reached to check a key less than
/// [`VERIFY_WAIT`] ago. (An entry outlives that: it is forgotten only [`MAX_BACKOFF`] after
/// its stanzas' wait.)
fn verify_waits(down: &HashMap<String, Down>, remote: &str, now: Instant) -> bool {
    down.get(remote).is_some_and(|d| {
        d.failures > 0 && d.keys_failed_at.is_some_and(|at| now < at + VERIFY_WAIT)
    })
}

/// Notes that `remote`'s server answered our dialback key with an error at `now`: it was
/// reached, so the failures in a row end; stanzas bounce with `remote-server-timeout`, as
/// XEP-0220 §2.1.1 says, for [`UNCHECKED_WAIT`].
fn note_unchecked(down: &mut HashMap<String, Down>, remote: &str, now: Instant) {
    if let Some(entry) = down_entry(down, remote, now) {
        *entry = Down {
            until: now + UNCHECKED_WAIT,
            failures: 0,
            bounce: StanzaError::RemoteServerTimeout,
            keys_failed_at: None,
        };
    }
}

/// The entry of `remote` in the table, made if there is room.
fn down_entry<'a>(
    down: &'a mut HashMap<String, Down>,
    remote: &str,
    now: Instant,
) -> Option<&'a mut Down> {
    if !down.contains_key(remote) && down.len() >= MAX_DOWN_DOMAINS {
        down.retain(|_, d| d.until + MAX_BACKOFF > now);
        if down.len() >= MAX_DOWN_DOMAINS {
            return None;
        }
    }
    Some(down.entry(remote.to_owned()).or_insert(Down {
        until: now,
        failures: 0,
        bounce: StanzaError::RemoteServerNotFound,
        keys_failed_at: None,
    }))
}

/// The outgoing side of federation, shared by the router and the incoming streams.
pub struct Federation {
    /// The domains this server answers for: stanzas for others leave through here.
    hosted: Vec<String>,
    config: S2sConfig,
    limits: Limits,
    write_timeout: Duration,
    secret: dialback::Secret,
    starttls: TlsConnector,
    direct_tls: TlsConnector,
    /// TLS for incoming streams, asking for the peer's certificate.
    acceptor: tokio_rustls::TlsAcceptor,
    /// Checks whether a peer's certificate proves its domain (XEP-0178), against `ca_file` or
    /// the system's roots; `None` when there are no roots to check against.
    certificates: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    resolver: Option<TokioResolver>,
    router: Weak<Router>,
    links: Mutex<HashMap<Pair, Link>>,
    /// Bytes of the stanzas waiting for any other server.
    queued: Arc<AtomicUsize>,
    /// Capabilities questions sent to other servers' users, by iq id (XEP-0115 §6.2).
    caps_asked: Mutex<CapsQuestions>,
    down: Mutex<HashMap<String, Down>>,
    /// Incoming streams that proved each remote domain, while they last.
    incoming: Mutex<HashMap<String, usize>>,
    /// Set at shutdown, once the clients' sessions have ended: outgoing streams write what
    /// waits for them and close, and no new one opens.
    stopping: watch::Sender<bool>,
    /// The outgoing streams running.
    outgoing: watch::Sender<usize>,
    /// Set once the outgoing streams have stopped: the incoming streams and the listeners
    /// close.
    closing: watch::Sender<bool>,
}

impl Federation {
    /// The federation of a server, or `None` when `[s2s] listen` is empty.
    pub fn new(
        config: &Config,
        router: &Arc<Router>,
        identity: stream::Identity,
    ) -> anyhow::Result<Option<Arc<Federation>>> {
        if config.s2s.listen.is_empty() {
            return Ok(None);
        }
        let trusted = match roots(config.s2s.ca_file.as_deref()) {
            Ok(roots) => Some(roots),
            Err(e) if config.s2s.require_valid_cert || config.s2s.ca_file.is_some() => {
                return Err(e);
            }
            Err(e) => {
                tracing::warn!("no roots to verify other servers with (no SASL EXTERNAL): {e:#}");
                None
            }
        };
        let certificates = match &trusted {
            Some(roots) => Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots.clone()),
                    Arc::new(rustls::crypto::ring::default_provider()),
                )
                .build()?,
            ),
            None => None,
        };
        let roots = trusted.filter(|_| config.s2s.require_valid_cert);
        let starttls = stream::client_config(roots.clone(), &identity, None)?;
        let direct_tls = stream::client_config(roots, &identity, Some(ALPN_XMPP_SERVER))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(stream::server_config(&identity)?);
        let resolver = TokioResolver::builder_tokio()
            .map(|builder| builder.build())
            .map_err(|e| tracing::warn!("no DNS resolver, only [s2s.hosts] and port 5269: {e}"))
            .ok()
            .and_then(Result::ok);
        let domain = config.normalized_domain();
        let federation = Arc::new(Federation {
            hosted: [domain, config.pubsub_jid(), config.rooms_jid()]
                .into_iter()
                .chain(config.components.secrets.keys().cloned())
                .collect(),
            config: config.s2s.clone(),
            limits: Limits {
                max_stanza_bytes: config.limits.max_stanza_bytes,
                max_depth: config.limits.max_depth,
                max_attributes: config.limits.max_attributes,
            },
            write_timeout: Duration::from_secs(config.c2s.write_timeout_secs.max(1)),
            secret: dialback::Secret::random(),
            starttls: TlsConnector::from(starttls),
            direct_tls: TlsConnector::from(direct_tls),
            acceptor,
            certificates,
            resolver,
            router: Arc::downgrade(router),
            links: Mutex::default(),
            queued: Arc::default(),
            caps_asked: Mutex::default(),
            down: Mutex::default(),
            incoming: Mutex::default(),
            stopping: watch::Sender::new(false),
            outgoing: watch::Sender::new(0),
            closing: watch::Sender::new(false),
        });
        router.federate(federation.clone());
        Ok(Some(federation))
    }

    /// Whether `chain` (a peer's certificates) proves `domain`: it chains to our roots and
    /// names the domain (XEP-0178, RFC 6125).
    fn proves(&self, chain: &[rustls::pki_types::CertificateDer<'static>], domain: &str) -> bool {
        let (Some(verifier), Some((end_entity, intermediates))) =
            (&self.certificates, chain.split_first())
        else {
            return false;
        };
        let Ok(name) = rustls::pki_types::ServerName::try_from(domain.to_owned()) else {
            return false;
        };
        let now = rustls::pki_types::UnixTime::now();
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            verifier.as_ref(),
            end_entity,
            intermediates,
            &name,
            &[],
            now,
        )
        .is_ok()
    }

    /// Remembers a capabilities question for `full`; false if too many are waiting.
    pub(crate) fn ask_caps(
        &self,
        id: &str,
        full: jid::FullJid,
        account: jid::BareJid,
        caps: xmpp_parsers::caps::Caps,
    ) -> bool {
        let mut asked = self
            .caps_asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        asked.ask(id, full, account, caps, Instant::now())
    }

    /// The question an answer with `id` from `from` answers, if any.
    pub(crate) fn caps_answered(
        &self,
        id: &str,
        from: &str,
    ) -> Option<(jid::FullJid, jid::BareJid, xmpp_parsers::caps::Caps)> {
        let mut asked = self
            .caps_asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        asked
            .answered(id, from)
            .map(|question| (question.full, question.account, question.caps))
    }

    /// Whether `domain` is one this server answers for.
    pub fn hosts(&self, domain: &str) -> bool {
        self.hosted.iter().any(|d| d == domain)
    }

    /// Sends a stanza (serialised for clients, with `from` and `to`) to another domain's
    /// server. False if it bounced at once (its sender is told why): the server is down, or
    /// its pair's queue or all queues together are full, in stanzas or in bytes.
    pub fn send(self: &Arc<Self>, stanza: Wire) -> bool {
        let top = stream::top_tag(&stanza);
        let from = stream::head_attr(&top, "from").and_then(|f| domain_of(&f));
        let to = stream::head_attr(&top, "to").and_then(|t| domain_of(&t));
        let (Some(from), Some(to)) = (from, to) else {
            tracing::debug!("a stanza for another server without from or to");
            return false;
        };
        if !self.hosts(&from) || self.hosts(&to) {
            return false;
        }
        if let Some(error) = self.waiting(&from, &to) {
            self.bounce(&stanza, error);
            return false;
        }
        let bytes = stanza.len();
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(link) = self.link(&mut links, &from, &to) else {
            tracing::debug!(%from, %to, "stopping: a stanza for another server dropped");
            return false;
        };
        let (pair, total) = (
            link.queued.load(Ordering::Relaxed),
            self.queued.load(Ordering::Relaxed),
        );
        // An empty queue always takes one stanza, as a session's does.
        let over = |queued: usize, max: usize| queued > 0 && queued + bytes > max;
        if over(pair, self.config.max_queue_bytes) || over(total, self.config.max_total_queue_bytes)
        {
            drop(links);
            self.bounce(&stanza, StanzaError::ResourceConstraint);
            return false;
        }
        link.queued.fetch_add(bytes, Ordering::Relaxed);
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        let charge = Charge {
            bytes,
            pair: link.queued.clone(),
            total: self.queued.clone(),
        };
        let sent = link.queue.try_send(Out::Stanza(stanza, charge));
        drop(links);
        match sent {
            Ok(()) => true,
            Err(e) => {
                if let Out::Stanza(stanza, _) = e.into_inner() {
                    self.bounce(&stanza, StanzaError::ResourceConstraint);
                }
                false
            }
        }
    }

    /// Asks `remote` (over our stream to it) whether it made `key` for its stream `id` to
    /// `local`. Asked even while `remote` is in its wait after failures: the server asking
    /// has just connected to us, so it is likely up again, and only an answer says a key is
    /// forged. Not within [`VERIFY_WAIT`] of a failure to reach it that left a key unchecked:
    /// then the key is answered unchecked without dialling, since anyone may claim a dead
    /// domain, key after key, and each check would be a new connection.
    pub async fn verify(
        self: &Arc<Self>,
        local: &str,
        remote: &str,
        id: &str,
        key: &str,
    ) -> Verdict {
        let waits = {
            let down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
            verify_waits(&down, &down_key(local, remote), Instant::now())
        };
        if waits {
            return Verdict::Unchecked(Unchecked::ConnectionFailed);
        }
        let (answer, answered) = oneshot::channel();
        let ask = Out::Verify {
            id: id.to_owned(),
            key: key.to_owned(),
            answer,
        };
        let queued = {
            let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
            self.link(&mut links, local, remote)
                .is_some_and(|link| link.queue.try_send(ask).is_ok())
        };
        if !queued {
            return Verdict::Unchecked(Unchecked::ConnectionFailed);
        }
        let limit = Duration::from_secs(self.config.connect_timeout_secs);
        match tokio::time::timeout(limit, answered).await {
            Ok(Ok(verdict)) => verdict,
            // The stream ended with the question unanswered, or the answer is late.
            _ => Verdict::Unchecked(Unchecked::Timeout),
        }
    }

    /// The stream from `local` to `remote`, started if there is none (or it ended since);
    /// `None` at shutdown, when no stream starts.
    fn link<'a>(
        self: &Arc<Self>,
        links: &'a mut HashMap<Pair, Link>,
        local: &str,
        remote: &str,
    ) -> Option<&'a Link> {
        static LINK: AtomicU64 = AtomicU64::new(1);
        let key = (local.to_owned(), remote.to_owned());
        if links.get(&key).is_none_or(|link| link.queue.is_closed()) {
            if *self.stopping.borrow() {
                return None;
            }
            let id = LINK.fetch_add(1, Ordering::Relaxed);
            let (queue, rx) = mpsc::channel(self.config.max_queue.max(1));
            links.insert(
                key.clone(),
                Link {
                    id,
                    queue,
                    queued: Arc::default(),
                },
            );
            let running = Running::new(self.clone());
            let (local, remote) = (local.to_owned(), remote.to_owned());
            tokio::spawn(async move {
                outgoing::run(running.0.clone(), id, local, remote, rx).await;
                drop(running);
            });
        }
        links.get(&key)
    }

    /// Stops federation at shutdown, once the clients' sessions have ended and what they left
    /// for other servers (their unavailable presence, RFC 6121 §4.5.2, to their contacts and
    /// rooms) is queued: each outgoing stream writes what waits for it and closes, within
    /// [`STOP_FLUSH`], and no new one opens; then the incoming streams and the listeners
    /// close. They are kept till then: the server a stream opens to meanwhile checks its
    /// dialback key over a stream to this one.
    pub async fn stop(&self) {
        {
            // Under the lock streams start under: each either counts already or never starts.
            let _links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
            self.stopping.send_replace(true);
        }
        let _ = self
            .outgoing
            .subscribe()
            .wait_for(|running| *running == 0)
            .await;
        self.closing.send_replace(true);
    }

    /// Set when the incoming streams and the listeners for other servers are to close.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// An incoming stream proved `remote`.
    fn incoming_proved(&self, remote: &str) {
        let mut incoming = self.incoming.lock().unwrap_or_else(PoisonError::into_inner);
        *incoming.entry(remote.to_owned()).or_default() += 1;
    }

    /// An incoming stream that proved `remote` ended; with the last one, what its users'
    /// presence told us goes (a hostile server cannot leave it behind).
    fn incoming_ended(&self, remote: &str) {
        let mut incoming = self.incoming.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(streams) = incoming.get_mut(remote) else {
            return;
        };
        *streams -= 1;
        if *streams == 0 {
            incoming.remove(remote);
            // Under the lock: a stream proving the domain again cannot slip in between.
            if let Some(router) = self.router.upgrade() {
                router.forget_remote_domain(remote);
            }
        }
    }

    /// The error stanzas for `remote` from `local` bounce with at once, if the stream between
    /// them failed recently enough. Kept per pair of domains: a failure of one pair (a peer
    /// refusing the key of one of our subdomains, which anyone can make us try by asking for
    /// dialback to it) says nothing of the others.
    fn waiting(&self, local: &str, remote: &str) -> Option<StanzaError> {
        let down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        down.get(&down_key(local, remote))
            .filter(|d| d.until > Instant::now())
            .map(|d| d.bounce)
    }

    /// The stream from `local` to `remote` could not be made: wait longer after each failure
    /// in a row.
    fn failed(&self, local: &str, remote: &str) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        note_failure(&mut down, &down_key(local, remote), Instant::now());
    }

    /// The stream from `local` to `remote` that could not be made ([`Self::failed`]) had
    /// dialback keys to check waiting.
    fn keys_failed(&self, local: &str, remote: &str) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        note_keys_failed(&mut down, &down_key(local, remote), Instant::now());
    }

    /// `remote` answered our key from `local` with an error: a short wait.
    fn unchecked(&self, local: &str, remote: &str) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        note_unchecked(&mut down, &down_key(local, remote), Instant::now());
    }

    fn reached(&self, local: &str, remote: &str) {
        self.down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&down_key(local, remote));
    }

    /// Forgets the stream from `local` to `remote` if `link` is still the one registered.
    fn unlink(&self, local: &str, remote: &str, link: u64) {
        let key = (local.to_owned(), remote.to_owned());
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if links
            .get(&key)
            .is_some_and(|registered| registered.id == link)
        {
            links.remove(&key);
        }
    }

    /// Tells the local sender of `stanza` that it could not be delivered.
    fn bounce(&self, stanza: &Wire, error: StanzaError) {
        if let Some(router) = self.router.upgrade() {
            router.bounce(stanza, error, None);
        }
    }
}

/// Capabilities questions sent to other servers' users (XEP-0115 §6.2), by iq id. Bounded in
/// all and per remote domain, and each waits at most [`CapsQuestions::DEADLINE`]: a server
/// that never answers can neither keep the questions about its users for ever nor stop those
/// to everyone else's.
#[derive(Default)]
struct CapsQuestions {
    asked: HashMap<String, Question>,
    by_domain: HashMap<String, usize>,
}

struct Question {
    full: jid::FullJid,
    /// The local account whose contact's presence brought the question: the one whose
    /// `+notify` nodes the resource gets the last items of once its features are known.
    account: jid::BareJid,
    caps: xmpp_parsers::caps::Caps,
    until: Instant,
}

impl CapsQuestions {
    const MAX: usize = 1000;
    const MAX_PER_DOMAIN: usize = 100;
    const DEADLINE: Duration = Duration::from_secs(30);

    fn ask(
        &mut self,
        id: &str,
        full: jid::FullJid,
        account: jid::BareJid,
        caps: xmpp_parsers::caps::Caps,
        now: Instant,
    ) -> bool {
        if self.asked.len() >= Self::MAX
            || self.waiting(full.domain().as_str()) >= Self::MAX_PER_DOMAIN
        {
            self.expire(now);
        }
        let domain = full.domain().to_string();
        if self.asked.len() >= Self::MAX || self.waiting(&domain) >= Self::MAX_PER_DOMAIN {
            return false;
        }
        *self.by_domain.entry(domain).or_default() += 1;
        let until = now + Self::DEADLINE;
        self.asked.insert(
            id.to_owned(),
            Question {
                full,
                account,
                caps,
                until,
            },
        );
        true
    }

    fn answered(&mut self, id: &str, from: &str) -> Option<Question> {
        if self.asked.get(id)?.full.as_str() != from {
            return None;
        }
        self.remove(id)
    }

    fn waiting(&self, domain: &str) -> usize {
        self.by_domain.get(domain).copied().unwrap_or(0)
    }

    /// Forgets the questions whose time is up.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = (self.asked.iter())
            .filter(|(_, question)| question.until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }

    fn remove(&mut self, id: &str) -> Option<Question> {
        let question = self.asked.remove(id)?;
        let domain = question.full.domain().as_str();
        if let Some(waiting) = self.by_domain.get_mut(domain) {
            *waiting -= 1;
            if *waiting == 0 {
                self.by_domain.remove(domain);
            }
        }
        Some(question)
    }
}

/// The domain of a JID given as text.
fn domain_of(jid: &str) -> Option<String> {
    jid::Jid::new(jid).ok().map(|j| j.domain().to_string())
}

/// The roots other servers' certificates are checked against: `ca_file`, or the system's
/// bundle.
fn roots(ca_file: Option<&std::path::Path>) -> anyhow::Result<rustls::RootCertStore> {
    use anyhow::Context;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    const SYSTEM: &str = "/etc/ssl/certs/ca-certificates.crt";
    let path = ca_file.unwrap_or(std::path::Path::new(SYSTEM));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading CA certificates {}", path.display()))?
    {
        let cert = cert.with_context(|| format!("parsing {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("a CA certificate in {}", path.display()))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unreachable domains back off, and the table of them is bounded: old entries make room,
    /// and when none is old a new failure is not remembered.
    #[test]
    fn unreachable_domains_back_off_in_a_bounded_table() {
        let t0 = Instant::now();
        let mut down = HashMap::new();
        note_failure(&mut down, "gone.example", t0);
        note_failure(&mut down, "gone.example", t0);
        assert_eq!(down["gone.example"].until, t0 + Duration::from_secs(4));
        for n in 1..MAX_DOWN_DOMAINS {
            note_failure(&mut down, &format!("d{n}.example"), t0);
        }
        assert_eq!(down.len(), MAX_DOWN_DOMAINS);
        note_failure(&mut down, "one-more.example", t0);
        assert_eq!(down.len(), MAX_DOWN_DOMAINS);
        assert!(!down.contains_key("one-more.example"));
        // Long after their waits ended, the old entries make room.
        let later = t0 + MAX_BACKOFF + Duration::from_secs(10);
        note_failure(&mut down, "one-more.example", later);
        assert_eq!(down.len(), 1);
        assert_eq!(down["one-more.example"].failures, 1);
    }

    /// Keys claiming a domain that could not be reached to check a key are answered without
    /// dialling it for [`VERIFY_WAIT`], however long or short its stanzas wait; failures of
    /// stanzas alone hold no key back, and a domain whose server answered (our key unchecked)
    /// is up: its keys are checked.
    #[test]
    fn keys_for_an_unreachable_domain_wait_a_short_time() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut down = HashMap::new();
        note_failure(&mut down, "gone.example", t0);
        assert!(!verify_waits(&down, "gone.example", t0));
        note_keys_failed(&mut down, "gone.example", t0);
        assert!(down["gone.example"].until < t0 + VERIFY_WAIT);
        assert!(verify_waits(
            &down,
            "gone.example",
            t0 + VERIFY_WAIT - second
        ));
        assert!(!verify_waits(&down, "gone.example", t0 + VERIFY_WAIT));
        let t1 = t0 + VERIFY_WAIT;
        for _ in 0..8 {
            note_failure(&mut down, "gone.example", t1);
        }
        note_keys_failed(&mut down, "gone.example", t1);
        assert!(down["gone.example"].until > t1 + VERIFY_WAIT);
        assert!(verify_waits(
            &down,
            "gone.example",
            t1 + VERIFY_WAIT - second
        ));
        assert!(!verify_waits(&down, "gone.example", t1 + VERIFY_WAIT));
        note_unchecked(&mut down, "gone.example", t1);
        assert!(!verify_waits(&down, "gone.example", t1));
        // Nothing is noted for a domain with no failure (or no room for one).
        note_keys_failed(&mut down, "up.example", t1);
        assert!(!down.contains_key("up.example"));
    }

    /// Unanswered questions expire, and one domain's cannot take all the room.
    #[test]
    fn capabilities_questions_expire_and_are_bounded_per_domain() {
        let caps = xmpp_parsers::caps::Caps::new(
            "https://verona.example/test",
            xmpp_parsers::hashes::Hash::from_base64(
                xmpp_parsers::hashes::Algo::Sha_1,
                "iGlNkSs79yz5xucnyHYNFdNKGi8=",
            )
            .unwrap(),
        );
        let full = |jid: &str| jid::FullJid::new(jid).unwrap();
        let juliet = jid::BareJid::new("juliet@capulet.lit").unwrap();
        let mut questions = CapsQuestions::default();
        let t0 = Instant::now();
        for n in 0..CapsQuestions::MAX_PER_DOMAIN {
            let asker = full(&format!("u{n}@evil.lit/r"));
            assert!(questions.ask(&format!("e{n}"), asker, juliet.clone(), caps.clone(), t0));
        }
        let romeo = full("romeo@evil.lit/orchard");
        assert!(!questions.ask("late", romeo.clone(), juliet.clone(), caps.clone(), t0));
        // Others are still asked; a wrong sender answers nothing; the right one does.
        let benvolio = full("benvolio@montague.lit/r");
        assert!(questions.ask("m1", benvolio.clone(), juliet.clone(), caps.clone(), t0));
        assert!(questions.answered("m1", "romeo@evil.lit/orchard").is_none());
        assert_eq!(
            questions.answered("m1", benvolio.as_str()).map(|q| q.full),
            Some(benvolio)
        );
        // Past the deadline, the unanswered ones make room.
        let later = t0 + CapsQuestions::DEADLINE;
        assert!(questions.ask("later", romeo, juliet, caps, later));
        assert_eq!(questions.asked.len(), 1);
        assert_eq!(questions.waiting("evil.lit"), 1);
    }
}
