//! Publishing, retrieving and removing items; notifications and their flags.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{bare, has_effect, jid, notifications, recipient_jids, service};
use verona_pubsub::{
    AccessModel, ConfigField, CreateRequest, Effect, Event, ItemQuery, Limit, MaxItems, NewItem,
    NoRoster, PagePosition, PageRequest, PublishRequest, PubsubError, Service, ServiceConfig,
    StoreOp, SubscriptionState,
};

const OWNER: &str = "juliet@capulet.lit/balcony";

/// A pubsub service with an open node `n` (plus `fields`) and one subscriber, romeo.
fn open_node(fields: &[ConfigField]) -> (Service, common::TestEnv) {
    let (mut service, env) = service(ServiceConfig::pubsub());
    let mut config = vec![ConfigField::AccessModel(AccessModel::Open)];
    config.extend_from_slice(fields);
    let request = CreateRequest {
        node: Some("n".to_owned()),
        config,
        ..CreateRequest::default()
    };
    let _ = service.create(&jid(OWNER), request).expect("create");
    let romeo = jid("romeo@montague.lit");
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .expect("subscribe");
    (service, env)
}

fn ids(items: &[verona_pubsub::Item]) -> Vec<&str> {
    items.iter().map(|item| item.id.as_str()).collect()
}

fn publish_n(service: &mut Service, n: usize) {
    for i in 0..n {
        let request = PublishRequest::payload(Some(&i.to_string()), "<p/>");
        let _ = service.publish(&jid(OWNER), "n", request).expect("publish");
    }
}

#[test]
fn publish_request_must_fit_the_event_type() {
    // XEP-0060 §7.1.3.6: (persist_items, deliver_payloads, request) → answer.
    type Request = Option<NewItem>;
    let none: Request = None;
    let empty: Request = Some(NewItem::default());
    let full: Request = Some(NewItem {
        id: None,
        payload: Some(Arc::from("<p/>")),
    });
    let cases = [
        (true, true, none.clone(), Err(PubsubError::ItemRequired)),
        (true, true, empty.clone(), Err(PubsubError::PayloadRequired)),
        (true, true, full.clone(), Ok(())),
        (true, false, none.clone(), Err(PubsubError::ItemRequired)),
        (true, false, empty.clone(), Ok(())),
        (true, false, full.clone(), Ok(())),
        (false, true, none.clone(), Err(PubsubError::ItemRequired)),
        (
            false,
            true,
            empty.clone(),
            Err(PubsubError::PayloadRequired),
        ),
        (false, true, full.clone(), Ok(())),
        (false, false, none, Ok(())),
        (false, false, empty, Err(PubsubError::ItemForbidden)),
        (false, false, full, Err(PubsubError::ItemForbidden)),
    ];
    for (persist, payloads, item, expected) in cases {
        let (mut service, _) = open_node(&[
            ConfigField::PersistItems(persist),
            ConfigField::DeliverPayloads(payloads),
        ]);
        let request = PublishRequest {
            item: item.clone(),
            ..PublishRequest::default()
        };
        let before = service.snapshot();
        let result = service.publish(&jid(OWNER), "n", request);
        let case = format!("persist={persist} payloads={payloads} item={item:?}");
        match (result, expected) {
            (Ok(out), Ok(())) => {
                let told = notifications(&out);
                assert_eq!(told.len(), 1, "{case}");
                assert_eq!(out.store_ops().count(), usize::from(persist), "{case}");
            }
            (Err(error), Err(wanted)) => {
                assert_eq!(error, wanted, "{case}");
                assert_eq!(
                    service.snapshot(),
                    before,
                    "{case}: a refused publish changes nothing"
                );
            }
            (got, wanted) => panic!("{case}: got {:?}, wanted {wanted:?}", got.map(|o| o.value)),
        }
    }
}

#[test]
fn transient_notification_only_publish_stores_nothing() {
    let (mut service, _) = open_node(&[
        ConfigField::PersistItems(false),
        ConfigField::DeliverPayloads(false),
    ]);
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::default())
        .unwrap();
    assert_eq!(out.value.item_id, None);
    assert!(matches!(&notifications(&out)[0].event, Event::Items { items } if items.is_empty()));
    let page = service
        .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(page.count, 0);
}

