//! One client connection (RFC 6120): stream negotiation (STARTTLS, SASL, resource binding) and,
//! once bound, stanzas between the client and the router.
//!
//! Each connection is one task: one `select!` over its socket, its outbound queue, its close
//! signal, shutdown and a timer. Output is gathered in one buffer and written once per wake-up.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use jid::{BareJid, FullJid, Jid, ResourcePart};
use minidom::Element;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use verona_auth::{Failure, Mechanism, ScramHash, ScramServer, TlsBinding};
use verona_stream::{StreamEvent, StreamHeader, StreamParser};
use xmpp_parsers::bind::{BindQuery, BindResponse};

use crate::caps;
use crate::compress::{Zlib, ZlibError};
use crate::iq::{self, Target};
use crate::pubsub_service::{PubsubHandle, SubscriptionKind};
use crate::router::{CloseReason, SessionEnds, SessionHandle};
use crate::server::Shared;
use crate::xml::{BuilderExt, ErrorType, builder, error_reply, iq_result, ns, set_attr};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;
/// Output buffers larger than this are released after a write, so idle connections stay small.
const KEEP_OUTPUT_CAPACITY: usize = 4096;
/// Queued stanzas written in one batch.
const BATCH: usize = 64;
/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long presence waits for the client's answer about its capabilities.
const CAPS_TIMEOUT: Duration = Duration::from_secs(5);
/// Presence stanzas held at most while waiting for that answer.
const CAPS_HELD: usize = 16;

/// Plain TCP, or TLS after STARTTLS or on a direct TLS listener.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the socket is handed to the TLS acceptor.
    Upgrading,
}

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS upgrade in progress")
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

