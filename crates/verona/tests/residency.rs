//! Services resident on demand (DESIGN §5a): a PEP service or a room dropped from memory and
//! loaded again from storage gives the same answers (relations, pending requests, rosters,
//! probes; a room's history, name and listing), and what storage does not hold (temporary
//! subscriptions, a room's occupants) keeps its service in memory.

mod common;

use std::time::Duration;

use common::*;
use minidom::Element;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ROSTER: &str = "jabber:iq:roster";

/// A received stanza as a line of the transcript: what a client would act on.
fn line(el: &Element) -> String {
    let head = format!(
        "{} {} from={}",
        el.name(),
        el.attr("type").unwrap_or("-"),
        el.attr("from").unwrap_or("-")
    );
    let Some(query) = el.get_child("query", ROSTER) else {
        return head;
    };
    let items: Vec<String> = query
        .children()
        .map(|item| {
            format!(
                "{}:{}{}",
                item.attr("jid").unwrap_or("?"),
                item.attr("subscription").unwrap_or("?"),
                item.attr("ask")
                    .map(|a| format!(":{a}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    format!("{head} roster=[{}]", items.join(" "))
}

fn lines(stanzas: &[Element]) -> Vec<String> {
    let mut lines: Vec<String> = stanzas.iter().map(line).collect();
    lines.sort();
    lines
}

async fn recv_lines(client: &mut Client, n: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(client.recv().await);
    }
    lines(&got)
}

const ROSTER_GET: &str =
    "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>";

fn presence(kind: &str, to: &str) -> String {
    format!("<presence xmlns='jabber:client' type='{kind}' to='{to}'/>")
}

/// Waits until the server has ended the dropped session (its presence gone from a probe).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Classic users subscribe to an offline contact, log out and in again, probe and approve;
/// returns what each of them received, in order of the steps.
async fn transcript(resident_services: usize) -> Vec<String> {
    let t = TestServer::start_with(|c| c.limits.resident_services = resident_services).await;
    for user in ["juliet", "romeo", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut out = Vec::new();
    let mut step = |name: &str, got: Vec<String>| {
        out.extend(got.into_iter().map(|l| format!("{name}: {l}")));
    };

    let mut romeo = t.login("romeo", "pw", "orchard").await;
    step("romeo roster", vec![line(&romeo.request(ROSTER_GET).await)]);
    romeo.send("<presence xmlns='jabber:client'/>").await;
    step("romeo online", recv_lines(&mut romeo, 1).await);
    // Juliet is offline: her service is loaded for the request, then may leave memory.
    romeo.send(&presence("subscribe", "juliet@localhost")).await;
    step("romeo asks", recv_lines(&mut romeo, 1).await);
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    nurse.send(&presence("subscribe", "juliet@localhost")).await;
    step("romeo roster", vec![line(&romeo.request(ROSTER_GET).await)]);

    let mut juliet = t.login("juliet", "pw", "balcony").await;
    step(
        "juliet roster",
        vec![line(&juliet.request(ROSTER_GET).await)],
    );
    juliet.send("<presence xmlns='jabber:client'/>").await;
    // Her own presence, and both pending requests, read back from storage.
    step("juliet online", recv_lines(&mut juliet, 3).await);
    juliet
        .send(&presence("subscribed", "romeo@localhost"))
        .await;
    step("juliet approves", recv_lines(&mut juliet, 1).await);
    step("romeo approved", recv_lines(&mut romeo, 3).await);

    drop(romeo);
    settle().await;
    let mut romeo = t.login("romeo", "pw", "garden").await;
    step(
        "romeo roster again",
        vec![line(&romeo.request(ROSTER_GET).await)],
    );
    romeo.send("<presence xmlns='jabber:client'/>").await;
    step("romeo online again", recv_lines(&mut romeo, 2).await);
    romeo.send(&presence("probe", "juliet@localhost")).await;
    step("romeo probes", recv_lines(&mut romeo, 1).await);
    nurse.send(&presence("probe", "juliet@localhost")).await;
    step("nurse probes", recv_lines(&mut nurse, 1).await);

    drop(juliet);
    step("juliet leaves", recv_lines(&mut romeo, 1).await);
    settle().await;
    romeo.send(&presence("probe", "juliet@localhost")).await;
    step("romeo probes again", recv_lines(&mut romeo, 1).await);
    romeo.expect_nothing().await;
    nurse.expect_nothing().await;
    out
}

#[tokio::test]
async fn services_reloaded_from_storage_answer_as_before() {
    let evicting = transcript(0).await;
    let expected = [
        "romeo roster: iq result from=- roster=[]",
        "romeo online: presence - from=romeo@localhost/orchard",
        "romeo asks: iq set from=- roster=[juliet@localhost:none:subscribe]",
        "romeo roster: iq result from=- roster=[juliet@localhost:none:subscribe]",
        "juliet roster: iq result from=- roster=[]",
        "juliet online: presence - from=juliet@localhost/balcony",
        "juliet online: presence subscribe from=nurse@localhost",
        "juliet online: presence subscribe from=romeo@localhost",
        "juliet approves: iq set from=- roster=[romeo@localhost:from]",
        "romeo approved: iq set from=- roster=[juliet@localhost:to]",
        "romeo approved: presence - from=juliet@localhost/balcony",
        "romeo approved: presence subscribed from=juliet@localhost",
        "romeo roster again: iq result from=- roster=[juliet@localhost:to]",
        "romeo online again: presence - from=juliet@localhost/balcony",
        "romeo online again: presence - from=romeo@localhost/garden",
        "romeo probes: presence - from=juliet@localhost/balcony",
        "nurse probes: presence unsubscribed from=juliet@localhost",
        "juliet leaves: presence unavailable from=juliet@localhost/balcony",
        "romeo probes again: presence unavailable from=juliet@localhost",
    ];
    assert_eq!(evicting, expected);
    // And the same as a server that keeps every service in memory.
    assert_eq!(transcript(10_000).await, evicting);
}

fn publish(node: &str, id: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='p-{id}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{id}'><entry xmlns='urn:example'/></item></publish></pubsub></iq>"
    )
}

/// A temporary subscription (`pubsub#expire=presence`) is held in memory only: its service
/// stays resident while the subscriber's session lasts, even with its owner offline, and
/// the subscription ends with that session.
#[tokio::test]
async fn a_temporary_subscription_keeps_its_service_until_the_session_ends() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let create = format!(
        "<iq xmlns='jabber:client' type='set' id='c'><pubsub xmlns='{PUBSUB}'><create node='moments'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>"
    );
    ok(&juliet.request(&create).await);
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let subscribe = format!(
        "<iq xmlns='jabber:client' type='set' id='s' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='moments' jid='romeo@localhost/orchard'/><options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field><field var='pubsub#expire'><value>presence</value></field></x></options></pubsub></iq>"
    );
    ok(&romeo.request(&subscribe).await);

    // Juliet's last session ends: nobody of hers is online, but Romeo's subscription is.
    drop(juliet);
    settle().await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    ok(&juliet.request(&publish("moments", "first")).await);
    let event = romeo.recv_from("juliet@localhost").await;
    let items = event
        .get_child("event", EVENT)
        .and_then(|e| e.get_child("items", EVENT));
    assert_eq!(
        items
            .and_then(|i| i.get_child("item", EVENT))
            .and_then(|i| i.attr("id")),
        Some("first"),
        "{}",
        show(&event)
    );

    // Romeo's session ends, and the subscription with it.
    drop(romeo);
    settle().await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    ok(&juliet.request(&publish("moments", "second")).await);
    romeo.expect_nothing().await;
}

/// Queues are bounded in bytes (DESIGN §6): a session whose requests outgrow its budget
/// (here smaller than one request) waits for its own credit, and everything it sent is still
/// answered, in order, while another user's requests go through.
#[tokio::test]
async fn a_session_past_its_queue_budget_waits_and_loses_nothing() {
    let t = TestServer::start_with(|c| {
        c.limits.pubsub_account_bytes = 1024;
        // The burst is 600 KB of publishes, past `broadcast_burst_bytes`: what is tested here
        // is the queue, not what one account may publish.
        c.limits.broadcast_bytes_per_sec = 0;
    })
    .await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let filler = "x".repeat(3000);
    let burst: String = (0..200)
        .map(|n| {
            format!(
                "<iq xmlns='jabber:client' type='set' id='b{n}'><pubsub xmlns='{PUBSUB}'><publish node='diary'><item id='i{n}'><entry xmlns='urn:example'>{filler}</entry></item></publish></pubsub></iq>"
            )
        })
        .collect();
    juliet.send(&burst).await;
    // Romeo is not held up behind Juliet's burst.
    let reply = romeo.request(ROSTER_GET).await;
    ok(&reply);
    for n in 0..200 {
        let reply = juliet.recv().await;
        assert_eq!(
            reply.attr("id"),
            Some(format!("b{n}").as_str()),
            "{}",
            show(&reply)
        );
        ok(&reply);
    }
    let items = format!(
        "<iq xmlns='jabber:client' type='get' id='last'><pubsub xmlns='{PUBSUB}'><items node='diary' max_items='1'/></pubsub></iq>"
    );
    let last = juliet.request(&items).await;
    let item = last
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .and_then(|i| i.get_child("item", PUBSUB));
    assert_eq!(
        item.and_then(|i| i.attr("id")),
        Some("i199"),
        "{}",
        show(&last)
    );
}

/// With four shards, a dozen contacts of Juliet's live on every shard: their requests reach
/// her presence node on its shard, her approvals reach their rosters on theirs, and her
/// presence reaches them all, with each roster the graph that was made.
#[tokio::test]
async fn presence_and_rosters_cross_shards() {
    let t = TestServer::start_with(|c| c.pubsub.shards = 4).await;
    let names: Vec<String> = (0..12).map(|n| format!("contact{n}")).collect();
    t.add_user("juliet", "pw").await;
    for name in &names {
        t.add_user(name, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    ok(&juliet.request(ROSTER_GET).await);
    juliet.send("<presence xmlns='jabber:client'/>").await;
    juliet.recv_from("juliet@localhost/balcony").await;
    let mut contacts = Vec::new();
    for name in &names {
        let mut c = t.login(name, "pw", "home").await;
        ok(&c.request(ROSTER_GET).await);
        c.send("<presence xmlns='jabber:client'/>").await;
        c.recv_from(&format!("{name}@localhost/home")).await;
        c.send(&presence("subscribe", "juliet@localhost")).await;
        assert_eq!(
            recv_lines(&mut c, 1).await,
            ["iq set from=- roster=[juliet@localhost:none:subscribe]"]
        );
        contacts.push(c);
    }
    let asked = recv_lines(&mut juliet, names.len()).await;
    let expected: Vec<String> = {
        let mut e: Vec<String> = names
            .iter()
            .map(|n| format!("presence subscribe from={n}@localhost"))
            .collect();
        e.sort();
        e
    };
    assert_eq!(asked, expected);
    for name in &names {
        juliet
            .send(&presence("subscribed", &format!("{name}@localhost")))
            .await;
        assert_eq!(
            recv_lines(&mut juliet, 1).await,
            [format!("iq set from=- roster=[{name}@localhost:from]")]
        );
    }
    for c in &mut contacts {
        assert_eq!(
            recv_lines(c, 3).await,
            [
                "iq set from=- roster=[juliet@localhost:to]",
                "presence - from=juliet@localhost/balcony",
                "presence subscribed from=juliet@localhost",
            ]
        );
    }
    juliet
        .send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    juliet.recv_from("juliet@localhost/balcony").await;
    for c in &mut contacts {
        let away = c.recv_from("juliet@localhost/balcony").await;
        assert_eq!(
            away.get_child("show", "jabber:client")
                .map(|s| s.text())
                .as_deref(),
            Some("away")
        );
        assert_eq!(
            line(&c.request(ROSTER_GET).await),
            "iq result from=- roster=[juliet@localhost:to]"
        );
    }
    let roster = juliet.request(ROSTER_GET).await;
    let mut expected: Vec<String> = names
        .iter()
        .map(|n| format!("{n}@localhost:from"))
        .collect();
    expected.sort();
    assert_eq!(
        line(&roster),
        format!("iq result from=- roster=[{}]", expected.join(" "))
    );
}

/// A room used, left empty and entered again: what its occupants see, as lines.
async fn room_transcript(resident_services: usize) -> Vec<String> {
    const ROOM: &str = "characters@chat.localhost";
    const MUC: &str = "http://jabber.org/protocol/muc";
    let t = TestServer::start_with(|c| c.limits.resident_services = resident_services).await;
    for user in ["romeo", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let said = |el: &Element| {
        let body = el
            .get_child("body", NS_CLIENT)
            .or_else(|| el.get_child("subject", NS_CLIENT))
            .map(Element::text)
            .unwrap_or_default();
        format!("{} [{body}]", line(el))
    };
    // Up to the subject, which ends a join's answer.
    async fn joined(client: &mut Client, said: impl Fn(&Element) -> String) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let el = client.recv().await;
            got.push(said(&el));
            if el.has_child("subject", NS_CLIENT) {
                return got;
            }
        }
    }
    let join = |nick: &str| {
        format!("<presence xmlns='jabber:client' to='{ROOM}/{nick}'><x xmlns='{MUC}'/></presence>")
    };
    let mut out = Vec::new();
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    romeo.send(&join("Romeo")).await;
    out.extend(joined(&mut romeo, said).await);
    romeo
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>hi</body></message>"
        ))
        .await;
    out.push(said(&romeo.recv().await));
    let configure = format!(
        "<iq xmlns='jabber:client' type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
           <x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_roomname'><value>The Capulets</value></field><field var='muc#roomconfig_persistentroom'><value>1</value></field></x>\
         </query></iq>"
    );
    out.push(line(&romeo.request(&configure).await));
    // The configuration changed (104).
    out.push(line(&romeo.recv().await));
    romeo
        .send(&format!(
            "<presence xmlns='jabber:client' type='unavailable' to='{ROOM}/Romeo'/>"
        ))
        .await;
    out.push(line(&romeo.recv().await));
    // Nobody is in the room: it may leave memory, and comes back from storage.
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    nurse.send(&join("Nurse")).await;
    let mut entered = joined(&mut nurse, said).await;
    entered.sort();
    out.extend(entered);
    let listed = nurse
        .request(
            "<iq xmlns='jabber:client' type='get' id='l' to='chat.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
        )
        .await;
    let rooms: Vec<String> = listed
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .into_iter()
        .flat_map(|q| q.children())
        .map(|item| {
            format!(
                "{} {}",
                item.attr("jid").unwrap_or("?"),
                item.attr("name").unwrap_or("?")
            )
        })
        .collect();
    out.push(format!("rooms: {rooms:?}"));
    romeo.expect_nothing().await;
    out
}

#[tokio::test]
async fn rooms_reloaded_from_storage_answer_as_before() {
    let evicting = room_transcript(0).await;
    assert_eq!(evicting, room_transcript(1000).await);
    assert!(
        evicting
            .contains(&"message groupchat from=characters@chat.localhost/Romeo [hi]".to_owned()),
        "the history comes back: {evicting:#?}"
    );
    assert_eq!(
        evicting.last().map(String::as_str),
        Some(r#"rooms: ["characters@chat.localhost The Capulets"]"#)
    );
}
