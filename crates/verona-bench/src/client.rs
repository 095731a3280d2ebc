//! One lean client connection: TCP, optional STARTTLS, SASL, resource binding, then raw
//! elements in and out. It speaks plain RFC 6120 so it works against any XMPP server, and does
//! no more work than a real client must, so that the server is what gets measured.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minidom::Element;
use rustls::DigitallySignedStruct;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use verona_auth::{ClientKeyCache, ScramClient, ScramHash};
use verona_stream::{NS_STREAMS, STREAM_CLOSE};

use crate::stream::{Skimmed, StreamEvent, StreamReader};

const NS_CLIENT: &str = "jabber:client";
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// The SCRAM keys derived per account, as a real client keeps them (RFC 5802 §5.1): without
/// them the generator spends more CPU per login on PBKDF2 than the server spends on the whole
/// login, and the login rate measures the generator. The server's work is the same either way.
static CLIENT_KEYS: LazyLock<Arc<ClientKeyCache>> = LazyLock::new(Arc::default);

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The XMPP domain: the stream's `to` and the TLS server name.
    pub domain: String,
    /// STARTTLS before authenticating.
    pub tls: bool,
    pub mechanism: Mechanism,
}

/// The SASL mechanisms the generator can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mechanism {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-1")]
    ScramSha1,
    #[value(name = "PLAIN")]
    Plain,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }
}

/// The step a connection failed in, for counting errors by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Tls,
    Auth,
    Bind,
    /// Sending or receiving once logged in.
    Io,
    /// A pubsub request answered with an error.
    Pubsub,
    /// Joining or configuring a group chat room refused.
    Room,
    Close,
    Timeout,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Auth => "auth",
            Stage::Bind => "bind",
            Stage::Io => "io",
            Stage::Pubsub => "pubsub",
            Stage::Room => "room",
            Stage::Close => "close",
            Stage::Timeout => "timeout",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{stage}: {detail}")]
pub struct Error {
    pub stage: Stage,
    pub detail: String,
}

trait At<T> {
    /// Attributes a failure to a stage.
    fn at(self, stage: Stage) -> Result<T, Error>;
}

impl<T, E: fmt::Display> At<T> for Result<T, E> {
    fn at(self, stage: Stage) -> Result<T, Error> {
        self.map_err(|e| Error {
            stage,
            detail: e.to_string(),
        })
    }
}

/// Runs `op` within `limit`, counting expiry as a [`Stage::Timeout`] error.
pub async fn within<T>(
    limit: Duration,
    op: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
        Err(Error {
            stage: Stage::Timeout,
            detail: format!("no answer within {limit:?}"),
        })
    })
}

/// A byte stream to the server: TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where a connection comes from, for scenarios that need more than the defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin {
    /// The local address to connect from (any of 127.0.0.0/8 on Linux loopback), so that the
    /// server's per-address limits see many clients, or one.
    pub source: Option<IpAddr>,
    /// SO_RCVBUF: a client that reads slowly through a small buffer leaves what it has not read
    /// with the server.
    pub recv_buffer: Option<u32>,
}

