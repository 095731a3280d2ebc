//! One client connection (RFC 6120): stream negotiation ([`negotiation`]: STARTTLS, SASL,
//! resource binding) and, once bound, stanzas between the client and the services
//! ([`session`], routed by [`route`]).
//!
//! Each connection is one task: one `select!` over its socket, its outbound queue, its close
//! signal, shutdown and a timer. Output is gathered in one buffer and written once per wake-up.

mod csi;
mod negotiation;
pub use negotiation::FeaturesCache;
pub(crate) mod rate;
pub(crate) mod route;
mod session;
mod sm;
mod transport;

use crate::jids::Bare;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use jid::BareJid;
use minidom::Element;
use tokio::net::TcpStream;
use tokio::time::Instant;
use verona_auth::TlsBinding;
use verona_stream::Wire;
use verona_stream::{StreamEvent, StreamParser};

use crate::compress::{Zlib, ZlibError};
use crate::router::{CloseReason, SessionEnds};
use crate::server::Shared;
use crate::throttle::Admission;
use crate::xml::{BuilderExt, StreamError, builder, ns};
use negotiation::Sasl;
use rate::ReadRate;
use session::Session;
pub use transport::Listener;
use transport::{Failed, Proxied, Refused, Transport, tls_exporter};

pub(crate) use sm::Resumable;

/// Output buffers larger than this are released after a write; smaller ones are kept while the
/// connection is busy, so that each write does not allocate.
const KEEP_OUTPUT_CAPACITY: usize = 4096;
/// A bound session with nothing to do for this long releases the buffers it keeps between
/// writes (output, queue, parser), so that idle connections stay small. Held for 2 s, a
/// reconnect storm's sessions kept them all at once, and what they freed then stayed scattered
/// among live allocations (idle TLS 16.5 KiB of RSS per session, plaintext 7.4); shorter than
/// this, busy rooms' occupants paid a timer wake for each release.
const RELEASE_WHEN_IDLE_FOR: Duration = Duration::from_millis(250);
/// Queued stanzas written in one batch.
const BATCH: usize = 64;
/// The output buffer is sized up front for at most this much of what is queued.
const RESERVE_OUTPUT_AT_MOST: usize = 64 * 1024;
/// Time allowed for a TLS handshake, and for a WebSocket's (with its TLS handshake).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How a connection ends.
enum End {
    /// A stream error: sent, then the stream is closed.
    Fault(StreamError, Option<String>),
    /// A stream error with an application-specific condition (RFC 6120 §4.9.4).
    FaultWith(StreamError, String, Box<Element>),
    /// An orderly close: `</stream:stream>` is sent.
    Close,
    /// The socket is gone; nothing more can be sent.
    Gone,
    /// The client broke the WebSocket framing, and was told with a Close frame: over for
    /// good, as after a stream error, though nothing more can be sent.
    Failed,
    /// A new connection resumed the session (XEP-0198): it is handed over, and this
    /// connection closes quietly.
    Detach,
    /// The server is stopping while a write to the client waits (it is not reading): the
    /// write is given up, so nothing more can be sent, and the session ends, as for a lost
    /// connection but not parked (the server is stopping).
    Stopped,
}

fn fault(error: StreamError, text: impl Into<String>) -> End {
    End::Fault(error, Some(text.into()))
}

enum State {
    Unauthenticated {
        sasl: Option<Sasl>,
    },
    /// SASL succeeded; the stream restarts and the client binds a resource.
    Authenticated {
        jid: BareJid,
        /// The salt of the credentials it proved: if they have changed (a new password, the
        /// account deleted and perhaps made again) by the time it binds or resumes, it may not.
        salt: Vec<u8>,
        /// When it must have bound or resumed: `[limits] unauthenticated_timeout_secs` after
        /// authenticating, as for authenticating.
        bind_by: Instant,
    },
    Bound(Session),
}

/// What woke the connection up.
enum Wake {
    Read(io::Result<Vec<u8>>),
    Outbound(Wire),
    Closed(Option<CloseReason>),
    Shutdown,
    Timer,
}

