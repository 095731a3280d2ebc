//! The publish-subscribe services: XEP-0060 at `pubsub.<domain>` and XEP-0163 PEP at every
//! account's bare JID. One task owns all of them and handles stanzas in batches. The storage
//! writes of a whole batch go into one transaction (group commit); only after it is durable are
//! the batch's requests acknowledged and its notifications sent. If the transaction fails, the
//! writes are committed again service by service; the operations of each service whose writes
//! fail are undone, newest first, and each requester is told to retry.
//!
//! The services are partitioned over shard tasks by a hash of their address (DESIGN §5a);
//! each shard has its own queue, batches and group commit. What one shard's work means for a
//! service of another (a roster item of a user elsewhere, the last items a session coming
//! online gets from contacts elsewhere) travels as a [`Request`] on the other shard's peer
//! queue, after the commit: the seam where shards become processes.
//!
//! Services are resident on demand (DESIGN §5a): nothing is loaded at start but
//! `pubsub.<domain>`; a PEP service is loaded when a batch needs it (its owner binds a session,
//! a stanza or a presence change addresses it) and leaves memory when idle, beyond
//! `[limits] resident_services`. A service with a bound session of its owner, or holding
//! temporary subscriptions (state storage does not have), stays.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::sync::{mpsc, oneshot, watch};
use verona_pubsub::{
    AccessModel, AccessResolver, Action, CreateRequest, Effect, Event, ItemReply, Limit,
    PublishRequest, Recipient, Service, ServiceConfig, StoreOp, SubscriptionChange,
    SubscriptionOptions, SystemEnvironment, Undo,
};
use verona_pubsub_xmpp::{ServiceContext, ServiceKind};
use verona_storage::PubsubWrite;

use crate::eventing::presence::{
    ClassicStanzas, PRESENCE_NODE, PresencePublish, ROSTER_NODE, SubscriptionKind, VIEW_OPTION,
    classic_presence, presence_node_config, recipient, recipient_account,
    touches_presence_subscriptions, vet_presence_publish,
};
use crate::eventing::subscriptions::PresenceGraph;
use crate::eventing::{self, pep_config};
use crate::router::{Reach, Router};
use crate::server::{Lifecycle, Stores};
use crate::xml::{BuilderExt, StanzaError, builder, error_reply, iq_result, ns, set_attr};

/// Requests waiting for the services; senders wait when it is full (backpressure).
const QUEUE: usize = 4096;
/// Requests handled, and committed, together at most.
const BATCH: usize = 256;
/// How often items past their node's `pubsub#item_expire` are removed.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);
mod blocking;
mod bookmarks;
pub(crate) mod budget;
mod chat;
mod deletion;
mod delivery;
mod handle;
mod presence;
mod quota;
mod request;
mod residency;
mod rooms;
mod roster;
mod sessions;
mod stanza;

use budget::{AccountBudget, AccountBudgets, Budget, Credit, KeptRate};
use delivery::{unheard_publish, unheard_removal};
use handle::Queued;
pub use handle::{PubsubHandle, Touched};
use request::{Committed, Done, Origin, Outgoing, Request, Target};
pub use residency::account_writes;
use residency::changes_subscription_options;
use sessions::Sessions;

/// How the services are hosted.
#[derive(Clone, Copy, Debug)]
pub struct Hosting {
    /// Shard tasks (at least one).
    pub shards: usize,
    /// PEP services nobody uses kept in memory, per shard.
    pub resident_services: usize,
    /// Bytes of requests one shard's queue holds at most.
    pub queue_bytes: usize,
    /// Bytes and requests one account may have queued or in progress, over all shards.
    pub account_bytes: usize,
    pub account_requests: usize,
    /// Bytes per second, and at once, one account's sessions together may send.
    pub account_read_per_sec: u64,
    pub account_read_burst: u64,
    /// Bytes per second and burst all streams from one other server may send together, its
    /// users' answers counted in (`[s2s] read_bytes_per_sec`).
    pub domain_read_per_sec: u64,
    pub domain_read_burst: u64,
    /// Messages one account may have kept per minute, and at once (`[limits]
    /// kept_messages_per_minute`, `kept_messages_burst`).
    pub kept_per_minute: u32,
    pub kept_burst: u32,
    /// Presence one account may send its contacts or rooms per minute, and at once
    /// (`[limits] presence_per_minute`, `presence_burst`).
    pub presence_per_minute: u32,
    pub presence_burst: u32,
    /// Bytes one account may have broadcast per second, and at once (`[limits]
    /// broadcast_bytes_per_sec`, `broadcast_burst_bytes`).
    pub broadcast_per_sec: u64,
    pub broadcast_burst: u64,
    /// Conversations the users of one other server may start per minute, and at once
    /// (`[limits] remote_conversations_per_minute`).
    pub remote_conversations_per_minute: u32,
    pub remote_conversations_burst: u32,
}

/// The addresses of the server's own services.
pub struct Addresses {
    /// The server's domain.
    pub server: String,
    /// `pubsub.<domain>`.
    pub domain: String,
    /// `chat.<domain>`.
    pub rooms: String,
}

