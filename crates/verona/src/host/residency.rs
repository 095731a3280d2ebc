//! Residency on demand (DESIGN §5a): which PEP services a batch needs loaded, loading them,
//! and evicting the least recently used.

use crate::jids::Bare;
use verona_pubsub::StoredNode;
use verona_storage::HeldSubscription;

use super::*;

impl ServicesTask {
    /// Makes resident the PEP services of this shard the batch needs, creating the `presence`
    /// node of those that lack it: the services its requests address, and for a session coming
    /// online the services where its account holds subscriptions (for their last items; for
    /// `+notify` last items, every contact it follows). The other shards load theirs when
    /// the session's `CameOnline` reaches them.
    pub(super) async fn make_resident(&mut self, requests: &[Request], done: &mut Vec<Done>) {
        let accounts: Vec<BareJid> = requests.iter().flat_map(addressed_accounts).collect();
        // A session was just authenticated: its account exists. A local account asking for a
        // remote contact's presence makes that contact's proxy (see `read_account`).
        let bound: HashSet<BareJid> = requests
            .iter()
            .filter_map(|request| match request {
                Request::SessionStarted { session, .. } => Some(session.bare()),
                Request::Subscription {
                    from,
                    contact,
                    kind: SubscriptionKind::Subscribe,
                    ..
                } if !self.is_remote(from) && self.is_remote(contact) => Some(contact.clone()),
                _ => None,
            })
            .collect();
        let wanted = accounts
            .iter()
            .map(|account| (account.clone(), bound.contains(account)))
            .collect();
        self.make_accounts_resident(wanted, done).await;
        let coming: Vec<&FullJid> = requests
            .iter()
            .filter_map(coming_online)
            .filter(|session| {
                self.router
                    .session(session)
                    .is_some_and(|handle| !handle.is_available())
            })
            .collect();
        for session in coming {
            let user = session.bare();
            if self.relations.contains_key(&user) {
                continue;
            }
            let held = match self.stores.pubsub.subscriptions_of(user.as_str()).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::error!(%user, "reading subscriptions failed: {e}");
                    Vec::new()
                }
            };
            let mut owners: Vec<BareJid> = held
                .iter()
                .filter(|held| held.node != PRESENCE_NODE)
                .filter_map(|held| BareJid::new(&held.service).ok())
                .filter(|owner| owner.node().is_some())
                .collect();
            if self.wants_any_notify(session) {
                owners.extend(self.presence.following(&user).cloned());
            }
            owners.sort();
            owners.dedup();
            let wanted = owners.iter().map(|owner| (owner.clone(), false)).collect();
            self.make_accounts_resident(wanted, done).await;
            self.relations.insert(user, owners);
        }
        let now = self.batches;
        for account in &accounts {
            if let Some(hosted) = self.accounts.get_mut(account) {
                hosted.last_used = now;
            }
        }
        let rooms: Vec<String> = requests.iter().filter_map(addressed_room).collect();
        self.make_rooms_resident(&rooms).await;
        for node in &rooms {
            if let Some(hosted) = self.rooms.get_mut(node) {
                hosted.last_used = now;
            }
        }
        self.rooms_touched = rooms;
        // An invitation to a local account that does not exist is refused (`rooms::invite`).
        let invitees: BTreeSet<BareJid> = requests
            .iter()
            .flat_map(invited_accounts)
            .filter(|invitee| !self.is_remote(invitee))
            .collect();
        for invitee in invitees {
            if !account_exists(&self.stores, &invitee).await {
                self.unknown_accounts.insert(invitee);
            }
        }
        let conversations: Vec<String> =
            requests.iter().filter_map(addressed_conversation).collect();
        self.make_conversations_resident(&conversations).await;
        for node in &conversations {
            if let Some(hosted) = self.conversations.get_mut(node) {
                hosted.last_used = now;
            }
        }
    }

    /// Loads the rooms the batch addresses that are this shard's and not resident; a room not
    /// stored becomes resident empty, for a join or a create to make it.
    async fn make_rooms_resident(&mut self, nodes: &[String]) {
        for (node, hosted) in self.load_apart(Apart::Rooms, nodes).await {
            self.rooms.insert(node, hosted);
        }
    }

    /// Loads the conversations the batch addresses that are this shard's and not resident; one
    /// not stored becomes resident empty, for its first message to make it, once both its
    /// parties are known to have an account.
    async fn make_conversations_resident(&mut self, nodes: &[String]) {
        // One with an account being deleted stays in storage, to be retired or deleted with
        // it (`deletion.rs`): that party counts as unknown, as it is about to be.
        let mut wanted = Vec::with_capacity(nodes.len());
        for node in nodes {
            // Reading a node's parties is the cost of a message here; only a deletion needs it.
            let parties = (!self.deleting.is_empty())
                .then(|| eventing::chat::parties(node))
                .flatten();
            match parties.and_then(|(low, high)| {
                [low, high]
                    .into_iter()
                    .find(|party| self.deleting.contains(party))
            }) {
                Some(party) => {
                    self.unknown_accounts.insert(party);
                }
                None => wanted.push(node.clone()),
            }
        }
        for (node, hosted) in self.load_apart(Apart::Conversations, &wanted).await {
            let mut unknown = false;
            if hosted.service.node_config(&node).is_none()
                && let Some((low, high)) = eventing::chat::parties(&node)
            {
                let local_pair = !self.is_remote(&low) && !self.is_remote(&high);
                for party in [low, high] {
                    // Another server's user has no account here; its server answers for it.
                    if !self.is_remote(&party) && !account_exists(&self.stores, &party).await {
                        self.unknown_accounts.insert(party);
                        unknown = true;
                        continue;
                    }
                    // Who starts a conversation with another local account takes a
                    // subscription: counted against its bound like any other (`quota.rs`).
                    if local_pair && !self.subscriptions_held.contains_key(&party) {
                        let held = quota::subscriptions_counted(
                            &self.stores,
                            &self.pubsub_jid,
                            &self.domain_name,
                            &party,
                        )
                        .await;
                        match held {
                            Ok(held) => {
                                self.subscriptions_held.insert(party, held);
                            }
                            Err(e) => tracing::error!(%party, "counting subscriptions: {e}"),
                        }
                    }
                }
            }
            // Not kept resident: the next message to the missing account asks again (it may
            // have been made since), instead of finding the conversation loaded and unchecked.
            if !unknown {
                self.conversations.insert(node, hosted);
            }
        }
    }

    /// Reads the services stored apart (rooms, conversations) named by `nodes` that are this
    /// shard's and not resident, concurrently.
    async fn load_apart(&mut self, apart: Apart, nodes: &[String]) -> Vec<(String, Hosted)> {
        let (jid, config, kind) = match apart {
            Apart::Rooms => (
                self.rooms_jid.clone(),
                self.rooms_config.clone(),
                ServiceKind::Groupchat,
            ),
            Apart::Conversations => (
                Jid::from(self.pubsub_jid.clone()),
                self.conversations_config.clone(),
                ServiceKind::Pubsub,
            ),
        };
        let mut wanted = Vec::new();
        let mut asked = HashSet::new();
        for node in nodes {
            let key = handle::room_key(jid.as_str(), node);
            let resident = match apart {
                Apart::Rooms => self.rooms.contains_key(node),
                Apart::Conversations => self.conversations.contains_key(node),
            };
            if self.shard_of(&key) == self.shard && !resident && asked.insert(node.clone()) {
                wanted.push((node.clone(), key));
            }
        }
        let batches = self.batches;
        let stores = self.stores.clone();
        let mut reads = tokio::task::JoinSet::new();
        for (node, key) in wanted {
            let stores = stores.clone();
            reads.spawn(async move {
                let stored = match apart {
                    Apart::Rooms => stores.pubsub.load_service(&key).await,
                    // The last messages; the archive stays in storage.
                    Apart::Conversations => {
                        let resident = eventing::chat::RESIDENT;
                        stores.pubsub.load_service_recent(&key, resident).await
                    }
                };
                (node, key, stored)
            });
        }
        let mut loaded = Vec::with_capacity(reads.len());
        while let Some(joined) = reads.join_next().await {
            let (node, key, stored) = match joined {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!("reading a service failed: {e}");
                    continue;
                }
            };
            let nodes = match stored {
                Ok(nodes) => nodes,
                Err(e) => {
                    tracing::error!(service = %key, "loading the service failed: {e}");
                    continue;
                }
            };
            let mut service = Service::restore(
                config.clone(),
                Box::new(SystemEnvironment::default()),
                nodes,
            );
            // A room's history stored past today's bounds (kept before the byte bound, or
            // under larger limits) is cut to them, in storage too: what a room holds in
            // memory, and its archive, stay what `[limits] room_history_bytes` says.
            if matches!(apart, Apart::Rooms) {
                let writes: Vec<PubsubWrite> = service
                    .trim_items()
                    .into_iter()
                    .map(|op| PubsubWrite {
                        service: key.clone(),
                        op,
                    })
                    .collect();
                if !writes.is_empty()
                    && let Err(e) = stores.pubsub.apply(&writes).await
                {
                    tracing::error!(service = %key, "trimming a room's history failed: {e}");
                }
            }
            let hosted = Hosted {
                jid: jid.clone(),
                name: key,
                kind,
                service,
                last_used: batches,
                classic: Default::default(),
                said: Default::default(),
                presences: Default::default(),
                history: Default::default(),
            };
            loaded.push((node, hosted));
        }
        loaded
    }

    /// Loads the PEP services of `wanted` accounts (with whether each is known to exist) that
    /// are this shard's and not resident. The reads run concurrently (the store has several
    /// connections); the services are installed in account order, so that a batch's effects do
    /// not depend on which read finished first.
    pub(super) async fn make_accounts_resident(
        &mut self,
        wanted: Vec<(BareJid, bool)>,
        done: &mut Vec<Done>,
    ) {
        let mut reads = tokio::task::JoinSet::new();
        let mut asked = HashSet::new();
        for (account, exists) in wanted {
            let ours = self.shard_of(account.as_str()) == self.shard;
            // One being deleted is not loaded back from storage (`deletion.rs`).
            let deleting = self.deleting.contains(&account);
            if !ours
                || deleting
                || self.accounts.contains_key(&account)
                || !asked.insert(account.clone())
            {
                continue;
            }
            let stores = self.stores.clone();
            let remote = self.is_remote(&account);
            reads.spawn(async move {
                let stored = if remote {
                    read_proxy(&stores, &account, exists).await
                } else {
                    read_account(&stores, &account, exists).await
                };
                (account, stored)
            });
        }
        let mut read = Vec::with_capacity(reads.len());
        while let Some(joined) = reads.join_next().await {
            match joined {
                Ok(one) => read.push(one),
                Err(e) => tracing::error!("reading a PEP service failed: {e}"),
            }
        }
        read.sort_by(|a, b| a.0.cmp(&b.0));
        for (account, stored) in read {
            if let Some((nodes, held)) = stored {
                self.install(account, nodes, held, done);
            }
        }
    }

    /// Makes a service read from storage resident, creating its `presence` node if missing.
    fn install(
        &mut self,
        account: BareJid,
        nodes: Vec<StoredNode>,
        held: Vec<HeldSubscription>,
        done: &mut Vec<Done>,
    ) {
        let account = &account;
        let mut service = Service::restore(
            pep_config(account.clone(), self.pep_limits.clone()),
            Box::new(SystemEnvironment::default()),
            nodes,
        );
        if service.node_config(PRESENCE_NODE).is_none() {
            let request = CreateRequest {
                node: Some(PRESENCE_NODE.to_owned()),
                config: presence_node_config(),
                ..CreateRequest::default()
            };
            match service.create(&Jid::from(account.clone()), request) {
                Ok(outcome) => {
                    let origin = Origin::Account(account.clone());
                    done.push(Done::new(origin, outcome.effects, outcome.undo));
                }
                Err(e) => tracing::error!(%account, "creating the presence node: {e}"),
            }
        }
        self.presence.seed(account, &held);
        self.presence.refresh(account, &service);
        let mut hosted = hosted_pep(account.clone(), service);
        hosted.last_used = self.batches;
        self.accounts.insert(account.clone(), hosted);
        self.router.set_blocked(account, self.blocklist(account));
    }

    /// Whether `account` is another server's (its service here is a proxy).
    pub(super) fn is_remote(&self, account: &BareJid) -> bool {
        account.domain().as_str() != self.domain_name
    }

    /// Drops rooms nobody is in: at once those that do not exist (a failed join, a deleted
    /// room), the least recently used others while more than `resident_services` are in
    /// memory (down to nine tenths). Occupancy lives only in memory: an occupied room stays.
    fn evict_rooms(&mut self) {
        // A room this batch used that has no node (never made, or closed) goes at once; rooms
        // closed otherwise (by a session's end) wait for the pass below.
        for node in std::mem::take(&mut self.rooms_touched) {
            let gone = self.rooms.get(&node).is_some_and(|hosted| {
                let service = &hosted.service;
                !service.has_temporary_subscriptions() && service.node_ids().next().is_none()
            });
            if gone {
                self.rooms.remove(&node);
            }
        }
        if self.rooms.len() <= self.resident_services {
            return;
        }
        let mut idle: Vec<(u64, String)> = self
            .rooms
            .iter()
            .filter(|(_, hosted)| !hosted.service.has_temporary_subscriptions())
            .map(|(node, hosted)| (hosted.last_used, node.clone()))
            .collect();
        if idle.len() <= self.resident_services {
            return;
        }
        let keep = self.resident_services - self.resident_services / 10;
        let evicted = idle.len() - keep;
        idle.select_nth_unstable(evicted - 1);
        for (_, node) in idle.into_iter().take(evicted) {
            self.rooms.remove(&node);
        }
        tracing::debug!(evicted, resident = self.rooms.len(), "rooms evicted");
    }

    /// Drops the least recently used conversations while more than `resident_services` are in
    /// memory (down to nine tenths): nothing of a conversation lives only in memory.
    fn evict_conversations(&mut self) {
        if self.conversations.len() <= self.resident_services {
            return;
        }
        let mut idle: Vec<(u64, String)> = self
            .conversations
            .iter()
            .map(|(node, hosted)| (hosted.last_used, node.clone()))
            .collect();
        let keep = self.resident_services - self.resident_services / 10;
        let evicted = idle.len() - keep;
        idle.select_nth_unstable(evicted - 1);
        for (_, node) in idle.into_iter().take(evicted) {
            self.conversations.remove(&node);
        }
        tracing::debug!(
            evicted,
            resident = self.conversations.len(),
            "conversations evicted"
        );
    }

    /// Drops the least recently used PEP services nobody uses while more than
    /// `resident_services` of them are in memory (down to nine tenths, so that eviction runs
    /// once per many loads, not at every batch); and idle rooms ([`Self::evict_rooms`]).
    pub(super) fn evict(&mut self) {
        self.evict_rooms();
        self.evict_conversations();
        let pinned = self.bound.accounts() + self.temporary.len();
        if self.accounts.len() <= self.resident_services + pinned {
            return;
        }
        let mut idle: Vec<(u64, BareJid)> = self
            .accounts
            .iter()
            .filter(|(account, _)| !self.pinned(account))
            .map(|(account, hosted)| (hosted.last_used, account.clone()))
            .collect();
        let keep = self.resident_services - self.resident_services / 10;
        if idle.len() <= keep {
            return;
        }
        let evicted = idle.len() - keep;
        idle.select_nth_unstable(evicted - 1);
        for (_, account) in idle.into_iter().take(evicted) {
            self.accounts.remove(&account);
            self.router.set_blocked(&account, Vec::new());
            let accounts = &self.accounts;
            self.presence
                .forget(&account, |contact| accounts.contains_key(contact));
        }
        tracing::debug!(
            evicted,
            resident = self.accounts.len(),
            "PEP services evicted"
        );
    }

    /// Whether an account's service must stay in memory.
    pub(super) fn pinned(&self, account: &BareJid) -> bool {
        self.bound.of(account).next().is_some() || self.temporary.contains(account)
    }

    /// Whether a session's verified capabilities ask for `+notify` of any node but presence.
    pub(super) fn wants_any_notify(&self, session: &FullJid) -> bool {
        self.router
            .session(session)
            .and_then(|handle| handle.features())
            .is_some_and(|features| {
                features.iter().any(|f| {
                    f.ends_with("+notify") && f != crate::eventing::rendering::PRESENCE_NOTIFY
                })
            })
    }

    /// Notes whether an account's service holds temporary subscriptions after a request that
    /// may have changed them.
    pub(super) fn note_temporary(&mut self, account: &BareJid) {
        let holds = self
            .accounts
            .get(account)
            .is_some_and(|hosted| hosted.service.has_temporary_subscriptions());
        if holds {
            self.temporary.insert(account.clone());
        } else {
            self.temporary.remove(account);
        }
    }
}

