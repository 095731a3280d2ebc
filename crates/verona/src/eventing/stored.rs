//! Classic storage iqs as views of PEP nodes (DESIGN §3: classic stanzas are views of the
//! pubsub state): an account's vCard (XEP-0054) is the one item of its `vcard-temp` node, open
//! to anyone, as Prosody and ejabberd serve vCards; private XML storage (XEP-0049) is the one
//! item of a node named by the stored element's namespace, for the owner alone (XEP-0223), which
//! is where clients that keep XEP-0048 bookmarks in PEP find them too (`storage:bookmarks`).

use minidom::Element;

use crate::eventing::bookmarks;
use crate::xml::{BuilderExt, StanzaError, builder, iq_result, ns};

/// XEP-0054.
pub const VCARD: &str = "vcard-temp";
/// XEP-0049.
pub const PRIVATE: &str = "jabber:iq:private";
/// The id of the one item a storage node holds.
const ITEM: &str = "current";
/// Nodes private storage does not name, though their names are namespaces: the server's own
/// (the vCard, XEP-0207's presence and roster, XEP-0402 bookmarks) and the PEP nodes clients
/// publish for everyone under their payload's namespace (XEP-0084, 0172, 0080, 0118, 0107,
/// 0108). Stored there first, the node would be made private, and every publish the node is
/// for refused.
const NOT_PRIVATE: &[&str] = &[
    VCARD,
    crate::eventing::presence::PRESENCE_NODE,
    crate::eventing::presence::ROSTER_NODE,
    bookmarks::NODE,
    "urn:xmpp:avatar:metadata",
    "urn:xmpp:avatar:data",
    "http://jabber.org/protocol/nick",
    "http://jabber.org/protocol/geoloc",
    "http://jabber.org/protocol/tune",
    "http://jabber.org/protocol/mood",
    "http://jabber.org/protocol/activity",
];

/// A storage iq of a session, as a request to a PEP node.
#[derive(Debug)]
pub struct Asked {
    /// The classic iq, which the answer is made for.
    request: Element,
    /// The stored element's name and namespace (what a get of nothing stored answers).
    element: (String, String),
    private: bool,
}

/// Whether `iq` is a vCard or private storage get or set.
pub fn is_storage(iq: &Element) -> bool {
    iq.has_child("vCard", VCARD) || iq.has_child("query", PRIVATE)
}

/// The storage request `iq` makes (see [`is_storage`]): `Err` for private storage that names
/// no element, several, one of the namespaces XEP-0049 §3 keeps from it or one of
/// [`NOT_PRIVATE`], and for more
/// bookmarks than [`bookmarks::MAX_ROOMS`].
pub fn asked(iq: &Element) -> Result<Asked, StanzaError> {
    // RFC 6120 §8.2.3: one payload. Two (a vCard and private XML) would have the request
    // name one and store the other, where its access is not the one asked for.
    if iq.children().count() != 1 {
        return Err(StanzaError::BadRequest);
    }
    if iq.has_child("vCard", VCARD) {
        return Ok(Asked {
            request: iq.clone(),
            element: ("vCard".to_owned(), VCARD.to_owned()),
            private: false,
        });
    }
    let query = iq
        .get_child("query", PRIVATE)
        .ok_or(StanzaError::BadRequest)?;
    let mut stored = query.children();
    let (Some(element), None) = (stored.next(), stored.next()) else {
        return Err(StanzaError::BadRequest);
    };
    let namespace = element.ns();
    if [ns::CLIENT, ns::SERVER, PRIVATE].contains(&namespace.as_str())
        || NOT_PRIVATE.contains(&namespace.as_str())
    {
        return Err(StanzaError::NotAcceptable);
    }
    if element.is("storage", bookmarks::LEGACY)
        && iq.attr("type") == Some("set")
        && !bookmarks::within_bounds(element)
    {
        return Err(StanzaError::PolicyViolation);
    }
    Ok(Asked {
        request: iq.clone(),
        element: (element.name().to_owned(), namespace),
        private: true,
    })
}

impl Asked {
    fn node(&self) -> &str {
        if self.private { &self.element.1 } else { VCARD }
    }

    pub fn is_set(&self) -> bool {
        self.request.attr("type") == Some("set")
    }

    /// Whether this is private storage of XEP-0048 bookmarks, which is a view of the
    /// XEP-0402 node (`eventing::bookmarks`).
    pub fn is_bookmarks(&self) -> bool {
        self.private && self.element.0 == "storage" && self.element.1 == bookmarks::LEGACY
    }

    /// What a set stores.
    pub fn stored(&self) -> Option<&Element> {
        self.request.get_child("query", PRIVATE)?.children().next()
    }

    /// The answer to a get, with `stored` as what is stored.
    pub fn answer_stored(&self, stored: Element) -> Element {
        iq_result(&self.request, Some(self.wrapped(Some(stored))))
    }

