//! Node configuration (XEP-0060 §16.4 `pubsub#node_config`) and service configuration.
//!
//! [`NodeConfig`] is typed. Forms are a list of [`ConfigField`]s: the protocol layer turns each
//! submitted `(var, values)` into a field with [`ConfigField::parse`] and renders a configuration
//! with [`NodeConfig::fields`], so the field names and value syntax live in one place.

use std::collections::{BTreeMap, BTreeSet};

use jid::BareJid;

use crate::error::PubsubError;
use crate::vecmap::{VecMap, VecSet};

string_enum! {
    /// Who may subscribe and retrieve items (XEP-0060 §4.5).
    pub enum AccessModel {
        /// Anyone may subscribe and retrieve items.
        Open = "open",
        /// Anyone subscribed to an owner's presence.
        Presence = "presence",
        /// Anyone in one of the allowed roster groups of an owner.
        Roster = "roster",
        /// An owner approves each subscription; only subscribers retrieve items.
        Authorize = "authorize",
        /// Only entities with an affiliation (member or above).
        Whitelist = "whitelist",
    }
}

string_enum! {
    /// Who may publish (`pubsub#publish_model`).
    pub enum PublishModel {
        /// Owners, publishers and publish-only entities.
        Publishers = "publishers",
        /// Those, plus anyone with an active subscription.
        Subscribers = "subscribers",
        /// Anyone who is not an outcast.
        Open = "open",
    }
}

string_enum! {
    /// When to send the last published item (`pubsub#send_last_published_item`).
    pub enum SendLastPublishedItem {
        /// Never.
        Never = "never",
        /// When a subscription becomes active.
        OnSub = "on_sub",
        /// When a subscription becomes active and when the subscriber comes online.
        OnSubAndPresence = "on_sub_and_presence",
    }
}

string_enum! {
    /// The message type of notifications (`pubsub#notification_type`).
    pub enum NotificationType {
        /// `normal`: may be stored offline.
        Normal = "normal",
        /// `headline`: never stored offline.
        Headline = "headline",
        /// `chat`: a one-to-one conversation message (Verona extension value).
        Chat = "chat",
    }
}

string_enum! {
    /// Whom replies to items go to (`pubsub#itemreply`); `Publisher` also means that the
    /// `publisher` attribute is shown on items.
    pub enum ItemReply {
        /// The node owners.
        Owner = "owner",
        /// The item's publisher.
        Publisher = "publisher",
        /// Nobody in particular; the publisher is not shown.
        None = "none",
    }
}

/// Maximum number of items a node keeps (`pubsub#max_items`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxItems {
    /// At most this many.
    Count(usize),
    /// `max`: as many as the service allows ([`Limits::max_items_per_node`]).
    Max,
}

impl MaxItems {
    /// The effective capacity under the service's limit.
    pub fn capacity(self, limits: &Limits) -> usize {
        match self {
            MaxItems::Count(n) => n.min(limits.max_items_per_node),
            MaxItems::Max => limits.max_items_per_node,
        }
    }
}

