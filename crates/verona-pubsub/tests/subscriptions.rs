//! Subscribing: the authorize flow, whitelist and outcast enforcement, SubIDs, options,
//! temporary subscriptions, owner management, limits.

mod common;

use std::collections::BTreeMap;

use common::{Roster, bare, full, has_effect, jid, notifications, recipient_jids, service};
use verona_pubsub::{
    AccessModel, Affiliation, ConfigField, CreateRequest, Effect, Event, Feature, ItemQuery, Limit,
    NoRoster, NotAuthorizedReason, PublishRequest, PubsubError, SendLastPublishedItem, Service,
    ServiceConfig, Show, StoreOp, SubId, SubscriptionChange, SubscriptionOptions,
    SubscriptionOptionsPolicy, SubscriptionState,
};

const OWNER: &str = "juliet@capulet.lit/balcony";
const ROMEO: &str = "romeo@montague.lit/orchard";

fn with_node(config: ServiceConfig, fields: &[ConfigField]) -> (Service, common::TestEnv) {
    let (mut service, env) = service(config);
    let request = CreateRequest {
        node: Some("n".to_owned()),
        config: fields.to_vec(),
        ..CreateRequest::default()
    };
    let _ = service.create(&jid(OWNER), request).expect("create");
    (service, env)
}

fn publish(service: &mut Service, id: &str) {
    let request = PublishRequest::payload(Some(id), format!("<p>{id}</p>"));
    let _ = service.publish(&jid(OWNER), "n", request).expect("publish");
}

fn options_with(f: impl FnOnce(&mut SubscriptionOptions)) -> SubscriptionOptions {
    let mut options = SubscriptionOptions::default();
    f(&mut options);
    options
}

#[test]
fn authorize_flow_pending_then_approved() {
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &[]);
    publish(&mut service, "first");
    let romeo = jid(ROMEO);
    let romeo_bare = jid("romeo@montague.lit");

    let out = service
        .subscribe(&NoRoster, &romeo, "n", &romeo_bare, None)
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Pending);
    let subid = out.value.subid.clone();
    assert!(has_effect(&out, |e| matches!(e,
        Effect::AuthorizationRequest(r)
            if r.owners == [bare("juliet@capulet.lit")] && r.subscriber == romeo_bare && r.subid == subid)));
    assert!(has_effect(&out, |e| matches!(e,
        Effect::Persist(StoreOp::SubscriptionSet { subscription, .. })
            if subscription.state == SubscriptionState::Pending)));
    assert!(!has_effect(&out, |e| matches!(e, Effect::SendLastItems(_))));

    // While pending: no items, no second request, listed for the owner.
    assert_eq!(
        service.items(&NoRoster, &romeo, "n", &ItemQuery::All).err(),
        Some(PubsubError::NotAuthorized(
            NotAuthorizedReason::NotSubscribed
        ))
    );
    assert_eq!(
        service
            .subscribe(&NoRoster, &romeo, "n", &romeo_bare, None)
            .err(),
        Some(PubsubError::NotAuthorized(
            NotAuthorizedReason::PendingSubscription
        ))
    );
    // Nor one per made-up resource: one request waits per account (issue #11 H1).
    for resource in ["a", "b"] {
        let other = jid(&format!("romeo@montague.lit/{resource}"));
        assert_eq!(
            service
                .subscribe(&NoRoster, &romeo, "n", &other, None)
                .err(),
            Some(PubsubError::NotAuthorized(
                NotAuthorizedReason::PendingSubscription
            ))
        );
    }
    let pending = service.pending_subscriptions(&jid(OWNER), "n").unwrap();
    assert_eq!(pending.len(), 1);
    assert!(
        service
            .node_subscriptions(&jid(OWNER), "n")
            .unwrap()
            .is_empty()
    );
    let again = service.pending_for_owner(&bare("juliet@capulet.lit"));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].subid, subid);

    // A publish does not reach a pending subscriber.
    let request = PublishRequest::payload(Some("second"), "<p/>");
    let out = service.publish(&jid(OWNER), "n", request).unwrap();
    assert!(notifications(&out).is_empty());

    // Only owners answer.
    assert_eq!(
        service
            .authorize(&romeo, "n", &romeo_bare, None, true)
            .err(),
        Some(PubsubError::Forbidden)
    );
    let out = service
        .authorize(&jid(OWNER), "n", &romeo_bare, None, true)
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Subscribed);
    let told = notifications(&out);
    assert_eq!(told.len(), 1);
    assert_eq!(recipient_jids(told[0]), ["romeo@montague.lit"]);
    assert_eq!(told[0].recipients[0].subids, std::slice::from_ref(&subid));
    assert!(matches!(&told[0].event,
        Event::Subscription { state: SubscriptionState::Subscribed, subid: Some(s), .. } if *s == subid));
    let last: Vec<_> = out
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendLastItems(last) => Some(last),
            _ => None,
        })
        .collect();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].to, romeo_bare);
    let ids: Vec<_> = last[0].items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        ["second"],
        "the newest item only, for a pubsub service"
    );
    assert!(has_effect(&out, |e| matches!(e,
        Effect::Persist(StoreOp::SubscriptionSet { subscription, .. })
            if subscription.state == SubscriptionState::Subscribed)));
    // Persist effects come first.
    assert!(matches!(out.effects[0], Effect::Persist(_)));

    // Answering again changes nothing (first approval wins).
    let out = service
        .authorize(&jid(OWNER), "n", &romeo_bare, None, false)
        .unwrap();
    assert!(out.effects.is_empty() && out.undo.is_empty());
    assert_eq!(out.value.state, SubscriptionState::Subscribed);

    assert_eq!(
        service
            .items(&NoRoster, &romeo, "n", &ItemQuery::All)
            .unwrap()
            .count,
        2
    );
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    assert_eq!(
        recipient_jids(notifications(&out)[0]),
        ["romeo@montague.lit"]
    );
}

