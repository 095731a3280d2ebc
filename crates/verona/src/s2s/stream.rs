//! One server-to-server stream on the wire, either direction: the socket (TCP, then TLS),
//! the parser, deadlines on every read and write, and the conversions between the server's
//! `jabber:client` stanzas and the `jabber:server` ones streams between servers carry.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use verona_stream::{Limits, StreamEvent, StreamHeader, StreamParser, Wire};

use crate::xml::ns;

const READ_CHUNK: usize = 4096;

/// Why a stream ended early.
#[derive(Debug, thiserror::Error)]
pub enum StreamFailure {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Framing(#[from] verona_stream::FramingError),
    #[error("the peer closed the stream")]
    Closed,
    #[error("{0}")]
    Protocol(String),
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Upgrading,
}

pub struct Stream {
    io: Io,
    /// `jabber:server`, or `jabber:component:accept` on a component's stream.
    content_ns: &'static str,
    parser: StreamParser,
    limits: Limits,
    chunk: Vec<u8>,
    write_timeout: Duration,
    /// How fast the peer may send, if bounded; reading pauses until `paused_until`.
    rate: Option<crate::c2s::rate::ReadRate>,
    /// The budgets of the servers this stream is from: what it reads counts against their
    /// rate too, with the answers to their users.
    shared_rates: Vec<crate::host::budget::AccountBudget>,
    paused_until: Option<tokio::time::Instant>,
}

impl Stream {
    pub fn new(tcp: TcpStream, limits: Limits, write_timeout: Duration) -> Stream {
        Self::with_namespace(tcp, ns::SERVER, limits, write_timeout)
    }

    pub fn with_namespace(
        tcp: TcpStream,
        content_ns: &'static str,
        limits: Limits,
        write_timeout: Duration,
    ) -> Stream {
        Stream {
            io: Io::Plain(tcp),
            content_ns,
            parser: StreamParser::new(content_ns, limits.clone()),
            limits,
            chunk: Vec::new(),
            write_timeout,
            rate: None,
            shared_rates: Vec::new(),
            paused_until: None,
        }
    }

    /// Bounds how fast the peer may send: `per_sec` bytes a second after a `burst` (0:
    /// unlimited); past it, reading pauses and only this stream waits.
    pub fn limit_reads(&mut self, per_sec: u64, burst: u64) {
        let now = tokio::time::Instant::now();
        self.rate = Some(crate::c2s::rate::ReadRate::new(per_sec, burst, now));
    }

    /// Counts what this stream reads against `budget` too, and pauses reading while it is
    /// past its rate.
    pub fn share_reads(&mut self, budget: crate::host::budget::AccountBudget) {
        self.shared_rates.push(budget);
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// The next event of the stream. Cancel-safe: bytes are only taken from the socket by
    /// the read that completes, and parsed before anything else is awaited.
    pub async fn next(&mut self) -> Result<StreamEvent, StreamFailure> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(event);
            }
            if let Some(until) = self.paused_until {
                tokio::time::sleep_until(until).await;
                self.paused_until = None;
            }
            self.chunk.resize(READ_CHUNK, 0);
            let n = match &mut self.io {
                Io::Plain(tcp) => tcp.read(&mut self.chunk).await?,
                Io::Tls(tls) => tls.read(&mut self.chunk).await?,
                Io::Upgrading => return Err(StreamFailure::Closed),
            };
            if n == 0 {
                return Err(StreamFailure::Closed);
            }
            self.parser.feed(&self.chunk[..n]);
            let now = tokio::time::Instant::now();
            let own = self.rate.as_mut().and_then(|rate| rate.consumed(n, now));
            let shared = self.shared_rates.iter().filter_map(|b| b.read(n, now));
            self.paused_until = own.into_iter().chain(shared).max();
        }
    }

    /// The next event within `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Result<StreamEvent, StreamFailure> {
        tokio::time::timeout(limit, self.next())
            .await
            .map_err(|_| StreamFailure::Timeout)?
    }

    /// The next top-level element within `limit`; the stream's end is a failure here.
    pub async fn element_within(&mut self, limit: Duration) -> Result<Element, StreamFailure> {
        match self.next_within(limit).await? {
            StreamEvent::Stanza(el) => Ok(el),
            StreamEvent::Header(_) => Err(StreamFailure::Protocol("a second header".into())),
            StreamEvent::End => Err(StreamFailure::Closed),
        }
    }

    /// The peer's stream header within `limit`.
    pub async fn header_within(&mut self, limit: Duration) -> Result<StreamHeader, StreamFailure> {
        match self.next_within(limit).await? {
            StreamEvent::Header(header) => Ok(header),
            _ => Err(StreamFailure::Protocol("expected a stream header".into())),
        }
    }

    /// Writes `bytes` whole, or fails after the write deadline (a peer that stops reading
    /// must not hold the task).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StreamFailure> {
        let write = async {
            match &mut self.io {
                Io::Plain(tcp) => tcp.write_all(bytes).await,
                Io::Tls(tls) => {
                    tls.write_all(bytes).await?;
                    tls.flush().await
                }
                Io::Upgrading => Err(io::ErrorKind::NotConnected.into()),
            }
        };
        tokio::time::timeout(self.write_timeout, write)
            .await
            .map_err(|_| StreamFailure::Timeout)??;
        Ok(())
    }

    /// TLS as the initiating side (after `<proceed/>`, or from the first byte), verifying
    /// the peer as `domain` if the connector does; the parser starts over.
    pub async fn connect_tls(
        &mut self,
        connector: &TlsConnector,
        domain: &str,
    ) -> Result<(), StreamFailure> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Upgrading) else {
            return Err(StreamFailure::Protocol("TLS twice".into()));
        };
        let name = rustls::pki_types::ServerName::try_from(domain.to_owned())
            .map_err(|e| StreamFailure::Protocol(format!("{domain}: {e}")))?;
        let tls = connector.connect(name, tcp).await?;
        self.io = Io::Tls(Box::new(TlsStream::Client(tls)));
        self.restart();
        Ok(())
    }

    /// TLS as the receiving side, after `<proceed/>`; the parser starts over.
    pub async fn accept_tls(&mut self, acceptor: &TlsAcceptor) -> Result<(), StreamFailure> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Upgrading) else {
            return Err(StreamFailure::Protocol("TLS twice".into()));
        };
        let tls = acceptor.accept(tcp).await?;
        self.io = Io::Tls(Box::new(TlsStream::Server(tls)));
        self.restart();
        Ok(())
    }

    /// The certificates the peer showed in the TLS handshake (none before TLS).
    pub fn peer_chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        match &self.io {
            Io::Tls(tls) => (tls.get_ref().1.peer_certificates())
                .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// A new stream on the same socket (after TLS, or SASL).
    pub fn restart(&mut self) {
        self.parser = StreamParser::new(self.content_ns, self.limits.clone());
    }
}