/// How the services are configured beyond their kind: `pubsub.<domain>`'s and
/// `chat.<domain>`'s engine configurations, and the limits every account's PEP service shares
/// with them.
pub struct Configs {
    pub domain: ServiceConfig,
    pub rooms: ServiceConfig,
    pub pep_limits: verona_pubsub::Limits,
    pub max_blocklist: usize,
    /// Rooms of one shard one session may be in.
    pub max_rooms_per_session: usize,
    /// What one account's offline queue holds at most.
    pub offline: OfflineBounds,
    /// Bytes one conversation's archive holds at most.
    pub archive_bytes: usize,
    /// XEP-0421 occupant ids in rooms.
    pub occupant_ids: crate::eventing::groupchat::OccupantIds,
}

/// What one account's offline queue holds at most (`[limits] max_offline_messages`,
/// `max_offline_bytes`), and the share of it one origin may take (`offline_share_percent`).
#[derive(Clone, Copy, Debug)]
pub struct OfflineBounds {
    pub messages: usize,
    pub bytes: usize,
    pub share_percent: usize,
}

/// Deletes the stored rooms that are not persistent: they live while someone is in them, and
/// nobody is in a room when the server starts (occupancy is not stored). A directory read of
/// the rooms' configurations, nothing per account.
async fn close_temporary_rooms(stores: &Stores, rooms: &str) -> anyhow::Result<()> {
    let listed = stores
        .pubsub
        .node_configs(&handle::room_key(rooms, ""))
        .await?;
    let writes: Vec<PubsubWrite> = listed
        .into_iter()
        .filter(|room| !eventing::groupchat::is_persistent(&room.config))
        .map(|room| PubsubWrite {
            service: room.service,
            op: StoreOp::NodeDeleted { node: room.node },
        })
        .collect();
    if !writes.is_empty() {
        tracing::info!(
            rooms = writes.len(),
            "temporary rooms left from the last run closed"
        );
        stores.pubsub.apply(&writes).await?;
    }
    Ok(())
}

/// Loads `pubsub.<domain>` from storage.
async fn load(
    stores: &Stores,
    name: &str,
    kind: ServiceKind,
    config: ServiceConfig,
) -> anyhow::Result<Hosted> {
    let nodes = stores.pubsub.load_service(name).await?;
    tracing::info!(service = %name, nodes = nodes.len(), "service loaded");
    let service = Service::restore(config, Box::new(SystemEnvironment::default()), nodes);
    let jid = Jid::new(name).map_err(|e| anyhow::anyhow!("service address {name}: {e}"))?;
    Ok(Hosted {
        jid,
        name: name.to_owned(),
        kind,
        service,
        last_used: 0,
        classic: Default::default(),
        said: Default::default(),
        presences: Default::default(),
        history: Default::default(),
    })
}