/// `max_pending_per_node`: requests waiting on one node are bounded (each may name another
/// made-up JID of another server), and one other domain's to a tenth of it, so that it
/// cannot keep others out; one answered makes room for the next.
#[test]
fn waiting_requests_per_node_are_bounded() {
    let mut config = ServiceConfig::pubsub();
    config.limits.max_pending_per_node = 20;
    let (mut service, _) = with_node(config, &[]);
    let from = |domain: &str, n: usize| jid(&format!("x{n}@{domain}"));
    for n in 0..2 {
        let asker = from("evil.lit", n);
        let out = service
            .subscribe(&NoRoster, &asker, "n", &asker, None)
            .unwrap();
        assert_eq!(out.value.state, SubscriptionState::Pending);
    }
    let third = from("evil.lit", 2);
    assert_eq!(
        service
            .subscribe(&NoRoster, &third, "n", &third, None)
            .err(),
        Some(PubsubError::PolicyViolation(Limit::TooManyPending))
    );
    // Others still ask: another server's users, and the owner's own domain's up to the bound.
    let other = from("montague.lit", 0);
    assert!(
        service
            .subscribe(&NoRoster, &other, "n", &other, None)
            .is_ok()
    );
    for n in 0..17 {
        let local = from("capulet.lit", n);
        assert!(
            service
                .subscribe(&NoRoster, &local, "n", &local, None)
                .is_ok()
        );
    }
    let over = from("capulet.lit", 17);
    assert_eq!(
        service.subscribe(&NoRoster, &over, "n", &over, None).err(),
        Some(PubsubError::PolicyViolation(Limit::TooManyPending))
    );
}

/// With the bound at 2 (a tenth of which is still one per domain): one answered request
/// makes room for the next.
#[test]
fn an_answered_request_makes_room() {
    let mut config = ServiceConfig::pubsub();
    config.limits.max_pending_per_node = 2;
    let (mut service, _) = with_node(config, &[]);
    let asker = |n: usize| jid(&format!("x{n}@capulet.lit"));
    for n in 0..2 {
        let out = service
            .subscribe(&NoRoster, &asker(n), "n", &asker(n), None)
            .unwrap();
        assert_eq!(out.value.state, SubscriptionState::Pending);
    }
    assert_eq!(
        service
            .subscribe(&NoRoster, &asker(2), "n", &asker(2), None)
            .err(),
        Some(PubsubError::PolicyViolation(Limit::TooManyPending))
    );
    let _ = service
        .authorize(&jid(OWNER), "n", &asker(0), None, false)
        .unwrap();
    let out = service
        .subscribe(&NoRoster, &asker(2), "n", &asker(2), None)
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Pending);
}

#[test]
fn authorize_flow_denied() {
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &[]);
    let romeo = jid(ROMEO);
    let out = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let subid = out.value.subid;
    let out = service
        .authorize(&jid(OWNER), "n", &romeo, Some(&subid), false)
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::None);
    assert!(has_effect(&out, |e| matches!(e,
        Effect::Persist(StoreOp::SubscriptionRemoved { subid: s, .. }) if *s == subid)));
    assert!(matches!(
        &notifications(&out)[0].event,
        Event::Subscription {
            state: SubscriptionState::None,
            ..
        }
    ));
    assert!(!has_effect(&out, |e| matches!(e, Effect::SendLastItems(_))));
    assert!(
        service
            .pending_subscriptions(&jid(OWNER), "n")
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        service
            .authorize(&jid(OWNER), "n", &romeo, None, true)
            .err(),
        Some(PubsubError::NotSubscribed)
    );
    // Denied is not banned: a new request is pending again.
    let out = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Pending);
}

