//! `summarize`: the side-by-side table of `bench/compare.sh`. It reads the JSON reports of each
//! server's runs and prints, per metric, each server's median and Verona's ratio to each peer,
//! as markdown.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// Verona first; the peers it is compared with after it.
const SERVERS: [&str; 3] = ["verona", "prosody", "ejabberd"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    /// Context, not a score: no ratio.
    Neither,
}

struct Metric {
    scenario: &'static str,
    label: &'static str,
    better: Better,
    value: fn(&Value) -> Option<f64>,
}

fn num(report: &Value, pointer: &str) -> Option<f64> {
    report.pointer(pointer)?.as_f64()
}

/// Failed clients, lost and duplicated stanzas: anything but 0 makes the row above suspect.
fn failures(report: &Value) -> Option<f64> {
    let counts = ["/errors/total", "/lost", "/duplicated"].map(|p| num(report, p));
    Some(counts.into_iter().flatten().sum())
}

const METRICS: &[Metric] = &[
    Metric {
        scenario: "login",
        label: "logins/s",
        better: Better::Higher,
        value: |r| num(r, "/logins_per_s"),
    },
    Metric {
        scenario: "login",
        label: "server CPU per login, µs",
        better: Better::Lower,
        value: |r| num(r, "/server_cpu_us_per_login"),
    },
    Metric {
        scenario: "login",
        label: "login latency p99, ms",
        better: Better::Lower,
        value: |r| num(r, "/latency/p99_ms"),
    },
    Metric {
        scenario: "login",
        label: "generator CPU, % of a core",
        better: Better::Neither,
        value: |r| num(r, "/generator_cpu_cores").map(|c| c * 100.0),
    },
    Metric {
        scenario: "login",
        label: "failures",
        better: Better::Neither,
        value: failures,
    },
    Metric {
        scenario: "idle",
        label: "connections held",
        better: Better::Neither,
        value: |r| num(r, "/connected"),
    },
    Metric {
        scenario: "idle",
        label: "server RSS per connection, KiB",
        better: Better::Lower,
        value: |r| num(r, "/server_rss_per_connection_kib"),
    },
    Metric {
        scenario: "idle",
        label: "failures",
        better: Better::Neither,
        value: failures,
    },
    Metric {
        scenario: "fanout",
        label: "notifications/s",
        better: Better::Higher,
        value: |r| num(r, "/notifications_per_s"),
    },
    Metric {
        scenario: "fanout",
        label: "server CPU per notification, µs",
        better: Better::Lower,
        value: |r| num(r, "/server_cpu_us_per_notification"),
    },
    Metric {
        scenario: "fanout",
        label: "publish→notification p50, ms",
        better: Better::Lower,
        value: |r| num(r, "/latency/p50_ms"),
    },
    Metric {
        scenario: "fanout",
        label: "publish→notification p99, ms",
        better: Better::Lower,
        value: |r| num(r, "/latency/p99_ms"),
    },
    Metric {
        scenario: "fanout",
        label: "generator CPU, % of a core",
        better: Better::Neither,
        value: |r| num(r, "/generator_cpu_cores").map(|c| c * 100.0),
    },
    Metric {
        scenario: "fanout",
        label: "failures",
        better: Better::Neither,
        value: failures,
    },
    Metric {
        scenario: "chat",
        label: "messages/s",
        better: Better::Higher,
        value: |r| num(r, "/messages_per_s"),
    },
    Metric {
        scenario: "chat",
        label: "server CPU per message, µs",
        better: Better::Lower,
        value: |r| num(r, "/server_cpu_us_per_message"),
    },
    Metric {
        scenario: "chat",
        label: "send→receipt p50, ms",
        better: Better::Lower,
        value: |r| num(r, "/latency/p50_ms"),
    },
    Metric {
        scenario: "chat",
        label: "send→receipt p99, ms",
        better: Better::Lower,
        value: |r| num(r, "/latency/p99_ms"),
    },
    Metric {
        scenario: "chat",
        label: "generator CPU, % of a core",
        better: Better::Neither,
        value: |r| num(r, "/generator_cpu_cores").map(|c| c * 100.0),
    },
    Metric {
        scenario: "chat",
        label: "failures",
        better: Better::Neither,
        value: failures,
    },
    Metric {
        scenario: "presence",
        label: "presence deliveries/s",
        better: Better::Higher,
        value: |r| num(r, "/deliveries_per_s"),
    },
    Metric {
        scenario: "presence",
        label: "server CPU per delivery, µs",
        better: Better::Lower,
        value: |r| num(r, "/server_cpu_us_per_delivery"),
    },
    Metric {
        scenario: "presence",
        label: "change→receipt p50, ms",
        better: Better::Lower,
        value: |r| num(r, "/latency/p50_ms"),
    },
    Metric {
        scenario: "presence",
        label: "change→receipt p99, ms",
        better: Better::Lower,
        value: |r| num(r, "/latency/p99_ms"),
    },
    Metric {
        scenario: "presence",
        label: "generator CPU, % of a core",
        better: Better::Neither,
        value: |r| num(r, "/generator_cpu_cores").map(|c| c * 100.0),
    },
    Metric {
        scenario: "presence",
        label: "failures",
        better: Better::Neither,
        value: failures,
    },
];

