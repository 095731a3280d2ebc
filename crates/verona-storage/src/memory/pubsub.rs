//! [`PubsubStore`] for [`MemoryStore`].

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use verona_pubsub::{Affiliation, Item, StoreOp, StoredNode};

use super::MemoryStore;
use crate::pubsub::{
    config_from_json, config_to_json, config_without_account, from_micros, node_of, page_of,
    to_micros,
};
use crate::{
    BoxFuture, Conversations, FoundItem, HeldAffiliation, HeldSubscription, ItemsPage, ItemsQuery,
    NodeListing, PubsubStore, PubsubWrite, StorageError,
};

/// Stored nodes by service, then by node id. Affiliations are kept sorted by JID and
/// subscriptions by SubID, the order the SQLite backend loads them in.
pub(super) type Services = BTreeMap<String, BTreeMap<String, StoredNode>>;

/// The services without what [`crate::AccountStore::delete_account`] removes of an account's
/// pubsub state: its own service, the nodes it alone owned, and its subscriptions and
/// affiliations elsewhere. Made apart, so that a failure changes nothing.
pub(super) fn forgotten(services: &Services, account: &str) -> Result<Services, StorageError> {
    let mut services = services.clone();
    forget(&mut services, account)?;
    Ok(services)
}

fn forget(services: &mut Services, account: &str) -> Result<(), StorageError> {
    services.remove(account);
    for nodes in services.values_mut() {
        nodes.retain(|_, node| {
            let owners: Vec<&str> = node
                .affiliations
                .iter()
                .filter(|(_, affiliation)| *affiliation == Affiliation::Owner)
                .map(|(jid, _)| jid.as_str())
                .collect();
            !owners.contains(&account) || owners.iter().any(|owner| *owner != account)
        });
        for node in nodes.values_mut() {
            // As the SQLite store does, through the stored form of the configuration.
            let json = config_to_json(&node.config)?;
            if let Some(json) = config_without_account(&json, account)? {
                node.config = config_from_json(&json)?;
            }
            node.affiliations.retain(|(jid, _)| jid.as_str() != account);
            node.subscriptions
                .retain(|sub| sub.jid.to_bare().as_str() != account);
        }
    }
    services.retain(|_, nodes| !nodes.is_empty());
    Ok(())
}

/// Moves or deletes the nodes an account's deletion ends, as [`PubsubStore::move_node`] and a
/// node's deletion do.
pub(super) fn end_nodes(services: &mut Services, ends: &[crate::NodeEnd]) {
    for end in ends {
        let Some(nodes) = services.get_mut(&end.service) else {
            continue;
        };
        let Some(mut moved) = nodes.remove(&end.node) else {
            continue;
        };
        if nodes.is_empty() {
            services.remove(&end.service);
        }
        if let Some((to_service, to_node)) = &end.to {
            moved.id = to_node.clone();
            (services.entry(to_service.clone()).or_default()).insert(to_node.clone(), moved);
        }
    }
}

impl PubsubStore for MemoryStore {
    fn load_service<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredNode>, StorageError>> {
        Box::pin(async move {
            let services = self.pubsub();
            let nodes = services.get(service).into_iter().flat_map(|n| n.values());
            Ok(nodes.cloned().collect())
        })
    }

