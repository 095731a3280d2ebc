//! Room passwords cannot be guessed at the server's speed: wrong ones are counted per room and
//! account, and past a few in a window the account's further tries at that room are refused
//! unchecked until the window ends. Other accounts, and other rooms, are not affected, so
//! nobody can lock others out of a room.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jid::BareJid;

/// Wrong passwords allowed per room and account within [`WINDOW`].
const FREE_GUESSES: u32 = 5;
/// How long wrong passwords are remembered, from the first of them.
const WINDOW: Duration = Duration::from_secs(300);
/// Bound on the (room, account) pairs remembered, so that guessing at many rooms cannot grow
/// memory without end.
const MAX_TRACKED: usize = 65_536;

#[derive(Default)]
pub(in crate::host) struct PasswordGuesses {
    /// Wrong passwords by room node and account: how many, since when.
    wrong: HashMap<(String, BareJid), (u32, Instant)>,
}

impl PasswordGuesses {
    /// Whether `who` may try a password on the room now. While the table is full of guesses
    /// still in their window (someone guessing at scale), tries that could not be counted are
    /// refused rather than let through uncounted.
    pub fn may_try(&self, node: &str, who: &BareJid, now: Instant) -> bool {
        match self.wrong.get(&(node.to_owned(), who.clone())) {
            Some((count, since)) => *count < FREE_GUESSES || now >= *since + WINDOW,
            None => self.wrong.len() < MAX_TRACKED,
        }
    }

    /// `who` gave the room a wrong password.
    pub fn wrong(&mut self, node: &str, who: &BareJid, now: Instant) {
        if self.wrong.len() >= MAX_TRACKED {
            self.wrong.retain(|_, (_, since)| now < *since + WINDOW);
            if self.wrong.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = self
            .wrong
            .entry((node.to_owned(), who.clone()))
            .or_insert((0, now));
        if now >= entry.1 + WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// `who` gave the right one: its count at the room starts over.
    pub fn right(&mut self, node: &str, who: &BareJid) {
        if !self.wrong.is_empty() {
            self.wrong.remove(&(node.to_owned(), who.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_are_limited_per_room_and_account_within_the_window() {
        let mut guesses = PasswordGuesses::default();
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let romeo = BareJid::new("romeo@montague.lit").unwrap();
        let start = Instant::now();
        for n in 0..FREE_GUESSES {
            assert!(guesses.may_try("crypt", &romeo, start), "guess {n}");
            guesses.wrong("crypt", &romeo, start);
        }
        assert!(!guesses.may_try("crypt", &romeo, start + Duration::from_secs(1)));
        assert!(guesses.may_try("crypt", &juliet, start), "another account");
        assert!(guesses.may_try("garden", &romeo, start), "another room");
        let later = start + WINDOW;
        assert!(guesses.may_try("crypt", &romeo, later), "the window ended");
        guesses.wrong("crypt", &romeo, later);
        assert!(
            guesses.may_try("crypt", &romeo, later),
            "counting starts over"
        );
        guesses.right("crypt", &romeo);
        assert!(guesses.wrong.is_empty());
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let mut guesses = PasswordGuesses::default();
        let romeo = BareJid::new("romeo@montague.lit").unwrap();
        let start = Instant::now();
        for n in 0..MAX_TRACKED {
            guesses.wrong(&format!("room{n}"), &romeo, start);
        }
        guesses.wrong("one-more", &romeo, start);
        assert_eq!(guesses.wrong.len(), MAX_TRACKED);
        assert!(
            !guesses.may_try("one-more", &romeo, start),
            "a guess that cannot be counted is refused"
        );
        guesses.wrong("one-more", &romeo, start + WINDOW);
        assert_eq!(guesses.wrong.len(), 1, "the expired ones were forgotten");
    }
}
