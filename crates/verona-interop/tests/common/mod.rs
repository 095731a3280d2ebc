//! Shared setup: one trusted certificate per test binary, Verona servers that serve it, and
//! tokio-xmpp clients pointed at them by address (no DNS).
#![allow(dead_code)] // each test binary uses a different part of this harness

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use sasl::common::{ChannelBinding, Credentials};
use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_xmpp::connect::starttls::starttls;
use tokio_xmpp::connect::tls_common::TlsStream;
use tokio_xmpp::connect::{DnsConfig, ServerConnector, StartTlsServerConnector};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::xmlstream::{
    PendingFeaturesRecv, StreamHeader, Timeouts, XmppStream, initiate_stream,
};
use tokio_xmpp::{Client, Event, Stanza};
use verona::config::{C2sConfig, TlsConfig};

/// Upper bound for any single network step, so a misbehaving server fails a test instead of
/// hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client listens to conclude that something did not arrive: a local server delivers
/// within milliseconds.
pub const QUIET: Duration = Duration::from_millis(300);

pub const JULIET: &str = "juliet@localhost";
pub const JULIET_PASSWORD: &str = "r0meo";
pub const ROMEO: &str = "romeo@localhost";
pub const ROMEO_PASSWORD: &str = "jul1et";

struct TestCert {
    chain: PathBuf,
    key: PathBuf,
}

/// A CA and a leaf for `localhost`/`*.localhost`, made once per process: tokio-xmpp trusts only
/// what rustls-native-certs loads, and that reads the process-global `SSL_CERT_FILE`.
fn test_cert() -> &'static TestCert {
    static CERT: OnceLock<TestCert> = OnceLock::new();
    CERT.get_or_init(|| {
        // RUST_LOG=verona=debug,tokio_xmpp=trace shows both sides of every stream.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let _ = rustls::crypto::ring::default_provider().install_default();

        // Names of their own: with rcgen's default name on both, OpenSSL (slixmpp's TLS)
        // takes the leaf for a self-signed certificate and never looks for the CA.
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Verona test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".into(), "*.localhost".into()])
                .expect("leaf params");
        leaf_params.distinguished_name = DistinguishedName::new();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca)
            .expect("leaf certificate");

        // Under the target dir so `cargo clean` removes it; kept because the static lives on.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("cert dir")
            .keep();
        let (ca_path, chain, key) = (
            dir.join("ca.pem"),
            dir.join("chain.pem"),
            dir.join("key.pem"),
        );
        std::fs::write(&ca_path, ca.pem()).expect("write CA");
        std::fs::write(&chain, leaf.pem() + &ca.pem()).expect("write chain");
        std::fs::write(&key, leaf_key.serialize_pem()).expect("write key");
        // SAFETY: runs once, and every test gets here before it starts a server or a client, so
        // only std reads the environment meanwhile (synchronised with set_var); addresses are IP
        // literals, so no C resolver reads it later either.
        unsafe { std::env::set_var("SSL_CERT_FILE", &ca_path) };
        TestCert { chain, key }
    })
}

