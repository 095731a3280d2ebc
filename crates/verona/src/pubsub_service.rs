//! The publish-subscribe services: XEP-0060 at `pubsub.<domain>` and XEP-0163 PEP at every
//! account's bare JID. One task owns all of them and handles stanzas in batches. The storage
//! writes of a whole batch go into one transaction (group commit); only after it is durable are
//! the batch's requests acknowledged and its notifications sent. If the transaction fails, every
//! operation of the batch is undone, newest first, and each requester is told to retry.
//!
//! Services are resident on demand (DESIGN §5a): nothing is loaded at start but
//! `pubsub.<domain>`; a PEP service is loaded when a batch needs it (its owner binds a session,
//! a stanza or a presence change addresses it) and leaves memory when idle, beyond
//! `[limits] resident_services`. A service with a bound session of its owner, or holding
//! temporary subscriptions (state storage does not have), stays.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::sync::{mpsc, oneshot, watch};
use verona_pubsub::{
    AccessModel, AccessResolver, ConfigField, CreateRequest, Effect, Event, ItemReply, MaxItems,
    PublishRequest, Recipient, SendLastPublishedItem, Service, ServiceConfig, StoreOp,
    SubscriptionChange, SubscriptionOptionField, SubscriptionOptions, SubscriptionState,
    SystemEnvironment, Undo,
};
use verona_pubsub_xmpp::{ServiceContext, ServiceKind};
use verona_storage::{AccountStore, PubsubStore, PubsubWrite};

use crate::router::Router;
use crate::xml::{BuilderExt, ErrorType, builder, error_reply, ns, set_attr};

/// Requests waiting for the services; senders wait when it is full (backpressure).
const QUEUE: usize = 4096;
/// Requests handled, and committed, together at most.
const BATCH: usize = 256;
/// How often items past their node's `pubsub#item_expire` are removed.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);
/// The PEP node whose items are an account's presence, one per available resource, and whose
/// subscribers are its presence subscribers (XEP-0207 §3).
const PRESENCE_NODE: &str = "presence";
/// The private PEP node keeping the names and groups classic clients give contacts.
const ROSTER_NODE: &str = "roster";
/// A subscription option of PEP services recording that a presence subscription was asked
/// for with `<presence type='subscribe'/>` (value `presence`): the subscriber then gets the
/// classic rendering unless its capabilities say otherwise (DESIGN §3).
const VIEW_OPTION: &str = "verona#view";

mod blocking;
mod graph;
mod roster;

use graph::{PresenceGraph, Sessions};

/// The `presence` node's configuration (DESIGN §2): subscriptions need the owner's approval,
/// presence never touches disk, going offline is a retraction, notifications name the
/// publishing resource (XEP-0033 `replyto`), and a new subscriber or a newly available contact
/// gets the current items.
fn presence_node_config() -> Vec<ConfigField> {
    vec![
        ConfigField::AccessModel(AccessModel::Authorize),
        ConfigField::PersistItems(false),
        ConfigField::NotifyRetract(true),
        ConfigField::ItemReply(ItemReply::Publisher),
        ConfigField::MaxItems(MaxItems::Max),
        ConfigField::SendLastPublishedItem(SendLastPublishedItem::OnSubAndPresence),
    ]
}

/// Which service a stanza is for.
enum Target {
    /// `pubsub.<domain>`.
    Domain,
    /// The PEP service of a local account.
    Account(BareJid),
    /// An owner's answer to an authorization request, sent to the server rather than to a
    /// service (the seed's Ex. 11): the service holding the form's node gets it.
    Answer,
}

enum Request {
    Stanza {
        from: FullJid,
        target: Target,
        stanza: Element,
    },
    /// A session was bound: its account's service is made resident (and its blocklist known
    /// to the router) before `ready` is answered, and stays while the session lasts.
    SessionStarted {
        session: FullJid,
        ready: oneshot::Sender<()>,
    },
    /// A session (full JID), or an account's last session (bare JID), ended: temporary
    /// (`expire=presence`) subscriptions made from it end too.
    SessionEnded(Jid),
    /// A classic `<presence/>` broadcast (no `to`): published to, or for `unavailable`
    /// retracted from, the sender's `presence` node.
    Presence { from: FullJid, stanza: Element },
    /// A classic presence subscription stanza (RFC 6121 §3) between `from` and `contact`.
    Subscription {
        from: FullJid,
        contact: BareJid,
        kind: SubscriptionKind,
    },
    /// A `jabber:iq:roster` get or set: the roster is a view of presence-node subscriptions
    /// and the `roster` node.
    Roster { from: FullJid, iq: Element },
    /// A XEP-0191 blocklist get, block or unblock.
    Blocking { from: FullJid, iq: Element },
    /// A presence probe (RFC 6121 §4.3) from a session to a local account.
    Probe { from: FullJid, contact: BareJid },
    /// Remove expired items (from the task's own timer).
    ExpireItems,
}

/// The four `type`s of RFC 6121 subscription presence, as pubsub operations on a presence node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionKind {
    /// Subscribe to the contact's presence node.
    Subscribe,
    /// Approve the contact's pending subscription to mine.
    Subscribed,
    /// End my subscription to the contact's presence node.
    Unsubscribe,
    /// Deny or end the contact's subscription to mine.
    Unsubscribed,
}

impl SubscriptionKind {
    pub fn from_type(kind: &str) -> Option<SubscriptionKind> {
        match kind {
            "subscribe" => Some(SubscriptionKind::Subscribe),
            "subscribed" => Some(SubscriptionKind::Subscribed),
            "unsubscribe" => Some(SubscriptionKind::Unsubscribe),
            "unsubscribed" => Some(SubscriptionKind::Unsubscribed),
            _ => None,
        }
    }

    /// Whose presence node the operation acts on.
    fn owner(self, from: &FullJid, contact: &BareJid) -> BareJid {
        match self {
            SubscriptionKind::Subscribe | SubscriptionKind::Unsubscribe => contact.clone(),
            SubscriptionKind::Subscribed | SubscriptionKind::Unsubscribed => from.to_bare(),
        }
    }
}

/// How the rest of the server reaches the services.
#[derive(Clone)]
pub struct PubsubHandle {
    jid: Arc<str>,
    tx: mpsc::Sender<Request>,
}

