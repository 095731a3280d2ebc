//! Entity use cases (XEP-0060 §5): discovery, one's own subscriptions and affiliations.

use std::ops::Bound;

use jid::{BareJid, Jid};

use super::{Service, SubscriptionInfo, SubscriptionRef, info};
use crate::access::{self, AccessResolver, Action, Affiliation};
use crate::config::NodeConfig;
use crate::{Item, NodeId};

/// What disco#info (`pubsub#meta-data`) shows about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMetadata<'a> {
    /// The configuration.
    pub config: &'a NodeConfig,
    /// `pubsub#owner`.
    pub owners: Vec<BareJid>,
    /// `pubsub#publisher`: entities with the publisher affiliation.
    pub publishers: Vec<BareJid>,
    /// `pubsub#num_subscribers`: approved subscriptions.
    pub subscribers: usize,
    /// How many items the node holds.
    pub items: usize,
}

impl Service {
    /// Every NodeID, in order.
    pub fn node_ids(&self) -> impl Iterator<Item = &NodeId> {
        self.state.nodes.keys()
    }

    /// The nodes `actor` may subscribe to or retrieve items from (disco#items; XEP-0163 §8
    /// shows only those), in NodeID order after `after`, at most `max`: a page.
    pub fn visible_nodes(
        &self,
        resolver: &dyn AccessResolver,
        actor: &Jid,
        after: Option<&str>,
        max: usize,
    ) -> Vec<NodeId> {
        let actor = actor.to_bare();
        let admins = &self.config.admins;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.state
            .nodes
            .range::<str, _>((from, Bound::Unbounded))
            .map(|(_, node)| node)
            .filter(|node| {
                [Action::Subscribe, Action::RetrieveItems]
                    .into_iter()
                    .any(|action| access::may(node, admins, resolver, &actor, action).is_ok())
            })
            .map(|node| node.id.clone())
            .take(max)
            .collect()
    }

    /// A node's configuration, if the node exists: cheap, unlike [`Service::metadata`].
    pub fn node_config(&self, node_id: &str) -> Option<&NodeConfig> {
        self.state.nodes.get(node_id).map(|node| &node.config)
    }

    /// A node's items, oldest first, expired ones too, without access checks and without
    /// copies: the protocol layer's reading of nodes it keeps itself (a roster re-read at
    /// each change).
    pub fn node_items(&self, node_id: &str) -> impl Iterator<Item = &Item> {
        let node = self.state.nodes.get(node_id);
        node.into_iter().flat_map(|node| node.items.iter())
    }

    /// A node's metadata, without access checks (disco#info is public in XEP-0060; the
    /// protocol layer may hide what it wants).
    pub fn metadata(&self, node_id: &str) -> Option<NodeMetadata<'_>> {
        let node = self.state.nodes.get(node_id)?;
        let with = |wanted: Affiliation| {
            node.affiliations()
                .filter(|(_, affiliation)| *affiliation == wanted)
                .map(|(jid, _)| jid.clone())
                .collect()
        };
        Some(NodeMetadata {
            config: &node.config,
            owners: with(Affiliation::Owner),
            publishers: with(Affiliation::Publisher),
            subscribers: node
                .subscriptions()
                .filter(|(_, sub)| sub.state.is_approved())
                .count(),
            items: node.items.len(),
        })
    }

    /// The subscriptions held by `actor`'s bare JID (any of its JIDs), on every node or on
    /// one (XEP-0060 §5.6).
    pub fn own_subscriptions(&self, actor: &Jid, node: Option<&str>) -> Vec<SubscriptionInfo> {
        let bare = actor.to_bare();
        self.state
            .held_by(&bare)
            .filter(|(node_id, _, _)| node.is_none_or(|wanted| *node_id == wanted))
            .map(|(node_id, subid, sub)| info(node_id, subid, sub))
            .collect()
    }

    /// Every subscription of a node, any state, without access checks: for the server's own
    /// views (a room's occupants). Empty if there is no such node.
    pub fn subscribers(&self, node_id: &str) -> Vec<SubscriptionInfo> {
        self.subscriptions(node_id)
            .map(|sub| sub.to_info(node_id))
            .collect()
    }

    /// [`Service::subscribers`] without copying them.
    pub fn subscriptions(&self, node_id: &str) -> impl Iterator<Item = SubscriptionRef<'_>> {
        self.state
            .nodes
            .get(node_id)
            .into_iter()
            .flat_map(|node| node.subscriptions())
            .map(|(subid, sub)| SubscriptionRef::new(subid, sub))
    }

    /// The subscriptions of `jid` exactly (not of other resources of its bare JID) to a node,
    /// found by its bare JID rather than by a scan.
    pub fn subscriptions_of_jid<'a>(
        &'a self,
        node_id: &str,
        jid: &'a Jid,
    ) -> impl Iterator<Item = SubscriptionRef<'a>> {
        self.state
            .nodes
            .get(node_id)
            .into_iter()
            .flat_map(move |node| node.subscriptions_of_jid(jid))
            .map(|(subid, sub)| SubscriptionRef::new(subid, sub))
    }

    /// The affiliation `jid` holds on a node, without access checks (service admins count as
    /// owners); `none` if there is no such node.
    pub fn affiliation(&self, node_id: &str, jid: &BareJid) -> Affiliation {
        self.state
            .nodes
            .get(node_id)
            .map_or(Affiliation::None, |node| {
                access::affiliation_of(node, &self.config.admins, jid)
            })
    }

    /// The affiliations of `actor`'s bare JID, on every node or on one (XEP-0060 §5.7).
    pub fn own_affiliations(&self, actor: &Jid, node: Option<&str>) -> Vec<(NodeId, Affiliation)> {
        let bare = actor.to_bare();
        self.state
            .affiliations_of(&bare)
            .filter(|(node_id, _)| node.is_none_or(|wanted| *node_id == wanted))
            .map(|(node_id, affiliation)| (node_id.clone(), affiliation))
            .collect()
    }

    /// Whether any subscription of the service ends with its subscriber's session
    /// (`pubsub#expire` = `presence`): such a service holds state that storage does not, so a
    /// host must keep it in memory. O(subscriptions).
    pub fn has_temporary_subscriptions(&self) -> bool {
        self.state
            .nodes
            .values()
            .any(|node| node.subscriptions().any(|(_, sub)| sub.options.temporary))
    }
}
