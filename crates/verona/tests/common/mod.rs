//! A real server on 127.0.0.1:0 and a raw XMPP client that speaks to it over TCP, TLS and SASL,
//! exposing every stanza so tests can assert on exact XML.

#![allow(dead_code)] // each test binary uses a different part of this harness

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minidom::Element;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use verona::{Config, RunningServer};
use verona_auth::{ScramClient, ScramHash, TlsBinding};
use verona_stream::{Limits, StreamEvent, StreamHeader, StreamParser};

pub mod faulty;
pub mod process;

pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is waited for.
pub const QUIET: Duration = Duration::from_millis(300);

pub const NS_CLIENT: &str = "jabber:client";
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_COMPRESS: &str = "http://jabber.org/protocol/compress";
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    config.c2s.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.c2s.direct_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.c2s.websocket_listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.c2s.websocket_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    // Half the tests, chosen by name (so a failure reproduces), have every service nobody uses
    // leave memory after each batch, which checks that a service reloaded from storage answers
    // as before (DESIGN §5a); the others keep services resident as a running server does,
    // where a stale copy in memory would show.
    config.limits.resident_services = if evicts_every_batch() { 0 } else { 2_000 };
    // Two shards: what one service's work means for another crosses shards in every test.
    config.pubsub.shards = 2;
    config
}