/// A running Verona with accounts for Juliet and Romeo.
pub struct TestServer {
    pub server: verona::RunningServer,
    _data: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let cert = test_cert();
        let data = tempfile::tempdir().expect("data dir");
        let config = verona::Config {
            data_dir: data.path().to_owned(),
            c2s: C2sConfig {
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                direct_tls_listen: vec!["127.0.0.1:0".parse().unwrap()],
                websocket_tls_listen: vec![],
                ..C2sConfig::default()
            },
            tls: TlsConfig {
                cert: Some(cert.chain.clone()),
                key: Some(cert.key.clone()),
            },
            ..verona::Config::default()
        };
        let server = verona::RunningServer::start(config)
            .await
            .expect("server starts");
        let server = TestServer {
            server,
            _data: data,
        };
        for (jid, password) in [(JULIET, JULIET_PASSWORD), (ROMEO, ROMEO_PASSWORD)] {
            server.create_account(jid, password).await;
        }
        server
    }

    pub async fn create_account(&self, jid: &str, password: &str) {
        let accounts = self.server.accounts();
        let jid = accounts.parse_jid(jid).expect("account JID");
        accounts.create(&jid, password).await.expect("account");
    }

    /// The STARTTLS listener, for tokio-xmpp's `DnsConfig`.
    pub fn starttls_addr(&self) -> DnsConfig {
        DnsConfig::addr(&self.server.c2s_addrs()[0].to_string())
    }

    /// A tokio-xmpp client using its stock STARTTLS connector; it starts connecting at once.
    /// A full `jid` asks the server to bind that resource.
    pub fn client(&self, jid: &str, password: &str) -> Client {
        Client::new_starttls(
            Jid::new(jid).expect("valid JID"),
            password,
            self.starttls_addr(),
            Timeouts::tight(),
        )
    }

    /// tokio-xmpp's stock STARTTLS connector up to where SASL starts: the mechanisms offered,
    /// the encrypted stream and the channel binding the client derived from TLS.
    pub async fn sasl_ready(
        &self,
    ) -> (
        BTreeSet<String>,
        XmppStream<BufStream<TlsStream<TcpStream>>>,
        ChannelBinding,
    ) {
        let connector = StartTlsServerConnector::from(self.starttls_addr());
        let jid = Jid::from(bare(JULIET));
        let (pending, channel_binding) = tokio::time::timeout(
            TIMEOUT,
            connector.connect(&jid, ns::JABBER_CLIENT, Timeouts::tight()),
        )
        .await
        .expect("STARTTLS in time")
        .expect("STARTTLS succeeds");
        let (features, stream) = tokio::time::timeout(TIMEOUT, pending.recv_features())
            .await
            .expect("features in time")
            .expect("features after TLS");
        (features.sasl_mechanisms, stream, channel_binding)
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Juliet's SASL credentials with the given password and channel-binding stance.
pub fn juliet_credentials(password: &str, channel_binding: ChannelBinding) -> Credentials {
    Credentials::default()
        .with_username("juliet")
        .with_password(password)
        .with_channel_binding(channel_binding)
}

pub fn bare(jid: &str) -> BareJid {
    BareJid::new(jid).expect("valid JID")
}

/// Waits for the client's first event, which must be `Online`, and returns the bound JID.
pub async fn online(client: &mut Client) -> FullJid {
    let event = tokio::time::timeout(TIMEOUT, client.next())
        .await
        .expect("client came online in time")
        .expect("client event stream open");
    match event {
        Event::Online { bound_jid, .. } => {
            bound_jid.try_into_full().expect("bound JID has a resource")
        }
        other => panic!("expected Online, got {other:?}"),
    }
}

pub async fn next_stanza(client: &mut Client) -> Stanza {
    let event = tokio::time::timeout(TIMEOUT, client.next())
        .await
        .expect("stanza arrived in time")
        .expect("client event stream open");
    match event {
        Event::Stanza(stanza) => stanza,
        other => panic!("expected a stanza, got {other:?}"),
    }
}

/// Everything a client wrote once TLS was up, to check its choices on the wire.
#[derive(Clone, Debug, Default)]
pub struct Transcript(Arc<Mutex<Vec<u8>>>);

impl Transcript {
    /// The `mechanism` attribute of the first SASL `<auth/>` the client sent.
    pub fn sasl_mechanism(&self) -> Option<String> {
        let sent = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        let auth = &sent[sent.find("<auth ")?..];
        let value = &auth[auth.find("mechanism=")? + "mechanism=".len()..];
        let quote = value.chars().next()?;
        let value = &value[1..];
        Some(value[..value.find(quote)?].to_owned())
    }
}

/// tokio-xmpp's own STARTTLS steps (`initiate_stream`, `starttls`), with the encrypted stream's
/// outgoing bytes copied into a [`Transcript`]; the stock connector offers no such hook.
#[derive(Clone, Debug)]
pub struct TappedStartTls {
    pub addr: SocketAddr,
    pub transcript: Transcript,
}

impl ServerConnector for TappedStartTls {
    type Stream = BufStream<Tap<TlsStream<TcpStream>>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), tokio_xmpp::Error> {
        let domain = jid.domain().as_str();
        let header = || StreamHeader {
            to: Some(Cow::Borrowed(domain)),
            from: None,
            id: None,
        };
        let tcp = BufStream::new(TcpStream::connect(self.addr).await?);
        let (_, plain) = initiate_stream(tcp, ns, header(), timeouts)
            .await?
            .recv_features()
            .await?;
        let (tls, channel_binding) = starttls(plain, domain).await?;
        let tapped = BufStream::new(Tap {
            inner: tls,
            transcript: self.transcript.clone(),
        });
        let stream = initiate_stream(tapped, ns, header(), timeouts).await?;
        Ok((stream, channel_binding))
    }
}

/// Passes I/O through, recording what is written.
#[derive(Debug)]
pub struct Tap<S> {
    inner: S,
    transcript: Transcript,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.transcript
                .0
                .lock()
                .unwrap()
                .extend_from_slice(&buf[..n]);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
