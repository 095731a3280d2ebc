//! The XEP-0004 forms of XEP-0060 (§16.4): node configuration, subscription options,
//! publish-options, node meta-data, subscription authorization and get-pending.
//!
//! Field names and value syntax live in the engine ([`ConfigField`],
//! [`SubscriptionOptions::set_field`]); this module adds the form structure: FORM_TYPE, field
//! types, labels, options.

use jid::{BareJid, Jid};
use verona_pubsub::{
    AccessModel, AuthorizationRequest, ConfigField, ItemReply, NodeConfig, NodeMetadata,
    NotificationType, PublishModel, PubsubError, SendLastPublishedItem, ServiceConfig, Show,
    SubscriptionOptions,
};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};

use crate::errors::Error;
use crate::jids;
use crate::ns;

/// A node configuration as a form: with the service, a `form` for the owner to fill in, whose
/// list fields offer what the service accepts; without, a `result` (configuration
/// notifications, meta-data).
pub(crate) fn node_config(config: &NodeConfig, service: Option<&ServiceConfig>) -> DataForm {
    let type_ = match service {
        Some(_) => DataFormType::Form,
        None => DataFormType::Result_,
    };
    let fields = config
        .fields()
        .iter()
        .map(|field| config_field(field, service))
        .collect();
    DataForm::new(type_, ns::NODE_CONFIG, fields)
}

/// One configuration field with its form type, label and (in forms) options.
fn config_field(field: &ConfigField, service: Option<&ServiceConfig>) -> Field {
    fn names<T: Copy>(
        values: impl IntoIterator<Item = T>,
        name: fn(T) -> &'static str,
    ) -> Vec<&'static str> {
        values.into_iter().map(name).collect()
    }
    let values = field.values();
    let (kind, label, options) = match field {
        ConfigField::AccessModel(_) => (
            FieldType::ListSingle,
            "Who may subscribe and retrieve items",
            names(
                service
                    .into_iter()
                    .flat_map(|s| s.access_models.iter().copied()),
                AccessModel::as_str,
            ),
        ),
        ConfigField::PublishModel(_) => (
            FieldType::ListSingle,
            "The publisher model",
            names(PublishModel::ALL.iter().copied(), PublishModel::as_str),
        ),
        ConfigField::SendLastPublishedItem(_) => (
            FieldType::ListSingle,
            "When to send the last published item",
            names(
                SendLastPublishedItem::ALL.iter().copied(),
                SendLastPublishedItem::as_str,
            ),
        ),
        ConfigField::NotificationType(_) => (
            FieldType::ListSingle,
            "Specify the delivery style for notifications",
            names(
                NotificationType::ALL.iter().copied(),
                NotificationType::as_str,
            ),
        ),
        ConfigField::ItemReply(_) => (
            FieldType::ListSingle,
            "Whether owners or publisher should receive replies to items",
            names(ItemReply::ALL.iter().copied(), ItemReply::as_str),
        ),
        ConfigField::MaxItems(_) => (FieldType::TextSingle, "Max # of items to persist", vec![]),
        ConfigField::ItemExpire(_) => (
            FieldType::TextSingle,
            "Number of seconds after which to automatically purge items",
            vec![],
        ),
        ConfigField::MaxPayloadSize(_) => (
            FieldType::TextSingle,
            "The maximum payload size in bytes",
            vec![],
        ),
        ConfigField::PersistItems(_) => (FieldType::Boolean, "Persist items to storage", vec![]),
        ConfigField::DeliverNotifications(_) => {
            (FieldType::Boolean, "Deliver event notifications", vec![])
        }
        ConfigField::DeliverPayloads(_) => (
            FieldType::Boolean,
            "Deliver payloads with event notifications",
            vec![],
        ),
        ConfigField::NotifyConfig(_) => (
            FieldType::Boolean,
            "Notify subscribers when the node configuration changes",
            vec![],
        ),
        ConfigField::NotifyDelete(_) => (
            FieldType::Boolean,
            "Notify subscribers when the node is deleted",
            vec![],
        ),
        ConfigField::NotifyRetract(_) => (
            FieldType::Boolean,
            "Notify subscribers when items are removed from the node",
            vec![],
        ),
        ConfigField::NotifySub(_) => (
            FieldType::Boolean,
            "Notify owners about new subscribers and unsubscribes",
            vec![],
        ),
        ConfigField::PresenceBasedDelivery(_) => (
            FieldType::Boolean,
            "Deliver notifications only to available users",
            vec![],
        ),
        ConfigField::Subscribe(_) => (FieldType::Boolean, "Whether to allow subscriptions", vec![]),
        ConfigField::TempSub(_) => (
            FieldType::Boolean,
            "Make all subscriptions temporary, based on subscriber presence",
            vec![],
        ),
        ConfigField::Title(_) => (
            FieldType::TextSingle,
            "A friendly name for the node",
            vec![],
        ),
        ConfigField::Description(_) => (FieldType::TextSingle, "A description of the node", vec![]),
        ConfigField::PayloadType(_) => (
            FieldType::TextSingle,
            "The semantic type information of data in the node",
            vec![],
        ),
        // Roster group names are free text: the service does not know the owner's groups.
        ConfigField::RosterGroupsAllowed(_) => (
            FieldType::TextMulti,
            "Roster groups allowed to subscribe",
            vec![],
        ),
        ConfigField::Extra { values, .. } => {
            let kind = if values.len() > 1 {
                FieldType::TextMulti
            } else {
                FieldType::TextSingle
            };
            (kind, "", vec![])
        }
    };
    let mut result = Field::new(field.var(), kind);
    result.label = (!label.is_empty()).then(|| label.to_owned());
    result.values = values;
    if service.is_some() {
        result.options = options
            .into_iter()
            .map(|value| Option_ {
                label: None,
                value: value.to_owned(),
            })
            .collect();
    }
    result
}

