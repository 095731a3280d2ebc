//! Slows down password guessing from one address: after a few failures within a window, every
//! further failure is answered only after a delay that doubles up to a cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const MAX_DELAY: Duration = Duration::from_secs(30);
/// Bound on remembered addresses, so a scan from many addresses cannot grow memory.
const MAX_TRACKED: usize = 65_536;

pub struct AuthThrottle {
    free_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthThrottle {
    pub fn new(free_failures: u32, window: Duration) -> Self {
        AuthThrottle {
            free_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure and returns how long to wait before answering it.
    pub fn failure(&self, addr: IpAddr, now: Instant) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        }
        let entry = failures.entry(addr).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
        let over = entry.0.saturating_sub(self.free_failures);
        if over == 0 {
            return Duration::ZERO;
        }
        let delay = Duration::from_millis(250).saturating_mul(1 << over.min(16));
        delay.min(MAX_DELAY)
    }

    /// A successful login from the address forgives its failures.
    pub fn success(&self, addr: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_free_failures_and_reset() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let delays: Vec<_> = (0..5).map(|_| throttle.failure(ip, t0)).collect();
        assert_eq!(delays[0], Duration::ZERO);
        assert_eq!(delays[1], Duration::ZERO);
        assert_eq!(delays[2], Duration::from_millis(500));
        assert_eq!(delays[3], Duration::from_secs(1));
        assert_eq!(delays[4], Duration::from_secs(2));
        assert_eq!(throttle.failure(other, t0), Duration::ZERO, "per address");
        for _ in 0..20 {
            throttle.failure(ip, t0);
        }
        assert_eq!(throttle.failure(ip, t0), MAX_DELAY);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(throttle.failure(ip, later), Duration::ZERO, "window over");
        throttle.failure(ip, later);
        throttle.success(ip);
        assert_eq!(throttle.failure(ip, later), Duration::ZERO, "forgiven");
    }
}
