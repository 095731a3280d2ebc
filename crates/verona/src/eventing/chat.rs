//! One-to-one conversations (seed §6, DESIGN §2 "One-to-one"): every conversation between two
//! local accounts is one whitelist node of `pubsub.<domain>`, named after the pair, whose two
//! parties are its publishers and subscribers and whose items are the conversation's archive.
//! A classic `<message type='chat'/>` is a publish to it; a notification of it is a classic
//! message (with its XEP-0359 archive id), a XEP-0280 carbon, or the seed's Ex. 20 event.
//! Pure: names, configuration, vetting and rendering.

use crate::jids::Bare;
use std::time::SystemTime;

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use verona_pubsub::{
    AccessModel, ConfigField, Effect, Item, ItemReply, LastItems, MaxItems, NodeConfig,
    NotificationType, SendLastPublishedItem, SubId,
};

use crate::xml::{BuilderExt, builder, ns};

/// Conversation nodes are `chat/<bare JID>/<bare JID>`, the two JIDs sorted: the same node
/// whoever writes first. Bare JIDs hold no `/`, so the name splits back into the pair.
const PREFIX: &str = "chat/";
/// XEP-0280 message carbons.
pub const CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0334 message processing hints.
const HINTS: &str = "urn:xmpp:hints";
const FORWARD: &str = "urn:xmpp:forward:0";

/// The conversation node of two accounts.
pub fn node(a: &BareJid, b: &BareJid) -> String {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    format!("{PREFIX}{low}/{high}")
}

/// Two accounts in the order their conversation's node names them ([`parties`]).
pub fn ordered(a: BareJid, b: BareJid) -> (BareJid, BareJid) {
    if a <= b { (a, b) } else { (b, a) }
}

/// The prefix of every conversation's storage key on `pubsub`: each conversation is a service
/// of its own, `pubsub.<domain>/<node>`, so that conversations are loaded, sharded and evicted
/// one by one (DESIGN §5a), never all at start.
pub fn key_prefix(pubsub: &str) -> String {
    format!("{pubsub}/{PREFIX}")
}

/// The two parties of a conversation node, `None` for any other node.
pub fn parties(node: &str) -> Option<(BareJid, BareJid)> {
    let (low, high) = node.strip_prefix(PREFIX)?.split_once('/')?;
    let (low, high) = (BareJid::new(low).ok()?, BareJid::new(high).ok()?);
    (low <= high && self::node(&low, &high) == node).then_some((low, high))
}

/// Whether `node` names a conversation.
pub fn is_conversation(node: &str) -> bool {
    parties(node).is_some()
}

/// What a conversation becomes when one party's account is deleted and the other's stays:
/// `<node>/<when, in microseconds>`, the survivor's archive of it alone. No live conversation
/// has that name, so whoever takes the deleted name next starts a new one; the time keeps
/// apart what the survivor said with each of the name's owners.
pub fn retired(node: &str, at: SystemTime) -> String {
    let micros = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{node}/{}", micros.as_micros())
}

/// The conversation a retired one ([`retired`]) was, `None` for any other node.
pub fn retired_from(node: &str) -> Option<&str> {
    let (live, at) = node.rsplit_once('/')?;
    (at.parse::<u128>().is_ok() && is_conversation(live)).then_some(live)
}

/// Messages of a conversation held in memory while it is resident: its node's `max_items`.
/// Its whole archive is in storage (up to [`ARCHIVED`]); messages leaving memory stay there.
pub const RESIDENT: usize = 20;
/// Messages one conversation's archive keeps at most: past it, or past
/// `[limits] conversation_archive_bytes`, the oldest go.
pub const ARCHIVED: usize = 10_000;

/// A conversation node's configuration: only its parties (publishers, set at creation) read
/// it, its last [`RESIDENT`] items are in memory and all of them are its archive, and
/// notifications are `chat` messages, kept for a party that is offline.
pub fn node_config() -> Vec<ConfigField> {
    vec![
        ConfigField::AccessModel(AccessModel::Whitelist),
        ConfigField::PersistItems(true),
        ConfigField::MaxItems(MaxItems::Count(RESIDENT)),
        ConfigField::NotificationType(NotificationType::Chat),
        ConfigField::ItemReply(ItemReply::Publisher),
        ConfigField::SendLastPublishedItem(SendLastPublishedItem::Never),
    ]
}

