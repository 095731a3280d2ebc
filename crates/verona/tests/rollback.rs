//! A storage write that fails undoes everything the batch did, everywhere: the engine, the
//! router's copies, pushes and notifications. The requester is told to retry (`wait`), and
//! what it asked for is neither stored, remembered, nor announced. A store that panics stops
//! the server loudly instead of leaving clients without answers.

mod common;

use common::faulty::{Pause, Writes};
use common::*;
use minidom::Element;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const BLOCKING: &str = "urn:xmpp:blocking";
const ROSTER: &str = "jabber:iq:roster";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const REMOVE: &str = "<iq xmlns='jabber:client' type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";

/// Services stay resident, as on a running server: a copy in memory of a node storage no
/// longer has would be written to.
fn keep_resident(config: &mut verona::config::Config) {
    config.limits.resident_services = 2_000;
}

/// (error type, defined condition) of an error reply.
fn error_of(reply: &Element) -> (String, String) {
    assert_eq!(reply.attr("type"), Some("error"), "{}", show(reply));
    let error = reply.get_child("error", NS_CLIENT).expect("an <error/>");
    let condition = stanza_error(reply).expect("a defined condition");
    (error.attr("type").unwrap_or_default().to_owned(), condition)
}

fn told_to_retry(reply: &Element) {
    assert_eq!(
        error_of(reply),
        ("wait".to_owned(), "internal-server-error".to_owned())
    );
}

fn message_body(el: &Element) -> (Option<&str>, String) {
    assert_eq!(el.name(), "message", "{}", show(el));
    let body = el.get_child("body", NS_CLIENT).map(|b| b.text());
    (el.attr("from"), body.unwrap_or_default())
}

fn create_open(node: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='c'><pubsub xmlns='{PUBSUB}'><create node='{node}'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>"
    )
}

fn publish(id: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='p-{id}'><pubsub xmlns='{PUBSUB}'><publish node='moments'><item id='{id}'><entry xmlns='urn:example'/></item></publish></pubsub></iq>"
    )
}

fn subscribe(id: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='moments' jid='romeo@localhost'/></pubsub></iq>"
    )
}

/// The ids of the items of Juliet's `moments` node, as `who` reads them.
async fn item_ids(who: &mut Client) -> Vec<String> {
    let get = format!(
        "<iq xmlns='jabber:client' type='get' id='items' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><items node='moments'/></pubsub></iq>"
    );
    let reply = who.request(&get).await;
    ok(&reply);
    reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .expect("<items/>")
        .children()
        .filter_map(|item| item.attr("id").map(str::to_owned))
        .collect()
}

async fn two_users() -> (
    TestServer,
    std::sync::Arc<faulty::FaultyStore>,
    Client,
    Client,
) {
    let (t, store) = TestServer::start_faulty().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let juliet = t.login("juliet", "pw", "balcony").await;
    let romeo = t.login("romeo", "pw", "orchard").await;
    (t, store, juliet, romeo)
}

/// XEP-0191: a block whose write fails blocks nobody: not the list, not the router (stanzas
/// still flow both ways), and no push says otherwise.
#[tokio::test]
async fn a_block_that_fails_to_commit_blocks_nobody() {
    let (_t, store, mut juliet, mut romeo) = two_users().await;
    let get = format!(
        "<iq xmlns='jabber:client' type='get' id='b0'><blocklist xmlns='{BLOCKING}'/></iq>"
    );
    ok(&juliet.request(&get).await);

    store.set(Writes::Fail);
    let block = format!(
        "<iq xmlns='jabber:client' type='set' id='b1'><block xmlns='{BLOCKING}'><item jid='romeo@localhost'/></block></iq>"
    );
    told_to_retry(&juliet.request(&block).await);
    juliet.expect_nothing().await;
    store.set(Writes::Succeed);

    let list = juliet.request(&get.replace("b0", "b2")).await;
    let items = list.get_child("blocklist", BLOCKING).expect("a blocklist");
    assert_eq!(items.children().count(), 0, "{}", show(&list));
    juliet
        .send("<message xmlns='jabber:client' to='romeo@localhost/orchard' type='chat'><body>still here</body></message>")
        .await;
    assert_eq!(
        message_body(&romeo.recv().await),
        (Some("juliet@localhost/balcony"), "still here".to_owned())
    );
    romeo
        .send("<message xmlns='jabber:client' to='juliet@localhost/balcony' type='chat'><body>me too</body></message>")
        .await;
    assert_eq!(
        message_body(&juliet.recv().await),
        (Some("romeo@localhost/orchard"), "me too".to_owned())
    );
}

