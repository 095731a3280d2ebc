//! Owner use cases: creating, configuring, affiliations, and configuration forms.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{bare, has_effect, jid, service};
use verona_pubsub::{
    AccessModel, Affiliation, ConfigField, CreateRequest, Effect, ItemQuery, ItemReply, Limit,
    MaxItems, NoRoster, NodeConfig, NotificationType, PublishModel, PublishRequest, PubsubError,
    SendLastPublishedItem, ServiceConfig, StoreOp,
};

const OWNER: &str = "juliet@capulet.lit/balcony";

fn named(node: &str, config: Vec<ConfigField>) -> CreateRequest {
    CreateRequest {
        node: Some(node.to_owned()),
        config,
        ..CreateRequest::default()
    }
}

#[test]
fn create_named_instant_and_conflicting_nodes() {
    let (mut service, env) = service(ServiceConfig::pubsub());
    let owner = jid(OWNER);
    let out = service.create(&owner, named("n", Vec::new())).unwrap();
    assert_eq!(out.value, "n");
    let ops: Vec<_> = out.store_ops().cloned().collect();
    assert!(matches!(&ops[0], StoreOp::NodeCreated { node, config }
        if node == "n" && config.access_model == AccessModel::Authorize));
    assert_eq!(
        ops[1],
        StoreOp::AffiliationSet {
            node: "n".to_owned(),
            jid: bare("juliet@capulet.lit"),
            affiliation: Affiliation::Owner,
        }
    );
    assert_eq!(
        service.create(&owner, named("n", Vec::new())).err(),
        Some(PubsubError::NodeExists)
    );
    assert_eq!(
        service.create(&owner, named("", Vec::new())).err(),
        Some(PubsubError::NodeIdRequired)
    );

    // Instant nodes get a fresh id, even if the generator proposes a taken one.
    env.script_ids(&["n"]);
    let out = service.create(&owner, CreateRequest::default()).unwrap();
    assert_ne!(out.value, "n");
    assert_eq!(service.node_ids().count(), 2);
}

#[test]
fn create_and_configure_with_publishers() {
    // The one-to-one conversation of XEP-0207 Ex. 18: whitelist, the other party a publisher.
    let (mut service, _) = service(ServiceConfig::pubsub());
    let owner = jid(OWNER);
    let request = CreateRequest {
        node: Some("chat".to_owned()),
        config: vec![
            ConfigField::AccessModel(AccessModel::Whitelist),
            ConfigField::NotificationType(NotificationType::Chat),
        ],
        affiliations: BTreeMap::from([
            (bare("romeo@montague.lit"), Affiliation::Publisher),
            // The creator stays owner whatever the request says.
            (bare("juliet@capulet.lit"), Affiliation::Member),
        ]),
        subscribe_creator: true,
    };
    let out = service.create(&owner, request).unwrap();
    // The node, two affiliations and the creator's subscription.
    assert_eq!(out.store_ops().count(), 4);
    assert!(out.store_ops().any(
        |op| matches!(op, StoreOp::SubscriptionSet { subscription, .. }
        if subscription.jid == jid("juliet@capulet.lit"))
    ));
    let mut affiliations = service.node_affiliations(&owner, "chat").unwrap();
    affiliations.sort();
    assert_eq!(
        affiliations,
        [
            (bare("juliet@capulet.lit"), Affiliation::Owner),
            (bare("romeo@montague.lit"), Affiliation::Publisher),
        ]
    );
    let romeo = jid("romeo@montague.lit/orchard");
    let _ = service
        .subscribe(&NoRoster, &romeo, "chat", &romeo, None)
        .unwrap();
    let out = service
        .publish(
            &romeo,
            "chat",
            PublishRequest::payload(None, "<body>hi</body>"),
        )
        .unwrap();
    let told = out.notifications().next().expect("notified");
    assert_eq!(told.notification_type, NotificationType::Chat);
    // Both parties, the publisher too (the seed's bcc, Ex. 20).
    let mut recipients: Vec<String> = (told.recipients.iter())
        .map(|recipient| recipient.jid.to_string())
        .collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["juliet@capulet.lit", "romeo@montague.lit/orchard"]
    );
    let metadata = service.metadata("chat").unwrap();
    assert_eq!(metadata.publishers, [bare("romeo@montague.lit")]);
    assert_eq!((metadata.subscribers, metadata.items), (2, 1));
}

