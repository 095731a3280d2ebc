//! The connection slots of a listener for other servers or for components: a fixed number, of
//! which those held by connections still proving who they are give way, oldest first, to a
//! newcomer when every slot is taken. Without that, a few dozen addresses holding silent
//! connections (each under its per-address bound) kept every server out of federation, or a
//! gateway from reconnecting, for as long as they liked: a slot was held until the
//! authentication timeout, and they opened new ones as fast as the old ones timed out.
//! To push a newcomer out, an attacker must open as many connections as are waiting, older
//! than the newcomer, within the newcomer's handshake; the per-address rate bounds that.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// How long a newcomer waits for the slot an evicted connection gives up.
const GIVE_WAY: Duration = Duration::from_secs(1);

pub struct Slots {
    permits: Arc<Semaphore>,
    /// The connections still proving who they are, oldest first, each with the sender that
    /// tells it to end.
    waiting: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    next: AtomicU64,
}

impl Slots {
    pub fn new(count: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(count.max(1))),
            waiting: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection: a free one, or the one the oldest connection still
    /// proving itself gives up (it is told to end, at once: the order of eviction is the
    /// order of arrival). `None` when every slot is held by connections that have proved who
    /// they are, or when the evicted one does not let go in time.
    pub fn take(self: &Arc<Self>) -> impl Future<Output = Option<Slot>> + use<> {
        let slots = self.clone();
        let held = (self.permits.clone().try_acquire_owned().ok()).map(|permit| self.hold(permit));
        let evicted = held.is_none() && {
            let oldest = self.waiting().pop_front();
            // It may have ended meanwhile; its slot is free then all the same.
            oldest.is_some_and(|(_, evict)| {
                let _ = evict.send(());
                true
            })
        };
        async move {
            if held.is_some() || !evicted {
                return held;
            }
            let permits = slots.permits.clone();
            let permit = tokio::time::timeout(GIVE_WAY, permits.acquire_owned())
                .await
                .ok()?
                .ok()?;
            Some(slots.hold(permit))
        }
    }

    fn hold(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (evict, evicted) = oneshot::channel();
        self.waiting().push_back((id, evict));
        Slot {
            _permit: permit,
            proof: Proof {
                slots: self.clone(),
                id,
            },
            evicted,
        }
    }

    fn forget(&self, id: u64) {
        self.waiting().retain(|(waiting, _)| *waiting != id);
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, oneshot::Sender<()>)>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's slot, held until it drops.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    proof: Proof,
    evicted: oneshot::Receiver<()>,
}

impl Slot {
    /// What the connection tells once it has proved who it is.
    pub fn proof(&self) -> Proof {
        self.proof.clone()
    }

    /// Resolves when the connection must give its slot to a newer one; never once it has
    /// proved who it is.
    pub async fn evicted(&mut self) {
        if (&mut self.evicted).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.proof.slots.forget(self.proof.id);
    }
}

/// A connection's way of saying it has proved who it is: it keeps its slot from then on.
#[derive(Clone)]
pub struct Proof {
    slots: Arc<Slots>,
    id: u64,
}

impl Proof {
    pub fn proved(&self) {
        self.slots.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_unproved_connection_gives_way() {
        let slots = Slots::new(2);
        let mut first = slots.take().await.expect("a free slot");
        let mut second = slots.take().await.expect("a free slot");
        let newcomer = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await.is_some() }
        });
        // The first is told to end, not the second; it gives its slot up by ending.
        tokio::time::timeout(Duration::from_secs(5), first.evicted())
            .await
            .expect("the oldest is evicted");
        let told = tokio::time::timeout(Duration::from_millis(50), second.evicted()).await;
        assert!(told.is_err(), "the second keeps its slot");
        drop(first);
        assert!(newcomer.await.unwrap(), "the newcomer has the slot");
    }

    #[tokio::test]
    async fn proved_connections_keep_their_slots() {
        let slots = Slots::new(1);
        let mut held = slots.take().await.expect("a free slot");
        held.proof().proved();
        assert!(slots.take().await.is_none(), "nobody gives way");
        let told = tokio::time::timeout(Duration::from_millis(50), held.evicted()).await;
        assert!(told.is_err(), "a proved connection is not told to end");
        drop(held);
        assert!(
            slots.take().await.is_some(),
            "its slot is free once it ends"
        );
    }

    #[tokio::test]
    async fn a_newcomer_gives_up_when_the_slot_is_not_given_back() {
        let slots = Slots::new(1);
        let _stuck = slots.take().await.expect("a free slot");
        // Told to end, the connection is still holding on (never polled): after a while the
        // newcomer is refused rather than kept waiting.
        assert!(slots.take().await.is_none());
    }
}
