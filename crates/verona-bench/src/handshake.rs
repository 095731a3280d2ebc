//! `handshake`: the server's CPU for one full TLS 1.3 handshake with Verona's own TLS
//! configuration (a certificate generated as the server generates one, its suites and their
//! order), in memory: no sockets, so what is timed is the server side of rustls and ring alone.
//! Clients offer the suites in rustls' order (AES-256 first, as most clients do), or one suite
//! only. Each row is the fastest of several rounds, which is what the code costs when the
//! machine is not busy with something else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// One kind of client.
pub struct Row {
    pub client: &'static str,
    /// The suite the server chose.
    pub suite: String,
    /// Server CPU per handshake, microseconds (the fastest round).
    pub server_us: f64,
}

/// `rounds` rounds of `handshakes` handshakes for each kind of client, interleaved.
pub fn measure(rounds: usize, handshakes: usize) -> anyhow::Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("verona-bench-handshake-{}", std::process::id()));
    let config = verona::Config {
        data_dir: dir.clone(),
        ..verona::Config::default()
    };
    let loaded = verona::tls::load(&config);
    std::fs::remove_dir_all(&dir).ok();
    let tls = loaded.context("the server's TLS configuration")?;
    let mut roots = RootCertStore::empty();
    roots.add(tls.certificate.current().cert[0].clone())?;
    let clients: [(&'static str, Option<rustls::SupportedCipherSuite>); 4] = [
        ("rustls' order (AES-256 first)", None),
        (
            "AES-128-GCM only",
            Some(cipher_suite::TLS13_AES_128_GCM_SHA256),
        ),
        (
            "ChaCha20 only",
            Some(cipher_suite::TLS13_CHACHA20_POLY1305_SHA256),
        ),
        (
            "AES-256-GCM only",
            Some(cipher_suite::TLS13_AES_256_GCM_SHA384),
        ),
    ];
    let mut rows: Vec<Row> = Vec::new();
    for _ in 0..rounds {
        for (at, (client, only)) in clients.iter().enumerate() {
            let mut provider = default_provider();
            if let Some(only) = only {
                provider.cipher_suites = vec![*only];
            }
            let config = ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            let (spent, suite) = handshakes_with(&Arc::new(config), &tls.starttls, handshakes)?;
            let server_us = spent.as_secs_f64() * 1e6 / handshakes as f64;
            match rows.get_mut(at) {
                Some(row) => row.server_us = row.server_us.min(server_us),
                None => rows.push(Row {
                    client,
                    suite,
                    server_us,
                }),
            }
        }
    }
    Ok(rows)
}

/// The server's time over `count` handshakes, and the suite of the last.
fn handshakes_with(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    count: usize,
) -> anyhow::Result<(Duration, String)> {
    let mut spent = Duration::ZERO;
    let mut suite = String::new();
    let mut bytes = Vec::new();
    for _ in 0..count {
        let name = ServerName::try_from("localhost")?;
        let mut c = ClientConnection::new(client.clone(), name)?;
        let mut s = ServerConnection::new(server.clone())?;
        while c.is_handshaking() || s.is_handshaking() {
            bytes.clear();
            while c.wants_write() {
                c.write_tls(&mut bytes)?;
            }
            let started = Instant::now();
            s.read_tls(&mut &bytes[..])?;
            s.process_new_packets()?;
            bytes.clear();
            while s.wants_write() {
                s.write_tls(&mut bytes)?;
            }
            spent += started.elapsed();
            c.read_tls(&mut &bytes[..])?;
            c.process_new_packets()?;
        }
        suite = s
            .negotiated_cipher_suite()
            .map_or_else(|| "none".to_owned(), |s| format!("{:?}", s.suite()));
    }
    Ok((spent, suite))
}

/// A markdown table of the rows.
pub fn table(rows: &[Row], rounds: usize, handshakes: usize) -> String {
    let mut out = String::from(
        "| client offers | suite chosen | server CPU per handshake |\n|---|---|---:|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {:.1} µs |\n",
            row.client, row.suite, row.server_us
        ));
    }
    out.push_str(&format!(
        "\nIn memory, TLS 1.3, the server's own configuration; fastest of {rounds} rounds of \
         {handshakes} handshakes.\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_the_suite_the_server_prefers_among_those_it_offers() {
        let rows = measure(1, 2).unwrap();
        let suites: Vec<&str> = rows.iter().map(|row| row.suite.as_str()).collect();
        assert_eq!(
            suites,
            [
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS13_AES_256_GCM_SHA384",
            ]
        );
        assert!(rows.iter().all(|row| row.server_us > 0.0));
        assert!(table(&rows, 1, 2).contains("| rustls' order (AES-256 first) |"));
    }
}