#[test]
fn create_policy_and_node_limit() {
    let account = bare("juliet@capulet.lit");
    let (mut pep, _) = service(ServiceConfig::pep(account));
    let romeo = jid("romeo@montague.lit/orchard");
    assert_eq!(
        pep.create(&romeo, named("n", Vec::new())).err(),
        Some(PubsubError::Forbidden)
    );
    assert!(pep.create(&jid(OWNER), named("n", Vec::new())).is_ok());

    let mut config = ServiceConfig::pubsub();
    config.limits.max_nodes_per_owner = 2;
    let (mut service, _) = service(config);
    let owner = jid(OWNER);
    let _ = service.create(&owner, named("a", Vec::new())).unwrap();
    let _ = service.create(&owner, named("b", Vec::new())).unwrap();
    let before = service.snapshot();
    assert_eq!(
        service.create(&owner, named("c", Vec::new())).err(),
        Some(PubsubError::PolicyViolation(Limit::MaxNodesExceeded))
    );
    assert_eq!(service.snapshot(), before);
    // Deleting one frees room.
    let _ = service.delete(&owner, "a", None).unwrap();
    assert!(service.create(&owner, named("c", Vec::new())).is_ok());

    // Nobody is made to own another's node on `pubsub.<domain>` or a PEP service (third
    // review, issue #11): it would take that account's room for nodes of its own.
    let ghost_owner: BTreeMap<jid::BareJid, Affiliation> =
        [(bare("ghost@capulet.lit"), Affiliation::Owner)].into();
    assert_eq!(
        service
            .set_affiliations(&NoRoster, &owner, "b", &ghost_owner)
            .err(),
        Some(PubsubError::Forbidden)
    );
    let mut request = named("d", Vec::new());
    request.affiliations = ghost_owner.clone();
    let _ = service.delete(&owner, "c", None).unwrap();
    assert_eq!(
        service.create(&owner, request).err(),
        Some(PubsubError::Forbidden)
    );
    // Where owners share nodes, every node of a PEP service still counts against its
    // account, also one it made someone else the owner of: giving nodes away makes no room.
    let mut config = ServiceConfig::pep(bare("juliet@capulet.lit"));
    config.limits.max_nodes_per_owner = 2;
    config.owners_share_nodes = true;
    let (mut pep, _) = common::service(config);
    for node in ["a", "b"] {
        let _ = pep.create(&owner, named(node, Vec::new())).unwrap();
        let handed: BTreeMap<jid::BareJid, Affiliation> = [
            (bare("ghost@capulet.lit"), Affiliation::Owner),
            (bare("juliet@capulet.lit"), Affiliation::None),
        ]
        .into();
        let _ = pep
            .set_affiliations(&NoRoster, &owner, node, &handed)
            .unwrap();
    }
    assert_eq!(
        pep.create(&owner, named("c", Vec::new())).err(),
        Some(PubsubError::PolicyViolation(Limit::MaxNodesExceeded))
    );
}

