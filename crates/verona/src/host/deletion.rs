//! A deleted account leaves nothing behind in memory either (issue #11 H3): each shard drops
//! its PEP service and conversations and ends what it held on the resident services, with
//! writes storage still takes, so whoever registers the name next starts empty. Storage
//! deletes the account only after every shard has, and until then the shards load and change
//! nothing of it ([`ServicesTask::refused_while_deleting`]): no write reaches a node the
//! deletion removes or moves (a message to a conversation being retired, to a room of the
//! account's), which would fail its commit.

use super::*;

impl ServicesTask {
    /// Before an account is deleted, each relation it has ends as removing the contact from
    /// its roster would end it (RFC 6121 §2.5.2; Prosody does the same on deletion), so that
    /// contacts here and on other servers hear of it: `unsubscribe` to those it follows or
    /// asked to, `unsubscribed` to those who follow it or wait for its approval. Each goes as
    /// a request to the shard of the presence node it acts on, which makes that node resident
    /// first (storage would not have it after the deletion).
    pub(super) fn end_relations(&mut self, account: &BareJid) {
        let mut ends: Vec<(BareJid, SubscriptionKind)> = Vec::new();
        for entry in self.presence.roster(account) {
            if entry.to || entry.ask {
                ends.push((entry.contact.clone(), SubscriptionKind::Unsubscribe));
            }
            if entry.from {
                ends.push((entry.contact, SubscriptionKind::Unsubscribed));
            }
        }
        ends.extend(
            self.presence
                .askers(account)
                .map(|asker| (asker.clone(), SubscriptionKind::Unsubscribed)),
        );
        for (contact, kind) in ends {
            let owner = kind.owner(account, &contact);
            let shard = self.shard_of(owner.as_str());
            let request = Request::Subscription {
                from: account.clone(),
                contact,
                kind,
                extensions: Vec::new(),
            };
            self.send_to(shard, request, Committed::Always);
        }
    }

    pub(super) fn forget_account(&mut self, account: &BareJid, done: &mut Vec<Done>) {
        self.deleting.insert(account.clone());
        // Its sessions end here as a stream's end ends them, while its contacts and rooms still
        // know it: contacts see it go offline (RFC 6121 §4.5.2) and occupants see it leave
        // (XEP-0045 §7.14), which forgetting it would not tell them. Its streams close after
        // this, and their own ends find nothing left to do.
        for (session, _) in self.router.resources_of(account) {
            self.session_ended(&Jid::from(session), done);
        }
        self.forget_on_services(account, done);
        if self.accounts.contains_key(account) {
            self.forgotten.push(account.clone());
        }
        // Its conversations leave memory, and stay out until storage has retired or deleted
        // them with the account (`mam::conversation_ends`): whoever takes the name next
        // starts new ones.
        self.conversations.retain(|node, _| {
            eventing::chat::parties(node)
                .is_none_or(|(low, high)| low != *account && high != *account)
        });
    }

    /// What the resident services hold of `account` ends, its own service too (so that its
    /// contacts' rosters hear the relations end; the emptied service leaves memory after the
    /// batch, [`ServicesTask::drop_forgotten`]), and the rooms it alone owned close.
    fn forget_on_services(&mut self, account: &BareJid, done: &mut Vec<Done>) {
        let mut origins: Vec<Origin> = self.accounts.keys().cloned().map(Origin::Account).collect();
        origins.extend(self.domain.as_ref().map(|_| Origin::Domain));
        origins.extend(self.rooms.keys().cloned().map(Origin::Room));
        for origin in origins {
            let leaving = match &origin {
                Origin::Room(node) => self.in_room(node),
                _ => Vec::new(),
            };
            let Some(hosted) = self.hosted_mut(&origin) else {
                continue;
            };
            let outcome = hosted.service.forget(account);
            if outcome.effects.is_empty() {
                continue;
            }
            let refresh = touches_presence_subscriptions(&outcome.effects);
            let room_gone = match &origin {
                Origin::Room(node) => hosted.service.node_config(node).is_none().then_some(node),
                _ => None,
            };
            let room_gone = room_gone.cloned();
            done.push(Done::new(origin.clone(), outcome.effects, outcome.undo));
            if let Some(node) = room_gone {
                self.announce_gone(&node, &leaving, None, done);
            }
            if refresh {
                self.refresh_presence(&origin);
            }
        }
        self.forget_in_rooms(account, done);
    }

    /// Services loaded while an account is being deleted (a room it owns, a contact's
    /// service holding its subscription) come from storage that still has it: it is
    /// forgotten there too, before the batch's requests see them.
    pub(super) fn forget_deleting(&mut self, done: &mut Vec<Done>) {
        let deleting: Vec<BareJid> = self.deleting.iter().cloned().collect();
        for account in deleting {
            self.forget_on_services(&account, done);
        }
    }

    /// Whether a request is dropped because it comes from, or keeps a message for, an
    /// account being deleted: its sessions are closing, and what it would write storage is
    /// about to remove.
    pub(super) fn refused_while_deleting(&self, request: &Request) -> bool {
        if self.deleting.is_empty() {
            return false;
        }
        let account = match request {
            Request::Stanza { from, .. }
            | Request::Presence { from, .. }
            | Request::Room { from, .. }
            | Request::Roster { from, .. }
            | Request::Blocking { from, .. } => crate::jids::Bare::bare(from),
            Request::Chat { from, .. } => from.to_bare(),
            Request::Subscription { from, .. } => from.clone(),
            Request::Offline { account, .. } => account.clone(),
            _ => return false,
        };
        self.deleting.contains(&account)
    }

    /// What resident rooms' configurations say of a deleted account (an admin, a registered
    /// nick) goes too, as storage has dropped it for the rooms not in memory: the next owner
    /// of the name is nobody in those rooms.
    fn forget_in_rooms(&mut self, account: &BareJid, done: &mut Vec<Done>) {
        for (node, hosted) in &mut self.rooms {
            let Some(config) = hosted.service.node_config(node) else {
                continue;
            };
            let admins = eventing::groupchat::admins(config);
            let mut fields = Vec::new();
            if admins.iter().any(|admin| admin == account.as_str()) {
                let kept: BTreeSet<BareJid> = admins
                    .iter()
                    .filter(|admin| *admin != account.as_str())
                    .filter_map(|admin| crate::jids::parse_bare(admin).ok())
                    .collect();
                fields.push(eventing::groupchat::admins_field(&kept));
            }
            if eventing::groupchat::registered_nick(config, account).is_some() {
                fields.push(eventing::groupchat::unregister_nick(config, account));
            }
            if eventing::groupchat::ban_reason(config, account).is_some() {
                fields.push(eventing::groupchat::ban_reason_field(config, account, None));
            }
            if fields.is_empty() {
                continue;
            }
            let actor = hosted.jid.clone();
            match hosted
                .service
                .configure(&self.presence, &actor, node, &fields)
            {
                Ok(outcome) => done.push(Done::new(
                    Origin::Room(node.clone()),
                    outcome.effects,
                    outcome.undo,
                )),
                Err(e) => tracing::error!(node, %account, "forgetting a deleted account: {e}"),
            }
        }
    }

    /// Deleted accounts' services leave memory: a new account of the same name is loaded
    /// afresh, with its own `presence` and `roster` nodes.
    pub(super) fn drop_forgotten(&mut self) {
        for account in std::mem::take(&mut self.forgotten) {
            self.accounts.remove(&account);
            self.last_seen.remove(&account);
            self.presence.forget(&account, |_| false);
            self.temporary.remove(&account);
            self.router.set_blocked(&account, Vec::new());
        }
    }
}