    fn items_page<'a>(
        &'a self,
        query: &'a ItemsQuery,
    ) -> BoxFuture<'a, Result<ItemsPage, StorageError>> {
        Box::pin(async move {
            let services = self.pubsub();
            // No store-wide sequence here: publication time orders the services' items
            // (a node's own are already oldest first).
            let mut archive: Vec<FoundItem> = query
                .services
                .iter()
                .filter_map(|service| Some((service, services.get(service)?)))
                .flat_map(|(service, nodes)| {
                    nodes.values().flat_map(move |node| {
                        node.items.iter().map(move |item| FoundItem {
                            service: service.clone(),
                            node: node.id.clone(),
                            item: item.clone(),
                        })
                    })
                })
                .collect();
            archive.sort_by_key(|found| found.item.published);
            page_of(archive, query)
        })
    }

    fn load_service_recent<'a>(
        &'a self,
        service: &'a str,
        items: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredNode>, StorageError>> {
        Box::pin(async move {
            let mut nodes = self.load_service(service).await?;
            for node in &mut nodes {
                let older = node.items.len().saturating_sub(items);
                node.items.drain(..older);
            }
            Ok(nodes)
        })
    }

    fn trim_items<'a>(
        &'a self,
        service: &'a str,
        keep: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        Box::pin(async move {
            let mut services = self.pubsub();
            let mut removed = 0;
            for node in services
                .get_mut(service)
                .into_iter()
                .flat_map(|n| n.values_mut())
            {
                let mut bytes = 0;
                let kept = (node.items.iter().rev().take(keep).enumerate())
                    .take_while(|(newer, item)| {
                        bytes += item.id.len() + item.payload.as_deref().map_or(0, str::len);
                        *newer == 0 || bytes <= max_bytes
                    })
                    .count();
                let older = node.items.len() - kept;
                node.items.drain(..older);
                removed += older;
            }
            Ok(removed)
        })
    }

    fn move_node<'a>(
        &'a self,
        service: &'a str,
        node: &'a str,
        to_service: &'a str,
        to_node: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let end = crate::NodeEnd {
                service: service.to_owned(),
                node: node.to_owned(),
                to: Some((to_service.to_owned(), to_node.to_owned())),
            };
            end_nodes(&mut self.pubsub(), &[end]);
            Ok(())
        })
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        Box::pin(async move { Ok(self.pubsub().keys().cloned().collect()) })
    }

    fn node_configs<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeListing>, StorageError>> {
        Box::pin(async move {
            let services = self.pubsub();
            let listed = services
                .range(prefix.to_owned()..)
                .take_while(|(service, _)| service.starts_with(prefix))
                .flat_map(|(service, nodes)| {
                    nodes.values().map(move |node| NodeListing {
                        service: service.clone(),
                        node: node.id.clone(),
                        config: node.config.clone(),
                    })
                })
                .collect();
            Ok(listed)
        })
    }

    fn owned_count<'a>(
        &'a self,
        owner: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        Box::pin(async move {
            let services = self.pubsub();
            let count = services
                .range(prefix.to_owned()..)
                .take_while(|(service, _)| service.starts_with(prefix))
                .flat_map(|(_, nodes)| nodes.values())
                .filter(|node| {
                    node.affiliations.iter().any(|(jid, affiliation)| {
                        jid.as_str() == owner && *affiliation == Affiliation::Owner
                    })
                })
                .count();
            Ok(count)
        })
    }

    fn affiliations_of<'a>(
        &'a self,
        jid: &'a str,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<HeldAffiliation>, StorageError>> {
        Box::pin(async move {
            let services = self.pubsub();
            let held = services
                .range(prefix.to_owned()..)
                .take_while(|(service, _)| service.starts_with(prefix))
                .flat_map(|(service, nodes)| nodes.values().map(move |node| (service, node)))
                .flat_map(|(service, node)| {
                    (node.affiliations.iter())
                        .filter(|(held_by, _)| held_by.as_str() == jid)
                        .map(move |(_, affiliation)| HeldAffiliation {
                            service: service.clone(),
                            node: node.id.clone(),
                            affiliation: *affiliation,
                        })
                })
                .take(max)
                .collect();
            Ok(held)
        })
    }

    fn subscriptions_of<'a>(
        &'a self,
        subscriber: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HeldSubscription>, StorageError>> {
        Box::pin(async move {
            let services = self.pubsub();
            let held = services
                .iter()
                .flat_map(|(service, nodes)| nodes.values().map(move |node| (service, node)))
                .flat_map(|(service, node)| {
                    node.subscriptions
                        .iter()
                        .filter(|sub| sub.jid.to_bare().as_str() == subscriber)
                        .map(move |sub| HeldSubscription {
                            service: service.clone(),
                            node: node.id.clone(),
                            state: sub.state,
                        })
                })
                .collect();
            Ok(held)
        })
    }

    fn subscription_count<'a>(
        &'a self,
        subscriber: &'a str,
        conversations: Conversations<'a>,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        Box::pin(async move {
            let services = self.pubsub();
            let count = services
                .iter()
                .filter(|(service, _)| !conversations.is_federated(service))
                .flat_map(|(_, nodes)| nodes.values())
                .flat_map(|node| &node.subscriptions)
                .filter(|sub| sub.jid.to_bare().as_str() == subscriber)
                .count();
            Ok(count)
        })
    }

    fn apply<'a>(&'a self, writes: &'a [PubsubWrite]) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut services = self.pubsub();
            // The batch works on copies of the nodes it touches (payloads are shared, not
            // copied), which replace the originals only once every write has succeeded.
            let mut touched: BTreeMap<(&str, &str), Option<StoredNode>> = BTreeMap::new();
            for write in writes {
                let (service, node) = (write.service.as_str(), node_of(&write.op));
                let slot = touched
                    .entry((service, node))
                    .or_insert_with(|| services.get(service).and_then(|n| n.get(node)).cloned());
                apply_write(slot, write)?;
            }
            for ((service, node), stored) in touched {
                match (stored, services.entry(service.to_owned())) {
                    (Some(stored), entry) => {
                        entry.or_default().insert(node.to_owned(), stored);
                    }
                    (None, Entry::Occupied(mut nodes)) => {
                        nodes.get_mut().remove(node);
                        if nodes.get().is_empty() {
                            nodes.remove();
                        }
                    }
                    (None, Entry::Vacant(_)) => {}
                }
            }
            Ok(())
        })
    }
}