#[test]
fn members_and_approved_entities_skip_approval() {
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &[]);
    let owner = jid(OWNER);
    let members = BTreeMap::from([(bare("nurse@capulet.lit"), Affiliation::Member)]);
    let _ = service
        .set_affiliations(&NoRoster, &owner, "n", &members)
        .unwrap();
    let nurse = jid("nurse@capulet.lit/kitchen");
    let out = service
        .subscribe(&NoRoster, &nurse, "n", &nurse, None)
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Subscribed);

    // An approved bare JID's other resources subscribe without asking again.
    let other = jid("nurse@capulet.lit/garden");
    let out = service
        .subscribe(&NoRoster, &other, "n", &other, None)
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Subscribed);

    // Making a pending subscriber a publisher approves it (XEP-0060 §8.7).
    let romeo = jid(ROMEO);
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let publishers = BTreeMap::from([(bare("romeo@montague.lit"), Affiliation::Publisher)]);
    let out = service
        .set_affiliations(&NoRoster, &owner, "n", &publishers)
        .unwrap();
    assert!(has_effect(&out, |e| matches!(e, Effect::Notify(n)
        if matches!(n.event, Event::Subscription { state: SubscriptionState::Subscribed, .. }))));
    assert!(
        service
            .pending_subscriptions(&owner, "n")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn whitelist_keeps_non_members_out_and_revokes_removed_members() {
    let fields = [ConfigField::AccessModel(AccessModel::Whitelist)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    publish(&mut service, "secret");
    let owner = jid(OWNER);
    let romeo = jid(ROMEO);
    assert_eq!(
        service
            .subscribe(&NoRoster, &romeo, "n", &romeo, None)
            .err(),
        Some(PubsubError::ClosedNode)
    );
    assert_eq!(
        service.items(&NoRoster, &romeo, "n", &ItemQuery::All).err(),
        Some(PubsubError::ClosedNode)
    );
    assert!(
        service
            .visible_nodes(&NoRoster, &romeo, None, 10)
            .is_empty()
    );

    let add = BTreeMap::from([(bare("romeo@montague.lit"), Affiliation::Member)]);
    let _ = service
        .set_affiliations(&NoRoster, &owner, "n", &add)
        .unwrap();
    assert_eq!(service.visible_nodes(&NoRoster, &romeo, None, 10), ["n"]);
    let out = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Subscribed);
    assert_eq!(
        service
            .items(&NoRoster, &romeo, "n", &ItemQuery::All)
            .unwrap()
            .count,
        1
    );

    let remove = BTreeMap::from([(bare("romeo@montague.lit"), Affiliation::None)]);
    let out = service
        .set_affiliations(&NoRoster, &owner, "n", &remove)
        .unwrap();
    assert!(has_effect(&out, |e| matches!(
        e,
        Effect::Persist(StoreOp::SubscriptionRemoved { .. })
    )));
    assert!(has_effect(&out, |e| matches!(e, Effect::Notify(n)
        if matches!(n.event, Event::Subscription { state: SubscriptionState::None, .. }))));
    assert!(service.own_subscriptions(&romeo, None).is_empty());
}

#[test]
fn outcasts_lose_their_subscriptions_and_cannot_return() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let owner = jid(OWNER);
    let romeo = jid(ROMEO);
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let ban = BTreeMap::from([(bare("romeo@montague.lit"), Affiliation::Outcast)]);
    let out = service
        .set_affiliations(&NoRoster, &owner, "n", &ban)
        .unwrap();
    assert!(has_effect(&out, |e| matches!(
        e,
        Effect::Persist(StoreOp::AffiliationSet {
            affiliation: Affiliation::Outcast,
            ..
        })
    )));
    assert!(service.own_subscriptions(&romeo, None).is_empty());
    assert_eq!(
        service
            .subscribe(&NoRoster, &romeo, "n", &romeo, None)
            .err(),
        Some(PubsubError::Forbidden)
    );
    let out = service
        .publish(&owner, "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    assert!(notifications(&out).is_empty(), "outcasts receive nothing");
}

#[test]
fn subids_distinguish_subscriptions_with_different_options() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let romeo = jid(ROMEO);
    let away = options_with(|o| o.show_values = Some([Show::Away].into()));
    let chat = options_with(|o| o.show_values = Some([Show::Chat].into()));
    let first = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, Some(away.clone()))
        .unwrap()
        .value;
    let second = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, Some(chat))
        .unwrap()
        .value;
    assert_ne!(first.subid, second.subid);
    let same = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, Some(away))
        .unwrap();
    assert_eq!(
        same.value.subid, first.subid,
        "identical options return the existing one"
    );
    assert!(same.undo.is_empty());

    // One notification per subscribed JID, naming both SubIDs, with merged show-values.
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    let told = notifications(&out);
    assert_eq!(told[0].recipients.len(), 1);
    let recipient = &told[0].recipients[0];
    assert_eq!(
        recipient.subids,
        [first.subid.clone(), second.subid.clone()]
    );
    assert_eq!(recipient.show_values, Some([Show::Away, Show::Chat].into()));

    assert_eq!(
        service.unsubscribe(&romeo, "n", &romeo, None).err(),
        Some(PubsubError::SubidRequired)
    );
    assert_eq!(
        service
            .unsubscribe(&romeo, "n", &romeo, Some("bogus"))
            .err(),
        Some(PubsubError::InvalidSubid)
    );
    let out = service
        .unsubscribe(&romeo, "n", &romeo, Some(&first.subid))
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::None);
    assert!(has_effect(&out, |e| matches!(e,
        Effect::Persist(StoreOp::SubscriptionRemoved { subid, .. }) if *subid == first.subid)));
    // One left: no SubID needed any more.
    let _ = service.unsubscribe(&romeo, "n", &romeo, None).unwrap();
    assert_eq!(
        service.unsubscribe(&romeo, "n", &romeo, None).err(),
        Some(PubsubError::NotSubscribed)
    );
}

/// XEP-0060 §6.5.9.1–2: a retrieval names one of the requester's subscriptions (of its JID
/// or its bare JID) when it holds several, and only one of them; holding none, it names
/// whatever it likes.
#[test]
fn item_retrieval_names_one_of_several_subscriptions() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let romeo = jid(ROMEO);
    let chat = options_with(|o| o.show_values = Some([Show::Chat].into()));
    let first = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap()
        .value
        .subid;
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, Some(chat))
        .unwrap();
    let nurse = jid("nurse@capulet.lit/chamber");
    let nurse_bare = jid("nurse@capulet.lit");
    let nurses = service
        .subscribe(&NoRoster, &nurse, "n", &nurse_bare, None)
        .unwrap()
        .value
        .subid;
    let _ = service
        .subscribe(&NoRoster, &nurse, "n", &nurse, None)
        .unwrap();
    let cases: &[(&str, Option<&str>, Result<(), PubsubError>)] = &[
        (ROMEO, None, Err(PubsubError::SubidRequired)),
        (ROMEO, Some("bogus"), Err(PubsubError::InvalidSubid)),
        (ROMEO, Some(&first), Ok(())),
        // Another resource holds none of the full JID's subscriptions.
        ("romeo@montague.lit/garden", None, Ok(())),
        ("romeo@montague.lit/garden", Some(&first), Ok(())),
        // The resource and its bare JID hold one each: two entities, neither needs a SubID,
        // and the bare JID's is the resource's to name.
        ("nurse@capulet.lit/chamber", None, Ok(())),
        ("nurse@capulet.lit/chamber", Some(&nurses), Ok(())),
        ("nurse@capulet.lit", None, Ok(())),
        // The bare JID holds none of its resource's two.
        ("romeo@montague.lit", None, Ok(())),
        ("nurse@capulet.lit/attic", None, Ok(())),
        (
            "nurse@capulet.lit/attic",
            Some("bogus"),
            Err(PubsubError::InvalidSubid),
        ),
        ("tybalt@capulet.lit/street", Some("bogus"), Ok(())),
    ];
    for (n, (actor, subid, expected)) in cases.iter().enumerate() {
        assert_eq!(
            service.check_retrieval_subid(&jid(actor), "n", *subid),
            *expected,
            "case {n}"
        );
    }
    assert_eq!(
        service.check_retrieval_subid(&romeo, "missing", None),
        Err(PubsubError::NodeNotFound)
    );
}

