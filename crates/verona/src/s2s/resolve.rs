//! Where a remote domain's server listens (RFC 6120 §3.2): a fixed `[s2s.hosts]` entry, else
//! DNS SRV — XEP-0368 `_xmpps-server._tcp` (TLS from the first byte) before
//! `_xmpp-server._tcp` — else the domain itself on port 5269.

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use crate::config::S2sConfig;

/// The port servers listen on when DNS says nothing (RFC 6120 §3.2.1).
const DEFAULT_PORT: u16 = 5269;

/// One place to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
    /// Only at a public address (found through DNS, unless `allow_private_addresses`); a
    /// `[s2s.hosts]` entry is the operator's word.
    pub public_only: bool,
}

/// Whether an address is one a server on the Internet may have: not loopback, private,
/// link-local, shared (CGNAT), documentation, multicast, broadcast or unspecified.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
                    || first == 0x2001 && v6.segments()[1] == 0x0db8)
            }
        },
    }
}

/// Whether `domain` may be looked up as another server's at all: not an address, and not
/// `localhost` or a name under it.
fn is_server_name(domain: &str) -> bool {
    let literal = domain.parse::<std::net::IpAddr>().is_ok()
        || domain.starts_with('[')
        || domain.ends_with(']');
    let local = domain.eq_ignore_ascii_case("localhost")
        || domain.to_ascii_lowercase().ends_with(".localhost");
    !literal && !local
}

/// `"host:port"` or `"[v6]:port"`.
pub fn parse_target(value: &str) -> Option<(String, u16)> {
    let (host, port) = value.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty() && !host.contains(':') || value.starts_with('['))
        .then(|| (host.to_owned(), port))
}

/// The places to try for `domain`, in order.
pub async fn targets(
    config: &S2sConfig,
    resolver: Option<&TokioResolver>,
    domain: &str,
) -> Vec<Target> {
    if let Some((host, port)) = config.hosts.get(domain).and_then(|t| parse_target(t)) {
        return vec![Target {
            host,
            port,
            direct_tls: false,
            public_only: false,
        }];
    }
    let public_only = !config.allow_private_addresses;
    if public_only && !is_server_name(domain) {
        return Vec::new();
    }
    let mut found = Vec::new();
    if let Some(resolver) = resolver {
        for (service, direct_tls) in [("_xmpps-server._tcp", true), ("_xmpp-server._tcp", false)] {
            let name = format!("{service}.{domain}.");
            let Ok(lookup) = resolver.srv_lookup(name.as_str()).await else {
                continue;
            };
            let mut records: Vec<(u16, u16, String, u16)> = lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some((
                        srv.priority,
                        srv.weight,
                        srv.target.to_utf8().trim_end_matches('.').to_owned(),
                        srv.port,
                    )),
                    _ => None,
                })
                .collect();
            // RFC 2782: a lone "." target means the service is decidedly not offered.
            if records.len() == 1 && records[0].2.is_empty() {
                continue;
            }
            // Lowest priority first; within a priority, the heaviest first (a stable stand-in
            // for RFC 2782's weighted random choice, which only spreads load).
            records.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            found.extend(records.into_iter().map(|(_, _, host, port)| Target {
                host,
                port,
                direct_tls,
                public_only,
            }));
        }
    }
    if found.is_empty() {
        found.push(Target {
            host: domain.to_owned(),
            port: DEFAULT_PORT,
            direct_tls: false,
            public_only,
        });
    }
    found
}

/// The addresses to connect to for `target`: all it resolves to, or only the public ones.
pub async fn addresses(target: &Target) -> std::io::Result<Vec<std::net::SocketAddr>> {
    let found = tokio::net::lookup_host((target.host.as_str(), target.port)).await?;
    let kept: Vec<_> = found
        .filter(|address| !target.public_only || is_public(address.ip()))
        .collect();
    if kept.is_empty() {
        let why = "no public address (see [s2s] allow_private_addresses)";
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            why,
        ));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_targets_parse() {
        let cases = [
            ("127.0.0.2:5269", Some(("127.0.0.2", 5269))),
            ("xmpp.montague.lit:5270", Some(("xmpp.montague.lit", 5270))),
            ("[::1]:5269", Some(("::1", 5269))),
            ("montague.lit", None),
            ("montague.lit:port", None),
            (":5269", None),
            ("::1:5269", None),
        ];
        for (value, expected) in cases {
            let expected = expected.map(|(h, p)| (h.to_owned(), p));
            assert_eq!(parse_target(value), expected, "{value}");
        }
    }

    #[tokio::test]
    async fn a_fixed_host_wins_and_no_dns_means_port_5269() {
        let mut config = S2sConfig::default();
        config
            .hosts
            .insert("montague.lit".into(), "127.0.0.2:5270".into());
        let fixed = targets(&config, None, "montague.lit").await;
        assert_eq!(
            fixed,
            [Target {
                host: "127.0.0.2".into(),
                port: 5270,
                direct_tls: false,
                public_only: false,
            }]
        );
        let fallback = targets(&config, None, "capulet.lit").await;
        assert_eq!(
            fallback,
            [Target {
                host: "capulet.lit".into(),
                port: 5269,
                direct_tls: false,
                public_only: true,
            }]
        );
        for literal in ["127.0.0.1", "[::1]", "::1", "localhost", "x.LOCALHOST"] {
            assert_eq!(targets(&config, None, literal).await, [], "{literal}");
        }
        config.allow_private_addresses = true;
        assert_eq!(targets(&config, None, "127.0.0.1").await.len(), 1);
    }

    #[test]
    fn only_public_addresses_are_public() {
        let cases = [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.1.1", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
            ("192.0.2.1", false),
            ("::1", false),
            ("::", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("2001:db8::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:192.168.0.1", false),
            ("93.184.216.34", true),
            ("100.128.0.1", true),
            ("2a00:1450:4001:80b::200e", true),
            ("::ffff:93.184.216.34", true),
        ];
        for (ip, public) in cases {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }
}