/// Applies one write to the node it concerns (`None`: not stored).
fn apply_write(slot: &mut Option<StoredNode>, write: &PubsubWrite) -> Result<(), StorageError> {
    let missing = || StorageError::NodeNotFound {
        service: write.service.clone(),
        node: node_of(&write.op).to_owned(),
    };
    match &write.op {
        StoreOp::NodeCreated { node, config } => {
            *slot = Some(StoredNode {
                id: node.clone(),
                config: config.clone(),
                affiliations: Vec::new(),
                subscriptions: Vec::new(),
                items: Vec::new(),
            });
        }
        StoreOp::NodeConfigured { config, .. } => {
            slot.as_mut().ok_or_else(missing)?.config = config.clone();
        }
        StoreOp::NodeDeleted { .. } => *slot = None,
        StoreOp::AffiliationSet {
            jid,
            affiliation: Affiliation::None,
            ..
        } => {
            if let Some(stored) = slot {
                stored.affiliations.retain(|(j, _)| j != jid);
            }
        }
        StoreOp::AffiliationSet {
            jid, affiliation, ..
        } => {
            let affiliations = &mut slot.as_mut().ok_or_else(missing)?.affiliations;
            match affiliations.binary_search_by(|(j, _)| j.as_str().cmp(jid.as_str())) {
                Ok(at) => affiliations[at].1 = *affiliation,
                Err(at) => affiliations.insert(at, (jid.clone(), *affiliation)),
            }
        }
        StoreOp::SubscriptionSet { subscription, .. } => {
            let subscriptions = &mut slot.as_mut().ok_or_else(missing)?.subscriptions;
            match subscriptions.binary_search_by(|s| s.subid.cmp(&subscription.subid)) {
                Ok(at) => subscriptions[at] = subscription.clone(),
                Err(at) => subscriptions.insert(at, subscription.clone()),
            }
        }
        StoreOp::SubscriptionRemoved { subid, .. } => {
            if let Some(stored) = slot {
                stored.subscriptions.retain(|s| s.subid != *subid);
            }
        }
        StoreOp::ItemStored { item, .. } => {
            let items = &mut slot.as_mut().ok_or_else(missing)?.items;
            // Same precision as the SQLite backend, so that both load the same items.
            let published = from_micros(to_micros(item.published)?)?;
            items.retain(|i| i.id != item.id);
            items.push(Item {
                published,
                ..item.clone()
            });
        }
        StoreOp::ItemRemoved { id, .. } => {
            if let Some(stored) = slot {
                stored.items.retain(|i| i.id != *id);
            }
        }
        StoreOp::ItemsPurged { .. } => {
            if let Some(stored) = slot {
                stored.items.clear();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::pubsub as contract;

    #[tokio::test]
    async fn matches_the_engine() {
        contract::pubsub_matches_engine(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn write_semantics() {
        contract::pubsub_write_semantics(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn node_moves() {
        contract::pubsub_node_moves(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn conversations_counted() {
        contract::pubsub_conversations_counted(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn account_deletion_forgets_pubsub() {
        let store = MemoryStore::new();
        contract::account_deletion_forgets_pubsub(&store, &store).await;
    }

    #[tokio::test]
    async fn batch_is_atomic() {
        contract::pubsub_batch_is_atomic(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn time_precision() {
        contract::pubsub_time_precision(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn node_directory() {
        contract::pubsub_node_directory(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn items_paged() {
        contract::pubsub_items_paged(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn items_trimmed() {
        contract::pubsub_items_trimmed(&MemoryStore::new()).await;
    }
}
