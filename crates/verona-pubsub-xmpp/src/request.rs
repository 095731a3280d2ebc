//! Reading requests: an iq addressed to the service becomes a typed [`Request`].
//!
//! Parsing is by hand over minidom rather than with xmpp-parsers' pubsub types, because the
//! error a client gets depends on exactly what is missing (`jid-required`, `invalid-jid`,
//! `nodeid-required`, `item-required`, `invalid-payload`…) and because item payloads must be
//! relayed untouched. Forms and result-set queries use xmpp-parsers.

use std::sync::Arc;

use jid::{BareJid, Jid};
use minidom::Element;
use verona_pubsub::{ItemQuery, NewItem, PagePosition, PageRequest, PubsubError};
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::rsm::SetQuery;

use crate::errors::Error;
use crate::jids;
use crate::ns;
use crate::xml::form_child;

/// The iq types that carry requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IqKind {
    Get,
    Set,
}

/// One request, by XEP-0060 use case.
#[derive(Debug)]
pub(crate) enum Request {
    /// XEP-0030 disco#info, of the service or of a node.
    DiscoInfo { node: Option<String> },
    /// XEP-0030 disco#items: the nodes (a page of them, XEP-0059 `max` and `after`), a node's
    /// items, or the commands.
    DiscoItems {
        node: Option<String>,
        max: Option<usize>,
        after: Option<String>,
    },
    /// §5.6: the requester's subscriptions.
    OwnSubscriptions { node: Option<String> },
    /// §5.7: the requester's affiliations.
    OwnAffiliations { node: Option<String> },
    /// §6.1, with §6.3.7 options.
    Subscribe {
        node: String,
        jid: Jid,
        options: Option<DataForm>,
    },
    /// §6.2.
    Unsubscribe {
        node: String,
        jid: Jid,
        subid: Option<String>,
    },
    /// §6.3: get the options (no form) or submit them.
    Options {
        target: OptionsTarget,
        form: Option<DataForm>,
    },
    /// §6.4.
    DefaultOptions { node: Option<String> },
    /// §6.5, with XEP-0059 paging when `paged`.
    Items {
        node: String,
        query: ItemQuery,
        paged: bool,
        subid: Option<String>,
    },
    /// §7.1, with §7.1.5 publish-options.
    Publish {
        node: String,
        item: Option<NewItem>,
        /// The namespace of the item's payload, for the node's `pubsub#type` (§7.1.3.5).
        payload_ns: Option<String>,
        options: Option<DataForm>,
    },
    /// §7.2.
    Retract {
        node: String,
        id: String,
        notify: bool,
    },
    /// §8.1, with §8.1.3 configuration.
    Create {
        node: Option<String>,
        config: Option<DataForm>,
    },
    /// §8.2 get.
    Configuration { node: String },
    /// §8.2 set.
    Configure { node: String, form: DataForm },
    /// §8.3.
    DefaultConfig,
    /// §8.4.
    Delete {
        node: String,
        redirect: Option<String>,
    },
    /// §8.5.
    Purge { node: String },
    /// §8.8.1.
    NodeSubscriptions { node: String },
    /// §8.8.2.
    SetSubscriptions {
        node: String,
        entries: Vec<SubscriptionEntry>,
    },
    /// §8.9.1.
    NodeAffiliations { node: String },
    /// §8.9.2.
    SetAffiliations {
        node: String,
        entries: Vec<AffiliationEntry>,
    },
    /// §8.7: the XEP-0050 get-pending command.
    GetPending(Command),
}

/// The subscription an `<options/>` request is about.
#[derive(Debug, Clone)]
pub(crate) struct OptionsTarget {
    pub node: String,
    pub jid: Jid,
    pub subid: Option<String>,
}

/// One `<subscription/>` of an owner's modification; entries without a `subscription`
/// attribute change nothing and are dropped.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionEntry {
    pub jid: Jid,
    pub subid: Option<String>,
    pub state: String,
}

/// One `<affiliation/>` of an owner's modification.
#[derive(Debug, Clone)]
pub(crate) struct AffiliationEntry {
    pub jid: BareJid,
    pub affiliation: String,
}

