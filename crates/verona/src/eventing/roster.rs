//! `jabber:iq:roster` (RFC 6121 §2) as a view: items are derived from presence-node
//! subscriptions ([`super::subscriptions`]), names and groups are items of the private `roster`
//! PEP node (DESIGN §2). Versioning (§2.6) hashes the derived roster, so nothing but the
//! engine's state is kept.

use jid::BareJid;
use minidom::Element;
use sha2::{Digest, Sha256};
use verona_pubsub::{AccessModel, ConfigField, MaxItems, SendLastPublishedItem};

use super::subscriptions::RosterEntry;
use crate::xml::{BuilderExt, StanzaError, builder, ns};

/// The `roster` node: only the owner reads it, it lasts, and it is never pushed as events
/// (roster pushes are its view).
pub fn roster_node_config() -> Vec<ConfigField> {
    vec![
        ConfigField::AccessModel(AccessModel::Whitelist),
        ConfigField::PersistItems(true),
        ConfigField::MaxItems(MaxItems::Max),
        ConfigField::SendLastPublishedItem(SendLastPublishedItem::Never),
        ConfigField::DeliverNotifications(false),
    ]
}

/// The `roster` node item annotating `contact` (with a name, and the group `Contacts`), as a
/// roster set stores it.
pub fn annotation_payload(contact: &BareJid, name: Option<&str>) -> String {
    let mut item = builder("item", ns::ROSTER).with("jid", contact.as_str());
    if let Some(name) = name {
        item = item.with("name", name);
    }
    let item = item
        .append(builder("group", ns::ROSTER).append("Contacts").build())
        .build();
    String::from_utf8(verona_stream::element_bytes(&item)).expect("serialised XML is UTF-8")
}

/// A validated roster set (RFC 6121 §2.3.3, §2.5.2).
pub enum RosterSet {
    Update { contact: BareJid, item: Element },
    Remove { contact: BareJid },
}

/// Characters of a contact's name, and of a group's, kept at most.
pub const MAX_NAME_CHARS: usize = 1024;
/// Groups one contact may be in.
pub const MAX_GROUPS: usize = 64;

/// The one `<item/>` of a roster set, or the stanza error it deserves.
pub fn parse_set(iq: &Element) -> Result<RosterSet, (StanzaError, &'static str)> {
    let query = iq
        .get_child("query", ns::ROSTER)
        .expect("routed as a roster iq");
    let items: Vec<&Element> = query
        .children()
        .filter(|c| c.is("item", ns::ROSTER))
        .collect();
    let [item] = items[..] else {
        return Err((StanzaError::BadRequest, "a roster set has exactly one item"));
    };
    let contact = item
        .attr("jid")
        .and_then(|jid| crate::jids::parse_bare(jid).ok())
        .ok_or((StanzaError::BadRequest, "the item needs a bare JID"))?;
    if item.attr("subscription") == Some("remove") {
        return Ok(RosterSet::Remove { contact });
    }
    // RFC 6121 §2.3.3: a server's limits on names and groups are `not-acceptable`. Every
    // roster change reads the account's roster, so an item's size is what each costs.
    let too_long = |text: &str| text.chars().count() > MAX_NAME_CHARS;
    if item.attr("name").is_some_and(too_long) {
        return Err((StanzaError::NotAcceptable, "the name is too long"));
    }
    let mut groups: Vec<String> = Vec::new();
    for group in item.children().filter(|c| c.is("group", ns::ROSTER)) {
        let name = group.text();
        if name.trim().is_empty() {
            return Err((StanzaError::NotAcceptable, "a group needs a name"));
        }
        if too_long(&name) {
            return Err((StanzaError::NotAcceptable, "a group's name is too long"));
        }
        if groups.len() == MAX_GROUPS {
            return Err((StanzaError::NotAcceptable, "too many groups"));
        }
        if groups.contains(&name) {
            return Err((StanzaError::BadRequest, "a group is listed twice"));
        }
        groups.push(name);
    }
    // Only name and groups are the user's to set; subscription and ask are derived.
    let mut stored = builder("item", ns::ROSTER).with("jid", contact.as_str());
    if let Some(name) = item.attr("name").filter(|n| !n.is_empty()) {
        stored = stored.with("name", name);
    }
    for group in groups {
        stored = stored.append(builder("group", ns::ROSTER).append(group).build());
    }
    Ok(RosterSet::Update {
        contact,
        item: stored.build(),
    })
}