/// The configuration of one leaf node. Field documentation names the `pubsub#` form field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `pubsub#access_model`.
    pub access_model: AccessModel,
    /// `pubsub#publish_model`.
    pub publish_model: PublishModel,
    /// `pubsub#max_items`. When full, publishing retracts the oldest item.
    pub max_items: MaxItems,
    /// `pubsub#persist_items`. Items of non-persistent nodes stay in memory only (they are still
    /// the node's current items) and never appear in [`crate::StoreOp`]s.
    pub persist_items: bool,
    /// `pubsub#deliver_notifications`. When false, no event about the node's items,
    /// configuration or deletion is sent (subscription state messages and authorization
    /// requests still are).
    pub deliver_notifications: bool,
    /// `pubsub#deliver_payloads`. When false, notifications carry item ids only.
    pub deliver_payloads: bool,
    /// `pubsub#notify_config`.
    pub notify_config: bool,
    /// `pubsub#notify_delete`.
    pub notify_delete: bool,
    /// `pubsub#notify_retract`. Also governs purge notifications and retractions caused by
    /// `max_items` eviction and item expiry.
    pub notify_retract: bool,
    /// `pubsub#notify_sub`: tell owners about subscribes and unsubscribes.
    pub notify_sub: bool,
    /// `pubsub#presence_based_delivery`: the protocol layer delivers only to available
    /// resources of recipients.
    pub presence_based_delivery: bool,
    /// `pubsub#send_last_published_item`.
    pub send_last_published_item: SendLastPublishedItem,
    /// `pubsub#notification_type`.
    pub notification_type: NotificationType,
    /// `pubsub#itemreply`.
    pub itemreply: ItemReply,
    /// `pubsub#item_expire`: seconds after publication when an item disappears; `None` = never.
    pub item_expire: Option<u64>,
    /// `pubsub#title`.
    pub title: String,
    /// `pubsub#description`.
    pub description: String,
    /// `pubsub#type`: the payload type, usually its namespace.
    pub payload_type: String,
    /// `pubsub#roster_groups_allowed` (access model `roster`).
    pub roster_groups_allowed: Vec<String>,
    /// `pubsub#subscribe`: whether the node accepts subscriptions.
    pub subscribe: bool,
    /// `pubsub#max_payload_size` in bytes; `None` = the service limit.
    pub max_payload_size: Option<usize>,
    /// `pubsub#tempsub`: every subscription is temporary (ends with the subscriber's session).
    pub tempsub: bool,
    /// Service-declared fields outside this list, by `var`. A service declares a field by giving
    /// it a default value in [`ServiceConfig::node_defaults`]; other fields are rejected.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Default for NodeConfig {
    /// Generic XEP-0060 defaults: open, persistent, payloads, last item on subscription and
    /// presence (the XEP's MUST for services offering `last-published`).
    fn default() -> Self {
        NodeConfig {
            access_model: AccessModel::Open,
            publish_model: PublishModel::Publishers,
            max_items: MaxItems::Count(10),
            persist_items: true,
            deliver_notifications: true,
            deliver_payloads: true,
            notify_config: false,
            notify_delete: true,
            notify_retract: true,
            notify_sub: false,
            presence_based_delivery: false,
            send_last_published_item: SendLastPublishedItem::OnSubAndPresence,
            notification_type: NotificationType::Headline,
            itemreply: ItemReply::None,
            item_expire: None,
            title: String::new(),
            description: String::new(),
            payload_type: String::new(),
            roster_groups_allowed: Vec::new(),
            subscribe: true,
            max_payload_size: None,
            tempsub: false,
            extra: BTreeMap::new(),
        }
    }
}

/// One typed node configuration field: an entry of a configuration form, of publish-options
/// preconditions, or of a create-and-configure request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigField {
    /// `pubsub#access_model`.
    AccessModel(AccessModel),
    /// `pubsub#publish_model`.
    PublishModel(PublishModel),
    /// `pubsub#max_items`.
    MaxItems(MaxItems),
    /// `pubsub#persist_items`.
    PersistItems(bool),
    /// `pubsub#deliver_notifications`.
    DeliverNotifications(bool),
    /// `pubsub#deliver_payloads`.
    DeliverPayloads(bool),
    /// `pubsub#notify_config`.
    NotifyConfig(bool),
    /// `pubsub#notify_delete`.
    NotifyDelete(bool),
    /// `pubsub#notify_retract`.
    NotifyRetract(bool),
    /// `pubsub#notify_sub`.
    NotifySub(bool),
    /// `pubsub#presence_based_delivery`.
    PresenceBasedDelivery(bool),
    /// `pubsub#send_last_published_item`.
    SendLastPublishedItem(SendLastPublishedItem),
    /// `pubsub#notification_type`.
    NotificationType(NotificationType),
    /// `pubsub#itemreply`.
    ItemReply(ItemReply),
    /// `pubsub#item_expire`.
    ItemExpire(Option<u64>),
    /// `pubsub#title`.
    Title(String),
    /// `pubsub#description`.
    Description(String),
    /// `pubsub#type`.
    PayloadType(String),
    /// `pubsub#roster_groups_allowed`.
    RosterGroupsAllowed(Vec<String>),
    /// `pubsub#subscribe`.
    Subscribe(bool),
    /// `pubsub#max_payload_size`.
    MaxPayloadSize(Option<usize>),
    /// `pubsub#tempsub`.
    TempSub(bool),
    /// A field outside the standard list; accepted only if the service declares it.
    Extra {
        /// The field's `var`.
        var: String,
        /// Its values.
        values: Vec<String>,
    },
}