/// Loads `pubsub.<domain>` and starts the shards; PEP services and rooms are loaded when
/// first needed.
pub async fn start(
    addresses: Addresses,
    configs: Configs,
    hosting: Hosting,
    stores: Stores,
    router: Arc<Router>,
    lifecycle: Lifecycle,
) -> anyhow::Result<PubsubHandle> {
    let jid = addresses.domain;
    let count = hosting.shards.max(1);
    let mut domain = Some(load(&stores, &jid, ServiceKind::Pubsub, configs.domain.clone()).await?);
    let domain_shard = handle::shard_of(&jid, count);
    // Rooms are loaded when needed, each on the shard its address hashes to; the service's
    // own shard keeps an empty instance for requests about the service as a whole.
    let rooms_jid = Jid::new(&addresses.rooms)
        .map_err(|e| anyhow::anyhow!("service address {}: {e}", addresses.rooms))?;
    let rooms_shard = handle::shard_of(&addresses.rooms, count);
    let room_lists = Arc::new(tokio::sync::Semaphore::new(rooms::CONCURRENT_ROOM_LISTS));
    // Each conversation is a service of its own (`eventing::chat`), owned by
    // `pubsub.<domain>`, which subscribes the two parties.
    let pubsub_jid =
        BareJid::new(&jid).map_err(|e| anyhow::anyhow!("service address {jid}: {e}"))?;
    let mut conversations_config = configs.domain.clone();
    conversations_config.admins.insert(pubsub_jid.clone());
    close_temporary_rooms(&stores, &addresses.rooms).await?;
    let mut with_kept: Vec<HashSet<BareJid>> = vec![HashSet::new(); count];
    for account in stores.offline.accounts_with_kept().await? {
        match BareJid::new(&account) {
            Ok(jid) => {
                with_kept[handle::shard_of(&account, count)].insert(jid);
            }
            Err(e) => tracing::error!(account, "kept messages for an invalid JID: {e}"),
        }
    }
    tracing::info!(shards = count, "pubsub shards starting");
    let (senders, receivers): (Vec<mpsc::Sender<Queued>>, Vec<_>) =
        (0..count).map(|_| mpsc::channel(QUEUE)).unzip();
    let (peers, peer_receivers): (Vec<_>, Vec<_>) =
        (0..count).map(|_| mpsc::unbounded_channel()).unzip();
    let peers: Arc<[mpsc::UnboundedSender<Request>]> = peers.into();
    let stores = Arc::new(stores);
    let accounts = Arc::new(
        AccountBudgets::new(hosting.account_bytes, hosting.account_requests)
            .with_read_rate(hosting.account_read_per_sec, hosting.account_read_burst),
    );
    // Only the read rate of another server's budget is drawn on: its requests are queued by
    // sender, as a local account's.
    let domains = Arc::new(
        AccountBudgets::new(hosting.account_bytes, hosting.account_requests)
            .with_read_rate(hosting.domain_read_per_sec, hosting.domain_read_burst),
    );
    // One bucket per remote domain, whichever shard the conversation's node hashes to.
    let remote_conversations = Arc::new(KeptRate::new(
        hosting.remote_conversations_per_minute,
        hosting.remote_conversations_burst,
    ));
    // Sessions draw on it before a stanza is broadcast; rooms add their speakers' nicks.
    let broadcasts = Arc::new(KeptRate::bytes(
        hosting.broadcast_per_sec,
        hosting.broadcast_burst,
    ));
    for (shard, (rx, peer_rx)) in receivers.into_iter().zip(peer_receivers).enumerate() {
        let task = ServicesTask {
            shard,
            budgets: accounts.clone(),
            domains: domains.clone(),
            peers: peers.clone(),
            outbox: Vec::new(),
            told: Default::default(),
            settling: Vec::new(),
            domain: if shard == domain_shard {
                domain.take()
            } else {
                None
            },
            domain_shard,
            rooms_service: (shard == rooms_shard).then(|| Hosted {
                jid: rooms_jid.clone(),
                name: addresses.rooms.clone(),
                kind: ServiceKind::Groupchat,
                service: Service::new(
                    configs.rooms.clone(),
                    Box::new(SystemEnvironment::default()),
                ),
                last_used: 0,
                classic: Default::default(),
                said: Default::default(),
                presences: Default::default(),
                history: Default::default(),
            }),
            rooms: HashMap::new(),
            conversations: HashMap::new(),
            pubsub_jid: pubsub_jid.clone(),
            conversations_config: conversations_config.clone(),
            remote_conversations: remote_conversations.clone(),
            broadcasts: broadcasts.clone(),
            domain_name: addresses.server.clone(),
            unknown_accounts: HashSet::new(),
            asked_with: HashMap::new(),
            leaving: HashMap::new(),
            to_keep: Vec::new(),
            came_online: Vec::new(),
            with_kept: std::mem::take(&mut with_kept[shard]),
            offline: configs.offline,
            archive_bytes: configs.archive_bytes,
            archived_since_trim: HashMap::new(),
            rooms_jid: rooms_jid.clone(),
            rooms_config: configs.rooms.clone(),
            occupant_ids: configs.occupant_ids.clone(),
            guesses: Default::default(),
            invitations: Default::default(),
            max_rooms_per_session: configs.max_rooms_per_session,
            room_lists: room_lists.clone(),
            rooms_touched: Vec::new(),
            accounts: HashMap::new(),
            resident_services: hosting.resident_services,
            pep_limits: configs.pep_limits.clone(),
            max_blocklist: configs.max_blocklist,
            batches: 0,
            bound: Sessions::default(),
            temporary: HashSet::new(),
            relations: HashMap::new(),
            ready: Vec::new(),
            deleting: HashSet::new(),
            presence: PresenceGraph::default(),
            interested: Sessions::default(),
            blocklist_interested: Sessions::default(),
            roster_changes: Vec::new(),
            relation_changes: Vec::new(),
            blocklists_changed: Vec::new(),
            subscriptions_held: HashMap::new(),
            rooms_owned: HashMap::new(),
            forgotten: Vec::new(),
            last_seen: HashMap::new(),
            stores: stores.clone(),
            router: router.clone(),
        };
        supervise(shard, task, rx, peer_rx, lifecycle.clone());
    }
    Ok(PubsubHandle {
        jid: jid.into(),
        rooms: addresses.rooms.into(),
        shards: senders.into(),
        peers,
        budgets: (0..count)
            .map(|_| Budget::new(hosting.queue_bytes))
            .collect(),
        accounts,
        domains,
        account: None,
        rates: Arc::new(handle::Rates {
            kept: KeptRate::new(hosting.kept_per_minute, hosting.kept_burst),
            presences: KeptRate::new(hosting.presence_per_minute, hosting.presence_burst),
            broadcasts,
        }),
        touched: Arc::default(),
        across_shards: true,
    })
}