/// Whether `account` exists; a failed lookup (logged) counts as no.
pub(super) async fn account_exists(stores: &Stores, account: &BareJid) -> bool {
    match stores.accounts.credentials(account.as_str()).await {
        Ok(found) => found.is_some(),
        Err(e) => {
            tracing::error!(%account, "looking up the account failed: {e}");
            false
        }
    }
}

/// The proxy of another server's account (XEP-0207 across domains): a service holding its
/// `presence` node here, whose subscribers are the local accounts that follow it or wait for
/// it, so that their rosters are derived as for a local contact. Loaded only if stored, or
/// made (`create`) for a local account's request; it holds no subscriptions of its own.
async fn read_proxy(
    stores: &Stores,
    account: &BareJid,
    create: bool,
) -> Option<(Vec<StoredNode>, Vec<HeldSubscription>)> {
    match stores.pubsub.load_service(account.as_str()).await {
        Ok(nodes) if nodes.is_empty() && !create => None,
        Ok(nodes) => Some((nodes, Vec::new())),
        Err(e) => {
            tracing::error!(%account, "loading a remote contact's proxy failed: {e}");
            None
        }
    }
}

/// An account's stored PEP nodes and the subscriptions it holds elsewhere; `None` if the
/// account does not exist (looked up unless `exists`) or the read failed (logged).
async fn read_account(
    stores: &Stores,
    account: &BareJid,
    exists: bool,
) -> Option<(Vec<StoredNode>, Vec<HeldSubscription>)> {
    if !exists && !account_exists(stores, account).await {
        return None;
    }
    match tokio::try_join!(
        stores.pubsub.load_service(account.as_str()),
        stores.pubsub.subscriptions_of(account.as_str()),
    ) {
        Ok(read) => Some(read),
        Err(e) => {
            tracing::error!(%account, "loading the PEP service failed: {e}");
            None
        }
    }
}

