//! tokio-xmpp 6 as a classic RFC 6121 client against a real Verona: presence subscription, roster
//! pushes, roster get with versioning, roster set and remove, unavailable presence and probes.
//! The clients send no entity capabilities, so Verona renders everything as classic stanzas.

mod common;

use futures::StreamExt;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::roster::{Ask, Group, Item, Roster, Subscription};
use tokio_xmpp::{Client, Event, IqRequest, IqResponse, PrintRawXml, Stanza};

use common::{QUIET, TIMEOUT, TestServer, bare, online};

const ALICE: &str = "a@localhost";
const BOB: &str = "b@localhost";
const CAROL: &str = "c@localhost";
const PASSWORD: &str = "s3cret";

/// Steps 1–4 of the scenario: the subscription handshake, seen in both rosters.
#[tokio::test]
async fn subscription_handshake_shows_in_both_rosters() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = subscribed_pair(&server).await;

    assert_eq!(
        alice.roster(None).await,
        Some(vec![item(BOB, Subscription::To)])
    );
    assert_eq!(
        bob.roster(None).await,
        Some(vec![item(ALICE, Subscription::From)])
    );

    finish(server, vec![alice, bob]).await;
}

/// Step 4, versioning (RFC 6121 §2.6): advertised, a result carries `ver`, and a get with the
/// current `ver` is answered with an empty result.
#[tokio::test]
async fn roster_versioning_skips_an_unchanged_roster() {
    let server = TestServer::start().await;
    let (mut alice, bob) = subscribed_pair(&server).await;

    // §2.6.2: a client only sends `ver` when the server advertises the feature.
    let features = alice.client.get_stream_features().expect("stream features");
    assert!(
        features
            .others
            .iter()
            .any(|f| f.is("ver", "urn:xmpp:features:rosterver")),
        "no roster versioning feature in {features:?}"
    );
    // `ver=''` bootstraps versioning for a client with no cached roster (§2.6.2).
    let (ver, items) = alice.versioned_roster("").await;
    assert_eq!(items, vec![item(BOB, Subscription::To)]);
    let ver = ver.expect("the roster result carries `ver`");
    assert_eq!(alice.roster(Some(&ver)).await, None);

    finish(server, vec![alice, bob]).await;
}

/// Step 5: a roster set gives a contact a name and a group, pushed and then kept.
#[tokio::test]
async fn roster_set_names_and_groups_a_contact() {
    let server = TestServer::start().await;
    let (mut alice, bob) = subscribed_pair(&server).await;

    let named = Item {
        name: Some("Bob".into()),
        groups: vec![Group("Friends".into())],
        ..item(BOB, Subscription::None)
    };
    alice.set_roster_item(named.clone()).await;
    let pushed = Item {
        subscription: Subscription::To,
        ..named
    };
    alice.receive(vec![alice.push(pushed.clone())]).await;
    assert_eq!(alice.roster(None).await, Some(vec![pushed]));

    finish(server, vec![alice, bob]).await;
}

/// Step 6: a subscriber sees the contact go offline.
#[tokio::test]
async fn unavailable_presence_reaches_the_subscriber() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = subscribed_pair(&server).await;

    bob.send(Presence::unavailable()).await;
    alice
        .receive(vec![presence(PresenceType::Unavailable, bob.jid.clone())])
        .await;

    finish(server, vec![alice, bob]).await;
}

/// Step 7: removing a contact (RFC 6121 §2.5) drops it from the roster and ends the
/// subscription, on both sides.
#[tokio::test]
async fn removing_a_contact_ends_the_subscription() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = subscribed_pair(&server).await;

    alice.set_roster_item(item(BOB, Subscription::Remove)).await;
    // §3.3.3: the contact's server sends the user unavailable presence from the contact's
    // resources, and delivers the `unsubscribe` to the contact; allowed, not required here.
    alice
        .receive(vec![
            alice.push(item(BOB, Subscription::Remove)),
            presence(PresenceType::Unavailable, bob.jid.clone()).optional(),
        ])
        .await;
    assert_eq!(alice.roster(None).await, Some(vec![]));
    // RFC 6121 §3.3.3: Bob let Alice follow him, so she stays on his roster, as `none`.
    bob.receive(vec![
        bob.push(item(ALICE, Subscription::None)),
        presence(PresenceType::Unsubscribe, bare(ALICE)).optional(),
    ])
    .await;

    bob.send(Presence::available()).await;
    alice.silence().await;

    finish(server, vec![alice, bob]).await;
}

