//! XEP-0163 PEP at accounts' bare JIDs against the real server: auto-create, notifications from
//! the bare JID, and the `presence` access model answered by the `presence` node's subscribers
//! (XEP-0207 §3).

mod common;

use common::*;
use minidom::Element;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const DATA: &str = "jabber:x:data";

/// A publish to one's own PEP (no `to`), optionally with an access model precondition.
async fn publish(
    c: &mut Client,
    id: &str,
    node: &str,
    text: &str,
    access: Option<&str>,
) -> Element {
    let options = access
        .map(|model| format!("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>{model}</value></field></x></publish-options>"))
        .unwrap_or_default();
    c.request(&format!(
        "<iq xmlns='jabber:client' type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='current'><mood xmlns='urn:example:mood'>{text}</mood></item></publish>{options}</pubsub></iq>"
    ))
    .await
}

async fn subscribe(c: &mut Client, id: &str, owner: &str, node: &str) -> Element {
    let me = c.jid().to_owned();
    c.request(&format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' to='{owner}'><pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{me}'/></pubsub></iq>"
    ))
    .await
}

fn mood(message: &Element) -> String {
    assert_eq!(
        message.attr("from"),
        Some("juliet@localhost"),
        "{}",
        show(message)
    );
    message
        .get_child("event", EVENT)
        .and_then(|e| e.get_child("items", EVENT))
        .and_then(|i| i.get_child("item", EVENT))
        .and_then(|i| i.get_child("mood", "urn:example:mood"))
        .map(|m| m.text())
        .unwrap_or_else(|| panic!("a mood notification: {}", show(message)))
}

#[tokio::test]
async fn open_pep_node_auto_created_and_notified_from_the_bare_jid() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    ok(&publish(&mut juliet, "p1", "urn:example:mood", "happy", Some("open")).await);
    let reply = subscribe(&mut romeo, "s1", "juliet@localhost", "urn:example:mood").await;
    ok(&reply);
    // The last item comes on subscription (PEP sends current items).
    assert_eq!(mood(&romeo.recv().await), "happy");

    ok(&publish(
        &mut juliet,
        "p2",
        "urn:example:mood",
        "in love",
        Some("open"),
    )
    .await);
    assert_eq!(mood(&romeo.recv().await), "in love");
    let items = romeo
        .request(&format!("<iq xmlns='jabber:client' type='get' id='i1' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><items node='urn:example:mood'/></pubsub></iq>"))
        .await;
    ok(&items);
    assert!(show(&items).contains("in love"));

    // Discovery: the account hosts a PEP service; its nodes are listed to those who may use
    // them (an authorize node can be asked for; a whitelist node is invisible to outsiders).
    ok(&publish(
        &mut juliet,
        "p3",
        "urn:example:diary",
        "secret",
        Some("whitelist"),
    )
    .await);
    let info = juliet
        .request("<iq xmlns='jabber:client' type='get' id='d1' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let text = show(&info);
    assert!(
        text.contains("category='pubsub'") && text.contains("type='pep'"),
        "{text}"
    );
    let items = romeo
        .request("<iq xmlns='jabber:client' type='get' id='d2' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    ok(&items);
    let text = show(&items);
    assert!(
        text.contains("urn:example:mood") && text.contains("'presence'"),
        "{text}"
    );
    assert!(!text.contains("urn:example:diary"), "{text}");

    // Nobody hosts a PEP service for an account that does not exist.
    let reply = romeo
        .request(&format!("<iq xmlns='jabber:client' type='get' id='i2' to='ghost@localhost'><pubsub xmlns='{PUBSUB}'><items node='urn:example:mood'/></pubsub></iq>"))
        .await;
    assert_eq!(stanza_error(&reply).as_deref(), Some("service-unavailable"));
}

/// A subscription gets a node's newest item only, however many the node keeps: sending all of
/// them would turn one subscribe iq into `max_items` messages (issue #11).
/// `[limits] broadcast_bytes_per_sec`: a publish reaches every subscriber of the node, so past
/// the publisher's burst of bytes one is refused with `resource-constraint` (type `wait`),
/// notifies nobody and replaces no item.
#[tokio::test]
async fn publish_floods_are_refused_at_the_publisher() {
    let t = TestServer::start_with(|config| {
        config.limits.broadcast_burst_bytes = 4096;
        config.limits.broadcast_bytes_per_sec = 1;
    })
    .await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    // About 1,200 bytes each as a copy counts (its 900 and what the server adds): three fit in
    // the burst.
    let said = |n: usize| format!("{n}{}", "o".repeat(900));
    ok(&publish(
        &mut juliet,
        "p0",
        "urn:example:mood",
        &said(0),
        Some("open"),
    )
    .await);
    ok(&subscribe(&mut romeo, "s1", "juliet@localhost", "urn:example:mood").await);
    assert_eq!(mood(&romeo.recv().await), said(0));
    let mut refused = Vec::new();
    for n in 1..5 {
        let reply = publish(
            &mut juliet,
            &format!("p{n}"),
            "urn:example:mood",
            &said(n),
            None,
        )
        .await;
        if reply.attr("type") == Some("error") {
            assert_eq!(stanza_error(&reply).as_deref(), Some("resource-constraint"));
            let error = reply.get_child("error", "jabber:client").unwrap();
            assert_eq!(error.attr("type"), Some("wait"), "{}", show(&reply));
            refused.push(n);
        } else {
            ok(&reply);
        }
    }
    assert_eq!(refused, [3, 4]);
    assert_eq!(mood(&romeo.recv().await), said(1));
    assert_eq!(mood(&romeo.recv().await), said(2));
    romeo.expect_nothing().await;
    let items = romeo
        .request(&format!("<iq xmlns='jabber:client' type='get' id='i1' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><items node='urn:example:mood'/></pubsub></iq>"))
        .await;
    let kept: Vec<String> = items
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .into_iter()
        .flat_map(|i| i.children())
        .filter_map(|item| {
            item.get_child("mood", "urn:example:mood")
                .map(Element::text)
        })
        .collect();
    assert_eq!(kept, [said(2)]);
}

#[tokio::test]
async fn a_new_subscriber_gets_the_newest_item_only() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let create = format!(
        "<iq xmlns='jabber:client' type='set' id='c1'><pubsub xmlns='{PUBSUB}'><create node='urn:example:diary'/><configure><x xmlns='{DATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field><field var='pubsub#max_items'><value>10</value></field></x></configure></pubsub></iq>"
    );
    ok(&juliet.request(&create).await);
    for (n, text) in ["one", "two", "three"].iter().enumerate() {
        ok(&juliet
            .request(&format!(
                "<iq xmlns='jabber:client' type='set' id='p{n}'><pubsub xmlns='{PUBSUB}'><publish node='urn:example:diary'><item id='{text}'><mood xmlns='urn:example:mood'>{text}</mood></item></publish></pubsub></iq>"
            ))
            .await);
    }
    ok(&subscribe(&mut romeo, "s1", "juliet@localhost", "urn:example:diary").await);
    assert_eq!(mood(&romeo.recv().await), "three");
    romeo.expect_nothing().await;
    // All three are still there for whoever asks.
    let items = romeo
        .request(&format!("<iq xmlns='jabber:client' type='get' id='i1' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><items node='urn:example:diary'/></pubsub></iq>"))
        .await;
    let ids: Vec<&str> = items
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .map(|i| i.children().filter_map(|item| item.attr("id")).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 3, "{}", show(&items));
}