/// A transient publish is notified and leaves the node's items, in memory and in storage,
/// as they were, however full the node.
#[test]
fn a_transient_publish_is_notified_not_kept() {
    let (mut service, _) = open_node(&[ConfigField::MaxItems(MaxItems::Count(2))]);
    publish_n(&mut service, 2);
    let owner = jid(OWNER);
    let before = service
        .items(&NoRoster, &owner, "n", &ItemQuery::All)
        .unwrap();
    let request = PublishRequest {
        transient: true,
        ..PublishRequest::payload(None, "<composing/>")
    };
    let out = service.publish(&owner, "n", request).unwrap();
    assert_eq!(out.store_ops().count(), 0);
    let told = notifications(&out);
    assert_eq!(told.len(), 1);
    let Event::Items { items } = &told[0].event else {
        panic!("{:?}", told[0].event);
    };
    assert_eq!(items[0].payload.as_deref(), Some("<composing/>"));
    let after = service
        .items(&NoRoster, &owner, "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(ids(&after.items), ids(&before.items));
}

#[test]
fn notifications_share_payload_and_recipients() {
    let (mut service, _) = open_node(&[]);
    let payload: Arc<str> = Arc::from("<entry>big</entry>");
    let request = PublishRequest {
        item: Some(NewItem {
            id: Some("a".to_owned()),
            payload: Some(Arc::clone(&payload)),
        }),
        ..PublishRequest::default()
    };
    let first = service.publish(&jid(OWNER), "n", request).unwrap();
    let Event::Items { items } = &notifications(&first)[0].event else {
        panic!("items event");
    };
    let sent = items[0].payload.as_ref().unwrap();
    assert!(
        Arc::ptr_eq(sent, &payload),
        "the payload is shared, not copied"
    );
    assert_eq!(
        items[0].publisher,
        jid(OWNER),
        "the publishing full JID is recorded"
    );

    let publish = |service: &mut Service| {
        let out = service
            .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
            .unwrap();
        Arc::clone(&notifications(&out)[0].recipients)
    };
    // A small node builds its list for each notification rather than keeping a copy.
    let small = publish(&mut service);
    assert_eq!(*small, *notifications(&first)[0].recipients);
    assert!(!Arc::ptr_eq(&small, &publish(&mut service)));

    // A large one keeps it while its subscriptions do not change.
    for n in 0..200 {
        let fan = jid(&format!("fan{n}@verona.lit"));
        let _ = service.subscribe(&NoRoster, &fan, "n", &fan, None).unwrap();
    }
    let a = publish(&mut service);
    let b = publish(&mut service);
    assert!(
        Arc::ptr_eq(&a, &b),
        "unchanged subscriptions: the same recipient list"
    );
    let nurse = jid("nurse@capulet.lit");
    let _ = service
        .subscribe(&NoRoster, &nurse, "n", &nurse, None)
        .unwrap();
    let c = publish(&mut service);
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(c.len(), a.len() + 1);
}

#[test]
fn a_service_of_busy_nodes_keeps_even_short_recipient_lists() {
    let mut config = ServiceConfig::pubsub();
    config.limits.keep_recipients_from = 0;
    let (mut service, _) = service(config);
    let request = CreateRequest {
        node: Some("n".to_owned()),
        config: vec![ConfigField::AccessModel(AccessModel::Open)],
        ..CreateRequest::default()
    };
    let _ = service.create(&jid(OWNER), request).unwrap();
    let publish = |service: &mut Service| {
        let out = service
            .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
            .unwrap();
        Arc::clone(&notifications(&out)[0].recipients)
    };
    let romeo = jid("romeo@montague.lit");
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let a = publish(&mut service);
    assert!(Arc::ptr_eq(&a, &publish(&mut service)));
    assert_eq!(a.iter().map(|r| &r.jid).collect::<Vec<_>>(), [&romeo]);
    let juliet = jid("juliet@capulet.lit");
    let _ = service
        .subscribe(&NoRoster, &juliet, "n", &juliet, None)
        .unwrap();
    let b = publish(&mut service);
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(b.len(), 2);
}

#[test]
fn notification_only_nodes_strip_payloads_but_retrieval_keeps_them() {
    let (mut service, _) = open_node(&[ConfigField::DeliverPayloads(false)]);
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(Some("a"), "<p/>"))
        .unwrap();
    let Event::Items { items } = &notifications(&out)[0].event else {
        panic!("items event");
    };
    assert_eq!(ids(items), ["a"]);
    assert_eq!(items[0].payload, None);
    let page = service
        .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(page.items[0].payload.as_deref(), Some("<p/>"));
}

