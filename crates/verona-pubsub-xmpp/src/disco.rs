//! Service discovery (XEP-0030; XEP-0060 §5.1–§5.5): the service's identity and features, its
//! nodes, a node's identity and meta-data, a node's items, and the get-pending command
//! (XEP-0050 §2).

use jid::Jid;
use minidom::Element;
use verona_pubsub::{Action, ItemQuery, Service, ServiceConfig};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::rsm::{First, SetResult};

use crate::forms;
use crate::ns;
use crate::{Answer, Handler, ServiceContext, ServiceKind};

/// The `pubsub#` features every Verona service offers (XEP-0060 §10). Not offered:
/// collections, leased subscriptions, `presence-notifications`, batch operations; a PEP
/// service adds what XEP-0163 §1 requires of it ([`PEP_FEATURES`]).
const FEATURES: &[&str] = &[
    "config-node",
    "config-node-max",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "get-pending",
    "instant-nodes",
    "item-ids",
    "last-published",
    "manage-subscriptions",
    "member-affiliation",
    "meta-data",
    "modify-affiliations",
    "multi-items",
    "multi-subscribe",
    "outcast-affiliation",
    "persistent-items",
    "publish",
    "publish-options",
    "publish-only-affiliation",
    "publisher-affiliation",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-default-sub",
    "retrieve-items",
    "retrieve-subscriptions",
    "rsm",
    "subscribe",
    "subscription-notifications",
    "subscription-options",
];

/// XEP-0163 §1: a PEP service subscribes its owner's contacts to the nodes they ask for
/// (`auto-subscribe`) and sends each resource what its XEP-0115 `+notify` features ask for
/// (`filtered-notifications`).
const PEP_FEATURES: &[&str] = &["auto-subscribe", "filtered-notifications"];

const GET_PENDING_NAME: &str = "Get pending subscription requests";

/// disco#info of the service itself: identity `pubsub/service` (or `pubsub/pep`), and every
/// supported feature, including `access-<model>` for the default access model and
/// `auto-create` when publishing creates nodes.
pub fn service_info(ctx: &ServiceContext, config: &ServiceConfig) -> DiscoInfoResult {
    let kind = match ctx.kind {
        ServiceKind::Pubsub | ServiceKind::Groupchat => "service",
        ServiceKind::Pep => "pep",
    };
    let pubsub = |feature: &str| format!("{}#{feature}", ns::PUBSUB);
    let mut features: Vec<String> = [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::COMMANDS, ns::PUBSUB]
        .iter()
        .map(|feature| (*feature).to_owned())
        .chain(FEATURES.iter().map(|feature| pubsub(feature)))
        .collect();
    features.push(pubsub(&format!(
        "access-{}",
        config.node_defaults.access_model.as_str()
    )));
    if config.auto_create {
        features.push(pubsub("auto-create"));
    }
    if ctx.kind == ServiceKind::Pep {
        features.extend(PEP_FEATURES.iter().map(|feature| pubsub(feature)));
    }
    let mut identities = vec![identity("pubsub", kind)];
    if ctx.kind == ServiceKind::Groupchat {
        identities.push(identity("conference", "text"));
        features.push(ns::MUC.to_owned());
        // XEP-0045 §10.1.4 unique room names and §7.4 ids kept, XEP-0313 on rooms (with its
        // extended queries), and XEP-0421 occupant ids in every room (so also said of the
        // service, §5).
        features.push(format!("{}#unique", ns::MUC));
        features.push(format!("{}#stable_id", ns::MUC));
        features.push("urn:xmpp:mam:2".to_owned());
        features.push("urn:xmpp:mam:2#extended".to_owned());
        features.push(xmpp_parsers::ns::OID.to_owned());
    }
    DiscoInfoResult {
        node: None,
        identities,
        features: features.into_iter().collect(),
        extensions: Vec::new(),
    }
}

fn identity(category: &str, type_: &str) -> Identity {
    Identity {
        category: category.to_owned(),
        type_: type_.to_owned(),
        lang: None,
        name: None,
    }
}

