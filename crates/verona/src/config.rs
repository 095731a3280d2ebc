//! The TOML configuration file. Every key is documented in `docs/configuration.md`; unknown keys
//! are an error that names the key (`deny_unknown_fields`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The XMPP domain this server hosts.
    pub domain: String,
    /// Where the SQLite database and the generated certificate live.
    pub data_dir: PathBuf,
    pub c2s: C2sConfig,
    pub s2s: S2sConfig,
    pub components: ComponentsConfig,
    pub tls: TlsConfig,
    pub registration: RegistrationConfig,
    /// XEP-0157: whom to contact about the server.
    pub contact_info: ContactInfoConfig,
    /// XEP-0215: the STUN/TURN server clients use for calls.
    pub turn: TurnConfig,
    pub compression: CompressionConfig,
    pub pubsub: PubsubConfig,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub log: LogConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sConfig {
    /// Listeners that start in plain text and offer STARTTLS (RFC 6120).
    pub listen: Vec<SocketAddr>,
    /// Listeners that speak TLS from the first byte (XEP-0368, ALPN `xmpp-client`).
    pub direct_tls_listen: Vec<SocketAddr>,
    /// Listeners for XMPP over WebSocket (RFC 7395) on plain HTTP: `ws://`, for a reverse
    /// proxy that terminates TLS, or for loopback.
    pub websocket_listen: Vec<SocketAddr>,
    /// Listeners for XMPP over WebSocket on HTTPS, with the server's certificate: `wss://`.
    pub websocket_tls_listen: Vec<SocketAddr>,
    /// The HTTP path WebSocket clients connect to; others get 404.
    pub websocket_path: String,
    /// Treat WebSocket connections on `websocket_listen` as encrypted (as Prosody's option of
    /// the same name), because a proxy in front terminated TLS: PLAIN is offered and
    /// `require_encryption` is satisfied.
    pub consider_websocket_secure: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the client of a connection on
    /// `websocket_listen` (as Prosody's `trusted_proxies`): its per-address limits are that
    /// client's, not the proxy's, which every web user would otherwise share.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Refuse authentication and stanzas until the stream is encrypted.
    pub require_encryption: bool,
    /// Offer PLAIN on unencrypted streams (only meaningful with `require_encryption = false`).
    pub allow_insecure_auth: bool,
    /// Send a whitespace keepalive after this many idle seconds (0 disables).
    pub keepalive_secs: u64,
    /// A write to a client that takes longer than this ends the connection (a peer that stops
    /// reading must not hold its task, its queue and its session forever).
    pub write_timeout_secs: u64,
    /// The kernel's send buffer for each client connection (`SO_SNDBUF`; Linux doubles it),
    /// 0: the system's own, which grows to 4 MiB. What a client has not read fills it; once
    /// full, the server stops reading that client's requests, so a client that asks more than
    /// it reads gets its answers at its own pace instead of having them made in advance.
    pub send_buffer_bytes: usize,
    /// How long a session with XEP-0198 resumption enabled waits, once its connection is
    /// lost, for the client to resume it (0: no resumption).
    pub resume_timeout_secs: u64,
}

/// Federation: server-to-server streams (RFC 6120, XEP-0220 dialback).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Listeners for other servers (STARTTLS, usually port 5269). Empty: no federation,
    /// neither incoming nor outgoing.
    pub listen: Vec<SocketAddr>,
    /// Only talk to servers whose certificate is valid for their domain (against the system's
    /// roots, or `ca_file`); off, dialback alone authenticates a server whose certificate
    /// does not verify (as Prosody's `s2s_secure_auth = false`).
    pub require_valid_cert: bool,
    /// PEM roots to verify other servers' certificates with, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Remote domains reached at a fixed `"host:port"` instead of through DNS, e.g.
    /// `"montague.lit" = "127.0.0.2:5269"`.
    pub hosts: std::collections::BTreeMap<String, String>,
    /// Connect to servers found through DNS at loopback, private, link-local or other
    /// non-public addresses (for a federation inside one network). Off, a domain that
    /// resolves only to such addresses, an address as a domain, or `localhost` is not
    /// reached: users and strangers cannot make the server connect inside its own network.
    /// `hosts` entries are always used as written.
    pub allow_private_addresses: bool,
    /// Stanzas queued for one remote domain while its connection is being set up; more are
    /// bounced with `resource-constraint`.
    pub max_queue: usize,
    /// Bytes queued for one remote domain (one pair of a local and a remote domain) at most,
    /// counted as they will be sent; more are bounced with `resource-constraint`.
    pub max_queue_bytes: usize,
    /// Bytes queued for all other servers together at most; more are bounced likewise.
    pub max_total_queue_bytes: usize,
    /// An outgoing connection with no traffic for this long is closed.
    pub idle_timeout_secs: u64,
    /// Seconds to connect, negotiate TLS and authenticate before giving up.
    pub connect_timeout_secs: u64,
    /// Connections from other servers at once, at most.
    pub max_incoming: usize,
    /// Bytes one incoming server stream may send per second, sustained (0: unlimited); past
    /// the burst, reading it pauses.
    pub read_bytes_per_sec: u64,
    pub read_burst_bytes: u64,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            listen: Vec::new(),
            require_valid_cert: false,
            ca_file: None,
            hosts: Default::default(),
            allow_private_addresses: false,
            max_queue: 1000,
            max_queue_bytes: 8 << 20,
            max_total_queue_bytes: 64 << 20,
            idle_timeout_secs: 600,
            connect_timeout_secs: 30,
            max_incoming: 1000,
            read_bytes_per_sec: 1 << 20,
            read_burst_bytes: 8 << 20,
        }
    }
}