/// Whether a classic message is one of a conversation: `chat` or `normal` (also no `type`).
/// Headlines, groupchat and errors go as they are (RFC 6121 §8.5.2).
pub fn is_conversational(message: &Element) -> bool {
    matches!(message.attr("type"), None | Some("chat" | "normal"))
}

/// Whether a message is kept (archived, and stored for an offline recipient): what a person
/// wrote (see [`is_written`]) and what a client sends one to do something about a message or a
/// chat — a receipt or marker, a reaction, a retraction, an invitation, a call's signal — as
/// XEP-0160 §3 asks and as Prosody keeps them; never what asks not to be. Chat states alone,
/// and anything else without a body (a pubsub event sent as a `normal` message, say), only
/// pass through.
pub fn is_kept(message: &Element) -> bool {
    is_written(message)
        || (!is_refused(message)
            && message.children().any(|child| {
                KEPT_NAMESPACES.contains(&child.ns().as_str())
                    || child.is("subject", ns::CLIENT)
                    || child.is("x", "jabber:x:conference")
                    || (child.is("x", "http://jabber.org/protocol/muc#user")
                        && child.children().any(|c| c.name() == "invite"))
            }))
}

/// Whether a message, as sent, may be one [`is_kept`] keeps: it names a word that each such
/// message names. Looking for these first spares parsing the notifications that fill a slow
/// reader's queue (7 % of the server's CPU in the soak, where they are ended by the thousand).
pub fn may_be_kept(bytes: &[u8]) -> bool {
    let has = |word: &[u8]| bytes.windows(word.len()).any(|w| w == word);
    let words = [
        "body",
        "subject",
        "store",
        "encrypted",
        "jabber:x:conference",
        "muc#user",
    ];
    has(b"message") && (words.iter().chain(&KEPT_NAMESPACES)).any(|word| has(word.as_bytes()))
}

/// Payloads that make a message without a body worth keeping (a subject alone is one too).
const KEPT_NAMESPACES: [&str; 9] = [
    "jabber:x:oob",
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
    "urn:xmpp:reactions:0",
    "urn:xmpp:message-retract:0",
    "urn:xmpp:message-retract:1",
    "urn:xmpp:fasten:0",
    "urn:xmpp:jingle-message:0",
    "urn:xmpp:jingle-message:1",
];

/// Whether a message is what a person wrote — a body, an encrypted payload — or asks to be
/// kept (XEP-0334 `<store/>`), and does not ask not to be: what a room keeps in its history.
pub fn is_written(message: &Element) -> bool {
    let written = message.has_child("body", ns::CLIENT)
        || message.has_child("store", HINTS)
        || message
            .children()
            .any(|c| c.name() == "encrypted" && c.ns() != ns::CLIENT);
    written && !is_refused(message)
}

/// Whether a message says nothing but how a chat goes (XEP-0085 chat states, with a thread,
/// ids and hints): one that may vanish when nobody is there to see it, where anything else
/// not kept bounces (RFC 6121 §8.5.2.2.1).
pub fn is_only_state(message: &Element) -> bool {
    message.children().all(|child| {
        child.is("thread", ns::CLIENT)
            || [CHAT_STATES, HINTS, crate::eventing::archive::SID].contains(&child.ns().as_str())
    })
}

const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";

fn is_refused(message: &Element) -> bool {
    message.has_child("no-store", HINTS) || message.has_child("no-permanent-store", HINTS)
}

/// Whether a message gets carbon copies (XEP-0280 §6): chat messages, and normal ones that say
/// something, unless marked `<private/>` or `<no-copy/>`.
pub fn is_copied(message: &Element) -> bool {
    let kind = message.attr("type");
    let copied = kind == Some("chat") || (kind != Some("headline") && is_kept(message));
    copied && !message.has_child("private", CARBONS) && !message.has_child("no-copy", HINTS)
}

