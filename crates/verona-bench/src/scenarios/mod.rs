//! Load scenarios, and what they share: which account each client uses, logging clients in
//! and out with bounded concurrency, counting errors, and printing reports.

pub mod chat;
pub mod fanout;
pub mod idle;
pub mod login;
pub mod muc;
pub mod presence;
pub mod soak;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Client, Error, Stage, Target, within};

const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// A generator using this share of one core is probably what limits the rate.
const SATURATED: f64 = 0.9;

/// How to connect, and as whom.
#[derive(Clone, Debug)]
pub struct Setup {
    pub target: Target,
    /// `{n}` is replaced by the account number.
    pub user_pattern: String,
    pub password_pattern: String,
    /// Client n uses account n % accounts.
    pub accounts: usize,
    /// Bound on each login and each close.
    pub op_timeout: Duration,
}

impl Setup {
    fn credentials(&self, client: usize) -> (String, String) {
        let account = (client % self.accounts.max(1)).to_string();
        (
            self.user_pattern.replace("{n}", &account),
            self.password_pattern.replace("{n}", &account),
        )
    }

    fn params(&self) -> Params {
        Params {
            addr: self.target.addr.to_string(),
            domain: self.target.domain.clone(),
            tls: self.target.tls,
            mechanism: self.target.mechanism.name(),
            accounts: self.accounts,
        }
    }
}

/// The connection parameters, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    pub addr: String,
    pub domain: String,
    pub tls: bool,
    pub mechanism: &'static str,
    pub accounts: usize,
}

/// Failures counted by the stage they happened in, with the first one as an example.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Errors {
    pub total: usize,
    pub by_stage: BTreeMap<&'static str, usize>,
    pub first: Option<String>,
}

impl Errors {
    fn add(&mut self, error: &Error) {
        self.total += 1;
        *self.by_stage.entry(error.stage.as_str()).or_default() += 1;
        self.first.get_or_insert_with(|| error.to_string());
    }

    fn merge(&mut self, other: Errors) {
        self.total += other.total;
        for (stage, count) in other.by_stage {
            *self.by_stage.entry(stage).or_default() += count;
        }
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    fn describe(&self) -> String {
        let stages: Vec<String> = self
            .by_stage
            .iter()
            .map(|(stage, count)| format!("{stage} {count}"))
            .collect();
        match &self.first {
            None => "0".into(),
            Some(first) => format!("{} ({}); first: {first}", self.total, stages.join(", ")),
        }
    }
}

/// What logging in a batch of clients gave.
struct Logins {
    /// From TCP connect to bound with initial presence sent, one per successful login.
    latencies: Vec<Duration>,
    errors: Errors,
    /// The sessions, when they were kept.
    clients: Vec<Client>,
}

/// What clients received of numbered stanzas (fan-out notifications, chat messages): one
/// client's receipts, or everyone's merged.
#[derive(Default)]
struct Tally {
    received: usize,
    duplicated: usize,
    /// Stanzas that arrived after one with a higher sequence number.
    reordered: usize,
    /// From the send time each stanza carries to its receipt.
    latencies: Vec<Duration>,
    last: Option<Instant>,
    /// One bit per sequence number below `expected`: seen yet?
    seen: Vec<u64>,
    expected: usize,
    highest: Option<usize>,
}

impl Tally {
    /// For one client expecting sequence numbers `0..expected`.
    fn new(expected: usize) -> Self {
        Tally {
            latencies: Vec::with_capacity(expected),
            seen: vec![0; expected.div_ceil(64)],
            expected,
            ..Tally::default()
        }
    }

