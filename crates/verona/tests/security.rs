//! Regression tests for the security review (issue #11): each attack as a hostile client sends
//! it over the wire, and what must (and must not) arrive.

mod common;

use common::*;
use minidom::Element;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

/// Juliet and Romeo online as classic clients, Romeo following Juliet's presence.
async fn romeo_follows_juliet() -> (TestServer, Client, Client) {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    for c in [&mut juliet, &mut romeo] {
        c.send("<presence xmlns='jabber:client'/>").await;
        let me = c.jid().to_owned();
        recv_until(c, |el| {
            el.name() == "presence" && el.attr("from") == Some(&me)
        })
        .await;
    }
    romeo
        .send("<presence xmlns='jabber:client' type='subscribe' to='juliet@localhost'/>")
        .await;
    recv_until(&mut juliet, |el| el.attr("type") == Some("subscribe")).await;
    juliet
        .send("<presence xmlns='jabber:client' type='subscribed' to='romeo@localhost'/>")
        .await;
    recv_until(&mut romeo, |el| {
        el.name() == "presence"
            && el.attr("type").is_none()
            && el.attr("from") == Some("juliet@localhost/balcony")
    })
    .await;
    settle(&mut juliet).await;
    settle(&mut romeo).await;
    (t, juliet, romeo)
}

/// Reads whatever is still arriving, until the stream is quiet.
async fn settle(client: &mut Client) {
    while tokio::time::timeout(QUIET, client.next_event())
        .await
        .is_ok()
    {}
}

fn publish_presence(id: &str, payload: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='presence'><item>{payload}</item></publish></pubsub></iq>"
    )
}

/// C1: an item of the `presence` node that is not presence is refused, so a contact cannot
/// make the server deliver a forged top-level stanza to classic followers; a presence that
/// claims another sender is delivered from its publisher.
#[tokio::test]
async fn a_presence_item_cannot_carry_a_forged_stanza() {
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    let forged = [
        "<message xmlns='jabber:client' from='admin@localhost' type='chat'><body>send me your password</body></message>",
        "<iq xmlns='jabber:client' type='set' id='push' from='romeo@localhost'><query xmlns='jabber:iq:roster'><item jid='mallory@evil.example' subscription='both'/></query></iq>",
        "<presence xmlns='jabber:client'><message from='admin@localhost'><body>nested</body></message></presence>",
        "<presence xmlns='jabber:client' type='subscribed' from='admin@localhost'/>",
    ];
    for (n, payload) in forged.iter().enumerate() {
        let reply = juliet
            .request(&publish_presence(&format!("f{n}"), payload))
            .await;
        assert_eq!(
            stanza_error(&reply).as_deref(),
            Some("bad-request"),
            "{payload}"
        );
        let error = reply.get_child("error", NS_CLIENT).unwrap();
        assert!(
            error.has_child("invalid-payload", PUBSUB_ERRORS),
            "{}",
            show(&reply)
        );
        // From the account, as a result would be (it had no `from` at all).
        assert_eq!(
            reply.attr("from"),
            Some("juliet@localhost"),
            "{}",
            show(&reply)
        );
    }
    romeo.expect_nothing().await;

    let claimed =
        "<presence xmlns='jabber:client' from='admin@localhost/x'><show>away</show></presence>";
    ok(&juliet.request(&publish_presence("ok", claimed)).await);
    let got = recv_until(&mut romeo, |el| el.name() == "presence").await;
    assert_eq!(
        (got.attr("type"), got.attr("from")),
        (None, Some("juliet@localhost/balcony")),
        "{}",
        show(&got)
    );
    let children: Vec<(String, String)> = got
        .children()
        .map(|c| (c.name().to_owned(), c.text()))
        .collect();
    assert_eq!(children, [("show".to_owned(), "away".to_owned())]);
}

/// C1, the classic side: a `<presence/>` broadcast carrying a nested stanza is refused, and
/// nothing of it reaches the followers.
#[tokio::test]
async fn a_presence_broadcast_cannot_carry_a_stanza() {
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    juliet
        .send("<presence xmlns='jabber:client'><message from='admin@localhost'><body>nested</body></message></presence>")
        .await;
    let refused = juliet.recv().await;
    assert_eq!(refused.name(), "presence", "{}", show(&refused));
    assert_eq!(stanza_error(&refused).as_deref(), Some("bad-request"));
    romeo.expect_nothing().await;
}

/// A delay is a server's word (XEP-0203): one a client puts in its presence, broadcast or
/// directed, does not reach the others, so it cannot pass for this server's stamp.
#[tokio::test]
async fn a_clients_delay_in_presence_does_not_pass() {
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    let delays = "<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2001-01-01T00:00:00Z'/>\
                  <x xmlns='jabber:x:delay' from='localhost' stamp='20010101T00:00:00'/>";
    for to in ["", " to='romeo@localhost/orchard'"] {
        juliet
            .send(&format!(
                "<presence xmlns='jabber:client'{to}><show>away</show>{delays}</presence>"
            ))
            .await;
        let got = recv_until(&mut romeo, |el| el.name() == "presence").await;
        assert_eq!(got.attr("from"), Some("juliet@localhost/balcony"));
        let children: Vec<(&str, String)> = got.children().map(|c| (c.name(), c.ns())).collect();
        assert_eq!(
            children,
            [("show", NS_CLIENT.to_owned())],
            "{to}: {}",
            show(&got)
        );
    }
}

fn subscribe_presence(id: &str, jid: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='presence' jid='{jid}'/></pubsub></iq>"
    )
}

/// An authorization request as a session gets it: a form message, or classic `subscribe`.
fn is_request(el: &Element) -> bool {
    match el.name() {
        "message" => el.has_child("x", "jabber:x:data"),
        "presence" => el.attr("type") == Some("subscribe"),
        _ => false,
    }
}

async fn requests_at_login(t: &TestServer) -> usize {
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    juliet.send("<presence xmlns='jabber:client'/>").await;
    let mut requests = 0;
    while let Ok(Some(verona_stream::StreamEvent::Stanza(el))) =
        tokio::time::timeout(QUIET * 2, juliet.next_event()).await
    {
        requests += usize::from(is_request(&el));
    }
    requests
}

/// H1: requests made with made-up resources of one account are one request, and however many
/// accounts ask, a login gets a bounded number of forms (the rest by get-pending), so the
/// owner is never flooded off the server.
#[tokio::test]
async fn pending_requests_cannot_flood_a_login() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    t.add_user("romeo", "pw").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    ok(&romeo
        .request(&subscribe_presence("s0", "romeo@localhost/r0"))
        .await);
    for n in 1..30 {
        let reply = romeo
            .request(&subscribe_presence(
                &format!("s{n}"),
                &format!("romeo@localhost/r{n}"),
            ))
            .await;
        assert_eq!(
            stanza_error(&reply).as_deref(),
            Some("not-authorized"),
            "{}",
            show(&reply)
        );
        let error = reply.get_child("error", NS_CLIENT).unwrap();
        assert!(error.has_child("pending-subscription", PUBSUB_ERRORS));
    }
    assert_eq!(requests_at_login(&t).await, 1);

    for n in 0..12 {
        let user = format!("suitor{n}");
        t.add_user(&user, "pw").await;
        let mut suitor = t.login(&user, "pw", "r").await;
        let jid = format!("{user}@localhost");
        ok(&suitor.request(&subscribe_presence("s", &jid)).await);
    }
    assert_eq!(requests_at_login(&t).await, 10);
}