/// XEP-0114 external components: programs that connect to the server and take a domain.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentsConfig {
    /// Listeners for components, usually `["127.0.0.1:5347"]` (the protocol has no TLS: keep
    /// it on loopback or a private network). Empty: no components.
    pub listen: Vec<SocketAddr>,
    /// Each component's domain and its shared secret, e.g. `"gateway.capulet.lit" = "s3cr3t"`.
    pub secrets: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key`. When both are absent a self-signed certificate is
    /// generated once into `data_dir/tls/` and reused.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Allow XEP-0077 in-band registration of new accounts.
    pub allow: bool,
    /// Accounts one address (IPv6: one /64) may register per hour.
    pub per_address_per_hour: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            allow: false,
            per_address_per_hour: 5,
        }
    }
}

/// XEP-0157 contact addresses (URIs: `mailto:`, `xmpp:`, `https:`), shown in the server's
/// disco#info to anyone who asks, as Prosody's `contact_info`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactInfoConfig {
    pub abuse: Vec<String>,
    pub admin: Vec<String>,
    pub feedback: Vec<String>,
    pub sales: Vec<String>,
    pub security: Vec<String>,
    pub status: Vec<String>,
    pub support: Vec<String>,
}

impl ContactInfoConfig {
    /// Each kind of address with its XEP-0157 field name.
    pub fn fields(&self) -> [(&'static str, &[String]); 7] {
        [
            ("abuse-addresses", &self.abuse),
            ("admin-addresses", &self.admin),
            ("feedback-addresses", &self.feedback),
            ("sales-addresses", &self.sales),
            ("security-addresses", &self.security),
            ("status-addresses", &self.status),
            ("support-addresses", &self.support),
        ]
    }
}

/// XEP-0215: a STUN/TURN server that hands out time-limited credentials as the TURN REST
/// API says (coturn with `use-auth-secret` and `static-auth-secret`), offered to clients for
/// audio and video calls, as Prosody's `mod_turn_external`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Its host name; empty: none offered.
    pub host: String,
    pub port: u16,
    /// The secret it shares with this server.
    pub secret: String,
    /// How long the credentials given to a client last.
    pub ttl_secs: u64,
    /// Offer TURN over TCP too (for networks that block UDP).
    pub tcp: bool,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            host: String::new(),
            port: 3478,
            secret: String::new(),
            ttl_secs: 86_400,
            tcp: false,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Offer XEP-0138 zlib stream compression to authenticated clients (see the docs for why
    /// it is off by default).
    pub enabled: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PubsubConfig {
    /// Access model of nodes created without one (XEP-0207 §8: `authorize`).
    pub default_access_model: String,
    pub max_nodes_per_owner: usize,
    pub max_items_per_node: usize,
    pub max_payload_bytes: usize,
    /// Subscriptions one account may hold over all services together.
    pub max_subscriptions_per_jid: usize,
    pub max_affiliations_per_node: usize,
    /// Subscription requests waiting for approval on one node (an account's presence among
    /// them): other servers' JIDs cost nothing to make up.
    pub max_pending_per_node: usize,
    /// Nodes of one account's PEP service. Each blocked JID is an outcast on every one of them
    /// (XEP-0191 as pubsub), so this times `[limits] max_blocklist` bounds an account's
    /// affiliations.
    pub max_pep_nodes: usize,
    /// Payload bytes one account's PEP nodes hold together, its presence aside.
    pub max_pep_bytes: usize,
    /// Payload bytes the nodes one account owns on `pubsub.<domain>` hold together.
    pub max_owner_bytes: usize,
    /// Whether node owners may subscribe any entity to their nodes (XEP-0060 §8.8.2); off,
    /// they subscribe only themselves and those they affiliated with the node.
    pub owners_subscribe_others: bool,
    /// Shard tasks the services are spread over (each with its own queue and group commit);
    /// 0: one per core.
    pub shards: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// PBKDF2 iterations for newly stored SCRAM credentials (at least 4096).
    pub scram_iterations: u32,
    /// Failed attempts allowed on one connection before it is closed.
    pub max_failures_per_connection: u32,
    /// Failures from one address, or on one account, within `failure_window_secs` before
    /// attempts are slowed down.
    pub failures_before_delay: u32,
    pub failure_window_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest stanza accepted, in bytes (also bounds a stanza still being received).
    pub max_stanza_bytes: usize,
    /// Largest stanza accepted before authentication (SASL, registration, STARTTLS are
    /// small): a stranger cannot make the server buffer large stanzas.
    pub max_unauthenticated_stanza_bytes: usize,
    /// Deepest element nesting inside the stream.
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Seconds a connection may take to authenticate before it is closed.
    pub unauthenticated_timeout_secs: u64,
    /// Connections from one address (IPv6: one /64) that have not authenticated yet, at most;
    /// more are closed as they arrive.
    pub unauthenticated_per_address: usize,
    /// Connections from one address (IPv6: one /64) at most, authenticated or not.
    pub connections_per_address: usize,
    /// Incoming connections from other servers and components, together, from one address
    /// (IPv6: one /64) at most; more are closed as they arrive.
    pub server_connections_per_address: usize,
    /// Dialback keys (XEP-0220) checked per minute for other servers' streams from one
    /// address (IPv6: one /64), as many at once (0: no limit): each check connects to the
    /// domain the key claims. Past it, the stream asking ends with `policy-violation`.
    pub server_verifications_per_minute: u32,
    /// New connections one address (IPv6: one /64) may open per minute once it has opened
    /// `new_connections_burst` (0: no limit); more are closed as they arrive.
    pub new_connections_per_minute: u32,
    pub new_connections_burst: u32,
    /// Bytes a client may send per second, sustained (0: unlimited); past the burst, reading
    /// its stream pauses.
    pub read_bytes_per_sec: u64,
    pub read_burst_bytes: u64,
    /// Bytes all of one account's sessions together may send per second once bound, sustained
    /// (0: unlimited), and at once: one account's twenty sessions are not twenty floods.
    pub account_read_bytes_per_sec: u64,
    pub account_read_burst_bytes: u64,
    /// Stanzas queued for one session before it is considered stuck and disconnected.
    pub outbound_queue: usize,
    /// Bytes queued for one session at most (one stanza always fits an empty queue).
    pub outbound_queue_bytes: usize,
    /// Sessions one account may have bound at once.
    pub max_sessions_per_account: usize,
    /// JIDs one account may block (XEP-0191); each is an outcast on every node it owns.
    pub max_blocklist: usize,
    /// Rooms one session may be in (or be asking to enter), counted on each pubsub shard
    /// (rooms are spread over the shards): an occupied room stays in memory, so this bounds
    /// what one session pins.
    pub max_rooms_per_session: usize,
    /// Bytes of messages one room's history (and so its archive, and what a resident room
    /// holds) keeps at most, besides its `muc#roomconfig_historylength`: past it the oldest
    /// messages go, so a message always fits (the newest stays, however large) and nobody
    /// closes a room by filling it.
    pub room_history_bytes: usize,
    /// Bytes of messages one one-to-one conversation's archive keeps at most, besides its
    /// 10,000 messages: past it the oldest go (the newest stays, however large). Each message
    /// may be a whole stanza, so the count alone let one conversation take gigabytes.
    pub conversation_archive_bytes: usize,
    /// Messages kept for one account while it is offline (XEP-0160); beyond it, messages
    /// stay in the conversation's archive only.
    pub max_offline_messages: usize,
    /// Bytes of stanzas kept for one account while it is offline, besides the count: each
    /// kept message may be a whole stanza.
    pub max_offline_bytes: usize,
    /// The share (in percent) of an account's offline queue, in messages and in bytes, that
    /// one origin (a sender, or the publisher of a node's notifications) may take, so that a
    /// flood from one leaves room for the others' messages.
    pub offline_share_percent: usize,
    /// PEP services kept in memory while no session of their account is bound (the least
    /// recently used beyond it are dropped, and reloaded from storage when needed).
    pub resident_services: usize,
    /// Bytes of requests one pubsub shard's queue holds at most.
    pub pubsub_queue_bytes: usize,
    /// Bytes of requests one account (all its sessions together) may have queued or in
    /// progress in the pubsub shards; an account past it waits (only its own streams stop
    /// being read).
    pub pubsub_account_bytes: usize,
    /// Requests one account may have queued or in progress in the pubsub shards, however
    /// small: what bounds the work one user can put ahead of everyone else's.
    pub pubsub_account_requests: usize,
    /// Messages one account may have kept (archived, XEP-0313) per minute once it has sent
    /// `kept_messages_burst` (0: no limit); more are refused with `resource-constraint`.
    pub kept_messages_per_minute: u32,
    pub kept_messages_burst: u32,
    /// Presence one account may broadcast (to its contacts, or to the rooms it is in) per
    /// minute once it has sent `presence_burst` (0: no limit); more is refused with
    /// `resource-constraint`, so that nobody's changes flood those who follow them.
    pub presence_per_minute: u32,
    pub presence_burst: u32,
    /// Bytes one account may have the server broadcast in its name per second, over all its
    /// sessions, once it has sent `broadcast_burst_bytes` (0: no limit): its messages to rooms
    /// and the items it publishes, counted once however many receive them. More is refused
    /// with `resource-constraint`, so that one sender cannot outpace a slow reader's queue.
    pub broadcast_bytes_per_sec: u64,
    pub broadcast_burst_bytes: u64,
    /// One-to-one conversations the users of one other server may start with accounts here
    /// per minute, once they have started ten times as many at once (0: no limit); one more
    /// is refused with `resource-constraint`. Such conversations do not count against a local
    /// account's `[pubsub] max_subscriptions_per_jid`, since the other server can invent as
    /// many senders as it likes.
    pub remote_conversations_per_minute: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `verona=debug`; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "localhost".into(),
            data_dir: PathBuf::from("verona-data"),
            c2s: C2sConfig::default(),
            s2s: S2sConfig::default(),
            components: ComponentsConfig::default(),
            tls: TlsConfig::default(),
            registration: RegistrationConfig::default(),
            contact_info: ContactInfoConfig::default(),
            turn: TurnConfig::default(),
            compression: CompressionConfig::default(),
            pubsub: PubsubConfig::default(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 5222))],
            direct_tls_listen: vec![SocketAddr::from(([0, 0, 0, 0], 5223))],
            websocket_listen: Vec::new(),
            // Prosody's HTTPS port.
            websocket_tls_listen: vec![SocketAddr::from(([0, 0, 0, 0], 5281))],
            websocket_path: "/xmpp-websocket".into(),
            consider_websocket_secure: false,
            // Prosody's default: a proxy on the same machine.
            trusted_proxies: vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
            require_encryption: true,
            allow_insecure_auth: false,
            keepalive_secs: 60,
            write_timeout_secs: 30,
            send_buffer_bytes: 128 * 1024,
            resume_timeout_secs: 300,
        }
    }
}

