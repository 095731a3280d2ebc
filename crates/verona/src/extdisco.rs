//! XEP-0215 External Service Discovery: the STUN and TURN servers clients use for audio and
//! video calls (Conversations, Dino, Movim), with TURN credentials that expire, made as the
//! TURN REST API of coturn's `use-auth-secret` (and Prosody's `mod_turn_external`) expects:
//! the username is the expiry time in seconds since 1970, the password the base64 of its
//! HMAC-SHA1 under the secret the two servers share.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use minidom::Element;
use sha1::Sha1;

use crate::config::TurnConfig;
use crate::xml::{BuilderExt, StanzaError, builder};

pub const NS: &str = "urn:xmpp:extdisco:2";

/// One service as a client is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    kind: &'static str,
    transport: &'static str,
    /// Username, password and expiry, for TURN.
    credentials: Option<(String, String, SystemTime)>,
}

/// The services `config` offers at `now`: STUN and TURN over UDP, and over TCP where asked
/// for. None when no host is configured.
fn services(config: &TurnConfig, now: SystemTime) -> Vec<Service> {
    if config.host.is_empty() {
        return Vec::new();
    }
    // `ttl_secs` is at most a year (checked at start); a clock past the year 292 billion
    // gets credentials that expire at once rather than a panic.
    let expires = now
        .checked_add(Duration::from_secs(config.ttl_secs))
        .unwrap_or(now);
    let transports: &[&'static str] = match config.tcp {
        true => &["udp", "tcp"],
        false => &["udp"],
    };
    let mut services = Vec::new();
    for &transport in transports {
        services.push(Service {
            kind: "stun",
            transport,
            credentials: None,
        });
        services.push(Service {
            kind: "turn",
            transport,
            credentials: Some(credentials(&config.secret, expires)),
        });
    }
    services
}

/// The TURN REST API's credentials valid until `expires`.
fn credentials(secret: &str, expires: SystemTime) -> (String, String, SystemTime) {
    let seconds = expires
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let username = seconds.to_string();
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(username.as_bytes());
    let password = BASE64.encode(mac.finalize().into_bytes());
    (username, password, expires)
}

fn service_element(config: &TurnConfig, service: &Service) -> Element {
    let mut element = builder("service", NS)
        .with("host", config.host.as_str())
        .with("port", config.port.to_string())
        .with("type", service.kind)
        .with("transport", service.transport);
    if let Some((username, password, expires)) = &service.credentials {
        element = element
            .with("username", username.as_str())
            .with("password", password.as_str())
            .with("expires", verona_pubsub_xmpp::stamp(*expires))
            .with("restricted", "1");
    }
    element.build()
}

