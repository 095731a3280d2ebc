//! XEP-0207 §3–4: presence as the `presence` PEP node, and its classic view. A classic
//! `<presence/>` broadcast is a publish to (or, `unavailable`, a retraction from) the sender's
//! `presence` node; RFC 6121 subscription stanzas are operations on presence nodes
//! ([`SubscriptionKind`]); and a presence-node event becomes the `<presence/>` stanzas a
//! classic session gets ([`classic_presence`]).

use crate::jids::Bare;
use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use minidom::element::escape;
use verona_pubsub::{
    AccessModel, ConfigField, Effect, Event, ItemReply, MaxItems, Recipient, SendLastPublishedItem,
    Show, StoreOp, SubscriptionState,
};

use verona_stream::Wire;

use crate::xml::{BuilderExt, builder, ns, set_attr};

/// The PEP node whose items are an account's presence, one per available resource, and whose
/// subscribers are its presence subscribers (XEP-0207 §3).
pub const PRESENCE_NODE: &str = "presence";
/// The private PEP node keeping the names and groups classic clients give contacts.
pub const ROSTER_NODE: &str = "roster";
/// A subscription option of PEP services recording that a presence subscription was asked
/// for with `<presence type='subscribe'/>` (value `presence`): the subscriber then gets the
/// classic rendering unless its capabilities say otherwise (DESIGN §3).
pub const VIEW_OPTION: &str = "verona#view";

/// The `presence` node's configuration (DESIGN §2): subscriptions need the owner's approval,
/// presence never touches disk, going offline is a retraction, notifications name the
/// publishing resource (XEP-0033 `replyto`), and a new subscriber or a newly available contact
/// gets the current items.
pub fn presence_node_config() -> Vec<ConfigField> {
    vec![
        ConfigField::AccessModel(AccessModel::Authorize),
        ConfigField::PersistItems(false),
        ConfigField::NotifyRetract(true),
        ConfigField::ItemReply(ItemReply::Publisher),
        ConfigField::MaxItems(MaxItems::Max),
        ConfigField::SendLastPublishedItem(SendLastPublishedItem::OnSubAndPresence),
    ]
}

/// The four `type`s of RFC 6121 subscription presence, as pubsub operations on a presence node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionKind {
    /// Subscribe to the contact's presence node.
    Subscribe,
    /// Approve the contact's pending subscription to mine.
    Subscribed,
    /// End my subscription to the contact's presence node.
    Unsubscribe,
    /// Deny or end the contact's subscription to mine.
    Unsubscribed,
}

impl SubscriptionKind {
    pub fn from_type(kind: &str) -> Option<SubscriptionKind> {
        match kind {
            "subscribe" => Some(SubscriptionKind::Subscribe),
            "subscribed" => Some(SubscriptionKind::Subscribed),
            "unsubscribe" => Some(SubscriptionKind::Unsubscribe),
            "unsubscribed" => Some(SubscriptionKind::Unsubscribed),
            _ => None,
        }
    }

    /// The stanza's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionKind::Subscribe => "subscribe",
            SubscriptionKind::Subscribed => "subscribed",
            SubscriptionKind::Unsubscribe => "unsubscribe",
            SubscriptionKind::Unsubscribed => "unsubscribed",
        }
    }

    /// Whose presence node the operation acts on.
    pub fn owner(self, from: &BareJid, contact: &BareJid) -> BareJid {
        match self {
            SubscriptionKind::Subscribe | SubscriptionKind::Unsubscribe => contact.clone(),
            SubscriptionKind::Subscribed | SubscriptionKind::Unsubscribed => from.clone(),
        }
    }
}

