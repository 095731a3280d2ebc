//! Undo, storage writes and restore: every mutating operation undoes exactly; the store built
//! from `StoreOp`s equals the engine's persistent state; a restored service equals the
//! original (persistently) and works.

mod common;

use std::collections::BTreeMap;

use common::{MemoryStore, Roster, TestEnv, bare, full, jid, normalized};
use proptest::prelude::*;
use verona_pubsub::{
    AccessModel, Affiliation, ConfigField, CreateRequest, ItemQuery, MaxItems, NoRoster, Outcome,
    PublishRequest, PubsubError, Service, ServiceConfig, SubscriptionChange, SubscriptionOptions,
    SubscriptionState, Undo, UndoError,
};

const OWNER: &str = "juliet@capulet.lit/balcony";
const ROMEO: &str = "romeo@montague.lit/orchard";
const NURSE: &str = "nurse@capulet.lit/kitchen";
const TYBALT: &str = "tybalt@capulet.lit/street";
const MERCUTIO: &str = "mercutio@verona.lit/square";

fn fixture_config() -> ServiceConfig {
    let mut config = ServiceConfig::pubsub();
    // Every mutating operation, owners subscribing others and sharing nodes included.
    config.owners_subscribe_others = true;
    config.owners_share_nodes = true;
    config.auto_create = true;
    config
}

/// Records every outcome's storage writes, as the server would.
fn keep<T>(store: &mut MemoryStore, result: Result<Outcome<T>, PubsubError>) -> T {
    let outcome = result.expect("fixture operation");
    store.apply(&outcome);
    outcome.value
}

/// A service with something of everything:
/// * `n`: open, max 3 items `a`, `b`, `c`; romeo subscribed (bare), tybalt temporarily;
/// * `auth`: authorize, nurse pending, one item;
/// * `wl`: whitelist, mercutio member and subscribed;
/// * `pres`: presence model, transient items, romeo subscribed through his presence grant;
/// * `exp`: items expire after 10 s.
fn fixture() -> (Service, TestEnv, MemoryStore, Roster) {
    let env = TestEnv::new();
    let mut service = Service::new(fixture_config(), Box::new(env.clone()));
    let mut store = MemoryStore::default();
    let owner = jid(OWNER);
    let roster = Roster::with_presence("juliet@capulet.lit", "romeo@montague.lit");
    let create = |node: &str, config: Vec<ConfigField>| CreateRequest {
        node: Some(node.to_owned()),
        config,
        ..CreateRequest::default()
    };
    let nodes = [
        (
            "n",
            vec![
                ConfigField::AccessModel(AccessModel::Open),
                ConfigField::MaxItems(MaxItems::Count(3)),
                ConfigField::NotifyConfig(true),
            ],
        ),
        ("auth", vec![]),
        ("wl", vec![ConfigField::AccessModel(AccessModel::Whitelist)]),
        (
            "pres",
            vec![
                ConfigField::AccessModel(AccessModel::Presence),
                ConfigField::PersistItems(false),
            ],
        ),
        ("exp", vec![ConfigField::ItemExpire(Some(10))]),
    ];
    for (node, config) in nodes {
        keep(&mut store, service.create(&owner, create(node, config)));
    }
    for (node, id) in [
        ("n", "a"),
        ("n", "b"),
        ("n", "c"),
        ("auth", "x"),
        ("pres", "p"),
        ("exp", "old"),
    ] {
        let request = PublishRequest::payload(Some(id), format!("<{id}/>"));
        keep(&mut store, service.publish(&owner, node, request));
    }
    let romeo = jid(ROMEO);
    let romeo_bare = jid("romeo@montague.lit");
    keep(
        &mut store,
        service.subscribe(&roster, &romeo, "n", &romeo_bare, None),
    );
    keep(
        &mut store,
        service.subscribe(&roster, &romeo, "pres", &romeo, None),
    );
    let tybalt = jid(TYBALT);
    let temporary = SubscriptionOptions {
        temporary: true,
        ..SubscriptionOptions::default()
    };
    keep(
        &mut store,
        service.subscribe(&roster, &tybalt, "n", &tybalt, Some(temporary)),
    );
    let nurse = jid(NURSE);
    keep(
        &mut store,
        service.subscribe(&roster, &nurse, "auth", &nurse, None),
    );
    let member = BTreeMap::from([(bare("mercutio@verona.lit"), Affiliation::Member)]);
    keep(
        &mut store,
        service.set_affiliations(&roster, &owner, "wl", &member),
    );
    let mercutio = jid(MERCUTIO);
    keep(
        &mut store,
        service.subscribe(&roster, &mercutio, "wl", &mercutio, None),
    );
    (service, env, store, roster)
}