struct Connection {
    shared: Arc<Shared>,
    io: Transport,
    peer: SocketAddr,
    parser: StreamParser,
    secure: bool,
    /// RFC 9266 tls-exporter data, on TLS 1.3 connections: enables SCRAM-*-PLUS.
    binding: Option<TlsBinding>,
    state: State,
    /// Whether our stream header for the current stream has gone out (a stream error needs it).
    header_sent: bool,
    auth_failures: u32,
    /// The account the current SASL attempt names, once known (for the throttle and logs).
    attempted: Option<BareJid>,
    /// The turn of `attempted`, held until the attempt is judged
    /// ([`crate::throttle::AuthThrottle::turn`]).
    lane: Option<crate::throttle::Turn>,
    /// Counts this connection against its address until it authenticates.
    admission: Option<Admission>,
    /// Counts this connection against its address while it lasts.
    _connection: Admission,
    /// How fast the client may send, and until when reading pauses.
    reads: ReadRate,
    paused_until: Option<Instant>,
    deadline: Option<Instant>,
    /// When a bound session's kept buffers go, unless it is busy again before.
    release_at: Option<Instant>,
    out: Vec<u8>,
    /// XEP-0138 zlib, once negotiated; applies to both directions.
    compression: Option<Box<Zlib>>,
}

/// Logs a connection the per-address `limit` (its configuration keys) refused: the operator
/// learns what to raise.
fn refused(peer: SocketAddr, limit: &str) {
    tracing::info!(%peer, limit, "too many connections from this address");
}

pub async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, listener: Listener) {
    // A trusted proxy's connections are counted against the client its request names, known
    // once the WebSocket handshake is read; anyone else's before any XMPP (or TLS) is spent
    // on them.
    let proxy = (listener == Listener::WebSocket
        && shared.config.c2s.trusted_proxies.contains(&peer.ip()))
    .then_some(peer.ip());
    let mut admitted = None;
    if proxy.is_none() {
        match shared.throttle.admit(peer.ip()) {
            Ok(admissions) => admitted = Some(admissions),
            Err(limit) => return refused(peer, limit),
        }
    }
    // Boxed, as below: a future's largest state is every connection's size while it lasts,
    // and the handshake's is only needed for a moment.
    let handshake = Box::pin(handshake(&shared, tcp, listener, proxy));
    let (io, binding, proxied) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => return tracing::debug!(?listener, "handshake failed: {e}"),
        Err(_) => return tracing::debug!(?listener, "handshake timed out"),
    };
    let (peer, (connection, admission)) = match (proxied, admitted) {
        (Some((client, admitted)), _) => {
            // In every line of the connection's: what fail2ban and the operator act on.
            tracing::Span::current().record("client", tracing::field::display(client));
            (SocketAddr::new(client, 0), admitted)
        }
        (None, Some(admitted)) => (peer, admitted),
        // A proxy's handshake admits the client it names, or fails.
        (None, None) => return,
    };
    let secure = match listener {
        Listener::Starttls => false,
        Listener::DirectTls | Listener::WebSocketTls => true,
        // A proxy in front terminated TLS, the operator says.
        Listener::WebSocket => shared.config.c2s.consider_websocket_secure,
    };
    let unauthenticated_timeout =
        Duration::from_secs(shared.config.limits.unauthenticated_timeout_secs);
    let limits = &shared.config.limits;
    let reads = ReadRate::new(
        limits.read_bytes_per_sec,
        limits.read_burst_bytes,
        Instant::now(),
    );
    let mut conn = Connection {
        parser: new_parser(&shared, false),
        shared,
        io,
        peer,
        secure,
        binding,
        state: State::Unauthenticated { sasl: None },
        header_sent: false,
        auth_failures: 0,
        attempted: None,
        lane: None,
        admission: Some(admission),
        _connection: connection,
        reads,
        paused_until: None,
        deadline: Some(Instant::now() + unauthenticated_timeout),
        release_at: None,
        out: Vec::new(),
        compression: None,
    };
    let end = conn.run().await;
    Box::pin(conn.finish(end)).await;
}

/// The TLS and WebSocket handshakes a listener's connections begin with; the transport,
/// RFC 9266 tls-exporter data for SCRAM-*-PLUS where the client can have it too (not over a
/// WebSocket: a browser cannot reach its TLS session's exporter), and the client a
/// WebSocket request says it forwards (`X-Forwarded-For`).
/// The connection's transport once its handshakes are done, with the client's address and
/// admissions when `proxy` (a trusted proxy's address) forwards a WebSocket for it.
async fn handshake(
    shared: &Shared,
    tcp: TcpStream,
    listener: Listener,
    proxy: Option<IpAddr>,
) -> anyhow::Result<(Transport, Option<TlsBinding>, Option<Proxied>)> {
    Ok(match listener {
        Listener::Starttls => (Transport::Plain(tcp), None, None),
        Listener::DirectTls => {
            let tls = shared.direct_tls.accept(tcp).await?;
            let binding = tls_exporter(&tls);
            (Transport::Tls(Box::new(tls)), binding, None)
        }
        Listener::WebSocket => {
            let (ws, proxied) =
                transport::accept_websocket(shared, Transport::Plain(tcp), proxy).await?;
            (ws, None, proxied)
        }
        Listener::WebSocketTls => {
            let tls = shared.websocket_tls.accept(tcp).await?;
            let tls = Transport::Tls(Box::new(tls));
            let (ws, _) = transport::accept_websocket(shared, tls, None).await?;
            (ws, None, None)
        }
    })
}