/// Whether this test (its thread is named after it) is one whose servers keep no service
/// resident beyond each batch.
fn evicts_every_batch() -> bool {
    let name = std::thread::current().name().unwrap_or_default().to_owned();
    name.bytes().map(u32::from).sum::<u32>() % 2 == 0
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let server = RunningServer::start(config).await.unwrap();
        TestServer { server, dir }
    }

    /// Stops the server (in order, as at SIGTERM) and starts a new one, with the test
    /// configuration, on its data.
    pub async fn restarted(self) -> TestServer {
        let TestServer { server, dir } = self;
        server.shutdown().await;
        let server = RunningServer::start(test_config(dir.path())).await.unwrap();
        TestServer { server, dir }
    }

    /// A server on a store whose writes fail or panic on demand.
    pub async fn start_faulty() -> (TestServer, Arc<faulty::FaultyStore>) {
        Self::start_faulty_with(|_| {}).await
    }

    /// [`TestServer::start_faulty`] with a configuration of its own.
    pub async fn start_faulty_with(
        adjust: impl FnOnce(&mut Config),
    ) -> (TestServer, Arc<faulty::FaultyStore>) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        // One shard: the requests a test sends at once share a batch, whatever they address.
        config.pubsub.shards = 1;
        adjust(&mut config);
        let store = faulty::FaultyStore::new(verona::open_store(&config).await.unwrap());
        let server = RunningServer::start_with_stores(config, store.stores())
            .await
            .unwrap();
        (TestServer { server, dir }, store)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.c2s_addrs()[0]
    }

    pub fn tls_addr(&self) -> SocketAddr {
        self.server.direct_tls_addrs()[0]
    }

    pub async fn add_user(&self, user: &str, password: &str) {
        let accounts = self.server.accounts();
        let jid = accounts
            .parse_jid(&format!("{user}@{}", self.server.domain()))
            .unwrap();
        accounts.create(&jid, password).await.unwrap();
    }

    /// Connect, STARTTLS, SCRAM-SHA-256, bind.
    pub async fn login(&self, user: &str, password: &str, resource: &str) -> Client {
        let mut client = self.authenticate(user, password).await;
        client.bind(Some(resource)).await;
        client
    }

    /// [`TestServer::login`], then initial presence, answered by the session's own.
    pub async fn login_available(&self, user: &str, password: &str, resource: &str) -> Client {
        let mut client = self.login(user, password, resource).await;
        client.send("<presence xmlns='jabber:client'/>").await;
        let own = format!("{user}@{}/{resource}", self.server.domain());
        recv_until(&mut client, |el| {
            el.name() == "presence" && el.attr("from") == Some(own.as_str())
        })
        .await;
        client
    }

    /// [`TestServer::login`] over a connection that receives into a buffer of about `bytes`:
    /// a client that stops reading soon holds up the server's writes.
    pub async fn login_with_receive_buffer(
        &self,
        user: &str,
        password: &str,
        resource: &str,
        bytes: u32,
    ) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // Before connecting: the window the connection starts with is sized by it.
        socket.set_recv_buffer_size(bytes).unwrap();
        let client = Client::over(socket.connect(self.addr()).await.unwrap());
        let mut client = self.authenticate_over(client, user, password).await;
        client.bind(Some(resource)).await;
        client
    }

    /// Connect, STARTTLS, SCRAM-SHA-256: a stream ready to bind (or resume), and its features.
    pub async fn authenticate(&self, user: &str, password: &str) -> Client {
        let client = Client::connect(self.addr()).await;
        self.authenticate_over(client, user, password).await
    }

    /// [`TestServer::authenticate`] over `client`'s connection.
    async fn authenticate_over(&self, mut client: Client, user: &str, password: &str) -> Client {
        client.domain = self.server.domain().to_owned();
        client.open().await;
        client.starttls(self.server.cert_path()).await;
        client.open().await;
        client
            .auth_scram(ScramHash::Sha256, user, password)
            .await
            .unwrap();
        client.open().await;
        client
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Client {
    io: Option<Box<dyn Io>>,
    tcp: Option<TcpStream>,
    parser: StreamParser,
    pub domain: String,
    pub jid: Option<String>,
    pub features: Option<Element>,
    pub header: Option<StreamHeader>,
    /// The client's view of RFC 9266 tls-exporter data, once TLS is up.
    pub binding: Option<TlsBinding>,
    /// XEP-0138 zlib, once negotiated.
    zlib: Option<(flate2::Compress, flate2::Decompress)>,
    /// Stanzas received while [`Client::request`] waited for its answer.
    stashed: std::collections::VecDeque<Element>,
}

fn exporter(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> TlsBinding {
    let data = tls
        .get_ref()
        .1
        .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
        .unwrap();
    TlsBinding {
        kind: "tls-exporter",
        data,
    }
}

fn client_parser() -> StreamParser {
    StreamParser::new(NS_CLIENT, Limits::default())
}

pub fn tls_connector(cert_path: &Path) -> tokio_rustls::TlsConnector {
    let mut config = trusting(cert_path);
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Trusts the server's own certificate, without ALPN: for server-to-server streams.
pub fn server_tls_connector(cert_path: &Path) -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(Arc::new(trusting(cert_path)))
}

/// A TLS client configuration that trusts the certificates in `cert_path`.
fn trusting(cert_path: &Path) -> rustls::ClientConfig {
    trusting_versions(cert_path, rustls::DEFAULT_VERSIONS)
}

fn trusting_versions(
    cert_path: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_path).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::over(TcpStream::connect(addr).await.unwrap())
    }

    /// [`Client::connect`] from the local address `source` (another loopback address, say).
    pub async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> Client {
        let socket = match source {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        Self::over(socket.connect(addr).await.unwrap())
    }

    fn over(tcp: TcpStream) -> Client {
        Client {
            io: None,
            tcp: Some(tcp),
            parser: client_parser(),
            domain: "localhost".into(),
            jid: None,
            features: None,
            header: None,
            binding: None,
            zlib: None,
            stashed: Default::default(),
        }
    }

    /// XEP-0368: TLS from the first byte, with ALPN `xmpp-client`.
    pub async fn connect_direct_tls(addr: SocketAddr, cert_path: &Path) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tls_connector(cert_path)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"xmpp-client"[..]));
        let binding = Some(exporter(&tls));
        Client {
            io: Some(Box::new(tls)),
            tcp: None,
            parser: client_parser(),
            domain: "localhost".into(),
            jid: None,
            features: None,
            header: None,
            binding,
            zlib: None,
            stashed: Default::default(),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let compressed;
        let bytes = match &mut self.zlib {
            Some((deflate, _)) => {
                compressed = zlib_deflate(deflate, bytes);
                &compressed[..]
            }
            None => bytes,
        };
        self.send_wire(bytes).await;
    }

    /// Bytes exactly as given, even on a compressed stream (for sending hostile zlib data).
    pub async fn send_wire(&mut self, bytes: &[u8]) {
        let result = match (&mut self.io, &mut self.tcp) {
            (Some(io), _) => io.write_all(bytes).await,
            (None, Some(tcp)) => tcp.write_all(bytes).await,
            _ => unreachable!(),
        };
        result.unwrap();
    }

    pub async fn send(&mut self, xml: &str) {
        self.send_raw(xml.as_bytes()).await;
    }

    pub async fn send_header(&mut self, to: &str) {
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
        );
        self.send(&header).await;
    }

    /// Opens a (new) stream: sends the header, reads the server's header and features.
    pub async fn open(&mut self) -> Element {
        self.parser = client_parser();
        let domain = self.domain.clone();
        self.send_header(&domain).await;
        match self.next_event().await {
            Some(StreamEvent::Header(h)) => self.header = Some(h),
            other => panic!("expected a stream header, got {other:?}"),
        }
        let features = self.recv().await;
        assert!(features.is("features", NS_STREAMS), "{features:?}");
        self.features = Some(features.clone());
        features
    }

    /// Reads the server's header (after the client sent its own by other means).
    pub async fn read_header(&mut self) -> StreamHeader {
        match self.next_event().await {
            Some(StreamEvent::Header(h)) => h,
            other => panic!("expected a stream header, got {other:?}"),
        }
    }

    async fn read_some(&mut self) -> usize {
        let mut buf = [0u8; 8192];
        let read = match (&mut self.io, &mut self.tcp) {
            (Some(io), _) => io.read(&mut buf).await,
            (None, Some(tcp)) => tcp.read(&mut buf).await,
            _ => unreachable!(),
        };
        let n = read.unwrap_or(0);
        match &mut self.zlib {
            Some((_, inflate)) => {
                let mut out = Vec::with_capacity(64 * 1024);
                inflate
                    .decompress_vec(&buf[..n], &mut out, flate2::FlushDecompress::Sync)
                    .unwrap();
                assert!(out.len() < out.capacity(), "test reads inflate to < 64 KiB");
                self.parser.feed(&out);
            }
            None => self.parser.feed(&buf[..n]),
        }
        n
    }

    /// XEP-0138: negotiate zlib, then open the compressed stream.
    pub async fn compress(&mut self) -> Result<Element, String> {
        self.send("<compress xmlns='http://jabber.org/protocol/compress'><method>zlib</method></compress>")
            .await;
        let reply = self.recv().await;
        if !reply.is("compressed", NS_COMPRESS) {
            let condition = reply.children().next().map(|c| c.name().to_owned());
            return Err(condition.unwrap_or_default());
        }
        self.zlib = Some((
            flate2::Compress::new(flate2::Compression::default(), true),
            flate2::Decompress::new(true),
        ));
        Ok(self.open().await)
    }

    /// Whatever bytes arrive next within `within` (also fed to the parser).
    pub async fn raw_read(&mut self, within: Duration) -> Vec<u8> {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(within, async {
            match (&mut self.io, &mut self.tcp) {
                (Some(io), _) => io.read(&mut buf).await,
                (None, Some(tcp)) => tcp.read(&mut buf).await,
                _ => unreachable!(),
            }
        })
        .await;
        match read {
            Ok(Ok(n)) => {
                self.parser.feed(&buf[..n]);
                buf[..n].to_vec()
            }
            _ => Vec::new(),
        }
    }

    /// The next stream event; `None` when the server closed the connection.
    pub async fn next_event(&mut self) -> Option<StreamEvent> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                match self.parser.next_event() {
                    Ok(Some(event)) => return Some(event),
                    Ok(None) => {}
                    Err(e) => panic!("server sent bad XML: {e}"),
                }
                if self.read_some().await == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("timed out waiting for the server")
    }

    /// The next top-level element; panics on stream end.
    pub async fn recv(&mut self) -> Element {
        if let Some(el) = self.stashed.pop_front() {
            return el;
        }
        match self.next_event().await {
            Some(StreamEvent::Stanza(el)) => el,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// Sends an iq and returns the iq answering it (same id); other stanzas that arrive
    /// meanwhile are kept for [`Client::recv`].
    pub async fn request(&mut self, iq: &str) -> Element {
        let sent: Element = iq.parse().expect("test iqs are well-formed");
        let id = sent.attr("id").expect("test iqs carry an id").to_owned();
        self.send(iq).await;
        loop {
            let el = match self.next_event().await {
                Some(StreamEvent::Stanza(el)) => el,
                other => panic!("waiting for iq {id}, got {other:?}"),
            };
            if el.name() == "iq" && el.attr("id") == Some(id.as_str()) {
                return el;
            }
            self.stashed.push_back(el);
        }
    }

    /// Asserts that nothing arrives within [`QUIET`].
    pub async fn expect_nothing(&mut self) {
        if let Some(el) = self.stashed.front() {
            panic!(
                "unexpected {}",
                String::from_utf8_lossy(&verona_stream::element_bytes(el))
            );
        }
        if let Ok(Some(StreamEvent::Stanza(el))) = self.parser.next_event() {
            panic!(
                "unexpected {}",
                String::from_utf8_lossy(&verona_stream::element_bytes(&el))
            );
        }
        let got = tokio::time::timeout(QUIET, self.read_some()).await;
        if let Ok(n) = got {
            assert!(n > 0, "connection closed while expecting silence");
            let event = self.parser.next_event();
            panic!("expected silence, got {event:?}");
        }
    }

    /// Reads until a stream error, returns its condition, and checks the stream then closes.
    pub async fn expect_stream_error(&mut self) -> String {
        loop {
            match self.next_event().await {
                Some(StreamEvent::Stanza(el)) if el.is("error", NS_STREAMS) => {
                    let condition = el
                        .children()
                        .find(|c| c.ns() == NS_STREAM_ERRORS && c.name() != "text")
                        .expect("a defined condition")
                        .name()
                        .to_owned();
                    match self.next_event().await {
                        Some(StreamEvent::End) | None => {}
                        other => panic!("expected the stream to close, got {other:?}"),
                    }
                    return condition;
                }
                // The header and features that precede an error in the first stream.
                Some(StreamEvent::Header(_)) => {}
                Some(StreamEvent::Stanza(el)) if el.is("features", NS_STREAMS) => {}
                other => panic!("expected a stream error, got {other:?}"),
            }
        }
    }

    /// Asserts the connection ends (EOF) soon.
    pub async fn expect_closed(&mut self) {
        loop {
            match self.next_event().await {
                None => return,
                Some(StreamEvent::End) => {}
                other => panic!("expected the connection to close, got {other:?}"),
            }
        }
    }

    pub async fn starttls(&mut self, cert_path: &Path) {
        self.starttls_with(tls_connector(cert_path)).await;
    }

    /// STARTTLS as a client that only speaks TLS 1.2 (no `tls-exporter` binding there).
    pub async fn starttls_tls12(&mut self, cert_path: &Path) {
        let mut config = trusting_versions(cert_path, &[&rustls::version::TLS12]);
        config.alpn_protocols = vec![b"xmpp-client".to_vec()];
        self.starttls_with(tokio_rustls::TlsConnector::from(Arc::new(config)))
            .await;
    }

    async fn starttls_with(&mut self, connector: tokio_rustls::TlsConnector) {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        let proceed = self.recv().await;
        assert!(proceed.is("proceed", NS_TLS), "{proceed:?}");
        let tcp = self.tcp.take().expect("plain connection");
        let tls = connector
            .connect(ServerName::try_from(self.domain.clone()).unwrap(), tcp)
            .await
            .unwrap();
        self.binding = Some(exporter(&tls));
        self.io = Some(Box::new(tls));
    }

    pub fn mechanisms(&self) -> Vec<String> {
        self.features
            .as_ref()
            .and_then(|f| f.get_child("mechanisms", NS_SASL))
            .map(|m| m.children().map(|c| c.text()).collect())
            .unwrap_or_default()
    }

    /// Runs SCRAM; Err(condition) on a SASL failure.
    pub async fn auth_scram(
        &mut self,
        hash: ScramHash,
        user: &str,
        password: &str,
    ) -> Result<(), String> {
        let scram = ScramClient::new(hash, user, password);
        self.auth_scram_with(hash.mechanism_name(), scram).await
    }

    /// Runs SCRAM with a prepared client under the given mechanism name (e.g. a -PLUS one).
    pub async fn auth_scram_with(
        &mut self,
        mechanism: &str,
        mut scram: ScramClient,
    ) -> Result<(), String> {
        let first = BASE64.encode(scram.client_first());
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{first}</auth>"
        ))
        .await;
        let challenge = self.recv().await;
        sasl_failure(&challenge)?;
        assert!(challenge.is("challenge", NS_SASL), "{challenge:?}");
        let server_first = BASE64.decode(challenge.text()).unwrap();
        let client_final = scram.server_first(&server_first).unwrap();
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            BASE64.encode(client_final)
        ))
        .await;
        let outcome = self.recv().await;
        sasl_failure(&outcome)?;
        assert!(outcome.is("success", NS_SASL), "{outcome:?}");
        scram
            .server_final(&BASE64.decode(outcome.text()).unwrap())
            .expect("the server proves it knows the credentials");
        Ok(())
    }

    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<(), String> {
        let message = BASE64.encode(verona_auth::plain_message(user, password));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{message}</auth>"
        ))
        .await;
        let outcome = self.recv().await;
        sasl_failure(&outcome)?;
        assert!(outcome.is("success", NS_SASL), "{outcome:?}");
        Ok(())
    }

    pub async fn bind(&mut self, resource: Option<&str>) -> String {
        let request = match resource {
            Some(r) => format!(
                "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{r}</resource></bind></iq>"
            ),
            None => "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>".into(),
        };
        self.send(&request).await;
        let reply = self.recv().await;
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
        assert_eq!(reply.attr("id"), Some("bind1"));
        let jid = reply
            .get_child("bind", NS_BIND)
            .and_then(|b| b.get_child("jid", NS_BIND))
            .expect("bind result carries the JID")
            .text();
        self.jid = Some(jid.clone());
        jid
    }

    pub fn jid(&self) -> &str {
        self.jid.as_deref().expect("bound")
    }
}

