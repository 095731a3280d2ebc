//! The in-memory state, its indexes, and the journal that makes every operation undoable.
//!
//! All changes go through a [`Tx`], whose primitives mutate the state *and its indexes* and
//! record the inverse step. [`State::undo`] replays the inverse steps through the same
//! primitives in reverse, so the indexes come back with the data: the state after an undo
//! equals (`PartialEq`) the state before the operation.

use std::collections::{BTreeMap, HashMap};
use std::mem;
use std::sync::Arc;

use jid::BareJid;
use thiserror::Error;

use crate::access::Affiliation;
use crate::config::NodeConfig;
use crate::derived::Derived;
use crate::effects::Recipient;
use crate::item::{Item, ItemStore};
use crate::node::Node;
use crate::subscription::Subscription;
use crate::vecmap::VecMap;
use crate::{NodeId, SubId};

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct State {
    /// Boxed: a map's node holds eleven entries, and most services have one or two nodes.
    pub nodes: BTreeMap<NodeId, Box<Node>>,
    /// Index of subscribers, once the service has many nodes.
    subscribers: SubscriberIndex,
    /// Index: a bare JID → its affiliations, for "my affiliations" and the per-owner limit,
    /// once the service has many nodes (as [`SubscriberIndex`]).
    affiliations_by_jid: AffiliationIndex,
    /// Counts committed operations, so that an undo can check that it is the latest.
    pub version: u64,
}

/// Services with more nodes than this index their subscribers.
const INDEXED_FROM_NODES: usize = 16;

/// Index: a subscriber's bare JID → the nodes where it holds subscriptions, with how many,
/// for "my subscriptions", the per-JID limit and ending sessions without scanning nodes (the
/// SubIDs are found in the node). Built once the service has more than
/// [`INDEXED_FROM_NODES`] nodes: a PEP service has a few, and scanning them costs less than a
/// second copy of every subscriber's JID for every online user (issue #9).
type SubscriberIndex = Derived<HashMap<BareJid, VecMap<NodeId, u32>>>;

/// Index: a bare JID → its affiliations by node. Built, like [`SubscriberIndex`], once the
/// service has more than [`INDEXED_FROM_NODES`] nodes: every PEP service would otherwise hold
/// a second copy of its owner's JID and a map for its few nodes.
type AffiliationIndex = Derived<HashMap<BareJid, BTreeMap<NodeId, Affiliation>>>;

/// An inverse step; applied in reverse order of recording.
#[derive(Debug)]
enum Step {
    RemoveNode(NodeId),
    InsertNode(Box<Node>),
    SetConfig(NodeId, Box<NodeConfig>),
    SetAffiliation(NodeId, BareJid, Affiliation),
    PutSubscription(NodeId, BareJid, SubId, Option<Subscription>),
    RemoveItemSeq(NodeId, u64),
    InsertItemAt(NodeId, u64, Item),
    SetNextSeq(NodeId, u64),
    RestoreItems(NodeId, ItemStore),
}

/// Reverts one operation: pass it to [`crate::Service::undo`] when the operation's storage
/// writes fail.
///
/// Undo handles must be applied newest first, before any later operation is kept: several
/// outstanding operations (a group commit) are undone in the reverse order of their outcomes.
#[derive(Debug)]
#[must_use = "an undo handle does nothing unless passed to Service::undo"]
pub struct Undo {
    before: u64,
    after: u64,
    steps: Vec<Step>,
}

impl Undo {
    /// The handle of an operation that changed nothing.
    pub(crate) fn unchanged() -> Self {
        Undo {
            before: 0,
            after: 0,
            steps: Vec::new(),
        }
    }

    /// Whether the operation changed nothing (undoing it is a no-op).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// An undo handle was applied out of order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UndoError {
    /// Another operation changed the service after the one being undone; undo that one first.
    #[error("a later operation must be undone first")]
    OutOfOrder,
}

impl State {
    fn index_node(&mut self, node: &Node) {
        for (jid, affiliation) in node.affiliations() {
            self.index_affiliation(&node.id, jid, affiliation);
        }
        self.count_subscriptions(node, 1);
    }

