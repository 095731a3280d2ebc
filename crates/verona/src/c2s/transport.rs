//! The socket under a client stream: plain TCP, then TLS after STARTTLS or on a direct TLS
//! listener; or a WebSocket (RFC 7395) over either, whose messages are translated to and from
//! the byte stream the connection speaks ([`verona_stream::websocket`]).

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use verona_auth::TlsBinding;
use verona_stream::websocket::{self, Inbound, Outbound};

use crate::server::Shared;
use crate::throttle::Admission;
use crate::xml::{StreamError, ns};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;

/// The WebSocket subprotocol of RFC 7395.
const SUBPROTOCOL: &str = "xmpp";
/// Keepalives a WebSocket client may send in [`KEEPALIVE_WINDOW`] (one every few seconds is
/// more than any client needs).
const MAX_KEEPALIVES: u32 = 10;
const KEEPALIVE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// The most a handshake request may take, as tungstenite's own handshake allowed.
const MAX_REQUEST: usize = 64 * 1024;
/// How long the Close frame that fails a connection may take to go out.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Frames one data message may come in, as Prosody's `websocket_frame_fragment_limit`:
/// tungstenite has no bound of its own, and a message that never ends is never charged to a
/// read rate (the audit read 70–90 MB/s of empty continuation frames from one client).
const MAX_FRAGMENTS: u32 = 8;

/// Plain TCP, or TLS after STARTTLS or on a direct TLS listener, or a WebSocket.
pub(super) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Over `Plain` or `Tls`.
    WebSocket(Box<WebSocket>),
    /// Only while the socket is handed to the TLS acceptor.
    Upgrading,
}

/// A WebSocket and the keepalives its client sent lately.
pub(super) struct WebSocket {
    stream: WebSocketStream<Metered>,
    keepalives: Keepalives,
}

/// The socket under a WebSocket. Before authentication it gives tungstenite at most
/// `[limits] max_unauthenticated_stanza_bytes` (and [`READ_CHUNK`] for frame headers) between
/// two data messages, so a stranger cannot make the server buffer a message of the stanza
/// limit only for the stream parser to refuse it once whole. The bound lives here because
/// tokio-tungstenite 0.30 cannot change a stream's limits once it is made (it has no
/// `set_config`), and its own limits must be the stanza limit's for after authentication.
pub(super) struct Metered {
    io: Transport,
    /// Until authentication: what each message may take, and what the current one has left.
    allowance: Option<Allowance>,
    frames: Frames,
}

#[derive(Clone, Copy)]
struct Allowance {
    per_message: usize,
    left: usize,
}

impl Metered {
    /// A whole data message came: the next one has its own allowance. Control frames do not
    /// start it again, or pings between the fragments of a message would let it grow.
    fn message_done(&mut self) {
        if let Some(allowance) = &mut self.allowance {
            allowance.left = allowance.per_message;
        }
    }
}

/// Where the bytes read stand among the frames (RFC 6455 §5.2), to count the frames of a
/// data message. Made once the handshake is done: the first byte read after it starts a
/// frame.
struct Frames {
    scan: Scan,
    /// Data frames of the current message so far.
    fragments: u32,
}

#[derive(Clone, Copy)]
enum Scan {
    /// The first `len` bytes of a frame header.
    Header { bytes: [u8; 14], len: usize },
    /// Payload bytes still to come.
    Payload(u64),
}

impl Scan {
    /// The start of a frame.
    const FRAME: Scan = Scan::Header {
        bytes: [0; 14],
        len: 0,
    };
}

impl Frames {
    fn new() -> Frames {
        Frames {
            scan: Scan::FRAME,
            fragments: 0,
        }
    }