/// Probes (RFC 6121 §4.3): answered with the contact's presence for a subscriber, with at most
/// `unsubscribed` for anyone else.
#[tokio::test]
async fn probes_reveal_presence_only_to_subscribers() {
    let server = TestServer::start().await;
    let (mut alice, bob) = subscribed_pair(&server).await;

    alice.send(Presence::probe().with_to(bare(BOB))).await;
    alice
        .receive(vec![presence(PresenceType::None, bob.jid.clone())])
        .await;

    let mut carol = User::log_in(&server, CAROL).await;
    carol.send(Presence::probe().with_to(bare(BOB))).await;
    carol
        .receive(vec![
            presence(PresenceType::Unsubscribed, bare(BOB)).optional(),
        ])
        .await;

    finish(server, vec![alice, bob, carol]).await;
}

/// Steps 1–3: Alice and Bob log in, Alice asks for Bob's presence and Bob approves.
async fn subscribed_pair(server: &TestServer) -> (User, User) {
    // Bob first: by the time Alice's login is done, Bob's initial presence has made him a
    // classic session, which is asked with `<presence type='subscribe'/>`.
    let mut bob = User::log_in(server, BOB).await;
    let mut alice = User::log_in(server, ALICE).await;

    alice.send(Presence::subscribe().with_to(bare(BOB))).await;
    bob.receive(vec![presence(PresenceType::Subscribe, bare(ALICE))])
        .await;
    let asked = Item {
        ask: Ask::Subscribe,
        ..item(BOB, Subscription::None)
    };
    alice.receive(vec![alice.push(asked)]).await;

    bob.send(Presence::subscribed().with_to(bare(ALICE))).await;
    alice
        .receive(vec![
            presence(PresenceType::Subscribed, bare(BOB)),
            alice.push(item(BOB, Subscription::To)),
            presence(PresenceType::None, bob.jid.clone()),
        ])
        .await;
    bob.receive(vec![bob.push(item(ALICE, Subscription::From))])
        .await;
    (alice, bob)
}

/// Closes the streams and the server, then fails on stanzas nobody waited for, among them any
/// still arriving: a contact is told nothing of the other side's roster edits, probes are the
/// server's to answer (RFC 6121 §4.3.2), and a push that changes nothing is noise.
async fn finish(server: TestServer, users: Vec<User>) {
    let until = Instant::now() + QUIET;
    let mut strays = String::new();
    for mut user in users {
        while let Some(stanza) = user.next(until).await {
            user.strays.push(PrintRawXml(&stanza).to_string());
        }
        for stray in &user.strays {
            strays += &format!("\n  to {}: {stray}", user.jid);
        }
        timeout(TIMEOUT, user.client.send_end())
            .await
            .expect("closed in time")
            .expect("clean close");
    }
    server.shutdown().await;
    assert!(strays.is_empty(), "unexpected stanzas:{strays}");
}

/// A roster item as the server reports it, before names and groups.
fn item(jid: &str, subscription: Subscription) -> Item {
    Item {
        jid: bare(jid),
        name: None,
        subscription,
        ask: Ask::None,
        groups: Vec::new(),
        approved: None,
    }
}

/// A presence of `type_` from exactly `from` (bare for subscription stanzas, RFC 6121 §3.1.2;
/// full for a resource's presence).
fn presence(type_: PresenceType, from: impl Into<Jid>) -> Expected {
    let from = from.into();
    Expected::new(
        format!("presence {type_:?} from {from}"),
        move |stanza| matches!(stanza, Stanza::Presence(p) if p.type_ == type_ && p.from.as_ref() == Some(&from)),
    )
}

