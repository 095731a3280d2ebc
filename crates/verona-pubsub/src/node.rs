//! One leaf node: configuration, affiliations, subscriptions, items, and the cached
//! fan-out list.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use jid::{BareJid, Jid};

use crate::access::Affiliation;
use crate::config::NodeConfig;
use crate::derived::Derived;
use crate::effects::Recipient;
use crate::item::ItemStore;
use crate::subscription::{Subscription, SubscriptionState};
use crate::vecmap::VecMap;
use crate::{NodeId, SubId};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub id: NodeId,
    pub config: NodeConfig,
    /// Explicit affiliations; `Affiliation::None` is never stored. Most nodes have one (their
    /// owner): a sorted vector, not a map's node of eleven slots.
    affiliations: VecMap<BareJid, Affiliation>,
    /// How many of those are outcast domains, so that checking an account against its
    /// domain costs nothing when there are none.
    outcast_domains: u32,
    /// Subscriptions grouped by the subscriber's bare JID, then by SubID (unique in the node).
    subscriptions: ByBare,
    /// Index of the SubIDs in use, once the node has many subscribers.
    subids: SubIdIndex,
    pub items: ItemStore,
    recipients: RecipientCache,
}

/// Nodes with this many subscribers index their SubIDs, and keep their recipient lists between
/// notifications unless their service says otherwise ([`crate::Limits::keep_recipients_from`]).
pub(crate) const CACHED_RECIPIENTS: usize = 128;

type Held = VecMap<SubId, Subscription>;

/// The subscriptions by bare JID: a sorted vector while the node has fewer than
/// [`CACHED_RECIPIENTS`] subscribers (an account's presence node: no map nodes with empty
/// slots), a B-tree from there on, so that a large node's subscribes stay cheap.
#[derive(Debug, Clone)]
enum ByBare {
    Few(VecMap<BareJid, Held>),
    Many(BTreeMap<BareJid, Held>),
}

impl PartialEq for ByBare {
    /// The same subscriptions, whichever form holds them (an undo does not shrink a B-tree
    /// back into a vector).
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Default for ByBare {
    fn default() -> Self {
        ByBare::Few(VecMap::new())
    }
}

impl ByBare {
    fn len(&self) -> usize {
        match self {
            ByBare::Few(few) => few.len(),
            ByBare::Many(many) => many.len(),
        }
    }

    fn get(&self, bare: &BareJid) -> Option<&Held> {
        match self {
            ByBare::Few(few) => few.get(bare),
            ByBare::Many(many) => many.get(bare),
        }
    }

    fn get_mut(&mut self, bare: &BareJid) -> Option<&mut Held> {
        match self {
            ByBare::Few(few) => few.get_mut(bare),
            ByBare::Many(many) => many.get_mut(bare),
        }
    }

    /// The entry of `bare`, made empty if missing.
    fn held_mut(&mut self, bare: &BareJid) -> &mut Held {
        if let ByBare::Few(few) = self
            && !few.contains_key(bare)
            && few.len() + 1 >= CACHED_RECIPIENTS
        {
            *self = ByBare::Many(std::mem::take(few).into_iter().collect());
        }
        match self {
            ByBare::Few(few) => {
                if !few.contains_key(bare) {
                    few.insert(bare.clone(), Held::new());
                }
                few.get_mut(bare).expect("just inserted")
            }
            ByBare::Many(many) => many.entry(bare.clone()).or_default(),
        }
    }

    fn remove(&mut self, bare: &BareJid) {
        match self {
            ByBare::Few(few) => {
                few.remove(bare);
            }
            ByBare::Many(many) => {
                many.remove(bare);
            }
        }
    }

