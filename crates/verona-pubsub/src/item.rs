//! Items, the per-node item store, and item retrieval (including XEP-0059 paging).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use jid::Jid;

use crate::ItemId;
use crate::error::PubsubError;

/// A published item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Unique within its node.
    pub id: ItemId,
    /// The serialized payload, opaque to the engine and shared, never copied per recipient.
    /// `None` for an item without payload (notification-only nodes).
    pub payload: Option<Arc<str>>,
    /// Who published it (the full JID of the publishing session). Always recorded, for
    /// `pubsub#itemreply`, XEP-0033 `replyto` and retraction rights; whether to show it is the
    /// protocol layer's decision.
    pub publisher: Jid,
    /// When it was published (for XEP-0203 delay stamps and `pubsub#item_expire`).
    pub published: SystemTime,
}

/// Which items to retrieve. Results are always newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemQuery {
    /// Every item.
    All,
    /// The `n` newest items (`max_items` attribute).
    Latest(usize),
    /// These items, in this order; missing ones are skipped.
    Ids(Vec<ItemId>),
    /// A XEP-0059 page.
    Page(PageRequest),
}

/// A XEP-0059 result set request over the node's items, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// `<max/>`: the page size.
    pub max: usize,
    /// Where the page starts or ends.
    pub position: PagePosition,
}

/// Where a XEP-0059 page lies in the newest-first list of items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagePosition {
    /// The first page (no `<after/>`/`<before/>`).
    First,
    /// `<after>id</after>`: the page following this item (older items).
    After(ItemId),
    /// `<before>id</before>`: the page preceding this item (newer items).
    Before(ItemId),
    /// `<before/>`: the last page (oldest items).
    Last,
    /// `<index>n</index>`: the page starting at this position.
    Index(usize),
}

/// A retrieval result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemsPage {
    /// The items, newest first.
    pub items: Vec<Item>,
    /// How many items the node holds in all (XEP-0059 `<count/>`).
    pub count: usize,
    /// The position of the first returned item in the newest-first list (XEP-0059
    /// `<first index='…'/>`).
    pub first_index: usize,
}

/// The items of one node in publication order. Publishing an existing id moves it to the
/// newest position (XEP-0060 §12.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ItemStore {
    /// Items by publication sequence number; the last entry is the newest.
    by_seq: BTreeMap<u64, Item>,
    seq_of: HashMap<ItemId, u64>,
    next_seq: u64,
}

impl ItemStore {
    /// Builds a store from items in publication order, oldest first.
    pub fn from_oldest_first(items: impl IntoIterator<Item = Item>) -> Self {
        let mut store = ItemStore::default();
        for item in items {
            store.push(item);
        }
        store
    }

    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.seq_of.contains_key(id)
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.seq_of.get(id).and_then(|seq| self.by_seq.get(seq))
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Item> {
        self.by_seq.values()
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The oldest item's sequence number.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.by_seq.keys().next().copied()
    }

    /// Appends `item` as the newest, replacing an item with the same id. Returns the new
    /// sequence number and the replaced item with its old sequence number.
    pub fn push(&mut self, item: Item) -> (u64, Option<(u64, Item)>) {
        let replaced = self.remove(&item.id);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert_at(seq, item);
        (seq, replaced)
    }

    /// Puts `item` back at `seq` (undo).
    pub fn insert_at(&mut self, seq: u64, item: Item) {
        self.seq_of.insert(item.id.clone(), seq);
        self.by_seq.insert(seq, item);
    }

    pub fn remove(&mut self, id: &str) -> Option<(u64, Item)> {
        let seq = self.seq_of.remove(id)?;
        self.by_seq.remove(&seq).map(|item| (seq, item))
    }

    pub fn remove_seq(&mut self, seq: u64) -> Option<Item> {
        let item = self.by_seq.remove(&seq)?;
        self.seq_of.remove(&item.id);
        Some(item)
    }

    pub fn set_next_seq(&mut self, next_seq: u64) {
        self.next_seq = next_seq;
    }

    /// Answers `query` over the items `live` accepts (expiry is decided by the caller).
    pub fn query(
        &self,
        query: &ItemQuery,
        live: impl Fn(&Item) -> bool,
    ) -> Result<ItemsPage, PubsubError> {
        let newest_first: Vec<&Item> = self.by_seq.values().rev().filter(|i| live(i)).collect();
        let count = newest_first.len();
        let position_of = |id: &str| {
            newest_first
                .iter()
                .position(|item| item.id == id)
                .ok_or(PubsubError::ItemNotFound)
        };
        let (start, end) = match query {
            ItemQuery::All => (0, count),
            ItemQuery::Latest(n) => (0, (*n).min(count)),
            ItemQuery::Ids(ids) => {
                let items = ids
                    .iter()
                    .filter_map(|id| self.get(id))
                    .filter(|item| live(item))
                    .cloned()
                    .collect();
                return Ok(ItemsPage {
                    items,
                    count,
                    first_index: 0,
                });
            }
            ItemQuery::Page(PageRequest { max, position }) => match position {
                PagePosition::First => (0, (*max).min(count)),
                PagePosition::After(id) => {
                    let start = position_of(id)? + 1;
                    (start, start.saturating_add(*max).min(count))
                }
                PagePosition::Before(id) => {
                    let end = position_of(id)?;
                    (end.saturating_sub(*max), end)
                }
                PagePosition::Last => (count.saturating_sub(*max), count),
                PagePosition::Index(index) => {
                    let start = (*index).min(count);
                    (start, start.saturating_add(*max).min(count))
                }
            },
        };
        Ok(ItemsPage {
            items: newest_first[start..end]
                .iter()
                .map(|item| (*item).clone())
                .collect(),
            count,
            first_index: start,
        })
    }
}