#[test]
fn bare_and_full_jid_subscriptions_are_separate_recipients() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let romeo = jid(ROMEO);
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let romeo_bare = jid("romeo@montague.lit");
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo_bare, None)
        .unwrap();
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    let mut jids = recipient_jids(notifications(&out)[0]);
    jids.sort();
    assert_eq!(jids, ["romeo@montague.lit", "romeo@montague.lit/orchard"]);
}

#[test]
fn subscribing_or_unsubscribing_someone_else_is_refused() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let romeo = jid(ROMEO);
    let tybalt = jid("tybalt@capulet.lit");
    assert_eq!(
        service
            .subscribe(&NoRoster, &tybalt, "n", &romeo, None)
            .err(),
        Some(PubsubError::InvalidJid)
    );
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    assert_eq!(
        service.unsubscribe(&tybalt, "n", &romeo, None).err(),
        Some(PubsubError::Forbidden)
    );
    assert_eq!(
        service
            .subscription_options(&tybalt, "n", &romeo, None)
            .err(),
        Some(PubsubError::Forbidden)
    );
    assert_eq!(
        service.unsubscribe(&romeo, "missing", &romeo, None).err(),
        Some(PubsubError::NodeNotFound)
    );
    assert_eq!(
        service.subscribe(&NoRoster, &romeo, "", &romeo, None).err(),
        Some(PubsubError::NodeIdRequired)
    );
}

#[test]
fn required_options_leave_subscriptions_unconfigured_until_set() {
    let mut config = ServiceConfig::pubsub();
    config.subscription_options = SubscriptionOptionsPolicy::Required;
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(config, &fields);
    publish(&mut service, "old");
    let romeo = jid(ROMEO);
    let out = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Unconfigured);
    assert!(!has_effect(&out, |e| matches!(e, Effect::SendLastItems(_))));
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    assert!(
        notifications(&out).is_empty(),
        "unconfigured subscriptions receive nothing"
    );

    let options = options_with(|o| o.include_body = true);
    let out = service
        .set_subscription_options(&romeo, "n", &romeo, None, options.clone())
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Subscribed);
    assert!(has_effect(&out, |e| matches!(e, Effect::SendLastItems(_))));
    assert_eq!(
        service
            .subscription_options(&romeo, "n", &romeo, None)
            .unwrap(),
        options
    );

    // Subscribing with options at once is active at once.
    let juliet = jid("juliet@capulet.lit/chamber");
    let out = service
        .subscribe(
            &NoRoster,
            &juliet,
            "n",
            &juliet,
            Some(SubscriptionOptions::default()),
        )
        .unwrap();
    assert_eq!(out.value.state, SubscriptionState::Subscribed);
}

#[test]
fn deliver_false_subscribers_get_no_notifications() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let romeo = jid(ROMEO);
    let quiet = options_with(|o| o.deliver = false);
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, Some(quiet))
        .unwrap();
    let nurse = jid("nurse@capulet.lit/kitchen");
    let _ = service
        .subscribe(&NoRoster, &nurse, "n", &nurse, None)
        .unwrap();
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    assert_eq!(
        recipient_jids(notifications(&out)[0]),
        ["nurse@capulet.lit/kitchen"]
    );

    // Turning delivery back on takes effect for the next publish.
    let loud = SubscriptionOptions::default();
    let _ = service
        .set_subscription_options(&romeo, "n", &romeo, None, loud)
        .unwrap();
    let out = service
        .publish(&jid(OWNER), "n", PublishRequest::payload(None, "<p/>"))
        .unwrap();
    assert_eq!(notifications(&out)[0].recipients.len(), 2);
}

#[test]
fn temporary_subscriptions_end_with_the_session_and_are_never_stored() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let romeo = jid(ROMEO);
    let other = jid("romeo@montague.lit/car");
    let temporary = options_with(|o| o.temporary = true);
    assert!(!service.has_temporary_subscriptions());
    let out = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, Some(temporary.clone()))
        .unwrap();
    assert_eq!(out.store_ops().count(), 0);
    let _ = service
        .subscribe(&NoRoster, &other, "n", &other, Some(temporary))
        .unwrap();
    // Without options, subscribing again would return the temporary subscription.
    let lasting = Some(SubscriptionOptions::default());
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, lasting)
        .unwrap();
    assert_eq!(service.stored_nodes()[0].subscriptions.len(), 1);

    let out = service.end_session(&romeo);
    assert_eq!(out.value.len(), 1);
    assert_eq!(out.value[0].jid, romeo);
    assert_eq!(out.store_ops().count(), 0);
    let mut left: Vec<_> = service
        .own_subscriptions(&romeo, Some("n"))
        .into_iter()
        .map(|s| (s.jid.to_string(), s.options.temporary))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ("romeo@montague.lit/car".to_owned(), true),
            ("romeo@montague.lit/orchard".to_owned(), false)
        ]
    );
    assert!(service.end_session(&romeo).value.is_empty());
    // The other session's temporary subscription is still held in memory only.
    assert!(service.has_temporary_subscriptions());
    let _ = service.end_session(&other);
    assert!(!service.has_temporary_subscriptions());
}