    /// Builds the subscriber and affiliation indexes once the service has grown past
    /// [`INDEXED_FROM_NODES`].
    fn index_subscribers_if_large(&mut self) {
        if self.subscribers.0.is_some() || self.nodes.len() <= INDEXED_FROM_NODES {
            return;
        }
        let mut affiliations: HashMap<BareJid, BTreeMap<NodeId, Affiliation>> = HashMap::new();
        for node in self.nodes.values() {
            for (jid, affiliation) in node.affiliations() {
                affiliations
                    .entry(jid.clone())
                    .or_default()
                    .insert(node.id.clone(), affiliation);
            }
        }
        self.affiliations_by_jid.0 = Some(affiliations);
        let mut index: HashMap<BareJid, VecMap<NodeId, u32>> = HashMap::new();
        for node in self.nodes.values() {
            for subs in node.subscriptions_by_bare() {
                let count = u32::try_from(subs.len()).unwrap_or(u32::MAX);
                index
                    .entry(subs.bare_jid())
                    .or_default()
                    .insert(node.id.clone(), count);
            }
        }
        self.subscribers.0 = Some(index);
    }

    fn unindex_node(&mut self, node: &Node) {
        for (jid, _) in node.affiliations() {
            self.index_affiliation(&node.id, jid, Affiliation::None);
        }
        self.count_subscriptions(node, -1);
    }

    fn index_affiliation(&mut self, node: &NodeId, jid: &BareJid, affiliation: Affiliation) {
        let Some(index) = &mut self.affiliations_by_jid.0 else {
            return;
        };
        if affiliation == Affiliation::None {
            if let Some(affiliations) = index.get_mut(jid) {
                affiliations.remove(node);
                if affiliations.is_empty() {
                    index.remove(jid);
                }
            }
        } else {
            index
                .entry(jid.clone())
                .or_default()
                .insert(node.clone(), affiliation);
        }
    }

