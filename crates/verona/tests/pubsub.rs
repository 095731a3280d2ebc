//! XEP-0060 at pubsub.localhost against the real server over TCP: two or three clients per test,
//! XEP-0060's own request shapes, "not delivered" checked with a timeout.

mod common;

use common::process::{Process, add_users, login_at};
use common::*;
use minidom::Element;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const DATA: &str = "jabber:x:data";

async fn server_with(users: &[&str]) -> TestServer {
    let t = TestServer::start().await;
    for user in users {
        t.add_user(user, "pw").await;
    }
    t
}

/// The stanza error condition and the pubsub#errors condition of an iq error.
fn errors(reply: &Element) -> (Option<String>, Option<String>) {
    let error = reply.get_child("error", NS_CLIENT);
    let pubsub = error.and_then(|e| {
        e.children()
            .find(|c| c.ns() == "http://jabber.org/protocol/pubsub#errors")
            .map(|c| c.name().to_owned())
    });
    (stanza_error(reply), pubsub)
}

fn form_field(form: &Element, var: &str) -> Option<String> {
    form.children()
        .find(|f| f.attr("var") == Some(var))
        .and_then(|f| f.get_child("value", DATA))
        .map(|v| v.text())
}

fn config_form(fields: &[(&str, &str)]) -> String {
    let mut form = String::from(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>",
    );
    for (var, value) in fields {
        form.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    form.push_str("</x>");
    form
}

async fn create(c: &mut Client, node: &str, fields: &[(&str, &str)]) {
    let configure = if fields.is_empty() {
        String::new()
    } else {
        format!("<configure>{}</configure>", config_form(fields))
    };
    let reply = c
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='create-{node}' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><create node='{node}'/>{configure}</pubsub></iq>"
        ))
        .await;
    ok(&reply);
}

async fn subscribe(c: &mut Client, node: &str, jid: &str) -> Element {
    c.request(&format!(
        "<iq xmlns='jabber:client' type='set' id='sub-{node}' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{jid}'/></pubsub></iq>"
    ))
    .await
}

/// A session that sent its presence: a notification for its account's bare JID reaches it
/// (RFC 6121 §8.5.2.1.1).
/// Publishes `<entry>text</entry>` and returns the item id the service assigned or kept.
async fn publish(c: &mut Client, node: &str, id: Option<&str>, text: &str) -> String {
    let id_attr = id.map(|id| format!(" id='{id}'")).unwrap_or_default();
    let reply = c
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='pub-{text}' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item{id_attr}><entry xmlns='urn:example:verona'>{text}</entry></item></publish></pubsub></iq>"
        ))
        .await;
    ok(&reply);
    reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("publish", PUBSUB))
        .and_then(|p| p.get_child("item", PUBSUB))
        .and_then(|i| i.attr("id"))
        .unwrap_or_else(|| panic!("publish result names the item: {}", show(&reply)))
        .to_owned()
}

fn event(message: &Element) -> &Element {
    assert_eq!(message.name(), "message", "{}", show(message));
    assert_eq!(message.attr("from"), Some("pubsub.localhost"));
    message
        .get_child("event", EVENT)
        .unwrap_or_else(|| panic!("a pubsub event: {}", show(message)))
}

