//! Slows down password guessing. Failures are counted per address (IPv6 by /64, which one
//! subscriber usually holds whole) and per account, within a window; past a few free ones,
//! every further attempt from that address or on that account, right or wrong, waits before it
//! is verified, for a delay that doubles up to a cap. A success forgives only its own account,
//! so an attacker's login on its own account does not clear the address. Connections are
//! capped per address, and unauthenticated ones more tightly, which bounds concurrent attempts;
//! new connections per address are also limited over time, which bounds what reconnecting as
//! fast as one is cut off costs the server (TLS handshakes, logins).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jid::BareJid;

/// The longest an address's own failures make its attempts wait.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// The longest an account's failures make attempts on it wait, from any address: well
/// within `[limits] unauthenticated_timeout_secs` (30 s by default), or anyone who fails
/// often enough would keep its owner from completing a login at all (a SCRAM exchange waits
/// once, then needs its round trips).
const MAX_ACCOUNT_DELAY: Duration = Duration::from_secs(8);
/// The longest an attempt waits for its account's lane ([`AuthThrottle::turn`]).
const LANE_WAIT: Duration = Duration::from_secs(10);
/// Bound on remembered addresses and accounts, so a scan cannot grow memory.
const MAX_TRACKED: usize = 65_536;

pub struct AuthThrottle {
    free_failures: u32,
    window: Duration,
    addresses: Mutex<Failures<IpAddr>>,
    accounts: Mutex<Failures<BareJid>>,
    /// Failures per address and account: an address past the free ones on an account takes
    /// its attempts on it through that account's lane, one at a time.
    pairs: Mutex<Failures<(IpAddr, BareJid)>>,
    lanes: Mutex<HashMap<BareJid, Arc<tokio::sync::Semaphore>>>,
    /// Attempts per address and account not yet judged: they count as failures for taking
    /// the lane, or an address's parallel connections would all pass before any failed.
    in_flight: Arc<Mutex<HashMap<(IpAddr, BareJid), u32>>>,
    /// Unauthenticated connections per address.
    unauthenticated: Arc<PerAddress>,
    /// Connections per address, authenticated or not.
    connections: Arc<PerAddress>,
    /// In-band registrations per address in the last hour, and how many are allowed.
    registrations: Mutex<Failures<IpAddr>>,
    max_registrations: u32,
    /// New connections per address over time.
    rate: Option<ConnectionRate>,
    /// Connections from other servers and components per address: their listeners have
    /// their own global bound, which one address must not fill alone.
    servers: Arc<PerAddress>,
    /// Dialback keys other servers' streams from one address may have checked, over time:
    /// each check makes this server connect to the domain the key claims.
    verifications: Option<ConnectionRate>,
}

/// An attempt's turn: its place in its account's lane, if it needs one, and its count among
/// the attempts not yet judged; both given back when it is dropped.
pub struct Turn {
    _lane: Option<tokio::sync::OwnedSemaphorePermit>,
    _flight: InFlight,
}

impl Turn {
    /// Whether it holds its account's lane.
    pub fn in_lane(&self) -> bool {
        self._lane.is_some()
    }
}

struct InFlight {
    table: Arc<Mutex<HashMap<(IpAddr, BareJid), u32>>>,
    pair: (IpAddr, BareJid),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        if let Some(count) = table.get_mut(&self.pair) {
            *count -= 1;
            if *count == 0 {
                table.remove(&self.pair);
            }
        }
    }
}

/// A token bucket per address: `burst` new connections at once, refilled at `per_minute`.
struct ConnectionRate {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    per_minute: f64,
    burst: f64,
}

impl ConnectionRate {
    fn new(per_minute: u32, burst: u32) -> Option<ConnectionRate> {
        (per_minute > 0).then(|| ConnectionRate {
            buckets: Mutex::default(),
            per_minute: f64::from(per_minute),
            burst: f64::from(burst.max(1)),
        })
    }

    /// Takes a token for a new connection from `addr`; false when there is none.
    fn take(&self, addr: IpAddr, now: Instant) -> bool {
        let mut buckets = lock(&self.buckets);
        let refill = |(tokens, since): (f64, Instant)| {
            let earned = now.duration_since(since).as_secs_f64() * self.per_minute / 60.0;
            (tokens + earned).min(self.burst)
        };
        if buckets.len() >= MAX_TRACKED {
            // Full buckets are the default: forgetting them changes nothing.
            buckets.retain(|_, bucket| refill(*bucket) < self.burst);
        }
        let bucket = buckets
            .entry(address_key(addr))
            .or_insert((self.burst, now));
        let tokens = refill(*bucket);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return false;
        }
        *bucket = (tokens - 1.0, now);
        true
    }
}