    /// Counts stanza `seq`, sent `sent` after `epoch` and received `now`; numbers outside
    /// `0..expected` are not ours and are ignored.
    fn record(&mut self, seq: usize, sent: Duration, now: Instant, epoch: Instant) {
        if seq >= self.expected {
            return;
        }
        let (word, bit) = (seq / 64, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[word] |= bit;
        self.received += 1;
        self.latencies.push((now - epoch).saturating_sub(sent));
        self.last = Some(now);
        if self.highest.is_some_and(|h| h > seq) {
            self.reordered += 1;
        }
        self.highest = self.highest.max(Some(seq));
    }

    /// Adds another client's counts (not its sequence numbers: those are per client).
    fn merge(&mut self, other: Tally) {
        self.received += other.received;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.latencies.extend(other.latencies);
        self.last = self.last.max(other.last);
    }
}

/// `value` escaped for a single-quoted XML attribute.
fn attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
}

/// Logs in clients `0..count` (resource `r{n}`) with at most `in_flight` at a time; each but
/// those in `silent` sends `<presence/>`, then is kept or closed at once.
async fn log_in_all(
    setup: &Setup,
    count: usize,
    in_flight: usize,
    keep: bool,
    silent: Range<usize>,
) -> Logins {
    let setup = Arc::new(setup.clone());
    let attempts = bounded(0..count, in_flight, |n| {
        let setup = setup.clone();
        let announce = !silent.contains(&n);
        async move {
            let start = Instant::now();
            let (user, password) = setup.credentials(n);
            let login = within(setup.op_timeout, async {
                let mut client =
                    Client::login(&setup.target, &user, &password, &format!("r{n}")).await?;
                if announce {
                    client.send(b"<presence/>").await?;
                }
                Ok(client)
            })
            .await;
            let latency = start.elapsed();
            match login {
                Ok(client) if keep => (Ok(latency), Some(client), None),
                Ok(client) => {
                    let closed = within(setup.op_timeout, client.close()).await;
                    (Ok(latency), None, closed.err())
                }
                Err(e) => (Err(e), None, None),
            }
        }
    })
    .await;
    let mut logins = Logins {
        latencies: Vec::with_capacity(count),
        errors: Errors::default(),
        clients: Vec::new(),
    };
    for (login, client, close_error) in attempts {
        match login {
            Ok(latency) => logins.latencies.push(latency),
            Err(e) => logins.errors.add(&e),
        }
        logins.clients.extend(client);
        if let Some(e) = close_error {
            logins.errors.add(&e);
        }
    }
    logins
}

/// The stanza error condition of an iq error; `None` unless it is one.
fn condition(reply: &Element) -> Option<&str> {
    if reply.attr("type") != Some("error") {
        return None;
    }
    let condition = reply
        .children()
        .find(|c| c.name() == "error")
        .and_then(|e| e.children().find(|c| c.ns() == NS_STANZAS))
        .map_or("undefined-condition", Element::name);
    Some(condition)
}

/// An iq error answer as a [`Stage::Pubsub`] failure.
fn check(reply: &Element) -> Result<(), Error> {
    match condition(reply) {
        None => Ok(()),
        Some(condition) => Err(Error {
            stage: Stage::Pubsub,
            detail: format!("{} refused: {condition}", reply.attr("id").unwrap_or("iq")),
        }),
    }
}

/// Closes every client, `in_flight` at a time.
async fn close_all(clients: Vec<Client>, in_flight: usize, op_timeout: Duration) -> Errors {
    let closes = bounded(clients, in_flight, |client| {
        within(op_timeout, client.close())
    })
    .await;
    let mut errors = Errors::default();
    for e in closes.iter().filter_map(|c| c.as_ref().err()) {
        errors.add(e);
    }
    errors
}

/// Runs `task` on every item as its own tokio task, at most `in_flight` at a time; the outputs
/// come in completion order.
async fn bounded<I, T, F, Fut>(items: I, in_flight: usize, mut task: F) -> Vec<T>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut running = JoinSet::new();
    let mut done = Vec::new();
    for item in items {
        if running.len() >= in_flight.max(1)
            && let Some(finished) = running.join_next().await
        {
            done.push(finished.expect("a benchmark task panicked"));
        }
        running.spawn(task(item));
    }
    while let Some(finished) = running.join_next().await {
        done.push(finished.expect("a benchmark task panicked"));
    }
    done
}

/// Aligned `name  value` lines for stderr.
fn table(title: &str, rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = format!("== {title}\n");
    for (name, value) in rows {
        out.push_str(&format!("  {name:<width$}  {value}\n"));
    }
    out
}

/// The generator's CPU, flagged when it is probably the bottleneck.
fn fmt_generator(cores: f64) -> String {
    let saturated = if cores >= SATURATED {
        " - generator saturated"
    } else {
        ""
    };
    format!("{:.0} % of a core{saturated}", cores * 100.0)
}