/// A publish whose write fails is neither kept (also after the service is reloaded from
/// storage) nor notified.
#[tokio::test]
async fn a_publish_that_fails_to_commit_is_neither_kept_nor_notified() {
    let (_t, store, mut juliet, mut romeo) = two_users().await;
    // Available: a notification for the bare JID is a message (RFC 6121 §8.5.2.1.1).
    romeo.send("<presence xmlns='jabber:client'/>").await;
    recv_until(&mut romeo, |el| el.name() == "presence").await;
    ok(&juliet.request(&create_open("moments")).await);
    ok(&romeo.request(&subscribe("s")).await);

    store.set(Writes::Fail);
    told_to_retry(&juliet.request(&publish("lost")).await);
    romeo.expect_nothing().await;
    store.set(Writes::Succeed);

    assert!(item_ids(&mut romeo).await.is_empty());
    ok(&juliet.request(&publish("kept")).await);
    let event = romeo.recv_from("juliet@localhost").await;
    assert!(event.has_child("event", "http://jabber.org/protocol/pubsub#event"));
    assert_eq!(item_ids(&mut romeo).await, ["kept"]);
}

/// A subscription whose write fails is not held: the subscriber is not listed and gets no
/// notifications.
#[tokio::test]
async fn a_subscription_that_fails_to_commit_is_not_held() {
    let (_t, store, mut juliet, mut romeo) = two_users().await;
    ok(&juliet.request(&create_open("moments")).await);

    store.set(Writes::Fail);
    told_to_retry(&romeo.request(&subscribe("s1")).await);
    store.set(Writes::Succeed);

    let subscriptions = format!(
        "<iq xmlns='jabber:client' type='get' id='subs'><pubsub xmlns='{PUBSUB}#owner'><subscriptions node='moments'/></pubsub></iq>"
    );
    let reply = juliet.request(&subscriptions).await;
    ok(&reply);
    let listed = reply
        .get_child("pubsub", OWNER)
        .and_then(|p| p.get_child("subscriptions", OWNER))
        .expect("<subscriptions/>")
        .children()
        .count();
    assert_eq!(listed, 0, "{}", show(&reply));
    ok(&juliet.request(&publish("unseen")).await);
    romeo.expect_nothing().await;
}

/// RFC 6121 §2.3: a roster set whose write fails is not in the roster and is not pushed.
#[tokio::test]
async fn a_roster_set_that_fails_to_commit_is_neither_kept_nor_pushed() {
    let (_t, store, _juliet, mut romeo) = two_users().await;
    let get = "<iq xmlns='jabber:client' type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>";
    ok(&romeo.request(get).await);

    store.set(Writes::Fail);
    let set = "<iq xmlns='jabber:client' type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='juliet@localhost' name='Juliet'><group>Capulets</group></item></query></iq>";
    told_to_retry(&romeo.request(set).await);
    romeo.expect_nothing().await;
    store.set(Writes::Succeed);

    let roster = romeo.request(&get.replace("r0", "r1")).await;
    let items = roster.get_child("query", ROSTER).expect("a roster");
    assert_eq!(items.children().count(), 0, "{}", show(&roster));
}