/// H6: a client that stops reading does not hold its connection forever: the write that
/// cannot complete ends it within `[c2s] write_timeout_secs`, and its session with it.
#[tokio::test]
async fn a_peer_that_stops_reading_is_disconnected() {
    let t = TestServer::start_with(|config| {
        config.c2s.write_timeout_secs = 1;
        // Juliet floods on purpose: her own stream must not be slowed.
        config.limits.read_bytes_per_sec = 0;
        config.limits.account_read_bytes_per_sec = 0;
    })
    .await;
    t.add_user("juliet", "pw").await;
    t.add_user("romeo", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    // Romeo binds and then never reads again.
    let _romeo = t.login("romeo", "pw", "orchard").await;
    let body = "x".repeat(60_000);
    for _ in 0..400 {
        juliet
            .send(&format!(
                "<message xmlns='jabber:client' to='romeo@localhost/orchard'><body>{body}</body></message>"
            ))
            .await;
    }
    // Once the server has given up on Romeo's stream, his resource is gone: an iq to it
    // bounces as undeliverable instead of waiting in a queue that never drains (a message
    // would now be kept for his next login, XEP-0160).
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        juliet
            .send("<iq xmlns='jabber:client' to='romeo@localhost/orchard' type='get' id='probe'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        let bounced = tokio::time::timeout(QUIET, juliet.recv()).await;
        // While his queue is full, stanzas bounce for a while (M2); then he is gone.
        if let Ok(el) = bounced
            && stanza_error(&el).as_deref() != Some("resource-constraint")
        {
            assert_eq!(
                stanza_error(&el).as_deref(),
                Some("service-unavailable"),
                "{}",
                show(&el)
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Romeo's stream was never closed"
        );
    }
}

/// Found with sendxmpp: features go out as `<stream:features>`, the qualified name every
/// server uses and Perl's XML::Stream looks for (the prefix the stream header declares).
#[tokio::test]
async fn features_carry_the_stream_prefix() {
    let t = TestServer::start().await;
    let mut client = Client::connect(t.addr()).await;
    client.send_header("localhost").await;
    let mut wire = Vec::new();
    while !wire.ends_with(b"</stream:features>") {
        let more = client.raw_read(TIMEOUT).await;
        assert!(!more.is_empty(), "{}", String::from_utf8_lossy(&wire));
        wire.extend(more);
    }
    let wire = String::from_utf8(wire).unwrap();
    let header = wire.find("<stream:stream").expect("a stream header");
    let after_header = &wire[header + wire[header..].find('>').unwrap() + 1..];
    assert!(
        after_header.starts_with("<stream:features>"),
        "{after_header}"
    );
}

/// H2: when Juliet ends Romeo's presence subscription, his explicit subscription to her
/// `presence`-model `geoloc` node ends with it (XEP-0163 §8.1): her next location is not his.
#[tokio::test]
async fn revoking_presence_revokes_presence_model_nodes() {
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    let create = format!(
        "<iq xmlns='jabber:client' type='set' id='c'><pubsub xmlns='{PUBSUB}'><create node='geoloc'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>presence</value></field></x></configure></pubsub></iq>"
    );
    ok(&juliet.request(&create).await);
    let subscribe = format!(
        "<iq xmlns='jabber:client' type='set' id='s' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='geoloc' jid='romeo@localhost'/></pubsub></iq>"
    );
    ok(&romeo.request(&subscribe).await);
    let publish = |id: &str| {
        format!(
            "<iq xmlns='jabber:client' type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='geoloc'><item id='{id}'><geoloc xmlns='http://jabber.org/protocol/geoloc'><locality>Verona</locality></geoloc></item></publish></pubsub></iq>"
        )
    };
    ok(&juliet.request(&publish("here")).await);
    let event = recv_until(&mut romeo, |el| el.name() == "message").await;
    let item = event
        .get_child("event", "http://jabber.org/protocol/pubsub#event")
        .and_then(|e| e.get_child("items", "http://jabber.org/protocol/pubsub#event"))
        .and_then(|i| i.get_child("item", "http://jabber.org/protocol/pubsub#event"));
    assert_eq!(
        item.and_then(|i| i.attr("id")),
        Some("here"),
        "{}",
        show(&event)
    );

    juliet
        .send("<presence xmlns='jabber:client' type='unsubscribed' to='romeo@localhost'/>")
        .await;
    settle(&mut romeo).await;
    settle(&mut juliet).await;
    ok(&juliet.request(&publish("elsewhere")).await);
    romeo.expect_nothing().await;
}

/// (type, from) of every presence among `stanzas`, sorted.
fn presences(stanzas: &[Element]) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = stanzas
        .iter()
        .filter(|el| el.name() == "presence")
        .map(|el| {
            (
                el.attr("type").unwrap_or("available").to_owned(),
                el.attr("from").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    seen
}

/// Everything that arrives until the stream is quiet.
async fn drain(client: &mut Client) -> Vec<Element> {
    let mut got = Vec::new();
    while let Ok(Some(verona_stream::StreamEvent::Stanza(el))) =
        tokio::time::timeout(QUIET, client.next_event()).await
    {
        got.push(el);
    }
    got
}

fn pair(kind: &str, from: &str) -> (String, String) {
    (kind.to_owned(), from.to_owned())
}

/// Found with real clients: when a subscription ends, the former subscriber sees the owner go
/// offline (RFC 6121 §3.2.2, §3.3.2; XEP-0191 §3.3), instead of showing it online forever, and
/// an owner whose contact unsubscribes is told so.
#[tokio::test]
async fn an_ended_subscription_takes_the_presence_with_it() {
    // Juliet cancels Romeo's subscription.
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    juliet
        .send("<presence xmlns='jabber:client' type='unsubscribed' to='romeo@localhost'/>")
        .await;
    assert_eq!(
        presences(&drain(&mut romeo).await),
        [
            pair("unavailable", "juliet@localhost/balcony"),
            pair("unsubscribed", "juliet@localhost"),
        ]
    );

    // Romeo unsubscribes.
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    romeo
        .send("<presence xmlns='jabber:client' type='unsubscribe' to='juliet@localhost'/>")
        .await;
    let seen = presences(&drain(&mut romeo).await);
    assert!(
        seen.contains(&pair("unavailable", "juliet@localhost/balcony")),
        "{seen:?}"
    );
    assert_eq!(
        presences(&drain(&mut juliet).await),
        [pair("unsubscribe", "romeo@localhost")]
    );

    // Juliet blocks Romeo.
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    let block = "<iq xmlns='jabber:client' type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block></iq>";
    ok(&juliet.request(block).await);
    assert_eq!(
        presences(&drain(&mut romeo).await),
        [
            pair("unavailable", "juliet@localhost/balcony"),
            pair("unsubscribed", "juliet@localhost"),
        ]
    );
}

/// H4: unauthenticated connections from one address are capped, which bounds concurrent
/// guessing; authenticated sessions do not count, and a closed one frees its slot.
#[tokio::test]
async fn unauthenticated_connections_are_capped_per_address() {
    let t = TestServer::start_with(|config| config.limits.unauthenticated_per_address = 3).await;
    t.add_user("juliet", "pw").await;
    // A bound session no longer counts.
    let _juliet = t.login("juliet", "pw", "balcony").await;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(t.addr()).await;
        c.open().await;
        waiting.push(c);
    }
    let mut refused = Client::connect(t.addr()).await;
    refused.send_header("localhost").await;
    refused.expect_closed().await;
    drop(waiting.pop());
    tokio::time::sleep(QUIET).await;
    let mut admitted = Client::connect(t.addr()).await;
    let features = admitted.open().await;
    assert!(features.is("features", NS_STREAMS), "{}", show(&features));
}

/// H3: an account deleted in-band takes its state with it: whoever takes the name next has no
/// nodes, no roster, and none of the approvals contacts gave; the contacts' rosters forget it.
#[tokio::test]
async fn a_deleted_account_leaves_nothing_to_the_next_owner_of_its_name() {
    let (t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    let diary = format!(
        "<iq xmlns='jabber:client' type='set' id='d'><pubsub xmlns='{PUBSUB}'><create node='diary'/></pubsub></iq>"
    );
    ok(&juliet.request(&diary).await);
    let note = "<iq xmlns='jabber:client' type='set' id='n'><query xmlns='jabber:iq:roster'><item jid='romeo@localhost' name='my Romeo'/></query></iq>";
    ok(&juliet.request(note).await);

    let remove = "<iq xmlns='jabber:client' type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";
    ok(&juliet.request(remove).await);
    assert_eq!(juliet.expect_stream_error().await, "not-authorized");
    settle(&mut romeo).await;
    let roster =
        "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>";
    // He asked to follow her, so she stays on his roster (RFC 6121 §3), followed no more.
    let his = romeo.request(roster).await;
    let items: Vec<(Option<&str>, Option<&str>)> = his
        .get_child("query", "jabber:iq:roster")
        .unwrap()
        .children()
        .map(|i| (i.attr("jid"), i.attr("subscription")))
        .collect();
    assert_eq!(
        items,
        [(Some("juliet@localhost"), Some("none"))],
        "{}",
        show(&his)
    );

    // Someone else takes the name.
    t.add_user("juliet", "another").await;
    let mut impostor = t.login("juliet", "another", "balcony").await;
    let hers = impostor.request(roster).await;
    let items = hers.get_child("query", "jabber:iq:roster").unwrap();
    assert_eq!(items.children().count(), 0, "{}", show(&hers));
    let nodes = "<iq xmlns='jabber:client' type='get' id='i'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>";
    let listed = impostor.request(nodes).await;
    let query = listed
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap();
    let nodes: Vec<&str> = query.children().filter_map(|i| i.attr("node")).collect();
    // Every account's own presence node, new; not the old diary.
    assert_eq!(nodes, ["presence"], "{}", show(&listed));
    // Romeo's approval was Juliet's, not the name's.
    impostor.send("<presence xmlns='jabber:client'/>").await;
    romeo.expect_nothing().await;
}

/// RFC 6121 §4.5.2, XEP-0077 §3.2: a contact sees a deleted account go offline, as when its
/// sessions end.
#[tokio::test]
async fn a_deleted_account_goes_offline_for_its_contacts() {
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    let remove = "<iq xmlns='jabber:client' type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";
    ok(&juliet.request(remove).await);
    let mut presences = Vec::new();
    while let Ok(Some(verona_stream::StreamEvent::Stanza(el))) =
        tokio::time::timeout(QUIET, romeo.next_event()).await
    {
        if el.name() == "presence" {
            let (kind, from) = (el.attr("type"), el.attr("from"));
            presences.push((kind.map(String::from), from.map(String::from)));
        }
    }
    // Her approval of Romeo ends (RFC 6121 §3.2.2), then her session: once each.
    let unsubscribed = (Some("unsubscribed"), Some("juliet@localhost"));
    let gone = (Some("unavailable"), Some("juliet@localhost/balcony"));
    let presences: Vec<_> = (presences.iter())
        .map(|(kind, from)| (kind.as_deref(), from.as_deref()))
        .collect();
    assert_eq!(presences, [unsubscribed, gone]);
}

/// H3: a password changed in-band ends the account's other sessions (whoever knew the old
/// one is out); the session that changed it stays.
#[tokio::test]
async fn a_password_change_ends_the_other_sessions() {
    let t = TestServer::start().await;
    t.add_user("juliet", "old").await;
    let mut balcony = t.login("juliet", "old", "balcony").await;
    let mut chamber = t.login("juliet", "old", "chamber").await;
    let change = "<iq xmlns='jabber:client' type='set' id='pw'><query xmlns='jabber:iq:register'><username>juliet</username><password>new</password></query></iq>";
    ok(&balcony.request(change).await);
    assert_eq!(chamber.expect_stream_error().await, "not-authorized");
    let ping = "<iq xmlns='jabber:client' type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
    ok(&balcony.request(ping).await);
    // The server remembers credentials for logins: the old password must not open the account
    // any more, by either mechanism, and the new one must.
    for plain in [false, true] {
        let mut late = Client::connect_direct_tls(t.tls_addr(), t.server.cert_path()).await;
        late.open().await;
        let refused = if plain {
            late.auth_plain("juliet", "old").await
        } else {
            late.auth_scram(verona_auth::ScramHash::Sha256, "juliet", "old")
                .await
        };
        assert_eq!(refused, Err("not-authorized".into()));
    }
    t.login("juliet", "new", "orchard").await;
}

/// H3: a stream that authenticated but had not bound when its account was deleted, or its
/// password changed, may not bind (nor resume) afterwards, also once the name is taken
/// again: it would hold a session of an account it never proved.
#[tokio::test]
async fn a_stream_authenticated_before_a_change_binds_no_more() {
    let t = TestServer::start().await;
    t.add_user("juliet", "old").await;
    let bind = "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>ghost</resource></bind></iq>";
    // A new password.
    let mut waiting = t.authenticate("juliet", "old").await;
    let mut balcony = t.login("juliet", "old", "balcony").await;
    let change = "<iq xmlns='jabber:client' type='set' id='pw'><query xmlns='jabber:iq:register'><username>juliet</username><password>new</password></query></iq>";
    ok(&balcony.request(change).await);
    waiting.send(bind).await;
    assert_eq!(waiting.expect_stream_error().await, "not-authorized");
    // The account deleted, and registered again by someone else.
    let mut waiting = t.authenticate("juliet", "new").await;
    let remove = "<iq xmlns='jabber:client' type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";
    ok(&balcony.request(remove).await);
    t.add_user("juliet", "another").await;
    waiting.send(bind).await;
    assert_eq!(waiting.expect_stream_error().await, "not-authorized");
    t.login("juliet", "another", "orchard").await;
}

/// H3: a second server does not start on the same data directory. (The command line's
/// `user del` and `passwd` go through the running server: `cli.rs`,
/// `passwd_and_del_go_through_a_running_server`.)
#[tokio::test]
async fn a_second_server_does_not_start_on_the_same_data_directory() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    let mut second = test_config(t.dir.path());
    second.c2s.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let refused = verona::RunningServer::start(second).await;
    assert!(
        refused.is_err(),
        "a second server on the same data directory"
    );
    // Juliet is still there.
    let _juliet = t.login("juliet", "pw", "balcony").await;
}

/// H5: an account's PEP service obeys the `[pubsub]` limits too (it used the engine's own
/// defaults, so each account could store far more than the operator allowed).
#[tokio::test]
async fn pep_obeys_the_pubsub_limits() {
    let t = TestServer::start_with(|config| config.pubsub.max_payload_bytes = 1000).await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let publish = |id: &str, size: usize| {
        format!(
            "<iq xmlns='jabber:client' type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='notes'><item><note xmlns='urn:example'>{}</note></item></publish></pubsub></iq>",
            "x".repeat(size)
        )
    };
    ok(&juliet.request(&publish("small", 500)).await);
    let refused = juliet.request(&publish("big", 2000)).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("not-acceptable"),
        "{}",
        show(&refused)
    );
    let error = refused.get_child("error", NS_CLIENT).unwrap();
    assert!(
        error.has_child("payload-too-big", PUBSUB_ERRORS),
        "{}",
        show(&refused)
    );
}

/// M6: before authentication only small stanzas are accepted (16 KiB by default); after it,
/// the full limit applies.
#[tokio::test]
async fn strangers_cannot_send_large_stanzas() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    let mut stranger = Client::connect_direct_tls(t.tls_addr(), t.server.cert_path()).await;
    stranger.open().await;
    let big = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        "A".repeat(20_000)
    );
    stranger.send(&big).await;
    assert_eq!(stranger.expect_stream_error().await, "policy-violation");

    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let body = "x".repeat(20_000);
    juliet
        .send(&format!(
            "<message xmlns='jabber:client' to='juliet@localhost/balcony'><body>{body}</body></message>"
        ))
        .await;
    let echoed = juliet.recv().await;
    assert_eq!(
        echoed.get_child("body", NS_CLIENT).map(|b| b.text()),
        Some(body)
    );
}