#[test]
fn deliver_notifications_false_silences_the_node() {
    let (mut service, _) = open_node(&[ConfigField::DeliverNotifications(false)]);
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(Some("a"), "<p/>"))
        .unwrap();
    assert!(notifications(&out).is_empty());
    let out = service.retract(&jid(OWNER), "n", "a", true).unwrap();
    assert!(notifications(&out).is_empty());
}

#[test]
fn preconditions_must_match_and_unknown_fields_are_refused() {
    let (mut service, _) = open_node(&[]);
    let request = |fields: Vec<ConfigField>| PublishRequest {
        preconditions: fields,
        ..PublishRequest::payload(None, "<p/>")
    };
    let ok = request(vec![
        ConfigField::AccessModel(AccessModel::Open),
        ConfigField::PersistItems(true),
    ]);
    assert!(service.publish(&jid(OWNER), "n", ok).is_ok());
    let mismatch = request(vec![ConfigField::AccessModel(AccessModel::Whitelist)]);
    assert_eq!(
        service.publish(&jid(OWNER), "n", mismatch).err(),
        Some(PubsubError::PreconditionNotMet)
    );
    let unknown = request(vec![ConfigField::Extra {
        var: "pubsub#flavour".to_owned(),
        values: vec!["vanilla".to_owned()],
    }]);
    assert_eq!(
        service.publish(&jid(OWNER), "n", unknown).err(),
        Some(PubsubError::UnknownField {
            var: "pubsub#flavour".to_owned()
        })
    );
    // Parsed from a form, as the protocol layer does it.
    let parsed = ConfigField::parse("pubsub#max_items", &["10".to_owned()]).unwrap();
    assert!(
        service
            .publish(&jid(OWNER), "n", request(vec![parsed]))
            .is_ok()
    );
    let parsed = ConfigField::parse("pubsub#max_items", &["max".to_owned()]).unwrap();
    assert_eq!(
        service
            .publish(&jid(OWNER), "n", request(vec![parsed]))
            .err(),
        Some(PubsubError::PreconditionNotMet)
    );
}

#[test]
fn pep_auto_creates_with_the_preconditions() {
    let account = bare("juliet@capulet.lit");
    let (mut service, _) = service(ServiceConfig::pep(account));
    let request = PublishRequest {
        preconditions: vec![
            ConfigField::AccessModel(AccessModel::Open),
            ConfigField::MaxItems(MaxItems::Max),
        ],
        ..PublishRequest::payload(Some("current"), "<bundle/>")
    };
    let out = service.publish(&jid(OWNER), "omemo", request).unwrap();
    assert!(out.value.node_created);
    assert!(has_effect(
        &out,
        |e| matches!(e, Effect::Persist(StoreOp::NodeCreated { config, .. })
        if config.access_model == AccessModel::Open && config.max_items == MaxItems::Max)
    ));
    assert!(has_effect(&out, |e| matches!(
        e,
        Effect::Persist(StoreOp::ItemStored { .. })
    )));
    let config = service.configuration(&jid(OWNER), "omemo").unwrap();
    assert_eq!(config.access_model, AccessModel::Open);

    // Others cannot create nodes in someone's PEP service.
    let romeo = jid("romeo@montague.lit/orchard");
    assert_eq!(
        service
            .publish(&romeo, "mine", PublishRequest::payload(None, "<p/>"))
            .err(),
        Some(PubsubError::Forbidden)
    );
    // Auto-creating with an impossible configuration changes nothing.
    let before = service.snapshot();
    let bad = PublishRequest {
        preconditions: vec![ConfigField::MaxItems(MaxItems::Count(1_000_000))],
        ..PublishRequest::payload(None, "<p/>")
    };
    assert_eq!(
        service.publish(&jid(OWNER), "other", bad).err(),
        Some(PubsubError::InvalidField {
            var: "pubsub#max_items".to_owned()
        })
    );
    assert_eq!(service.snapshot(), before);
}

