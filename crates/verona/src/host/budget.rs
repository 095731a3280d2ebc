//! Queue budgets (DESIGN §6): a request holds credit from its account's budget and from its
//! shard's while it is queued and handled. An account whose sessions send faster than the
//! services answer waits for its own credit (only its own sessions' reading stops), so one
//! account's burst takes at most its budget of a shard's queue, in bytes and in requests, however
//! many sessions it opens; and a shard's queue holds at most its budget of bytes whatever the
//! number of accounts. The request count matters as much as the bytes: a 100-byte request can
//! cost the shard a 512 KiB reply (issue #11 M1).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use jid::BareJid;
use minidom::{Element, Node};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::c2s::rate::ReadRate;

/// Credit is counted in units of this many bytes.
pub const UNIT: usize = 1024;

/// A byte budget shared by the requests that draw on it.
#[derive(Clone, Debug)]
pub struct Budget {
    units: Arc<Semaphore>,
    size: u32,
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        let size = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        Budget {
            units: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }

    /// Waits until `bytes` of credit are free and takes them (a request larger than the
    /// whole budget takes all of it, so that it waits for the others but not forever).
    pub async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.size);
        self.units
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("budgets are never closed")
    }

    /// Free credit, in bytes.
    #[cfg(test)]
    pub fn free(&self) -> usize {
        self.units.available_permits() * UNIT
    }
}

/// What one account's requests may hold of the shards' queues at once.
#[derive(Clone, Debug)]
pub struct AccountBudget(Arc<AccountShare>);

#[derive(Debug)]
struct AccountShare {
    bytes: Budget,
    requests: Arc<Semaphore>,
    /// How fast all the account's sessions together may send.
    reads: Mutex<ReadRate>,
    /// One archive query of the account's at a time, whichever session asks.
    archive: Arc<Semaphore>,
}

/// The credit of one request against its account's budget.
pub struct AccountCredit {
    _bytes: OwnedSemaphorePermit,
    _request: OwnedSemaphorePermit,
}

impl AccountBudget {
    /// Waits until the account has a request and `bytes` of credit free, and takes them.
    pub async fn take(&self, bytes: usize) -> AccountCredit {
        let request = self
            .0
            .requests
            .clone()
            .acquire_owned()
            .await
            .expect("budgets are never closed");
        AccountCredit {
            _bytes: self.0.bytes.take(bytes).await,
            _request: request,
        }
    }

    /// `bytes` were read from one of the account's sessions at `now`: until when that
    /// session's reading pauses, when the account is past its rate.
    pub fn read(&self, bytes: usize, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        self.0
            .reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .consumed(bytes, now)
    }

    /// Waits until none of the account's sessions is reading its archive, and takes the turn
    /// until the permit drops: an archive query can read much of the store (see
    /// `verona_storage`'s bound on it), and twenty sessions are not twenty readers.
    pub async fn archive_turn(&self) -> OwnedSemaphorePermit {
        self.0
            .archive
            .clone()
            .acquire_owned()
            .await
            .expect("budgets are never closed")
    }

    /// Free credit: (bytes, requests).
    #[cfg(test)]
    pub fn free(&self) -> (usize, usize) {
        (self.0.bytes.free(), self.0.requests.available_permits())
    }
}