/// A stanza a client waits for: a description for failures, and how to recognise it.
struct Expected {
    what: String,
    matches: Box<dyn Fn(&Stanza) -> bool>,
    optional: bool,
}

impl Expected {
    fn new(what: String, matches: impl Fn(&Stanza) -> bool + 'static) -> Expected {
        Expected {
            what,
            matches: Box::new(matches),
            optional: false,
        }
    }

    /// Allowed to arrive, not waited for beyond [`QUIET`].
    fn optional(self) -> Expected {
        Expected {
            optional: true,
            ..self
        }
    }
}

/// A logged-in classic client.
struct User {
    client: Client,
    jid: FullJid,
    /// Stanzas nobody waited for.
    strays: Vec<String>,
}

impl User {
    /// Step 1: log in, fetch the (empty) roster, which makes this an interested resource, then
    /// send initial presence (RFC 6121 §2.2, §4.2).
    async fn log_in(server: &TestServer, jid: &str) -> User {
        server.create_account(jid, PASSWORD).await;
        let mut client = server.client(jid, PASSWORD);
        let jid = online(&mut client).await;
        let mut user = User {
            client,
            jid,
            strays: Vec::new(),
        };
        assert_eq!(user.roster(None).await, Some(vec![]));
        user.send(Presence::available()).await;
        user
    }

    async fn send(&mut self, stanza: impl Into<Stanza>) {
        timeout(TIMEOUT, self.client.send_stanza(stanza.into()))
            .await
            .unwrap_or_else(|_| panic!("{}: could not send in {TIMEOUT:?}", self.jid))
            .expect("stanza sent");
    }

    /// A roster get (RFC 6121 §2.1.3), with `ver` for §2.6. `None` is a result without a query:
    /// the roster has not changed since `ver` (§2.6.3).
    async fn roster(&mut self, ver: Option<&str>) -> Option<Vec<Item>> {
        self.get_roster(ver).await.map(|roster| roster.items)
    }

    /// A roster get with `ver`, which must be answered with the whole roster.
    async fn versioned_roster(&mut self, ver: &str) -> (Option<String>, Vec<Item>) {
        let roster = self.get_roster(Some(ver)).await.unwrap_or_else(|| {
            panic!(
                "{}: the roster get with ver='{ver}' came back empty",
                self.jid
            )
        });
        (roster.ver, roster.items)
    }

    async fn get_roster(&mut self, ver: Option<&str>) -> Option<Roster> {
        let query = Roster {
            ver: ver.map(String::from),
            items: Vec::new(),
        };
        match self.iq(IqRequest::Get(query.into())).await {
            IqResponse::Result(None) => None,
            IqResponse::Result(Some(payload)) => {
                Some(Roster::try_from(payload.clone()).unwrap_or_else(|e| {
                    panic!(
                        "{}: roster result {payload:?} does not parse: {e}",
                        self.jid
                    )
                }))
            }
            IqResponse::Error(error) => panic!("{}: roster get refused: {error:?}", self.jid),
        }
    }

    /// A roster set of one item (RFC 6121 §2.3–2.5), which must be answered with an empty result.
    async fn set_roster_item(&mut self, item: Item) {
        let query = Roster {
            ver: None,
            items: vec![item.clone()],
        };
        match self.iq(IqRequest::Set(query.into())).await {
            IqResponse::Result(None) => {}
            other => panic!(
                "{}: roster set of {} answered with {other:?}",
                self.jid,
                PrintRawXml(&item)
            ),
        }
    }

    /// An iq to the account (tokio-xmpp addresses it to the bare JID), and its answer.
    async fn iq(&mut self, request: IqRequest) -> IqResponse {
        let response = self.client.send_iq(None, request).await;
        timeout(TIMEOUT, response)
            .await
            .unwrap_or_else(|_| panic!("{}: no answer to an iq in {TIMEOUT:?}", self.jid))
            .expect("iq sent")
    }