/// The longest title a node may have, in bytes: titles are what lists of nodes and rooms
/// show, so they bound what one short request can make the service send.
pub const MAX_TITLE_BYTES: usize = 256;
/// The longest description or payload type, in bytes.
pub const MAX_TEXT_BYTES: usize = 2048;

impl ConfigField {
    /// Parses a form field. Unknown `var`s become [`ConfigField::Extra`] (the service decides
    /// whether it knows them); malformed values give [`PubsubError::InvalidField`].
    pub fn parse(var: &str, values: &[String]) -> Result<ConfigField, PubsubError> {
        let invalid = || PubsubError::InvalidField {
            var: var.to_owned(),
        };
        let single = || match values {
            [] => Ok(""),
            [one] => Ok(one.as_str()),
            _ => Err(invalid()),
        };
        let text = |text: &str, max: usize| {
            if text.len() > max {
                return Err(invalid());
            }
            Ok(text.to_owned())
        };
        let boolean = || match single()? {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(invalid()),
        };
        fn value<T: std::str::FromStr>(text: &str) -> Result<T, ()> {
            text.parse().map_err(|_| ())
        }
        // `max` (or nothing) means "no limit of the node's own".
        fn limit<N: std::str::FromStr>(text: &str) -> Result<Option<N>, ()> {
            match text {
                "" | "max" => Ok(None),
                number => number.parse().map(Some).map_err(|_| ()),
            }
        }
        Ok(match var {
            "pubsub#access_model" => {
                ConfigField::AccessModel(value(single()?).map_err(|_| invalid())?)
            }
            "pubsub#publish_model" => {
                ConfigField::PublishModel(value(single()?).map_err(|_| invalid())?)
            }
            "pubsub#max_items" => {
                ConfigField::MaxItems(match limit(single()?).map_err(|_| invalid())? {
                    Some(n) => MaxItems::Count(n),
                    None => MaxItems::Max,
                })
            }
            "pubsub#persist_items" => ConfigField::PersistItems(boolean()?),
            "pubsub#deliver_notifications" => ConfigField::DeliverNotifications(boolean()?),
            "pubsub#deliver_payloads" => ConfigField::DeliverPayloads(boolean()?),
            "pubsub#notify_config" => ConfigField::NotifyConfig(boolean()?),
            "pubsub#notify_delete" => ConfigField::NotifyDelete(boolean()?),
            "pubsub#notify_retract" => ConfigField::NotifyRetract(boolean()?),
            "pubsub#notify_sub" => ConfigField::NotifySub(boolean()?),
            "pubsub#presence_based_delivery" => ConfigField::PresenceBasedDelivery(boolean()?),
            "pubsub#send_last_published_item" => {
                ConfigField::SendLastPublishedItem(value(single()?).map_err(|_| invalid())?)
            }
            "pubsub#notification_type" => {
                ConfigField::NotificationType(value(single()?).map_err(|_| invalid())?)
            }
            "pubsub#itemreply" => ConfigField::ItemReply(value(single()?).map_err(|_| invalid())?),
            "pubsub#item_expire" => {
                ConfigField::ItemExpire(limit(single()?).map_err(|_| invalid())?)
            }
            "pubsub#title" => ConfigField::Title(text(single()?, MAX_TITLE_BYTES)?),
            "pubsub#description" => ConfigField::Description(text(single()?, MAX_TEXT_BYTES)?),
            "pubsub#type" => ConfigField::PayloadType(text(single()?, MAX_TEXT_BYTES)?),
            "pubsub#roster_groups_allowed" => ConfigField::RosterGroupsAllowed(values.to_vec()),
            "pubsub#subscribe" => ConfigField::Subscribe(boolean()?),
            "pubsub#max_payload_size" => {
                ConfigField::MaxPayloadSize(limit(single()?).map_err(|_| invalid())?)
            }
            "pubsub#tempsub" => ConfigField::TempSub(boolean()?),
            other => ConfigField::Extra {
                var: other.to_owned(),
                values: values.to_vec(),
            },
        })
    }