/// Deflates everything with a sync flush, so the server can decode it at once.
pub fn zlib_deflate(deflate: &mut flate2::Compress, bytes: &[u8]) -> Vec<u8> {
    let start = deflate.total_in();
    let mut out = Vec::new();
    loop {
        out.reserve(bytes.len() + 1024);
        let done = (deflate.total_in() - start) as usize;
        deflate
            .compress_vec(&bytes[done..], &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        if (deflate.total_in() - start) as usize == bytes.len() && out.len() < out.capacity() {
            return out;
        }
    }
}

fn sasl_failure(el: &Element) -> Result<(), String> {
    if el.is("failure", NS_SASL) {
        let condition = el.children().next().map(|c| c.name().to_owned());
        return Err(condition.unwrap_or_default());
    }
    Ok(())
}

/// The defined condition of a stanza error, if `el` is one.
/// The replies to requests sent past a rate that refills nothing while the test runs: each
/// one a result or `resource-constraint`, every refusal after the last result, and some
/// refused. How many were accepted.
pub fn accepted_before_refusals(replies: &[Element]) -> usize {
    let accepted: Vec<bool> = replies
        .iter()
        .map(|reply| match stanza_error(reply) {
            None => true,
            Some(condition) => {
                assert_eq!(condition, "resource-constraint", "{}", show(reply));
                false
            }
        })
        .collect();
    let made = accepted.iter().take_while(|ok| **ok).count();
    assert!(made < accepted.len(), "none refused: {accepted:?}");
    assert!(accepted[made..].iter().all(|ok| !ok), "{accepted:?}");
    made
}

pub fn stanza_error(el: &Element) -> Option<String> {
    if el.attr("type") != Some("error") {
        return None;
    }
    let error = el.get_child("error", NS_CLIENT)?;
    error
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
}

/// Features of a native XEP-0207 client (XEP-0115): it wants presence as pubsub events.
pub const NATIVE: &[&str] = &[
    "http://jabber.org/protocol/caps",
    "presence",
    "presence+notify",
];
/// Features of a classic client: capabilities without `presence+notify`.
pub const CLASSIC: &[&str] = &["http://jabber.org/protocol/caps", "urn:xmpp:ping"];

/// The disco#info a client with `features` answers, and its XEP-0115 `<c/>`.
pub fn caps(features: &[&str]) -> (xmpp_parsers::disco::DiscoInfoResult, String) {
    use xmpp_parsers::caps::hash_caps;
    use xmpp_parsers::disco::{DiscoInfoResult, Identity};
    use xmpp_parsers::hashes::Algo;
    let mut info = DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("client", "pc", "en", "verona-test")],
        features: features.iter().map(|f| f.to_string()).collect(),
        extensions: Vec::new(),
    };
    // XEP-0115 §5.1 by hand: xmpp-parsers 0.23 sorts `x+notify<` before `x<`.
    let mut input = String::from("client/pc/en/verona-test<");
    for feature in &info.features {
        input.push_str(feature);
        input.push('<');
    }
    let hash = hash_caps(input.as_bytes(), Algo::Sha_1).expect("sha-1");
    let ver = BASE64.encode(&hash.hash);
    let node = "https://verona.example/test";
    info.node = Some(format!("{node}#{ver}"));
    let c = format!(
        "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{node}' ver='{ver}'/>"
    );
    (info, c)
}