    /// How many nodes the service has.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A bare JID's explicit affiliations across the service, by node.
    pub fn affiliations_of<'a>(
        &'a self,
        jid: &'a BareJid,
    ) -> impl Iterator<Item = (&'a NodeId, Affiliation)> + 'a {
        let indexed = self.affiliations_by_jid.0.as_ref().map(|index| {
            index
                .get(jid)
                .into_iter()
                .flatten()
                .map(|(node_id, affiliation)| (node_id, *affiliation))
        });
        let scanned = indexed.is_none().then(|| {
            self.nodes
                .iter()
                .map(|(node_id, node)| (node_id, node.affiliation(jid)))
                .filter(|(_, affiliation)| *affiliation != Affiliation::None)
        });
        indexed
            .into_iter()
            .flatten()
            .chain(scanned.into_iter().flatten())
    }

    /// Adds `delta` (one more, one fewer, or none) to a bare JID's subscriptions on a node.
    /// Counts (`delta` 1) or uncounts (-1) every subscription of `node` in the subscriber
    /// index, if the service keeps one.
    fn count_subscriptions(&mut self, node: &Node, delta: i32) {
        if self.subscribers.0.is_none() {
            return;
        }
        for subs in node.subscriptions_by_bare() {
            let count = i32::try_from(subs.len()).unwrap_or(i32::MAX);
            self.count_subscription(&node.id, &subs.bare_jid(), delta * count);
        }
    }

    fn count_subscription(&mut self, node: &NodeId, bare: &BareJid, delta: i32) {
        let Some(index) = &mut self.subscribers.0 else {
            return;
        };
        if delta == 0 {
            return;
        }
        let nodes = index.entry(bare.clone()).or_default();
        let count = nodes.get(node.as_str()).copied().unwrap_or(0);
        match count.checked_add_signed(delta).filter(|&n| n > 0) {
            Some(n) => {
                nodes.insert(node.clone(), n);
            }
            None => {
                nodes.remove(node.as_str());
                if nodes.is_empty() {
                    index.remove(bare);
                }
            }
        }
    }

    /// A bare JID's subscriptions across the service, by node then SubID.
    pub fn held_by<'a>(
        &'a self,
        bare: &'a BareJid,
    ) -> impl Iterator<Item = (&'a NodeId, &'a SubId, &'a Subscription)> + 'a {
        let indexed = self.subscribers.0.as_ref().map(|index| {
            index
                .get(bare)
                .into_iter()
                .flat_map(|nodes| nodes.keys())
                .filter_map(|node_id| self.nodes.get_key_value(node_id))
        });
        let scanned = indexed.is_none().then(|| self.nodes.iter());
        indexed
            .into_iter()
            .flatten()
            .chain(scanned.into_iter().flatten())
            .filter_map(move |(node_id, node)| Some((node_id, node.subscriptions_of(bare)?)))
            .flat_map(|(node_id, subs)| subs.iter().map(move |(subid, sub)| (node_id, subid, sub)))
    }

    /// How many subscriptions a bare JID holds across the service.
    pub fn held_count(&self, bare: &BareJid) -> usize {
        match &self.subscribers.0 {
            Some(index) => index
                .get(bare)
                .map_or(0, |nodes| nodes.values().map(|&n| n as usize).sum()),
            None => self.held_by(bare).count(),
        }
    }

    /// Adds a node and indexes its affiliations and subscriptions (restore, create, undo).
    pub fn insert_node(&mut self, node: Node) {
        self.index_node(&node);
        self.nodes.insert(node.id.clone(), Box::new(node));
        self.index_subscribers_if_large();
    }

    fn remove_node(&mut self, id: &str) -> Option<Node> {
        let node = *self.nodes.remove(id)?;
        self.unindex_node(&node);
        Some(node)
    }

    fn set_affiliation(&mut self, id: &str, jid: BareJid, affiliation: Affiliation) -> Affiliation {
        let Some(node) = self.nodes.get_mut(id) else {
            return Affiliation::None;
        };
        let previous = node.set_affiliation(jid.clone(), affiliation);
        let node_id = node.id.clone();
        self.index_affiliation(&node_id, &jid, affiliation);
        previous
    }

    fn put_subscription(
        &mut self,
        id: &str,
        bare: &BareJid,
        subid: &SubId,
        subscription: Option<Subscription>,
    ) -> Option<Subscription> {
        let node = self.nodes.get_mut(id)?;
        let present = subscription.is_some();
        let previous = node.put_subscription(bare, subid, subscription);
        let node_id = node.id.clone();
        let delta = i32::from(present) - i32::from(previous.is_some());
        self.count_subscription(&node_id, bare, delta);
        previous
    }

    /// Reverts the operation `undo` was made for, if it is the latest one.
    pub fn undo(&mut self, undo: Undo) -> Result<(), UndoError> {
        if undo.steps.is_empty() {
            return Ok(());
        }
        if self.version != undo.after {
            return Err(UndoError::OutOfOrder);
        }
        for step in undo.steps.into_iter().rev() {
            self.apply(step);
        }
        self.version = undo.before;
        Ok(())
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::RemoveNode(id) => {
                self.remove_node(&id);
            }
            Step::InsertNode(node) => self.insert_node(*node),
            Step::SetConfig(id, config) => {
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.config = *config;
                }
            }
            Step::SetAffiliation(id, jid, affiliation) => {
                self.set_affiliation(&id, jid, affiliation);
            }
            Step::PutSubscription(id, bare, subid, subscription) => {
                self.put_subscription(&id, &bare, &subid, subscription);
            }
            Step::RemoveItemSeq(id, seq) => {
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.items.remove_seq(seq);
                }
            }
            Step::InsertItemAt(id, seq, item) => {
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.items.insert_at(seq, item);
                }
            }
            Step::SetNextSeq(id, next_seq) => {
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.items.set_next_seq(next_seq);
                }
            }
            Step::RestoreItems(id, items) => {
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.items = items;
                }
            }
        }
    }
}

/// A journaled change set over the state. Operations validate first, then mutate through a
/// `Tx` only, then [`Tx::commit`] to get the [`Undo`] handle.
pub(crate) struct Tx<'a> {
    state: &'a mut State,
    steps: Vec<Step>,
    /// [`crate::Limits::keep_recipients_from`] of the service.
    keep_recipients_from: usize,
}

impl<'a> Tx<'a> {
    pub fn new(state: &'a mut State, limits: &crate::Limits) -> Self {
        Tx {
            state,
            steps: Vec::new(),
            keep_recipients_from: limits.keep_recipients_from,
        }
    }

