//! XEP-0402 §5.3 compatibility: the bookmarks a client keeps in private XML storage (XEP-0048
//! through XEP-0049, as profanity and older clients do) and the ones kept as items of the
//! `urn:xmpp:bookmarks:1` PEP node (Conversations, Dino, Gajim) are one set. The PEP node holds
//! the conferences; private storage's `storage:bookmarks` is a view of them, plus what it held
//! that has no PEP form (`<url/>`); a private-storage set, or a publish to the XEP-0048 PEP node
//! `storage:bookmarks`, is published to the node, one item per room, so the other clients hear
//! of it as of any bookmark change; and what a XEP-0402 client changes is written back to the
//! XEP-0048 node, for the clients that read bookmarks there.

use std::collections::HashMap;

use minidom::Element;

use crate::xml::{BuilderExt, builder, ns};

/// XEP-0402.
pub const NODE: &str = "urn:xmpp:bookmarks:1";
/// XEP-0048.
pub const LEGACY: &str = "storage:bookmarks";
/// XEP-0402 §5.3: what the account's disco#info says when the two are kept as one.
pub const COMPAT: &str = "urn:xmpp:bookmarks:1#compat";
/// Rooms one private-storage set may hold: each is a publish, so this bounds the storage
/// writes one iq makes (Prosody's PEP keeps as many items per node by default).
pub const MAX_ROOMS: usize = 256;

/// Whether `storage` (a private-storage set) holds no more rooms than [`MAX_ROOMS`].
pub fn within_bounds(storage: &Element) -> bool {
    storage
        .children()
        .filter(|c| c.is("conference", LEGACY))
        .count()
        <= MAX_ROOMS
}

/// One bookmark as both forms carry it.
#[derive(Debug, PartialEq, Eq)]
struct Bookmark<'a> {
    name: Option<&'a str>,
    /// An `xs:boolean` in both forms; anything else is left out.
    autojoin: Option<bool>,
    nick: Option<String>,
    password: Option<String>,
}

impl<'a> Bookmark<'a> {
    /// A `<conference/>` of either namespace.
    fn of(conference: &'a Element) -> Self {
        let text = |child: &str| {
            conference
                .get_child(child, conference.ns().as_str())
                .map(Element::text)
        };
        Bookmark {
            name: conference.attr("name"),
            autojoin: match conference.attr("autojoin") {
                Some("true" | "1") => Some(true),
                Some("false" | "0") => Some(false),
                _ => None,
            },
            nick: text("nick"),
            password: text("password"),
        }
    }

    fn to_element(&self, namespace: &str, jid: Option<&str>) -> Element {
        let mut conference = builder("conference", namespace);
        let autojoin = self.autojoin.map(|on| if on { "true" } else { "false" });
        for (attr, value) in [("jid", jid), ("name", self.name), ("autojoin", autojoin)] {
            if let Some(value) = value {
                conference = conference.with(attr, value);
            }
        }
        for (child, value) in [("nick", &self.nick), ("password", &self.password)] {
            if let Some(value) = value {
                conference = conference.append(builder(child, namespace).append(value.as_str()));
            }
        }
        conference.build()
    }
}

/// The private-storage element a get answers: what `legacy` (the last one stored) holds
/// besides conferences, then one conference per item of the node, oldest first.
/// `items` are the node's, newest first, as (item id, payload).
pub fn legacy_view(legacy: Option<&Element>, items: &[(String, Element)]) -> Element {
    let kept = legacy
        .into_iter()
        .flat_map(Element::children)
        .filter(|child| child.name() != "conference")
        .cloned();
    let conferences = items
        .iter()
        .rev()
        .filter(|(_, payload)| payload.is("conference", NODE))
        .map(|(id, payload)| Bookmark::of(payload).to_element(LEGACY, Some(id)));
    builder("storage", LEGACY)
        .append_all(kept)
        .append_all(conferences)
        .build()
}