impl Client {
    /// Answers the server's disco#info question about capabilities with `info`.
    pub async fn answer_caps(&mut self, info: &xmpp_parsers::disco::DiscoInfoResult) {
        let query = self.recv().await;
        let node = query
            .get_child("query", "http://jabber.org/protocol/disco#info")
            .and_then(|q| q.attr("node"));
        assert_eq!(
            node,
            info.node.as_deref(),
            "a capabilities question: {query:?}"
        );
        let answer = minidom::Element::from(info.clone());
        let reply = format!(
            "<iq xmlns='jabber:client' type='result' id='{}' to='{}'>{}</iq>",
            query.attr("id").unwrap(),
            query.attr("from").unwrap(),
            String::from_utf8(verona_stream::element_bytes(&answer)).unwrap()
        );
        self.send(&reply).await;
    }

    /// Receives the next stanza and asserts who sent it.
    pub async fn recv_from(&mut self, from: &str) -> Element {
        let el = self.recv().await;
        assert_eq!(el.attr("from"), Some(from), "{}", show(&el));
        el
    }

    /// Receives `n` stanzas that may come in any order, sorted by sender.
    pub async fn recv_sorted(&mut self, n: usize) -> Vec<Element> {
        let mut got = Vec::with_capacity(n);
        for _ in 0..n {
            got.push(self.recv().await);
        }
        got.sort_by(|a, b| a.attr("from").cmp(&b.attr("from")));
        got
    }

