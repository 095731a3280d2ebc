//! Measures the heap an account's PEP service holds once restored from storage: a `presence`
//! node with one item and K subscribers, as an online user with K contacts has it (issue #9).
//! Not a test: it prints numbers.
//!
//! `cargo run --release -p verona-pubsub --example memory [CONTACTS]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, SystemTime};

use jid::{BareJid, Jid};
use verona_pubsub::{
    AccessModel, Affiliation, Item, NodeConfig, Service, ServiceConfig, StoredNode,
    StoredSubscription, SubscriptionOptions, SubscriptionState, SystemEnvironment,
};

/// Bytes held, as the system allocator was asked for them (its own overhead not counted).
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SERVICES: usize = 1_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let contacts: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(50);
    let empty = held_by_services(0)?;
    let full = held_by_services(contacts)?;
    println!(
        "a PEP service with a presence node: {:.0} bytes; with {contacts} subscribers: {:.0} bytes \
         ({:.0} per subscription)",
        empty,
        full,
        (full - empty) / contacts.max(1) as f64
    );
    Ok(())
}

/// Heap per service, averaged over [`SERVICES`] services restored with `contacts` subscribers
/// each, half of them made classically (they carry a service-declared option).
fn held_by_services(contacts: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let mut services = Vec::with_capacity(SERVICES);
    // What storage hands over moves into the services: counted from before it is read.
    let before = HELD.load(Ordering::Relaxed);
    let mut stored = Vec::with_capacity(SERVICES);
    for account in 0..SERVICES {
        stored.push(presence_node(account, contacts)?);
    }
    for (account, node) in stored.into_iter().enumerate() {
        let owner = BareJid::new(&format!("bench{account}@localhost"))?;
        services.push(Service::restore(
            ServiceConfig::pep(owner),
            Box::new(SystemEnvironment::default()),
            [node],
        ));
    }
    let held = HELD.load(Ordering::Relaxed) - before;
    drop(services);
    Ok(held as f64 / SERVICES as f64)
}

fn presence_node(account: usize, contacts: usize) -> Result<StoredNode, jid::Error> {
    let owner = BareJid::new(&format!("bench{account}@localhost"))?;
    let config = NodeConfig {
        access_model: AccessModel::Presence,
        ..NodeConfig::default()
    };
    let mut subscriptions = Vec::with_capacity(contacts);
    for n in 0..contacts {
        let contact = (account * 7919 + n * 104_729 + 1) % 1_000_000;
        let mut options = SubscriptionOptions::default();
        if n % 2 == 0 {
            options.custom.insert("verona#view", "presence");
        }
        subscriptions.push(StoredSubscription {
            subid: format!("{:024x}", (account as u128) << 40 | n as u128).into(),
            jid: Jid::new(&format!("bench{contact}@localhost"))?,
            state: SubscriptionState::Subscribed,
            options,
        });
    }
    let item = Item {
        id: "current".to_owned(),
        payload: Some("<presence xmlns='jabber:client'><show>away</show></presence>".into()),
        publisher: Jid::new(&format!("{owner}/desk"))?,
        published: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    };
    Ok(StoredNode {
        id: "presence".to_owned(),
        config,
        affiliations: vec![(owner, Affiliation::Owner)],
        subscriptions,
        items: vec![item],
    })
}