/// The storage writes that give `account` what the server itself writes for it: its
/// `presence` node with `followers` approved (asked for classically, as most clients do), and
/// with `annotate` its `roster` node naming each of them. For tools that write an account
/// database directly (`verona-bench populate`), so that they write exactly the server's rows.
pub fn account_writes(
    account: &BareJid,
    followers: &[BareJid],
    annotate: bool,
) -> Result<Vec<PubsubWrite>, verona_pubsub::PubsubError> {
    let owner = Jid::from(account.clone());
    let mut service = Service::new(
        pep_config(account.clone(), verona_pubsub::Limits::default()),
        Box::new(SystemEnvironment::default()),
    );
    let mut effects = Vec::new();
    let presence = CreateRequest {
        node: Some(PRESENCE_NODE.to_owned()),
        config: presence_node_config(),
        ..CreateRequest::default()
    };
    effects.extend(service.create(&owner, presence)?.effects);
    if annotate {
        let roster = CreateRequest {
            node: Some(ROSTER_NODE.to_owned()),
            config: eventing::roster::roster_node_config(),
            ..CreateRequest::default()
        };
        effects.extend(service.create(&owner, roster)?.effects);
    }
    let resolver = PresenceGraph::default();
    for follower in followers {
        let jid = Jid::from(follower.clone());
        let mut options = SubscriptionOptions::default();
        options.custom.insert(VIEW_OPTION, "presence");
        let subscribed = service.subscribe(&resolver, &jid, PRESENCE_NODE, &jid, Some(options))?;
        effects.extend(subscribed.effects);
        effects.extend(
            service
                .authorize(&owner, PRESENCE_NODE, &jid, None, true)?
                .effects,
        );
        if annotate {
            let item =
                eventing::roster::annotation_payload(follower, follower.node().map(|n| n.as_str()));
            let request = PublishRequest::payload(Some(follower.as_str()), item);
            effects.extend(service.publish(&owner, ROSTER_NODE, request)?.effects);
        }
    }
    let mut writes: Vec<PubsubWrite> = effects
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Persist(op) => Some(PubsubWrite {
                service: account.to_string(),
                op,
            }),
            _ => None,
        })
        .collect();
    // A request then its approval: only the approved subscription is stored in the end.
    let mut seen = HashSet::new();
    writes.reverse();
    writes.retain(|write| match &write.op {
        StoreOp::SubscriptionSet { subscription, .. } => seen.insert(subscription.subid.clone()),
        _ => true,
    });
    writes.reverse();
    Ok(writes)
}