/// The default PEP access model is `presence`: only subscribers of the owner's `presence` node,
/// which Juliet approves through the authorization form, may subscribe.
#[tokio::test]
async fn presence_access_follows_the_presence_node() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    ok(&publish(&mut juliet, "p1", "urn:example:mood", "pensive", None).await);
    let refused = subscribe(&mut romeo, "s1", "juliet@localhost", "urn:example:mood").await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("not-authorized"),
        "{}",
        show(&refused)
    );

    // Every account has its presence node, authorize (XEP-0207 §3); Romeo asks, Juliet approves.
    let pending = subscribe(&mut romeo, "s2", "juliet@localhost", "presence").await;
    ok(&pending);
    assert!(show(&pending).contains("pending"), "{}", show(&pending));
    let request = juliet.recv().await;
    let form = request
        .get_child("x", DATA)
        .unwrap_or_else(|| panic!("{}", show(&request)));
    assert!(show(form).contains("romeo@localhost"));
    // Ex. 11 shape: the answer goes to the server.
    juliet
        .send("<message xmlns='jabber:client' to='localhost'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field><field var='pubsub#node'><value>presence</value></field><field var='pubsub#subscriber_jid'><value>romeo@localhost/orchard</value></field><field var='pubsub#allow'><value>true</value></field></x></message>")
        .await;
    let approved = romeo.recv().await;
    assert!(
        show(&approved).contains("subscribed"),
        "{}",
        show(&approved)
    );

    let reply = subscribe(&mut romeo, "s3", "juliet@localhost", "urn:example:mood").await;
    ok(&reply);
    assert_eq!(mood(&romeo.recv().await), "pensive");
}

/// Juliet online with capabilities that ask for presence as events; her own presence came
/// back as one.
async fn native_juliet(t: &TestServer) -> Client {
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    juliet.presence_with_caps("", NATIVE, true).await;
    assert!(juliet.recv().await.has_child("event", EVENT));
    juliet
}

/// Approves `subscriber`'s pending subscription to the owner's presence node.
async fn approve(owner: &mut Client, subscriber: &str) {
    let request = owner.recv().await;
    assert!(
        request.has_child("x", DATA),
        "the Ex. 10 form: {}",
        show(&request)
    );
    assert!(show(&request).contains(subscriber), "{}", show(&request));
    owner
        .send(&format!("<message xmlns='jabber:client' to='{}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field><field var='pubsub#node'><value>presence</value></field><field var='pubsub#subscriber_jid'><value>{subscriber}</value></field><field var='pubsub#allow'><value>true</value></field></x></message>", owner.jid().split('/').next().unwrap()))
        .await;
}