    /// The XEP-0060 request to the account's PEP service that does what the classic iq asks:
    /// a get reads the node's item, a set publishes it (creating the node with the access
    /// model the storage has).
    pub fn to_pubsub(&self) -> Element {
        let asking = if self.is_set() {
            let stored = match self.request.get_child("query", PRIVATE) {
                Some(query) => query.children().next().cloned(),
                None => self.request.get_child("vCard", VCARD).cloned(),
            };
            let item = builder("item", ns::PUBSUB)
                .with("id", ITEM)
                .append_all(stored)
                .build();
            let access = if self.private { "whitelist" } else { "open" };
            let options = publish_options(&[
                ("pubsub#persist_items", "true"),
                ("pubsub#access_model", access),
            ]);
            vec![
                builder("publish", ns::PUBSUB)
                    .with("node", self.node())
                    .append(item)
                    .build(),
                builder("publish-options", ns::PUBSUB)
                    .append(options)
                    .build(),
            ]
        } else {
            vec![
                builder("items", ns::PUBSUB)
                    .with("node", self.node())
                    .with("max_items", "1")
                    .build(),
            ]
        };
        let mut iq = builder("iq", ns::CLIENT);
        for attr in ["type", "id", "from", "to"] {
            if let Some(value) = self.request.attr(attr) {
                iq = iq.with(attr, value);
            }
        }
        iq.append(builder("pubsub", ns::PUBSUB).append_all(asking).build())
            .build()
    }

    /// The classic answer to the classic iq, from the pubsub reply: what was stored (a get
    /// of nothing stored answers the empty element, XEP-0049 §2.3 and as servers answer
    /// XEP-0054), an empty result for a set, the error otherwise.
    pub fn answer(&self, reply: &Element) -> Element {
        let condition = reply
            .get_child("error", ns::CLIENT)
            .and_then(|error| error.children().find(|c| c.ns() == ns::STANZAS))
            .map(|c| c.name().to_owned());
        if reply.attr("type") == Some("error") {
            if self.is_set() || condition.as_deref() != Some("item-not-found") {
                let mut answer = builder("iq", ns::CLIENT).with("type", "error");
                // The request's id: the refusal may be of a step the server took for it.
                if let Some(id) = self.request.attr("id") {
                    answer = answer.with("id", id);
                }
                for attr in ["from", "to"] {
                    if let Some(value) = reply.attr(attr) {
                        answer = answer.with(attr, value);
                    }
                }
                return answer
                    .append_all(reply.get_child("error", ns::CLIENT).cloned())
                    .build();
            }
            return iq_result(&self.request, Some(self.wrapped(None)));
        }
        if self.is_set() {
            return iq_result(&self.request, None);
        }
        let stored = reply
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|pubsub| pubsub.get_child("items", ns::PUBSUB))
            .and_then(|items| items.get_child("item", ns::PUBSUB))
            .and_then(|item| item.children().next())
            .cloned();
        iq_result(&self.request, Some(self.wrapped(stored)))
    }

    /// The payload of a get's answer: the stored element (or the empty one asked for), in
    /// private storage's `<query/>`.
    fn wrapped(&self, stored: Option<Element>) -> Element {
        let (name, namespace) = &self.element;
        let stored = stored.unwrap_or_else(|| Element::bare(name.as_str(), namespace.as_str()));
        if self.private {
            builder("query", PRIVATE).append(stored).build()
        } else {
            stored
        }
    }
}

/// A `publish-options` form (XEP-0060 §7.1.5) with `fields` as (var, value).
pub fn publish_options(fields: &[(&str, &str)]) -> Element {
    submitted_form("http://jabber.org/protocol/pubsub#publish-options", fields)
}