/// The opening of a stream between servers, with the dialback prefix declared.
pub fn header(from: &str, to: &str, id: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' xmlns:db='{}' from='{}' to='{}'",
        ns::SERVER,
        ns::STREAMS,
        ns::DIALBACK,
        escape(from),
        escape(to)
    );
    if let Some(id) = id {
        out.push_str(&format!(" id='{}'", escape(id)));
    }
    out.push_str(" version='1.0'>");
    out.into_bytes()
}

/// A dialback element (`result` or `verify`) as written on our streams.
pub fn dialback(
    name: &str,
    from: &str,
    to: &str,
    id: Option<&str>,
    kind: Option<&str>,
    key: Option<&str>,
) -> Vec<u8> {
    let mut out = format!("<db:{name} from='{}' to='{}'", escape(from), escape(to));
    if let Some(id) = id {
        out.push_str(&format!(" id='{}'", escape(id)));
    }
    if let Some(kind) = kind {
        out.push_str(&format!(" type='{kind}'"));
    }
    match key {
        Some(key) => out.push_str(&format!(">{}</db:{name}>", escape(key))),
        None => out.push_str("/>"),
    }
    out.into_bytes()
}

/// A dialback error answering a key (XEP-0220 §2.4): `error` is its stanza error's type and
/// condition; the `<error/>` is in the stream's namespace, `jabber:server`.
pub fn dialback_error(from: &str, to: &str, error: (&str, &str)) -> Vec<u8> {
    let (kind, condition) = error;
    format!(
        "<db:result from='{}' to='{}' type='error'><error type='{kind}'><{condition} xmlns='{}'/></error></db:result>",
        escape(from),
        escape(to),
        ns::STANZAS
    )
    .into_bytes()
}

fn escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
}

/// A stanza the server serialised for its clients, made a `jabber:server` stanza: minidom
/// declares the namespace on the top-level element (`<message xmlns='jabber:client' …>`), and
/// its children inherit it, so only that declaration changes. Elements nested in another
/// namespace (a forwarded message) declare their own and stay as they are.
pub fn to_server_namespace(bytes: &[u8]) -> Vec<u8> {
    swap_top_namespace(bytes, ns::CLIENT, ns::SERVER)
}

/// [`to_server_namespace`] for a stanza in parts: only its start tag changes, so the shared
/// body is copied only into the one buffer that is written.
pub fn wire_to_server_namespace(stanza: &Wire) -> Vec<u8> {
    let [head, body, tail] = stanza.parts();
    if !head.contains(&b'>') {
        return to_server_namespace(&stanza.to_vec());
    }
    let mut out = to_server_namespace(head);
    out.reserve(body.len() + tail.len());
    out.extend_from_slice(body);
    out.extend_from_slice(tail);
    out
}

