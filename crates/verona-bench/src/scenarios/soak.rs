//! `soak`: good clients and hostile connections together for a long time, against a server
//! with its default security limits.
//!
//! Good clients ([`good`]) log in from many loopback addresses, few enough on each that no
//! per-address limit applies to them. Most then sit idle, reading whatever comes; the `active`
//! ones each publish to their own PEP node, message the next active client and ping the server
//! every `interval`, timing each round trip. They run alone for `quiet` (the baseline), then
//! for `secs` alongside the hostile kinds of [`hostile`], each concentrated on a few addresses
//! as an attacker's would be. Afterwards every acknowledged publish is fetched back from a new
//! session, and every message sent must have arrived.
//!
//! The report compares the good clients' latencies in the two phases, follows the server's
//! memory, open files and CPU from `/proc`, and counts what happened to each kind of connection.

mod good;
mod hostile;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Errors, Params, Setup, close_all, fmt_generator, fmt_latency, table};
use crate::client::Client;
use crate::stats::{
    ProcSample, ServerProbe, Summary, core_share, machine_cpu, open_files, own_cpu, tcp_buffers_kib,
};

/// Wait after everything closed before the last memory sample, for the server to free it.
const SETTLE: Duration = Duration::from_secs(2);
/// How often the run tells stderr how the server is doing.
const PROGRESS: Duration = Duration::from_secs(60);
/// The p99 ratio, soak over quiet, the good clients must stay within.
const WITHIN: f64 = 2.0;

#[derive(Clone, Debug, Serialize)]
pub struct SoakOptions {
    /// Good and hostile connections together.
    pub connections: usize,
    pub shares: Shares,
    /// The baseline: good clients alone.
    pub quiet_secs: u64,
    /// Good clients and hostile ones together.
    pub secs: u64,
    /// Each active client publishes, messages and pings once per interval.
    pub interval_ms: u64,
    pub login_in_flight: usize,
    /// Good clients per source address at most.
    pub per_good_address: usize,
    /// Source addresses of each hostile kind.
    pub attack_addresses: usize,
    /// `pubsub#max_items` of the active clients' nodes: older items are rightly gone.
    pub max_items: usize,
    /// How often the server's memory, files and CPU are sampled.
    pub sample_secs: u64,
    /// Bytes a slow reader reads per second.
    pub slow_read_bytes: usize,
    /// How long a slow reader keeps reading slowly before it looks whether it was disconnected.
    pub slow_hold_secs: u64,
}

/// Percent of the connections of each kind; the idle good clients are the rest.
#[derive(Clone, Debug, Serialize)]
pub struct Shares {
    pub active: f64,
    pub garbage: f64,
    pub slow: f64,
    pub stalled: f64,
    pub flood: f64,
    pub huge: f64,
}

/// How many connections of each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub idle: usize,
    pub active: usize,
    pub garbage: usize,
    pub slow: usize,
    pub stalled: usize,
    pub flood: usize,
    pub huge: usize,
}

impl Mix {
    pub fn of(connections: usize, shares: &Shares) -> Result<Mix, String> {
        let count = |name: &str, percent: f64| {
            if (0.0..=100.0).contains(&percent) {
                Ok((connections as f64 * percent / 100.0).round() as usize)
            } else {
                Err(format!(
                    "the {name} share is {percent} %, not within 0..100"
                ))
            }
        };
        let mut mix = Mix {
            idle: 0,
            active: count("active", shares.active)?,
            garbage: count("garbage", shares.garbage)?,
            slow: count("slow", shares.slow)?,
            stalled: count("stalled", shares.stalled)?,
            flood: count("flood", shares.flood)?,
            huge: count("huge", shares.huge)?,
        };
        if mix.active < 2 {
            return Err(format!(
                "{} % of {connections} is {} active clients; they message each other: 2 at least",
                shares.active, mix.active
            ));
        }
        let taken = mix.active + mix.hostile();
        if taken > connections {
            return Err(format!(
                "the shares add up to {taken} connections, more than {connections}"
            ));
        }
        mix.idle = connections - taken;
        Ok(mix)
    }

    pub fn good(&self) -> usize {
        self.idle + self.active
    }

