//! The namespaces and FORM_TYPEs this crate reads and writes.

pub use xmpp_parsers::ns::{
    DATA_FORMS, DELAY, DISCO_INFO, DISCO_ITEMS, JABBER_CLIENT as CLIENT, MUC, PUBSUB,
    PUBSUB_ERRORS, PUBSUB_EVENT, PUBSUB_OWNER, RSM,
};

/// XEP-0050 ad-hoc commands.
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
/// XEP-0131 stanza headers (SubID headers on notifications).
pub const SHIM: &str = "http://jabber.org/protocol/shim";
/// XEP-0033 extended addressing (`replyto` on notifications).
pub const ADDRESS: &str = "http://jabber.org/protocol/address";

/// FORM_TYPE of node configuration forms.
pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
/// FORM_TYPE of subscription options forms.
pub const SUBSCRIBE_OPTIONS: &str = "http://jabber.org/protocol/pubsub#subscribe_options";
/// FORM_TYPE of publish-options preconditions.
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// FORM_TYPE of node meta-data in disco#info.
pub const META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";
/// FORM_TYPE of authorization requests and of the get-pending command.
pub const SUBSCRIBE_AUTHORIZATION: &str =
    "http://jabber.org/protocol/pubsub#subscribe_authorization";
/// The XEP-0050 command node listing pending subscriptions (XEP-0060 §8.7).
pub const GET_PENDING: &str = "http://jabber.org/protocol/pubsub#get-pending";
