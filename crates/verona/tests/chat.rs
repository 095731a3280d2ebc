//! One-to-one messaging (XEP-0207 §6): classic chat as publishes to the pair's conversation
//! node, with archive ids, carbons across resources, messages kept for an offline account and
//! delivered in order at its next presence, the account's archive (XEP-0313) with paging, the
//! seed's Ex. 18–20 natively, and who may not read a conversation.

mod common;

use common::*;
use minidom::Element;

const CLIENT: &str = "jabber:client";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ADDRESS: &str = "http://jabber.org/protocol/address";
const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const SID: &str = "urn:xmpp:sid:0";
const DELAY: &str = "urn:xmpp:delay";
const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";
const CONVERSATION: &str = "chat/juliet@localhost/romeo@localhost";

async fn server() -> TestServer {
    let server = TestServer::start().await;
    for user in ["juliet", "romeo", "nurse"] {
        server.add_user(user, "pw").await;
    }
    server
}

async fn enable_carbons(client: &mut Client) {
    let reply = client
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='carbons'><enable xmlns='{CARBONS}'/></iq>"
        ))
        .await;
    ok(&reply);
}

/// Juliet on balcony and chamber, Romeo on orchard and garden, all available; chamber and
/// garden have carbons enabled.
async fn two_accounts_with_carbons(server: &TestServer) -> [Client; 4] {
    let balcony = server.login_available("juliet", "pw", "balcony").await;
    let mut chamber = server.login_available("juliet", "pw", "chamber").await;
    let orchard = server.login_available("romeo", "pw", "orchard").await;
    let mut garden = server.login_available("romeo", "pw", "garden").await;
    for client in [&mut chamber, &mut garden] {
        enable_carbons(client).await;
    }
    [balcony, chamber, orchard, garden]
}

fn chat(to: &str, id: &str, body: &str) -> String {
    format!(
        "<message xmlns='jabber:client' type='chat' to='{to}' id='{id}'><body>{body}</body></message>"
    )
}

/// The next message, skipping presence.
/// A party's native publish to the pair's conversation (seed Ex. 19).
fn native_publish(id: &str, body: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='{id}'>\
           <pubsub xmlns='{PUBSUB}'><publish node='{CONVERSATION}'><item>\
             <message xmlns='jabber:client'><body>{body}</body></message>\
           </item></publish></pubsub></iq>"
    )
}

async fn next_message(client: &mut Client) -> Element {
    loop {
        let el = client.recv().await;
        if el.name() == "message" {
            return el;
        }
    }
}

/// Juliet says "line 1" to "line `n`" to Romeo (ids `m1`…), each heard before the next.
async fn says_lines(juliet: &mut Client, romeo: &mut Client, n: usize) {
    for n in 1..=n {
        let (id, line) = (format!("m{n}"), format!("line {n}"));
        juliet.send(&chat("romeo@localhost", &id, &line)).await;
        next_message(romeo).await;
    }
}

/// The `<message/>` a message node's notification carries (seed Ex. 20).
fn event_message(notification: &Element) -> &Element {
    notification
        .get_child("event", EVENT)
        .and_then(|e| e.get_child("items", EVENT))
        .and_then(|i| i.get_child("item", EVENT))
        .and_then(|i| i.get_child("message", CLIENT))
        .unwrap_or_else(|| panic!("no message in {}", show(notification)))
}

fn body(message: &Element) -> String {
    message
        .get_child("body", CLIENT)
        .map(Element::text)
        .unwrap_or_default()
}

/// The archive id a message carries for `by`.
fn stanza_id(message: &Element, by: &str) -> String {
    let id = message
        .get_child("stanza-id", SID)
        .unwrap_or_else(|| panic!("no stanza-id: {}", show(message)));
    assert_eq!(id.attr("by"), Some(by), "{}", show(message));
    id.attr("id").unwrap().to_owned()
}

/// The message a carbon copy forwards, and which side it is.
fn carbon(message: &Element) -> (&'static str, Element) {
    for side in ["sent", "received"] {
        if let Some(copy) = message.get_child(side, CARBONS) {
            let forwarded = copy.get_child("forwarded", FORWARD).unwrap();
            return (
                side,
                forwarded.get_child("message", CLIENT).unwrap().clone(),
            );
        }
    }
    panic!("not a carbon: {}", show(message));
}

/// RFC 6121 §8.5.2.2.1: a `chat` or `normal` message for an account with no available
/// resource is kept or bounced, never lost without a word: a subject alone or a link alone
/// (XEP-0066) is kept; one that asks not to be stored is answered `service-unavailable`;
/// one that only says how the chat goes (XEP-0085) may vanish (found by audit round 21 with
/// ejabberd's offline scenarios: all of these vanished).
#[tokio::test]
async fn a_message_for_an_absent_account_is_kept_or_bounced() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let sent = [
        ("subj", "<subject>Meeting moved to 3pm</subject>"),
        (
            "oob",
            "<x xmlns='jabber:x:oob'><url>https://example.org/f.png</url></x>",
        ),
        (
            "nostore",
            "<body>hello</body><no-store xmlns='urn:xmpp:hints'/>",
        ),
        (
            "cs",
            "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
        ),
    ];
    for (id, inner) in sent {
        juliet
            .send(&format!(
                "<message xmlns='jabber:client' type='normal' to='romeo@localhost' id='{id}'>{inner}</message>"
            ))
            .await;
    }
    let bounced = next_message(&mut juliet).await;
    assert_eq!(
        (bounced.attr("type"), bounced.attr("id")),
        (Some("error"), Some("nostore")),
        "{}",
        show(&bounced)
    );
    assert_eq!(
        stanza_error(&bounced).as_deref(),
        Some("service-unavailable")
    );
    juliet.expect_nothing().await;

    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    let kept: Vec<String> = [
        next_message(&mut romeo).await,
        next_message(&mut romeo).await,
    ]
    .iter()
    .map(|m| m.attr("id").unwrap_or_default().to_owned())
    .collect();
    assert_eq!(kept, ["subj", "oob"]);
    romeo.expect_nothing().await;
}

