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

/// The system clock, and identifiers that grow with time: 14 hex digits of microseconds since
/// 1970 (never less than the previous id's plus one, so a clock stepping back keeps the order),
/// then 10 hex digits of SipHash keyed by the process's random `RandomState` over a counter (not
/// for cryptographic use). 24 digits, which a [`crate::SubId`] holds without an allocation.
///
/// Why time first: a node's items are indexed by id in storage, and random ids put each new
/// archived message on a random page of that index, so a commit's writes grew with the size
/// of the archive (docs/benchmarks.md, "Item ids in time order").
#[derive(Debug, Default)]
pub struct SystemEnvironment {
    keys: RandomState,
    counter: u64,
    last_micros: u64,
}

/// 14 hex digits of microseconds last until the year 2541.
const MICROS_MASK: u64 = (1 << 56) - 1;

impl Environment for SystemEnvironment {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn new_id(&mut self) -> String {
        let micros = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
            });
        self.last_micros = micros.max(self.last_micros + 1) & MICROS_MASK;
        self.counter = self.counter.wrapping_add(1);
        let noise = self.keys.hash_one(self.counter) & ((1 << 40) - 1);
        format!("{:014x}{noise:010x}", self.last_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_24_hex_digits_in_increasing_order() {
        let mut env = SystemEnvironment::default();
        let ids: Vec<String> = (0..1_000).map(|_| env.new_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 24, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn a_clock_behind_the_last_id_still_gives_a_larger_one() {
        let mut env = SystemEnvironment {
            last_micros: MICROS_MASK - 10,
            ..SystemEnvironment::default()
        };
        let first = env.new_id();
        let second = env.new_id();
        assert!(
            first.starts_with(&format!("{:014x}", MICROS_MASK - 9)),
            "{first}"
        );
        assert!(first < second, "{first} then {second}");
    }

    #[test]
    fn ids_of_one_microsecond_differ_in_their_last_digits() {
        let mut one = SystemEnvironment::default();
        let mut other = SystemEnvironment::default();
        one.last_micros = u64::MAX >> 9;
        other.last_micros = one.last_micros;
        assert_ne!(one.new_id(), other.new_id());
    }
}