type Op = fn(&mut Service, &TestEnv, &Roster) -> Undo;

/// Every mutating operation, in the variants that touch the most state.
fn operations() -> Vec<(&'static str, Op)> {
    vec![
        ("create named", |s, _, _| {
            let request = CreateRequest {
                node: Some("new".to_owned()),
                affiliations: BTreeMap::from([(
                    bare("romeo@montague.lit"),
                    Affiliation::Publisher,
                )]),
                ..CreateRequest::default()
            };
            s.create(&jid(OWNER), request).unwrap().undo
        }),
        ("create instant", |s, _, _| {
            s.create(&jid(OWNER), CreateRequest::default())
                .unwrap()
                .undo
        }),
        ("configure: shrink, whitelist, transient", |s, _, r| {
            let fields = [
                ConfigField::MaxItems(MaxItems::Count(1)),
                ConfigField::AccessModel(AccessModel::Whitelist),
                ConfigField::PersistItems(false),
                ConfigField::Title("t".to_owned()),
            ];
            s.configure(r, &jid(OWNER), "n", &fields).unwrap().undo
        }),
        ("configure: make persistent", |s, _, r| {
            let fields = [ConfigField::PersistItems(true)];
            s.configure(r, &jid(OWNER), "pres", &fields).unwrap().undo
        }),
        ("delete", |s, _, _| {
            s.delete(&jid(OWNER), "n", None).unwrap().undo
        }),
        ("purge", |s, _, _| s.purge(&jid(OWNER), "n").unwrap().undo),
        ("publish evicting", |s, _, _| {
            s.publish(&jid(OWNER), "n", PublishRequest::payload(None, "<d/>"))
                .unwrap()
                .undo
        }),
        ("publish replacing", |s, _, _| {
            s.publish(
                &jid(OWNER),
                "n",
                PublishRequest::payload(Some("a"), "<a2/>"),
            )
            .unwrap()
            .undo
        }),
        ("publish auto-creating", |s, _, _| {
            s.publish(&jid(OWNER), "fresh", PublishRequest::payload(None, "<f/>"))
                .unwrap()
                .undo
        }),
        ("retract", |s, _, _| {
            s.retract(&jid(OWNER), "n", "b", true).unwrap().undo
        }),
        ("subscribe", |s, _, r| {
            let nurse = jid(NURSE);
            s.subscribe(r, &nurse, "n", &nurse, None).unwrap().undo
        }),
        ("subscribe pending", |s, _, r| {
            let romeo = jid(ROMEO);
            s.subscribe(r, &romeo, "auth", &romeo, None).unwrap().undo
        }),
        ("unsubscribe", |s, _, _| {
            let romeo_bare = jid("romeo@montague.lit");
            s.unsubscribe(&jid(ROMEO), "n", &romeo_bare, None)
                .unwrap()
                .undo
        }),
        ("subscription options", |s, _, _| {
            let options = SubscriptionOptions {
                temporary: true,
                deliver: false,
                ..SubscriptionOptions::default()
            };
            let romeo_bare = jid("romeo@montague.lit");
            s.set_subscription_options(&jid(ROMEO), "n", &romeo_bare, None, options)
                .unwrap()
                .undo
        }),
        ("authorize allow", |s, _, _| {
            s.authorize(&jid(OWNER), "auth", &jid(NURSE), None, true)
                .unwrap()
                .undo
        }),
        ("authorize deny", |s, _, _| {
            s.authorize(&jid(OWNER), "auth", &jid(NURSE), None, false)
                .unwrap()
                .undo
        }),
        ("set subscriptions", |s, _, r| {
            let changes = [
                SubscriptionChange {
                    jid: jid(NURSE),
                    subid: None,
                    subscribed: true,
                },
                SubscriptionChange {
                    jid: jid(ROMEO),
                    subid: None,
                    subscribed: true,
                },
            ];
            s.set_subscriptions(r, &jid(OWNER), "auth", &changes)
                .unwrap()
                .undo
        }),
        ("set affiliations: revoke", |s, _, r| {
            let changes = BTreeMap::from([(bare("mercutio@verona.lit"), Affiliation::None)]);
            s.set_affiliations(r, &jid(OWNER), "wl", &changes)
                .unwrap()
                .undo
        }),
        ("set affiliations: approve", |s, _, r| {
            let changes = BTreeMap::from([
                (bare("nurse@capulet.lit"), Affiliation::Publisher),
                (bare("tybalt@capulet.lit"), Affiliation::Owner),
            ]);
            s.set_affiliations(r, &jid(OWNER), "auth", &changes)
                .unwrap()
                .undo
        }),
        ("recheck access", |s, _, _| {
            s.recheck_access(&NoRoster, &bare("romeo@montague.lit"))
                .undo
        }),
        ("end session", |s, _, _| s.end_session(&jid(TYBALT)).undo),
        ("expire items", |s, env, _| {
            env.advance(11);
            s.expire_items().undo
        }),
    ]
}

