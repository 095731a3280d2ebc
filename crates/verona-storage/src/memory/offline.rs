//! [`OfflineStore`] for [`MemoryStore`].

use std::collections::{BTreeMap, VecDeque};

use super::MemoryStore;
use crate::{BoxFuture, Held, Kept, OfflineStore, StorageError, ToKeep};

/// Every account's queue, and the next `seq`.
#[derive(Debug, Default)]
pub(super) struct Queues {
    next: i64,
    queues: BTreeMap<String, VecDeque<Kept>>,
}

impl Queues {
    pub(super) fn forget(&mut self, account: &str) {
        self.queues.remove(account);
    }
}

impl OfflineStore for MemoryStore {
    fn keep<'a>(
        &'a self,
        account: &'a str,
        stanzas: &'a [ToKeep],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut offline = self.offline();
            let Queues { next, queues } = &mut *offline;
            let queue = queues.entry(account.to_owned()).or_default();
            for kept in stanzas {
                *next += 1;
                queue.push_back(Kept {
                    seq: *next,
                    stanza: kept.stanza.clone(),
                    at: kept.at,
                    origin: kept.origin.clone(),
                });
            }
            Ok(())
        })
    }

    fn kept<'a>(
        &'a self,
        account: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Kept>, StorageError>> {
        Box::pin(async move {
            Ok(self
                .offline()
                .queues
                .get(account)
                .map(|queue| queue.iter().take(max).cloned().collect())
                .unwrap_or_default())
        })
    }

    fn held<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Vec<Held>, StorageError>> {
        Box::pin(async move {
            let mut held: BTreeMap<&str, Held> = BTreeMap::new();
            let offline = self.offline();
            for kept in offline.queues.get(account).into_iter().flatten() {
                let origin = held.entry(kept.origin.as_str()).or_insert_with(|| Held {
                    origin: kept.origin.clone(),
                    ..Held::default()
                });
                origin.messages += 1;
                origin.bytes += kept.stanza.len();
            }
            Ok(held.into_values().collect())
        })
    }

    fn accounts_with_kept(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        Box::pin(async move { Ok(self.offline().queues.keys().cloned().collect()) })
    }

    fn delivered<'a>(
        &'a self,
        account: &'a str,
        through: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut offline = self.offline();
            if let Some(queue) = offline.queues.get_mut(account) {
                queue.retain(|kept| kept.seq > through);
                if queue.is_empty() {
                    offline.queues.remove(account);
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn satisfies_the_offline_contract() {
        crate::contract::offline_store(&MemoryStore::new()).await;
    }
}
