//! How the rest of the server reaches the services: each request goes to the shard that owns
//! the service it is for (DESIGN §5a), chosen by a stable hash of the service's address.

use super::*;
use crate::jids::Bare;

/// How the rest of the server reaches the services.
#[derive(Clone)]
pub struct PubsubHandle {
    pub(super) jid: Arc<str>,
    /// `chat.<domain>`.
    pub(super) rooms: Arc<str>,
    pub(super) shards: Arc<[mpsc::Sender<Queued>]>,
    /// The shards' queues from one another (unbounded, and taken first).
    pub(super) peers: Arc<[mpsc::UnboundedSender<Request>]>,
    /// Each shard's queue budget, in bytes.
    pub(super) budgets: Arc<[Budget]>,
    /// Every account's budget.
    pub(super) accounts: Arc<AccountBudgets>,
    /// Every other server's budget, by domain.
    pub(super) domains: Arc<AccountBudgets>,
    /// The budget of the account this handle is for ([`PubsubHandle::for_account`]).
    pub(super) account: Option<AccountBudget>,
    /// What each account may send over time, beyond its read rate.
    pub(super) rates: Arc<Rates>,
    /// The shards this handle sent requests to since [`PubsubHandle::settled`] last ran, one
    /// bit per shard (shard index modulo 64).
    pub(super) touched: Touched,
    /// Whether a request to one shard waits for what went to the others first.
    pub(super) across_shards: bool,
}

/// What each account may send over time, shared by every handle (one pointer in each, which
/// every session holds).
pub(super) struct Rates {
    /// Messages each account may have kept.
    pub kept: KeptRate,
    /// Presence each account may broadcast.
    pub presences: KeptRate,
    /// Bytes each account may have the server broadcast in its name.
    pub broadcasts: Arc<KeptRate>,
}

/// The shards a session's (or one sender's on another server's stream) requests went to since
/// they were last settled: shared by the handles it uses, it keeps its stanzas in order (RFC
/// 6120 §10.1) when some go through different shards and some go through none.
pub type Touched = Arc<std::sync::atomic::AtomicU64>;

/// A request on a shard's queue, with the credit it holds until it is handled.
pub(super) type Queued = (Request, Option<Credit>);

/// The shard that owns the service named `service` (a bare JID or `pubsub.<domain>`), among
/// `count`: FNV-1a, stable across runs and processes, so that the same shard always owns the
/// same service (the seam where shards become processes).
pub(super) fn shard_of(service: &str, count: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in service.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % count.max(1) as u64) as usize
}

/// Where a service stored apart is stored and which shard owns it: each room of
/// `chat.<domain>` is a service of its own, `chat.<domain>/<room>`, and each conversation of
/// `pubsub.<domain>` one named `pubsub.<domain>/<node>`, so that they are loaded, sharded and
/// evicted one by one.
pub(super) fn room_key(rooms: &str, node: &str) -> String {
    format!("{rooms}/{node}")
}

impl PubsubHandle {
    /// A handle for the requests of one session of `account`: together with its other
    /// sessions' they hold at most the account's share of the services' queues.
    pub fn for_account(&self, account: &BareJid) -> PubsubHandle {
        PubsubHandle {
            account: Some(self.accounts.of(account)),
            touched: Arc::default(),
            ..self.clone()
        }
    }

    /// This handle, for one sender of another server's stream: what the sender sends
    /// directly waits for what it sent through the services (`touched` is the sender's), but
    /// its requests to different shards do not wait for each other, or one sender switching
    /// shards would hold up every other sender of the stream behind it.
    pub fn on_stream(self, touched: &Touched) -> PubsubHandle {
        PubsubHandle {
            touched: touched.clone(),
            across_shards: false,
            ..self
        }
    }

    /// Waits for this account's turn to read its archive (one query of its at a time) and for
    /// one of the [`budget::ARCHIVE_READERS`]; the turn lasts until the value drops.
    pub async fn archive_turn(&self) -> impl Sized + use<> {
        let own = match &self.account {
            Some(account) => Some(account.archive_turn().await),
            None => None,
        };
        (own, self.accounts.archive_reader().await)
    }

    /// The budget all streams from the server of `domain` share (with the answers to its
    /// users); `None` if `domain` is not a domain.
    pub fn domain_budget(&self, domain: &str) -> Option<AccountBudget> {
        Some(self.domains.of(&BareJid::new(domain).ok()?))
    }

