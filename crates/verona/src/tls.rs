//! TLS: the certificate (configured, or generated once and reused) and the rustls server
//! configurations for STARTTLS and direct TLS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context, bail};
use rustls::ServerConfig;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Config;

/// ALPN protocol id for direct TLS client connections (XEP-0368).
const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";
/// WebSockets are HTTP/1.1 upgrades (RFC 6455); a browser offering h2 must not get it.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

pub struct TlsConfigs {
    pub starttls: Arc<ServerConfig>,
    pub direct: Arc<ServerConfig>,
    /// For WebSocket listeners (`wss://`).
    pub websocket: Arc<ServerConfig>,
    /// The certificate file in use, so operators and tests can trust it.
    pub cert_path: PathBuf,
    /// What every listener presents, and server-to-server streams as their client side
    /// (XEP-0178), read again by [`Certificate::reload`].
    pub certificate: Arc<Certificate>,
}

/// The certificate the server presents, read again from its files on demand (SIGHUP): a
/// renewed certificate (Let's Encrypt's last 90 days) is served without a restart, to clients
/// and to other servers.
#[derive(Debug)]
pub struct Certificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Reads the files again; on any error the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let certified = read_pair(&self.cert_path, &self.key_path, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
        Ok(())
    }
}

impl Certificate {
    /// The certificate chain and key presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// As the client side of a server-to-server stream (for the peer's SASL EXTERNAL).
impl ResolvesClientCert for Certificate {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A certificate chain and its key, read and checked to match.
fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificate {}", cert_path.display()))?;
    if chain.is_empty() {
        bail!("no certificate in {}", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading private key {}", key_path.display()))?;
    CertifiedKey::from_der(chain, key, provider).context("certificate and key do not match")
}

/// Where the generated certificate lives when none is configured.
pub fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

pub fn load(config: &Config) -> anyhow::Result<TlsConfigs> {
    let domain = ascii_domain(&config.normalized_domain())?;
    let configured = config.tls.cert.clone().zip(config.tls.key.clone());
    let (cert_path, key_path) = match &configured {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => {
            let (cert, key) = generated_paths(&config.data_dir);
            if !cert.exists() || !key.exists() {
                generate_self_signed(&domain, &cert, &key)?;
            }
            (cert, key)
        }
    };
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = preferred_suites();
    let provider = Arc::new(provider);
    let mut certified = read_pair(&cert_path, &key_path, &provider)?;
    if configured.is_none() && !names(&certified.cert[0], &domain) {
        // The domain was changed since the certificate was generated, which no client of
        // this domain would accept: a new one replaces it, the old files kept beside it.
        for path in [&cert_path, &key_path] {
            let old = path.with_extension("pem.old");
            std::fs::rename(path, &old)
                .with_context(|| format!("moving {} to {}", path.display(), old.display()))?;
        }
        tracing::warn!(
            cert = %cert_path.display(),
            "the generated certificate does not name {domain}: generating one that does (the old one is kept as cert.pem.old)"
        );
        generate_self_signed(&domain, &cert_path, &key_path)?;
        certified = read_pair(&cert_path, &key_path, &provider)?;
    }
    for problem in problems(
        &certified.cert[0],
        &domain,
        rustls::pki_types::UnixTime::now(),
    ) {
        tracing::warn!(cert = %cert_path.display(), "{problem}: clients will refuse it");
    }
    let certificate = Arc::new(Certificate {
        cert_path: cert_path.clone(),
        key_path,
        provider: provider.clone(),
        current: RwLock::new(Arc::new(certified)),
    });
    let mut starttls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    // Most clients list AES-256 first; every suite here is sound, and ours is the cheaper.
    starttls.ignore_client_order = true;
    let mut direct = starttls.clone();
    direct.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    let mut websocket = starttls.clone();
    websocket.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(TlsConfigs {
        starttls: Arc::new(starttls),
        direct: Arc::new(direct),
        websocket: Arc::new(websocket),
        cert_path,
        certificate,
    })
}

/// The suites in the server's order of preference: AES-128-GCM first, then ChaCha20 (for
/// clients without AES instructions), AES-256 last. AES-128's suites hash with SHA-256, which
/// most server CPUs do in hardware (SHA extensions): an in-memory TLS 1.3 handshake cost the server 98–102
/// µs with AES-128-GCM-SHA256 against 122–134 µs with AES-256-GCM-SHA384 (issue #15), and
/// every record after it is cheaper too.
fn preferred_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite::*;
    vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ]
}

/// An internationalised domain is named in its ASCII form (`xn--…`), as X.509 wants it.
fn ascii_domain(domain: &str) -> anyhow::Result<String> {
    idna::domain_to_ascii(domain)
        .map_err(|e| anyhow::anyhow!("domain {domain:?} has no ASCII form: {e}"))
}

/// Whether `cert` names `domain` (ASCII) as a DNS name.
fn names(cert: &CertificateDer<'_>, domain: &str) -> bool {
    let Ok(name) = rustls::pki_types::ServerName::try_from(domain) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// What makes clients refuse `cert` for `domain` at `now` that the server can tell alone: it
/// has expired or is not valid yet, or it does not name the domain. The server starts anyway
/// (a renewed certificate is read on SIGHUP), saying so.
fn problems(
    cert: &CertificateDer<'_>,
    domain: &str,
    now: rustls::pki_types::UnixTime,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Ok(parsed) = webpki::EndEntityCert::try_from(cert) {
        // Without trust anchors the chain cannot be verified, but the validity period is
        // checked before issuers are looked for.
        let checked = parsed.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[],
            &[],
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        );
        let stamp = |time: rustls::pki_types::UnixTime| {
            let since_1970 = std::time::Duration::from_secs(time.as_secs());
            verona_pubsub_xmpp::stamp(std::time::UNIX_EPOCH + since_1970)
        };
        match checked {
            Err(webpki::Error::CertExpired { not_after, .. }) => {
                problems.push(format!("the certificate expired at {}", stamp(not_after)))
            }
            Err(webpki::Error::CertNotValidYet { not_before, .. }) => problems.push(format!(
                "the certificate is not valid before {}",
                stamp(not_before)
            )),
            _ => {}
        }
    }
    if !names(cert, domain) {
        problems.push(format!("the certificate does not name {domain}"));
    }
    problems
}

/// A self-signed certificate for the (ASCII) domain and its subdomains (pubsub., chat.).
fn generate_self_signed(domain: &str, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let names = vec![domain.to_owned(), format!("*.{domain}")];
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    // The domain as the subject, which clients show when asked to accept the certificate
    // (rcgen's default says "rcgen self signed cert").
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let cert = params.self_signed(&key).context("generating certificate")?;
    let dir = cert_path.parent().expect("generated paths have a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate for {domain}");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default configuration with its data (and so its generated certificate) in `dir`.
    fn in_dir(dir: &tempfile::TempDir) -> Config {
        Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        }
    }

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = in_dir(&dir);
        let first = load(&config).unwrap();
        let pem = std::fs::read(&first.cert_path).unwrap();
        let second = load(&config).unwrap();
        assert_eq!(first.cert_path, second.cert_path);
        assert_eq!(pem, std::fs::read(&second.cert_path).unwrap());
        assert_eq!(first.direct.alpn_protocols, vec![b"xmpp-client".to_vec()]);
        // The subject's common name (OID 2.5.4.3, a UTF8String) is the domain.
        let common_name = [&[0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 9][..], b"localhost"].concat();
        assert!(
            first.certificate.current().cert[0]
                .windows(common_name.len())
                .any(|window| window == common_name),
            "CN=localhost"
        );
        assert!(first.starttls.alpn_protocols.is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let (_, key) = generated_paths(dir.path());
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// The suite a client offering `suites`, in its order, gets from the server.
    fn negotiated(
        configs: &TlsConfigs,
        suites: Vec<rustls::SupportedCipherSuite>,
    ) -> Option<rustls::CipherSuite> {
        handshake(configs, &configs.certificate.current().cert[0], suites).unwrap()
    }

    /// A handshake with a client that trusts only `trusted` and offers `suites`: the suite
    /// agreed on, or the client's error (the server presented another certificate).
    fn handshake(
        configs: &TlsConfigs,
        trusted: &CertificateDer<'static>,
        suites: Vec<rustls::SupportedCipherSuite>,
    ) -> Result<Option<rustls::CipherSuite>, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted.clone()).unwrap();
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = suites;
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut server = rustls::ServerConnection::new(configs.starttls.clone()).unwrap();
        while client.is_handshaking() || server.is_handshaking() {
            let mut bytes = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut bytes).unwrap();
            }
            server.read_tls(&mut &bytes[..]).unwrap();
            server.process_new_packets().unwrap();
            bytes.clear();
            while server.wants_write() {
                server.write_tls(&mut bytes).unwrap();
            }
            client.read_tls(&mut &bytes[..]).unwrap();
            client.process_new_packets()?;
        }
        Ok(server.negotiated_cipher_suite().map(|suite| suite.suite()))
    }

    #[test]
    fn a_renewed_certificate_is_served_once_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let configs = load(&in_dir(&dir)).unwrap();
        let old = configs.certificate.current().cert[0].clone();
        let (cert, key) = generated_paths(dir.path());
        generate_self_signed("localhost", &cert, &key).unwrap();
        let new = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let suites = || rustls::crypto::ring::default_provider().cipher_suites;
        assert!(
            handshake(&configs, &old, suites()).is_ok(),
            "until reloaded"
        );
        configs.certificate.reload().unwrap();
        assert!(handshake(&configs, &new, suites()).is_ok());
        assert!(handshake(&configs, &old, suites()).is_err());
        // Broken files leave the certificate in use.
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(configs.certificate.reload().is_err());
        assert!(handshake(&configs, &new, suites()).is_ok());
    }

    #[test]
    fn the_server_picks_the_cheaper_suite_a_client_offers() {
        use rustls::CipherSuite;
        use rustls::crypto::ring::cipher_suite::*;
        let dir = tempfile::tempdir().unwrap();
        let config = in_dir(&dir);
        let configs = load(&config).unwrap();
        // rustls' own client order, as most clients: AES-256 first.
        let default = rustls::crypto::ring::default_provider().cipher_suites;
        assert_eq!(default[0].suite(), CipherSuite::TLS13_AES_256_GCM_SHA384);
        assert_eq!(
            negotiated(&configs, default),
            Some(CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        // A client with only the others still gets one of them.
        for only in [TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_256_GCM_SHA384] {
            assert_eq!(negotiated(&configs, vec![only]), Some(only.suite()));
        }
    }

    /// An internationalised domain starts: its certificate names the ASCII form.
    #[test]
    fn an_internationalised_domain_gets_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = in_dir(&dir);
        config.domain = "bücher.example".into();
        let cert = load(&config).unwrap().cert_path;
        let der = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let ascii = b"xn--bcher-kva.example";
        assert!(der.windows(ascii.len()).any(|w| w == ascii));
    }

    /// A generated certificate for the domain the server served before its domain was changed
    /// is replaced by one for the domain it serves, the old one kept (operators' audit: the
    /// server went on presenting it, and every client refused it).
    #[test]
    fn a_certificate_generated_for_another_domain_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = in_dir(&dir);
        config.domain = "capulet.lit".into();
        let first = load(&config).unwrap();
        let old = std::fs::read(&first.cert_path).unwrap();
        config.domain = "montague.lit".into();
        let second = load(&config).unwrap();
        let cert = &second.certificate.current().cert[0];
        assert!(names(cert, "montague.lit"));
        assert!(names(cert, "pubsub.montague.lit"));
        assert!(!names(cert, "capulet.lit"));
        let kept = first.cert_path.with_extension("pem.old");
        assert_eq!(std::fs::read(kept).unwrap(), old);
        // Served again unchanged.
        let third = load(&config).unwrap();
        assert_eq!(&third.certificate.current().cert[0], cert);
    }

    /// The start-up warnings: a certificate that expired, is not valid yet, or does not name
    /// the domain (the server starts with it all the same: a renewed one is read on SIGHUP).
    #[test]
    fn a_certificate_clients_would_refuse_is_warned_about() {
        let key = rcgen::KeyPair::generate().unwrap();
        let make = |from: (i32, u8, u8), to: (i32, u8, u8)| {
            let mut params = rcgen::CertificateParams::new(vec!["capulet.lit".into()]).unwrap();
            params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
            params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
            params.self_signed(&key).unwrap().der().clone()
        };
        let at = |year: u64| {
            let seconds = (year - 1970) * 365 * 86_400;
            rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds))
        };
        let valid = make((2020, 1, 1), (2030, 1, 1));
        assert_eq!(
            problems(&valid, "capulet.lit", at(2025)),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(&valid, "montague.lit", at(2025)),
            ["the certificate does not name montague.lit"]
        );
        assert_eq!(
            problems(&valid, "capulet.lit", at(2031)),
            ["the certificate expired at 2030-01-01T00:00:00Z"]
        );
        assert_eq!(
            problems(&valid, "capulet.lit", at(2019)),
            ["the certificate is not valid before 2020-01-01T00:00:00Z"]
        );
    }

    #[test]
    fn missing_configured_files_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = in_dir(&dir);
        config.tls.cert = Some(dir.path().join("none.pem"));
        config.tls.key = Some(dir.path().join("none.key"));
        let err = load(&config).err().unwrap().to_string();
        assert!(err.contains("none.pem"), "{err}");
    }
}
