//! Small helpers over minidom: attributes by name, and the iq replies.

use jid::{FullJid, Jid};
use minidom::rxml::NcName;
use minidom::{Element, ElementBuilder, IntoAttributeValue};

use crate::errors::{self, Error};
use crate::ns;

/// Attribute setting by `&str` name; names are compile-time constants of this crate.
pub(crate) trait BuilderExt {
    /// Sets the attribute; `None` values are skipped.
    fn with(self, attr: &str, value: impl IntoAttributeValue) -> Self;
}

impl BuilderExt for ElementBuilder {
    fn with(self, attr: &str, value: impl IntoAttributeValue) -> Self {
        let name = NcName::try_from(attr).expect("attribute names of this crate are NCNames");
        self.attr(name, value)
    }
}

pub(crate) fn builder(name: &str, namespace: &str) -> ElementBuilder {
    Element::builder(name, namespace)
}

/// The iq result answering `request`, from the service to the requester.
pub(crate) fn result_reply(
    request: &Element,
    service: &Jid,
    to: &FullJid,
    payload: Option<Element>,
) -> Element {
    builder("iq", ns::CLIENT)
        .with("type", "result")
        .with("id", request.attr("id"))
        .with("from", service.as_str())
        .with("to", to.as_str())
        .append_all(payload)
        .build()
}

/// The error reply to `request` (an iq or a message): `addresses` are the service and the
/// requester when known, otherwise the request's addresses are swapped. `echo` goes before the
/// `<error/>` (the entries an owner modification could not apply).
pub(crate) fn error_reply(
    request: &Element,
    addresses: Option<(&Jid, &FullJid)>,
    error: &Error,
    echo: Option<Element>,
) -> Element {
    let (from, to) = match addresses {
        Some((service, requester)) => (Some(service.as_str()), Some(requester.as_str())),
        None => (request.attr("to"), request.attr("from")),
    };
    builder(request.name(), ns::CLIENT)
        .with("type", "error")
        .with("id", request.attr("id"))
        .with("from", from)
        .with("to", to)
        .append_all(echo)
        .append(errors::error_element(error))
        .build()
}

/// The `jabber:x:data` child of `parent`, parsed.
pub(crate) fn form_child(
    parent: &Element,
) -> Result<Option<xmpp_parsers::data_forms::DataForm>, Error> {
    parent
        .get_child("x", ns::DATA_FORMS)
        .map(|x| xmpp_parsers::data_forms::DataForm::try_from(x.clone()))
        .transpose()
        .map_err(|_| Error::BadRequest)
}
