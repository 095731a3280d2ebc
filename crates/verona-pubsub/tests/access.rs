//! Every capability × access model × affiliation, through the real operations, against an
//! explicit table of expected answers (XEP-0060 §4.1, §4.5, §6.1.3, §6.5.2).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Roster, TestEnv, bare, jid};
use verona_pubsub::{
    AccessModel, Action, Affiliation, ConfigField, Item, ItemQuery, NodeConfig,
    NotAuthorizedReason, PublishModel, PublishRequest, PubsubError, Service, ServiceConfig,
    StoredNode, StoredSubscription, SubscriptionChange, SubscriptionOptions, SubscriptionState,
};

/// What an operation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Allowed.
    Y,
    /// Allowed, subscription pending approval.
    Pend,
    /// `Forbidden`.
    F,
    /// `NotAuthorized(PresenceSubscriptionRequired)`.
    Pres,
    /// `NotAuthorized(NotInRosterGroup)`.
    Grp,
    /// `ClosedNode`.
    Closed,
    /// `NotAuthorized(NotSubscribed)`.
    NotSub,
}
use Answer::*;

/// Columns, in table order.
const ACTIONS: [Action; 10] = [
    Action::Subscribe,
    Action::RetrieveItems,
    Action::Publish,
    Action::RetractOwn,
    Action::RetractAny,
    Action::Purge,
    Action::Configure,
    Action::Delete,
    Action::ManageSubscriptions,
    Action::ManageAffiliations,
];

/// How the fixture places the actor beyond its affiliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    Nothing,
    /// The resolver grants presence or roster access.
    Granted,
    /// The actor holds an approved subscription.
    Subscribed,
}

struct Row {
    model: AccessModel,
    affiliation: Affiliation,
    extra: Extra,
    expect: [Answer; 10],
}

const fn row(
    model: AccessModel,
    affiliation: Affiliation,
    extra: Extra,
    expect: [Answer; 10],
) -> Row {
    Row {
        model,
        affiliation,
        extra,
        expect,
    }
}

//                      subscribe retrieve publish r-own r-any purge conf  del   subs  affs
const OWNER: [Answer; 10] = [Y, Y, Y, Y, Y, Y, Y, Y, Y, Y];
const PUBLISHER: [Answer; 10] = [Y, Y, Y, Y, Y, Y, F, F, F, F];
const PUBLISH_ONLY: [Answer; 10] = [F, F, Y, Y, F, F, F, F, F, F];
const MEMBER: [Answer; 10] = [Y, Y, F, F, F, F, F, F, F, F];
const OUTCAST: [Answer; 10] = [F; 10];

fn table() -> Vec<Row> {
    use AccessModel::*;
    use Affiliation as A;
    use Extra::*;
    let mut rows = Vec::new();
    for model in AccessModel::ALL.iter().copied() {
        rows.push(row(model, A::Owner, Nothing, OWNER));
        rows.push(row(model, A::Publisher, Nothing, PUBLISHER));
        rows.push(row(model, A::PublishOnly, Nothing, PUBLISH_ONLY));
        rows.push(row(model, A::Member, Nothing, MEMBER));
        rows.push(row(model, A::Outcast, Nothing, OUTCAST));
        // An outcast is refused even when the resolver would let it in.
        rows.push(row(model, A::Outcast, Granted, OUTCAST));
    }
    rows.extend([
        row(Open, A::None, Nothing, [Y, Y, F, F, F, F, F, F, F, F]),
        row(
            Presence,
            A::None,
            Nothing,
            [Pres, Pres, F, F, F, F, F, F, F, F],
        ),
        row(Presence, A::None, Granted, [Y, Y, F, F, F, F, F, F, F, F]),
        row(Roster, A::None, Nothing, [Grp, Grp, F, F, F, F, F, F, F, F]),
        row(Roster, A::None, Granted, [Y, Y, F, F, F, F, F, F, F, F]),
        row(
            Authorize,
            A::None,
            Nothing,
            [Pend, NotSub, F, F, F, F, F, F, F, F],
        ),
        row(
            Authorize,
            A::None,
            Subscribed,
            [Y, Y, F, F, F, F, F, F, F, F],
        ),
        row(
            Whitelist,
            A::None,
            Nothing,
            [Closed, Closed, F, F, F, F, F, F, F, F],
        ),
        // A presence grant means nothing to a whitelist.
        row(
            Whitelist,
            A::None,
            Granted,
            [Closed, Closed, F, F, F, F, F, F, F, F],
        ),
    ]);
    rows
}

const ACTOR: &str = "actor@example.org";
const OWNER_JID: &str = "owner@example.org";

