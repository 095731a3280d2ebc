//! Verona: an XMPP server in which publish-subscribe is the only model (XEP-0207).
//!
//! This crate is the server: configuration, TLS, client streams, the session router and the
//! command line. The engine-free parts live in `verona-auth` (SASL), `verona-stream` (XML
//! framing) and `verona-storage` (persistence).

pub mod accounts;
mod c2s;
mod component;
mod compress;
pub mod config;
pub mod control;
mod eventing;
mod extdisco;
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod iq;
mod jids;
mod mam;
mod router;
mod s2s;
mod server;
mod slots;
mod throttle;
pub mod tls;
mod xml;

pub use config::Config;
pub use host::account_writes;
pub use mam::delete_stopped as delete_account_while_stopped;
pub use server::{RunningServer, Stores, lock_data_dir, open_running_store, open_store};

/// A hash map on a per-recipient path (routing, the presence graph): foldhash, seeded at
/// random per process, rather than SipHash, which took a fifth of a presence fan-out's CPU.
pub(crate) type FastHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set on a per-recipient path, as [`FastHashMap`].
pub(crate) type FastHashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// Lower-case hex of `bytes` (digests, ids, keys).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