/// The item of a presence notification: (item id, the `<presence/>` inside).
fn presence_item(message: &Element) -> (String, Element) {
    assert_eq!(
        message.attr("from"),
        Some("juliet@localhost"),
        "{}",
        show(message)
    );
    let item = message
        .get_child("event", EVENT)
        .and_then(|e| e.get_child("items", EVENT))
        .filter(|items| items.attr("node") == Some("presence"))
        .and_then(|items| items.get_child("item", EVENT))
        .unwrap_or_else(|| panic!("a presence item: {}", show(message)));
    let presence = item
        .get_child("presence", NS_CLIENT)
        .expect("the presence payload");
    (
        item.attr("id").unwrap_or_default().to_owned(),
        presence.clone(),
    )
}

/// Seed Ex. 3 and 4: presence published natively (item id = resource, unique notification
/// ids), a classic `<presence/>` becomes the same publish, and a cut connection retracts its
/// item.
#[tokio::test]
async fn presence_is_a_pep_node() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    // Presence goes to available resources: both announce theirs, and hear it back.
    for c in [&mut romeo, &mut nurse] {
        c.send("<presence xmlns='jabber:client'/>").await;
        let own = c.recv().await;
        assert_eq!(own.attr("from"), Some(c.jid()), "{}", show(&own));
    }
    // Presence subscriptions are the account's (bare JID), as in a roster.
    for (c, who) in [
        (&mut romeo, "romeo@localhost"),
        (&mut nurse, "nurse@localhost"),
    ] {
        let reply = c
            .request(&format!("<iq xmlns='jabber:client' type='set' id='s-{who}' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='presence' jid='{who}'/></pubsub></iq>"))
            .await;
        ok(&reply);
        approve(&mut juliet, who).await;
    }
    for c in [&mut romeo, &mut nurse] {
        assert!(show(&c.recv().await).contains("subscribed"));
    }

    // A presence item in someone else's name is published in the publisher's.
    let forged = juliet
        .request("<iq xmlns='jabber:client' type='set' id='forge'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='presence'><item><presence from='romeo@localhost/mobile' xmlns='jabber:client'/></item></publish></pubsub></iq>")
        .await;
    ok(&forged);
    for c in [&mut romeo, &mut nurse] {
        let (_, presence) = presence_item(&c.recv().await);
        assert_eq!(presence.attr("from"), Some("juliet@localhost/balcony"));
    }
    // Juliet's own available resource hears its presence too (RFC 6121 §4.2.2).
    assert_eq!(presence_item(&juliet.recv().await).0, "balcony");

    // Seed Ex. 3, verbatim but for the domain: no item id.
    let reply = juliet
        .request("<iq from='juliet@localhost/balcony' type='set' id='pres1' xmlns='jabber:client'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='presence'><item><presence from='juliet@localhost/balcony' xmlns='jabber:client'><status>Moping</status></presence></item></publish></pubsub></iq>")
        .await;
    ok(&reply);
    assert!(
        show(&reply).contains("id='balcony'") || show(&reply).contains("id=\"balcony\""),
        "the item id is the resource: {}",
        show(&reply)
    );
    let to_romeo = romeo.recv().await;
    let to_nurse = nurse.recv().await;
    assert_ne!(
        to_romeo.attr("id"),
        to_nurse.attr("id"),
        "unique notification ids"
    );
    // As in Ex. 4: addressed to each subscriber's session.
    assert_eq!(to_romeo.attr("to"), Some("romeo@localhost/mobile"));
    assert_eq!(to_nurse.attr("to"), Some("nurse@localhost/chamber"));
    for message in [&to_romeo, &to_nurse] {
        let (id, presence) = presence_item(message);
        assert_eq!(id, "balcony");
        assert_eq!(
            presence.get_child("status", NS_CLIENT).unwrap().text(),
            "Moping"
        );
        let replyto = message
            .get_child("addresses", "http://jabber.org/protocol/address")
            .and_then(|a| a.get_child("address", "http://jabber.org/protocol/address"))
            .expect("XEP-0033 replyto");
        assert_eq!(replyto.attr("jid"), Some("juliet@localhost/balcony"));
        // Said once, in the `replyto` and the presence itself (seed Ex. 4), not again as an
        // item attribute.
        assert_eq!(presence.attr("from"), Some("juliet@localhost/balcony"));
        let item = message
            .get_child("event", EVENT)
            .and_then(|e| e.get_child("items", EVENT))
            .and_then(|items| items.get_child("item", EVENT))
            .unwrap();
        assert_eq!(item.attr("publisher"), None, "{}", show(message));
    }
    assert_eq!(presence_item(&juliet.recv().await).0, "balcony");

    // A session of Romeo's that comes online gets Juliet's current presence; its
    // capabilities lack `presence+notify`, so it is a classic session and gets `<presence/>`.
    // RFC 6121 §4.2.2: it gets its other resource's presence and its own, which goes to
    // that other resource too; no contact follows Romeo, so nobody else hears it. The
    // services are in different shards: the order between accounts is not fixed.
    let mut tablet = t.login("romeo", "pw", "tablet").await;
    tablet.presence_with_caps("", CLASSIC, true).await;
    let got = tablet.recv_sorted(3).await;
    assert_eq!(
        senders(&got),
        [
            "juliet@localhost/balcony",
            "romeo@localhost/mobile",
            "romeo@localhost/tablet"
        ]
    );
    let current = &got[0];
    assert_eq!(current.name(), "presence", "{}", show(current));
    assert_eq!(
        current.get_child("status", NS_CLIENT).unwrap().text(),
        "Moping"
    );
    tablet.expect_nothing().await;
    romeo.recv_from("romeo@localhost/tablet").await;
    romeo.expect_nothing().await;

    // A classic client's presence broadcast is the same publish.
    let mut chamber = t.login("juliet", "pw", "chamber").await;
    chamber
        .send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    for c in [&mut romeo, &mut nurse] {
        let (id, presence) = presence_item(&c.recv().await);
        assert_eq!(id, "chamber");
        assert_eq!(
            presence.get_child("show", NS_CLIENT).unwrap().text(),
            "away"
        );
        assert_eq!(presence.attr("from"), Some("juliet@localhost/chamber"));
    }

    // Juliet's other available resource hears it too (a native one: as an event).
    assert_eq!(presence_item(&juliet.recv().await).0, "chamber");

    // The socket is cut without unavailable presence: the item is retracted.
    drop(chamber);
    for c in [&mut romeo, &mut nurse, &mut juliet] {
        assert_eq!(retracted(&c.recv().await), "chamber");
    }
    // Unavailable presence retracts too; the publisher, now unavailable, hears nothing.
    juliet
        .send("<presence xmlns='jabber:client' type='unavailable'/>")
        .await;
    for c in [&mut romeo, &mut nurse] {
        assert_eq!(retracted(&c.recv().await), "balcony");
    }
    juliet.expect_nothing().await;
}