/// Runs a shard. A shard holds services and sessions' relations that only storage and a
/// restart rebuild consistently: a panic stops the server instead of silencing the shard.
///
/// With more than one core a shard has a thread of its own, not a worker of the connections'
/// runtime: a long batch (a large fan-out, many item requests) would otherwise hold a worker
/// that connections need, and every session on it would wait, pings included (in
/// `bench/soak.sh`, good clients' p99 under attack was 349 ms with shards on the runtime, 16 ms
/// on threads). With one core a thread buys no parallelism and costs a switch between threads
/// for each wake (`bench/presence.sh` pinned to one core: 5.8 µs of server CPU per delivery
/// instead of 2.4), so there the shard runs on the runtime.
fn supervise(
    shard: usize,
    task: ServicesTask,
    rx: mpsc::Receiver<Queued>,
    peer_rx: mpsc::UnboundedReceiver<Request>,
    lifecycle: Lifecycle,
) {
    let Lifecycle {
        shutdown,
        supervisor,
        alive,
    } = lifecycle;
    let run = task.run(rx, peer_rx, shutdown);
    let (ended, stopped) = oneshot::channel::<bool>();
    if std::thread::available_parallelism().is_ok_and(|cores| cores.get() > 1) {
        let started = std::thread::Builder::new()
            .name(format!("verona-shard-{shard}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for a pubsub shard");
                let run = std::panic::AssertUnwindSafe(|| runtime.block_on(run));
                let panicked = std::panic::catch_unwind(run).is_err();
                // The runtime's other tasks (storage reads, barriers) end with it.
                drop(runtime);
                let _ = ended.send(panicked);
            });
        if let Err(e) = started {
            supervisor.fail(format!("pubsub shard {shard} could not start: {e}"));
            return;
        }
    } else {
        let running = tokio::spawn(run);
        tokio::spawn(async move {
            let _ = ended.send(running.await.is_err_and(|e| e.is_panic()));
        });
    }
    tokio::spawn(async move {
        if stopped.await.unwrap_or(true) {
            supervisor.fail(format!("pubsub shard {shard} panicked"));
        }
        // Shutdown waits for this: storage closes only after the last batch is committed.
        drop(alive);
    });
}

/// One service instance and how it is addressed.
struct Hosted {
    jid: Jid,
    /// The storage key.
    name: String,
    kind: ServiceKind,
    service: Service,
    /// The batch that last needed it, for evicting the least recently used.
    last_used: u64,
    /// For a room: which recipients of its last notification joined classically.
    classic: rooms::ClassicCache,
    /// For a room: what its classic occupants get of the messages said and not delivered yet.
    said: rooms::SaidCache,
    /// For a room: its occupants' presences as newcomers get them.
    presences: rooms::PresenceCache,
    /// For a room: its history as newcomers get it.
    history: rooms::HistoryCache,
}

fn hosted_pep(account: BareJid, service: Service) -> Hosted {
    Hosted {
        jid: Jid::from(account.clone()),
        name: account.to_string(),
        kind: ServiceKind::Pep,
        service,
        last_used: 0,
        classic: Default::default(),
        said: Default::default(),
        presences: Default::default(),
        history: Default::default(),
    }
}