/// A latency summary as the tables show it.
pub(crate) fn fmt_latency(summary: &Option<crate::stats::Summary>) -> String {
    summary.as_ref().map_or_else(
        || "n/a".into(),
        |s| {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                s.p50_ms, s.p99_ms, s.max_ms
            )
        },
    )
}

/// "none lost", or how many were lost: the line every receipt-counting scenario checks.
fn fmt_lost(none_lost: bool, lost: usize, expected: usize) -> String {
    if none_lost {
        "none lost".into()
    } else {
        format!("{lost} LOST of {expected}")
    }
}

/// The closing rows of a receipt-counting scenario: server CPU per operation, server CPU,
/// generator CPU.
fn cpu_rows(
    per_op_label: &'static str,
    per_op_us: Option<f64>,
    server_cores: Option<f64>,
    generator_cores: f64,
) -> [(&'static str, String); 3] {
    [
        (per_op_label, fmt_opt(per_op_us, "µs")),
        (
            "server CPU",
            fmt_opt(server_cores.map(|c| c * 100.0), "% of a core"),
        ),
        ("generator CPU", fmt_generator(generator_cores)),
    ]
}

fn fmt_opt(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(
        || "n/a (no --server-pid)".into(),
        |v| format!("{v:.1} {unit}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            target: Target {
                addr: "127.0.0.1:5222".parse().unwrap(),
                domain: "localhost".into(),
                tls: true,
                mechanism: crate::client::Mechanism::Plain,
            },
            user_pattern: "bench{n}".into(),
            password_pattern: "pw{n}".into(),
            accounts: 3,
            op_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn clients_cycle_through_accounts() {
        let setup = setup();
        assert_eq!(setup.credentials(0), ("bench0".into(), "pw0".into()));
        assert_eq!(setup.credentials(4), ("bench1".into(), "pw1".into()));
        assert_eq!(setup.credentials(5), ("bench2".into(), "pw2".into()));
    }

    #[test]
    fn errors_count_by_stage() {
        let mut errors = Errors::default();
        errors.add(&Error {
            stage: Stage::Auth,
            detail: "SASL failure: not-authorized".into(),
        });
        let mut more = Errors::default();
        more.add(&Error {
            stage: Stage::Auth,
            detail: "x".into(),
        });
        more.add(&Error {
            stage: Stage::Timeout,
            detail: "y".into(),
        });
        errors.merge(more);
        assert_eq!(errors.total, 3);
        assert_eq!(errors.by_stage["auth"], 2);
        assert_eq!(errors.by_stage["timeout"], 1);
        assert_eq!(
            errors.first.as_deref(),
            Some("auth: SASL failure: not-authorized")
        );
    }

    #[test]
    fn tally_counts_duplicates_and_reordering() {
        let epoch = Instant::now();
        let now = epoch + Duration::from_millis(10);
        let mut tally = Tally::new(3);
        for seq in [0, 2, 1, 2, 7] {
            tally.record(seq, Duration::from_millis(4), now, epoch);
        }
        assert_eq!(
            (tally.received, tally.duplicated, tally.reordered),
            (3, 1, 1)
        );
        assert_eq!(tally.latencies, [Duration::from_millis(6); 3]);
        let mut all = Tally::default();
        all.merge(tally);
        assert_eq!((all.received, all.last), (3, Some(now)));
    }

    #[test]
    fn attributes_are_escaped() {
        assert_eq!(attr("a'b<c&d"), "a&apos;b&lt;c&amp;d");
    }

    #[tokio::test]
    async fn bounded_runs_everything_within_the_limit() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut out = bounded(0..20, 3, |i| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                i
            }
        })
        .await;
        out.sort_unstable();
        assert_eq!(out, (0..20).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn iq_errors_give_their_condition() {
        let error: Element = format!(
            "<iq xmlns='jabber:client' type='error' id='create'><error type='cancel'>\
             <conflict xmlns='{NS_STANZAS}'/></error></iq>"
        )
        .parse()
        .unwrap();
        assert_eq!(condition(&error), Some("conflict"));
        assert_eq!(
            check(&error).unwrap_err().to_string(),
            "pubsub: create refused: conflict"
        );
        let result: Element = "<iq xmlns='jabber:client' type='result' id='create'/>"
            .parse()
            .unwrap();
        assert_eq!(condition(&result), None);
        assert!(check(&result).is_ok());
    }
}
