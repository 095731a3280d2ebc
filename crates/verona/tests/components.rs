//! XEP-0114 external components: a component connects with its secret, takes its domain, gets
//! what users send there and speaks from it; a wrong secret, an unknown domain, a second
//! connection for the same domain and a stanza from another domain are refused.

mod common;

use common::*;
use std::time::Duration;

use minidom::Element;
use sha1::{Digest, Sha1};
use tokio::io::AsyncReadExt;
use verona_stream::StreamEvent;

const COMPONENT: &str = "jabber:component:accept";
const STREAMS: &str = "http://etherx.jabber.org/streams";
const CLIENT: &str = "jabber:client";

struct Component {
    stream: RawStream,
    id: String,
}

impl Component {
    /// Connects and opens a stream for `domain`; the server's header is read.
    async fn open(server: &TestServer, domain: &str) -> Component {
        let addr = server.server.component_addrs()[0];
        let mut stream = RawStream::connect(addr, COMPONENT).await;
        stream
            .send(&format!(
                "<stream:stream xmlns='{COMPONENT}' xmlns:stream='{STREAMS}' to='{domain}'>"
            ))
            .await;
        let id = match stream.event().await {
            Some(StreamEvent::Header(header)) => header.id.unwrap_or_default(),
            other => panic!("expected a header, got {other:?}"),
        };
        Component { stream, id }
    }

    async fn send(&mut self, xml: &str) {
        self.stream.send(xml).await;
    }

    async fn element(&mut self) -> Element {
        self.stream.element().await
    }

    /// Sends the handshake for `secret`; returns the server's answer.
    async fn handshake(&mut self, secret: &str) -> Element {
        let digest: String = Sha1::digest(format!("{}{secret}", self.id))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.send(&format!("<handshake>{digest}</handshake>")).await;
        self.element().await
    }
}

async fn server() -> TestServer {
    let server = server_with(|_| {}).await;
    server.add_user("juliet", "pw").await;
    server
}

/// A server listening for components, `gateway.localhost` among them, with `more` applied to
/// its configuration.
async fn server_with(more: impl FnOnce(&mut verona::config::Config)) -> TestServer {
    TestServer::start_with(|config| {
        config.components.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config
            .components
            .secrets
            .insert("gateway.localhost".into(), "s3cr3t".into());
        more(config);
    })
    .await
}

fn error_condition(el: &Element) -> Option<String> {
    el.get_child("error", CLIENT)?
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_owned())
}