    /// Follows `bytes`; an error once a message is in more than [`MAX_FRAGMENTS`] frames.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.scan = match self.scan {
                Scan::Payload(left) => {
                    let skipped = left.min(bytes.len() as u64);
                    bytes = &bytes[skipped as usize..];
                    match left - skipped {
                        0 => Scan::FRAME,
                        left => Scan::Payload(left),
                    }
                }
                Scan::Header {
                    bytes: mut header,
                    len,
                } => {
                    header[len] = bytes[0];
                    bytes = &bytes[1..];
                    self.header(header, len + 1)?
                }
            };
        }
        Ok(())
    }

    /// The next state after `len` bytes of a frame header.
    fn header(&mut self, bytes: [u8; 14], len: usize) -> io::Result<Scan> {
        if len < 2 {
            return Ok(Scan::Header { bytes, len });
        }
        let extended = match bytes[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = if bytes[1] & 0x80 != 0 { 4 } else { 0 };
        if len < 2 + extended + masked {
            return Ok(Scan::Header { bytes, len });
        }
        let payload = match extended {
            0 => u64::from(bytes[1] & 0x7f),
            n => bytes[2..2 + n]
                .iter()
                .fold(0, |sum, &b| sum << 8 | u64::from(b)),
        };
        // Control frames (opcodes from 8) may come between a message's frames and are not
        // among them.
        if bytes[0] & 0x08 == 0 {
            self.fragments += 1;
            if self.fragments > MAX_FRAGMENTS {
                let why = "message in too many frames";
                return Err(refused(StreamError::PolicyViolation, why));
            }
            if bytes[0] & 0x80 != 0 {
                self.fragments = 0;
            }
        }
        Ok(match payload {
            0 => Scan::FRAME,
            payload => Scan::Payload(payload),
        })
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(allowance) = &mut this.allowance else {
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            return Poll::Ready(this.frames.follow(&buf.filled()[before..]));
        };
        if allowance.left == 0 {
            let error = StreamError::PolicyViolation;
            return Poll::Ready(Err(refused(
                error,
                "message too large before authentication",
            )));
        }
        let mut chunk = [0u8; READ_CHUNK];
        let want = allowance.left.min(buf.remaining()).min(READ_CHUNK);
        let mut limited = ReadBuf::new(&mut chunk[..want]);
        std::task::ready!(Pin::new(&mut this.io).poll_read(cx, &mut limited))?;
        allowance.left -= limited.filled().len();
        this.frames.follow(limited.filled())?;
        buf.put_slice(limited.filled());
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Keepalives counted over the connection, not per message read: each ping is answered and
/// a client that does not read holds the answers, so a count that a stanza (or a read
/// cancelled by another event) started again would let one client queue pongs without bound
/// (the eighth review: 24 → 361 MB in a minute from one connection).
struct Keepalives {
    count: u32,
    since: tokio::time::Instant,
}

impl Keepalives {
    fn new() -> Keepalives {
        Keepalives {
            count: 0,
            since: tokio::time::Instant::now(),
        }
    }

    /// Counts one; an error past [`MAX_KEEPALIVES`] in [`KEEPALIVE_WINDOW`].
    fn take(&mut self) -> io::Result<()> {
        if self.since.elapsed() > KEEPALIVE_WINDOW {
            *self = Keepalives::new();
        }
        self.count += 1;
        match self.count > MAX_KEEPALIVES {
            true => Err(refused(StreamError::PolicyViolation, "too many keepalives")),
            false => Ok(()),
        }
    }
}

/// What a client listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Plain TCP, offering STARTTLS.
    Starttls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
    /// RFC 7395 over plain HTTP (behind a proxy that terminates TLS, or on loopback).
    WebSocket,
    /// RFC 7395 over HTTPS.
    WebSocketTls,
}

/// A socket that is not a byte stream now: being upgraded to TLS, or carrying a WebSocket
/// (whose byte stream is inside it).
fn no_byte_stream() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "not a byte stream")
}