/// The accounts whose PEP services a request addresses.
pub(super) fn addressed_accounts(request: &Request) -> Vec<BareJid> {
    match request {
        Request::Stanza {
            target: Target::Account(account),
            ..
        } => vec![account.clone()],
        Request::Presence { from, .. } => vec![from.bare()],
        Request::Subscription {
            from,
            contact,
            kind,
            ..
        } => vec![kind.owner(from, contact)],
        Request::Probe { contact, .. } => vec![contact.clone()],
        Request::NotifyLast { owner, .. } => vec![owner.clone()],
        Request::Blocking { from, .. } => vec![from.bare()],
        Request::KeepOnRoster { user, .. } => vec![user.clone()],
        Request::EndRelations(account) => vec![account.clone()],
        Request::LastActivity { account, .. } => vec![account.clone()],
        Request::SessionStarted { session, .. } => vec![session.bare()],
        Request::CameOnline { load, .. } => load.clone(),
        // Removing a contact touches both presence nodes.
        Request::Roster { from, iq } => std::iter::once(from.bare())
            .chain(eventing::roster::set_contact(iq))
            .collect(),
        _ => Vec::new(),
    }
}

/// The room a request is for, if any.
fn addressed_room(request: &Request) -> Option<String> {
    match request {
        Request::Room { stanza, .. } => stanza
            .attr("to")
            .and_then(|to| Jid::new(to).ok())
            .and_then(|to| to.node().map(|node| node.to_string())),
        Request::Stanza {
            target: Target::Rooms,
            stanza,
            ..
        } => eventing::groupchat::addressed_room(stanza),
        _ => None,
    }
}