/// Opens a TCP connection to `addr` from `origin`, Nagle off.
pub async fn connect(addr: SocketAddr, origin: Origin) -> io::Result<TcpStream> {
    let tcp = if origin.source.is_none() && origin.recv_buffer.is_none() {
        TcpStream::connect(addr).await?
    } else {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(bytes) = origin.recv_buffer {
            socket.set_recv_buffer_size(bytes)?;
        }
        if let Some(source) = origin.source {
            port_at_connect(&socket)?;
            socket.bind(SocketAddr::new(source, 0))?;
        }
        socket.connect(addr).await?
    };
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Leaves the choice of the source port to connect(), which may reuse a port another
/// destination has: many short connections from one address then do not run out of ports.
fn port_at_connect(socket: &TcpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt only reads the int we pass, for a socket we own.
    let status = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How far [`negotiate`] takes a connection before handing its bytes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upto {
    /// Our stream header sent, the server's header and features received.
    Opened,
    /// `<starttls/>` answered with `<proceed/>`: the server now expects a TLS handshake.
    Proceed,
    /// TLS established and a new stream opened over it, features received.
    Secured,
}

/// Negotiates the stream on `tcp` up to `upto` and hands over the connection, for clients that
/// then misbehave. Failing to open the first stream is a [`Stage::Connect`] error.
pub async fn negotiate(tcp: TcpStream, domain: &str, upto: Upto) -> Result<Box<dyn Io>, Error> {
    let mut plain = Conn::new(tcp);
    let features = plain.open(domain).await.at(Stage::Connect)?;
    match upto {
        Upto::Opened => Ok(Box::new(plain.io)),
        Upto::Proceed => {
            plain.proceed(&features).await.at(Stage::Tls)?;
            Ok(Box::new(plain.io))
        }
        Upto::Secured => {
            let tls = plain.starttls(&features, domain).await.at(Stage::Tls)?;
            let mut secured = Conn::new(tls);
            secured.open(domain).await.at(Stage::Tls)?;
            Ok(Box::new(secured.io))
        }
    }
}

/// A logged-in, bound session.
pub struct Client {
    conn: Conn<Box<dyn Io>>,
    /// The full JID the server bound.
    pub jid: String,
}

impl Client {
    /// Connects, negotiates STARTTLS if the target asks for it, authenticates and binds
    /// `resource`. No timeout of its own: wrap it in [`within`].
    pub async fn login(
        target: &Target,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Result<Client, Error> {
        let tcp = connect(target.addr, Origin::default())
            .await
            .at(Stage::Connect)?;
        Client::login_on(tcp, target, user, password, resource).await
    }

    /// [`Client::login`] over a connection already open (see [`connect`]).
    pub async fn login_on(
        tcp: TcpStream,
        target: &Target,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Result<Client, Error> {
        let mut plain = Conn::new(tcp);
        let mut features = plain.open(&target.domain).await.at(Stage::Connect)?;
        let mut conn = if target.tls {
            let tls = plain
                .starttls(&features, &target.domain)
                .await
                .at(Stage::Tls)?;
            let mut conn = Conn::new(Box::new(tls) as Box<dyn Io>);
            features = conn.open(&target.domain).await.at(Stage::Tls)?;
            conn
        } else {
            Conn {
                io: Box::new(plain.io) as Box<dyn Io>,
                parser: plain.parser,
            }
        };
        conn.authenticate(&features, target.mechanism, user, password)
            .await
            .at(Stage::Auth)?;
        conn.open(&target.domain).await.at(Stage::Bind)?;
        let jid = conn.bind(resource).await.at(Stage::Bind)?;
        Ok(Client { conn, jid })
    }

    pub async fn send(&mut self, xml: &[u8]) -> Result<(), Error> {
        self.conn.send(xml).await.at(Stage::Io)
    }

    /// The next top-level element from the server.
    pub async fn recv(&mut self) -> Result<Element, Error> {
        self.conn.recv().await.at(Stage::Io)
    }

    /// The next top-level element, or what `skim` made of its text without building it (see
    /// [`StreamReader::next_skimmed`]).
    pub async fn recv_skimmed<T>(
        &mut self,
        mut skim: impl FnMut(&str) -> Option<T>,
    ) -> Result<Received<T>, Error> {
        let read = self
            .conn
            .read_until(|parser| parser.next_skimmed(&mut skim))
            .await
            .at(Stage::Io)?;
        match read {
            Some(Skimmed::Taken(taken)) => Ok(Received::Skimmed(taken)),
            Some(Skimmed::Event(event)) => stanza(Some(event)).map(Received::Stanza).at(Stage::Io),
            None => stanza(None).map(Received::Stanza).at(Stage::Io),
        }
    }

    /// The connection itself, for reading and writing raw bytes; whatever the parser held is
    /// dropped.
    pub fn into_io(self) -> Box<dyn Io> {
        self.conn.io
    }

    /// Closes the stream and waits until the server closes its side too, skipping whatever
    /// stanzas were still on their way.
    pub async fn close(mut self) -> Result<(), Error> {
        self.conn.send(STREAM_CLOSE).await.at(Stage::Close)?;
        loop {
            match self.conn.next_event().await {
                Ok(Some(StreamEvent::End)) | Ok(None) => break,
                Ok(Some(_)) => {}
                Err(e) => return Err(e).at(Stage::Close),
            }
        }
        // The server may already have gone; a failed close_notify changes nothing.
        let _ = self.conn.io.shutdown().await;
        Ok(())
    }
}

/// What [`Client::recv_skimmed`] read.
pub enum Received<T> {
    Skimmed(T),
    Stanza(Element),
}

/// The stanza in `event`; the end of the stream or a stream error is a failure.
fn stanza(event: Option<StreamEvent>) -> Result<Element, String> {
    match event {
        Some(StreamEvent::Stanza(el)) if el.is("error", NS_STREAMS) => {
            let condition = el
                .children()
                .find(|c| c.ns() == NS_STREAM_ERRORS && c.name() != "text")
                .map_or("undefined-condition", |c| c.name());
            Err(format!("stream error: {condition}"))
        }
        Some(StreamEvent::Stanza(el)) => Ok(el),
        Some(StreamEvent::Header) => Err("unexpected second stream header".into()),
        Some(StreamEvent::End) => Err("the server closed the stream".into()),
        None => Err("the server closed the connection".into()),
    }
}

/// A byte stream and the reader of the XML stream currently open on it.
struct Conn<S> {
    io: S,
    parser: StreamReader,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(io: S) -> Self {
        Conn {
            io,
            parser: StreamReader::default(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.io.write_all(bytes).await.map_err(|e| e.to_string())?;
        // TLS may hold records back until flushed.
        self.io.flush().await.map_err(|e| e.to_string())
    }

    /// The next stream event; `None` when the server closed the connection.
    async fn next_event(&mut self) -> Result<Option<StreamEvent>, String> {
        self.read_until(StreamReader::next_event).await
    }

    /// Reads until `next` finds something in what was read; `None` when the server closed
    /// the connection first. Cancel-safe: what was read stays in the reader.
    async fn read_until<T>(
        &mut self,
        mut next: impl FnMut(&mut StreamReader) -> Result<Option<T>, String>,
    ) -> Result<Option<T>, String> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            if let Some(found) = next(&mut self.parser)? {
                return Ok(Some(found));
            }
            let n = self.io.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(None);
            }
            self.parser.feed(&buf[..n])?;
        }
    }

    /// The next top-level element; the end of the stream or a stream error is a failure.
    async fn recv(&mut self) -> Result<Element, String> {
        stanza(self.next_event().await?)
    }

    /// Opens a new stream and returns the server's features.
    async fn open(&mut self, domain: &str) -> Result<Element, String> {
        self.parser = StreamReader::default();
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}' to='{domain}' version='1.0'>"
        );
        self.send(header.as_bytes()).await?;
        if !matches!(self.next_event().await?, Some(StreamEvent::Header)) {
            return Err("expected a stream header".into());
        }
        let features = self.recv().await?;
        if !features.is("features", NS_STREAMS) {
            return Err(format!(
                "expected stream features, got <{}/>",
                features.name()
            ));
        }
        Ok(features)
    }

    async fn authenticate(
        &mut self,
        features: &Element,
        mechanism: Mechanism,
        user: &str,
        password: &str,
    ) -> Result<(), String> {
        let offered: Vec<String> = features
            .get_child("mechanisms", NS_SASL)
            .map(|m| m.children().map(Element::text).collect())
            .unwrap_or_default();
        if !offered.iter().any(|m| m == mechanism.name()) {
            return Err(format!(
                "{} not offered (offered: {})",
                mechanism.name(),
                offered.join(" ")
            ));
        }
        let hash = match mechanism {
            Mechanism::ScramSha256 => ScramHash::Sha256,
            Mechanism::ScramSha1 => ScramHash::Sha1,
            Mechanism::Plain => {
                let message = verona_auth::plain_message(user, password);
                self.send(&auth_element("PLAIN", &message)).await?;
                self.sasl_success().await?;
                return Ok(());
            }
        };
        let mut scram = ScramClient::new(hash, user, password).with_cache(CLIENT_KEYS.clone());
        self.send(&auth_element(hash.mechanism_name(), &scram.client_first()))
            .await?;
        let challenge = self.recv().await?;
        sasl_failure(&challenge)?;
        if !challenge.is("challenge", NS_SASL) {
            return Err(format!("expected a challenge, got <{}/>", challenge.name()));
        }
        let client_final = scram
            .server_first(&decode(&challenge)?)
            .map_err(|e| e.to_string())?;
        let response = format!(
            "<response xmlns='{NS_SASL}'>{}</response>",
            BASE64.encode(client_final)
        );
        self.send(response.as_bytes()).await?;
        let server_final = self.sasl_success().await?;
        scram.server_final(&server_final).map_err(|e| e.to_string())
    }

    /// Waits for `<success/>` and returns its additional data.
    async fn sasl_success(&mut self) -> Result<Vec<u8>, String> {
        let outcome = self.recv().await?;
        sasl_failure(&outcome)?;
        if !outcome.is("success", NS_SASL) {
            return Err(format!("expected success, got <{}/>", outcome.name()));
        }
        decode(&outcome)
    }

    async fn bind(&mut self, resource: &str) -> Result<String, String> {
        let request = format!(
            "<iq type='set' id='bind'><bind xmlns='{NS_BIND}'><resource>{resource}</resource></bind></iq>"
        );
        self.send(request.as_bytes()).await?;
        let reply = self.recv().await?;
        let jid = reply
            .get_child("bind", NS_BIND)
            .and_then(|b| b.get_child("jid", NS_BIND))
            .map(Element::text);
        match jid {
            Some(jid) if reply.is("iq", NS_CLIENT) && reply.attr("type") == Some("result") => {
                Ok(jid)
            }
            _ => Err(format!("bind refused: {}", element_text(&reply))),
        }
    }
}

impl Conn<TcpStream> {
    /// Asks for TLS and waits for the server to agree.
    async fn proceed(&mut self, features: &Element) -> Result<(), String> {
        if !features.has_child("starttls", NS_TLS) {
            return Err("the server does not offer STARTTLS".into());
        }
        self.send(format!("<starttls xmlns='{NS_TLS}'/>").as_bytes())
            .await?;
        let reply = self.recv().await?;
        if !reply.is("proceed", NS_TLS) {
            return Err(format!("expected <proceed/>, got <{}/>", reply.name()));
        }
        Ok(())
    }

    /// Asks for TLS and does the handshake; the caller opens the new stream.
    async fn starttls(
        mut self,
        features: &Element,
        domain: &str,
    ) -> Result<TlsStream<TcpStream>, String> {
        self.proceed(features).await?;
        let name = ServerName::try_from(domain.to_owned()).map_err(|e| e.to_string())?;
        CONNECTOR
            .connect(name, self.io)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))
    }
}