/// A step of the get-pending command.
#[derive(Debug)]
pub(crate) struct Command {
    pub sessionid: Option<String>,
    pub cancel: bool,
    pub form: Option<DataForm>,
}

/// Reads an iq get or set.
pub(crate) fn parse(kind: IqKind, iq: &Element) -> Result<Request, Error> {
    let mut children = iq.children();
    let (Some(payload), None) = (children.next(), children.next()) else {
        // RFC 6120 §8.2.3: a request carries exactly one payload.
        return Err(Error::BadRequest);
    };
    let ns = payload.ns();
    match (ns.as_str(), payload.name()) {
        (ns::PUBSUB, "pubsub") => parse_pubsub(kind, payload),
        (ns::PUBSUB_OWNER, "pubsub") => parse_owner(kind, payload),
        (ns::PUBSUB | ns::PUBSUB_OWNER, _) => Err(Error::BadRequest),
        (ns::DISCO_INFO, "query") => {
            only(kind, IqKind::Get)?;
            Ok(Request::DiscoInfo {
                node: attr(payload, "node"),
            })
        }
        (ns::DISCO_ITEMS, "query") => {
            only(kind, IqKind::Get)?;
            let set = payload
                .get_child("set", ns::RSM)
                .map(|set| SetQuery::try_from(set.clone()).map_err(|_| Error::BadRequest))
                .transpose()?;
            // Pages go forwards only: the nodes are not counted, so there is no last page.
            if set
                .as_ref()
                .is_some_and(|set| set.before.is_some() || set.index.is_some())
            {
                return Err(Error::FeatureNotImplemented);
            }
            Ok(Request::DiscoItems {
                node: attr(payload, "node"),
                max: set.as_ref().and_then(|set| set.max),
                after: set.and_then(|set| set.after),
            })
        }
        (ns::COMMANDS, "command") => {
            only(kind, IqKind::Set)?;
            parse_command(payload)
        }
        _ => Err(Error::ServiceUnavailable),
    }
}

fn parse_pubsub(kind: IqKind, pubsub: &Element) -> Result<Request, Error> {
    let children: Vec<&Element> = pubsub.children().collect();
    let (action, rest) = children.split_first().ok_or(Error::BadRequest)?;
    if !action.is(action.name(), ns::PUBSUB) {
        return Err(Error::BadRequest);
    }
    match action.name() {
        "subscriptions" => {
            only(kind, IqKind::Get)?;
            no_more(rest)?;
            Ok(Request::OwnSubscriptions {
                node: attr(action, "node"),
            })
        }
        "affiliations" => {
            only(kind, IqKind::Get)?;
            no_more(rest)?;
            Ok(Request::OwnAffiliations {
                node: attr(action, "node"),
            })
        }
        "subscribe" => {
            only(kind, IqKind::Set)?;
            parse_subscribe(action, sibling(rest, "options", ns::PUBSUB)?)
        }
        "unsubscribe" => {
            only(kind, IqKind::Set)?;
            no_more(rest)?;
            Ok(Request::Unsubscribe {
                node: node(action),
                jid: subscriber_jid(action)?,
                subid: attr(action, "subid"),
            })
        }
        "options" => {
            no_more(rest)?;
            let target = OptionsTarget {
                node: node(action),
                jid: subscriber_jid(action)?,
                subid: attr(action, "subid"),
            };
            let form = match kind {
                IqKind::Get => None,
                IqKind::Set => Some(form_child(action)?.ok_or(Error::BadRequest)?),
            };
            Ok(Request::Options { target, form })
        }
        "default" => {
            only(kind, IqKind::Get)?;
            no_more(rest)?;
            Ok(Request::DefaultOptions {
                node: attr(action, "node"),
            })
        }
        "items" => {
            only(kind, IqKind::Get)?;
            parse_items(action, sibling(rest, "set", ns::RSM)?)
        }
        "publish" => {
            only(kind, IqKind::Set)?;
            let options = match sibling(rest, "publish-options", ns::PUBSUB)? {
                Some(options) => form_child(options)?,
                None => None,
            };
            let (item, payload_ns) = published_item(action)?;
            Ok(Request::Publish {
                node: node(action),
                item,
                payload_ns,
                options,
            })
        }
        "retract" => {
            only(kind, IqKind::Set)?;
            no_more(rest)?;
            parse_retract(action)
        }
        "create" => {
            only(kind, IqKind::Set)?;
            let config = match sibling(rest, "configure", ns::PUBSUB)? {
                // §8.1.3: the NodeID is the <create/>'s; a second one is an error.
                Some(configure) if configure.attr("node").is_some() => {
                    return Err(Error::BadRequest);
                }
                Some(configure) => form_child(configure)?,
                None => None,
            };
            Ok(Request::Create {
                node: attr(action, "node"),
                config,
            })
        }
        _ => Err(Error::FeatureNotImplemented),
    }
}