/// The answer to a `<services/>` (§3.1, optionally of one `type`) or `<credentials/>` (§3.3)
/// request: the payload of the result, or the error.
pub fn answer(
    config: &TurnConfig,
    request: &Element,
    now: SystemTime,
) -> Result<Element, StanzaError> {
    let offered = services(config, now);
    if offered.is_empty() {
        return Err(StanzaError::ServiceUnavailable);
    }
    match request.name() {
        "services" => {
            let kind = request.attr("type");
            let listed = offered
                .iter()
                .filter(|s| kind.is_none_or(|kind| kind == s.kind))
                .map(|s| service_element(config, s));
            Ok(builder("services", NS).append_all(listed).build())
        }
        "credentials" => {
            // §3.3: the services asked for, each by host and type (and port, if given); their
            // credentials anew. None that match: an empty list, as Prosody answers.
            let mut asked = Vec::new();
            for service in request.children().filter(|c| c.is("service", NS)) {
                let (Some(host), Some(kind)) = (service.attr("host"), service.attr("type")) else {
                    return Err(StanzaError::BadRequest);
                };
                asked.push((host, kind, service.attr("port")));
            }
            if asked.is_empty() {
                return Err(StanzaError::BadRequest);
            }
            let port = config.port.to_string();
            let given = offered
                .iter()
                .filter(|s| s.credentials.is_some())
                .filter(|s| {
                    asked.iter().any(|(host, kind, asked_port)| {
                        *host == config.host
                            && *kind == s.kind
                            && asked_port.is_none_or(|p| p == port)
                    })
                })
                .map(|s| service_element(config, s));
            Ok(builder("credentials", NS).append_all(given).build())
        }
        _ => Err(StanzaError::BadRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tcp: bool) -> TurnConfig {
        TurnConfig {
            host: "turn.capulet.lit".into(),
            port: 3478,
            secret: "north wind".into(),
            ttl_secs: 86_400,
            tcp,
        }
    }

    /// The password is what coturn computes for the username (the vector made with Python's
    /// `hmac` and `hashlib`, not with this code).
    #[test]
    fn credentials_are_the_turn_rest_apis() {
        let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_640_000);
        let (username, password, _) = credentials("north wind", expires);
        assert_eq!(username, "1796640000");
        assert_eq!(password, "rOA9KX5f6NyZC7nCm3R2940sPCI=");
    }

    #[test]
    fn services_by_type_and_credentials_by_host() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_553_600);
        let all: Element = "<services xmlns='urn:xmpp:extdisco:2'/>".parse().unwrap();
        let kinds = |answer: Element| -> Vec<(String, String, bool)> {
            answer
                .children()
                .map(|s| {
                    (
                        s.attr("type").unwrap().to_owned(),
                        s.attr("transport").unwrap().to_owned(),
                        s.attr("username") == Some("1796640000"),
                    )
                })
                .collect()
        };
        let owned = |rows: &[(&str, &str, bool)]| -> Vec<(String, String, bool)> {
            rows.iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
                .collect()
        };
        assert_eq!(
            kinds(answer(&config(true), &all, now).unwrap()),
            owned(&[
                ("stun", "udp", false),
                ("turn", "udp", true),
                ("stun", "tcp", false),
                ("turn", "tcp", true)
            ])
        );
        let turn: Element = "<services xmlns='urn:xmpp:extdisco:2' type='turn'/>"
            .parse()
            .unwrap();
        assert_eq!(
            kinds(answer(&config(false), &turn, now).unwrap()),
            owned(&[("turn", "udp", true)])
        );
        let asked: Element = "<credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.capulet.lit' type='turn'/></credentials>"
            .parse()
            .unwrap();
        assert_eq!(
            kinds(answer(&config(false), &asked, now).unwrap()),
            owned(&[("turn", "udp", true)])
        );
        for elsewhere in [
            "<service host='turn.montague.lit' type='turn'/>",
            "<service host='turn.capulet.lit' type='turn' port='9999'/>",
            "<service host='turn.capulet.lit' type='stun'/>",
        ] {
            let asked: Element =
                format!("<credentials xmlns='urn:xmpp:extdisco:2'>{elsewhere}</credentials>")
                    .parse()
                    .unwrap();
            let given = answer(&config(false), &asked, now).unwrap();
            assert_eq!(given.children().count(), 0, "{elsewhere}");
        }
        for incomplete in [
            "<service host='turn.capulet.lit'/>",
            "<service type='turn'/>",
        ] {
            let asked: Element =
                format!("<credentials xmlns='urn:xmpp:extdisco:2'>{incomplete}</credentials>")
                    .parse()
                    .unwrap();
            let refused = answer(&config(false), &asked, now);
            assert_eq!(refused, Err(StanzaError::BadRequest), "{incomplete}");
        }
        let far = TurnConfig {
            ttl_secs: u64::MAX,
            ..config(false)
        };
        assert!(answer(&far, &all, now).is_ok(), "no overflow");
        let none = TurnConfig::default();
        assert_eq!(
            answer(&none, &all, now),
            Err(StanzaError::ServiceUnavailable)
        );
    }
}
