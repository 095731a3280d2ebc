//! `verona-bench populate`: writes a realistic account database into a Verona data directory,
//! through Verona's own storage and engine, so that `verona serve` on it finds exactly the rows
//! it would have written itself. Every account has its `presence` node with `contacts` approved
//! subscribers chosen at random among the other accounts (so each account also follows about
//! `contacts` others), and every `annotate_every`-th account names its followers in its
//! private `roster` node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use jid::BareJid;
use serde::Serialize;
use verona_auth::Credentials;
use verona_storage::{PubsubStore, PubsubWrite, SqliteStore};

/// Accounts written per transaction.
const CHUNK: usize = 2000;

#[derive(Clone, Debug)]
pub struct PopulateOptions {
    pub data_dir: PathBuf,
    pub domain: String,
    /// `{n}` is replaced by the account number.
    pub user_pattern: String,
    pub password_pattern: String,
    pub accounts: usize,
    pub contacts: usize,
    /// Every n-th account annotates its followers (0: none).
    pub annotate_every: usize,
    /// Accounts 0..passwords get the password of the pattern; the others share credentials
    /// of a random password nobody knows (deriving SCRAM keys costs ~1 ms per account, too
    /// much for a million accounts that the benchmark never logs in).
    pub passwords: usize,
    /// PBKDF2 iterations of the stored credentials.
    pub iterations: u32,
    /// Seed of the contact choice: the same seed writes the same graph.
    pub seed: u64,
}

#[derive(Debug, Serialize)]
pub struct PopulateReport {
    pub accounts: usize,
    pub subscriptions: usize,
    pub annotations: usize,
    pub seconds: f64,
    pub database_bytes: u64,
}

impl PopulateReport {
    pub fn table(&self) -> String {
        format!(
            "populate: {} accounts, {} subscriptions, {} annotations in {:.1} s; \
             database {:.1} MB\n",
            self.accounts,
            self.subscriptions,
            self.annotations,
            self.seconds,
            self.database_bytes as f64 / 1e6,
        )
    }
}

/// splitmix64: a small, good, seedable generator; contact choice (and the soak scenario's
/// noise and jitter) needs no more.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// `contacts` distinct accounts other than `account`, chosen by the seed.
fn followers_of(account: usize, options: &PopulateOptions) -> Vec<usize> {
    let wanted = options.contacts.min(options.accounts.saturating_sub(1));
    let mut rng = SplitMix(options.seed ^ (account as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut chosen = Vec::with_capacity(wanted);
    while chosen.len() < wanted {
        let other = rng.below(options.accounts);
        if other != account && !chosen.contains(&other) {
            chosen.push(other);
        }
    }
    chosen
}

fn jid_of(n: usize, options: &PopulateOptions) -> anyhow::Result<BareJid> {
    let text = format!(
        "{}@{}",
        options.user_pattern.replace("{n}", &n.to_string()),
        options.domain
    );
    BareJid::new(&text).with_context(|| format!("account {n}: {text:?} is not a JID"))
}

/// One chunk's rows: accounts with credentials, and their pubsub writes.
struct Chunk {
    accounts: Vec<(String, Credentials)>,
    writes: Vec<PubsubWrite>,
    subscriptions: usize,
    annotations: usize,
}

fn build_chunk(
    range: std::ops::Range<usize>,
    options: &PopulateOptions,
    shared: &Credentials,
) -> anyhow::Result<Chunk> {
    let mut chunk = Chunk {
        accounts: Vec::with_capacity(range.len()),
        writes: Vec::new(),
        subscriptions: 0,
        annotations: 0,
    };
    for n in range {
        let jid = jid_of(n, options)?;
        let credentials = if n < options.passwords {
            let password = options.password_pattern.replace("{n}", &n.to_string());
            Credentials::derive(&password, options.iterations)
                .map_err(|e| anyhow::anyhow!("deriving credentials: {e}"))?
        } else {
            shared.clone()
        };
        let followers = followers_of(n, options)
            .into_iter()
            .map(|f| jid_of(f, options))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let annotate = options.annotate_every > 0 && n.is_multiple_of(options.annotate_every);
        let writes = verona::account_writes(&jid, &followers, annotate)
            .map_err(|e| anyhow::anyhow!("account {jid}: {e}"))?;
        chunk.subscriptions += followers.len();
        if annotate {
            chunk.annotations += followers.len();
        }
        chunk.accounts.push((jid.to_string(), credentials));
        chunk.writes.extend(writes);
    }
    Ok(chunk)
}

/// Builds the chunks on every core but one while the database writes them.
pub async fn run(options: PopulateOptions) -> anyhow::Result<PopulateReport> {
    let started = Instant::now();
    let path = options.data_dir.join("verona.db");
    if path.exists() {
        bail!(
            "{} exists: populate writes a new database only",
            path.display()
        );
    }
    let store = SqliteStore::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let unknown: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let shared = Credentials::derive(&unknown, options.iterations)
        .map_err(|e| anyhow::anyhow!("deriving credentials: {e}"))?;
    let options = Arc::new(options);
    let shared = Arc::new(shared);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(2);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Chunk>>(workers);
    let starts: Vec<usize> = (0..options.accounts).step_by(CHUNK).collect();
    let producer = {
        let options = options.clone();
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            // Chunks are built in parallel but sent in order, a window of `workers` at a time.
            for window in starts.chunks(workers) {
                let built: Vec<anyhow::Result<Chunk>> = std::thread::scope(|scope| {
                    let handles: Vec<_> = window
                        .iter()
                        .map(|&start| {
                            let end = (start + CHUNK).min(options.accounts);
                            let (options, shared) = (&options, &shared);
                            scope.spawn(move || build_chunk(start..end, options, shared))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a chunk builder panicked"))
                        .collect()
                });
                for chunk in built {
                    if tx.blocking_send(chunk).is_err() {
                        return;
                    }
                }
            }
        })
    };
    let mut report = PopulateReport {
        accounts: 0,
        subscriptions: 0,
        annotations: 0,
        seconds: 0.0,
        database_bytes: 0,
    };
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        store.import_accounts(&chunk.accounts).await?;
        store.apply(&chunk.writes).await?;
        report.accounts += chunk.accounts.len();
        report.subscriptions += chunk.subscriptions;
        report.annotations += chunk.annotations;
        if report.accounts.is_multiple_of(CHUNK * 50) {
            eprintln!(
                "populate: {} of {} accounts, {:.0} s",
                report.accounts,
                options.accounts,
                started.elapsed().as_secs_f64()
            );
        }
    }
    producer.await.context("the chunk builder failed")?;
    verona_storage::AccountStore::close(&store).await;
    report.seconds = started.elapsed().as_secs_f64();
    report.database_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(accounts: usize, contacts: usize) -> PopulateOptions {
        PopulateOptions {
            data_dir: PathBuf::new(),
            domain: "localhost".into(),
            user_pattern: "bench{n}".into(),
            password_pattern: "pw{n}".into(),
            accounts,
            contacts,
            annotate_every: 0,
            passwords: 0,
            iterations: 4096,
            seed: 7,
        }
    }

    #[test]
    fn followers_are_distinct_others_and_repeatable() {
        for (accounts, contacts, expected) in [(100, 50, 50), (10, 50, 9), (1, 5, 0)] {
            let options = options(accounts, contacts);
            for account in 0..accounts {
                let chosen = followers_of(account, &options);
                assert_eq!(chosen.len(), expected);
                assert!(!chosen.contains(&account));
                let mut unique = chosen.clone();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), chosen.len());
                assert_eq!(chosen, followers_of(account, &options));
            }
        }
    }
}