/// XEP-0280 §6: an error in reply to a message is copied to the other resources of both
/// accounts that enabled carbons, as the message was, in a copy that is no error itself
/// (found by audit round 21: errors were never copied, so a resource that saw a message sent
/// never learnt that it failed).
#[tokio::test]
async fn an_error_in_reply_is_carbon_copied() {
    let server = server().await;
    let [mut balcony, mut chamber, mut orchard, mut garden] =
        two_accounts_with_carbons(&server).await;
    orchard
        .send(
            "<message xmlns='jabber:client' type='error' to='juliet@localhost/balcony' id='e1'>\
               <body>hi</body><error type='cancel'>\
               <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        )
        .await;
    let got = next_message(&mut balcony).await;
    assert_eq!(
        (got.attr("type"), got.attr("id")),
        (Some("error"), Some("e1"))
    );
    for (client, expected) in [(&mut chamber, "received"), (&mut garden, "sent")] {
        let wrapper = next_message(client).await;
        assert_eq!(wrapper.attr("type"), Some("normal"), "{}", show(&wrapper));
        let (side, copy) = carbon(&wrapper);
        assert_eq!(side, expected);
        assert_eq!(
            (copy.attr("type"), copy.attr("id")),
            (Some("error"), Some("e1"))
        );
    }
    // One to a resource that is not there goes nowhere, and no carbon tells of it (RFC 6121
    // §8.5.3.2.1; found by audit round 28: both accounts' other resources were told).
    orchard
        .send(
            "<message xmlns='jabber:client' type='error' to='juliet@localhost/gone' id='e2'>\
               <error type='cancel'>\
               <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        )
        .await;
    for client in [&mut balcony, &mut chamber, &mut garden] {
        client.expect_nothing().await;
    }
}

#[tokio::test]
async fn chat_reaches_the_contact_with_an_archive_id_and_carbons_reach_other_resources() {
    let server = server().await;
    let [mut balcony, mut chamber, mut orchard, mut garden] =
        two_accounts_with_carbons(&server).await;
    // To a bare JID: every available resource of the contact.
    balcony
        .send(&chat("romeo@localhost", "m1", "wherefore art thou?"))
        .await;
    let mut ids = Vec::new();
    for romeo in [&mut orchard, &mut garden] {
        let got = next_message(romeo).await;
        assert_eq!(got.attr("from"), Some("juliet@localhost/balcony"));
        assert_eq!(got.attr("type"), Some("chat"));
        assert_eq!(got.attr("id"), Some("m1"));
        assert_eq!(body(&got), "wherefore art thou?");
        ids.push(stanza_id(&got, "romeo@localhost"));
    }
    assert_eq!(ids[0], ids[1]);
    let (side, copy) = carbon(&next_message(&mut chamber).await);
    assert_eq!(side, "sent");
    assert_eq!(copy.attr("to"), Some("romeo@localhost"));
    assert_eq!(body(&copy), "wherefore art thou?");
    // To a full JID: that resource; the other one, with carbons, gets a copy.
    orchard
        .send(&chat("juliet@localhost/balcony", "m2", "here"))
        .await;
    let got = next_message(&mut balcony).await;
    assert_eq!(got.attr("from"), Some("romeo@localhost/orchard"));
    assert_eq!(body(&got), "here");
    let (side, copy) = carbon(&next_message(&mut chamber).await);
    assert_eq!(side, "received");
    assert_eq!(copy.attr("from"), Some("romeo@localhost/orchard"));
    let (side, _) = carbon(&next_message(&mut garden).await);
    assert_eq!(side, "sent");
    // Private messages get no copies; chat states pass through without being kept.
    balcony
        .send(
            "<message xmlns='jabber:client' type='chat' to='romeo@localhost/orchard' id='m3'>\
               <body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>",
        )
        .await;
    let got = next_message(&mut orchard).await;
    assert_eq!(body(&got), "secret");
    balcony
        .send(
            "<message xmlns='jabber:client' type='chat' to='romeo@localhost/orchard'>\
               <composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        )
        .await;
    let got = next_message(&mut orchard).await;
    assert!(got.has_child("composing", "http://jabber.org/protocol/chatstates"));
    assert!(!got.has_child("stanza-id", SID), "{}", show(&got));
    // Chat states are chat messages: copied (XEP-0280 §6.1), with no archive id.
    for (client, copied) in [(&mut chamber, "sent"), (&mut garden, "received")] {
        let (side, copy) = carbon(&next_message(client).await);
        assert_eq!(side, copied);
        assert!(copy.has_child("composing", "http://jabber.org/protocol/chatstates"));
        assert!(!copy.has_child("stanza-id", SID));
    }
    chamber.expect_nothing().await;
    garden.expect_nothing().await;
    balcony.expect_nothing().await;
}

#[tokio::test]
async fn messages_for_an_offline_account_come_in_order_at_its_next_presence_once() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    for n in 1..=5 {
        juliet
            .send(&chat(
                "romeo@localhost",
                &format!("m{n}"),
                &format!("line {n}"),
            ))
            .await;
    }
    // Nothing bounces: the messages were kept.
    juliet.expect_nothing().await;
    // A session without presence gets nothing yet (XEP-0160: at available presence).
    let mut romeo = server.login("romeo", "pw", "orchard").await;
    romeo.expect_nothing().await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    let mut bodies = Vec::new();
    while bodies.len() < 5 {
        let el = romeo.recv().await;
        if el.name() != "message" {
            continue;
        }
        assert_eq!(el.attr("from"), Some("juliet@localhost/balcony"));
        let delay = el.get_child("delay", DELAY).expect("a delay");
        assert_eq!(delay.attr("from"), Some("localhost"));
        stanza_id(&el, "romeo@localhost");
        bodies.push(body(&el));
    }
    assert_eq!(bodies, ["line 1", "line 2", "line 3", "line 4", "line 5"]);
    romeo.expect_nothing().await;
    drop(romeo);
    // Delivered once: the next session gets none of them again.
    let mut again = server.login_available("romeo", "pw", "garden").await;
    again.expect_nothing().await;
    // Emptied, then kept again: the next available presence finds the new one.
    again
        .send("<presence xmlns='jabber:client' type='unavailable'/>")
        .await;
    // The account's shard answers the roster after it has taken the presence: only then is
    // the account surely away (the message goes through another shard).
    ok(&again
        .request(
            "<iq xmlns='jabber:client' type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await);
    juliet.send(&chat("romeo@localhost", "m6", "line 6")).await;
    juliet.expect_nothing().await;
    again.expect_nothing().await;
    again.send("<presence xmlns='jabber:client'/>").await;
    let late = loop {
        let el = again.recv().await;
        if el.name() == "message" {
            break el;
        }
    };
    assert_eq!(body(&late), "line 6");
    assert!(late.has_child("delay", DELAY));
    again.expect_nothing().await;
}

/// Queries the account's own archive.
async fn archive_page(client: &mut Client, form: &str, set: &str) -> (Vec<Element>, Element) {
    mam_page(client, None, &format!("{form}{set}")).await
}

/// The bodies of a page's results, in order.
fn archived_bodies(results: &[Element]) -> Vec<String> {
    results
        .iter()
        .filter_map(|message| {
            let forwarded = message
                .get_child("result", MAM)?
                .get_child("forwarded", FORWARD)?;
            Some(body(forwarded.get_child("message", CLIENT)?))
        })
        .collect()
}

/// (archive id, body) of each result.
fn archived(results: &[Element]) -> Vec<(String, String)> {
    results
        .iter()
        .map(|message| {
            assert_eq!(message.attr("from"), Some("juliet@localhost"));
            let result = message.get_child("result", MAM).unwrap();
            assert_eq!(result.attr("queryid"), Some("q"));
            let forwarded = result.get_child("forwarded", FORWARD).unwrap();
            assert!(forwarded.has_child("delay", DELAY));
            let said = forwarded.get_child("message", CLIENT).unwrap();
            (result.attr("id").unwrap().to_owned(), body(said))
        })
        .collect()
}

fn with(jid: &str) -> String {
    format!(
        "<x xmlns='jabber:x:data' type='submit'>\
           <field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>\
           <field var='with'><value>{jid}</value></field></x>"
    )
}

#[tokio::test]
async fn the_archive_pages_through_every_conversation_or_one() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    let mut nurse = server.login_available("nurse", "pw", "kitchen").await;
    juliet.send(&chat("romeo@localhost", "1", "r1")).await;
    let first = stanza_id(&next_message(&mut romeo).await, "romeo@localhost");
    romeo.send(&chat("juliet@localhost", "2", "r2")).await;
    next_message(&mut juliet).await;
    juliet.send(&chat("nurse@localhost", "3", "n1")).await;
    next_message(&mut nurse).await;
    juliet.send(&chat("romeo@localhost", "4", "r3")).await;
    next_message(&mut romeo).await;

    let (results, fin) = archive_page(&mut juliet, "", "").await;
    ok(&fin);
    let all = archived(&results);
    let bodies: Vec<&str> = all.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies, ["r1", "r2", "n1", "r3"]);
    assert_eq!(all[0].0, first, "the archive id is the stanza-id");
    let fin = fin.get_child("fin", MAM).unwrap();
    assert_eq!(fin.attr("complete"), Some("true"));

    let (results, _) = archive_page(&mut juliet, &with("romeo@localhost"), "").await;
    let bodies: Vec<String> = archived(&results).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, ["r1", "r2", "r3"]);

    // Paging: two at a time, forwards from the start.
    let set = format!("<set xmlns='{RSM}'><max>2</max></set>");
    let (results, fin) = archive_page(&mut juliet, "", &set).await;
    let page = archived(&results);
    assert_eq!(page.len(), 2);
    let fin = fin.get_child("fin", MAM).unwrap();
    assert_eq!(fin.attr("complete"), None);
    let last = fin
        .get_child("set", RSM)
        .and_then(|set| set.get_child("last", RSM))
        .map(Element::text)
        .unwrap();
    assert_eq!(last, page[1].0);
    let set = format!("<set xmlns='{RSM}'><max>2</max><after>{last}</after></set>");
    let (results, fin) = archive_page(&mut juliet, "", &set).await;
    let bodies: Vec<String> = archived(&results).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, ["n1", "r3"]);
    let fin = fin.get_child("fin", MAM).unwrap();
    assert_eq!(fin.attr("complete"), Some("true"));

    // Backwards: the last page, then the one before it.
    let set = format!("<set xmlns='{RSM}'><max>3</max><before/></set>");
    let (results, fin) = archive_page(&mut juliet, "", &set).await;
    let page = archived(&results);
    let bodies: Vec<&str> = page.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies, ["r2", "n1", "r3"]);
    assert_eq!(fin.get_child("fin", MAM).unwrap().attr("complete"), None);
    let set = format!(
        "<set xmlns='{RSM}'><max>3</max><before>{}</before></set>",
        page[0].0
    );
    let (results, fin) = archive_page(&mut juliet, "", &set).await;
    let bodies: Vec<String> = archived(&results).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, ["r1"]);
    assert_eq!(
        fin.get_child("fin", MAM).unwrap().attr("complete"),
        Some("true")
    );
    // A full JID as `with`: what that resource said, or was sent.
    let (results, _) = archive_page(&mut juliet, &with("romeo@localhost/orchard"), "").await;
    let bodies: Vec<String> = archived(&results).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, ["r2"]);

    // `after-id` and `before-id` (XEP-0313 §4.1.1) make the result set: paged from its
    // start, counted as a whole.
    let between = format!(
        "<x xmlns='jabber:x:data' type='submit'>\
           <field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>\
           <field var='after-id'><value>{}</value></field>\
           <field var='before-id'><value>{}</value></field></x>",
        all[0].0, all[3].0
    );
    let set = format!("<set xmlns='{RSM}'><max>1</max></set>");
    let (results, fin) = archive_page(&mut juliet, &between, &set).await;
    let bodies: Vec<String> = archived(&results).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, ["r2"]);
    let fin = fin.get_child("fin", MAM).unwrap();
    assert_eq!(fin.attr("complete"), None);
    let count = fin
        .get_child("set", RSM)
        .and_then(|set| set.get_child("count", RSM))
        .map(Element::text);
    assert_eq!(count.as_deref(), Some("2"));

    // Romeo's archive has his conversation only; the nurse's hers.
    let (results, _) = archive_page(&mut nurse, "", "").await;
    assert_eq!(results.len(), 1);
    let set = format!("<set xmlns='{RSM}'><after>nonexistent</after></set>");
    let (_, fin) = archive_page(&mut juliet, "", &set).await;
    assert_eq!(stanza_error(&fin).as_deref(), Some("item-not-found"));
}