    fn hostile(&self) -> usize {
        self.garbage + self.slow + self.stalled + self.flood + self.huge
    }

    /// Accounts the run uses: one per good client, then the hostile ones'.
    pub fn accounts(&self) -> usize {
        self.good() + hostile::accounts(self)
    }
}

/// Where the run is; active clients measure only in `Quiet` and `Soak`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Login,
    Quiet,
    Soak,
    /// Hostile connections stopped; active clients wait for their last answers.
    Drain,
    Closing,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Login => "login",
            Phase::Quiet => "quiet",
            Phase::Soak => "soak",
            Phase::Drain => "drain",
            Phase::Closing => "closing",
        }
    }
}

/// How one connection attempt ended, from the client's side.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ended {
    ConnectFailed,
    /// Closed before the server said anything: a per-address limit.
    Refused,
    LoginFailed(&'static str, String),
    /// The server ended it: the stream error's condition, `closed` (no stream error seen) or
    /// `reset`.
    ByServer(String),
    /// Still open when the client stopped waiting; the client closed it.
    Outlasted,
    /// Still open at the end of the soak.
    Open,
}

/// What happened to the connections of one kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindReport {
    /// Connections of this kind at once (hostile ones reconnect after each end).
    pub slots: usize,
    /// Source addresses they are spread over.
    pub addresses: usize,
    pub attempts: u64,
    pub connect_failed: u64,
    /// Closed by the server before it said anything: per-address limits.
    pub refused: u64,
    pub logged_in: u64,
    /// Failed logins by stage, and the first failure.
    pub login_failed: BTreeMap<String, u64>,
    pub first_login_failure: Option<String>,
    /// Connections the server ended, by what the client saw (see [`Ended::ByServer`]).
    pub ended_by_server: BTreeMap<String, u64>,
    /// Still open when the client gave up waiting for the server to end them.
    pub outlasted: u64,
    pub open_at_end: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Stanzas good clients received (idle ones: what floods sent them).
    pub stanzas_received: u64,
}

impl KindReport {
    fn count(&mut self, ended: Ended) {
        match ended {
            Ended::ConnectFailed => self.connect_failed += 1,
            Ended::Refused => self.refused += 1,
            Ended::LoginFailed(stage, detail) => {
                *self.login_failed.entry(stage.to_owned()).or_default() += 1;
                self.first_login_failure.get_or_insert(detail);
            }
            Ended::ByServer(reason) => *self.ended_by_server.entry(reason).or_default() += 1,
            Ended::Outlasted => self.outlasted += 1,
            Ended::Open => self.open_at_end += 1,
        }
    }

    /// Adds another slot's counts (not its `addresses`: the caller knows those).
    fn merge(&mut self, other: KindReport) {
        self.slots += other.slots;
        self.attempts += other.attempts;
        self.connect_failed += other.connect_failed;
        self.refused += other.refused;
        self.logged_in += other.logged_in;
        for (stage, n) in other.login_failed {
            *self.login_failed.entry(stage).or_default() += n;
        }
        if self.first_login_failure.is_none() {
            self.first_login_failure = other.first_login_failure;
        }
        for (reason, n) in other.ended_by_server {
            *self.ended_by_server.entry(reason).or_default() += n;
        }
        self.outlasted += other.outlasted;
        self.open_at_end += other.open_at_end;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.stanzas_received += other.stanzas_received;
    }

    pub fn ended_by_server(&self) -> u64 {
        self.ended_by_server.values().sum()
    }

    fn describe(&self) -> String {
        let reasons: Vec<String> = self
            .ended_by_server
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let failures: Vec<String> = self
            .login_failed
            .iter()
            .map(|(stage, n)| format!("{stage} {n}"))
            .collect();
        let mut out = format!(
            "{} on {} addr: {} connections, {} refused, {} logged in",
            self.slots, self.addresses, self.attempts, self.refused, self.logged_in
        );
        if !failures.is_empty() {
            out.push_str(&format!(" ({} failed)", failures.join(", ")));
        }
        out.push_str(&format!("; ended by server {}", self.ended_by_server()));
        if !reasons.is_empty() {
            out.push_str(&format!(" ({})", reasons.join(", ")));
        }
        out.push_str(&format!(
            "; outlasted {}, open at end {}",
            self.outlasted, self.open_at_end
        ));
        if self.connect_failed > 0 {
            out.push_str(&format!(", connect failed {}", self.connect_failed));
        }
        if self.bytes_sent + self.bytes_received > 0 {
            out.push_str(&format!(
                "; sent {:.1} MB, received {:.1} MB",
                self.bytes_sent as f64 / 1e6,
                self.bytes_received as f64 / 1e6
            ));
        }
        if self.stanzas_received > 0 {
            out.push_str(&format!("; {} stanzas received", self.stanzas_received));
        }
        out
    }
}

