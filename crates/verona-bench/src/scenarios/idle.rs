//! `idle`: log N clients in (K at a time) and hold them all, to measure what an idle session
//! costs the server in memory, and in CPU while nothing happens.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{Errors, Params, Setup, close_all, fmt_opt, log_in_all, table};
use crate::stats::{ServerProbe, Summary, core_share};

#[derive(Clone, Debug)]
pub struct IdleOptions {
    pub clients: usize,
    pub in_flight: usize,
    /// How long all sessions are held after the memory sample.
    pub hold: Duration,
    /// Wait between the last login and the memory sample, for the server's allocations to settle.
    pub settle: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    pub scenario: &'static str,
    #[serde(flatten)]
    pub params: Params,
    pub clients: usize,
    pub in_flight: usize,
    pub hold_s: f64,
    /// Sessions bound and held.
    pub connected: usize,
    pub errors: Errors,
    pub login_elapsed_s: f64,
    pub logins_per_s: f64,
    pub latency: Option<Summary>,
    /// Server CPU from the first login until the memory sample, per session.
    pub server_cpu_us_per_login: Option<f64>,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    /// (after − before) / connected.
    pub server_rss_per_connection_kib: Option<f64>,
    /// Server CPU while every session sat idle, in cores.
    pub server_idle_cpu_cores: Option<f64>,
    /// Held sessions that could not be closed cleanly at the end (dropped while idle?).
    pub lost: usize,
}

pub async fn run(setup: &Setup, options: &IdleOptions, server: ServerProbe) -> IdleReport {
    let before = server.sample();
    let start = Instant::now();
    let logins = log_in_all(setup, options.clients, options.in_flight, true, 0..0).await;
    let login_elapsed = start.elapsed();
    tokio::time::sleep(options.settle).await;
    let after = server.sample();
    let connected = logins.clients.len();
    tokio::time::sleep(options.hold).await;
    let held = server.sample();
    let closes = close_all(logins.clients, options.in_flight, setup.op_timeout).await;
    let lost = closes.total;
    let mut errors = logins.errors;
    errors.merge(closes);
    let mut latencies = logins.latencies;
    let rss = before.zip(after).map(|(b, a)| (b.rss_kib, a.rss_kib));
    IdleReport {
        scenario: "idle",
        params: setup.params(),
        clients: options.clients,
        in_flight: options.in_flight,
        hold_s: options.hold.as_secs_f64(),
        connected,
        errors,
        login_elapsed_s: login_elapsed.as_secs_f64(),
        logins_per_s: connected as f64 / login_elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        latency: Summary::of(&mut latencies),
        server_cpu_us_per_login: before
            .zip(after)
            .filter(|_| connected > 0)
            .map(|(b, a)| a.cpu.saturating_sub(b.cpu).as_secs_f64() * 1e6 / connected as f64),
        server_rss_before_kib: rss.map(|(b, _)| b),
        server_rss_after_kib: rss.map(|(_, a)| a),
        server_rss_per_connection_kib: rss
            .filter(|_| connected > 0)
            .map(|(b, a)| (a as f64 - b as f64) / connected as f64),
        server_idle_cpu_cores: after
            .zip(held)
            .filter(|_| !options.hold.is_zero())
            .map(|(a, h)| core_share(h.cpu.saturating_sub(a.cpu), options.hold)),
        lost,
    }
}

impl IdleReport {
    pub fn table(&self) -> String {
        let rss = match (self.server_rss_before_kib, self.server_rss_after_kib) {
            (Some(b), Some(a)) => format!(
                "{:.1} MiB -> {:.1} MiB",
                b as f64 / 1024.0,
                a as f64 / 1024.0
            ),
            _ => "n/a (no --server-pid)".into(),
        };
        let latency = self.latency.as_ref().map_or_else(
            || "n/a".into(),
            |l| {
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    l.p50_ms, l.p99_ms, l.max_ms
                )
            },
        );
        table(
            &format!(
                "idle: {} clients, {} in flight, held {} s, {} via {}{}",
                self.clients,
                self.in_flight,
                self.hold_s,
                self.params.mechanism,
                self.params.addr,
                if self.params.tls { " (STARTTLS)" } else { "" }
            ),
            &[
                (
                    "connected",
                    format!(
                        "{} in {:.2} s ({:.0} logins/s)",
                        self.connected, self.login_elapsed_s, self.logins_per_s
                    ),
                ),
                (
                    "server CPU/login",
                    fmt_opt(self.server_cpu_us_per_login, "µs"),
                ),
                ("login latency", latency),
                ("errors", self.errors.describe()),
                ("server RSS", rss),
                (
                    "server RSS/conn",
                    fmt_opt(self.server_rss_per_connection_kib, "KiB"),
                ),
                (
                    "server idle CPU",
                    fmt_opt(self.server_idle_cpu_cores.map(|c| c * 100.0), "% of a core"),
                ),
                ("lost while idle", self.lost.to_string()),
            ],
        )
    }
}