#[tokio::test]
async fn a_conversation_is_read_natively_by_its_parties_only() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    juliet.send(&chat("romeo@localhost", "1", "hello")).await;
    next_message(&mut romeo).await;
    let items = |id: &str| {
        format!(
            "<iq xmlns='jabber:client' type='get' to='pubsub.localhost' id='{id}'>\
               <pubsub xmlns='{PUBSUB}'><items node='{CONVERSATION}'/></pubsub></iq>"
        )
    };
    let reply = romeo.request(&items("i1")).await;
    ok(&reply);
    let item = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .and_then(|i| i.get_child("item", PUBSUB))
        .expect("an item");
    let message = item.get_child("message", CLIENT).unwrap();
    assert_eq!(body(message), "hello");
    assert_eq!(message.attr("from"), Some("juliet@localhost/balcony"));
    // A stranger reads nothing, writes nothing, and cannot take the node over.
    let mut nurse = server.login_available("nurse", "pw", "kitchen").await;
    let reply = nurse.request(&items("i2")).await;
    assert_eq!(stanza_error(&reply).as_deref(), Some("forbidden"));
    let publish = format!(
        "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='p1'>\
           <pubsub xmlns='{PUBSUB}'><publish node='{CONVERSATION}'><item>\
             <message xmlns='jabber:client'><body>forged</body></message>\
           </item></publish></pubsub></iq>"
    );
    let reply = nurse.request(&publish).await;
    assert_eq!(stanza_error(&reply).as_deref(), Some("forbidden"));
    let delete = format!(
        "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='d1'>\
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='{CONVERSATION}'/></pubsub></iq>"
    );
    let reply = juliet.request(&delete).await;
    assert_eq!(stanza_error(&reply).as_deref(), Some("not-allowed"));
    // A party's native publish (Ex. 19) is a message from it to the other party.
    let reply = juliet.request(&publish.replace("forged", "natively")).await;
    ok(&reply);
    let got = next_message(&mut romeo).await;
    assert_eq!(got.attr("from"), Some("juliet@localhost/balcony"));
    assert_eq!(got.attr("to"), Some("romeo@localhost"));
    assert_eq!(body(&got), "natively");
    // A conversation's message is a chat (DESIGN §3), as the classic face sends it.
    assert_eq!(got.attr("type"), Some("chat"));
    // A payload that is not one message is refused, and so is a message of a kind the
    // classic face does not pass between accounts (RFC 6121 §8.5.2.1.1: no groupchat to an
    // account; RFC 6120 §8.3: no error without its error, nor one made up to look like it).
    let refused = [
        "<presence xmlns='jabber:client'/>",
        "<message xmlns='jabber:client' type='groupchat'><body>g</body></message>",
        "<message xmlns='jabber:client' type='error' id='1'><body>e</body></message>",
        "<message xmlns='jabber:client' type='headline'><body>h</body></message>",
    ];
    for payload in refused {
        let reply = juliet
            .request(&publish.replace(
                "<message xmlns='jabber:client'><body>forged</body></message>",
                payload,
            ))
            .await;
        assert_eq!(
            stanza_error(&reply).as_deref(),
            Some("bad-request"),
            "{payload}"
        );
    }
    romeo.expect_nothing().await;
    nurse.expect_nothing().await;
}

/// Every message to an account that does not exist is refused, not only the first, with the
/// conversations kept in memory as on a server (found with Prosody's scenarios: the second
/// message found the conversation resident and was archived); and one made once the account
/// exists goes through.
#[tokio::test]
async fn every_message_to_nobody_is_refused() {
    let server = TestServer::start_with(|config| config.limits.resident_services = 2_000).await;
    server.add_user("juliet", "pw").await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    for id in ["x1", "x2", "x3"] {
        juliet.send(&chat("tybalt@localhost", id, "hi")).await;
        let error = next_message(&mut juliet).await;
        assert_eq!(error.attr("id"), Some(id));
        assert_eq!(stanza_error(&error).as_deref(), Some("service-unavailable"));
    }
    let (results, _) = archive_page(&mut juliet, "", "").await;
    assert!(results.is_empty(), "{}", show(&results[0]));
    server.add_user("tybalt", "pw").await;
    juliet.send(&chat("tybalt@localhost", "x4", "now")).await;
    juliet.expect_nothing().await;
    let (results, _) = archive_page(&mut juliet, "", "").await;
    assert_eq!(archived_bodies(&results), ["now"]);
}

#[tokio::test]
async fn a_message_to_nobody_is_refused_and_a_deleted_account_takes_its_archive() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    juliet.send(&chat("tybalt@localhost", "x", "hi")).await;
    let error = next_message(&mut juliet).await;
    assert_eq!(error.attr("type"), Some("error"));
    assert_eq!(stanza_error(&error).as_deref(), Some("service-unavailable"));

    juliet.send(&chat("romeo@localhost", "1", "kept")).await;
    juliet.expect_nothing().await;
    let mut romeo = server.login("romeo", "pw", "orchard").await;
    let reply = romeo
        .request(
            "<iq xmlns='jabber:client' type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>",
        )
        .await;
    ok(&reply);
    server.add_user("romeo", "new").await;
    let mut romeo = server.login("romeo", "new", "orchard").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    let own = romeo.recv().await;
    assert_eq!(own.name(), "presence");
    romeo.expect_nothing().await;
    let (results, _) = archive_page(&mut romeo, "", "").await;
    assert!(results.is_empty());
    let (results, _) = archive_page(&mut juliet, &with("romeo@localhost"), "").await;
    assert_eq!(archived_bodies(&results), ["kept"]);
}

/// A deleted account takes its own archive, not the other party's (as Prosody's and
/// ejabberd's per-user archives): Juliet keeps her conversation with the old Romeo, in its
/// place among her others, while the next owner of the name neither reads it nor is in it.
#[tokio::test]
async fn a_deleted_account_leaves_the_other_party_her_archive() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    let mut nurse = server.login_available("nurse", "pw", "kitchen").await;
    juliet.send(&chat("romeo@localhost", "1", "r1")).await;
    let old = stanza_id(&next_message(&mut romeo).await, "romeo@localhost");
    juliet.send(&chat("nurse@localhost", "2", "n1")).await;
    next_message(&mut nurse).await;
    romeo.send(&chat("juliet@localhost", "3", "r2")).await;
    next_message(&mut juliet).await;
    let remove = "<iq xmlns='jabber:client' type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";
    ok(&romeo.request(remove).await);

    let (results, _) = archive_page(&mut juliet, &with("romeo@localhost"), "").await;
    assert_eq!(archived_bodies(&results), ["r1", "r2"]);
    let (results, _) = archive_page(&mut juliet, "", "").await;
    assert_eq!(archived_bodies(&results), ["r1", "n1", "r2"]);

    server.add_user("romeo", "new").await;
    let mut romeo = server.login("romeo", "new", "orchard").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    assert_eq!(romeo.recv().await.name(), "presence");
    for form in [String::new(), with("juliet@localhost")] {
        let (results, _) = archive_page(&mut romeo, &form, "").await;
        assert!(results.is_empty(), "{}", show(&results[0]));
    }
    // Not even by the old message's id.
    let ids = format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>\
           <field var='ids'><value>{old}</value></field></x>"
    );
    let (results, reply) = archive_page(&mut romeo, &ids, "").await;
    assert!(results.is_empty(), "{}", show(&results[0]));
    assert_eq!(stanza_error(&reply).as_deref(), Some("item-not-found"));
    // Juliet writes to the new Romeo: a conversation of its own, his archive holds only that.
    juliet.send(&chat("romeo@localhost", "4", "after")).await;
    assert_eq!(next_message(&mut romeo).await.attr("id"), Some("4"));
    let (results, _) = archive_page(&mut romeo, "", "").await;
    assert_eq!(archived_bodies(&results), ["after"]);
    let (results, _) = archive_page(&mut juliet, &with("romeo@localhost"), "").await;
    assert_eq!(archived_bodies(&results), ["r1", "r2", "after"]);
}

/// The seed's Ex. 18 (corrected): Juliet makes `me_and_romeo`, a whitelist node with Romeo as
/// publisher, and subscribes `subscribers`; then Ex. 19: she publishes a message to it.
async fn seed_example_18_and_19(juliet: &mut Client, subscribers: &[&str]) {
    let create = format!(
        "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='create1'>\
           <pubsub xmlns='{PUBSUB}'><create node='me_and_romeo'/><configure>\
             <x xmlns='jabber:x:data' type='submit'>\
               <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
               <field var='pubsub#access_model'><value>whitelist</value></field>\
               <field var='pubsub#publisher'><value>romeo@localhost</value></field>\
             </x></configure></pubsub></iq>"
    );
    ok(&juliet.request(&create).await);
    let subscriptions: String = subscribers
        .iter()
        .map(|jid| format!("<subscription jid='{jid}' subscription='subscribed'/>"))
        .collect();
    let manage = format!(
        "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='manage1'>\
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><subscriptions node='me_and_romeo'>\
             {subscriptions}</subscriptions></pubsub></iq>"
    );
    ok(&juliet.request(&manage).await);
    let publish = format!(
        "<iq xmlns='jabber:client' to='pubsub.localhost' type='set' id='msg1'>\
           <pubsub xmlns='{PUBSUB}'><publish node='me_and_romeo'><item>\
             <message xmlns='jabber:client'><body>wherefore art thou?</body></message>\
           </item></publish></pubsub></iq>"
    );
    ok(&juliet.request(&publish).await);
}