/// What a `subscribe` carries besides its type that the contact gets with the request, as
/// Prosody and ejabberd pass it on: a `<status/>` saying why (RFC 6121 §3.1.1; Gajim and
/// Dino ask for one), the asker's XEP-0172 nick (§4.3), a XEP-0379 pre-authentication token.
/// Nothing else: a subscription request from a stranger carries no room invitation, no
/// addresses, nothing a client would act on. At most [`MAX_REQUEST_EXTENSIONS`] elements and
/// [`MAX_REQUEST_EXTENSION_BYTES`] in all (none past either), so a request stays the size of
/// one.
pub fn request_extensions(presence: &Element) -> Vec<Element> {
    if presence.attr("type") != Some("subscribe") {
        return Vec::new();
    }
    let extensions: Vec<Element> = presence
        .children()
        .filter(|child| {
            (child.is("status", ns::CLIENT) && child.children().next().is_none())
                || child.is("nick", NICK)
                || child.is("preauth", PREAUTH)
        })
        .cloned()
        .collect();
    let bytes: usize = extensions.iter().map(|e| String::from(e).len()).sum();
    if extensions.len() > MAX_REQUEST_EXTENSIONS || bytes > MAX_REQUEST_EXTENSION_BYTES {
        return Vec::new();
    }
    extensions
}

/// XEP-0172.
const NICK: &str = "http://jabber.org/protocol/nick";
/// XEP-0379.
const PREAUTH: &str = "urn:xmpp:pars:0";

/// Elements a subscription request passes on at most.
const MAX_REQUEST_EXTENSIONS: usize = 4;
/// Bytes of them at most.
const MAX_REQUEST_EXTENSION_BYTES: usize = 1024;

/// RFC 6121 §4.7.2.3: the priority an available `<presence/>` gives its resource (0 when
/// absent or out of range).
pub fn priority(presence: &Element) -> i8 {
    presence
        .get_child("priority", ns::CLIENT)
        .and_then(|p| p.text().trim().parse().ok())
        .unwrap_or(0)
}

/// A presence's `<show/>` (available when it has none, or one RFC 6121 does not define).
pub fn show(presence: &Element) -> Show {
    presence
        .get_child("show", ns::CLIENT)
        .and_then(|show| show.text().trim().parse().ok())
        .unwrap_or(Show::Online)
}

/// What an unavailable presence says besides going (RFC 6121 §4.5.2): its `id` and its
/// first `<status/>`, cut as an occupant's is, for the unavailable presence the server sends
/// for it; nothing else it carried goes on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Farewell {
    id: Option<String>,
    status: Option<String>,
}

impl Farewell {
    pub fn of(presence: &Element) -> Farewell {
        Farewell {
            id: presence.attr("id").map(str::to_owned),
            status: crate::eventing::shown::status(presence),
        }
    }

    /// Puts it on an unavailable presence made for the same resource.
    pub fn apply(&self, unavailable: &mut Element) {
        if let Some(id) = &self.id {
            set_attr(unavailable, "id", id);
        }
        if let Some(status) = &self.status {
            unavailable.append_child(
                builder("status", ns::CLIENT)
                    .append(status.as_str())
                    .build(),
            );
        }
    }
}

/// The classic view of a presence-node event (DESIGN §3): the `<presence/>` stanzas a classic
/// session gets instead (none for events classic presence has no word for). `None` when the
/// effect is not about a presence node.
pub fn classic_presence(owner: &BareJid, effect: &Effect) -> Option<Vec<Element>> {
    // Built from vetted fields, never forwarded as stored: the classic rendering is a
    // top-level stanza, so a stored payload must not decide what kind.
    let payloads = |items: &[verona_pubsub::Item]| -> Vec<Element> {
        items
            .iter()
            .filter_map(|item| {
                let payload: Element = item.payload.as_deref()?.parse().ok()?;
                vet(&payload, item.publisher.try_as_full().ok()?)
            })
            .collect()
    };
    match effect {
        Effect::Notify(notification) if notification.node == PRESENCE_NODE => {
            Some(match &notification.event {
                Event::Items { items } => payloads(items),
                Event::Retract { ids } => ids
                    .iter()
                    .map(|resource| {
                        builder("presence", ns::CLIENT)
                            .with("type", "unavailable")
                            .with("from", format!("{owner}/{resource}"))
                            .build()
                    })
                    .collect(),
                // RFC 6121 §3.1.5–3.1.6: the subscriber learns the owner's answer.
                Event::Subscription { state, .. } => {
                    let kind = match state {
                        SubscriptionState::Subscribed => "subscribed",
                        SubscriptionState::None => "unsubscribed",
                        _ => return Some(Vec::new()),
                    };
                    vec![
                        builder("presence", ns::CLIENT)
                            .with("type", kind)
                            .with("from", owner.as_str())
                            .build(),
                    ]
                }
                _ => Vec::new(),
            })
        }
        Effect::SendLastItems(last) if last.node == PRESENCE_NODE => Some(payloads(&last.items)),
        // RFC 6121 §3.1.3: the owner is asked with a subscription request.
        Effect::AuthorizationRequest(request) if request.node == PRESENCE_NODE => Some(vec![
            builder("presence", ns::CLIENT)
                .with("type", "subscribe")
                .with("from", request.subscriber.bare().as_str())
                .build(),
        ]),
        _ => None,
    }
}

