//! What an operation asks its caller to do: storage writes, notifications, authorization
//! requests and last-item deliveries, plus the stored form of a node for restore.

use std::sync::Arc;

use jid::{BareJid, Jid};

use crate::access::Affiliation;
use crate::config::{ItemReply, NodeConfig, NotificationType};
use crate::item::Item;
use crate::state::Undo;
use crate::subscription::{ShowSet, Subscription, SubscriptionOptions, SubscriptionState};
use crate::{ItemId, NodeId, SubId};

/// The result of a mutating operation.
///
/// Carry it out in this order: make every [`Effect::Persist`] durable (they come first in
/// `effects`); if that fails, pass `undo` to [`crate::Service::undo`] and report an internal
/// error; otherwise acknowledge the request and deliver the other effects.
#[derive(Debug)]
#[must_use = "effects must be carried out, or the operation undone"]
pub struct Outcome<T = ()> {
    /// The operation's answer (a SubID, an item id, the removed subscriptions…).
    pub value: T,
    /// Storage writes first, then deliveries, in the order they should happen.
    pub effects: Vec<Effect>,
    /// Reverts the operation's in-memory changes.
    pub undo: Undo,
}

impl<T> Outcome<T> {
    /// Transforms the value, keeping effects and undo handle.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        Outcome {
            value: f(self.value),
            effects: self.effects,
            undo: self.undo,
        }
    }

    /// The storage writes.
    pub fn store_ops(&self) -> impl Iterator<Item = &StoreOp> {
        self.effects.iter().filter_map(|effect| match effect {
            Effect::Persist(op) => Some(op),
            _ => None,
        })
    }

    /// The notifications.
    pub fn notifications(&self) -> impl Iterator<Item = &Notification> {
        self.effects.iter().filter_map(|effect| match effect {
            Effect::Notify(notification) => Some(notification),
            _ => None,
        })
    }
}

/// One thing for the caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write this to storage before acknowledging the request or delivering anything.
    Persist(StoreOp),
    /// Send a `pubsub#event` notification.
    Notify(Notification),
    /// Ask the node owners to approve a pending subscription (a
    /// `pubsub#subscribe_authorization` form).
    AuthorizationRequest(AuthorizationRequest),
    /// Send current items to a new (or newly online) subscriber.
    SendLastItems(LastItems),
}

/// A notification about one node, to a list of recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The node.
    pub node: NodeId,
    /// What happened.
    pub event: Event,
    /// Who receives it. Shared: a publish to N subscribers copies no per-recipient data.
    pub recipients: Arc<[Recipient]>,
    /// The node's `pubsub#notification_type`.
    pub notification_type: NotificationType,
    /// The node's `pubsub#presence_based_delivery`: deliver only to available resources.
    pub presence_based_delivery: bool,
    /// The node's `pubsub#itemreply`: whether to show item publishers.
    pub itemreply: ItemReply,
}

/// The content of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Items were published. Payloads are `None` when the node does not deliver payloads;
    /// the list is empty for a transient notification-only node.
    Items {
        /// The published items.
        items: Vec<Item>,
    },
    /// Items were retracted (by request, by `max_items` eviction or by expiry).
    Retract {
        /// Their ids.
        ids: Vec<ItemId>,
    },
    /// All items were removed.
    Purge,
    /// The node was deleted.
    Delete {
        /// Where the node's content moved, if the owner said.
        redirect: Option<String>,
    },
    /// The configuration changed; `config` is included when the node delivers payloads.
    Configuration {
        /// The new configuration.
        config: Option<Box<NodeConfig>>,
    },
    /// A subscription changed state (XEP-0060 §12.15 subscription notifications; also sent
    /// to owners when `pubsub#notify_sub` is set).
    Subscription {
        /// The subscribed JID.
        jid: Jid,
        /// Its new state (`None` when it ended or was denied).
        state: SubscriptionState,
        /// Its SubID.
        subid: Option<SubId>,
    },
}

/// One recipient of a notification: a subscribed JID and what its subscriptions ask for.
///
/// The notification goes to `jid` (a bare JID means: its available resources, as the protocol
/// layer decides). When the JID holds several subscriptions, `subids` lists them all (XEP-0060
/// SHIM headers) and the options are merged: `show_values` is the union (`None` if any
/// subscription accepts every show), `include_body` is true if any asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The subscribed JID.
    pub jid: Jid,
    /// The SubIDs of its subscriptions that produced this notification (empty for owner
    /// notices).
    pub subids: Vec<SubId>,
    /// `pubsub#show-values` filter, applied by the protocol layer.
    pub show_values: Option<ShowSet>,
    /// `pubsub#include_body`.
    pub include_body: bool,
}

