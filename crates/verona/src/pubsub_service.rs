//! The XEP-0060 service at `pubsub.<domain>`: one task owns the engine's `Service` and handles
//! stanzas in batches. The storage writes of a whole batch go into one transaction (group
//! commit); only after it is durable are the batch's requests acknowledged and its notifications
//! sent. If the transaction fails, every operation of the batch is undone, newest first, and each
//! requester is told to retry.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jid::{FullJid, Jid};
use minidom::Element;
use tokio::sync::{mpsc, watch};
use verona_pubsub::{Effect, NoRoster, Service, SystemEnvironment, Undo};
use verona_pubsub_xmpp::{ServiceContext, ServiceKind};
use verona_storage::{PubsubStore, PubsubWrite};

use crate::router::Router;

/// Requests waiting for the service; senders wait when it is full (backpressure).
const QUEUE: usize = 4096;
/// Requests handled, and committed, together at most.
const BATCH: usize = 256;
/// How often items past their node's `pubsub#item_expire` are removed.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

enum Request {
    Stanza {
        from: FullJid,
        stanza: Element,
    },
    /// A session (full JID), or an account's last session (bare JID), ended: temporary
    /// (`expire=presence`) subscriptions made from it end too.
    SessionEnded(Jid),
    /// Remove expired items (from the service's own timer).
    ExpireItems,
}

/// How the rest of the server reaches the service.
#[derive(Clone)]
pub struct PubsubHandle {
    jid: Arc<str>,
    tx: mpsc::Sender<Request>,
}

impl PubsubHandle {
    /// The service's domain, e.g. `pubsub.localhost`.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// Hands a stanza addressed to the service over (`from` already stamped).
    pub async fn submit(&self, from: FullJid, stanza: Element) {
        let _ = self.tx.send(Request::Stanza { from, stanza }).await;
    }

    pub async fn session_ended(&self, jid: Jid) {
        let _ = self.tx.send(Request::SessionEnded(jid)).await;
    }
}

/// Loads the service's stored nodes and starts its task.
pub async fn start(
    jid: String,
    config: verona_pubsub::ServiceConfig,
    store: Arc<dyn PubsubStore>,
    router: Arc<Router>,
    shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) -> anyhow::Result<PubsubHandle> {
    let nodes = store.load_service(&jid).await?;
    tracing::info!(service = %jid, nodes = nodes.len(), "pubsub service loaded");
    let service = Service::restore(config, Box::new(SystemEnvironment::default()), nodes);
    let (tx, rx) = mpsc::channel(QUEUE);
    let jid: Arc<str> = jid.into();
    let task = ServiceTask {
        jid: Jid::new(&jid).map_err(|e| anyhow::anyhow!("service address {jid}: {e}"))?,
        name: jid.to_string(),
        service,
        store,
        router,
    };
    tokio::spawn(async move {
        task.run(rx, shutdown).await;
        // Shutdown waits for this: storage closes only after the last batch is committed.
        drop(alive);
    });
    Ok(PubsubHandle { jid, tx })
}

struct ServiceTask {
    jid: Jid,
    name: String,
    service: Service,
    store: Arc<dyn PubsubStore>,
    router: Arc<Router>,
}

/// One handled request of a batch, waiting for the batch's commit.
struct Done {
    to: Option<FullJid>,
    request: Option<Element>,
    reply: Option<Element>,
    effects: Vec<Effect>,
    undo: Option<Undo>,
}

impl Done {
    /// Work the service does on its own: nobody to answer.
    fn internal(effects: Vec<Effect>, undo: Undo) -> Self {
        Done {
            to: None,
            request: None,
            reply: None,
            effects,
            undo: Some(undo),
        }
    }
}

impl ServiceTask {
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
            self.handle_batch(batch.drain(..)).await;
        }
    }

    async fn handle_batch(&mut self, requests: impl Iterator<Item = Request>) {
        let mut done = self.handle_requests(requests);
        let writes: Vec<PubsubWrite> = done
            .iter()
            .flat_map(|d| &d.effects)
            .filter_map(|effect| match effect {
                Effect::Persist(op) => Some(PubsubWrite {
                    service: self.name.clone(),
                    op: op.clone(),
                }),
                _ => None,
            })
            .collect();
        if !writes.is_empty()
            && let Err(e) = self.store.apply(&writes).await
        {
            tracing::error!(service = %self.name, "storing {} writes failed: {e}", writes.len());
            for d in done.iter_mut().rev() {
                if let Some(undo) = d.undo.take() {
                    self.service
                        .undo(undo)
                        .expect("undo handles are applied newest first");
                }
                d.effects.clear();
                d.reply = d
                    .request
                    .as_ref()
                    .and_then(verona_pubsub_xmpp::storage_failed);
            }
        }
        self.deliver(done);
    }

    fn context(&self) -> ServiceContext<'_> {
        ServiceContext {
            jid: &self.jid,
            kind: ServiceKind::Pubsub,
            resolver: &NoRoster,
        }
    }

    /// Runs the batch through the engine (memory only; nothing is durable or sent yet).
    fn handle_requests(&mut self, requests: impl Iterator<Item = Request>) -> Vec<Done> {
        let mut done = Vec::new();
        for request in requests {
            match request {
                Request::Stanza { from, stanza } => {
                    let context = ServiceContext {
                        jid: &self.jid,
                        kind: ServiceKind::Pubsub,
                        resolver: &NoRoster,
                    };
                    let handled = verona_pubsub_xmpp::handle_stanza(
                        &mut self.service,
                        &context,
                        &from,
                        &stanza,
                    );
                    done.push(Done {
                        to: Some(from),
                        request: Some(stanza),
                        reply: handled.reply,
                        effects: handled.effects,
                        undo: handled.undo,
                    });
                }
                Request::SessionEnded(jid) => {
                    let outcome = self.service.end_session(&jid);
                    done.push(Done::internal(outcome.effects, outcome.undo));
                }
                Request::ExpireItems => {
                    let outcome = self.service.expire_items();
                    done.push(Done::internal(outcome.effects, outcome.undo));
                }
            }
        }
        done
    }

    /// Replies and notifications, once the batch is durable.
    fn deliver(&self, done: Vec<Done>) {
        let context = self.context();
        for d in done {
            if let (Some(to), Some(reply)) = (&d.to, &d.reply) {
                let bytes = Bytes::from(verona_stream::element_bytes(reply));
                self.router.deliver(&Jid::from(to.clone()), bytes);
            }
            for out in verona_pubsub_xmpp::render(&context, &d.effects) {
                self.router.deliver(&out.to, out.stanza);
            }
        }
    }
}