/// Asserts `el` is a `<presence type=kind from=from/>`.
fn assert_presence(el: &Element, kind: &str, from: &str) {
    assert_eq!(
        (el.name(), el.attr("type"), el.attr("from")),
        ("presence", Some(kind), Some(from)),
        "{}",
        show(el)
    );
}

/// The id of the item a retraction notification names.
fn retracted(message: &Element) -> String {
    message
        .get_child("event", EVENT)
        .and_then(|e| e.get_child("items", EVENT))
        .and_then(|i| i.get_child("retract", EVENT))
        .and_then(|r| r.attr("id"))
        .unwrap_or_else(|| panic!("a retraction: {}", show(message)))
        .to_owned()
}

/// A pending request is asked again when the owner comes online (XEP-0207 §4).
#[tokio::test]
async fn pending_requests_are_asked_again_at_login() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let reply = romeo
        .request(&format!("<iq xmlns='jabber:client' type='set' id='s1' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='presence' jid='romeo@localhost'/></pubsub></iq>"))
        .await;
    ok(&reply);
    assert!(show(&reply).contains("pending"));

    let mut juliet = t.login("juliet", "pw", "balcony").await;
    juliet.expect_nothing().await;
    juliet.presence_with_caps("", CLASSIC, true).await;
    // Her capabilities lack `presence+notify`, so she is asked the classic way.
    let request = juliet.recv().await;
    assert_presence(&request, "subscribe", "romeo@localhost");
    juliet.recv_from("juliet@localhost/balcony").await;
    // Only at the first presence of a session.
    juliet
        .send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    juliet.recv_from("juliet@localhost/balcony").await;
    juliet.expect_nothing().await;

    // A native session announcing itself with a presence publish gets the Ex. 10 form.
    let mut native = t.login("juliet", "pw", "tower").await;
    native.publish_presence_with_caps("", NATIVE, true).await;
    let request = native.recv().await;
    let form = request
        .get_child("x", DATA)
        .unwrap_or_else(|| panic!("{}", show(&request)));
    assert!(show(form).contains("romeo@localhost"), "{}", show(form));
}

/// Juliet online, with a mood node whose subscribers she approves (`authorize`).
async fn juliets_authorize_mood() -> (TestServer, Client) {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    ok(&publish(
        &mut juliet,
        "p1",
        "urn:example:mood",
        "shy",
        Some("authorize"),
    )
    .await);
    (t, juliet)
}

