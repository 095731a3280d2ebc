//! What a classic occupant's presence shows the others in a room (XEP-0045 §7.7), kept in its
//! subscription options so that those who enter later see it too (§7.2.3): its `<show/>` and
//! `<status/>`, its capabilities (XEP-0115, which clients read to know what an occupant can
//! do), its avatar's hash (XEP-0153, which clients show beside its messages) and its idle time
//! (XEP-0319). Each is rebuilt by the server from vetted, bounded values: nothing else of the
//! presence, and nothing as the occupant wrote it, reaches the others.

use minidom::Element;
use verona_pubsub::SubscriptionOptions;

use super::groupchat::cut;
use crate::xml::{BuilderExt, builder, ns, text_child};

const SHOW: &str = "verona#show";
const STATUS: &str = "verona#status";
/// `hash`, `node` and `ver`, one per line.
const CAPS: &str = "verona#caps";
const PHOTO: &str = "verona#photo";
const IDLE: &str = "verona#idle";

/// The subscription options this keeps: the room's to write, never a native occupant's.
pub const OPTIONS: [&str; 5] = [SHOW, STATUS, CAPS, PHOTO, IDLE];

const CAPS_NS: &str = "http://jabber.org/protocol/caps";
const VCARD_UPDATE_NS: &str = "vcard-temp:x:update";
const IDLE_NS: &str = "urn:xmpp:idle:1";

/// Characters of an occupant's status kept: every occupant, and everyone who enters later,
/// gets a copy.
pub const MAX_STATUS_CHARS: usize = 1024;
/// Characters of any other value kept (a caps node, a hash, a date).
const MAX_VALUE_CHARS: usize = 256;

/// The elements an occupant's presence shows, in the order clients expect them.
pub fn shown(options: &SubscriptionOptions) -> Vec<Element> {
    let get = |var: &str| options.custom.get(var);
    let mut shown = Vec::new();
    if let Some(show) = get(SHOW) {
        shown.push(text_child("show", ns::CLIENT, show));
    }
    if let Some(status) = get(STATUS) {
        shown.push(text_child("status", ns::CLIENT, status));
    }
    if let Some([hash, node, ver]) = get(CAPS)
        .map(|caps| caps.splitn(3, '\n').collect::<Vec<_>>())
        .and_then(|parts| <[&str; 3]>::try_from(parts).ok())
    {
        let caps = builder("c", CAPS_NS)
            .with("hash", hash)
            .with("node", node)
            .with("ver", ver)
            .build();
        shown.push(caps);
    }
    if let Some(photo) = get(PHOTO) {
        let photo = match photo {
            "" => builder("photo", VCARD_UPDATE_NS).build(),
            hash => text_child("photo", VCARD_UPDATE_NS, hash),
        };
        let x = builder("x", VCARD_UPDATE_NS).append(photo).build();
        shown.push(x);
    }
    if let Some(since) = get(IDLE) {
        shown.push(builder("idle", IDLE_NS).with("since", since).build());
    }
    shown
}

/// The first `<status/>` of a presence, cut to [`MAX_STATUS_CHARS`]; `None` when empty.
pub fn status(presence: &Element) -> Option<String> {
    presence
        .get_child("status", ns::CLIENT)
        .map(|status| cut(status.text(), MAX_STATUS_CHARS))
        .filter(|status| !status.is_empty())
}

