//! `verona-bench commits`: the latency of the SQLite store's commits when several writers commit
//! at once, as the server's pubsub shards do (no server needed). Each writer stores one item at a
//! time on a node of its own service and waits for the commit, like a shard's group commit of a
//! one-publish batch, so the figures are the queueing of writers behind each other plus the disk.

use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Serialize;
use verona_pubsub::{Item, NodeConfig, StoreOp};
use verona_storage::{AccountStore, PubsubStore, PubsubWrite, SqliteStore};

use crate::stats::{Summary, core_share, own_cpu};

pub struct CommitsOptions {
    /// A directory for the database; its verona.db must not exist yet.
    pub data_dir: PathBuf,
    pub writers: usize,
    /// Commits per writer.
    pub commits: usize,
}

#[derive(Serialize)]
pub struct CommitsReport {
    pub scenario: &'static str,
    pub writers: usize,
    pub commits: usize,
    pub seconds: f64,
    pub commits_per_sec: f64,
    pub latency: Option<Summary>,
    /// Of one core, the generator and SQLite's threads together.
    pub cpu_cores: f64,
}

impl CommitsReport {
    pub fn table(&self) -> String {
        format!(
            "== commits: {} writers x {} commits, one item each\n  \
             commit latency  {}\n  \
             throughput      {:.0} commits/s in {:.1} s, CPU {:.0} % of a core\n",
            self.writers,
            self.commits / self.writers.max(1),
            crate::scenarios::fmt_latency(&self.latency),
            self.commits_per_sec,
            self.seconds,
            self.cpu_cores * 100.0,
        )
    }
}

pub async fn run(options: CommitsOptions) -> anyhow::Result<CommitsReport> {
    let path = options.data_dir.join("verona.db");
    if path.exists() {
        bail!("{} exists already", path.display());
    }
    let store = SqliteStore::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let service = |w: usize| format!("bench{w}@localhost");
    for w in 0..options.writers {
        store
            .apply(&[PubsubWrite {
                service: service(w),
                op: StoreOp::NodeCreated {
                    node: "bench".into(),
                    config: NodeConfig::default(),
                },
            }])
            .await?;
    }
    let publisher = jid::Jid::new("bench@localhost/commits")?;
    let (start, cpu) = (Instant::now(), own_cpu());
    let mut tasks = Vec::with_capacity(options.writers);
    for w in 0..options.writers {
        let (store, service, publisher) = (store.clone(), service(w), publisher.clone());
        let commits = options.commits;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(commits);
            for n in 0..commits {
                let write = PubsubWrite {
                    service: service.clone(),
                    op: StoreOp::ItemStored {
                        node: "bench".into(),
                        item: Item {
                            id: n.to_string(),
                            payload: None,
                            publisher: publisher.clone(),
                            published: UNIX_EPOCH,
                        },
                    },
                };
                let sent = Instant::now();
                store.apply(std::slice::from_ref(&write)).await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let (wall, cpu) = (start.elapsed(), own_cpu().saturating_sub(cpu));
    store.close().await;
    Ok(CommitsReport {
        scenario: "commits",
        writers: options.writers,
        commits: latencies.len(),
        seconds: wall.as_secs_f64(),
        commits_per_sec: latencies.len() as f64 / wall.as_secs_f64(),
        latency: Summary::of(&mut latencies),
        cpu_cores: core_share(cpu, wall),
    })
}