/// XEP-0060 §8.6: a request to another PEP node, made while its owner is offline, reaches her
/// at her next login as the form, the classic `<presence/>` she logs in with notwithstanding
/// (presence has no word for it).
#[tokio::test]
async fn a_request_to_another_node_is_asked_again_at_login() {
    let (t, juliet) = juliets_authorize_mood().await;
    drop(juliet);
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    ok(&subscribe(&mut romeo, "s1", "juliet@localhost", "urn:example:mood").await);

    let mut juliet = t.login("juliet", "pw", "tower").await;
    juliet.send("<presence xmlns='jabber:client'/>").await;
    let request = recv_until(&mut juliet, |el| el.name() == "message").await;
    assert_eq!(request.attr("from"), Some("juliet@localhost"));
    let form = request
        .get_child("x", DATA)
        .unwrap_or_else(|| panic!("the Ex. 10 form: {}", show(&request)));
    let fields: Vec<(String, String)> = form
        .children()
        .filter_map(|field| {
            let value = field.get_child("value", DATA)?.text();
            Some((field.attr("var")?.to_owned(), value))
        })
        .filter(|(var, _)| var == "pubsub#node" || var == "pubsub#subscriber_jid")
        .collect();
    assert_eq!(
        fields,
        [
            ("pubsub#node".to_owned(), "urn:example:mood".to_owned()),
            (
                "pubsub#subscriber_jid".to_owned(),
                "romeo@localhost/orchard".to_owned()
            ),
        ]
    );
}

/// XEP-0060 §8.7: the get-pending command PEP advertises runs at the owner's bare JID: her
/// nodes to choose from, then the forms of the chosen node's pending requests.
#[tokio::test]
async fn get_pending_runs_at_the_owners_bare_jid() {
    let (t, mut juliet) = juliets_authorize_mood().await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    ok(&subscribe(&mut romeo, "s1", "juliet@localhost", "urn:example:mood").await);
    let asked = juliet.recv().await;
    assert!(asked.has_child("x", DATA), "{}", show(&asked));

    let command = "<command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/pubsub#get-pending'";
    let reply = juliet
        .request(&format!("<iq xmlns='jabber:client' type='set' id='gp1' to='juliet@localhost'>{command} action='execute'/></iq>"))
        .await;
    ok(&reply);
    let executing = reply
        .get_child("command", "http://jabber.org/protocol/commands")
        .unwrap_or_else(|| panic!("{}", show(&reply)));
    assert_eq!(executing.attr("status"), Some("executing"));
    let options: Vec<String> = executing
        .get_child("x", DATA)
        .and_then(|form| {
            form.children()
                .find(|field| field.attr("var") == Some("pubsub#node"))
        })
        .map(|field| {
            field
                .children()
                .filter_map(|option| option.get_child("value", DATA))
                .map(|value| value.text())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        options.iter().any(|node| node == "urn:example:mood"),
        "{}",
        show(&reply)
    );

    let chosen = "<x xmlns='jabber:x:data' type='submit'><field var='pubsub#node'><value>urn:example:mood</value></field></x>";
    let reply = juliet
        .request(&format!("<iq xmlns='jabber:client' type='set' id='gp2' to='juliet@localhost'>{command}>{chosen}</command></iq>"))
        .await;
    ok(&reply);
    let asked = recv_until(&mut juliet, |el| el.name() == "message").await;
    assert_eq!(asked.attr("from"), Some("juliet@localhost"));
    assert!(asked.has_child("x", DATA), "{}", show(&asked));
}

/// DESIGN §3, the first mixed scenario: native Juliet publishes presence (Ex. 3); classic Romeo
/// (capabilities without `presence+notify`) gets `<presence/>` stanzas, native Nurse (with it)
/// gets Ex. 4; both see her go when her socket is cut.
#[tokio::test]
async fn classic_and_native_subscribers_see_the_same_presence() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    romeo.presence_with_caps("", CLASSIC, true).await;
    romeo.recv_from("romeo@localhost/mobile").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    nurse.presence_with_caps("", NATIVE, true).await;
    // Her own presence comes back as an event: she is native.
    let own = nurse.recv().await;
    assert!(own.has_child("event", EVENT), "{}", show(&own));
    assert_eq!(own.attr("from"), Some("nurse@localhost"));
    for (c, who) in [
        (&mut romeo, "romeo@localhost"),
        (&mut nurse, "nurse@localhost"),
    ] {
        let reply = c
            .request(&format!("<iq xmlns='jabber:client' type='set' id='s-{who}' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='presence' jid='{who}'/></pubsub></iq>"))
            .await;
        ok(&reply);
        approve(&mut juliet, who).await;
    }
    // The answer: a classic `subscribed`, a native subscription event.
    let answer = romeo.recv().await;
    assert_presence(&answer, "subscribed", "juliet@localhost");
    assert!(show(&nurse.recv().await).contains("subscription='subscribed'"));

    juliet
        .request("<iq xmlns='jabber:client' type='set' id='pres1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='presence'><item><presence xmlns='jabber:client'><status>Moping</status></presence></item></publish></pubsub></iq>")
        .await;
    let classic = romeo.recv().await;
    assert_eq!(classic.name(), "presence", "{}", show(&classic));
    assert_eq!(classic.attr("from"), Some("juliet@localhost/balcony"));
    assert_eq!(classic.attr("to"), Some("romeo@localhost"));
    assert_eq!(
        classic.get_child("status", NS_CLIENT).unwrap().text(),
        "Moping"
    );
    let (id, _) = presence_item(&nurse.recv().await);
    assert_eq!(id, "balcony");

    drop(juliet);
    let gone = romeo.recv().await;
    assert_eq!(
        (gone.name(), gone.attr("type"), gone.attr("from")),
        (
            "presence",
            Some("unavailable"),
            Some("juliet@localhost/balcony")
        ),
        "{}",
        show(&gone)
    );
    assert_eq!(retracted(&nurse.recv().await), "balcony");
    romeo.expect_nothing().await;
}