/// Children a client may not send in a message it writes: what the server writes (archive
/// ids of this server, delays, the forwarding of carbons and archives, extended addresses).
pub fn server_written(child: &Element) -> bool {
    [
        ("stanza-id", crate::eventing::archive::SID),
        ("delay", ns::DELAY),
        ("x", "jabber:x:delay"),
        ("addresses", ns::ADDRESS),
        ("sent", CARBONS),
        ("received", CARBONS),
        ("result", crate::eventing::archive::NS),
        ("event", "http://jabber.org/protocol/pubsub#event"),
    ]
    .iter()
    .any(|(name, namespace)| child.is(*name, *namespace))
        || (child.ns() == ns::CLIENT && child.name() == "error")
}

/// Whether a message is a service's word rather than a person's: a pubsub event (a PEP or
/// pubsub service's notification) or an archive's result (XEP-0313 §4), which the other
/// server's entities send from bare JIDs and a conversation's vetting would strip.
pub fn is_service_message(message: &Element) -> bool {
    message.children().any(|child| {
        child.is("event", "http://jabber.org/protocol/pubsub#event")
            || child.is("result", crate::eventing::archive::NS)
    })
}

/// A message that is not a conversation's (a headline, a groupchat or error message, a
/// service's word ([`is_service_message`]), or one from a domain) from `sender` to an account of
/// `domain`, without what would pass for this server's word: a `stanza-id` by an entity of
/// this server other than the sender (XEP-0359 §5: by the
/// recipient it would pass for its archive's), the wrappers of carbons, which only the
/// account's own server sends it, and archive results from an entity of this server. What
/// other servers' entities legitimately add (pubsub events, delays, extended addresses, a
/// remote room's own ids, the results of a query of their archives) passes: a result from
/// another server's entity can only pass for its own archive's, which the client asked
/// (XEP-0313 §4: clients check that results come from the archive they queried).
pub fn strip_forged(message: &mut Element, sender: &Jid, domain: &str) {
    // Compared as the JIDs they are (RFC 7622: case, and a domain's final dot, do not make
    // another address).
    let of_this_server = |jid_domain: &str| {
        let jid_domain = jid_domain.trim_end_matches('.');
        jid_domain == domain
            || jid_domain
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.'))
    };
    let local_sender = of_this_server(sender.domain().as_str());
    let sender = sender.bare();
    // One that is no JID is no sender's own either.
    let ours = |by: &str| {
        let Ok(by) = BareJid::new(by) else {
            return true;
        };
        let by_domain = by.domain().as_str().trim_end_matches('.');
        let by = by.node().map_or_else(
            || by_domain.to_owned(),
            |node| format!("{node}@{by_domain}"),
        );
        by != sender.as_str() && of_this_server(by_domain)
    };
    let forged = |child: &Element| {
        (child.is("stanza-id", crate::eventing::archive::SID) && child.attr("by").is_none_or(ours))
            || child.is("sent", CARBONS)
            || child.is("received", CARBONS)
            || (local_sender && child.is("result", crate::eventing::archive::NS))
    };
    if !message.children().any(forged) {
        return;
    }
    let children: Vec<Element> = message.take_contents_as_children().collect();
    for child in children {
        if !forged(&child) {
            message.append_child(child);
        }
    }
}

/// A message as it is kept and delivered: from the sending session, to the address the sender
/// gave, with its type and id, and what it carries but what only the server writes.
pub fn vetted(message: Element, from: &Jid, to: &Jid) -> Element {
    rebuilt(message, &[("from", from.as_str()), ("to", to.as_str())])
}

/// A message (or presence) published as an item of a node that is not a conversation (seed
/// Ex. 19), as its subscribers get it: with its type and id and what it carries, but no
/// addresses and nothing only the server writes, so that it cannot pass for another's stanza
/// or be back-dated; its publisher is the notification's `replyto`.
pub fn vetted_item(stanza: Element) -> Element {
    rebuilt(stanza, &[])
}

