//! Messages kept for an account that had no available session (XEP-0160), delivered in order
//! at its next available presence.

use std::time::SystemTime;

use crate::{BoxFuture, StorageError};

/// One kept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Its place in the account's queue: later messages have larger ones.
    pub seq: i64,
    /// The stanza as it is to be delivered (serialized XML).
    pub stanza: String,
    /// When it was kept (its XEP-0203 delay).
    pub at: SystemTime,
    /// Who it is from, as the server counts the queue's shares and applies the account's
    /// blocklist at delivery: a sender's or a publisher's bare JID (empty: unknown).
    pub origin: String,
}

/// A message to keep: the stanza, when it was kept, and its origin (as in [`Kept`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToKeep {
    pub stanza: String,
    pub at: SystemTime,
    pub origin: String,
}

/// What one origin's messages take of an account's queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub origin: String,
    pub messages: usize,
    /// The stanzas' lengths in bytes, summed.
    pub bytes: usize,
}

/// Each account's queue of kept messages, keyed by normalised bare JID string. Deleting an
/// account ([`crate::AccountStore::delete_account`]) empties its queue.
pub trait OfflineStore: Send + Sync {
    /// Appends `stanzas` (with when each was kept) to the end of `account`'s queue, in order,
    /// all or nothing.
    fn keep<'a>(
        &'a self,
        account: &'a str,
        stanzas: &'a [ToKeep],
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// The oldest `max` messages of `account`'s queue, oldest first.
    fn kept<'a>(
        &'a self,
        account: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Kept>, StorageError>>;

    /// What `account`'s queue holds, by origin (from an index, for its bounds), in no order.
    fn held<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Vec<Held>, StorageError>>;

    /// Every account whose queue holds a message (read once at start: the server then knows
    /// which accounts to look for kept messages for, as it keeps them).
    fn accounts_with_kept(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>>;

    /// Removes the messages of `account`'s queue up to `through` (its `seq`), included: they
    /// were delivered.
    fn delivered<'a>(
        &'a self,
        account: &'a str,
        through: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
}