#[tokio::test]
async fn a_component_takes_its_domain() {
    let server = server().await;
    let mut juliet = server.login("juliet", "pw", "balcony").await;
    juliet.send("<presence xmlns='jabber:client'/>").await;
    juliet.recv().await;

    // Not connected yet: the user is told.
    juliet
        .send("<message xmlns='jabber:client' to='nurse@gateway.localhost' id='m0'><body>?</body></message>")
        .await;
    let bounced = juliet.recv().await;
    assert_eq!(bounced.attr("type"), Some("error"));
    assert_eq!(
        error_condition(&bounced).as_deref(),
        Some("service-unavailable")
    );

    let mut gateway = Component::open(&server, "gateway.localhost").await;
    let answer = gateway.handshake("s3cr3t").await;
    assert!(answer.is("handshake", COMPONENT), "{}", show(&answer));
    assert!(answer.text().is_empty());

    // What a user sends to the domain reaches the component, in its namespace.
    juliet
        .send("<message xmlns='jabber:client' type='chat' to='nurse@gateway.localhost' id='m1'><body>Anon, good nurse!</body></message>")
        .await;
    let got = gateway.element().await;
    assert_eq!(got.ns(), COMPONENT);
    assert_eq!(got.name(), "message");
    assert_eq!(got.attr("from"), Some("juliet@localhost/balcony"));
    assert_eq!(got.attr("to"), Some("nurse@gateway.localhost"));
    assert_eq!(
        got.get_child("body", COMPONENT).unwrap().text(),
        "Anon, good nurse!"
    );

    // It speaks from its domain: to a user, and to the server itself.
    gateway
        .send("<message from='nurse@gateway.localhost' to='juliet@localhost/balcony' type='chat' id='n1'><body>Madam!</body></message>")
        .await;
    let reply = juliet.recv().await;
    assert_eq!(reply.attr("from"), Some("nurse@gateway.localhost"));
    assert_eq!(reply.get_child("body", CLIENT).unwrap().text(), "Madam!");
    gateway
        .send("<iq from='gateway.localhost' to='localhost' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let pong = gateway.element().await;
    assert_eq!(pong.attr("type"), Some("result"), "{}", show(&pong));
    assert_eq!(pong.attr("id"), Some("p1"));
    assert_eq!(pong.attr("to"), Some("gateway.localhost"));
    // An iq of no known type is refused, not passed on (RFC 6120 §8.2.3), as for clients.
    for (id, kind) in [("w1", " type='wrong'"), ("w2", "")] {
        gateway
            .send(&format!("<iq from='nurse@gateway.localhost' to='juliet@localhost/balcony'{kind} id='{id}'><query xmlns='jabber:iq:version'/></iq>"))
            .await;
        let refused = gateway.element().await;
        assert_eq!(refused.attr("id"), Some(id));
        let condition = refused
            .get_child("error", COMPONENT)
            .and_then(|e| e.children().find(|c| c.name() != "text"))
            .map(|c| c.name().to_owned());
        assert_eq!(
            condition.as_deref(),
            Some("bad-request"),
            "{}",
            show(&refused)
        );
    }
    juliet.expect_nothing().await;

    // A second connection for the same domain is refused; the first keeps it.
    let mut second = Component::open(&server, "gateway.localhost").await;
    let refused = second.handshake("s3cr3t").await;
    assert_eq!(stream_error(&refused).as_deref(), Some("conflict"));
    juliet
        .send("<message xmlns='jabber:client' to='gateway.localhost' id='m2'><body>still there?</body></message>")
        .await;
    assert_eq!(gateway.element().await.attr("id"), Some("m2"));

    // Speaking for another domain ends its stream.
    gateway
        .send("<message from='admin@localhost' to='juliet@localhost' type='chat'><body>forged</body></message>")
        .await;
    let error = gateway.element().await;
    assert_eq!(stream_error(&error).as_deref(), Some("invalid-from"));
    juliet.expect_nothing().await;
}

#[tokio::test]
async fn a_component_must_know_its_secret() {
    let server = server().await;
    let mut wrong = Component::open(&server, "gateway.localhost").await;
    let refused = wrong.handshake("guess").await;
    assert_eq!(stream_error(&refused).as_deref(), Some("not-authorized"));
    let mut unknown = Component::open(&server, "elsewhere.localhost").await;
    let refused = unknown.element().await;
    assert_eq!(stream_error(&refused).as_deref(), Some("host-unknown"));
    // The domain is still free for the component that knows the secret.
    let mut gateway = Component::open(&server, "gateway.localhost").await;
    let answer = gateway.handshake("s3cr3t").await;
    assert!(answer.is("handshake", COMPONENT), "{}", show(&answer));
}

/// Issue #11 (audit of 2026-12-07, round 23): guesses at a component's secret wait as
/// guesses at a password do. With no free failure, two wrong handshakes earn the domain a
/// second's wait (250 ms doubled per failure), which the next handshake serves before it is
/// judged; before, each was answered at once (47,000 guesses a minute from 50 addresses).
#[tokio::test]
async fn guesses_at_a_components_secret_wait() {
    let server = server_with(|config| {
        config.auth.failures_before_delay = 0;
    })
    .await;
    for _ in 0..2 {
        let mut guess = Component::open(&server, "gateway.localhost").await;
        let refused = guess.handshake("guess").await;
        assert_eq!(stream_error(&refused).as_deref(), Some("not-authorized"));
    }
    let mut gateway = Component::open(&server, "gateway.localhost").await;
    let asked = std::time::Instant::now();
    let answer = gateway.handshake("s3cr3t").await;
    assert!(answer.is("handshake", COMPONENT), "{}", show(&answer));
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "{:?}",
        asked.elapsed()
    );
}