/// Each `<message xmlns='jabber:client'/>` item of a publish in `stanza`, [`vetted_item`], and
/// each `<presence xmlns='jabber:client'/>` the same way, but on an account's own `presence`
/// node (`own_presence`), whose items are vetted and stamped as presence already.
pub fn vet_published_stanzas(stanza: &mut Element, own_presence: bool) {
    let Some(publish) = stanza
        .get_child_mut("pubsub", crate::xml::ns::PUBSUB)
        .and_then(|pubsub| pubsub.get_child_mut("publish", crate::xml::ns::PUBSUB))
    else {
        return;
    };
    let vetted = |child: &Element| {
        child.is("message", ns::CLIENT) || (!own_presence && child.is("presence", ns::CLIENT))
    };
    for item in publish.children_mut() {
        if !item.children().any(vetted) {
            continue;
        }
        let children: Vec<Element> = item.take_contents_as_children().collect();
        for child in children {
            let child = match vetted(&child) {
                true => vetted_item(child),
                false => child,
            };
            item.append_child(child);
        }
    }
}

fn rebuilt(mut message: Element, addresses: &[(&str, &str)]) -> Element {
    let name = message.name().to_owned();
    let mut kept = builder(&name, ns::CLIENT);
    for (attr, value) in addresses {
        kept = kept.with(attr, *value);
    }
    for attr in ["type", "id"] {
        if let Some(value) = message.attr(attr) {
            kept = kept.with(attr, value);
        }
    }
    let mut kept = kept.build();
    crate::xml::copy_lang(&message, &mut kept);
    // Moved, not cloned: the client's message is not needed once vetted.
    for child in message.take_contents_as_children() {
        if !server_written(&child) {
            kept.append_child(child);
        }
    }
    kept
}

/// The message as one party's session gets it: with its place in that party's archive
/// (XEP-0359 `stanza-id` by the party's bare JID), and for one delivered late its XEP-0203
/// delay.
pub fn delivered(
    message: &Element,
    archive_id: Option<&str>,
    party: &BareJid,
    late: Option<(SystemTime, &str)>,
) -> Element {
    let mut message = message.clone();
    if let Some(id) = archive_id {
        message.append_child(crate::eventing::archive::stanza_id(id, party.as_str()));
    }
    // Stamped once: a message kept again (its session ended before it was acknowledged)
    // keeps the time it first came.
    if let Some((at, domain)) = late
        && !has_delay_from(&message, domain)
    {
        message.append_child(delay(at, domain));
    }
    message
}

/// XEP-0203: `domain` had the message at `at`.
pub fn delay(at: SystemTime, domain: &str) -> Element {
    builder("delay", ns::DELAY)
        .with("from", domain)
        .with("stamp", verona_pubsub_xmpp::stamp(at))
        .build()
}

/// A kept message of a conversation (XEP-0160) as its node's event for `party`'s sessions that
/// speak XEP-0207 (DESIGN §3): the item it was published as (the message without what its
/// delivery added: its place in `party`'s archive and `domain`'s delay), sent as a node's
/// earlier items are, with the delay of when `domain` first had it (else `at`), to `party`'s
/// bare JID as the live event is. `None` for anything else kept (an invitation, a message
/// node's event).
pub fn kept_event(
    message: &Element,
    party: &BareJid,
    domain: &str,
    at: SystemTime,
) -> Option<Effect> {
    let publisher = message
        .attr("from")
        .and_then(|from| FullJid::new(from).ok())?;
    let to = message.attr("to").and_then(|to| Jid::new(to).ok())?;
    let sid = crate::eventing::archive::SID;
    let in_archive =
        |child: &Element| child.is("stanza-id", sid) && child.attr("by") == Some(party.as_str());
    let archive_id = message.children().find(|c| in_archive(c))?.attr("id")?;
    if to.to_bare() != *party {
        return None;
    }
    let archive_id = archive_id.to_owned();
    let mut published = at;
    let mut payload = message.clone();
    let children: Vec<Element> = payload.take_contents_as_children().collect();
    for child in children {
        if child.is("delay", ns::DELAY) && child.attr("from") == Some(domain) {
            let stamp = child.attr("stamp").unwrap_or_default();
            published = crate::eventing::archive::time(stamp).unwrap_or(at);
        } else if !in_archive(&child) {
            payload.append_child(child);
        }
    }
    let item = Item {
        id: archive_id,
        payload: Some(String::from(&payload).into()),
        publisher: Jid::from(publisher.clone()),
        published,
    };
    let mut config = NodeConfig::default();
    for field in node_config() {
        config.set(field);
    }
    let node = node(&publisher.to_bare(), party);
    // The party's subscription is by its bare JID; earlier items do not name it.
    let to = Jid::from(party.clone());
    let items = LastItems::of(to, node, &config, SubId::default(), vec![item]);
    Some(Effect::SendLastItems(items))
}