/// A panic in a pubsub shard (here: in its store) does not leave clients waiting for answers
/// that never come: every stream ends with `internal-server-error` and the server reports
/// the failure (the `serve` command then exits non-zero).
#[tokio::test]
async fn a_panicking_shard_stops_the_server_loudly() {
    let (t, store, mut juliet, mut romeo) = two_users().await;
    ok(&juliet.request(&create_open("moments")).await);

    store.set(Writes::Panic);
    juliet.send(&publish("boom")).await;
    let reason = tokio::time::timeout(TIMEOUT, t.server.failed())
        .await
        .expect("the server reports the failure");
    assert!(reason.starts_with("pubsub shard"), "{reason}");
    for client in [&mut juliet, &mut romeo] {
        assert_eq!(client.expect_stream_error().await, "internal-server-error");
    }
}

/// A write that fails fails only the requests of its service: another service's request in
/// the same batch (one shard, requests sent at once while the previous batch commits) is
/// stored and answered.
#[tokio::test]
async fn a_failing_write_fails_only_its_own_service() {
    let (_t, store, mut juliet, mut romeo) = two_users().await;
    ok(&juliet.request(&create_open("moments")).await);
    ok(&romeo.request(&create_open("moments")).await);

    store.fail_service(Some("juliet@localhost"));
    store.set(Writes::Slow);
    romeo.send(&publish("first")).await;
    juliet.send(&publish("lost")).await;
    romeo.send(&publish("kept")).await;
    told_to_retry(&juliet.recv().await);
    ok(&romeo.recv().await);
    ok(&romeo.recv().await);
    store.fail_service(None);
    store.set(Writes::Succeed);

    assert!(item_ids(&mut romeo).await.is_empty());
    let get = "<iq xmlns='jabber:client' type='get' id='mine'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='moments'/></pubsub></iq>";
    let reply = romeo.request(get).await;
    ok(&reply);
    let ids: Vec<&str> = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .expect("<items/>")
        .children()
        .filter_map(|item| item.attr("id"))
        .collect();
    assert_eq!(ids, ["kept"]);
}

/// An account that owns a room is deleted while others speak in the room and chat elsewhere.
/// Storage deletes the room with the account, so no write of the shard's may still reach it:
/// one would fail the whole batch, and with it an unrelated chat message and the shard's own
/// forgetting of the account, leaving the room in memory for whoever takes the name next.
#[tokio::test]
async fn a_deletion_while_others_talk_fails_nobody_and_leaves_no_room() {
    const ROOM: &str = "balcony@chat.localhost";
    const MUC: &str = "http://jabber.org/protocol/muc";
    let (t, store) = TestServer::start_faulty_with(keep_resident).await;
    for user in ["juliet", "romeo", "nurse", "benvolio", "mercutio"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    let mut benvolio = t.login("benvolio", "pw", "street").await;
    let mut mercutio = t.login("mercutio", "pw", "street").await;
    mercutio.send("<presence xmlns='jabber:client'/>").await;
    recv_until(&mut mercutio, |el| el.name() == "presence").await;
    let enter = |nick: &str| {
        format!("<presence xmlns='jabber:client' to='{ROOM}/{nick}'><x xmlns='{MUC}'/></presence>")
    };
    juliet.send(&enter("Juliet")).await;
    recv_until(&mut juliet, |el| {
        el.name() == "presence" && el.attr("from") == Some(&format!("{ROOM}/Juliet"))
    })
    .await;
    let persistent = format!(
        "<iq xmlns='jabber:client' type='set' id='cfg' to='{ROOM}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"
    );
    ok(&juliet.request(&persistent).await);
    nurse.send(&enter("Nurse")).await;
    recv_until(&mut nurse, |el| {
        el.name() == "presence" && el.attr("from") == Some(&format!("{ROOM}/Nurse"))
    })
    .await;

    // Storage has deleted Juliet; her deletion waits there.
    store.pause_deletions(Pause::OnceDeleted);
    juliet.send(REMOVE).await;
    store.paused.notified().await;
    // A commit held open, so that what follows makes the shard's next batch together: the
    // Nurse speaking in the room, an unrelated chat, and whatever the deletion asks next.
    store.hold_writes(true);
    romeo
        .send("<message xmlns='jabber:client' to='nurse@localhost' type='chat'><body>first</body></message>")
        .await;
    store.held.notified().await;
    nurse
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>still here?</body></message>"
        ))
        .await;
    benvolio
        .send("<message xmlns='jabber:client' to='mercutio@localhost' type='chat' id='c'><body>unrelated</body></message>")
        .await;
    tokio::time::sleep(QUIET).await;
    store.release.notify_one();
    tokio::time::sleep(QUIET).await;
    store.hold_writes(false);

    benvolio.expect_nothing().await;
    let got = recv_until(&mut mercutio, |el| el.name() == "message").await;
    assert_eq!(
        message_body(&got),
        (Some("benvolio@localhost/street"), "unrelated".to_owned())
    );
    ok(&recv_until(&mut juliet, |el| el.attr("id") == Some("rm")).await);

    // Someone else takes the name: the room is not theirs.
    t.add_user("juliet", "another").await;
    let mut impostor = t.login("juliet", "another", "balcony").await;
    let owners = format!(
        "<iq xmlns='jabber:client' type='get' id='own' to='{ROOM}'><query xmlns='{MUC}#admin'><item affiliation='owner'/></query></iq>"
    );
    let config = format!(
        "<iq xmlns='jabber:client' type='get' id='cfg' to='{ROOM}'><query xmlns='{MUC}#owner'/></iq>"
    );
    for asked in [owners, config] {
        let reply = impostor.request(&asked).await;
        assert_eq!(reply.attr("type"), Some("error"), "{}", show(&reply));
    }
}