fn auth_element(mechanism: &str, message: &[u8]) -> Vec<u8> {
    format!(
        "<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{}</auth>",
        BASE64.encode(message)
    )
    .into_bytes()
}

fn sasl_failure(el: &Element) -> Result<(), String> {
    if !el.is("failure", NS_SASL) {
        return Ok(());
    }
    let condition = el
        .children()
        .find(|c| c.name() != "text")
        .map_or("unknown", |c| c.name());
    Err(format!("SASL failure: {condition}"))
}

fn decode(el: &Element) -> Result<Vec<u8>, String> {
    let text = el.text();
    let text = text.trim();
    if text == "=" {
        return Ok(Vec::new());
    }
    BASE64.decode(text).map_err(|e| format!("bad base64: {e}"))
}

fn element_text(el: &Element) -> String {
    String::from_utf8_lossy(&verona_stream::element_bytes(el)).into_owned()
}

/// One TLS client configuration shared by every connection.
static CONNECTOR: LazyLock<TlsConnector> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { schemes }))
        .with_no_client_auth();
    // Every simulated client is a new device: a full handshake each, as for a first login.
    config.resumption = Resumption::disabled();
    TlsConnector::from(Arc::new(config))
});

/// Trusts any certificate and handshake signature: this is a load tool on loopback, and
/// servers under test use throwaway self-signed certificates.
#[derive(Debug)]
struct AcceptAnyCert {
    schemes: Vec<rustls::SignatureScheme>,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.clone()
    }
}
