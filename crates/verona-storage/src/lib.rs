//! Storage for Verona: the traits the server consumes, and their backends.
//!
//! Backends: [`MemoryStore`] (tests, ephemeral servers) and [`SqliteStore`]
//! (the embedded default). The traits use boxed futures so the server can hold
//! them as `Arc<dyn …>` and pick the backend from configuration.

mod memory;
mod offline;
mod pubsub;
mod sqlite;

#[cfg(test)]
mod contract;

use std::future::Future;
use std::pin::Pin;

pub use memory::MemoryStore;
pub use offline::{Held, Kept, OfflineStore, ToKeep};
pub use pubsub::{
    Bounds, COUNTED_AT_MOST, Conversations, FoundItem, HeldAffiliation, HeldSubscription,
    ItemsPage, ItemsQuery, NodeEnd, NodeListing, PubsubStore, PubsubWrite, page,
};
pub use sqlite::SqliteStore;
pub use verona_auth::Credentials;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("account already exists")]
    AlreadyExists,
    #[error("no such account")]
    NotFound,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database's schema is not the one this build migrates to, and it was opened not to
    /// change it.
    #[error("the database schema is not this build's: {0}")]
    Schema(String),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A pubsub write adds to or configures a node that is not stored: the writes are out of
    /// step with the engine.
    #[error("no stored pubsub node {node:?} in service {service:?}")]
    NodeNotFound { service: String, node: String },
    /// An item id a query pages from is not among the items it reads.
    #[error("no item {0:?} among those asked for")]
    UnknownItem(String),
    /// A value the store cannot represent (e.g. a time beyond ±292,000 years of 1970).
    #[error("value cannot be stored: {0}")]
    Unrepresentable(String),
    /// A stored value that cannot be represented in memory (e.g. a negative
    /// iteration count written by something other than Verona).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A query would read more of the store than one request may make it read.
    #[error("the query reads too much")]
    TooCostly,
    /// The store closed before the write was committed.
    #[error("the store is closed")]
    Closed,
}

/// Accounts and their SCRAM credentials, keyed by normalised bare JID string
/// (`"juliet@capulet.lit"`). The caller normalises; stores compare bytes.
pub trait AccountStore: Send + Sync {
    /// Fails with [`StorageError::AlreadyExists`] if the JID is taken.
    fn create_account<'a>(
        &'a self,
        jid: &'a str,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// `None` if there is no such account.
    fn credentials<'a>(
        &'a self,
        jid: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credentials>, StorageError>>;

    /// Replaces the credentials (password change). Fails with
    /// [`StorageError::NotFound`] if there is no such account.
    fn set_credentials<'a>(
        &'a self,
        jid: &'a str,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// Fails with [`StorageError::NotFound`] if there is no such account. In the same
    /// transaction, each of `ends` (nodes of the account that outlive it elsewhere, or go with
    /// it: its conversations) is moved or deleted, so that a crash leaves the deletion whole
    /// or not begun.
    fn delete_account<'a>(
        &'a self,
        jid: &'a str,
        ends: &'a [NodeEnd],
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// All account JIDs, sorted.
    fn list_accounts(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>>;

    /// Flushes and closes the store for graceful shutdown. Idempotent; later
    /// calls to other methods may fail.
    fn close(&self) -> BoxFuture<'_, ()>;
}