struct ServicesTask {
    /// This shard's index.
    shard: usize,
    /// Every shard's peer queue (this one's included).
    peers: Arc<[mpsc::UnboundedSender<Request>]>,
    /// Messages for other shards produced by the current batch.
    outbox: Vec<Outgoing>,
    /// The shards (a bit each, as in [`PubsubHandle`]'s `touched`) told something in the
    /// current batch: a barrier is answered only once they have handled it too.
    told: std::cell::Cell<u64>,
    /// Barriers ([`Request::Barrier`]) of the current batch.
    settling: Vec<oneshot::Sender<()>>,
    /// `pubsub.<domain>`, in the shard that owns it.
    domain: Option<Hosted>,
    domain_shard: usize,
    /// `chat.<domain>` itself, without rooms, in the shard its address hashes to.
    rooms_service: Option<Hosted>,
    /// The resident rooms of this shard, by node.
    rooms: HashMap<String, Hosted>,
    /// The budgets of the accounts with a session: answers to their requests count against
    /// their read rate.
    budgets: Arc<AccountBudgets>,
    /// The budgets of the other servers with a stream to this one: answers to their users
    /// count against those streams' read rate.
    domains: Arc<AccountBudgets>,
    /// The resident conversations of this shard, by node.
    conversations: HashMap<String, Hosted>,
    /// `pubsub.<domain>`, which owns the conversations.
    pubsub_jid: BareJid,
    conversations_config: ServiceConfig,
    /// Conversations each other server's users may start, by their domain (`chat.rs`).
    remote_conversations: Arc<KeptRate<String>>,
    /// What each account may have broadcast in its name (`[limits] broadcast_bytes_per_sec`),
    /// shared with the sessions.
    broadcasts: Arc<KeptRate>,
    /// The server's domain (XEP-0203 delays name it).
    domain_name: String,
    /// For the current batch: parties of conversations not yet made, and local invitees of
    /// rooms, that have no account.
    unknown_accounts: HashSet<BareJid>,
    /// For the current batch: what each classic `subscribe` carried besides its type, by
    /// (presence node owner, asker), for the request its owner gets.
    asked_with: HashMap<(BareJid, BareJid), Vec<Element>>,
    /// For the current batch: what each resource's unavailable presence said, for the
    /// unavailable presence its contacts and other resources get.
    leaving: HashMap<FullJid, eventing::presence::Farewell>,
    /// Messages for accounts of this shard with no session to take them, kept after the
    /// batch (`chat.rs`).
    to_keep: Vec<(BareJid, verona_storage::ToKeep)>,
    /// Sessions that came online in the current batch: their kept messages follow.
    came_online: Vec<FullJid>,
    /// Accounts of this shard whose offline queue may hold messages: read from storage at
    /// start, then kept here, since this shard is the only one that keeps or delivers them.
    /// A session coming online of any other account costs no storage read.
    with_kept: HashSet<BareJid>,
    /// What one account's offline queue holds at most.
    offline: OfflineBounds,
    /// Bytes one conversation's archive holds at most (`[limits] conversation_archive_bytes`).
    archive_bytes: usize,
    /// Messages and bytes archived per conversation (storage key) since its archive was last
    /// bounded.
    archived_since_trim: HashMap<String, chat::SinceTrim>,
    rooms_jid: Jid,
    rooms_config: ServiceConfig,
    occupant_ids: crate::eventing::groupchat::OccupantIds,
    /// Wrong room passwords, so that they cannot be guessed at speed.
    guesses: rooms::PasswordGuesses,
    /// Invitations to this shard's rooms that may still be declined.
    invitations: rooms::Invitations,
    /// Rooms of this shard one session may be in.
    max_rooms_per_session: usize,
    /// Room lists being read from storage, and subscriptions in rooms gathered from every
    /// shard (`rooms::service`), shared by the shards.
    room_lists: Arc<tokio::sync::Semaphore>,
    /// The rooms the current batch addressed (for [`ServicesTask::evict`]).
    rooms_touched: Vec<String>,
    /// The resident PEP services.
    accounts: HashMap<BareJid, Hosted>,
    /// How many PEP services nobody uses may stay in memory.
    resident_services: usize,
    /// The `[pubsub]` limits, for every PEP service.
    pep_limits: verona_pubsub::Limits,
    /// JIDs one account may block.
    max_blocklist: usize,
    /// Batches handled, the clock of `Hosted::last_used`.
    batches: u64,
    /// Bound sessions: their accounts' services stay resident.
    bound: Sessions,
    /// Accounts whose PEP services hold temporary subscriptions (kept resident, and visited
    /// when a session ends).
    temporary: HashSet<BareJid>,
    /// For the current batch: users coming online, and the PEP services (other than presence
    /// nodes) where they hold subscriptions, made resident for their last items.
    relations: HashMap<BareJid, Vec<BareJid>>,
    /// Deletions waiting for this shard to forget the account, answered after the batch with
    /// whether the forgetting (the entries of `done` in the range) was stored.
    ready: Vec<(oneshot::Sender<bool>, std::ops::Range<usize>)>,
    /// Accounts being deleted: forgotten here, not yet deleted from storage. Nothing of theirs
    /// is loaded or changed meanwhile, so that no write reaches a node the deletion removes
    /// (`deletion.rs`).
    deleting: HashSet<BareJid>,
    presence: PresenceGraph,
    /// Sessions that asked for the roster, and so get roster pushes (RFC 6121 §2.1.6).
    interested: Sessions,
    /// Sessions that asked for the blocklist, and so get its pushes (XEP-0191 §3.3).
    blocklist_interested: Sessions,
    /// (user, contact): the user's roster item for the contact changed in the current batch.
    roster_changes: Vec<(BareJid, BareJid)>,
    /// (user, contact): roster items changed by other shards' committed work ([`Request::Relation`]),
    /// pushed whatever becomes of the current batch.
    relation_changes: Vec<(BareJid, BareJid)>,
    /// Deleted accounts whose services leave memory after the current batch.
    forgotten: Vec<BareJid>,
    /// XEP-0012 §4: when each of this shard's accounts last went offline since the server
    /// started, and the status it left with (kept in memory: lost at a restart).
    last_seen: HashMap<BareJid, (std::time::SystemTime, Option<String>)>,
    /// Users whose blocklist the current batch changed.
    blocklists_changed: Vec<BareJid>,
    /// For the current batch: subscriptions held over all services by the subscribers of its
    /// subscription requests (`quota.rs`).
    subscriptions_held: HashMap<BareJid, usize>,
    /// For the current batch: rooms owned by the accounts that may create one (`quota.rs`).
    rooms_owned: HashMap<BareJid, usize>,
    stores: Arc<Stores>,
    router: Arc<Router>,
}