#[test]
fn affiliations_per_node_are_bounded() {
    let mut config = ServiceConfig::pubsub();
    config.limits.max_affiliations_per_node = 3;
    let (mut service, _) = service(config);
    let owner = jid(OWNER);
    let _ = service.create(&owner, named("n", Vec::new())).unwrap();
    let set = |service: &mut verona_pubsub::Service, changes: &[(&str, Affiliation)]| {
        let changes: BTreeMap<jid::BareJid, Affiliation> =
            changes.iter().map(|(who, a)| (bare(who), *a)).collect();
        service
            .set_affiliations(&NoRoster, &owner, "n", &changes)
            .map(|_| ())
    };
    // The owner and two more fill the node.
    let two = [
        ("romeo@montague.lit", Affiliation::Member),
        ("tybalt@capulet.lit", Affiliation::Outcast),
    ];
    assert_eq!(set(&mut service, &two), Ok(()));
    let before = service.snapshot();
    let one_more = [("nurse@capulet.lit", Affiliation::Publisher)];
    assert_eq!(
        set(&mut service, &one_more),
        Err(PubsubError::PolicyViolation(Limit::TooManyAffiliations))
    );
    assert_eq!(service.snapshot(), before);
    // Changing one that is there, or swapping one for another, stays within the bound.
    assert_eq!(
        set(
            &mut service,
            &[("romeo@montague.lit", Affiliation::Publisher)]
        ),
        Ok(())
    );
    let swap = [
        ("tybalt@capulet.lit", Affiliation::None),
        ("nurse@capulet.lit", Affiliation::Publisher),
    ];
    assert_eq!(set(&mut service, &swap), Ok(()));
}

#[test]
fn an_outcast_domain_shuts_out_its_accounts() {
    let (mut service, _) = service(ServiceConfig::pubsub());
    let owner = jid(OWNER);
    let open = vec![ConfigField::AccessModel(AccessModel::Open)];
    let _ = service.create(&owner, named("n", open)).unwrap();
    let romeo = jid("romeo@montague.lit/orchard");
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let outcast = BTreeMap::from([(bare("montague.lit"), Affiliation::Outcast)]);
    let _ = service
        .set_affiliations(&NoRoster, &owner, "n", &outcast)
        .unwrap();
    // Romeo's subscription ended with the domain's exclusion…
    assert!(service.own_subscriptions(&romeo, Some("n")).is_empty());
    // …and nobody of that domain comes back in; other domains still may.
    let benvolio = jid("benvolio@montague.lit/square");
    assert_eq!(
        service
            .subscribe(&NoRoster, &benvolio, "n", &benvolio, None)
            .err(),
        Some(PubsubError::Forbidden)
    );
    let nurse = jid("nurse@capulet.lit/chamber");
    assert!(
        service
            .subscribe(&NoRoster, &nurse, "n", &nurse, None)
            .is_ok()
    );
    // Lifting the exclusion lets them in again.
    let lifted = BTreeMap::from([(bare("montague.lit"), Affiliation::None)]);
    let _ = service
        .set_affiliations(&NoRoster, &owner, "n", &lifted)
        .unwrap();
    assert!(
        service
            .subscribe(&NoRoster, &romeo, "n", &romeo, None)
            .is_ok()
    );
}

#[test]
fn configuration_is_validated_against_the_service() {
    let mut config = ServiceConfig::pubsub();
    config.access_models = BTreeSet::from([AccessModel::Authorize, AccessModel::Whitelist]);
    config.limits.max_items_per_node = 100;
    config
        .node_defaults
        .extra
        .insert("x-room#language".to_owned(), vec!["en".to_owned()]);
    let (mut service, _) = service(config);
    let owner = jid(OWNER);
    let cases = [
        (
            ConfigField::AccessModel(AccessModel::Open),
            Err(PubsubError::UnsupportedAccessModel),
        ),
        (
            ConfigField::MaxItems(MaxItems::Count(101)),
            Err(PubsubError::InvalidField {
                var: "pubsub#max_items".to_owned(),
            }),
        ),
        (
            ConfigField::Extra {
                var: "x-unknown".to_owned(),
                values: vec![],
            },
            Err(PubsubError::UnknownField {
                var: "x-unknown".to_owned(),
            }),
        ),
        (
            ConfigField::Extra {
                var: "x-room#language".to_owned(),
                values: vec!["fr".to_owned()],
            },
            Ok(()),
        ),
        (ConfigField::MaxItems(MaxItems::Count(100)), Ok(())),
    ];
    let _ = service.create(&owner, named("n", Vec::new())).unwrap();
    for (i, (field, expected)) in cases.into_iter().enumerate() {
        let created = service.create(&owner, named(&format!("c{i}"), vec![field.clone()]));
        assert_eq!(created.map(|_| ()), expected, "create with {field:?}");
        let configured = service.configure(&NoRoster, &owner, "n", std::slice::from_ref(&field));
        assert_eq!(configured.map(|_| ()), expected, "configure with {field:?}");
    }
    let config = service.configuration(&owner, "n").unwrap();
    assert_eq!(config.extra["x-room#language"], ["fr"]);
    assert_eq!(service.default_config().extra["x-room#language"], ["en"]);
}