/// A node `n` owned by `owner@`, with the actor affiliated as the row says, an item `mine`
/// published by the actor, an item `theirs` published by the owner, and a subscriber
/// `other@` (for the subscription management column).
fn fixture(row: &Row) -> (Service, Roster) {
    let config = NodeConfig {
        access_model: row.model,
        roster_groups_allowed: vec!["friends".to_owned()],
        ..NodeConfig::default()
    };
    let mut affiliations = vec![(bare(OWNER_JID), Affiliation::Owner)];
    if row.affiliation != Affiliation::None {
        affiliations.push((bare(ACTOR), row.affiliation));
    }
    let item = |id: &str, publisher: &str| Item {
        id: id.to_owned(),
        payload: Some(Arc::from("<x/>")),
        publisher: jid(publisher),
        published: TestEnv::new().now(),
    };
    let subscription = |subid: &str, who: &str| StoredSubscription {
        subid: subid.into(),
        jid: jid(who),
        state: SubscriptionState::Subscribed,
        options: SubscriptionOptions::default(),
    };
    let mut subscriptions = vec![subscription("s-other", "other@example.org")];
    if row.extra == Extra::Subscribed {
        subscriptions.push(subscription("s-actor", ACTOR));
    }
    let node = StoredNode {
        id: "n".to_owned(),
        config,
        affiliations,
        subscriptions,
        items: vec![
            item("mine", "actor@example.org/phone"),
            item("theirs", "owner@example.org/desk"),
        ],
    };
    let roster = if row.extra == Extra::Granted {
        let mut roster = Roster::with_presence(OWNER_JID, ACTOR);
        roster.groups = Roster::with_group(OWNER_JID, ACTOR, "friends").groups;
        roster
    } else {
        Roster::default()
    };
    let service = Service::restore(ServiceConfig::pubsub(), Box::new(TestEnv::new()), [node]);
    (service, roster)
}

