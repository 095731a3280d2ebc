//! The service: one value per pubsub service, with every XEP-0060 use case as an operation.
//!
//! Operations are grouped like the XEP: [`entity`] (§5), [`subscriber`] (§6), [`publisher`]
//! (§7), [`owner`] (§8). Each mutating operation has the same shape: check the request's shape,
//! look up the node, check access ([`crate::access`]), mutate through a journaled transaction,
//! and return an [`Outcome`] listing the effects.

mod entity;
mod owner;
mod publisher;
mod subscriber;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jid::{BareJid, Jid};

use crate::access::{self, AccessResolver, Action};
use crate::config::{NodeConfig, SendLastPublishedItem, ServiceConfig};
use crate::effects::{
    Effect, Event, LastItems, Notification, Outcome, Recipient, StoreOp, StoredNode,
    StoredSubscription,
};
use crate::env::Environment;
use crate::error::PubsubError;
use crate::item::{Item, ItemStore};
use crate::node::{Held, Node};
use crate::state::{State, Tx, Undo, UndoError};
use crate::subscription::{Subscription, SubscriptionOptions, SubscriptionState};
use crate::{NodeId, SubId};

pub use entity::NodeMetadata;
pub use owner::{CreateRequest, SubscriptionChange};
pub use publisher::{NewItem, PublishRequest, Published};

/// One pubsub service: its configuration, its nodes, and the injected environment.
pub struct Service {
    config: ServiceConfig,
    env: Box<dyn Environment>,
    state: State,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .field("nodes", &self.state.nodes.len())
            .finish_non_exhaustive()
    }
}

/// A deep copy of a service's in-memory state, indexes included, for equality checks (undo
/// tests, debugging). Taking one is O(size of the service).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot(State);

/// A subscription as reported to its subscriber or to an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The node.
    pub node: NodeId,
    /// The subscribed JID.
    pub jid: Jid,
    /// The SubID (always present: the service generates one per subscription).
    pub subid: SubId,
    /// The state; `None` in answers about a subscription that just ended.
    pub state: SubscriptionState,
    /// The options.
    pub options: SubscriptionOptions,
}

/// A subscription lent by [`Service::subscriptions`] and [`Service::subscriptions_of_jid`]:
/// what a [`SubscriptionInfo`] copies, for views that look at every occupant of a room per
/// message.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionRef<'a> {
    /// The subscribed JID.
    pub jid: &'a Jid,
    /// The SubID.
    pub subid: &'a SubId,
    /// The state.
    pub state: SubscriptionState,
    /// The options.
    pub options: &'a SubscriptionOptions,
}

impl SubscriptionRef<'_> {
    /// The owned copy, as a subscription to `node`.
    pub fn to_info(self, node: &str) -> SubscriptionInfo {
        SubscriptionInfo {
            node: node.to_owned(),
            jid: self.jid.clone(),
            subid: self.subid.clone(),
            state: self.state,
            options: self.options.clone(),
        }
    }
}

impl<'a> SubscriptionRef<'a> {
    fn new(subid: &'a SubId, sub: &'a Subscription) -> Self {
        SubscriptionRef {
            jid: &sub.jid,
            subid,
            state: sub.state,
            options: &sub.options,
        }
    }
}

impl Service {
    /// An empty service.
    pub fn new(config: ServiceConfig, env: Box<dyn Environment>) -> Self {
        Service {
            config,
            env,
            state: State::default(),
        }
    }

    /// Rebuilds a service from storage (server start). Items are taken oldest first, as
    /// [`StoreOp::ItemStored`] orders them. Storage is trusted: if it repeats a key (node,
    /// SubID, item id), the last entry wins.
    pub fn restore(
        config: ServiceConfig,
        env: Box<dyn Environment>,
        nodes: impl IntoIterator<Item = StoredNode>,
    ) -> Self {
        let mut state = State::default();
        for stored in nodes {
            let mut node = Node::new(stored.id, stored.config);
            for (jid, affiliation) in stored.affiliations {
                node.set_affiliation(jid, affiliation);
            }
            for sub in stored.subscriptions {
                let subscription = Subscription {
                    jid: sub.jid,
                    state: sub.state,
                    options: sub.options,
                };
                node.put_subscription(&subscription.jid.to_bare(), &sub.subid, Some(subscription));
            }
            node.shrink_to_fit();
            node.items = ItemStore::from_oldest_first(stored.items);
            state.insert_node(node);
        }
        Service { config, env, state }
    }