/// RFC 6121 §3 against XEP-0207 §4, both ways: classic Romeo sends `<presence type='subscribe'/>`
/// to native Juliet, who gets the Ex. 10 form and answers Ex. 11; Romeo gets `subscribed` and
/// her presence. Then the roles swapped: native Nurse asks classic Juliet, who gets a
/// subscription request as `<presence/>` and answers `subscribed`.
#[tokio::test]
async fn classic_presence_subscriptions_meet_pubsub_authorization() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = native_juliet(&t).await;
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    // No capabilities: he gets what his way of subscribing implies.
    romeo.send("<presence xmlns='jabber:client'/>").await;
    romeo.recv_from("romeo@localhost/mobile").await;
    romeo
        .send("<presence xmlns='jabber:client' type='subscribe' to='juliet@localhost'/>")
        .await;
    approve(&mut juliet, "romeo@localhost").await;
    let answer = romeo.recv().await;
    assert_presence(&answer, "subscribed", "juliet@localhost");
    // Approval brings Juliet's current presence (XEP-0207 §4: the last items).
    let current = romeo.recv().await;
    assert_eq!(
        current.attr("from"),
        Some("juliet@localhost/balcony"),
        "{}",
        show(&current)
    );
    juliet
        .request("<iq xmlns='jabber:client' type='set' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='presence'><item><presence xmlns='jabber:client'><show>chat</show></presence></item></publish></pubsub></iq>")
        .await;
    let presence = romeo.recv().await;
    assert_eq!(
        presence.attr("from"),
        Some("juliet@localhost/balcony"),
        "{}",
        show(&presence)
    );
    assert_eq!(
        presence.get_child("show", NS_CLIENT).unwrap().text(),
        "chat"
    );

    // Roles swapped: Juliet's classic session gets the request as presence and answers it.
    let mut classic = t.login("juliet", "pw", "chamber").await;
    classic.presence_with_caps("", CLASSIC, true).await;
    // It gets its account's other resource's presence and its own (RFC 6121 §4.2.2).
    let own = classic.recv_sorted(2).await;
    assert!(own.iter().all(|p| p.name() == "presence"), "classic");
    assert_eq!(
        senders(&own),
        ["juliet@localhost/balcony", "juliet@localhost/chamber"]
    );
    let second = romeo.recv().await;
    assert_eq!(
        second.attr("from"),
        Some("juliet@localhost/chamber"),
        "{}",
        show(&second)
    );
    let mut nurse = t.login("nurse", "pw", "kitchen").await;
    let reply = nurse
        .request(&format!("<iq xmlns='jabber:client' type='set' id='n1' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='presence' jid='nurse@localhost'/></pubsub></iq>"))
        .await;
    assert!(show(&reply).contains("pending"), "{}", show(&reply));
    let asked = classic.recv().await;
    assert_presence(&asked, "subscribe", "nurse@localhost");
    classic
        .send("<presence xmlns='jabber:client' type='subscribed' to='nurse@localhost'/>")
        .await;
    let notice = nurse.recv().await;
    assert!(
        show(&notice).contains("subscription='subscribed'"),
        "{}",
        show(&notice)
    );

    // Unsubscribe ends Romeo's subscription: he sees Juliet go offline (RFC 6121 §3.3.2),
    // then hears no more.
    romeo
        .send("<presence xmlns='jabber:client' type='unsubscribe' to='juliet@localhost'/>")
        .await;
    let gone = romeo.recv_sorted(2).await;
    assert!(
        gone.iter().all(|p| p.attr("type") == Some("unavailable")),
        "{gone:?}"
    );
    assert_eq!(
        senders(&gone),
        ["juliet@localhost/balcony", "juliet@localhost/chamber"]
    );
    juliet
        .request("<iq xmlns='jabber:client' type='set' id='p2'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='presence'><item><presence xmlns='jabber:client'><show>away</show></presence></item></publish></pubsub></iq>")
        .await;
    romeo.expect_nothing().await;
}

/// Whether `el` says `status` anywhere (a classic presence, or a notification carrying one).
fn says(el: &Element, status: &str) -> bool {
    (el.name() == "status" && el.text() == status) || el.children().any(|c| says(c, status))
}

