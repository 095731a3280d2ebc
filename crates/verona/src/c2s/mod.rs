//! One client connection (RFC 6120): stream negotiation ([`negotiation`]: STARTTLS, SASL,
//! resource binding) and, once bound, stanzas between the client and the services
//! ([`session`], routed by [`route`]).
//!
//! Each connection is one task: one `select!` over its socket, its outbound queue, its close
//! signal, shutdown and a timer. Output is gathered in one buffer and written once per wake-up.

mod negotiation;
mod rate;
pub(crate) mod route;
mod session;
mod transport;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jid::{BareJid, Jid};
use minidom::Element;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use verona_auth::TlsBinding;
use verona_stream::Wire;
use verona_stream::{StreamEvent, StreamParser};

use crate::compress::{Zlib, ZlibError};
use crate::router::{CloseReason, SessionEnds};
use crate::server::Shared;
use crate::throttle::Admission;
use crate::xml::{StreamError, builder, ns};
use negotiation::Sasl;
use rate::ReadRate;
use session::Session;
use transport::{Transport, tls_exporter};

/// Output buffers larger than this are released after a write, so idle connections stay small.
const KEEP_OUTPUT_CAPACITY: usize = 4096;
/// Queued stanzas written in one batch.
const BATCH: usize = 64;
/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How a connection ends.
enum End {
    /// A stream error: sent, then the stream is closed.
    Fault(StreamError, Option<String>),
    /// An orderly close: `</stream:stream>` is sent.
    Close,
    /// The socket is gone; nothing more can be sent.
    Gone,
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
    },
    Bound(Session),
}

/// What woke the connection up.
enum Wake {
    Read(io::Result<Vec<u8>>),
    Outbound(Option<Wire>),
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
    /// Counts this connection against its address until it authenticates.
    admission: Option<Admission>,
    /// Counts this connection against its address while it lasts.
    _connection: Admission,
    /// How fast the client may send, and until when reading pauses.
    reads: ReadRate,
    paused_until: Option<Instant>,
    deadline: Option<Instant>,
    out: Vec<u8>,
    /// XEP-0138 zlib, once negotiated; applies to both directions.
    compression: Option<Box<Zlib>>,
}