    /// The persistent state, as storage holds it after carrying out every [`StoreOp`]: no
    /// temporary subscriptions, no items of non-persistent nodes.
    pub fn stored_nodes(&self) -> Vec<StoredNode> {
        self.state
            .nodes
            .values()
            .map(|node| StoredNode {
                id: node.id.clone(),
                config: node.config.clone(),
                affiliations: node
                    .affiliations()
                    .map(|(jid, aff)| (jid.clone(), aff))
                    .collect(),
                subscriptions: node
                    .subscriptions()
                    .filter(|(_, sub)| !sub.options.temporary)
                    .map(|(subid, sub)| stored_subscription(subid, sub))
                    .collect(),
                items: if node.config.persist_items {
                    node.items.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// The service configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// A copy of the in-memory state for equality checks.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.state.clone())
    }

    /// Reverts the operation that produced `undo` (its storage writes failed). Outstanding
    /// undo handles must be applied newest first.
    pub fn undo(&mut self, undo: Undo) -> Result<(), UndoError> {
        self.state.undo(undo)
    }

    /// Whether `actor` may perform `action` on `node`: `Ok`, or the error XEP-0060 prescribes
    /// (see [`crate::access`]).
    pub fn may(
        &self,
        resolver: &dyn AccessResolver,
        actor: &Jid,
        action: Action,
        node: &str,
    ) -> Result<(), PubsubError> {
        let node = find_node(&self.state, node)?;
        access::may(
            node,
            &self.config.admins,
            resolver,
            &actor.to_bare(),
            action,
        )
    }

    fn is_admin(&self, jid: &BareJid) -> bool {
        self.config.admins.contains(jid)
    }
}

/// Effects as an operation accumulates them: storage writes are kept apart so that they come
/// first in the outcome.
#[derive(Default)]
struct Effects {
    persist: Vec<StoreOp>,
    deliver: Vec<Effect>,
}

impl Effects {
    fn persist(&mut self, op: StoreOp) {
        self.persist.push(op);
    }

    fn push(&mut self, effect: Effect) {
        self.deliver.push(effect);
    }

    /// Notifies `recipients` of `event` on `node`, unless there is nobody to tell.
    fn notify(
        &mut self,
        how: impl Into<Notifying>,
        node: &str,
        event: Event,
        recipients: Arc<[Recipient]>,
    ) {
        if recipients.is_empty() {
            return;
        }
        let how = how.into();
        self.deliver.push(Effect::Notify(Notification {
            node: node.to_owned(),
            event,
            recipients,
            notification_type: how.notification_type,
            presence_based_delivery: how.presence_based_delivery,
            itemreply: how.itemreply,
        }));
    }

    fn finish<T>(self, value: T, undo: Undo) -> Outcome<T> {
        let mut effects: Vec<Effect> = self.persist.into_iter().map(Effect::Persist).collect();
        effects.extend(self.deliver);
        Outcome {
            value,
            effects,
            undo,
        }
    }
}

/// What a notification takes from its node's configuration: copied, where a publish would
/// otherwise clone the whole configuration (a room's carries its options as maps) to notify
/// while the node is borrowed for change.
#[derive(Debug, Clone, Copy)]
struct Notifying {
    notification_type: crate::config::NotificationType,
    presence_based_delivery: bool,
    itemreply: crate::config::ItemReply,
    deliver_notifications: bool,
    deliver_payloads: bool,
    notify_retract: bool,
}

impl From<&NodeConfig> for Notifying {
    fn from(config: &NodeConfig) -> Self {
        Notifying {
            notification_type: config.notification_type,
            presence_based_delivery: config.presence_based_delivery,
            itemreply: config.itemreply,
            deliver_notifications: config.deliver_notifications,
            deliver_payloads: config.deliver_payloads,
            notify_retract: config.notify_retract,
        }
    }
}

/// Looks a node up; borrowing only the state leaves the environment free for fresh ids.
fn find_node<'a>(state: &'a State, id: &str) -> Result<&'a Node, PubsubError> {
    if id.is_empty() {
        return Err(PubsubError::NodeIdRequired);
    }
    state
        .nodes
        .get(id)
        .map(|node| &**node)
        .ok_or(PubsubError::NodeNotFound)
}

/// Asks the environment for an id that `taken` does not know. A generator that keeps
/// colliding gets its answer suffixed with a counter, so this always terminates.
fn fresh_id(env: &mut dyn Environment, taken: impl Fn(&str) -> bool) -> String {
    for _ in 0..8 {
        let id = env.new_id();
        if !id.is_empty() && !taken(&id) {
            return id;
        }
    }
    let base = env.new_id();
    let mut n: u64 = 1;
    loop {
        let id = format!("{base}-{n}");
        if !taken(&id) {
            return id;
        }
        n += 1;
    }
}

/// Whether an item is still current under the node's `item_expire`.
fn is_live(config: &NodeConfig, item: &Item, now: SystemTime) -> bool {
    config.item_expire.is_none_or(|seconds| {
        item.published
            .checked_add(Duration::from_secs(seconds))
            .is_none_or(|expiry| expiry > now)
    })
}

/// The item as notifications carry it: without payload if the node delivers none.
fn deliverable(deliver_payloads: bool, item: &Item) -> Item {
    Item {
        payload: if deliver_payloads {
            item.payload.clone()
        } else {
            None
        },
        ..item.clone()
    }
}

fn stored_subscription(subid: &SubId, sub: &Subscription) -> StoredSubscription {
    StoredSubscription {
        subid: subid.clone(),
        jid: sub.jid.clone(),
        state: sub.state,
        options: sub.options.clone(),
    }
}

fn info(node: &str, subid: &SubId, sub: &Subscription) -> SubscriptionInfo {
    SubscriptionRef::new(subid, sub).to_info(node)
}

/// Records a subscription write, unless the subscription is temporary (never stored).
fn persist_subscription(fx: &mut Effects, node: &str, subid: &SubId, sub: &Subscription) {
    if !sub.options.temporary {
        fx.persist(StoreOp::SubscriptionSet {
            node: node.to_owned(),
            subscription: stored_subscription(subid, sub),
        });
    }
}

/// Records a subscription removal, unless it was temporary.
fn persist_unsubscription(fx: &mut Effects, node: &str, subid: &SubId, sub: &Subscription) {
    if !sub.options.temporary {
        fx.persist(StoreOp::SubscriptionRemoved {
            node: node.to_owned(),
            subid: subid.clone(),
        });
    }
}

/// Tells a subscriber that someone else changed its subscription (XEP-0060 §12.15).
fn tell_subscriber(
    fx: &mut Effects,
    node: &Node,
    subid: &SubId,
    jid: &Jid,
    state: SubscriptionState,
) {
    let recipient = Recipient {
        subids: vec![subid.clone()],
        ..Recipient::plain(jid.clone())
    };
    fx.notify(
        &node.config,
        &node.id,
        Event::Subscription {
            jid: jid.clone(),
            state,
            subid: Some(subid.clone()),
        },
        Arc::from([recipient]),
    );
}

/// Tells the owners about a subscriber's change when the node asks for it (`notify_sub`).
fn tell_owners(fx: &mut Effects, node: &Node, subid: &SubId, jid: &Jid, state: SubscriptionState) {
    if !node.config.notify_sub {
        return;
    }
    let owners: Arc<[Recipient]> = node
        .owners()
        .map(|owner| Recipient::plain(Jid::from(owner.clone())))
        .collect();
    fx.notify(
        &node.config,
        &node.id,
        Event::Subscription {
            jid: jid.clone(),
            state,
            subid: Some(subid.clone()),
        },
        owners,
    );
}

/// The items sent as "last published item" (at most `take`), newest first.
fn last_items(node: &Node, take: usize, now: SystemTime) -> Vec<Item> {
    node.items
        .iter()
        .rev()
        .filter(|item| is_live(&node.config, item, now))
        .take(take)
        .map(|item| deliverable(node.config.deliver_payloads, item))
        .collect()
}

/// Sends the last items to a subscription that just became active, if the node says so.
fn send_last_on_subscribe(
    fx: &mut Effects,
    node: &Node,
    service: &ServiceConfig,
    now: SystemTime,
    subid: &SubId,
    sub: &Subscription,
) {
    let config = &node.config;
    if config.send_last_published_item == SendLastPublishedItem::Never
        || !config.deliver_notifications
        || !sub.options.deliver
        || sub.state != SubscriptionState::Subscribed
    {
        return;
    }
    let items = last_items(node, service.last_items(&node.id), now);
    if !items.is_empty() {
        let last = LastItems::of(
            sub.jid.clone(),
            node.id.clone(),
            config,
            subid.clone(),
            items,
        );
        fx.push(Effect::SendLastItems(last));
    }
}

/// Removes the subscriptions of `bare` on `node_id` that the node no longer allows (access
/// model, affiliation), telling each subscriber. Returns the removed subscriptions.
fn revoke_denied(
    tx: &mut Tx<'_>,
    config: &ServiceConfig,
    resolver: &dyn AccessResolver,
    node_id: &str,
    bare: &BareJid,
    fx: &mut Effects,
) -> Vec<SubscriptionInfo> {
    let Some(node) = tx.node(node_id) else {
        return Vec::new();
    };
    if access::may(node, &config.admins, resolver, bare, Action::Subscribe).is_ok() {
        return Vec::new();
    }
    let doomed: Vec<(SubId, Subscription)> = node
        .subscriptions_of(bare)
        .into_iter()
        .flat_map(Held::iter)
        .map(|(subid, sub)| (subid.clone(), sub.clone()))
        .collect();
    let mut removed = Vec::with_capacity(doomed.len());
    for (subid, sub) in doomed {
        tx.put_subscription(node_id, bare, &subid, None);
        persist_unsubscription(fx, node_id, &subid, &sub);
        if let Some(node) = tx.node(node_id) {
            tell_subscriber(fx, node, &subid, &sub.jid, SubscriptionState::None);
        }
        removed.push(SubscriptionInfo {
            state: SubscriptionState::None,
            ..info(node_id, &subid, &sub)
        });
    }
    removed
}