/// The seed's Ex. 18–20 on a node of its own: a whitelist node with Romeo as publisher,
/// Juliet's publish notified to both, each with the `replyto` naming her session.
#[tokio::test]
async fn seed_examples_18_to_20() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "mobile").await;
    // As the seed has it: Juliet subscribes Romeo only; she is subscribed as the node's
    // creator who named its publishers, and gets her own message too (the seed's bcc).
    seed_example_18_and_19(&mut juliet, &["romeo@localhost"]).await;
    for client in [&mut romeo, &mut juliet] {
        // Romeo first hears of the subscription Juliet gave him (XEP-0060 §8.8.2.4).
        let (got, items) = loop {
            let got = next_message(client).await;
            assert_eq!(got.attr("from"), Some("pubsub.localhost"));
            let event = got.get_child("event", EVENT).unwrap();
            if let Some(items) = event.get_child("items", EVENT) {
                break (got.clone(), items.clone());
            }
        };
        assert_eq!(items.attr("node"), Some("me_and_romeo"));
        // A node of messages: kept for an offline subscriber, never a headline.
        assert!(
            matches!(got.attr("type"), None | Some("normal")),
            "{}",
            show(&got)
        );
        let message = items
            .get_child("item", EVENT)
            .and_then(|i| i.get_child("message", CLIENT))
            .unwrap();
        let published: Element =
            "<message xmlns='jabber:client'><body>wherefore art thou?</body></message>"
                .parse()
                .unwrap();
        assert_eq!(message, &published);
        let replyto = got
            .get_child("addresses", ADDRESS)
            .and_then(|a| a.get_child("address", ADDRESS))
            .unwrap();
        assert_eq!(replyto.attr("type"), Some("replyto"));
        assert_eq!(replyto.attr("jid"), Some("juliet@localhost/balcony"));
    }
    // Its configuration says what its notifications are.
    let config = juliet
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' to='pubsub.localhost' id='c'>\
               <pubsub xmlns='{PUBSUB}#owner'><configure node='me_and_romeo'/></pubsub></iq>"
        ))
        .await;
    let owner = format!("{PUBSUB}#owner");
    let form = config
        .get_child("pubsub", owner.as_str())
        .and_then(|p| p.get_child("configure", owner.as_str()))
        .and_then(|c| c.get_child("x", "jabber:x:data"))
        .unwrap_or_else(|| panic!("{}", show(&config)));
    let value = |var: &str| {
        form.children()
            .find(|field| field.attr("var") == Some(var))
            .and_then(|field| field.get_child("value", "jabber:x:data"))
            .map(Element::text)
    };
    assert_eq!(value("pubsub#notification_type").as_deref(), Some("normal"));
    assert_eq!(value("pubsub#itemreply").as_deref(), Some("publisher"));
}

/// A node's item names no sender but its publisher (the `replyto`): a message published
/// with another's address, a delay or an archive id of its own arrives without them, as a
/// conversation's would (found by audit round 28: a forged `from='carol@…'` and a back-dated
/// delay reached the subscriber, and were kept offline).
#[tokio::test]
async fn a_message_item_cannot_pass_for_anothers_message() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "mobile").await;
    seed_example_18_and_19(&mut juliet, &["romeo@localhost"]).await;
    let publish = format!(
        "<iq xmlns='jabber:client' to='pubsub.localhost' type='set' id='msg2'>\
           <pubsub xmlns='{PUBSUB}'><publish node='me_and_romeo'><item>\
             <message xmlns='jabber:client' from='nurse@localhost/kitchen' to='romeo@localhost' type='chat' id='fake'>\
               <body>from the nurse</body>\
               <delay xmlns='urn:xmpp:delay' stamp='2001-01-01T00:00:00Z'/>\
               <stanza-id xmlns='urn:xmpp:sid:0' by='romeo@localhost' id='x'/>\
             </message></item></publish></pubsub></iq>"
    );
    ok(&juliet.request(&publish).await);
    let got = recv_until(&mut romeo, |el| {
        el.get_child("event", EVENT)
            .and_then(|e| e.get_child("items", EVENT))
            .and_then(|i| i.get_child("item", EVENT))
            .and_then(|i| i.get_child("message", CLIENT))
            .is_some_and(|m| body(m) == "from the nurse")
    })
    .await;
    let message = got
        .get_child("event", EVENT)
        .and_then(|e| e.get_child("items", EVENT))
        .and_then(|i| i.get_child("item", EVENT))
        .and_then(|i| i.get_child("message", CLIENT))
        .unwrap();
    let expected: Element =
        "<message xmlns='jabber:client' type='chat' id='fake'><body>from the nurse</body></message>"
            .parse()
            .unwrap();
    assert_eq!(message, &expected, "{}", show(&got));
    // A presence as an item, the same (found by round 29's recheck).
    let publish = format!(
        "<iq xmlns='jabber:client' to='pubsub.localhost' type='set' id='msg3'>\
           <pubsub xmlns='{PUBSUB}'><publish node='me_and_romeo'><item>\
             <presence xmlns='jabber:client' from='nurse@localhost/kitchen' type='subscribe'/>\
           </item></publish></pubsub></iq>"
    );
    ok(&juliet.request(&publish).await);
    let item = |el: &Element| {
        el.get_child("event", EVENT)
            .and_then(|e| e.get_child("items", EVENT))
            .and_then(|i| i.get_child("item", EVENT))
            .and_then(|i| i.get_child("presence", CLIENT))
            .cloned()
    };
    let got = recv_until(&mut romeo, |el| item(el).is_some()).await;
    let expected: Element = "<presence xmlns='jabber:client' type='subscribe'/>"
        .parse()
        .unwrap();
    assert_eq!(item(&got), Some(expected), "{}", show(&got));
}

/// Commit before acknowledge (XEP-0198): every message the server acknowledged with `<a/>` is
/// in the archive after `kill -9`, and the recipient, away until then, gets it at its next
/// presence.
#[tokio::test]
async fn acknowledged_messages_survive_kill_9() {
    use common::process::{Process, add_users};
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), &["juliet", "romeo"]);
    let server = Process::start(dir.path()).await;
    let mut juliet = server.login(dir.path(), "juliet", "balcony").await;
    juliet.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    assert!(juliet.recv().await.is("enabled", "urn:xmpp:sm:3"));
    for n in 1..=40 {
        juliet
            .send(&chat(
                "romeo@localhost",
                &format!("m{n}"),
                &format!("line {n}"),
            ))
            .await;
    }
    juliet.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let acked = juliet.recv().await;
    assert!(acked.is("a", "urn:xmpp:sm:3"), "{}", show(&acked));
    assert_eq!(acked.attr("h"), Some("40"));
    server.kill_9();

    let server = Process::start(dir.path()).await;
    let mut romeo = server.login(dir.path(), "romeo", "orchard").await;
    let (results, _) = archive_page(&mut romeo, &with("juliet@localhost"), "").await;
    let bodies: Vec<String> = archived_bodies(&results);
    let expected: Vec<String> = (1..=40).map(|n| format!("line {n}")).collect();
    assert_eq!(bodies, expected);
    // Kept for Romeo, who was away, before the acknowledgement too (the recipient's shard
    // writes that copy): all of them, in order, once.
    romeo.send("<presence xmlns='jabber:client'/>").await;
    let mut offline = Vec::new();
    while offline.len() < 40 {
        offline.push(body(&next_message(&mut romeo).await));
    }
    assert_eq!(offline, expected);
    romeo.expect_nothing().await;
    server.kill_9();
}

/// A message whose storage fails is neither archived nor delivered, and its sender is told to
/// retry (`internal-server-error`, type `wait`); once storage works again, messages flow.
#[tokio::test]
async fn a_message_storage_refuses_is_not_delivered_and_bounces() {
    use common::faulty::Writes;
    let (server, store) = TestServer::start_faulty().await;
    for user in ["juliet", "romeo"] {
        server.add_user(user, "pw").await;
    }
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    store.set(Writes::Fail);
    juliet
        .send(&chat("romeo@localhost", "lost", "not kept"))
        .await;
    let error = next_message(&mut juliet).await;
    assert_eq!(error.attr("type"), Some("error"));
    assert_eq!(error.attr("id"), Some("lost"));
    assert_eq!(
        stanza_error(&error).as_deref(),
        Some("internal-server-error")
    );
    romeo.expect_nothing().await;
    store.set(Writes::Succeed);
    juliet.send(&chat("romeo@localhost", "kept", "kept")).await;
    assert_eq!(body(&next_message(&mut romeo).await), "kept");
    let (results, _) = archive_page(&mut juliet, "", "").await;
    assert_eq!(archived_bodies(&results), ["kept"]);
}

/// DESIGN §2: a notification of a message node (the seed's Ex. 18 node) for a subscriber who
/// is offline is kept, and reaches it at its next presence.
#[tokio::test]
async fn a_message_node_keeps_its_notifications_for_an_offline_subscriber() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    seed_example_18_and_19(&mut juliet, &["romeo@localhost"]).await;
    let mut romeo = server.login("romeo", "pw", "mobile").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    let kept = loop {
        let el = romeo.recv().await;
        if el.name() == "message" && el.has_child("event", EVENT) {
            break el;
        }
    };
    assert!(kept.has_child("delay", DELAY), "{}", show(&kept));
    let message = event_message(&kept);
    assert_eq!(body(message), "wherefore art thou?");
    // Once: not again as the node's last item, now or at the next login.
    romeo.expect_nothing().await;
    drop(romeo);
    let mut romeo = server.login("romeo", "pw", "garden").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    recv_until(&mut romeo, |el| el.name() == "presence").await;
    romeo.expect_nothing().await;
}

/// A subscriber whose only session has not sent its presence takes no message for its bare
/// JID (RFC 6121 §8.5.2.1.1): a message node's notification is kept for it, as for an offline
/// one, and reaches it at its presence.
#[tokio::test]
async fn a_message_node_keeps_its_notifications_for_a_subscriber_not_yet_available() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login("romeo", "pw", "mobile").await;
    seed_example_18_and_19(&mut juliet, &["romeo@localhost"]).await;
    // What it got before a later iq to it is all it got before its presence.
    juliet
        .send("<iq xmlns='jabber:client' type='get' id='mark' to='romeo@localhost/mobile'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let mut before = Vec::new();
    loop {
        let el = romeo.recv().await;
        if el.name() == "iq" && el.attr("id") == Some("mark") {
            break;
        }
        before.push(el);
    }
    assert!(
        !before.iter().any(|el| el.has_child("event", EVENT)),
        "{:?}",
        before.iter().map(show).collect::<Vec<_>>()
    );
    romeo.send("<presence xmlns='jabber:client'/>").await;
    let kept = recv_until(&mut romeo, |el| el.has_child("event", EVENT)).await;
    let message = event_message(&kept);
    assert_eq!(body(message), "wherefore art thou?");
}

