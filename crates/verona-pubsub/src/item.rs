//! Items, the per-node item store, and item retrieval (including XEP-0059 paging).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use jid::Jid;

use crate::ItemId;
use crate::derived::Derived;
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
    /// (sequence number, item), oldest first: most nodes hold one item (PEP) or a short
    /// history, where a map's node of eleven slots would cost ten times the item.
    by_seq: VecDeque<(u64, Item)>,
    seq_of: ItemIndex,
    next_seq: u64,
    /// Bytes of the items held: their ids and payloads.
    bytes: usize,
}

/// What an item holds, in bytes: its payload and its id, which a client may make as long as
/// an attribute may be (a quota on payloads alone let ids hold 20 times it).
pub(crate) fn item_len(item: &Item) -> usize {
    item.id.len() + item.payload.as_deref().map_or(0, str::len)
}

/// Nodes with this many items index them by id; below, a scan costs less than the index.
const INDEXED_FROM_ITEMS: usize = 32;

/// Item id → sequence number, once the node holds [`INDEXED_FROM_ITEMS`] items.
type ItemIndex = Derived<HashMap<ItemId, u64>>;

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

    /// Bytes of the items held: their ids and payloads.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn seq_of(&self, id: &str) -> Option<u64> {
        match &self.seq_of.0 {
            Some(index) => index.get(id).copied(),
            None => self
                .by_seq
                .iter()
                .rev()
                .find(|(_, item)| item.id == id)
                .map(|(seq, _)| *seq),
        }
    }

    fn position(&self, seq: u64) -> Result<usize, usize> {
        self.by_seq.binary_search_by_key(&seq, |(seq, _)| *seq)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.seq_of(id).is_some()
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        let at = self.position(self.seq_of(id)?).ok()?;
        Some(&self.by_seq[at].1)
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Item> {
        self.by_seq.iter().map(|(_, item)| item)
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The oldest item's sequence number.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.by_seq.front().map(|(seq, _)| *seq)
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
        if let Some(index) = &mut self.seq_of.0 {
            index.insert(item.id.clone(), seq);
        }
        if self.by_seq.len() == self.by_seq.capacity() && self.by_seq.len() < 4 {
            // A single-item node keeps one slot, not the four a first push reserves.
            self.by_seq.reserve_exact(1);
        }
        self.bytes += item_len(&item);
        match self.position(seq) {
            Ok(at) => {
                self.bytes -= item_len(&self.by_seq[at].1);
                self.by_seq[at].1 = item;
            }
            Err(at) if at == self.by_seq.len() => self.by_seq.push_back((seq, item)),
            Err(at) => self.by_seq.insert(at, (seq, item)),
        }
        if self.seq_of.0.is_none() && self.by_seq.len() >= INDEXED_FROM_ITEMS {
            let index = self
                .by_seq
                .iter()
                .map(|(seq, item)| (item.id.clone(), *seq));
            self.seq_of.0 = Some(index.collect());
        }
    }

    pub fn remove(&mut self, id: &str) -> Option<(u64, Item)> {
        let seq = self.seq_of(id)?;
        self.remove_seq(seq).map(|item| (seq, item))
    }

    pub fn remove_seq(&mut self, seq: u64) -> Option<Item> {
        let at = self.position(seq).ok()?;
        let (_, item) = self.by_seq.remove(at)?;
        if let Some(index) = &mut self.seq_of.0 {
            index.remove(&item.id);
        }
        self.bytes -= item_len(&item);
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
        let newest_first: Vec<&Item> = self.iter().rev().filter(|i| live(i)).collect();
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use jid::Jid;

    use super::{INDEXED_FROM_ITEMS, Item, ItemStore};

    fn item(id: &str) -> Item {
        Item {
            id: id.to_owned(),
            payload: None,
            publisher: Jid::new("juliet@capulet.lit/balcony").unwrap(),
            published: SystemTime::UNIX_EPOCH,
        }
    }

    /// The same answers below and above the line where the store indexes its ids: checked
    /// against a list of (seq, id), oldest first, through publishes, republishes and
    /// retractions that cross the line both ways.
    #[test]
    fn items_answer_alike_with_and_without_the_index() {
        let mut store = ItemStore::default();
        let mut model: Vec<(u64, String)> = Vec::new();
        let mut next = 0;
        let ids = |n: u64| format!("i{}", n * 7 % 45);
        for step in 0..400u64 {
            let id = ids(step);
            if step % 5 == 4 {
                let removed = store.remove(&id).map(|(seq, item)| (seq, item.id));
                let at = model.iter().position(|(_, m)| *m == id);
                assert_eq!(removed, at.map(|at| model.remove(at)), "step {step}");
            } else {
                let (seq, replaced) = store.push(item(&id));
                let at = model.iter().position(|(_, m)| *m == id);
                let expected = at.map(|at| model.remove(at));
                assert_eq!(replaced.map(|(s, item)| (s, item.id)), expected);
                assert_eq!(seq, next);
                next += 1;
                model.push((seq, id));
            }
            if step % 60 == 59 {
                // Back under the line: the oldest leave.
                while model.len() > INDEXED_FROM_ITEMS / 2 {
                    let (seq, id) = model.remove(0);
                    assert_eq!(store.oldest_seq(), Some(seq));
                    assert_eq!(store.remove_seq(seq).map(|item| item.id), Some(id));
                }
            }
            let held: Vec<&str> = store.iter().map(|item| item.id.as_str()).collect();
            let expected: Vec<&str> = model.iter().map(|(_, id)| id.as_str()).collect();
            assert_eq!(held, expected, "step {step}");
            for n in 0..45 {
                let id = format!("i{n}");
                let known = model.iter().any(|(_, m)| *m == id);
                assert_eq!(store.contains(&id), known);
                assert_eq!(
                    store.get(&id).map(|item| item.id.as_str()),
                    known.then_some(&*id)
                );
            }
        }
        assert!(store.seq_of.0.is_some(), "the line was crossed");
    }

    #[test]
    fn an_item_put_back_takes_its_place() {
        let mut store = ItemStore::from_oldest_first([item("a"), item("b"), item("c")]);
        let (seq, b) = store.remove("b").unwrap();
        store.insert_at(seq, b);
        let ids: Vec<&str> = store.iter().map(|item| item.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
