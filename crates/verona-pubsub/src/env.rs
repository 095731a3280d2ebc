//! Time and fresh identifiers, injected so that tests are deterministic.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::SystemTime;

/// The engine's source of time and of fresh identifiers (item ids, SubIDs, instant NodeIDs).
///
/// Identifiers need not be globally unique: the engine checks each one against the ids in use
/// where it matters (node, subscriptions) and asks again on a collision.
pub trait Environment: Send {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// A fresh identifier (short, URI- and XML-safe).
    fn new_id(&mut self) -> String;
}

/// The system clock and unpredictable identifiers: 96 bits from SipHash keyed by the
/// process's random `RandomState` over a counter (not for cryptographic use), as 24 hex
/// digits, which a [`crate::SubId`] holds without an allocation.
#[derive(Debug, Default)]
pub struct SystemEnvironment {
    keys: RandomState,
    counter: u64,
}

impl Environment for SystemEnvironment {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn new_id(&mut self) -> String {
        self.counter = self.counter.wrapping_add(1);
        let high = self.keys.hash_one(self.counter);
        let low = self.keys.hash_one(!self.counter);
        format!("{high:016x}{:08x}", low as u32)
    }
}