/// The start tag of a serialised stanza, up to its first `>`: from the head alone when it
/// holds it (it does for every stanza the server builds), so a large body is not copied.
pub fn top_tag(stanza: &Wire) -> Cow<'_, [u8]> {
    let [head, ..] = stanza.parts();
    match head.iter().position(|&b| b == b'>') {
        Some(end) => Cow::Borrowed(&head[..=end]),
        None => {
            let mut whole = stanza.to_vec();
            if let Some(end) = whole.iter().position(|&b| b == b'>') {
                whole.truncate(end + 1);
            }
            Cow::Owned(whole)
        }
    }
}

/// The element a start tag opens, without its content (its name, namespace and attributes).
pub fn start_tag_element(tag: &[u8]) -> Option<Element> {
    let tag = std::str::from_utf8(tag).ok()?;
    let open = tag.strip_suffix('>')?;
    let empty = format!("{}/>", open.strip_suffix('/').unwrap_or(open));
    empty.parse().ok()
}

/// Replaces the declaration of the top-level element's namespace `from` with `to`.
pub fn swap_top_namespace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let head_end = bytes.iter().position(|&b| b == b'>').unwrap_or(bytes.len());
    let head = &bytes[..head_end];
    for quote in [b'\'', b'"'] {
        let declaration = |namespace: &str| {
            [
                b" xmlns=".as_slice(),
                &[quote],
                namespace.as_bytes(),
                &[quote],
            ]
            .concat()
        };
        let needle = declaration(from);
        if let Some(at) = head
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
        {
            return [&bytes[..at], &declaration(to), &bytes[at + needle.len()..]].concat();
        }
    }
    bytes.to_vec()
}

/// An attribute of the top-level element of serialised XML, unescaped.
pub fn head_attr(bytes: &[u8], name: &str) -> Option<String> {
    let head_end = bytes.iter().position(|&b| b == b'>')?;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    for quote in ['\'', '"'] {
        let needle = format!(" {name}={quote}");
        if let Some(at) = head.find(&needle) {
            let rest = &head[at + needle.len()..];
            let value = &rest[..rest.find(quote)?];
            return Some(
                value
                    .replace("&apos;", "'")
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            );
        }
    }
    None
}

/// A stanza received from another server, in the namespace the rest of the server speaks:
/// every element in `jabber:server` (the top-level one and those inheriting it) becomes
/// `jabber:client`, by the same swap of the top-level declaration on its serialised form.
pub fn to_client_namespace(el: &Element) -> Option<Element> {
    from_namespace(el, ns::SERVER)
}

/// [`to_client_namespace`] for a stream whose stanzas are in `namespace`.
pub fn from_namespace(el: &Element, namespace: &str) -> Option<Element> {
    let bytes = swap_top_namespace(&verona_stream::element_bytes(el), namespace, ns::CLIENT);
    std::str::from_utf8(&bytes).ok()?.parse().ok()
}

/// The server's certificate and key, shown to other servers both ways (as a server, and as
/// a client for their SASL EXTERNAL), read again when the server is told to (SIGHUP).
pub type Identity = Arc<crate::tls::Certificate>;

/// The TLS client configuration for outgoing streams. With `roots`, certificates must chain
/// to them and name the domain; without, any certificate is taken and dialback alone
/// authenticates the peer (XEP-0220 over unverified TLS, as Prosody and ejabberd do by
/// default). Our own certificate is shown, for the peer to offer SASL EXTERNAL.
pub fn client_config(
    roots: Option<rustls::RootCertStore>,
    identity: &Identity,
    alpn: Option<&[u8]>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match roots {
        Some(roots) => builder.with_root_certificates(roots),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
    };
    let mut config = builder.with_client_cert_resolver(identity.clone());
    if let Some(alpn) = alpn {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    Ok(Arc::new(config))
}

/// The TLS server configuration for incoming server streams: like the clients' STARTTLS, but
/// asking the peer for its certificate (without requiring one, and taking any: whether it
/// proves the peer's domain is decided after the handshake, for SASL EXTERNAL).
pub fn server_config(identity: &Identity) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(AnyCertificate(provider)))
        .with_cert_resolver(identity.clone());
    Ok(Arc::new(config))
}

/// Takes any certificate, as a client (dialback authenticates the server) and as a server
/// (whether a client certificate proves its domain is decided after the handshake).
/// Signatures over the handshake are still checked, so the peer holds the key of the
/// certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

type Signature = Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>;