impl Recipient {
    /// A recipient outside any subscription (an owner being told about a subscriber).
    pub(crate) fn plain(jid: Jid) -> Self {
        Recipient {
            jid,
            subids: Vec::new(),
            show_values: None,
            include_body: false,
        }
    }

    pub(crate) fn new(jid: Jid, subid: &SubId, subscription: &Subscription) -> Self {
        let options = &subscription.options;
        Recipient {
            jid,
            subids: vec![subid.clone()],
            show_values: options.show_values,
            include_body: options.include_body,
        }
    }

    pub(crate) fn add(&mut self, subid: &SubId, subscription: &Subscription) {
        let options = &subscription.options;
        self.subids.push(subid.clone());
        self.include_body |= options.include_body;
        self.show_values = match (self.show_values, options.show_values) {
            (Some(mine), Some(theirs)) => Some(mine.union(theirs)),
            _ => None,
        };
    }
}

/// A subscription waiting for an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The node.
    pub node: NodeId,
    /// The JID asking to subscribe (`pubsub#subscriber_jid`).
    pub subscriber: Jid,
    /// The pending subscription's SubID (`pubsub#subid`).
    pub subid: SubId,
    /// Who may answer: every owner of the node.
    pub owners: Vec<BareJid>,
}

/// Items to send to one subscriber (with XEP-0203 delay stamps from [`Item::published`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastItems {
    /// Where to send them: the subscribed JID, or the newly available full JID.
    pub to: Jid,
    /// The node.
    pub node: NodeId,
    /// The subscription that earns them.
    pub subid: SubId,
    /// Newest first; payloads are `None` when the node does not deliver payloads.
    pub items: Vec<Item>,
    /// The node's `pubsub#notification_type`: last items are sent as its notifications are.
    pub notification_type: NotificationType,
    /// The node's `pubsub#itemreply`, likewise.
    pub itemreply: ItemReply,
}

impl LastItems {
    /// Items of a node configured as `config`, for `to`, whatever earns them (a
    /// subscription, `+notify`, its own account's).
    pub fn of(to: Jid, node: NodeId, config: &NodeConfig, subid: SubId, items: Vec<Item>) -> Self {
        LastItems {
            to,
            node,
            subid,
            items,
            notification_type: config.notification_type,
            itemreply: config.itemreply,
        }
    }
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// Unique within the node.
    pub subid: SubId,
    /// The subscribed JID.
    pub jid: Jid,
    /// Its state.
    pub state: SubscriptionState,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// One storage write, for persistent state only: temporary subscriptions and the items of
/// non-persistent nodes never appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// A node was created with this configuration.
    NodeCreated {
        /// The node.
        node: NodeId,
        /// Its configuration.
        config: NodeConfig,
    },
    /// A node's configuration changed.
    NodeConfigured {
        /// The node.
        node: NodeId,
        /// Its new configuration.
        config: NodeConfig,
    },
    /// A node was deleted, with its items, affiliations and subscriptions.
    NodeDeleted {
        /// The node.
        node: NodeId,
    },
    /// An affiliation was set; `Affiliation::None` removes it.
    AffiliationSet {
        /// The node.
        node: NodeId,
        /// The affiliated bare JID.
        jid: BareJid,
        /// The new affiliation.
        affiliation: Affiliation,
    },
    /// A subscription was created or changed (keyed by node and SubID).
    SubscriptionSet {
        /// The node.
        node: NodeId,
        /// The subscription.
        subscription: StoredSubscription,
    },
    /// A subscription ended.
    SubscriptionRemoved {
        /// The node.
        node: NodeId,
        /// Its SubID.
        subid: SubId,
    },
    /// An item was stored, replacing any item with the same id; it is now the node's newest.
    /// The store must keep publication order (restore takes items oldest first).
    ItemStored {
        /// The node.
        node: NodeId,
        /// The item.
        item: Item,
    },
    /// An item was removed.
    ItemRemoved {
        /// The node.
        node: NodeId,
        /// Its id.
        id: ItemId,
    },
    /// All stored items of the node were removed.
    ItemsPurged {
        /// The node.
        node: NodeId,
    },
}

/// A node as stored, for [`crate::Service::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNode {
    /// The node.
    pub id: NodeId,
    /// Its configuration.
    pub config: NodeConfig,
    /// Its affiliations.
    pub affiliations: Vec<(BareJid, Affiliation)>,
    /// Its subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Its stored items, oldest first.
    pub items: Vec<Item>,
}
