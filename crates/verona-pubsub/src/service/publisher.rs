//! Publisher use cases (XEP-0060 §7): publish (with publish-options and auto-create),
//! retract; plus item expiry.

use std::sync::Arc;

use jid::Jid;

use super::{Effects, Notifying, Service, deliverable, find_node, fresh_id, is_live};
use crate::access::{self, Action, Affiliation, NoRoster};
use crate::config::{ConfigField, NodeConfig};
use crate::effects::{Event, Outcome, StoreOp};
use crate::error::{Limit, PubsubError};
use crate::item::{Item, item_len};
use crate::node::Node;
use crate::state::Tx;
use crate::{ItemId, NodeId};

/// A publish request (XEP-0060 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishRequest {
    /// The `<item/>`, if the request has one.
    pub item: Option<NewItem>,
    /// The `pubsub#publish-options` preconditions: each must equal the node's configuration.
    /// When the node is auto-created they are its configuration.
    pub preconditions: Vec<ConfigField>,
    /// Notified, never kept: the node's items stay as they were (a room's chat state, which
    /// is no part of its history).
    pub transient: bool,
}

/// The `<item/>` of a publish request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewItem {
    /// The item id; without one (or with an empty one) the service generates it.
    pub id: Option<ItemId>,
    /// The serialized payload; `None` for an empty item.
    pub payload: Option<Arc<str>>,
}

impl PublishRequest {
    /// A request with one item carrying `payload`.
    pub fn payload(id: Option<&str>, payload: impl Into<Arc<str>>) -> Self {
        PublishRequest {
            item: Some(NewItem {
                id: id.map(str::to_owned),
                payload: Some(payload.into()),
            }),
            ..PublishRequest::default()
        }
    }
}

/// The answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The id of the stored item (generated if the request had none); `None` when the request
    /// had no item.
    pub item_id: Option<ItemId>,
    /// Whether the publish created the node (auto-create).
    pub node_created: bool,
}

impl Service {
    /// Publishes to `node` (XEP-0060 §7.1).
    ///
    /// Checks, in order: payload size against the service limit, publish-options fields the
    /// service does not know, the node (auto-created with the preconditions as configuration
    /// if the service allows), the right to publish, the preconditions, and the item rules of
    /// §7.1.3.6. Publishing an existing id replaces that item; a full node retracts its oldest
    /// items. One notification goes to the node's recipients, computed once.
    pub fn publish(
        &mut self,
        actor: &Jid,
        node_id: &str,
        request: PublishRequest,
    ) -> Result<Outcome<Published>, PubsubError> {
        if node_id.is_empty() {
            return Err(PubsubError::NodeIdRequired);
        }
        let payload_len = request
            .item
            .as_ref()
            .and_then(|item| item.payload.as_ref())
            .map_or(0, |payload| payload.len());
        if payload_len > self.config.limits.max_payload_bytes {
            return Err(PubsubError::PayloadTooBig);
        }
        for field in &request.preconditions {
            if let ConfigField::Extra { var, .. } = field
                && !self.config.node_defaults.extra.contains_key(var)
            {
                return Err(PubsubError::UnknownField { var: var.clone() });
            }
        }
        let actor_bare = actor.to_bare();

        let new_config = match self.state.nodes.get(node_id) {
            Some(node) => {
                // Publishing never depends on the access model, so no resolver is needed.
                access::may(
                    node,
                    &self.config.admins,
                    &NoRoster,
                    &actor_bare,
                    Action::Publish,
                )?;
                // Replacing someone else's item removes it: only who may retract any item
                // may (XEP-0060 §4.1: a publish-only entity deletes only its own).
                let replaces_anothers = request
                    .item
                    .as_ref()
                    .and_then(|item| item.id.as_deref())
                    .and_then(|id| node.items.get(id))
                    .is_some_and(|old| old.publisher.to_bare() != actor_bare);
                if replaces_anothers {
                    access::may(
                        node,
                        &self.config.admins,
                        &NoRoster,
                        &actor_bare,
                        Action::RetractAny,
                    )?;
                }
                if !request.preconditions.iter().all(|f| node.config.matches(f)) {
                    return Err(PubsubError::PreconditionNotMet);
                }
                check_item(&node.config, &request.item, payload_len)?;
                None
            }
            None if self.config.auto_create => {
                self.check_may_create(&actor_bare)?;
                let mut config = self.config.node_defaults.clone();
                self.config
                    .apply_fields(&mut config, &request.preconditions)?;
                check_item(&config, &request.item, payload_len)?;
                Some(config)
            }
            None => return Err(PubsubError::NodeNotFound),
        };

        if !request.transient {
            self.check_service_bytes(node_id, &request, payload_len)?;
        }

        let mut fx = Effects::default();
        let now = self.env.now();
        let node_created = new_config.is_some();
        let item = match &request.item {
            Some(NewItem { id, payload }) => {
                let id = match id {
                    Some(id) if !id.is_empty() => id.clone(),
                    _ => {
                        let items = self.state.nodes.get(node_id).map(|node| &node.items);
                        fresh_id(self.env.as_mut(), |id| {
                            items.is_some_and(|i| i.contains(id))
                        })
                    }
                };
                Some(Item {
                    id,
                    payload: payload.clone(),
                    publisher: actor.clone(),
                    published: now,
                })
            }
            None => None,
        };

        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        if let Some(config) = new_config {
            create_node(&mut tx, &mut fx, node_id, config, actor);
        }
        let Some(node) = tx.node(node_id) else {
            return Err(PubsubError::NodeNotFound);
        };
        let how = Notifying::from(&node.config);
        let persist_items = node.config.persist_items;
        // A node that keeps no items (`max_items` 0, a room without history) still notifies.
        let capacity = node.config.max_items.capacity(&self.config.limits);
        let mut evicted = Vec::new();
        if let Some(item) = item.as_ref().filter(|_| !request.transient) {
            if capacity > 0 {
                tx.push_item(node_id, item.clone());
                if persist_items {
                    fx.persist(StoreOp::ItemStored {
                        node: node_id.to_owned(),
                        item: item.clone(),
                    });
                }
            }
            let max_bytes = self.config.limits.max_node_bytes;
            evicted = evict_over(
                &mut tx,
                &mut fx,
                node_id,
                capacity,
                max_bytes,
                persist_items,
            );
        }
        notify_items(&mut tx, &mut fx, how, node_id, item.as_ref(), evicted);
        let value = Published {
            item_id: item.map(|item| item.id),
            node_created,
        };
        Ok(fx.finish(value, tx.commit()))
    }