/// Issue #11 (audit of 2026-12-07, round 23): silent connections holding every component
/// slot (64) kept the component out for as long as they were renewed; now the oldest silent
/// one gives its slot to the newcomer, and the component that knows its secret connects and
/// keeps its slot against newer silent ones, during its handshake and after.
#[tokio::test]
async fn silent_connections_do_not_keep_a_component_out() {
    let server = server_with(|config| {
        config.limits.server_connections_per_address = 200;
        config.limits.new_connections_per_minute = 0;
    })
    .await;
    let addr = server.server.component_addrs()[0];
    let mut silent = Vec::new();
    for _ in 0..64 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut gateway = Component::open(&server, "gateway.localhost").await;
    // The oldest silent connection was closed for it.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent[0].read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // A component that has spoken is not pushed out by newer silent connections before its
    // handshake (audit round 24: the oldest went first, whatever it had said), nor after.
    for _ in 0..64 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let answer = gateway.handshake("s3cr3t").await;
    assert!(answer.is("handshake", COMPONENT), "{}", show(&answer));
    for _ in 0..64 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    server.add_user("juliet", "pw").await;
    let mut juliet = server.login("juliet", "pw", "balcony").await;
    juliet
        .send(
            "<iq xmlns='jabber:client' type='get' to='gateway.localhost' id='v1'>\
               <query xmlns='jabber:iq:version'/></iq>",
        )
        .await;
    let relayed = gateway.element().await;
    assert_eq!(
        (relayed.name(), relayed.attr("id")),
        ("iq", Some("v1")),
        "{}",
        show(&relayed)
    );
}

/// Other servers reach a component as one of this server's domains (third review, issue
/// #11): before, what they sent it was answered `service-unavailable` in its name.
#[tokio::test]
async fn other_servers_reach_a_component() {
    let (capulet_port, montague_port) = (free_port(), free_port());
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{capulet_port}").parse().unwrap()];
        let montague = format!("127.0.0.1:{montague_port}");
        config.s2s.hosts.insert("montague.lit".into(), montague);
        config.components.listen = vec!["127.0.0.1:0".parse().unwrap()];
        let secret = "s3cr3t".to_owned();
        config
            .components
            .secrets
            .insert("bot.capulet.lit".into(), secret);
    })
    .await;
    let montague = TestServer::start_with(move |config| {
        config.domain = "montague.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{montague_port}").parse().unwrap()];
        for host in ["capulet.lit", "bot.capulet.lit"] {
            let capulet = format!("127.0.0.1:{capulet_port}");
            config.s2s.hosts.insert(host.into(), capulet);
        }
    })
    .await;
    montague.add_user("romeo", "pw").await;
    let mut bot = Component::open(&capulet, "bot.capulet.lit").await;
    assert!(bot.handshake("s3cr3t").await.is("handshake", COMPONENT));
    let mut romeo = montague.login("romeo", "pw", "orchard").await;
    romeo
        .send("<message xmlns='jabber:client' to='oracle@bot.capulet.lit' type='chat' id='q1'><body>Speak!</body></message>")
        .await;
    let got = bot.element().await;
    assert_eq!(got.name(), "message", "{}", show(&got));
    assert_eq!(got.attr("id"), Some("q1"));
    assert_eq!(got.attr("from"), Some("romeo@montague.lit/orchard"));
    bot.send("<message from='oracle@bot.capulet.lit' to='romeo@montague.lit/orchard' type='chat' id='a1'><body>Thou shalt.</body></message>")
        .await;
    let answer = romeo.recv().await;
    assert_eq!(answer.attr("id"), Some("a1"), "{}", show(&answer));
    romeo.expect_nothing().await;
}