/// A parser for a new stream; before authentication with the small pre-auth stanza limit.
fn new_parser(shared: &Shared, authenticated: bool) -> StreamParser {
    let mut limits = shared.config.stream_limits();
    if !authenticated {
        let before = shared.config.limits.max_unauthenticated_stanza_bytes;
        limits.max_stanza_bytes = limits.max_stanza_bytes.min(before);
    }
    StreamParser::new(ns::CLIENT, limits)
}

impl Connection {
    async fn run(&mut self) -> End {
        let mut shutdown = self.shared.shutdown.clone();
        // Whether bytes were read that the parser has not been asked for yet.
        let mut unparsed = false;
        loop {
            // Boxed: handling a stanza goes deep (negotiation, routing, the services), and
            // an idle connection should not carry room for it. Only after a read: the parser
            // is drained each time.
            if std::mem::take(&mut unparsed)
                && let Err(end) = Box::pin(self.process_input()).await
            {
                return end;
            }
            if let Err(end) = self.flush().await {
                return end;
            }
            let caps_until = match &self.state {
                State::Bound(session) => session.caps_wait.as_ref().map(|w| w.until),
                State::Authenticated { bind_by, .. } => Some(*bind_by),
                State::Unauthenticated { .. } => None,
            };
            let wake = {
                let ends = match &mut self.state {
                    State::Bound(session) => Some(&mut session.ends),
                    _ => None,
                };
                let paused = self.paused_until.is_some();
                let deadline = [
                    self.deadline,
                    caps_until,
                    self.paused_until,
                    self.release_at,
                ]
                .into_iter()
                .flatten()
                .min();
                tokio::select! {
                    read = self.io.read_some(), if !paused => Wake::Read(read),
                    wake = session_wake(ends) => wake,
                    _ = shutdown.changed() => Wake::Shutdown,
                    _ = sleep_until(deadline) => Wake::Timer,
                }
            };
            match wake {
                Wake::Read(Err(e)) => {
                    return match Refused::of(&e) {
                        Some(Refused(error, why)) => fault(*error, *why),
                        None if Failed::is(&e) => End::Failed,
                        None => End::Gone,
                    };
                }
                Wake::Read(Ok(bytes)) if bytes.is_empty() => return End::Gone,
                Wake::Read(Ok(bytes)) => {
                    let received = match self.receive(&bytes) {
                        Ok(received) => received,
                        Err(end) => return end,
                    };
                    unparsed = true;
                    let now = Instant::now();
                    self.paused_until = self.reads.consumed(received, now);
                    if let State::Bound(session) = &self.state {
                        let account = session.pubsub.account_read(received, now);
                        self.paused_until = self.paused_until.max(account);
                        self.release_at = Some(now + RELEASE_WHEN_IDLE_FOR);
                    }
                }
                Wake::Outbound(bytes) => {
                    self.write_queued(bytes);
                    if self.unacked_beyond_bound() {
                        return fault(
                            StreamError::PolicyViolation,
                            "too many unacknowledged stanzas",
                        );
                    }
                }
                Wake::Closed(Some(CloseReason::Resumed)) => return End::Detach,
                Wake::Closed(reason) => {
                    let reason = reason.unwrap_or(CloseReason::AccountChanged);
                    return End::Fault(reason.stream_error(), None);
                }
                Wake::Shutdown if self.shared.failure.borrow().is_some() => {
                    return End::Fault(StreamError::InternalServerError, None);
                }
                Wake::Shutdown => return End::Fault(StreamError::SystemShutdown, None),
                Wake::Timer => {
                    if self
                        .paused_until
                        .is_some_and(|until| until <= Instant::now())
                    {
                        // The client may send again.
                        self.paused_until = None;
                        continue;
                    }
                    if self.release_at.is_some_and(|at| at <= Instant::now()) {
                        self.release_at = None;
                        self.release_idle();
                        continue;
                    }
                    if let Some(held) = self.caps_timeout() {
                        for el in held {
                            if let Err(end) = Box::pin(self.dispatch(el)).await {
                                return end;
                            }
                        }
                        continue;
                    }
                    if matches!(self.state, State::Unauthenticated { .. }) {
                        return fault(
                            StreamError::ConnectionTimeout,
                            "authentication took too long",
                        );
                    }
                    if let State::Authenticated { bind_by, .. } = &self.state
                        && *bind_by <= Instant::now()
                    {
                        return fault(StreamError::ConnectionTimeout, "no resource bound in time");
                    }
                    // Whitespace keepalive (RFC 6120 §4.6.1): detects dead peers.
                    self.out.push(b' ');
                }
            }
        }
    }