/// The accounts a message to a room invites (XEP-0045 §7.8.2).
fn invited_accounts(request: &Request) -> Vec<BareJid> {
    match request {
        Request::Room { stanza, .. } if stanza.name() == "message" => {
            eventing::groupchat::invitees(stanza)
                .unwrap_or_default()
                .iter()
                .map(|invitee| invitee.jid.to_bare())
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The conversation a request is for, if any: a message that is kept, or a XEP-0060 request
/// naming one.
fn addressed_conversation(request: &Request) -> Option<String> {
    match request {
        Request::Chat { from, to, stanza } if eventing::chat::is_kept(stanza) => {
            Some(eventing::chat::node(&from.bare(), &to.bare()))
        }
        Request::Stanza {
            target: Target::Conversation(node),
            ..
        } => Some(node.clone()),
        _ => None,
    }
}

/// Services stored apart, one per node (DESIGN §5a).
#[derive(Clone, Copy)]
enum Apart {
    Rooms,
    Conversations,
}

/// The session a request may bring online: an available `<presence/>` broadcast, or a publish
/// to its own `presence` node.
pub(super) fn coming_online(request: &Request) -> Option<&FullJid> {
    match request {
        Request::Presence { from, stanza } if stanza.attr("type") != Some("unavailable") => {
            Some(from)
        }
        Request::Stanza {
            from,
            target: Target::Account(account),
            stanza,
            ..
        } if *account == from.bare() && publishes_to(stanza) == Some(PRESENCE_NODE) => Some(from),
        _ => None,
    }
}

/// Whether a request may create or change a subscription's options (and so make it
/// temporary, or not).
pub(super) fn changes_subscription_options(stanza: &Element) -> bool {
    stanza
        .get_child("pubsub", ns::PUBSUB)
        .is_some_and(|pubsub| {
            pubsub.has_child("subscribe", ns::PUBSUB) || pubsub.has_child("options", ns::PUBSUB)
        })
}