/// A component's messages to an account are kept for it like anyone's, so they count against
/// the sender's rate of kept messages, also from a bare JID (third review, issue #11).
#[tokio::test]
async fn a_components_kept_messages_are_limited() {
    let server = TestServer::start_with(|config| {
        config.components.listen = vec!["127.0.0.1:0".parse().unwrap()];
        let secret = "s3cr3t".to_owned();
        config
            .components
            .secrets
            .insert("gateway.localhost".into(), secret);
        config.limits.kept_messages_per_minute = 1;
        config.limits.kept_messages_burst = 2;
    })
    .await;
    server.add_user("juliet", "pw").await;
    let mut gateway = Component::open(&server, "gateway.localhost").await;
    assert!(gateway.handshake("s3cr3t").await.is("handshake", COMPONENT));
    for n in 0..3 {
        gateway
            .send(&format!("<message from='nurse@gateway.localhost' to='juliet@localhost' type='chat' id='k{n}'><body>{n}</body></message>"))
            .await;
    }
    let refused = gateway.element().await;
    assert_eq!(refused.attr("id"), Some("k2"), "{}", show(&refused));
    let condition = refused
        .get_child("error", COMPONENT)
        .and_then(|error| error.children().find(|c| c.name() != "text"))
        .map(Element::name);
    assert_eq!(condition, Some("resource-constraint"), "{}", show(&refused));
}

/// The roster item for `contact` in a roster push or result: (subscription, ask).
fn roster_item(iq: &Element, contact: &str) -> Option<(String, Option<String>)> {
    iq.get_child("query", "jabber:iq:roster")?
        .children()
        .find(|item| item.attr("jid") == Some(contact))
        .map(|item| {
            let subscription = item.attr("subscription").unwrap_or("none").to_owned();
            (subscription, item.attr("ask").map(str::to_owned))
        })
}

/// The next roster push for `contact`.
async fn push_for(client: &mut Client, contact: &str) -> (String, Option<String>) {
    let push = recv_until(client, |el| {
        el.name() == "iq" && el.attr("type") == Some("set") && roster_item(el, contact).is_some()
    })
    .await;
    roster_item(&push, contact).unwrap()
}

/// The next stanza from the component that is not `juliet`'s presence broadcast.
async fn subscription_stanza(gateway: &mut Component) -> Element {
    loop {
        let el = gateway.element().await;
        if el.name() == "presence" && el.attr("type").is_some_and(|t| t != "probe") {
            return el;
        }
    }
}