/// A submitted node configuration: the fields to apply, and the `pubsub#publisher` JIDs that
/// Verona accepts at creation (XEP-0207's one-to-one example sets them).
pub(crate) struct ConfigSubmission {
    pub fields: Vec<ConfigField>,
    pub publishers: Vec<BareJid>,
}

/// Reads a submitted `pubsub#node_config` form. Fields the service does not know are ignored,
/// as XEP-0004 §3.3 requires of a form-processing entity.
pub(crate) fn read_node_config(
    form: &DataForm,
    service: &ServiceConfig,
) -> Result<ConfigSubmission, Error> {
    check_form_type(form, ns::NODE_CONFIG, Error::BadRequest)?;
    let mut submission = ConfigSubmission {
        fields: Vec::new(),
        publishers: Vec::new(),
    };
    for (var, values) in submitted(form) {
        match var {
            "pubsub#publisher" => {
                for value in values {
                    let jid = jids::parse_bare(value).map_err(|_| PubsubError::InvalidField {
                        var: var.to_owned(),
                    })?;
                    submission.publishers.push(jid);
                }
            }
            "pubsub#node_type" => match values.as_slice() {
                [] => {}
                [leaf] if leaf == "leaf" => {}
                _ => return Err(Error::Unsupported("collections")),
            },
            _ => match ConfigField::parse(var, values)? {
                ConfigField::Extra { var, .. }
                    if !service.node_defaults.extra.contains_key(&var) => {}
                field => submission.fields.push(field),
            },
        }
    }
    Ok(submission)
}

/// Reads `pubsub#publish-options`: every field is a precondition; unknown ones are kept, for the
/// engine to refuse (§7.1.5 says to reject them, unlike ordinary forms).
pub(crate) fn read_preconditions(form: &DataForm) -> Result<Vec<ConfigField>, Error> {
    if form.type_ == DataFormType::Cancel {
        return Ok(Vec::new());
    }
    if form.form_type() != Some(ns::PUBLISH_OPTIONS) {
        return Err(Error::BadRequest);
    }
    submitted(form)
        .map(|(var, values)| ConfigField::parse(var, values).map_err(Error::from))
        .collect()
}

