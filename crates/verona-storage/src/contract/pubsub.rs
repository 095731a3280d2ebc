//! Behaviour every [`PubsubStore`] backend must share; each backend's tests run every function
//! here against a fresh, empty store.

use std::collections::BTreeMap;
use std::slice;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jid::{BareJid, Jid};
use verona_pubsub::{
    AccessModel, Affiliation, ConfigField, CreateRequest, CustomOptions, Environment, Item,
    ItemQuery, ItemReply, MaxItems, NewItem, NoRoster, NodeConfig, NotificationType, Outcome,
    PublishModel, PublishRequest, PubsubError, SendLastPublishedItem, Service, ServiceConfig, Show,
    ShowSet, StoreOp, StoredNode, StoredSubscription, SubId, SubscriptionOptionField,
    SubscriptionOptions, SubscriptionState,
};

use crate::{Conversations, HeldSubscription, NodeEnd, PubsubStore, PubsubWrite, StorageError};

const PUBSUB: &str = "pubsub.capulet.lit";
const PEP: &str = "juliet@capulet.lit";
const OWNER: &str = "juliet@capulet.lit/balcony";
const ROMEO: &str = "romeo@montague.lit/orchard";
const NURSE: &str = "nurse@capulet.lit";
const TYBALT: &str = "tybalt@capulet.lit";
const MERCUTIO: &str = "mercutio@verona.lit";

/// The conversations of `pubsub.capulet.lit`: none of the engine scenario's services.
const CONVERSATIONS: Conversations<'static> = Conversations {
    prefix: "pubsub.capulet.lit/chat/",
    domain: "capulet.lit",
};

/// Non-ASCII text and XML special characters, as a payload, a title or an option value.
const TRICKY: &str =
    "<entry xmlns='urn:example' a=\"1\">Ça &amp; ß «ünï» 日本語 🦀 &lt;/x&gt; ]]&gt; \\ '</entry>";

fn jid(text: &str) -> Jid {
    Jid::new(text).unwrap()
}

fn bare(text: &str) -> BareJid {
    BareJid::new(text).unwrap()
}

/// Deterministic time and ids: each reading of the clock is 1.234567 s after the previous one
/// (microsecond digits, the stored precision); ids are `id1`, `id2`, …
#[derive(Default)]
struct TestEnv {
    ticks: AtomicU64,
    ids: u64,
}

impl Environment for TestEnv {
    fn now(&self) -> SystemTime {
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed);
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_micros(1_234_567 * tick)
    }

    fn new_id(&mut self) -> String {
        self.ids += 1;
        format!("id{}", self.ids)
    }
}

/// `pubsub()` with two extra node configuration fields and a custom subscription option.
fn pubsub_config() -> ServiceConfig {
    let mut config = ServiceConfig::pubsub();
    config.node_defaults.extra = BTreeMap::from([
        ("x-verona#colour".to_owned(), vec!["blue".to_owned()]),
        ("x-verona#tags".to_owned(), vec!["none".to_owned()]),
    ]);
    config.custom_subscription_options.insert(
        "x-verona#nick".to_owned(),
        SubscriptionOptionField::default(),
    );
    config
}

/// Every node configuration field, each different from its default.
fn every_field_changed() -> Vec<ConfigField> {
    vec![
        ConfigField::AccessModel(AccessModel::Whitelist),
        ConfigField::PublishModel(PublishModel::Open),
        ConfigField::MaxItems(MaxItems::Max),
        ConfigField::PersistItems(false),
        ConfigField::DeliverNotifications(false),
        ConfigField::DeliverPayloads(false),
        ConfigField::NotifyConfig(true),
        ConfigField::NotifyDelete(false),
        ConfigField::NotifyRetract(false),
        ConfigField::NotifySub(true),
        ConfigField::PresenceBasedDelivery(true),
        ConfigField::SendLastPublishedItem(SendLastPublishedItem::Never),
        ConfigField::NotificationType(NotificationType::Chat),
        ConfigField::ItemReply(ItemReply::Publisher),
        ConfigField::ItemExpire(Some(86_400)),
        ConfigField::Title(TRICKY.to_owned()),
        ConfigField::Description("line one\nline two\ttab \u{0} nul".to_owned()),
        ConfigField::PayloadType("urn:example:ünïcode".to_owned()),
        ConfigField::RosterGroupsAllowed(vec![
            "Friends".to_owned(),
            "Famille ♥".to_owned(),
            String::new(),
        ]),
        ConfigField::Subscribe(false),
        ConfigField::MaxPayloadSize(Some(4096)),
        ConfigField::TempSub(true),
        ConfigField::Extra {
            var: "x-verona#colour".to_owned(),
            values: vec!["red".to_owned(), "<green & \"blue\">".to_owned()],
        },
        ConfigField::Extra {
            var: "x-verona#tags".to_owned(),
            values: Vec::new(),
        },
    ]
}

fn named(node: &str, config: Vec<ConfigField>) -> CreateRequest {
    CreateRequest {
        node: Some(node.to_owned()),
        config,
        ..CreateRequest::default()
    }
}

/// The storage writes of operations not yet committed, as the server queues them.
#[derive(Default)]
struct Batch(Vec<PubsubWrite>);

impl Batch {
    /// Queues the writes of an operation of the `pubsub` service; returns its value.
    fn pubsub<T>(&mut self, outcome: Result<Outcome<T>, PubsubError>) -> T {
        self.keep(PUBSUB, outcome)
    }

    /// Queues the writes of an operation of the PEP service; returns its value.
    fn pep<T>(&mut self, outcome: Result<Outcome<T>, PubsubError>) -> T {
        self.keep(PEP, outcome)
    }

    fn keep<T>(&mut self, service: &str, outcome: Result<Outcome<T>, PubsubError>) -> T {
        let outcome = outcome.unwrap();
        self.0.extend(outcome.store_ops().map(|op| PubsubWrite {
            service: service.to_owned(),
            op: op.clone(),
        }));
        outcome.value
    }
}