/// A submitted XEP-0004 form of `form_type` with `fields` as (var, value).
pub fn submitted_form(form_type: &str, fields: &[(&str, &str)]) -> Element {
    let field = |var: &str, value: &str| {
        builder("field", ns::DATA_FORMS)
            .with("var", var)
            .append(builder("value", ns::DATA_FORMS).append(value))
    };
    builder("x", ns::DATA_FORMS)
        .with("type", "submit")
        .append(field("FORM_TYPE", form_type).with("type", "hidden").build())
        .append_all(fields.iter().map(|(var, value)| field(var, value).build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn a_set_publishes_and_a_get_reads_the_one_item() {
        let set = iq(
            "<iq xmlns='jabber:client' type='set' id='s'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='r@chat.x'/></storage></query></iq>",
        );
        let asked = asked(&set).unwrap();
        let pubsub = asked.to_pubsub();
        let publish = pubsub
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("publish", ns::PUBSUB))
            .unwrap();
        assert_eq!(publish.attr("node"), Some("storage:bookmarks"));
        let item = publish.get_child("item", ns::PUBSUB).unwrap();
        assert_eq!(item.attr("id"), Some(ITEM));
        assert!(item.has_child("storage", "storage:bookmarks"));
        let options = pubsub
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("publish-options", ns::PUBSUB))
            .unwrap();
        let access = options
            .get_child("x", ns::DATA_FORMS)
            .unwrap()
            .children()
            .find(|f| f.attr("var") == Some("pubsub#access_model"))
            .map(|f| f.get_child("value", ns::DATA_FORMS).unwrap().text());
        assert_eq!(access.as_deref(), Some("whitelist"));
        let ok = iq("<iq xmlns='jabber:client' type='result' id='s'/>");
        assert_eq!(
            asked.answer(&ok),
            iq("<iq xmlns='jabber:client' type='result' id='s'/>")
        );

        let get = iq(
            "<iq xmlns='jabber:client' type='get' id='g' to='a@x'><vCard xmlns='vcard-temp'/></iq>",
        );
        let asked = super::asked(&get).unwrap();
        let items = asked.to_pubsub();
        let node = items
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("items", ns::PUBSUB))
            .and_then(|i| i.attr("node"));
        assert_eq!(node, Some(VCARD));
        let found = iq(
            "<iq xmlns='jabber:client' type='result' id='g' from='a@x'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='vcard-temp'><item id='current'><vCard xmlns='vcard-temp'><FN>A</FN></vCard></item></items></pubsub></iq>",
        );
        let answer = asked.answer(&found);
        let card = answer.get_child("vCard", VCARD).unwrap();
        assert_eq!(
            card.get_child("FN", VCARD).map(Element::text).as_deref(),
            Some("A")
        );
    }

    #[test]
    fn nothing_stored_is_the_empty_element_and_other_errors_pass() {
        let get = iq(
            "<iq xmlns='jabber:client' type='get' id='g'><query xmlns='jabber:iq:private'><roster xmlns='roster:delimiter'/></query></iq>",
        );
        let asked = asked(&get).unwrap();
        let missing = iq(
            "<iq xmlns='jabber:client' type='error' id='g'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        let answer = asked.answer(&missing);
        assert_eq!(answer.attr("type"), Some("result"));
        let query = answer.get_child("query", PRIVATE).unwrap();
        assert!(query.has_child("roster", "roster:delimiter"));
        let refused = iq(
            "<iq xmlns='jabber:client' type='error' id='g'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        let answer = asked.answer(&refused);
        assert_eq!(answer.attr("type"), Some("error"));
        assert!(answer.get_child("pubsub", ns::PUBSUB).is_none());
        assert!(
            answer
                .get_child("error", ns::CLIENT)
                .is_some_and(|e| e.has_child("not-allowed", ns::STANZAS))
        );
    }

    #[test]
    fn private_storage_names_one_element_outside_the_reserved_namespaces() {
        let cases = [
            (
                "<query xmlns='jabber:iq:private'/>",
                Some(StanzaError::BadRequest),
            ),
            (
                "<query xmlns='jabber:iq:private'><a xmlns='urn:a'/><b xmlns='urn:b'/></query>",
                Some(StanzaError::BadRequest),
            ),
            (
                "<query xmlns='jabber:iq:private'><message xmlns='jabber:client'/></query>",
                Some(StanzaError::NotAcceptable),
            ),
            (
                "<query xmlns='jabber:iq:private'><a xmlns='urn:a'/></query>",
                None,
            ),
            // One payload per iq: a vCard beside private XML would have the private element
            // stored where the vCard goes, readable by anyone.
            (
                "<vCard xmlns='vcard-temp'><FN>Public</FN></vCard><query xmlns='jabber:iq:private'><secret xmlns='urn:a'/></query>",
                Some(StanzaError::BadRequest),
            ),
            (
                "<query xmlns='jabber:iq:private'><secret xmlns='urn:a'/></query><vCard xmlns='vcard-temp'/>",
                Some(StanzaError::BadRequest),
            ),
        ];
        for (query, refused) in cases {
            let iq = iq(&format!(
                "<iq xmlns='jabber:client' type='get' id='g'>{query}</iq>"
            ));
            assert!(is_storage(&iq));
            assert_eq!(asked(&iq).err(), refused, "{query}");
        }
        // Each bookmark becomes a publish: a set holds a bounded number.
        let rooms = |n: usize| {
            let conferences: String = (0..n)
                .map(|i| format!("<conference jid='r{i}@chat.x'/>"))
                .collect();
            iq(&format!(
                "<iq xmlns='jabber:client' type='set' id='s'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>{conferences}</storage></query></iq>"
            ))
        };
        assert!(asked(&rooms(bookmarks::MAX_ROOMS)).is_ok());
        assert_eq!(
            asked(&rooms(bookmarks::MAX_ROOMS + 1)).err(),
            Some(StanzaError::PolicyViolation)
        );
    }
}
