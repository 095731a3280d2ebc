//! The publish-subscribe services: XEP-0060 at `pubsub.<domain>` and XEP-0163 PEP at every
//! account's bare JID. One task owns all of them and handles stanzas in batches. The storage
//! writes of a whole batch go into one transaction (group commit); only after it is durable are
//! the batch's requests acknowledged and its notifications sent. If the transaction fails, every
//! operation of the batch is undone, newest first, and each requester is told to retry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use tokio::sync::{mpsc, watch};
use verona_pubsub::{
    AccessModel, AccessResolver, ConfigField, CreateRequest, Effect, Event, ItemReply, MaxItems,
    PublishRequest, SendLastPublishedItem, Service, ServiceConfig, StoreOp, SubscriptionChange,
    SubscriptionState, SystemEnvironment, Undo,
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
    /// A `jabber:iq:roster` get: the roster is derived from presence-node subscriptions.
    RosterGet { from: FullJid, iq: Element },
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

    /// A roster request (RFC 6121 §2.1.3) from a session.
    pub async fn roster_get(&self, from: FullJid, iq: Element) {
        let _ = self.tx.send(Request::RosterGet { from, iq }).await;
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

/// Loads `pubsub.<domain>` and every stored PEP service and starts the task; the PEP service
/// of an account with nothing stored is created when first used.
pub async fn start(
    jid: String,
    config: ServiceConfig,
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
    let mut task = ServicesTask {
        domain: Hosted {
            jid: address,
            name: jid.clone(),
            kind: ServiceKind::Pubsub,
            service,
        },
        accounts: HashMap::new(),
        presence: PresenceGraph::default(),
        available: HashSet::new(),
        interested: HashSet::new(),
        roster_changes: Vec::new(),
        stores,
        router,
    };
    task.load_stored_accounts().await?;
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

/// One service instance and how it is addressed.
struct Hosted {
    jid: Jid,
    /// The storage key.
    name: String,
    kind: ServiceKind,
    service: Service,
}

/// Who is subscribed to whose `presence` node: the answer of the `presence` access model
/// (DESIGN §1: "presence" means "subscribed to my presence node").
#[derive(Default)]
struct PresenceGraph(HashMap<BareJid, HashSet<BareJid>>);

impl PresenceGraph {
    /// Reads an account's approved presence subscribers from its PEP service; returns the
    /// contacts whose subscription changed.
    fn refresh(&mut self, owner: &BareJid, service: &Service) -> Vec<BareJid> {
        let subscribers: HashSet<BareJid> = service
            .node_subscriptions(&Jid::from(owner.clone()), PRESENCE_NODE)
            .map(|subs| subs.into_iter().map(|s| s.jid.to_bare()).collect())
            .unwrap_or_default();
        let old = self
            .0
            .insert(owner.clone(), subscribers)
            .unwrap_or_default();
        let new = &self.0[owner];
        old.symmetric_difference(new).cloned().collect()
    }
}

impl AccessResolver for PresenceGraph {
    fn has_presence_subscription(&self, owner: &BareJid, contact: &BareJid) -> bool {
        self.0.get(owner).is_some_and(|s| s.contains(contact))
    }

    /// Roster groups live in the `roster` PEP node, which comes with the roster views.
    fn in_roster_group(&self, _owner: &BareJid, _contact: &BareJid, _groups: &[String]) -> bool {
        false
    }
}

fn hosted_pep(account: BareJid, service: Service) -> Hosted {
    Hosted {
        jid: Jid::from(account.clone()),
        name: account.to_string(),
        kind: ServiceKind::Pep,
        service,
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
    accounts: HashMap<BareJid, Hosted>,
    presence: PresenceGraph,
    /// Sessions that have announced their presence (and so got their contacts' current items).
    available: HashSet<FullJid>,
    /// Sessions that asked for the roster, and so get roster pushes (RFC 6121 §2.1.6).
    interested: HashSet<FullJid>,
    /// (user, contact) pairs whose roster item changed in the current batch.
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
        self.load_accounts(&requests, &mut done).await;
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
        // A new pending request changes the asker's item (`ask`); approvals and removals were
        // seen when the presence graph was refreshed.
        for d in &done {
            if let Origin::Account(owner) = &d.origin {
                for effect in &d.effects {
                    if let Effect::AuthorizationRequest(request) = effect
                        && request.node == PRESENCE_NODE
                    {
                        let pair = (owner.clone(), request.subscriber.to_bare());
                        self.roster_changes.push(pair);
                    }
                }
            }
        }
        let changes = std::mem::take(&mut self.roster_changes);
        self.deliver(done);
        self.push_rosters(changes);
    }

    /// Loads every stored PEP service, so that who is subscribed to whom is known from the
    /// start (XEP-0207: the presence graph is the roster).
    async fn load_stored_accounts(&mut self) -> anyhow::Result<()> {
        for name in self.stores.pubsub.services().await? {
            let Ok(account) = BareJid::new(&name) else {
                continue;
            };
            if account.node().is_none() {
                continue;
            }
            let nodes = self.stores.pubsub.load_service(&name).await?;
            let service = Service::restore(
                ServiceConfig::pep(account.clone()),
                Box::new(SystemEnvironment::default()),
                nodes,
            );
            self.presence.refresh(&account, &service);
            self.accounts
                .insert(account.clone(), hosted_pep(account, service));
        }
        tracing::info!(accounts = self.accounts.len(), "PEP services loaded");
        Ok(())
    }

    /// Loads the PEP services the batch addresses that are not in memory yet, creating the
    /// `presence` node of those that lack it.
    async fn load_accounts(&mut self, requests: &[Request], done: &mut Vec<Done>) {
        for request in requests {
            let account = match request {
                Request::Stanza {
                    target: Target::Account(account),
                    ..
                } => account.clone(),
                Request::Presence { from, .. } => from.to_bare(),
                Request::Subscription {
                    from,
                    contact,
                    kind,
                } => kind.owner(from, contact),
                _ => continue,
            };
            let account = &account;
            if self.accounts.contains_key(account) {
                continue;
            }
            match self.stores.accounts.credentials(account.as_str()).await {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(%account, "looking up the account failed: {e}");
                    continue;
                }
            }
            let nodes = match self.stores.pubsub.load_service(account.as_str()).await {
                Ok(nodes) => nodes,
                Err(e) => {
                    tracing::error!(%account, "loading the PEP service failed: {e}");
                    continue;
                }
            };
            let mut service = Service::restore(
                ServiceConfig::pep(account.clone()),
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
            self.presence.refresh(account, &service);
            self.accounts
                .insert(account.clone(), hosted_pep(account.clone(), service));
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
            for contact in self.presence.refresh(account, &hosted.service) {
                self.roster_changes.push((account.clone(), contact));
            }
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
                if matches!(&target, Target::Account(account) if *account == from.to_bare())
                    && own_presence_item_id(&mut stanza, &from)
                {
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
                if touches_presence_subscriptions(&handled.effects) {
                    self.refresh_presence(&origin);
                }
                done.push(Done {
                    origin,
                    to: Some(from),
                    request: Some(stanza),
                    reply: handled.reply,
                    effects: handled.effects,
                    undo: handled.undo,
                });
            }
            Request::Presence { from, stanza } => {
                self.classic_presence(&from, &stanza, done);
            }
            Request::Subscription {
                from,
                contact,
                kind,
            } => self.classic_subscription(&from, &contact, kind, done),
            Request::RosterGet { from, iq } => {
                let items = self.roster_items(&from.to_bare(), None);
                let query = builder("query", ns::ROSTER).append_all(items).build();
                let reply = crate::xml::iq_result(&iq, Some(query));
                self.interested.insert(from.clone());
                done.push(Done::reply(from, Some(reply)));
            }
            Request::SessionEnded(jid) => {
                if let Ok(full) = jid.try_as_full() {
                    self.interested.remove(full);
                    self.retract_presence(full, done);
                }
                let outcome = self.domain.service.end_session(&jid);
                done.push(Done::new(Origin::Domain, outcome.effects, outcome.undo));
                for (account, hosted) in &mut self.accounts {
                    let outcome = hosted.service.end_session(&jid);
                    let origin = Origin::Account(account.clone());
                    done.push(Done::new(origin, outcome.effects, outcome.undo));
                }
            }
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
            Ok(outcome) => done.push(Done::new(
                Origin::Account(account),
                outcome.effects,
                outcome.undo,
            )),
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
            SubscriptionKind::Subscribe => service
                .subscribe(&self.presence, &me, PRESENCE_NODE, &me, None)
                .map(|o| (o.effects, o.undo)),
            SubscriptionKind::Unsubscribe => service
                .unsubscribe(&me, PRESENCE_NODE, &me, None)
                .map(|o| (o.effects, o.undo)),
            SubscriptionKind::Subscribed => service
                .authorize(&me, PRESENCE_NODE, &them, None, true)
                .map(|o| (o.effects, o.undo)),
            SubscriptionKind::Unsubscribed => service
                .authorize(&me, PRESENCE_NODE, &them, None, false)
                .map(|o| (o.effects, o.undo))
                .or_else(|_| {
                    let end = SubscriptionChange {
                        jid: them.clone(),
                        subid: None,
                        subscribed: false,
                    };
                    service
                        .set_subscriptions(&self.presence, &me, PRESENCE_NODE, &[end])
                        .map(|o| (o.effects, o.undo))
                }),
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

    /// The roster as RFC 6121 §2 shows it, derived (DESIGN §2): `from` when the contact follows
    /// the user's presence node, `to` when the user follows the contact's, `both`, and
    /// `ask='subscribe'` while the user's request is pending.
    /// `only` restricts it to one contact (a roster push).
    fn roster_items(&self, me: &BareJid, only: Option<&BareJid>) -> Vec<Element> {
        let me = me.clone();
        let me_jid = Jid::from(me.clone());
        let mut contacts: std::collections::BTreeMap<BareJid, (bool, bool, bool)> =
            std::collections::BTreeMap::new();
        let wanted = |contact: &BareJid| only.is_none_or(|only| only == contact);
        for follower in self.presence.0.get(&me).into_iter().flatten() {
            if wanted(follower) {
                contacts.entry(follower.clone()).or_default().0 = true;
            }
        }
        for (owner, hosted) in &self.accounts {
            if *owner == me || !wanted(owner) {
                continue;
            }
            for sub in hosted
                .service
                .own_subscriptions(&me_jid, Some(PRESENCE_NODE))
            {
                let entry = contacts.entry(owner.clone()).or_default();
                match sub.state {
                    SubscriptionState::Subscribed => entry.1 = true,
                    SubscriptionState::Pending => entry.2 = true,
                    _ => {}
                }
            }
        }
        contacts
            .into_iter()
            .map(|(contact, (from, to, ask))| {
                let subscription = match (from, to) {
                    (true, true) => "both",
                    (true, false) => "from",
                    (false, true) => "to",
                    (false, false) => "none",
                };
                let mut item = builder("item", ns::ROSTER)
                    .with("jid", contact.as_str())
                    .with("subscription", subscription);
                if ask {
                    item = item.with("ask", "subscribe");
                }
                item.build()
            })
            .collect()
    }

    /// Roster pushes (RFC 6121 §2.1.6) for the pairs whose relation changed, to the sessions
    /// of each side that asked for the roster; an item with no relation left is removed.
    fn push_rosters(&self, mut changes: Vec<(BareJid, BareJid)>) {
        changes.sort();
        changes.dedup();
        for (a, b) in changes {
            for (user, contact) in [(&a, &b), (&b, &a)] {
                let sessions: Vec<&FullJid> = self
                    .interested
                    .iter()
                    .filter(|session| session.to_bare() == *user)
                    .collect();
                if sessions.is_empty() {
                    continue;
                }
                let item = self
                    .roster_items(user, Some(contact))
                    .pop()
                    .unwrap_or_else(|| {
                        builder("item", ns::ROSTER)
                            .with("jid", contact.as_str())
                            .with("subscription", "remove")
                            .build()
                    });
                for session in sessions {
                    let push = builder("iq", ns::CLIENT)
                        .with("type", "set")
                        .with("id", crate::c2s::random_id())
                        .with("to", session.as_str())
                        .append(builder("query", ns::ROSTER).append(item.clone()).build())
                        .build();
                    let bytes = Bytes::from(verona_stream::element_bytes(&push));
                    self.router.deliver(&Jid::from(session.clone()), bytes);
                }
            }
        }
    }

    /// A session's first presence: it gets the current items of every node it is subscribed to
    /// that sends them on presence (its contacts' presence among them), and the authorization
    /// requests still waiting for its account (XEP-0207 §4).
    fn came_online(&mut self, session: &FullJid, done: &mut Vec<Done>) {
        if !self.available.insert(session.clone()) {
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
                let effect = Effect::AuthorizationRequest(request);
                let origin = Origin::Account(hosted.jid.to_bare());
                let classic = (hosted.kind == ServiceKind::Pep)
                    .then(|| classic_presence(&origin, &effect))
                    .flatten();
                self.router.deliver_views(&out.to, out.stanza, || {
                    classic.map(|stanzas| classic_bytes(&stanzas, &out.to))
                });
            }
        }
        let services = std::iter::once((Origin::Domain, &self.domain)).chain(
            self.accounts
                .iter()
                .map(|(account, hosted)| (Origin::Account(account.clone()), hosted)),
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
            Ok(outcome) => done.push(Done::new(
                Origin::Account(account),
                outcome.effects,
                outcome.undo,
            )),
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
                let outgoing = verona_pubsub_xmpp::render(&context, std::slice::from_ref(effect));
                let Some(classic) = classic_presence(&d.origin, effect) else {
                    for out in outgoing {
                        self.router.deliver(&out.to, out.stanza);
                    }
                    continue;
                };
                // Last items come as one message per item, all to one recipient; the classic
                // stanzas for all of them go with the first.
                let once = matches!(effect, Effect::SendLastItems(_));
                for (n, out) in outgoing.into_iter().enumerate() {
                    let stanzas = (!once || n == 0).then_some(&classic);
                    self.router.deliver_views(&out.to, out.stanza, || {
                        stanzas.map(|stanzas| classic_bytes(stanzas, &out.to))
                    });
                }
            }
        }
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