    /// `bytes` were read from this account's session at `now`: until when that session's
    /// reading pauses, when the account's sessions together are past their rate (`[limits]
    /// account_read_bytes_per_sec`).
    pub fn account_read(
        &self,
        bytes: usize,
        now: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        self.account.as_ref()?.read(bytes, now)
    }

    /// `bytes` were sent in answer to one of this session's requests: until when the
    /// session's reading pauses, when the account is past its rate (see
    /// [`budget::ANSWER_SHARE`]).
    pub fn answered(
        &self,
        bytes: usize,
        now: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        self.account.as_ref()?.answered(bytes, now)
    }

    /// Whether `account` may have one more message kept now (`[limits]
    /// kept_messages_per_minute`); a message passed on unkept (a chat state, a receipt) does not
    /// count.
    pub fn may_keep(&self, account: &BareJid) -> bool {
        self.rates.kept.take(account, std::time::Instant::now())
    }

    /// Whether `account` may broadcast one more presence now (`[limits]
    /// presence_per_minute`): each reaches all who follow it, or everyone in a room.
    pub fn may_broadcast(&self, account: &BareJid) -> bool {
        self.rates
            .presences
            .take(account, std::time::Instant::now())
    }

    /// Whether `account` may have the server broadcast `bytes` more in its name now
    /// (`[limits] broadcast_bytes_per_sec`): a message to a room, a publish's items, each
    /// written once and sent to every occupant or subscriber however slowly they read.
    pub fn may_broadcast_bytes(&self, account: &BareJid, bytes: usize) -> bool {
        self.rates
            .broadcasts
            .take_many(account, bytes, std::time::Instant::now())
    }

    /// The pubsub service's domain, e.g. `pubsub.localhost`.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The group chat service's domain, e.g. `chat.localhost`.
    pub fn rooms_jid(&self) -> &str {
        &self.rooms
    }

    /// A XEP-0060 stanza for `chat.<domain>` itself (`from` already stamped): to the shard of
    /// the room it names, or of the service for requests about the service as a whole.
    pub async fn submit_rooms(&self, from: FullJid, stanza: Element) {
        let shard = match eventing::groupchat::addressed_room(&stanza) {
            Some(node) => self.shard(&room_key(&self.rooms, &node)),
            None => self.shard(&self.rooms),
        };
        self.stanza(shard, from, Target::Rooms, stanza).await;
    }

    /// A XEP-0045 stanza for a room or an occupant (`from` already stamped), for the room's
    /// shard.
    pub async fn room(&self, from: FullJid, stanza: Element) {
        let shard = self.room_shard(&stanza);
        self.send(shard, Request::Room { from, stanza }).await;
    }

    /// An error message to a room from a bare or full address (another server's, or a bounce
    /// by our federation), for the room's shard.
    pub async fn room_error(&self, from: Jid, stanza: Element) {
        let shard = self.room_shard(&stanza);
        self.send(shard, Request::RoomError { from, stanza }).await;
    }

    /// The shard of the room a stanza is addressed to.
    fn room_shard(&self, stanza: &Element) -> usize {
        let node = stanza
            .attr("to")
            .and_then(|to| Jid::new(to).ok())
            .and_then(|to| to.node().map(|node| node.to_string()))
            .unwrap_or_default();
        self.shard(&room_key(&self.rooms, &node))
    }

    /// A stanza for `pubsub.<domain>` (`from` already stamped): to the shard of the
    /// conversation it names, or of the service.
    pub async fn submit(&self, from: FullJid, stanza: Element) {
        match eventing::groupchat::addressed_room(&stanza)
            .filter(|node| eventing::chat::is_conversation(node))
        {
            Some(node) => {
                let shard = self.shard(&room_key(&self.jid, &node));
                self.stanza(shard, from, Target::Conversation(node), stanza)
                    .await;
            }
            None => {
                let shard = self.shard(&self.jid);
                self.stanza(shard, from, Target::Domain, stanza).await;
            }
        }
    }

    /// A conversation message a session of `account` did not deliver (its connection ended
    /// before it was written or acknowledged): delivered to another available session, or
    /// kept for later, by the account's shard.
    /// All of a session's in one request, so that they stay together and in order.
    pub async fn undelivered(&self, account: BareJid, stanzas: Vec<String>) {
        let shard = self.shard(account.as_str());
        let request = Request::Offline {
            account,
            stanzas,
            origin: None,
            at: std::time::SystemTime::now(),
        };
        self.send(shard, request).await;
    }