#[test]
fn no_auto_create_means_node_not_found() {
    let (mut service, _) = service(ServiceConfig::pubsub());
    assert_eq!(
        service
            .publish(
                &jid(OWNER),
                "missing",
                PublishRequest::payload(None, "<p/>")
            )
            .err(),
        Some(PubsubError::NodeNotFound)
    );
}

#[test]
fn max_items_evicts_the_oldest_with_retractions() {
    let (mut service, _) = open_node(&[ConfigField::MaxItems(MaxItems::Count(3))]);
    publish_n(&mut service, 3);
    // Re-publishing an id replaces it and makes it the newest; nothing is evicted.
    let out = service
        .publish(
            &jid(OWNER),
            "n",
            PublishRequest::payload(Some("0"), "<new/>"),
        )
        .unwrap();
    assert_eq!(notifications(&out).len(), 1);
    let page = service
        .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(ids(&page.items), ["0", "2", "1"]);
    assert_eq!(page.items[0].payload.as_deref(), Some("<new/>"));

    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(Some("3"), "<p/>"))
        .unwrap();
    assert!(has_effect(&out, |e| matches!(e,
        Effect::Persist(StoreOp::ItemRemoved { id, .. }) if id == "1")));
    let told = notifications(&out);
    assert_eq!(told.len(), 2);
    assert!(matches!(&told[1].event, Event::Retract { ids } if ids == &["1"]));
    let page = service
        .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(ids(&page.items), ["3", "0", "2"]);

    // Shrinking max_items evicts at once.
    let shrink = [ConfigField::MaxItems(MaxItems::Count(1))];
    let out = service
        .configure(&NoRoster, &jid(OWNER), "n", &shrink)
        .unwrap();
    assert!(
        notifications(&out)
            .iter()
            .any(|n| matches!(&n.event, Event::Retract { ids } if ids == &["2", "0"]))
    );
    let page = service
        .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(ids(&page.items), ["3"]);
}

/// A node that keeps nothing (`max_items` 0, a room without history) still notifies each
/// publish, and keeps no item, also when it held some before.
#[test]
fn a_node_that_keeps_no_items_still_notifies() {
    let (mut service, _) = open_node(&[ConfigField::MaxItems(MaxItems::Count(2))]);
    publish_n(&mut service, 2);
    let none = [ConfigField::MaxItems(MaxItems::Count(0))];
    let _ = service
        .configure(&NoRoster, &jid(OWNER), "n", &none)
        .unwrap();
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(Some("x"), "<p/>"))
        .unwrap();
    let told = notifications(&out);
    assert!(
        matches!(&told[0].event, Event::Items { items } if ids(items) == ["x"]),
        "{told:?}"
    );
    assert!(!has_effect(&out, |e| matches!(
        e,
        Effect::Persist(StoreOp::ItemStored { .. })
    )));
    let page = service
        .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
        .unwrap();
    assert!(page.items.is_empty());
}

#[test]
fn generated_item_ids_are_unique_even_when_the_generator_repeats() {
    let (mut service, env) = open_node(&[ConfigField::MaxItems(MaxItems::Max)]);
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        let out = service
            .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
            .unwrap();
        assert!(seen.insert(out.value.item_id.unwrap()));
    }
    // A generator that answers "x" over and over still yields distinct ids.
    env.script_ids(&["x"; 30]);
    for _ in 0..3 {
        let out = service
            .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
            .unwrap();
        assert!(seen.insert(out.value.item_id.unwrap()));
    }
    let page = service
        .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(page.count, 53);
}