#[test]
fn every_mutating_operation_undoes_exactly() {
    for (name, op) in operations() {
        let (mut service, env, _, roster) = fixture();
        let before = service.snapshot();
        let undo = op(&mut service, &env, &roster);
        assert!(
            !undo.is_empty(),
            "{name}: the operation should change something"
        );
        assert_ne!(
            service.snapshot(),
            before,
            "{name}: the operation should change state"
        );
        service.undo(undo).unwrap();
        assert_eq!(
            service.snapshot(),
            before,
            "{name}: undo restores the state exactly"
        );
    }
}

#[test]
fn undo_is_last_in_first_out() {
    let (mut service, env, _, roster) = fixture();
    let before = service.snapshot();
    let ops = operations();
    let first = (ops[6].1)(&mut service, &env, &roster);
    let middle = service.snapshot();
    let second = (ops[10].1)(&mut service, &env, &roster);
    assert_eq!(service.undo(first), Err(UndoError::OutOfOrder));
    let first = (ops[6].1)(&mut service, &env, &roster);
    // The refused undo changed nothing; undoing newest first works.
    service.undo(first).unwrap();
    service.undo(second).unwrap();
    assert_eq!(service.snapshot(), middle);
    let first = (ops[6].1)(&mut service, &env, &roster);
    service.undo(first).unwrap();
    assert_ne!(service.snapshot(), before);
}