/// Source address number `n` of the good clients: 127.1.0.1, 127.1.0.2, …
fn good_address(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8))
}

/// Source address number `n` of hostile kind `kind`: 127.2.KIND.1, …
fn hostile_address(kind: u8, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 2, kind, (n % 250 + 1) as u8))
}

/// Round trips of the active clients in one phase.
#[derive(Clone, Debug, Default)]
struct Samples {
    publish: Vec<Duration>,
    message: Vec<Duration>,
    ping: Vec<Duration>,
    /// Requests not answered within the op timeout.
    timeouts: u64,
    /// Requests answered with an error, by condition.
    refused: BTreeMap<String, u64>,
}

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.publish.extend(other.publish);
        self.message.extend(other.message);
        self.ping.extend(other.ping);
        self.timeouts += other.timeouts;
        for (condition, n) in other.refused {
            *self.refused.entry(condition).or_default() += n;
        }
    }
}

/// CPU and wall time from one moment on.
struct Window {
    start: Instant,
    server: Option<ProcSample>,
    own: Duration,
    machine: Option<Duration>,
}

/// What a [`Window`] measured.
struct Measured {
    secs: f64,
    server_cores: Option<f64>,
    generator_cores: f64,
    /// What the rest of the machine used meanwhile (other work shares the cores).
    other_cores: Option<f64>,
}

impl Window {
    fn open(server: ServerProbe) -> Window {
        Window {
            start: Instant::now(),
            server: server.sample(),
            own: own_cpu(),
            machine: machine_cpu().ok(),
        }
    }

    fn close(self, server: ServerProbe) -> Measured {
        let wall = self.start.elapsed();
        let server_cpu = self
            .server
            .zip(server.sample())
            .map(|(before, after)| after.cpu.saturating_sub(before.cpu));
        let own = own_cpu() - self.own;
        let other = self.machine.zip(machine_cpu().ok()).zip(server_cpu).map(
            |((before, after), server)| {
                after
                    .saturating_sub(before)
                    .saturating_sub(server)
                    .saturating_sub(own)
            },
        );
        Measured {
            secs: wall.as_secs_f64(),
            server_cores: server_cpu.map(|cpu| core_share(cpu, wall)),
            generator_cores: core_share(own, wall),
            other_cores: other.map(|cpu| core_share(cpu, wall)),
        }
    }
}

/// The server's state at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Since the run started.
    pub t_s: f64,
    pub phase: Phase,
    pub rss_kib: u64,
    pub cpu_s: f64,
    pub open_files: usize,
    /// The kernel's TCP buffers, whole machine (generator included).
    pub tcp_buffers_kib: u64,
}

/// Samples the server every `every` until `phase` closes, then once more; reports progress
/// on stderr.
async fn sample_server(
    pid: u32,
    every: Duration,
    epoch: Instant,
    mut phase: watch::Receiver<Phase>,
) -> Vec<Sample> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut tick = tokio::time::interval(every);
    let mut reported: Option<(Instant, f64)> = None;
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            changed = phase.changed() => match changed {
                Ok(()) => continue,
                Err(_) => true,
            },
        };
        let Some(sample) = take_sample(pid, epoch, *phase.borrow()) else {
            break;
        };
        let now = Instant::now();
        match reported {
            Some((at, cpu)) if now - at >= PROGRESS || last => {
                eprintln!(
                    "soak: {:.0} s, {}: server RSS {:.1} MiB, {} files open, TCP buffers {:.1} MiB, \
                     CPU {:.0} % of a core",
                    sample.t_s,
                    sample.phase.as_str(),
                    sample.rss_kib as f64 / 1024.0,
                    sample.open_files,
                    sample.tcp_buffers_kib as f64 / 1024.0,
                    (sample.cpu_s - cpu) / (now - at).as_secs_f64() * 100.0
                );
                reported = Some((now, sample.cpu_s));
            }
            Some(_) => {}
            None => reported = Some((now, sample.cpu_s)),
        }
        samples.push(sample);
        if last {
            break;
        }
    }
    samples
}

