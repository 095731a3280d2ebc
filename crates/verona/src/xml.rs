//! Small helpers over minidom for the elements the server writes itself.

use minidom::rxml::{Namespace, NcName};
use minidom::{Element, ElementBuilder};

/// The namespaces the server reads and writes: `xmpp-parsers`' names where it has them (as the
/// pubsub layer does), ours for the rest.
pub mod ns {
    pub use xmpp_parsers::ns::{
        BIND, BLOCKING, BLOCKING_ERRORS, DATA_FORMS, DELAY, DISCO_INFO, DISCO_ITEMS,
        JABBER_CLIENT as CLIENT, MUC, MUC_USER, NICK, OID as OCCUPANT_ID, PING, PUBSUB,
        PUBSUB_ERRORS, PUBSUB_OWNER, REGISTER, ROSTER, SASL, SASL_CB, STREAM as STREAMS, TLS,
        VERSION, XMPP_STANZAS as STANZAS,
    };

    /// RFC 6120 server-to-server streams and XEP-0220 dialback.
    pub const SERVER: &str = "jabber:server";
    pub const DIALBACK: &str = "jabber:server:dialback";
    pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";
    /// XEP-0114 external components.
    pub const COMPONENT: &str = "jabber:component:accept";
    pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
    /// XEP-0045 §10 and §9: room configuration and affiliation lists.
    /// XEP-0033 extended addressing (`replyto`).
    pub const ADDRESS: &str = "http://jabber.org/protocol/address";
    pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
    pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
    /// XEP-0198 stream management.
    pub const SM: &str = "urn:xmpp:sm:3";
    /// XEP-0352 client state indication.
    pub const CSI: &str = "urn:xmpp:csi:0";
    pub const ROSTER_VER: &str = "urn:xmpp:features:rosterver";
    pub const PUBSUB_AUTHORIZATION: &str =
        "http://jabber.org/protocol/pubsub#subscribe_authorization";
    /// XEP-0050 ad-hoc commands, and the one pubsub services offer (XEP-0060 §8.7).
    pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
    pub const GET_PENDING: &str = "http://jabber.org/protocol/pubsub#get-pending";
    pub const COMPRESS: &str = "http://jabber.org/protocol/compress";
    pub const COMPRESS_FEATURE: &str = "http://jabber.org/features/compress";
    pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
}

/// An attribute name known to be valid at compile time.
fn name(n: &str) -> NcName {
    NcName::try_from(n).expect("attribute names used by the server are valid NCNames")
}

pub fn builder(el: &str, namespace: &str) -> ElementBuilder {
    Element::builder(el, namespace)
}

pub trait BuilderExt {
    fn with(self, attr: &str, value: impl Into<String>) -> Self;
}

impl BuilderExt for ElementBuilder {
    fn with(self, attr: &str, value: impl Into<String>) -> Self {
        self.attr(name(attr), value.into())
    }
}

pub fn set_attr(el: &mut Element, attr: &str, value: impl Into<String>) {
    el.set_attr(Namespace::NONE, name(attr), value.into());
}

/// The `xml:lang` of an element (an attribute in the XML namespace, not one named
/// "xml:lang").
pub fn lang(el: &Element) -> Option<&str> {
    let xml = Namespace::xml();
    el.attrs()
        .iter()
        .find(|((namespace, name), _)| *namespace == xml && name.as_str() == "lang")
        .map(|(_, value)| value.as_str())
}

/// Gives `to` the `xml:lang` of `from`, if it has one (RFC 6120 §8.1.5: a language the
/// sender declared stays with what it wrote).
pub fn copy_lang(from: &Element, to: &mut Element) {
    if let Some(value) = lang(from) {
        to.set_attr(Namespace::xml().clone(), name("lang"), value.to_owned());
    }
}

/// An element with only text content, e.g. `<username>juliet</username>`.
pub fn text_child(el: &str, namespace: &str, text: impl Into<String>) -> Element {
    Element::builder(el, namespace).append(text.into()).build()
}