    /// What a session that ended did not deliver, as [`Self::undelivered`], handed over at
    /// once on the queue the account's shard has from the other shards: the messages its
    /// conversations keep for it once the session has left the router come through that
    /// queue, and would otherwise be kept ahead of these (a client dropped for never
    /// acknowledging got 50–150 messages out of order).
    pub fn session_undelivered(&self, account: BareJid, stanzas: Vec<String>) {
        let shard = self.shard(account.as_str());
        let request = Request::Offline {
            account,
            stanzas,
            origin: None,
            at: std::time::SystemTime::now(),
        };
        if self.peers[shard].send(request).is_err() {
            tracing::debug!(shard, "pubsub shard gone; undelivered messages dropped");
        }
    }

    /// A `chat` or `normal` message from a session (or another server's account) to a local
    /// account (`from` already stamped; `to` as the sender gave it), for the shard of their
    /// conversation.
    pub async fn chat(&self, from: Jid, to: Jid, stanza: Element) {
        let node = eventing::chat::node(&from.bare(), &to.bare());
        let shard = self.shard(&room_key(&self.jid, &node));
        self.send(shard, Request::Chat { from, to, stanza }).await;
    }

    /// A stanza for the PEP service of `account`.
    pub async fn submit_pep(&self, from: FullJid, account: BareJid, stanza: Element) {
        let shard = self.shard(account.as_str());
        self.stanza(shard, from, Target::Account(account), stanza)
            .await;
    }

    /// An authorization answer sent to the server: the sender's shard looks for the form's
    /// node among its own nodes first.
    pub async fn submit_answer(&self, from: FullJid, stanza: Element) {
        let shard = self.shard(from.bare().as_str());
        self.stanza(shard, from, Target::Answer, stanza).await;
    }

    async fn stanza(&self, shard: usize, from: FullJid, target: Target, stanza: Element) {
        let request = Request::Stanza {
            from,
            target,
            stanza,
            view: None,
        };
        self.send(shard, request).await;
    }

    /// A vCard or private storage iq (`eventing::stored`), as the XEP-0060 request to
    /// `account`'s PEP service it stands for.
    pub async fn stored(&self, from: FullJid, account: BareJid, asked: eventing::stored::Asked) {
        let shard = self.shard(account.as_str());
        let request = Request::Stanza {
            from,
            target: Target::Account(account),
            stanza: asked.to_pubsub(),
            view: Some(Box::new(asked)),
        };
        self.send(shard, request).await;
    }

    /// A classic presence broadcast from a session (`from` already stamped).
    pub async fn presence(&self, from: FullJid, stanza: Element) {
        let shard = self.shard(from.bare().as_str());
        self.send(shard, Request::Presence { from, stanza }).await;
    }

    /// Of `contacts`, those `session`'s broadcast presence reaches (see [`Request::Reached`]);
    /// none if the services are gone.
    pub async fn reached(&self, session: FullJid, contacts: Vec<BareJid>) -> Vec<BareJid> {
        let shard = self.shard(session.bare().as_str());
        let (ready, answer) = oneshot::channel();
        let request = Request::Reached {
            session,
            contacts,
            ready,
        };
        self.send(shard, request).await;
        answer.await.unwrap_or_default()
    }

    /// A classic presence subscription stanza from an account (RFC 6121 §3: by bare JID,
    /// local or remote), for the shard of the presence node it acts on.
    pub async fn subscription(
        &self,
        from: BareJid,
        contact: BareJid,
        kind: SubscriptionKind,
        extensions: Vec<Element>,
    ) {
        let shard = self.shard(kind.owner(&from, &contact).as_str());
        let request = Request::Subscription {
            from,
            contact,
            kind,
            extensions,
        };
        self.send(shard, request).await;
    }

    /// `user` asked for or approved a subscription with `contact` (RFC 6121 §3): the contact
    /// stays on its roster (see [`Request::KeepOnRoster`]).
    pub async fn keep_on_roster(&self, user: BareJid, contact: BareJid, approval: bool) {
        let shard = self.shard(user.as_str());
        let request = Request::KeepOnRoster {
            user,
            contact,
            approval,
        };
        self.send(shard, request).await;
    }