/// A namespace declared once under a prefix and used by many elements is written out once per
/// element: a 188 KB message of 30,000 `<p:q/>` under an 8 KiB namespace made the server build
/// a 240 MB payload (RSS 18 → 462 MB) before refusing it, and an iq relayed so would have
/// queued it whole for its recipient (the review of 2026-12-07, evening). It is now refused as
/// it comes, as any stanza past `max_stanza_bytes`, and reaches nobody.
#[tokio::test]
async fn a_stanza_that_grows_when_written_out_is_refused() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    recv_until(&mut romeo, |el| el.name() == "presence").await;
    let namespace = format!("urn:{}", "l".repeat(8000));
    juliet
        .send(&format!(
            "<message xmlns='jabber:client' to='romeo@localhost' type='chat'><body>hi</body><w xmlns='urn:s' xmlns:p='{namespace}'>{}</w></message>",
            "<p:q/>".repeat(30_000)
        ))
        .await;
    assert_eq!(juliet.expect_stream_error().await, "policy-violation");
    romeo.expect_nothing().await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    juliet
        .send("<message xmlns='jabber:client' to='romeo@localhost' type='chat'><body>again</body></message>")
        .await;
    let said = recv_until(&mut romeo, |el| el.name() == "message").await;
    assert_eq!(
        said.get_child("body", NS_CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("again")
    );
}

/// Low: the database is created readable by the server's user only, like the TLS key.
#[tokio::test]
async fn the_database_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    for file in ["verona.db", "verona.db-wal"] {
        let path = t.dir.path().join(file);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{file}: {mode:o}");
    }
}