/// Keeps in an occupant's options what its presence shows: a `<show/>` RFC 6121 allows (others
/// are dropped), the first `<status/>` cut to [`MAX_STATUS_CHARS`], and the capabilities,
/// avatar hash and idle time when their values are short and plain. Whether anything changed.
pub fn keep(options: &mut SubscriptionOptions, presence: &Element) -> bool {
    let plain = |value: &str| {
        !value.is_empty()
            && value.chars().count() <= MAX_VALUE_CHARS
            && !value.chars().any(char::is_control)
    };
    let show = presence
        .get_child("show", ns::CLIENT)
        .map(Element::text)
        .filter(|show| ["away", "chat", "dnd", "xa"].contains(&show.as_str()));
    let status = status(presence);
    let caps = presence.get_child("c", CAPS_NS).and_then(|c| {
        let parts = [c.attr("hash")?, c.attr("node")?, c.attr("ver")?];
        parts
            .iter()
            .all(|part| plain(part))
            .then(|| parts.join("\n"))
    });
    // An empty `<photo/>` says "no avatar", and is kept as such.
    let photo = presence
        .get_child("x", VCARD_UPDATE_NS)
        .and_then(|x| x.get_child("photo", VCARD_UPDATE_NS))
        .map(Element::text)
        .filter(|photo| {
            photo.is_empty() || plain(photo) && photo.chars().all(|c| c.is_ascii_hexdigit())
        });
    let idle = presence
        .get_child("idle", IDLE_NS)
        .and_then(|idle| idle.attr("since"))
        .filter(|since| plain(since))
        .map(str::to_owned);
    let mut changed = false;
    for (var, value) in [
        (SHOW, show),
        (STATUS, status),
        (CAPS, caps),
        (PHOTO, photo),
        (IDLE, idle),
    ] {
        if options.custom.get(var) == value.as_deref() {
            continue;
        }
        changed = true;
        match value {
            Some(value) => {
                options.custom.insert(var, &value);
            }
            None => {
                options.custom.remove(var);
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventing::groupchat::{nick_of, occupant_options};

    fn presence(children: &str) -> Element {
        format!("<presence xmlns='jabber:client'>{children}</presence>")
            .parse()
            .unwrap()
    }

    fn shown_now(options: &SubscriptionOptions) -> Vec<String> {
        shown(options).iter().map(String::from).collect()
    }

    #[test]
    fn an_occupant_keeps_what_its_presence_shows_vetted_and_bounded() {
        let mut options = occupant_options("JC", true);
        assert!(!keep(&mut options, &presence("")), "nothing to keep");
        assert!(keep(
            &mut options,
            &presence(
                "<show>away</show><status>gone</status><status>twice</status><priority>5</priority>\
                 <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>\
                 <x xmlns='vcard-temp:x:update'><photo>a31c4bd04de69663cfd7f424a8453f4674da37ff</photo></x>\
                 <idle xmlns='urn:xmpp:idle:1' since='2026-12-05T01:00:00Z'/>\
                 <x xmlns='http://jabber.org/protocol/muc#user'><item role='moderator'/></x>"
            )
        ));
        assert_eq!(
            shown_now(&options),
            [
                "<show xmlns='jabber:client'>away</show>",
                "<status xmlns='jabber:client'>gone</status>",
                "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>",
                "<x xmlns='vcard-temp:x:update'><photo>a31c4bd04de69663cfd7f424a8453f4674da37ff</photo></x>",
                "<idle xmlns='urn:xmpp:idle:1' since='2026-12-05T01:00:00Z'/>",
            ]
        );
        let same = presence(
            "<show>away</show><status>gone</status>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>\
             <x xmlns='vcard-temp:x:update'><photo>a31c4bd04de69663cfd7f424a8453f4674da37ff</photo></x>\
             <idle xmlns='urn:xmpp:idle:1' since='2026-12-05T01:00:00Z'/>",
        );
        assert!(!keep(&mut options, &same), "unchanged");
        // A show RFC 6121 does not know, a photo that is no hash, caps with a line break and a
        // date too long are dropped; a long status is cut.
        let long = "x".repeat(MAX_STATUS_CHARS + 10);
        let odd = presence(&format!(
            "<show>asleep</show><status>{long}</status>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='a&#10;b' ver='v'/>\
             <x xmlns='vcard-temp:x:update'><photo>&lt;b&gt;</photo></x>\
             <idle xmlns='urn:xmpp:idle:1' since='{}'/>",
            "9".repeat(MAX_VALUE_CHARS + 1)
        ));
        assert!(keep(&mut options, &odd));
        let kept = shown(&options);
        assert_eq!(kept.len(), 1, "{:?}", shown_now(&options));
        assert_eq!(kept[0].text().chars().count(), MAX_STATUS_CHARS);
        // An empty photo says "no avatar".
        assert!(keep(
            &mut options,
            &presence("<x xmlns='vcard-temp:x:update'><photo/></x>")
        ));
        assert_eq!(
            shown_now(&options),
            ["<x xmlns='vcard-temp:x:update'><photo/></x>"]
        );
        // Available again with nothing: nothing shown, the rest stays.
        assert!(keep(&mut options, &presence("")));
        assert!(shown(&options).is_empty());
        assert_eq!(nick_of(&options), Some("JC"));
    }
}