#[test]
fn changing_the_access_model_removes_subscriptions_it_no_longer_allows() {
    let mut config = ServiceConfig::pubsub();
    config.node_defaults.access_model = AccessModel::Open;
    let (mut service, _) = service(config);
    let owner = jid(OWNER);
    let _ = service.create(&owner, named("n", Vec::new())).unwrap();
    let romeo = jid("romeo@montague.lit");
    let nurse = jid("nurse@capulet.lit");
    for who in [&romeo, &nurse] {
        let _ = service.subscribe(&NoRoster, who, "n", who, None).unwrap();
    }
    let member = BTreeMap::from([(bare("nurse@capulet.lit"), Affiliation::Member)]);
    let _ = service
        .set_affiliations(&NoRoster, &owner, "n", &member)
        .unwrap();
    let whitelist = [ConfigField::AccessModel(AccessModel::Whitelist)];
    let out = service
        .configure(&NoRoster, &owner, "n", &whitelist)
        .unwrap();
    let removed: Vec<_> = out
        .store_ops()
        .filter(|op| matches!(op, StoreOp::SubscriptionRemoved { .. }))
        .collect();
    assert_eq!(removed.len(), 1);
    assert!(service.own_subscriptions(&romeo, None).is_empty());
    assert_eq!(service.own_subscriptions(&nurse, None).len(), 1);
}

