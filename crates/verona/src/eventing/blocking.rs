//! XEP-0191 blocking as a view (DESIGN §2): a blocked JID is an outcast on every node of the
//! user's PEP service; the blocklist is the outcast list of the `presence` node.

use crate::jids::Bare;
use jid::{BareJid, Jid};
use minidom::Element;

use verona_pubsub::SubscriptionOptions;

use crate::xml::{BuilderExt, builder, ns};

/// A block or unblock command: blocking is by bare JID (or domain), so a full JID blocks its
/// account.
#[derive(Debug, PartialEq, Eq)]
pub struct Command {
    pub block: bool,
    pub jids: Vec<BareJid>,
}

/// The command of a block or unblock set; `None` for anything else, or a block without items
/// (§3.3).
pub fn parse_set(iq: &Element) -> Option<Command> {
    let (block, command) = match iq.get_child("block", ns::BLOCKING) {
        Some(block) => (true, block),
        None => (false, iq.get_child("unblock", ns::BLOCKING)?),
    };
    let jids = command
        .children()
        .filter(|c| c.is("item", ns::BLOCKING))
        .map(|item| item.attr("jid").and_then(|jid| Jid::new(jid).ok()))
        .map(|jid| jid.map(|jid| jid.bare()))
        .collect::<Option<Vec<BareJid>>>()?;
    (!block || !jids.is_empty()).then_some(Command { block, jids })
}

/// XEP-0191 §3.3 implementation notes (polite blocking): the subscriptions to the blocker's
/// presence that a block ended are kept in the blocker's `roster` node item for the contact,
/// under this private element, and made again at the unblock. Only the owner reads the node,
/// and roster gets and pushes show an item's name and groups alone.
pub const HELD: &str = "urn:verona:blocking:held";

/// One subscription a block ended, as it is made again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub jid: Jid,
    pub options: SubscriptionOptions,
}

/// `item` (a `roster` node item's payload) keeping `held` as well; `made` when the item
/// exists only to keep them, and goes with them.
pub fn hold(item: Element, held: &[Held], made: bool) -> Element {
    let subscriptions = held.iter().map(|held| {
        let options = &held.options;
        let mut sub = builder("subscription", HELD)
            .with("jid", held.jid.as_str())
            .with("deliver", options.deliver.to_string())
            .with("digest", options.digest.to_string())
            .with("include_body", options.include_body.to_string());
        for (name, value) in options.custom.iter() {
            sub = sub.append(
                builder("option", HELD)
                    .with("var", name)
                    .append(value)
                    .build(),
            );
        }
        sub.build()
    });
    let mut marker = builder("held", HELD).append_all(subscriptions);
    if made {
        marker = marker.with("made", "true");
    }
    let mut item = release(item);
    item.append_child(marker.build());
    item
}

/// The subscriptions `item` keeps, and whether the item exists only to keep them.
pub fn held(item: &Element) -> Option<(Vec<Held>, bool)> {
    let marker = item.get_child("held", HELD)?;
    let subscriptions = marker
        .children()
        .filter(|c| c.is("subscription", HELD))
        .filter_map(|sub| {
            let jid = Jid::new(sub.attr("jid")?).ok()?;
            let flag =
                |name: &str, default: bool| sub.attr(name).map_or(default, |value| value == "true");
            let mut options = SubscriptionOptions {
                deliver: flag("deliver", true),
                digest: flag("digest", false),
                include_body: flag("include_body", false),
                ..SubscriptionOptions::default()
            };
            for option in sub.children().filter(|c| c.is("option", HELD)) {
                if let Some(name) = option.attr("var") {
                    options.custom.insert(name, &option.text());
                }
            }
            Some(Held { jid, options })
        });
    Some((subscriptions.collect(), marker.attr("made") == Some("true")))
}

/// `item` without what it keeps for a block.
pub fn release(item: Element) -> Element {
    let mut item = item;
    item.remove_child("held", HELD);
    item
}

pub fn item(jid: &BareJid) -> Element {
    builder("item", ns::BLOCKING)
        .with("jid", jid.as_str())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(command: &str) -> Element {
        format!("<iq xmlns='jabber:client' type='set' id='b'>{command}</iq>")
            .parse()
            .unwrap()
    }

    /// XEP-0191 §3.3–3.4: blocks need items, unblocks may have none (everyone), and a full
    /// JID blocks its account.
    #[test]
    fn block_and_unblock_commands() {
        let b = "urn:xmpp:blocking";
        let bare = |j: &str| BareJid::new(j).unwrap();
        let command = |block, jids| Some(Command { block, jids });
        let cases: Vec<(String, Option<Command>)> = vec![
            (
                format!("<block xmlns='{b}'><item jid='romeo@localhost/orchard'/></block>"),
                command(true, vec![bare("romeo@localhost")]),
            ),
            (format!("<block xmlns='{b}'/>"), None),
            (
                format!("<unblock xmlns='{b}'/>"),
                command(false, Vec::new()),
            ),
            (
                format!("<unblock xmlns='{b}'><item jid='montague.lit'/></unblock>"),
                command(false, vec![bare("montague.lit")]),
            ),
            (format!("<block xmlns='{b}'><item jid='@@'/></block>"), None),
            (format!("<block xmlns='{b}'><item/></block>"), None),
            (format!("<blocklist xmlns='{b}'/>"), None),
        ];
        for (command, expected) in cases {
            assert_eq!(parse_set(&iq(&command)), expected, "{command}");
        }
    }

    /// What a block keeps in a roster item comes back as it was kept (a classic subscription
    /// and a native one of a full JID with its options), leaves the name and groups alone,
    /// and goes entirely with [`release`].
    #[test]
    fn held_subscriptions_round_trip_through_a_roster_item() {
        let item: Element = "<item xmlns='jabber:iq:roster' jid='romeo@localhost' name='Romeo'><group>Montagues</group></item>"
            .parse()
            .unwrap();
        let mut classic = SubscriptionOptions::default();
        classic.custom.insert("x-verona#view", "presence");
        let native = SubscriptionOptions {
            deliver: false,
            include_body: true,
            ..SubscriptionOptions::default()
        };
        let kept = [
            Held {
                jid: Jid::new("romeo@localhost").unwrap(),
                options: classic,
            },
            Held {
                jid: Jid::new("romeo@localhost/orchard").unwrap(),
                options: native,
            },
        ];
        for made in [false, true] {
            let holding = hold(item.clone(), &kept, made);
            // Kept once, however often it is kept.
            let holding = hold(holding, &kept, made);
            let reparsed: Element = String::from_utf8(verona_stream::element_bytes(&holding))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(held(&reparsed), Some((kept.to_vec(), made)));
            assert_eq!(reparsed.attr("name"), Some("Romeo"));
            assert_eq!(release(reparsed), item);
        }
        assert_eq!(held(&item), None);
    }
}