/// The engine's stored nodes in the order the store loads them.
fn sorted(mut nodes: Vec<StoredNode>) -> Vec<StoredNode> {
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    for node in &mut nodes {
        node.affiliations
            .sort_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
        node.subscriptions.sort_by(|a, b| a.subid.cmp(&b.subid));
    }
    nodes
}

/// Applies the batch; the store then holds exactly the engine's persistent state.
async fn commit(store: &dyn PubsubStore, batch: &mut Batch, services: &[(&str, &Service)]) {
    store.apply(&batch.0).await.unwrap();
    batch.0.clear();
    for (name, service) in services {
        assert_eq!(
            store.load_service(name).await.unwrap(),
            sorted(service.stored_nodes()),
            "{name}"
        );
    }
}

/// Drives real services through every kind of storage write, commits them in batches, and
/// checks that the store loads what the engine holds and restores to the same service.
pub(crate) async fn pubsub_matches_engine(store: &dyn PubsubStore) {
    let mut pubsub = Service::new(pubsub_config(), Box::<TestEnv>::default());
    let mut pep = Service::new(ServiceConfig::pep(bare(PEP)), Box::<TestEnv>::default());
    let mut batch = Batch::default();
    let (owner, romeo, nurse) = (jid(OWNER), jid(ROMEO), jid(NURSE));
    let (tybalt, mercutio) = (jid(TYBALT), jid(MERCUTIO));

    // Nodes, one with every configuration field changed.
    let everything = CreateRequest {
        affiliations: BTreeMap::from([(romeo.to_bare(), Affiliation::Publisher)]),
        ..named("everything", every_field_changed())
    };
    batch.pubsub(pubsub.create(&owner, everything));
    let config = pubsub.configuration(&owner, "everything").unwrap();
    let defaults = [NodeConfig::default(), pubsub_config().node_defaults];
    for default in &defaults {
        for (field, default) in config.fields().iter().zip(default.fields()) {
            assert_ne!(*field, default, "the test changes every field");
        }
    }
    assert_eq!(config.extra.len(), 2);
    let news = vec![
        ConfigField::AccessModel(AccessModel::Open),
        ConfigField::MaxItems(MaxItems::Count(2)),
    ];
    batch.pubsub(pubsub.create(&owner, named("news", news)));
    let pings = vec![ConfigField::DeliverPayloads(false)];
    batch.pubsub(pubsub.create(&owner, named("pings", pings)));
    for node in ["club", "doomed"] {
        batch.pubsub(pubsub.create(&owner, named(node, vec![])));
    }
    commit(store, &mut batch, &[(PUBSUB, &pubsub)]).await;

    // Items: a re-published id becomes the newest, a full node evicts the oldest, an item
    // may have no payload.
    for (id, payload) in [("a", TRICKY), ("b", "<b/>"), ("a", "<a2/>"), ("c", "<c/>")] {
        let request = PublishRequest::payload(Some(id), payload);
        batch.pubsub(pubsub.publish(&owner, "news", request));
    }
    let empty = PublishRequest {
        item: Some(NewItem::default()),
        ..PublishRequest::default()
    };
    batch.pubsub(pubsub.publish(&owner, "pings", empty));
    let doomed = PublishRequest::payload(Some("x"), "<x/>");
    batch.pubsub(pubsub.publish(&owner, "doomed", doomed));
    commit(store, &mut batch, &[(PUBSUB, &pubsub)]).await;

    // Subscriptions (with options, pending, approved, temporary) and affiliations.
    let options = SubscriptionOptions {
        deliver: false,
        digest: true,
        include_body: true,
        show_values: Some(ShowSet::from([Show::Away, Show::Dnd])),
        temporary: false,
        custom: CustomOptions::from([("x-verona#nick", TRICKY)]),
    };
    for who in [&romeo, &nurse] {
        batch.pubsub(pubsub.subscribe(&NoRoster, who, "news", who, Some(options.clone())));
    }
    let romeo_bare = Jid::from(romeo.to_bare());
    batch.pubsub(pubsub.subscribe(&NoRoster, &romeo, "news", &romeo_bare, None));
    let temporary = SubscriptionOptions {
        temporary: true,
        ..SubscriptionOptions::default()
    };
    batch.pubsub(pubsub.subscribe(&NoRoster, &mercutio, "news", &mercutio, Some(temporary)));
    for who in [&nurse, &tybalt] {
        batch.pubsub(pubsub.subscribe(&NoRoster, who, "club", who, None));
    }
    batch.pubsub(pubsub.authorize(&owner, "club", &nurse, None, true));
    let changes = BTreeMap::from([
        (nurse.to_bare(), Affiliation::Publisher),
        (tybalt.to_bare(), Affiliation::Outcast),
        (mercutio.to_bare(), Affiliation::Member),
    ]);
    batch.pubsub(pubsub.set_affiliations(&NoRoster, &owner, "news", &changes));
    let by_nurse = PublishRequest::payload(Some("d"), "<d/>");
    batch.pubsub(pubsub.publish(&nurse, "news", by_nurse));
    let delivering = SubscriptionOptions {
        show_values: Some(ShowSet::new()),
        ..SubscriptionOptions::default()
    };
    batch.pubsub(pubsub.set_subscription_options(&romeo, "news", &romeo, None, delivering));
    batch.pubsub(pubsub.subscribe(&NoRoster, &nurse, "doomed", &nurse, None));
    commit(store, &mut batch, &[(PUBSUB, &pubsub)]).await;

    // Removals, reconfigurations, and a node deleted and created again in one batch.
    for (who, affiliation) in [
        (&romeo, Affiliation::Outcast),
        (&mercutio, Affiliation::None),
    ] {
        let change = BTreeMap::from([(who.to_bare(), affiliation)]);
        batch.pubsub(pubsub.set_affiliations(&NoRoster, &owner, "news", &change));
    }
    batch.pubsub(pubsub.retract(&owner, "news", "c", true));
    batch.pubsub(pubsub.unsubscribe(&nurse, "club", &nurse, None));
    batch.pubsub(pubsub.purge(&owner, "pings"));
    for fields in [
        vec![
            ConfigField::MaxItems(MaxItems::Count(1)),
            ConfigField::Title("Nouvelles".to_owned()),
        ],
        vec![ConfigField::PersistItems(false)],
    ] {
        batch.pubsub(pubsub.configure(&NoRoster, &owner, "news", &fields));
    }
    let transient = PublishRequest::payload(Some("e"), "<e/>");
    batch.pubsub(pubsub.publish(&owner, "news", transient));
    let persistent = [
        ConfigField::PersistItems(true),
        ConfigField::MaxItems(MaxItems::Count(3)),
    ];
    batch.pubsub(pubsub.configure(&NoRoster, &owner, "news", &persistent));
    let newest = PublishRequest::payload(Some("f"), "<f/>");
    batch.pubsub(pubsub.publish(&owner, "news", newest));
    batch.pubsub(pubsub.delete(&owner, "doomed", None));
    batch.pubsub(pubsub.create(&owner, named("doomed", vec![])));
    // One batch may hold the writes of several services.
    for payload in ["<v1/>", TRICKY] {
        let avatar = PublishRequest::payload(Some("current"), payload);
        batch.pep(pep.publish(&owner, "urn:xmpp:avatar:metadata", avatar));
    }
    commit(store, &mut batch, &[(PUBSUB, &pubsub), (PEP, &pep)]).await;
    assert_eq!(store.services().await.unwrap(), [PEP, PUBSUB]);

    // What the store loads restores to the service that its state came from.
    for (name, service, config) in [
        (PUBSUB, &pubsub, pubsub_config()),
        (PEP, &pep, ServiceConfig::pep(bare(PEP))),
    ] {
        let loaded = store.load_service(name).await.unwrap();
        let restored = Service::restore(config.clone(), Box::<TestEnv>::default(), loaded);
        let expected = Service::restore(config, Box::<TestEnv>::default(), service.stored_nodes());
        assert_eq!(restored.snapshot(), expected.snapshot(), "{name}");
        for node in service.node_ids() {
            let items = |s: &Service| s.items(&NoRoster, &owner, node, &ItemQuery::All).unwrap();
            assert_eq!(items(&restored), items(service), "{name} {node}");
        }
        assert_eq!(
            restored.pending_for_owner(&owner.to_bare()),
            service.pending_for_owner(&owner.to_bare())
        );
    }

    // A subscriber's stored subscriptions, found without loading any service.
    let mut found = 0;
    for who in [&romeo, &nurse, &tybalt, &mercutio, &owner] {
        let bare = who.to_bare();
        let mut expected: Vec<(String, SubId, HeldSubscription)> = pubsub
            .stored_nodes()
            .into_iter()
            .flat_map(|node| {
                let id = node.id;
                node.subscriptions
                    .into_iter()
                    .filter(|sub| sub.jid.to_bare() == bare)
                    .map(move |subscription| {
                        let held = HeldSubscription {
                            service: PUBSUB.to_owned(),
                            node: id.clone(),
                            state: subscription.state,
                        };
                        (id.clone(), subscription.subid, held)
                    })
            })
            .collect();
        expected.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let expected: Vec<HeldSubscription> =
            expected.into_iter().map(|(_, _, held)| held).collect();
        let held = store.subscriptions_of(bare.as_str()).await.unwrap();
        let count = store
            .subscription_count(bare.as_str(), CONVERSATIONS)
            .await
            .unwrap();
        assert_eq!(count, held.len(), "{bare}");
        found += held.len();
        assert_eq!(held, expected, "{bare}");
    }
    assert!(found > 0, "the scenario leaves stored subscriptions");
}

