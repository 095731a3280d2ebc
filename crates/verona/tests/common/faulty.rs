//! A store that fails on demand: the real SQLite store underneath, with writes that can be
//! made to fail (as a full disk would) or to panic (as a bug in a backend would), so that
//! rollback and supervision are testable end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use verona::Stores;
use verona_pubsub::StoredNode;
use verona_storage::{
    AccountStore, BoxFuture, Conversations, Credentials, HeldAffiliation, HeldSubscription,
    ItemsPage, ItemsQuery, NodeListing, PubsubStore, PubsubWrite, SqliteStore, StorageError,
};

/// What pubsub writes do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Writes {
    Succeed,
    Fail,
    Panic,
    /// Succeed after a pause (a slow disk): each batch of a shard takes at least that long.
    Slow,
}

/// Where an account's deletion pauses ([`FaultyStore::pause_deletions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pause {
    /// Once storage has deleted the account.
    OnceDeleted,
    /// Before storage retires or deletes the account's conversations: in the deletion's
    /// transaction (its `ends`), or apart, a retired one moved by [`PubsubStore::move_node`].
    BeforeConversationsEnd,
}

/// How long a [`Writes::Slow`] write takes.
pub const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(50);

pub struct FaultyStore {
    inner: Arc<SqliteStore>,
    writes: AtomicU8,
    /// Writes to this service fail (a node storage no longer has), whatever `writes` says.
    failing: std::sync::Mutex<Option<String>>,
    /// Where an account's deletion waits until `release`d, having told `paused`: requests can
    /// be sent meanwhile.
    pausing: std::sync::Mutex<Option<Pause>>,
    pub paused: tokio::sync::Notify,
    pub release: tokio::sync::Notify,
    /// While true, pubsub writes wait (a shard's commit stays open), having told `held`:
    /// the requests sent meanwhile make the shard's next batch together.
    holding: tokio::sync::watch::Sender<bool>,
    pub held: tokio::sync::Notify,
}

impl FaultyStore {
    pub fn new(inner: Arc<SqliteStore>) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            inner,
            writes: AtomicU8::new(Writes::Succeed as u8),
            failing: std::sync::Mutex::new(None),
            pausing: std::sync::Mutex::new(None),
            paused: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
            holding: tokio::sync::watch::Sender::new(false),
            held: tokio::sync::Notify::new(),
        })
    }

    pub fn set(&self, writes: Writes) {
        self.writes.store(writes as u8, Ordering::SeqCst);
    }

    /// Makes every write to `service` fail (`None`: none).
    pub fn fail_service(&self, service: Option<&str>) {
        *self.failing.lock().unwrap() = service.map(str::to_owned);
    }

    /// Makes the next account deletions pause there ([`FaultyStore::paused`],
    /// [`FaultyStore::release`]).
    pub fn pause_deletions(&self, at: Pause) {
        *self.pausing.lock().unwrap() = Some(at);
    }

    async fn pause_if(&self, at: Pause) {
        if *self.pausing.lock().unwrap() == Some(at) {
            let released = self.release.notified();
            self.paused.notify_one();
            released.await;
        }
    }

    /// Makes pubsub writes wait until `hold_writes(false)` ([`FaultyStore::held`]).
    pub fn hold_writes(&self, hold: bool) {
        self.holding.send_replace(hold);
    }

    pub fn stores(self: &Arc<Self>) -> Stores {
        Stores {
            accounts: self.clone(),
            pubsub: self.clone(),
            offline: self.inner.clone(),
        }
    }
}

impl PubsubStore for FaultyStore {
    fn load_service<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredNode>, StorageError>> {
        self.inner.load_service(service)
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        self.inner.services()
    }

    fn node_configs<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeListing>, StorageError>> {
        self.inner.node_configs(prefix)
    }

    fn owned_count<'a>(
        &'a self,
        owner: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        self.inner.owned_count(owner, prefix)
    }

    fn affiliations_of<'a>(
        &'a self,
        jid: &'a str,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<HeldAffiliation>, StorageError>> {
        self.inner.affiliations_of(jid, prefix, max)
    }

    fn subscriptions_of<'a>(
        &'a self,
        subscriber: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HeldSubscription>, StorageError>> {
        self.inner.subscriptions_of(subscriber)
    }

    fn load_service_recent<'a>(
        &'a self,
        service: &'a str,
        items: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredNode>, StorageError>> {
        self.inner.load_service_recent(service, items)
    }

    fn trim_items<'a>(
        &'a self,
        service: &'a str,
        keep: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        self.inner.trim_items(service, keep, max_bytes)
    }

    fn move_node<'a>(
        &'a self,
        service: &'a str,
        node: &'a str,
        to_service: &'a str,
        to_node: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            self.pause_if(Pause::BeforeConversationsEnd).await;
            self.inner
                .move_node(service, node, to_service, to_node)
                .await
        })
    }

    fn items_page<'a>(
        &'a self,
        query: &'a ItemsQuery,
    ) -> BoxFuture<'a, Result<ItemsPage, StorageError>> {
        self.inner.items_page(query)
    }

    fn subscription_count<'a>(
        &'a self,
        subscriber: &'a str,
        conversations: Conversations<'a>,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        self.inner.subscription_count(subscriber, conversations)
    }

    fn apply<'a>(&'a self, writes: &'a [PubsubWrite]) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            if *self.holding.borrow() {
                let mut holding = self.holding.subscribe();
                self.held.notify_one();
                holding.wait_for(|hold| !*hold).await.ok();
            }
            self.apply_now(writes).await
        })
    }
}

impl FaultyStore {
    fn apply_now<'a>(
        &'a self,
        writes: &'a [PubsubWrite],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let failing = self.failing.lock().unwrap().clone();
        if writes.iter().any(|w| Some(&w.service) == failing.as_ref()) {
            return Box::pin(async {
                Err(StorageError::NodeNotFound {
                    service: failing.unwrap_or_default(),
                    node: "injected".to_owned(),
                })
            });
        }
        match self.writes.load(Ordering::SeqCst) {
            w if w == Writes::Fail as u8 => Box::pin(async {
                Err(StorageError::Io(std::io::Error::other(
                    "injected: disk full",
                )))
            }),
            w if w == Writes::Panic as u8 => panic!("injected: a bug in the store"),
            w if w == Writes::Slow as u8 => Box::pin(async move {
                tokio::time::sleep(SLOW_WRITE).await;
                self.inner.apply(writes).await
            }),
            _ => self.inner.apply(writes),
        }
    }
}

impl AccountStore for FaultyStore {
    fn create_account<'a>(
        &'a self,
        jid: &'a str,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.inner.create_account(jid, creds)
    }

    fn credentials<'a>(
        &'a self,
        jid: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credentials>, StorageError>> {
        self.inner.credentials(jid)
    }

    fn set_credentials<'a>(
        &'a self,
        jid: &'a str,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.inner.set_credentials(jid, creds)
    }

    fn delete_account<'a>(
        &'a self,
        jid: &'a str,
        ends: &'a [verona_storage::NodeEnd],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            if !ends.is_empty() {
                self.pause_if(Pause::BeforeConversationsEnd).await;
            }
            self.inner.delete_account(jid, ends).await?;
            self.pause_if(Pause::OnceDeleted).await;
            Ok(())
        })
    }

    fn list_accounts(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        self.inner.list_accounts()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
}
