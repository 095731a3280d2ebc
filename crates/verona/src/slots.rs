//! The connection slots of a listener for other servers or for components: a fixed number, of
//! which those held by connections still proving who they are give way to a newcomer when
//! every slot is taken. Without that, a few dozen addresses holding silent connections (each
//! under its per-address bound) kept every server out of federation, or a gateway from
//! reconnecting, for as long as they liked: a slot was held until the authentication timeout.
//!
//! Who gives way: first the oldest of the connections that have said nothing yet; else the
//! one that has gone longest without a step forward (its header, STARTTLS, its TLS handshake
//! done, a dialback key, a component's handshake). Connections that stop after a step (ones
//! that only send a header, or only shake hands) then cannot push out a server taking its steps
//! as fast as the network lets it, unless a slot's worth of them step between two of its steps.
//! Audit rounds 24 and 25: evicting the oldest let a silent flood from 100 addresses evict
//! every handshake slower than 0.2 s; evicting those least far on let a flood completing TLS
//! at 5 a second evict a server in the middle of its own TLS handshake.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// How long a newcomer waits for the slot an evicted connection gives up.
const GIVE_WAY: Duration = Duration::from_secs(1);

struct Waiting {
    /// When it last took a step, as microseconds since the slots were made; 0: it has said
    /// nothing yet. Also who it is: the connection's [`Proof`] holds the same.
    stepped: Arc<AtomicU64>,
    evict: oneshot::Sender<()>,
}

pub struct Slots {
    permits: Arc<Semaphore>,
    /// The connections still proving who they are, oldest first.
    waiting: Mutex<VecDeque<Waiting>>,
    made: Instant,
}

impl Slots {
    pub fn new(count: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(count.max(1))),
            waiting: Mutex::new(VecDeque::new()),
            made: Instant::now(),
        })
    }

    /// A slot for a new connection: a free one, or the one a connection still proving
    /// itself gives up (it is told to end, at once). `None` when every slot is held by
    /// connections that have proved who they are, or when the evicted one does not let go in
    /// time.
    pub fn take(self: &Arc<Self>) -> impl Future<Output = Option<Slot>> + use<> {
        let slots = self.clone();
        let held = (self.permits.clone().try_acquire_owned().ok()).map(|permit| self.hold(permit));
        let evicted = held.is_none() && self.evict_one();
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

    /// Tells the oldest connection that has said nothing to end, else the one that has gone
    /// longest without a step. Whether there was one.
    fn evict_one(&self) -> bool {
        let mut waiting = self.waiting();
        let stalest = (waiting.iter().enumerate())
            .min_by_key(|(at, w)| (w.stepped.load(Ordering::Relaxed), *at))
            .map(|(at, _)| at);
        // It may have ended meanwhile; its slot is free then all the same.
        stalest
            .and_then(|at| waiting.remove(at))
            .map(|gone| gone.evict.send(()))
            .is_some()
    }

    /// Never 0, which stands for "nothing said yet".
    fn now(&self) -> u64 {
        u64::try_from(self.made.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn hold(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let (evict, evicted) = oneshot::channel();
        let stepped = Arc::new(AtomicU64::new(0));
        self.waiting().push_back(Waiting {
            stepped: stepped.clone(),
            evict,
        });
        Slot {
            _permit: permit,
            proof: Proof {
                slots: self.clone(),
                stepped,
            },
            evicted,
        }
    }

    fn forget(&self, stepped: &Arc<AtomicU64>) {
        self.waiting()
            .retain(|waiting| !Arc::ptr_eq(&waiting.stepped, stepped));
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
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
    /// What the connection tells of its progress.
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
        self.proof.slots.forget(&self.proof.stepped);
    }
}

/// A connection's way of saying it took a step: proved, it keeps its slot from then on.
#[derive(Clone)]
pub struct Proof {
    slots: Arc<Slots>,
    stepped: Arc<AtomicU64>,
}

impl Proof {
    pub fn stepped(&self) {
        self.stepped.store(self.slots.now(), Ordering::Relaxed);
    }

    pub fn proved(&self) {
        self.slots.forget(&self.stepped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn told(slot: &mut Slot) -> bool {
        tokio::time::timeout(Duration::from_millis(50), slot.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_oldest_silent_connection_gives_way() {
        let slots = Slots::new(2);
        let mut first = slots.take().await.expect("a free slot");
        let mut second = slots.take().await.expect("a free slot");
        let newcomer = tokio::spawn(slots.take());
        assert!(told(&mut first).await, "the oldest is evicted");
        assert!(!told(&mut second).await, "the second keeps its slot");
        drop(first);
        assert!(
            newcomer.await.unwrap().is_some(),
            "the newcomer has the slot"
        );
    }

    #[tokio::test]
    async fn silent_ones_then_the_longest_without_a_step_give_way() {
        let slots = Slots::new(3);
        let mut stepping = slots.take().await.expect("a free slot");
        let mut stopped = slots.take().await.expect("a free slot");
        stopped.proof().stepped();
        tokio::time::sleep(Duration::from_millis(2)).await;
        stepping.proof().stepped();
        let mut silent = slots.take().await.expect("a free slot");
        // The silent one arrived last, but has said nothing: it goes first.
        let newcomer = tokio::spawn(slots.take());
        assert!(
            told(&mut silent).await,
            "the silent one goes, though the newest"
        );
        assert!(!told(&mut stopped).await && !told(&mut stepping).await);
        drop(silent);
        let mut newcomer = newcomer.await.unwrap().expect("its slot");
        newcomer.proof().stepped();
        let _next = tokio::spawn(slots.take());
        assert!(
            told(&mut stopped).await,
            "then the one that stopped stepping first"
        );
        assert!(!told(&mut stepping).await && !told(&mut newcomer).await);
    }

    #[tokio::test]
    async fn proved_connections_keep_their_slots() {
        let slots = Slots::new(1);
        let mut held = slots.take().await.expect("a free slot");
        held.proof().proved();
        assert!(slots.take().await.is_none(), "nobody gives way");
        assert!(
            !told(&mut held).await,
            "a proved connection is not told to end"
        );
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