#[test]
fn toggling_persistence_moves_items_in_and_out_of_storage() {
    let mut config = ServiceConfig::pubsub();
    config.node_defaults.persist_items = false;
    let (mut service, _) = service(config);
    let owner = jid(OWNER);
    let _ = service.create(&owner, named("n", Vec::new())).unwrap();
    for id in ["a", "b"] {
        let out = service
            .publish(&owner, "n", PublishRequest::payload(Some(id), "<p/>"))
            .unwrap();
        assert_eq!(out.store_ops().count(), 0);
    }
    let on = [ConfigField::PersistItems(true)];
    let out = service.configure(&NoRoster, &owner, "n", &on).unwrap();
    let stored: Vec<_> = out
        .store_ops()
        .filter_map(|op| match op {
            StoreOp::ItemStored { item, .. } => Some(item.id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(stored, ["a", "b"], "oldest first, as restore expects");

    let off = [ConfigField::PersistItems(false)];
    let out = service.configure(&NoRoster, &owner, "n", &off).unwrap();
    assert!(has_effect(&out, |e| matches!(
        e,
        Effect::Persist(StoreOp::ItemsPurged { .. })
    )));
    let page = service
        .items(&NoRoster, &owner, "n", &ItemQuery::All)
        .unwrap();
    assert_eq!(page.count, 2, "the items stay current in memory");
    assert!(service.stored_nodes()[0].items.is_empty());
}

#[test]
fn affiliations_keep_an_owner() {
    let (mut service, _) = service(ServiceConfig {
        owners_share_nodes: true,
        ..ServiceConfig::pubsub()
    });
    let owner = jid(OWNER);
    let _ = service.create(&owner, named("n", Vec::new())).unwrap();
    let juliet = bare("juliet@capulet.lit");
    let nurse = bare("nurse@capulet.lit");
    let resign = BTreeMap::from([(juliet.clone(), Affiliation::Publisher)]);
    assert_eq!(
        service
            .set_affiliations(&NoRoster, &owner, "n", &resign)
            .err(),
        Some(PubsubError::LastOwner)
    );
    // Handing over in one request is fine.
    let hand_over = BTreeMap::from([
        (juliet.clone(), Affiliation::None),
        (nurse.clone(), Affiliation::Owner),
    ]);
    let out = service
        .set_affiliations(&NoRoster, &owner, "n", &hand_over)
        .unwrap();
    assert_eq!(out.store_ops().count(), 2);
    assert_eq!(
        service.node_affiliations(&owner, "n").err(),
        Some(PubsubError::Forbidden)
    );
    let nurse_jid = jid("nurse@capulet.lit/kitchen");
    assert_eq!(
        service.node_affiliations(&nurse_jid, "n").unwrap(),
        [(nurse.clone(), Affiliation::Owner)]
    );
    // Setting what is already set changes nothing.
    let same = BTreeMap::from([(nurse, Affiliation::Owner)]);
    let out = service
        .set_affiliations(&NoRoster, &nurse_jid, "n", &same)
        .unwrap();
    assert!(out.effects.is_empty() && out.undo.is_empty());
}

#[test]
fn config_fields_round_trip_through_forms() {
    let config = NodeConfig {
        access_model: AccessModel::Roster,
        publish_model: PublishModel::Subscribers,
        max_items: MaxItems::Max,
        persist_items: false,
        deliver_notifications: false,
        deliver_payloads: false,
        notify_config: true,
        notify_delete: false,
        notify_retract: false,
        notify_sub: true,
        presence_based_delivery: true,
        send_last_published_item: SendLastPublishedItem::OnSub,
        notification_type: NotificationType::Normal,
        itemreply: ItemReply::Publisher,
        item_expire: Some(3600),
        title: "Title".to_owned(),
        description: "Description".to_owned(),
        payload_type: "urn:xmpp:tmp".to_owned(),
        roster_groups_allowed: vec!["Friends".to_owned(), "Family".to_owned()],
        subscribe: false,
        max_payload_size: Some(1024),
        tempsub: true,
        extra: BTreeMap::from([("x-custom".to_owned(), vec!["a".to_owned(), "b".to_owned()])]),
    };
    let mut rebuilt = NodeConfig::default();
    for field in config.fields() {
        let parsed = ConfigField::parse(field.var(), &field.values()).unwrap();
        assert_eq!(parsed, field);
        assert!(config.matches(&parsed));
        rebuilt.set(parsed);
    }
    assert_eq!(rebuilt, config, "every field is rendered and parsed back");

    let bad = |var: &str, value: &str| ConfigField::parse(var, &[value.to_owned()]);
    let invalid = |var: &str| {
        Err(PubsubError::InvalidField {
            var: var.to_owned(),
        })
    };
    assert_eq!(
        bad("pubsub#persist_items", "yes"),
        invalid("pubsub#persist_items")
    );
    assert_eq!(
        bad("pubsub#access_model", "friends"),
        invalid("pubsub#access_model")
    );
    assert_eq!(bad("pubsub#max_items", "-1"), invalid("pubsub#max_items"));
    assert_eq!(
        ConfigField::parse("pubsub#title", &["a".to_owned(), "b".to_owned()]),
        invalid("pubsub#title")
    );
    assert_eq!(
        bad("pubsub#persist_items", "1"),
        Ok(ConfigField::PersistItems(true))
    );
    assert_eq!(
        bad("pubsub#item_expire", "max"),
        Ok(ConfigField::ItemExpire(None))
    );
}

/// A deleted account leaves nothing for the next owner of its name (issue #11 H3): its
/// subscriptions and affiliations end everywhere, the nodes it alone owned are deleted, and
/// nodes it shared survive with their other owners. The writes say so, and undo restores it.
#[test]
fn forgetting_an_account_removes_everything_it_held() {
    let (mut service, _) = service(ServiceConfig {
        owners_share_nodes: true,
        ..ServiceConfig::pubsub()
    });
    let juliet = jid(OWNER);
    let romeo = jid("romeo@montague.lit/orchard");
    let open = vec![ConfigField::AccessModel(AccessModel::Open)];
    let _ = service
        .create(&juliet, named("hers", open.clone()))
        .unwrap();
    let _ = service.create(&romeo, named("his", open.clone())).unwrap();
    let _ = service.create(&juliet, named("shared", open)).unwrap();
    let shared: BTreeMap<_, _> = [(bare("romeo@montague.lit"), Affiliation::Owner)].into();
    let _ = service
        .set_affiliations(&NoRoster, &juliet, "shared", &shared)
        .unwrap();
    let _ = service
        .subscribe(&NoRoster, &romeo, "hers", &romeo, None)
        .unwrap();
    let before = service.snapshot();

    let out = service.forget(&bare("romeo@montague.lit"));
    assert_eq!(out.value, ["his"]);
    let ops: BTreeSet<String> = out.store_ops().map(|op| format!("{op:?}")).collect();
    assert!(
        ops.iter()
            .any(|op| op.starts_with("NodeDeleted { node: \"his\"")),
        "{ops:?}"
    );
    assert!(
        ops.iter()
            .any(|op| op.starts_with("SubscriptionRemoved { node: \"hers\"")),
        "{ops:?}"
    );
    assert!(
        ops.iter()
            .any(|op| op.starts_with("AffiliationSet { node: \"shared\"")),
        "{ops:?}"
    );
    assert_eq!(
        service.node_ids().cloned().collect::<BTreeSet<_>>(),
        ["hers".to_owned(), "shared".to_owned()].into()
    );
    assert!(
        service
            .node_subscriptions(&juliet, "hers")
            .unwrap()
            .is_empty()
    );
    let affiliations = service.node_affiliations(&juliet, "shared").unwrap();
    assert_eq!(
        affiliations.into_iter().collect::<Vec<_>>(),
        [(bare("juliet@capulet.lit"), Affiliation::Owner)]
    );

    service.undo(out.undo).unwrap();
    assert_eq!(service.snapshot(), before);
}

/// Issue #9: a service indexes affiliations by JID only once it has many nodes; "my
/// affiliations", the per-owner node limit and undo answer the same on both sides of the line.
#[test]
fn affiliations_across_nodes_answer_alike_with_and_without_the_index() {
    let mut config = ServiceConfig::pubsub();
    config.limits.max_nodes_per_owner = 24;
    let (mut service, _) = service(config);
    let owner = jid(OWNER);
    let romeo = jid("romeo@montague.lit/garden");
    let mut romeos = Vec::new();
    let mut owners = Vec::new();
    for n in 0..24 {
        let node = format!("n{n:02}");
        let _ = service.create(&owner, named(&node, Vec::new())).unwrap();
        owners.push((node.clone(), Affiliation::Owner));
        if n % 3 == 0 {
            let changes = BTreeMap::from([(romeo.to_bare(), Affiliation::Publisher)]);
            let _ = service
                .set_affiliations(&NoRoster, &owner, &node, &changes)
                .unwrap();
            romeos.push((node.clone(), Affiliation::Publisher));
        }
        if n % 6 == 3 {
            // And taken back: nothing of it stays behind.
            let changes = BTreeMap::from([(romeo.to_bare(), Affiliation::None)]);
            let _ = service
                .set_affiliations(&NoRoster, &owner, &node, &changes)
                .unwrap();
            romeos.pop();
        }
        assert_eq!(service.own_affiliations(&romeo, None), romeos, "{node}");
        assert_eq!(service.own_affiliations(&owner, None), owners, "{node}");
        assert_eq!(
            service.own_affiliations(&romeo, Some(&node)),
            romeos
                .iter()
                .filter(|(n, _)| *n == node)
                .cloned()
                .collect::<Vec<_>>()
        );
    }
    // The owner's limit counts the same way.
    let before = service.snapshot();
    assert_eq!(
        service.create(&owner, named("more", Vec::new())).err(),
        Some(PubsubError::PolicyViolation(Limit::MaxNodesExceeded))
    );
    let deleted = service.delete(&owner, "n00", None).unwrap();
    assert!(!service.own_affiliations(&romeo, None).contains(&romeos[0]));
    service.undo(deleted.undo).unwrap();
    assert_eq!(service.snapshot(), before);
    assert_eq!(service.own_affiliations(&romeo, None), romeos);
}