impl PubsubHandle {
    /// The pubsub service's domain, e.g. `pubsub.localhost`.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// A stanza for `pubsub.<domain>` (`from` already stamped).
    pub async fn submit(&self, from: FullJid, stanza: Element) {
        self.send(from, Target::Domain, stanza).await;
    }

    /// A stanza for the PEP service of `account`.
    pub async fn submit_pep(&self, from: FullJid, account: BareJid, stanza: Element) {
        self.send(from, Target::Account(account), stanza).await;
    }

    /// An authorization answer sent to the server.
    pub async fn submit_answer(&self, from: FullJid, stanza: Element) {
        self.send(from, Target::Answer, stanza).await;
    }

    async fn send(&self, from: FullJid, target: Target, stanza: Element) {
        let request = Request::Stanza {
            from,
            target,
            stanza,
        };
        let _ = self.tx.send(request).await;
    }

    /// A classic presence broadcast from a session (`from` already stamped).
    pub async fn presence(&self, from: FullJid, stanza: Element) {
        let _ = self.tx.send(Request::Presence { from, stanza }).await;
    }

    /// A classic presence subscription stanza (`from` already stamped).
    pub async fn subscription(&self, from: FullJid, contact: BareJid, kind: SubscriptionKind) {
        let request = Request::Subscription {
            from,
            contact,
            kind,
        };
        let _ = self.tx.send(request).await;
    }

    /// A roster get or set (RFC 6121 §2) from a session.
    pub async fn roster(&self, from: FullJid, iq: Element) {
        let _ = self.tx.send(Request::Roster { from, iq }).await;
    }

    /// A blocking command (XEP-0191) from a session.
    pub async fn blocking(&self, from: FullJid, iq: Element) {
        let _ = self.tx.send(Request::Blocking { from, iq }).await;
    }

    /// A presence probe (`from` already stamped).
    pub async fn probe(&self, from: FullJid, contact: BareJid) {
        let _ = self.tx.send(Request::Probe { from, contact }).await;
    }

    /// A session was bound; returns once its account's service is resident.
    pub async fn session_started(&self, session: FullJid) {
        let (ready, done) = oneshot::channel();
        let _ = self
            .tx
            .send(Request::SessionStarted { session, ready })
            .await;
        let _ = done.await;
    }

    pub async fn session_ended(&self, jid: Jid) {
        let _ = self.tx.send(Request::SessionEnded(jid)).await;
    }
}

/// The stores the services need: their own, and accounts (a PEP service exists only for an
/// account that exists).
pub struct Stores {
    pub pubsub: Arc<dyn PubsubStore>,
    pub accounts: Arc<dyn AccountStore>,
}