impl Transport {
    /// The next bytes from the peer; empty at end of stream. A plain socket is awaited for
    /// readiness without holding a buffer, so an idle plaintext connection costs no read buffer;
    /// TLS reads through `tls_buffer`.
    async fn read_some(&mut self, tls_buffer: &mut Vec<u8>) -> io::Result<Vec<u8>> {
        match self {
            Transport::Plain(tcp) => loop {
                tcp.readable().await?;
                // Lives only between awaits, so it is not part of the connection's state.
                let mut chunk = [0u8; READ_CHUNK];
                match tcp.try_read(&mut chunk) {
                    Ok(n) => return Ok(chunk[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            },
            Transport::Tls(tls) => {
                tls_buffer.resize(READ_CHUNK, 0);
                let n = tls.read(tls_buffer).await?;
                Ok(tls_buffer[..n].to_vec())
            }
            Transport::Upgrading => Err(upgrading()),
        }
    }
}

/// How a connection ends.
enum End {
    /// A stream error: sent, then the stream is closed.
    Fault(&'static str, Option<String>),
    /// An orderly close: `</stream:stream>` is sent.
    Close,
    /// The socket is gone; nothing more can be sent.
    Gone,
}

fn fault(condition: &'static str, text: impl Into<String>) -> End {
    End::Fault(condition, Some(text.into()))
}

/// A SASL exchange waiting for the client's next message.
enum Sasl {
    /// PLAIN without an initial response: the credentials come in `<response/>`.
    Plain,
    /// SCRAM (-PLUS when the flag is set) without an initial response: client-first comes in
    /// `<response/>`.
    ScramFirst(ScramHash, bool),
    /// SCRAM after the server-first challenge.
    ScramFinal {
        server: Box<ScramServer>,
        jid: Option<BareJid>,
    },
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

struct Session {
    jid: FullJid,
    handle: SessionHandle,
    /// The services, drawing on this session's queue budget.
    pubsub: Option<PubsubHandle>,
    ends: SessionEnds,
    /// A disco#info question about the client's capabilities, waiting for its answer.
    caps_wait: Option<Box<caps::Pending>>,
    /// The capabilities whose answer did not verify: not asked about again.
    caps_refused: Option<String>,
}

/// What woke the connection up.
enum Wake {
    Read(io::Result<Vec<u8>>),
    Outbound(Option<Bytes>),
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
    deadline: Option<Instant>,
    out: Vec<u8>,
    /// XEP-0138 zlib, once negotiated; applies to both directions.
    compression: Option<Box<Zlib>>,
}

pub async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
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
    let mut conn = Connection {
        parser: new_parser(&shared),
        shared,
        io,
        peer,
        secure: direct_tls,
        binding,
        state: State::Unauthenticated { sasl: None },
        header_sent: false,
        auth_failures: 0,
        deadline: Some(Instant::now() + unauthenticated_timeout),
        out: Vec::new(),
        compression: None,
    };
    let end = conn.run().await;
    conn.finish(end).await;
}

fn new_parser(shared: &Shared) -> StreamParser {
    StreamParser::new(ns::CLIENT, shared.config.stream_limits())
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
                let deadline = match (self.deadline, caps_until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                tokio::select! {
                    read = self.io.read_some(&mut tls_buffer) => Wake::Read(read),
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
                }
                Wake::Outbound(Some(bytes)) => self.write_queued(bytes),
                Wake::Outbound(None) => return End::Close,
                Wake::Closed(reason) => {
                    let reason = reason.unwrap_or(CloseReason::AccountChanged);
                    return End::Fault(reason.condition(), None);
                }
                Wake::Shutdown => return End::Fault("system-shutdown", None),
                Wake::Timer => {
                    if let Some(held) = self.caps_timeout() {
                        for el in held {
                            if let Err(end) = self.route_stanza(el).await {
                                return end;
                            }
                        }
                        continue;
                    }
                    if matches!(self.state, State::Unauthenticated { .. }) {
                        return fault("connection-timeout", "authentication took too long");
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
                Err(e) => return Err(End::Fault(e.condition(), Some(e.to_string()))),
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
                ZlibError::TooLarge(_) => fault("policy-violation", e.to_string()),
                ZlibError::Corrupt => fault("undefined-condition", e.to_string()),
            })?;
        self.parser.feed(&plain);
        Ok(())
    }

    fn write_queued(&mut self, first: Bytes) {
        self.out.extend_from_slice(&first);
        if let State::Bound(session) = &mut self.state {
            for _ in 1..BATCH {
                match session.ends.rx.try_recv() {
                    Ok(bytes) => self.out.extend_from_slice(&bytes),
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
        let written = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        }
        .await;
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
            End::Fault(condition, text) => {
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
            if let Some(pubsub) = &self.shared.pubsub {
                pubsub.session_ended(Jid::from(session.jid.clone())).await;
                let bare = session.jid.to_bare();
                if self.shared.router.sessions_of(&bare).is_empty() {
                    pubsub.session_ended(Jid::from(bare)).await;
                }
            }
            tracing::info!(jid = %session.jid, "session ended");
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

    fn on_header(&mut self, header: StreamHeader) -> Result<(), End> {
        let header_bytes = verona_stream::stream_header(
            ns::CLIENT,
            &random_id(),
            &self.shared.domain,
            header.from.as_deref(),
        );
        self.out.extend(header_bytes);
        self.header_sent = true;
        let major = header
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major.is_none_or(|m| m < 1) {
            return Err(fault("unsupported-version", "XMPP 1.0 streams only"));
        }
        if let Some(to) = &header.to {
            let ours = BareJid::new(to)
                .is_ok_and(|j| j.node().is_none() && j.domain().as_str() == self.shared.domain);
            if !ours {
                return Err(fault(
                    "host-unknown",
                    format!("this server hosts {}", self.shared.domain),
                ));
            }
        }
        let features = self.features();
        self.send(&features);
        Ok(())
    }

    fn features(&self) -> Element {
        let config = &self.shared.config;
        let mut features = builder("features", ns::STREAMS);
        match &self.state {
            State::Unauthenticated { .. } => {
                if !self.secure {
                    let mut starttls = builder("starttls", ns::TLS);
                    if config.c2s.require_encryption {
                        starttls = starttls.append(Element::bare("required", ns::TLS));
                    }
                    features = features.append(starttls.build());
                }
                if self.secure || !config.c2s.require_encryption {
                    let mut mechanisms = builder("mechanisms", ns::SASL);
                    for mechanism in self.offered_mechanisms() {
                        mechanisms = mechanisms.append(crate::xml::text_child(
                            "mechanism",
                            ns::SASL,
                            mechanism.name(),
                        ));
                    }
                    features = features.append(mechanisms.build());
                    if let Some(binding) = &self.binding {
                        // XEP-0440: which channel binding the -PLUS mechanisms use.
                        let kind =
                            builder("channel-binding", ns::SASL_CB).with("type", binding.kind);
                        features = features.append(
                            builder("sasl-channel-binding", ns::SASL_CB)
                                .append(kind.build())
                                .build(),
                        );
                    }
                    if config.registration.allow {
                        features = features.append(Element::bare("register", ns::REGISTER_FEATURE));
                    }
                }
            }
            State::Authenticated { .. } => {
                if config.compression.enabled && self.compression.is_none() {
                    let method = crate::xml::text_child("method", ns::COMPRESS_FEATURE, "zlib");
                    let compression = builder("compression", ns::COMPRESS_FEATURE).append(method);
                    features = features.append(compression.build());
                }
                features = features.append(Element::bare("bind", ns::BIND)).append(
                    builder("session", ns::SESSION)
                        .append(Element::bare("optional", ns::SESSION))
                        .build(),
                );
                if self.shared.pubsub.is_some() {
                    // RFC 6121 §2.6: the roster is versioned.
                    features = features.append(Element::bare("ver", ns::ROSTER_VER));
                }
            }
            State::Bound(_) => {}
        }
        features.build()
    }

    fn offered_mechanisms(&self) -> Vec<Mechanism> {
        let mut offered = Vec::with_capacity(5);
        if self.binding.is_some() {
            offered.push(Mechanism::ScramPlus(ScramHash::Sha256));
            offered.push(Mechanism::ScramPlus(ScramHash::Sha1));
        }
        offered.push(Mechanism::Scram(ScramHash::Sha256));
        offered.push(Mechanism::Scram(ScramHash::Sha1));
        if self.secure || self.shared.config.c2s.allow_insecure_auth {
            offered.push(Mechanism::Plain);
        }
        offered
    }

    async fn on_element(&mut self, el: Element) -> Result<(), End> {
        let namespace = el.ns();
        let is_stanza = matches!(el.name(), "message" | "presence" | "iq");
        if is_stanza && namespace != ns::CLIENT {
            return Err(fault(
                "invalid-namespace",
                format!("stanzas must be in {}, not {namespace}", ns::CLIENT),
            ));
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
                "unsupported-stanza-type",
                format!("<{}/> in {namespace} is not supported here", el.name()),
            )),
        }
    }

    async fn unauthenticated(&mut self, el: Element, namespace: &str) -> Result<(), End> {
        let config = &self.shared.config;
        if namespace == ns::TLS && el.name() == "starttls" {
            return self.starttls().await;
        }
        if !self.secure && config.c2s.require_encryption {
            if namespace == ns::SASL && el.name() == "auth" {
                self.send_sasl_failure(Failure::EncryptionRequired);
                return Ok(());
            }
            return Err(fault("policy-violation", "use STARTTLS first"));
        }
        if namespace == ns::SASL {
            return self.sasl(el).await;
        }
        if el.name() == "iq" && el.has_child("query", ns::REGISTER) {
            return self.register_account(el).await;
        }
        if el.is("compress", ns::COMPRESS) {
            // Compression only follows authentication; XEP-0138 failures are not stream errors.
            self.send_compress_failure("setup-failed");
            return Ok(());
        }
        Err(fault("not-authorized", "authenticate first"))
    }

    async fn starttls(&mut self) -> Result<(), End> {
        if self.secure {
            return Err(fault("policy-violation", "TLS is already in place"));
        }
        self.send(&Element::bare("proceed", ns::TLS));
        self.flush().await?;
        let Transport::Plain(tcp) = std::mem::replace(&mut self.io, Transport::Upgrading) else {
            return Err(End::Gone);
        };
        let accept = self.shared.starttls.accept(tcp);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(tls)) => {
                self.binding = tls_exporter(&tls);
                self.io = Transport::Tls(Box::new(tls));
                self.secure = true;
                self.restart_stream();
                Ok(())
            }
            _ => Err(End::Gone),
        }
    }

    /// After STARTTLS and SASL success both sides start a new stream (RFC 6120 §5.4.3.3, §6.4.6).
    fn restart_stream(&mut self) {
        self.parser = new_parser(&self.shared);
        self.header_sent = false;
    }

    async fn sasl(&mut self, el: Element) -> Result<(), End> {
        let State::Unauthenticated { sasl } = &mut self.state else {
            unreachable!("sasl() is only called before authentication");
        };
        let pending = sasl.take();
        match (el.name(), pending) {
            ("auth", _) => {
                let Some(mechanism) = el
                    .attr("mechanism")
                    .and_then(Mechanism::from_name)
                    .filter(|m| self.offered_mechanisms().contains(m))
                else {
                    let failure = if el.attr("mechanism") == Some("PLAIN") {
                        Failure::EncryptionRequired
                    } else {
                        Failure::InvalidMechanism
                    };
                    return self.sasl_failure(failure).await;
                };
                let Some(data) = decode_sasl(&el) else {
                    return self.sasl_failure(Failure::IncorrectEncoding).await;
                };
                let exchange = match mechanism {
                    Mechanism::Plain => Sasl::Plain,
                    Mechanism::Scram(hash) => Sasl::ScramFirst(hash, false),
                    Mechanism::ScramPlus(hash) => Sasl::ScramFirst(hash, true),
                };
                if data.is_empty() {
                    // No initial response: ask for it with an empty challenge.
                    self.set_sasl(exchange);
                    self.send(&builder("challenge", ns::SASL).build());
                    return Ok(());
                }
                self.sasl_step(exchange, &data).await
            }
            ("response", Some(exchange)) => {
                let Some(data) = decode_sasl(&el) else {
                    return self.sasl_failure(Failure::IncorrectEncoding).await;
                };
                self.sasl_step(exchange, &data).await
            }
            ("abort", _) => {
                self.send_sasl_failure(Failure::Aborted);
                Ok(())
            }
            _ => self.sasl_failure(Failure::MalformedRequest).await,
        }
    }

    fn set_sasl(&mut self, exchange: Sasl) {
        if let State::Unauthenticated { sasl } = &mut self.state {
            *sasl = Some(exchange);
        }
    }

    async fn sasl_step(&mut self, exchange: Sasl, data: &[u8]) -> Result<(), End> {
        let outcome = match exchange {
            Sasl::Plain => self.plain(data).await.map(|jid| (jid, None)),
            Sasl::ScramFirst(hash, plus) => return self.scram_first(hash, plus, data).await,
            Sasl::ScramFinal { mut server, jid } => {
                server.client_final(data).and_then(|server_final| {
                    Ok((jid.ok_or(Failure::NotAuthorized)?, Some(server_final)))
                })
            }
        };
        match outcome {
            Ok((jid, additional)) => {
                self.sasl_success(jid, additional);
                Ok(())
            }
            Err(failure) => self.sasl_failure(failure).await,
        }
    }

    async fn plain(&self, data: &[u8]) -> Result<BareJid, Failure> {
        let message = verona_auth::parse_plain(data)?;
        let jid = self
            .shared
            .accounts
            .jid_for_username(&message.authcid)
            .ok_or(Failure::NotAuthorized)?;
        check_authzid(message.authzid.as_deref(), &jid)?;
        let creds = self
            .shared
            .accounts
            .credentials(&jid)
            .await
            .map_err(|_| Failure::TemporaryAuthFailure)?
            .ok_or(Failure::NotAuthorized)?;
        let password = message.password;
        // PBKDF2 is deliberately slow: keep it off the async worker threads.
        let valid = tokio::task::spawn_blocking(move || creds.verify_password(&password))
            .await
            .map_err(|_| Failure::TemporaryAuthFailure)?;
        if valid {
            Ok(jid)
        } else {
            Err(Failure::NotAuthorized)
        }
    }

    async fn scram_first(&mut self, hash: ScramHash, plus: bool, data: &[u8]) -> Result<(), End> {
        let mut server = Box::new(ScramServer::with_binding(hash, plus, self.binding.clone()));
        let first = match server.client_first(data) {
            Ok(first) => first,
            Err(failure) => return self.sasl_failure(failure).await,
        };
        let jid = self.shared.accounts.jid_for_username(&first.username);
        if let Some(jid) = &jid
            && let Err(failure) = check_authzid(first.authzid.as_deref(), jid)
        {
            return self.sasl_failure(failure).await;
        }
        let creds = match &jid {
            Some(jid) => match self.shared.accounts.credentials(jid).await {
                Ok(creds) => creds,
                Err(_) => return self.sasl_failure(Failure::TemporaryAuthFailure).await,
            },
            None => None,
        };
        // Unknown users get a plausible challenge too, so existence does not leak.
        let challenge = server.server_first(creds.as_ref());
        self.send(
            &builder("challenge", ns::SASL)
                .append(BASE64.encode(challenge))
                .build(),
        );
        self.set_sasl(Sasl::ScramFinal { server, jid });
        Ok(())
    }

    fn sasl_success(&mut self, jid: BareJid, additional: Option<Vec<u8>>) {
        let mut success = builder("success", ns::SASL);
        if let Some(data) = additional {
            success = success.append(BASE64.encode(data));
        }
        self.send(&success.build());
        self.shared.throttle.success(self.peer.ip());
        tracing::info!(%jid, "authenticated");
        self.state = State::Authenticated { jid };
        self.deadline = self.keepalive_deadline();
        self.restart_stream();
    }

    /// A failed attempt: counted, slowed down per address, and fatal after too many.
    async fn sasl_failure(&mut self, failure: Failure) -> Result<(), End> {
        self.auth_failures += 1;
        let delay = self
            .shared
            .throttle
            .failure(self.peer.ip(), std::time::Instant::now());
        if !delay.is_zero() {
            self.flush().await?;
            tokio::time::sleep(delay).await;
        }
        tracing::info!(condition = failure.condition(), "authentication failed");
        self.send_sasl_failure(failure);
        if self.auth_failures >= self.shared.config.auth.max_failures_per_connection {
            return Err(fault(
                "policy-violation",
                "too many failed authentication attempts",
            ));
        }
        Ok(())
    }

    fn send_sasl_failure(&mut self, failure: Failure) {
        self.set_sasl_none();
        let failure = builder("failure", ns::SASL)
            .append(Element::bare(failure.condition(), ns::SASL))
            .build();
        self.send(&failure);
    }

    fn set_sasl_none(&mut self) {
        if let State::Unauthenticated { sasl } = &mut self.state {
            *sasl = None;
        }
    }

    /// XEP-0077 registration of a new account, before authentication.
    async fn register_account(&mut self, el: Element) -> Result<(), End> {
        let reply = iq::register_new(&self.shared, &el).await;
        self.send(&reply);
        Ok(())
    }

    /// XEP-0138: `<compressed/>` goes out uncompressed, then both sides restart the stream
    /// compressed.
    async fn compress(&mut self, el: &Element) -> Result<(), End> {
        if !self.shared.config.compression.enabled || self.compression.is_some() {
            self.send_compress_failure("setup-failed");
            return Ok(());
        }
        let method = el.get_child("method", ns::COMPRESS).map(|m| m.text());
        if method.as_deref() != Some("zlib") {
            self.send_compress_failure("unsupported-method");
            return Ok(());
        }
        self.send(&Element::bare("compressed", ns::COMPRESS));
        self.flush().await?;
        self.compression = Some(Box::new(Zlib::new()));
        self.restart_stream();
        Ok(())
    }

    fn send_compress_failure(&mut self, condition: &str) {
        let failure = builder("failure", ns::COMPRESS)
            .append(Element::bare(condition, ns::COMPRESS))
            .build();
        self.send(&failure);
    }

    async fn authenticated(&mut self, el: Element, jid: BareJid) -> Result<(), End> {
        if el.name() != "iq" || el.attr("type") != Some("set") {
            return Err(fault("not-authorized", "bind a resource first"));
        }
        if el.has_child("session", ns::SESSION) {
            // RFC 3921 sessions are a no-op kept for old clients (RFC 6121 Appendix E).
            self.send(&iq_result(&el, None));
            return Ok(());
        }
        let Some(request) = el
            .get_child("bind", ns::BIND)
            .and_then(|b| BindQuery::try_from(b.clone()).ok())
        else {
            return Err(fault("not-authorized", "bind a resource first"));
        };
        let resource = match request.resource.filter(|r| !r.is_empty()) {
            Some(r) => match ResourcePart::new(&r) {
                Ok(r) => r.into_owned(),
                Err(_) => {
                    let reply = error_reply(
                        &el,
                        ErrorType::Modify,
                        "bad-request",
                        Some("invalid resource"),
                    );
                    self.send(&reply.expect("an iq set is answered"));
                    return Ok(());
                }
            },
            None => ResourcePart::new(&format!("verona-{}", random_id()))
                .expect("valid")
                .into_owned(),
        };
        let full = jid.with_resource(&resource);
        if let Some(pubsub) = &self.shared.pubsub {
            // The account's services (and its blocklist) are in memory before any stanza of
            // the session is routed.
            pubsub.session_started(full.clone()).await;
        }
        let (handle, ends) = SessionHandle::new(self.shared.config.limits.outbound_queue);
        self.shared.router.bind(&full, handle.clone());
        tracing::info!(jid = %full, "resource bound");
        let payload = Element::from(BindResponse { jid: full.clone() });
        self.send(&iq_result(&el, Some(payload)));
        let budget = self.shared.config.limits.pubsub_session_bytes;
        self.state = State::Bound(Session {
            jid: full,
            handle,
            pubsub: self.shared.pubsub.as_ref().map(|p| p.for_session(budget)),
            ends,
            caps_wait: None,
            caps_refused: None,
        });
        Ok(())
    }

    /// A stanza from a bound session. Presence that advertises capabilities not yet known
    /// waits for the client's answer to a disco#info question (XEP-0115 §6.2).
    async fn route(&mut self, el: Element) -> Result<(), End> {
        let ready = match self.caps_answer(&el) {
            Some(released) => released,
            None => self.caps_gate(el),
        };
        for el in ready {
            self.route_stanza(el).await?;
        }
        Ok(())
    }

    /// The client's answer to the capabilities question: verified features are kept (for
    /// every session with the same hash) and the held presence goes on.
    fn caps_answer(&mut self, el: &Element) -> Option<Vec<Element>> {
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
            }
            None => {
                tracing::debug!(jid = %session.jid, "capabilities not verified");
                session.caps_refused = Some(caps::key(&wait.caps));
            }
        }
        Some(wait.held)
    }

    /// What to route now: the stanza, unless it is presence that must wait for capabilities.
    fn caps_gate(&mut self, el: Element) -> Vec<Element> {
        let State::Bound(session) = &mut self.state else {
            return vec![el];
        };
        let own = el
            .attr("to")
            .is_none_or(|to| BareJid::new(to).is_ok_and(|to| to == session.jid.to_bare()));
        let presence = (el.name() == "presence" && el.attr("to").is_none())
            || (own && is_pep_request(&el) && publishes_presence(&el));
        if self.shared.pubsub.is_none() || !presence {
            return vec![el];
        }
        if let Some(wait) = &mut session.caps_wait {
            wait.held.push(el);
            if wait.held.len() < CAPS_HELD {
                return Vec::new();
            }
            // A client sending this much presence without answering is not waited for.
            let wait = session.caps_wait.take().expect("waiting");
            session.caps_refused = Some(caps::key(&wait.caps));
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
        let id = random_id();
        let query = caps::query(&advertised, &id, &self.shared.domain, session.jid.as_str());
        session.caps_wait = Some(Box::new(caps::Pending {
            id,
            caps: advertised,
            held: vec![el],
            until: Instant::now() + CAPS_TIMEOUT,
        }));
        self.send(&query);
        Vec::new()
    }

    /// The capabilities question went unanswered: the held presence goes on without them.
    fn caps_timeout(&mut self) -> Option<Vec<Element>> {
        let State::Bound(session) = &mut self.state else {
            return None;
        };
        if session.caps_wait.as_ref()?.until > Instant::now() {
            return None;
        }
        let wait = session.caps_wait.take()?;
        session.caps_refused = Some(caps::key(&wait.caps));
        Some(wait.held)
    }

    /// A stanza from a bound session: `from` stamped, then delivered or answered.
    async fn route_stanza(&mut self, mut el: Element) -> Result<(), End> {
        let State::Bound(session) = &self.state else {
            unreachable!("route() is only called when bound");
        };
        let me = session.jid.clone();
        let handle = session.handle.clone();
        let pubsub = session.pubsub.clone();
        if let Some(from) = el.attr("from") {
            let matches = Jid::new(from)
                .is_ok_and(|j| j.as_str() == me.as_str() || j.as_str() == me.to_bare().as_str());
            if !matches {
                return Err(fault("invalid-from", format!("you are {me}")));
            }
        }
        set_attr(&mut el, "from", me.as_str());
        let to = match el.attr("to").map(Jid::new) {
            None => None,
            Some(Ok(to)) => Some(to),
            Some(Err(_)) => {
                self.answer(&el, ErrorType::Modify, "jid-malformed", None);
                return Ok(());
            }
        };
        if let Some(pubsub) = &pubsub
            && is_pep_request(&el)
        {
            // XEP-0163: pubsub requests to a local account's bare JID (or to none: one's own)
            // go to that account's PEP service.
            let account = match &to {
                None => Some(me.to_bare()),
                Some(to) if to.domain().as_str() == self.shared.domain && to.node().is_some() => {
                    to.try_as_full().err().cloned()
                }
                Some(_) => None,
            };
            if let Some(account) = account {
                if account == me.to_bare() && publishes_presence(&el) {
                    // A native XEP-0207 client (DESIGN §3): it gets pubsub events.
                    handle.set_classic(false);
                }
                pubsub.submit_pep(me, account, el).await;
                return Ok(());
            }
        }
        if let Some(pubsub) = &pubsub
            && el.name() == "iq"
            && matches!(el.attr("type"), Some("get" | "set"))
            && (el.has_child("blocklist", ns::BLOCKING)
                || el.has_child("block", ns::BLOCKING)
                || el.has_child("unblock", ns::BLOCKING))
            && to
                .as_ref()
                .is_none_or(|to| to.is_bare() && to.to_bare() == me.to_bare())
        {
            pubsub.blocking(me, el).await;
            return Ok(());
        }
        if let Some(to) = &to
            && to.domain().as_str() == self.shared.domain
            && to.node().is_some()
            && to.to_bare() != me.to_bare()
            && self.blocked(&el, &me.to_bare(), &to.to_bare())
        {
            return Ok(());
        }
        if let Some(pubsub) = &pubsub
            && el.name() == "iq"
            && matches!(el.attr("type"), Some("get" | "set"))
            && el.has_child("query", ns::ROSTER)
            && to
                .as_ref()
                .is_none_or(|to| to.is_bare() && to.to_bare() == me.to_bare())
        {
            pubsub.roster(me, el).await;
            return Ok(());
        }
        let Some(to) = to else {
            // No `to`: the stanza is for the user's own account (RFC 6120 §10.3).
            return match el.name() {
                "iq" => self.server_iq(el, Target::Account).await,
                "message" => {
                    self.deliver_to_account(&el, &me.to_bare());
                    Ok(())
                }
                // A presence broadcast is a publish to the presence node (XEP-0207 §3), and
                // marks a classic client: it gets `<presence/>` rather than events.
                _ => {
                    if let Some(pubsub) = &pubsub
                        && matches!(el.attr("type"), None | Some("unavailable"))
                    {
                        handle.set_classic(true);
                        pubsub.presence(me, el).await;
                    }
                    Ok(())
                }
            };
        };
        if let Some(pubsub) = &pubsub
            && el.name() == "presence"
            && el.attr("type") == Some("probe")
            && to.domain().as_str() == self.shared.domain
            && to.node().is_some()
        {
            // RFC 6121 §4.3: answered by the server from the contact's presence node.
            pubsub.probe(me, to.to_bare()).await;
            return Ok(());
        }
        if let Some(pubsub) = &pubsub
            && el.name() == "presence"
            && let Some(kind) = el.attr("type").and_then(SubscriptionKind::from_type)
            && to.domain().as_str() == self.shared.domain
            && to.node().is_some()
        {
            // RFC 6121 §3: presence subscriptions are subscriptions to presence nodes.
            pubsub.subscription(me, to.to_bare(), kind).await;
            return Ok(());
        }
        if let Some(pubsub) = &pubsub
            && to.domain().as_str() == pubsub.jid()
        {
            if el.name() != "presence" {
                pubsub.submit(me, el).await;
            }
            return Ok(());
        }
        if is_authorization_answer(&el) && (to.node().is_none() || to.to_bare() == me.to_bare()) {
            // XEP-0060 §8.6: the owner's answer is accepted wherever on this server it is sent
            // (the seed's Ex. 11 addresses it to a server, not to the service).
            if let Some(pubsub) = &pubsub {
                pubsub.submit_answer(me, el).await;
            }
            return Ok(());
        }
        if to.domain().as_str() != self.shared.domain {
            self.answer(
                &el,
                ErrorType::Cancel,
                "remote-server-not-found",
                Some("this server does not federate yet"),
            );
            return Ok(());
        }
        match (to.node(), to.try_as_full()) {
            (None, Err(_)) => self.server_iq_or_drop(el, Target::Domain).await,
            (None, Ok(_)) => {
                self.answer(&el, ErrorType::Cancel, "service-unavailable", None);
                Ok(())
            }
            (Some(_), Ok(full)) => {
                if let Some(handle) = self.shared.router.session(full) {
                    handle.send(Bytes::from(verona_stream::element_bytes(&el)));
                } else if el.name() == "message" {
                    // RFC 6121 §8.5.3.2.1: a message to an unavailable resource goes to the account.
                    self.deliver_to_account(&el, &full.to_bare());
                } else if el.name() == "iq" {
                    self.answer(&el, ErrorType::Cancel, "service-unavailable", None);
                }
                Ok(())
            }
            (Some(_), Err(bare)) => {
                let bare = bare.clone();
                match el.name() {
                    "iq" if bare == me.to_bare() => self.server_iq(el, Target::Account).await,
                    "iq" => {
                        self.answer(&el, ErrorType::Cancel, "service-unavailable", None);
                        Ok(())
                    }
                    "message" => {
                        self.deliver_to_account(&el, &bare);
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// XEP-0191 §3.3: a stanza between an account and one it blocked goes nowhere. The
    /// blocker's own stanzas are refused with `not-acceptable`; the blocked party's look
    /// undeliverable, so it learns nothing (presence vanishes silently).
    fn blocked(&mut self, el: &Element, me: &BareJid, to: &BareJid) -> bool {
        let router = &self.shared.router;
        let silent = el.name() == "presence";
        if router.blocks(me, to) {
            if !silent
                && let Some(mut reply) = error_reply(el, ErrorType::Cancel, "not-acceptable", None)
                && let Some(error) = reply.get_child_mut("error", ns::CLIENT)
            {
                error.append_child(Element::bare("blocked", ns::BLOCKING_ERRORS));
                self.send(&reply);
            }
            return true;
        }
        if router.blocks(to, me) {
            if !silent {
                self.answer(el, ErrorType::Cancel, "service-unavailable", None);
            }
            return true;
        }
        false
    }

    async fn server_iq_or_drop(&mut self, el: Element, target: Target) -> Result<(), End> {
        if el.name() == "iq" {
            return self.server_iq(el, target).await;
        }
        Ok(())
    }

    async fn server_iq(&mut self, el: Element, target: Target) -> Result<(), End> {
        let State::Bound(session) = &self.state else {
            unreachable!("server_iq() is only called when bound");
        };
        let me = session.jid.clone();
        let handled = iq::handle(&self.shared, &el, &target, &me).await;
        if let Some(reply) = handled.reply {
            self.send(&reply);
        }
        if handled.account_removed {
            self.shared
                .router
                .close_account(&me.to_bare(), CloseReason::AccountChanged);
        }
        Ok(())
    }

    /// A message to a bare JID: every bound resource gets it (presence-based selection comes
    /// with the presence node); with none, the sender learns it was not delivered.
    fn deliver_to_account(&mut self, el: &Element, bare: &BareJid) {
        let sessions = self.shared.router.sessions_of(bare);
        if sessions.is_empty() {
            if el.attr("type") != Some("headline") {
                self.answer(
                    el,
                    ErrorType::Cancel,
                    "service-unavailable",
                    Some("the recipient is not online"),
                );
            }
            return;
        }
        let bytes = Bytes::from(verona_stream::element_bytes(el));
        for handle in sessions {
            handle.send(bytes.clone());
        }
    }

    fn answer(&mut self, el: &Element, kind: ErrorType, condition: &str, text: Option<&str>) {
        if let Some(reply) = error_reply(el, kind, condition, text) {
            self.send(&reply);
        }
    }
}

/// RFC 9266 channel binding data; only on TLS 1.3, where the exporter is safe without EMS.
fn tls_exporter(tls: &TlsStream<TcpStream>) -> Option<TlsBinding> {
    let connection = tls.get_ref().1;
    if connection.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    let data = connection
        .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
        .ok()?;
    Some(TlsBinding {
        kind: "tls-exporter",
        data,
    })
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

/// An iq for an account's PEP service: a XEP-0060 request, or discovery of its nodes and items
/// (disco#items, disco#info about a node; disco#info about the account is the server's).
fn is_pep_request(el: &Element) -> bool {
    el.name() == "iq"
        && matches!(el.attr("type"), Some("get" | "set"))
        && el.children().any(|c| {
            c.is("pubsub", ns::PUBSUB)
                || c.is("pubsub", ns::PUBSUB_OWNER)
                || c.is("query", ns::DISCO_ITEMS)
                || (c.is("query", ns::DISCO_INFO) && c.attr("node").is_some())
        })
}

/// A publish to the `presence` node.
fn publishes_presence(el: &Element) -> bool {
    el.get_child("pubsub", ns::PUBSUB)
        .and_then(|pubsub| pubsub.get_child("publish", ns::PUBSUB))
        .is_some_and(|publish| publish.attr("node") == Some("presence"))
}

/// A `<message/>` carrying a submitted `pubsub#subscribe_authorization` form.
fn is_authorization_answer(el: &Element) -> bool {
    el.name() == "message"
        && el.children().any(|x| {
            x.is("x", ns::DATA_FORMS)
                && x.attr("type") == Some("submit")
                && x.children().any(|field| {
                    field.attr("var") == Some("FORM_TYPE")
                        && field
                            .children()
                            .any(|v| v.text() == ns::PUBSUB_AUTHORIZATION)
                })
        })
}

/// `<auth/>` and `<response/>` carry base64; `=` (or nothing) is the empty message.
fn decode_sasl(el: &Element) -> Option<Vec<u8>> {
    let text = el.text();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Some(Vec::new());
    }
    BASE64.decode(text).ok()
}

/// Only the account itself may be named as the authorization identity.
fn check_authzid(authzid: Option<&str>, jid: &BareJid) -> Result<(), Failure> {
    match authzid {
        None => Ok(()),
        Some(a) if BareJid::new(a).is_ok_and(|a| &a == jid) => Ok(()),
        Some(_) => Err(Failure::InvalidAuthzid),
    }
}

pub fn random_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