#[test]
fn retrieval_and_rsm_paging_newest_first() {
    let (mut service, _) = open_node(&[ConfigField::MaxItems(MaxItems::Count(20))]);
    publish_n(&mut service, 10);
    let owner = jid(OWNER);
    let page = |position: PagePosition, max: usize| {
        service.items(
            &NoRoster,
            &owner,
            "n",
            &ItemQuery::Page(PageRequest { max, position }),
        )
    };
    let cases: [(PagePosition, usize, Vec<&str>, usize); 7] = [
        (PagePosition::First, 3, vec!["9", "8", "7"], 0),
        (PagePosition::After("7".into()), 3, vec!["6", "5", "4"], 3),
        (PagePosition::After("1".into()), 3, vec!["0"], 9),
        (PagePosition::Before("4".into()), 3, vec!["7", "6", "5"], 2),
        (PagePosition::Before("8".into()), 3, vec!["9"], 0),
        (PagePosition::Last, 3, vec!["2", "1", "0"], 7),
        (PagePosition::Index(8), 5, vec!["1", "0"], 8),
    ];
    for (position, max, expected, first_index) in cases {
        let result = page(position.clone(), max).unwrap();
        assert_eq!(ids(&result.items), expected, "{position:?}");
        assert_eq!(result.count, 10);
        assert_eq!(result.first_index, first_index, "{position:?}");
    }
    assert_eq!(
        page(PagePosition::After("nope".into()), 3).err(),
        Some(PubsubError::ItemNotFound)
    );
    let latest = service
        .items(&NoRoster, &owner, "n", &ItemQuery::Latest(2))
        .unwrap();
    assert_eq!(ids(&latest.items), ["9", "8"]);
    let query = ItemQuery::Ids(vec!["3".into(), "missing".into(), "5".into()]);
    let some = service.items(&NoRoster, &owner, "n", &query).unwrap();
    assert_eq!(ids(&some.items), ["3", "5"]);
    assert_eq!(
        service
            .items(&NoRoster, &owner, "missing", &ItemQuery::All)
            .err(),
        Some(PubsubError::NodeNotFound)
    );
}

#[test]
fn retract_honours_notify_flags() {
    // (node notify_retract, request notify) → notification sent.
    let cases = [
        (false, false, false),
        (false, true, true),
        (true, false, true),
        (true, true, true),
    ];
    for (node_flag, request_flag, notified) in cases {
        let (mut service, _) = open_node(&[ConfigField::NotifyRetract(node_flag)]);
        publish_n(&mut service, 1);
        let out = service
            .retract(&jid(OWNER), "n", "0", request_flag)
            .unwrap();
        assert!(has_effect(&out, |e| matches!(e,
            Effect::Persist(StoreOp::ItemRemoved { id, .. }) if id == "0")));
        let told = notifications(&out);
        assert_eq!(
            told.len(),
            usize::from(notified),
            "node={node_flag} request={request_flag}"
        );
        if notified {
            assert!(matches!(&told[0].event, Event::Retract { ids } if ids == &["0"]));
            assert_eq!(recipient_jids(told[0]), ["romeo@montague.lit"]);
        }
    }
    let (mut service, _) = open_node(&[]);
    assert_eq!(
        service.retract(&jid(OWNER), "n", "missing", true).err(),
        Some(PubsubError::ItemNotFound)
    );
    assert_eq!(
        service.retract(&jid(OWNER), "n", "", true).err(),
        Some(PubsubError::ItemRequired)
    );
}

#[test]
fn purge_honours_notify_retract() {
    for flag in [false, true] {
        let (mut service, _) = open_node(&[ConfigField::NotifyRetract(flag)]);
        publish_n(&mut service, 3);
        let out = service.purge(&jid(OWNER), "n").unwrap();
        assert!(has_effect(&out, |e| matches!(
            e,
            Effect::Persist(StoreOp::ItemsPurged { .. })
        )));
        let told = notifications(&out);
        assert_eq!(told.len(), usize::from(flag));
        if flag {
            assert_eq!(told[0].event, Event::Purge);
        }
        let page = service
            .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
            .unwrap();
        assert_eq!(page.count, 0);
    }
}