/// M2: flooding a user who reads slowly does not get that user disconnected: once its queue
/// is full, the sender's stanzas bounce with `resource-constraint` (wait), and the recipient
/// reads what was queued and goes on.
#[tokio::test]
async fn a_flood_bounces_instead_of_disconnecting_the_recipient() {
    let t = TestServer::start_with(|config| {
        config.limits.outbound_queue = 8;
        config.limits.read_bytes_per_sec = 0;
    })
    .await;
    t.add_user("juliet", "pw").await;
    t.add_user("romeo", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let body = "x".repeat(20_000);
    for n in 0..600 {
        juliet
            .send(&format!(
                "<message xmlns='jabber:client' to='romeo@localhost/orchard' id='m{n}' type='chat'><body>{body}</body></message>"
            ))
            .await;
    }
    let bounced = recv_until(&mut juliet, |el| stanza_error(el).is_some()).await;
    assert_eq!(
        stanza_error(&bounced).as_deref(),
        Some("resource-constraint"),
        "{}",
        show(&bounced)
    );
    assert_eq!(
        bounced
            .get_child("error", NS_CLIENT)
            .and_then(|e| e.attr("type")),
        Some("wait")
    );
    // Romeo was only slow: he reads what was queued, and his stream is still there.
    for _ in 0..9 {
        let el = romeo.recv().await;
        assert_eq!(el.name(), "message", "{}", show(&el));
    }
    settle(&mut romeo).await;
    let ping = "<iq xmlns='jabber:client' type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
    ok(&romeo.request(ping).await);
}

/// M4: a stranger's disco#info on an account's `presence` node does not reveal its owners or
/// how many follow it; a follower, who may read the node, gets the meta-data.
#[tokio::test]
async fn presence_node_meta_data_is_for_followers_only() {
    let (t, _juliet, mut romeo) = romeo_follows_juliet().await;
    t.add_user("nurse", "pw").await;
    let mut nurse = t.login("nurse", "pw", "kitchen").await;
    let info = "<iq xmlns='jabber:client' type='get' id='i' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='presence'/></iq>";
    let has_meta_data = |reply: &Element| {
        reply
            .get_child("query", "http://jabber.org/protocol/disco#info")
            .is_some_and(|q| q.has_child("x", "jabber:x:data"))
    };
    let strangers = nurse.request(info).await;
    ok(&strangers);
    assert!(!has_meta_data(&strangers), "{}", show(&strangers));
    let followers = romeo.request(info).await;
    assert!(has_meta_data(&followers), "{}", show(&followers));
}

/// M3: blocking applies on `pubsub.<domain>` too: what a blocked account publishes there does
/// not reach the one who blocked it (others still get it); and an owner cannot subscribe a
/// stranger to its node.
#[tokio::test]
async fn blocking_reaches_pubsub_and_owners_cannot_subscribe_strangers() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let mut nurse = t.login("nurse", "pw", "kitchen").await;
    // Available: a notification for the bare JID is a message (RFC 6121 §8.5.2.1.1).
    for c in [&mut juliet, &mut nurse] {
        c.send("<presence xmlns='jabber:client'/>").await;
        recv_until(c, |el| el.name() == "presence").await;
    }
    let create = format!(
        "<iq xmlns='jabber:client' type='set' id='c' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><create node='square'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field><field var='pubsub#publish_model'><value>open</value></field></x></configure></pubsub></iq>"
    );
    ok(&juliet.request(&create).await);
    for (c, who) in [(&mut juliet, "juliet"), (&mut nurse, "nurse")] {
        let subscribe = format!(
            "<iq xmlns='jabber:client' type='set' id='s' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='square' jid='{who}@localhost'/></pubsub></iq>"
        );
        ok(&c.request(&subscribe).await);
    }
    let block = "<iq xmlns='jabber:client' type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block></iq>";
    ok(&nurse.request(block).await);
    let publish = format!(
        "<iq xmlns='jabber:client' type='set' id='p' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><publish node='square'><item id='shout'><p xmlns='urn:example'>a plague</p></item></publish></pubsub></iq>"
    );
    ok(&romeo.request(&publish).await);
    let heard = recv_until(&mut juliet, |el| el.name() == "message").await;
    assert_eq!(
        heard.attr("from"),
        Some("pubsub.localhost"),
        "{}",
        show(&heard)
    );
    nurse.expect_nothing().await;

    // Juliet owns the node, but may not subscribe Romeo to it: the entry is refused as
    // XEP-0060 §8.8.2.4 has it, `not-acceptable` naming it with its state unchanged.
    let impose = format!(
        "<iq xmlns='jabber:client' type='set' id='o' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}#owner'><subscriptions node='square'><subscription jid='romeo@localhost' subscription='subscribed'/></subscriptions></pubsub></iq>"
    );
    let refused = juliet.request(&impose).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("not-acceptable"),
        "{}",
        show(&refused)
    );
    let owner = format!("{PUBSUB}#owner");
    let echoed = refused
        .get_child("pubsub", owner.as_str())
        .and_then(|p| p.get_child("subscriptions", owner.as_str()))
        .and_then(|s| s.get_child("subscription", owner.as_str()))
        .unwrap_or_else(|| panic!("{}", show(&refused)));
    assert_eq!(
        (echoed.attr("jid"), echoed.attr("subscription")),
        (Some("romeo@localhost"), Some("none"))
    );
}

/// M1: an account's burst of requests, from all its sessions, holds at most
/// `pubsub_account_requests` places in a shard's queue: another user's request waits behind
/// those, not behind the whole burst. A slow store makes each batch last, so that what was
/// queued ahead of Juliet's request shows in how many of Mallory's items it sees.
#[tokio::test]
async fn one_account_cannot_queue_a_burst_ahead_of_everyone() {
    // The node keeps the whole burst, so that what Juliet sees counts what went before her;
    // the burst is more than one account may have broadcast at once, which is not what this
    // tests (see `publish_floods_are_refused_at_the_publisher`).
    let (t, store) = TestServer::start_faulty_with(|c| {
        c.pubsub.max_items_per_node = 10_000;
        c.limits.broadcast_bytes_per_sec = 0;
    })
    .await;
    for user in ["juliet", "mallory"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut first = t.login("mallory", "pw", "one").await;
    let mut second = t.login("mallory", "pw", "two").await;
    let create = format!(
        "<iq xmlns='jabber:client' type='set' id='c' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><create node='flood'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field><field var='pubsub#max_items'><value>max</value></field></x></configure></pubsub></iq>"
    );
    ok(&first.request(&create).await);
    store.set(common::faulty::Writes::Slow);
    // Enough that Juliet's request, however late a loaded machine sends it, arrives while
    // most of the burst is still to come.
    const EACH: usize = 1500;
    for (session, client) in [("one", &mut first), ("two", &mut second)] {
        let burst: String = (0..EACH)
            .map(|n| format!(
                "<iq xmlns='jabber:client' type='set' id='{session}{n}' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><publish node='flood'><item id='{session}{n}'><p xmlns='urn:example'>x</p></item></publish></pubsub></iq>"
            ))
            .collect();
        client.send(&burst).await;
    }
    // The shard is at work on the burst.
    ok(&first.recv().await);
    let count = format!(
        "<iq xmlns='jabber:client' type='get' id='n' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><items node='flood'/><set xmlns='http://jabber.org/protocol/rsm'><max>1</max></set></pubsub></iq>"
    );
    let seen = item_count(&juliet.request(&count).await);
    // Behind the whole burst she would see all 3,000 items; behind Mallory's share (64
    // requests), a few batches' worth.
    assert!(
        seen < EACH,
        "Juliet waited behind {seen} of Mallory's publishes"
    );
    // Nothing of the burst is lost: every publish is answered, and stored.
    store.set(common::faulty::Writes::Succeed);
    for (client, expected) in [(&mut first, EACH - 1), (&mut second, EACH)] {
        for _ in 0..expected {
            ok(&client.recv().await);
        }
    }
    assert_eq!(item_count(&juliet.request(&count).await), 2 * EACH);
}

/// The XEP-0059 count of an items reply.
fn item_count(reply: &Element) -> usize {
    const RSM: &str = "http://jabber.org/protocol/rsm";
    reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("set", RSM))
        .and_then(|set| set.get_child("count", RSM))
        .and_then(|c| c.text().parse().ok())
        .unwrap_or_else(|| panic!("a count: {}", show(reply)))
}