fn take_sample(pid: u32, epoch: Instant, phase: Phase) -> Option<Sample> {
    let proc = ServerProbe(Some(pid)).sample()?;
    Some(Sample {
        t_s: epoch.elapsed().as_secs_f64(),
        phase,
        rss_kib: proc.rss_kib,
        cpu_s: proc.cpu.as_secs_f64(),
        open_files: open_files(pid).unwrap_or(0),
        tcp_buffers_kib: tcp_buffers_kib().unwrap_or(0),
    })
}

/// Latencies and failures of the active clients in one phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub secs: f64,
    pub publish: Option<Summary>,
    pub message: Option<Summary>,
    pub ping: Option<Summary>,
    /// The three together.
    pub all: Option<Summary>,
    /// Round trips measured.
    pub operations: usize,
    pub timeouts: u64,
    /// Requests answered with an error, by condition.
    pub refused: BTreeMap<String, u64>,
    pub server_cpu_cores: Option<f64>,
    pub generator_cpu_cores: f64,
    /// Every other process on the machine.
    pub other_cpu_cores: Option<f64>,
}

impl PhaseReport {
    fn new(mut samples: Samples, measured: Measured) -> Self {
        let mut all: Vec<Duration> = [&samples.publish, &samples.message, &samples.ping]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        PhaseReport {
            publish: Summary::of(&mut samples.publish),
            message: Summary::of(&mut samples.message),
            ping: Summary::of(&mut samples.ping),
            operations: all.len(),
            all: Summary::of(&mut all),
            timeouts: samples.timeouts,
            refused: samples.refused,
            secs: measured.secs,
            server_cpu_cores: measured.server_cores,
            generator_cpu_cores: measured.generator_cores,
            other_cpu_cores: measured.other_cores,
        }
    }
}

/// Soak p99 over quiet p99.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub publish: Option<f64>,
    pub message: Option<f64>,
    pub ping: Option<f64>,
    /// Of the three pooled: shown, not judged, since a mix's p99 moves with whichever
    /// operation owns its tail.
    pub all: Option<f64>,
}

impl Ratios {
    fn of(quiet: &PhaseReport, soak: &PhaseReport) -> Ratios {
        let ratio = |q: &Option<Summary>, s: &Option<Summary>| {
            q.as_ref()
                .zip(s.as_ref())
                .map(|(q, s)| s.p99_ms / q.p99_ms.max(f64::MIN_POSITIVE))
        };
        Ratios {
            publish: ratio(&quiet.publish, &soak.publish),
            message: ratio(&quiet.message, &soak.message),
            ping: ratio(&quiet.ping, &soak.ping),
            all: ratio(&quiet.all, &soak.all),
        }
    }

    /// Every operation's ratio known and within [`WITHIN`].
    fn within(&self) -> bool {
        [self.publish, self.message, self.ping]
            .into_iter()
            .all(|r| r.is_some_and(|r| r <= WITHIN))
    }
}

/// The server's memory and files over the run.
#[derive(Clone, Debug, Serialize)]
pub struct ServerReport {
    pub rss_min_kib: u64,
    pub rss_max_kib: u64,
    pub rss_last_kib: u64,
    pub rss_quiet_max_kib: Option<u64>,
    pub rss_soak_first_half_max_kib: Option<u64>,
    pub rss_soak_second_half_max_kib: Option<u64>,
    pub open_files_max: usize,
    pub tcp_buffers_max_kib: u64,
    pub samples: Vec<Sample>,
}