fn write(service: &str, op: StoreOp) -> PubsubWrite {
    PubsubWrite {
        service: service.to_owned(),
        op,
    }
}

fn created(service: &str, node: &str) -> PubsubWrite {
    let config = NodeConfig::default();
    let node = node.to_owned();
    write(service, StoreOp::NodeCreated { node, config })
}

fn item(id: &str, payload: Option<&str>, published: SystemTime) -> Item {
    Item {
        id: id.to_owned(),
        payload: payload.map(Arc::from),
        publisher: jid(ROMEO),
        published,
    }
}

fn stored_item(service: &str, node: &str, item: Item) -> PubsubWrite {
    let node = node.to_owned();
    write(service, StoreOp::ItemStored { node, item })
}

fn subscription(subid: &str, who: &str, options: SubscriptionOptions) -> StoredSubscription {
    StoredSubscription {
        subid: subid.into(),
        jid: jid(who),
        state: SubscriptionState::Pending,
        options,
    }
}

fn time(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

/// The write semantics beyond the `StoreOp` documentation: services are independent,
/// `NodeCreated` replaces, removing what is absent succeeds, adding to a missing node fails.
pub(crate) async fn pubsub_write_semantics(store: &dyn PubsubStore) {
    assert!(store.services().await.unwrap().is_empty());
    assert!(store.load_service("s").await.unwrap().is_empty());

    let every_option = SubscriptionOptions {
        deliver: false,
        digest: true,
        include_body: true,
        show_values: Some(ShowSet::from([Show::Away, Show::Online, Show::Xa])),
        temporary: false,
        custom: CustomOptions::from([("x-verona#nick", TRICKY), ("x-verona#empty", "")]),
    };
    let no_show = SubscriptionOptions {
        show_values: Some(ShowSet::new()),
        ..SubscriptionOptions::default()
    };
    let subscriptions = vec![
        subscription("s1", ROMEO, every_option),
        StoredSubscription {
            state: SubscriptionState::Subscribed,
            ..subscription("s2", NURSE, no_show)
        },
    ];
    let first = item("a", Some("<a/>"), time(1));
    let second = item("b", None, time(2));
    let republished = item("a", Some(TRICKY), time(3));
    let mut writes = vec![created("t", "n"), created("s", "n")];
    for subscription in subscriptions.iter().rev() {
        let (node, subscription) = ("n".to_owned(), subscription.clone());
        writes.push(write("s", StoreOp::SubscriptionSet { node, subscription }));
    }
    for affiliation in [Affiliation::Member, Affiliation::Owner] {
        let (node, jid) = ("n".to_owned(), bare(NURSE));
        let op = StoreOp::AffiliationSet {
            node,
            jid,
            affiliation,
        };
        writes.push(write("s", op));
    }
    for item in [&first, &second, &republished] {
        writes.push(stored_item("s", "n", item.clone()));
    }
    writes.push(stored_item("t", "n", first.clone()));
    store.apply(&writes).await.unwrap();
    let s = StoredNode {
        id: "n".to_owned(),
        config: NodeConfig::default(),
        affiliations: vec![(bare(NURSE), Affiliation::Owner)],
        subscriptions,
        items: vec![second, republished],
    };
    assert_eq!(store.load_service("s").await.unwrap(), slice::from_ref(&s));
    assert_eq!(store.services().await.unwrap(), ["s", "t"]);

    // Removing what is absent succeeds, even from a node that is not stored.
    let mut absent = Vec::new();
    for id in ["n", "missing"] {
        let node = || id.to_owned();
        absent.extend([
            StoreOp::ItemRemoved {
                node: node(),
                id: "nope".to_owned(),
            },
            StoreOp::SubscriptionRemoved {
                node: node(),
                subid: "nope".into(),
            },
            StoreOp::AffiliationSet {
                node: node(),
                jid: bare(MERCUTIO),
                affiliation: Affiliation::None,
            },
        ]);
    }
    let missing = || "missing".to_owned();
    absent.extend([
        StoreOp::ItemsPurged { node: missing() },
        StoreOp::NodeDeleted { node: missing() },
    ]);
    let absent: Vec<_> = absent.into_iter().map(|op| write("s", op)).collect();
    store.apply(&absent).await.unwrap();
    assert_eq!(store.load_service("s").await.unwrap(), slice::from_ref(&s));

    // Adding to or configuring a node that is not stored fails.
    for op in [
        StoreOp::NodeConfigured {
            node: missing(),
            config: NodeConfig::default(),
        },
        StoreOp::AffiliationSet {
            node: missing(),
            jid: bare(NURSE),
            affiliation: Affiliation::Member,
        },
        StoreOp::SubscriptionSet {
            node: missing(),
            subscription: s.subscriptions[0].clone(),
        },
        StoreOp::ItemStored {
            node: missing(),
            item: s.items[0].clone(),
        },
    ] {
        let result = store.apply(&[write("s", op.clone())]).await;
        assert!(
            matches!(result, Err(StorageError::NodeNotFound { ref service, ref node })
                if service == "s" && node == "missing"),
            "{op:?}: {result:?}"
        );
    }
    assert_eq!(store.services().await.unwrap(), ["s", "t"]);

    // Creating a stored node replaces it, without its affiliations, subscriptions and items.
    let config = NodeConfig {
        title: "again".to_owned(),
        ..NodeConfig::default()
    };
    let node = "n".to_owned();
    let again = StoreOp::NodeCreated {
        node,
        config: config.clone(),
    };
    store.apply(&[write("s", again)]).await.unwrap();
    let replaced = StoredNode {
        id: "n".to_owned(),
        config,
        affiliations: Vec::new(),
        subscriptions: Vec::new(),
        items: Vec::new(),
    };
    assert_eq!(store.load_service("s").await.unwrap(), [replaced]);

    // The same node id in another service is another node; a service without nodes is gone.
    let deleted = StoreOp::NodeDeleted {
        node: "n".to_owned(),
    };
    store.apply(&[write("s", deleted)]).await.unwrap();
    assert_eq!(store.services().await.unwrap(), ["t"]);
    assert!(store.load_service("s").await.unwrap().is_empty());
    assert_eq!(store.load_service("t").await.unwrap()[0].items, [first]);
}

/// A batch that fails on its last write leaves nothing of it applied.
pub(crate) async fn pubsub_batch_is_atomic(store: &dyn PubsubStore) {
    let first = item("a", Some("<a/>"), time(1));
    let setup = [created("s", "n"), stored_item("s", "n", first)];
    store.apply(&setup).await.unwrap();
    let before = store.load_service("s").await.unwrap();

    let n = || "n".to_owned();
    let writes = vec![
        stored_item("s", "n", item("b", Some("<b/>"), time(2))),
        write(
            "s",
            StoreOp::ItemRemoved {
                node: n(),
                id: "a".to_owned(),
            },
        ),
        write(
            "s",
            StoreOp::AffiliationSet {
                node: n(),
                jid: bare(NURSE),
                affiliation: Affiliation::Owner,
            },
        ),
        created("u", "m"),
        write("s", StoreOp::NodeDeleted { node: n() }),
    ];
    let far_future = UNIX_EPOCH + Duration::from_secs(10_000_000_000_000);
    type Expected = fn(&StorageError) -> bool;
    let subscribed = |node: &str, subid: &str| {
        write(
            "s",
            StoreOp::SubscriptionSet {
                node: node.to_owned(),
                subscription: subscription(subid, NURSE, SubscriptionOptions::default()),
            },
        )
    };
    // A run of subscription writes (stored together) with one for a missing node.
    let run = [
        subscribed("n", "s1"),
        subscribed("missing", "s2"),
        subscribed("n", "s3"),
    ];
    let error = store.apply(&[writes.clone(), run.to_vec()].concat()).await;
    assert!(
        matches!(error, Err(StorageError::NodeNotFound { .. })),
        "{error:?}"
    );
    assert_eq!(store.load_service("s").await.unwrap(), before);
    // The same for a run of item writes.
    let run = [
        stored_item("s", "n", item("c", Some("<c/>"), time(3))),
        stored_item("s", "missing", item("d", None, time(4))),
        stored_item("s", "n", item("e", None, time(5))),
    ];
    let error = store.apply(&[writes.clone(), run.to_vec()].concat()).await;
    assert!(
        matches!(error, Err(StorageError::NodeNotFound { .. })),
        "{error:?}"
    );
    assert_eq!(store.load_service("s").await.unwrap(), before);
    let failures: [(PubsubWrite, Expected); 2] = [
        (stored_item("s", "missing", item("x", None, time(3))), |e| {
            matches!(e, StorageError::NodeNotFound { .. })
        }),
        (stored_item("u", "m", item("x", None, far_future)), |e| {
            matches!(e, StorageError::Unrepresentable(_))
        }),
    ];
    for (last, expected) in failures {
        let batch = [writes.clone(), vec![last]].concat();
        let error = store.apply(&batch).await.unwrap_err();
        assert!(expected(&error), "{error:?}");
        assert_eq!(store.load_service("s").await.unwrap(), before);
        assert_eq!(store.services().await.unwrap(), ["s"]);
    }

    store.apply(&writes).await.unwrap();
    assert_eq!(store.services().await.unwrap(), ["u"]);
}

/// Publication times are kept to the microsecond, before 1970 too; finer digits are dropped.
/// A directory of the services under a prefix: every node's configuration, sorted, and
/// nothing of services that merely share the beginning of their name or sort next to it.
pub(crate) async fn pubsub_node_directory(store: &dyn PubsubStore) {
    assert!(store.node_configs("chat.l/").await.unwrap().is_empty());
    let titled = |title: &str| NodeConfig {
        title: title.to_owned(),
        ..NodeConfig::default()
    };
    let writes: Vec<PubsubWrite> = [
        ("chat.l/b", "b", "Bee"),
        ("chat.l/a", "a", "Ay"),
        ("chat.l/a", "z", "Zed"),
        ("chat.l", "top", "not under the prefix"),
        ("chat.l0", "x", "sorts right after"),
        ("chat.lz/c", "c", "shares the beginning"),
        ("chat.l/日本", "j", TRICKY),
    ]
    .into_iter()
    .map(|(service, node, title)| {
        write(
            service,
            StoreOp::NodeCreated {
                node: node.to_owned(),
                config: titled(title),
            },
        )
    })
    .collect();
    store.apply(&writes).await.unwrap();
    let listed: Vec<(String, String, String)> = store
        .node_configs("chat.l/")
        .await
        .unwrap()
        .into_iter()
        .map(|listing| (listing.service, listing.node, listing.config.title))
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("chat.l/a", "a", "Ay"),
        ("chat.l/a", "z", "Zed"),
        ("chat.l/b", "b", "Bee"),
        ("chat.l/日本", "j", TRICKY),
    ]
    .into_iter()
    .map(|(s, n, t)| (s.to_owned(), n.to_owned(), t.to_owned()))
    .collect();
    assert_eq!(listed, expected);

    // Nodes an account owns under the prefix, counted: not those it is only a member of, nor
    // those outside.
    let affiliated = |service: &str, node: &str, who: &str, affiliation| {
        write(
            service,
            StoreOp::AffiliationSet {
                node: node.to_owned(),
                jid: bare(who),
                affiliation,
            },
        )
    };
    store
        .apply(&[
            affiliated("chat.l/a", "a", NURSE, Affiliation::Owner),
            affiliated("chat.l/a", "z", NURSE, Affiliation::Owner),
            affiliated("chat.l/b", "b", NURSE, Affiliation::Member),
            affiliated("chat.l/b", "b", TYBALT, Affiliation::Owner),
            affiliated("chat.l0", "x", NURSE, Affiliation::Owner),
        ])
        .await
        .unwrap();
    assert_eq!(store.owned_count(NURSE, "chat.l/").await.unwrap(), 2);
    assert_eq!(store.owned_count(TYBALT, "chat.l/").await.unwrap(), 1);
    assert_eq!(store.owned_count(MERCUTIO, "chat.l/").await.unwrap(), 0);

    // An account's affiliations under the prefix, whatever they are, in order and bounded.
    let held = |max| async move {
        let held = store.affiliations_of(NURSE, "chat.l/", max).await.unwrap();
        (held.into_iter())
            .map(|held| (held.service, held.node, held.affiliation))
            .collect::<Vec<_>>()
    };
    let nurse = [
        ("chat.l/a", "a", Affiliation::Owner),
        ("chat.l/a", "z", Affiliation::Owner),
        ("chat.l/b", "b", Affiliation::Member),
    ]
    .map(|(service, node, affiliation)| (service.to_owned(), node.to_owned(), affiliation));
    assert_eq!(held(10).await, nurse);
    assert_eq!(held(2).await, nurse[..2]);
    let mercutio = store
        .affiliations_of(MERCUTIO, "chat.l/", 10)
        .await
        .unwrap();
    assert_eq!(mercutio, []);
}