/// M7: the subscription limit counts what an account holds on every service together, not
/// per service: with a limit of three, two subscriptions on `pubsub.<domain>` and two on
/// Juliet's PEP service are one too many.
#[tokio::test]
async fn the_subscription_limit_is_per_account_over_all_services() {
    let t = TestServer::start_with(|c| c.pubsub.max_subscriptions_per_jid = 3).await;
    for user in ["juliet", "mallory"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut mallory = t.login("mallory", "pw", "lair").await;
    let open = "<configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field></x></configure>";
    let mut targets = Vec::new();
    for (service, node) in [
        ("pubsub.localhost", "square"),
        ("pubsub.localhost", "market"),
        ("juliet@localhost", "diary"),
        ("juliet@localhost", "letters"),
    ] {
        let to = if service == "juliet@localhost" {
            String::new()
        } else {
            format!(" to='{service}'")
        };
        let create = format!(
            "<iq xmlns='jabber:client' type='set' id='c'{to}><pubsub xmlns='{PUBSUB}'><create node='{node}'/>{open}</pubsub></iq>"
        );
        ok(&juliet.request(&create).await);
        targets.push((service, node));
    }
    let mut replies = Vec::new();
    for (n, (service, node)) in targets.iter().enumerate() {
        let subscribe = format!(
            "<iq xmlns='jabber:client' type='set' id='s{n}' to='{service}'><pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='mallory@localhost'/></pubsub></iq>"
        );
        replies.push(mallory.request(&subscribe).await);
    }
    for reply in &replies[..3] {
        ok(reply);
    }
    let refused = &replies[3];
    assert_eq!(
        stanza_error(refused).as_deref(),
        Some("policy-violation"),
        "{}",
        show(refused)
    );
    let pubsub_condition = refused
        .get_child("error", "jabber:client")
        .and_then(|e| e.get_child("too-many-subscriptions", PUBSUB_ERRORS));
    assert!(pubsub_condition.is_some(), "{}", show(refused));

    // Ending one makes room for another.
    let unsubscribe = format!(
        "<iq xmlns='jabber:client' type='set' id='u' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><unsubscribe node='square' jid='mallory@localhost'/></pubsub></iq>"
    );
    ok(&mallory.request(&unsubscribe).await);
    let again = format!(
        "<iq xmlns='jabber:client' type='set' id='s' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='letters' jid='mallory@localhost'/></pubsub></iq>"
    );
    ok(&mallory.request(&again).await);
    // At the limit, a classic subscription request reaches nobody either.
    mallory
        .send("<presence xmlns='jabber:client' type='subscribe' to='juliet@localhost'/>")
        .await;
    juliet.expect_nothing().await;
}

/// M7: an account's PEP service holds at most `[pubsub] max_pep_nodes` nodes (every blocked
/// JID is an outcast on each of them), while `pubsub.<domain>` keeps its own limit.
#[tokio::test]
async fn pep_nodes_per_account_are_bounded() {
    let t = TestServer::start_with(|c| c.pubsub.max_pep_nodes = 4).await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let create = |to: &str, n: usize| {
        format!(
            "<iq xmlns='jabber:client' type='set' id='c{n}'{to}><pubsub xmlns='{PUBSUB}'><create node='n{n}'/></pubsub></iq>"
        )
    };
    let mut created = 0;
    let mut refusal = None;
    for n in 0..5 {
        let reply = juliet.request(&create("", n)).await;
        if reply.attr("type") == Some("result") {
            created += 1;
        } else {
            refusal = Some(reply);
            break;
        }
    }
    // Her `presence` node is one of the four.
    assert!((1..4).contains(&created), "{created} created");
    let refusal = refusal.expect("a refusal");
    assert_eq!(
        stanza_error(&refusal).as_deref(),
        Some("policy-violation"),
        "{}",
        show(&refusal)
    );
    let condition = refusal
        .get_child("error", "jabber:client")
        .and_then(|e| e.get_child("max-nodes-exceeded", PUBSUB_ERRORS));
    assert!(condition.is_some(), "{}", show(&refusal));
    for n in 0..5 {
        ok(&juliet.request(&create(" to='pubsub.localhost'", n)).await);
    }
}

/// Low: blocking a whole domain (XEP-0191) ends the subscriptions its accounts hold, as
/// blocking each of them would: Romeo no longer follows Juliet once she blocks his domain.
#[tokio::test]
async fn a_domain_block_ends_the_subscriptions_of_that_domain() {
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    let block = "<iq xmlns='jabber:client' type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='localhost'/></block></iq>";
    ok(&juliet.request(block).await);
    settle(&mut romeo).await;
    let roster = romeo
        .request(
            "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    let juliet_item = roster
        .get_child("query", "jabber:iq:roster")
        .into_iter()
        .flat_map(|q| q.children())
        .find(|item| item.attr("jid") == Some("juliet@localhost"));
    let subscription = juliet_item.and_then(|item| item.attr("subscription"));
    assert!(
        matches!(subscription, None | Some("none")),
        "{}",
        show(&roster)
    );
}

/// M6: one address registers a bounded number of accounts per hour.
#[tokio::test]
async fn registration_is_limited_per_address() {
    let t = TestServer::start_with(|config| {
        config.registration.allow = true;
        config.registration.per_address_per_hour = 2;
    })
    .await;
    let mut c = Client::connect_direct_tls(t.tls_addr(), t.server.cert_path()).await;
    c.open().await;
    let register = |name: &str| {
        format!(
            "<iq xmlns='jabber:client' type='set' id='{name}'><query xmlns='jabber:iq:register'><username>{name}</username><password>pw</password></query></iq>"
        )
    };
    t.add_user("juliet", "pw").await;
    // Names taken count for nothing: they locked the address out for the hour.
    for attempt in 0..3 {
        let taken = c
            .request(&format!(
                "<iq xmlns='jabber:client' type='set' id='taken{attempt}'><query xmlns='jabber:iq:register'><username>juliet</username><password>pw</password></query></iq>"
            ))
            .await;
        assert_eq!(
            stanza_error(&taken).as_deref(),
            Some("conflict"),
            "{}",
            show(&taken)
        );
    }
    ok(&c.request(&register("tybalt")).await);
    ok(&c.request(&register("mercutio")).await);
    let refused = c.request(&register("benvolio")).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("resource-constraint"),
        "{}",
        show(&refused)
    );
    assert_eq!(t.server.accounts().list().await.unwrap().len(), 3);
}

/// M7: an account binds a bounded number of resources (RFC 6120 §7.6.2.1
/// `resource-constraint`); rebinding a bound resource still replaces it.
#[tokio::test]
async fn resources_per_account_are_bounded() {
    let t = TestServer::start_with(|config| config.limits.max_sessions_per_account = 2).await;
    t.add_user("juliet", "pw").await;
    let _balcony = t.login("juliet", "pw", "balcony").await;
    let _chamber = t.login("juliet", "pw", "chamber").await;
    let mut third = Client::connect(t.addr()).await;
    third.open().await;
    third.starttls(t.server.cert_path()).await;
    third.open().await;
    third
        .auth_scram(verona_auth::ScramHash::Sha256, "juliet", "pw")
        .await
        .unwrap();
    third.open().await;
    let bind = "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>garden</resource></bind></iq>";
    let refused = third.request(bind).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("resource-constraint"),
        "{}",
        show(&refused)
    );
    assert_eq!(
        refused
            .get_child("error", NS_CLIENT)
            .and_then(|e| e.attr("type")),
        Some("cancel")
    );
    // The same resource again is a replacement, not a third session.
    let _again = t.login("juliet", "pw", "balcony").await;
}

/// Found with real clients: with resumption turned off, enabling stream management with
/// `resume='true'` gives acknowledgements without a resumption id, and client state
/// indications do not end the stream.
#[tokio::test]
async fn stream_management_without_resumption_and_csi_keep_the_stream() {
    let t = TestServer::start_with(|c| c.c2s.resume_timeout_secs = 0).await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    juliet
        .send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = juliet.recv().await;
    assert!(enabled.is("enabled", "urn:xmpp:sm:3"), "{}", show(&enabled));
    assert_eq!(enabled.attr("id"), None);
    assert_eq!(enabled.attr("resume"), None);
    juliet.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    juliet.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let a = juliet.recv().await;
    assert_eq!(a.attr("h"), Some("0"), "{}", show(&a));
    juliet.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    let ping = "<iq xmlns='jabber:client' type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
    ok(&juliet.request(ping).await);
}

/// Found with real clients: disco#info to a contact's bare JID is answered by the server on
/// the account's behalf (its identity and its PEP service) to those who follow its presence;
/// to a stranger the account looks absent.
#[tokio::test]
async fn disco_info_about_a_contact_is_for_followers() {
    let (t, _juliet, mut romeo) = romeo_follows_juliet().await;
    t.add_user("nurse", "pw").await;
    let mut nurse = t.login("nurse", "pw", "kitchen").await;
    let info = "<iq xmlns='jabber:client' type='get' id='i' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
    let answer = romeo.request(info).await;
    ok(&answer);
    assert_eq!(answer.attr("from"), Some("juliet@localhost"));
    let identities: Vec<(String, String)> = answer
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap()
        .children()
        .filter(|c| c.name() == "identity")
        .map(|c| {
            (
                c.attr("category").unwrap().to_owned(),
                c.attr("type").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        identities,
        [
            ("account".to_owned(), "registered".to_owned()),
            ("pubsub".to_owned(), "pep".to_owned())
        ]
    );
    let refused = nurse.request(info).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("service-unavailable")
    );
}

/// M7: the blocklist is bounded (each entry is an outcast on every node of the account).
#[tokio::test]
async fn the_blocklist_is_bounded() {
    let t = TestServer::start_with(|config| config.limits.max_blocklist = 2).await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let block = |id: &str, jids: &[&str]| {
        let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
        format!(
            "<iq xmlns='jabber:client' type='set' id='{id}'><block xmlns='urn:xmpp:blocking'>{items}</block></iq>"
        )
    };
    ok(&juliet
        .request(&block("b1", &["tybalt@localhost", "paris@localhost"]))
        .await);
    // Blocking one already listed costs nothing.
    ok(&juliet.request(&block("b2", &["paris@localhost"])).await);
    let refused = juliet.request(&block("b3", &["rosaline@localhost"])).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("policy-violation"),
        "{}",
        show(&refused)
    );
}