/// Each conversation one starts is a subscription it holds: past `[pubsub]
/// max_subscriptions_per_jid`, starting another is `policy-violation`; conversations it has
/// go on, and others may still start one with it.
#[tokio::test]
async fn conversations_one_starts_are_bounded() {
    let server = TestServer::start_with(|c| c.pubsub.max_subscriptions_per_jid = 2).await;
    for user in ["juliet", "romeo", "nurse", "tybalt"] {
        server.add_user(user, "pw").await;
    }
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut tybalt = server.login_available("tybalt", "pw", "street").await;
    for (to, id) in [("romeo@localhost", "1"), ("nurse@localhost", "2")] {
        juliet.send(&chat(to, id, "hello")).await;
    }
    juliet.expect_nothing().await;
    juliet.send(&chat("tybalt@localhost", "3", "hello")).await;
    let refused = next_message(&mut juliet).await;
    assert_eq!(refused.attr("id"), Some("3"));
    assert_eq!(stanza_error(&refused).as_deref(), Some("policy-violation"));
    tybalt.expect_nothing().await;
    juliet.send(&chat("romeo@localhost", "4", "again")).await;
    juliet.expect_nothing().await;
    tybalt.send(&chat("juliet@localhost", "5", "draw")).await;
    assert_eq!(body(&next_message(&mut juliet).await), "draw");
}

/// A conversation holds only its last messages in memory (a resident service, reloaded from
/// storage at every batch here); its archive keeps all of them, and nobody retracts from it.
#[tokio::test]
async fn the_archive_keeps_more_than_memory_holds() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    says_lines(&mut juliet, &mut romeo, 30).await;
    let (results, _) = archive_page(&mut juliet, &with("romeo@localhost"), "").await;
    let expected: Vec<String> = (1..=30).map(|n| format!("line {n}")).collect();
    assert_eq!(archived_bodies(&results), expected);
    let items = romeo
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' to='pubsub.localhost' id='i'>\
               <pubsub xmlns='{PUBSUB}'><items node='{CONVERSATION}'/></pubsub></iq>"
        ))
        .await;
    ok(&items);
    let held = items
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .map(|i| i.children().count())
        .unwrap_or_default();
    assert_eq!(held, 20);
    let retract = format!(
        "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='r'>\
           <pubsub xmlns='{PUBSUB}'><retract node='{CONVERSATION}'><item id='{}'/></retract></pubsub></iq>",
        results[0]
            .get_child("result", MAM)
            .and_then(|r| r.attr("id"))
            .unwrap()
    );
    assert_eq!(
        stanza_error(&juliet.request(&retract).await).as_deref(),
        Some("not-allowed")
    );
}

/// A conversation's archive is bounded in bytes too (`[limits] conversation_archive_bytes`),
/// not only to its 10,000 messages, each of which may be a whole stanza: past it the oldest
/// go, and nothing is refused.
#[tokio::test]
async fn the_archive_is_bounded_in_bytes() {
    let server = TestServer::start_with(|config| {
        config.limits.conversation_archive_bytes = 4096;
    })
    .await;
    for user in ["juliet", "romeo"] {
        server.add_user(user, "pw").await;
    }
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    let padding = "x".repeat(1000);
    let lines: Vec<String> = (1..=10).map(|n| format!("line {n} {padding}")).collect();
    for (n, line) in lines.iter().enumerate() {
        juliet
            .send(&chat("romeo@localhost", &format!("m{n}"), line))
            .await;
        assert_eq!(&body(&next_message(&mut romeo).await), line);
    }
    let (results, _) = archive_page(&mut juliet, &with("romeo@localhost"), "").await;
    let kept = archived_bodies(&results);
    // Each message stored is more than its 1000 bytes of padding.
    assert!(!kept.is_empty() && kept.len() <= 4, "{} kept", kept.len());
    assert_eq!(kept, lines[lines.len() - kept.len()..], "the newest stay");
}

/// RFC 6121 §8.5.2.1.1 and XEP-0160 §4: a message to the bare JID goes to the available
/// resources with a non-negative priority; with only negative ones, it is kept, and it is not
/// flushed to a negative-priority resource either. A full JID still reaches its resource.
#[tokio::test]
async fn negative_priority_resources_take_no_bare_jid_messages() {
    let server = server().await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    let mut shy = server.login("juliet", "pw", "shy").await;
    shy.send("<presence xmlns='jabber:client'><priority>-1</priority></presence>")
        .await;
    let own = shy.recv().await;
    assert_eq!(own.name(), "presence");
    romeo
        .send(&chat("juliet@localhost", "p1", "to the bare JID"))
        .await;
    shy.expect_nothing().await;
    romeo
        .send(&chat("juliet@localhost/shy", "p2", "to the shy resource"))
        .await;
    let named = next_message(&mut shy).await;
    assert_eq!(named.attr("id"), Some("p2"));
    // A resource with priority 0 gets the kept message (p1) when it comes online, and the
    // next bare-JID message; the shy one still gets neither.
    let mut open = server.login_available("juliet", "pw", "open").await;
    let kept = next_message(&mut open).await;
    assert_eq!(kept.attr("id"), Some("p1"));
    romeo.send(&chat("juliet@localhost", "p3", "again")).await;
    let again = next_message(&mut open).await;
    assert_eq!(again.attr("id"), Some("p3"));
    // Only the other resource's arrival (RFC 6121 §4.2.2) reaches the shy one.
    let arrival = shy.recv().await;
    assert_eq!(arrival.name(), "presence", "{}", show(&arrival));
    assert_eq!(arrival.attr("from"), Some("juliet@localhost/open"));
    shy.expect_nothing().await;
}

/// A negative-priority resource that raises its priority takes the messages kept meanwhile,
/// as one coming online does (XEP-0160 §4); they were kept for no resource before.
#[tokio::test]
async fn raising_a_negative_priority_brings_the_kept_messages() {
    let server = server().await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    let mut shy = server.login("juliet", "pw", "shy").await;
    shy.send("<presence xmlns='jabber:client'><priority>-1</priority></presence>")
        .await;
    assert_eq!(shy.recv().await.name(), "presence");
    romeo
        .send(&chat("juliet@localhost", "k1", "kept meanwhile"))
        .await;
    shy.expect_nothing().await;
    shy.send("<presence xmlns='jabber:client'><priority>5</priority></presence>")
        .await;
    let kept = next_message(&mut shy).await;
    assert_eq!(kept.attr("id"), Some("k1"));
    assert!(kept.has_child("delay", DELAY), "{}", show(&kept));
    // Once: lowering and raising it again brings nothing more.
    for priority in [-1, 5] {
        shy.send(&format!(
            "<presence xmlns='jabber:client'><priority>{priority}</priority></presence>"
        ))
        .await;
    }
    recv_until(&mut shy, |el| el.name() == "presence").await;
    recv_until(&mut shy, |el| el.name() == "presence").await;
    shy.expect_nothing().await;
}

/// RFC 6121 §8.5.2 for messages that are not a conversation's, and directed presence, to a
/// bare JID: a headline reaches the available resources with a non-negative priority only,
/// presence every available resource, a groupchat message is delivered nowhere and bounces
/// with `service-unavailable`; §8.5.3.2.1: a headline to a resource that is not there is
/// dropped; §4.6.3: whoever got directed presence gets the session's unavailable presence,
/// when it sends one or ends.
#[tokio::test]
async fn headlines_groupchat_and_directed_presence_follow_rfc_6121() {
    let server = server().await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    let mut open = server.login_available("juliet", "pw", "open").await;
    let mut shy = server.login("juliet", "pw", "shy").await;
    shy.send("<presence xmlns='jabber:client'><priority>-1</priority></presence>")
        .await;
    recv_until(&mut shy, |el| {
        el.attr("from") == Some("juliet@localhost/shy")
    })
    .await;
    let mut silent = server.login("juliet", "pw", "silent").await;
    // The shy resource's arrival reaches the open one (RFC 6121 §4.2.2).
    let arrival = open.recv().await;
    assert_eq!(arrival.attr("from"), Some("juliet@localhost/shy"));
    romeo
        .send("<message xmlns='jabber:client' to='juliet@localhost' type='headline' id='h1'><body>news</body></message>")
        .await;
    let got = next_message(&mut open).await;
    assert_eq!(got.attr("id"), Some("h1"));
    assert_eq!(got.attr("type"), Some("headline"));
    // Directed presence to the bare JID reaches every available resource, the shy one too.
    romeo
        .send("<presence xmlns='jabber:client' to='juliet@localhost' id='d1'><show>chat</show></presence>")
        .await;
    for juliet in [&mut open, &mut shy] {
        let got = recv_until(juliet, |el| el.name() == "presence").await;
        assert_eq!(got.attr("id"), Some("d1"));
        assert_eq!(got.attr("from"), Some("romeo@localhost/orchard"));
    }
    // §4.6.3: going unavailable reaches whoever got directed presence, as it went.
    romeo
        .send("<presence xmlns='jabber:client' type='unavailable'/>")
        .await;
    for juliet in [&mut open, &mut shy] {
        let got = recv_until(juliet, |el| el.name() == "presence").await;
        assert_eq!(got.attr("type"), Some("unavailable"), "{}", show(&got));
        assert_eq!(got.attr("from"), Some("romeo@localhost/orchard"));
    }
    romeo.send("<presence xmlns='jabber:client'/>").await;
    recv_until(&mut romeo, |el| el.name() == "presence").await;
    romeo
        .send("<message xmlns='jabber:client' to='juliet@localhost' type='groupchat' id='g1'><body>stray</body></message>")
        .await;
    let bounced = romeo.recv().await;
    assert_eq!(bounced.attr("id"), Some("g1"));
    assert_eq!(
        stanza_error(&bounced).as_deref(),
        Some("service-unavailable")
    );
    romeo
        .send("<message xmlns='jabber:client' to='juliet@localhost/gone' type='headline' id='h2'><body>late</body></message>")
        .await;
    for juliet in [&mut open, &mut shy, &mut silent] {
        juliet.expect_nothing().await;
    }
    romeo.expect_nothing().await;
    // A session that ends sends it too, to a full JID as well.
    romeo
        .send("<presence xmlns='jabber:client' to='juliet@localhost/open'/>")
        .await;
    let got = recv_until(&mut open, |el| el.name() == "presence").await;
    assert_eq!(got.attr("type"), None);
    drop(romeo);
    let gone = recv_until(&mut open, |el| el.name() == "presence").await;
    assert_eq!(gone.attr("type"), Some("unavailable"), "{}", show(&gone));
    assert_eq!(gone.attr("from"), Some("romeo@localhost/orchard"));
    shy.expect_nothing().await;
}