    /// Handles every complete event the parser holds.
    async fn process_input(&mut self) -> Result<(), End> {
        if self.io.is_websocket() {
            return self.process_message().await;
        }
        while let Some(event) = self.next_event()? {
            self.on_event(event).await?;
            // Handling the next event may wait (for the stream's other shards, for the
            // account's credit) while the answers to this one's predecessors pile up: a
            // client joining fifty rooms at once got each room's presence and history past
            // its queue's bound and was disconnected. What fills the queue goes out first.
            self.write_if_filling().await?;
        }
        Ok(())
    }

    /// Writes out the session's queue when it holds a quarter of a bound, a batch at a time
    /// as the main loop does (drained whole into one buffer, a room's shared bodies were
    /// copied per session, megabytes for a slow reader).
    async fn write_if_filling(&mut self) -> Result<(), End> {
        let State::Bound(session) = &self.state else {
            return Ok(());
        };
        if !session.ends.queue.filling() {
            return Ok(());
        }
        self.write_out_queue().await
    }

    /// Writes out all the session's queue holds, a batch at a time.
    async fn write_out_queue(&mut self) -> Result<(), End> {
        while let State::Bound(session) = &self.state
            && let Some(first) = session.ends.queue.try_recv()
        {
            self.write_queued(first);
            if self.unacked_beyond_bound() {
                return Err(fault(
                    StreamError::PolicyViolation,
                    "too many unacknowledged stanzas",
                ));
            }
            self.flush().await?;
        }
        Ok(())
    }

    /// XEP-0198: answers `<r/>` with the count of stanzas handled, once what it counts is
    /// committed, and after the answers to them the session's queue holds by then (an error
    /// for a message storage refused): written before them, a crash in between left a
    /// message acknowledged and never bounced.
    async fn acknowledge(&mut self) -> Result<(), End> {
        let State::Bound(session) = &self.state else {
            return Ok(());
        };
        let Some(h) = session.sm.as_ref().map(|sm| sm.inbound) else {
            return Ok(());
        };
        session.pubsub.settled().await;
        self.write_out_queue().await?;
        self.send(&sm::answer(h));
        Ok(())
    }

    /// A WebSocket message must be exactly one element (RFC 7395 §3.3.3): one that holds two,
    /// or part of one, ends the stream before any of it is acted on.
    async fn process_message(&mut self) -> Result<(), End> {
        let event = self.next_event()?;
        if self.next_event()?.is_some() || self.parser.buffered_len() > 0 {
            return Err(fault(
                StreamError::NotWellFormed,
                "a WebSocket message must hold exactly one complete element",
            ));
        }
        match event {
            Some(event) => self.on_event(event).await,
            None => Ok(()),
        }
    }

    fn next_event(&mut self) -> Result<Option<StreamEvent>, End> {
        self.parser
            .next_event()
            .map_err(|e| End::Fault(StreamError::from(&e), Some(e.to_string())))
    }

    async fn on_event(&mut self, event: StreamEvent) -> Result<(), End> {
        match event {
            StreamEvent::Header(header) => self.on_header(header),
            StreamEvent::Stanza(el) => self.on_element(el).await,
            StreamEvent::End => Err(End::Close),
        }
    }

    /// Bytes from the socket, inflated first when the stream is compressed; the bytes the
    /// parser got, which is what the read rate counts (a compressed stream's few bytes may
    /// inflate to many).
    fn receive(&mut self, bytes: &[u8]) -> Result<usize, End> {
        let Some(zlib) = &mut self.compression else {
            self.parser.feed(bytes);
            return Ok(bytes.len());
        };
        let mut plain = Vec::new();
        let limit = self.shared.config.limits.max_stanza_bytes;
        zlib.inflate(bytes, limit, &mut plain)
            .map_err(|e| match e {
                ZlibError::TooLarge(_) => fault(StreamError::PolicyViolation, e.to_string()),
                ZlibError::Corrupt => fault(StreamError::UndefinedCondition, e.to_string()),
            })?;
        self.parser.feed(&plain);
        Ok(plain.len())
    }