/// Every stanza error the server itself sends (RFC 6120 §8.3), with its type: one table.
/// (The pubsub layer has its own, for XEP-0060's application conditions.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaError {
    BadRequest,
    /// XEP-0191 §3.5: a stanza to a blocked entity.
    Blocked,
    Conflict,
    /// A request the entity understands but does not serve.
    FeatureNotImplemented,
    /// Storage failed: the requester may retry.
    InternalServerError,
    /// XEP-0060 §7.1.3.6: a payload the node does not accept.
    InvalidPayload,
    /// The sender may not do this (e.g. speak in a room it is not allowed to).
    Forbidden,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    /// Credentials missing or wrong (a room's password).
    NotAuthorized,
    /// A local limit the request would pass.
    PolicyViolation,
    /// Something one must be registered for first (e.g. a room's member list).
    RegistrationRequired,
    RemoteServerNotFound,
    /// A remote server could not be reached in time.
    RemoteServerTimeout,
    /// The recipient's queue is full: the sender may retry later.
    ResourceConstraint,
    ServiceUnavailable,
    /// RFC 6120 §7.6.2.1: the account has as many sessions as it may.
    TooManyResources,
}

impl StanzaError {
    /// (type, defined condition).
    fn table(self) -> (&'static str, &'static str) {
        match self {
            StanzaError::BadRequest => ("modify", "bad-request"),
            StanzaError::Blocked => ("cancel", "not-acceptable"),
            StanzaError::Conflict => ("cancel", "conflict"),
            StanzaError::FeatureNotImplemented => ("cancel", "feature-not-implemented"),
            StanzaError::InternalServerError => ("wait", "internal-server-error"),
            StanzaError::InvalidPayload => ("modify", "bad-request"),
            StanzaError::Forbidden => ("auth", "forbidden"),
            StanzaError::ItemNotFound => ("cancel", "item-not-found"),
            StanzaError::JidMalformed => ("modify", "jid-malformed"),
            StanzaError::NotAcceptable => ("modify", "not-acceptable"),
            StanzaError::NotAllowed => ("cancel", "not-allowed"),
            StanzaError::NotAuthorized => ("auth", "not-authorized"),
            StanzaError::PolicyViolation => ("modify", "policy-violation"),
            StanzaError::RegistrationRequired => ("auth", "registration-required"),
            StanzaError::RemoteServerNotFound => ("cancel", "remote-server-not-found"),
            StanzaError::RemoteServerTimeout => ("wait", "remote-server-timeout"),
            StanzaError::ResourceConstraint => ("wait", "resource-constraint"),
            StanzaError::ServiceUnavailable => ("cancel", "service-unavailable"),
            StanzaError::TooManyResources => ("cancel", "resource-constraint"),
        }
    }

    /// The application-specific condition that goes with the defined one.
    fn application(self) -> Option<Element> {
        match self {
            StanzaError::Blocked => Some(Element::bare("blocked", ns::BLOCKING_ERRORS)),
            StanzaError::InvalidPayload => {
                Some(Element::bare("invalid-payload", ns::PUBSUB_ERRORS))
            }
            _ => None,
        }
    }
}

/// The error reply to a stanza (RFC 6120 §8.3): addresses swapped, `type='error'`, the
/// condition. `None` for stanzas that must never be answered with an error (errors themselves,
/// iq results).
pub fn error_reply(original: &Element, error: StanzaError, text: Option<&str>) -> Option<Element> {
    let kind_attr = original.attr("type");
    if kind_attr == Some("error") || (original.name() == "iq" && kind_attr == Some("result")) {
        return None;
    }
    let (kind, condition) = error.table();
    let mut element = builder("error", ns::CLIENT)
        .with("type", kind)
        .append(Element::bare(condition, ns::STANZAS));
    if let Some(text) = text {
        element = element.append(text_child("text", ns::STANZAS, text));
    }
    if let Some(application) = error.application() {
        element = element.append(application);
    }
    let mut reply = builder(original.name(), ns::CLIENT).with("type", "error");
    if let Some(id) = original.attr("id") {
        reply = reply.with("id", id);
    }
    if let Some(from) = original.attr("from") {
        reply = reply.with("to", from);
    }
    if let Some(to) = original.attr("to") {
        reply = reply.with("from", to);
    }
    Some(reply.append(element.build()).build())
}