/// Subscriptions both ways with `contact`, a component's user or the component itself,
/// through the component as another server would relay them.
async fn subscribe_both_ways(juliet: &mut Client, gateway: &mut Component, contact: &str) {
    // Roster pushes go to a session that asked for the roster (RFC 6121 §2.1.6).
    let roster = juliet
        .request(
            "<iq xmlns='jabber:client' type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    ok(&roster);
    juliet
        .send(&format!(
            "<presence xmlns='jabber:client' to='{contact}' type='subscribe'/>"
        ))
        .await;
    let asked = subscription_stanza(gateway).await;
    assert_eq!(asked.attr("type"), Some("subscribe"), "{}", show(&asked));
    // RFC 6121 §3.1.2: from the bare JID.
    assert_eq!(asked.attr("from"), Some("juliet@localhost"));
    assert_eq!(asked.attr("to"), Some(contact));
    assert_eq!(
        push_for(juliet, contact).await,
        ("none".into(), Some("subscribe".into()))
    );
    gateway
        .send(&format!(
            "<presence from='{contact}' to='juliet@localhost' type='subscribed'/>"
        ))
        .await;
    assert_eq!(push_for(juliet, contact).await, ("to".into(), None));
    gateway
        .send(&format!(
            "<presence from='{contact}' to='juliet@localhost' type='subscribe'/>"
        ))
        .await;
    // The answer `subscribed` may come to the session first (RFC 6121 §3.1.6).
    let request = recv_until(juliet, |el| {
        el.name() == "presence" && el.attr("type") != Some("subscribed")
    })
    .await;
    assert_eq!(
        request.attr("type"),
        Some("subscribe"),
        "{}",
        show(&request)
    );
    assert_eq!(request.attr("from"), Some(contact));
    juliet
        .send(&format!(
            "<presence xmlns='jabber:client' to='{contact}' type='subscribed'/>"
        ))
        .await;
    let approved = subscription_stanza(gateway).await;
    assert_eq!(
        approved.attr("type"),
        Some("subscribed"),
        "{}",
        show(&approved)
    );
    assert_eq!(approved.attr("from"), Some("juliet@localhost"));
    assert_eq!(push_for(juliet, contact).await, ("both".into(), None));
    // The contact's presence reaches the user.
    gateway
        .send(&format!(
            "<presence from='{contact}' to='juliet@localhost'/>"
        ))
        .await;
    let available = recv_until(juliet, |el| el.name() == "presence").await;
    assert_eq!(
        available.attr("from"),
        Some(contact),
        "{}",
        show(&available)
    );
    assert_eq!(available.attr("type"), None);
    let roster = juliet
        .request(
            "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    assert_eq!(roster_item(&roster, contact), Some(("both".into(), None)));
    // The user's presence goes to the contact, and coming online asks for the contact's.
    juliet
        .send("<presence xmlns='jabber:client' type='unavailable'/>")
        .await;
    // Approving sent the contact the user's presence (RFC 6121 §3.1.5) before.
    let gone = loop {
        let el = gateway.element().await;
        if el.attr("type").is_some() {
            break el;
        }
    };
    assert_eq!(gone.attr("type"), Some("unavailable"), "{}", show(&gone));
    assert_eq!(gone.attr("from"), Some("juliet@localhost/balcony"));
    assert_eq!(gone.attr("to"), Some(contact));
    juliet.send("<presence xmlns='jabber:client'/>").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let el = gateway.element().await;
        assert_eq!(el.attr("to"), Some(contact), "{}", show(&el));
        let from = el.attr("from").unwrap_or_default().to_owned();
        seen.push((el.attr("type").map(str::to_owned), from));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (None, "juliet@localhost/balcony".to_owned()),
            (Some("probe".to_owned()), "juliet@localhost".to_owned()),
        ]
    );
}

/// `gateway.localhost` connected, and Juliet available.
async fn gateway_and_juliet(server: &TestServer) -> (Component, Client) {
    let mut gateway = Component::open(server, "gateway.localhost").await;
    assert!(gateway.handshake("s3cr3t").await.is("handshake", COMPONENT));
    let mut juliet = server.login("juliet", "pw", "balcony").await;
    juliet.send("<presence xmlns='jabber:client'/>").await;
    juliet.recv().await;
    (gateway, juliet)
}

/// Without federation (`[s2s] listen` empty) a component's users are still this server's
/// domain to reach: subscriptions with them were refused `remote-server-not-found`
/// (sixteenth review).
#[tokio::test]
async fn subscriptions_with_a_components_user_need_no_federation() {
    let server = server().await;
    let (mut gateway, mut juliet) = gateway_and_juliet(&server).await;
    subscribe_both_ways(&mut juliet, &mut gateway, "nurse@gateway.localhost").await;
}

/// A XEP-0100 gateway's own JID, a bare domain, is a contact like any (RFC 6121 §3): before,
/// a subscription to it went out as plain presence from the full JID, and made no roster item
/// (sixteenth review).
#[tokio::test]
async fn a_gateways_domain_is_a_contact() {
    let server = server().await;
    let (mut gateway, mut juliet) = gateway_and_juliet(&server).await;
    subscribe_both_ways(&mut juliet, &mut gateway, "gateway.localhost").await;
    // This server's own services are still no contacts.
    juliet
        .send("<presence xmlns='jabber:client' to='chat.localhost' type='subscribe' id='s'/>")
        .await;
    let refused = recv_until(&mut juliet, |el| el.attr("id") == Some("s")).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("service-unavailable")
    );
}