    /// A XEP-0012 query about `account`, for its shard.
    pub async fn last_activity(&self, from: FullJid, account: BareJid, iq: Element) {
        let shard = self.shard(account.as_str());
        self.send(shard, Request::LastActivity { from, account, iq })
            .await;
    }

    /// A roster get or set (RFC 6121 §2) from a session.
    pub async fn roster(&self, from: FullJid, iq: Element) {
        let shard = self.shard(from.bare().as_str());
        self.send(shard, Request::Roster { from, iq }).await;
    }

    /// A blocking command (XEP-0191) from a session.
    pub async fn blocking(&self, from: FullJid, iq: Element) {
        let shard = self.shard(from.bare().as_str());
        self.send(shard, Request::Blocking { from, iq }).await;
    }

    /// A presence probe (`from` already stamped), for the contact's shard.
    pub async fn probe(&self, from: Jid, contact: BareJid) {
        let shard = self.shard(contact.as_str());
        self.send(shard, Request::Probe { from, contact }).await;
    }

    /// A session was bound; returns once its account's service is resident.
    pub async fn session_started(&self, session: FullJid) {
        let shard = self.shard(session.bare().as_str());
        let (ready, done) = oneshot::channel();
        self.send(shard, Request::SessionStarted { session, ready })
            .await;
        if done.await.is_err() {
            // The shard is gone: the server is stopping (at shutdown, or by the supervisor
            // after a panic), and the session's stream closes with it.
            tracing::debug!(shard, "pubsub shard gone before the session was ready");
        }
    }

    /// An account is about to be deleted: its relations with its contacts end, here and on
    /// other servers; returns once they have.
    pub async fn end_relations(&self, account: BareJid) {
        let shard = self.shard(account.as_str());
        self.send(shard, Request::EndRelations(account)).await;
        // Answered once what the shard told the contacts' shards is done there too.
        self.barrier(
            std::iter::once(shard),
            "ending a deleted account's relations",
        )
        .await;
    }

    /// An account is about to be deleted from storage: every shard forgets it, and loads or
    /// changes nothing of it until [`PubsubHandle::account_deleted`]; returns once all have,
    /// with whether every shard stored its forgetting (if not, the deletion must not go on).
    pub async fn forget_account(&self, account: BareJid) -> bool {
        let mut waiting = Vec::with_capacity(self.shards.len());
        for shard in 0..self.shards.len() {
            let (ready, done) = oneshot::channel();
            let account = account.clone();
            self.send(shard, Request::Forget { account, ready }).await;
            waiting.push(done);
        }
        let mut forgotten = true;
        for done in waiting {
            match done.await {
                Ok(stored) => forgotten &= stored,
                Err(_) => {
                    tracing::debug!("pubsub shard gone before forgetting a deleted account");
                    forgotten = false;
                }
            }
        }
        forgotten
    }

    /// The deletion [`PubsubHandle::forget_account`] began is over, done or not: the shards
    /// take requests of the name again (a new account's, or the kept one's).
    pub async fn account_deleted(&self, account: BareJid) {
        for shard in 0..self.shards.len() {
            self.send(shard, Request::Deleted(account.clone())).await;
        }
    }

    /// `session` may take kept messages now (its priority is no longer negative): it gets
    /// its account's, as at its first available presence (XEP-0160).
    pub async fn flush_kept(&self, session: FullJid) {
        let shard = self.shard(session.bare().as_str());
        self.send(shard, Request::Flush(session)).await;
    }

    /// XEP-0163 §4.3 for another server's user: its resource `session`, newly available
    /// with known features, gets the last items of `owner`'s nodes it asks `+notify` for.
    pub async fn notify_last(&self, session: FullJid, owner: BareJid) {
        let shard = self.shard(owner.as_str());
        self.send(shard, Request::NotifyLast { session, owner })
            .await;
    }

    /// A session's capabilities were verified after its presence went on without them
    /// (`Request::FeaturesKnown`).
    pub async fn features_known(&self, session: FullJid) {
        let shard = self.shard(session.bare().as_str());
        self.send(shard, Request::FeaturesKnown(session)).await;
    }

