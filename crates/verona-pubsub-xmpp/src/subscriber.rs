//! Subscriber and entity use cases: subscribe, unsubscribe, subscription options, item
//! retrieval (XEP-0060 §6, XEP-0059), one's own subscriptions and affiliations (§5.6, §5.7).

use jid::Jid;
use minidom::Element;
use verona_pubsub::{
    Affiliation, ItemQuery, ItemReply, NodeId, PagePosition, PageRequest, PubsubError, Service,
    SubscriptionInfo, SubscriptionOptions, SubscriptionState,
};
use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::rsm::{First, SetResult};

use crate::errors::Error;
use crate::forms;
use crate::ns;
use crate::render::item_element;
use crate::request::OptionsTarget;
use crate::xml::{BuilderExt, builder};
use crate::{Answer, Handler, ServiceContext};

/// `<pubsub/>` around one child.
pub(crate) fn pubsub(child: Element) -> Element {
    builder("pubsub", ns::PUBSUB).append(child).build()
}

/// A `<subscription/>` as the subscriber sees it.
fn subscription(info: &SubscriptionInfo) -> Element {
    builder("subscription", ns::PUBSUB)
        .with("node", info.node.as_str())
        .with("jid", info.jid.as_str())
        .with("subid", info.subid.as_str())
        .with("subscription", info.state.as_str())
        .build()
}

/// §5.6.
pub(crate) fn own_subscriptions(service: &Service, actor: &Jid, node: Option<String>) -> Answer {
    let subscriptions = service.own_subscriptions(actor, node.as_deref());
    Answer::reply(Some(subscription_list(&subscriptions, node)))
}

/// §5.6's answer: the `<pubsub/>` listing `subscriptions`, those held on every node or, with
/// `node`, on that one.
pub fn subscription_list(subscriptions: &[SubscriptionInfo], node: Option<String>) -> Element {
    let list = builder("subscriptions", ns::PUBSUB)
        .with("node", node)
        .append_all(subscriptions.iter().map(subscription))
        .build();
    pubsub(list)
}

/// §5.7.
pub(crate) fn own_affiliations(service: &Service, actor: &Jid, node: Option<String>) -> Answer {
    let affiliations = service.own_affiliations(actor, node.as_deref());
    Answer::reply(Some(affiliation_list(&affiliations)))
}

/// The `<pubsub><affiliations/></pubsub>` of a §5.7 result: each node and the affiliation
/// held with it.
pub fn affiliation_list(affiliations: &[(NodeId, Affiliation)]) -> Element {
    let list = builder("affiliations", ns::PUBSUB)
        .append_all(affiliations.iter().map(|(node, affiliation)| {
            builder("affiliation", ns::PUBSUB)
                .with("node", node.as_str())
                .with("affiliation", affiliation.as_str())
                .build()
        }))
        .build();
    pubsub(list)
}

/// §6.1, and §6.3.7 when options come with the request.
pub(crate) fn subscribe(
    service: &mut Service,
    ctx: &ServiceContext,
    actor: &Jid,
    node: &str,
    jid: &Jid,
    form: Option<DataForm>,
) -> Handler {
    let options = match form {
        Some(form) if form.type_ != DataFormType::Cancel => {
            let mut options = service.default_subscription_options();
            forms::read_subscribe_options(&form, service.config(), &mut options)?;
            Some(options)
        }
        _ => None,
    };
    let configured = options.is_some();
    let outcome = service.subscribe(ctx.resolver, actor, node, jid, options)?;
    let info = &outcome.value;
    let mut answer = subscription(info);
    if info.state == SubscriptionState::Unconfigured {
        // §6.1.6: the subscriber must configure before it receives anything.
        let required = builder("subscribe-options", ns::PUBSUB)
            .append(Element::bare("required", ns::PUBSUB))
            .build();
        answer.append_child(required);
    }
    let mut reply = builder("pubsub", ns::PUBSUB).append(answer);
    if configured {
        let form = forms::subscribe_options(&info.options, DataFormType::Result_);
        reply = reply.append(
            builder("options", ns::PUBSUB)
                .append(Element::from(form))
                .build(),
        );
    }
    Ok(Answer::outcome(Some(reply.build()), outcome))
}

/// §6.2.
pub(crate) fn unsubscribe(
    service: &mut Service,
    actor: &Jid,
    node: &str,
    jid: &Jid,
    subid: Option<&str>,
) -> Handler {
    let outcome = service.unsubscribe(actor, node, jid, subid)?;
    let reply = pubsub(subscription(&outcome.value));
    Ok(Answer::outcome(Some(reply), outcome))
}

/// §6.3.2: the options form.
pub(crate) fn options(service: &Service, actor: &Jid, target: &OptionsTarget) -> Handler {
    let options = subscription_options(service, actor, target)?;
    let form = forms::subscribe_options(&options, DataFormType::Form);
    let reply = builder("options", ns::PUBSUB)
        .with("node", target.node.as_str())
        .with("jid", target.jid.as_str())
        .with("subid", target.subid.as_deref())
        .append(Element::from(form))
        .build();
    Ok(Answer::reply(Some(pubsub(reply))))
}

