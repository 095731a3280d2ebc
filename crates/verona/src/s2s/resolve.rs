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
        }];
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
            }));
        }
    }
    if found.is_empty() {
        found.push(Target {
            host: domain.to_owned(),
            port: DEFAULT_PORT,
            direct_tls: false,
        });
    }
    found
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
                direct_tls: false
            }]
        );
        let fallback = targets(&config, None, "capulet.lit").await;
        assert_eq!(
            fallback,
            [Target {
                host: "capulet.lit".into(),
                port: 5269,
                direct_tls: false
            }]
        );
    }
}