/// The group chat runs of `bench/compare.sh`: one room of 1,000, 100 rooms of 50, and the
/// Verona-only run with half the occupants native.
const MUC_SCENARIOS: [&str; 3] = ["muc", "muc-rooms", "muc-native"];

/// The rows of one group chat run.
fn muc_metrics(scenario: &'static str) -> [Metric; 8] {
    [
        Metric {
            scenario,
            label: "occupants joined",
            better: Better::Neither,
            value: |r| num(r, "/joined"),
        },
        Metric {
            scenario,
            label: "messages/s",
            better: Better::Higher,
            value: |r| num(r, "/messages_per_s"),
        },
        Metric {
            scenario,
            label: "deliveries/s",
            better: Better::Higher,
            value: |r| num(r, "/deliveries_per_s"),
        },
        Metric {
            scenario,
            label: "server CPU per delivery, µs",
            better: Better::Lower,
            value: |r| num(r, "/server_cpu_us_per_delivery"),
        },
        Metric {
            scenario,
            label: "send→delivery p50, ms",
            better: Better::Lower,
            value: |r| num(r, "/latency/p50_ms"),
        },
        Metric {
            scenario,
            label: "send→delivery p99, ms",
            better: Better::Lower,
            value: |r| num(r, "/latency/p99_ms"),
        },
        Metric {
            scenario,
            label: "generator CPU, % of a core",
            better: Better::Neither,
            value: |r| num(r, "/generator_cpu_cores").map(|c| c * 100.0),
        },
        Metric {
            scenario,
            label: "failures",
            better: Better::Neither,
            value: failures,
        },
    ]
}

/// Percent of its core above which a generator, not the server, sets a run's rates.
const GENERATOR_BOUND: f64 = 70.0;

/// One metric over a server's runs.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    low: f64,
    high: f64,
    runs: usize,
}

/// Reports by server and scenario.
#[derive(Default)]
pub struct Runs(BTreeMap<(String, String), Vec<Value>>);