pub(crate) async fn pubsub_time_precision(store: &dyn PubsubStore) {
    let times = [
        (UNIX_EPOCH, UNIX_EPOCH),
        (
            time(1_700_000_000_123_456) + Duration::from_nanos(789),
            time(1_700_000_000_123_456),
        ),
        (
            UNIX_EPOCH - Duration::from_micros(86_400_000_001),
            UNIX_EPOCH - Duration::from_micros(86_400_000_001),
        ),
    ];
    let mut writes = vec![created("s", "n")];
    for (i, (published, _)) in times.iter().enumerate() {
        let id = i.to_string();
        writes.push(stored_item("s", "n", item(&id, None, *published)));
    }
    store.apply(&writes).await.unwrap();
    let loaded: Vec<_> = store.load_service("s").await.unwrap()[0]
        .items
        .iter()
        .map(|item| item.published)
        .collect();
    let expected: Vec<_> = times.iter().map(|(_, kept)| *kept).collect();
    assert_eq!(loaded, expected);
}

/// Deleting an account deletes its pubsub state with it, in one transaction: its PEP service,
/// the nodes it alone owned, its subscriptions and affiliations on other nodes (issue #11 H3).
pub(crate) async fn account_deletion_forgets_pubsub(
    accounts: &dyn crate::AccountStore,
    store: &dyn PubsubStore,
) {
    const GONE: &str = "romeo@montague.lit";
    accounts
        .create_account(GONE, &crate::contract::sample_credentials(1))
        .await
        .unwrap();
    let affiliation = |node: &str, who: &str, affiliation| {
        let (node, jid) = (node.to_owned(), bare(who));
        write(
            PUBSUB,
            StoreOp::AffiliationSet {
                node,
                jid,
                affiliation,
            },
        )
    };
    let mut held = subscription("s1", ROMEO, SubscriptionOptions::default());
    held.state = SubscriptionState::Subscribed;
    let writes = [
        created(GONE, "geoloc"),
        created(PUBSUB, "solo"),
        affiliation("solo", GONE, Affiliation::Owner),
        created(PUBSUB, "shared"),
        affiliation("shared", GONE, Affiliation::Owner),
        affiliation("shared", PEP, Affiliation::Owner),
        created(PUBSUB, "hers"),
        affiliation("hers", PEP, Affiliation::Owner),
        affiliation("hers", GONE, Affiliation::Publisher),
        write(
            PUBSUB,
            StoreOp::SubscriptionSet {
                node: "hers".to_owned(),
                subscription: held,
            },
        ),
    ];
    store.apply(&writes).await.unwrap();
    // A room's admins, registered nicks and ban reasons name it in the room's configuration.
    let extra = |var: &str, values: &[&str]| ConfigField::Extra {
        var: var.to_owned(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    let mut room = NodeConfig::default();
    room.set(extra(
        "muc#roomconfig_roomadmins",
        &[GONE, "nurse@capulet.lit"],
    ));
    let nicks = [
        "nurse@capulet.lit Nurse",
        "romeo@montague.lit Romeo",
        "romeo@montague.lit.example Other",
    ];
    room.set(extra("verona#registered_nicks", &nicks));
    let bans = ["romeo@montague.lit Treason", "tybalt@capulet.lit Brawling"];
    room.set(extra("verona#ban_reasons", &bans));
    room.set(ConfigField::Title("romeo@montague.lit Romeo".to_owned()));
    let config = room.clone();
    let node = "room".to_owned();
    store
        .apply(&[write("chat.x", StoreOp::NodeCreated { node, config })])
        .await
        .unwrap();
    // Its conversations end in the same transaction: one moved (retired), one deleted.
    let published = SystemTime::UNIX_EPOCH + Duration::from_secs(7);
    store
        .apply(&[
            created("conv/kept", "c"),
            stored_item("conv/kept", "c", item("said", Some("<p/>"), published)),
            created("conv/gone", "g"),
        ])
        .await
        .unwrap();
    let ends = [
        NodeEnd {
            service: "conv/kept".to_owned(),
            node: "c".to_owned(),
            to: Some(("conv/kept/1".to_owned(), "c/1".to_owned())),
        },
        NodeEnd {
            service: "conv/gone".to_owned(),
            node: "g".to_owned(),
            to: None,
        },
    ];

    accounts.delete_account(GONE, &ends).await.unwrap();
    assert!(store.load_service("conv/kept").await.unwrap().is_empty());
    assert!(store.load_service("conv/gone").await.unwrap().is_empty());
    let retired = store.load_service("conv/kept/1").await.unwrap();
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].id, "c/1");
    assert_eq!(retired[0].items.len(), 1);
    let rooms = store.load_service("chat.x").await.unwrap();
    let mut expected = room;
    expected.set(extra("muc#roomconfig_roomadmins", &["nurse@capulet.lit"]));
    expected.set(extra("verona#registered_nicks", &[nicks[0], nicks[2]]));
    expected.set(extra("verona#ban_reasons", &bans[1..]));
    assert_eq!(rooms[0].config, expected);
    assert!(store.load_service(GONE).await.unwrap().is_empty());
    assert!(store.subscriptions_of(GONE).await.unwrap().is_empty());
    let left = sorted(store.load_service(PUBSUB).await.unwrap());
    let ids: Vec<&str> = left.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["hers", "shared"]);
    for node in &left {
        assert_eq!(
            node.affiliations,
            [(bare(PEP), Affiliation::Owner)],
            "{}",
            node.id
        );
        assert!(node.subscriptions.is_empty(), "{}", node.id);
    }
}