/// Loads `pubsub.<domain>` and starts the task; PEP services are loaded when first needed, and
/// at most `resident_services` of them that nobody uses are kept in memory.
pub async fn start(
    jid: String,
    config: ServiceConfig,
    resident_services: usize,
    stores: Stores,
    router: Arc<Router>,
    shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) -> anyhow::Result<PubsubHandle> {
    let nodes = stores.pubsub.load_service(&jid).await?;
    tracing::info!(service = %jid, nodes = nodes.len(), "pubsub service loaded");
    let service = Service::restore(config, Box::new(SystemEnvironment::default()), nodes);
    let (tx, rx) = mpsc::channel(QUEUE);
    let address = Jid::new(&jid).map_err(|e| anyhow::anyhow!("service address {jid}: {e}"))?;
    let task = ServicesTask {
        domain: Hosted {
            jid: address,
            name: jid.clone(),
            kind: ServiceKind::Pubsub,
            service,
            last_used: 0,
        },
        accounts: HashMap::new(),
        resident_services,
        batches: 0,
        bound: Sessions::default(),
        temporary: HashSet::new(),
        relations: HashMap::new(),
        ready: Vec::new(),
        presence: PresenceGraph::default(),
        available: Sessions::default(),
        interested: Sessions::default(),
        blocklist_interested: Sessions::default(),
        roster_changes: Vec::new(),
        stores,
        router,
    };
    tokio::spawn(async move {
        task.run(rx, shutdown).await;
        // Shutdown waits for this: storage closes only after the last batch is committed.
        drop(alive);
    });
    Ok(PubsubHandle {
        jid: jid.into(),
        tx,
    })
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
        pep_config(account.clone()),
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
            config: roster::roster_node_config(),
            ..CreateRequest::default()
        };
        effects.extend(service.create(&owner, roster)?.effects);
    }
    let resolver = PresenceGraph::default();
    for follower in followers {
        let jid = Jid::from(follower.clone());
        let mut options = SubscriptionOptions::default();
        options
            .custom
            .insert(VIEW_OPTION.to_owned(), "presence".to_owned());
        let subscribed = service.subscribe(&resolver, &jid, PRESENCE_NODE, &jid, Some(options))?;
        effects.extend(subscribed.effects);
        effects.extend(
            service
                .authorize(&owner, PRESENCE_NODE, &jid, None, true)?
                .effects,
        );
        if annotate {
            let item = roster::annotation_payload(follower, follower.node().map(|n| n.as_str()));
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

/// One service instance and how it is addressed.
struct Hosted {
    jid: Jid,
    /// The storage key.
    name: String,
    kind: ServiceKind,
    service: Service,
    /// The batch that last needed it, for evicting the least recently used.
    last_used: u64,
}

/// A PEP service's configuration: XEP-0163's, plus the option recording classic requests.
fn pep_config(account: BareJid) -> ServiceConfig {
    let mut config = ServiceConfig::pep(account);
    config.custom_subscription_options.insert(
        VIEW_OPTION.to_owned(),
        SubscriptionOptionField { unique: false },
    );
    config
}

fn hosted_pep(account: BareJid, service: Service) -> Hosted {
    Hosted {
        jid: Jid::from(account.clone()),
        name: account.to_string(),
        kind: ServiceKind::Pep,
        service,
        last_used: 0,
    }
}

/// Where a handled request's effects came from.
#[derive(Clone, PartialEq, Eq)]
enum Origin {
    Domain,
    Account(BareJid),
}

/// One handled request of a batch, waiting for the batch's commit.
struct Done {
    origin: Origin,
    to: Option<FullJid>,
    request: Option<Element>,
    reply: Option<Element>,
    effects: Vec<Effect>,
    undo: Option<Undo>,
}

impl Done {
    fn new(origin: Origin, effects: Vec<Effect>, undo: Undo) -> Self {
        Done {
            origin,
            to: None,
            request: None,
            reply: None,
            effects,
            undo: Some(undo),
        }
    }

    /// Deliveries that change nothing (nothing to store or undo).
    fn new_effects(origin: Origin, effects: Vec<Effect>) -> Self {
        Done {
            origin,
            to: None,
            request: None,
            reply: None,
            effects,
            undo: None,
        }
    }

    fn reply(to: FullJid, reply: Option<Element>) -> Self {
        Done {
            origin: Origin::Domain,
            to: Some(to),
            request: None,
            reply,
            effects: Vec::new(),
            undo: None,
        }
    }
}

struct ServicesTask {
    domain: Hosted,
    /// The resident PEP services.
    accounts: HashMap<BareJid, Hosted>,
    /// How many PEP services nobody uses may stay in memory.
    resident_services: usize,
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
    /// Sessions waiting for their account to be resident, answered after the batch.
    ready: Vec<oneshot::Sender<()>>,
    presence: PresenceGraph,
    /// Sessions that have announced their presence (and so got their contacts' current items).
    available: Sessions,
    /// Sessions that asked for the roster, and so get roster pushes (RFC 6121 §2.1.6).
    interested: Sessions,
    /// Sessions that asked for the blocklist, and so get its pushes (XEP-0191 §3.3).
    blocklist_interested: Sessions,
    /// (user, contact): the user's roster item for the contact changed in the current batch.
    roster_changes: Vec<(BareJid, BareJid)>,
    stores: Stores,
    router: Arc<Router>,
}

impl ServicesTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>, mut shutdown: watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = rx.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                _ = expiry.tick() => batch.push(Request::ExpireItems),
                _ = shutdown.changed() => return,
            }
            self.handle_batch(std::mem::take(&mut batch)).await;
        }
    }

    async fn handle_batch(&mut self, requests: Vec<Request>) {
        let mut done = Vec::with_capacity(requests.len());
        self.batches += 1;
        self.make_resident(&requests, &mut done).await;
        for request in requests {
            self.handle(request, &mut done);
        }
        let writes: Vec<PubsubWrite> = done
            .iter()
            .flat_map(|d| d.effects.iter().map(move |e| (&d.origin, e)))
            .filter_map(|(origin, effect)| match effect {
                Effect::Persist(op) => Some(PubsubWrite {
                    service: self.hosted(origin).map(|h| h.name.clone())?,
                    op: op.clone(),
                }),
                _ => None,
            })
            .collect();
        if !writes.is_empty()
            && let Err(e) = self.stores.pubsub.apply(&writes).await
        {
            tracing::error!("storing {} pubsub writes failed: {e}", writes.len());
            for d in done.iter_mut().rev() {
                if let (Some(undo), Some(hosted)) = (d.undo.take(), self.hosted_mut(&d.origin)) {
                    hosted
                        .service
                        .undo(undo)
                        .expect("undo handles are applied newest first");
                }
                d.effects.clear();
                d.reply = d
                    .request
                    .as_ref()
                    .and_then(verona_pubsub_xmpp::storage_failed);
            }
            for origin in done.iter().map(|d| d.origin.clone()).collect::<Vec<_>>() {
                self.refresh_presence(&origin);
            }
        }
        let changes = std::mem::take(&mut self.roster_changes);
        self.deliver(done);
        self.push_rosters(changes);
        for ready in self.ready.drain(..) {
            let _ = ready.send(());
        }
        self.relations.clear();
        self.evict();
    }

    /// Makes resident the PEP services the batch needs, creating the `presence` node of those
    /// that lack it: the services its requests address, and for a session coming online the
    /// services where its account holds subscriptions (for their last items; for `+notify`
    /// last items, every contact it follows).
    async fn make_resident(&mut self, requests: &[Request], done: &mut Vec<Done>) {
        let accounts: Vec<BareJid> = requests.iter().flat_map(addressed_accounts).collect();
        for account in &accounts {
            self.make_account_resident(account, done).await;
        }
        let coming: Vec<&FullJid> = requests
            .iter()
            .filter_map(coming_online)
            .filter(|session| {
                !self
                    .available
                    .has(&session.to_bare(), session.resource().as_str())
            })
            .collect();
        for session in coming {
            let user = session.to_bare();
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
            for owner in &owners {
                self.make_account_resident(owner, done).await;
            }
            self.relations.insert(user, owners);
        }
        let now = self.batches;
        for account in &accounts {
            if let Some(hosted) = self.accounts.get_mut(account) {
                hosted.last_used = now;
            }
        }
    }

    /// Loads one account's PEP service unless it is resident or the account does not exist.
    async fn make_account_resident(&mut self, account: &BareJid, done: &mut Vec<Done>) {
        if self.accounts.contains_key(account) {
            return;
        }
        match self.stores.accounts.credentials(account.as_str()).await {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => {
                tracing::error!(%account, "looking up the account failed: {e}");
                return;
            }
        }
        let (nodes, held) = match tokio::try_join!(
            self.stores.pubsub.load_service(account.as_str()),
            self.stores.pubsub.subscriptions_of(account.as_str()),
        ) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(%account, "loading the PEP service failed: {e}");
                return;
            }
        };
        let mut service = Service::restore(
            pep_config(account.clone()),
            Box::new(SystemEnvironment::default()),
            nodes,
        );
        if service.metadata(PRESENCE_NODE).is_none() {
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

    /// Drops the least recently used PEP services nobody uses while more than
    /// `resident_services` of them are in memory (down to nine tenths, so that eviction runs
    /// once per many loads, not at every batch).
    fn evict(&mut self) {
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
    fn pinned(&self, account: &BareJid) -> bool {
        self.bound.of(account).next().is_some() || self.temporary.contains(account)
    }

    /// Whether a session's verified capabilities ask for `+notify` of any node but presence.
    fn wants_any_notify(&self, session: &FullJid) -> bool {
        self.router
            .session(session)
            .and_then(|handle| handle.features())
            .is_some_and(|features| {
                features
                    .iter()
                    .any(|f| f.ends_with("+notify") && f != crate::router::PRESENCE_NOTIFY)
            })
    }

    /// Notes whether an account's service holds temporary subscriptions after a request that
    /// may have changed them.
    fn note_temporary(&mut self, account: &BareJid) {
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

    fn hosted(&self, origin: &Origin) -> Option<&Hosted> {
        match origin {
            Origin::Domain => Some(&self.domain),
            Origin::Account(account) => self.accounts.get(account),
        }
    }

    fn hosted_mut(&mut self, origin: &Origin) -> Option<&mut Hosted> {
        match origin {
            Origin::Domain => Some(&mut self.domain),
            Origin::Account(account) => self.accounts.get_mut(account),
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
                mut stanza,
            } => {
                let own_presence = matches!(&target, Target::Account(account) if *account == from.to_bare())
                    && own_presence_item_id(&mut stanza, &from);
                if own_presence {
                    self.came_online(&from, done);
                }
                let origin = match target {
                    Target::Domain => Origin::Domain,
                    Target::Account(account) => Origin::Account(account),
                    Target::Answer => self.answer_origin(&from, &stanza),
                };
                let Some(hosted) = (match &origin {
                    Origin::Domain => Some(&mut self.domain),
                    Origin::Account(account) => self.accounts.get_mut(account),
                }) else {
                    // No such account: nobody hosts a PEP service there.
                    let reply =
                        error_reply(&stanza, ErrorType::Cancel, "service-unavailable", None);
                    done.push(Done::reply(from, reply));
                    return;
                };
                let context = ServiceContext {
                    jid: &hosted.jid,
                    kind: hosted.kind,
                    resolver: &self.presence,
                };
                let handled = verona_pubsub_xmpp::handle_stanza(
                    &mut hosted.service,
                    &context,
                    &from,
                    &stanza,
                );
                let succeeded = handled
                    .reply
                    .as_ref()
                    .is_some_and(|reply| reply.attr("type") == Some("result"));
                let unheard = match &origin {
                    Origin::Account(owner) if succeeded && !own_presence => unheard_publish(
                        hosted,
                        owner,
                        &stanza,
                        handled.reply.as_ref(),
                        &handled.effects,
                    ),
                    _ => None,
                };
                if touches_presence_subscriptions(&handled.effects) {
                    self.refresh_presence(&origin);
                }
                let published = own_presence && succeeded;
                let created: Vec<String> = handled
                    .effects
                    .iter()
                    .filter_map(|effect| match effect {
                        Effect::Persist(StoreOp::NodeCreated { node, .. }) => Some(node.clone()),
                        _ => None,
                    })
                    .collect();
                let account = match &origin {
                    Origin::Account(account) => Some(account.clone()),
                    Origin::Domain => None,
                };
                let subscribing = changes_subscription_options(&stanza);
                done.push(Done {
                    origin,
                    to: Some(from.clone()),
                    request: Some(stanza),
                    reply: handled.reply,
                    effects: handled.effects,
                    undo: handled.undo,
                });
                if published {
                    self.reflect_presence(&from, done);
                }
                if let Some(account) = account {
                    self.carry_blocks(&account, &created, done);
                    if subscribing {
                        self.note_temporary(&account);
                    }
                }
                if let Some((owner, notification)) = unheard {
                    let effects = vec![Effect::Notify(notification)];
                    done.push(Done::new_effects(Origin::Account(owner), effects));
                }
            }
            Request::Presence { from, stanza } => {
                self.classic_presence(&from, &stanza, done);
            }
            Request::Subscription {
                from,
                contact,
                kind,
            } => self.classic_subscription(&from, &contact, kind, done),
            Request::Roster { from, iq } => self.roster_request(from, iq, done),
            Request::Probe { from, contact } => self.probe(&from, &contact, done),
            Request::Blocking { from, iq } => self.blocking_request(from, iq, done),
            Request::SessionStarted { session, ready } => {
                self.bound.insert(&session);
                self.ready.push(ready);
            }
            Request::SessionEnded(jid) => self.session_ended(&jid, done),
            Request::ExpireItems => {
                let outcome = self.domain.service.expire_items();
                done.push(Done::new(Origin::Domain, outcome.effects, outcome.undo));
                for (account, hosted) in &mut self.accounts {
                    let outcome = hosted.service.expire_items();
                    let origin = Origin::Account(account.clone());
                    done.push(Done::new(origin, outcome.effects, outcome.undo));
                }
            }
        }
    }

    /// A session ended: its presence is retracted and its temporary subscriptions end, in
    /// `pubsub.<domain>` and in the services known to hold temporary subscriptions (not in
    /// every resident service).
    fn session_ended(&mut self, jid: &Jid, done: &mut Vec<Done>) {
        if let Ok(full) = jid.try_as_full() {
            self.interested.remove(full);
            self.blocklist_interested.remove(full);
            self.bound.remove(full);
            self.retract_presence(full, done);
        }
        let outcome = self.domain.service.end_session(jid);
        done.push(Done::new(Origin::Domain, outcome.effects, outcome.undo));
        let holders: Vec<BareJid> = self.temporary.iter().cloned().collect();
        for account in holders {
            if let Some(hosted) = self.accounts.get_mut(&account) {
                let outcome = hosted.service.end_session(jid);
                let origin = Origin::Account(account.clone());
                done.push(Done::new(origin, outcome.effects, outcome.undo));
            }
            self.note_temporary(&account);
        }
    }

    /// `<presence/>` → publish the stanza as the resource's item; `unavailable` → retract it.
    fn classic_presence(&mut self, from: &FullJid, stanza: &Element, done: &mut Vec<Done>) {
        if stanza.attr("type") == Some("unavailable") {
            return self.retract_presence(from, done);
        }
        self.came_online(from, done);
        let account = from.to_bare();
        let Some(hosted) = self.accounts.get_mut(&account) else {
            return;
        };
        let payload: String = String::from_utf8(verona_stream::element_bytes(stanza))
            .expect("serialised XML is UTF-8");
        let request = PublishRequest::payload(Some(from.resource().as_str()), payload);
        match hosted
            .service
            .publish(&Jid::from(from.clone()), PRESENCE_NODE, request)
        {
            Ok(outcome) => self.presence_changed(from, outcome, done),
            Err(e) => tracing::warn!(jid = %from, "publishing presence: {e}"),
        }
    }

    /// RFC 6121 §3 subscription stanzas as operations on the owner's presence node. Requests
    /// that make no sense (nothing pending, nothing to end) change nothing, as RFC 6121 asks.
    fn classic_subscription(
        &mut self,
        from: &FullJid,
        contact: &BareJid,
        kind: SubscriptionKind,
        done: &mut Vec<Done>,
    ) {
        let owner = kind.owner(from, contact);
        let Some(hosted) = self.accounts.get_mut(&owner) else {
            return;
        };
        let service = &mut hosted.service;
        let me = Jid::from(from.to_bare());
        let them = Jid::from(contact.clone());
        let outcome = match kind {
            // Asking again while subscribed or pending changes nothing (RFC 6121 §3.1.3).
            SubscriptionKind::Subscribe
                if !service
                    .own_subscriptions(&me, Some(PRESENCE_NODE))
                    .is_empty() =>
            {
                return;
            }
            SubscriptionKind::Subscribe => {
                let mut options = SubscriptionOptions::default();
                options
                    .custom
                    .insert(VIEW_OPTION.to_owned(), "presence".to_owned());
                service
                    .subscribe(&self.presence, &me, PRESENCE_NODE, &me, Some(options))
                    .map(|o| (o.effects, o.undo))
            }
            SubscriptionKind::Unsubscribe => service
                .unsubscribe(&me, PRESENCE_NODE, &me, None)
                .map(|o| (o.effects, o.undo)),
            SubscriptionKind::Subscribed => service
                .authorize(&me, PRESENCE_NODE, &them, None, true)
                .map(|o| (o.effects, o.undo)),
            // An approved subscription ends; a pending one is denied.
            SubscriptionKind::Unsubscribed
                if self.presence.has_presence_subscription(&owner, contact) =>
            {
                let end = SubscriptionChange {
                    jid: them.clone(),
                    subid: None,
                    subscribed: false,
                };
                service
                    .set_subscriptions(&self.presence, &me, PRESENCE_NODE, &[end])
                    .map(|o| (o.effects, o.undo))
            }
            SubscriptionKind::Unsubscribed => service
                .authorize(&me, PRESENCE_NODE, &them, None, false)
                .map(|o| (o.effects, o.undo)),
        };
        match outcome {
            Ok((effects, undo)) => {
                let origin = Origin::Account(owner);
                let refresh = touches_presence_subscriptions(&effects);
                done.push(Done::new(origin.clone(), effects, undo));
                if refresh {
                    self.refresh_presence(&origin);
                }
            }
            Err(e) => tracing::debug!(jid = %from, ?kind, "subscription presence ignored: {e}"),
        }
    }

    /// A session's first presence: it gets the current items of every node it is subscribed to
    /// that sends them on presence (its contacts' presence among them), the presence of its
    /// account's other available resources (RFC 6121 §4.2.2), and the authorization requests
    /// still waiting for its account (XEP-0207 §4).
    fn came_online(&mut self, session: &FullJid, done: &mut Vec<Done>) {
        if !self.available.insert(session) {
            return;
        }
        let owner = session.to_bare();
        let to = Jid::from(session.clone());
        for hosted in std::iter::once(&self.domain).chain(self.accounts.get(&owner)) {
            let context = ServiceContext {
                jid: &hosted.jid,
                kind: hosted.kind,
                resolver: &self.presence,
            };
            for request in hosted.service.pending_for_owner(&owner) {
                let out = verona_pubsub_xmpp::authorization_for(&context, &request, &to);
                let owner = hosted.jid.to_bare();
                let made = self.made_classically(&owner, &request.subscriber.to_bare());
                let effect = Effect::AuthorizationRequest(request);
                let origin = Origin::Account(hosted.jid.to_bare());
                let classic = (hosted.kind == ServiceKind::Pep)
                    .then(|| classic_presence(&origin, &effect))
                    .flatten();
                self.router.deliver_views(
                    &out.to,
                    out.stanza,
                    made,
                    |_| true,
                    || classic.map(|stanzas| classic_bytes(&stanzas, &out.to)),
                );
            }
        }
        // Only resident services can have anything to send: an account that is not resident
        // has no presence items, and the other services the user subscribes to were made
        // resident for this batch.
        let owners: HashSet<&BareJid> = std::iter::once(&owner)
            .chain(self.presence.following(&owner))
            .chain(self.relations.get(&owner).into_iter().flatten())
            .collect();
        let services = std::iter::once((Origin::Domain, &self.domain)).chain(
            owners.into_iter().filter_map(|account| {
                let hosted = self.accounts.get(account)?;
                Some((Origin::Account(account.clone()), hosted))
            }),
        );
        for (origin, hosted) in services {
            let effects: Vec<Effect> = hosted
                .service
                .on_presence(session)
                .into_iter()
                .map(Effect::SendLastItems)
                .collect();
            if !effects.is_empty() {
                done.push(Done::new_effects(origin, effects));
            }
        }
        done.extend(self.last_notify_items(session));
        let own = self.presence_items(&owner);
        if !own.is_empty() {
            let last = verona_pubsub::LastItems {
                to,
                node: PRESENCE_NODE.to_owned(),
                subid: String::new(),
                items: own,
            };
            let origin = Origin::Account(owner);
            done.push(Done::new_effects(origin, vec![Effect::SendLastItems(last)]));
        }
    }

    /// A resource's presence item changed: the change waits for the commit like any other,
    /// and is reflected to the account's own resources.
    fn presence_changed<T>(
        &self,
        from: &FullJid,
        outcome: verona_pubsub::Outcome<T>,
        done: &mut Vec<Done>,
    ) {
        let origin = Origin::Account(from.to_bare());
        done.push(Done::new(origin, outcome.effects, outcome.undo));
        self.reflect_presence(from, done);
    }

    /// RFC 6121 §4.2.2, §4.4.2, §4.5.2: a change of an account's presence also goes to the
    /// account's own available resources, the one that changed included.
    fn reflect_presence(&self, from: &FullJid, done: &mut Vec<Done>) {
        let owner = from.to_bare();
        let recipients: Vec<Recipient> = self.available.of(&owner).map(recipient).collect();
        if recipients.is_empty() {
            return;
        }
        let resource = from.resource().as_str();
        let items: Vec<verona_pubsub::Item> = self
            .presence_items(&owner)
            .into_iter()
            .filter(|item| item.id == resource)
            .collect();
        let event = if items.is_empty() {
            Event::Retract {
                ids: vec![resource.to_owned()],
            }
        } else {
            Event::Items { items }
        };
        let notification = verona_pubsub::Notification {
            node: PRESENCE_NODE.to_owned(),
            event,
            recipients: recipients.into(),
            notification_type: verona_pubsub::NotificationType::Headline,
            presence_based_delivery: false,
            itemreply: ItemReply::Publisher,
        };
        let effects = vec![Effect::Notify(notification)];
        done.push(Done::new_effects(Origin::Account(owner), effects));
    }

    /// The current items of an account's presence node: its available resources' presence.
    fn presence_items(&self, account: &BareJid) -> Vec<verona_pubsub::Item> {
        self.accounts
            .get(account)
            .and_then(|hosted| {
                let owner = Jid::from(account.clone());
                let query = verona_pubsub::ItemQuery::All;
                let page = hosted
                    .service
                    .items(&self.presence, &owner, PRESENCE_NODE, &query);
                page.ok()
            })
            .map(|page| page.items)
            .unwrap_or_default()
    }

    /// How `subscriber`'s subscription to `owner`'s presence node was made, if it has one.
    fn made_classically(&self, owner: &BareJid, subscriber: &BareJid) -> Option<bool> {
        let known = self.presence.has_relation(owner, subscriber);
        known.then(|| self.presence.subscribed_classically(owner, subscriber))
    }

    /// RFC 6121 §4.3: a probe is answered from the contact's presence node, to a subscriber
    /// only; the user's own account may be probed by its resources.
    fn probe(&self, from: &FullJid, contact: &BareJid, done: &mut Vec<Done>) {
        let me = from.to_bare();
        let answer = |stanza: Element| {
            let mut stanza = stanza;
            set_attr(&mut stanza, "to", from.as_str());
            Done::reply(from.clone(), Some(stanza))
        };
        if *contact != me && !self.presence.has_presence_subscription(contact, &me) {
            let refused = builder("presence", ns::CLIENT)
                .with("type", "unsubscribed")
                .with("from", contact.as_str())
                .build();
            done.push(answer(refused));
            return;
        }
        let presences: Vec<Element> = self
            .presence_items(contact)
            .iter()
            .filter(|item| *contact != me || item.id != from.resource().as_str())
            .filter_map(|item| item.payload.as_deref()?.parse().ok())
            .collect();
        if presences.is_empty() && *contact != me {
            let gone = builder("presence", ns::CLIENT)
                .with("type", "unavailable")
                .with("from", contact.as_str())
                .build();
            done.push(answer(gone));
        }
        done.extend(presences.into_iter().map(answer));
    }

    /// The resource went offline: its presence item is retracted (subscribers see it go).
    fn retract_presence(&mut self, from: &FullJid, done: &mut Vec<Done>) {
        self.available.remove(from);
        let account = from.to_bare();
        let Some(hosted) = self.accounts.get_mut(&account) else {
            return;
        };
        let resource = from.resource().as_str();
        let current = hosted
            .service
            .items(
                &self.presence,
                &Jid::from(account.clone()),
                PRESENCE_NODE,
                &verona_pubsub::ItemQuery::Ids(vec![resource.to_owned()]),
            )
            .is_ok_and(|page| !page.items.is_empty());
        if !current {
            return;
        }
        match hosted
            .service
            .retract(&Jid::from(account.clone()), PRESENCE_NODE, resource, true)
        {
            Ok(outcome) => self.presence_changed(from, outcome, done),
            Err(e) => tracing::warn!(jid = %from, "retracting presence: {e}"),
        }
    }

    /// An answer sent to the server goes to `pubsub.<domain>` when that service has the node,
    /// otherwise to the sender's own PEP service (e.g. its `presence` node).
    fn answer_origin(&self, from: &FullJid, stanza: &Element) -> Origin {
        let node = stanza
            .children()
            .filter(|x| x.is("x", ns::DATA_FORMS))
            .flat_map(|x| x.children())
            .find(|field| field.attr("var") == Some("pubsub#node"))
            .and_then(|field| field.children().next())
            .map(|value| value.text());
        let on_domain = node.is_some_and(|node| self.domain.service.metadata(&node).is_some());
        if on_domain || !self.accounts.contains_key(&from.to_bare()) {
            Origin::Domain
        } else {
            Origin::Account(from.to_bare())
        }
    }

    /// Replies and notifications, once the batch is durable.
    fn deliver(&self, done: Vec<Done>) {
        for d in done {
            if let (Some(to), Some(reply)) = (&d.to, &d.reply) {
                let bytes = Bytes::from(verona_stream::element_bytes(reply));
                self.router.deliver(&Jid::from(to.clone()), bytes);
            }
            if d.effects.is_empty() {
                continue;
            }
            let Some(hosted) = self.hosted(&d.origin) else {
                continue;
            };
            let context = ServiceContext {
                jid: &hosted.jid,
                kind: hosted.kind,
                resolver: &self.presence,
            };
            for effect in &d.effects {
                let implicit = self.implicit(&d.origin, hosted, effect);
                let mut outgoing =
                    verona_pubsub_xmpp::render(&context, std::slice::from_ref(effect));
                if let Some(implicit) = &implicit {
                    let more = verona_pubsub_xmpp::render(&context, std::slice::from_ref(implicit));
                    outgoing.extend(more);
                }
                // XEP-0191: nothing from an account reaches one that blocked it.
                if let Origin::Account(owner) = &d.origin {
                    outgoing.retain(|out| !self.router.blocks(&out.to.to_bare(), owner));
                }
                let Some(classic) = classic_presence(&d.origin, effect) else {
                    for out in outgoing {
                        self.router.deliver(&out.to, out.stanza);
                    }
                    continue;
                };
                // Last items come as one message per item, all to one recipient; the classic
                // stanzas for all of them go with the first.
                let once = matches!(effect, Effect::SendLastItems(_));
                // Presence goes to the available resources of a subscribed account only
                // (XEP-0207 Ex. 4, RFC 6121 §4.2.2).
                let broadcast = matches!(effect, Effect::Notify(n)
                    if matches!(n.event, Event::Items { .. } | Event::Retract { .. }));
                let owner = hosted.jid.to_bare();
                for (n, out) in outgoing.into_iter().enumerate() {
                    let stanzas = (!once || n == 0).then_some(&classic);
                    let made = match effect {
                        Effect::AuthorizationRequest(request) => {
                            self.made_classically(&owner, &request.subscriber.to_bare())
                        }
                        _ => match out.to.try_as_full() {
                            Ok(full) => self.made_classically(&owner, &full.to_bare()),
                            Err(bare) => self.made_classically(&owner, bare),
                        },
                    };
                    let to_bare = out.to.try_as_full().err();
                    let wanted = |resource: &str| {
                        !broadcast || to_bare.is_none_or(|bare| self.available.has(bare, resource))
                    };
                    self.router
                        .deliver_views(&out.to, out.stanza, made, wanted, || {
                            stanzas.map(|stanzas| classic_bytes(stanzas, &out.to))
                        });
                }
            }
        }
    }

    /// Who gets an event of a PEP node without subscribing to it: every available resource of
    /// the account and of its presence subscribers whose capabilities ask for `NODE+notify`
    /// and that may read the node (XEP-0163 §4.3).
    fn implicit(&self, origin: &Origin, hosted: &Hosted, effect: &Effect) -> Option<Effect> {
        let (Origin::Account(owner), Effect::Notify(notification)) = (origin, effect) else {
            return None;
        };
        if !matches!(
            notification.event,
            Event::Items { .. } | Event::Retract { .. } | Event::Purge
        ) || [PRESENCE_NODE, ROSTER_NODE].contains(&notification.node.as_str())
        {
            return None;
        }
        let explicit: HashSet<&Jid> = notification.recipients.iter().map(|r| &r.jid).collect();
        let notify = format!("{}+notify", notification.node);
        let recipients: Vec<Recipient> = std::iter::once(owner)
            .chain(self.presence.followers(owner))
            .filter(|contact| !explicit.contains(&Jid::from((*contact).clone())))
            .flat_map(|contact| self.available.of(contact))
            .filter(|session| !explicit.contains(&Jid::from((*session).clone())))
            .filter(|session| self.wants_notify(session, &notify))
            .filter(|session| {
                let actor = Jid::from((*session).clone());
                let read = verona_pubsub::Action::RetrieveItems;
                let node = &notification.node;
                hosted
                    .service
                    .may(&self.presence, &actor, read, node)
                    .is_ok()
            })
            .map(recipient)
            .collect();
        (!recipients.is_empty()).then(|| {
            Effect::Notify(verona_pubsub::Notification {
                recipients: recipients.into(),
                ..notification.clone()
            })
        })
    }

    /// Whether a session's verified capabilities include `feature`.
    fn wants_notify(&self, session: &FullJid, feature: &str) -> bool {
        self.router
            .session(session)
            .and_then(|handle| handle.features())
            .is_some_and(|features| features.contains(feature))
    }

    /// XEP-0163 §4.3: a newly available session that asks for `NODE+notify` gets the last
    /// item of every such node of its own account and of the accounts it follows.
    fn last_notify_items(&self, session: &FullJid) -> Vec<Done> {
        let Some(features) = self.router.session(session).and_then(|h| h.features()) else {
            return Vec::new();
        };
        let me = session.to_bare();
        let actor = Jid::from(session.clone());
        let mut done = Vec::new();
        for owner in std::iter::once(&me).chain(self.presence.following(&me)) {
            let Some(hosted) = self.accounts.get(owner) else {
                continue;
            };
            let effects: Vec<Effect> = hosted
                .service
                .node_ids()
                .filter(|node| ![PRESENCE_NODE, ROSTER_NODE].contains(&node.as_str()))
                .filter(|node| features.contains(&format!("{node}+notify")))
                .filter_map(|node| {
                    let query = verona_pubsub::ItemQuery::Latest(1);
                    let page = hosted
                        .service
                        .items(&self.presence, &actor, node, &query)
                        .ok()?;
                    (!page.items.is_empty()).then(|| {
                        Effect::SendLastItems(verona_pubsub::LastItems {
                            to: actor.clone(),
                            node: node.clone(),
                            subid: String::new(),
                            items: page.items,
                        })
                    })
                })
                .collect();
            if !effects.is_empty() {
                done.push(Done::new_effects(Origin::Account(owner.clone()), effects));
            }
        }
        done
    }
}

/// The classic view of a presence-node event (DESIGN §3): the `<presence/>` stanzas a classic
/// session gets instead (none for events classic presence has no word for). `None` when the
/// effect is not about a presence node.
fn classic_presence(origin: &Origin, effect: &Effect) -> Option<Vec<Element>> {
    let Origin::Account(owner) = origin else {
        return None;
    };
    let payloads = |items: &[verona_pubsub::Item]| -> Vec<Element> {
        items
            .iter()
            .filter_map(|item| item.payload.as_deref()?.parse().ok())
            .collect()
    };
    match effect {
        Effect::Notify(notification) if notification.node == PRESENCE_NODE => {
            Some(match &notification.event {
                Event::Items { items } => payloads(items),
                Event::Retract { ids } => ids
                    .iter()
                    .map(|resource| {
                        builder("presence", ns::CLIENT)
                            .with("type", "unavailable")
                            .with("from", format!("{owner}/{resource}"))
                            .build()
                    })
                    .collect(),
                // RFC 6121 §3.1.5–3.1.6: the subscriber learns the owner's answer.
                Event::Subscription { state, .. } => {
                    let kind = match state {
                        SubscriptionState::Subscribed => "subscribed",
                        SubscriptionState::None => "unsubscribed",
                        _ => return Some(Vec::new()),
                    };
                    vec![
                        builder("presence", ns::CLIENT)
                            .with("type", kind)
                            .with("from", owner.as_str())
                            .build(),
                    ]
                }
                _ => Vec::new(),
            })
        }
        Effect::SendLastItems(last) if last.node == PRESENCE_NODE => Some(payloads(&last.items)),
        // RFC 6121 §3.1.3: the owner is asked with a subscription request.
        Effect::AuthorizationRequest(request) if request.node == PRESENCE_NODE => Some(vec![
            builder("presence", ns::CLIENT)
                .with("type", "subscribe")
                .with("from", request.subscriber.to_bare().as_str())
                .build(),
        ]),
        _ => None,
    }
}

/// The classic stanzas for one recipient, serialised.
fn classic_bytes(stanzas: &[Element], to: &Jid) -> Bytes {
    let mut bytes = Vec::new();
    for stanza in stanzas {
        let mut stanza = stanza.clone();
        set_attr(&mut stanza, "to", to.as_str());
        bytes.extend(verona_stream::element_bytes(&stanza));
    }
    Bytes::from(bytes)
}

/// XEP-0207 §3: the item id of a presence publish is the publishing resource, whatever the
/// request says (the seed's Ex. 3 sends none), and the `<presence/>` inside is from that
/// resource, so nobody can publish presence in another's name. Returns whether the stanza is
/// such a publish.
fn own_presence_item_id(stanza: &mut Element, from: &FullJid) -> bool {
    let publish = stanza
        .get_child_mut("pubsub", ns::PUBSUB)
        .and_then(|pubsub| pubsub.get_child_mut("publish", ns::PUBSUB))
        .filter(|publish| publish.attr("node") == Some(PRESENCE_NODE));
    let Some(item) = publish.and_then(|p| p.get_child_mut("item", ns::PUBSUB)) else {
        return false;
    };
    set_attr(item, "id", from.resource().as_str());
    if let Some(presence) = item.get_child_mut("presence", ns::CLIENT) {
        set_attr(presence, "from", from.as_str());
    }
    true
}

/// Whether effects change who is subscribed to a `presence` node.
fn touches_presence_subscriptions(effects: &[Effect]) -> bool {
    effects.iter().any(|effect| match effect {
        Effect::Persist(
            StoreOp::SubscriptionSet { node, .. }
            | StoreOp::SubscriptionRemoved { node, .. }
            | StoreOp::NodeDeleted { node },
        ) => node == PRESENCE_NODE,
        Effect::Notify(notification) => {
            notification.node == PRESENCE_NODE
                && matches!(
                    notification.event,
                    Event::Subscription { .. } | Event::Delete { .. }
                )
        }
        _ => false,
    })
}

/// A recipient outside any subscription: a session getting an event by its capabilities or as
/// its own account's presence.
fn recipient(session: &FullJid) -> Recipient {
    Recipient {
        jid: Jid::from(session.clone()),
        subids: Vec::new(),
        show_values: None,
        include_body: false,
    }
}

/// A PEP publish that notified no subscriber, as a notification with no recipients yet, so
/// that contacts asking for `NODE+notify` still hear of it (XEP-0163 §4.3; see `implicit`).
fn unheard_publish(
    hosted: &Hosted,
    owner: &BareJid,
    request: &Element,
    reply: Option<&Element>,
    effects: &[Effect],
) -> Option<(BareJid, verona_pubsub::Notification)> {
    let node = publishes_to(request)?;
    let notified = effects
        .iter()
        .any(|e| matches!(e, Effect::Notify(n) if n.node == node));
    if notified || [PRESENCE_NODE, ROSTER_NODE].contains(&node) {
        return None;
    }
    let id = reply?
        .get_child("pubsub", ns::PUBSUB)?
        .get_child("publish", ns::PUBSUB)?
        .get_child("item", ns::PUBSUB)?
        .attr("id")?;
    let metadata = hosted.service.metadata(node)?;
    let config = metadata.config;
    let owner_jid = Jid::from(owner.clone());
    let query = verona_pubsub::ItemQuery::Ids(vec![id.to_owned()]);
    let items = hosted
        .service
        .items(&verona_pubsub::NoRoster, &owner_jid, node, &query)
        .ok()?
        .items;
    Some((
        owner.clone(),
        verona_pubsub::Notification {
            node: node.to_owned(),
            event: Event::Items { items },
            recipients: Vec::new().into(),
            notification_type: config.notification_type,
            presence_based_delivery: config.presence_based_delivery,
            itemreply: config.itemreply,
        },
    ))
}

/// The accounts whose PEP services a request addresses.
fn addressed_accounts(request: &Request) -> Vec<BareJid> {
    match request {
        Request::Stanza {
            target: Target::Account(account),
            ..
        } => vec![account.clone()],
        Request::Presence { from, .. } => vec![from.to_bare()],
        Request::Subscription {
            from,
            contact,
            kind,
        } => vec![kind.owner(from, contact)],
        Request::Probe { contact, .. } => vec![contact.clone()],
        Request::Blocking { from, .. } => vec![from.to_bare()],
        Request::SessionStarted { session, .. } => vec![session.to_bare()],
        // Removing a contact touches both presence nodes.
        Request::Roster { from, iq } => std::iter::once(from.to_bare())
            .chain(roster::set_contact(iq))
            .collect(),
        _ => Vec::new(),
    }
}

/// The session a request may bring online: an available `<presence/>` broadcast, or a publish
/// to its own `presence` node.
fn coming_online(request: &Request) -> Option<&FullJid> {
    match request {
        Request::Presence { from, stanza } if stanza.attr("type") != Some("unavailable") => {
            Some(from)
        }
        Request::Stanza {
            from,
            target: Target::Account(account),
            stanza,
        } if *account == from.to_bare() && publishes_to(stanza) == Some(PRESENCE_NODE) => {
            Some(from)
        }
        _ => None,
    }
}

/// The node a pubsub publish request is for.
fn publishes_to(stanza: &Element) -> Option<&str> {
    stanza
        .get_child("pubsub", ns::PUBSUB)?
        .get_child("publish", ns::PUBSUB)?
        .attr("node")
}

/// Whether a request may create or change a subscription's options (and so make it
/// temporary, or not).
fn changes_subscription_options(stanza: &Element) -> bool {
    stanza
        .get_child("pubsub", ns::PUBSUB)
        .is_some_and(|pubsub| {
            pubsub.has_child("subscribe", ns::PUBSUB) || pubsub.has_child("options", ns::PUBSUB)
        })
}