/// The window of the registration count.
const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);

/// Failures by key: how many, since when.
type Failures<K> = HashMap<K, (u32, Instant)>;

/// Connections counted per address, up to a bound.
struct PerAddress {
    counts: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

impl PerAddress {
    fn new(max: usize) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            counts: Mutex::default(),
            max,
        })
    }

    fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<Admission> {
        let addr = address_key(addr);
        let mut counts = lock(&self.counts);
        let count = counts.entry(addr).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Admission {
            counted: self.clone(),
            addr,
        })
    }
}

/// A connection counted against its address until dropped.
pub struct Admission {
    counted: Arc<PerAddress>,
    addr: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = lock(&self.counted.counts);
        if let Some(count) = counts.get_mut(&self.addr) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.addr);
            }
        }
    }
}

/// IPv6 addresses count by /64; IPv4 by address, also when mapped into IPv6 (whose top 64
/// bits are zero for every IPv4 client).
fn address_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each critical section is one map operation: a panic cannot leave it half done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AuthThrottle {
    pub fn new(
        free_failures: u32,
        window: Duration,
        max_unauthenticated: usize,
        max_connections: usize,
        max_registrations: u32,
    ) -> Self {
        AuthThrottle {
            free_failures,
            window,
            addresses: Mutex::default(),
            accounts: Mutex::default(),
            pairs: Mutex::default(),
            lanes: Mutex::default(),
            in_flight: Arc::default(),
            unauthenticated: PerAddress::new(max_unauthenticated),
            connections: PerAddress::new(max_connections),
            registrations: Mutex::default(),
            max_registrations,
            rate: None,
            servers: PerAddress::new(usize::MAX),
            verifications: None,
        }
    }

    /// Limits connections from other servers and components to `max` per address.
    pub fn with_server_connections(mut self, max: usize) -> Self {
        self.servers = PerAddress::new(max);
        self
    }

    /// Counts a connection from another server or a component from `addr`; when the address
    /// has as many as allowed, or has opened as many new connections as allowed lately (the
    /// same rate as clients'), the configuration keys of the limit that refused it.
    pub fn admit_server(&self, addr: IpAddr) -> Result<Admission, &'static str> {
        self.take_new_connection(addr)?;
        self.servers
            .admit(addr)
            .ok_or("[limits] server_connections_per_address")
    }

    fn take_new_connection(&self, addr: IpAddr) -> Result<(), &'static str> {
        match &self.rate {
            Some(rate) if !rate.take(addr, Instant::now()) => {
                Err("[limits] new_connections_burst and new_connections_per_minute")
            }
            _ => Ok(()),
        }
    }

    /// Limits new connections per address to `burst` at once and `per_minute` after that
    /// (`per_minute` 0: no limit).
    pub fn with_connection_rate(mut self, per_minute: u32, burst: u32) -> Self {
        self.rate = ConnectionRate::new(per_minute, burst);
        self
    }

    /// Limits the dialback keys checked for other servers' streams from one address to
    /// `per_minute`, as many at once (0: no limit).
    pub fn with_verification_rate(mut self, per_minute: u32) -> Self {
        self.verifications = ConnectionRate::new(per_minute, per_minute);
        self
    }

    /// Counts a dialback key to check for a stream from `addr`; false when the address has
    /// had as many checked as allowed.
    pub fn may_verify(&self, addr: IpAddr) -> bool {
        self.verifications
            .as_ref()
            .is_none_or(|rate| rate.take(addr, Instant::now()))
    }

    /// Counts an in-band registration from `addr`; false when the address has registered
    /// as many accounts as allowed within the hour.
    pub fn may_register(&self, addr: IpAddr, now: Instant) -> bool {
        let mut registrations = lock(&self.registrations);
        if registrations.len() >= MAX_TRACKED {
            registrations.retain(|_, (_, since)| now.duration_since(*since) < REGISTRATION_WINDOW);
        }
        let entry = registrations.entry(address_key(addr)).or_insert((0, now));
        if now.duration_since(entry.1) >= REGISTRATION_WINDOW {
            *entry = (0, now);
        }
        if entry.0 >= self.max_registrations {
            return false;
        }
        entry.0 += 1;
        true
    }

    /// Counts a new connection from `addr`, both as a connection and as an unauthenticated
    /// one (drop the second on authentication); when the address has as many of either as
    /// allowed, the configuration keys of the limit that refused it (for the log: what to
    /// raise).
    pub fn admit(&self, addr: IpAddr) -> Result<(Admission, Admission), &'static str> {
        self.take_new_connection(addr)?;
        let connection = self
            .connections
            .admit(addr)
            .ok_or("[limits] connections_per_address")?;
        let unauthenticated = self
            .unauthenticated
            .admit(addr)
            .ok_or("[limits] unauthenticated_per_address")?;
        Ok((connection, unauthenticated))
    }

    /// How long an attempt from `addr` on `account` waits before it is verified, whatever its
    /// outcome: the longer of the two delays their failures have earned.
    pub fn delay(&self, addr: IpAddr, account: Option<&BareJid>, now: Instant) -> Duration {
        let by_address = self.earned(&lock(&self.addresses), &address_key(addr), now);
        let by_account = account.map_or(Duration::ZERO, |account| {
            self.earned(&lock(&self.accounts), account, now)
                .min(MAX_ACCOUNT_DELAY)
        });
        by_address.max(by_account)
    }

    /// Records a failed attempt.
    pub fn failure(&self, addr: IpAddr, account: Option<&BareJid>, now: Instant) {
        self.count(&mut lock(&self.addresses), address_key(addr), now);
        if let Some(account) = account {
            self.count(&mut lock(&self.accounts), account.clone(), now);
            let pair = (address_key(addr), account.clone());
            self.count(&mut lock(&self.pairs), pair, now);
        }
    }

    /// The turn an attempt from `addr` on `account` holds until it is judged: in that
    /// account's lane when the address has failed on it past the free failures, counting its
    /// attempts not yet judged. Such attempts go one at a time per account, whatever number
    /// of addresses and connections make them, while its owner (from an address that has not
    /// failed on it) is not held up by them: the delays alone bound how long each attempt
    /// waits, not how many wait at once (200 addresses made 2,157 guesses a minute at one
    /// account that way). `None` when the lane stayed taken for [`LANE_WAIT`].
    pub async fn turn(&self, addr: IpAddr, account: &BareJid, now: Instant) -> Option<Turn> {
        let pair = (address_key(addr), account.clone());
        let judging = {
            let mut in_flight = lock(&self.in_flight);
            // A full table counts every new pair as busy: into the lane.
            let full = in_flight.len() >= MAX_TRACKED && !in_flight.contains_key(&pair);
            let count = in_flight.entry(pair.clone()).or_insert(0);
            *count += 1;
            if full { u32::MAX } else { *count - 1 }
        };
        let flight = InFlight {
            table: Arc::clone(&self.in_flight),
            pair: pair.clone(),
        };
        let failed = lock(&self.pairs)
            .get(&pair)
            .filter(|&&(_, since)| now.duration_since(since) < self.window)
            .map_or(0, |&(count, _)| count);
        if failed.saturating_add(judging) < self.free_failures {
            return Some(Turn {
                _lane: None,
                _flight: flight,
            });
        }
        let lane = {
            let mut lanes = lock(&self.lanes);
            if lanes.len() >= MAX_TRACKED {
                // Lanes nobody holds or waits for are dropped; busy ones stay.
                lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
            }
            Arc::clone(
                lanes
                    .entry(account.clone())
                    .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1))),
            )
        };
        // Bounded: a connection waiting here notices nothing else, its client gone included.
        let permit = tokio::time::timeout(LANE_WAIT, lane.acquire_owned()).await;
        let permit = permit.ok()?.ok()?;
        Some(Turn {
            _lane: Some(permit),
            _flight: flight,
        })
    }

    /// A successful login forgives its account's failures, not its address's: another
    /// account's success must not clear the way for guesses at this one.
    pub fn success(&self, account: &BareJid) {
        lock(&self.accounts).remove(account);
    }

    fn earned<K: Hash + Eq>(&self, failures: &Failures<K>, key: &K, now: Instant) -> Duration {
        let Some(&(count, since)) = failures.get(key) else {
            return Duration::ZERO;
        };
        if now.duration_since(since) >= self.window {
            return Duration::ZERO;
        }
        // The attempt after the last free failure is the first to wait.
        if count < self.free_failures {
            return Duration::ZERO;
        }
        let over = count + 1 - self.free_failures;
        let delay = Duration::from_millis(250).saturating_mul(1 << over.min(16));
        delay.min(MAX_DELAY)
    }

    fn count<K: Hash + Eq>(&self, failures: &mut Failures<K>, key: K, now: Instant) {
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        }
        let entry = failures.entry(key).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_clients_mapped_into_ipv6_count_by_their_own_address() {
        // How a `[::]` listener sees two IPv4 clients: their /64 is the same, all zero.
        let one: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let other: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        assert_eq!(address_key(one), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_ne!(address_key(one), address_key(other));
        let connections = PerAddress::new(1);
        let _held = connections.admit(one).unwrap();
        assert!(connections.admit(other).is_some());
        // The same client over IPv4 and mapped is one.
        assert!(connections.admit("192.0.2.1".parse().unwrap()).is_none());
    }

    #[test]
    fn new_connections_per_address_are_limited_over_time() {
        let rate = ConnectionRate {
            buckets: Mutex::default(),
            per_minute: 60.0,
            burst: 3.0,
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        let t0 = Instant::now();
        let taken: Vec<bool> = (0..4).map(|_| rate.take(ip, t0)).collect();
        assert_eq!(taken, [true, true, true, false]);
        // One a second comes back.
        assert!(!rate.take(ip, t0 + Duration::from_millis(500)));
        assert!(rate.take(ip, t0 + Duration::from_millis(1100)));
        assert!(!rate.take(ip, t0 + Duration::from_millis(1200)));
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        let taken: Vec<bool> = (0..4).map(|_| rate.take(ip, later)).collect();
        assert_eq!(taken, [true, true, true, false]);
        // IPv6 by /64.
        for _ in 0..3 {
            assert!(rate.take(neighbour, t0));
        }
        assert!(!rate.take(same_64, t0));
    }

    fn account(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    /// With two free failures the third attempt is the first to wait (found by audit round
    /// 27: it was the fourth, one free failure more than `failures_before_delay` says).
    #[test]
    fn delays_grow_after_free_failures_and_end_with_the_window() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60), 8, 8, 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..5 {
            throttle.failure(ip, None, t0);
            delays.push(throttle.delay(ip, None, t0));
        }
        assert_eq!(
            delays,
            [
                Duration::ZERO,
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4)
            ]
        );
        assert_eq!(
            throttle.delay(other, None, t0),
            Duration::ZERO,
            "per address"
        );
        for _ in 0..20 {
            throttle.failure(ip, None, t0);
        }
        assert_eq!(throttle.delay(ip, None, t0), MAX_DELAY);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            throttle.delay(ip, None, later),
            Duration::ZERO,
            "window over"
        );
    }

    /// Issue #11 H4: the delay comes before verification for any account from a throttled
    /// address, an account under attack is slowed from every address, and one account's
    /// success forgives neither the address nor another account.
    #[test]
    fn addresses_and_accounts_are_counted_apart_and_a_success_forgives_only_its_account() {
        let throttle = AuthThrottle::new(1, Duration::from_secs(60), 8, 8, 2);
        let t0 = Instant::now();
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let elsewhere: IpAddr = "198.51.100.7".parse().unwrap();
        let (victim, own) = (account("juliet@localhost"), account("mallory@localhost"));
        for _ in 0..3 {
            throttle.failure(attacker, Some(&victim), t0);
        }
        let earned = Duration::from_secs(2);
        // Right or wrong, any account, from the attacker's address: the same wait.
        assert_eq!(throttle.delay(attacker, Some(&victim), t0), earned);
        assert_eq!(throttle.delay(attacker, Some(&own), t0), earned);
        // The victim's account is slowed from anywhere.
        assert_eq!(throttle.delay(elsewhere, Some(&victim), t0), earned);
        assert_eq!(throttle.delay(elsewhere, Some(&own), t0), Duration::ZERO);
        // The attacker logs in to its own account: nothing is forgiven.
        throttle.success(&own);
        assert_eq!(throttle.delay(attacker, Some(&victim), t0), earned);
        assert_eq!(throttle.delay(elsewhere, Some(&victim), t0), earned);
        // The victim's own success forgives the victim's account.
        throttle.success(&victim);
        assert_eq!(throttle.delay(elsewhere, Some(&victim), t0), Duration::ZERO);
        // However many failures, the owner's login from elsewhere can finish within the
        // pre-authentication timeout; the attacker's address waits the longest.
        for _ in 0..30 {
            throttle.failure(attacker, Some(&victim), t0);
        }
        assert_eq!(
            throttle.delay(elsewhere, Some(&victim), t0),
            MAX_ACCOUNT_DELAY
        );
        assert_eq!(throttle.delay(attacker, Some(&victim), t0), MAX_DELAY);
    }

    /// Issue #11 H4: an address that has failed on an account past the free failures takes
    /// its attempts on it one at a time with every such address; others, the owner's among
    /// them, do not wait for them.
    #[tokio::test]
    async fn addresses_that_failed_on_an_account_take_its_lane() {
        let throttle = AuthThrottle::new(1, Duration::from_secs(60), 8, 8, 2);
        let t0 = Instant::now();
        let victim = account("juliet@localhost");
        let address = |a: &str| -> IpAddr { a.parse().unwrap() };
        let attackers = [address("192.0.2.1"), address("192.0.2.2")];
        let owner = address("198.51.100.7");
        let turn = |addr: IpAddr, account: BareJid, at: Instant| {
            let throttle = &throttle;
            async move { throttle.turn(addr, &account, at).await.expect("a turn") }
        };
        for attacker in attackers {
            assert!(!turn(attacker, victim.clone(), t0).await.in_lane(), "free");
            for _ in 0..2 {
                throttle.failure(attacker, Some(&victim), t0);
            }
        }
        // Attempts not yet judged count: one address's parallel connections do not all pass.
        let fresh = address("203.0.113.9");
        let first = turn(fresh, victim.clone(), t0).await;
        let second = turn(fresh, victim.clone(), t0).await;
        assert!(!first.in_lane() && second.in_lane());
        drop((first, second));
        let held = turn(attackers[0], victim.clone(), t0).await;
        assert!(held.in_lane());
        // The other attacking address waits for the lane; the owner does not.
        let waiting = tokio::time::timeout(
            Duration::from_millis(50),
            turn(attackers[1], victim.clone(), t0),
        )
        .await;
        assert!(waiting.is_err(), "one at a time");
        assert!(!turn(owner, victim.clone(), t0).await.in_lane());
        // Another account is not in this lane.
        let elsewhere = turn(attackers[1], account("romeo@localhost"), t0).await;
        assert!(!elsewhere.in_lane());
        drop(held);
        assert!(turn(attackers[1], victim.clone(), t0).await.in_lane());
        // The window over, the address is free again.
        let later = t0 + Duration::from_secs(61);
        assert!(!turn(attackers[1], victim.clone(), later).await.in_lane());
    }

    #[test]
    fn ipv6_counts_by_slash_64() {
        let throttle = AuthThrottle::new(0, Duration::from_secs(60), 8, 8, 2);
        let t0 = Instant::now();
        throttle.failure("2001:db8:1:2::1".parse().unwrap(), None, t0);
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let next: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(throttle.delay(same, None, t0) > Duration::ZERO);
        assert_eq!(throttle.delay(next, None, t0), Duration::ZERO);
    }

    /// Issue #11 M6: in-band registrations are counted per address (/64) within the hour.
    #[test]
    fn registrations_are_limited_per_address_and_hour() {
        let throttle = AuthThrottle::new(5, Duration::from_secs(60), 8, 8, 2);
        let t0 = Instant::now();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(throttle.may_register(ip, t0));
        assert!(throttle.may_register(neighbour, t0));
        assert!(!throttle.may_register(ip, t0), "the /64 had its two");
        assert!(throttle.may_register("192.0.2.1".parse().unwrap(), t0));
        assert!(
            throttle.may_register(ip, t0 + REGISTRATION_WINDOW),
            "a new hour"
        );
    }

    #[test]
    fn connections_are_capped_per_address() {
        let throttle = AuthThrottle::new(5, Duration::from_secs(60), 2, 3, 2);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
        let (first, first_unauthenticated) = throttle.admit(ip).expect("first");
        let _second = throttle.admit(neighbour).expect("second, same /64");
        // Each refusal names the limit that refused, for the log.
        assert_eq!(
            throttle.admit(ip).err(),
            Some("[limits] unauthenticated_per_address"),
            "a third unauthenticated one is refused"
        );
        assert!(throttle.admit("192.0.2.1".parse().unwrap()).is_ok());
        // The first authenticates: it counts as a connection only.
        drop(first_unauthenticated);
        let (_third, third_unauthenticated) = throttle.admit(ip).expect("a slot freed");
        drop(third_unauthenticated);
        assert_eq!(
            throttle.admit(ip).err(),
            Some("[limits] connections_per_address"),
            "three connections in all"
        );
        drop(first);
        assert!(throttle.admit(ip).is_ok());
        let rated =
            AuthThrottle::new(5, Duration::from_secs(60), 2, 3, 2).with_connection_rate(1, 1);
        assert!(rated.admit(ip).is_ok());
        assert_eq!(
            rated.admit(ip).err(),
            Some("[limits] new_connections_burst and new_connections_per_minute")
        );
    }
}
