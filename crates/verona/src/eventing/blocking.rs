//! XEP-0191 blocking as a view (DESIGN §2): a blocked JID is an outcast on every node of the
//! user's PEP service; the blocklist is the outcast list of the `presence` node.

use crate::jids::{self, Bare};
use jid::BareJid;
use minidom::Element;

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
        .map(|item| item.attr("jid").and_then(|jid| jids::parse(jid).ok()))
        .map(|jid| jid.map(|jid| jid.bare()))
        .collect::<Option<Vec<BareJid>>>()?;
    (!block || !jids.is_empty()).then_some(Command { block, jids })
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
}
