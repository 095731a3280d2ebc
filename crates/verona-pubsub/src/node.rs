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

/// A bare JID's subscriptions to a node by SubID. Nearly always one (a contact's presence
/// subscription): held in place, without a vector's header and allocation of its own.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Held {
    One(SubId, Subscription),
    Many(VecMap<SubId, Subscription>),
}

impl Default for Held {
    fn default() -> Self {
        Held::Many(VecMap::new())
    }
}

impl Held {
    pub(crate) fn contains_key(&self, subid: &str) -> bool {
        match self {
            Held::One(id, _) => id.as_str() == subid,
            Held::Many(many) => many.contains_key(subid),
        }
    }

    pub(crate) fn insert(&mut self, subid: SubId, sub: Subscription) -> Option<Subscription> {
        match self {
            Held::One(id, held) if *id == subid => Some(std::mem::replace(held, sub)),
            Held::Many(many) if many.is_empty() => {
                *self = Held::One(subid, sub);
                None
            }
            Held::Many(many) => many.insert(subid, sub),
            Held::One(..) => {
                let Held::One(id, held) = std::mem::take(self) else {
                    unreachable!("matched above")
                };
                *self = Held::Many(VecMap::from([(id, held), (subid, sub)]));
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, subid: &str) -> Option<Subscription> {
        match self {
            Held::One(id, _) if id.as_str() == subid => match std::mem::take(self) {
                Held::One(_, held) => Some(held),
                Held::Many(_) => unreachable!("matched above"),
            },
            Held::One(..) => None,
            Held::Many(many) => {
                let removed = many.remove(subid);
                // One left is held in place, as if it had come alone: the shape depends only
                // on the contents (an undo restores exactly what was).
                if many.len() == 1
                    && let Held::Many(many) = std::mem::take(self)
                    && let Some((id, held)) = many.into_iter().next()
                {
                    *self = Held::One(id, held);
                }
                removed
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Held::Many(many) if many.is_empty())
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Held::One(..) => 1,
            Held::Many(many) => many.len(),
        }
    }

    /// In SubID order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&SubId, &Subscription)> {
        let (one, many) = match self {
            Held::One(id, sub) => (Some((id, sub)), None),
            Held::Many(many) => (None, Some(many.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Subscription> {
        self.iter().map(|(_, sub)| sub)
    }

    /// The bare JID of its subscriptions (empty for an empty entry, which [`ByBare::Few`]
    /// never holds).
    pub(crate) fn bare(&self) -> &str {
        self.values().next().map_or("", |sub| bare_str(&sub.jid))
    }

    /// [`Held::bare`], as a JID of its own.
    pub(crate) fn bare_jid(&self) -> BareJid {
        self.values()
            .next()
            .expect("no entry is empty")
            .jid
            .to_bare()
    }
}

/// The bare part of a JID, as a slice of it (no node or domain holds a `/`).
fn bare_str(jid: &Jid) -> &str {
    let jid = jid.as_str();
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

/// The subscriptions by bare JID: a sorted vector while the node has fewer than
/// [`CACHED_RECIPIENTS`] subscribers (an account's presence node: no map nodes with empty
/// slots), a B-tree from there on, so that a large node's subscribes stay cheap. The vector
/// holds no key of its own: an entry's bare JID is that of its subscriptions, so a contact's
/// JID is held once, not twice (issue #9).
#[derive(Debug, Clone)]
enum ByBare {
    /// Sorted by bare JID; no entry is empty.
    Few(Vec<Held>),
    Many(BTreeMap<BareJid, Held>),
}

impl PartialEq for ByBare {
    /// The same subscriptions, whichever form holds them (an undo does not shrink a B-tree
    /// back into a vector).
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.values().eq(other.values())
    }
}

impl Default for ByBare {
    fn default() -> Self {
        ByBare::Few(Vec::new())
    }
}

impl ByBare {
    fn len(&self) -> usize {
        match self {
            ByBare::Few(few) => few.len(),
            ByBare::Many(many) => many.len(),
        }
    }

    fn find(few: &[Held], bare: &BareJid) -> Result<usize, usize> {
        few.binary_search_by(|held| held.bare().cmp(bare.as_str()))
    }

    fn get(&self, bare: &BareJid) -> Option<&Held> {
        match self {
            ByBare::Few(few) => Some(&few[Self::find(few, bare).ok()?]),
            ByBare::Many(many) => many.get(bare),
        }
    }

    /// Inserts or replaces `bare`'s subscription `subid`; returns the previous one.
    fn insert(&mut self, bare: &BareJid, subid: SubId, sub: Subscription) -> Option<Subscription> {
        debug_assert_eq!(bare_str(&sub.jid), bare.as_str());
        if let ByBare::Few(few) = self
            && Self::find(few, bare).is_err()
            && few.len() + 1 >= CACHED_RECIPIENTS
        {
            let keyed = std::mem::take(few)
                .into_iter()
                .map(|held| (held.bare_jid(), held));
            *self = ByBare::Many(keyed.collect());
        }
        match self {
            ByBare::Few(few) => match Self::find(few, bare) {
                Ok(at) => few[at].insert(subid, sub),
                Err(at) => {
                    // A node's subscribers come one at a time; a restore's list is shrunk after.
                    if few.len() < 8 {
                        few.reserve_exact(1);
                    }
                    few.insert(at, Held::One(subid, sub));
                    None
                }
            },
            ByBare::Many(many) => many.entry(bare.clone()).or_default().insert(subid, sub),
        }
    }

    /// Removes `bare`'s subscription `subid`; returns it.
    fn remove(&mut self, bare: &BareJid, subid: &str) -> Option<Subscription> {
        match self {
            ByBare::Few(few) => {
                let at = Self::find(few, bare).ok()?;
                let previous = few[at].remove(subid);
                if few[at].is_empty() {
                    few.remove(at);
                    if few.is_empty() {
                        *few = Vec::new();
                    }
                }
                previous
            }
            ByBare::Many(many) => {
                let held = many.get_mut(bare)?;
                let previous = held.remove(subid);
                if held.is_empty() {
                    many.remove(bare);
                }
                previous
            }
        }
    }

    /// In bare JID order.
    fn values(&self) -> impl Iterator<Item = &Held> {
        let (few, many) = match self {
            ByBare::Few(few) => (Some(few.iter()), None),
            ByBare::Many(many) => (None, Some(many.values())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
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
    pub fn subscriptions_of(&self, bare: &BareJid) -> Option<&Held> {
        self.subscriptions.get(bare)
    }

    /// Every subscription: (SubID, subscription), in bare JID order.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&SubId, &Subscription)> {
        self.subscriptions.values().flat_map(Held::iter)
    }

    /// The subscriptions of each bare JID, in bare JID order.
    pub fn subscriptions_by_bare(&self) -> impl Iterator<Item = &Held> {
        self.subscriptions.values()
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
                let previous = self.subscriptions.insert(bare, SubId::from(subid), sub);
                if self.subids.0.is_none() && self.subscriptions.len() >= CACHED_RECIPIENTS {
                    let subids = self.subscriptions().map(|(subid, _)| subid.clone());
                    self.subids.0 = Some(subids.collect());
                }
                previous
            }
            None => {
                if let Some(index) = &mut self.subids.0 {
                    index.remove(subid);
                }
                self.subscriptions.remove(bare, subid)
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

    /// Whether another bare JID's approved subscription already holds `value` for the unique
    /// option `var`: one waiting for the owners holds nothing yet (a room's nick is an
    /// occupant's, XEP-0045 §7.2.9, and a stranger's request to enter takes none). A scan:
    /// unique options (room nicks) are checked when joining, and an index of every option's
    /// holders would cost each subscriber a copy of its JID.
    pub fn option_taken(&self, var: &str, value: &str, except: &BareJid) -> bool {
        self.subscriptions
            .values()
            .filter(|holder| holder.bare() != except.as_str())
            .flat_map(Held::values)
            .filter(|sub| sub.state.is_approved())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::SubscriptionOptions;

    fn sub(jid: &str, state: SubscriptionState) -> Subscription {
        Subscription {
            jid: Jid::new(jid).unwrap(),
            state,
            options: SubscriptionOptions::default(),
        }
    }

    fn ids(held: &Held) -> Vec<&str> {
        held.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn one_subscription_is_held_in_place_and_more_in_order() {
        let mut held = Held::default();
        assert!(held.is_empty());
        let (pending, subscribed) = (SubscriptionState::Pending, SubscriptionState::Subscribed);
        assert_eq!(held.insert("b".into(), sub("romeo@x/1", pending)), None);
        assert!(matches!(held, Held::One(..)));
        assert_eq!(
            held.insert("b".into(), sub("romeo@x/1", subscribed)),
            Some(sub("romeo@x/1", pending))
        );
        assert!(matches!(held, Held::One(..)));
        assert_eq!(held.insert("a".into(), sub("romeo@x/2", pending)), None);
        assert_eq!((ids(&held), held.len()), (vec!["a", "b"], 2));
        assert!(held.contains_key("a") && !held.contains_key("c"));
        assert_eq!(held.remove("c"), None);
        assert_eq!(held.remove("b"), Some(sub("romeo@x/1", subscribed)));
        // The one left is held in place again, as it would be had it come alone.
        assert!(matches!(held, Held::One(..)));
        assert_eq!(held.remove("a"), Some(sub("romeo@x/2", pending)));
        assert!(held.is_empty());
        assert_eq!(held.insert("c".into(), sub("romeo@x", pending)), None);
        assert_eq!(held.remove("d"), None);
        assert_eq!(held.values().count(), 1);
        assert_eq!(held.remove("c"), Some(sub("romeo@x", pending)));
        assert!(held.is_empty());
    }
}