/// The contact a roster set names, if any (its PEP service must be loaded for a removal).
pub fn set_contact(iq: &Element) -> Option<BareJid> {
    match parse_set(iq).ok()? {
        RosterSet::Update { contact, .. } | RosterSet::Remove { contact } => Some(contact),
    }
}

/// A derived entry as an RFC 6121 `<item/>`.
pub fn item_element(entry: &RosterEntry) -> Element {
    let mut item = builder("item", ns::ROSTER)
        .with("jid", entry.contact.as_str())
        .with("subscription", entry.subscription());
    if entry.ask {
        item = item.with("ask", "subscribe");
    }
    if let Some(name) = &entry.annotation.name {
        item = item.with("name", name.as_str());
    }
    for group in &entry.annotation.groups {
        item = item.append(builder("group", ns::ROSTER).append(group.as_str()).build());
    }
    item.build()
}

/// The roster's version (RFC 6121 §2.6): a digest of the derived roster.
pub fn version(entries: &[RosterEntry]) -> String {
    let mut digest = Sha256::new();
    for entry in entries {
        digest.update(verona_stream::element_bytes(&item_element(entry)));
    }
    crate::hex(&digest.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(item: &str) -> Element {
        format!("<iq xmlns='jabber:client' type='set' id='s'><query xmlns='jabber:iq:roster'>{item}</query></iq>")
            .parse()
            .unwrap()
    }

    /// RFC 6121 §2.3.3, §2.5.2: what a roster set may say, and what is kept of it.
    #[test]
    fn roster_sets_are_validated_and_only_names_and_groups_kept() {
        let update = parse_set(&set(
            "<item jid='romeo@localhost' name='Romeo' subscription='both' ask='subscribe'><group>Montagues</group></item>",
        ));
        let Ok(RosterSet::Update { contact, item }) = update else {
            panic!("an update");
        };
        assert_eq!(contact.as_str(), "romeo@localhost");
        let kept: Element = "<item xmlns='jabber:iq:roster' jid='romeo@localhost' name='Romeo'><group>Montagues</group></item>".parse().unwrap();
        assert_eq!(item, kept);

        assert!(matches!(
            parse_set(&set("<item jid='romeo@localhost' subscription='remove'/>")),
            Ok(RosterSet::Remove { .. })
        ));
        let refused = [
            ("", StanzaError::BadRequest),
            (
                "<item jid='a@localhost'/><item jid='b@localhost'/>",
                StanzaError::BadRequest,
            ),
            (
                "<item jid='romeo@localhost/orchard'/>",
                StanzaError::BadRequest,
            ),
            ("<item name='nobody'/>", StanzaError::BadRequest),
            (
                "<item jid='romeo@localhost'><group> </group></item>",
                StanzaError::NotAcceptable,
            ),
            (
                "<item jid='romeo@localhost'><group>A</group><group>A</group></item>",
                StanzaError::BadRequest,
            ),
        ];
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let many: String = (0..=MAX_GROUPS)
            .map(|n| format!("<group>{n}</group>"))
            .collect();
        let limited = [
            format!("<item jid='romeo@localhost' name='{long}'/>"),
            format!("<item jid='romeo@localhost'><group>{long}</group></item>"),
            format!("<item jid='romeo@localhost'>{many}</item>"),
        ];
        let refused = refused
            .into_iter()
            .map(|(items, error)| (items.to_owned(), error));
        let limited = limited
            .into_iter()
            .map(|items| (items, StanzaError::NotAcceptable));
        for (items, error) in refused.chain(limited) {
            match parse_set(&set(&items)) {
                Err((got, _)) => assert_eq!(got, error, "{items}"),
                _ => panic!("{items} is refused"),
            }
        }
    }
}