/// The conversation (its storage key) and archive id of a message `account` got.
pub fn archived_as(message: &Element, pubsub: &str, account: &BareJid) -> Option<(String, String)> {
    let party = |name| {
        message
            .attr(name)
            .and_then(|jid| Jid::new(jid).ok())
            .map(|jid| jid.to_bare())
    };
    let node = node(&party("from")?, &party("to")?);
    let id = message
        .get_child("stanza-id", crate::eventing::archive::SID)
        .filter(|sid| sid.attr("by") == Some(account.as_str()))?
        .attr("id")?;
    Some((format!("{pubsub}/{node}"), id.to_owned()))
}

/// [`archived_as`] as one string: what a session remembers of a message offered to it late.
pub fn archive_key(message: &Element, pubsub: &str, account: &BareJid) -> Option<String> {
    archived_as(message, pubsub, account).map(|(service, id)| format!("{service} {id}"))
}

/// Whether `message` carries a delay stamped by `domain`.
pub fn has_delay_from(message: &Element, domain: &str) -> bool {
    message
        .children()
        .any(|child| child.is("delay", ns::DELAY) && child.attr("from") == Some(domain))
}

/// [`delivered`] with its place in the archive and no delay, serialized, made from `stored`:
/// the message as its conversation stores it (`String::from` of the element). The stanza-id
/// goes in before the end tag, instead of the element being cloned and serialized again for
/// each party. `None` if `stored` does not end as a serialized message does.
pub fn delivered_text(stored: &str, archive_id: &str, party: &BareJid) -> Option<String> {
    const END: &str = "</message>";
    let head = match stored.strip_suffix(END) {
        Some(head) => (head, ""),
        // A message with no children ends its start tag with `/>`.
        None => (stored.strip_suffix("/>")?, ">"),
    };
    // Written as text: building the element only to serialize it took half of a delivery's
    // CPU in a profile of the chat benchmark (issue #13).
    let id = minidom::element::escape(archive_id.as_bytes());
    let by = minidom::element::escape(party.as_str().as_bytes());
    let (id, by) = (String::from_utf8_lossy(&id), String::from_utf8_lossy(&by));
    let mut out = String::with_capacity(stored.len() + id.len() + by.len() + 64);
    out.push_str(head.0);
    out.push_str(head.1);
    out.push_str("<stanza-id xmlns='");
    out.push_str(crate::eventing::archive::SID);
    out.push_str("' id='");
    out.push_str(&id);
    out.push_str("' by='");
    out.push_str(&by);
    out.push_str("'/>");
    out.push_str(END);
    Some(out)
}

/// Which side of a conversation a carbon copy shows (XEP-0280 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    /// Sent by another of the account's resources.
    Sent,
    /// Received by another of the account's resources.
    Received,
}

