//! [`OfflineStore`] for [`MemoryStore`].

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use super::MemoryStore;
use crate::{BoxFuture, Kept, OfflineStore, StorageError};

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
        stanzas: &'a [(String, SystemTime)],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut offline = self.offline();
            let Queues { next, queues } = &mut *offline;
            let queue = queues.entry(account.to_owned()).or_default();
            for (stanza, at) in stanzas {
                *next += 1;
                queue.push_back(Kept {
                    seq: *next,
                    stanza: stanza.clone(),
                    at: *at,
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

    fn kept_count<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<usize, StorageError>> {
        Box::pin(async move { Ok(self.offline().queues.get(account).map_or(0, VecDeque::len)) })
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
