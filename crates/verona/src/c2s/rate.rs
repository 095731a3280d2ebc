//! How fast a client (or another server) may send (issue #11 M1, M2): a token bucket over the
//! bytes read from its socket, and one over what all of an account's sessions read. Past the
//! burst, reading pauses until the bucket refills, so a flood slows its own sender only; writes
//! to it go on meanwhile.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct ReadRate {
    /// Bytes per second; 0: unlimited.
    per_sec: u64,
    burst: u64,
    /// Bytes that may be read now; negative while paused.
    tokens: f64,
    last: Instant,
}

impl ReadRate {
    pub(crate) fn new(per_sec: u64, burst: u64, now: Instant) -> Self {
        ReadRate {
            per_sec,
            burst,
            tokens: burst as f64,
            last: now,
        }
    }

    /// `bytes` were read at `now`; returns until when reading pauses, if it must.
    pub(crate) fn consumed(&mut self, bytes: usize, now: Instant) -> Option<Instant> {
        if self.per_sec == 0 {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec as f64).min(self.burst as f64);
        self.tokens -= bytes as f64;
        (self.tokens < 0.0)
            .then(|| now + Duration::from_secs_f64(-self.tokens / self.per_sec as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut rate = ReadRate::new(1000, 4000, t0);
        assert_eq!(rate.consumed(4000, t0), None, "the burst is free");
        assert_eq!(
            rate.consumed(500, t0),
            Some(t0 + Duration::from_millis(500)),
            "then 1000 bytes a second"
        );
        let later = t0 + Duration::from_secs(2);
        assert_eq!(rate.consumed(1000, later), None, "refilled meanwhile");
        let mut unlimited = ReadRate::new(0, 0, t0);
        assert_eq!(unlimited.consumed(1 << 30, t0), None);
    }
}