#[test]
fn group_chat_joins_are_temporary_with_unique_nicks() {
    let (mut service, _) = with_node(ServiceConfig::groupchat(), &[]);
    let owner = jid(OWNER);
    let nick = |n: &str| {
        options_with(|o| {
            o.custom.insert("roomnick", n);
        })
    };
    let joined = service
        .subscribe(&NoRoster, &owner, "n", &owner, Some(nick("Juliet")))
        .unwrap();
    assert_eq!(joined.value.state, SubscriptionState::Subscribed);
    assert!(
        joined.value.options.temporary,
        "tempsub rooms make every join temporary"
    );
    assert_eq!(joined.store_ops().count(), 0);

    // Another bare JID may not take the nick; the same user's other resource may.
    let members = BTreeMap::from([(bare("romeo@montague.lit"), Affiliation::Member)]);
    let _ = service
        .set_affiliations(&NoRoster, &owner, "n", &members)
        .unwrap();
    let romeo = jid(ROMEO);
    assert_eq!(
        service
            .subscribe(&NoRoster, &romeo, "n", &romeo, Some(nick("Juliet")))
            .err(),
        Some(PubsubError::OptionTaken {
            var: "roomnick".to_owned()
        })
    );
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, Some(nick("Romeo")))
        .unwrap();
    let juliet_phone = jid("juliet@capulet.lit/phone");
    let _ = service
        .subscribe(
            &NoRoster,
            &juliet_phone,
            "n",
            &juliet_phone,
            Some(nick("Juliet")),
        )
        .unwrap();

    // Undeclared options are refused.
    let bogus = options_with(|o| {
        o.custom.insert("x-colour", "red");
    });
    assert_eq!(
        service
            .subscribe(&NoRoster, &romeo, "n", &romeo, Some(bogus))
            .err(),
        Some(PubsubError::InvalidOptions)
    );

    // Leaving frees the nick.
    let left = service.end_session(&romeo);
    assert_eq!(left.value.len(), 1);
    let nurse = jid("nurse@capulet.lit/kitchen");
    let members = BTreeMap::from([(bare("nurse@capulet.lit"), Affiliation::Member)]);
    let _ = service
        .set_affiliations(&NoRoster, &owner, "n", &members)
        .unwrap();
    assert!(
        service
            .subscribe(&NoRoster, &nurse, "n", &nurse, Some(nick("Romeo")))
            .is_ok()
    );
}

#[test]
fn subscription_limit_per_jid_is_an_error() {
    let mut config = ServiceConfig::pubsub();
    config.limits.max_subscriptions_per_jid = 2;
    config.node_defaults.access_model = AccessModel::Open;
    let (mut service, _) = common::service(config);
    let owner = jid(OWNER);
    for node in ["a", "b", "c"] {
        let request = CreateRequest {
            node: Some(node.to_owned()),
            ..CreateRequest::default()
        };
        let _ = service.create(&owner, request).unwrap();
    }
    let romeo = jid(ROMEO);
    let _ = service
        .subscribe(&NoRoster, &romeo, "a", &romeo, None)
        .unwrap();
    let _ = service
        .subscribe(&NoRoster, &romeo, "b", &romeo, None)
        .unwrap();
    let before = service.snapshot();
    assert_eq!(
        service
            .subscribe(&NoRoster, &romeo, "c", &romeo, None)
            .err(),
        Some(PubsubError::PolicyViolation(Limit::TooManySubscriptions))
    );
    assert_eq!(service.snapshot(), before);
    // The limit counts the bare JID, whatever the resource.
    let other = jid("romeo@montague.lit/car");
    assert_eq!(
        service
            .subscribe(&NoRoster, &other, "c", &other, None)
            .err(),
        Some(PubsubError::PolicyViolation(Limit::TooManySubscriptions))
    );
}

#[test]
fn nodes_may_refuse_subscriptions() {
    let fields = [
        ConfigField::AccessModel(AccessModel::Open),
        ConfigField::Subscribe(false),
    ];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let romeo = jid(ROMEO);
    assert_eq!(
        service
            .subscribe(&NoRoster, &romeo, "n", &romeo, None)
            .err(),
        Some(PubsubError::Unsupported(Feature::Subscribe))
    );
}

#[test]
fn last_items_on_presence() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    publish(&mut service, "a");
    publish(&mut service, "b");
    let romeo_bare = jid("romeo@montague.lit");
    let _ = service
        .subscribe(&NoRoster, &jid(ROMEO), "n", &romeo_bare, None)
        .unwrap();

    let session = full("romeo@montague.lit/car");
    let last = service.on_presence(&session);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].to, jid("romeo@montague.lit/car"));
    let ids: Vec<_> = last[0].items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
    assert!(
        service
            .on_presence(&full("nurse@capulet.lit/kitchen"))
            .is_empty()
    );

    let on_sub = [ConfigField::SendLastPublishedItem(
        SendLastPublishedItem::OnSub,
    )];
    let _ = service
        .configure(&NoRoster, &jid(OWNER), "n", &on_sub)
        .unwrap();
    assert!(service.on_presence(&session).is_empty());
}