impl Runs {
    /// Reads every `SERVER.*.json` file in `dir`, each holding one report (verona-bench's stdout).
    /// A file named `SERVER.SCENARIO.RUN.json` counts under SCENARIO, so that runs of one
    /// verona-bench scenario with different settings (`muc`, `muc-rooms`) stay apart.
    pub fn load(dir: &Path) -> anyhow::Result<Runs> {
        let mut runs = Runs::default();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let parts: Vec<&str> = stem.split('.').collect();
            let text = std::fs::read_to_string(&path)?;
            let report: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            match parts[..] {
                [server, scenario, _run] => runs.add_as(server, scenario, report),
                _ => runs.add(parts[0], report),
            }
        }
        Ok(runs)
    }

    /// Adds a report under the scenario it names.
    pub fn add(&mut self, server: &str, report: Value) {
        let scenario = report["scenario"].as_str().unwrap_or("?").to_owned();
        self.add_as(server, &scenario, report);
    }

    pub fn add_as(&mut self, server: &str, scenario: &str, report: Value) {
        self.0
            .entry((server.to_owned(), scenario.to_owned()))
            .or_default()
            .push(report);
    }

    /// Whether any server ran `scenario`.
    fn ran(&self, scenario: &str) -> bool {
        self.0.keys().any(|(_, s)| s == scenario)
    }

    /// `metric` over `server`'s runs: the median, the lowest and the highest.
    fn spread(&self, server: &str, metric: &Metric) -> Option<Spread> {
        let runs = self
            .0
            .get(&(server.to_owned(), metric.scenario.to_owned()))?;
        let mut values: Vec<f64> = runs.iter().filter_map(metric.value).collect();
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        let median = match values.len() {
            0 => return None,
            n if n % 2 == 1 => values[mid],
            _ => (values[mid - 1] + values[mid]) / 2.0,
        };
        Some(Spread {
            median,
            low: values[0],
            high: values[values.len() - 1],
            runs: values.len(),
        })
    }

    /// The markdown table: a row per metric of each scenario some server ran, a column per
    /// server, then Verona/peer ratios.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| scenario | metric | better | Verona | Prosody | ejabberd | Verona/Prosody | Verona/ejabberd |\n\
             |---|---|---|---:|---:|---:|---:|---:|\n",
        );
        let muc: Vec<Metric> = MUC_SCENARIOS.into_iter().flat_map(muc_metrics).collect();
        for metric in METRICS.iter().chain(&muc).filter(|m| self.ran(m.scenario)) {
            let spreads = SERVERS.map(|server| self.spread(server, metric));
            let values = spreads.map(|spread| spread.map(|s| s.median));
            let generator = metric.label.starts_with("generator CPU");
            let cell = |spread: Option<Spread>| {
                let Some(spread) = spread else {
                    return "n/a".to_owned();
                };
                let mut cell = fmt_number(spread.median);
                if spread.runs > 1 {
                    let (low, high) = (fmt_number(spread.low), fmt_number(spread.high));
                    cell.push_str(&format!(" ({low}–{high})"));
                }
                if generator && spread.median > GENERATOR_BOUND {
                    cell.push_str(" generator-bound");
                }
                cell
            };
            let ratio = |peer: Option<f64>| match (metric.better, values[0], peer) {
                (Better::Neither, ..) => String::new(),
                (_, Some(verona), Some(peer)) if peer > 0.0 => format!("{:.2}", verona / peer),
                _ => "n/a".into(),
            };
            let better = match metric.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
                Better::Neither => "",
            };
            out.push_str(&format!(
                "| {} | {} | {better} | {} | {} | {} | {} | {} |\n",
                metric.scenario,
                metric.label,
                cell(spreads[0]),
                cell(spreads[1]),
                cell(spreads[2]),
                ratio(values[1]),
                ratio(values[2]),
            ));
        }
        out
    }
}

