//! The connection slots of a listener for other servers or for components: a fixed number, of
//! which those held by connections still proving who they are give way to a newcomer when
//! every slot is taken. Without that, a few dozen addresses holding silent connections (each
//! under its per-address bound) kept every server out of federation, or a gateway from
//! reconnecting, for as long as they liked: a slot was held until the authentication timeout.
//!
//! Who gives way is the connection that has got least far, so that a flood of connections
//! that say nothing cannot push out one that is shaking hands (audit round 24: evicting the
//! oldest alone let 100 addresses, each within its rate, evict every handshake that took
//! longer than the flood took to fill the slots). Among silent ones the oldest goes, so a
//! newcomer has as long as the flood takes to fill every slot to say its first word; among
//! those further on, one at random, so an attacker must go as far (a TLS handshake each) to
//! compete, and even then only makes a handshake likely to be retried, not impossible.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// How long a newcomer waits for the slot an evicted connection gives up.
const GIVE_WAY: Duration = Duration::from_secs(1);

/// How far a connection has got in proving who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Progress {
    /// It has sent a stream header.
    Spoke = 1,
    /// It has done what costs a stranger something: a TLS handshake, a dialback key, a
    /// component's handshake.
    Proving = 2,
}

struct Waiting {
    id: u64,
    progress: Arc<AtomicU8>,
    evict: oneshot::Sender<()>,
}

pub struct Slots {
    permits: Arc<Semaphore>,
    /// The connections still proving who they are, oldest first.
    waiting: Mutex<VecDeque<Waiting>>,
    next: AtomicU64,
    /// Picks among those that got equally far (not for cryptographic use).
    chance: std::collections::hash_map::RandomState,
}

impl Slots {
    pub fn new(count: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(count.max(1))),
            waiting: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(0),
            chance: Default::default(),
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

    /// Tells the connection that got least far to end: the oldest of the silent ones, else one
    /// at random of those least far on. Whether there was one.
    fn evict_one(&self) -> bool {
        let mut waiting = self.waiting();
        let level = |w: &Waiting| w.progress.load(Ordering::Relaxed);
        let Some(least) = waiting.iter().map(level).min() else {
            return false;
        };
        let at = if least == 0 {
            waiting.iter().position(|w| level(w) == 0)
        } else {
            let candidates: Vec<usize> = (0..waiting.len())
                .filter(|&at| level(&waiting[at]) == least)
                .collect();
            let draw = self
                .chance
                .hash_one(self.next.fetch_add(1, Ordering::Relaxed));
            candidates
                .get(usize::try_from(draw % candidates.len() as u64).unwrap_or(0))
                .copied()
        };
        // It may have ended meanwhile; its slot is free then all the same.
        at.and_then(|at| waiting.remove(at))
            .map(|gone| gone.evict.send(()))
            .is_some()
    }

    fn hold(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (evict, evicted) = oneshot::channel();
        let progress = Arc::new(AtomicU8::new(0));
        self.waiting().push_back(Waiting {
            id,
            progress: progress.clone(),
            evict,
        });
        Slot {
            _permit: permit,
            proof: Proof {
                slots: self.clone(),
                id,
                progress,
            },
            evicted,
        }
    }

    fn forget(&self, id: u64) {
        self.waiting().retain(|waiting| waiting.id != id);
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
        self.proof.slots.forget(self.proof.id);
    }
}

/// A connection's way of saying how far it has got: proved, it keeps its slot from then on.
#[derive(Clone)]
pub struct Proof {
    slots: Arc<Slots>,
    id: u64,
    progress: Arc<AtomicU8>,
}

impl Proof {
    pub fn progressed(&self, progress: Progress) {
        self.progress.fetch_max(progress as u8, Ordering::Relaxed);
    }

    pub fn proved(&self) {
        self.slots.forget(self.id);
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
    async fn silent_connections_give_way_before_those_further_on() {
        let slots = Slots::new(3);
        let mut talking = slots.take().await.expect("a free slot");
        talking.proof().progressed(Progress::Proving);
        let mut spoke = slots.take().await.expect("a free slot");
        spoke.proof().progressed(Progress::Spoke);
        let mut silent = slots.take().await.expect("a free slot");
        let newcomer = tokio::spawn(slots.take());
        assert!(
            told(&mut silent).await,
            "the silent one goes, though the newest"
        );
        assert!(!told(&mut spoke).await && !told(&mut talking).await);
        drop(silent);
        let mut newcomer = newcomer.await.unwrap().expect("the silent one's slot");
        newcomer.proof().progressed(Progress::Proving);
        let _next = tokio::spawn(slots.take());
        assert!(told(&mut spoke).await, "then the one that only spoke");
        assert!(!told(&mut talking).await && !told(&mut newcomer).await);
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