fn parse_owner(kind: IqKind, pubsub: &Element) -> Result<Request, Error> {
    let children: Vec<&Element> = pubsub.children().collect();
    let [action] = children.as_slice() else {
        return Err(Error::BadRequest);
    };
    if !action.is(action.name(), ns::PUBSUB_OWNER) {
        return Err(Error::BadRequest);
    }
    let node = node(action);
    match (action.name(), kind) {
        ("configure", IqKind::Get) => Ok(Request::Configuration { node }),
        ("configure", IqKind::Set) => Ok(Request::Configure {
            node,
            form: form_child(action)?.ok_or(Error::BadRequest)?,
        }),
        ("default", IqKind::Get) => match action.attr("type") {
            None | Some("leaf") => Ok(Request::DefaultConfig),
            Some("collection") => Err(Error::Unsupported("collections")),
            Some(_) => Err(Error::BadRequest),
        },
        ("delete", IqKind::Set) => {
            let redirect = action
                .get_child("redirect", ns::PUBSUB_OWNER)
                .map(|redirect| redirect.attr("uri").ok_or(Error::BadRequest))
                .transpose()?;
            Ok(Request::Delete {
                node,
                redirect: redirect.map(str::to_owned),
            })
        }
        ("purge", IqKind::Set) => Ok(Request::Purge { node }),
        ("subscriptions", IqKind::Get) => Ok(Request::NodeSubscriptions { node }),
        ("subscriptions", IqKind::Set) => Ok(Request::SetSubscriptions {
            node,
            entries: subscription_entries(action)?,
        }),
        ("affiliations", IqKind::Get) => Ok(Request::NodeAffiliations { node }),
        ("affiliations", IqKind::Set) => Ok(Request::SetAffiliations {
            node,
            entries: affiliation_entries(action)?,
        }),
        ("default" | "delete" | "purge", _) => Err(Error::BadRequest),
        _ => Err(Error::FeatureNotImplemented),
    }
}

fn parse_subscribe(subscribe: &Element, options: Option<&Element>) -> Result<Request, Error> {
    let node = node(subscribe);
    let jid = subscriber_jid(subscribe)?;
    let options = match options {
        Some(options) => {
            // §6.3.7 forbids 'node' and 'jid' here; XEP-0207's examples repeat the
            // <subscribe/>'s values, which are accepted. Different values are not.
            let same_node = options.attr("node").is_none_or(|n| n == node);
            let same_jid = options
                .attr("jid")
                .is_none_or(|j| jids::parse(j).is_ok_and(|j| j == jid));
            if !(same_node && same_jid) {
                return Err(Error::BadRequest);
            }
            form_child(options)?
        }
        None => None,
    };
    Ok(Request::Subscribe { node, jid, options })
}