/// An account's subscription count leaves out the conversations with another server's users
/// (one party not of the domain, however its name ends), and only those: a conversation
/// between local parties (the domain itself is one), a retired one, another server's
/// conversation service and any other service count.
pub(crate) async fn pubsub_conversations_counted(store: &dyn PubsubStore) {
    let services = [
        (
            "pubsub.capulet.lit/chat/juliet@capulet.lit/nurse@capulet.lit",
            true,
        ),
        (
            "pubsub.capulet.lit/chat/capulet.lit/juliet@capulet.lit",
            true,
        ),
        (
            "pubsub.capulet.lit/chat/juliet@capulet.lit/romeo@montague.lit",
            false,
        ),
        (
            "pubsub.capulet.lit/chat/evil@montague.lit/juliet@capulet.lit",
            false,
        ),
        (
            "pubsub.capulet.lit/chat/juliet@capulet.lit/x@evilcapulet.lit",
            false,
        ),
        (
            "pubsub.capulet.lit/chat/capulet.lit@montague.lit/juliet@capulet.lit",
            false,
        ),
        (
            "pubsub.capulet.lit/chat/juliet@capulet.lit/capulet.lit.evil",
            false,
        ),
        (
            "pubsub.capulet.lit/chat/juliet@capulet.lit/romeo@montague.lit/1700000000",
            true,
        ),
        (
            "pubsub.montague.lit/chat/juliet@capulet.lit/romeo@montague.lit",
            true,
        ),
        (PEP, true),
    ];
    let mut writes = Vec::new();
    for (service, _) in services {
        writes.push(created(service, "n"));
        for (subid, who) in [("s1", PEP), ("s2", ROMEO)] {
            let mut held = subscription(subid, who, SubscriptionOptions::default());
            held.state = SubscriptionState::Subscribed;
            let (node, subscription) = ("n".to_owned(), held);
            writes.push(write(
                service,
                StoreOp::SubscriptionSet { node, subscription },
            ));
        }
    }
    store.apply(&writes).await.unwrap();
    let counted = services.iter().filter(|(_, counted)| *counted).count();
    for (who, expected) in [(PEP, counted), ("romeo@montague.lit", counted)] {
        let count = store.subscription_count(who, CONVERSATIONS).await.unwrap();
        assert_eq!(count, expected, "{who}");
        let held = store.subscriptions_of(who).await.unwrap();
        assert_eq!(held.len(), services.len(), "{who}: every one is still held");
    }
    for (service, counted) in services {
        assert_eq!(CONVERSATIONS.is_federated(service), !counted, "{service}");
    }
    let nobody = store
        .subscription_count(NURSE, CONVERSATIONS)
        .await
        .unwrap();
    assert_eq!(nobody, 0);
}