/// Subscription options as a form (`Form` to fill in, `Result` after subscribe-and-configure
/// and for the defaults).
pub(crate) fn subscribe_options(options: &SubscriptionOptions, type_: DataFormType) -> DataForm {
    let fields = options
        .fields()
        .into_iter()
        .map(|(var, values)| {
            let (kind, label) = match var.as_str() {
                "pubsub#deliver" => (FieldType::Boolean, "Enable delivery?"),
                "pubsub#digest" => (FieldType::Boolean, "Receive digest notifications?"),
                "pubsub#include_body" => (
                    FieldType::Boolean,
                    "Receive message body in addition to payload?",
                ),
                "pubsub#show-values" => (
                    FieldType::ListMulti,
                    "Select the presence types which are allowed to receive event notifications",
                ),
                "pubsub#expire" => (FieldType::TextSingle, "When the subscription ends"),
                _ => (FieldType::TextSingle, ""),
            };
            let list = kind == FieldType::ListMulti;
            let mut field = Field::new(&var, kind);
            field.label = (!label.is_empty()).then(|| label.to_owned());
            if list && type_ == DataFormType::Form {
                field.options = Show::ALL
                    .iter()
                    .map(|show| Option_ {
                        label: None,
                        value: show.as_str().to_owned(),
                    })
                    .collect();
            }
            field.values = values;
            field
        })
        .collect();
    DataForm::new(type_, ns::SUBSCRIBE_OPTIONS, fields)
}

/// The standard `pubsub#subscribe_options` fields the engine understands.
const SUBSCRIBE_OPTIONS_FIELDS: [&str; 5] = [
    "pubsub#deliver",
    "pubsub#digest",
    "pubsub#include_body",
    "pubsub#show-values",
    "pubsub#expire",
];

/// Applies a submitted `pubsub#subscribe_options` form to `options`: fields left out keep their
/// value (XEP-0004 incomplete submissions), fields neither standard nor declared by the service
/// are ignored (XEP-0004 §3.3).
pub(crate) fn read_subscribe_options(
    form: &DataForm,
    service: &ServiceConfig,
    options: &mut SubscriptionOptions,
) -> Result<(), Error> {
    check_form_type(
        form,
        ns::SUBSCRIBE_OPTIONS,
        PubsubError::InvalidOptions.into(),
    )?;
    for (var, values) in submitted(form) {
        if SUBSCRIBE_OPTIONS_FIELDS.contains(&var)
            || service.custom_subscription_options.contains_key(var)
        {
            options.set_field(var, values)?;
        }
    }
    Ok(())
}

/// Node meta-data for disco#info (§5.4): the configuration plus owners, publishers and the
/// number of subscribers.
pub(crate) fn meta_data(meta: &NodeMetadata) -> DataForm {
    let mut form = node_config(meta.config, None);
    form.set_form_type(ns::META_DATA.to_owned());
    let jids = |var: &str, label: &str, jids: &[BareJid]| {
        let mut field = Field::new(var, FieldType::JidMulti);
        field.label = Some(label.to_owned());
        field.values = jids.iter().map(|jid| jid.to_string()).collect();
        field
    };
    form.fields
        .push(jids("pubsub#owner", "Node owners", &meta.owners));
    form.fields.push(jids(
        "pubsub#publisher",
        "Publishers to this node",
        &meta.publishers,
    ));
    let mut subscribers =
        Field::text_single("pubsub#num_subscribers", &meta.subscribers.to_string());
    subscribers.label = Some("Number of subscribers to this node".to_owned());
    form.fields.push(subscribers);
    form
}