/// Every stream error the server sends (RFC 6120 §4.9.3): one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    BadFormat,
    Conflict,
    ConnectionTimeout,
    HostUnknown,
    /// A stanza between servers without `from` or `to`.
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RestrictedXml,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamError {
    pub fn condition(self) -> &'static str {
        match self {
            StreamError::BadFormat => "bad-format",
            StreamError::Conflict => "conflict",
            StreamError::ConnectionTimeout => "connection-timeout",
            StreamError::HostUnknown => "host-unknown",
            StreamError::ImproperAddressing => "improper-addressing",
            StreamError::InternalServerError => "internal-server-error",
            StreamError::InvalidFrom => "invalid-from",
            StreamError::InvalidNamespace => "invalid-namespace",
            StreamError::NotAuthorized => "not-authorized",
            StreamError::NotWellFormed => "not-well-formed",
            StreamError::PolicyViolation => "policy-violation",
            StreamError::RestrictedXml => "restricted-xml",
            StreamError::SystemShutdown => "system-shutdown",
            StreamError::UndefinedCondition => "undefined-condition",
            StreamError::UnsupportedStanzaType => "unsupported-stanza-type",
            StreamError::UnsupportedVersion => "unsupported-version",
        }
    }
}

impl From<&verona_stream::FramingError> for StreamError {
    fn from(error: &verona_stream::FramingError) -> Self {
        use verona_stream::FramingError;
        match error {
            FramingError::NotWellFormed(_) => StreamError::NotWellFormed,
            FramingError::RestrictedXml(_) => StreamError::RestrictedXml,
            FramingError::PolicyViolation(_) => StreamError::PolicyViolation,
            FramingError::InvalidNamespace(_) => StreamError::InvalidNamespace,
            FramingError::BadFormat(_) => StreamError::BadFormat,
        }
    }
}

/// An iq result answering `request`, with an optional payload.
pub fn iq_result(request: &Element, payload: Option<Element>) -> Element {
    let mut reply = builder("iq", ns::CLIENT).with("type", "result");
    if let Some(id) = request.attr("id") {
        reply = reply.with("id", id);
    }
    if let Some(from) = request.attr("from") {
        reply = reply.with("to", from);
    }
    if let Some(to) = request.attr("to") {
        reply = reply.with("from", to);
    }
    match payload {
        Some(payload) => reply.append(payload).build(),
        None => reply.build(),
    }
}

/// A server push to one session (a roster or blocklist change): an iq set with a fresh id.
pub fn push(to: &str, payload: Element) -> Element {
    builder("iq", ns::CLIENT)
        .with("type", "set")
        .with("id", crate::c2s::random_id())
        .with("to", to)
        .append(payload)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Element {
        s.parse().unwrap()
    }

    #[test]
    fn error_reply_swaps_addresses_and_names_the_condition() {
        let iq = parse(
            "<iq xmlns='jabber:client' id='a1' type='get' from='juliet@capulet.lit/balcony' to='capulet.lit'><q xmlns='urn:x'/></iq>",
        );
        let reply = error_reply(&iq, StanzaError::ServiceUnavailable, None).unwrap();
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("id"), Some("a1"));
        assert_eq!(reply.attr("to"), Some("juliet@capulet.lit/balcony"));
        assert_eq!(reply.attr("from"), Some("capulet.lit"));
        let error = reply.get_child("error", ns::CLIENT).unwrap();
        assert_eq!(error.attr("type"), Some("cancel"));
        assert!(error.has_child("service-unavailable", ns::STANZAS));
    }

    #[test]
    fn errors_and_results_are_never_answered() {
        let cases = [
            "<iq xmlns='jabber:client' id='a' type='result'/>",
            "<iq xmlns='jabber:client' id='a' type='error'/>",
            "<message xmlns='jabber:client' type='error'/>",
            "<presence xmlns='jabber:client' type='error'/>",
        ];
        for case in cases {
            assert!(
                error_reply(&parse(case), StanzaError::BadRequest, None).is_none(),
                "{case}"
            );
        }
        let message = parse("<message xmlns='jabber:client' type='chat'/>");
        assert!(error_reply(&message, StanzaError::BadRequest, Some("why")).is_some());
    }

    #[test]
    fn set_attr_replaces() {
        let mut el = parse("<message xmlns='jabber:client' from='x'/>");
        set_attr(&mut el, "from", "juliet@capulet.lit/balcony");
        assert_eq!(el.attr("from"), Some("juliet@capulet.lit/balcony"));
    }
}