/// Three significant figures or so (counts as they are), with thousands separated.
fn fmt_number(v: f64) -> String {
    let digits = match v.abs() {
        a if a >= 100.0 || v.fract() == 0.0 => 0,
        a if a >= 10.0 => 1,
        _ => 2,
    };
    let text = format!("{v:.digits$}");
    let (int, frac) = text.split_at(text.find('.').unwrap_or(text.len()));
    let (sign, int) = int.strip_prefix('-').map_or(("", int), |i| ("-", i));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn login(rate: f64, cpu: f64) -> Value {
        json!({"scenario": "login", "logins_per_s": rate, "server_cpu_us_per_login": cpu,
               "latency": {"p99_ms": 3.0}, "generator_cpu_cores": 0.5,
               "errors": {"total": 0}})
    }

    fn row<'a>(table: &'a str, start: &str) -> Vec<&'a str> {
        let line = table.lines().find(|l| l.starts_with(start)).unwrap();
        line.split('|').map(str::trim).collect()
    }

    #[test]
    fn medians_and_ratios() {
        let mut runs = Runs::default();
        for rate in [1000.0, 3000.0, 2000.0] {
            runs.add("verona", login(rate, 100.0));
        }
        runs.add("prosody", login(400.0, 2000.0));
        runs.add("prosody", login(600.0, 3000.0));
        let table = runs.table();
        assert_eq!(
            row(&table, "| login | logins/s |"),
            [
                "",
                "login",
                "logins/s",
                "higher",
                "2,000 (1,000–3,000)",
                "500 (400–600)",
                "n/a",
                "4.00",
                "n/a",
                ""
            ]
        );
        let cpu = row(&table, "| login | server CPU per login");
        assert_eq!(
            (cpu[4], cpu[5], cpu[7]),
            ("100 (100–100)", "2,500 (2,000–3,000)", "0.04")
        );
        let generator = row(&table, "| login | generator CPU");
        assert_eq!((generator[4], generator[7]), ("50 (50–50)", ""));
        assert_eq!(row(&table, "| login | failures |")[4], "0 (0–0)");
        // Scenarios nobody ran have no rows.
        assert!(!table.contains("| chat |") && !table.contains("| muc"));
    }

    #[test]
    fn muc_runs_stay_apart_by_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let muc = |rate: f64| {
            json!({"scenario": "muc", "joined": 1000, "messages_per_s": rate / 1000.0,
                   "deliveries_per_s": rate, "server_cpu_us_per_delivery": 2.0,
                   "latency": {"p50_ms": 1.0, "p99_ms": 2.0}, "generator_cpu_cores": 0.5,
                   "errors": {"total": 0}, "lost": 0, "duplicated": 0})
        };
        for (file, rate) in [
            ("verona.muc.1.json", 100_000.0),
            ("verona.muc-rooms.1.json", 50_000.0),
            ("prosody.muc.1.json", 20_000.0),
            ("verona.muc-native.1.json", 80_000.0),
        ] {
            std::fs::write(dir.path().join(file), muc(rate).to_string()).unwrap();
        }
        let table = Runs::load(dir.path()).unwrap().table();
        let cases = [
            (
                "| muc | deliveries/s |",
                ["100,000", "20,000", "n/a", "5.00"],
            ),
            (
                "| muc-rooms | deliveries/s |",
                ["50,000", "n/a", "n/a", "n/a"],
            ),
            (
                "| muc-native | deliveries/s |",
                ["80,000", "n/a", "n/a", "n/a"],
            ),
            ("| muc | occupants joined |", ["1,000", "1,000", "n/a", ""]),
        ];
        for (start, expected) in cases {
            let cells = row(&table, start);
            assert_eq!(cells[4..8], expected, "{start}");
        }
        assert!(!table.contains("| login |"));
    }

    #[test]
    fn a_generator_near_its_core_is_marked() {
        let mut runs = Runs::default();
        let mut busy = login(1000.0, 100.0);
        busy["generator_cpu_cores"] = json!(0.9);
        runs.add("verona", busy);
        runs.add("prosody", login(400.0, 2000.0));
        let table = runs.table();
        let generator = row(&table, "| login | generator CPU");
        assert_eq!((generator[4], generator[5]), ("90 generator-bound", "50"));
    }

    #[test]
    fn failures_add_up() {
        let report = json!({"errors": {"total": 2}, "lost": 3, "duplicated": 1});
        assert_eq!(failures(&report), Some(6.0));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(fmt_number(1_234_567.4), "1,234,567");
        assert_eq!(fmt_number(123.4), "123");
        assert_eq!(fmt_number(12.34), "12.3");
        assert_eq!(fmt_number(0.123), "0.12");
        assert_eq!(fmt_number(-4321.0), "-4,321");
        assert_eq!(fmt_number(3.0), "3");
    }

    #[test]
    fn reports_are_loaded_by_server_from_their_file_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prosody.login.1.json"),
            login(10.0, 1.0).to_string(),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let runs = Runs::load(dir.path()).unwrap();
        assert_eq!(row(&runs.table(), "| login | logins/s |")[5], "10");
    }
}