/// The classic stanzas of one event, serialised once for all its recipients: a recipient's
/// copy is the stanza with its `to` put into the start tag, the rest shared (as pubsub
/// notifications share their payload), instead of each copy being built and serialised again.
pub struct ClassicStanzas(Vec<Prepared>);

enum Prepared {
    /// Serialised without `to`; the start tag's name ends at `at`.
    Shared { bytes: Bytes, at: usize },
    /// One that names a recipient already (none made here does): rebuilt for each.
    Addressed(Element),
}

impl ClassicStanzas {
    pub fn new(stanzas: &[Element]) -> Self {
        let prepared = stanzas.iter().map(|stanza| {
            if stanza.attr("to").is_some() {
                return Prepared::Addressed(stanza.clone());
            }
            let bytes = Bytes::from(verona_stream::element_bytes(stanza));
            let at = bytes
                .iter()
                .position(|b| matches!(b, b' ' | b'/' | b'>'))
                .unwrap_or(bytes.len());
            Prepared::Shared { bytes, at }
        });
        ClassicStanzas(prepared.collect())
    }

    /// Its stanzas as sent to `to`, each its own [`Wire`]: stream management counts and
    /// resends a `Wire` as one stanza.
    pub fn to(&self, to: &Jid) -> Vec<Wire> {
        let value = escape(to.as_str().as_bytes());
        self.0
            .iter()
            .map(|stanza| match stanza {
                Prepared::Shared { bytes, at } => {
                    let mut head = Vec::with_capacity(at + value.len() + 6);
                    head.extend_from_slice(&bytes[..*at]);
                    head.extend_from_slice(b" to='");
                    head.extend_from_slice(&value);
                    head.push(b'\'');
                    Wire::new(Bytes::from(head), bytes.slice(at..), Bytes::new())
                }
                Prepared::Addressed(stanza) => {
                    let mut stanza = stanza.clone();
                    set_attr(&mut stanza, "to", to.as_str());
                    Wire::from(verona_stream::element_bytes(&stanza))
                }
            })
            .collect()
    }
}

/// A publish request, as far as the `presence` node is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum PresencePublish {
    /// Not a publish to a `presence` node.
    Other,
    /// Available presence, vetted and stamped in place.
    Available,
    /// `<presence type='unavailable'/>`: a retraction of the resource's item.
    Unavailable,
    /// Anything else: refused with `bad-request` + `invalid-payload`.
    Invalid,
}

/// XEP-0207 §3: a `presence` node holds exactly one `<presence/>` (jabber:client) per item,
/// the item id is the publishing resource whatever the request says (the seed's Ex. 3 sends
/// none), and the presence is rebuilt by [`vet`] and stamped with that resource, so nobody can
/// publish presence in another's name, nor anything that is not presence.
pub fn vet_presence_publish(stanza: &mut Element, from: &FullJid) -> PresencePublish {
    let Some(publish) = stanza
        .get_child_mut("pubsub", ns::PUBSUB)
        .and_then(|pubsub| pubsub.get_child_mut("publish", ns::PUBSUB))
        .filter(|publish| publish.attr("node") == Some(PRESENCE_NODE))
    else {
        return PresencePublish::Other;
    };
    let mut items = publish.children_mut().filter(|c| c.is("item", ns::PUBSUB));
    let (Some(item), None) = (items.next(), items.next()) else {
        return PresencePublish::Invalid;
    };
    let nodes = item.take_nodes();
    let mut elements = nodes.into_iter().filter_map(|node| match node {
        minidom::Node::Element(el) => Some(Ok(el)),
        minidom::Node::Text(text) if text.trim().is_empty() => None,
        minidom::Node::Text(_) => Some(Err(())),
    });
    let (Some(Ok(payload)), None) = (elements.next(), elements.next()) else {
        return PresencePublish::Invalid;
    };
    if payload.is("presence", ns::CLIENT) && payload.attr("type") == Some("unavailable") {
        return PresencePublish::Unavailable;
    }
    let Some(vetted) = vet(&payload, from) else {
        return PresencePublish::Invalid;
    };
    set_attr(item, "id", from.resource().as_str());
    item.append_child(vetted);
    PresencePublish::Available
}

