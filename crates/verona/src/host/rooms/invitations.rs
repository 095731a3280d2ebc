//! A decline (XEP-0045 §7.8.2) is passed on only to someone who invited the decliner to that
//! room, once: otherwise anyone could make a room send a message to any account it names.
//! Invitations are remembered for a while, within a bound on how many.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jid::BareJid;

/// How long an invitation may be declined: an invitee may be away for days (it is kept for
/// them offline).
const OPEN_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// Bound on the invitations remembered by a shard; past it, the oldest is forgotten.
const MAX_OPEN: usize = 65_536;

#[derive(Default)]
pub(in crate::host) struct Invitations {
    /// When each (room node, invitee, inviter) invitation was made.
    open: HashMap<(String, BareJid, BareJid), Instant>,
}

impl Invitations {
    /// `inviter` invited `invitee` to the room.
    pub fn invited(&mut self, node: &str, invitee: &BareJid, inviter: &BareJid, now: Instant) {
        let key = (node.to_owned(), invitee.clone(), inviter.clone());
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(&key) {
            self.open.retain(|_, at| now < *at + OPEN_FOR);
            if self.open.len() >= MAX_OPEN {
                let oldest = self.open.iter().min_by_key(|(_, at)| **at);
                if let Some(oldest) = oldest.map(|(key, _)| key.clone()) {
                    self.open.remove(&oldest);
                }
            }
        }
        self.open.insert(key, now);
    }

    /// `invitee` declines an invitation `inviter` made: whether there was one still open (it
    /// is closed by this).
    pub fn declined(
        &mut self,
        node: &str,
        invitee: &BareJid,
        inviter: &BareJid,
        now: Instant,
    ) -> bool {
        let key = (node.to_owned(), invitee.clone(), inviter.clone());
        self.open.remove(&key).is_some_and(|at| now < at + OPEN_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decline_answers_one_open_invitation_once() {
        let mut invitations = Invitations::default();
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let romeo = BareJid::new("romeo@montague.lit").unwrap();
        let nurse = BareJid::new("nurse@capulet.lit").unwrap();
        let start = Instant::now();
        invitations.invited("crypt", &romeo, &juliet, start);
        // (room, invitee, inviter, when, declined) in turn.
        let cases = [
            ("crypt", &romeo, &nurse, start, false),
            ("garden", &romeo, &juliet, start, false),
            ("crypt", &nurse, &juliet, start, false),
            ("crypt", &romeo, &juliet, start, true),
            ("crypt", &romeo, &juliet, start, false),
        ];
        for (node, invitee, inviter, now, declined) in cases {
            assert_eq!(
                invitations.declined(node, invitee, inviter, now),
                declined,
                "{invitee} declining {inviter}'s invitation to {node}"
            );
        }
        invitations.invited("crypt", &romeo, &juliet, start);
        let late = start + OPEN_FOR;
        assert!(!invitations.declined("crypt", &romeo, &juliet, late));
    }

    #[test]
    fn the_oldest_invitation_goes_when_too_many_are_open() {
        let mut invitations = Invitations::default();
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let start = Instant::now();
        for n in 0..=MAX_OPEN {
            let invitee = BareJid::new(&format!("guest{n}@capulet.lit")).unwrap();
            let at = start + Duration::from_millis(n as u64);
            invitations.invited("hall", &invitee, &juliet, at);
        }
        assert_eq!(invitations.open.len(), MAX_OPEN);
        let now = start + Duration::from_secs(3600);
        let first = BareJid::new("guest0@capulet.lit").unwrap();
        assert!(!invitations.declined("hall", &first, &juliet, now));
        let second = BareJid::new("guest1@capulet.lit").unwrap();
        assert!(invitations.declined("hall", &second, &juliet, now));
    }
}