#[test]
fn all_items_nodes_send_every_current_item() {
    let account = bare("juliet@capulet.lit");
    let mut config = ServiceConfig::pep(account);
    config.all_items_nodes.insert("presence".to_owned());
    let (mut service, _) = common::service(config);
    let owner = jid(OWNER);
    // The presence node: one item per resource, kept in memory only.
    let request = CreateRequest {
        node: Some("presence".to_owned()),
        config: vec![
            ConfigField::AccessModel(AccessModel::Authorize),
            ConfigField::PersistItems(false),
            ConfigField::MaxItems(verona_pubsub::MaxItems::Max),
        ],
        ..CreateRequest::default()
    };
    let _ = service.create(&owner, request).unwrap();
    for resource in ["balcony", "chamber"] {
        let publisher = jid(&format!("juliet@capulet.lit/{resource}"));
        let request = PublishRequest::payload(Some(resource), "<presence/>");
        let out = service.publish(&publisher, "presence", request).unwrap();
        assert_eq!(out.store_ops().count(), 0, "presence never touches storage");
    }
    let romeo = jid("romeo@montague.lit");
    let _ = service
        .subscribe(&NoRoster, &romeo, "presence", &romeo, None)
        .unwrap();
    let out = service
        .authorize(&owner, "presence", &romeo, None, true)
        .unwrap();
    let last = out
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::SendLastItems(last) => Some(last),
            _ => None,
        })
        .expect("current items on approval");
    let ids: Vec<_> = last.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["chamber", "balcony"]);
}

#[test]
fn other_pep_nodes_send_their_newest_item_only() {
    // Every item of a 1,000-item node on each subscription would turn one request into a
    // thousand messages.
    let config = ServiceConfig::pep(bare("juliet@capulet.lit"));
    let fields = [
        ConfigField::AccessModel(AccessModel::Open),
        ConfigField::MaxItems(verona_pubsub::MaxItems::Count(10)),
    ];
    let (mut service, _) = with_node(config, &fields);
    for id in ["a", "b", "c"] {
        publish(&mut service, id);
    }
    let romeo = jid(ROMEO);
    let out = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let sent: Vec<Vec<&str>> = out
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendLastItems(last) => Some(last.items.iter().map(|i| i.id.as_str()).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [["c"]]);
    let last = service.on_presence(&full(ROMEO));
    let ids: Vec<Vec<&str>> = last
        .iter()
        .map(|l| l.items.iter().map(|i| i.id.as_str()).collect())
        .collect();
    assert_eq!(ids, [["c"]]);
}

#[test]
fn lost_presence_subscription_revokes_access() {
    let account = bare("juliet@capulet.lit");
    let (mut service, _) = common::service(ServiceConfig::pep(account.clone()));
    let owner = jid(OWNER);
    let request = CreateRequest {
        node: Some("avatar".to_owned()),
        ..CreateRequest::default()
    };
    let _ = service.create(&owner, request).unwrap();
    let romeo = jid(ROMEO);
    let friends = Roster::with_presence("juliet@capulet.lit", "romeo@montague.lit");
    let _ = service
        .subscribe(&friends, &romeo, "avatar", &romeo, None)
        .unwrap();

    let unchanged = service.recheck_access(&friends, &bare("romeo@montague.lit"));
    assert!(unchanged.value.is_empty() && unchanged.undo.is_empty());
    let out = service.recheck_access(&NoRoster, &bare("romeo@montague.lit"));
    assert_eq!(out.value.len(), 1);
    assert!(has_effect(&out, |e| matches!(
        e,
        Effect::Persist(StoreOp::SubscriptionRemoved { .. })
    )));
    assert!(has_effect(&out, |e| matches!(e, Effect::Notify(n)
        if matches!(n.event, Event::Subscription { state: SubscriptionState::None, .. }))));
    assert!(service.own_subscriptions(&romeo, None).is_empty());
}

#[test]
fn owners_manage_subscriptions_all_or_nothing() {
    let config = ServiceConfig {
        owners_subscribe_others: true,
        ..ServiceConfig::pubsub()
    };
    let (mut service, _) = with_node(config, &[]);
    let owner = jid(OWNER);
    let romeo = jid(ROMEO);
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let nurse = jid("nurse@capulet.lit");

    // One bad entry (a SubID romeo does not have) and nothing changes.
    let before = service.snapshot();
    let changes = [
        SubscriptionChange {
            jid: nurse.clone(),
            subid: None,
            subscribed: true,
        },
        SubscriptionChange {
            jid: romeo.clone(),
            subid: Some("nope".into()),
            subscribed: true,
        },
    ];
    assert_eq!(
        service
            .set_subscriptions(&NoRoster, &owner, "n", &changes)
            .err(),
        Some(PubsubError::InvalidSubid)
    );
    assert_eq!(service.snapshot(), before);

    let changes = [
        SubscriptionChange {
            jid: nurse.clone(),
            subid: None,
            subscribed: true,
        },
        SubscriptionChange {
            jid: romeo.clone(),
            subid: None,
            subscribed: true,
        },
    ];
    let out = service
        .set_subscriptions(&NoRoster, &owner, "n", &changes)
        .unwrap();
    assert!(
        out.value
            .iter()
            .all(|s| s.state == SubscriptionState::Subscribed)
    );
    let told: Vec<_> = notifications(&out)
        .iter()
        .map(|n| recipient_jids(n))
        .collect();
    assert_eq!(
        told,
        [["nurse@capulet.lit"], ["romeo@montague.lit/orchard"]]
    );
    assert_eq!(service.node_subscriptions(&owner, "n").unwrap().len(), 2);

    let remove = [SubscriptionChange {
        jid: nurse,
        subid: None,
        subscribed: false,
    }];
    let out = service
        .set_subscriptions(&NoRoster, &owner, "n", &remove)
        .unwrap();
    assert_eq!(out.value[0].state, SubscriptionState::None);
    assert_eq!(service.node_subscriptions(&owner, "n").unwrap().len(), 1);
}

#[test]
fn owners_hear_of_subscribers_when_notify_sub_is_set() {
    let fields = [
        ConfigField::AccessModel(AccessModel::Open),
        ConfigField::NotifySub(true),
    ];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let romeo = jid(ROMEO);
    let out = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let told = notifications(&out);
    assert_eq!(recipient_jids(told[0]), ["juliet@capulet.lit"]);
    assert!(matches!(
        told[0].event,
        Event::Subscription {
            state: SubscriptionState::Subscribed,
            ..
        }
    ));
    let out = service.unsubscribe(&romeo, "n", &romeo, None).unwrap();
    assert!(matches!(
        notifications(&out)[0].event,
        Event::Subscription {
            state: SubscriptionState::None,
            ..
        }
    ));
}