impl ServicesTask {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Queued>,
        mut peer_rx: mpsc::UnboundedReceiver<Request>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut batch: Vec<Queued> = Vec::with_capacity(BATCH);
        let mut from_peers = Vec::new();
        let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Other shards' messages first: they complete work already acknowledged.
                biased;
                received = peer_rx.recv_many(&mut from_peers, BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                received = rx.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                _ = expiry.tick() => from_peers.push(Request::ExpireItems),
                _ = shutdown.changed() => return,
            }
            // Credit is given back once the batch is handled and its replies sent.
            let (requests, _credit): (Vec<Request>, Vec<Option<Credit>>) = batch.drain(..).unzip();
            from_peers.extend(requests);
            self.handle_batch(std::mem::take(&mut from_peers)).await;
        }
    }

    async fn handle_batch(&mut self, requests: Vec<Request>) {
        let mut done = Vec::with_capacity(requests.len());
        self.batches += 1;
        self.came_online.extend(
            requests
                .iter()
                .filter_map(residency::coming_online)
                .filter(|session| {
                    self.router
                        .session(session)
                        .is_some_and(|handle| !handle.is_available())
                })
                .cloned(),
        );
        self.make_resident(&requests, &mut done).await;
        self.forget_deleting(&mut done);
        self.count_subscriptions(&requests).await;
        self.count_rooms(&requests).await;
        for request in requests {
            if self.refused_while_deleting(&request) {
                continue;
            }
            self.handle(request, &mut done);
        }
        self.recheck_access(&mut done);
        self.subscriptions_ended(&mut done);
        let writes: Vec<PubsubWrite> = done
            .iter()
            .flat_map(|d| d.effects.iter().map(move |e| (&d.origin, e)))
            .filter_map(|(origin, effect)| match effect {
                // A conversation holds its last messages in memory and its whole archive in
                // storage: what leaves memory stays stored (`eventing::chat::RESIDENT`).
                Effect::Persist(StoreOp::ItemRemoved { .. })
                    if matches!(origin, Origin::Conversation(_)) =>
                {
                    None
                }
                Effect::Persist(op) => Some(PubsubWrite {
                    service: self.hosted(origin).map(|h| h.name.clone())?,
                    op: op.clone(),
                }),
                _ => None,
            })
            .collect();
        let failed = commit(&self.stores.clone(), &writes).await;
        let undone = self.undo_failed(&mut done, &failed);
        if failed.is_empty() {
            self.bound_archives(&writes).await;
        } else {
            let failed_accounts: HashSet<BareJid> = (done.iter().zip(&undone))
                .filter(|(_, undone)| **undone)
                .filter_map(|(d, _)| match &d.origin {
                    Origin::Account(account) => Some(account.clone()),
                    _ => None,
                })
                .collect();
            for account in &failed_accounts {
                self.refresh_presence(&Origin::Account(account.clone()));
            }
            // The roster items the undone requests changed are back as they were: nothing
            // to push of them, and no subscription of theirs ended.
            self.roster_changes.retain(|(user, contact)| {
                !failed_accounts.contains(user) && !failed_accounts.contains(contact)
            });
            self.presence.take_ended();
            let failed_origins: Vec<Origin> = (done.iter().zip(&undone))
                .filter(|(_, undone)| **undone)
                .map(|(d, _)| d.origin.clone())
                .collect();
            self.outbox.retain(|out| match &out.committed {
                Committed::Always => true,
                Committed::Service(origin) => !failed_origins.contains(origin),
            });
        }
        for (ready, of_forget) in std::mem::take(&mut self.ready) {
            // A deletion whose forgetting was undone here fails: its caller keeps the
            // account (storage has not deleted it) and says so.
            let forgotten = !undone[of_forget].iter().any(|undone| *undone);
            // A session that closed while waiting no longer listens; nothing is owed to it.
            ready.send(forgotten).ok();
        }
        for user in std::mem::take(&mut self.blocklists_changed) {
            self.router.set_blocked(&user, self.blocklist(&user));
        }
        let mut changes = std::mem::take(&mut self.roster_changes);
        changes.append(&mut self.relation_changes);
        // Other shards are told before anyone hears of the batch: whoever reads a reply and
        // asks its own shard next finds the change there, as peer queues go first.
        let changes = self.tell_other_rosters(changes);
        self.send_outbox();
        self.deliver(done);
        self.push_rosters(changes);
        self.keep_offline().await;
        self.flush_offline().await;
        self.settle();
        self.relations.clear();
        self.unknown_accounts.clear();
        self.asked_with.clear();
        self.leaving.clear();
        self.subscriptions_held.clear();
        self.rooms_owned.clear();
        self.drop_forgotten();
        self.evict();
    }

    /// Undoes, newest first, every handled request of the services whose writes failed, and
    /// tells each requester: an error reply to what asked (an iq, a message, a subscription
    /// presence), never silence. Returns which of `done` were undone.
    fn undo_failed(&mut self, done: &mut [Done], failed: &HashSet<String>) -> Vec<bool> {
        let mut undone = vec![false; done.len()];
        if failed.is_empty() {
            return undone;
        }
        for (at, d) in done.iter_mut().enumerate().rev() {
            let Some(hosted) = self.hosted_mut(&d.origin) else {
                continue;
            };
            // A reply made apart from the change it answers (`Done::reply`, whose origin is
            // `pubsub.<domain>` unless said) belongs to the service it names, or to the
            // request it answers.
            let of_service = d.undo.is_some()
                || !d.effects.is_empty()
                || d.request.is_some()
                || d.origin != Origin::Domain;
            if !of_service || !failed.contains(&hosted.name) {
                continue;
            }
            undone[at] = true;
            let kept_undone = d.undo.is_some();
            if let Some(undo) = d.undo.take() {
                hosted
                    .service
                    .undo(undo)
                    .expect("undo handles are applied newest first");
            }
            d.effects.clear();
            d.sent = None;
            d.reply = d.request.as_ref().and_then(|request| {
                verona_pubsub_xmpp::storage_failed(request)
                    .or_else(|| error_reply(request, StanzaError::InternalServerError, None))
            });
            // A message that was to be kept is not delivered: its sender is told to retry.
            if let Some(kept) = d.passing.take_if(|_| kept_undone) {
                d.to = Some(kept.from.clone());
                d.reply = error_reply(&kept.message, StanzaError::InternalServerError, None);
            }
        }
        undone
    }

    fn hosted(&self, origin: &Origin) -> Option<&Hosted> {
        match origin {
            Origin::Domain => self.domain.as_ref(),
            Origin::Rooms => self.rooms_service.as_ref(),
            Origin::Room(node) => self.rooms.get(node),
            Origin::Conversation(node) => self.conversations.get(node),
            Origin::Account(account) => self.accounts.get(account),
        }
    }

    fn hosted_mut(&mut self, origin: &Origin) -> Option<&mut Hosted> {
        match origin {
            Origin::Domain => self.domain.as_mut(),
            Origin::Rooms => self.rooms_service.as_mut(),
            Origin::Room(node) => self.rooms.get_mut(node),
            Origin::Conversation(node) => self.conversations.get_mut(node),
            Origin::Account(account) => self.accounts.get_mut(account),
        }
    }

    /// The shard that owns a service.
    fn shard_of(&self, service: &str) -> usize {
        handle::shard_of(service, self.peers.len())
    }

    /// Queues a message for another shard, sent after the commit.
    fn send_to(&mut self, shard: usize, request: Request, committed: Committed) {
        self.outbox.push(Outgoing {
            shard,
            request,
            committed,
        });
    }

    fn send_outbox(&mut self) {
        for out in std::mem::take(&mut self.outbox) {
            self.send_peer(out.shard, out.request);
        }
    }

    /// Sends a message to a shard (this one included) now; a barrier of this batch then
    /// waits for that shard too.
    fn send_peer(&self, shard: usize, request: Request) {
        self.told.set(self.told.get() | 1 << (shard % 64));
        if self.peers[shard].send(request).is_err() {
            tracing::debug!(shard, "pubsub shard gone; message dropped at shutdown");
        }
    }

    /// Answers the batch's barriers once what it told other shards is durable (and
    /// delivered) there too: an acknowledged message kept for an offline recipient is written
    /// by the recipient's shard, after this batch's commit (issue #13), and a roster push
    /// follows a subscription's answer from the user's shard. Peer queues are in order, so a
    /// barrier sent behind those messages is answered after them. What earlier batches told
    /// is waited for too: a barrier often comes in the batch after its request's.
    fn settle(&mut self) {
        if self.settling.is_empty() {
            return;
        }
        let told = self.told.take();
        let settling = std::mem::take(&mut self.settling);
        if told == 0 {
            for ready in settling {
                ready.send(()).ok();
            }
            return;
        }
        let mut waiting = Vec::new();
        for shard in (0..self.peers.len()).filter(|shard| told & (1 << (shard % 64)) != 0) {
            let (ready, done) = oneshot::channel();
            if self.peers[shard].send(Request::Barrier(ready)).is_ok() {
                waiting.push(done);
            }
        }
        tokio::spawn(async move {
            for done in waiting {
                done.await.ok();
            }
            for ready in settling {
                ready.send(()).ok();
            }
        });
    }

    /// XEP-0163 §8.1: a presence relation or roster group that changed in this batch may take
    /// away a contact's access to the owner's `presence`- and `roster`-model nodes; the
    /// subscriptions those no longer allow end, in the same commit (issue #11 H2).
    fn recheck_access(&mut self, done: &mut Vec<Done>) {
        let pairs: BTreeSet<(BareJid, BareJid)> = self.roster_changes.iter().cloned().collect();
        for (owner, contact) in pairs {
            let Some(hosted) = self.accounts.get_mut(&owner) else {
                continue;
            };
            let outcome = hosted.service.recheck_access(&self.presence, &contact);
            if !outcome.value.is_empty() {
                done.push(Done::new(
                    Origin::Account(owner),
                    outcome.effects,
                    outcome.undo,
                ));
            }
        }
    }

    fn refresh_presence(&mut self, origin: &Origin) {
        if let Origin::Account(account) = origin
            && let Some(hosted) = self.accounts.get(account)
        {
            let changed = self.presence.refresh(account, &hosted.service);
            self.roster_changes.extend(changed);
        }
    }

    /// Runs one request through its engine (memory only; nothing is durable or sent yet).
    fn handle(&mut self, request: Request, done: &mut Vec<Done>) {
        match request {
            Request::Stanza {
                from,
                target,
                stanza,
                view: None,
            } => self.own_stanza(from, target, stanza, done),
            Request::Stanza {
                from,
                target,
                stanza,
                view: Some(asked),
            } => self.stored(from, target, stanza, asked, done),
            Request::Presence { from, stanza } => {
                self.classic_presence(&from, &stanza, done);
            }
            Request::Room { from, stanza } => self.room_stanza(from, stanza, done),
            Request::RoomError { from, stanza } => self.room_error(&from, &stanza, done),
            Request::Chat { from, to, stanza } => self.chat(from, to, stanza, done),
            Request::Offline {
                account,
                stanzas,
                origin,
                at,
            } => self.offline(account, stanzas, origin, at),
            Request::Flush(session) => self.came_online.push(session),
            Request::Barrier(ready) => self.settling.push(ready),
            Request::Reached {
                session,
                contacts,
                ready,
            } => {
                ready.send(self.reached(&session, contacts)).ok();
            }
            Request::Subscription {
                from,
                contact,
                kind,
                extensions,
            } => self.classic_subscription(&from, &contact, kind, extensions, done),
            Request::Roster { from, iq } => self.roster_request(from, iq, done),
            Request::KeepOnRoster {
                user,
                contact,
                approval,
            } => self.keep_on_roster(&user, &contact, approval, done),
            Request::LastActivity { from, account, iq } => {
                let reply = self.last_activity(&from, &account, &iq);
                done.push(Done::reply(from, Some(reply)));
            }
            Request::Probe { from, contact } => self.probe(&from, &contact, done),
            Request::NotifyLast { session, owner } => {
                // As `implicit` serves `+notify`: the account itself and those who follow it,
                // not anyone another server makes up (each would be sent the newest items).
                let bare = session.to_bare();
                if bare == owner || self.presence.has_presence_subscription(&owner, &bare) {
                    done.extend(self.last_notify_items(&session, &[owner], true));
                }
            }
            Request::FeaturesKnown(session) => {
                let user = session.to_bare();
                let owners: Vec<BareJid> = std::iter::once(user.clone())
                    .chain(self.presence.following(&user).cloned())
                    .collect();
                for owner in owners {
                    let shard = self.shard_of(owner.as_str());
                    let session = session.clone();
                    self.send_to(
                        shard,
                        Request::NotifyLast { session, owner },
                        Committed::Always,
                    );
                }
            }
            Request::Blocking { from, iq } => self.blocking_request(from, iq, done),
            Request::SessionStarted { session, ready } => {
                self.bound.insert(&session);
                // Its account's services are resident: that is all the session waits for, not
                // the rest of the batch (a login otherwise waited for the batch's writes and
                // the offline-message reads of everyone who came online in it; issue #15).
                ready.send(()).ok();
            }
            Request::SessionEnded { jid, session } => {
                // A newer session on the same full JID: this end is stale (see the request).
                let replaced = session.is_some_and(|ended| {
                    jid.try_as_full()
                        .ok()
                        .and_then(|full| self.router.session(full))
                        .is_some_and(|current| current.id() != ended)
                });
                if !replaced {
                    self.session_ended(&jid, done);
                }
            }
            Request::Unavailable { session, status } => {
                self.end_temporary(&Jid::from(session), status.as_deref(), done);
            }
            Request::RoomSubscriptions { asker, held } => {
                let mine = (self.rooms.values())
                    .flat_map(|hosted| hosted.service.own_subscriptions(&asker, None))
                    .collect();
                held.send(mine).ok();
            }
            Request::PendingRooms { owner, held } => {
                let waiting = (self.rooms.iter())
                    .filter(|(_, hosted)| !hosted.service.pending_for_owner(&owner).is_empty())
                    .map(|(node, _)| node.clone())
                    .collect();
                held.send(waiting).ok();
            }
            Request::RoomForms { session } => self.send_room_forms(&session, done),
            Request::EndRelations(account) => self.end_relations(&account),
            Request::Forget { account, ready } => {
                let first = done.len();
                self.forget_account(&account, done);
                self.ready.push((ready, first..done.len()));
            }
            Request::Deleted(account) => {
                self.deleting.remove(&account);
            }
            Request::Relation {
                owner,
                contact,
                follows,
                asks,
            } => {
                if self.accounts.contains_key(&contact)
                    && self.presence.set_outbound(&contact, &owner, follows, asks)
                {
                    self.relation_changes.push((contact, owner));
                }
            }
            Request::CameOnline {
                session,
                owners,
                load: _,
                domain,
            } => self.send_current(&session, &owners, domain, done),
            Request::ExpireItems => {
                if let Some(hosted) = &mut self.domain {
                    let outcome = hosted.service.expire_items();
                    done.push(Done::new(Origin::Domain, outcome.effects, outcome.undo));
                }
                for (account, hosted) in &mut self.accounts {
                    let outcome = hosted.service.expire_items();
                    let origin = Origin::Account(account.clone());
                    done.push(Done::new(origin, outcome.effects, outcome.undo));
                }
            }
        }
    }
}

