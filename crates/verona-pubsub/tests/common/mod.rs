//! Shared test fixtures: a deterministic environment, a table-backed access resolver, an
//! in-memory store that applies `StoreOp`s, and JID helpers.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jid::{BareJid, FullJid, Jid};
use verona_pubsub::{
    AccessResolver, Affiliation, Effect, Environment, Notification, Outcome, Service,
    ServiceConfig, StoreOp, StoredNode,
};

pub fn jid(text: &str) -> Jid {
    Jid::new(text).expect("test JID")
}

pub fn bare(text: &str) -> BareJid {
    BareJid::new(text).expect("test bare JID")
}

pub fn full(text: &str) -> FullJid {
    FullJid::new(text).expect("test full JID")
}

/// A clock tests move by hand, and ids `id1`, `id2`, …
#[derive(Clone)]
pub struct TestEnv {
    now: Arc<Mutex<SystemTime>>,
    ids: Arc<Mutex<Vec<String>>>,
    counter: Arc<Mutex<u64>>,
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv {
            now: Arc::new(Mutex::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000))),
            ids: Arc::new(Mutex::new(Vec::new())),
            counter: Arc::new(Mutex::new(0)),
        }
    }

    /// The next ids returned, before falling back to the counter (to force collisions).
    pub fn script_ids(&self, ids: &[&str]) {
        let mut scripted = self.ids.lock().unwrap();
        scripted.extend(ids.iter().rev().map(|id| id.to_string()));
    }

    pub fn advance(&self, seconds: u64) {
        *self.now.lock().unwrap() += Duration::from_secs(seconds);
    }

    pub fn now(&self) -> SystemTime {
        *self.now.lock().unwrap()
    }
}

impl Environment for TestEnv {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap()
    }

    fn new_id(&mut self) -> String {
        if let Some(id) = self.ids.lock().unwrap().pop() {
            return id;
        }
        let mut counter = self.counter.lock().unwrap();
        *counter += 1;
        format!("id{counter}")
    }
}

/// Presence subscriptions and roster groups as tables.
#[derive(Default, Clone)]
pub struct Roster {
    /// (owner, contact): contact is subscribed to owner's presence.
    pub presence: BTreeSet<(BareJid, BareJid)>,
    /// (owner, contact) → groups contact is in.
    pub groups: BTreeMap<(BareJid, BareJid), Vec<String>>,
}

impl Roster {
    pub fn with_presence(owner: &str, contact: &str) -> Self {
        let mut roster = Roster::default();
        roster.presence.insert((bare(owner), bare(contact)));
        roster
    }

    pub fn with_group(owner: &str, contact: &str, group: &str) -> Self {
        let mut roster = Roster::default();
        roster
            .groups
            .insert((bare(owner), bare(contact)), vec![group.to_owned()]);
        roster
    }
}

impl AccessResolver for Roster {
    fn has_presence_subscription(&self, owner: &BareJid, contact: &BareJid) -> bool {
        self.presence.contains(&(owner.clone(), contact.clone()))
    }

    fn in_roster_group(&self, owner: &BareJid, contact: &BareJid, groups: &[String]) -> bool {
        self.groups
            .get(&(owner.clone(), contact.clone()))
            .is_some_and(|mine| mine.iter().any(|g| groups.contains(g)))
    }
}

pub fn service(config: ServiceConfig) -> (Service, TestEnv) {
    let env = TestEnv::new();
    (Service::new(config, Box::new(env.clone())), env)
}

/// A storage double: applies `StoreOp`s exactly as their documentation says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemoryStore {
    pub nodes: BTreeMap<String, StoredNode>,
}

impl MemoryStore {
    pub fn apply<T>(&mut self, outcome: &Outcome<T>) {
        for op in outcome.store_ops() {
            self.apply_op(op.clone());
        }
    }

    pub fn apply_op(&mut self, op: StoreOp) {
        match op {
            StoreOp::NodeCreated { node, config } => {
                self.nodes.insert(
                    node.clone(),
                    StoredNode {
                        id: node,
                        config,
                        affiliations: Vec::new(),
                        subscriptions: Vec::new(),
                        items: Vec::new(),
                    },
                );
            }
            StoreOp::NodeConfigured { node, config } => self.node(&node).config = config,
            StoreOp::NodeDeleted { node } => {
                self.nodes.remove(&node);
            }
            StoreOp::AffiliationSet {
                node,
                jid,
                affiliation,
            } => {
                let affiliations = &mut self.node(&node).affiliations;
                affiliations.retain(|(j, _)| *j != jid);
                if affiliation != Affiliation::None {
                    affiliations.push((jid, affiliation));
                    affiliations.sort();
                }
            }
            StoreOp::SubscriptionSet { node, subscription } => {
                let subs = &mut self.node(&node).subscriptions;
                subs.retain(|s| s.subid != subscription.subid);
                subs.push(subscription);
            }
            StoreOp::SubscriptionRemoved { node, subid } => {
                self.node(&node).subscriptions.retain(|s| s.subid != subid);
            }
            StoreOp::ItemStored { node, item } => {
                let items = &mut self.node(&node).items;
                items.retain(|i| i.id != item.id);
                items.push(item);
            }
            StoreOp::ItemRemoved { node, id } => {
                self.node(&node).items.retain(|i| i.id != id);
            }
            StoreOp::ItemsPurged { node } => self.node(&node).items.clear(),
        }
    }

    fn node(&mut self, id: &str) -> &mut StoredNode {
        self.nodes
            .get_mut(id)
            .expect("store op on a node the store has")
    }

    /// The store's content in the engine's `stored_nodes` shape (ordered for comparison).
    pub fn normalized(&self) -> Vec<StoredNode> {
        self.nodes.values().cloned().map(normalize).collect()
    }
}

/// Sorts the unordered parts of a stored node so that two views compare equal.
pub fn normalize(mut node: StoredNode) -> StoredNode {
    node.affiliations.sort();
    node.subscriptions.sort_by(|a, b| a.subid.cmp(&b.subid));
    node
}

pub fn normalized(service: &Service) -> Vec<StoredNode> {
    service.stored_nodes().into_iter().map(normalize).collect()
}

pub fn notifications<T>(outcome: &Outcome<T>) -> Vec<&Notification> {
    outcome.notifications().collect()
}

/// The recipients' JIDs of a notification, as strings.
pub fn recipient_jids(notification: &Notification) -> Vec<String> {
    notification
        .recipients
        .iter()
        .map(|r| r.jid.to_string())
        .collect()
}

pub fn has_effect<T>(outcome: &Outcome<T>, wanted: impl Fn(&Effect) -> bool) -> bool {
    outcome.effects.iter().any(wanted)
}
