//! A decline (XEP-0045 §7.8.2) is passed on only to someone who invited the decliner to that
//! room, once: otherwise anyone could make a room send a message to any account it names.
//! Invitations are remembered for a while, within a bound on how many. An invitation sent to
//! another server's user is also remembered by the id the room gave it, so that its bounce
//! (that server's error, or our federation's when that server cannot be reached) reaches the
//! inviter.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use jid::{BareJid, FullJid, Jid};

/// How long an invitation may be declined: an invitee may be away for days (it is kept for
/// them offline).
const OPEN_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long an invitation sent to another server may bounce: at once, or when the federation
/// gives up reaching that server, well within this.
const BOUNCES_WITHIN: Duration = Duration::from_secs(3600);
/// Bound on the invitations remembered by a shard, each way; past it, the oldest is forgotten.
const MAX_OPEN: usize = 65_536;

#[derive(Default)]
pub(in crate::host) struct Invitations {
    /// When each (room node, invitee, inviter) invitation was made.
    open: HashMap<(String, BareJid, BareJid), Instant>,
    /// Invitations sent to other servers' users, by the id the room gave the message.
    sent_away: HashMap<String, SentAway>,
}

/// An invitation sent to another server's user, as its bounce is told to the inviter.
pub(in crate::host) struct SentAway {
    pub node: String,
    /// As the inviter wrote it.
    pub invitee: Jid,
    /// The session that invited, and the id of its message.
    pub inviter: FullJid,
    pub id: Option<String>,
    at: Instant,
}

impl Invitations {
    /// `inviter` invited `invitee` to the room.
    pub fn invited(&mut self, node: &str, invitee: &BareJid, inviter: &BareJid, now: Instant) {
        let key = (node.to_owned(), invitee.clone(), inviter.clone());
        make_way(&mut self.open, &key, |at| now < *at + OPEN_FOR, |at| *at);
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

    /// The invitation of `inviter`'s message `id` to `invitee` on another server went out in
    /// a message the room gave the id `sent_as`.
    pub fn sent_away(
        &mut self,
        sent_as: String,
        node: &str,
        invitee: Jid,
        (inviter, id): (FullJid, Option<String>),
        now: Instant,
    ) {
        let fresh = |sent: &SentAway| now < sent.at + BOUNCES_WITHIN;
        make_way(&mut self.sent_away, &sent_as, fresh, |sent| sent.at);
        let sent = SentAway {
            node: node.to_owned(),
            invitee,
            inviter,
            id,
            at: now,
        };
        self.sent_away.insert(sent_as, sent);
    }

    /// An error from `from` answering the room's message `id` in room `node`: the invitation
    /// it bounced, if it is one sent to `from`'s account (forgotten by this, and no longer
    /// open to a decline).
    pub fn bounced(&mut self, node: &str, id: &str, from: &Jid, now: Instant) -> Option<SentAway> {
        let sent = self.sent_away.get(id)?;
        if sent.node != node || sent.invitee.to_bare() != from.to_bare() {
            return None;
        }
        let sent = self.sent_away.remove(id)?;
        let key = (node.to_owned(), from.to_bare(), sent.inviter.to_bare());
        self.open.remove(&key);
        (now < sent.at + BOUNCES_WITHIN).then_some(sent)
    }
}

/// Room in `map` for `key`: when the map is full and `key` not in it, what is no longer
/// `fresh` goes, and if that is not enough the oldest entry.
fn make_way<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    key: &K,
    fresh: impl Fn(&V) -> bool,
    at: impl Fn(&V) -> Instant,
) {
    if map.len() < MAX_OPEN || map.contains_key(key) {
        return;
    }
    map.retain(|_, value| fresh(value));
    if map.len() >= MAX_OPEN {
        let oldest = map.iter().min_by_key(|(_, value)| at(value));
        if let Some(oldest) = oldest.map(|(key, _)| key.clone()) {
            map.remove(&oldest);
        }
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
    fn a_bounce_answers_one_invitation_sent_away_once() {
        let mut invitations = Invitations::default();
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let session = juliet.with_resource_str("balcony").unwrap();
        let romeo = Jid::new("romeo@montague.lit").unwrap();
        let start = Instant::now();
        invitations.invited("crypt", &romeo.to_bare(), &juliet, start);
        let inviter = (session.clone(), Some("i1".to_owned()));
        invitations.sent_away("x1".into(), "crypt", romeo.clone(), inviter, start);
        let tybalt = Jid::new("tybalt@montague.lit").unwrap();
        // Not another room's, not another account's, not another message's.
        assert!(invitations.bounced("garden", "x1", &romeo, start).is_none());
        assert!(invitations.bounced("crypt", "x1", &tybalt, start).is_none());
        assert!(invitations.bounced("crypt", "x2", &romeo, start).is_none());
        let full = Jid::new("romeo@montague.lit/orchard").unwrap();
        let bounced = invitations.bounced("crypt", "x1", &full, start).unwrap();
        assert_eq!(
            (bounced.inviter, bounced.id),
            (session.clone(), Some("i1".into()))
        );
        assert!(invitations.bounced("crypt", "x1", &romeo, start).is_none());
        // A bounced invitation is not declined.
        assert!(!invitations.declined("crypt", &romeo.to_bare(), &juliet, start));
        let inviter = (session, None);
        invitations.sent_away("x3".into(), "crypt", romeo.clone(), inviter, start);
        let late = start + BOUNCES_WITHIN;
        assert!(invitations.bounced("crypt", "x3", &romeo, late).is_none());
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