impl ServerReport {
    /// `None` without samples; `soak_from` and `soak_secs` place the halves of the soak.
    fn of(samples: Vec<Sample>, soak_from: f64, soak_secs: f64) -> Option<ServerReport> {
        let max_of = |keep: &dyn Fn(&Sample) -> bool| {
            samples.iter().filter(|s| keep(s)).map(|s| s.rss_kib).max()
        };
        let middle = soak_from + soak_secs / 2.0;
        Some(ServerReport {
            rss_min_kib: samples.iter().map(|s| s.rss_kib).min()?,
            rss_max_kib: samples.iter().map(|s| s.rss_kib).max()?,
            rss_last_kib: samples.last()?.rss_kib,
            rss_quiet_max_kib: max_of(&|s| s.phase == Phase::Quiet),
            rss_soak_first_half_max_kib: max_of(&|s| s.phase == Phase::Soak && s.t_s < middle),
            rss_soak_second_half_max_kib: max_of(&|s| s.phase == Phase::Soak && s.t_s >= middle),
            open_files_max: samples.iter().map(|s| s.open_files).max()?,
            tcp_buffers_max_kib: samples.iter().map(|s| s.tcp_buffers_kib).max()?,
            samples,
        })
    }
}

/// Acknowledged data checked at the end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DataCheck {
    /// Publishes answered with a result.
    pub acknowledged: u64,
    /// Of those, the ones their node must still hold (the last `max_items` published).
    pub checked: u64,
    pub found: u64,
    pub missing: u64,
    /// Items that could not be looked for (the verifying login or request failed).
    pub unchecked: u64,
    pub first_missing: Option<String>,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub messages_lost: u64,
    pub messages_duplicated: u64,
    /// Refused with their sender told (`type='error'`), so neither received nor lost.
    pub messages_bounced: u64,
}