/// Whether a presence's child is a delay (XEP-0203), which only a server writes: a client's,
/// directed or broadcast, would pass for this server's.
pub fn is_delay(child: &Element) -> bool {
    child.is("delay", ns::DELAY) || child.is("x", "jabber:x:delay")
}

/// A client's directed presence without delays ([`is_delay`]), to whatever domain it goes.
pub fn strip_delays(presence: &mut Element) {
    if !presence.children().any(is_delay) {
        return;
    }
    let children: Vec<Element> = presence.take_contents_as_children().collect();
    for child in children.into_iter().filter(|child| !is_delay(child)) {
        presence.append_child(child);
    }
}

/// RFC 6121 §4.7: available presence rebuilt from what presence may carry, from `from`: at
/// most one `show` (away, chat, dnd, xa), `status` texts, at most one `priority` (-128..127),
/// and extension elements (any namespace but jabber:client, and no delay). A `show` or `priority` with
/// another value is left out (the presence is plain available, priority 0), as clients send
/// `<show/>` empty and other servers pass that. `None` for anything else: not a
/// `<presence/>`, a `type`, or another jabber:client child (a nested stanza, an `<error/>`).
pub fn vet(payload: &Element, from: &FullJid) -> Option<Element> {
    if !payload.is("presence", ns::CLIENT) || payload.attr("type").is_some() {
        return None;
    }
    let mut presence = builder("presence", ns::CLIENT).with("from", from.as_str());
    // RFC 6121 §4.2.2: the broadcast is the presence as sent, its id included.
    if let Some(id) = payload.attr("id") {
        presence = presence.with("id", id);
    }
    let (mut show, mut priority) = (false, false);
    for child in payload.children() {
        if is_delay(child) {
            continue;
        }
        if !child.has_ns(ns::CLIENT) {
            presence = presence.append(child.clone());
            continue;
        }
        let text = child.text();
        let kept = match child.name() {
            "show" if !show => {
                show = true;
                matches!(text.as_str(), "away" | "chat" | "dnd" | "xa")
            }
            "priority" if !priority => {
                priority = true;
                text.trim().parse::<i8>().is_ok()
            }
            "status" => true,
            _ => return None,
        };
        if !kept {
            continue;
        }
        // Text only; attributes (`xml:lang`) as they were.
        let mut vetted = Element::bare(child.name(), ns::CLIENT);
        *vetted.attrs_mut() = child.attrs().clone();
        vetted.append_text(text);
        presence = presence.append(vetted);
    }
    Some(presence.build())
}

/// Whether effects change who is subscribed to a `presence` node.
pub fn touches_presence_subscriptions(effects: &[Effect]) -> bool {
    effects.iter().any(|effect| match effect {
        Effect::Persist(
            StoreOp::SubscriptionSet { node, .. }
            | StoreOp::SubscriptionRemoved { node, .. }
            | StoreOp::NodeDeleted { node },
        ) => node == PRESENCE_NODE,
        Effect::Notify(notification) => {
            notification.node == PRESENCE_NODE
                && matches!(
                    notification.event,
                    Event::Subscription { .. } | Event::Delete { .. }
                )
        }
        _ => false,
    })
}

/// Every available session of an account, as a recipient outside any subscription.
pub fn recipient_account(account: &BareJid) -> Recipient {
    Recipient {
        jid: Jid::from(account.clone()),
        subids: Vec::new(),
        show_values: None,
        include_body: false,
    }
}