/// What an account shows anyone is answered to a component's bare JID and to its domain as
/// to its full JID (sixteenth review): a vCard (XEP-0054) and last activity (XEP-0012,
/// refused to a stranger) were refused `service-unavailable` unless the request came from a
/// resource.
#[tokio::test]
async fn public_reads_are_answered_to_bare_senders() {
    let server = server().await;
    let mut juliet = server.login("juliet", "pw", "balcony").await;
    let set = juliet
        .request("<iq xmlns='jabber:client' type='set' id='v0'><vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN></vCard></iq>")
        .await;
    ok(&set);
    let mut gateway = Component::open(&server, "gateway.localhost").await;
    assert!(gateway.handshake("s3cr3t").await.is("handshake", COMPONENT));
    for asker in [
        "nurse@gateway.localhost",
        "gateway.localhost",
        "nurse@gateway.localhost/x",
    ] {
        gateway
            .send(&format!("<iq from='{asker}' to='juliet@localhost' type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>"))
            .await;
        let card = gateway.element().await;
        assert_eq!(card.attr("type"), Some("result"), "{}", show(&card));
        assert_eq!(card.attr("to"), Some(asker));
        assert_eq!(card.attr("from"), Some("juliet@localhost"));
        let name = card
            .get_child("vCard", "vcard-temp")
            .and_then(|v| v.get_child("FN", "vcard-temp"))
            .map(Element::text);
        assert_eq!(name.as_deref(), Some("Juliet Capulet"), "{}", show(&card));
        // XEP-0012 §4: last activity is for contacts; a stranger is told so.
        gateway
            .send(&format!("<iq from='{asker}' to='juliet@localhost' type='get' id='l1'><query xmlns='jabber:iq:last'/></iq>"))
            .await;
        let last = gateway.element().await;
        assert_eq!(last.attr("to"), Some(asker), "{}", show(&last));
        let condition = last
            .get_child("error", COMPONENT)
            .and_then(|error| error.children().find(|c| c.name() != "text"))
            .map(Element::name);
        assert_eq!(condition, Some("forbidden"), "{}", show(&last));
    }
}

/// A component's occupant of a room is reached as another server's is: once the component
/// is gone, what the room sends it bounces `service-unavailable`, and it leaves the room with
/// 333 (XEP-0045, as on Prosody) instead of staying listed, its messages dropped, until the
/// component comes back to get them without having rejoined.
#[tokio::test]
async fn a_gone_components_occupants_leave_the_room() {
    const MUC: &str = "http://jabber.org/protocol/muc";
    const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    const ROOM: &str = "hall@chat.localhost";
    let server = server().await;
    let (mut gateway, mut juliet) = gateway_and_juliet(&server).await;
    juliet
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/Juliet'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    recv_until(&mut juliet, |el| el.has_child("subject", CLIENT)).await;
    ok(&juliet
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='instant' to='{ROOM}'>\
               <query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await);
    gateway
        .send(&format!(
            "<presence from='nurse@gateway.localhost/x' to='{ROOM}/Nurse'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    while !gateway.element().await.has_child("subject", COMPONENT) {}
    let nurse = format!("{ROOM}/Nurse");
    let from_nurse = |kind: Option<&'static str>| {
        let nurse = nurse.clone();
        move |el: &Element| {
            el.name() == "presence"
                && el.attr("from") == Some(nurse.as_str())
                && el.attr("type") == kind
        }
    };
    recv_until(&mut juliet, from_nurse(None)).await;

    // Its stream closed: the server's close comes after the component is let go.
    gateway.send("</stream:stream>").await;
    while !matches!(gateway.stream.event().await, None | Some(StreamEvent::End)) {}
    juliet
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='g1'><body>Nurse!</body></message>"
        ))
        .await;
    let gone = recv_until(&mut juliet, from_nurse(Some("unavailable"))).await;
    let codes: Vec<&str> = (gone.get_child("x", MUC_USER).into_iter())
        .flat_map(|x| x.children())
        .filter_map(|status| status.attr("code"))
        .collect();
    assert_eq!(codes, ["333"], "{}", show(&gone));
    let items = juliet
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' id='who' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        ))
        .await;
    let listed: Vec<&str> = (items.children().flat_map(|query| query.children()))
        .filter_map(|item| item.attr("jid"))
        .collect();
    assert_eq!(listed, [format!("{ROOM}/Juliet")], "{}", show(&items));

    // Back, it gets what is sent to it, not the room's messages.
    let mut gateway = Component::open(&server, "gateway.localhost").await;
    assert!(gateway.handshake("s3cr3t").await.is("handshake", COMPONENT));
    juliet
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='g2'><body>Nurse?</body></message>"
        ))
        .await;
    recv_until(&mut juliet, |el| el.attr("id") == Some("g2")).await;
    juliet
        .send("<message xmlns='jabber:client' type='chat' to='nurse@gateway.localhost' id='m1'><body>Nurse!</body></message>")
        .await;
    let got = gateway.element().await;
    assert_eq!(got.attr("id"), Some("m1"), "{}", show(&got));
}