    /// The form field name.
    pub fn var(&self) -> &str {
        match self {
            ConfigField::AccessModel(_) => "pubsub#access_model",
            ConfigField::PublishModel(_) => "pubsub#publish_model",
            ConfigField::MaxItems(_) => "pubsub#max_items",
            ConfigField::PersistItems(_) => "pubsub#persist_items",
            ConfigField::DeliverNotifications(_) => "pubsub#deliver_notifications",
            ConfigField::DeliverPayloads(_) => "pubsub#deliver_payloads",
            ConfigField::NotifyConfig(_) => "pubsub#notify_config",
            ConfigField::NotifyDelete(_) => "pubsub#notify_delete",
            ConfigField::NotifyRetract(_) => "pubsub#notify_retract",
            ConfigField::NotifySub(_) => "pubsub#notify_sub",
            ConfigField::PresenceBasedDelivery(_) => "pubsub#presence_based_delivery",
            ConfigField::SendLastPublishedItem(_) => "pubsub#send_last_published_item",
            ConfigField::NotificationType(_) => "pubsub#notification_type",
            ConfigField::ItemReply(_) => "pubsub#itemreply",
            ConfigField::ItemExpire(_) => "pubsub#item_expire",
            ConfigField::Title(_) => "pubsub#title",
            ConfigField::Description(_) => "pubsub#description",
            ConfigField::PayloadType(_) => "pubsub#type",
            ConfigField::RosterGroupsAllowed(_) => "pubsub#roster_groups_allowed",
            ConfigField::Subscribe(_) => "pubsub#subscribe",
            ConfigField::MaxPayloadSize(_) => "pubsub#max_payload_size",
            ConfigField::TempSub(_) => "pubsub#tempsub",
            ConfigField::Extra { var, .. } => var,
        }
    }

    /// The form values (booleans as `true`/`false`, unlimited numbers as `max`).
    pub fn values(&self) -> Vec<String> {
        fn limit(value: Option<impl ToString>) -> Vec<String> {
            vec![value.map_or_else(|| "max".to_owned(), |v| v.to_string())]
        }
        match self {
            ConfigField::AccessModel(v) => vec![v.as_str().to_owned()],
            ConfigField::PublishModel(v) => vec![v.as_str().to_owned()],
            ConfigField::MaxItems(MaxItems::Count(n)) => vec![n.to_string()],
            ConfigField::MaxItems(MaxItems::Max) => vec!["max".to_owned()],
            ConfigField::PersistItems(b)
            | ConfigField::DeliverNotifications(b)
            | ConfigField::DeliverPayloads(b)
            | ConfigField::NotifyConfig(b)
            | ConfigField::NotifyDelete(b)
            | ConfigField::NotifyRetract(b)
            | ConfigField::NotifySub(b)
            | ConfigField::PresenceBasedDelivery(b)
            | ConfigField::Subscribe(b)
            | ConfigField::TempSub(b) => vec![b.to_string()],
            ConfigField::SendLastPublishedItem(v) => vec![v.as_str().to_owned()],
            ConfigField::NotificationType(v) => vec![v.as_str().to_owned()],
            ConfigField::ItemReply(v) => vec![v.as_str().to_owned()],
            ConfigField::ItemExpire(v) => limit(*v),
            ConfigField::MaxPayloadSize(v) => limit(*v),
            ConfigField::Title(s) | ConfigField::Description(s) | ConfigField::PayloadType(s) => {
                vec![s.clone()]
            }
            ConfigField::RosterGroupsAllowed(groups) => groups.clone(),
            ConfigField::Extra { values, .. } => values.clone(),
        }
    }
}