/// A `[::]` listener hears IPv4 clients as `::ffff:a.b.c.d`: each is still limited as its own
/// address, not with every other IPv4 client as one IPv6 /64, all zero (found by the
/// operators' audit: one client's connections refused everyone's).
#[tokio::test]
async fn ipv4_clients_of_an_ipv6_listener_are_limited_each_as_itself() {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("no IPv6 to listen on here: the test is skipped");
        return;
    }
    let t = TestServer::start_with(|config| {
        config.c2s.listen = vec!["[::]:0".parse().unwrap()];
        config.limits.unauthenticated_per_address = 1;
    })
    .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], t.addr().port()));
    let neighbour = std::net::IpAddr::from([127, 0, 0, 2]);
    let mut held = Client::connect_from(neighbour, addr).await;
    held.open().await;
    let mut refused = Client::connect_from(neighbour, addr).await;
    refused.send_header("localhost").await;
    refused.expect_closed().await;
    let mut other = Client::connect(addr).await;
    let features = other.open().await;
    assert!(features.is("features", NS_STREAMS), "{}", show(&features));
}

/// M6: connections from one address are capped, authenticated ones included.
#[tokio::test]
async fn connections_are_capped_per_address() {
    let t = TestServer::start_with(|config| config.limits.connections_per_address = 2).await;
    t.add_user("juliet", "pw").await;
    let _balcony = t.login("juliet", "pw", "balcony").await;
    let _chamber = t.login("juliet", "pw", "chamber").await;
    let mut refused = Client::connect(t.addr()).await;
    refused.send_header("localhost").await;
    refused.expect_closed().await;
}

/// M1/M2: a client that sends faster than `read_bytes_per_sec` past its burst is read no
/// further until its bucket refills: its flood slows itself only.
#[tokio::test]
async fn a_fast_sender_is_slowed_down() {
    let t = TestServer::start_with(|config| {
        config.limits.read_bytes_per_sec = 1;
        config.limits.read_burst_bytes = 12 * 1024;
    })
    .await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let to_self = |body: &str| {
        format!(
            "<message xmlns='jabber:client' to='juliet@localhost/balcony'><body>{body}</body></message>"
        )
    };
    // Within the burst (the login spent some of it): read and delivered.
    let first = "x".repeat(8000);
    juliet.send(&to_self(&first)).await;
    let echoed = juliet.recv().await;
    assert_eq!(
        echoed.get_child("body", NS_CLIENT).map(|b| b.text()),
        Some(first)
    );
    // Past it: the server stops reading her stream before this one ends.
    juliet.send(&to_self(&"y".repeat(8000))).await;
    juliet.expect_nothing().await;
}

/// One account's sessions share `account_read_bytes_per_sec`: each is within its own
/// connection's rate, but together they are past the account's burst, and the account's
/// next session is read no further. Another account is not slowed.
#[tokio::test]
async fn an_accounts_sessions_share_one_rate() {
    let t = TestServer::start_with(|config| {
        config.limits.read_bytes_per_sec = 0;
        config.limits.account_read_bytes_per_sec = 1;
        // One message fits; a second, from any session of the account, does not.
        config.limits.account_read_burst_bytes = 10 * 1024;
    })
    .await;
    t.add_user("juliet", "pw").await;
    t.add_user("romeo", "pw").await;
    let mut balcony = t.login("juliet", "pw", "balcony").await;
    let mut chamber = t.login("juliet", "pw", "chamber").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let to_self = |from: &str, body: &str| {
        format!("<message xmlns='jabber:client' to='{from}'><body>{body}</body></message>")
    };
    let body_of = |el: &Element| el.get_child("body", NS_CLIENT).map(|b| b.text());
    // Within the account's burst: read and delivered.
    let first = "x".repeat(8000);
    balcony
        .send(&to_self("juliet@localhost/balcony", &first))
        .await;
    assert_eq!(body_of(&balcony.recv().await), Some(first));
    // The other session of the account takes it past the burst: not read.
    chamber
        .send(&to_self("juliet@localhost/chamber", &"y".repeat(8000)))
        .await;
    chamber.expect_nothing().await;
    // Romeo's account has its own.
    let his = "z".repeat(8000);
    romeo.send(&to_self("romeo@localhost/orchard", &his)).await;
    assert_eq!(body_of(&romeo.recv().await), Some(his));
}

/// A server whose accounts may read 40 KiB at once and then 1 byte a second (each
/// connection unlimited), with Juliet and Romeo logged in.
async fn rate_limited_pair() -> (TestServer, Client, Client) {
    let t = TestServer::start_with(|config| {
        config.limits.read_bytes_per_sec = 0;
        config.limits.account_read_bytes_per_sec = 1;
        config.limits.account_read_burst_bytes = 40 * 1024;
    })
    .await;
    t.add_user("juliet", "pw").await;
    t.add_user("romeo", "pw").await;
    let juliet = t.login("juliet", "pw", "balcony").await;
    let romeo = t.login("romeo", "pw", "orchard").await;
    (t, juliet, romeo)
}

/// Juliet publishes one 25 KB item to her open PEP node `urn:example:big`.
async fn publish_open_big_item(juliet: &mut Client) {
    let text = "x".repeat(25_000);
    ok(&juliet
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:example:big'><item id='only'><big xmlns='urn:example:big'>{text}</big></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>open</value></field></x></publish-options></pubsub></iq>"
        ))
        .await);
}

fn ping(id: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
}

/// The client's account is past its rate: what was read before its reading paused is
/// answered (one ping), nothing after it is (the next).
async fn expect_reading_paused(client: &mut Client) {
    ok(&client.request(&ping("ping1")).await);
    client.send(&ping("ping2")).await;
    client.expect_nothing().await;
}

/// Uses up all but about 5 KB of the 40 KiB burst of `client`'s account with a message to
/// itself, so that what its next answers count (an eighth of their size) is what takes it past.
async fn leave_5_kb_of_the_burst(client: &mut Client) {
    let me = client.jid().to_owned();
    let text = "w".repeat(36_000);
    client
        .send(&format!(
            "<message xmlns='jabber:client' to='{me}'><body>{text}</body></message>"
        ))
        .await;
    let echo = client.recv().await;
    assert_eq!(echo.attr("to"), Some(me.as_str()), "{}", show(&echo));
}

/// A short request can ask for a long answer (a node's items, an archive page): answers count
/// against the asking account's read rate, so such requests cannot be repeated at the rate
/// short requests are read (one account's 100-byte items requests made the server render
/// 139 MB/s of answers, a core's worth).
#[tokio::test]
async fn answers_count_against_the_askers_rate() {
    let (t, mut juliet, mut romeo) = rate_limited_pair().await;
    publish_open_big_item(&mut juliet).await;
    let get = |id: &str| {
        format!(
            "<iq xmlns='jabber:client' type='get' id='{id}' to='juliet@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:example:big'/></pubsub></iq>"
        )
    };
    // Two answers of 25 KB count about 3 KB each: the second takes the account past its
    // burst.
    leave_5_kb_of_the_burst(&mut romeo).await;
    for id in ["g1", "g2"] {
        let items = romeo.request(&get(id)).await;
        ok(&items);
        assert!(
            items
                .get_child("pubsub", "http://jabber.org/protocol/pubsub")
                .is_some()
        );
    }
    // What was read before the account's reading paused is answered; nothing after it is.
    expect_reading_paused(&mut romeo).await;
    // Another account has its own rate.
    t.add_user("nurse", "pw").await;
    let mut nurse = t.login("nurse", "pw", "kitchen").await;
    ok(&nurse.request(&ping("ping3")).await);
}

/// The last item a subscription brings is part of the answer: subscribing and unsubscribing
/// again cannot make the server send a node's 256 KiB item at the rate short requests are
/// read.
#[tokio::test]
async fn last_items_count_against_the_subscribers_rate() {
    let (_server, mut juliet, mut romeo) = rate_limited_pair().await;
    publish_open_big_item(&mut juliet).await;
    let change = |kind: &str, id: &str| {
        format!(
            "<iq xmlns='jabber:client' type='set' id='{id}' to='juliet@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><{kind} node='urn:example:big' jid='romeo@localhost/orchard'/></pubsub></iq>"
        )
    };
    let is_item = |el: &Element| {
        el.name() == "message"
            && el
                .get_child("event", "http://jabber.org/protocol/pubsub#event")
                .is_some()
    };
    // Two last items of 25 KB count about 3 KB each: the second takes the account past its
    // burst.
    leave_5_kb_of_the_burst(&mut romeo).await;
    ok(&romeo.request(&change("subscribe", "s1")).await);
    recv_until(&mut romeo, is_item).await;
    ok(&romeo.request(&change("unsubscribe", "u1")).await);
    ok(&romeo.request(&change("subscribe", "s2")).await);
    recv_until(&mut romeo, is_item).await;
    expect_reading_paused(&mut romeo).await;
}