    /// Sends `<presence>{inner}</presence>` advertising `features` and answers the question
    /// about them (the first time the server sees these capabilities).
    pub async fn presence_with_caps(&mut self, inner: &str, features: &[&str], asked: bool) {
        let (info, c) = caps(features);
        self.send(&format!(
            "<presence xmlns='jabber:client'>{inner}{c}</presence>"
        ))
        .await;
        if asked {
            self.answer_caps(&info).await;
        }
    }

    /// Publishes `<presence>{inner}</presence>` to the own `presence` node (seed Ex. 3)
    /// advertising `features`, answers the question about them, and checks the result.
    pub async fn publish_presence_with_caps(
        &mut self,
        inner: &str,
        features: &[&str],
        asked: bool,
    ) {
        let (info, c) = caps(features);
        self.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='pres-caps'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='presence'><item><presence xmlns='jabber:client'>{inner}{c}</presence></item></publish></pubsub></iq>"
        ))
        .await;
        if asked {
            self.answer_caps(&info).await;
        }
        let mut others = Vec::new();
        loop {
            let el = self.recv().await;
            if el.name() == "iq" && el.attr("id") == Some("pres-caps") {
                assert_eq!(el.attr("type"), Some("result"), "{el:?}");
                self.stashed.extend(others);
                return;
            }
            others.push(el);
        }
    }
}