impl NodeConfig {
    /// Every field of this configuration, standard ones first, then the service's extra ones.
    pub fn fields(&self) -> Vec<ConfigField> {
        let mut fields = vec![
            ConfigField::AccessModel(self.access_model),
            ConfigField::PublishModel(self.publish_model),
            ConfigField::MaxItems(self.max_items),
            ConfigField::PersistItems(self.persist_items),
            ConfigField::DeliverNotifications(self.deliver_notifications),
            ConfigField::DeliverPayloads(self.deliver_payloads),
            ConfigField::NotifyConfig(self.notify_config),
            ConfigField::NotifyDelete(self.notify_delete),
            ConfigField::NotifyRetract(self.notify_retract),
            ConfigField::NotifySub(self.notify_sub),
            ConfigField::PresenceBasedDelivery(self.presence_based_delivery),
            ConfigField::SendLastPublishedItem(self.send_last_published_item),
            ConfigField::NotificationType(self.notification_type),
            ConfigField::ItemReply(self.itemreply),
            ConfigField::ItemExpire(self.item_expire),
            ConfigField::Title(self.title.clone()),
            ConfigField::Description(self.description.clone()),
            ConfigField::PayloadType(self.payload_type.clone()),
            ConfigField::RosterGroupsAllowed(self.roster_groups_allowed.clone()),
            ConfigField::Subscribe(self.subscribe),
            ConfigField::MaxPayloadSize(self.max_payload_size),
            ConfigField::TempSub(self.tempsub),
        ];
        fields.extend(self.extra.iter().map(|(var, values)| ConfigField::Extra {
            var: var.clone(),
            values: values.clone(),
        }));
        fields
    }

    /// Whether the field's value equals this configuration's (a publish-options precondition).
    /// An extra field this configuration does not have never matches.
    pub fn matches(&self, field: &ConfigField) -> bool {
        self.fields().contains(field)
    }

    /// Sets one field. Validation against the service happens in
    /// [`ServiceConfig::apply_fields`].
    pub fn set(&mut self, field: ConfigField) {
        match field {
            ConfigField::AccessModel(v) => self.access_model = v,
            ConfigField::PublishModel(v) => self.publish_model = v,
            ConfigField::MaxItems(v) => self.max_items = v,
            ConfigField::PersistItems(v) => self.persist_items = v,
            ConfigField::DeliverNotifications(v) => self.deliver_notifications = v,
            ConfigField::DeliverPayloads(v) => self.deliver_payloads = v,
            ConfigField::NotifyConfig(v) => self.notify_config = v,
            ConfigField::NotifyDelete(v) => self.notify_delete = v,
            ConfigField::NotifyRetract(v) => self.notify_retract = v,
            ConfigField::NotifySub(v) => self.notify_sub = v,
            ConfigField::PresenceBasedDelivery(v) => self.presence_based_delivery = v,
            ConfigField::SendLastPublishedItem(v) => self.send_last_published_item = v,
            ConfigField::NotificationType(v) => self.notification_type = v,
            ConfigField::ItemReply(v) => self.itemreply = v,
            ConfigField::ItemExpire(v) => self.item_expire = v,
            ConfigField::Title(v) => self.title = v,
            ConfigField::Description(v) => self.description = v,
            ConfigField::PayloadType(v) => self.payload_type = v,
            ConfigField::RosterGroupsAllowed(v) => self.roster_groups_allowed = v,
            ConfigField::Subscribe(v) => self.subscribe = v,
            ConfigField::MaxPayloadSize(v) => self.max_payload_size = v,
            ConfigField::TempSub(v) => self.tempsub = v,
            ConfigField::Extra { var, values } => {
                self.extra.insert(var, values);
            }
        }
    }
}

string_enum! {
    /// Who may create nodes.
    pub enum CreatePolicy {
        /// Any entity (the protocol layer may restrict to local users before calling).
        Anyone = "anyone",
        /// Only [`ServiceConfig::admins`] (a PEP service: only its account).
        AdminsOnly = "admins",
    }
}

string_enum! {
    /// Whether subscribers must configure options before receiving notifications.
    pub enum SubscriptionOptionsPolicy {
        /// Options may be given; without them the subscription is active at once.
        Optional = "optional",
        /// A subscription made without options is `unconfigured` and receives nothing until
        /// its options are set (`<subscribe-options><required/></subscribe-options>`).
        Required = "required",
    }
}

/// A service-declared subscription option (`pubsub#subscribe_options` field outside the
/// standard ones), such as the group chat `roomnick`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionOptionField {
    /// Two different bare JIDs may not hold the same value on one node (a nick in use gives
    /// [`PubsubError::OptionTaken`]). Subscriptions of the same bare JID may share it.
    pub unique: bool,
}