/// The `<storage/>` a XEP-0060 publish to the XEP-0048 PEP node carries (XEP-0411's way of
/// keeping bookmarks), if `stanza` is one.
pub fn legacy_publish(stanza: &Element) -> Option<&Element> {
    let publish = stanza
        .get_child("pubsub", ns::PUBSUB)?
        .get_child("publish", ns::PUBSUB)
        .filter(|publish| publish.attr("node") == Some(LEGACY))?;
    publish
        .get_child("item", ns::PUBSUB)?
        .get_child("storage", LEGACY)
}

/// The XEP-0060 requests, from the account's own session to its PEP service, that make the
/// node hold exactly the conferences of `storage` (a private-storage set): a publish for each
/// one new or changed (keeping the `<extensions/>` the node's item had, which private storage
/// cannot carry), a retract for each item no longer there. A conference whose `jid` is not a
/// room's bare JID has no item id and is left out, as Prosody does. `items` are the node's
/// (id, payload); `exists` says whether the node does, so that only its creation names its
/// options (XEP-0402 §4: whitelist, persistent, as many items as there are rooms; an existing
/// node is given them first, see [`is_fit`]).
pub fn sync(storage: &Element, items: &[(String, Element)], exists: bool) -> Vec<Element> {
    let current: HashMap<&str, &Element> = items
        .iter()
        .map(|(id, payload)| (id.as_str(), payload))
        .collect();
    let mut wanted: Vec<(String, &Element)> = Vec::new();
    for conference in storage.children().filter(|c| c.is("conference", LEGACY)) {
        let Some(room) = conference
            .attr("jid")
            .and_then(|jid| crate::jids::parse_bare(jid).ok())
        else {
            continue;
        };
        let room = room.to_string();
        // Two conferences for one room: the last one is the bookmark, as a later publish to
        // the same item id would make it.
        wanted.retain(|(id, _)| *id != room);
        wanted.push((room, conference));
    }
    // What was stored before the bound (and is brought over) keeps its first rooms.
    wanted.truncate(MAX_ROOMS);
    let mut requests = Vec::new();
    let mut options = (!exists).then(|| crate::eventing::stored::publish_options(options(NODE)));
    for (room, conference) in &wanted {
        let bookmark = Bookmark::of(conference);
        let previous = current
            .get(room.as_str())
            .filter(|p| p.is("conference", NODE));
        if previous.is_some_and(|previous| Bookmark::of(previous) == bookmark) {
            continue;
        }
        let mut item = bookmark.to_element(NODE, None);
        if let Some(extensions) = previous.and_then(|p| p.get_child("extensions", NODE)) {
            item.append_child(extensions.clone());
        }
        let publish = builder("publish", ns::PUBSUB)
            .with("node", NODE)
            .append(
                builder("item", ns::PUBSUB)
                    .with("id", room.as_str())
                    .append(item),
            )
            .build();
        requests.push(request(
            "set",
            std::iter::once(publish).chain(options.take().map(|options| {
                builder("publish-options", ns::PUBSUB)
                    .append(options)
                    .build()
            })),
        ));
    }
    for (id, _) in items {
        if !wanted.iter().any(|(room, _)| room == id) {
            let retract = builder("retract", ns::PUBSUB)
                .with("node", NODE)
                .with("notify", "true")
                .append(builder("item", ns::PUBSUB).with("id", id.as_str()))
                .build();
            requests.push(request("set", [retract]));
        }
    }
    requests
}

/// The options of the XEP-0402 node (XEP-0402 §4), and of the XEP-0048 one, which holds one
/// item: both for their owner alone, and kept.
fn options(node: &str) -> &'static [(&'static str, &'static str)] {
    if node == NODE {
        &[
            ("pubsub#persist_items", "true"),
            ("pubsub#max_items", "max"),
            ("pubsub#max_payload_size", "max"),
            ("pubsub#access_model", "whitelist"),
            ("pubsub#send_last_published_item", "never"),
        ]
    } else {
        &[
            ("pubsub#persist_items", "true"),
            ("pubsub#max_payload_size", "max"),
            ("pubsub#access_model", "whitelist"),
        ]
    }
}