    /// In bare JID order.
    fn iter(&self) -> impl Iterator<Item = (&BareJid, &Held)> {
        let (few, many) = match self {
            ByBare::Few(few) => (Some(few.iter()), None),
            ByBare::Many(many) => (None, Some(many.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    fn values(&self) -> impl Iterator<Item = &Held> {
        self.iter().map(|(_, held)| held)
    }
}

/// The SubIDs in use, so that fresh SubIDs are checked without a scan. Built once the node has
/// [`CACHED_RECIPIENTS`] subscribers: below that a scan is cheap, and a copy of every SubID of
/// every online user's presence node is not (issue #9).
type SubIdIndex = Derived<HashSet<SubId>>;

/// The notification recipients, computed once after the subscriptions change and shared by
/// every notification until the next change: a publish to N subscribers costs one `Arc` clone
/// plus, after a change, one O(N) rebuild.
#[derive(Debug, Clone, Default)]
struct RecipientCache(Option<Arc<[Recipient]>>);

impl PartialEq for RecipientCache {
    /// A cache is derived data: two nodes with equal subscriptions are equal whether or not
    /// either has computed its recipients yet.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Node {
    pub fn new(id: NodeId, config: NodeConfig) -> Self {
        Node {
            id,
            config,
            affiliations: VecMap::new(),
            outcast_domains: 0,
            subscriptions: ByBare::default(),
            subids: SubIdIndex::default(),
            items: ItemStore::default(),
            recipients: RecipientCache::default(),
        }
    }

    pub fn affiliation(&self, jid: &BareJid) -> Affiliation {
        self.affiliations
            .get(jid)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    pub fn affiliations(&self) -> impl Iterator<Item = (&BareJid, Affiliation)> {
        self.affiliations.iter().map(|(jid, aff)| (jid, *aff))
    }

    /// How many explicit affiliations it holds.
    pub fn affiliation_count(&self) -> usize {
        self.affiliations.len()
    }

    pub fn owners(&self) -> impl Iterator<Item = &BareJid> {
        self.affiliations
            .iter()
            .filter(|(_, aff)| **aff == Affiliation::Owner)
            .map(|(jid, _)| jid)
    }

    /// Sets an affiliation (`None` removes it) and returns the previous one.
    pub fn set_affiliation(&mut self, jid: BareJid, affiliation: Affiliation) -> Affiliation {
        let domain = jid.node().is_none();
        let previous = if affiliation == Affiliation::None {
            self.affiliations.remove(&jid)
        } else {
            self.affiliations.insert(jid, affiliation)
        };
        let previous = previous.unwrap_or(Affiliation::None);
        if domain {
            let outcast = Affiliation::Outcast;
            self.outcast_domains += u32::from(affiliation == outcast);
            self.outcast_domains -= u32::from(previous == outcast);
        }
        previous
    }

    /// Whether `account`'s whole domain is an outcast (XEP-0191 blocks domains too).
    pub fn outcast_domain(&self, account: &BareJid) -> bool {
        self.outcast_domains > 0
            && account.node().is_some()
            && BareJid::new(account.domain().as_str())
                .is_ok_and(|domain| self.affiliation(&domain) == Affiliation::Outcast)
    }

    /// The subscriptions of every JID sharing this bare JID, by SubID.
    pub fn subscriptions_of(&self, bare: &BareJid) -> Option<&VecMap<SubId, Subscription>> {
        self.subscriptions.get(bare)
    }

    /// Every subscription: (bare JID, SubID, subscription).
    pub fn subscriptions(&self) -> impl Iterator<Item = (&BareJid, &SubId, &Subscription)> {
        self.subscriptions
            .iter()
            .flat_map(|(bare, subs)| subs.iter().map(move |(subid, sub)| (bare, subid, sub)))
    }

    /// The subscriptions by bare JID.
    pub fn subscriptions_by_bare(
        &self,
    ) -> impl Iterator<Item = (&BareJid, &VecMap<SubId, Subscription>)> {
        self.subscriptions.iter()
    }

    pub fn has_subid(&self, subid: &str) -> bool {
        match &self.subids.0 {
            Some(index) => index.contains(subid),
            None => self
                .subscriptions
                .values()
                .any(|subs| subs.contains_key(subid)),
        }
    }

    /// Inserts, replaces (`Some`) or removes (`None`) a subscription; returns the previous one.
    pub fn put_subscription(
        &mut self,
        bare: &BareJid,
        subid: &str,
        subscription: Option<Subscription>,
    ) -> Option<Subscription> {
        self.recipients = RecipientCache::default();
        match subscription {
            Some(sub) => {
                if let Some(index) = &mut self.subids.0 {
                    index.insert(SubId::from(subid));
                }
                let previous = self
                    .subscriptions
                    .held_mut(bare)
                    .insert(SubId::from(subid), sub);
                if self.subids.0.is_none() && self.subscriptions.len() >= CACHED_RECIPIENTS {
                    let subids = self.subscriptions().map(|(_, subid, _)| subid.clone());
                    self.subids.0 = Some(subids.collect());
                }
                previous
            }
            None => {
                if let Some(index) = &mut self.subids.0 {
                    index.remove(subid);
                }
                let subs = self.subscriptions.get_mut(bare)?;
                let previous = subs.remove(subid);
                if subs.is_empty() {
                    self.subscriptions.remove(bare);
                }
                previous
            }
        }
    }

    /// Gives back the capacity the subscriptions grew into (after a restore).
    pub fn shrink_to_fit(&mut self) {
        if let ByBare::Few(few) = &mut self.subscriptions {
            few.shrink_to_fit();
        }
    }

    /// Whether the bare JID holds an approved subscription (any of its JIDs).
    pub fn has_approved_subscription(&self, bare: &BareJid) -> bool {
        self.subscriptions
            .get(bare)
            .is_some_and(|subs| subs.values().any(|sub| sub.state.is_approved()))
    }

    /// Who receives item, retract, purge and configuration notifications: one entry per
    /// subscribed JID with its active, delivering subscriptions.
    ///
    /// Nodes with many subscribers keep the list between notifications; a small node (an
    /// account's presence) rebuilds it, which costs less than holding a copy of its
    /// subscribers for every online user.
    pub fn recipients(&mut self, keep_from: usize) -> Arc<[Recipient]> {
        if let Some(recipients) = &self.recipients.0 {
            return Arc::clone(recipients);
        }
        let recipients: Arc<[Recipient]> = self
            .group_by_jid(|sub| sub.state == SubscriptionState::Subscribed && sub.options.deliver)
            .into();
        if recipients.len() >= keep_from {
            self.recipients = RecipientCache(Some(Arc::clone(&recipients)));
        }
        recipients
    }

    /// Everyone with a subscription in any state (node deletion is announced to all).
    pub fn all_subscribers(&self) -> Arc<[Recipient]> {
        self.group_by_jid(|_| true).into()
    }

    fn group_by_jid(&self, include: impl Fn(&Subscription) -> bool) -> Vec<Recipient> {
        let mut recipients = Vec::with_capacity(self.subscriptions.len());
        for subs in self.subscriptions.values() {
            // A bare JID rarely holds more than a few subscriptions: group them linearly.
            let first = recipients.len();
            for (subid, sub) in subs.iter().filter(|(_, sub)| include(sub)) {
                match recipients[first..]
                    .iter_mut()
                    .find(|r: &&mut Recipient| r.jid == sub.jid)
                {
                    Some(recipient) => recipient.add(subid, sub),
                    None => recipients.push(Recipient::new(sub.jid.clone(), subid, sub)),
                }
            }
        }
        recipients
    }

    /// Whether another bare JID already holds `value` for the unique option `var`. A scan:
    /// unique options (room nicks) are checked when joining, and an index of every option's
    /// holders would cost each subscriber a copy of its JID.
    pub fn option_taken(&self, var: &str, value: &str, except: &BareJid) -> bool {
        self.subscriptions
            .iter()
            .filter(|(holder, _)| *holder != except)
            .flat_map(|(_, subs)| subs.values())
            .any(|sub| sub.options.custom.get(var).is_some_and(|v| v == value))
    }

    /// The subscriptions of `jid` exactly (not other resources of its bare JID), by SubID.
    pub fn subscriptions_of_jid<'a>(
        &'a self,
        jid: &'a Jid,
    ) -> impl Iterator<Item = (&'a SubId, &'a Subscription)> + 'a {
        self.subscriptions
            .get(&jid.to_bare())
            .into_iter()
            .flat_map(|subs| subs.iter())
            .filter(move |(_, sub)| sub.jid == *jid)
    }
}