/// Service limits. Exceeding one gives an error, never a panic or unbounded growth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Nodes one bare JID may own (create). [`crate::Limit::MaxNodesExceeded`].
    pub max_nodes_per_owner: usize,
    /// Items one node keeps at most, whatever its `max_items`.
    pub max_items_per_node: usize,
    /// Bytes of one payload. [`PubsubError::PayloadTooBig`].
    pub max_payload_bytes: usize,
    /// Bytes (ids and payloads) one node keeps at most: past it, a publish retracts the
    /// node's oldest items as a full node does, never refuses (the newest item always stays).
    /// What bounds a node many publishers share, which nobody should be able to close by
    /// filling it (a room's history).
    pub max_node_bytes: usize,
    /// Payload bytes all the service's nodes hold together (a PEP service: one account's),
    /// but for [`ServiceConfig::unmetered_nodes`]. [`crate::Limit::ServiceBytesExceeded`].
    pub max_service_bytes: usize,
    /// Payload bytes the nodes one bare JID owns hold together (a service where anyone makes
    /// nodes). [`crate::Limit::OwnerBytesExceeded`].
    pub max_owner_bytes: usize,
    /// Subscriptions (any state, any node) held by one bare JID.
    /// [`crate::Limit::TooManySubscriptions`].
    pub max_subscriptions_per_jid: usize,
    /// Affiliations (other than `none`) one node holds. [`crate::Limit::TooManyAffiliations`].
    pub max_affiliations_per_node: usize,
    /// Subscription requests waiting for the owners' approval on one node (and a tenth of it
    /// from any one domain but the owners'): each names another JID, and JIDs of other
    /// servers cost their senders nothing to make up. [`crate::Limit::TooManyPending`].
    pub max_pending_per_node: usize,
    /// Nodes with at least this many delivering subscribers keep their recipient list between
    /// notifications (a copy of each subscriber's JID and SubID) instead of rebuilding it per
    /// notification. Many small nodes that rarely notify (accounts' presence) are better
    /// without; a service of busy nodes (rooms) is better with.
    pub keep_recipients_from: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_nodes_per_owner: 1000,
            max_items_per_node: 1000,
            max_payload_bytes: 256 * 1024,
            max_node_bytes: usize::MAX,
            max_service_bytes: usize::MAX,
            max_owner_bytes: usize::MAX,
            max_subscriptions_per_jid: 10_000,
            max_affiliations_per_node: 10_000,
            max_pending_per_node: 1_000,
            keep_recipients_from: crate::node::CACHED_RECIPIENTS,
        }
    }
}

/// The configuration of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The configuration of a new node before its creator's fields apply. Its
    /// `access_model` is the service's default access model; its `extra` map declares the
    /// service's extra node configuration fields.
    pub node_defaults: NodeConfig,
    /// Access models nodes may use; others give [`PubsubError::UnsupportedAccessModel`].
    pub access_models: BTreeSet<AccessModel>,
    /// Who may create nodes.
    pub create_policy: CreatePolicy,
    /// Service administrators: treated as owners of every node (the account of a PEP service).
    pub admins: VecSet<BareJid>,
    /// Whether publishing to a missing node creates it (PEP: yes), applying the publish-options
    /// preconditions as configuration.
    pub auto_create: bool,
    /// Whether subscriptions need options before they are active.
    pub subscription_options: SubscriptionOptionsPolicy,
    /// Service-declared subscription options, by field name.
    pub custom_subscription_options: VecMap<String, SubscriptionOptionField>,
    /// Nodes whose every current item is sent where XEP-0060 sends "the last published item"
    /// (XEP-0163's "Sending the Last Published Item" allows it; Verona's presence node needs it, its current items being the
    /// account's online resources). Other nodes send their newest item only: sending every
    /// item of a 1,000-item node on each subscription would make one request cost a thousand
    /// messages.
    pub all_items_nodes: VecSet<String>,
    /// Nodes whose items do not count against [`Limits::max_service_bytes`], being bounded
    /// otherwise (Verona's presence node: one item per session). A service at its limit can
    /// still say that its account is online.
    pub unmetered_nodes: VecSet<String>,
    /// Limits.
    pub limits: Limits,
    /// Whether an owner may create subscriptions for any entity (XEP-0060 §8.8.2). Off by
    /// default: anyone can create a node, so this would let anyone subscribe anyone to
    /// anything. Without it an owner subscribes only itself and the node's members, publishers
    /// and owners; it still approves, changes and ends any subscription.
    pub owners_subscribe_others: bool,
    /// Whether an owner may make another entity an owner. Off for `pubsub.<domain>`: the
    /// owner of a node there is who made it and answers for it (its node and byte limits),
    /// and nobody is made to hold another's nodes. On for rooms (XEP-0045 owners).
    pub owners_share_nodes: bool,
}