/// Whether `node`'s configuration is what it needs, as far as what it keeps, how large, and
/// who reads it go (a client may have asked the XEP-0402 node for a number of items rather
/// than `max`: as many as a set may hold will do).
pub fn is_fit(node: &str, config: &verona_pubsub::NodeConfig) -> bool {
    let keeps_all = node != NODE
        || match config.max_items {
            verona_pubsub::MaxItems::Max => true,
            verona_pubsub::MaxItems::Count(n) => n >= MAX_ROOMS,
        };
    // A payload bound of a client's own would refuse the server's copy after the other node
    // was written.
    config.access_model == verona_pubsub::AccessModel::Whitelist
        && config.persist_items
        && config.max_payload_size.is_none()
        && keeps_all
}

/// The XEP-0060 request (§8.2) that gives `node` its options.
pub fn configure(node: &str) -> Element {
    let form = crate::eventing::stored::submitted_form(
        "http://jabber.org/protocol/pubsub#node_config",
        options(node),
    );
    let configure = builder("configure", ns::PUBSUB_OWNER)
        .with("node", node)
        .append(form)
        .build();
    builder("iq", ns::CLIENT)
        .with("type", "set")
        .with("id", "bookmarks")
        .append(
            builder("pubsub", ns::PUBSUB_OWNER)
                .append(configure)
                .build(),
        )
        .build()
}

/// The XEP-0060 publish that makes the XEP-0048 node hold `storage` (creating it as
/// [`options`] say when `exists` is false).
pub fn legacy_publish_request(storage: Element, exists: bool) -> Element {
    let publish = builder("publish", ns::PUBSUB)
        .with("node", LEGACY)
        .append(
            builder("item", ns::PUBSUB)
                .with("id", "current")
                .append(storage),
        )
        .build();
    let options = (!exists).then(|| {
        builder("publish-options", ns::PUBSUB)
            .append(crate::eventing::stored::publish_options(options(LEGACY)))
            .build()
    });
    request("set", std::iter::once(publish).chain(options))
}