#[test]
fn delete_honours_notify_delete_and_tells_pending_subscribers() {
    for flag in [false, true] {
        let (mut service, _) = open_node(&[ConfigField::NotifyDelete(flag)]);
        // A pending subscriber on an authorize node is told too.
        let authorize = [ConfigField::AccessModel(AccessModel::Authorize)];
        let _ = service
            .configure(&NoRoster, &jid(OWNER), "n", &authorize)
            .unwrap();
        let nurse = jid("nurse@capulet.lit");
        let pending = service
            .subscribe(&NoRoster, &nurse, "n", &nurse, None)
            .unwrap();
        assert_eq!(pending.value.state, SubscriptionState::Pending);

        let redirect = Some("xmpp:pubsub.capulet.lit?;node=new".to_owned());
        let out = service.delete(&jid(OWNER), "n", redirect.clone()).unwrap();
        assert!(has_effect(&out, |e| matches!(
            e,
            Effect::Persist(StoreOp::NodeDeleted { .. })
        )));
        let told = notifications(&out);
        assert_eq!(told.len(), usize::from(flag));
        if flag {
            assert_eq!(told[0].event, Event::Delete { redirect });
            assert_eq!(
                recipient_jids(told[0]),
                ["nurse@capulet.lit", "romeo@montague.lit"]
            );
        }
        assert_eq!(
            service
                .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
                .err(),
            Some(PubsubError::NodeNotFound)
        );
        assert!(
            service.own_subscriptions(&nurse, None).is_empty(),
            "indexes follow"
        );
        assert!(service.own_affiliations(&jid(OWNER), None).is_empty());
    }
}

#[test]
fn configuration_notifications_honour_notify_config() {
    let cases = [
        (false, true, None),
        (true, false, Some(false)),
        (true, true, Some(true)),
    ];
    for (notify, payloads, expected) in cases {
        let (mut service, _) = open_node(&[
            ConfigField::NotifyConfig(notify),
            ConfigField::DeliverPayloads(payloads),
        ]);
        let title = [ConfigField::Title("Balcony scenes".to_owned())];
        let out = service
            .configure(&NoRoster, &jid(OWNER), "n", &title)
            .unwrap();
        assert!(has_effect(&out, |e| matches!(e,
            Effect::Persist(StoreOp::NodeConfigured { config, .. }) if config.title == "Balcony scenes")));
        let told: Vec<_> = notifications(&out)
            .into_iter()
            .filter_map(|n| match &n.event {
                Event::Configuration { config } => Some(config.is_some()),
                _ => None,
            })
            .collect();
        assert_eq!(
            told.first().copied(),
            expected,
            "notify={notify} payloads={payloads}"
        );
        // Setting the same value again changes nothing.
        let out = service
            .configure(&NoRoster, &jid(OWNER), "n", &title)
            .unwrap();
        assert!(out.effects.is_empty() && out.undo.is_empty());
    }
}

#[test]
fn payload_limits() {
    let mut config = ServiceConfig::pubsub();
    config.limits.max_payload_bytes = 16;
    config.node_defaults.access_model = AccessModel::Open;
    let (mut service, _) = service(config);
    let request = CreateRequest {
        node: Some("n".to_owned()),
        config: vec![ConfigField::MaxPayloadSize(Some(8))],
        ..CreateRequest::default()
    };
    let _ = service.create(&jid(OWNER), request).unwrap();
    let publish = |service: &mut Service, payload: &str| {
        service
            .publish(&jid(OWNER), "n", PublishRequest::payload(None, payload))
            .map(|_| ())
    };
    assert_eq!(publish(&mut service, "12345678"), Ok(()));
    assert_eq!(
        publish(&mut service, "123456789"),
        Err(PubsubError::PayloadTooBig)
    );
    assert_eq!(
        publish(&mut service, &"x".repeat(17)),
        Err(PubsubError::PayloadTooBig)
    );
    let too_big = [ConfigField::MaxPayloadSize(Some(17))];
    assert_eq!(
        service
            .configure(&NoRoster, &jid(OWNER), "n", &too_big)
            .err(),
        Some(PubsubError::InvalidField {
            var: "pubsub#max_payload_size".to_owned()
        })
    );
}

