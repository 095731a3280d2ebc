mod offline;
mod pubsub;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Mutex, MutexGuard};

use crate::{AccountStore, BoxFuture, Credentials, NodeEnd, StorageError};

/// Volatile store: everything is lost when it is dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // BTreeMap so `list_accounts` comes out sorted for free.
    accounts: Mutex<BTreeMap<String, Credentials>>,
    pubsub: Mutex<pubsub::Services>,
    offline: Mutex<offline::Queues>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn accounts(&self) -> MutexGuard<'_, BTreeMap<String, Credentials>> {
        // Every update is a single map operation, so a panicking holder cannot
        // leave the map half-modified; recover from poisoning.
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn offline(&self) -> MutexGuard<'_, offline::Queues> {
        // Each change is a few plain queue operations: recover from poisoning as for accounts.
        self.offline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pubsub(&self) -> MutexGuard<'_, pubsub::Services> {
        // A batch changes the map only after all its writes succeeded, by plain inserts and
        // removes; recover from poisoning as for accounts.
        self.pubsub.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// The guard is never held across an await (there are none), so the futures
// stay `Send`; the work runs when polled, like a real backend's.
impl AccountStore for MemoryStore {
    fn create_account<'a>(
        &'a self,
        jid: &'a str,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            match self.accounts().entry(jid.to_owned()) {
                Entry::Occupied(_) => Err(StorageError::AlreadyExists),
                Entry::Vacant(slot) => {
                    slot.insert(creds.clone());
                    Ok(())
                }
            }
        })
    }

    fn credentials<'a>(
        &'a self,
        jid: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credentials>, StorageError>> {
        Box::pin(async move { Ok(self.accounts().get(jid).cloned()) })
    }

    fn set_credentials<'a>(
        &'a self,
        jid: &'a str,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut accounts = self.accounts();
            let stored = accounts.get_mut(jid).ok_or(StorageError::NotFound)?;
            *stored = creds.clone();
            Ok(())
        })
    }

    fn delete_account<'a>(
        &'a self,
        jid: &'a str,
        ends: &'a [NodeEnd],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut accounts = self.accounts();
            if !accounts.contains_key(jid) {
                return Err(StorageError::NotFound);
            }
            let mut services = self.pubsub();
            // Checked before anything changes: the deletion is whole or not at all.
            let forgotten = pubsub::forgotten(&services, jid)?;
            accounts.remove(jid);
            *services = forgotten;
            pubsub::end_nodes(&mut services, ends);
            self.offline().forget(jid);
            Ok(())
        })
    }

    fn list_accounts(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        Box::pin(async move { Ok(self.accounts().keys().cloned().collect()) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn satisfies_account_store_contract() {
        crate::contract::account_store(&MemoryStore::new()).await;
    }
}