/// RFC 6121 §3.1.5, §2.5.2, §3.2: a classic owner's answers reach a request made natively by a
/// full JID (XEP-0207 Ex. 9) as they reach one by bare JID: `subscribed` approves it, and
/// removing the contact ends it (found by audit round 27: both were ignored, and the removed
/// contact kept receiving her presence).
#[tokio::test]
async fn a_classic_answer_reaches_a_request_made_by_full_jid() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    juliet.presence_with_caps("", CLASSIC, true).await;
    juliet.recv_from("juliet@localhost/balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let reply = romeo
        .request(&format!("<iq xmlns='jabber:client' type='set' id='s1' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='presence' jid='romeo@localhost/orchard'/></pubsub></iq>"))
        .await;
    let subscription = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("subscription", PUBSUB))
        .unwrap_or_else(|| panic!("{}", show(&reply)));
    assert_eq!(subscription.attr("subscription"), Some("pending"));
    let asked = juliet.recv().await;
    assert_presence(&asked, "subscribe", "romeo@localhost");
    juliet
        .send("<presence xmlns='jabber:client' type='subscribed' to='romeo@localhost'/>")
        .await;
    juliet
        .send("<presence xmlns='jabber:client'><status>here</status></presence>")
        .await;
    recv_until(&mut romeo, |el| says(el, "here")).await;
    let removed = juliet
        .request("<iq xmlns='jabber:client' type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='romeo@localhost' subscription='remove'/></query></iq>")
        .await;
    ok(&removed);
    juliet
        .send("<presence xmlns='jabber:client'><status>gone</status></presence>")
        .await;
    juliet.recv_from("juliet@localhost/balcony").await;
    // What the ending itself sends him, then nothing of what she says after.
    let quiet = std::time::Duration::from_millis(500);
    while let Ok(el) = tokio::time::timeout(quiet, romeo.recv()).await {
        assert!(!says(&el, "gone"), "{}", show(&el));
    }
}

/// RFC 6121 §3.1.6: a classic request the owner approved beforehand (by making the requester
/// a member of her `presence` node) is answered `subscribed`, as an approval is (found by
/// audit round 27: only the roster push and the presence came).
#[tokio::test]
async fn a_request_approved_beforehand_is_answered_subscribed() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = native_juliet(&t).await;
    let member = juliet
        .request("<iq xmlns='jabber:client' type='set' id='a1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='presence'><affiliation jid='romeo@localhost' affiliation='member'/></affiliations></pubsub></iq>")
        .await;
    ok(&member);
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    romeo.recv_from("romeo@localhost/mobile").await;
    romeo
        .send("<presence xmlns='jabber:client' type='subscribe' to='juliet@localhost'/>")
        .await;
    let answer = recv_until(&mut romeo, |el| {
        el.name() == "presence" && el.attr("type").is_some()
    })
    .await;
    assert_presence(&answer, "subscribed", "juliet@localhost");
}

/// XEP-0207 §4: a native subscriber's approval, and its next login, bring the owner's
/// current presence as the node's notifications come (Ex. 4: with the `replyto` naming the
/// publishing resource, of the node's notification type), stamped with when it was said.
#[tokio::test]
async fn current_presence_comes_as_live_presence_does() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = native_juliet(&t).await;
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    romeo.presence_with_caps("", NATIVE, false).await;
    let subscribe = format!(
        "<iq xmlns='jabber:client' type='set' id='s' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='presence' jid='romeo@localhost'/></pubsub></iq>"
    );
    ok(&romeo.request(&subscribe).await);
    approve(&mut juliet, "romeo@localhost").await;
    let current = |el: &Element| {
        el.attr("from") == Some("juliet@localhost")
            && el
                .get_child("event", EVENT)
                .and_then(|e| e.get_child("items", EVENT))
                .is_some_and(|items| items.has_child("item", EVENT))
    };
    let check = |el: &Element| {
        assert_eq!(el.attr("type"), Some("headline"), "{}", show(el));
        let replyto = el
            .get_child("addresses", "http://jabber.org/protocol/address")
            .and_then(|a| a.get_child("address", "http://jabber.org/protocol/address"))
            .unwrap_or_else(|| panic!("a replyto: {}", show(el)));
        assert_eq!(replyto.attr("jid"), Some("juliet@localhost/balcony"));
        assert!(el.has_child("delay", "urn:xmpp:delay"), "{}", show(el));
    };
    check(&recv_until(&mut romeo, current).await);
    drop(romeo);
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    romeo.presence_with_caps("", NATIVE, false).await;
    check(&recv_until(&mut romeo, current).await);
}