#[test]
fn a_service_holds_a_bounded_number_of_bytes() {
    let mut config = ServiceConfig::pubsub();
    config.limits.max_service_bytes = 20;
    config.node_defaults.access_model = AccessModel::Open;
    config.unmetered_nodes.insert("presence".to_owned());
    let (mut service, _) = service(config);
    for (node, max_items) in [("a", 10), ("b", 2), ("presence", 10)] {
        let request = CreateRequest {
            node: Some(node.to_owned()),
            config: vec![ConfigField::MaxItems(MaxItems::Count(max_items))],
            ..CreateRequest::default()
        };
        let _ = service.create(&jid(OWNER), request).unwrap();
    }
    let full = Err(PubsubError::PolicyViolation(Limit::ServiceBytesExceeded));
    let mut publish = |node: &str, id: &str, bytes: usize| {
        let request = PublishRequest::payload(Some(id), "x".repeat(bytes));
        service.publish(&jid(OWNER), node, request).map(|_| ())
    };
    // (node, item id, payload bytes, outcome), in order; the limit is 20 bytes over all
    // nodes but `presence`, ids and payloads.
    let steps = [
        ("a", "1", 7, Ok(())),
        ("b", "1", 5, Ok(())),
        ("a", "2", 6, full.clone()),
        // Replacing an item frees its bytes.
        ("a", "1", 11, Ok(())),
        ("a", "1", 14, full.clone()),
        // A full node drops its oldest: `b` keeps 2 items.
        ("b", "2", 1, Ok(())),
        ("b", "3", 5, Ok(())),
        ("b", "4", 6, full.clone()),
        // An id counts as its payload does.
        ("b", "0123456789", 1, full.clone()),
        // Unmetered: presence goes on whatever the others hold.
        ("presence", "r1", 100, Ok(())),
    ];
    for (n, (node, id, bytes, outcome)) in steps.into_iter().enumerate() {
        assert_eq!(publish(node, id, bytes), outcome, "step {n}: {node}/{id}");
    }
}

#[test]
fn the_nodes_of_one_owner_hold_a_bounded_number_of_bytes() {
    let mut config = ServiceConfig::pubsub();
    config.limits.max_owner_bytes = 20;
    config.node_defaults.access_model = AccessModel::Open;
    let (mut service, _) = service(config);
    let romeo = "romeo@montague.lit/orchard";
    for (owner, node) in [(OWNER, "j1"), (OWNER, "j2"), (romeo, "r1")] {
        let request = CreateRequest {
            node: Some(node.to_owned()),
            ..CreateRequest::default()
        };
        let _ = service.create(&jid(owner), request).unwrap();
    }
    let full = Err(PubsubError::PolicyViolation(Limit::OwnerBytesExceeded));
    let mut publish = |who: &str, node: &str, id: &str, bytes: usize| {
        let request = PublishRequest::payload(Some(id), "x".repeat(bytes));
        service.publish(&jid(who), node, request).map(|_| ())
    };
    let steps = [
        (OWNER, "j1", "1", 15, Ok(())),
        // Juliet's two nodes share her 20 bytes (ids and payloads); Romeo's node has his own.
        (OWNER, "j2", "1", 10, full.clone()),
        (OWNER, "j2", "1", 3, Ok(())),
        (romeo, "r1", "1", 15, Ok(())),
        (OWNER, "j1", "1", 16, full.clone()),
    ];
    for (n, (who, node, id, bytes, outcome)) in steps.into_iter().enumerate() {
        assert_eq!(
            publish(who, node, id, bytes),
            outcome,
            "step {n}: {node}/{id}"
        );
    }
}

