//! XEP-0163 PEP at accounts' bare JIDs against the real server: auto-create, notifications from
//! the bare JID, and the `presence` access model answered by the `presence` node's subscribers
//! (XEP-0207 §3).

mod common;

use common::*;
use minidom::Element;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const DATA: &str = "jabber:x:data";

fn show(el: &Element) -> String {
    String::from_utf8_lossy(&verona_stream::element_bytes(el)).into_owned()
}

fn ok(reply: &Element) {
    assert_eq!(reply.attr("type"), Some("result"), "{}", show(reply));
}

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

    // Nobody hosts a PEP service for an account that does not exist.
    let reply = romeo
        .request(&format!("<iq xmlns='jabber:client' type='get' id='i2' to='ghost@localhost'><pubsub xmlns='{PUBSUB}'><items node='urn:example:mood'/></pubsub></iq>"))
        .await;
    assert_eq!(stanza_error(&reply).as_deref(), Some("service-unavailable"));
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

    // Juliet's presence node, authorize (XEP-0207 §3); Romeo asks, Juliet approves.
    let create = format!(
        "<iq xmlns='jabber:client' type='set' id='c1'><pubsub xmlns='{PUBSUB}'><create node='presence'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>authorize</value></field><field var='pubsub#persist_items'><value>0</value></field></x></configure></pubsub></iq>"
    );
    ok(&juliet.request(&create).await);
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