    /// [`crate::Limits::max_service_bytes`] and [`crate::Limits::max_owner_bytes`]: a publish
    /// may not take what the service's metered nodes hold, or the nodes of one of the target
    /// node's owners, past them (an item it replaces, and the oldest ones a full node drops,
    /// make room).
    fn check_service_bytes(
        &self,
        node_id: &str,
        request: &PublishRequest,
        payload_len: usize,
    ) -> Result<(), PubsubError> {
        let limits = &self.config.limits;
        if (limits.max_service_bytes == usize::MAX && limits.max_owner_bytes == usize::MAX)
            || self.config.unmetered_nodes.contains(node_id)
        {
            return Ok(());
        }
        let node = self.state.nodes.get(node_id);
        let id = request.item.as_ref().and_then(|item| item.id.as_deref());
        let added = payload_len + id.map_or(0, str::len);
        let dropped = node.map_or(0, |node| self.dropped_by_publish(node, id, added));
        let after = |held: usize| held.saturating_sub(dropped).saturating_add(added);
        if limits.max_service_bytes != usize::MAX {
            let held: usize = self
                .state
                .nodes
                .iter()
                .filter(|(id, _)| !self.config.unmetered_nodes.contains(id.as_str()))
                .map(|(_, node)| node.items.bytes())
                .sum();
            if after(held) > limits.max_service_bytes {
                return Err(PubsubError::PolicyViolation(Limit::ServiceBytesExceeded));
            }
        }
        if limits.max_owner_bytes != usize::MAX {
            for owner in node.into_iter().flat_map(|node| node.owners()) {
                let held: usize = self
                    .state
                    .affiliations_of(owner)
                    .filter(|(_, affiliation)| *affiliation == Affiliation::Owner)
                    .filter_map(|(id, _)| self.state.nodes.get(id))
                    .map(|node| node.items.bytes())
                    .sum();
                if after(held) > limits.max_owner_bytes {
                    return Err(PubsubError::PolicyViolation(Limit::OwnerBytesExceeded));
                }
            }
        }
        Ok(())
    }

