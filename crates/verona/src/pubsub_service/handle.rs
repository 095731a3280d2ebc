//! How the rest of the server reaches the services: each request goes to the shard that owns
//! the service it is for.

use super::*;

/// How the rest of the server reaches the services.
#[derive(Clone)]
pub struct PubsubHandle {
    pub(super) jid: Arc<str>,
    pub(super) tx: mpsc::Sender<Request>,
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