pub async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let Some((connection, admission)) = shared.throttle.admit(peer.ip()) else {
        // Before any XMPP (or TLS) is spent on it.
        return tracing::info!(%peer, "too many connections from this address");
    };
    let mut binding = None;
    let io = if direct_tls {
        let accept = shared.direct_tls.accept(tcp);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(tls)) => {
                binding = tls_exporter(&tls);
                Transport::Tls(Box::new(tls))
            }
            Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
            Err(_) => return tracing::debug!("TLS handshake timed out"),
        }
    } else {
        Transport::Plain(tcp)
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
        secure: direct_tls,
        binding,
        state: State::Unauthenticated { sasl: None },
        header_sent: false,
        auth_failures: 0,
        attempted: None,
        admission: Some(admission),
        _connection: connection,
        reads,
        paused_until: None,
        deadline: Some(Instant::now() + unauthenticated_timeout),
        out: Vec::new(),
        compression: None,
    };
    let end = conn.run().await;
    conn.finish(end).await;
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
        let mut tls_buffer = Vec::new();
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            if let Err(end) = self.process_input().await {
                return end;
            }
            if let Err(end) = self.flush().await {
                return end;
            }
            let caps_until = match &self.state {
                State::Bound(session) => session.caps_wait.as_ref().map(|w| w.until),
                _ => None,
            };
            let wake = {
                let ends = match &mut self.state {
                    State::Bound(session) => Some(&mut session.ends),
                    _ => None,
                };
                let paused = self.paused_until.is_some();
                let deadline = [self.deadline, caps_until, self.paused_until]
                    .into_iter()
                    .flatten()
                    .min();
                tokio::select! {
                    read = self.io.read_some(&mut tls_buffer), if !paused => Wake::Read(read),
                    wake = session_wake(ends) => wake,
                    _ = shutdown.changed() => Wake::Shutdown,
                    _ = sleep_until(deadline) => Wake::Timer,
                }
            };
            match wake {
                Wake::Read(Err(_)) => return End::Gone,
                Wake::Read(Ok(bytes)) if bytes.is_empty() => return End::Gone,
                Wake::Read(Ok(bytes)) => {
                    if let Err(end) = self.receive(&bytes) {
                        return end;
                    }
                    self.paused_until = self.reads.consumed(bytes.len(), Instant::now());
                }
                Wake::Outbound(Some(bytes)) => self.write_queued(bytes),
                Wake::Outbound(None) => return End::Close,
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
                    if let Some(held) = self.caps_timeout() {
                        for el in held {
                            if let Err(end) = self.dispatch(el).await {
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
                    // Whitespace keepalive (RFC 6120 §4.6.1): detects dead peers.
                    self.out.push(b' ');
                }
            }
        }
    }

    /// Handles every complete event the parser holds.
    async fn process_input(&mut self) -> Result<(), End> {
        loop {
            match self.parser.next_event() {
                Ok(Some(StreamEvent::Header(header))) => self.on_header(header)?,
                Ok(Some(StreamEvent::Stanza(el))) => self.on_element(el).await?,
                Ok(Some(StreamEvent::End)) => return Err(End::Close),
                Ok(None) => return Ok(()),
                Err(e) => return Err(End::Fault(StreamError::from(&e), Some(e.to_string()))),
            }
        }
    }

    /// Bytes from the socket, inflated first when the stream is compressed.
    fn receive(&mut self, bytes: &[u8]) -> Result<(), End> {
        let Some(zlib) = &mut self.compression else {
            self.parser.feed(bytes);
            return Ok(());
        };
        let mut plain = Vec::new();
        let limit = self.shared.config.limits.max_stanza_bytes;
        zlib.inflate(bytes, limit, &mut plain)
            .map_err(|e| match e {
                ZlibError::TooLarge(_) => fault(StreamError::PolicyViolation, e.to_string()),
                ZlibError::Corrupt => fault(StreamError::UndefinedCondition, e.to_string()),
            })?;
        self.parser.feed(&plain);
        Ok(())
    }

    fn write_queued(&mut self, first: Wire) {
        first.write_to(&mut self.out);
        if let State::Bound(session) = &mut self.state {
            session.ends.took(&first);
            for _ in 1..BATCH {
                match session.ends.rx.try_recv() {
                    Ok(stanza) => {
                        session.ends.took(&stanza);
                        stanza.write_to(&mut self.out);
                    }
                    Err(_) => break,
                }
            }
        }
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
        let write = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        let written = match tokio::time::timeout(limit, write).await {
            Ok(written) => written,
            Err(_) => {
                tracing::info!(peer = %self.peer, "peer stopped reading: closing");
                Err(io::ErrorKind::TimedOut.into())
            }
        };
        self.out.clear();
        if self.out.capacity() > KEEP_OUTPUT_CAPACITY {
            self.out = Vec::new();
        }
        if written.is_err() {
            return Err(End::Gone);
        }
        if !matches!(self.state, State::Unauthenticated { .. }) {
            self.deadline = self.keepalive_deadline();
        }
        Ok(())
    }

    fn keepalive_deadline(&self) -> Option<Instant> {
        match self.shared.config.c2s.keepalive_secs {
            0 => None,
            secs => Some(Instant::now() + Duration::from_secs(secs)),
        }
    }

    fn send(&mut self, el: &Element) {
        self.out.extend(verona_stream::element_bytes(el));
    }

    async fn finish(&mut self, end: End) {
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
                tail.extend_from_slice(verona_stream::STREAM_CLOSE);
                tail
            }
            End::Close => {
                let mut tail = self.header_if_unsent();
                tail.extend_from_slice(verona_stream::STREAM_CLOSE);
                tail
            }
            End::Gone => Vec::new(),
        };
        if !tail.is_empty() {
            self.out.extend(tail);
            let _ = self.flush().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), self.io.shutdown()).await;
        }
        if let State::Bound(session) = &self.state {
            self.shared.router.unbind(&session.jid, &session.handle);
            let pubsub = &self.shared.pubsub;
            let full = Jid::from(session.jid.clone());
            pubsub.session_ended(full, Some(session.handle.id())).await;
            let bare = session.jid.to_bare();
            if self.shared.router.sessions_of(&bare).is_empty() {
                pubsub.session_ended(Jid::from(bare), None).await;
            }
            let why = match &end {
                End::Fault(error, _) => error.condition(),
                End::Close => "closed by the client",
                End::Gone => "connection lost",
            };
            tracing::info!(jid = %session.jid, why, "session ended");
        }
    }

    /// A stream error must follow a stream header, even when the client's header was unusable.
    fn header_if_unsent(&mut self) -> Vec<u8> {
        if self.header_sent {
            return Vec::new();
        }
        self.header_sent = true;
        verona_stream::stream_header(ns::CLIENT, &random_id(), &self.shared.domain, None)
    }

    /// XEP-0198 and XEP-0352 elements, which this server does not offer yet: answered as those
    /// specifications say instead of ending the stream (some clients send them regardless).
    /// Enabling or resuming stream management fails with `unexpected-request`; acks, ack
    /// requests and client state indications are ignored. True if `el` was one of them.
    fn not_offered(&mut self, el: &Element) -> bool {
        if el.is("enable", ns::SM) || el.is("resume", ns::SM) {
            let failed = builder("failed", ns::SM)
                .append(Element::bare("unexpected-request", ns::STANZAS))
                .build();
            self.send(&failed);
            return true;
        }
        el.is("r", ns::SM) || el.is("a", ns::SM) || el.has_ns(ns::CSI)
    }

    async fn on_element(&mut self, el: Element) -> Result<(), End> {
        let namespace = el.ns();
        let is_stanza = matches!(el.name(), "message" | "presence" | "iq");
        if is_stanza && namespace != ns::CLIENT {
            return Err(fault(
                StreamError::InvalidNamespace,
                format!("stanzas must be in {}, not {namespace}", ns::CLIENT),
            ));
        }
        let authenticated = !matches!(self.state, State::Unauthenticated { .. });
        if authenticated && self.not_offered(&el) {
            return Ok(());
        }
        match &self.state {
            State::Unauthenticated { .. } => self.unauthenticated(el, &namespace).await,
            State::Authenticated { .. } if el.is("compress", ns::COMPRESS) => {
                self.compress(&el).await
            }
            State::Authenticated { jid } => {
                let jid = jid.clone();
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

async fn session_wake(ends: Option<&mut SessionEnds>) -> Wake {
    let Some(ends) = ends else {
        return std::future::pending().await;
    };
    tokio::select! {
        bytes = ends.rx.recv() => Wake::Outbound(bytes),
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
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