/// A stanza as XML text, for assertion messages.
/// A loopback port that was free a moment ago (for servers that must know each other's
/// addresses before either starts).
/// A port nothing listens on, for a listener a test configures itself. Chosen below the
/// kernel's ephemeral range (which starts at 32768 by default), so that no client socket of
/// a test running alongside takes it between this check and the server's bind.
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    // Never the same port twice in one process: tests running side by side pick ports
    // before their servers bind them.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let random = std::collections::hash_map::RandomState::new();
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let port = (0u64..)
        .map(|n| 20_000 + (random.hash_one(n) % 12_000) as u16)
        .find(|port| {
            !given.contains(port) && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
        })
        .expect("a free port below 32000");
    given.push(port);
    port
}

pub fn show(el: &Element) -> String {
    String::from_utf8_lossy(&verona_stream::element_bytes(el)).into_owned()
}

/// Receives until a stanza matches, returning it (others are skipped).
pub async fn recv_until(client: &mut Client, wanted: impl Fn(&Element) -> bool) -> Element {
    loop {
        let el = client.recv().await;
        if wanted(&el) {
            return el;
        }
    }
}

/// Asserts that `message` has exactly these children (name, namespace), in this order, and an
/// error message also its `<error/>` last.
pub fn assert_children(message: &Element, expected: &[(&str, &str)]) {
    let children: Vec<(String, String)> = message
        .children()
        .map(|c| (c.name().to_owned(), c.ns()))
        .collect();
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(name, ns)| ((*name).to_owned(), (*ns).to_owned()))
        .collect();
    if message.attr("type") == Some("error") {
        expected.push(("error".to_owned(), NS_CLIENT.to_owned()));
    }
    assert_eq!(children, expected, "{}", show(message));
}