impl DataCheck {
    pub fn intact(&self) -> bool {
        self.missing == 0 && self.unchecked == 0 && self.messages_lost == 0
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub scenario: &'static str,
    #[serde(flatten)]
    pub params: Params,
    #[serde(flatten)]
    pub options: SoakOptions,
    pub mix: Mix,
    pub login_s: f64,
    pub quiet: PhaseReport,
    pub soak: PhaseReport,
    pub p99_ratio: Ratios,
    pub within_2x: bool,
    pub server: Option<ServerReport>,
    pub kinds: BTreeMap<&'static str, KindReport>,
    pub data: DataCheck,
    pub data_intact: bool,
    /// Good clients the server disconnected.
    pub good_disconnected: u64,
    /// Failures outside the counts above: node creation, verification, closing.
    pub errors: Errors,
}

/// The kinds in the order the table shows them.
const KIND_ORDER: [&str; 7] = [
    "good_idle",
    "good_active",
    "garbage",
    "slow_reader",
    "stalled_writer",
    "flood",
    "huge_stanza",
];

pub async fn run(
    setup: &Setup,
    options: &SoakOptions,
    mix: Mix,
    server: ServerProbe,
) -> SoakReport {
    let epoch = Instant::now();
    let (phase_tx, phase) = watch::channel(Phase::Login);
    let every = Duration::from_secs(options.sample_secs.max(1));
    let sampler = server
        .0
        .map(|pid| tokio::spawn(sample_server(pid, every, epoch, phase.clone())));
    let mut errors = Errors::default();
    let mut kinds = BTreeMap::new();

    let login = Instant::now();
    let goods = good::log_in_all(setup, options, &mix).await;
    let login_s = login.elapsed().as_secs_f64();
    let (mut idle_report, active_report) = (goods.idle_report, goods.active_report);
    let victims: Vec<String> = goods.idle.iter().map(|c| good::bare(&c.jid)).collect();
    let actives = good::prepare(goods.active, options, setup.op_timeout, &mut errors).await;
    let busy: Vec<String> = actives.iter().map(|a| good::bare(&a.client.jid)).collect();
    let (stop_idle_tx, stop_idle) = watch::channel(false);
    let idle: Vec<_> = goods
        .idle
        .into_iter()
        .map(|client| tokio::spawn(good::idle(client, stop_idle.clone())))
        .collect();

    phase_tx.send_replace(Phase::Quiet);
    let domain: Arc<str> = setup.target.domain.as_str().into();
    let active: Vec<_> = actives
        .into_iter()
        .map(|a| {
            tokio::spawn(good::active(
                a,
                Duration::from_millis(options.interval_ms.max(1)),
                setup.op_timeout,
                domain.clone(),
                epoch,
                phase.clone(),
            ))
        })
        .collect();
    let window = Window::open(server);
    tokio::time::sleep(Duration::from_secs(options.quiet_secs)).await;
    let quiet_window = window.close(server);

    phase_tx.send_replace(Phase::Soak);
    let soak_from = epoch.elapsed().as_secs_f64();
    let window = Window::open(server);
    let (stop_tx, stop) = watch::channel(false);
    let context = Arc::new(hostile::Context::new(setup, options, mix, victims, busy));
    let attackers = hostile::spawn(context, stop);
    tokio::time::sleep(Duration::from_secs(options.secs)).await;
    let soak_window = window.close(server);
    stop_tx.send_replace(true);
    for (name, report) in hostile::collect(attackers, options.attack_addresses).await {
        kinds.insert(name, report);
    }

    phase_tx.send_replace(Phase::Drain);
    let mut ends = Vec::with_capacity(active.len());
    for task in active {
        ends.push(task.await.expect("an active client task panicked"));
    }
    let data = good::verify(setup, options, mix.good(), &ends, &mut errors).await;
    phase_tx.send_replace(Phase::Closing);
    let (mut quiet, mut soak) = (Samples::default(), Samples::default());
    let mut active_report = active_report;
    let mut clients: Vec<Client> = Vec::with_capacity(mix.good());
    for end in ends {
        quiet.merge(end.quiet);
        soak.merge(end.soak);
        active_report.stanzas_received += end.stanzas;
        match end.client {
            Ok(client) => {
                active_report.open_at_end += 1;
                clients.push(client);
            }
            Err(reason) => active_report.count(Ended::ByServer(reason)),
        }
    }
    stop_idle_tx.send_replace(true);
    for task in idle {
        let (stanzas, client) = task.await.expect("an idle client task panicked");
        idle_report.stanzas_received += stanzas;
        match client {
            Ok(client) => {
                idle_report.open_at_end += 1;
                clients.push(client);
            }
            Err(reason) => idle_report.count(Ended::ByServer(reason)),
        }
    }
    errors.merge(close_all(clients, options.login_in_flight, setup.op_timeout).await);
    tokio::time::sleep(SETTLE).await;
    drop(phase_tx);
    let samples = match sampler {
        Some(task) => task.await.expect("the sampler panicked"),
        None => Vec::new(),
    };

    let good_disconnected = idle_report.ended_by_server() + active_report.ended_by_server();
    kinds.insert("good_idle", idle_report);
    kinds.insert("good_active", active_report);
    let quiet = PhaseReport::new(quiet, quiet_window);
    let soak = PhaseReport::new(soak, soak_window);
    let p99_ratio = Ratios::of(&quiet, &soak);
    SoakReport {
        scenario: "soak",
        params: setup.params(),
        options: options.clone(),
        mix,
        login_s,
        within_2x: p99_ratio.within(),
        p99_ratio,
        quiet,
        soak,
        server: ServerReport::of(samples, soak_from, options.secs as f64),
        kinds,
        data_intact: data.intact(),
        data,
        good_disconnected,
        errors,
    }
}

/// A share of a core as a percentage.
fn percent(cores: Option<f64>) -> String {
    cores.map_or_else(|| "n/a".into(), |c| format!("{:.0} %", c * 100.0))
}

impl SoakReport {
    /// Latency within 2x of quiet, nothing acknowledged lost, no good client disconnected,
    /// nothing else failed.
    pub fn ok(&self) -> bool {
        self.within_2x && self.data_intact && self.good_disconnected == 0 && self.errors.total == 0
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let m = &self.mix;
        let ratio = |r: Option<f64>| r.map_or_else(|| "n/a".into(), |r| format!("{r:.2}"));
        let r = &self.p99_ratio;
        let mut rows: Vec<(String, String)> = vec![
            (
                "mix".into(),
                format!(
                    "{} good ({} idle, {} active), garbage {}, slow readers {}, stalled writers {}, \
                     floods {}, huge stanzas {}",
                    m.good(),
                    m.idle,
                    m.active,
                    m.garbage,
                    m.slow,
                    m.stalled,
                    m.flood,
                    m.huge
                ),
            ),
            ("good logins".into(), format!("{:.1} s", self.login_s)),
        ];
        for (name, phase) in [("quiet", &self.quiet), ("soak", &self.soak)] {
            for (op, summary) in [
                ("publish", &phase.publish),
                ("message", &phase.message),
                ("ping", &phase.ping),
                ("all", &phase.all),
            ] {
                rows.push((format!("{name} {op}"), fmt_latency(summary)));
            }
            rows.push((
                format!("{name} ops"),
                format!(
                    "{} in {:.0} s, {} timed out, refused {:?}; CPU: server {}, generator {}, \
                     other processes {}",
                    phase.operations,
                    phase.secs,
                    phase.timeouts,
                    phase.refused,
                    percent(phase.server_cpu_cores),
                    fmt_generator(phase.generator_cpu_cores),
                    percent(phase.other_cpu_cores),
                ),
            ));
        }
        rows.push((
            "p99 soak/quiet".into(),
            format!(
                "publish {}, message {}, ping {}, all {}: {}",
                ratio(r.publish),
                ratio(r.message),
                ratio(r.ping),
                ratio(r.all),
                if self.within_2x {
                    "within 2x"
                } else {
                    "NOT within 2x"
                }
            ),
        ));
        let mib = |kib: Option<u64>| {
            kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        };
        match &self.server {
            Some(s) => {
                rows.push((
                    "server RSS".into(),
                    format!(
                        "min {}, max {}, last {}; max in quiet {}, soak 1st half {}, 2nd half {}",
                        mib(Some(s.rss_min_kib)),
                        mib(Some(s.rss_max_kib)),
                        mib(Some(s.rss_last_kib)),
                        mib(s.rss_quiet_max_kib),
                        mib(s.rss_soak_first_half_max_kib),
                        mib(s.rss_soak_second_half_max_kib)
                    ),
                ));
                rows.push((
                    "server files".into(),
                    format!(
                        "{} open at most; kernel TCP buffers (machine) {} at most",
                        s.open_files_max,
                        mib(Some(s.tcp_buffers_max_kib))
                    ),
                ));
            }
            None => rows.push(("server".into(), "n/a (no --server-pid)".into())),
        }
        for name in KIND_ORDER {
            if let Some(kind) = self.kinds.get(name) {
                rows.push((name.into(), kind.describe()));
            }
        }
        let d = &self.data;
        rows.push((
            "acknowledged".into(),
            format!(
                "{} publishes, {} checked: {} found, {} MISSING{}, {} unchecked",
                d.acknowledged,
                d.checked,
                d.found,
                d.missing,
                d.first_missing
                    .as_ref()
                    .map_or_else(String::new, |m| format!(" (first: {m})")),
                d.unchecked
            )
            .replace(" 0 MISSING", " 0 missing"),
        ));
        rows.push((
            "messages".into(),
            format!(
                "{} sent, {} received, {} bounced, {} lost, {} duplicated",
                d.messages_sent,
                d.messages_received,
                d.messages_bounced,
                d.messages_lost,
                d.messages_duplicated
            ),
        ));
        rows.push(("errors".into(), self.errors.describe()));
        let rows: Vec<(&str, String)> = rows.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        table(
            &format!(
                "soak: {} connections, {} s quiet then {} s soak, {} via {}{}",
                o.connections,
                o.quiet_secs,
                o.secs,
                self.params.mechanism,
                self.params.addr,
                if self.params.tls { " (STARTTLS)" } else { "" }
            ),
            &rows,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares() -> Shares {
        Shares {
            active: 3.0,
            garbage: 2.0,
            slow: 2.0,
            stalled: 3.0,
            flood: 0.2,
            huge: 2.0,
        }
    }

    #[test]
    fn the_mix_divides_the_connections() {
        let mix = Mix::of(10_000, &shares()).unwrap();
        assert_eq!(
            mix,
            Mix {
                idle: 8_780,
                active: 300,
                garbage: 200,
                slow: 200,
                stalled: 300,
                flood: 20,
                huge: 200,
            }
        );
        assert_eq!(mix.good() + mix.hostile(), 10_000);
        assert!(Mix::of(10, &shares()).unwrap_err().contains("2 at least"));
        let mut greedy = shares();
        greedy.garbage = 99.0;
        assert!(Mix::of(1000, &greedy).unwrap_err().contains("add up"));
        greedy.garbage = -1.0;
        assert!(Mix::of(1000, &greedy).unwrap_err().contains("garbage"));
    }

    #[test]
    fn addresses_are_loopback_and_apart() {
        assert_eq!(good_address(0).to_string(), "127.1.0.1");
        assert_eq!(good_address(251).to_string(), "127.1.1.2");
        assert_eq!(hostile_address(3, 1).to_string(), "127.2.3.2");
        assert!(good_address(300).is_loopback() && hostile_address(4, 9).is_loopback());
    }

    #[test]
    fn kind_reports_count_and_merge() {
        let mut a = KindReport {
            slots: 1,
            ..KindReport::default()
        };
        a.count(Ended::Refused);
        a.count(Ended::ByServer("policy-violation".into()));
        a.count(Ended::LoginFailed("bind", "bind refused".into()));
        let mut b = KindReport {
            slots: 1,
            ..KindReport::default()
        };
        b.count(Ended::ByServer("policy-violation".into()));
        b.count(Ended::Open);
        a.merge(b);
        assert_eq!((a.slots, a.refused, a.open_at_end), (2, 1, 1));
        assert_eq!(a.ended_by_server(), 2);
        assert_eq!(a.login_failed["bind"], 1);
        assert!(a.describe().contains("policy-violation 2"));
    }

    fn summary(p99_ms: f64) -> Option<Summary> {
        Some(Summary {
            p50_ms: 1.0,
            p99_ms,
            max_ms: p99_ms,
            mean_ms: 1.0,
        })
    }

    fn phase(p99_ms: f64) -> PhaseReport {
        PhaseReport {
            secs: 1.0,
            publish: summary(p99_ms),
            message: summary(p99_ms),
            ping: summary(p99_ms),
            all: summary(p99_ms),
            operations: 3,
            timeouts: 0,
            refused: BTreeMap::new(),
            server_cpu_cores: None,
            generator_cpu_cores: 0.0,
            other_cpu_cores: None,
        }
    }

    #[test]
    fn ratios_compare_p99s() {
        let ratios = Ratios::of(&phase(4.0), &phase(6.0));
        assert_eq!(ratios.all, Some(1.5));
        assert!(ratios.within());
        assert!(!Ratios::of(&phase(4.0), &phase(9.0)).within());
        let mut none = phase(4.0);
        none.ping = None;
        assert!(!Ratios::of(&none, &phase(4.0)).within());
        // The pooled ratio is not judged.
        let mut pooled = phase(4.0);
        pooled.all = summary(100.0);
        assert!(Ratios::of(&phase(4.0), &pooled).within());
    }

    #[test]
    fn server_report_splits_the_soak() {
        let at = |t_s: f64, phase: Phase, rss_kib: u64| Sample {
            t_s,
            phase,
            rss_kib,
            cpu_s: 0.0,
            open_files: rss_kib as usize,
            tcp_buffers_kib: 1,
        };
        let samples = vec![
            at(1.0, Phase::Login, 10),
            at(2.0, Phase::Quiet, 20),
            at(3.0, Phase::Soak, 40),
            at(6.0, Phase::Soak, 30),
            at(9.0, Phase::Closing, 15),
        ];
        let report = ServerReport::of(samples, 2.5, 6.0).unwrap();
        assert_eq!((report.rss_min_kib, report.rss_max_kib), (10, 40));
        assert_eq!(report.rss_last_kib, 15);
        assert_eq!(report.rss_quiet_max_kib, Some(20));
        assert_eq!(report.rss_soak_first_half_max_kib, Some(40));
        assert_eq!(report.rss_soak_second_half_max_kib, Some(30));
        assert_eq!(report.open_files_max, 40);
        assert!(ServerReport::of(Vec::new(), 0.0, 1.0).is_none());
    }
}