/// A node moved to another service and id takes its affiliations and subscriptions along, and
/// its items keep their place among other services' items; what was at the destination gives
/// way, and moving a node that is not stored changes nothing.
pub(crate) async fn pubsub_node_moves(store: &dyn PubsubStore) {
    let mut held = subscription("s1", NURSE, SubscriptionOptions::default());
    held.state = SubscriptionState::Subscribed;
    let node = || "x".to_owned();
    let mut writes = vec![
        created("a/x", "x"),
        created("b", "n"),
        created("a/z", "z"),
        stored_item("a/z", "z", item("stale", None, time(9))),
        write(
            "a/x",
            StoreOp::AffiliationSet {
                node: node(),
                jid: bare(NURSE),
                affiliation: Affiliation::Publisher,
            },
        ),
        write(
            "a/x",
            StoreOp::SubscriptionSet {
                node: node(),
                subscription: held.clone(),
            },
        ),
    ];
    for (n, (service, node, id)) in [
        ("a/x", "x", "x1"),
        ("b", "n", "elsewhere"),
        ("a/x", "x", "x2"),
    ]
    .into_iter()
    .enumerate()
    {
        writes.push(stored_item(
            service,
            node,
            item(id, None, time(n as u64 + 1)),
        ));
    }
    store.apply(&writes).await.unwrap();
    let before = store.load_service("a/x").await.unwrap();

    store.move_node("a/x", "x", "a/z", "z").await.unwrap();
    assert!(store.load_service("a/x").await.unwrap().is_empty());
    let moved = store.load_service("a/z").await.unwrap();
    let expected: Vec<StoredNode> = before
        .into_iter()
        .map(|node| StoredNode {
            id: "z".to_owned(),
            ..node
        })
        .collect();
    assert_eq!(moved, expected);
    let held_now: Vec<(String, String)> = (store.subscriptions_of(NURSE).await.unwrap())
        .into_iter()
        .map(|held| (held.service, held.node))
        .collect();
    assert_eq!(held_now, [("a/z".to_owned(), "z".to_owned())]);
    let query = crate::ItemsQuery {
        services: vec!["a/z".to_owned(), "b".to_owned()],
        max: 10,
        ..crate::ItemsQuery::default()
    };
    let page = store.items_page(&query).await.unwrap();
    let ids: Vec<&str> = page.items.iter().map(|f| f.item.id.as_str()).collect();
    assert_eq!(ids, ["x1", "elsewhere", "x2"]);

    store.move_node("a/x", "x", "b", "n").await.unwrap();
    assert_eq!(store.load_service("a/z").await.unwrap(), moved);
    assert_eq!(store.load_service("b").await.unwrap().len(), 1);
}

