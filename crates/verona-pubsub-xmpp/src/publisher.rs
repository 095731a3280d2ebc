//! Publisher use cases: publish with publish-options, retract (XEP-0060 §7).

use jid::Jid;
use verona_pubsub::{NewItem, PublishRequest, Service};
use xmpp_parsers::data_forms::DataForm;

use crate::forms;
use crate::ns;
use crate::subscriber::pubsub;
use crate::xml::{BuilderExt, builder};
use crate::{Answer, Error, Handler, Published};

/// §7.1. The result always names the item, so that a publisher that let the service choose
/// the ItemID learns it (§7.1.2), and one that chose it gets a uniform answer. A payload
/// not of the node's `pubsub#type` is `invalid-payload` (§7.1.3.5).
pub(crate) fn publish(
    service: &mut Service,
    actor: &Jid,
    node: String,
    item: Option<NewItem>,
    payload_ns: Option<String>,
    options: Option<DataForm>,
) -> Handler {
    let preconditions = match &options {
        Some(form) => forms::read_preconditions(form)?,
        None => Vec::new(),
    };
    let request = PublishRequest {
        item,
        preconditions,
        transient: false,
    };
    let outcome = service.publish(actor, &node, request)?;
    // Checked once the publish is allowed (a stranger does not learn the node's type by
    // trying) and the node is there (made by this publish, with the type its options gave).
    if let (Some(config), Some(payload_ns)) = (service.node_config(&node), &payload_ns)
        && !config.payload_type.is_empty()
        && config.payload_type != *payload_ns
    {
        service
            .undo(outcome.undo)
            .expect("undone right after it was made");
        return Err(Error::InvalidPayload.into());
    }
    let published = outcome.value.item_id.clone().map(|item_id| Published {
        node: node.clone(),
        item_id,
    });
    let item = outcome
        .value
        .item_id
        .as_deref()
        .map(|id| builder("item", ns::PUBSUB).with("id", id).build());
    let publish = builder("publish", ns::PUBSUB)
        .with("node", node)
        .append_all(item)
        .build();
    let mut answer = Answer::outcome(Some(pubsub(publish)), outcome);
    answer.published = published;
    Ok(answer)
}

/// §7.2.
pub(crate) fn retract(
    service: &mut Service,
    actor: &Jid,
    node: &str,
    id: &str,
    notify: bool,
) -> Handler {
    let outcome = service.retract(actor, node, id, notify)?;
    Ok(Answer::outcome(None, outcome))
}