/// A component's sender written with its domain's final dot or in capitals (RFC 7622 §3.2:
/// the same JID) is its own, and reaches users written as the domain is; another domain so
/// written is still another domain. Before, `nurse@gateway.localhost./r` and
/// `gateway.localhost./r` reached users as written (a contact they do not know), and
/// `nurse@gateway.localhost.` ended the stream (identity audit F2).
#[tokio::test]
async fn a_components_senders_are_written_as_the_domain_is() {
    let server = server().await;
    let mut juliet = server.login("juliet", "pw", "balcony").await;
    juliet.send("<presence xmlns='jabber:client'/>").await;
    juliet.recv().await;
    let mut gateway = Component::open(&server, "gateway.localhost").await;
    assert!(gateway.handshake("s3cr3t").await.is("handshake", COMPONENT));
    for (n, (from, written)) in [
        ("nurse@gateway.localhost./r", "nurse@gateway.localhost/r"),
        ("gateway.localhost./r", "gateway.localhost/r"),
        ("nurse@gateway.localhost.", "nurse@gateway.localhost"),
        ("Nurse@GATEWAY.localhost./r", "nurse@gateway.localhost/r"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("h{n}");
        gateway
            .send(&format!("<message from='{from}' to='juliet@localhost./balcony' type='headline' id='{id}'><body>Madam!</body></message>"))
            .await;
        let got = juliet.recv().await;
        assert_eq!(got.attr("id"), Some(id.as_str()), "{}", show(&got));
        assert_eq!(got.attr("from"), Some(written), "{}", show(&got));
        assert_eq!(got.attr("to"), Some("juliet@localhost/balcony"));
    }
    gateway
        .send("<message from='nurse@localhost./r' to='juliet@localhost' type='headline'><body>forged</body></message>")
        .await;
    let error = gateway.element().await;
    assert_eq!(stream_error(&error).as_deref(), Some("invalid-from"));
    juliet.expect_nothing().await;
}

/// `[components.secrets]` names a domain as JIDs compare it: a key written in capitals is
/// that domain, which the component connects as however it spells it, and which users reach.
/// Before, the key was kept as written: the component authenticated only as written, and
/// users' stanzas, addressed to the domain in lower case, never reached it (identity audit
/// F3).
#[tokio::test]
async fn a_components_configured_domain_is_the_domain_it_names() {
    let server = TestServer::start_with(|config| {
        config.components.listen = vec!["127.0.0.1:0".parse().unwrap()];
        // As the server's file gives it.
        let file = "[components.secrets]\n\"Gw3.Localhost\" = \"s3cr3t\"\n";
        let read = verona::config::Config::parse(file).unwrap();
        config.components.secrets = read.components.secrets;
    })
    .await;
    server.add_user("juliet", "pw").await;
    let mut juliet = server.login("juliet", "pw", "balcony").await;
    // Connecting as the domain in another spelling is connecting as the domain.
    let mut gateway = Component::open(&server, "GW3.localhost.").await;
    let answer = gateway.handshake("s3cr3t").await;
    assert!(answer.is("handshake", COMPONENT), "{}", show(&answer));
    juliet
        .send("<message xmlns='jabber:client' to='nurse@gw3.localhost' id='m1'><body>Nurse?</body></message>")
        .await;
    let got = gateway.element().await;
    assert_eq!(got.attr("id"), Some("m1"), "{}", show(&got));
    assert_eq!(got.attr("to"), Some("nurse@gw3.localhost"));
}