    /// A roster push (RFC 6121 §2.1.6) of exactly `item`, from the account itself or from no one
    /// (a client ignores pushes from anywhere else).
    fn push(&self, item: Item) -> Expected {
        let account = Jid::from(self.jid.to_bare());
        Expected::new(
            format!("roster push of {}", PrintRawXml(&item)),
            move |stanza| {
                let Stanza::Iq(Iq::Set { from, payload, .. }) = stanza else {
                    return false;
                };
                from.as_ref().is_none_or(|from| *from == account)
                    && Roster::try_from(payload.clone())
                        .is_ok_and(|roster| roster.items == [item.clone()])
            },
        )
    }

    /// Receives until every required expectation has matched a stanza of its own, in any order
    /// (RFC 6121 leaves the order of pushes and presence open), and absorbs optional ones for
    /// [`QUIET`] more. Roster pushes are acknowledged, as a client must (RFC 6121 §2.1.6).
    /// Anything else is a stray, reported by [`finish`] so that the test goes on to check
    /// its own step. Fails on a timeout, showing what arrived and what is still awaited.
    async fn receive(&mut self, mut expected: Vec<Expected>) {
        let deadline = Instant::now() + TIMEOUT;
        let mut quiet_until = None;
        let mut received = Vec::new();
        loop {
            let waiting = expected.iter().any(|e| !e.optional);
            let until = match (waiting, expected.is_empty()) {
                (true, _) => deadline,
                (false, true) => return,
                (false, false) => *quiet_until.get_or_insert_with(|| Instant::now() + QUIET),
            };
            let Some(stanza) = self.next(until).await else {
                if waiting {
                    panic!(
                        "{}: timed out waiting for {}; received meanwhile:{}",
                        self.jid,
                        describe(&expected),
                        lines(&received)
                    );
                }
                return;
            };
            // Only roster pushes come as iq sets here.
            if let Stanza::Iq(Iq::Set { id, .. }) = &stanza {
                self.send(Iq::Result {
                    from: None,
                    to: None,
                    id: id.clone(),
                    payload: None,
                })
                .await;
            }
            let xml = PrintRawXml(&stanza).to_string();
            match expected.iter().position(|e| (e.matches)(&stanza)) {
                Some(n) => {
                    expected.remove(n);
                }
                None => self
                    .strays
                    .push(format!("{xml} (while waiting for {})", describe(&expected))),
            }
            received.push(xml);
        }
    }

    /// Nothing arrives within [`QUIET`].
    async fn silence(&mut self) {
        if let Some(stanza) = self.next(Instant::now() + QUIET).await {
            panic!(
                "{}: expected nothing, got {}",
                self.jid,
                PrintRawXml(&stanza)
            );
        }
    }

    /// The next stanza before `until`, skipping the account's own presence: RFC 6121 §4.2.2
    /// echoes it to the account's resources, and these tests are about contacts.
    async fn next(&mut self, until: Instant) -> Option<Stanza> {
        loop {
            let event = timeout_at(until, self.client.next()).await.ok()?;
            match event.expect("client event stream open") {
                Event::Stanza(Stanza::Presence(p))
                    if matches!(p.type_, PresenceType::None | PresenceType::Unavailable)
                        && p.from
                            .as_ref()
                            .is_some_and(|f| f.to_bare() == self.jid.to_bare()) => {}
                Event::Stanza(stanza) => return Some(stanza),
                other => panic!("{}: expected a stanza, got {other:?}", self.jid),
            }
        }
    }
}

fn describe(expected: &[Expected]) -> String {
    let what: Vec<&str> = expected.iter().map(|e| e.what.as_str()).collect();
    format!("[{}]", what.join(", "))
}

fn lines(received: &[String]) -> String {
    received.iter().map(|r| format!("\n  {r}")).collect()
}