/// disco#info of the service, of a node, or of the get-pending command.
pub(crate) fn info(
    service: &Service,
    ctx: &ServiceContext,
    actor: &Jid,
    node: Option<&str>,
) -> Handler {
    let result = match node.filter(|node| !node.is_empty()) {
        None => service_info(ctx, service.config()),
        Some(ns::GET_PENDING) => DiscoInfoResult {
            node: Some(ns::GET_PENDING.to_owned()),
            identities: vec![Identity {
                name: Some(GET_PENDING_NAME.to_owned()),
                ..identity("automation", "command-node")
            }],
            features: [ns::COMMANDS, ns::DATA_FORMS]
                .iter()
                .map(|feature| (*feature).to_owned())
                .collect(),
            extensions: Vec::new(),
        },
        Some(node) => {
            let meta = service
                .metadata(node)
                .ok_or(verona_pubsub::PubsubError::NodeNotFound)?;
            // The meta-data names owners and publishers and counts subscribers: shown only to
            // those who may read the node, so that neither a whitelist conversation nor an
            // `authorize` node (an account's presence) tells strangers who takes part.
            let admitted = service
                .may(ctx.resolver, actor, Action::RetrieveItems, node)
                .is_ok();
            // A node disco#items would not list (neither readable nor open to subscription)
            // is answered as one that does not exist: its name says what its owner uses.
            if !admitted
                && service
                    .may(ctx.resolver, actor, Action::Subscribe, node)
                    .is_err()
            {
                return Err(verona_pubsub::PubsubError::NodeNotFound.into());
            }
            DiscoInfoResult {
                node: Some(node.to_owned()),
                identities: vec![identity("pubsub", "leaf")],
                features: [ns::PUBSUB.to_owned()].into_iter().collect(),
                extensions: admitted
                    .then(|| forms::meta_data(&meta))
                    .into_iter()
                    .collect(),
            }
        }
    };
    Ok(Answer::reply(Some(Element::from(result))))
}

/// Nodes listed in one disco#items answer at most (ejabberd's `max_nodes_discoitems` is 100
/// too): anyone may make nodes on `pubsub.<domain>`, and a list of them all would be an answer
/// of megabytes to a request of a hundred bytes. Past it the answer says where it stopped
/// (XEP-0059), and the next page is asked `after` it.
const MAX_NODES: usize = 100;

/// The page of nodes a disco#items request asks for (XEP-0059).
pub(crate) struct Page<'a> {
    pub max: Option<usize>,
    pub after: Option<&'a str>,
}

/// disco#items: the nodes the requester may subscribe to or read, a node's items (named by
/// ItemID, §5.5), or the commands (XEP-0050 §2.2).
pub(crate) fn items(
    service: &Service,
    ctx: &ServiceContext,
    actor: &Jid,
    node: Option<&str>,
    page: Page<'_>,
) -> Handler {
    let item = |node: Option<String>, name: Option<String>| Item {
        jid: ctx.jid.clone(),
        node,
        name,
    };
    let mut rsm = None;
    let (node, items) = match node.filter(|node| !node.is_empty()) {
        None => {
            let max = page.max.map_or(MAX_NODES, |max| max.min(MAX_NODES));
            let mut ids = service.visible_nodes(ctx.resolver, actor, page.after, max + 1);
            let more = ids.len() > max;
            ids.truncate(max);
            if more || page.max.is_some() || page.after.is_some() {
                rsm = Some(SetResult {
                    first: ids.first().map(|id| First {
                        index: None,
                        item: id.clone(),
                    }),
                    last: ids.last().cloned(),
                    count: None,
                });
            }
            let items = ids
                .into_iter()
                .map(|id| {
                    let title = service
                        .metadata(&id)
                        .map(|meta| meta.config.title.clone())
                        .filter(|title| !title.is_empty());
                    item(Some(id), title)
                })
                .collect();
            (None, items)
        }
        Some(ns::COMMANDS) => {
            let command = item(
                Some(ns::GET_PENDING.to_owned()),
                Some(GET_PENDING_NAME.to_owned()),
            );
            (Some(ns::COMMANDS.to_owned()), vec![command])
        }
        Some(node) => {
            let page = service.items(ctx.resolver, actor, node, &ItemQuery::All)?;
            let items = page
                .items
                .into_iter()
                .map(|published| item(None, Some(published.id)))
                .collect();
            (Some(node.to_owned()), items)
        }
    };
    let result = DiscoItemsResult { node, items, rsm };
    Ok(Answer::reply(Some(Element::from(result))))
}