/// Commits the batch's writes in one transaction (the group commit). If it fails, each
/// service's writes are committed apart, so that one service's failing write (a node
/// storage no longer has) fails only the requests of that service; returns the services
/// whose writes failed.
async fn commit(stores: &Stores, writes: &[PubsubWrite]) -> HashSet<String> {
    let mut failed = HashSet::new();
    if writes.is_empty() {
        return failed;
    }
    let Err(e) = stores.pubsub.apply(writes).await else {
        return failed;
    };
    tracing::warn!(
        "storing {} pubsub writes together failed ({e}); storing them by service",
        writes.len()
    );
    let mut by_service: Vec<(&str, Vec<PubsubWrite>)> = Vec::new();
    for write in writes {
        match by_service.iter_mut().find(|(s, _)| *s == write.service) {
            Some((_, apart)) => apart.push(write.clone()),
            None => by_service.push((&write.service, vec![write.clone()])),
        }
    }
    for (service, apart) in by_service {
        if let Err(e) = stores.pubsub.apply(&apart).await {
            tracing::error!(service, "storing {} pubsub writes failed: {e}", apart.len());
            failed.insert(service.to_owned());
        }
    }
    failed
}

/// The node a pubsub publish request is for.
fn publishes_to(stanza: &Element) -> Option<&str> {
    stanza
        .get_child("pubsub", ns::PUBSUB)?
        .get_child("publish", ns::PUBSUB)?
        .attr("node")
}