    fn write_queued(&mut self, first: Wire) {
        let State::Bound(session) = &mut self.state else {
            first.write_to(&mut self.out);
            return;
        };
        let limits = &self.shared.config.limits;
        let bound = csi::Bound {
            stanzas: limits.outbound_queue,
            bytes: limits.outbound_queue_bytes,
        };
        // One allocation for what this wake writes, rather than doubling towards it.
        let queued = session
            .ends
            .queue
            .queued_bytes()
            .min(RESERVE_OUTPUT_AT_MOST);
        self.out.reserve(first.len() + queued);
        let mut ask = false;
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(stanza) = next.take() {
            match &mut session.inactive {
                Some(held) => {
                    for stanza in held.offer(stanza, bound) {
                        ask |= written(&mut self.out, session.sm.as_deref_mut(), stanza);
                    }
                }
                None => ask |= written(&mut self.out, session.sm.as_deref_mut(), stanza),
            }
            taken += 1;
            // A batch is written within `write_timeout_secs`: 64 stanzas of up to 256 KiB
            // each took a client reading at 50 KB/s past it (the review of 2026-12-07,
            // evening), so a batch also ends once it holds what it was sized for.
            if taken < BATCH && self.out.len() < RESERVE_OUTPUT_AT_MOST {
                next = session.ends.queue.try_recv();
            }
        }
        if ask {
            self.out
                .extend(verona_stream::element_bytes(&sm::request()));
        }
    }

    /// XEP-0352: the client became active: what was held goes out.
    fn activate(&mut self) {
        let State::Bound(session) = &mut self.state else {
            return;
        };
        let Some(mut held) = session.inactive.take() else {
            return;
        };
        let mut ask = false;
        for stanza in held.release() {
            ask |= written(&mut self.out, session.sm.as_deref_mut(), stanza);
        }
        if ask {
            self.out
                .extend(verona_stream::element_bytes(&sm::request()));
        }
    }

    /// Whether the client leaves more unacknowledged than a session's queue and an offline
    /// backlog hold (stanzas), or twice the queue's bytes: what a session keeps for resending
    /// is bounded like what it keeps for sending.
    fn unacked_beyond_bound(&self) -> bool {
        let State::Bound(session) = &self.state else {
            return false;
        };
        // A session's first presence brings its whole offline backlog at once, before the
        // client can acknowledge any of it: that much more may wait for acknowledgement. And
        // the server's own output may fill the queue past its bound (the answers to a burst,
        // written while the burst is read, so before any acknowledgement of them is; a login
        // bringing thousands of contacts' presence and PEP items).
        let limits = &self.shared.config.limits;
        let queue = limits.outbound_queue * crate::router::SERVER_STANZAS_CAP;
        session.sm.as_ref().is_some_and(|sm| {
            sm.unacked.len() > queue + limits.max_offline_messages
                || sm.unacked_bytes > 2 * limits.outbound_queue_bytes
        })
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        if let Some(zlib) = &mut self.compression {
            let mut compressed = Vec::new();
            zlib.deflate(&self.out, &mut compressed);
            self.out = compressed;
        }
        let limit = Duration::from_secs(self.shared.config.c2s.write_timeout_secs.max(1));
        // A resumption taking the session over does not wait for a write its old connection
        // is not reading (XEP-0198 §5): that connection is dropped as lost, and the session
        // parked for the new one, which gets what is being written again, unacknowledged.
        // Watched only while the write waits (biased, and the watch taken lazily): most
        // writes finish at once, and watching cost every delivery a waiter's registration.
        let close = match &self.state {
            State::Bound(session) => Some(&session.ends.close),
            _ => None,
        };
        let resumed = async move {
            if let Some(close) = close {
                let mut close = close.clone();
                while close.changed().await.is_ok() {
                    if *close.borrow_and_update() == Some(CloseReason::Resumed) {
                        return;
                    }
                }
            }
            std::future::pending().await
        };
        // Nor does a stopping server, whose grace is shorter than `write_timeout_secs`: what
        // the session holds must reach offline storage before storage closes, not after.
        // Once stopping, a write goes only as far as the socket takes it at once.
        let shutdown = &self.shared.shutdown;
        let stopping = async move {
            let mut shutdown = shutdown.clone();
            // An error: the server is gone, stopped all the more.
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        };
        let write = self.io.send(&self.out);
        let written = tokio::select! {
            biased;
            written = tokio::time::timeout(limit, write) => match written {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(End::Gone),
                Err(_) => {
                    tracing::info!(peer = %self.peer, "peer stopped reading: closing");
                    Err(End::Gone)
                }
            },
            () = resumed => {
                // Seen, as the main loop sees it: the session's next connection is not told
                // again.
                if let State::Bound(session) = &mut self.state {
                    session.ends.close.borrow_and_update();
                }
                Err(End::Gone)
            }
            () = stopping => Err(End::Stopped),
        };
        self.out.clear();
        if self.out.capacity() > KEEP_OUTPUT_CAPACITY {
            self.out = Vec::new();
        }
        written?;
        if !matches!(self.state, State::Unauthenticated { .. }) {
            let now = Instant::now();
            self.deadline = self.keepalive_deadline(now);
            if matches!(self.state, State::Bound(_)) {
                self.release_at = Some(now + RELEASE_WHEN_IDLE_FOR);
            }
        }
        Ok(())
    }