impl AnyCertificate {
    fn tls12(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Signature {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Signature {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl rustls::server::danger::ClientCertVerifier for AnyCertificate {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Signature {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Signature {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes()
    }
}

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Signature {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Signature {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_change_namespace_at_the_top_only() {
        let cases = [
            (
                "<message xmlns='jabber:client' to='romeo@montague.lit'><body>hi</body></message>",
                "<message xmlns='jabber:server' to='romeo@montague.lit'><body>hi</body></message>",
            ),
            (
                "<message xmlns=\"jabber:client\"><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'/></forwarded></message>",
                "<message xmlns=\"jabber:server\"><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'/></forwarded></message>",
            ),
            (
                "<iq xmlns='urn:other' type='get'><ping xmlns='jabber:client'/></iq>",
                "<iq xmlns='urn:other' type='get'><ping xmlns='jabber:client'/></iq>",
            ),
        ];
        for (before, after) in cases {
            let changed = String::from_utf8(to_server_namespace(before.as_bytes())).unwrap();
            assert_eq!(changed, after);
        }
    }

    /// A stanza in parts (a fan-out's shared body) is rewritten and read at its start tag
    /// alone, with the same result as in one piece.
    #[test]
    fn stanzas_in_parts_are_handled_at_their_start_tag() {
        use bytes::Bytes;
        let whole = "<message xmlns='jabber:client' from='juliet@capulet.lit' to='romeo@montague.lit' id='e1'><event><x/></event></message>";
        let bytes = whole.as_bytes();
        let split_at = |at: usize| {
            Wire::new(
                Bytes::copy_from_slice(&bytes[..at]),
                Bytes::copy_from_slice(&bytes[at..108]),
                Bytes::copy_from_slice(&bytes[108..]),
            )
        };
        // Split after the start tag (as the server splits), within it, and not at all.
        let split = split_at(89);
        for wire in [&split, &split_at(40), &Wire::from(bytes.to_vec())] {
            assert_eq!(
                wire_to_server_namespace(wire),
                to_server_namespace(whole.as_bytes())
            );
            let top = start_tag_element(&top_tag(wire)).unwrap();
            let expected: Element = "<message xmlns='jabber:client' from='juliet@capulet.lit' to='romeo@montague.lit' id='e1'/>".parse().unwrap();
            assert_eq!(top, expected);
        }
        assert!(matches!(top_tag(&split), Cow::Borrowed(_)), "from the head");
        let empty = start_tag_element(b"<presence xmlns='jabber:client' type='probe'/>").unwrap();
        assert_eq!(empty.attr("type"), Some("probe"));
    }

    #[test]
    fn attributes_of_the_top_element() {
        let xml = b"<message xmlns='jabber:client' from='a&amp;b@capulet.lit/x' to=\"romeo@montague.lit\"><body from='no'/></message>";
        assert_eq!(head_attr(xml, "from").as_deref(), Some("a&b@capulet.lit/x"));
        assert_eq!(head_attr(xml, "to").as_deref(), Some("romeo@montague.lit"));
        assert_eq!(head_attr(xml, "id"), None);
    }

    #[test]
    fn received_stanzas_speak_jabber_client() {
        let el: Element = "<message xmlns='jabber:server' from='romeo@montague.lit/orchard' to='juliet@capulet.lit'><body>hi</body><x xmlns='urn:other'><y/></x></message>"
            .parse()
            .unwrap();
        let converted = to_client_namespace(&el).unwrap();
        assert_eq!(converted.ns(), ns::CLIENT);
        assert_eq!(converted.attr("from"), Some("romeo@montague.lit/orchard"));
        assert_eq!(
            converted.get_child("body", ns::CLIENT).unwrap().text(),
            "hi"
        );
        let x = converted.get_child("x", "urn:other").unwrap();
        assert!(x.get_child("y", "urn:other").is_some());
    }

    #[test]
    fn dialback_elements() {
        let result = dialback(
            "result",
            "capulet.lit",
            "montague.lit",
            None,
            None,
            Some("k"),
        );
        assert_eq!(
            result,
            b"<db:result from='capulet.lit' to='montague.lit'>k</db:result>"
        );
        let verify = dialback(
            "verify",
            "capulet.lit",
            "montague.lit",
            Some("i'd"),
            Some("valid"),
            None,
        );
        assert_eq!(
            verify,
            b"<db:verify from='capulet.lit' to='montague.lit' id='i&apos;d' type='valid'/>"
        );
        let error = dialback_error(
            "capulet.lit",
            "montague.lit",
            ("cancel", "remote-connection-failed"),
        );
        assert_eq!(
            error,
            b"<db:result from='capulet.lit' to='montague.lit' type='error'><error type='cancel'><remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"
        );
    }
}