/// A WebSocket message RFC 7395 does not allow: the stream ends with this error.
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub(super) struct Refused(pub StreamError, pub &'static str);

impl Refused {
    /// The refusal an error from [`Transport::read_some`] carries, if it is one.
    pub(super) fn of(error: &io::Error) -> Option<&Refused> {
        error.get_ref()?.downcast_ref()
    }
}

/// A WebSocket failed for the client's framing error (RFC 6455 §7.1.7), told so with a Close
/// frame: a protocol violation, as a stream error is, with nothing more to say on it.
#[derive(Debug, thiserror::Error)]
#[error("WebSocket framing error: {0}")]
pub(super) struct Failed(ProtocolError);

impl Failed {
    /// Whether an error from [`Transport::read_some`] is one.
    pub(super) fn is(error: &io::Error) -> bool {
        error.get_ref().is_some_and(|e| e.is::<Failed>())
    }
}

fn refused(error: StreamError, why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Refused(error, why))
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
            Transport::WebSocket(_) | Transport::Upgrading => Poll::Ready(Err(no_byte_stream())),
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
            Transport::WebSocket(_) | Transport::Upgrading => Poll::Ready(Err(no_byte_stream())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::WebSocket(_) | Transport::Upgrading => Poll::Ready(Err(no_byte_stream())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::WebSocket(_) => Poll::Ready(Err(no_byte_stream())),
            Transport::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

impl Transport {
    /// The next bytes from the peer; empty at end of stream. The read buffer lives on the
    /// stack for one poll only, so an idle connection holds none of its own (TLS keeps what it
    /// has received in rustls's buffers).
    pub(super) async fn read_some(&mut self) -> io::Result<Vec<u8>> {
        match self {
            Transport::Plain(tcp) => loop {
                tcp.readable().await?;
                let mut chunk = [0u8; READ_CHUNK];
                match tcp.try_read(&mut chunk) {
                    Ok(n) => return Ok(chunk[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            },
            Transport::Tls(tls) => {
                std::future::poll_fn(|cx| {
                    let mut chunk = [0u8; READ_CHUNK];
                    let mut buf = ReadBuf::new(&mut chunk);
                    // Pending leaves `buf` untouched: nothing is lost when the poll is dropped.
                    Pin::new(tls.as_mut())
                        .poll_read(cx, &mut buf)
                        .map_ok(|()| buf.filled().to_vec())
                })
                .await
            }
            Transport::WebSocket(ws) => read_message(ws).await,
            Transport::Upgrading => Err(no_byte_stream()),
        }
    }

    /// Writes what the connection produced and flushes it: on a WebSocket, one message per
    /// top-level element.
    pub(super) async fn send(&mut self, out: &[u8]) -> io::Result<()> {
        let Transport::WebSocket(ws) = self else {
            self.write_all(out).await?;
            return self.flush().await;
        };
        for message in websocket::outbound(out) {
            let message = match message {
                Outbound::Element(text) => Message::text(text),
                Outbound::Keepalive => Message::Ping(Default::default()),
            };
            ws.stream.feed(message).await.map_err(io::Error::other)?;
        }
        ws.stream.flush().await.map_err(io::Error::other)
    }

    /// Ends the connection: a WebSocket with its closing handshake.
    pub(super) async fn close(&mut self) -> io::Result<()> {
        let Transport::WebSocket(ws) = self else {
            return self.shutdown().await;
        };
        // 1000 (RFC 6455 §7.4.1): the XMPP stream ended, with `<close/>` and perhaps a stream
        // error before it; without a code a browser reports 1005, no status received.
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        WebSocketStream::close(&mut ws.stream, Some(normal))
            .await
            .map_err(io::Error::other)?;
        // The client's close frame completes the handshake; what comes before it is dropped.
        while let Some(Ok(_)) = ws.stream.next().await {}
        Ok(())
    }

    pub(super) fn is_websocket(&self) -> bool {
        matches!(self, Transport::WebSocket(_))
    }

    /// The client authenticated: a WebSocket's messages may be as large as a stanza.
    pub(super) fn authenticated(&mut self) {
        if let Transport::WebSocket(ws) = self {
            ws.stream.get_mut().allowance = None;
        }
    }
}

/// The next message of a WebSocket as stream bytes: `<open/>` as the stream header it stands
/// for, `<close/>` as the stream's end, other elements as they are. Empty at the end.
async fn read_message(ws: &mut WebSocket) -> io::Result<Vec<u8>> {
    // Keepalives (pings, pongs, messages of whitespace alone) count against no read rate and
    // each ping is answered: their own bound is [`Keepalives`].
    let WebSocket { stream, keepalives } = ws;
    loop {
        let message = match stream.next().await {
            None => return Ok(Vec::new()),
            Some(Ok(message)) => message,
            Some(Err(tungstenite::Error::Capacity(_))) => {
                return Err(refused(StreamError::PolicyViolation, "message too large"));
            }
            // Refused by [`Metered`], or the socket failed.
            Some(Err(tungstenite::Error::Io(e))) => return Err(e),
            Some(Err(tungstenite::Error::Utf8(_))) => {
                return Err(refused(StreamError::NotWellFormed, "text is not UTF-8"));
            }
            // A socket closed without the closing handshake: the connection is lost.
            Some(Err(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake,
            ))) => {
                return Ok(Vec::new());
            }
            // RFC 6455 §7.1.7: a connection failed for a framing error is told why with a
            // Close frame (1002), as Prosody does, not just dropped; the wait for it is short.
            Some(Err(tungstenite::Error::Protocol(e))) => {
                let frame = CloseFrame {
                    code: CloseCode::Protocol,
                    reason: e.to_string().into(),
                };
                let closing = stream.close(Some(frame));
                tokio::time::timeout(CLOSE_WAIT, closing).await.ok();
                return Err(io::Error::other(Failed(e)));
            }
            Some(Err(e)) => return Err(io::Error::other(e)),
        };
        if matches!(
            message,
            Message::Text(_) | Message::Binary(_) | Message::Close(_)
        ) {
            stream.get_mut().message_done();
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return Err(refused(
                    StreamError::UnsupportedStanzaType,
                    "binary messages are not XMPP",
                ));
            }
            // Pings are answered by tungstenite.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                keepalives.take()?;
                continue;
            }
            // RFC 6455 §5.5.1: tungstenite queued the Close that answers it; it goes now.
            Message::Close(_) => {
                stream.flush().await.ok();
                return Ok(Vec::new());
            }
        };
        // Whitespace around the element is allowed, and a message of it alone is a keepalive.
        let text = text.as_str().trim_ascii();
        if text.is_empty() {
            keepalives.take()?;
            continue;
        }
        return Ok(match websocket::inbound(text) {
            Inbound::Open(open) => websocket::stream_header_for(ns::CLIENT, &open),
            Inbound::Close => verona_stream::STREAM_CLOSE.to_vec(),
            Inbound::Element => text.as_bytes().to_vec(),
        });
    }
}

/// A WebSocket's client behind a trusted proxy, and its admissions (connections per address).
pub(super) type Proxied = (IpAddr, (Admission, Admission));

/// The WebSocket handshake (RFC 6455 §4.2, RFC 7395 §3.1) on `socket`: a GET of the
/// configured path that asks for the `xmpp` subprotocol, which the response selects. Anything
/// else is refused (400, 404, 426) and the connection closed. From `proxy`, a trusted proxy,
/// the client its request names is admitted before the answer: one over its address's limits
/// is answered 429, not switched to a WebSocket it would find closed without a word.
pub(super) async fn accept_websocket(
    shared: &Shared,
    socket: Transport,
    proxy: Option<IpAddr>,
) -> Result<(Transport, Option<Proxied>), tungstenite::Error> {
    let path = shared.config.c2s.websocket_path.clone();
    let trusted = &shared.config.c2s.trusted_proxies;
    let mut proxied = None;
    let mut check = |request: &Request, mut response: Response| {
        // With a slash after it too, as Prosody takes it.
        let asked = request.uri().path();
        if asked != path && asked.strip_suffix('/') != Some(path.as_str()) {
            return Err(error_response(StatusCode::NOT_FOUND));
        }
        let asks_xmpp = request
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|protocol| protocol.trim() == SUBPROTOCOL);
        if !asks_xmpp {
            return Err(error_response(StatusCode::BAD_REQUEST));
        }
        if let Some(proxy) = proxy {
            let Some(client) = forwarded_client(request, trusted, proxy) else {
                tracing::info!(%proxy, "a forwarded client that is not an address");
                return Err(error_response(StatusCode::BAD_REQUEST));
            };
            match shared.throttle.admit(client) {
                Ok(admitted) => proxied = Some((client, admitted)),
                Err(limit) => {
                    tracing::info!(%client, limit, "too many connections from this address");
                    return Err(error_response(StatusCode::TOO_MANY_REQUESTS));
                }
            }
        }
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(response)
    };
    // RFC 6455 §4.2.2: a request that is no WebSocket handshake, or one of another version,
    // is answered (400; 426 naming ours), not dropped without a word as tungstenite's own
    // handshake would (found by audit round 28).
    let mut socket = socket;
    let request = match read_request(&mut socket).await {
        Ok(request) => request,
        Err(tungstenite::Error::Io(e)) => return Err(tungstenite::Error::Io(e)),
        Err(e) => {
            refuse(&mut socket, error_response(StatusCode::BAD_REQUEST)).await?;
            return Err(e);
        }
    };
    let response = match tungstenite::handshake::server::create_response(&request) {
        Ok(response) => check(&request, response),
        Err(e) => {
            let version = request
                .headers()
                .contains_key(header::SEC_WEBSOCKET_VERSION);
            let wrong_version = version
                && matches!(
                    e,
                    tungstenite::Error::Protocol(ProtocolError::MissingSecWebSocketVersionHeader)
                );
            let mut refusal = error_response(StatusCode::BAD_REQUEST);
            if wrong_version {
                *refusal.status_mut() = StatusCode::UPGRADE_REQUIRED;
                refusal.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    header::HeaderValue::from_static("13"),
                );
            }
            refuse(&mut socket, refusal).await?;
            return Err(e);
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(refusal) => {
            refuse(&mut socket, refusal).await?;
            return Err(tungstenite::Error::Protocol(
                ProtocolError::HandshakeIncomplete,
            ));
        }
    };
    let mut head = Vec::new();
    tungstenite::handshake::server::write_response(&mut head, &response)?;
    socket.write_all(&head).await?;
    socket.flush().await?;
    // A message is one stanza, so the stanza limit bounds it and each of its frames; before
    // authentication [`Metered`] applies the smaller limit as the message comes. Buffers start
    // small: most connections are idle.
    let limits = &shared.config.limits;
    let limit = limits.max_stanza_bytes;
    let per_message = limit.min(limits.max_unauthenticated_stanza_bytes) + READ_CHUNK;
    let socket = Metered {
        io: socket,
        allowance: Some(Allowance {
            per_message,
            left: per_message,
        }),
        frames: Frames::new(),
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        .write_buffer_size(READ_CHUNK)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await;
    let ws = Transport::WebSocket(Box::new(WebSocket {
        stream: ws,
        keepalives: Keepalives::new(),
    }));
    Ok((ws, proxied))
}

/// The client a proxy forwards the request for, walking `X-Forwarded-For` from the right
/// (each proxy appends the address it heard from) past trusted proxies to the first address
/// that is not one: what comes before it is the client's to write and proves nothing. `None`
/// when that entry is not an address: the connection is no one's to count it against, and
/// counting it as the proxy's would let a client spend every web user's limits (found by audit
/// round 28, where one bad entry anywhere admitted the client as the proxy). No header: the
/// proxy's own connection; every entry a trusted proxy: the first of them.
fn forwarded_client(request: &Request, trusted: &[IpAddr], proxy: IpAddr) -> Option<IpAddr> {
    let entries: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        // Nothing between two commas is no hop, as Prosody reads the header.
        .filter(|entry| !entry.is_empty())
        .collect();
    let mut client = proxy;
    for entry in entries.iter().rev() {
        client = forwarded_address(entry)?;
        if !trusted.contains(&client) {
            break;
        }
    }
    Some(client)
}

/// An address as proxies write it: bare, or with a port (`10.0.0.9:443`, `[2001:db8::1]:443`)
/// or in brackets.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let bare = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']'));
    let address = bare
        .unwrap_or(entry)
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()?;
    Some(address.to_canonical())
}

/// The handshake's request, which must be all the client sent before the answer (as
/// tungstenite has it: RFC 6455 §4.1, the client waits for the server's handshake).
async fn read_request(socket: &mut Transport) -> Result<Request, tungstenite::Error> {
    let mut head = Vec::new();
    loop {
        let mut chunk = [0u8; READ_CHUNK];
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        let searched = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..read]);
        // Parsed once its end has come, not at each read: a client sending a byte at a time
        // would have the whole head parsed again for each (quadratic in its 64 KiB).
        let tail = &head[searched..];
        let ended =
            tail.windows(4).any(|w| w == b"\r\n\r\n") || tail.windows(2).any(|w| w == b"\n\n");
        let parsed = match ended {
            true => Request::try_parse(&head)?,
            false => None,
        };
        match parsed {
            Some((size, request)) if size == head.len() => return Ok(request),
            Some(_) => {
                return Err(tungstenite::Error::Protocol(
                    ProtocolError::JunkAfterRequest,
                ));
            }
            None if head.len() >= MAX_REQUEST => {
                let size = head.len();
                let too_long = CapacityError::MessageTooLong {
                    size,
                    max_size: MAX_REQUEST,
                };
                return Err(tungstenite::Error::Capacity(too_long));
            }
            None => continue,
        }
    }
}

/// Answers a handshake with `refusal` and closes the connection.
async fn refuse(socket: &mut Transport, mut refusal: ErrorResponse) -> io::Result<()> {
    let headers = refusal.headers_mut();
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from_static("0"),
    );
    let mut head = Vec::new();
    tungstenite::handshake::server::write_response(&mut head, &refusal)
        .map_err(io::Error::other)?;
    socket.write_all(&head).await?;
    socket.flush().await?;
    socket.shutdown().await
}

fn error_response(status: StatusCode) -> ErrorResponse {
    let mut response = ErrorResponse::new(None);
    *response.status_mut() = status;
    response
}

/// RFC 9266 channel binding data; only on TLS 1.3, where the exporter is safe without EMS.
pub(super) fn tls_exporter(tls: &TlsStream<TcpStream>) -> Option<TlsBinding> {
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