#[test]
fn own_subscriptions_and_affiliations() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let request = CreateRequest {
        node: Some("m".to_owned()),
        ..CreateRequest::default()
    };
    let _ = service.create(&jid(OWNER), request).unwrap();
    let romeo = jid(ROMEO);
    let _ = service
        .subscribe(&NoRoster, &romeo, "n", &romeo, None)
        .unwrap();
    let listed = service.own_subscriptions(&jid("romeo@montague.lit/car"), None);
    assert_eq!(
        listed.len(),
        1,
        "listed for the bare JID, whatever the resource"
    );
    assert!(service.own_subscriptions(&romeo, Some("m")).is_empty());
    let owned = service.own_affiliations(&jid(OWNER), None);
    assert_eq!(
        owned,
        [
            ("m".to_owned(), Affiliation::Owner),
            ("n".to_owned(), Affiliation::Owner)
        ]
    );
    assert_eq!(service.own_affiliations(&jid(OWNER), Some("n")).len(), 1);
    assert!(service.own_affiliations(&romeo, None).is_empty());
}

#[test]
fn subscription_options_forms() {
    let mut options = SubscriptionOptions::default();
    let set = |o: &mut SubscriptionOptions, var: &str, values: &[&str]| {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        o.set_field(var, &values)
    };
    set(&mut options, "pubsub#deliver", &["0"]).unwrap();
    set(&mut options, "pubsub#include_body", &["true"]).unwrap();
    set(&mut options, "pubsub#show-values", &["away", "dnd"]).unwrap();
    set(&mut options, "pubsub#expire", &["presence"]).unwrap();
    set(&mut options, "roomnick", &["Romeo"]).unwrap();
    assert!(!options.deliver && options.include_body && options.temporary);
    assert_eq!(options.show_values, Some([Show::Away, Show::Dnd].into()));

    let mut copy = SubscriptionOptions::default();
    for (var, values) in options.fields() {
        copy.set_field(&var, &values).unwrap();
    }
    assert_eq!(copy, options, "fields() round-trips through set_field");

    assert_eq!(
        set(&mut options, "pubsub#deliver", &["maybe"]),
        Err(PubsubError::InvalidOptions)
    );
    assert_eq!(
        set(&mut options, "pubsub#show-values", &["sleepy"]),
        Err(PubsubError::InvalidOptions)
    );
    assert_eq!(
        set(&mut options, "pubsub#expire", &["2026-01-01T00:00:00Z"]),
        Err(PubsubError::Unsupported(Feature::LeasedSubscription))
    );
}

/// Issue #11 M3: by default an owner cannot subscribe a stranger (anyone can create a node, so
/// this would let anyone subscribe anyone), only itself and those it affiliated with the node.
#[test]
fn owners_subscribe_only_the_invited_by_default() {
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &[]);
    let owner = jid(OWNER);
    let stranger = SubscriptionChange {
        jid: jid("nurse@capulet.lit"),
        subid: None,
        subscribed: true,
    };
    assert_eq!(
        service
            .set_subscriptions(&NoRoster, &owner, "n", std::slice::from_ref(&stranger))
            .err(),
        Some(PubsubError::Forbidden)
    );
    let member = [(bare("nurse@capulet.lit"), Affiliation::Member)].into();
    let _ = service
        .set_affiliations(&NoRoster, &owner, "n", &member)
        .unwrap();
    // A member is subscribed by its bare JID (the seed's `manage1`), once; a made-up
    // resource of it would be one more subscription charged to it for each name.
    let resource = SubscriptionChange {
        jid: jid("nurse@capulet.lit/made-up"),
        ..stranger.clone()
    };
    assert_eq!(
        service
            .set_subscriptions(&NoRoster, &owner, "n", &[resource])
            .err(),
        Some(PubsubError::Forbidden)
    );
    let out = service
        .set_subscriptions(&NoRoster, &owner, "n", &[stranger])
        .unwrap();
    assert_eq!(out.value[0].state, SubscriptionState::Subscribed);
}

/// Third review (issue #11): the account a PEP service belongs to administers it, but
/// subscribes only itself; the service's own domain (the server acting) may subscribe others.
#[test]
fn an_account_subscribes_only_itself_even_on_its_own_service() {
    let account = bare("juliet@capulet.lit");
    let mut config = ServiceConfig::pep(account.clone());
    config.node_defaults.access_model = AccessModel::Open;
    config.admins.insert(bare("capulet.lit"));
    let (mut service, _) = with_node(config, &[]);
    let juliet = jid(OWNER);
    for other in ["romeo@montague.lit", "romeo@montague.lit/orchard"] {
        assert_eq!(
            service
                .subscribe(&NoRoster, &juliet, "n", &jid(other), None)
                .err(),
            Some(PubsubError::InvalidJid),
            "{other}"
        );
    }
    let made = service
        .subscribe(&NoRoster, &jid("capulet.lit"), "n", &jid(ROMEO), None)
        .unwrap();
    assert_eq!(made.value.state, SubscriptionState::Subscribed);
}

