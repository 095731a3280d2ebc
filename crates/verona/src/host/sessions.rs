//! Sessions by account: which sessions of an account are bound, asked for the roster or for
//! the blocklist.

use crate::jids::Bare;
use std::collections::HashMap;

use jid::{BareJid, FullJid};

/// Sessions indexed by account, so that finding an account's sessions does not scan all.
/// An account has few sessions: a list is the cheapest set.
#[derive(Default)]
pub struct Sessions(HashMap<BareJid, Vec<FullJid>>);

impl Sessions {
    /// Adds a session; false if it was there.
    pub fn insert(&mut self, session: &FullJid) -> bool {
        let sessions = self.0.entry(session.bare()).or_default();
        if sessions.contains(session) {
            return false;
        }
        sessions.push(session.clone());
        true
    }

    pub fn remove(&mut self, session: &FullJid) {
        let bare = session.bare();
        if let Some(sessions) = self.0.get_mut(&bare) {
            sessions.retain(|s| s != session);
            if sessions.is_empty() {
                self.0.remove(&bare);
            }
        }
    }

    /// How many accounts have a session in the set.
    pub fn accounts(&self) -> usize {
        self.0.len()
    }

    pub fn of(&self, account: &BareJid) -> impl Iterator<Item = &FullJid> {
        self.0.get(account).into_iter().flatten()
    }
}