/// The §8.6 form asking an owner to approve a subscription.
pub(crate) fn authorization_request(request: &AuthorizationRequest) -> DataForm {
    let labelled = |var: &str, kind: FieldType, label: &str, value: &str| {
        let mut field = Field::new(var, kind).with_value(value);
        field.label = (!label.is_empty()).then(|| label.to_owned());
        field
    };
    let mut form = DataForm::new(
        DataFormType::Form,
        ns::SUBSCRIBE_AUTHORIZATION,
        vec![
            labelled("pubsub#subid", FieldType::Hidden, "", &request.subid),
            labelled(
                "pubsub#node",
                FieldType::TextSingle,
                "Node ID",
                &request.node,
            ),
            labelled(
                "pubsub#subscriber_jid",
                FieldType::JidSingle,
                "Subscriber Address",
                request.subscriber.as_str(),
            ),
            labelled(
                "pubsub#allow",
                FieldType::Boolean,
                "Allow this JID to subscribe to this pubsub node?",
                "false",
            ),
        ],
    );
    form.title = Some("PubSub subscriber request".to_owned());
    form.instructions = Some(
        "To approve this entity's subscription request, click the OK button. \
         To deny the request, click the cancel button."
            .to_owned(),
    );
    form
}

/// An owner's answer to an authorization request.
#[derive(Debug)]
pub(crate) struct AuthorizationAnswer {
    pub node: String,
    pub subscriber: Jid,
    pub subid: Option<String>,
    pub allow: bool,
}

/// Reads a submitted authorization form. The subscriber field is also accepted as
/// `pusub#subscriber_jid`, as XEP-0207's Example 10 spells it.
pub(crate) fn read_authorization(form: &DataForm) -> Result<AuthorizationAnswer, Error> {
    let mut node = String::new();
    let mut subscriber = None;
    let mut subid = None;
    let mut allow = None;
    for (var, values) in submitted(form) {
        let value = single(values)?;
        match var {
            "pubsub#node" => node = value.to_owned(),
            "pubsub#subscriber_jid" | "pusub#subscriber_jid" => {
                subscriber = Some(jids::parse(value).map_err(|_| PubsubError::InvalidJid)?);
            }
            "pubsub#subid" if !value.is_empty() => subid = Some(value.to_owned()),
            "pubsub#allow" => allow = Some(boolean(value)?),
            _ => {}
        }
    }
    Ok(AuthorizationAnswer {
        node,
        subscriber: subscriber.ok_or(Error::JidRequired)?,
        subid,
        allow: allow.ok_or(Error::BadRequest)?,
    })
}

/// The first step of get-pending (§8.7.1): the nodes whose requests the owner may manage.
pub(crate) fn pending_nodes(nodes: &[String]) -> DataForm {
    let mut field = Field::new("pubsub#node", FieldType::ListSingle);
    field.label = Some("Node ID".to_owned());
    field.options = nodes
        .iter()
        .map(|node| Option_ {
            label: None,
            value: node.clone(),
        })
        .collect();
    DataForm::new(DataFormType::Form, ns::SUBSCRIBE_AUTHORIZATION, vec![field])
}

/// The node chosen in the second step of get-pending.
pub(crate) fn read_pending_node(form: &DataForm) -> Result<String, Error> {
    submitted(form)
        .find(|(var, _)| *var == "pubsub#node")
        .map(|(_, values)| single(values).map(str::to_owned))
        .unwrap_or(Err(Error::BadRequest))
}

/// The fields a submission sets: named ones other than FORM_TYPE.
fn submitted(form: &DataForm) -> impl Iterator<Item = (&str, &Vec<String>)> {
    form.fields
        .iter()
        .filter_map(|field| match field.var.as_deref() {
            None | Some("FORM_TYPE") => None,
            Some(var) => Some((var, &field.values)),
        })
}

/// A FORM_TYPE, when given, must be the expected one.
fn check_form_type(form: &DataForm, expected: &str, error: Error) -> Result<(), Error> {
    match form.form_type() {
        Some(form_type) if form_type != expected => Err(error),
        _ => Ok(()),
    }
}

fn single(values: &[String]) -> Result<&str, Error> {
    match values {
        [] => Ok(""),
        [value] => Ok(value),
        _ => Err(Error::BadRequest),
    }
}

fn boolean(value: &str) -> Result<bool, Error> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(Error::BadRequest),
    }
}