/// A recipient outside any subscription: a session getting an event by its capabilities or as
/// its own account's presence.
pub fn recipient(session: &FullJid) -> Recipient {
    Recipient {
        jid: Jid::from(session.clone()),
        subids: Vec::new(),
        show_values: None,
        include_body: false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use verona_pubsub::{AuthorizationRequest, Item, LastItems, Notification, NotificationType};

    use super::*;

    /// Each stanza as the classic view sent it before [`ClassicStanzas`]: a copy with `to`
    /// set, serialised on its own.
    fn addressed_one_by_one(stanzas: &[Element], to: &Jid) -> Vec<Element> {
        stanzas
            .iter()
            .map(|stanza| {
                let mut stanza = stanza.clone();
                set_attr(&mut stanza, "to", to.as_str());
                stanza
            })
            .collect()
    }

    /// Each wire parsed alone: each must hold exactly one stanza.
    fn parsed(wires: &[Wire]) -> Vec<Element> {
        wires
            .iter()
            .map(|wire| {
                let text = String::from_utf8(wire.to_vec()).unwrap();
                let wrapped: Element = format!("<w xmlns='jabber:client'>{text}</w>")
                    .parse()
                    .unwrap();
                let mut children = wrapped.children().cloned();
                let one = children.next().expect("a stanza");
                assert!(children.next().is_none(), "one stanza per wire: {text}");
                one
            })
            .collect()
    }

    #[test]
    fn classic_stanzas_are_addressed_to_each_recipient_alike() {
        let juliet: FullJid = "juliet@capulet.lit/balcony".parse().unwrap();
        let available = builder("presence", ns::CLIENT)
            .with("from", juliet.as_str())
            .append(builder("show", ns::CLIENT).append("away").build())
            .append(
                builder("status", ns::CLIENT)
                    .append("Wherefore art thou, 'Romeo' <&>?")
                    .build(),
            )
            .build();
        let gone = builder("presence", ns::CLIENT)
            .with("type", "unavailable")
            .with("from", "juliet@capulet.lit/chamber")
            .build();
        let addressed = builder("presence", ns::CLIENT)
            .with("to", "someone@else.lit")
            .with("from", juliet.as_str())
            .build();
        let recipients: Vec<Jid> = ["romeo@montague.lit/orch'ard", "nurse@capulet.lit"]
            .iter()
            .map(|jid| Jid::new(jid).unwrap())
            .collect();
        for stanzas in [
            vec![available.clone()],
            vec![available.clone(), gone.clone()],
            vec![gone, addressed, available],
        ] {
            let classic = ClassicStanzas::new(&stanzas);
            for to in &recipients {
                assert_eq!(parsed(&classic.to(to)), addressed_one_by_one(&stanzas, to));
            }
        }
        assert!(ClassicStanzas::new(&[]).to(&recipients[0]).is_empty());
    }

    fn owner() -> BareJid {
        BareJid::new("juliet@localhost").unwrap()
    }

    fn notify(node: &str, event: Event) -> Effect {
        Effect::Notify(Notification {
            node: node.to_owned(),
            event,
            recipients: Arc::from(Vec::new()),
            notification_type: NotificationType::Headline,
            presence_based_delivery: false,
            itemreply: ItemReply::Publisher,
        })
    }

    fn item(payload: &str) -> Item {
        Item {
            id: "balcony".to_owned(),
            payload: Some(Arc::from(payload)),
            publisher: Jid::new("juliet@localhost/balcony").unwrap(),
            published: SystemTime::UNIX_EPOCH,
        }
    }

    fn presence(kind: Option<&str>, from: &str) -> Element {
        let mut presence = builder("presence", ns::CLIENT).with("from", from);
        if let Some(kind) = kind {
            presence = presence.with("type", kind);
        }
        presence.build()
    }

    fn subscription(state: SubscriptionState) -> Event {
        Event::Subscription {
            jid: Jid::new("romeo@localhost").unwrap(),
            state,
            subid: None,
        }
    }

    /// Each presence-node effect and the `<presence/>` a classic session gets for it.
    #[test]
    fn events_become_classic_presence() {
        let available = "<presence xmlns='jabber:client' from='juliet@localhost/balcony'><show>away</show></presence>";
        let cases: Vec<(Effect, Option<Vec<Element>>)> = vec![
            (
                notify(
                    PRESENCE_NODE,
                    Event::Items {
                        items: vec![item(available)],
                    },
                ),
                Some(vec![available.parse().unwrap()]),
            ),
            (
                notify(
                    PRESENCE_NODE,
                    Event::Retract {
                        ids: vec!["balcony".to_owned()],
                    },
                ),
                Some(vec![presence(
                    Some("unavailable"),
                    "juliet@localhost/balcony",
                )]),
            ),
            (
                notify(PRESENCE_NODE, subscription(SubscriptionState::Subscribed)),
                Some(vec![presence(Some("subscribed"), "juliet@localhost")]),
            ),
            (
                notify(PRESENCE_NODE, subscription(SubscriptionState::None)),
                Some(vec![presence(Some("unsubscribed"), "juliet@localhost")]),
            ),
            // Classic presence has no word for a pending subscription, or a purge.
            (
                notify(PRESENCE_NODE, subscription(SubscriptionState::Pending)),
                Some(Vec::new()),
            ),
            (notify(PRESENCE_NODE, Event::Purge), Some(Vec::new())),
            (
                Effect::SendLastItems(LastItems::of(
                    Jid::new("romeo@localhost/orchard").unwrap(),
                    PRESENCE_NODE.to_owned(),
                    &verona_pubsub::NodeConfig::default(),
                    "s".into(),
                    vec![item(available)],
                )),
                Some(vec![available.parse().unwrap()]),
            ),
            (
                Effect::AuthorizationRequest(AuthorizationRequest {
                    node: PRESENCE_NODE.to_owned(),
                    subscriber: Jid::new("romeo@localhost/orchard").unwrap(),
                    subid: "s".into(),
                    owners: vec![owner()],
                }),
                Some(vec![presence(Some("subscribe"), "romeo@localhost")]),
            ),
            // Other nodes are not presence.
            (
                notify(
                    "moments",
                    Event::Items {
                        items: vec![item(available)],
                    },
                ),
                None,
            ),
        ];
        for (n, (effect, expected)) in cases.into_iter().enumerate() {
            assert_eq!(classic_presence(&owner(), &effect), expected, "case {n}");
        }
    }

    fn publish_of(payload: &str) -> Element {
        format!(
            "<iq xmlns='jabber:client' type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='presence'><item id='forged'>{payload}</item></publish></pubsub></iq>"
        )
        .parse()
        .unwrap()
    }

    fn item_of(publish: &Element) -> &Element {
        publish
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("publish", ns::PUBSUB))
            .and_then(|p| p.get_child("item", ns::PUBSUB))
            .unwrap()
    }

    /// A presence publish is re-addressed to the publishing resource and rebuilt from what
    /// presence may carry, whatever it says.
    #[test]
    fn a_presence_publish_is_vetted_and_stamped() {
        let from = FullJid::new("juliet@localhost/balcony").unwrap();
        let mut publish = publish_of(
            "<presence xmlns='jabber:client' from='romeo@localhost/x' id='i'><show>away</show><status xml:lang='en'>out</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
        );
        assert_eq!(
            vet_presence_publish(&mut publish, &from),
            PresencePublish::Available
        );
        let item = item_of(&publish);
        assert_eq!(item.attr("id"), Some("balcony"));
        let expected: Element = "<presence xmlns='jabber:client' from='juliet@localhost/balcony' id='i'><show>away</show><status xml:lang='en'>out</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>".parse().unwrap();
        assert_eq!(item.children().collect::<Vec<_>>(), [&expected]);

        let mut other: Element = "<iq xmlns='jabber:client' type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='moments'><item id='x'/></publish></pubsub></iq>".parse().unwrap();
        assert_eq!(
            vet_presence_publish(&mut other, &from),
            PresencePublish::Other
        );
    }

    /// A `show` or `priority` presence may not have is left out, not refused (clients send
    /// `<show/>` empty).
    #[test]
    fn values_presence_may_not_have_are_left_out() {
        let from = FullJid::new("juliet@localhost/balcony").unwrap();
        let cases = [
            ("<show/><status/>", "<status/>"),
            ("<show>online</show><priority>x</priority>", ""),
            (
                "<priority>200</priority><show>dnd</show>",
                "<show>dnd</show>",
            ),
        ];
        for (children, kept) in cases {
            let payload: Element = format!("<presence xmlns='jabber:client'>{children}</presence>")
                .parse()
                .unwrap();
            let expected: Element = format!(
                "<presence xmlns='jabber:client' from='juliet@localhost/balcony'>{kept}</presence>"
            )
            .parse()
            .unwrap();
            // As it goes out: serialized, then read as a client reads it.
            let vetted = vet(&payload, &from).map(|v| String::from(&v).parse::<Element>().unwrap());
            assert_eq!(vetted, Some(expected), "{children}");
        }
    }

    /// Issue #11 C1: only presence goes in, so only presence comes out.
    #[test]
    fn a_presence_item_is_presence_and_nothing_else() {
        let from = FullJid::new("juliet@localhost/balcony").unwrap();
        let cases = [
            (
                "<presence xmlns='jabber:client'/>",
                PresencePublish::Available,
            ),
            (
                "<presence xmlns='jabber:client' type='unavailable'/>",
                PresencePublish::Unavailable,
            ),
            (
                "<message xmlns='jabber:client' from='admin@localhost' type='chat'><body>hi</body></message>",
                PresencePublish::Invalid,
            ),
            (
                "<iq xmlns='jabber:client' type='set' id='r'><query xmlns='jabber:iq:roster'/></iq>",
                PresencePublish::Invalid,
            ),
            ("<presence xmlns='urn:example'/>", PresencePublish::Invalid),
            (
                "<presence xmlns='jabber:client' type='subscribed'/>",
                PresencePublish::Invalid,
            ),
            (
                "<presence xmlns='jabber:client'><message><body>nested</body></message></presence>",
                PresencePublish::Invalid,
            ),
            (
                "<presence xmlns='jabber:client'><show>asleep</show></presence>",
                PresencePublish::Available,
            ),
            (
                "<presence xmlns='jabber:client'><show>away</show><show>dnd</show></presence>",
                PresencePublish::Invalid,
            ),
            (
                "<presence xmlns='jabber:client'><priority>200</priority></presence>",
                PresencePublish::Available,
            ),
            (
                "<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>",
                PresencePublish::Invalid,
            ),
            ("", PresencePublish::Invalid),
            ("text", PresencePublish::Invalid),
        ];
        for (payload, expected) in cases {
            let mut publish = publish_of(payload);
            assert_eq!(
                vet_presence_publish(&mut publish, &from),
                expected,
                "{payload}"
            );
        }
    }

    /// A stored item that is not presence (stored before vetting, or by another path) is not
    /// rendered: the classic view never forwards a stored payload.
    #[test]
    fn the_classic_view_renders_only_presence() {
        let forged =
            "<message xmlns='jabber:client' from='admin@localhost'><body>x</body></message>";
        let effect = notify(
            PRESENCE_NODE,
            Event::Items {
                items: vec![item(forged)],
            },
        );
        assert_eq!(classic_presence(&owner(), &effect), Some(Vec::new()));
        let nested = "<presence xmlns='jabber:client' from='admin@localhost/x' type='subscribed'/>";
        let effect = notify(
            PRESENCE_NODE,
            Event::Items {
                items: vec![item(nested)],
            },
        );
        assert_eq!(classic_presence(&owner(), &effect), Some(Vec::new()));
    }

    /// RFC 6121 §3: whose presence node each subscription stanza acts on.
    #[test]
    fn subscription_stanzas_act_on_presence_nodes() {
        let from = FullJid::new("romeo@localhost/orchard").unwrap();
        let contact = owner();
        let cases = [
            ("subscribe", SubscriptionKind::Subscribe, "juliet@localhost"),
            (
                "unsubscribe",
                SubscriptionKind::Unsubscribe,
                "juliet@localhost",
            ),
            (
                "subscribed",
                SubscriptionKind::Subscribed,
                "romeo@localhost",
            ),
            (
                "unsubscribed",
                SubscriptionKind::Unsubscribed,
                "romeo@localhost",
            ),
        ];
        for (kind, expected, node_owner) in cases {
            let parsed = SubscriptionKind::from_type(kind).unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(
                parsed.owner(&from.bare(), &contact).as_str(),
                node_owner,
                "{kind}"
            );
        }
        assert_eq!(SubscriptionKind::from_type("probe"), None);
    }
}