/// Items of several services read as one archive: in the order they were stored, filtered by
/// time, paged forwards and backwards from ids, with the count of all that match.
pub(crate) async fn pubsub_items_paged(store: &dyn PubsubStore) {
    let mut writes = vec![created("a/x", "x"), created("a/y", "y"), created("b", "n")];
    // x1, y1, x2, y2 stored in that order, one microsecond apart.
    for (n, (service, node, id)) in [
        ("a/x", "x", "x1"),
        ("a/y", "y", "y1"),
        ("a/x", "x", "x2"),
        ("b", "n", "elsewhere"),
        ("a/y", "y", "y2"),
    ]
    .into_iter()
    .enumerate()
    {
        let payload = format!("<{id}/>");
        writes.push(stored_item(
            service,
            node,
            item(id, Some(&payload), time(n as u64 + 1)),
        ));
    }
    store.apply(&writes).await.unwrap();
    let query = |edit: &dyn Fn(&mut crate::ItemsQuery)| {
        let mut query = crate::ItemsQuery {
            services: vec!["a/x".to_owned(), "a/y".to_owned()],
            max: 10,
            ..crate::ItemsQuery::default()
        };
        edit(&mut query);
        query
    };
    let ids = |page: &crate::ItemsPage| -> Vec<String> {
        page.items
            .iter()
            .map(|found| found.item.id.clone())
            .collect()
    };
    // (query, ids, count, complete)
    let cases: Vec<(crate::ItemsQuery, Vec<&str>, usize, bool)> = vec![
        (query(&|_| {}), vec!["x1", "y1", "x2", "y2"], 4, true),
        (query(&|q| q.max = 3), vec!["x1", "y1", "x2"], 4, false),
        (query(&|q| q.after = Some("x2".into())), vec!["y2"], 4, true),
        (
            query(&|q| q.ids = Some(vec!["y2".into(), "x1".into(), "elsewhere".into()])),
            vec!["x1", "y2"],
            2,
            true,
        ),
        (query(&|q| q.ids = Some(Vec::new())), vec![], 0, true),
        (
            query(&|q| {
                q.max = 3;
                q.backwards = true;
            }),
            vec!["y1", "x2", "y2"],
            4,
            false,
        ),
        (
            query(&|q| {
                q.before = Some("y1".into());
                q.backwards = true;
            }),
            vec!["x1"],
            4,
            true,
        ),
        (
            query(&|q| {
                q.after = Some("x1".into());
                q.before = Some("y2".into());
            }),
            vec!["y1", "x2"],
            4,
            true,
        ),
        (
            query(&|q| {
                q.start = Some(time(2));
                q.end = Some(time(3));
            }),
            vec!["y1", "x2"],
            2,
            true,
        ),
        (query(&|q| q.services = Vec::new()), vec![], 0, true),
        // `after_id` and `before_id` bound the set that is counted and paged.
        (
            query(&|q| {
                q.after_id = Some("x1".into());
                q.before_id = Some("y2".into());
                q.max = 1;
            }),
            vec!["y1"],
            2,
            false,
        ),
        (
            query(&|q| {
                q.after_id = Some("x1".into());
                q.max = 1;
                q.backwards = true;
            }),
            vec!["y2"],
            3,
            false,
        ),
        // Ids are looked for in the archive, not in what the rest leaves (XEP-0313
        // §4.1.4): bounds that leave nothing make an empty page, not an unknown item.
        (
            query(&|q| {
                q.after_id = Some("y2".into());
                q.before_id = Some("x1".into());
            }),
            vec![],
            0,
            true,
        ),
        (
            query(&|q| {
                q.start = Some(time(3));
                q.after_id = Some("x1".into());
                q.before_id = Some("y1".into());
            }),
            vec![],
            0,
            true,
        ),
        (
            query(&|q| {
                q.end = Some(time(2));
                q.before_id = Some("y2".into());
                q.after = Some("x2".into());
            }),
            vec![],
            2,
            true,
        ),
        (
            query(&|q| {
                q.ids = Some(vec!["x2".into()]);
                q.after_id = Some("x1".into());
            }),
            vec!["x2"],
            1,
            true,
        ),
    ];
    for (query, expected, count, complete) in cases {
        let page = store.items_page(&query).await.unwrap();
        assert_eq!(ids(&page), expected, "{query:?}");
        assert_eq!(
            (page.count, page.complete),
            (Some(count), complete),
            "{query:?}"
        );
    }
    let found = &store
        .items_page(&query(&|q| q.max = 1))
        .await
        .unwrap()
        .items[0];
    assert_eq!((found.service.as_str(), found.node.as_str()), ("a/x", "x"));
    assert_eq!(found.item.payload.as_deref(), Some("<x1/>"));
    for unknown in [
        query(&|q| q.after = Some("elsewhere".into())),
        query(&|q| q.before = Some("nothing".into())),
        query(&|q| q.after_id = Some("elsewhere".into())),
        query(&|q| q.before_id = Some("nothing".into())),
    ] {
        let error = store.items_page(&unknown).await.unwrap_err();
        assert!(matches!(error, StorageError::UnknownItem(_)), "{error:?}");
    }
    // A service's newest items per node, and trimming to them.
    let recent = store.load_service_recent("a/x", 1).await.unwrap();
    let ids: Vec<&str> = recent[0].items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["x2"]);
    assert_eq!(store.trim_items("a/x", 1, usize::MAX).await.unwrap(), 1);
    assert_eq!(store.load_service("a/x").await.unwrap(), recent);
    assert_eq!(store.trim_items("a/x", 1, usize::MAX).await.unwrap(), 0);
    // Counting stops past COUNTED_AT_MOST: a page of a larger archive comes without a count.
    let mut writes = vec![created("big", "n")];
    writes.extend((0..crate::COUNTED_AT_MOST).map(|n| {
        stored_item(
            "big",
            "n",
            item(&format!("i{n}"), None, time(n as u64 + 10)),
        )
    }));
    store.apply(&writes).await.unwrap();
    let big = |edit: &dyn Fn(&mut crate::ItemsQuery)| {
        query(&|q| {
            q.services = vec!["big".to_owned()];
            q.max = 2;
            edit(q);
        })
    };
    let page = store.items_page(&big(&|_| {})).await.unwrap();
    assert_eq!(
        (page.count, page.items.len()),
        (Some(crate::COUNTED_AT_MOST), 2)
    );
    let one_more = stored_item("big", "n", item("last", None, time(1 << 40)));
    store.apply(&[one_more]).await.unwrap();
    let page = store
        .items_page(&big(&|q| q.backwards = true))
        .await
        .unwrap();
    let ids: Vec<&str> = page.items.iter().map(|f| f.item.id.as_str()).collect();
    assert_eq!((page.count, ids), (None, vec!["i9999", "last"]));
}