    /// Bytes a publish of `added` bytes (with item id `id`) to `node` takes out of it: the item
    /// it replaces and the oldest ones [`evict_over`] then drops.
    fn dropped_by_publish(&self, node: &Node, id: Option<&str>, added: usize) -> usize {
        let limits = &self.config.limits;
        let capacity = node.config.max_items.capacity(limits);
        let replaced = id.and_then(|id| node.items.get(id));
        let replaced_len = replaced.map_or(0, item_len);
        let mut count = node.items.len() + usize::from(replaced.is_none());
        let mut bytes = node.items.bytes() - replaced_len + added;
        let mut dropped = replaced_len;
        let older = node
            .items
            .iter()
            .filter(|item| Some(item.id.as_str()) != id);
        for item in older {
            if count <= 1 || (count <= capacity && bytes <= limits.max_node_bytes) {
                break;
            }
            count -= 1;
            bytes -= item_len(item);
            dropped += item_len(item);
        }
        dropped
    }

    /// Retracts an item (XEP-0060 §7.2). Subscribers are notified if the request asks
    /// (`notify`) or the node does (`notify_retract`). Anyone may retract their own items
    /// while they may publish; removing others' items needs [`Action::RetractAny`].
    pub fn retract(
        &mut self,
        actor: &Jid,
        node_id: &str,
        item_id: &str,
        notify: bool,
    ) -> Result<Outcome, PubsubError> {
        let node = find_node(&self.state, node_id)?;
        if item_id.is_empty() {
            return Err(PubsubError::ItemRequired);
        }
        let actor_bare = actor.to_bare();
        let own = node
            .items
            .get(item_id)
            .is_some_and(|item| item.publisher.to_bare() == actor_bare);
        let action = if own {
            Action::RetractOwn
        } else {
            Action::RetractAny
        };
        // Retracting never depends on the access model, so no resolver is needed.
        access::may(node, &self.config.admins, &NoRoster, &actor_bare, action)?;
        if !node.items.contains(item_id) {
            return Err(PubsubError::ItemNotFound);
        }
        let config = node.config.clone();

        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        tx.remove_item(node_id, item_id);
        if config.persist_items {
            fx.persist(StoreOp::ItemRemoved {
                node: node_id.to_owned(),
                id: item_id.to_owned(),
            });
        }
        if (notify || config.notify_retract)
            && config.deliver_notifications
            && let Some(recipients) = tx.recipients(node_id)
        {
            let event = Event::Retract {
                ids: vec![item_id.to_owned()],
            };
            fx.notify(&config, node_id, event, recipients);
        }
        Ok(fx.finish((), tx.commit()))
    }

    /// Drops the oldest items of every node beyond its `max_items` and
    /// [`crate::Limits::max_node_bytes`], as a publish would, without notifying anyone: for a
    /// service just restored from storage that holds more than its limits now allow (they were
    /// lowered, or the items were stored before the byte bound existed). The value is what
    /// storage must remove to agree.
    pub fn trim_items(&mut self) -> Vec<StoreOp> {
        let mut fx = Effects::default();
        let limits = &self.config.limits;
        let bounds: Vec<(NodeId, usize, bool)> = self
            .state
            .nodes
            .values()
            .map(|node| {
                let capacity = node.config.max_items.capacity(limits);
                (node.id.clone(), capacity, node.config.persist_items)
            })
            .collect();
        let mut tx = Tx::new(&mut self.state, limits);
        for (node_id, capacity, persisted) in bounds {
            let max_bytes = limits.max_node_bytes;
            evict_over(&mut tx, &mut fx, &node_id, capacity, max_bytes, persisted);
        }
        // Nothing to undo: storage is told to remove the same items.
        let _ = tx.commit();
        fx.persist
    }