    /// A session sent unavailable presence (with `status`, as bounded as an occupant's)
    /// but stays connected: every shard ends the temporary subscriptions it holds for it
    /// (the rooms it is in among them).
    pub async fn unavailable(&self, session: FullJid, status: Option<String>) {
        for shard in 0..self.shards.len() {
            let request = Request::Unavailable {
                session: session.clone(),
                status: status.clone(),
            };
            self.send(shard, request).await;
        }
    }

    /// A session is replacing another on the same full JID: every shard ends what the older
    /// one held for its stay (rooms, `expire=presence` subscriptions), and this returns once
    /// all have delivered what that changed. The older session's notices (its departure from
    /// its rooms) are then routed to it before the new one is bound, so none reaches the new
    /// one, and the older one's end, if it comes later, takes nothing of the new one's.
    pub async fn session_replaced(&self, session: FullJid) {
        self.session_ended(Jid::from(session), None).await;
        self.barrier(0..self.shards.len(), "a replaced session ended")
            .await;
    }

    /// A session ended (`session`: which one, for a full JID): every shard ends the
    /// temporary subscriptions it holds for it.
    pub async fn session_ended(&self, jid: Jid, session: Option<u64>) {
        for shard in 0..self.shards.len() {
            let request = Request::SessionEnded {
                jid: jid.clone(),
                session,
            };
            self.send(shard, request).await;
        }
    }

    /// Returns once everything this handle sent is durable and delivered: each shard it sent
    /// to since the last call has committed and delivered the batch holding its requests
    /// (shards handle their queue in order and answer a barrier after its batch's commit and
    /// deliveries). What a XEP-0198 `<a/>` counts is then never lost to a crash, and what the
    /// stream sends next directly comes after it (RFC 6120 §10.1).
    pub async fn settled(&self) {
        let touched = self.touched.swap(0, std::sync::atomic::Ordering::AcqRel);
        let shards = (0..self.shards.len()).filter(|shard| touched & (1 << (shard % 64)) != 0);
        self.barrier(shards, "a barrier").await;
    }

    /// Returns once every shard has handled (and committed and delivered) everything sent to
    /// it before: at shutdown, what the ended sessions left (their unavailable presence, to
    /// other servers' contacts too) is on its way before the streams to other servers close.
    pub async fn drained(&self) {
        self.barrier(0..self.shards.len(), "shutdown").await;
    }

    /// Returns once each of `shards` has handled (and committed) everything sent to it before;
    /// `what` names the wait in the log when a shard is gone at shutdown.
    async fn barrier(&self, shards: impl Iterator<Item = usize>, what: &str) {
        let mut waiting = Vec::new();
        for shard in shards {
            let (ready, done) = oneshot::channel();
            self.enqueue(shard, Request::Barrier(ready)).await;
            waiting.push(done);
        }
        for done in waiting {
            if done.await.is_err() {
                tracing::debug!("pubsub shard gone before {what}");
            }
        }
    }

    fn shard(&self, service: &str) -> usize {
        shard_of(service, self.shards.len())
    }

    /// Queues a request once the account and the shard have credit for it, waiting while
    /// either is spent or the shard's queue is full (backpressure). A shard that is gone has
    /// stopped with the server.
    async fn send(&self, shard: usize, request: Request) {
        let bit = 1 << (shard % 64);
        if self.across_shards && self.touched.load(std::sync::atomic::Ordering::Acquire) & !bit != 0
        {
            // RFC 6120 §10.1: what the stream sent through other shards is delivered first;
            // one shard's queue keeps its own order.
            self.settled().await;
        }
        self.touched
            .fetch_or(bit, std::sync::atomic::Ordering::AcqRel);
        self.enqueue(shard, request).await;
    }

    /// [`Self::send`], without waiting for the stream's other shards.
    async fn enqueue(&self, shard: usize, request: Request) {
        let bytes = request.weight();
        let account = match &self.account {
            Some(budget) => Some(budget.take(bytes).await),
            None => None,
        };
        let credit = Credit::new(account, self.budgets[shard].take(bytes).await);
        if self.shards[shard]
            .send((request, Some(credit)))
            .await
            .is_err()
        {
            tracing::debug!(shard, "pubsub shard gone; request dropped at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shard_of;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("juliet@capulet.lit", 1), 0);
        assert_eq!(
            shard_of("juliet@capulet.lit", 4),
            shard_of("juliet@capulet.lit", 4)
        );
        let mut counts = [0usize; 4];
        for n in 0..4000 {
            counts[shard_of(&format!("bench{n}@localhost"), 4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