/// Issue #9: small services scan their nodes for a JID's subscriptions and large ones index
/// them; the answers are the same on both sides of the line, through undo and restore.
#[test]
fn subscriptions_across_nodes_answer_alike_with_and_without_the_index() {
    let mut config = ServiceConfig::pubsub();
    config.node_defaults.access_model = AccessModel::Open;
    config.limits.max_subscriptions_per_jid = 30;
    let (mut service, _) = service(config.clone());
    let owner = jid(OWNER);
    let romeo = jid(ROMEO);
    let mut expected = Vec::new();
    for n in 0..24 {
        let node = format!("n{n:02}");
        let request = CreateRequest {
            node: Some(node.clone()),
            ..CreateRequest::default()
        };
        let _ = service.create(&owner, request).unwrap();
        if n % 2 == 0 {
            let made = service
                .subscribe(&NoRoster, &romeo, &node, &romeo, None)
                .unwrap();
            expected.push((node, made.value.subid));
        }
        let held: Vec<(String, SubId)> = service
            .own_subscriptions(&romeo, None)
            .into_iter()
            .map(|s| (s.node, s.subid))
            .collect();
        assert_eq!(held, expected, "after {} nodes", n + 1);
    }
    // A change undone leaves the index as it found it.
    let before = service.snapshot();
    let outcome = service
        .subscribe(&NoRoster, &romeo, "n01", &romeo, None)
        .unwrap();
    service.undo(outcome.undo).unwrap();
    assert_eq!(service.snapshot(), before);
    // The per-JID limit counts the same way: 24 held once the odd nodes are added too, six
    // more allowed, the seventh refused.
    for n in (1..24).step_by(2) {
        let _ = service
            .subscribe(&NoRoster, &romeo, &format!("n{n:02}"), &romeo, None)
            .unwrap();
    }
    let request = CreateRequest {
        node: Some("last".to_owned()),
        ..CreateRequest::default()
    };
    let _ = service.create(&owner, request).unwrap();
    let refused = (0..8).find_map(|n| {
        let node = format!("n{:02}", n * 2);
        service
            .subscribe(
                &NoRoster,
                &romeo,
                &node,
                &jid("romeo@montague.lit/car"),
                None,
            )
            .err()
    });
    assert_eq!(
        refused,
        Some(PubsubError::PolicyViolation(Limit::TooManySubscriptions))
    );
    let mut store = common::MemoryStore::default();
    for node in service.stored_nodes() {
        store.nodes.insert(node.id.clone(), node);
    }
    let restored = Service::restore(
        config,
        Box::new(common::TestEnv::new()),
        store.nodes.values().cloned(),
    );
    assert_eq!(
        restored.own_subscriptions(&romeo, None),
        service.own_subscriptions(&romeo, None)
    );
}

/// Issue #9: SubIDs stay unique when a node has enough subscribers to index them, and one
/// subscription among many ends by its SubID.
#[test]
fn subids_stay_unique_past_the_index_threshold() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, env) = with_node(ServiceConfig::pubsub(), &fields);
    let mut subids = std::collections::BTreeSet::new();
    for n in 0..300 {
        if n == 10 || n == 200 {
            // Ids already taken: every collision is caught, scanned or indexed.
            let taken: Vec<&str> = subids.iter().take(3).map(SubId::as_str).collect();
            env.script_ids(&taken);
        }
        let who = jid(&format!("user{n}@montague.lit/r"));
        let made = service.subscribe(&NoRoster, &who, "n", &who, None).unwrap();
        assert!(subids.insert(made.value.subid), "SubID {n} is fresh");
    }
    let who = jid("user250@montague.lit/r");
    let subid = service.own_subscriptions(&who, Some("n"))[0].subid.clone();
    let _ = service.unsubscribe(&who, "n", &who, Some(&subid)).unwrap();
    assert!(service.own_subscriptions(&who, Some("n")).is_empty());
}

/// Issue #9: a node holds its subscribers in a vector until it has many, then in a B-tree; a
/// subscribe that crosses the line, undone, leaves the node as it was, and both forms give
/// the same recipients, in the same order.
#[test]
fn a_node_answers_alike_on_both_sides_of_its_size_line() {
    let fields = [ConfigField::AccessModel(AccessModel::Open)];
    let (mut service, _) = with_node(ServiceConfig::pubsub(), &fields);
    let owner = jid(OWNER);
    let mut who = Vec::new();
    for n in 0..127 {
        // Out of order, so that the vector is kept sorted by inserts in the middle.
        let subscriber = jid(&format!("user{}@montague.lit", (n * 37) % 127));
        let _ = service
            .subscribe(&NoRoster, &subscriber, "n", &subscriber, None)
            .unwrap();
        who.push(subscriber);
    }
    let recipients = |service: &mut Service| -> Vec<String> {
        let outcome = service
            .publish(&owner, "n", PublishRequest::payload(None, "<p/>"))
            .unwrap();
        let listed = outcome
            .notifications()
            .flat_map(|n| n.recipients.iter().map(|r| r.jid.to_string()))
            .collect();
        service.undo(outcome.undo).unwrap();
        listed
    };
    let mut expected: Vec<String> = who.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(recipients(&mut service), expected);
    let before = service.snapshot();
    let last = jid("zed@montague.lit");
    let crossed = service
        .subscribe(&NoRoster, &last, "n", &last, None)
        .unwrap();
    let mut more = expected.clone();
    more.push(last.to_string());
    assert_eq!(recipients(&mut service), more);
    service.undo(crossed.undo).unwrap();
    assert_eq!(service.snapshot(), before);
    assert_eq!(recipients(&mut service), expected);
    // Ending subscriptions on the large side works too.
    for subscriber in &who[..100] {
        let _ = service
            .unsubscribe(subscriber, "n", subscriber, None)
            .unwrap();
    }
    let _ = service
        .subscribe(&NoRoster, &last, "n", &last, None)
        .unwrap();
    let mut rest: Vec<String> = who[100..].iter().map(ToString::to_string).collect();
    rest.push(last.to_string());
    rest.sort();
    assert_eq!(recipients(&mut service), rest);
}