/// Trimming to a count and to bytes (ids and payloads, in bytes, not characters): the oldest
/// go, each node on its own, and the newest item stays however large.
pub(crate) async fn pubsub_items_trimmed(store: &dyn PubsubStore) {
    // "é" is two bytes: each payload of ten characters is 20 bytes, each item 22 with its id.
    let payload = "é".repeat(10);
    let mut writes = vec![created("s", "a"), created("s", "b"), created("other", "a")];
    for (service, node) in [("s", "a"), ("s", "b"), ("other", "a")] {
        writes.extend((0..5).map(|n| {
            let item = item(&format!("i{n}"), Some(&payload), time(n + 1));
            stored_item(service, node, item)
        }));
    }
    writes.push(stored_item(
        "s",
        "b",
        item("big", Some(&"x".repeat(200)), time(9)),
    ));
    store.apply(&writes).await.unwrap();
    let ids = |nodes: Vec<StoredNode>, node: &str| -> Vec<String> {
        let node = nodes.into_iter().find(|n| n.id == node).unwrap();
        node.items.into_iter().map(|i| i.id).collect()
    };
    // 66 bytes hold three items of a; b's newest alone is over it, and stays alone.
    assert_eq!(store.trim_items("s", 4, 66).await.unwrap(), 2 + 5);
    assert_eq!(
        ids(store.load_service("s").await.unwrap(), "a"),
        ["i2", "i3", "i4"]
    );
    assert_eq!(ids(store.load_service("s").await.unwrap(), "b"), ["big"]);
    assert_eq!(store.trim_items("s", 4, 66).await.unwrap(), 0);
    // The count bounds too; another service is untouched.
    assert_eq!(store.trim_items("s", 1, usize::MAX).await.unwrap(), 2);
    assert_eq!(ids(store.load_service("s").await.unwrap(), "a"), ["i4"]);
    let other = store.load_service("other").await.unwrap();
    assert_eq!(ids(other, "a"), ["i0", "i1", "i2", "i3", "i4"]);
}