/// The unavailable presence that follows directed presence crosses no block made since,
/// either way (XEP-0191).
#[tokio::test]
async fn a_block_stops_the_unavailable_after_directed_presence() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    for (blocker, sender) in [("juliet", "romeo"), ("romeo", "juliet")] {
        let mut romeo = server.login_available("romeo", "pw", "orchard").await;
        let (blocking, directing) = if blocker == "juliet" {
            (&mut juliet, &mut romeo)
        } else {
            (&mut romeo, &mut juliet)
        };
        let to = if sender == "romeo" {
            "juliet@localhost/balcony"
        } else {
            "romeo@localhost/orchard"
        };
        directing
            .send(&format!("<presence xmlns='jabber:client' to='{to}'/>"))
            .await;
        recv_until(blocking, |el| el.name() == "presence").await;
        let block = format!(
            "<iq xmlns='jabber:client' type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='{sender}@localhost'/></block></iq>"
        );
        ok(&blocking.request(&block).await);
        directing
            .send("<presence xmlns='jabber:client' type='unavailable'/>")
            .await;
        blocking.expect_nothing().await;
        let unblock = "<iq xmlns='jabber:client' type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'/></iq>";
        ok(&blocking.request(unblock).await);
        drop(romeo);
        juliet.send("<presence xmlns='jabber:client'/>").await;
        recv_until(&mut juliet, |el| {
            el.attr("from") == Some("juliet@localhost/balcony")
        })
        .await;
    }
}

/// `verona user del` on a stopped server deletes the account's archive too, as an in-band
/// removal does: whoever takes the name next reads none of it; the other party keeps hers.
#[tokio::test]
async fn the_command_line_deletes_an_accounts_conversations() {
    let server = server().await;
    let data_dir = server.dir.path().to_owned();
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    juliet.send(&chat("romeo@localhost", "1", "kept")).await;
    juliet.expect_nothing().await;
    drop(juliet);
    let TestServer {
        server: running,
        dir,
    } = server;
    running.shutdown().await;
    let config = dir.path().join("cli.toml");
    std::fs::write(
        &config,
        format!("domain = \"localhost\"\ndata_dir = {data_dir:?}\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_verona"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "user",
            "del",
            "romeo@localhost",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = TestServer::start_with(|c| c.data_dir = data_dir).await;
    server.add_user("romeo", "new").await;
    let mut romeo = server.login("romeo", "new", "orchard").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    assert_eq!(romeo.recv().await.name(), "presence");
    // Juliet writes to the new Romeo: a new conversation, his archive holds only that.
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    juliet.send(&chat("romeo@localhost", "2", "after")).await;
    let got = next_message(&mut romeo).await;
    assert_eq!(got.attr("id"), Some("2"));
    let (results, _) = archive_page(&mut romeo, "", "").await;
    assert_eq!(archived_bodies(&results), ["after"]);
    // Hers keeps what she said to the old one.
    let (results, _) = archive_page(&mut juliet, &with("romeo@localhost"), "").await;
    assert_eq!(archived_bodies(&results), ["kept", "after"]);
    drop(dir);
}

/// `[limits] kept_messages_per_minute` (here a burst of 3, then one a second): an account
/// past its rate gets `resource-constraint` for a message that would be kept, and nothing is
/// delivered or archived; what is not kept (a chat state) still passes; another account has
/// its own rate, and reconnecting does not refill it.
#[tokio::test]
async fn kept_messages_are_limited_per_account() {
    let server = TestServer::start_with(|config| {
        config.limits.kept_messages_per_minute = 1;
        config.limits.kept_messages_burst = 3;
    })
    .await;
    for user in ["juliet", "romeo"] {
        server.add_user(user, "pw").await;
    }
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    for n in 0..3 {
        juliet
            .send(&chat(
                "romeo@localhost/orchard",
                &format!("m{n}"),
                &format!("line {n}"),
            ))
            .await;
        assert_eq!(body(&next_message(&mut romeo).await), format!("line {n}"));
    }
    juliet
        .send(&chat("romeo@localhost/orchard", "m3", "one too many"))
        .await;
    let refused = juliet.recv().await;
    assert_eq!(refused.attr("id"), Some("m3"));
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("resource-constraint")
    );
    // A native publish keeps its message too, so it counts alike.
    let refused = juliet.request(&native_publish("n1", "natively")).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("resource-constraint")
    );
    // A chat state is not kept, so not counted.
    juliet
        .send("<message xmlns='jabber:client' to='romeo@localhost/orchard' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await;
    let state = next_message(&mut romeo).await;
    assert!(state.has_child("composing", "http://jabber.org/protocol/chatstates"));
    // Romeo has his own.
    romeo
        .send(&chat("juliet@localhost/balcony", "r0", "reply"))
        .await;
    assert_eq!(body(&next_message(&mut juliet).await), "reply");
    // A new session of Juliet's does not start her over.
    drop(juliet);
    let mut juliet = server.login_available("juliet", "pw", "garden").await;
    juliet
        .send(&chat("romeo@localhost/orchard", "m4", "again"))
        .await;
    let refused = juliet.recv().await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("resource-constraint")
    );
    // Nothing refused was archived.
    let (results, _) = archive_page(&mut romeo, "", "").await;
    let bodies = archived_bodies(&results);
    assert_eq!(bodies, ["line 0", "line 1", "line 2", "reply"]);
    romeo.expect_nothing().await;
}

/// XEP-0191 holds for native publishes as for classic messages (issue #11): a blocked
/// party's publish to the conversation is refused as a message would be, the blocker's own is
/// refused with `<blocked/>`, and nothing reaches either side or the archive.
#[tokio::test]
async fn a_block_holds_for_native_publishes_too() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    juliet
        .send(&chat("romeo@localhost/orchard", "m0", "before"))
        .await;
    assert_eq!(body(&next_message(&mut romeo).await), "before");
    ok(&juliet
        .request(
            "<iq xmlns='jabber:client' type='set' id='b1'>\
               <block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block></iq>",
        )
        .await);
    let refused = romeo.request(&native_publish("p1", "blocked")).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("service-unavailable")
    );
    let refused = juliet.request(&native_publish("p2", "blocker")).await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("not-acceptable"));
    let error = refused.get_child("error", CLIENT).unwrap();
    assert!(error.has_child("blocked", "urn:xmpp:blocking:errors"));
    juliet.expect_nothing().await;
    romeo.expect_nothing().await;
    let (results, _) = archive_page(&mut juliet, "", "").await;
    assert_eq!(archived_bodies(&results), ["before"]);
}

/// XEP-0313 §6.1: the archive's metadata names its first and last messages, by archive id;
/// an empty archive's is empty.
#[tokio::test]
async fn the_archive_says_where_it_starts_and_ends() {
    let t = server().await;
    let mut juliet = t.login_available("juliet", "pw", "balcony").await;
    let mut romeo = t.login_available("romeo", "pw", "orchard").await;
    let metadata =
        &format!("<iq xmlns='jabber:client' type='get' id='md'><metadata xmlns='{MAM}'/></iq>");
    let empty = romeo.request(metadata).await;
    let md = empty
        .get_child("metadata", MAM)
        .unwrap_or_else(|| panic!("{}", show(&empty)));
    assert_eq!(md.children().count(), 0);
    let mut ids = Vec::new();
    for (n, text) in ["wilt thou be gone?", "it is not yet near day"]
        .iter()
        .enumerate()
    {
        juliet
            .send(&chat("romeo@localhost", &format!("m{n}"), text))
            .await;
        ids.push(stanza_id(
            &next_message(&mut romeo).await,
            "romeo@localhost",
        ));
    }
    let reply = romeo.request(metadata).await;
    let md = reply.get_child("metadata", MAM).unwrap();
    let end_id = |name: &str| {
        md.get_child(name, MAM)
            .and_then(|e| e.attr("id"))
            .map(str::to_owned)
    };
    assert_eq!(end_id("start"), Some(ids[0].clone()), "{}", show(&reply));
    assert_eq!(end_id("end"), Some(ids[1].clone()), "{}", show(&reply));
}

/// RFC 6120 §10.1: what one session sends another arrives in the order sent, whichever way
/// each stanza goes through the server: a conversation's message through its node (archived
/// first), a headline, an iq and directed presence straight to the session (found by the sixth
/// review: the message came last).
#[tokio::test]
async fn a_sessions_stanzas_arrive_in_the_order_sent() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    for round in 0..5 {
        let to = "romeo@localhost/orchard";
        juliet.send(&chat(to, &format!("{round}-1"), "first")).await;
        juliet
            .send(&format!("<message xmlns='jabber:client' type='headline' to='{to}' id='{round}-2'><body>news</body></message>"))
            .await;
        juliet
            .send(&format!("<iq xmlns='jabber:client' type='get' to='{to}' id='{round}-3'><query xmlns='jabber:iq:version'/></iq>"))
            .await;
        juliet
            .send(&format!(
                "<presence xmlns='jabber:client' to='{to}' id='{round}-4'/>"
            ))
            .await;
        let mut got = Vec::new();
        while got.len() < 4 {
            let el = romeo.recv().await;
            got.push(format!(
                "{} {}",
                el.name(),
                el.attr("id").unwrap_or_default()
            ));
        }
        assert_eq!(
            got,
            [
                format!("message {round}-1"),
                format!("message {round}-2"),
                format!("iq {round}-3"),
                format!("presence {round}-4"),
            ]
        );
    }
}