/// Entering a room brings its occupants and history for one short presence: the newcomer's
/// account pays for them as for an answer, so leaving and entering again cannot make the
/// server render a room's history at the rate presences are read.
#[tokio::test]
async fn entering_a_room_counts_against_the_newcomers_rate() {
    let (_server, mut juliet, mut romeo) = rate_limited_pair().await;
    let join = |nick: &str| {
        format!(
            "<presence xmlns='jabber:client' to='room@chat.localhost/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
    };
    let is_subject =
        |el: &Element| el.name() == "message" && el.get_child("subject", NS_CLIENT).is_some();
    juliet.send(&join("Juliet")).await;
    recv_until(&mut juliet, is_subject).await;
    ok(&juliet
        .request("<iq xmlns='jabber:client' type='set' id='instant' to='room@chat.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")
        .await);
    let said = "x".repeat(25_000);
    juliet
        .send(&format!(
            "<message xmlns='jabber:client' to='room@chat.localhost' type='groupchat'><body>{said}</body></message>"
        ))
        .await;
    recv_until(&mut juliet, |el| el.attr("type") == Some("groupchat")).await;
    // Each entry (25 KB of history) counts about 3 KB: the second goes past the burst.
    leave_5_kb_of_the_burst(&mut romeo).await;
    romeo.send(&join("Romeo")).await;
    recv_until(&mut romeo, is_subject).await;
    romeo
        .send("<presence xmlns='jabber:client' to='room@chat.localhost/Romeo' type='unavailable'/>")
        .await;
    recv_until(&mut romeo, |el| el.attr("type") == Some("unavailable")).await;
    romeo.send(&join("Romeo")).await;
    recv_until(&mut romeo, is_subject).await;
    expect_reading_paused(&mut romeo).await;
}

/// What one account's PEP nodes hold is bounded in bytes altogether (`[pubsub] max_pep_bytes`),
/// its presence aside: a full account can still go online and change its presence.
#[tokio::test]
async fn an_accounts_pep_nodes_hold_a_bounded_number_of_bytes() {
    let t = TestServer::start_with(|config| config.pubsub.max_pep_bytes = 30_000).await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let publish = |id: &str, node: &str, bytes: usize| {
        let text = "x".repeat(bytes);
        format!(
            "<iq xmlns='jabber:client' type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{node}'><item id='current'><big xmlns='urn:example:big'>{text}</big></item></publish></pubsub></iq>"
        )
    };
    ok(&juliet
        .request(&publish("p1", "urn:example:one", 20_000))
        .await);
    let refused = juliet
        .request(&publish("p2", "urn:example:two", 20_000))
        .await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("policy-violation"));
    // Replacing the item frees its bytes; so does a smaller one elsewhere fit.
    ok(&juliet
        .request(&publish("p3", "urn:example:one", 25_000))
        .await);
    ok(&juliet
        .request(&publish("p4", "urn:example:two", 1_000))
        .await);
    // Nothing refused was kept.
    let items = juliet
        .request("<iq xmlns='jabber:client' type='get' id='i1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:example:two'/></pubsub></iq>")
        .await;
    let sizes: Vec<usize> = items
        .get_child("pubsub", "http://jabber.org/protocol/pubsub")
        .and_then(|p| p.get_child("items", "http://jabber.org/protocol/pubsub"))
        .map(|i| {
            i.children()
                .map(|item| {
                    item.text().len() + item.children().map(|c| c.text().len()).sum::<usize>()
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(sizes, [1_000], "{}", show(&items));
    // Presence is not metered.
    juliet
        .send("<presence xmlns='jabber:client'><status>full</status></presence>")
        .await;
    let own = recv_until(&mut juliet, |el| el.name() == "presence").await;
    assert_eq!(own.attr("type"), None, "{}", show(&own));
}

/// The nodes one account owns on `pubsub.<domain>` hold a bounded number of bytes together
/// (`[pubsub] max_owner_bytes`), whoever publishes to them.
#[tokio::test]
async fn the_nodes_an_account_owns_hold_a_bounded_number_of_bytes() {
    let t = TestServer::start_with(|config| config.pubsub.max_owner_bytes = 30_000).await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    for node in ["one", "two"] {
        ok(&juliet
            .request(&format!(
                "<iq xmlns='jabber:client' type='set' id='c-{node}' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='{node}'/></pubsub></iq>"
            ))
            .await);
    }
    let publish = |node: &str, bytes: usize| {
        let text = "x".repeat(bytes);
        format!(
            "<iq xmlns='jabber:client' type='set' id='p-{node}' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{node}'><item id='current'><big xmlns='urn:example:big'>{text}</big></item></publish></pubsub></iq>"
        )
    };
    ok(&juliet.request(&publish("one", 20_000)).await);
    let refused = juliet.request(&publish("two", 20_000)).await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("policy-violation"));
    ok(&juliet.request(&publish("two", 5_000)).await);
}

/// M7 for rooms: each room is a service of its own, and the rooms one account makes are
/// bounded over all of `chat.<domain>` by `[pubsub] max_nodes_per_owner`, whether made by a
/// classic join or a native create; a temporary room one leaves closes, and frees its place.
/// The bound on PEP nodes is not theirs.
#[tokio::test]
async fn rooms_per_account_are_bounded() {
    let t = TestServer::start_with(|c| {
        c.pubsub.max_nodes_per_owner = 2;
        c.pubsub.max_pep_nodes = 1;
    })
    .await;
    t.add_user("juliet", "pw").await;
    t.add_user("romeo", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let join = |room: &str| {
        format!(
            "<presence xmlns='jabber:client' to='{room}@chat.localhost/JC'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
    };
    for room in ["one", "two"] {
        juliet.send(&join(room)).await;
        let own = juliet.recv().await;
        assert_eq!(own.attr("type"), None, "{}", show(&own));
        let subject = juliet.recv().await;
        assert_eq!(subject.name(), "message", "{}", show(&subject));
    }
    juliet.send(&join("three")).await;
    let refused = juliet.recv().await;
    assert_eq!(refused.attr("type"), Some("error"), "{}", show(&refused));
    assert_eq!(stanza_error(&refused).as_deref(), Some("not-allowed"));
    let create = juliet
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='c' to='chat.localhost'><pubsub xmlns='{PUBSUB}'><create node='four'/></pubsub></iq>"
        ))
        .await;
    assert_eq!(stanza_error(&create).as_deref(), Some("policy-violation"));
    let condition = create
        .get_child("error", "jabber:client")
        .and_then(|e| e.get_child("max-nodes-exceeded", PUBSUB_ERRORS));
    assert!(condition.is_some(), "{}", show(&create));
    // Others still make rooms.
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    romeo.send(&join("three").replace("/JC", "/Romeo")).await;
    let own = romeo.recv().await;
    assert_eq!(own.attr("type"), None, "{}", show(&own));
    // She leaves one: the temporary room closes, and she may make another.
    juliet
        .send("<presence xmlns='jabber:client' type='unavailable' to='one@chat.localhost/JC'/>")
        .await;
    juliet.recv().await;
    juliet.send(&join("five")).await;
    let own = juliet.recv().await;
    assert_eq!(own.attr("type"), None, "{}", show(&own));
}

/// XEP-0352: an inactive client is not woken by presence (held, folded to each contact's
/// latest), and gets a message at once, after the presence held before it; becoming active
/// releases what is held.
#[tokio::test]
async fn an_inactive_client_gets_messages_at_once_and_presence_folded() {
    let (_t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    romeo.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    let ping = "<iq xmlns='jabber:client' type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
    // Iqs are answered at once.
    ok(&romeo.request(ping).await);
    for show in ["away", "xa", "dnd"] {
        juliet
            .send(&format!(
                "<presence xmlns='jabber:client'><show>{show}</show></presence>"
            ))
            .await;
    }
    settle(&mut juliet).await;
    romeo.expect_nothing().await;
    juliet
        .send("<message xmlns='jabber:client' type='chat' to='romeo@localhost'><body>wake up</body></message>")
        .await;
    let presence = romeo.recv().await;
    assert_eq!(presence.name(), "presence", "{}", show(&presence));
    assert_eq!(
        presence.get_child("show", NS_CLIENT).map(|s| s.text()),
        Some("dnd".to_owned())
    );
    let message = romeo.recv().await;
    assert_eq!(message.name(), "message", "{}", show(&message));
    romeo.expect_nothing().await;
    juliet
        .send("<presence xmlns='jabber:client'><show>chat</show></presence>")
        .await;
    romeo.expect_nothing().await;
    // A message kept for its hint (XEP-0334 `<store/>`: a file shared, no body) is one
    // someone sent too: it is archived, and comes at once.
    juliet
        .send("<message xmlns='jabber:client' type='chat' to='romeo@localhost'><store xmlns='urn:xmpp:hints'/><x xmlns='jabber:x:oob'><url>https://example.org/f</url></x></message>")
        .await;
    let presence = romeo.recv().await;
    assert_eq!(
        presence.get_child("show", NS_CLIENT).map(|s| s.text()),
        Some("chat".to_owned())
    );
    let message = romeo.recv().await;
    assert!(message.has_child("x", "jabber:x:oob"), "{}", show(&message));
    romeo.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    romeo.expect_nothing().await;
}

/// An address that reconnects as fast as it is cut off gets `new_connections_burst`
/// connections at once, then `new_connections_per_minute`: the rest are closed before any
/// TLS or XMPP is spent on them, while another address connects as usual.
#[tokio::test]
async fn new_connections_per_address_are_limited_over_time() {
    let t = TestServer::start_with(|c| {
        c.limits.new_connections_burst = 3;
        c.limits.new_connections_per_minute = 1;
    })
    .await;
    let addr = t.addr();
    let connect_from = |source: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap()
    };
    // Does the server open a stream on this connection, or close it?
    async fn answered(mut tcp: tokio::net::TcpStream) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
        if tcp.write_all(header.as_bytes()).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(TIMEOUT, tcp.read(&mut buf)).await;
        matches!(read, Ok(Ok(n)) if n > 0)
    }
    let mut kept = Vec::new();
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let tcp = connect_from("127.0.0.1").await;
        let (read, write) = tcp.into_split();
        let tcp = read.reunite(write).unwrap();
        outcomes.push(answered(tcp).await);
    }
    assert_eq!(outcomes, [true, true, true, false, false]);
    kept.push(connect_from("127.0.0.2").await);
    assert!(
        answered(kept.pop().unwrap()).await,
        "another address is not limited"
    );
}

/// The `(jid, name)` of each `<item/>` of a reply's `<query xmlns='{ns}'/>` or other child.
fn listed(reply: &Element, child: &str, ns: &str) -> Vec<(String, Option<String>)> {
    reply
        .get_child(child, ns)
        .into_iter()
        .flat_map(|list| list.children())
        .map(|item| {
            let attr = |name| item.attr(name).map(str::to_owned);
            (attr("jid").unwrap_or_default(), attr("name"))
        })
        .collect()
}

/// A JID a client writes in a payload with its domain's final dot is the account's (RFC 7622
/// §3.2): an archive query `with` it finds the conversation, a roster item set under both
/// spellings is one item, a pubsub affiliation and a block apply to the account. Before, each
/// was kept as written and matched no one (identity audit F1: a block, a ban or a roster item
/// that did nothing, and two roster items for one contact).
#[tokio::test]
async fn a_jid_written_with_a_final_dot_is_the_account() {
    const ROSTER: &str = "jabber:iq:roster";
    const BLOCKING: &str = "urn:xmpp:blocking";
    const MAM: &str = "urn:xmpp:mam:2";
    let (t, mut juliet, mut romeo) = romeo_follows_juliet().await;
    t.add_user("nurse", "pw").await;

    romeo
        .send("<message xmlns='jabber:client' type='chat' to='juliet@localhost' id='m1'><body>Lady!</body></message>")
        .await;
    recv_until(&mut juliet, |el| el.name() == "message").await;
    let with = |jid: &str| {
        format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field><field var='with'><value>{jid}</value></field></x>"
        )
    };
    for jid in [
        "romeo@localhost",
        "romeo@localhost.",
        "romeo@localhost./orchard",
    ] {
        let (found, fin) = mam_page(&mut juliet, None, &with(jid)).await;
        ok(&fin);
        assert_eq!(found.len(), 1, "with {jid}");
    }

    for (id, jid, name) in [
        ("r1", "nurse@localhost.", "Dot"),
        ("r2", "nurse@localhost", "Plain"),
    ] {
        let set = format!(
            "<iq xmlns='jabber:client' type='set' id='{id}'><query xmlns='{ROSTER}'><item jid='{jid}' name='{name}'/></query></iq>"
        );
        ok(&juliet.request(&set).await);
    }
    let roster = juliet
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' id='r3'><query xmlns='{ROSTER}'/></iq>"
        ))
        .await;
    let nurse: Vec<_> = listed(&roster, "query", ROSTER)
        .into_iter()
        .filter(|(jid, _)| jid.starts_with("nurse"))
        .collect();
    assert_eq!(
        nurse,
        [("nurse@localhost".to_owned(), Some("Plain".to_owned()))]
    );

    let create = format!(
        "<iq xmlns='jabber:client' type='set' id='c' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><create node='square'/></pubsub></iq>"
    );
    ok(&juliet.request(&create).await);
    let affiliate = format!(
        "<iq xmlns='jabber:client' type='set' id='a' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}#owner'><affiliations node='square'><affiliation jid='romeo@localhost.' affiliation='publisher'/></affiliations></pubsub></iq>"
    );
    ok(&juliet.request(&affiliate).await);
    let publish = format!(
        "<iq xmlns='jabber:client' type='set' id='p' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><publish node='square'><item id='i'><p xmlns='urn:example'>hark</p></item></publish></pubsub></iq>"
    );
    ok(&romeo.request(&publish).await);

    let block = format!(
        "<iq xmlns='jabber:client' type='set' id='b'><block xmlns='{BLOCKING}'><item jid='romeo@localhost.'/></block></iq>"
    );
    ok(&juliet.request(&block).await);
    let blocklist = format!(
        "<iq xmlns='jabber:client' type='get' id='bl'><blocklist xmlns='{BLOCKING}'/></iq>"
    );
    let list = juliet.request(&blocklist).await;
    assert_eq!(
        listed(&list, "blocklist", BLOCKING),
        [("romeo@localhost".to_owned(), None)]
    );
    // What the sets and the block pushed, kept or still arriving.
    while tokio::time::timeout(QUIET, juliet.recv()).await.is_ok() {}
    romeo
        .send("<message xmlns='jabber:client' type='chat' to='juliet@localhost' id='m2'><body>Blocked?</body></message>")
        .await;
    juliet.expect_nothing().await;
    let unblock = format!(
        "<iq xmlns='jabber:client' type='set' id='u'><unblock xmlns='{BLOCKING}'><item jid='romeo@localhost.'/></unblock></iq>"
    );
    ok(&juliet.request(&unblock).await);
    let list = juliet.request(&blocklist).await;
    assert_eq!(listed(&list, "blocklist", BLOCKING), []);
}