/// A carbon copy of `message` for `to`, another resource of `account`.
pub fn carbon(message: &Element, copy: Copy, account: &BareJid, to: &FullJid) -> Element {
    let side = match copy {
        Copy::Sent => "sent",
        Copy::Received => "received",
    };
    let forwarded = builder("forwarded", FORWARD)
        .append(message.clone())
        .build();
    // The copy of an error is no error itself: a client takes a `type='error'` message
    // from its own account for a failure of its own.
    let kind = match message.attr("type") {
        None | Some("error") => "normal",
        Some(kind) => kind,
    };
    builder("message", ns::CLIENT)
        .with("from", account.as_str())
        .with("to", to.as_str())
        .with("type", kind)
        .append(builder(side, CARBONS).append(forwarded).build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    fn bare(jid: &str) -> BareJid {
        BareJid::new(jid).unwrap()
    }

    #[test]
    fn a_pair_has_one_node_and_the_node_names_the_pair() {
        let (juliet, romeo) = (bare("juliet@localhost"), bare("romeo@localhost"));
        let node = node(&romeo, &juliet);
        assert_eq!(node, "chat/juliet@localhost/romeo@localhost");
        assert_eq!(self::node(&juliet, &romeo), node);
        assert_eq!(parties(&node), Some((juliet.clone(), romeo)));
        assert_eq!(
            parties("chat/juliet@localhost/juliet@localhost"),
            Some((juliet.clone(), juliet))
        );
        for other in [
            "presence",
            "chat/romeo@localhost/juliet@localhost",
            "chat/juliet@localhost",
            "chat/juliet@localhost/romeo@localhost/x",
            "chat/@@/romeo@localhost",
            "me_and_romeo",
        ] {
            assert_eq!(parties(other), None, "{other}");
        }
    }

    #[test]
    fn a_retired_conversation_names_the_one_it_was_and_is_none() {
        let node = "chat/juliet@localhost/romeo@localhost";
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        let retired = retired(node, at);
        assert_eq!(retired, format!("{node}/1700000000123456"));
        assert_eq!(retired_from(&retired), Some(node));
        assert!(!is_conversation(&retired));
        for other in [node, "chat/juliet@localhost/romeo@localhost/x", "diary/1"] {
            assert_eq!(retired_from(other), None, "{other}");
        }
    }

    /// The spliced rendering is byte for byte the element's: with children, without, with
    /// escaped text and attributes, a language and children of other namespaces.
    #[test]
    fn forged_archive_ids_are_known_however_the_jid_is_spelt() {
        let sender = Jid::new("juliet@localhost/balcony").unwrap();
        for (by, stripped) in [
            (Some("romeo@localhost"), true),
            (Some("ROMEO@LocalHost"), true),
            (Some("romeo@localhost."), true),
            (Some("localhost"), true),
            (Some("chat.localhost"), true),
            (Some("not@a@jid"), true),
            (None, true),
            (Some("juliet@localhost"), false),
            (Some("JULIET@localhost."), false),
            (Some("room@chat.montague.lit"), false),
        ] {
            let by = by.map_or_else(String::new, |by| format!(" by='{by}'"));
            let mut message = el(&format!(
                "<message xmlns='jabber:client'><body>hi</body>\
                 <stanza-id xmlns='urn:xmpp:sid:0' id='x'{by}/></message>"
            ));
            strip_forged(&mut message, &sender, "localhost");
            let kept = message.has_child("stanza-id", "urn:xmpp:sid:0");
            assert_eq!(kept, !stripped, "{by}");
            assert!(message.has_child("body", ns::CLIENT));
        }
    }

    /// Archive results pass from another server's entities (they can only be their own
    /// archives'), never from this server's; carbons never pass.
    #[test]
    fn archive_results_pass_only_from_other_servers() {
        for (sender, result_kept) in [
            ("room@chat.montague.lit", true),
            ("montague.lit", true),
            ("romeo@localhost/orchard", false),
            ("room@chat.localhost", false),
            ("ROOM@Chat.LocalHost.", false),
        ] {
            let mut message = el("<message xmlns='jabber:client'>\
                 <result xmlns='urn:xmpp:mam:2' queryid='q' id='1'/>\
                 <received xmlns='urn:xmpp:carbons:2'/></message>");
            strip_forged(&mut message, &Jid::new(sender).unwrap(), "localhost");
            let kept = message.has_child("result", crate::eventing::archive::NS);
            assert_eq!(kept, result_kept, "{sender}");
            assert!(!message.has_child("received", CARBONS), "{sender}");
        }
    }

    #[test]
    fn a_stored_message_delivered_is_the_message_with_its_stanza_id() {
        let party = bare("juliet@localhost");
        for xml in [
            "<message xmlns='jabber:client' type='chat' id='1'><body>hi</body></message>",
            "<message xmlns='jabber:client' type='chat' id='2'/>",
            "<message xmlns='jabber:client' id='a&amp;b&apos;'><body>&lt;3 &amp; more</body></message>",
            "<message xmlns='jabber:client' xml:lang='it'><body>ciao</body><active xmlns='http://jabber.org/protocol/chatstates'/><x xmlns='urn:example'><y/></x></message>",
        ] {
            let message = vetted(
                el(xml),
                &FullJid::new("romeo@localhost/orchard").unwrap(),
                &Jid::new("juliet@localhost").unwrap(),
            );
            let stored = String::from(&message);
            let expected = delivered(&message, Some("x'<1"), &party, None);
            let spliced = delivered_text(&stored, "x'<1", &party).unwrap();
            assert_eq!(el(&spliced), expected, "{xml}");
        }
        assert_eq!(delivered_text("<message", "1", &party), None);
    }

    /// A kept message, whether stamped when first kept or not, is the item it was published
    /// as, dated when the server first had it; an invitation or a message node's event kept
    /// for the party is no conversation's.
    #[test]
    fn a_kept_message_is_its_conversations_item() {
        use std::time::{Duration, UNIX_EPOCH};
        let party = bare("juliet@localhost");
        let message = vetted(
            el(
                "<message xmlns='jabber:client' type='chat' id='1'><body>hi</body>\
                  <delay xmlns='urn:xmpp:delay' stamp='1999-01-01T00:00:00Z'/></message>",
            ),
            &FullJid::new("romeo@localhost/orchard").unwrap(),
            &Jid::new("juliet@localhost").unwrap(),
        );
        let first = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let now = first + Duration::from_secs(60);
        for (came, published) in [(None, now), (Some(first), first)] {
            let kept = delivered(
                &message,
                Some("a1"),
                &party,
                came.map(|at| (at, "localhost")),
            );
            let Some(Effect::SendLastItems(last)) = kept_event(&kept, &party, "localhost", now)
            else {
                panic!("no event for {kept:?}");
            };
            assert_eq!(last.to, Jid::from(party.clone()));
            assert_eq!(last.node, "chat/juliet@localhost/romeo@localhost");
            assert_eq!(last.notification_type, NotificationType::Chat);
            let [item] = last.items.as_slice() else {
                panic!("one item");
            };
            assert_eq!(item.id, "a1");
            assert_eq!(item.publisher.as_str(), "romeo@localhost/orchard");
            assert_eq!(item.published, published);
            assert_eq!(el(item.payload.as_deref().unwrap()), message);
        }
        for other in [
            "<message xmlns='jabber:client' from='room@chat.localhost' to='juliet@localhost'>\
               <x xmlns='http://jabber.org/protocol/muc#user'><invite from='romeo@localhost'/></x></message>",
            "<message xmlns='jabber:client' from='pubsub.localhost' to='juliet@localhost'>\
               <event xmlns='http://jabber.org/protocol/pubsub#event'/></message>",
            "<message xmlns='jabber:client' from='romeo@localhost/orchard' to='juliet@localhost'>\
               <body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' id='a1' by='romeo@localhost'/></message>",
        ] {
            assert!(
                kept_event(&el(other), &party, "localhost", now).is_none(),
                "{other}"
            );
        }
    }

    #[test]
    fn what_is_kept_and_what_is_copied() {
        let m = |inner: &str, kind: &str| {
            el(&format!(
                "<message xmlns='jabber:client' {kind}>{inner}</message>"
            ))
        };
        // (message, kept, copied)
        let cases = [
            (m("<body>hi</body>", "type='chat'"), true, true),
            (m("<body>hi</body>", ""), true, true),
            (m("<body>hi</body>", "type='normal'"), true, true),
            (
                m(
                    "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
                    "type='chat'",
                ),
                false,
                true,
            ),
            (
                m("<received xmlns='urn:xmpp:receipts' id='1'/>", ""),
                true,
                true,
            ),
            (
                m(
                    "<displayed xmlns='urn:xmpp:chat-markers:0' id='1'/><thread>t</thread>",
                    "type='chat'",
                ),
                true,
                true,
            ),
            (
                m(
                    "<x xmlns='jabber:x:conference' jid='room@chat.localhost'/>",
                    "",
                ),
                true,
                true,
            ),
            (
                m(
                    "<reactions xmlns='urn:xmpp:reactions:0' id='1'><reaction>x</reaction></reactions>",
                    "type='chat'",
                ),
                true,
                true,
            ),
            (
                m(
                    "<active xmlns='http://jabber.org/protocol/chatstates'/><thread>t</thread><origin-id xmlns='urn:xmpp:sid:0' id='o'/><no-copy xmlns='urn:xmpp:hints'/>",
                    "type='chat'",
                ),
                false,
                false,
            ),
            (m("", "type='normal'"), false, false),
            (
                m(
                    "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'/></event>",
                    "",
                ),
                false,
                false,
            ),
            (
                m(
                    "<x xmlns='http://jabber.org/protocol/muc#user'><invite to='a@b'/></x>",
                    "",
                ),
                true,
                true,
            ),
            (
                m(
                    "<encrypted xmlns='eu.siacs.conversations.axolotl'/>",
                    "type='chat'",
                ),
                true,
                true,
            ),
            (
                m(
                    "<body>x</body><no-store xmlns='urn:xmpp:hints'/>",
                    "type='chat'",
                ),
                false,
                true,
            ),
            (
                m(
                    "<body>x</body><private xmlns='urn:xmpp:carbons:2'/>",
                    "type='chat'",
                ),
                true,
                false,
            ),
            (
                m(
                    "<body>x</body><no-copy xmlns='urn:xmpp:hints'/>",
                    "type='chat'",
                ),
                true,
                false,
            ),
            (m("<store xmlns='urn:xmpp:hints'/>", ""), true, true),
            (m("<body>x</body>", "type='headline'"), true, false),
            (
                m(
                    "<retract xmlns='urn:xmpp:message-retract:1' id='1'/>",
                    "type='chat'",
                ),
                true,
                true,
            ),
            (
                m(
                    "<propose xmlns='urn:xmpp:jingle-message:0' id='c'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>",
                    "type='chat'",
                ),
                true,
                true,
            ),
        ];
        for (message, kept, copied) in cases {
            let xml = String::from(&message);
            assert_eq!(is_kept(&message), kept, "kept: {xml}");
            // What is kept passes the look before parsing (sessions ending keep it).
            assert!(!kept || may_be_kept(xml.as_bytes()), "may be kept: {xml}");
            assert_eq!(is_copied(&message), copied, "copied: {xml}");
        }
    }

    #[test]
    fn a_vetted_message_keeps_what_the_sender_wrote_only() {
        let sent = el(
            "<message xmlns='jabber:client' from='x@evil' to='romeo@localhost' type='chat' id='m1' xml:lang='en'>\
            <body>hi</body>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='romeo@localhost'/>\
            <delay xmlns='urn:xmpp:delay' stamp='2000-01-01T00:00:00Z'/>\
            <x xmlns='jabber:x:delay' stamp='20000101T00:00:00'/>\
            <sent xmlns='urn:xmpp:carbons:2'/>\
            <active xmlns='http://jabber.org/protocol/chatstates'/>\
            <error type='cancel'/>\
            </message>",
        );
        let from = FullJid::new("juliet@localhost/balcony").unwrap();
        let to = Jid::new("romeo@localhost").unwrap();
        let kept = vetted(sent, &from, &to);
        let expected = el(
            "<message xmlns='jabber:client' from='juliet@localhost/balcony' to='romeo@localhost' type='chat' id='m1' xml:lang='en'>\
            <body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        assert_eq!(kept, expected);
        let got = delivered(&kept, Some("a1"), &bare("romeo@localhost"), None);
        let expected = el(
            "<message xmlns='jabber:client' from='juliet@localhost/balcony' to='romeo@localhost' type='chat' id='m1' xml:lang='en'>\
            <body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='a1' by='romeo@localhost'/></message>",
        );
        assert_eq!(got, expected);
    }

    #[test]
    fn carbons_forward_the_message() {
        let message = el(
            "<message xmlns='jabber:client' from='juliet@localhost/balcony' to='romeo@localhost' type='chat'><body>hi</body></message>",
        );
        let to = FullJid::new("juliet@localhost/chamber").unwrap();
        let copy = carbon(&message, Copy::Sent, &bare("juliet@localhost"), &to);
        let expected = el(
            "<message xmlns='jabber:client' from='juliet@localhost' to='juliet@localhost/chamber' type='chat'>\
               <sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
                 <message xmlns='jabber:client' from='juliet@localhost/balcony' to='romeo@localhost' type='chat'><body>hi</body></message>\
               </forwarded></sent></message>",
        );
        assert_eq!(copy, expected);
    }
}