    /// Removes the items whose `item_expire` has passed, in every node, with retract
    /// notifications where `notify_retract` is set. Call it periodically; retrieval already
    /// hides expired items, so the period only bounds memory and storage. The value is the
    /// number of items removed.
    pub fn expire_items(&mut self) -> Outcome<usize> {
        let now = self.env.now();
        let expired: Vec<(NodeId, Vec<ItemId>)> = self
            .state
            .nodes
            .values()
            .filter(|node| node.config.item_expire.is_some())
            .map(|node| {
                let ids = node
                    .items
                    .iter()
                    .filter(|item| !is_live(&node.config, item, now))
                    .map(|item| item.id.clone())
                    .collect::<Vec<_>>();
                (node.id.clone(), ids)
            })
            .filter(|(_, ids)| !ids.is_empty())
            .collect();

        let mut fx = Effects::default();
        let mut tx = Tx::new(&mut self.state, &self.config.limits);
        let mut removed = 0;
        for (node_id, ids) in expired {
            let Some(config) = tx.node(&node_id).map(|node| node.config.clone()) else {
                continue;
            };
            for id in &ids {
                tx.remove_item(&node_id, id);
                if config.persist_items {
                    fx.persist(StoreOp::ItemRemoved {
                        node: node_id.clone(),
                        id: id.clone(),
                    });
                }
            }
            removed += ids.len();
            if config.notify_retract
                && config.deliver_notifications
                && let Some(recipients) = tx.recipients(&node_id)
            {
                fx.notify(&config, &node_id, Event::Retract { ids }, recipients);
            }
        }
        fx.finish(removed, tx.commit())
    }
}

/// XEP-0060 §7.1.3.6: which requests fit the node's event type, and the node's payload limit.
fn check_item(
    config: &NodeConfig,
    item: &Option<NewItem>,
    payload_len: usize,
) -> Result<(), PubsubError> {
    match item {
        None if config.persist_items || config.deliver_payloads => Err(PubsubError::ItemRequired),
        Some(_) if !config.persist_items && !config.deliver_payloads => {
            Err(PubsubError::ItemForbidden)
        }
        Some(NewItem { payload: None, .. }) if config.deliver_payloads => {
            Err(PubsubError::PayloadRequired)
        }
        _ if config.max_payload_size.is_some_and(|max| payload_len > max) => {
            Err(PubsubError::PayloadTooBig)
        }
        _ => Ok(()),
    }
}

/// Creates a node inside a transaction (create, auto-create): the node, its owner, and the
/// storage writes for both.
pub(super) fn create_node(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    node_id: &str,
    config: NodeConfig,
    creator: &Jid,
) {
    let owner = creator.to_bare();
    fx.persist(StoreOp::NodeCreated {
        node: node_id.to_owned(),
        config: config.clone(),
    });
    tx.insert_node(Node::new(node_id.to_owned(), config));
    tx.set_affiliation(node_id, &owner, Affiliation::Owner);
    fx.persist(StoreOp::AffiliationSet {
        node: node_id.to_owned(),
        jid: owner,
        affiliation: Affiliation::Owner,
    });
}

/// Retracts the oldest items while the node holds more than `capacity` items or more than
/// `max_bytes` ([`crate::Limits::max_node_bytes`]); returns their ids.
pub(super) fn evict_over(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    node_id: &str,
    capacity: usize,
    max_bytes: usize,
    persisted: bool,
) -> Vec<ItemId> {
    let mut evicted = Vec::new();
    // The newest item always stays, however large: a publish is never refused for what the
    // node holds, it pushes the oldest items out.
    let over = |node: &Node| {
        node.items.len() > capacity || (node.items.bytes() > max_bytes && node.items.len() > 1)
    };
    while tx.node(node_id).is_some_and(over) {
        let Some(item) = tx.remove_oldest_item(node_id) else {
            break;
        };
        if persisted {
            fx.persist(StoreOp::ItemRemoved {
                node: node_id.to_owned(),
                id: item.id.clone(),
            });
        }
        evicted.push(item.id);
    }
    evicted
}

/// The notifications of a publish: the new item, then the evicted ones.
fn notify_items(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    how: Notifying,
    node_id: &str,
    item: Option<&Item>,
    evicted: Vec<ItemId>,
) {
    if !how.deliver_notifications {
        return;
    }
    let Some(recipients) = tx.recipients(node_id) else {
        return;
    };
    let items = item
        .map(|item| deliverable(how.deliver_payloads, item))
        .into_iter()
        .collect();
    fx.notify(
        how,
        node_id,
        Event::Items { items },
        Arc::clone(&recipients),
    );
    if how.notify_retract && !evicted.is_empty() {
        fx.notify(how, node_id, Event::Retract { ids: evicted }, recipients);
    }
}