    /// Frees what a busy connection keeps between writes; it is allocated again when needed.
    fn release_idle(&mut self) {
        self.out = Vec::new();
        self.parser.release_idle();
        if let State::Bound(session) = &mut self.state {
            session.ends.queue.release_idle();
            if let Some(sm) = &mut session.sm {
                sm.release_idle();
            }
        }
    }

    fn keepalive_deadline(&self, now: Instant) -> Option<Instant> {
        match self.shared.config.c2s.keepalive_secs {
            0 => None,
            secs => Some(now + Duration::from_secs(secs)),
        }
    }

    fn send(&mut self, el: &Element) {
        let bytes = verona_stream::element_bytes(el);
        self.out.extend_from_slice(&bytes);
        let stanza = matches!(el.name(), "message" | "presence" | "iq") && el.ns() == ns::CLIENT;
        if let State::Bound(session) = &mut self.state
            && let Some(sm) = &mut session.sm
            && stanza
            && sm.sent(Wire::from(bytes))
        {
            self.out
                .extend(verona_stream::element_bytes(&sm::request()));
        }
    }

    async fn finish(&mut self, mut end: End) {
        // A graceful stop tells the client what it need not send again, as Prosody's
        // mod_smacks does; its `<a/>` goes out with the stream's end, after what the queue
        // held, as every `<a/>` here.
        if matches!(end, End::Fault(StreamError::SystemShutdown, _))
            && let Err(cut) = self.acknowledge().await
        {
            end = cut;
        }
        let tail: Vec<u8> = match &end {
            End::Fault(error, text) => {
                let condition = error.condition();
                tracing::debug!(
                    condition,
                    text = text.as_deref(),
                    "closing with stream error"
                );
                let mut tail = self.header_if_unsent();
                tail.extend(verona_stream::stream_error(condition, text.as_deref()));
                tail.extend_from_slice(self.stream_close());
                tail
            }
            End::FaultWith(error, text, application) => {
                let condition = error.condition();
                tracing::debug!(condition, text, "closing with stream error");
                let mut tail = self.header_if_unsent();
                let error = verona_stream::stream_error_with(condition, Some(text), application);
                tail.extend(error);
                tail.extend_from_slice(self.stream_close());
                tail
            }
            End::Close => {
                let mut tail = self.header_if_unsent();
                tail.extend_from_slice(self.stream_close());
                tail
            }
            End::Gone | End::Failed | End::Detach | End::Stopped => Vec::new(),
        };
        // The session leaves before the stream is closed: a client that reconnects the moment
        // its stream closes finds it gone, not going (its unavailable presence reached the new
        // session when the old one left just after it came).
        self.leave(&end).await;
        if !tail.is_empty() {
            self.out.extend(tail);
            let _ = self.flush().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), self.io.close()).await;
        }
        if matches!(end, End::Detach) {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.io.close()).await;
        }
    }

    /// A bound session's end: parked for resumption if its connection was lost (XEP-0198
    /// §5), else ended for good.
    async fn leave(&mut self, end: &End) {
        let state = std::mem::replace(&mut self.state, State::Unauthenticated { sasl: None });
        let State::Bound(mut session) = state else {
            return;
        };
        let sm = session.sm.take().map(|sm| *sm);
        let timeout = self.shared.config.c2s.resume_timeout_secs;
        // XEP-0198 §5: a lost connection (not a close, not an error of ours) may be resumed.
        let lost = matches!(end, End::Gone | End::Detach) && timeout > 0;
        let resumable = sm.as_ref().and_then(|sm| sm.id.clone()).filter(|_| lost);
        let sm = match (resumable, sm) {
            (Some(id), Some(sm)) => {
                let parked = sm::Parked { session, sm };
                Resumable::park(&self.shared, id, parked, Duration::from_secs(timeout));
                return;
            }
            (_, sm) => sm,
        };
        if let Some(id) = sm.as_ref().and_then(|sm| sm.id.as_deref()) {
            self.shared.resumable.forget(id);
        }
        let why = match end {
            End::Fault(error, _) | End::FaultWith(error, ..) => error.condition(),
            End::Close => "closed by the client",
            End::Failed => "WebSocket framing error",
            End::Gone | End::Detach => "connection lost",
            End::Stopped => "server stopping while the client was not reading",
        };
        tracing::info!(jid = %session.jid, why, "session ended");
        sm::end_session(&self.shared, session, sm).await;
    }

    /// A stream error must follow a stream header, even when the client's header was unusable.
    fn header_if_unsent(&mut self) -> Vec<u8> {
        if self.header_sent {
            return Vec::new();
        }
        self.stream_header(None)
    }

    /// Our stream header, `<open/>` on a WebSocket (RFC 7395 §3.4).
    fn stream_header(&mut self, to: Option<&str>) -> Vec<u8> {
        self.header_sent = true;
        let (id, from) = (random_id(), &self.shared.domain);
        match self.io.is_websocket() {
            true => verona_stream::websocket::open(&id, from, to),
            false => verona_stream::stream_header(ns::CLIENT, &id, from, to),
        }
    }

    /// The end of our stream, `<close/>` on a WebSocket (RFC 7395 §3.6).
    fn stream_close(&self) -> &'static [u8] {
        match self.io.is_websocket() {
            true => verona_stream::websocket::CLOSE,
            false => verona_stream::STREAM_CLOSE,
        }
    }

    /// XEP-0198 elements (and XEP-0352's, which this server does not act on yet): `Ok(true)`
    /// if `el` was one of them.
    async fn stream_management(&mut self, el: &Element) -> Result<bool, End> {
        if el.has_ns(ns::CSI) {
            match (&mut self.state, el.name()) {
                (State::Bound(session), "inactive") => {
                    session.inactive.get_or_insert_default();
                }
                (State::Bound(_), "active") => self.activate(),
                _ => {}
            }
            return Ok(true);
        }
        if !el.has_ns(ns::SM) {
            return Ok(false);
        }
        match (&mut self.state, el.name()) {
            (State::Bound(session), "enable") if session.sm.is_none() => {
                let timeout = self.shared.config.c2s.resume_timeout_secs;
                let resume = matches!(el.attr("resume"), Some("true" | "1")) && timeout > 0;
                let id = resume.then(|| format!("{}{}", random_id(), random_id()));
                let mut enabled = builder("enabled", ns::SM);
                if let Some(id) = &id {
                    enabled = enabled
                        .with("id", id.as_str())
                        .with("resume", "true")
                        .with("max", timeout.to_string());
                    let account = session.jid.bare();
                    self.shared
                        .resumable
                        .attach(id, account, session.handle.clone());
                }
                session.sm = Some(Box::new(sm::Sm::new(id)));
                self.send(&enabled.build());
            }
            (State::Bound(_), "r") => self.acknowledge().await?,
            (State::Bound(session), "a") => {
                let Some(sm) = &mut session.sm else {
                    return Ok(true);
                };
                let Some(h) = sm::h_of(el) else {
                    let why = "the 'h' of an <a/> is a count from 0 to 4294967295";
                    return Err(End::Fault(
                        StreamError::UndefinedCondition,
                        Some(why.into()),
                    ));
                };
                match sm.ack(h) {
                    Ok(()) => {}
                    Err(bad @ sm::BadAck::TooHigh) => {
                        return Err(End::FaultWith(
                            StreamError::UndefinedCondition,
                            bad.text().to_owned(),
                            Box::new(sm::too_high(h, sm)),
                        ));
                    }
                    Err(bad @ sm::BadAck::WentBack) => {
                        return Err(End::Fault(
                            StreamError::UndefinedCondition,
                            Some(bad.text().into()),
                        ));
                    }
                }
            }
            (State::Authenticated { jid, salt, .. }, "resume") => {
                let (jid, salt) = (jid.clone(), salt.clone());
                self.still_authorized(&jid, &salt).await?;
                self.resume(el, jid).await;
            }
            (_, "enable" | "resume") => {
                self.send(&sm::failed("unexpected-request", None));
            }
            _ => {}
        }
        Ok(true)
    }

    /// XEP-0198 §5: takes over the parked session the client names, acknowledges what its
    /// `h` says it received and sends the rest again.
    async fn resume(&mut self, el: &Element, account: BareJid) {
        let previd = el.attr("previd").unwrap_or_default().to_owned();
        let taken = match sm::h_of(el) {
            Some(_) => self.shared.resumable.take(&previd, &account).await,
            None => None,
        };
        let Some(sm::Parked {
            mut session,
            mut sm,
        }) = taken
        else {
            self.send(&sm::failed("item-not-found", None));
            return;
        };
        // A new session bound the same resource meanwhile, or it was closed while parked:
        // this one is over.
        let current = self.shared.router.session(&session.jid);
        let closed = sm::ended_while_parked(*session.ends.close.borrow());
        if closed || current.is_none_or(|current| current.id() != session.handle.id()) {
            self.send(&sm::failed("item-not-found", None));
            self.shared.resumable.forget(&previd);
            sm::end_session(&self.shared, session, Some(sm)).await;
            return;
        }
        let h = sm::h_of(el).unwrap_or_default();
        if let Err(bad) = sm.ack(h) {
            // The client claims more than was sent, or less than it had: the session cannot
            // be trusted to resume.
            let mut failed = sm::failed("undefined-condition", Some(sm.inbound));
            failed.append_child(crate::xml::text_child("text", ns::STANZAS, bad.text()));
            if bad == sm::BadAck::TooHigh {
                failed.append_child(sm::too_high(h, &sm));
            }
            self.send(&failed);
            sm::end_session(&self.shared, session, Some(sm)).await;
            self.shared.resumable.forget(&previd);
            return;
        }
        tracing::info!(jid = %session.jid, "session resumed");
        session.pubsub.settled().await;
        // What the client gets again, and what came while it was away, says when it came.
        sm.restamp(&self.shared, &account).await;
        // XEP-0352 §4.2: a resumed stream begins active, so what was held while the client
        // was inactive goes first, ahead of what came while it was away.
        let mut queued: Vec<Wire> = (session.inactive.take())
            .map(|mut held| held.release())
            .unwrap_or_default();
        while let Some(stanza) = session.ends.queue.try_recv() {
            queued.push(stanza);
        }
        let queued = sm::stamped(&self.shared, &account, queued).await;
        session.handle.set_parked(false);
        self.shared
            .resumable
            .attach(&previd, account, session.handle.clone());
        let resumed = builder("resumed", ns::SM)
            .with("previd", previd.as_str())
            .with("h", sm.inbound.to_string())
            .build();
        self.out.extend(verona_stream::element_bytes(&resumed));
        for stanza in &sm.unacked {
            stanza.write_to(&mut self.out);
        }
        self.state = State::Bound(Session {
            sm: Some(Box::new(sm)),
            ..session
        });
        for stanza in queued {
            self.write_queued(stanza);
        }
        // What its full queue refused while parked was kept offline: it follows the queue.
        if let State::Bound(session) = &self.state {
            let (pubsub, jid) = (session.pubsub.clone(), session.jid.clone());
            pubsub.flush_kept(jid).await;
        }
    }

    async fn on_element(&mut self, el: Element) -> Result<(), End> {
        if el.is("error", ns::STREAMS) {
            // The client ends the stream (RFC 6120 §4.9): closed, with no error back.
            let condition = el.children().next().map(|c| c.name().to_owned());
            tracing::info!(condition, "the client ended the stream with an error");
            return Err(End::Close);
        }
        let namespace = el.ns();
        let is_stanza = matches!(el.name(), "message" | "presence" | "iq");
        if is_stanza && namespace != ns::CLIENT {
            return Err(fault(
                StreamError::InvalidNamespace,
                format!("stanzas must be in {}, not {namespace}", ns::CLIENT),
            ));
        }
        let authenticated = !matches!(self.state, State::Unauthenticated { .. });
        if authenticated && self.stream_management(&el).await? {
            return Ok(());
        }
        if is_stanza
            && let State::Bound(session) = &mut self.state
            && let Some(sm) = &mut session.sm
        {
            sm.inbound = sm.inbound.wrapping_add(1);
        }
        match &self.state {
            State::Unauthenticated { .. } => self.unauthenticated(el, &namespace).await,
            State::Authenticated { .. } if el.is("compress", ns::COMPRESS) => {
                self.compress(&el).await
            }
            State::Authenticated { jid, salt, .. } => {
                let (jid, salt) = (jid.clone(), salt.clone());
                self.still_authorized(&jid, &salt).await?;
                self.authenticated(el, jid).await
            }
            State::Bound(_) if is_stanza => self.route(el).await,
            State::Bound(_) => Err(fault(
                StreamError::UnsupportedStanzaType,
                format!("<{}/> in {namespace} is not supported here", el.name()),
            )),
        }
    }
}

/// Writes a stanza to the output, counting it for XEP-0198; true when the client should be
/// asked to acknowledge.
fn written(out: &mut Vec<u8>, sm: Option<&mut sm::Sm>, stanza: Wire) -> bool {
    stanza.write_to(out);
    sm.is_some_and(|sm| sm.sent(stanza))
}

async fn session_wake(ends: Option<&mut SessionEnds>) -> Wake {
    let Some(ends) = ends else {
        return std::future::pending().await;
    };
    tokio::select! {
        bytes = ends.queue.recv() => Wake::Outbound(bytes),
        changed = ends.close.changed() => match changed {
            Ok(()) => Wake::Closed(*ends.close.borrow()),
            Err(_) => Wake::Closed(None),
        },
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

pub fn random_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    crate::hex(&bytes)
}