/// XEP-0160 §3: a message that does something without a body — an invitation, a reaction, a
/// marker, a retraction — is kept for an absent party, as Prosody keeps it; chat states alone
/// are not (found by the sixth review: all were lost unanswered).
#[tokio::test]
async fn messages_that_do_something_are_kept_for_an_absent_party() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let sent = [
        (
            "inv",
            "<x xmlns='jabber:x:conference' jid='room@chat.localhost'/>",
            "",
        ),
        (
            "react",
            "<reactions xmlns='urn:xmpp:reactions:0' id='m0'><reaction>+1</reaction></reactions>",
            "type='chat'",
        ),
        (
            "state",
            "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
            "type='chat'",
        ),
        (
            "seen",
            "<displayed xmlns='urn:xmpp:chat-markers:0' id='m0'/>",
            "type='chat'",
        ),
        (
            "undo",
            "<retract xmlns='urn:xmpp:message-retract:1' id='m0'/>",
            "type='chat'",
        ),
    ];
    for (id, payload, kind) in sent {
        juliet
            .send(&format!("<message xmlns='jabber:client' {kind} to='romeo@localhost' id='{id}'>{payload}</message>"))
            .await;
    }
    juliet.expect_nothing().await;
    let mut romeo = server.login("romeo", "pw", "orchard").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    let mut kept = Vec::new();
    while kept.len() < 4 {
        let el = next_message(&mut romeo).await;
        assert!(el.has_child("delay", DELAY), "{}", show(&el));
        kept.push(el.attr("id").unwrap_or_default().to_owned());
    }
    assert_eq!(kept, ["inv", "react", "seen", "undo"]);
    romeo.expect_nothing().await;
}

/// XEP-0313 §4.1.1: `end` includes the message its stamp names (to the millisecond the stamps
/// are given in); `ids` naming one that is not there is `item-not-found`; XEP-0059 §2.5: a page
/// by index is `feature-not-implemented` (found by the sixth review: none of these held).
#[tokio::test]
async fn archive_queries_take_their_bounds_as_given() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    says_lines(&mut juliet, &mut romeo, 3).await;
    let (all, _) = archive_page(&mut romeo, "", "").await;
    assert_eq!(all.len(), 3);
    let stamp = |result: &Element| {
        let forwarded = result.get_child("result", MAM).unwrap();
        let forwarded = forwarded.get_child("forwarded", FORWARD).unwrap();
        forwarded
            .get_child("delay", DELAY)
            .unwrap()
            .attr("stamp")
            .unwrap()
            .to_owned()
    };
    let form = |fields: &str| {
        format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>{fields}</x>"
        )
    };
    let until_second = form(&format!(
        "<field var='end'><value>{}</value></field>",
        stamp(&all[1])
    ));
    let (page, _) = archive_page(&mut romeo, &until_second, "").await;
    assert_eq!(archived_bodies(&page), ["line 1", "line 2"]);

    let id = all[0].get_child("result", MAM).unwrap().attr("id").unwrap();
    let ids = form(&format!(
        "<field var='ids'><value>{id}</value><value>no-such-id</value></field>"
    ));
    let (page, reply) = archive_page(&mut romeo, &ids, "").await;
    assert!(page.is_empty());
    assert_eq!(stanza_error(&reply).as_deref(), Some("item-not-found"));

    let by_index = format!("<set xmlns='{RSM}'><max>1</max><index>2</index></set>");
    let (page, reply) = archive_page(&mut romeo, "", &by_index).await;
    assert!(page.is_empty());
    assert_eq!(
        stanza_error(&reply).as_deref(),
        Some("feature-not-implemented")
    );
}

/// XEP-0280 §6 holds for sessions speaking XEP-0207 too (audit round 24): a message marked
/// `<private/>` (or XEP-0334 `<no-copy/>`) reaches the session it names and no other, native
/// or classic, on either side; without the mark the native ones get the node's event (the
/// seed's bcc), as carbons would copy it.
#[tokio::test]
async fn private_messages_are_not_copied_to_native_sessions() {
    let server = server().await;
    let mut desk = server.login_available("juliet", "pw", "desk").await;
    let mut balcony = server.login("juliet", "pw", "balcony").await;
    balcony.presence_with_caps("", NATIVE, true).await;
    let mut romeo = server.login_available("romeo", "pw", "mobile").await;
    let mut native = server.login("romeo", "pw", "native").await;
    // The same capabilities: the server knows them already.
    native.presence_with_caps("", NATIVE, false).await;
    for client in [&mut desk, &mut balcony, &mut romeo, &mut native] {
        while tokio::time::timeout(std::time::Duration::from_millis(300), client.recv())
            .await
            .is_ok()
        {}
    }
    for (id, mark) in [
        ("p1", "<private xmlns='urn:xmpp:carbons:2'/>"),
        ("p2", "<no-copy xmlns='urn:xmpp:hints'/>"),
    ] {
        romeo
            .send(&format!(
                "<message xmlns='jabber:client' type='chat' to='juliet@localhost/desk' id='{id}'><body>only for desk</body>{mark}</message>"
            ))
            .await;
        let got = next_message(&mut desk).await;
        assert_eq!(
            (got.attr("id"), said(&got)),
            (Some(id), "only for desk".to_owned())
        );
        balcony.expect_nothing().await;
        native.expect_nothing().await;
        romeo.expect_nothing().await;
    }
    romeo
        .send(&chat("juliet@localhost/desk", "c1", "for all"))
        .await;
    assert_eq!(said(&next_message(&mut desk).await), "for all");
    for copy in [&mut balcony, &mut native] {
        let event = next_message(copy).await;
        assert!(event.has_child("event", EVENT), "{}", show(&event));
        assert_eq!(said(&event), "for all");
    }
}