impl Default for PubsubConfig {
    fn default() -> Self {
        let limits = verona_pubsub::Limits::default();
        PubsubConfig {
            default_access_model: "authorize".into(),
            owners_subscribe_others: false,
            max_nodes_per_owner: limits.max_nodes_per_owner,
            max_items_per_node: limits.max_items_per_node,
            max_payload_bytes: limits.max_payload_bytes,
            max_subscriptions_per_jid: limits.max_subscriptions_per_jid,
            max_affiliations_per_node: limits.max_affiliations_per_node,
            max_pending_per_node: limits.max_pending_per_node,
            max_pep_nodes: 100,
            max_pep_bytes: 16 << 20,
            max_owner_bytes: 64 << 20,
            shards: 0,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            scram_iterations: verona_auth::DEFAULT_ITERATIONS,
            max_failures_per_connection: 3,
            failures_before_delay: 5,
            failure_window_secs: 600,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_unauthenticated_stanza_bytes: 16 * 1024,
            max_depth: 32,
            max_attributes: 64,
            unauthenticated_timeout_secs: 30,
            unauthenticated_per_address: 32,
            connections_per_address: 256,
            server_connections_per_address: 32,
            server_verifications_per_minute: 60,
            new_connections_per_minute: 60,
            new_connections_burst: 300,
            read_bytes_per_sec: 128 * 1024,
            read_burst_bytes: 1 << 20,
            account_read_bytes_per_sec: 256 * 1024,
            account_read_burst_bytes: 2 << 20,
            outbound_queue: 1024,
            outbound_queue_bytes: 8 << 20,
            max_sessions_per_account: 20,
            max_blocklist: 1000,
            max_rooms_per_session: 200,
            room_history_bytes: 1 << 20,
            conversation_archive_bytes: 10 << 20,
            max_offline_messages: 1000,
            max_offline_bytes: 2 << 20,
            offline_share_percent: 25,
            resident_services: 2_000,
            pubsub_queue_bytes: 64 << 20,
            pubsub_account_bytes: 1 << 20,
            pubsub_account_requests: 64,
            kept_messages_per_minute: 600,
            kept_messages_burst: 300,
            presence_per_minute: 120,
            presence_burst: 300,
            broadcast_bytes_per_sec: 8 * 1024,
            broadcast_burst_bytes: 1 << 20,
            remote_conversations_per_minute: 60,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The longest `[turn] ttl_secs`: credentials are meant to expire.
const MAX_TURN_TTL_SECS: u64 = 365 * 24 * 3600;

/// The most shards `[pubsub] shards` may ask for: each is a thread with a runtime of its own.
const MAX_SHARDS: usize = 256;

/// The smallest `[pubsub] max_payload_bytes`: a chat message, stored whole as an item, with
/// what clients add to it (receipts, markers, a few hundred characters of text).
const MIN_PAYLOAD_BYTES: usize = 4096;

/// PEP nodes the server makes for every account: `presence` and `roster`.
const SERVER_PEP_NODES: usize = 2;

/// How many times `[limits] remote_conversations_per_minute` one other server's users may
/// start at once.
pub const REMOTE_CONVERSATIONS_BURST: u32 = 10;

/// `[components.secrets]` keyed by each domain written as JIDs compare it (RFC 7622: case, a
/// final dot), as stanzas name it and the router looks it up: `Gw.Capulet.lit` is
/// gw.capulet.lit, and `chat.capulet.lit.` is the server's own chat service, which `validate`
/// then refuses. A key that is no domain is kept as written for `validate` to refuse; two keys
/// for one domain are refused here.
fn by_domain(
    secrets: std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let mut normalized = std::collections::BTreeMap::new();
    for (domain, secret) in secrets {
        let key = crate::jids::parse_bare(&domain)
            .map_or_else(|_| domain.clone(), jid::BareJid::into_inner);
        if normalized.insert(key, secret).is_some() {
            return Err(ConfigError::Invalid(format!(
                "[components.secrets] {domain:?}: another key names the same domain"
            )));
        }
    }
    Ok(normalized)
}

impl Config {
    /// The file's settings over the defaults; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::parse(&text).map_err(|e| match e {
                    ConfigError::Parse { source, .. } => ConfigError::Parse {
                        path: path.to_owned(),
                        source,
                    },
                    other => other,
                })?
            }
        };
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            source: Box::new(e),
        })?;
        config.components.secrets = by_domain(std::mem::take(&mut config.components.secrets))?;
        config.validate()?;
        // Peers are compared as the IPv4 addresses they are, also when a `[::]` listener
        // heard them mapped into IPv6: so are the proxies named.
        for proxy in &mut config.c2s.trusted_proxies {
            *proxy = proxy.to_canonical();
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let domain = jid::BareJid::new(&self.domain)
            .map_err(|e| ConfigError::Invalid(format!("domain {:?}: {e}", self.domain)))?;
        if domain.node().is_some() {
            return Err(ConfigError::Invalid(format!(
                "domain {:?} must be a bare domain, without '@'",
                self.domain
            )));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "[tls] cert and key must be given together".into(),
            ));
        }
        if self.auth.scram_iterations < verona_auth::DEFAULT_ITERATIONS {
            return Err(ConfigError::Invalid(format!(
                "[auth] scram_iterations must be at least {}",
                verona_auth::DEFAULT_ITERATIONS
            )));
        }
        if self.limits.max_stanza_bytes < 1024
            || self.limits.max_depth < 4
            || self.limits.max_attributes < 8
        {
            return Err(ConfigError::Invalid(
                "[limits] max_stanza_bytes must be at least 1024, max_depth at least 4 and \
                 max_attributes at least 8 (a stream header has several)"
                    .into(),
            ));
        }
        if self
            .pubsub
            .default_access_model
            .parse::<verona_pubsub::AccessModel>()
            .is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "[pubsub] default_access_model {:?} is not one of open, presence, roster, authorize, whitelist",
                self.pubsub.default_access_model
            )));
        }
        let ttl = 1..=MAX_TURN_TTL_SECS;
        if !self.turn.host.is_empty()
            && (self.turn.secret.is_empty() || !ttl.contains(&self.turn.ttl_secs))
        {
            return Err(ConfigError::Invalid(format!(
                "[turn] host needs the secret shared with the TURN server, and ttl_secs from 1 to {MAX_TURN_TTL_SECS} (a year)"
            )));
        }
        for (field, addresses) in self.contact_info.fields() {
            // A URI has a scheme: `abuse@example.org` alone is no address a client can use.
            let uri = |a: &String| {
                a.split_once(':').is_some_and(|(scheme, rest)| {
                    !scheme.is_empty()
                        && scheme
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                        && !rest.is_empty()
                        && !a.chars().any(char::is_whitespace)
                })
            };
            if let Some(bad) = addresses.iter().find(|a| !uri(a)) {
                return Err(ConfigError::Invalid(format!(
                    "[contact_info] {}: {bad:?} is not a URI (mailto:…, xmpp:…, https:…)",
                    field.trim_end_matches("-addresses")
                )));
            }
        }
        let ours = [
            self.normalized_domain(),
            self.pubsub_jid(),
            self.rooms_jid(),
        ];
        for (domain, secret) in &self.components.secrets {
            let valid = jid::BareJid::new(domain).is_ok_and(|jid| jid.node().is_none());
            if !valid || ours.contains(domain) || secret.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "[components.secrets] {domain:?}: a domain of its own (not the server's, its pubsub or chat service) with a non-empty secret"
                )));
            }
        }
        for (domain, target) in &self.s2s.hosts {
            if crate::s2s::resolve::parse_target(target).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "[s2s.hosts] {domain:?} = {target:?}: expected \"host:port\""
                )));
            }
        }
        if !self.c2s.websocket_path.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "[c2s] websocket_path {:?} must start with '/'",
                self.c2s.websocket_path
            )));
        }
        // Zero would refuse every client without saying so (elsewhere 0 means "no limit",
        // which these cannot mean).
        let at_least_one = [
            ("[limits] outbound_queue", self.limits.outbound_queue as u64),
            (
                "[limits] connections_per_address",
                self.limits.connections_per_address as u64,
            ),
            (
                "[limits] unauthenticated_per_address",
                self.limits.unauthenticated_per_address as u64,
            ),
            (
                "[limits] unauthenticated_timeout_secs",
                self.limits.unauthenticated_timeout_secs,
            ),
            (
                "[limits] max_sessions_per_account",
                self.limits.max_sessions_per_account as u64,
            ),
            (
                "[registration] per_address_per_hour",
                u64::from(self.registration.per_address_per_hour),
            ),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!(
                "{key} must be at least 1 (0 would refuse every client)"
            )));
        }
        // Values the server started with and then failed every account on (operators' audit):
        // what each one must at least hold, and why.
        let minima = [
            (
                "[pubsub] max_items_per_node",
                self.pubsub.max_items_per_node,
                crate::eventing::chat::RESIDENT,
                "a conversation's node keeps its last messages",
            ),
            (
                "[pubsub] max_subscriptions_per_jid",
                self.pubsub.max_subscriptions_per_jid,
                1,
                "each conversation is a subscription of each party",
            ),
            (
                "[pubsub] max_payload_bytes",
                self.pubsub.max_payload_bytes,
                MIN_PAYLOAD_BYTES,
                "every chat message is an item, stored whole",
            ),
            (
                "[pubsub] max_pep_nodes",
                self.pubsub.max_pep_nodes,
                SERVER_PEP_NODES,
                "each account has its presence and roster nodes",
            ),
        ];
        for (key, value, minimum, why) in minima {
            if value < minimum {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be at least {minimum} ({why})"
                )));
            }
        }
        if self.limits.new_connections_per_minute > 0 && self.limits.new_connections_burst == 0 {
            return Err(ConfigError::Invalid(
                "[limits] new_connections_burst must be at least 1 while \
                 new_connections_per_minute is on (0 would refuse every connection; \
                 new_connections_per_minute = 0 turns the limit off)"
                    .into(),
            ));
        }
        // A bound in bytes this small is a mistaken unit: a room would keep one message.
        if self.limits.room_history_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "[limits] room_history_bytes must be at least 1024".into(),
            ));
        }
        if self.limits.conversation_archive_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "[limits] conversation_archive_bytes must be at least 1024".into(),
            ));
        }
        if self.limits.max_offline_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "[limits] max_offline_bytes must be at least 1024".into(),
            ));
        }
        if !(1..=100).contains(&self.limits.offline_share_percent) {
            return Err(ConfigError::Invalid(
                "[limits] offline_share_percent must be between 1 and 100".into(),
            ));
        }
        if self.limits.max_unauthenticated_stanza_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "[limits] max_unauthenticated_stanza_bytes must be at least 1024".into(),
            ));
        }
        if self
            .limits
            .remote_conversations_per_minute
            .checked_mul(REMOTE_CONVERSATIONS_BURST)
            .is_none()
        {
            return Err(ConfigError::Invalid(format!(
                "[limits] remote_conversations_per_minute must be at most {} (its burst is \
                 {REMOTE_CONVERSATIONS_BURST} times it; 0: no limit)",
                u32::MAX / REMOTE_CONVERSATIONS_BURST
            )));
        }
        // Each shard is a thread with its own runtime and descriptors.
        if self.pubsub.shards > MAX_SHARDS {
            return Err(ConfigError::Invalid(format!(
                "[pubsub] shards must be at most {MAX_SHARDS} (0: one per core)"
            )));
        }
        // A directive the filter cannot read is taken for a target's name ("inf"), and a
        // typo silenced every log line.
        let directives = self.log.filter.split(',').map(str::trim);
        for directive in directives.filter(|d| !d.is_empty()) {
            let level = directive
                .rsplit_once('=')
                .map_or(directive, |(_, level)| level);
            if level
                .parse::<tracing::level_filters::LevelFilter>()
                .is_err()
            {
                return Err(ConfigError::Invalid(format!(
                    "[log] filter {:?}: {directive:?} is not LEVEL or TARGET=LEVEL \
                     (levels: off, error, warn, info, debug, trace)",
                    self.log.filter
                )));
            }
        }
        Ok(())
    }

    /// The domain in normalised form (stringprep'd, lower case, without a final dot).
    pub fn normalized_domain(&self) -> String {
        crate::jids::parse_bare(&self.domain)
            .map(|j| j.domain().to_string())
            .unwrap_or_else(|_| self.domain.clone())
    }

    /// How many shard tasks host the services.
    pub fn pubsub_shards(&self) -> usize {
        match self.pubsub.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The engine's configuration of `pubsub.<domain>`.
    pub fn pubsub_service(&self) -> verona_pubsub::ServiceConfig {
        let mut service = verona_pubsub::ServiceConfig::pubsub();
        let pubsub = &self.pubsub;
        service.node_defaults.access_model = pubsub
            .default_access_model
            .parse()
            .expect("validated when the configuration was loaded");
        service.limits = self.pubsub_limits();
        service.owners_subscribe_others = pubsub.owners_subscribe_others;
        service
    }

    /// The `[pubsub]` limits, for `pubsub.<domain>`.
    pub fn pubsub_limits(&self) -> verona_pubsub::Limits {
        let pubsub = &self.pubsub;
        verona_pubsub::Limits {
            max_nodes_per_owner: pubsub.max_nodes_per_owner,
            max_items_per_node: pubsub.max_items_per_node,
            max_payload_bytes: pubsub.max_payload_bytes,
            max_subscriptions_per_jid: pubsub.max_subscriptions_per_jid,
            max_affiliations_per_node: pubsub.max_affiliations_per_node,
            max_pending_per_node: pubsub.max_pending_per_node,
            max_owner_bytes: pubsub.max_owner_bytes,
            ..verona_pubsub::Limits::default()
        }
    }

    /// The limits of each room of `chat.<domain>`: the `[pubsub]` limits, with a history of
    /// `[limits] room_history_bytes` at most. Each room is a service of its own whose only
    /// node is the room, so a per-owner byte limit would be counted per room, and would refuse
    /// everyone's messages once someone filled the room: the history bound replaces it.
    pub fn rooms_limits(&self) -> verona_pubsub::Limits {
        verona_pubsub::Limits {
            max_node_bytes: self.limits.room_history_bytes,
            max_owner_bytes: usize::MAX,
            ..self.pubsub_limits()
        }
    }

    /// The limits of every account's PEP service: the `[pubsub]` limits, with `max_pep_nodes`
    /// nodes and `max_pep_bytes` of payloads at most.
    pub fn pep_limits(&self) -> verona_pubsub::Limits {
        let mut limits = self.pubsub_limits();
        limits.max_nodes_per_owner = limits.max_nodes_per_owner.min(self.pubsub.max_pep_nodes);
        limits.max_service_bytes = self.pubsub.max_pep_bytes;
        limits
    }

    /// The address of the pubsub service.
    pub fn pubsub_jid(&self) -> String {
        format!("pubsub.{}", self.normalized_domain())
    }

    /// The address of the group chat service (XEP-0207 §5, XEP-0045).
    pub fn rooms_jid(&self) -> String {
        format!("chat.{}", self.normalized_domain())
    }

    pub fn stream_limits(&self) -> verona_stream::Limits {
        verona_stream::Limits {
            max_stanza_bytes: self.limits.max_stanza_bytes,
            max_depth: self.limits.max_depth,
            max_attributes: self.limits.max_attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.domain, "localhost");
        assert_eq!(c.data_dir, PathBuf::from("verona-data"));
        assert_eq!(c.c2s.listen, vec!["0.0.0.0:5222".parse().unwrap()]);
        assert_eq!(
            c.c2s.direct_tls_listen,
            vec!["0.0.0.0:5223".parse().unwrap()]
        );
        assert!(c.c2s.websocket_listen.is_empty());
        assert_eq!(
            c.c2s.websocket_tls_listen,
            vec!["0.0.0.0:5281".parse().unwrap()]
        );
        assert_eq!(c.c2s.websocket_path, "/xmpp-websocket");
        assert!(!c.c2s.consider_websocket_secure);
        assert!(c.c2s.require_encryption);
        assert!(!c.c2s.allow_insecure_auth);
        assert!(!c.registration.allow);
        assert!(!c.compression.enabled);
        assert_eq!(
            c.pubsub_service().node_defaults.access_model,
            verona_pubsub::AccessModel::Authorize,
            "XEP-0207 §8"
        );
        assert_eq!(c.limits.max_stanza_bytes, 262_144);
    }

    #[test]
    fn a_turn_server_needs_its_secret() {
        let c = Config::parse("[turn]\nhost = \"turn.capulet.lit\"\nsecret = \"s\"\n").unwrap();
        assert_eq!(
            (c.turn.port, c.turn.ttl_secs, c.turn.tcp),
            (3478, 86_400, false)
        );
        for bad in [
            "[turn]\nhost = \"turn.capulet.lit\"\n",
            "[turn]\nhost = \"turn.capulet.lit\"\nsecret = \"s\"\nttl_secs = 0\n",
            // Past a year; the second overflowed the clock at each request.
            "[turn]\nhost = \"turn.capulet.lit\"\nsecret = \"s\"\nttl_secs = 31536001\n",
            "[turn]\nhost = \"turn.capulet.lit\"\nsecret = \"s\"\nttl_secs = 9223372036854775807\n",
        ] {
            let error = Config::parse(bad).unwrap_err().to_string();
            assert!(error.contains("[turn]"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn contact_addresses_must_be_uris() {
        let c = Config::parse(
            "[contact_info]\nabuse = [\"mailto:abuse@capulet.lit\"]\nsupport = [\"xmpp:help@capulet.lit?join\", \"https://capulet.lit/help\"]\n",
        )
        .unwrap();
        assert_eq!(c.contact_info.abuse, ["mailto:abuse@capulet.lit"]);
        assert_eq!(c.contact_info.support.len(), 2);
        for bad in ["abuse@capulet.lit", ":x", "mailto:", "mailto:a b", ""] {
            let text = format!("[contact_info]\nadmin = [{bad:?}]\n");
            let error = Config::parse(&text).unwrap_err().to_string();
            assert!(error.contains("[contact_info] admin"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn full_file_is_read() {
        let c = Config::parse(
            r#"
            domain = "capulet.lit"
            data_dir = "/var/lib/verona"
            [c2s]
            listen = ["127.0.0.1:5000", "[::1]:5000"]
            direct_tls_listen = []
            websocket_listen = ["127.0.0.1:5280"]
            websocket_tls_listen = []
            websocket_path = "/ws"
            consider_websocket_secure = true
            require_encryption = false
            allow_insecure_auth = true
            [tls]
            cert = "/etc/verona/cert.pem"
            key = "/etc/verona/key.pem"
            [registration]
            allow = true
            [compression]
            enabled = true
            [limits]
            max_stanza_bytes = 65536
            max_depth = 16
            "#,
        )
        .unwrap();
        assert_eq!(c.domain, "capulet.lit");
        assert_eq!(c.c2s.listen.len(), 2);
        assert!(c.c2s.direct_tls_listen.is_empty());
        assert_eq!(
            c.c2s.websocket_listen,
            vec!["127.0.0.1:5280".parse().unwrap()]
        );
        assert!(c.c2s.websocket_tls_listen.is_empty());
        assert_eq!(c.c2s.websocket_path, "/ws");
        assert!(c.c2s.consider_websocket_secure);
        assert!(c.c2s.allow_insecure_auth);
        assert!(c.registration.allow);
        assert!(c.compression.enabled);
        assert_eq!(c.limits.max_stanza_bytes, 65536);
        assert_eq!(c.limits.max_attributes, 64, "unset keys keep defaults");
    }

    #[test]
    fn component_domains_are_compared_as_the_domains_they_name() {
        let secrets = |keys: &[&str]| {
            let table: String = keys.iter().map(|k| format!("\"{k}\" = \"s\"\n")).collect();
            Config::parse(&format!(
                "domain = 'localhost'\n[components.secrets]\n{table}"
            ))
        };
        for ours in [
            "LOCALHOST",
            "localhost.",
            "chat.localhost.",
            "Chat.Localhost",
            "PUBSUB.localhost.",
        ] {
            assert!(
                matches!(secrets(&[ours]), Err(ConfigError::Invalid(_))),
                "{ours}"
            );
        }
        let c = secrets(&["Gw3.Localhost"]).unwrap();
        assert_eq!(
            c.components.secrets.keys().collect::<Vec<_>>(),
            ["gw3.localhost"]
        );
        let c = secrets(&["gw.localhost."]).unwrap();
        assert!(c.components.secrets.contains_key("gw.localhost"));
        let twice = secrets(&["gw.localhost", "GW.localhost"]);
        assert!(
            matches!(&twice, Err(ConfigError::Invalid(why)) if why.contains("same domain")),
            "{twice:?}"
        );
        let c = Config::parse("domain = 'capulet.lit.'").unwrap();
        assert_eq!(c.normalized_domain(), "capulet.lit");
        assert_eq!(c.rooms_jid(), "chat.capulet.lit");
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("domian = 'x'", "domian"),
            ("[c2s]\nlisten_on = []", "listen_on"),
            ("[limits]\nmax_stanza = 1", "max_stanza"),
            ("[c2s]\nlisten = ['nowhere']", "listen"),
            ("domain = 'a@b'", "bare domain"),
            ("[tls]\ncert = 'c.pem'", "together"),
            ("[auth]\nscram_iterations = 10", "scram_iterations"),
            ("[limits]\noutbound_queue = 0", "outbound_queue"),
            ("[c2s]\nwebsocket_path = 'ws'", "websocket_path"),
            (
                "[limits]\nconnections_per_address = 0",
                "connections_per_address",
            ),
            (
                "[limits]\nunauthenticated_timeout_secs = 0",
                "unauthenticated_timeout_secs",
            ),
            (
                "[limits]\nmax_sessions_per_account = 0",
                "max_sessions_per_account",
            ),
            (
                "[limits]\nmax_unauthenticated_stanza_bytes = 0",
                "max_unauthenticated_stanza_bytes",
            ),
            (
                "[registration]\nper_address_per_hour = 0",
                "per_address_per_hour",
            ),
            ("[pubsub]\nshards = 6000", "shards"),
            (
                "[limits]\nremote_conversations_per_minute = 4294967295",
                "remote_conversations_per_minute",
            ),
            (
                "[limits]\nunauthenticated_per_address = 0",
                "unauthenticated_per_address",
            ),
            ("[limits]\nmax_attributes = 0", "max_attributes"),
            (
                "[limits]\nroom_history_bytes = 1",
                "room_history_bytes must be at least 1024",
            ),
            (
                "[limits]\nconversation_archive_bytes = 1000",
                "conversation_archive_bytes must be at least 1024",
            ),
            (
                "[limits]\nmax_offline_bytes = 1000",
                "max_offline_bytes must be at least 1024",
            ),
            (
                "[limits]\noffline_share_percent = 0",
                "offline_share_percent must be between 1 and 100",
            ),
            (
                "[limits]\noffline_share_percent = 101",
                "offline_share_percent must be between 1 and 100",
            ),
            (
                "[pubsub]\nmax_items_per_node = 19",
                "max_items_per_node must be at least 20",
            ),
            (
                "[pubsub]\nmax_subscriptions_per_jid = 0",
                "max_subscriptions_per_jid must be at least 1",
            ),
            (
                "[pubsub]\nmax_payload_bytes = 0",
                "max_payload_bytes must be at least 4096",
            ),
            (
                "[pubsub]\nmax_pep_nodes = 1",
                "max_pep_nodes must be at least 2",
            ),
            (
                "[limits]\nnew_connections_burst = 0",
                "new_connections_burst must be at least 1",
            ),
            ("[log]\nfilter = 'inf'", "\"inf\" is not LEVEL"),
            ("[log]\nfilter = 'warn,verona=bogus'", "\"verona=bogus\""),
            (
                "[pubsub]\ndefault_access_model = 'closed'",
                "default_access_model",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}");
        }
    }
}
