//! `login`: N clients connect, negotiate TLS, authenticate, bind, send initial presence and
//! disconnect (or stay, with `keep`), K at a time. Measures logins per second, login latency,
//! and CPU spent per login by the server and by the generator itself.

use serde::Serialize;
use tokio::time::Instant;

use super::{
    Errors, Params, SATURATED, Setup, close_all, fmt_generator, fmt_opt, log_in_all, table,
};
use crate::stats::{ServerProbe, Summary, core_share, own_cpu};

#[derive(Clone, Debug)]
pub struct LoginOptions {
    pub clients: usize,
    pub in_flight: usize,
    /// Keep every session until all have logged in, then close them (outside the measurement).
    pub keep: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoginReport {
    pub scenario: &'static str,
    #[serde(flatten)]
    pub params: Params,
    pub clients: usize,
    pub in_flight: usize,
    pub keep: bool,
    /// Successful logins.
    pub ok: usize,
    pub errors: Errors,
    /// Wall time of the measured run: every login, and every close unless `keep`.
    pub elapsed_s: f64,
    pub logins_per_s: f64,
    pub latency: Option<Summary>,
    /// Server CPU time over the run divided by the number of clients.
    pub server_cpu_us_per_login: Option<f64>,
    /// Server CPU over the run, in cores.
    pub server_cpu_cores: Option<f64>,
    /// The generator's own CPU over the run, in cores.
    pub generator_cpu_cores: f64,
    pub generator_saturated: bool,
}

pub async fn run(setup: &Setup, options: &LoginOptions, server: ServerProbe) -> LoginReport {
    let server_before = server.sample();
    let own_before = own_cpu();
    let start = Instant::now();
    let logins = log_in_all(
        setup,
        options.clients,
        options.in_flight,
        options.keep,
        0..0,
    )
    .await;
    let elapsed = start.elapsed();
    let own = own_cpu() - own_before;
    let server_cpu = server_before
        .zip(server.sample())
        .map(|(before, after)| after.cpu.saturating_sub(before.cpu));
    let mut errors = logins.errors;
    errors.merge(close_all(logins.clients, options.in_flight, setup.op_timeout).await);
    let mut latencies = logins.latencies;
    let generator_cpu_cores = core_share(own, elapsed);
    LoginReport {
        scenario: "login",
        params: setup.params(),
        clients: options.clients,
        in_flight: options.in_flight,
        keep: options.keep,
        ok: latencies.len(),
        errors,
        elapsed_s: elapsed.as_secs_f64(),
        logins_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        latency: Summary::of(&mut latencies),
        server_cpu_us_per_login: server_cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / options.clients.max(1) as f64),
        server_cpu_cores: server_cpu.map(|cpu| core_share(cpu, elapsed)),
        generator_cpu_cores,
        generator_saturated: generator_cpu_cores >= SATURATED,
    }
}

impl LoginReport {
    pub fn table(&self) -> String {
        let latency = self.latency.as_ref().map_or_else(
            || "n/a".into(),
            |l| {
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (mean {:.1} ms)",
                    l.p50_ms, l.p99_ms, l.max_ms, l.mean_ms
                )
            },
        );
        table(
            &format!(
                "login: {} clients, {} in flight, {} via {}{}",
                self.clients,
                self.in_flight,
                self.params.mechanism,
                self.params.addr,
                if self.params.tls { " (STARTTLS)" } else { "" }
            ),
            &[
                (
                    "logins",
                    format!("{} ok in {:.2} s", self.ok, self.elapsed_s),
                ),
                ("logins/s", format!("{:.0}", self.logins_per_s)),
                ("latency", latency),
                ("errors", self.errors.describe()),
                (
                    "server CPU/login",
                    fmt_opt(self.server_cpu_us_per_login, "µs"),
                ),
                (
                    "server CPU",
                    fmt_opt(self.server_cpu_cores.map(|c| c * 100.0), "% of a core"),
                ),
                ("generator CPU", fmt_generator(self.generator_cpu_cores)),
            ],
        )
    }
}