fn answer_of<T>(result: Result<T, PubsubError>) -> Answer {
    match result {
        Ok(_) => Y,
        Err(PubsubError::Forbidden) => F,
        Err(PubsubError::ClosedNode) => Closed,
        Err(PubsubError::NotAuthorized(NotAuthorizedReason::PresenceSubscriptionRequired)) => Pres,
        Err(PubsubError::NotAuthorized(NotAuthorizedReason::NotInRosterGroup)) => Grp,
        Err(PubsubError::NotAuthorized(NotAuthorizedReason::NotSubscribed)) => NotSub,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

/// Performs `action` through the service's operation(s) for it; every operation of a column
/// must agree.
fn perform(service: &mut Service, roster: &Roster, action: Action) -> Answer {
    let actor = jid("actor@example.org/phone");
    match action {
        Action::Subscribe => match service.subscribe(roster, &actor, "n", &jid(ACTOR), None) {
            Ok(outcome) if outcome.value.state == SubscriptionState::Pending => Pend,
            Ok(outcome) => {
                assert_eq!(outcome.value.state, SubscriptionState::Subscribed);
                Y
            }
            Err(error) => answer_of::<()>(Err(error)),
        },
        Action::RetrieveItems => {
            let result = service.items(roster, &actor, "n", &ItemQuery::All);
            if let Ok(page) = &result {
                assert_eq!(page.items.len(), 2, "an allowed retrieval sees the items");
            }
            answer_of(result)
        }
        Action::Publish => {
            answer_of(service.publish(&actor, "n", PublishRequest::payload(Some("new"), "<y/>")))
        }
        Action::RetractOwn => answer_of(service.retract(&actor, "n", "mine", false)),
        Action::RetractAny => answer_of(service.retract(&actor, "n", "theirs", false)),
        Action::Purge => answer_of(service.purge(&actor, "n")),
        Action::Configure => {
            let read = answer_of(service.configuration(&actor, "n"));
            let title = [ConfigField::Title("renamed".to_owned())];
            let write = answer_of(service.configure(roster, &actor, "n", &title));
            assert_eq!(read, write, "reading and changing the configuration agree");
            write
        }
        Action::Delete => answer_of(service.delete(&actor, "n", None)),
        Action::ManageSubscriptions => {
            let list = answer_of(service.node_subscriptions(&actor, "n"));
            let pending = answer_of(service.pending_subscriptions(&actor, "n"));
            let change = SubscriptionChange {
                jid: jid("other@example.org"),
                subid: None,
                subscribed: false,
            };
            let set = answer_of(service.set_subscriptions(roster, &actor, "n", &[change]));
            assert_eq!(
                (list, pending),
                (set, set),
                "all subscription management agrees"
            );
            set
        }
        Action::ManageAffiliations => {
            let list = answer_of(service.node_affiliations(&actor, "n"));
            let change = BTreeMap::from([(bare("third@example.org"), Affiliation::Member)]);
            let set = answer_of(service.set_affiliations(roster, &actor, "n", &change));
            assert_eq!(list, set, "listing and changing affiliations agree");
            set
        }
    }
}

#[test]
fn capability_table_through_operations() {
    let mut failures = Vec::new();
    let rows = table();
    assert_eq!(
        rows.len(),
        5 * 6 + 9,
        "every model × affiliation, plus the None variants"
    );
    for row in &rows {
        for (column, action) in ACTIONS.iter().enumerate() {
            let (mut service, roster) = fixture(row);
            let expected = row.expect[column];
            let got = perform(&mut service, &roster, *action);
            if got != expected {
                failures.push(format!(
                    "{:?} {:?} {:?} {:?}: expected {expected:?}, got {got:?}",
                    row.model, row.affiliation, row.extra, action
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn may_agrees_with_the_operations() {
    for row in &table() {
        let (service, roster) = fixture(row);
        for (column, action) in ACTIONS.iter().enumerate() {
            let actor = jid("actor@example.org/phone");
            let expected = match row.expect[column] {
                // `may` says whether one may ask; the subscription then waits.
                Pend => Y,
                other => other,
            };
            let got = answer_of(service.may(&roster, &actor, *action, "n"));
            let case = format!(
                "{:?} {:?} {:?} {action:?}",
                row.model, row.affiliation, row.extra
            );
            assert_eq!(got, expected, "{case}");
        }
    }
}

#[test]
fn publish_models_admit_subscribers_and_anyone() {
    let cases = [
        (PublishModel::Publishers, false, Err(PubsubError::Forbidden)),
        (PublishModel::Publishers, true, Err(PubsubError::Forbidden)),
        (
            PublishModel::Subscribers,
            false,
            Err(PubsubError::Forbidden),
        ),
        (PublishModel::Subscribers, true, Ok(())),
        (PublishModel::Open, false, Ok(())),
    ];
    for (model, subscribed, expected) in cases {
        let row = row(
            AccessModel::Open,
            Affiliation::None,
            if subscribed {
                Extra::Subscribed
            } else {
                Extra::Nothing
            },
            [Y; 10],
        );
        let (mut service, roster) = fixture(&row);
        let owner = jid("owner@example.org/desk");
        let field = [ConfigField::PublishModel(model)];
        let _ = service
            .configure(&roster, &owner, "n", &field)
            .expect("owner configures");
        let actor = jid("actor@example.org/phone");
        let result = service
            .publish(&actor, "n", PublishRequest::payload(None, "<y/>"))
            .map(|_| ());
        assert_eq!(result, expected, "{model:?} subscribed={subscribed}");
        // Publishing rights bring retracting and replacing one's own items, not others'
        // (replacing an item removes it).
        if expected.is_ok() {
            let replace = |id: &str| PublishRequest::payload(Some(id), "<z/>");
            assert!(service.publish(&actor, "n", replace("mine")).is_ok());
            assert!(service.retract(&actor, "n", "mine", false).is_ok());
            assert_eq!(
                service.retract(&actor, "n", "theirs", false).err(),
                Some(PubsubError::Forbidden)
            );
            assert_eq!(
                service.publish(&actor, "n", replace("theirs")).err(),
                Some(PubsubError::Forbidden)
            );
        }
    }
}

#[test]
fn service_admins_act_as_owners() {
    let mut config = ServiceConfig::pubsub();
    config.admins.insert(bare("admin@example.org"));
    let node = StoredNode {
        id: "n".to_owned(),
        config: NodeConfig {
            access_model: AccessModel::Whitelist,
            ..NodeConfig::default()
        },
        affiliations: vec![(bare(OWNER_JID), Affiliation::Owner)],
        subscriptions: Vec::new(),
        items: Vec::new(),
    };
    let service = Service::restore(config, Box::new(TestEnv::new()), [node]);
    let admin = jid("admin@example.org/console");
    for action in ACTIONS {
        assert_eq!(
            service.may(&Roster::default(), &admin, action, "n"),
            Ok(()),
            "{action:?}"
        );
    }
    assert_eq!(
        service.may(&Roster::default(), &admin, Action::Subscribe, "missing"),
        Err(PubsubError::NodeNotFound)
    );
}

#[test]
fn capability_rows_match_xep_0060_table() {
    // XEP-0060 §4.1 columns: subscribe, retrieve, publish, delete item, purge, configure,
    // delete node. Publish-only may delete only its own items.
    let xep = [
        (
            Affiliation::Owner,
            [true, true, true, true, true, true, true],
        ),
        (
            Affiliation::Publisher,
            [true, true, true, true, true, false, false],
        ),
        (
            Affiliation::PublishOnly,
            [false, false, true, false, false, false, false],
        ),
        (
            Affiliation::Member,
            [true, true, false, false, false, false, false],
        ),
        // "None" may subscribe as far as the access model lets it (see the table above).
        (
            Affiliation::None,
            [true, false, false, false, false, false, false],
        ),
        (
            Affiliation::Outcast,
            [false, false, false, false, false, false, false],
        ),
    ];
    let columns = [
        Action::Subscribe,
        Action::RetrieveItems,
        Action::Publish,
        Action::RetractAny,
        Action::Purge,
        Action::Configure,
        Action::Delete,
    ];
    for (affiliation, allows) in xep {
        for (action, allowed) in columns.iter().zip(allows) {
            assert_eq!(
                affiliation.allows(*action),
                allowed,
                "{affiliation:?} {action:?}"
            );
        }
    }
    assert!(Affiliation::PublishOnly.allows(Action::RetractOwn));
}