/// §6.3.5: a submitted options form; fields left out keep their value, a cancelled form
/// changes nothing.
pub(crate) fn set_options(
    service: &mut Service,
    actor: &Jid,
    target: &OptionsTarget,
    form: &DataForm,
) -> Handler {
    if form.type_ == DataFormType::Cancel {
        return Ok(Answer::reply(None));
    }
    let subid = target.subid.as_deref();
    let mut options = subscription_options(service, actor, target)?;
    forms::read_subscribe_options(form, service.config(), &mut options)?;
    let outcome =
        service.set_subscription_options(actor, &target.node, &target.jid, subid, options)?;
    Ok(Answer::outcome(None, outcome))
}

/// The options of the subscription `target` names (§6.3.4.2: `modify` when there is none).
fn subscription_options(
    service: &Service,
    actor: &Jid,
    target: &OptionsTarget,
) -> Result<SubscriptionOptions, Error> {
    let subid = target.subid.as_deref();
    service
        .subscription_options(actor, &target.node, &target.jid, subid)
        .map_err(|error| match error {
            PubsubError::NotSubscribed => Error::NoSuchSubscriber,
            error => error.into(),
        })
}

/// §6.4: the options a subscription gets when none are given (the same for every node).
pub(crate) fn default_options(service: &Service, node: Option<String>) -> Handler {
    if let Some(node) = &node
        && service.metadata(node).is_none()
    {
        return Err(PubsubError::NodeNotFound.into());
    }
    let form = forms::subscribe_options(
        &service.default_subscription_options(),
        DataFormType::Result_,
    );
    let default = builder("default", ns::PUBSUB)
        .with("node", node)
        .append(Element::from(form))
        .build();
    Ok(Answer::reply(Some(pubsub(default))))
}

/// §6.5, newest first, for the requester's subscription `subid` names (§6.5.9); with a
/// XEP-0059 `<set/>` answer when the request was paged.
/// Items one retrieval returns at most, and their payload bytes at most (one item always): a
/// larger node is returned a page at a time, so that a short request cannot make the service
/// serialise a whole node (issue #11 H5).
const MAX_ITEMS: usize = 100;
const MAX_BYTES: usize = 512 * 1024;

pub(crate) fn items(
    service: &Service,
    ctx: &ServiceContext,
    actor: &Jid,
    node: &str,
    query: &ItemQuery,
    paged: bool,
    subid: Option<&str>,
) -> Handler {
    let bounded = match query {
        ItemQuery::All => ItemQuery::Page(PageRequest {
            max: MAX_ITEMS,
            position: PagePosition::First,
        }),
        ItemQuery::Latest(n) => ItemQuery::Latest((*n).min(MAX_ITEMS)),
        ItemQuery::Ids(ids) => ItemQuery::Ids(ids.iter().take(MAX_ITEMS).cloned().collect()),
        ItemQuery::Page(page) => ItemQuery::Page(PageRequest {
            max: page.max.min(MAX_ITEMS),
            position: page.position.clone(),
        }),
    };
    let mut page = service.items(ctx.resolver, actor, node, &bounded)?;
    service.check_retrieval_subid(actor, node, subid)?;
    let mut bytes = 0;
    let fits = page
        .items
        .iter()
        .take_while(|item| {
            let first = bytes == 0;
            bytes += item.payload.as_deref().map_or(0, str::len);
            first || bytes <= MAX_BYTES
        })
        .count();
    let cut = fits < page.items.len();
    page.items.truncate(fits);
    // A reply holding less than asked says where it stopped (§6.5.4, XEP-0059).
    let shortened = match query {
        ItemQuery::All => page.items.len() < page.count,
        ItemQuery::Latest(n) => page.items.len() < (*n).min(page.count),
        ItemQuery::Ids(_) | ItemQuery::Page(_) => false,
    };
    let paged = paged || cut || shortened;
    // §7.1.2.3: if notifications show publishers, every retrieval does.
    let with_publisher = service
        .metadata(node)
        .is_some_and(|meta| meta.config.itemreply == ItemReply::Publisher);
    let items = builder("items", ns::PUBSUB)
        .with("node", node)
        .append_all(
            page.items
                .iter()
                .map(|item| item_element(ns::PUBSUB, item, with_publisher)),
        )
        .build();
    let mut reply = builder("pubsub", ns::PUBSUB).append(items);
    if paged {
        let set = SetResult {
            first: page.items.first().map(|item| First {
                index: Some(page.first_index),
                item: item.id.clone(),
            }),
            last: page.items.last().map(|item| item.id.clone()),
            count: Some(page.count),
        };
        reply = reply.append(Element::from(set));
    }
    Ok(Answer::reply(Some(reply.build())))
}