/// How many messages one account may have kept (archived), over all its sessions and across
/// reconnections: `burst` at once, refilled at `per_minute` (0: no limit). What its
/// conversations store grows with it, so a flood of messages is refused rather than written.
/// Presence broadcasts are counted the same way: each reaches everyone who follows it; and so
/// are the conversations another server's users start, by their domain (`K`), since their
/// server can invent as many senders as it likes. So, in bytes, is what an account makes the
/// server broadcast in its name (`c2s::route::broadcast_bytes`).
#[derive(Debug)]
pub struct KeptRate<K = BareJid> {
    per_minute: f64,
    burst: f64,
    /// Keys whose bucket is not full: what they may still take, and since when.
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Eq + Hash + Clone> KeptRate<K> {
    /// Keys remembered before full buckets (the default) are forgotten.
    const SWEEP_AT: usize = 65_536;

    pub fn new(per_minute: u32, burst: u32) -> KeptRate<K> {
        KeptRate {
            per_minute: f64::from(per_minute),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// A rate of bytes rather than of stanzas: `per_sec` after a `burst` (0: no limit).
    pub fn bytes(per_sec: u64, burst: u64) -> KeptRate<K> {
        KeptRate {
            per_minute: per_sec as f64 * 60.0,
            burst: burst.max(1) as f64,
            buckets: Mutex::default(),
        }
    }

    /// Takes one from `key`'s bucket; false when it is empty.
    pub fn take(&self, key: &K, now: Instant) -> bool {
        self.take_many(key, 1, now)
    }

    /// Takes `count` from `key`'s bucket, or nothing when it holds fewer; more than a full
    /// bucket takes the whole of it, so that it waits for the bucket to fill but not forever.
    pub fn take_many(&self, key: &K, count: usize, now: Instant) -> bool {
        let cost = (count as f64).min(self.burst);
        self.with_bucket(key, now, |tokens| {
            if tokens < cost {
                (tokens, false)
            } else {
                (tokens - cost, true)
            }
        })
        .unwrap_or(true)
    }

    /// Takes `count` from `key`'s bucket whatever it holds, down to a burst's worth of debt:
    /// what a request turned out to cost once handled (a room adds its speaker's nick to each
    /// copy), paid for by the key's next requests.
    pub fn charge(&self, key: &K, count: usize, now: Instant) {
        self.with_bucket(key, now, |tokens| {
            ((tokens - count as f64).max(-self.burst), ())
        });
    }

    /// `change` applied to `key`'s bucket, refilled to `now`; `None` for an unlimited rate.
    fn with_bucket<T>(
        &self,
        key: &K,
        now: Instant,
        change: impl FnOnce(f64) -> (f64, T),
    ) -> Option<T> {
        if self.per_minute == 0.0 {
            return None;
        }
        let refill = |(tokens, since): (f64, Instant)| {
            let earned =
                now.saturating_duration_since(since).as_secs_f64() * self.per_minute / 60.0;
            (tokens + earned).min(self.burst)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= Self::SWEEP_AT {
            buckets.retain(|_, bucket| refill(*bucket) < self.burst);
        }
        let bucket = buckets.entry(key.clone()).or_insert((self.burst, now));
        let (tokens, outcome) = change(refill(*bucket));
        *bucket = (tokens, now);
        Some(outcome)
    }
}

/// The budgets of the accounts with a session, shared by all sessions of each account.
#[derive(Debug)]
pub struct AccountBudgets {
    bytes: usize,
    requests: usize,
    /// Bytes per second and burst an account's sessions may send together (0: unlimited).
    reads: (u64, u64),
    live: Mutex<Live>,
    /// Archive queries running at once, over all accounts ([`ARCHIVE_READERS`]).
    archive_readers: Arc<Semaphore>,
}

/// Archive queries that may run at once: the store reads on three connections, and one stays
/// free for what cannot wait behind an archive (logins' credentials, services loaded).
pub const ARCHIVE_READERS: usize = 2;

#[derive(Debug, Default)]
struct Live {
    budgets: HashMap<BareJid, Weak<AccountShare>>,
    /// Entries when the map was last swept of accounts whose sessions have all ended.
    swept_at: usize,
}

impl AccountBudgets {
    pub fn new(bytes: usize, requests: usize) -> AccountBudgets {
        AccountBudgets {
            bytes,
            requests: requests.max(1),
            reads: (0, 0),
            live: Mutex::default(),
            archive_readers: Arc::new(Semaphore::new(ARCHIVE_READERS)),
        }
    }

    /// Limits what all of an account's sessions together may send: `per_sec` bytes a second
    /// after a `burst`.
    pub fn with_read_rate(self, per_sec: u64, burst: u64) -> AccountBudgets {
        AccountBudgets {
            reads: (per_sec, burst),
            ..self
        }
    }

    /// Waits until fewer than [`ARCHIVE_READERS`] archive queries run, and counts one more
    /// until the permit drops.
    pub async fn archive_reader(&self) -> OwnedSemaphorePermit {
        self.archive_readers
            .clone()
            .acquire_owned()
            .await
            .expect("budgets are never closed")
    }

    /// The budget of `account`: the one its other sessions hold, or a new one.
    pub fn of(&self, account: &BareJid) -> AccountBudget {
        // Each use is one map operation: a panic elsewhere leaves the map usable.
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = live.budgets.get(account).and_then(Weak::upgrade) {
            return AccountBudget(share);
        }
        // Sweeping when the map has doubled keeps it in proportion to the accounts online at
        // a constant cost per session.
        if live.budgets.len() >= 2 * live.swept_at.max(64) {
            live.budgets.retain(|_, share| share.strong_count() > 0);
            live.swept_at = live.budgets.len();
        }
        let share = Arc::new(AccountShare {
            bytes: Budget::new(self.bytes),
            requests: Arc::new(Semaphore::new(self.requests)),
            reads: Mutex::new(ReadRate::new(
                self.reads.0,
                self.reads.1,
                tokio::time::Instant::now(),
            )),
            archive: Arc::new(Semaphore::new(1)),
        });
        live.budgets.insert(account.clone(), Arc::downgrade(&share));
        AccountBudget(share)
    }
}

/// Answers count against an account's read rate at this fraction of their size: enough to
/// bound what short requests asking for long answers cost (at the default rate, 2 MB/s of
/// answers, about 1.5 % of a core), little enough that a client catching up (an archive, its
/// contacts' avatars) is not slowed.
pub const ANSWER_SHARE: usize = 8;

impl AccountBudget {
    /// `bytes` were sent in answer to one of the account's requests (see [`ANSWER_SHARE`]).
    pub fn answered(
        &self,
        bytes: usize,
        now: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        self.read(bytes / ANSWER_SHARE, now)
    }
}

impl AccountBudgets {
    /// `bytes` were sent in answer to one of `account`'s requests: they count against the
    /// read rate of its sessions (an [`ANSWER_SHARE`] of them), so that a small request asking
    /// for a large answer (a node's items, an archive page) cannot be repeated at the rate
    /// small requests are read. An account with no session has no budget to charge.
    pub fn answered(&self, account: &BareJid, bytes: usize) {
        let share = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .budgets
            .get(account)
            .and_then(Weak::upgrade);
        if let Some(share) = share {
            AccountBudget(share).answered(bytes, tokio::time::Instant::now());
        }
    }
}

/// The credit one queued request holds; given back when it is dropped, after the request is
/// handled.
pub struct Credit {
    _account: Option<AccountCredit>,
    _shard: OwnedSemaphorePermit,
}

impl Credit {
    pub fn new(account: Option<AccountCredit>, shard: OwnedSemaphorePermit) -> Credit {
        Credit {
            _account: account,
            _shard: shard,
        }
    }
}

/// What an element costs in a queue: its serialised size, estimated without serialising
/// (names, attributes and text as they are escaped, plus markup, and the namespace declarations
/// it is written with: each element in another namespace than its parent's declares it,
/// however it was sent).
pub fn weight(el: &Element) -> usize {
    weight_under(el, None)
}

fn weight_under(el: &Element, parent_ns: Option<&str>) -> usize {
    let attrs: usize = el
        .attrs()
        .iter()
        .map(|((attr_ns, name), value)| {
            // An attribute in a namespace is written with a prefix declared on its element
            // (` xmlns:tns0='…'`), however the stanza declared it.
            let declared = match attr_ns.as_str() {
                "" | XML_NS => 0,
                attr_ns => attr_ns.len() + 15,
            };
            name.len() + escaped_len(value, true) + 4 + declared
        })
        .sum();
    let declared = match parent_ns {
        Some(ns) if !el.has_ns(ns) => el.ns().len() + 10,
        _ => 0,
    };
    // minidom gives an element's namespace as a new string: asked once, for its children.
    let mut own_ns = None;
    let children: usize = el
        .nodes()
        .map(|node| match node {
            Node::Element(child) => {
                weight_under(child, Some(own_ns.get_or_insert_with(|| el.ns())))
            }
            Node::Text(text) => escaped_len(text, false),
        })
        .sum();
    2 * el.name().len() + 5 + attrs + declared + children
}

/// The namespace of `xml:lang`, written with no declaration.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// `text`'s length once escaped as rxml writes it: in CDATA a `<` is sent as one byte and
/// written as four, and in an attribute a quote as five.
fn escaped_len(text: &str, attribute: bool) -> usize {
    let extra: usize = text
        .bytes()
        .map(|byte| match byte {
            b'<' | b'>' => 3,
            b'&' | b'\r' => 4,
            b'"' | b'\'' | b'\n' | b'\t' if attribute => 4,
            _ => 0,
        })
        .sum();
    text.len() + extra
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_messages_are_limited_per_account_over_time() {
        use std::time::Duration;
        let rate = KeptRate::new(60, 3);
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let romeo = BareJid::new("romeo@montague.lit").unwrap();
        let start = Instant::now();
        for n in 0..3 {
            assert!(rate.take(&juliet, start), "message {n} of the burst");
        }
        assert!(!rate.take(&juliet, start), "the burst is spent");
        assert!(rate.take(&romeo, start), "another account has its own");
        assert!(!rate.take(&juliet, start + Duration::from_millis(500)));
        assert!(
            rate.take(&juliet, start + Duration::from_millis(1600)),
            "one a second"
        );
        assert!(!rate.take(&juliet, start + Duration::from_millis(1700)));
        assert!(KeptRate::new(0, 1).take(&juliet, start), "0: no limit");
    }

    #[test]
    fn broadcast_bytes_are_limited_per_account_over_time() {
        use std::time::Duration;
        let rate = KeptRate::bytes(1000, 4000);
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let romeo = BareJid::new("romeo@montague.lit").unwrap();
        let start = Instant::now();
        assert!(rate.take_many(&juliet, 3000, start));
        assert!(
            !rate.take_many(&juliet, 1500, start),
            "more than is left takes nothing…"
        );
        assert!(
            rate.take_many(&juliet, 1000, start),
            "…and what fits passes"
        );
        assert!(!rate.take_many(&juliet, 1, start), "the burst is spent");
        assert!(
            rate.take_many(&romeo, 4000, start),
            "another account has its own"
        );
        assert!(!rate.take_many(&juliet, 600, start + Duration::from_millis(500)));
        assert!(
            rate.take_many(&juliet, 600, start + Duration::from_millis(650)),
            "a thousand bytes a second"
        );
        // A stanza larger than the burst passes once the bucket is full again.
        assert!(!rate.take_many(&juliet, 10_000, start + Duration::from_secs(3)));
        assert!(rate.take_many(&juliet, 10_000, start + Duration::from_millis(4700)));
        assert!(!rate.take_many(&juliet, 1, start + Duration::from_millis(4700)));
        assert!(
            KeptRate::bytes(0, 1).take_many(&juliet, 1 << 30, start),
            "0: no limit"
        );
    }

    #[test]
    fn a_charge_after_the_fact_runs_into_debt_and_is_paid_back() {
        use std::time::Duration;
        let rate = KeptRate::bytes(1000, 4000);
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let start = Instant::now();
        assert!(rate.take_many(&juliet, 3000, start));
        rate.charge(&juliet, 2000, start);
        assert!(!rate.take_many(&juliet, 1, start), "1,000 in debt");
        assert!(
            !rate.take_many(&juliet, 1, start + Duration::from_millis(999)),
            "paid back first"
        );
        assert!(rate.take_many(&juliet, 1, start + Duration::from_millis(1001)));
        rate.charge(&juliet, 1 << 30, start + Duration::from_secs(2));
        assert!(
            rate.take_many(&juliet, 1000, start + Duration::from_secs(10)),
            "never more debt than a burst"
        );
        KeptRate::bytes(0, 1).charge(&juliet, 1 << 30, start);
        assert!(KeptRate::bytes(0, 1).take_many(&juliet, 1 << 30, start));
    }

    #[test]
    fn weight_is_close_to_the_serialised_size() {
        for xml in [
            "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
            "<message xmlns='jabber:client' to='romeo@montague.lit'><body>Wherefore art thou, Romeo? Deny thy father and refuse thy name.</body></message>",
        ] {
            let el: Element = xml.parse().unwrap();
            let serialised = verona_stream::element_bytes(&el).len();
            let weight = weight(&el);
            assert!(
                weight * 2 >= serialised && weight <= serialised * 2,
                "{weight} vs {serialised}: {xml}"
            );
        }
        let big = format!(
            "<message xmlns='jabber:client'><body>{}</body></message>",
            "x".repeat(100_000)
        );
        let el: Element = big.parse().unwrap();
        assert!(weight(&el) >= 100_000);
        // What grows when written out counts as written: escaped characters, and a namespace
        // declared once for many elements or their attributes, written with each of them.
        let namespace = format!("urn:{}", "l".repeat(1000));
        for (what, xml) in [
            (
                "escaped",
                format!(
                    "<message xmlns='jabber:client' id=\"{}\"><body><![CDATA[{}]]></body></message>",
                    "'".repeat(1000),
                    "<".repeat(10_000)
                ),
            ),
            (
                "prefixed attributes",
                format!(
                    "<message xmlns='jabber:client'><w xmlns='urn:s' xmlns:p='{namespace}'>{}</w></message>",
                    "<q p:a='1'/>".repeat(50)
                ),
            ),
            (
                "prefixed elements",
                format!(
                    "<message xmlns='jabber:client'><w xmlns='urn:s' xmlns:p='{namespace}'>{}</w></message>",
                    "<p:q/>".repeat(50)
                ),
            ),
        ] {
            let el: Element = xml.parse().unwrap();
            let serialised = verona_stream::element_bytes(&el).len();
            assert!(serialised > 4 * xml.len(), "{what}: {serialised}");
            assert!(
                weight(&el) * 10 >= serialised * 9,
                "{what}: {} vs {serialised}",
                weight(&el)
            );
        }
    }

    #[tokio::test]
    async fn an_account_reads_its_archive_once_at_a_time() {
        let budgets = AccountBudgets::new(64 * UNIT, 8);
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let (balcony, garden) = (budgets.of(&juliet), budgets.of(&juliet));
        let reading = balcony.archive_turn().await;
        // Her other session waits for the turn…
        let wait = std::time::Duration::from_millis(50);
        assert!(
            tokio::time::timeout(wait, garden.archive_turn())
                .await
                .is_err()
        );
        // …another account does not…
        let romeo = budgets.of(&BareJid::new("romeo@montague.lit").unwrap());
        drop(romeo.archive_turn().await);
        // …and hers comes when the first query ends.
        drop(reading);
        drop(garden.archive_turn().await);
        // Over all accounts, ARCHIVE_READERS queries run at once.
        let readers: Vec<_> = all_readers(&budgets).await;
        assert!(
            tokio::time::timeout(wait, budgets.archive_reader())
                .await
                .is_err()
        );
        drop(readers);
        drop(budgets.archive_reader().await);
    }

    async fn all_readers(budgets: &AccountBudgets) -> Vec<OwnedSemaphorePermit> {
        let mut readers = Vec::new();
        for _ in 0..ARCHIVE_READERS {
            readers.push(budgets.archive_reader().await);
        }
        readers
    }

    #[tokio::test]
    async fn credit_waits_until_given_back() {
        let budget = Budget::new(4 * UNIT);
        let first = budget.take(3 * UNIT).await;
        assert_eq!(budget.free(), UNIT);
        // More than is free waits…
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), budget.take(2 * UNIT)).await;
        assert!(waiting.is_err());
        // …until the first request is done.
        drop(first);
        let second = budget.take(2 * UNIT).await;
        assert_eq!(budget.free(), 2 * UNIT);
        // A request larger than the budget takes all of it rather than waiting forever.
        drop(second);
        let huge = budget.take(100 * UNIT).await;
        assert_eq!(budget.free(), 0);
        drop(huge);
        assert_eq!(budget.free(), 4 * UNIT);
    }

    #[tokio::test]
    async fn an_account_shares_one_budget_and_counts_requests() {
        let budgets = AccountBudgets::new(64 * UNIT, 2);
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let romeo = BareJid::new("romeo@montague.lit").unwrap();
        let (balcony, chamber) = (budgets.of(&juliet), budgets.of(&juliet));
        let first = balcony.take(10).await;
        assert_eq!(chamber.free(), (63 * UNIT, 1));
        let _second = chamber.take(10).await;
        // Two requests are the account's whole share, however small, from any session…
        let third =
            tokio::time::timeout(std::time::Duration::from_millis(50), balcony.take(10)).await;
        assert!(third.is_err());
        // …and another account's share is its own.
        assert_eq!(budgets.of(&romeo).free(), (64 * UNIT, 2));
        drop(first);
        let _third = balcony.take(10).await;
        // Once every session of the account is gone, its next session starts afresh.
        drop((balcony, chamber, _second, _third));
        assert_eq!(budgets.of(&juliet).free(), (64 * UNIT, 2));
    }
}