#[test]
fn a_node_past_its_byte_bound_drops_its_oldest_items() {
    // Ids and payloads count; the node would keep 10 items, 12 bytes bound it first. The
    // owner's byte limit does not refuse what the node's eviction makes room for.
    let mut config = ServiceConfig::pubsub();
    config.limits.max_node_bytes = 12;
    config.limits.max_owner_bytes = 20;
    config.node_defaults.access_model = AccessModel::Open;
    let (mut service, _) = service(config);
    let mut store = common::MemoryStore::default();
    let request = CreateRequest {
        node: Some("n".to_owned()),
        config: vec![ConfigField::MaxItems(MaxItems::Count(10))],
        ..CreateRequest::default()
    };
    store.apply(&service.create(&jid(OWNER), request).unwrap());
    let romeo = jid("romeo@montague.lit");
    store.apply(
        &service
            .subscribe(&NoRoster, &romeo, "n", &romeo, None)
            .unwrap(),
    );
    // (item id, payload bytes, ids the node then holds newest first, ids retracted).
    let steps: [(&str, usize, &[&str], &[&str]); 6] = [
        ("1", 5, &["1"], &[]),
        ("2", 5, &["2", "1"], &[]),
        // 18 bytes: the oldest goes.
        ("3", 5, &["3", "2"], &["1"]),
        // Replacing an item frees its bytes first.
        ("2", 3, &["2", "3"], &[]),
        // 22 bytes, past the owner's 20 but for the two the node drops.
        ("4", 11, &["4"], &["3", "2"]),
        // Larger than the node's bound: it stays, alone.
        ("5", 19, &["5"], &["4"]),
    ];
    for (n, (id, bytes, held, retracted)) in steps.into_iter().enumerate() {
        let request = PublishRequest::payload(Some(id), "x".repeat(bytes));
        let out = service
            .publish(&jid(OWNER), "n", request)
            .unwrap_or_else(|e| panic!("step {n}: {e}"));
        store.apply(&out);
        let page = service
            .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
            .unwrap();
        assert_eq!(ids(&page.items), held, "step {n}");
        let removed: Vec<&str> = out
            .store_ops()
            .filter_map(|op| match op {
                StoreOp::ItemRemoved { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(removed, retracted, "step {n}: removed from storage");
        let told: Vec<&Event> = notifications(&out).iter().map(|n| &n.event).collect();
        if !retracted.is_empty() {
            assert!(
                told.iter()
                    .any(|e| matches!(e, Event::Retract { ids } if ids == retracted)),
                "step {n}: {told:?}"
            );
        }
        assert_eq!(store.normalized(), common::normalized(&service), "step {n}");
    }
}

#[test]
fn a_restored_node_past_its_bounds_is_trimmed_with_storage() {
    // Items stored before the bound (or under larger limits) come back; trimming drops the
    // oldest as publishing would, and says what storage must remove.
    let mut config = ServiceConfig::pubsub();
    config.node_defaults.access_model = AccessModel::Open;
    let (mut service, _) = service(config.clone());
    let request = CreateRequest {
        node: Some("n".to_owned()),
        config: vec![ConfigField::MaxItems(MaxItems::Count(3))],
        ..CreateRequest::default()
    };
    let _ = service.create(&jid(OWNER), request).unwrap();
    for (id, bytes) in [("1", 9), ("2", 9), ("3", 4), ("4", 4)] {
        let request = PublishRequest::payload(Some(id), "x".repeat(bytes));
        let _ = service.publish(&jid(OWNER), "n", request).unwrap();
    }
    let stored = service.stored_nodes();
    config.limits.max_node_bytes = 12;
    let mut restored = Service::restore(config, Box::new(common::TestEnv::new()), stored);
    let ops = restored.trim_items();
    let removed: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::ItemRemoved { node, id } if node == "n" => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, ["2"], "{ops:?}");
    let page = restored
        .items(&NoRoster, &jid(OWNER), "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(ids(&page.items), ["4", "3"]);
    assert!(
        restored.trim_items().is_empty(),
        "trimming twice drops nothing"
    );
}

#[test]
fn items_expire() {
    let (mut service, env) = open_node(&[
        ConfigField::ItemExpire(Some(60)),
        ConfigField::MaxItems(MaxItems::Count(10)),
    ]);
    publish_n(&mut service, 2);
    env.advance(30);
    let request = PublishRequest::payload(Some("late"), "<p/>");
    let _ = service.publish(&jid(OWNER), "n", request).unwrap();
    env.advance(31);
    let owner = jid(OWNER);
    let page = service
        .items(&NoRoster, &owner, "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(
        ids(&page.items),
        ["late"],
        "expired items are hidden at once"
    );

    let out = service.expire_items();
    assert_eq!(out.value, 2);
    let removed: Vec<_> = out
        .store_ops()
        .filter_map(|op| match op {
            StoreOp::ItemRemoved { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, ["0", "1"]);
    assert!(matches!(&notifications(&out)[0].event, Event::Retract { ids } if ids == &["0", "1"]));
    assert_eq!(service.expire_items().value, 0);
}