    pub fn state(&self) -> &State {
        self.state
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.state.nodes.get(id).map(|node| &**node)
    }

    /// The node's notification recipients (cached in the node; the cache is not journaled
    /// because it is derived from the subscriptions).
    pub fn recipients(&mut self, id: &str) -> Option<Arc<[Recipient]>> {
        let keep_from = self.keep_recipients_from;
        self.state
            .nodes
            .get_mut(id)
            .map(|node| node.recipients(keep_from))
    }

    /// Finishes the change set; the version moves only if something changed.
    pub fn commit(self) -> Undo {
        let before = self.state.version;
        if !self.steps.is_empty() {
            self.state.version += 1;
        }
        Undo {
            before,
            after: self.state.version,
            steps: self.steps,
        }
    }

    pub fn insert_node(&mut self, node: Node) {
        self.steps.push(Step::RemoveNode(node.id.clone()));
        self.state.insert_node(node);
    }

    pub fn remove_node(&mut self, id: &str) {
        if let Some(node) = self.state.remove_node(id) {
            self.steps.push(Step::InsertNode(Box::new(node)));
        }
    }

    pub fn set_config(&mut self, id: &str, config: NodeConfig) {
        if let Some(node) = self.state.nodes.get_mut(id) {
            let previous = mem::replace(&mut node.config, config);
            self.steps
                .push(Step::SetConfig(id.to_owned(), Box::new(previous)));
        }
    }

    /// Sets an affiliation and returns the previous one.
    pub fn set_affiliation(
        &mut self,
        id: &str,
        jid: &BareJid,
        affiliation: Affiliation,
    ) -> Affiliation {
        let previous = self.state.set_affiliation(id, jid.clone(), affiliation);
        if previous != affiliation {
            self.steps
                .push(Step::SetAffiliation(id.to_owned(), jid.clone(), previous));
        }
        previous
    }

    /// Inserts, replaces or removes (`None`) a subscription; returns the previous one.
    pub fn put_subscription(
        &mut self,
        id: &str,
        bare: &BareJid,
        subid: &SubId,
        subscription: Option<Subscription>,
    ) -> Option<Subscription> {
        let previous = self.state.put_subscription(id, bare, subid, subscription);
        self.steps.push(Step::PutSubscription(
            id.to_owned(),
            bare.clone(),
            subid.clone(),
            previous.clone(),
        ));
        previous
    }

    /// Stores `item` as the node's newest; returns the item it replaced.
    pub fn push_item(&mut self, id: &str, item: Item) -> Option<Item> {
        let node = self.state.nodes.get_mut(id)?;
        let next_seq = node.items.next_seq();
        let (seq, replaced) = node.items.push(item);
        let replaced = replaced.map(|(old_seq, old)| {
            self.steps
                .push(Step::InsertItemAt(id.to_owned(), old_seq, old.clone()));
            old
        });
        self.steps.push(Step::RemoveItemSeq(id.to_owned(), seq));
        self.steps.push(Step::SetNextSeq(id.to_owned(), next_seq));
        replaced
    }

    /// Removes an item by id.
    pub fn remove_item(&mut self, id: &str, item_id: &str) -> Option<Item> {
        let node = self.state.nodes.get_mut(id)?;
        let (seq, item) = node.items.remove(item_id)?;
        self.steps
            .push(Step::InsertItemAt(id.to_owned(), seq, item.clone()));
        Some(item)
    }

    /// Removes the oldest item.
    pub fn remove_oldest_item(&mut self, id: &str) -> Option<Item> {
        let node = self.state.nodes.get_mut(id)?;
        let seq = node.items.oldest_seq()?;
        let item = node.items.remove_seq(seq)?;
        self.steps
            .push(Step::InsertItemAt(id.to_owned(), seq, item.clone()));
        Some(item)
    }

    /// Removes every item (one undo step, whatever the number of items).
    pub fn clear_items(&mut self, id: &str) {
        if let Some(node) = self.state.nodes.get_mut(id) {
            let mut items = ItemStore::default();
            // Keep the sequence going so that the order of later items stays consistent.
            items.set_next_seq(node.items.next_seq());
            let previous = mem::replace(&mut node.items, items);
            self.steps.push(Step::RestoreItems(id.to_owned(), previous));
        }
    }
}