impl ServiceConfig {
    /// How many of `node`'s current items count as its "last published item".
    pub fn last_items(&self, node: &str) -> usize {
        if self.all_items_nodes.contains(node) {
            usize::MAX
        } else {
            1
        }
    }

    /// `pubsub.<domain>`: anyone creates nodes; default access model `authorize` (XEP-0207).
    pub fn pubsub() -> Self {
        ServiceConfig {
            // Notifications are headlines (XEP-0060 §12.2) unless a node carries messages.
            node_defaults: NodeConfig {
                access_model: AccessModel::Authorize,
                ..NodeConfig::default()
            },
            access_models: AccessModel::ALL.iter().copied().collect(),
            create_policy: CreatePolicy::Anyone,
            admins: VecSet::new(),
            auto_create: false,
            subscription_options: SubscriptionOptionsPolicy::Optional,
            custom_subscription_options: VecMap::new(),
            all_items_nodes: VecSet::new(),
            unmetered_nodes: VecSet::new(),
            limits: Limits::default(),
            owners_subscribe_others: false,
            owners_share_nodes: false,
        }
    }

    /// The PEP service of `account` (XEP-0163): only the account creates nodes, publishing
    /// auto-creates, default access model `presence`, single-item nodes.
    pub fn pep(account: BareJid) -> Self {
        ServiceConfig {
            node_defaults: NodeConfig {
                access_model: AccessModel::Presence,
                max_items: MaxItems::Count(1),
                ..NodeConfig::default()
            },
            create_policy: CreatePolicy::AdminsOnly,
            admins: VecSet::from([account]),
            auto_create: true,
            ..ServiceConfig::pubsub()
        }
    }

    /// `chat.<domain>`: one node per room; joining is subscribing with a unique `roomnick`;
    /// every subscription is temporary; default access model `authorize`.
    pub fn groupchat() -> Self {
        ServiceConfig {
            node_defaults: NodeConfig {
                access_model: AccessModel::Authorize,
                publish_model: PublishModel::Subscribers,
                max_items: MaxItems::Count(50),
                tempsub: true,
                send_last_published_item: SendLastPublishedItem::Never,
                notification_type: NotificationType::Normal,
                ..NodeConfig::default()
            },
            custom_subscription_options: VecMap::from([(
                "roomnick".to_owned(),
                SubscriptionOptionField { unique: true },
            )]),
            owners_share_nodes: true,
            ..ServiceConfig::pubsub()
        }
    }

    /// Applies `fields` to `config` and validates the result against this service: declared
    /// extra fields, offered access models, item and payload limits.
    pub fn apply_fields(
        &self,
        config: &mut NodeConfig,
        fields: &[ConfigField],
    ) -> Result<(), PubsubError> {
        for field in fields {
            self.check_field(field)?;
            config.set(field.clone());
        }
        Ok(())
    }

    /// Validates one field against this service without applying it.
    pub fn check_field(&self, field: &ConfigField) -> Result<(), PubsubError> {
        let invalid = || PubsubError::InvalidField {
            var: field.var().to_owned(),
        };
        match field {
            ConfigField::Extra { var, .. } if !self.node_defaults.extra.contains_key(var) => {
                Err(PubsubError::UnknownField { var: var.clone() })
            }
            ConfigField::AccessModel(model) if !self.access_models.contains(model) => {
                Err(PubsubError::UnsupportedAccessModel)
            }
            ConfigField::MaxItems(MaxItems::Count(n)) if *n > self.limits.max_items_per_node => {
                Err(invalid())
            }
            ConfigField::MaxPayloadSize(Some(n)) if *n > self.limits.max_payload_bytes => {
                Err(invalid())
            }
            _ => Ok(()),
        }
    }
}