fn request(kind: &str, children: impl IntoIterator<Item = Element>) -> Element {
    builder("iq", ns::CLIENT)
        .with("type", kind)
        .with("id", "bookmarks")
        .append(builder("pubsub", ns::PUBSUB).append_all(children).build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    fn item(id: &str, xml: &str) -> (String, Element) {
        (id.to_owned(), el(xml))
    }

    /// (kind, node item or retract id) of each request.
    fn summary(requests: &[Element]) -> Vec<(String, String, bool)> {
        requests
            .iter()
            .map(|iq| {
                let pubsub = iq.get_child("pubsub", ns::PUBSUB).unwrap();
                let options = pubsub.has_child("publish-options", ns::PUBSUB);
                let (kind, op) = pubsub
                    .children()
                    .find(|c| c.name() != "publish-options")
                    .map(|op| (op.name().to_owned(), op))
                    .unwrap();
                assert_eq!(op.attr("node"), Some(NODE));
                let id = op
                    .get_child("item", ns::PUBSUB)
                    .unwrap()
                    .attr("id")
                    .unwrap();
                (kind, id.to_owned(), options)
            })
            .collect()
    }

    #[test]
    fn a_legacy_set_publishes_what_changed_and_retracts_what_went() {
        let stored = [
            item(
                "same@chat.x",
                "<conference xmlns='urn:xmpp:bookmarks:1' name='Same' autojoin='true'><nick>n</nick></conference>",
            ),
            item(
                "renamed@chat.x",
                "<conference xmlns='urn:xmpp:bookmarks:1' name='Old'><extensions><x xmlns='urn:ext'/></extensions></conference>",
            ),
            item("gone@chat.x", "<conference xmlns='urn:xmpp:bookmarks:1'/>"),
        ];
        let storage = el("<storage xmlns='storage:bookmarks'>\
            <conference jid='same@chat.x' name='Same' autojoin='true'><nick>n</nick></conference>\
            <conference jid='renamed@chat.x' name='New'/>\
            <conference jid='new@chat.x' autojoin='1'><password>pw</password></conference>\
            <conference jid='odd@chat.x' autojoin='maybe'/>\
            <conference jid='not a jid@/'/>\
            <conference name='no jid'/>\
            <url name='u' url='https://x'/>\
            </storage>");
        let requests = sync(&storage, &stored, true);
        assert_eq!(
            summary(&requests),
            [
                ("publish".to_owned(), "renamed@chat.x".to_owned(), false),
                ("publish".to_owned(), "new@chat.x".to_owned(), false),
                ("publish".to_owned(), "odd@chat.x".to_owned(), false),
                ("retract".to_owned(), "gone@chat.x".to_owned(), false),
            ]
        );
        let published = |n: usize| {
            requests[n]
                .get_child("pubsub", ns::PUBSUB)
                .and_then(|p| p.get_child("publish", ns::PUBSUB))
                .and_then(|p| p.get_child("item", ns::PUBSUB))
                .and_then(|i| i.get_child("conference", NODE))
                .cloned()
                .unwrap()
        };
        assert_eq!(
            published(0),
            el(
                "<conference xmlns='urn:xmpp:bookmarks:1' name='New'><extensions><x xmlns='urn:ext'/></extensions></conference>"
            )
        );
        assert_eq!(
            published(1),
            el(
                "<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'><password>pw</password></conference>"
            )
        );
        // `autojoin` is a boolean: what is not one is left out.
        assert_eq!(
            published(2),
            el("<conference xmlns='urn:xmpp:bookmarks:1'/>")
        );
    }

    #[test]
    fn only_the_first_publish_to_a_missing_node_names_its_options() {
        let storage = el("<storage xmlns='storage:bookmarks'>\
            <conference jid='a@chat.x'/><conference jid='b@chat.x'/><conference jid='a@chat.x' name='A'/>\
            </storage>");
        let requests = sync(&storage, &[], false);
        assert_eq!(
            summary(&requests),
            [
                ("publish".to_owned(), "b@chat.x".to_owned(), true),
                ("publish".to_owned(), "a@chat.x".to_owned(), false),
            ]
        );
        let empty = el("<storage xmlns='storage:bookmarks'/>");
        assert!(sync(&empty, &[], false).is_empty());
    }

    #[test]
    fn the_legacy_view_is_the_items_and_what_has_no_item_form() {
        let legacy = el("<storage xmlns='storage:bookmarks'>\
            <conference jid='stale@chat.x'/><url name='u' url='https://x'/>\
            </storage>");
        let items = [
            item(
                "newer@chat.x",
                "<conference xmlns='urn:xmpp:bookmarks:1' name='N' autojoin='true'><nick>me</nick><password>p</password><extensions/></conference>",
            ),
            item("older@chat.x", "<conference xmlns='urn:xmpp:bookmarks:1'/>"),
            item("odd@chat.x", "<other xmlns='urn:x'/>"),
        ];
        assert_eq!(
            legacy_view(Some(&legacy), &items),
            el("<storage xmlns='storage:bookmarks'>\
                <url name='u' url='https://x'/>\
                <conference jid='older@chat.x'/>\
                <conference jid='newer@chat.x' name='N' autojoin='true'><nick>me</nick><password>p</password></conference>\
                </storage>")
        );
        assert_eq!(
            legacy_view(None, &[]),
            el("<storage xmlns='storage:bookmarks'/>")
        );
    }
}
