//! The XEP-0207 mapping and the classic views: what presence, subscriptions, the roster and
//! blocking are in terms of the pubsub engine, and how a classic stanza becomes an engine
//! request and an engine effect becomes the stanza a session of each kind gets. Protocol
//! meaning only: no sockets, no storage, no tasks. The service host (`crate::host`) runs these
//! against the resident services inside a batch, so every side effect of a view is an engine
//! effect and a failed commit undoes it.
//!
//! | XEP-0207 / DESIGN | file |
//! |---|---|
//! | §3 presence: the `presence` node, `<presence/>` as publish and as view | [`presence`] |
//! | §4 subscriptions: who follows whom, the derived roster | [`subscriptions`] |
//! | RFC 6121 §2 roster view, the `roster` node | [`roster`] |
//! | XEP-0191 blocking as outcasts | [`blocking`] |
//! | DESIGN §3 rendering: native events or classic stanzas, XEP-0115 | [`rendering`], [`caps`] |
//! | §5 group chat on `chat.<domain>`, the XEP-0045 view | [`groupchat`], [`room_vcard`], [`shown`] |
//! | §6 one-to-one conversations, carbons, offline | [`chat`] |
//! | XEP-0313 archives of rooms and conversations | [`archive`] |
//! | XEP-0054 vCards and XEP-0049 private storage as PEP nodes | [`stored`] |
//! | XEP-0402 §5.3: XEP-0048 bookmarks in private storage as a view of XEP-0402's | [`bookmarks`] |

pub mod archive;
pub mod blocking;
pub mod bookmarks;
pub mod caps;
pub mod chat;
pub mod groupchat;
pub mod presence;
pub mod rendering;
pub mod room_vcard;
pub mod roster;
pub mod shown;
pub mod stored;
pub mod subscriptions;

use jid::BareJid;
use verona_pubsub::{Limits, ServiceConfig, SubscriptionOptionField};

use presence::{PRESENCE_NODE, VIEW_OPTION};

/// A PEP service's configuration: XEP-0163's, the server's pubsub limits, the option
/// recording classic requests, and the presence node's exceptions: every current item (one
/// per online resource) sent as its last items, and none counted against the account's bytes.
pub fn pep_config(account: BareJid, limits: Limits) -> ServiceConfig {
    let mut config = ServiceConfig::pep(account);
    config.limits = limits;
    config.all_items_nodes.insert(PRESENCE_NODE.to_owned());
    // Its items are bounded by the account's sessions, and going online must not depend on
    // what the other nodes hold.
    config.unmetered_nodes.insert(PRESENCE_NODE.to_owned());
    config.custom_subscription_options.insert(
        VIEW_OPTION.to_owned(),
        SubscriptionOptionField { unique: false },
    );
    config
}