/// The roster is derived from presence-node subscriptions (DESIGN §2), both ways.
#[tokio::test]
async fn roster_is_the_subscription_graph() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = native_juliet(&t).await;
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    romeo.presence_with_caps("", CLASSIC, true).await;
    romeo.recv_from("romeo@localhost/mobile").await;
    romeo
        .send("<presence xmlns='jabber:client' type='subscribe' to='juliet@localhost'/>")
        .await;
    approve(&mut juliet, "romeo@localhost").await;
    assert_eq!(romeo.recv().await.attr("type"), Some("subscribed"));
    // Approval brings Juliet's current presence (XEP-0207 §4: the last items).
    let current = romeo.recv().await;
    assert_eq!(
        current.attr("from"),
        Some("juliet@localhost/balcony"),
        "{}",
        show(&current)
    );
    // Juliet asks back, natively; Romeo has not answered yet.
    ok(&juliet
        .request(&format!("<iq xmlns='jabber:client' type='set' id='back' to='romeo@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='presence' jid='juliet@localhost'/></pubsub></iq>"))
        .await);

    let get = "<iq xmlns='jabber:client' type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>";
    let items = |reply: &Element| -> Vec<(String, String, Option<String>)> {
        reply
            .get_child("query", "jabber:iq:roster")
            .unwrap_or_else(|| panic!("{}", show(reply)))
            .children()
            .map(|i| {
                (
                    i.attr("jid").unwrap().to_owned(),
                    i.attr("subscription").unwrap().to_owned(),
                    i.attr("ask").map(String::from),
                )
            })
            .collect()
    };
    let juliets = juliet.request(get).await;
    assert_eq!(
        items(&juliets),
        [(
            "romeo@localhost".into(),
            "from".into(),
            Some("subscribe".into())
        )]
    );
    let romeos = romeo.request(get).await;
    assert_eq!(
        items(&romeos),
        [("juliet@localhost".into(), "to".into(), None)]
    );

    // Romeo (classic) is asked with presence and approves with presence.
    let asked = romeo.recv().await;
    assert_eq!(asked.attr("type"), Some("subscribe"), "{}", show(&asked));
    romeo
        .send("<presence xmlns='jabber:client' type='subscribed' to='juliet@localhost'/>")
        .await;
    // Romeo's shard tells her of the subscription (and sends his current presence), hers
    // pushes her roster: in any order.
    let (mut told, mut pushed) = (None, None);
    while told.is_none() || pushed.is_none() {
        let el = juliet.recv().await;
        let subscription = el
            .get_child("event", EVENT)
            .and_then(|e| e.get_child("subscription", EVENT))
            .and_then(|s| s.attr("subscription"))
            .map(str::to_owned);
        if subscription.is_some() {
            told = subscription;
        } else if el.name() == "iq" {
            pushed = Some(items(&el));
        }
    }
    assert_eq!(told.as_deref(), Some("subscribed"));
    assert_eq!(
        pushed.unwrap(),
        [("romeo@localhost".into(), "both".into(), None)]
    );
    let juliets = juliet.request(get).await;
    assert_eq!(
        items(&juliets),
        [("romeo@localhost".into(), "both".into(), None)]
    );
    let romeos = romeo.request(get).await;
    assert_eq!(
        items(&romeos),
        [("juliet@localhost".into(), "both".into(), None)]
    );
}

/// RFC 6121 §2.1.6: a session that asked for the roster is told when an item changes.
#[tokio::test]
async fn roster_pushes_follow_subscription_changes() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = native_juliet(&t).await;
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    romeo.recv_from("romeo@localhost/mobile").await;
    let empty = romeo
        .request(
            "<iq xmlns='jabber:client' type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    assert_eq!(
        empty
            .get_child("query", "jabber:iq:roster")
            .unwrap()
            .children()
            .count(),
        0
    );

    let pushed = |el: &Element| -> (String, String, Option<String>) {
        assert_eq!(
            (el.name(), el.attr("type")),
            ("iq", Some("set")),
            "{}",
            show(el)
        );
        let item = el
            .get_child("query", "jabber:iq:roster")
            .and_then(|q| q.get_child("item", "jabber:iq:roster"))
            .unwrap_or_else(|| panic!("a roster push: {}", show(el)));
        (
            item.attr("jid").unwrap().to_owned(),
            item.attr("subscription").unwrap().to_owned(),
            item.attr("ask").map(String::from),
        )
    };
    romeo
        .send("<presence xmlns='jabber:client' type='subscribe' to='juliet@localhost'/>")
        .await;
    assert_eq!(
        pushed(&romeo.recv().await),
        (
            "juliet@localhost".into(),
            "none".into(),
            Some("subscribe".into())
        )
    );

    approve(&mut juliet, "romeo@localhost").await;
    // The approval, Juliet's current presence (XEP-0207 §4: the last items) and the roster
    // push: the first two from Juliet's shard, the push from Romeo's, so in either order.
    let mut came = Vec::new();
    for _ in 0..3 {
        came.push(romeo.recv().await);
    }
    came.sort_by_key(|el| el.name() == "iq");
    let [answer, current, push] = came.try_into().unwrap();
    assert_eq!(answer.attr("type"), Some("subscribed"), "{}", show(&answer));
    assert_eq!(
        current.attr("from"),
        Some("juliet@localhost/balcony"),
        "{}",
        show(&current)
    );
    assert_eq!(
        pushed(&push),
        ("juliet@localhost".into(), "to".into(), None)
    );
    // Juliet never asked for her roster: no pushes for her.
    juliet.expect_nothing().await;
}