/// DESIGN §3, rendering rule 1: a session whose capabilities include `presence+notify` gets a
/// conversation's messages as the node's events (the seed's Ex. 20), those kept while its
/// account was away too (XEP-0160): the event it would have had live, with its delay, not a
/// classic `<message type='chat'/>`.
#[tokio::test]
async fn kept_messages_reach_a_native_session_as_events() {
    let server = server().await;
    let mut juliet = server.login_available("juliet", "pw", "balcony").await;
    // The conversation's event for Romeo, past his own presence's.
    async fn event(romeo: &mut Client) -> Element {
        loop {
            let el = next_message(romeo).await;
            if el.attr("from") != Some("romeo@localhost") {
                return el;
            }
        }
    }
    let item = |event: &Element| {
        event
            .get_child("event", EVENT)
            .and_then(|e| e.get_child("items", EVENT))
            .filter(|items| items.attr("node") == Some(CONVERSATION))
            .and_then(|items| items.get_child("item", EVENT))
            .unwrap_or_else(|| panic!("an item of the conversation: {}", show(event)))
            .clone()
    };
    let replyto = |event: &Element| {
        event
            .get_child("addresses", ADDRESS)
            .and_then(|a| a.get_child("address", ADDRESS))
            .and_then(|a| a.attr("jid"))
            .map(str::to_owned)
    };
    let mut romeo = server.login("romeo", "pw", "mobile").await;
    romeo.presence_with_caps("", NATIVE, true).await;
    juliet.send(&chat("romeo@localhost", "live", "live")).await;
    let live = event(&mut romeo).await;
    assert_eq!(
        live.attr("from"),
        Some("pubsub.localhost"),
        "{}",
        show(&live)
    );
    assert!(!live.has_child("delay", DELAY), "{}", show(&live));
    romeo.send("</stream:stream>").await;
    romeo.expect_closed().await;

    juliet
        .send(&chat("romeo@localhost", "away", "while away"))
        .await;
    // Stored (and so on its way to Romeo's offline queue) before he comes back.
    loop {
        let (results, _) = archive_page(&mut juliet, "", "").await;
        if archived_bodies(&results).contains(&"while away".to_owned()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut romeo = server.login("romeo", "pw", "garden").await;
    romeo.presence_with_caps("", NATIVE, false).await;
    let kept = event(&mut romeo).await;
    assert_eq!(
        kept.attr("from"),
        Some("pubsub.localhost"),
        "{}",
        show(&kept)
    );
    assert_eq!(kept.attr("type"), live.attr("type"));
    assert_eq!(replyto(&kept), replyto(&live));
    assert_eq!(replyto(&kept).as_deref(), Some("juliet@localhost/balcony"));
    assert!(kept.has_child("delay", DELAY), "{}", show(&kept));
    let (live, kept) = (item(&live), item(&kept));
    assert_eq!(kept.attr("publisher"), live.attr("publisher"));
    let said = |id: &str, body: &str| -> Element {
        format!(
            "<message xmlns='jabber:client' from='juliet@localhost/balcony' to='romeo@localhost' \
               type='chat' id='{id}'><body>{body}</body></message>"
        )
        .parse()
        .unwrap()
    };
    assert_eq!(
        live.get_child("message", CLIENT),
        Some(&said("live", "live"))
    );
    let message = kept.get_child("message", CLIENT);
    assert_eq!(message, Some(&said("away", "while away")));
    // Its item id is its place in Romeo's archive.
    let (results, _) = archive_page(&mut romeo, "", "").await;
    let last = results.last().and_then(|m| m.get_child("result", MAM));
    assert_eq!(last.and_then(|r| r.attr("id")), kept.attr("id"));
    romeo.expect_nothing().await;
}

/// What a message kept for an absent account says: a message node's notification's message,
/// or the message itself.
fn said(message: &Element) -> String {
    match message.has_child("event", EVENT) {
        true => body(event_message(message)),
        false => body(message),
    }
}

/// What `user`'s next session gets from its offline queue at its presence (what each says,
/// in order). Its shard delivers them after the batch that takes the presence, so an answer
/// of that shard asked for after one to a request sent with the presence comes after them.
async fn kept_at_login(server: &TestServer, user: &str) -> Vec<String> {
    let mut client = server.login(user, "pw", "later").await;
    client.send("<presence xmlns='jabber:client'/>").await;
    let roster = |id: &str| {
        format!(
            "<iq xmlns='jabber:client' type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>"
        )
    };
    ok(&client.request(&roster("r1")).await);
    client.send(&roster("r2")).await;
    let mut kept = Vec::new();
    loop {
        let el = client.recv().await;
        if el.name() == "iq" && el.attr("id") == Some("r2") {
            break;
        }
        if el.name() == "message" {
            assert!(el.has_child("delay", DELAY), "{}", show(&el));
            kept.push(said(&el));
        }
    }
    client.expect_nothing().await;
    kept
}

/// Nurse (a stranger) makes a node of `pubsub.localhost` with `victims` as members, subscribes
/// them as its owner (XEP-0060 §8.8.2) and publishes `n` messages to it ("spam 0"…), `pad`
/// after each body's text.
async fn nurse_floods(server: &TestServer, victims: &[&str], n: usize, pad: &str) -> Client {
    let mut nurse = server.login_available("nurse", "pw", "cellar").await;
    let create = format!(
        "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='c1'>\
           <pubsub xmlns='{PUBSUB}'><create node='spam'/></pubsub></iq>"
    );
    ok(&nurse.request(&create).await);
    let (affiliations, subscriptions): (String, String) = victims
        .iter()
        .map(|jid| {
            (
                format!("<affiliation jid='{jid}' affiliation='member'/>"),
                format!("<subscription jid='{jid}' subscription='subscribed'/>"),
            )
        })
        .unzip();
    for (id, what) in [
        (
            "c2",
            format!("<affiliations node='spam'>{affiliations}</affiliations>"),
        ),
        (
            "c3",
            format!("<subscriptions node='spam'>{subscriptions}</subscriptions>"),
        ),
    ] {
        let manage = format!(
            "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='{id}'>\
               <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>{what}</pubsub></iq>"
        );
        ok(&nurse.request(&manage).await);
    }
    for n in 0..n {
        ok(&nurse.request(&spam(n, pad)).await);
    }
    nurse
}

/// Nurse's publish of "spam `n`" (`pad` after it) to her node.
fn spam(n: usize, pad: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='p{n}'>\
           <pubsub xmlns='{PUBSUB}'><publish node='spam'><item id='i{n}'>\
             <message xmlns='jabber:client' type='chat'><body>spam {n}{pad}</body></message>\
           </item></publish></pubsub></iq>"
    )
}

/// Issue #11 (audit of 2026-12-07): a stranger who subscribes an absent account to a message
/// node and floods it fills at most `[limits] offline_share_percent` of its offline queue
/// (here 25% of 20): a contact's message that follows is kept and comes at the next login.
#[tokio::test]
async fn one_origin_takes_only_a_share_of_an_offline_queue() {
    let server = TestServer::start_with(|config| config.limits.max_offline_messages = 20).await;
    for user in ["juliet", "romeo", "nurse"] {
        server.add_user(user, "pw").await;
    }
    let mut nurse = nurse_floods(&server, &["juliet@localhost"], 20, "").await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    romeo.send(&chat("juliet@localhost", "m1", "hello")).await;
    romeo.expect_nothing().await;
    nurse.expect_nothing().await;
    let mut kept = kept_at_login(&server, "juliet").await;
    kept.sort();
    let expected = ["hello", "spam 0", "spam 1", "spam 2", "spam 3", "spam 4"];
    assert_eq!(kept, expected);
}

/// `[limits] max_offline_bytes` bounds an offline queue besides its count: of ten messages of
/// about 1 KB, fewer than five fit in 4 KiB, the first ones; the rest are in the archive only,
/// and their sender is told so, `service-unavailable` (XEP-0160 §2; the recheck of audit round
/// 20 found them dropped from the queue without a word).
#[tokio::test]
async fn an_offline_queue_is_bounded_in_bytes() {
    let server = TestServer::start_with(|config| {
        config.limits.max_offline_bytes = 4096;
        config.limits.offline_share_percent = 100;
    })
    .await;
    for user in ["juliet", "romeo"] {
        server.add_user(user, "pw").await;
    }
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    let pad = "x".repeat(1000);
    let lines: Vec<String> = (0..10).map(|n| format!("line {n} {pad}")).collect();
    for (n, line) in lines.iter().enumerate() {
        romeo
            .send(&chat("juliet@localhost", &format!("m{n}"), line))
            .await;
    }
    // Each one not kept is answered, the last one (never kept) last.
    let mut bounced = Vec::new();
    while bounced.last().is_none_or(|id| *id != "m9") {
        let answer = romeo.recv().await;
        assert_eq!(answer.attr("type"), Some("error"), "{}", show(&answer));
        assert_eq!(
            stanza_error(&answer).as_deref(),
            Some("service-unavailable")
        );
        bounced.push(answer.attr("id").unwrap_or_default().to_owned());
    }
    let kept = kept_at_login(&server, "juliet").await;
    assert!((1..4).contains(&kept.len()), "{} kept", kept.len());
    assert_eq!(kept, lines[..kept.len()]);
    let not_kept: Vec<String> = (kept.len()..lines.len()).map(|n| format!("m{n}")).collect();
    assert_eq!(bounced, not_kept);
    let (results, _) = archive_page(&mut romeo, "", "").await;
    assert_eq!(archived_bodies(&results), lines);
}

/// XEP-0191 §3.3: what an account kept from someone it blocks before it comes back is not
/// delivered (a message node's notifications and a message alike), and is gone once it
/// unblocks; a contact's message is delivered.
#[tokio::test]
async fn what_was_kept_from_someone_blocked_since_is_not_delivered() {
    let server = server().await;
    let mut nurse = nurse_floods(&server, &["juliet@localhost"], 3, "").await;
    nurse.send(&chat("juliet@localhost", "n1", "buy now")).await;
    let mut romeo = server.login_available("romeo", "pw", "orchard").await;
    romeo.send(&chat("juliet@localhost", "m1", "hello")).await;
    romeo.expect_nothing().await;
    nurse.expect_nothing().await;
    let mut juliet = server.login("juliet", "pw", "balcony").await;
    ok(&juliet
        .request(
            "<iq xmlns='jabber:client' type='set' id='b1'>\
               <block xmlns='urn:xmpp:blocking'><item jid='nurse@localhost'/></block></iq>",
        )
        .await);
    juliet.send("<presence xmlns='jabber:client'/>").await;
    let message = next_message(&mut juliet).await;
    assert_eq!(said(&message), "hello");
    assert_eq!(message.attr("from"), Some("romeo@localhost/orchard"));
    juliet.expect_nothing().await;
    ok(&juliet
        .request(
            "<iq xmlns='jabber:client' type='set' id='u1'>\
               <unblock xmlns='urn:xmpp:blocking'><item jid='nurse@localhost'/></unblock></iq>",
        )
        .await);
    drop(juliet);
    assert!(kept_at_login(&server, "juliet").await.is_empty());
}

/// Issue #11: each copy of a notification kept for an absent subscriber is paid from the
/// publisher's `[limits] broadcast_bytes_per_sec`: one publish to ten absent subscribers
/// (here with a 4 KiB burst) keeps the copies the bucket pays for, not ten, and leaves it
/// empty for the next publish.
#[tokio::test]
async fn copies_kept_offline_are_paid_by_the_publisher() {
    let server = TestServer::start_with(|config| {
        config.limits.broadcast_bytes_per_sec = 1;
        config.limits.broadcast_burst_bytes = 4096;
    })
    .await;
    let victims: Vec<String> = (0..10).map(|n| format!("v{n}")).collect();
    for user in victims.iter().map(String::as_str).chain(["nurse"]) {
        server.add_user(user, "pw").await;
    }
    // An open node each subscribes to itself: nothing the owner does but publish is paid.
    let mut nurse = server.login("nurse", "pw", "cellar").await;
    let create = format!(
        "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='c1'>\
           <pubsub xmlns='{PUBSUB}'><create node='spam'/><configure>\
             <x xmlns='jabber:x:data' type='submit'>\
               <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
               <field var='pubsub#access_model'><value>open</value></field>\
             </x></configure></pubsub></iq>"
    );
    ok(&nurse.request(&create).await);
    for victim in &victims {
        let mut client = server.login(victim, "pw", "first").await;
        let subscribe = format!(
            "<iq xmlns='jabber:client' type='set' to='pubsub.localhost' id='s1'>\
               <pubsub xmlns='{PUBSUB}'><subscribe node='spam' jid='{victim}@localhost'/></pubsub></iq>"
        );
        ok(&client.request(&subscribe).await);
    }
    let pad = format!(" {}", "x".repeat(1000));
    ok(&nurse.request(&spam(0, &pad)).await);
    let refused = nurse.request(&spam(1, &pad)).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("resource-constraint")
    );
    nurse.expect_nothing().await;
    let mut kept = 0;
    for victim in &victims {
        let got = kept_at_login(&server, victim).await;
        if !got.is_empty() {
            assert_eq!(got, [format!("spam 0{pad}")]);
            kept += 1;
        }
    }
    assert!((1..10).contains(&kept), "{kept} copies kept");
}