/// The salt and iteration count a SCRAM-SHA-256 challenge shows for `user`.
async fn scram_challenge(t: &TestServer, user: &str) -> (String, String) {
    use base64::Engine;
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut client = Client::connect(t.addr()).await;
    client.domain = "localhost".to_owned();
    client.open().await;
    client.starttls(t.server.cert_path()).await;
    client.open().await;
    let first = base64.encode(format!("n,,n={user},r=clientnonce"));
    client
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ))
        .await;
    let challenge = client.recv().await;
    assert_eq!(challenge.name(), "challenge", "{}", show(&challenge));
    let text = String::from_utf8(base64.decode(challenge.text()).unwrap()).unwrap();
    let field = |name: &str| {
        let found = text.split(',').find_map(|f| f.strip_prefix(name));
        found
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_owned()
    };
    (field("s="), field("i="))
}

/// RFC 6120 §13.5 (and docs/security.md): a SCRAM challenge does not tell whether an
/// account exists: every spelling of a missing name gets one salt, kept across restarts, with
/// the iteration count accounts are made with (found by audit round 27: `nosuch` and `NoSuch`
/// got different salts, and 4,096 iterations under `scram_iterations = 10000`).
#[tokio::test]
async fn a_challenge_does_not_tell_whether_an_account_exists() {
    let t = TestServer::start_with(|config| config.auth.scram_iterations = 10_000).await;
    t.add_user("alice", "pw").await;
    let alice = scram_challenge(&t, "alice").await;
    assert_eq!(scram_challenge(&t, "ALICE").await, alice);
    let missing = scram_challenge(&t, "nosuch").await;
    assert_eq!(missing.1, "10000");
    assert_eq!(scram_challenge(&t, "NoSuch").await, missing);
    assert_ne!(missing.0, alice.0);
    // Restarted with the default count: the same salt.
    let t = t.restarted().await;
    assert_eq!(scram_challenge(&t, "nosuch").await.0, missing.0);
    assert_eq!(scram_challenge(&t, "alice").await, alice);
}

/// A database emptied since the server last ran (truncated, or replaced by an empty file) is
/// refused at start with a clear error, not taken for a new server with no accounts (found by
/// audit round 27: every account was gone without a word). What a first start leaves is no
/// empty database: the schema is in it before the data directory's `secret` is written.
#[tokio::test]
async fn an_emptied_database_is_refused_at_start() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    let TestServer { server, dir } = t;
    server.shutdown().await;
    let data = dir.path();
    let db = data.join("verona.db");
    assert!(
        std::fs::metadata(&db).unwrap().len() > 0,
        "a first start leaves a schema"
    );
    std::fs::write(&db, b"").unwrap();
    for journal in ["verona.db-wal", "verona.db-shm"] {
        let _ = std::fs::remove_file(data.join(journal));
    }
    let refused = verona::RunningServer::start(test_config(dir.path())).await;
    let error = format!(
        "{:#}",
        refused.err().expect("an emptied database is refused")
    );
    assert!(error.contains("is empty"), "{error}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "left as it was");
}