/// Asserts `reply` is an iq result.
pub fn ok(reply: &Element) {
    assert_eq!(reply.attr("type"), Some("result"), "{}", show(reply));
}

/// Who sent each stanza.
pub fn senders(stanzas: &[Element]) -> Vec<&str> {
    stanzas
        .iter()
        .map(|el| el.attr("from").unwrap_or_default())
        .collect()
}

/// Sends a XEP-0313 query (`queryid='q'`; `inner`: its form and RSM set) to `to` (`None`: the
/// account's own archive) and collects its result messages and the iq that ends it.
pub async fn mam_page(
    client: &mut Client,
    to: Option<&str>,
    inner: &str,
) -> (Vec<Element>, Element) {
    const MAM: &str = "urn:xmpp:mam:2";
    let to = to.map(|to| format!(" to='{to}'")).unwrap_or_default();
    client
        .send(&format!(
            "<iq xmlns='jabber:client' type='set' id='mam'{to}><query xmlns='{MAM}' queryid='q'>{inner}</query></iq>"
        ))
        .await;
    let mut results = Vec::new();
    loop {
        let el = client.recv().await;
        match el.name() {
            "message" if el.has_child("result", MAM) => results.push(el),
            "iq" if el.attr("id") == Some("mam") => return (results, el),
            _ => {}
        }
    }
}