fn parse_items(items: &Element, rsm: Option<&Element>) -> Result<Request, Error> {
    let max_items = items
        .attr("max_items")
        .map(|n| n.parse::<usize>().map_err(|_| Error::BadRequest))
        .transpose()?;
    let ids = items
        .children()
        .map(
            |item| match (item.is("item", ns::PUBSUB), item.attr("id")) {
                (true, Some(id)) => Ok(id.to_owned()),
                _ => Err(Error::BadRequest),
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    let rsm = rsm
        .map(|set| SetQuery::try_from(set.clone()).map_err(|_| Error::BadRequest))
        .transpose()?;
    let paged = rsm.is_some();
    let query = match (ids.is_empty(), rsm, max_items) {
        (false, _, _) => ItemQuery::Ids(ids),
        (true, Some(set), max_items) => {
            let position = match (set.after, set.before, set.index) {
                (Some(after), _, _) => PagePosition::After(after),
                (None, Some(before), _) if before.is_empty() => PagePosition::Last,
                (None, Some(before), _) => PagePosition::Before(before),
                (None, None, Some(index)) => PagePosition::Index(index),
                (None, None, None) => PagePosition::First,
            };
            ItemQuery::Page(PageRequest {
                max: set.max.or(max_items).unwrap_or(usize::MAX),
                position,
            })
        }
        (true, None, Some(n)) => ItemQuery::Latest(n),
        (true, None, None) => ItemQuery::All,
    };
    Ok(Request::Items {
        node: node(items),
        query,
        paged,
        subid: attr(items, "subid"),
    })
}

/// The `<item/>` of a publish: none, or one carrying at most one payload element, which is
/// kept as its serialization (relayed exactly, never re-encoded from a typed form); with the
/// payload's namespace.
fn published_item(publish: &Element) -> Result<(Option<NewItem>, Option<String>), Error> {
    let children: Vec<&Element> = publish.children().collect();
    let item = match children.as_slice() {
        [] => return Ok((None, None)),
        [item] if item.is("item", ns::PUBSUB) => item,
        _ => return Err(Error::BadRequest),
    };
    let mut payloads = item.children();
    let payload = match (payloads.next(), payloads.next()) {
        (None, _) => None,
        (Some(payload), None) => Some(payload),
        (Some(_), Some(_)) => return Err(Error::InvalidPayload),
    };
    let item = NewItem {
        id: attr(item, "id"),
        payload: payload.map(|payload| Arc::from(String::from(payload))),
    };
    Ok((Some(item), payload.map(Element::ns)))
}

fn parse_retract(retract: &Element) -> Result<Request, Error> {
    let notify = match retract.attr("notify") {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(_) => return Err(Error::BadRequest),
    };
    let children: Vec<&Element> = retract.children().collect();
    let id = match children.as_slice() {
        [] => None,
        [item] if item.is("item", ns::PUBSUB) => item.attr("id"),
        _ => return Err(Error::BadRequest),
    };
    Ok(Request::Retract {
        node: node(retract),
        id: id.ok_or(PubsubError::ItemRequired)?.to_owned(),
        notify,
    })
}

fn subscription_entries(subscriptions: &Element) -> Result<Vec<SubscriptionEntry>, Error> {
    let mut entries = Vec::new();
    for entry in subscriptions.children() {
        if !entry.is("subscription", ns::PUBSUB_OWNER) {
            return Err(Error::BadRequest);
        }
        let jid = subscriber_jid(entry)?;
        if let Some(state) = entry.attr("subscription") {
            entries.push(SubscriptionEntry {
                jid,
                subid: attr(entry, "subid"),
                state: state.to_owned(),
            });
        }
    }
    Ok(entries)
}

fn affiliation_entries(affiliations: &Element) -> Result<Vec<AffiliationEntry>, Error> {
    let mut entries: Vec<AffiliationEntry> = Vec::new();
    for entry in affiliations.children() {
        if !entry.is("affiliation", ns::PUBSUB_OWNER) {
            return Err(Error::BadRequest);
        }
        let jid = subscriber_jid(entry)?.into_bare();
        // §8.9.2.4: one entry per entity.
        if entries.iter().any(|e| e.jid == jid) {
            return Err(Error::BadRequest);
        }
        if let Some(affiliation) = entry.attr("affiliation") {
            entries.push(AffiliationEntry {
                jid,
                affiliation: affiliation.to_owned(),
            });
        }
    }
    Ok(entries)
}

fn parse_command(command: &Element) -> Result<Request, Error> {
    if command.attr("node") != Some(ns::GET_PENDING) {
        return Err(PubsubError::NodeNotFound.into());
    }
    let cancel = match command.attr("action") {
        None | Some("execute" | "next" | "complete") => false,
        Some("cancel") => true,
        Some(_) => return Err(Error::BadRequest),
    };
    Ok(Request::GetPending(Command {
        sessionid: attr(command, "sessionid"),
        cancel,
        form: form_child(command)?,
    }))
}

fn only(kind: IqKind, wanted: IqKind) -> Result<(), Error> {
    if kind == wanted {
        Ok(())
    } else {
        Err(Error::BadRequest)
    }
}

fn no_more(rest: &[&Element]) -> Result<(), Error> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(Error::BadRequest)
    }
}

