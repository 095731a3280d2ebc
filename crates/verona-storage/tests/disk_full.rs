//! A full disk: the writes that cannot be stored are refused, and every write acknowledged
//! before, during and after is on disk. Alone in its own test binary: the file size limit
//! that stands for the full disk is the whole process's.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use jid::Jid;
use verona_pubsub::{Item, NodeConfig, StoreOp};
use verona_storage::{PubsubStore, PubsubWrite, SqliteStore};

const SERVICE: &str = "pubsub.localhost";
const NODE: &str = "crashnode";

fn write(op: StoreOp) -> PubsubWrite {
    PubsubWrite {
        service: SERVICE.to_owned(),
        op,
    }
}

fn item(n: usize) -> PubsubWrite {
    write(StoreOp::ItemStored {
        node: NODE.to_owned(),
        item: Item {
            id: format!("item{n}"),
            payload: Some(Arc::from(format!(
                "<entry xmlns='urn:x'>{}</entry>",
                "x".repeat(2000)
            ))),
            publisher: Jid::new("pub@localhost/full").unwrap(),
            published: SystemTime::now(),
        },
    })
}

/// The size of the largest of the database's files now.
fn largest_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .max()
        .unwrap_or(0)
}

/// Limits every file this process writes to `bytes` (`None`: no limit); writing past it fails
/// with EFBIG, as on a full disk, instead of raising SIGXFSZ.
fn limit_file_size(bytes: Option<u64>) {
    let limit = bytes.unwrap_or(libc::RLIM_INFINITY);
    let limits = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain system calls with valid arguments.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limits), 0);
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_and_acknowledges_only_what_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verona.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let created = write(StoreOp::NodeCreated {
        node: NODE.to_owned(),
        config: NodeConfig::default(),
    });
    store.apply(&[created]).await.unwrap();

    limit_file_size(Some(largest_file(dir.path()) + 256 * 1024));
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for n in 0..1000 {
        match store.apply(&[item(n)]).await {
            Ok(()) => acknowledged.push(format!("item{n}")),
            Err(_) => refused += 1,
        }
    }
    limit_file_size(None);
    // Room again: writing goes on.
    store.apply(&[item(1000)]).await.unwrap();
    acknowledged.push("item1000".to_owned());
    assert!(refused > 0, "the disk was never full");
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    let nodes = store.load_service(SERVICE).await.unwrap();
    let stored: Vec<String> = nodes
        .iter()
        .flat_map(|node| node.items.iter().map(|item| item.id.clone()))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost ({refused} refused), the first: {:?}",
        lost.len(),
        acknowledged.len(),
        lost.first()
    );
}
