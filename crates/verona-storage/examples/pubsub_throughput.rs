//! Group-commit throughput of the SQLite pubsub store: batches of `ItemStored` writes (each
//! replacing one of 100 items of a node, 300-byte payloads) for two seconds per batch size,
//! with the store's durable settings (WAL, synchronous=FULL).
//!
//! `cargo run --release -p verona-storage --example pubsub_throughput [DIRECTORY]`
//! (the database goes in a temporary directory under DIRECTORY, by default the system's).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use verona_pubsub::{Item, NodeConfig, StoreOp};
use verona_storage::{PubsubStore, PubsubWrite, SqliteStore};

const RUN: Duration = Duration::from_secs(2);

fn write(op: StoreOp) -> PubsubWrite {
    PubsubWrite {
        service: "pubsub.localhost".to_owned(),
        op,
    }
}

#[tokio::main]
async fn main() {
    let parent = std::env::args()
        .nth(1)
        .unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let dir = tempfile::tempdir_in(parent).unwrap();
    let store = SqliteStore::open(&dir.path().join("verona.db"))
        .await
        .unwrap();
    let node = || "node".to_owned();
    let created = StoreOp::NodeCreated {
        node: node(),
        config: NodeConfig::default(),
    };
    store.apply(&[write(created)]).await.unwrap();
    let payload: Arc<str> = Arc::from("x".repeat(300));
    let publisher = jid::Jid::new("juliet@localhost/balcony").unwrap();

    let mut published = 0u64;
    for batch_size in [1, 10, 100, 1000] {
        let (start, mut writes, mut batches) = (Instant::now(), 0u64, 0u64);
        while start.elapsed() < RUN {
            let batch: Vec<_> = (0..batch_size)
                .map(|_| {
                    published += 1;
                    let item = Item {
                        id: (published % 100).to_string(),
                        payload: Some(payload.clone()),
                        publisher: publisher.clone(),
                        published: SystemTime::now(),
                    };
                    write(StoreOp::ItemStored { node: node(), item })
                })
                .collect();
            store.apply(&batch).await.unwrap();
            writes += batch_size;
            batches += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{batch_size:>5} writes/batch: {:>7.0} batches/s {:>8.0} writes/s",
            batches as f64 / seconds,
            writes as f64 / seconds
        );
    }
}