/// The element allowed after the action (`<configure/>` after `<create/>`…), if present.
fn sibling<'a>(rest: &[&'a Element], name: &str, ns: &str) -> Result<Option<&'a Element>, Error> {
    match rest {
        [] => Ok(None),
        [element] if element.is(name, ns) => Ok(Some(element)),
        _ => Err(Error::BadRequest),
    }
}

fn attr(element: &Element, name: &str) -> Option<String> {
    element.attr(name).map(str::to_owned)
}

/// The NodeID; a missing one is empty, which the engine answers with `nodeid-required`.
fn node(element: &Element) -> String {
    element.attr("node").unwrap_or_default().to_owned()
}

fn subscriber_jid(element: &Element) -> Result<Jid, Error> {
    let jid = element.attr("jid").ok_or(Error::JidRequired)?;
    jids::parse(jid).map_err(|_| PubsubError::InvalidJid.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An iq around `payload`, all literal.
    macro_rules! iq {
        ($payload:literal) => {
            concat!("<iq xmlns='jabber:client' id='t'>", $payload, "</iq>")
        };
    }

    /// An iq around a `pubsub` element around `action`.
    macro_rules! pubsub {
        ($action:literal) => {
            concat!(
                "<iq xmlns='jabber:client' id='t'>",
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'>",
                $action,
                "</pubsub></iq>"
            )
        };
    }

    fn read(kind: IqKind, text: &str) -> Result<Request, Error> {
        parse(kind, &text.parse().unwrap())
    }

    #[test]
    fn exactly_one_payload() {
        assert_eq!(read(IqKind::Get, iq!("")).err(), Some(Error::BadRequest));
        let two = iq!("<query xmlns='http://jabber.org/protocol/disco#info'/>\
             <query xmlns='http://jabber.org/protocol/disco#items'/>");
        assert_eq!(read(IqKind::Get, two).err(), Some(Error::BadRequest));
    }

    #[test]
    fn unknown_namespace_and_unknown_action() {
        let version = iq!("<query xmlns='jabber:iq:version'/>");
        assert_eq!(
            read(IqKind::Get, version).err(),
            Some(Error::ServiceUnavailable)
        );
        let unknown = pubsub!("<frobnicate node='n'/>");
        assert_eq!(
            read(IqKind::Set, unknown).err(),
            Some(Error::FeatureNotImplemented)
        );
        let wrong_type = pubsub!("<publish node='n'/>");
        assert_eq!(read(IqKind::Get, wrong_type).err(), Some(Error::BadRequest));
    }

    #[test]
    fn subscriber_jid_is_required_and_valid() {
        let missing = pubsub!("<subscribe node='n'/>");
        assert_eq!(read(IqKind::Set, missing).err(), Some(Error::JidRequired));
        let invalid = pubsub!("<options node='n' jid='@@'/>");
        assert_eq!(
            read(IqKind::Get, invalid).err(),
            Some(PubsubError::InvalidJid.into())
        );
    }

    #[test]
    fn items_queries() {
        let latest = read(IqKind::Get, pubsub!("<items node='n' max_items='2'/>"));
        assert!(matches!(
            latest,
            Ok(Request::Items {
                query: ItemQuery::Latest(2),
                paged: false,
                ..
            })
        ));
        let paged = pubsub!(
            "<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'>\
             <max>3</max><before/></set>"
        );
        let Ok(Request::Items { query, paged, .. }) = read(IqKind::Get, paged) else {
            panic!("items");
        };
        assert!(paged);
        assert_eq!(
            query,
            ItemQuery::Page(PageRequest {
                max: 3,
                position: PagePosition::Last
            })
        );
        let bad = pubsub!("<items node='n' max_items='many'/>");
        assert_eq!(read(IqKind::Get, bad).err(), Some(Error::BadRequest));
    }

    #[test]
    fn publish_keeps_the_payload_and_refuses_two() {
        let one = pubsub!(
            "<publish node='n'><item id='i'><p xmlns='urn:x' a='1'>t<q/></p></item></publish>"
        );
        let Ok(Request::Publish {
            item: Some(item), ..
        }) = read(IqKind::Set, one)
        else {
            panic!("publish");
        };
        assert_eq!(item.id.as_deref(), Some("i"));
        let payload: Element = item.payload.unwrap().parse().unwrap();
        let expected: Element = "<p xmlns='urn:x' a='1'>t<q/></p>".parse().unwrap();
        assert_eq!(payload, expected);

        let two = pubsub!(
            "<publish node='n'><item><a xmlns='urn:x'/><b xmlns='urn:x'/></item></publish>"
        );
        assert_eq!(read(IqKind::Set, two).err(), Some(Error::InvalidPayload));
        let batch = pubsub!("<publish node='n'><item/><item/></publish>");
        assert_eq!(read(IqKind::Set, batch).err(), Some(Error::BadRequest));
    }

    #[test]
    fn prefixed_payloads_survive_serialization() {
        // One prefix declared on the payload, one inherited from the request.
        let text = concat!(
            "<iq xmlns='jabber:client' xmlns:geo='urn:geo' id='t'>",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item>",
            "<x:loc xmlns:x='urn:x' geo:lat='45.44'><geo:lon>12.33</geo:lon></x:loc>",
            "</item></publish></pubsub></iq>"
        );
        let Ok(Request::Publish {
            item: Some(item), ..
        }) = read(IqKind::Set, text)
        else {
            panic!("publish");
        };
        let payload: Element = item.payload.unwrap().parse().unwrap();
        assert!(payload.is("loc", "urn:x"));
        assert!(payload.has_child("lon", "urn:geo"));
        assert_eq!(payload.attr_ns("urn:geo", "lat"), Some("45.44"));
    }

    #[test]
    fn create_and_configure_rules() {
        let with_node = pubsub!("<create node='n'/><configure node='n'/>");
        assert_eq!(read(IqKind::Set, with_node).err(), Some(Error::BadRequest));
        let reversed = pubsub!("<configure/><create node='n'/>");
        assert_eq!(
            read(IqKind::Set, reversed).err(),
            Some(Error::FeatureNotImplemented)
        );
    }

    #[test]
    fn retract_needs_an_item_id() {
        let none = pubsub!("<retract node='n'><item/></retract>");
        assert_eq!(
            read(IqKind::Set, none).err(),
            Some(PubsubError::ItemRequired.into())
        );
        let notify = pubsub!("<retract node='n' notify='yes'><item id='i'/></retract>");
        assert_eq!(read(IqKind::Set, notify).err(), Some(Error::BadRequest));
    }

    #[test]
    fn owner_modifications() {
        let twice = iq!("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>\
             <affiliations node='n'>\
             <affiliation jid='a@localhost' affiliation='member'/>\
             <affiliation jid='a@localhost/r' affiliation='outcast'/>\
             </affiliations></pubsub>");
        assert_eq!(read(IqKind::Set, twice).err(), Some(Error::BadRequest));
        let unchanged = iq!("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>\
             <subscriptions node='n'><subscription jid='a@localhost'/></subscriptions>\
             </pubsub>");
        let Ok(Request::SetSubscriptions { entries, .. }) = read(IqKind::Set, unchanged) else {
            panic!("subscriptions");
        };
        assert!(entries.is_empty());
    }
}
