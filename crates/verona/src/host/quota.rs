//! The subscription limit per account, over every service (issue #11 M7). Each service's
//! engine bounds what one bare JID holds there (`[pubsub] max_subscriptions_per_jid`); this
//! bounds the sum over all services, so that nobody can hold that many on every account's PEP
//! service. The counts come from storage (an indexed count of committed subscriptions) for the
//! subscribers of a batch's subscription requests, plus one for each such request the batch
//! admits. Shards count apart, so concurrent batches on several shards can pass the limit by
//! at most what they admit at once. Conversations with another server's users are not
//! counted (see [`subscriptions_counted`]).
//!
//! Rooms are bounded the same way: every room is a service of its own, so the engine's limit
//! on the nodes one JID owns (`[pubsub] max_nodes_per_owner`) is applied here over all of
//! `chat.<domain>`, from an indexed count of the rooms an account owns.

use super::*;
use crate::jids::Bare;

impl ServicesTask {
    /// Reads how many rooms the accounts that may create one in this batch own.
    pub(super) async fn count_rooms(&mut self, requests: &[Request]) {
        let creators: BTreeSet<BareJid> = requests
            .iter()
            .filter_map(|request| self.room_creator(request))
            .collect();
        let prefix = handle::room_key(self.rooms_jid.as_str(), "");
        for creator in creators {
            match self
                .stores
                .pubsub
                .owned_count(creator.as_str(), &prefix)
                .await
            {
                Ok(count) => {
                    self.rooms_owned.insert(creator, count);
                }
                Err(e) => {
                    // Nobody gets past a limit that could not be read.
                    tracing::error!(%creator, "counting rooms failed: {e}");
                    self.rooms_owned.insert(creator, usize::MAX);
                }
            }
        }
    }

    /// Whether `creator` may make one more room; counts it if so. Rooms are bounded as nodes
    /// of `pubsub.<domain>` are (`[pubsub] max_nodes_per_owner`), not as PEP nodes.
    pub(super) fn admit_room(&mut self, creator: &BareJid) -> bool {
        let max = self.rooms_config.limits.max_nodes_per_owner;
        let owned = self.rooms_owned.entry(creator.clone()).or_insert(0);
        if *owned >= max {
            tracing::info!(%creator, max, "room refused: too many rooms");
            return false;
        }
        *owned += 1;
        true
    }

    /// Who a request may make create a room: a join of a room that does not exist, or a
    /// native create.
    fn room_creator(&self, request: &Request) -> Option<BareJid> {
        match request {
            Request::Room { from, stanza }
                if stanza.name() == "presence" && stanza.attr("type").is_none() =>
            {
                let node = stanza
                    .attr("to")
                    .and_then(|to| Jid::new(to).ok())?
                    .node()?
                    .to_string();
                let exists = self
                    .rooms
                    .get(&node)
                    .is_some_and(|hosted| hosted.service.node_config(&node).is_some());
                (!exists).then(|| from.bare())
            }
            Request::Stanza {
                from,
                target: Target::Rooms,
                stanza,
                ..
            } if is_create(stanza) => Some(from.bare()),
            _ => None,
        }
    }

    /// Reads how many subscriptions the subscribers of `requests`' subscription requests
    /// hold, before the batch is handled.
    pub(super) async fn count_subscriptions(&mut self, requests: &[Request]) {
        let subscribers: BTreeSet<BareJid> = requests
            .iter()
            .filter_map(|request| self.subscriber_of(request))
            .collect();
        for subscriber in subscribers {
            let held = subscriptions_counted(
                &self.stores,
                &self.pubsub_jid,
                &self.domain_name,
                &subscriber,
            );
            match held.await {
                Ok(count) => {
                    self.subscriptions_held.insert(subscriber, count);
                }
                // The engine's own limit per service still holds.
                Err(e) => tracing::error!(%subscriber, "counting subscriptions failed: {e}"),
            }
        }
    }

    /// Whether `subscriber` may ask for one more subscription; counts it if so.
    pub(super) fn admit_subscription(&mut self, subscriber: &BareJid) -> bool {
        let max = self.pep_limits.max_subscriptions_per_jid;
        match self.subscriptions_held.get_mut(subscriber) {
            Some(held) if *held >= max => {
                tracing::info!(%subscriber, max, "subscription refused: too many subscriptions");
                false
            }
            Some(held) => {
                *held += 1;
                true
            }
            None => true,
        }
    }

    /// Who a request would make hold a new subscription on this shard: a XEP-0060 subscribe,
    /// or a classic `subscribe` to a presence node this shard owns.
    fn subscriber_of(&self, request: &Request) -> Option<BareJid> {
        match request {
            Request::Stanza { from, stanza, .. } if is_subscribe(stanza) => Some(from.bare()),
            Request::Subscription {
                from,
                contact,
                kind: SubscriptionKind::Subscribe,
                ..
            } if self.shard_of(SubscriptionKind::Subscribe.owner(from, contact).as_str())
                == self.shard =>
            {
                Some(from.clone())
            }
            _ => None,
        }
    }
}

/// How many subscriptions `subscriber` holds against its bound, read from storage: all but
/// those to the conversations of `pubsub` (the server of `domain`'s) with another server's
/// users, which that server could make without bound by inventing senders (a rate per domain
/// bounds them instead, `chat.rs`).
pub(super) async fn subscriptions_counted(
    stores: &Stores,
    pubsub: &BareJid,
    domain: &str,
    subscriber: &BareJid,
) -> Result<usize, verona_storage::StorageError> {
    let prefix = eventing::chat::key_prefix(pubsub.as_str());
    let conversations = verona_storage::Conversations {
        prefix: &prefix,
        domain,
    };
    stores
        .pubsub
        .subscription_count(subscriber.as_str(), conversations)
        .await
}

/// A XEP-0060 create request.
pub(super) fn is_create(stanza: &Element) -> bool {
    stanza.attr("type") == Some("set")
        && stanza
            .get_child("pubsub", ns::PUBSUB)
            .is_some_and(|pubsub| pubsub.has_child("create", ns::PUBSUB))
}

/// A XEP-0060 subscribe request.
pub(super) fn is_subscribe(stanza: &Element) -> bool {
    stanza.attr("type") == Some("set")
        && stanza
            .get_child("pubsub", ns::PUBSUB)
            .is_some_and(|pubsub| pubsub.has_child("subscribe", ns::PUBSUB))
}