#[test]
fn undo_invalidates_the_recipient_cache() {
    let (mut service, _, _, roster) = fixture();
    let owner = jid(OWNER);
    let nurse = jid(NURSE);
    let subscribed = service
        .subscribe(&roster, &nurse, "n", &nurse, None)
        .unwrap();
    let out = service
        .publish(&owner, "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    assert_eq!(out.notifications().next().unwrap().recipients.len(), 3);
    service.undo(out.undo).unwrap();
    service.undo(subscribed.undo).unwrap();
    let out = service
        .publish(&owner, "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    let told = out.notifications().next().unwrap();
    let jids: Vec<_> = told.recipients.iter().map(|r| r.jid.clone()).collect();
    assert_eq!(
        jids,
        [jid("romeo@montague.lit"), jid(TYBALT)],
        "the undone subscriber receives nothing"
    );
}

#[test]
fn failed_operations_change_nothing() {
    let (mut service, _, _, roster) = fixture();
    let before = service.snapshot();
    let romeo = jid(ROMEO);
    let errors = [
        service
            .create(
                &romeo,
                CreateRequest {
                    node: Some("n".into()),
                    ..Default::default()
                },
            )
            .map(|_| ()),
        service
            .configure(&roster, &romeo, "n", &[ConfigField::Title("x".into())])
            .map(|_| ()),
        service.delete(&romeo, "n", None).map(|_| ()),
        service.purge(&romeo, "n").map(|_| ()),
        service
            .publish(&romeo, "n", PublishRequest::payload(None, "<p/>"))
            .map(|_| ()),
        service.retract(&romeo, "n", "a", true).map(|_| ()),
        service
            .subscribe(&roster, &romeo, "wl", &romeo, None)
            .map(|_| ()),
        service
            .unsubscribe(&romeo, "auth", &romeo, None)
            .map(|_| ()),
        service
            .authorize(&romeo, "auth", &jid(NURSE), None, true)
            .map(|_| ()),
        service
            .set_affiliations(&roster, &romeo, "n", &BTreeMap::new())
            .map(|_| ()),
    ];
    assert!(errors.iter().all(Result::is_err));
    assert_eq!(service.snapshot(), before);
}

#[test]
fn restore_round_trip() {
    let (mut service, _, mut store, roster) = fixture();
    let owner = jid(OWNER);
    let replace = PublishRequest::payload(Some("a"), "<a2/>");
    stored(&mut store, service.publish(&owner, "n", replace).unwrap());
    stored(
        &mut store,
        service
            .authorize(&owner, "auth", &jid(NURSE), None, true)
            .unwrap(),
    );
    stored(&mut store, service.retract(&owner, "n", "b", true).unwrap());
    let persist = [ConfigField::PersistItems(true)];
    stored(
        &mut store,
        service
            .configure(&roster, &owner, "pres", &persist)
            .unwrap(),
    );
    assert_eq!(
        store.normalized(),
        normalized(&service),
        "StoreOps describe the persistent state"
    );

    let nodes = store.nodes.values().cloned();
    let mut restored = Service::restore(fixture_config(), Box::new(TestEnv::new()), nodes);
    assert_eq!(normalized(&restored), normalized(&service));

    // Indexes are rebuilt: subscriptions and affiliations per JID, recipients, pending lists.
    for who in [ROMEO, NURSE, MERCUTIO, OWNER, TYBALT] {
        let who = jid(who);
        let persistent = |s: &Service| {
            let mut subs: Vec<_> = s
                .own_subscriptions(&who, None)
                .into_iter()
                .filter(|sub| !sub.options.temporary)
                .collect();
            subs.sort_by(|a, b| (&a.node, &a.subid).cmp(&(&b.node, &b.subid)));
            subs
        };
        assert_eq!(persistent(&restored), persistent(&service));
        assert_eq!(
            restored.own_affiliations(&who, None),
            service.own_affiliations(&who, None)
        );
    }
    assert!(
        restored.own_subscriptions(&jid(TYBALT), None).is_empty(),
        "temporary is gone"
    );
    let out = restored
        .publish(&owner, "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    let told = out.notifications().next().unwrap();
    assert_eq!(told.recipients.len(), 1);
    assert_eq!(told.recipients[0].jid, jid("romeo@montague.lit"));
    let page = restored
        .items(&roster, &owner, "n", &ItemQuery::All)
        .unwrap();
    let ids: Vec<_> = page.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids[1..], ["a", "c"], "publication order survives");
    let page = restored
        .items(&roster, &owner, "pres", &ItemQuery::All)
        .unwrap();
    assert_eq!(
        page.count, 1,
        "items stored when the node became persistent survive"
    );
    let state = restored.node_subscriptions(&owner, "auth").unwrap()[0].state;
    assert_eq!(state, SubscriptionState::Subscribed);
}

fn stored<T>(store: &mut MemoryStore, outcome: Outcome<T>) -> T {
    store.apply(&outcome);
    outcome.value
}

/// Random operations over a small world: a refused operation changes nothing; an undone one
/// leaves the state exactly as before; the store fed with the kept operations' `StoreOp`s
/// always equals the engine's persistent state, and restores to it.
#[derive(Debug, Clone)]
enum RandomOp {
    Create(usize, Vec<ConfigField>),
    Delete(usize, usize),
    Configure(usize, usize, ConfigField),
    Publish(usize, usize, Option<usize>),
    Retract(usize, usize, usize),
    Purge(usize, usize),
    Subscribe(usize, usize, bool),
    Unsubscribe(usize, usize),
    Authorize(usize, usize, bool),
    Affiliate(usize, usize, Affiliation),
    EndSession(usize),
    Expire(u64),
}

const ACTORS: [&str; 3] = ["a@x.lit/1", "b@x.lit/1", "c@y.lit/2"];
const NODES: [&str; 2] = ["n1", "n2"];
const ITEMS: [&str; 3] = ["i1", "i2", "i3"];

fn config_field() -> impl Strategy<Value = ConfigField> {
    prop_oneof![
        prop::sample::select(vec![
            AccessModel::Open,
            AccessModel::Authorize,
            AccessModel::Whitelist
        ])
        .prop_map(ConfigField::AccessModel),
        any::<bool>().prop_map(ConfigField::PersistItems),
        (1usize..4).prop_map(|n| ConfigField::MaxItems(MaxItems::Count(n))),
        prop::option::of(Just(5u64)).prop_map(ConfigField::ItemExpire),
        any::<bool>().prop_map(ConfigField::TempSub),
    ]
}

fn random_op() -> impl Strategy<Value = RandomOp> {
    let actor = 0..ACTORS.len();
    let node = 0..NODES.len();
    prop_oneof![
        (node.clone(), prop::collection::vec(config_field(), 0..3))
            .prop_map(|(n, f)| RandomOp::Create(n, f)),
        (actor.clone(), node.clone()).prop_map(|(a, n)| RandomOp::Delete(a, n)),
        (actor.clone(), node.clone(), config_field())
            .prop_map(|(a, n, f)| RandomOp::Configure(a, n, f)),
        (
            actor.clone(),
            node.clone(),
            prop::option::of(0..ITEMS.len())
        )
            .prop_map(|(a, n, i)| RandomOp::Publish(a, n, i)),
        (actor.clone(), node.clone(), 0..ITEMS.len())
            .prop_map(|(a, n, i)| RandomOp::Retract(a, n, i)),
        (actor.clone(), node.clone()).prop_map(|(a, n)| RandomOp::Purge(a, n)),
        (actor.clone(), node.clone(), any::<bool>())
            .prop_map(|(a, n, t)| RandomOp::Subscribe(a, n, t)),
        (actor.clone(), node.clone()).prop_map(|(a, n)| RandomOp::Unsubscribe(a, n)),
        (actor.clone(), node.clone(), any::<bool>())
            .prop_map(|(a, n, y)| RandomOp::Authorize(a, n, y)),
        (
            actor.clone(),
            node,
            prop::sample::select(Affiliation::ALL.to_vec())
        )
            .prop_map(|(a, n, f)| RandomOp::Affiliate(a, n, f)),
        actor.prop_map(RandomOp::EndSession),
        (0u64..8).prop_map(RandomOp::Expire),
    ]
}

/// Applies one random operation; the first actor owns what it creates.
fn apply(service: &mut Service, env: &TestEnv, op: &RandomOp) -> Result<Outcome, PubsubError> {
    let owner = jid(ACTORS[0]);
    let unit = |outcome: Outcome<_>| outcome.map(drop);
    match op.clone() {
        RandomOp::Create(n, config) => {
            let request = CreateRequest {
                node: Some(NODES[n].to_owned()),
                config,
                ..CreateRequest::default()
            };
            service.create(&owner, request).map(|o| o.map(drop))
        }
        RandomOp::Delete(a, n) => service.delete(&jid(ACTORS[a]), NODES[n], None),
        RandomOp::Configure(a, n, field) => {
            service.configure(&NoRoster, &jid(ACTORS[a]), NODES[n], &[field])
        }
        RandomOp::Publish(a, n, item) => {
            let request = PublishRequest::payload(item.map(|i| ITEMS[i]), "<p/>");
            service
                .publish(&jid(ACTORS[a]), NODES[n], request)
                .map(|o| o.map(drop))
        }
        RandomOp::Retract(a, n, i) => service.retract(&jid(ACTORS[a]), NODES[n], ITEMS[i], false),
        RandomOp::Purge(a, n) => service.purge(&jid(ACTORS[a]), NODES[n]),
        RandomOp::Subscribe(a, n, temporary) => {
            let who = jid(ACTORS[a]);
            let options = temporary.then(|| SubscriptionOptions {
                temporary,
                ..SubscriptionOptions::default()
            });
            let result = service.subscribe(&NoRoster, &who, NODES[n], &who, options);
            result.map(|o| o.map(drop))
        }
        RandomOp::Unsubscribe(a, n) => {
            let who = jid(ACTORS[a]);
            service
                .unsubscribe(&who, NODES[n], &who, None)
                .map(|o| o.map(drop))
        }
        RandomOp::Authorize(a, n, allow) => service
            .authorize(&owner, NODES[n], &jid(ACTORS[a]), None, allow)
            .map(|o| o.map(drop)),
        RandomOp::Affiliate(a, n, affiliation) => {
            let changes = BTreeMap::from([(jid(ACTORS[a]).to_bare(), affiliation)]);
            service.set_affiliations(&NoRoster, &owner, NODES[n], &changes)
        }
        RandomOp::EndSession(a) => Ok(service.end_session(&jid(ACTORS[a])).map(drop)),
        RandomOp::Expire(seconds) => {
            env.advance(seconds);
            Ok(unit(service.expire_items()))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_undo_and_storage_exact(
        ops in prop::collection::vec((random_op(), any::<bool>()), 1..40)
    ) {
        let env = TestEnv::new();
        let mut service = Service::new(fixture_config(), Box::new(env.clone()));
        let mut store = MemoryStore::default();
        for (op, undo_it) in &ops {
            let before = service.snapshot();
            match apply(&mut service, &env, op) {
                Err(_) => prop_assert_eq!(service.snapshot(), before, "refused {:?} changed state", op),
                Ok(outcome) if *undo_it => {
                    service.undo(outcome.undo).unwrap();
                    prop_assert_eq!(service.snapshot(), before, "undo of {:?} was not exact", op);
                }
                Ok(outcome) => store.apply(&outcome),
            }
            prop_assert_eq!(store.normalized(), normalized(&service), "after {:?}", op);
        }
        let restored = Service::restore(fixture_config(), Box::new(env.clone()), store.nodes.values().cloned());
        prop_assert_eq!(normalized(&restored), normalized(&service));
        for actor in ACTORS {
            let who = jid(actor);
            prop_assert_eq!(restored.own_affiliations(&who, None), service.own_affiliations(&who, None));
        }
    }
}

#[test]
fn services_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<Service>();
}

#[test]
fn on_presence_uses_the_restored_index() {
    let (service, _, store, _) = fixture();
    let restored = Service::restore(
        fixture_config(),
        Box::new(TestEnv::new()),
        store.nodes.values().cloned(),
    );
    let session = full("romeo@montague.lit/car");
    let nodes: Vec<_> = restored
        .on_presence(&session)
        .into_iter()
        .map(|l| l.node)
        .collect();
    let original: Vec<_> = service
        .on_presence(&session)
        .into_iter()
        .map(|l| l.node)
        .collect();
    assert_eq!(
        nodes,
        ["n"],
        "pres holds only transient items and a full-JID subscription"
    );
    assert_eq!(nodes, original);
}