/// A test certificate authority and certificates it signs for a domain (and its subdomains).
pub struct Authority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

impl Authority {
    pub fn new() -> Authority {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Verona test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Authority {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// (certificate, key) PEM files for `domain` in `dir`.
    pub fn issue(
        &self,
        dir: &std::path::Path,
        domain: &str,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let params =
            rcgen::CertificateParams::new(vec![domain.to_owned(), format!("*.{domain}")]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{domain}.crt")),
            dir.join(format!("{domain}.key")),
        );
        // The chain with the authority, so that clients trusting the file trust the server.
        std::fs::write(&cert_path, cert.pem() + &self.pem).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// A raw XML stream to the server in another role than a client's (another server, a
/// component), for tests that speak its protocol by hand.
pub struct RawStream {
    io: Option<Box<dyn Io>>,
    content_ns: &'static str,
    parser: StreamParser,
}

impl RawStream {
    pub async fn connect(addr: SocketAddr, content_ns: &'static str) -> RawStream {
        let tcp = TcpStream::connect(addr).await.unwrap();
        RawStream {
            io: Some(Box::new(tcp)),
            content_ns,
            parser: StreamParser::new(content_ns, Limits::default()),
        }
    }

    pub async fn send(&mut self, xml: &str) {
        let io = self.io.as_mut().expect("connected");
        io.write_all(xml.as_bytes()).await.unwrap();
    }

    /// The next event; `None` when the stream ends or breaks.
    pub async fn event(&mut self) -> Option<StreamEvent> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match self.parser.next_event() {
                    Ok(Some(event)) => return Some(event),
                    Ok(None) => {}
                    Err(_) => return None,
                }
                let mut buf = [0u8; 4096];
                let io = self.io.as_mut().expect("connected");
                let n = io.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                self.parser.feed(&buf[..n]);
            }
        })
        .await
        .expect("timed out waiting for the server")
    }

    pub async fn element(&mut self) -> Element {
        match self.event().await {
            Some(StreamEvent::Stanza(el)) => el,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// The next connection to `listener`: the server connecting to a test that plays the
    /// other side, another server it federates with.
    pub async fn accept(listener: &tokio::net::TcpListener, content_ns: &'static str) -> RawStream {
        let (tcp, _) = tokio::time::timeout(TIMEOUT, listener.accept())
            .await
            .expect("the server connects")
            .unwrap();
        RawStream {
            io: Some(Box::new(tcp)),
            content_ns,
            parser: StreamParser::new(content_ns, Limits::default()),
        }
    }

    /// TLS over an accepted connection, as its server, with a certificate made for `name`.
    pub async fn accept_tls(&mut self, name: &str) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let tcp = self.io.take().expect("connected");
        self.io = Some(Box::new(acceptor.accept(tcp).await.unwrap()));
    }

    /// A new stream on the same connection (after TLS or SASL).
    pub fn restart(&mut self) {
        self.parser = StreamParser::new(self.content_ns, Limits::default());
    }

    /// TLS over the connection, as `name`, with `connector`.
    pub async fn tls(&mut self, connector: tokio_rustls::TlsConnector, name: &str) {
        let tcp = self.io.take().expect("connected");
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        self.io = Some(Box::new(tls));
    }
}

/// The stream error condition of `el`, if it is a stream error.
pub fn stream_error(el: &Element) -> Option<String> {
    el.is("error", NS_STREAMS)
        .then(|| el.children().next().map(|c| c.name().to_owned()))
        .flatten()
}