/// Romeo writes to Juliet while she deletes her account, and others chat. What he writes
/// does not reach their conversation once storage is retiring it (that write would fail, and
/// with it the batch's unrelated chat messages): he is refused, the others are not.
#[tokio::test]
async fn a_deletion_racing_messages_to_the_account_fails_nobody_else() {
    let (t, store) = TestServer::start_faulty_with(keep_resident).await;
    for user in ["juliet", "romeo", "nurse", "benvolio", "mercutio"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let mut benvolio = t.login("benvolio", "pw", "street").await;
    let mut mercutio = t.login("mercutio", "pw", "street").await;
    for client in [&mut juliet, &mut mercutio] {
        client.send("<presence xmlns='jabber:client'/>").await;
        recv_until(client, |el| el.name() == "presence").await;
    }
    let to_juliet = |body: &str| {
        format!(
            "<message xmlns='jabber:client' to='juliet@localhost' type='chat'><body>{body}</body></message>"
        )
    };
    romeo.send(&to_juliet("before")).await;
    recv_until(&mut juliet, |el| el.name() == "message").await;

    // The shards have forgotten Juliet; storage is about to end her conversations.
    store.pause_deletions(Pause::BeforeConversationsEnd);
    juliet.send(REMOVE).await;
    store.paused.notified().await;
    romeo.send(&to_juliet("during")).await;
    tokio::time::sleep(QUIET).await;
    // A commit held open while the conversation is retired, so that Romeo's next message
    // and an unrelated chat make the shard's next batch together.
    store.hold_writes(true);
    romeo
        .send("<message xmlns='jabber:client' to='nurse@localhost' type='chat'><body>first</body></message>")
        .await;
    store.held.notified().await;
    romeo.send(&to_juliet("after")).await;
    benvolio
        .send("<message xmlns='jabber:client' to='mercutio@localhost' type='chat' id='c'><body>unrelated</body></message>")
        .await;
    tokio::time::sleep(QUIET).await;
    store.release.notify_one();
    tokio::time::sleep(QUIET).await;
    store.hold_writes(false);
    ok(&recv_until(&mut juliet, |el| el.attr("id") == Some("rm")).await);

    benvolio.expect_nothing().await;
    let got = recv_until(&mut mercutio, |el| el.name() == "message").await;
    assert_eq!(
        message_body(&got),
        (Some("benvolio@localhost/street"), "unrelated".to_owned())
    );
}