fn published_entries(message: &Element) -> Vec<(String, String)> {
    let items = event(message).get_child("items", EVENT).expect("items");
    items
        .children()
        .filter(|i| i.is("item", EVENT))
        .map(|i| {
            let entry = i.get_child("entry", "urn:example:verona").map(|e| e.text());
            (
                i.attr("id").unwrap_or_default().to_owned(),
                entry.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn service_is_discoverable() {
    let t = server_with(&["juliet"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let items = juliet
        .request("<iq xmlns='jabber:client' type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    let query = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap();
    assert!(
        query
            .children()
            .any(|i| i.attr("jid") == Some("pubsub.localhost")),
        "{}",
        show(&items)
    );

    let info = juliet
        .request("<iq xmlns='jabber:client' type='get' id='d2' to='pubsub.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let query = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let identity = query
        .get_child("identity", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert_eq!(
        (identity.attr("category"), identity.attr("type")),
        (Some("pubsub"), Some("service"))
    );
    let features: Vec<_> = query.children().filter_map(|f| f.attr("var")).collect();
    for feature in [
        "http://jabber.org/protocol/pubsub",
        "http://jabber.org/protocol/pubsub#access-authorize",
        "http://jabber.org/protocol/pubsub#publish",
        "http://jabber.org/protocol/pubsub#subscribe",
    ] {
        assert!(
            features.contains(&feature),
            "{feature} missing: {features:?}"
        );
    }
}

/// Create an open node, two subscribers (a full and a bare JID), publish: both are notified
/// with distinct ids, the publisher (not subscribed) is not.
#[tokio::test]
async fn publish_notifies_every_subscriber_once() {
    let t = server_with(&["juliet", "romeo", "nurse"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let mut nurse = t.login_available("nurse", "pw", "chamber").await;
    create(&mut juliet, "news", &[("pubsub#access_model", "open")]).await;

    let reply = subscribe(&mut romeo, "news", "romeo@localhost/orchard").await;
    ok(&reply);
    let sub = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("subscription", PUBSUB))
        .unwrap();
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    assert_eq!(sub.attr("jid"), Some("romeo@localhost/orchard"));
    ok(&subscribe(&mut nurse, "news", "nurse@localhost").await);

    let id = publish(&mut juliet, "news", None, "Wherefore").await;
    assert!(!id.is_empty());
    let to_romeo = romeo.recv().await;
    let to_nurse = nurse.recv().await;
    assert_eq!(
        published_entries(&to_romeo),
        vec![(id.clone(), "Wherefore".to_owned())]
    );
    assert_eq!(
        published_entries(&to_nurse),
        vec![(id.clone(), "Wherefore".to_owned())]
    );
    assert_eq!(to_romeo.attr("to"), Some("romeo@localhost/orchard"));
    assert_ne!(
        to_romeo.attr("id"),
        to_nurse.attr("id"),
        "notification ids are unique"
    );
    assert_eq!(to_romeo.attr("type"), Some("headline"));
    juliet.expect_nothing().await;

    // A publish with our own id keeps it.
    assert_eq!(
        publish(&mut juliet, "news", Some("act-2"), "Balcony").await,
        "act-2"
    );
    assert_eq!(published_entries(&romeo.recv().await)[0].0, "act-2");
    assert_eq!(published_entries(&nurse.recv().await)[0].0, "act-2");
}

/// RFC 6121 §8.5.2.1.1: a notification for a subscriber by bare JID is a message to it: it
/// reaches the sessions that sent their presence with a non-negative priority, not one that
/// sent none nor one whose priority is negative.
#[tokio::test]
async fn a_bare_subscriber_is_notified_at_its_available_sessions_only() {
    let t = server_with(&["juliet", "nurse"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut on = t.login("nurse", "pw", "on").await;
    let mut silent = t.login("nurse", "pw", "silent").await;
    let mut low = t.login("nurse", "pw", "low").await;
    let presence_of = |resource: &'static str| {
        move |el: &Element| {
            el.name() == "presence"
                && el.attr("from") == Some(&format!("nurse@localhost/{resource}"))
        }
    };
    on.send("<presence xmlns='jabber:client'/>").await;
    recv_until(&mut on, presence_of("on")).await;
    low.send("<presence xmlns='jabber:client'><priority>-1</priority></presence>")
        .await;
    recv_until(&mut low, presence_of("low")).await;
    create(&mut juliet, "news", &[("pubsub#access_model", "open")]).await;
    ok(&subscribe(&mut on, "news", "nurse@localhost").await);

    let id = publish(&mut juliet, "news", None, "Wherefore").await;
    let event = recv_until(&mut on, |el| el.has_child("event", EVENT)).await;
    assert_eq!(event.attr("to"), Some("nurse@localhost"));
    assert_eq!(published_entries(&event), [(id, "Wherefore".to_owned())]);
    // The other sessions' copies would have been queued with that one: what they got before
    // a later iq to each is all they got.
    for (client, resource) in [(&mut silent, "silent"), (&mut low, "low")] {
        juliet
            .send(&format!(
                "<iq xmlns='jabber:client' type='get' id='mark' to='nurse@localhost/{resource}'><query xmlns='jabber:iq:version'/></iq>"
            ))
            .await;
        let mut got = Vec::new();
        loop {
            let el = client.recv().await;
            if el.name() == "iq" && el.attr("id") == Some("mark") {
                break;
            }
            got.push(el);
        }
        assert!(
            !got.iter().any(|el| el.has_child("event", EVENT)),
            "{resource}: {:?}",
            got.iter().map(show).collect::<Vec<_>>()
        );
    }
}

/// XEP-0060 §8.6 and XEP-0207: subscribe to an authorize node → pending → the owner gets the
/// form → approves → the subscriber is told and gets the last item; deny for another.
#[tokio::test]
async fn authorize_flow_approve_and_deny() {
    let t = server_with(&["juliet", "romeo", "paris"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login_available("romeo", "pw", "orchard").await;
    let mut paris = t.login_available("paris", "pw", "church").await;
    // No configuration: the service default is authorize (XEP-0207 §8).
    create(&mut juliet, "heart", &[]).await;
    let item = publish(&mut juliet, "heart", None, "Deny thy father").await;

    let reply = subscribe(&mut romeo, "heart", "romeo@localhost").await;
    ok(&reply);
    let sub = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("subscription", PUBSUB))
        .unwrap();
    assert_eq!(sub.attr("subscription"), Some("pending"));
    romeo.expect_nothing().await;

    let request = juliet.recv().await;
    let form = request
        .get_child("x", DATA)
        .unwrap_or_else(|| panic!("a form: {}", show(&request)));
    assert_eq!(form.attr("type"), Some("form"));
    assert_eq!(
        form_field(form, "FORM_TYPE").as_deref(),
        Some("http://jabber.org/protocol/pubsub#subscribe_authorization")
    );
    assert_eq!(form_field(form, "pubsub#node").as_deref(), Some("heart"));
    assert_eq!(
        form_field(form, "pubsub#subscriber_jid").as_deref(),
        Some("romeo@localhost")
    );
    let subid = form_field(form, "pubsub#subid");

    let subid_field = subid
        .map(|s| format!("<field var='pubsub#subid'><value>{s}</value></field>"))
        .unwrap_or_default();
    juliet
        .send(&format!(
            "<message xmlns='jabber:client' to='pubsub.localhost' id='approve1'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field>{subid_field}<field var='pubsub#node'><value>heart</value></field><field var='pubsub#subscriber_jid'><value>romeo@localhost</value></field><field var='pubsub#allow'><value>true</value></field></x></message>"
        ))
        .await;
    let mut got_state = false;
    let mut got_item = false;
    for _ in 0..2 {
        let message = romeo.recv().await;
        let event = event(&message);
        if let Some(sub) = event.get_child("subscription", EVENT) {
            assert_eq!(sub.attr("subscription"), Some("subscribed"));
            assert_eq!(sub.attr("node"), Some("heart"));
            got_state = true;
        } else {
            assert_eq!(
                published_entries(&message),
                vec![(item.clone(), "Deny thy father".to_owned())]
            );
            got_item = true;
        }
    }
    assert!(got_state && got_item);

    // Deny, with the seed's Ex. 11 shape: submitted to the server, misspelt field name.
    ok(&subscribe(&mut paris, "heart", "paris@localhost").await);
    let request = juliet.recv().await;
    assert!(request.get_child("x", DATA).is_some());
    juliet
        .send("<message xmlns='jabber:client' to='localhost' id='deny1'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field><field var='pubsub#node'><value>heart</value></field><field var='pusub#subscriber_jid'><value>paris@localhost</value></field><field var='pubsub#allow'><value>false</value></field></x></message>")
        .await;
    let message = paris.recv().await;
    let sub = event(&message)
        .get_child("subscription", EVENT)
        .expect("a subscription notice");
    assert_eq!(sub.attr("subscription"), Some("none"));
    publish(&mut juliet, "heart", None, "Parting").await;
    assert_eq!(published_entries(&romeo.recv().await)[0].1, "Parting");
    paris.expect_nothing().await;
}

/// XEP-0060 §8.6: a request made while the owner is offline reaches her at her next login.
#[tokio::test]
async fn a_request_made_while_the_owner_is_offline_reaches_her_at_login() {
    let t = server_with(&["juliet", "paris"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    create(&mut juliet, "heart", &[]).await;
    drop(juliet);
    let mut paris = t.login("paris", "pw", "church").await;
    ok(&subscribe(&mut paris, "heart", "paris@localhost").await);

    let mut juliet = t.login("juliet", "pw", "tower").await;
    juliet.send("<presence xmlns='jabber:client'/>").await;
    let request = recv_until(&mut juliet, |el| el.name() == "message").await;
    assert_eq!(request.attr("from"), Some("pubsub.localhost"));
    let form = request
        .get_child("x", DATA)
        .unwrap_or_else(|| panic!("a form: {}", show(&request)));
    assert_eq!(form_field(form, "pubsub#node").as_deref(), Some("heart"));
    assert_eq!(
        form_field(form, "pubsub#subscriber_jid").as_deref(),
        Some("paris@localhost")
    );
}

/// RFC 6120 §8.3.1: an answer sent to `pubsub.localhost` that matches no request there
/// bounces from `pubsub.localhost`, whoever sends it (the shard of the sender's account or
/// another), rather than from the rooms' service it was handed to.
#[tokio::test]
async fn an_unmatched_answer_to_the_service_bounces_from_it() {
    let users = ["juliet", "romeo", "nurse", "tybalt"];
    let t = server_with(&users).await;
    for user in users {
        let mut c = t.login(user, "pw", "home").await;
        c.send("<message xmlns='jabber:client' to='pubsub.localhost' id='stale'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field><field var='pubsub#node'><value>no-such-node</value></field><field var='pubsub#subscriber_jid'><value>paris@localhost</value></field><field var='pubsub#allow'><value>true</value></field></x></message>")
            .await;
        let bounce = c.recv().await;
        assert_eq!(
            (bounce.name(), bounce.attr("type"), bounce.attr("from")),
            ("message", Some("error"), Some("pubsub.localhost")),
            "{}",
            show(&bounce)
        );
        assert_eq!(stanza_error(&bounce).as_deref(), Some("item-not-found"));
    }
}

/// A whitelist node: a non-member can neither subscribe nor read; a member can.
#[tokio::test]
async fn whitelist_is_enforced() {
    let t = server_with(&["juliet", "romeo", "tybalt"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let mut tybalt = t.login("tybalt", "pw", "street").await;
    create(
        &mut juliet,
        "letters",
        &[("pubsub#access_model", "whitelist")],
    )
    .await;
    publish(&mut juliet, "letters", Some("l1"), "Secret").await;

    let reply = subscribe(&mut tybalt, "letters", "tybalt@localhost").await;
    assert_eq!(
        errors(&reply),
        (Some("not-allowed".into()), Some("closed-node".into()))
    );
    let reply = tybalt
        .request("<iq xmlns='jabber:client' type='get' id='i1' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='letters'/></pubsub></iq>")
        .await;
    assert_eq!(
        errors(&reply),
        (Some("not-allowed".into()), Some("closed-node".into()))
    );

    let reply = juliet
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='a1' to='pubsub.localhost'><pubsub xmlns='{OWNER}'><affiliations node='letters'><affiliation jid='romeo@localhost' affiliation='member'/></affiliations></pubsub></iq>"
        ))
        .await;
    ok(&reply);
    ok(&subscribe(&mut romeo, "letters", "romeo@localhost").await);
    let reply = romeo
        .request("<iq xmlns='jabber:client' type='get' id='i2' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='letters'/></pubsub></iq>")
        .await;
    ok(&reply);
    assert!(show(&reply).contains("Secret"), "{}", show(&reply));
    tybalt.expect_nothing().await;
}

/// `pubsub#expire=presence`: the subscription ends with the session.
#[tokio::test]
async fn temporary_subscription_ends_at_disconnect() {
    let t = server_with(&["juliet", "romeo"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    create(&mut juliet, "moment", &[("pubsub#access_model", "open")]).await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let reply = romeo
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='t1' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='moment' jid='romeo@localhost/orchard'/><options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field><field var='pubsub#expire'><value>presence</value></field></x></options></pubsub></iq>"
        ))
        .await;
    ok(&reply);
    let owner_view = "<iq xmlns='jabber:client' type='get' id='s1' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><subscriptions node='moment'/></pubsub></iq>";
    let subscriptions = juliet.request(owner_view).await;
    assert!(
        show(&subscriptions).contains("romeo@localhost/orchard"),
        "{}",
        show(&subscriptions)
    );

    drop(romeo);
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if !show(&juliet.request(owner_view).await).contains("romeo@localhost") {
            gone = true;
            break;
        }
    }
    assert!(gone, "the temporary subscription outlived the session");
    publish(&mut juliet, "moment", None, "Too late").await;
}

/// XEP-0059 paging over items, newest first.
#[tokio::test]
async fn items_paged_with_rsm() {
    let t = server_with(&["juliet", "romeo"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    create(
        &mut juliet,
        "diary",
        &[("pubsub#access_model", "open"), ("pubsub#max_items", "20")],
    )
    .await;
    for n in 1..=5 {
        publish(
            &mut juliet,
            "diary",
            Some(&format!("d{n}")),
            &format!("day {n}"),
        )
        .await;
    }
    let page = |after: &str| {
        let id = after.len();
        format!(
            "<iq xmlns='jabber:client' type='get' id='page{id}' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><items node='diary'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max>{after}</set></pubsub></iq>"
        )
    };
    let first = romeo.request(&page("")).await;
    ok(&first);
    let pubsub = first.get_child("pubsub", PUBSUB).unwrap();
    let ids: Vec<_> = pubsub
        .get_child("items", PUBSUB)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("id"))
        .collect();
    assert_eq!(ids, ["d5", "d4"], "{}", show(&first));
    let set = pubsub
        .get_child("set", "http://jabber.org/protocol/rsm")
        .expect("an RSM result");
    assert_eq!(
        set.get_child("count", "http://jabber.org/protocol/rsm")
            .map(|c| c.text())
            .as_deref(),
        Some("5")
    );
    let last = set
        .get_child("last", "http://jabber.org/protocol/rsm")
        .unwrap()
        .text();

    let second = romeo
        .request(&page(&format!("<after>{last}</after>")))
        .await;
    let pubsub = second.get_child("pubsub", PUBSUB).unwrap();
    let ids: Vec<_> = pubsub
        .get_child("items", PUBSUB)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("id"))
        .collect();
    assert_eq!(ids, ["d3", "d2"], "{}", show(&second));

    // max_items and ids.
    let newest = romeo
        .request(&format!("<iq xmlns='jabber:client' type='get' id='m1' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><items node='diary' max_items='1'/></pubsub></iq>"))
        .await;
    assert!(show(&newest).contains("day 5") && !show(&newest).contains("day 4"));
    let by_id = romeo
        .request(&format!("<iq xmlns='jabber:client' type='get' id='m2' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><items node='diary'><item id='d2'/></items></pubsub></iq>"))
        .await;
    assert!(show(&by_id).contains("day 2") && !show(&by_id).contains("day 3"));
}

/// Retract, purge and delete reach subscribers; errors for the impossible.
#[tokio::test]
async fn retract_purge_delete_and_errors() {
    let t = server_with(&["juliet", "romeo"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login_available("romeo", "pw", "orchard").await;
    create(&mut juliet, "vows", &[("pubsub#access_model", "open")]).await;
    ok(&subscribe(&mut romeo, "vows", "romeo@localhost").await);
    publish(&mut juliet, "vows", Some("v1"), "Swear not").await;
    romeo.recv().await;

    ok(&juliet
        .request(&format!("<iq xmlns='jabber:client' type='set' id='r1' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><retract node='vows' notify='true'><item id='v1'/></retract></pubsub></iq>"))
        .await);
    let retract = romeo.recv().await;
    let items = event(&retract).get_child("items", EVENT).unwrap();
    assert_eq!(
        items.get_child("retract", EVENT).and_then(|r| r.attr("id")),
        Some("v1")
    );

    publish(&mut juliet, "vows", Some("v2"), "By the moon").await;
    romeo.recv().await;
    ok(&juliet
        .request(&format!("<iq xmlns='jabber:client' type='set' id='pg' to='pubsub.localhost'><pubsub xmlns='{OWNER}'><purge node='vows'/></pubsub></iq>"))
        .await);
    assert!(event(&romeo.recv().await).has_child("purge", EVENT));

    // Romeo may not delete Juliet's node.
    let reply = romeo
        .request(&format!("<iq xmlns='jabber:client' type='set' id='del0' to='pubsub.localhost'><pubsub xmlns='{OWNER}'><delete node='vows'/></pubsub></iq>"))
        .await;
    assert_eq!(errors(&reply).0.as_deref(), Some("forbidden"));
    ok(&juliet
        .request(&format!("<iq xmlns='jabber:client' type='set' id='del1' to='pubsub.localhost'><pubsub xmlns='{OWNER}'><delete node='vows'/></pubsub></iq>"))
        .await);
    assert!(event(&romeo.recv().await).has_child("delete", EVENT));

    let cases = [
        (
            format!(
                "<iq xmlns='jabber:client' type='set' id='e1' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><publish node='nowhere'><item><x xmlns='urn:x'/></item></publish></pubsub></iq>"
            ),
            "item-not-found",
        ),
        (
            format!(
                "<iq xmlns='jabber:client' type='set' id='e2' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='nowhere' jid='romeo@localhost'/></pubsub></iq>"
            ),
            "item-not-found",
        ),
    ];
    for (request, condition) in cases {
        let reply = romeo.request(&request).await;
        assert_eq!(errors(&reply).0.as_deref(), Some(condition), "{request}");
    }
    create(&mut juliet, "taken", &[]).await;
    let reply = romeo
        .request(&format!("<iq xmlns='jabber:client' type='set' id='e3' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><create node='taken'/></pubsub></iq>"))
        .await;
    assert_eq!(errors(&reply).0.as_deref(), Some("conflict"));
    let reply = romeo
        .request(&format!("<iq xmlns='jabber:client' type='set' id='e4' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='taken' jid='juliet@localhost'/></pubsub></iq>"))
        .await;
    assert_eq!(
        errors(&reply),
        (Some("bad-request".into()), Some("invalid-jid".into()))
    );
}

/// Every acknowledged node, subscription and item survives `kill -9`.
#[tokio::test]
async fn acknowledged_state_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), &["juliet", "romeo"]);
    let server = Process::start(dir.path()).await;
    let mut juliet = server.login(dir.path(), "juliet", "balcony").await;
    let mut romeo = server.login(dir.path(), "romeo", "orchard").await;
    create(
        &mut juliet,
        "chronicle",
        &[("pubsub#access_model", "open"), ("pubsub#max_items", "100")],
    )
    .await;
    ok(&subscribe(&mut romeo, "chronicle", "romeo@localhost").await);
    for n in 0..30 {
        publish(
            &mut juliet,
            "chronicle",
            Some(&format!("c{n}")),
            &format!("entry {n}"),
        )
        .await;
    }
    server.kill_9();

    let server = Process::start(dir.path()).await;
    let mut romeo = server.login(dir.path(), "romeo", "orchard").await;
    let items = romeo
        .request(&format!("<iq xmlns='jabber:client' type='get' id='after' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><items node='chronicle'/></pubsub></iq>"))
        .await;
    ok(&items);
    let ids: Vec<_> = items
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("items", PUBSUB)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("id"))
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 30, "{}", show(&items));
    for n in 0..30 {
        assert!(ids.contains(&format!("c{n}")), "c{n} lost");
    }
    let subscriptions = romeo
        .request(&format!("<iq xmlns='jabber:client' type='get' id='subs' to='pubsub.localhost'><pubsub xmlns='{PUBSUB}'><subscriptions/></pubsub></iq>"))
        .await;
    assert!(
        show(&subscriptions).contains("chronicle"),
        "{}",
        show(&subscriptions)
    );
    server.kill_9();
}

fn request_xml(id: &str, ns: &str, body: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' to='pubsub.localhost'><pubsub xmlns='{ns}'>{body}</pubsub></iq>"
    )
}

fn get_xml(id: &str, ns: &str, body: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='get' id='{id}' to='pubsub.localhost'><pubsub xmlns='{ns}'>{body}</pubsub></iq>"
    )
}

/// Instant nodes, default and current configuration, configuration change notifications,
/// delete with redirect; node discovery with meta-data.
#[tokio::test]
async fn owner_configuration() {
    let t = server_with(&["juliet", "romeo"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login_available("romeo", "pw", "orchard").await;

    let instant = juliet
        .request(&request_xml("i1", PUBSUB, "<create/>"))
        .await;
    ok(&instant);
    let generated = instant
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("create", PUBSUB))
        .and_then(|c| c.attr("node"))
        .expect("the generated node id");
    assert!(!generated.is_empty());

    let default = juliet.request(&get_xml("d1", OWNER, "<default/>")).await;
    ok(&default);
    let form = default
        .get_child("pubsub", OWNER)
        .and_then(|p| p.get_child("default", OWNER))
        .and_then(|d| d.get_child("x", DATA))
        .expect("a form");
    assert_eq!(
        form_field(form, "pubsub#access_model").as_deref(),
        Some("authorize")
    );

    create(
        &mut juliet,
        "garden",
        &[
            ("pubsub#access_model", "open"),
            ("pubsub#notify_config", "1"),
        ],
    )
    .await;
    ok(&subscribe(&mut romeo, "garden", "romeo@localhost").await);
    let current = juliet
        .request(&get_xml("c1", OWNER, "<configure node='garden'/>"))
        .await;
    let form = current
        .get_child("pubsub", OWNER)
        .and_then(|p| p.get_child("configure", OWNER))
        .and_then(|c| c.get_child("x", DATA))
        .expect("a form");
    assert_eq!(
        form_field(form, "FORM_TYPE").as_deref(),
        Some("http://jabber.org/protocol/pubsub#node_config")
    );
    assert_eq!(
        form_field(form, "pubsub#access_model").as_deref(),
        Some("open")
    );
    let configure = format!(
        "<configure node='garden'>{}</configure>",
        config_form(&[("pubsub#title", "The Capulet garden")])
    );
    ok(&juliet.request(&request_xml("c2", OWNER, &configure)).await);
    let notice = romeo.recv().await;
    assert_eq!(
        event(&notice)
            .get_child("configuration", EVENT)
            .and_then(|c| c.attr("node")),
        Some("garden")
    );

    let info = juliet
        .request("<iq xmlns='jabber:client' type='get' id='m1' to='pubsub.localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='garden'/></iq>")
        .await;
    let query = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let meta = query.get_child("x", DATA).expect("pubsub#meta-data");
    assert_eq!(
        form_field(meta, "FORM_TYPE").as_deref(),
        Some("http://jabber.org/protocol/pubsub#meta-data")
    );
    assert_eq!(
        form_field(meta, "pubsub#title").as_deref(),
        Some("The Capulet garden")
    );
    let items = romeo
        .request("<iq xmlns='jabber:client' type='get' id='m2' to='pubsub.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    assert!(
        show(&items).contains("node='garden'") || show(&items).contains("node=\"garden\""),
        "{}",
        show(&items)
    );

    let delete =
        "<delete node='garden'><redirect uri='xmpp:pubsub.localhost?;node=orchard'/></delete>";
    ok(&juliet.request(&request_xml("x1", OWNER, delete)).await);
    let deleted = romeo.recv().await;
    let delete = event(&deleted)
        .get_child("delete", EVENT)
        .expect("delete notice");
    assert_eq!(
        delete
            .get_child("redirect", EVENT)
            .and_then(|r| r.attr("uri")),
        Some("xmpp:pubsub.localhost?;node=orchard")
    );
}

/// Publish-options preconditions: met, not met (conflict), unknown field.
#[tokio::test]
async fn publish_options_preconditions() {
    let t = server_with(&["juliet"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    create(&mut juliet, "poems", &[("pubsub#access_model", "open")]).await;
    let publish_with = |id: &str, model: &str| {
        request_xml(
            id,
            PUBSUB,
            &format!(
                "<publish node='poems'><item><entry xmlns='urn:example:verona'>rose</entry></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>{model}</value></field></x></publish-options>"
            ),
        )
    };
    ok(&juliet.request(&publish_with("po1", "open")).await);
    let reply = juliet.request(&publish_with("po2", "whitelist")).await;
    assert_eq!(
        errors(&reply),
        (Some("conflict".into()), Some("precondition-not-met".into()))
    );
}

/// Subscription options (get, set deliver=false), unsubscribe, and the XEP-0033 replyto with
/// `itemreply=publisher`.
#[tokio::test]
async fn subscription_options_unsubscribe_and_itemreply() {
    let t = server_with(&["juliet", "romeo", "nurse"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login_available("romeo", "pw", "orchard").await;
    let mut nurse = t.login_available("nurse", "pw", "chamber").await;
    create(
        &mut juliet,
        "verse",
        &[
            ("pubsub#access_model", "open"),
            ("pubsub#itemreply", "publisher"),
        ],
    )
    .await;
    ok(&subscribe(&mut romeo, "verse", "romeo@localhost").await);
    ok(&subscribe(&mut nurse, "verse", "nurse@localhost").await);

    let options = romeo
        .request(&get_xml(
            "o1",
            PUBSUB,
            "<options node='verse' jid='romeo@localhost'/>",
        ))
        .await;
    ok(&options);
    let form = options
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("options", PUBSUB))
        .and_then(|o| o.get_child("x", DATA))
        .expect("an options form");
    assert_eq!(
        form_field(form, "FORM_TYPE").as_deref(),
        Some("http://jabber.org/protocol/pubsub#subscribe_options")
    );
    let quiet = "<options node='verse' jid='nurse@localhost'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field><field var='pubsub#deliver'><value>0</value></field></x></options>";
    ok(&nurse.request(&request_xml("o2", PUBSUB, quiet)).await);

    publish(&mut juliet, "verse", Some("v1"), "Good night").await;
    let message = romeo.recv().await;
    let item = event(&message)
        .get_child("items", EVENT)
        .and_then(|i| i.get_child("item", EVENT))
        .unwrap();
    // Bare, as XEP-0060's examples and Prosody have it: the `replyto` names the session.
    assert_eq!(item.attr("publisher"), Some("juliet@localhost"));
    let replyto = message
        .get_child("addresses", "http://jabber.org/protocol/address")
        .and_then(|a| a.get_child("address", "http://jabber.org/protocol/address"))
        .expect("an XEP-0033 address");
    assert_eq!(
        (replyto.attr("type"), replyto.attr("jid")),
        (Some("replyto"), Some("juliet@localhost/balcony"))
    );
    nurse.expect_nothing().await;

    ok(&romeo
        .request(&request_xml(
            "u1",
            PUBSUB,
            "<unsubscribe node='verse' jid='romeo@localhost'/>",
        ))
        .await);
    let again = romeo
        .request(&request_xml(
            "u2",
            PUBSUB,
            "<unsubscribe node='verse' jid='romeo@localhost'/>",
        ))
        .await;
    assert_eq!(
        errors(&again),
        (
            Some("unexpected-request".into()),
            Some("not-subscribed".into())
        )
    );
    publish(&mut juliet, "verse", Some("v2"), "Parting").await;
    romeo.expect_nothing().await;
}

/// XEP-0060 `pubsub#show-values`: notifications only reach the sessions whose presence shows
/// one of the values asked for; a bare-JID subscriber's other sessions get nothing.
#[tokio::test]
async fn show_values_limit_notifications_to_the_presence_states_asked_for() {
    let t = server_with(&["juliet", "romeo", "nurse"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut orchard = t.login("romeo", "pw", "orchard").await;
    let mut garden = t.login("romeo", "pw", "garden").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    create(&mut juliet, "verse", &[("pubsub#access_model", "open")]).await;
    let only = |jid: &str, show: &str| {
        format!(
            "<subscribe node='verse' jid='{jid}'/><options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field><field var='pubsub#show-values'><value>{show}</value></field></x></options>"
        )
    };
    ok(&orchard
        .request(&request_xml("s1", PUBSUB, &only("romeo@localhost", "away")))
        .await);
    ok(&nurse
        .request(&request_xml("s2", PUBSUB, &only("nurse@localhost", "chat")))
        .await);

    orchard
        .send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    orchard.recv_from("romeo@localhost/orchard").await;
    garden.send("<presence xmlns='jabber:client'/>").await;
    let presences = garden.recv_sorted(2).await;
    assert_eq!(
        senders(&presences),
        ["romeo@localhost/garden", "romeo@localhost/orchard"]
    );
    orchard.recv_from("romeo@localhost/garden").await;
    nurse
        .send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    nurse.recv_from("nurse@localhost/chamber").await;

    // Romeo is away at the orchard only; the nurse is away, not chatty.
    publish(&mut juliet, "verse", Some("v1"), "Good night").await;
    let message = orchard.recv().await;
    assert_eq!(message.attr("to"), Some("romeo@localhost/orchard"));
    assert_eq!(
        published_entries(&message),
        [("v1".into(), "Good night".into())]
    );
    garden.expect_nothing().await;
    nurse.expect_nothing().await;

    // Both of Romeo's sessions away: the bare JID is notified, so both hear; the nurse chats.
    garden
        .send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    garden.recv_from("romeo@localhost/garden").await;
    orchard.recv_from("romeo@localhost/garden").await;
    nurse
        .send("<presence xmlns='jabber:client'><show>chat</show></presence>")
        .await;
    nurse.recv_from("nurse@localhost/chamber").await;
    publish(&mut juliet, "verse", Some("v2"), "Parting").await;
    for client in [&mut orchard, &mut garden, &mut nurse] {
        let message = client.recv().await;
        assert_eq!(
            published_entries(&message),
            [("v2".into(), "Parting".into())]
        );
    }

    // Back online without a show: nothing for the nurse any more.
    nurse.send("<presence xmlns='jabber:client'/>").await;
    nurse.recv_from("nurse@localhost/chamber").await;
    publish(&mut juliet, "verse", Some("v3"), "Sweet sorrow").await;
    orchard.recv().await;
    garden.recv().await;
    nurse.expect_nothing().await;
}

/// The owner manages subscriptions and lists pending requests with the get-pending command.
#[tokio::test]
async fn owner_manages_subscriptions_and_pending() {
    let t = server_with(&["juliet", "romeo", "paris"]).await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login_available("romeo", "pw", "orchard").await;
    let mut paris = t.login_available("paris", "pw", "church").await;
    create(&mut juliet, "ball", &[]).await;
    ok(&subscribe(&mut paris, "ball", "paris@localhost").await);
    juliet.recv().await; // the authorization form

    let pending = juliet
        .request("<iq xmlns='jabber:client' type='set' id='gp' to='pubsub.localhost'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/pubsub#get-pending' action='execute'/></iq>")
        .await;
    ok(&pending);
    assert!(show(&pending).contains("ball"), "{}", show(&pending));

    // An owner subscribes those it affiliated with the node, not strangers (issue #11 M3).
    let member = "<affiliations node='ball'><affiliation jid='romeo@localhost' affiliation='member'/></affiliations>";
    ok(&juliet.request(&request_xml("ma", OWNER, member)).await);
    let set = "<subscriptions node='ball'><subscription jid='romeo@localhost' subscription='subscribed'/></subscriptions>";
    ok(&juliet.request(&request_xml("ms1", OWNER, set)).await);
    let list = juliet
        .request(&get_xml("ms2", OWNER, "<subscriptions node='ball'/>"))
        .await;
    // The pending request is listed too (XEP-0060 §8.8.1), as well as by get-pending.
    let mut listed: Vec<(String, String)> = list
        .get_child("pubsub", OWNER)
        .and_then(|p| p.get_child("subscriptions", OWNER))
        .into_iter()
        .flat_map(|list| list.children())
        .map(|s| {
            let attr = |name| s.attr(name).unwrap_or_default().to_owned();
            (attr("jid"), attr("subscription"))
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("paris@localhost".into(), "pending".into()),
            ("romeo@localhost".into(), "subscribed".into()),
        ],
        "{}",
        show(&list)
    );
    publish(&mut juliet, "ball", None, "Masks").await;
    let mut delivered = false;
    for _ in 0..2 {
        let message = romeo.recv().await;
        if event(&message).has_child("items", EVENT) {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "an owner-made subscription receives items");
    paris.expect_nothing().await;

    let affiliations = romeo
        .request(&get_xml("af", PUBSUB, "<affiliations/>"))
        .await;
    ok(&affiliations);
    let mine = juliet
        .request(&get_xml("af2", PUBSUB, "<affiliations/>"))
        .await;
    assert!(show(&mine).contains("owner"), "{}", show(&mine));
}

/// Service limits from the configuration give XEP-0060 errors.
#[tokio::test]
async fn limits_give_errors() {
    let t = TestServer::start_with(|c| {
        c.pubsub.max_nodes_per_owner = 2;
        c.pubsub.max_payload_bytes = 1024;
    })
    .await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    create(&mut juliet, "one", &[("pubsub#access_model", "open")]).await;
    create(&mut juliet, "two", &[]).await;
    let third = juliet
        .request(&request_xml("l3", PUBSUB, "<create node='three'/>"))
        .await;
    assert_eq!(
        errors(&third),
        (
            Some("policy-violation".into()),
            Some("max-nodes-exceeded".into())
        )
    );
    let big = format!(
        "<publish node='one'><item><entry xmlns='urn:example:verona'>{}</entry></item></publish>",
        "x".repeat(2000)
    );
    let reply = juliet.request(&request_xml("l4", PUBSUB, &big)).await;
    assert_eq!(
        errors(&reply),
        (
            Some("not-acceptable".into()),
            Some("payload-too-big".into())
        )
    );
    publish(&mut juliet, "one", None, "small").await;
}

/// `kill -9` in the middle of a login storm, with the services on two shards: every item and
/// subscription the server acknowledged is there after the restart.
#[tokio::test]
async fn acknowledged_state_survives_kill_9_during_a_login_storm() {
    use std::sync::{Arc, Mutex};
    const USERS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..USERS).map(|n| format!("storm{n}")).collect();
    let users: Vec<&str> = names.iter().map(String::as_str).collect();
    add_users(dir.path(), &users);
    let shards = "[pubsub]\nshards = 2\n";
    let server = Process::start_with(dir.path(), shards).await;
    let log_node = |id: &str| {
        format!(
            "<iq xmlns='jabber:client' type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><create node='log'/><configure><x xmlns='{DATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field><field var='pubsub#max_items'><value>1000</value></field></x></configure></pubsub></iq>"
        )
    };
    for user in &users {
        let mut c = server.login(dir.path(), user, "setup").await;
        ok(&c.request(&log_node("c")).await);
    }

    let items: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let subscriptions: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let cert = dir.path().join("data/tls/cert.pem");
    let mut storm = tokio::task::JoinSet::new();
    for (k, user) in names.iter().enumerate() {
        let (user, next) = (user.clone(), names[(k + 1) % USERS].clone());
        let (items, subscriptions, cert) = (items.clone(), subscriptions.clone(), cert.clone());
        let addr = server.addr;
        storm.spawn(async move {
            for round in 0.. {
                let mut c = login_at(addr, &cert, &user, &format!("r{round}")).await;
                c.send("<presence xmlns='jabber:client'/>").await;
                let id = format!("{user}-{round}");
                let publish = format!(
                    "<iq xmlns='jabber:client' type='set' id='p'><pubsub xmlns='{PUBSUB}'><publish node='log'><item id='{id}'><entry xmlns='urn:example'/></item></publish></pubsub></iq>"
                );
                if c.request(&publish).await.attr("type") == Some("result") {
                    items.lock().unwrap().push((user.clone(), id));
                }
                let subscribe = format!(
                    "<iq xmlns='jabber:client' type='set' id='s' to='{next}@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='log' jid='{user}@localhost'/></pubsub></iq>"
                );
                if c.request(&subscribe).await.attr("type") == Some("result") {
                    subscriptions.lock().unwrap().push((user.clone(), next.clone()));
                }
            }
        });
    }
    while items.lock().unwrap().len() < 4 * USERS {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.kill_9();
    // The clients fail with the server; what they saw acknowledged is recorded.
    while storm.join_next().await.is_some() {}
    let items = items.lock().unwrap().clone();
    let subscriptions = subscriptions.lock().unwrap().clone();
    assert!(!subscriptions.is_empty());

    let server = Process::start_with(dir.path(), shards).await;
    for user in &users {
        let mut c = server.login(dir.path(), user, "after").await;
        let get = format!(
            "<iq xmlns='jabber:client' type='get' id='g'><pubsub xmlns='{PUBSUB}'><items node='log'/></pubsub></iq>"
        );
        let reply = c.request(&get).await;
        ok(&reply);
        let stored: Vec<&str> = reply
            .get_child("pubsub", PUBSUB)
            .and_then(|p| p.get_child("items", PUBSUB))
            .map(|i| i.children().filter_map(|item| item.attr("id")).collect())
            .unwrap_or_default();
        for (_, id) in items.iter().filter(|(owner, _)| owner == user) {
            assert!(stored.contains(&id.as_str()), "{id} lost: {}", show(&reply));
        }
        for (_, owner) in subscriptions.iter().filter(|(who, _)| who == user) {
            let mine = format!(
                "<iq xmlns='jabber:client' type='get' id='m' to='{owner}@localhost'><pubsub xmlns='{PUBSUB}'><subscriptions node='log'/></pubsub></iq>"
            );
            let reply = c.request(&mine).await;
            let held = reply
                .get_child("pubsub", PUBSUB)
                .and_then(|p| p.get_child("subscriptions", PUBSUB))
                .is_some_and(|s| {
                    s.children().any(|sub| {
                        sub.attr("subscription") == Some("subscribed")
                            && sub.attr("jid") == Some(format!("{user}@localhost").as_str())
                    })
                });
            assert!(
                held,
                "{user}'s subscription to {owner} lost: {}",
                show(&reply)
            );
        }
    }
    server.kill_9();
}

/// `[limits] broadcast_bytes_per_sec` counts what an owner's management makes the service
/// tell: each subscription or affiliation it changes is a notification to its holder. An owner
/// toggling a member's subscription reached that member at 12 times the rate, uncounted, and
/// got a 10 KB/s reader disconnected (the review of 2026-12-07, evening); now past the burst
/// the toggles are refused, and the member is told of exactly those that were made.
#[tokio::test]
async fn an_owners_management_counts_against_its_broadcast_rate() {
    let t = TestServer::start_with(|config| {
        config.limits.broadcast_burst_bytes = 4096;
        config.limits.broadcast_bytes_per_sec = 1;
    })
    .await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login_available("romeo", "pw", "orchard").await;
    create(&mut juliet, "ball", &[]).await;
    let member = "<affiliations node='ball'><affiliation jid='romeo@localhost' affiliation='member'/></affiliations>";
    ok(&juliet.request(&request_xml("ma", OWNER, member)).await);
    let mut replies = Vec::new();
    for n in 0..30 {
        let state = if n % 2 == 0 { "subscribed" } else { "none" };
        let set = format!(
            "<subscriptions node='ball'><subscription jid='romeo@localhost' subscription='{state}'/></subscriptions>"
        );
        let reply = juliet
            .request(&request_xml(&format!("t{n}"), OWNER, &set))
            .await;
        replies.push(reply);
    }
    // Refused once the burst is spent, and from then on (a byte a second refills nothing).
    let made = accepted_before_refusals(&replies);
    assert!(made > 2, "{made}");
    let mut told = 0;
    while told < made {
        let message = romeo.recv().await;
        if event(&message).has_child("subscription", EVENT) {
            told += 1;
        }
    }
    romeo.expect_nothing().await;
}
