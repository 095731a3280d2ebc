//! What other servers (and strangers on the server-to-server port) must not be able to do to
//! a server: hold its connection slots, fill its memory, or make it connect where it should
//! not; and how it takes what they answer on its streams, and leaves them when it stops.

mod common;

use std::time::Duration;

use common::*;
use minidom::Element;
use tokio::io::AsyncReadExt;
use verona_stream::StreamEvent;

const STREAMS: &str = "http://etherx.jabber.org/streams";
const DIALBACK: &str = "jabber:server:dialback";

/// A raw server-to-server stream claiming to come from `from`, header sent and features
/// read.
async fn open_raw(port: u16, from: &str, to: &str) -> (RawStream, Element) {
    let mut raw = RawStream::connect(([127, 0, 0, 1], port).into(), "jabber:server").await;
    raw.send(&format!("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='{STREAMS}' xmlns:db='{DIALBACK}' from='{from}' to='{to}' version='1.0'>")).await;
    assert!(matches!(raw.event().await, Some(StreamEvent::Header(_))));
    let features = raw.element().await;
    (raw, features)
}

/// A raw server-to-server stream from `from` to `to` on the port of the server whose
/// certificate is `cert`, past STARTTLS and restarted, its features read: ready for dialback.
async fn open_secured(cert: &std::path::Path, port: u16, from: &str, to: &str) -> RawStream {
    let (mut raw, _) = open_raw(port, from, to).await;
    raw.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    assert_eq!(raw.element().await.name(), "proceed");
    raw.tls(server_tls_connector(cert), "capulet.lit").await;
    raw.restart();
    raw.send(&format!("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='{STREAMS}' xmlns:db='{DIALBACK}' from='{from}' to='{to}' version='1.0'>")).await;
    assert!(matches!(raw.event().await, Some(StreamEvent::Header(_))));
    raw.element().await;
    raw
}

/// A stream that asks for STARTTLS and then never starts the handshake is closed when its
/// time to authenticate is over, like any other unauthenticated stream.
#[tokio::test]
async fn a_server_that_never_shakes_hands_is_cut_off() {
    let port = free_port();
    let _capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
        config.limits.unauthenticated_timeout_secs = 1;
    })
    .await;
    let (mut raw, _) = open_raw(port, "montague.lit", "capulet.lit").await;
    raw.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    assert_eq!(raw.element().await.name(), "proceed");
    assert!(raw.event().await.is_none(), "the connection is closed");
}

/// `[limits] server_connections_per_address`: one address cannot take every slot of the
/// server-to-server and component listeners; past its share a connection is closed before
/// anything is read from it.
#[tokio::test]
async fn server_and_component_connections_are_capped_per_address() {
    let port = free_port();
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
        config.components.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.limits.server_connections_per_address = 2;
    })
    .await;
    let (_first, features) = open_raw(port, "montague.lit", "capulet.lit").await;
    assert!(features.has_child("starttls", NS_TLS));
    let (_second, _) = open_raw(port, "verona.lit", "capulet.lit").await;
    let mut third = RawStream::connect(([127, 0, 0, 1], port).into(), "jabber:server").await;
    assert!(third.event().await.is_none(), "a third server stream");
    let component = capulet.server.component_addrs()[0];
    let mut component = RawStream::connect(component, "jabber:component:accept").await;
    assert!(component.event().await.is_none(), "a component beside them");
}

/// Issue #11 (audit of 2026-12-07, round 23): silent connections holding every slot of
/// `[s2s] max_incoming` kept other servers out for as long as they were renewed; now the
/// oldest of those not yet authenticated gives its slot to a newcomer, and a stream that
/// authenticated keeps its own however many silent ones follow.
#[tokio::test]
async fn silent_connections_do_not_keep_other_servers_out() {
    let (capulet, montague) = pair_with(|config| {
        config.s2s.max_incoming = 4;
        config.limits.server_connections_per_address = 100;
        config.limits.new_connections_per_minute = 0;
    })
    .await;
    let port = capulet.server.s2s_addrs()[0];
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tokio::net::TcpStream::connect(port).await.unwrap());
    }
    let mut juliet = available(&capulet, "juliet").await;
    let mut romeo = available(&montague, "romeo").await;
    romeo.send(&say("juliet@capulet.lit", "one")).await;
    got_chat(&mut juliet, "romeo@montague.lit/here", "one").await;
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(port).await.unwrap());
    }
    // Montague's stream, authenticated, kept its slot: the silent ones took each other's,
    // and three are open (with its slot taken too, four would be).
    let closed = futures_util::future::join_all(silent.iter_mut().map(|tcp| async move {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut byte)).await;
        matches!(read, Ok(Ok(0) | Err(_)))
    }))
    .await;
    assert_eq!(
        closed.iter().filter(|closed| !**closed).count(),
        3,
        "{closed:?}"
    );
    romeo.send(&say("juliet@capulet.lit", "two")).await;
    got_chat(&mut juliet, "romeo@montague.lit/here", "two").await;
    romeo.expect_nothing().await;
}

/// The condition of a stanza error.
fn error_condition(el: &Element) -> Option<String> {
    el.get_child("error", NS_CLIENT)?
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
}

/// `[s2s] max_queue_bytes` and `max_total_queue_bytes`: what waits for other servers (here
/// two that accept connections and never answer) is bounded in bytes, per remote domain and
/// in all, long before `max_queue` stanzas; past it a stanza bounces to its sender with
/// `resource-constraint`.
#[tokio::test]
async fn what_waits_for_other_servers_is_bounded_in_bytes() {
    let silent = [
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let ports = [
        silent[0].local_addr().unwrap().port(),
        silent[1].local_addr().unwrap().port(),
    ];
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec!["127.0.0.1:0".parse().unwrap()];
        for (domain, port) in [("silent1.lit", ports[0]), ("silent2.lit", ports[1])] {
            config
                .s2s
                .hosts
                .insert(domain.into(), format!("127.0.0.1:{port}"));
        }
        config.s2s.max_queue_bytes = 200_000;
        config.s2s.max_total_queue_bytes = 250_000;
    })
    .await;
    capulet.add_user("juliet", "pw").await;
    let mut juliet = capulet.login("juliet", "pw", "balcony").await;
    let body = "x".repeat(60_000);
    // About 60 KB each: three fit silent1.lit's 200 KB, a fourth does not; then one more fits
    // silent2.lit's own bound but not the 250 KB of all queues together. (Conversations with
    // different users may be handled in any order: each batch's bounce is waited for.)
    let batches = [
        (["m1", "m2", "m3", "m4"].as_slice(), "silent1.lit", "m4"),
        (["m5", "m6"].as_slice(), "silent2.lit", "m6"),
    ];
    for (ids, domain, refused) in batches {
        for id in ids {
            juliet
                .send(&format!("<message xmlns='jabber:client' type='chat' to='romeo@{domain}' id='{id}'><body>{body}</body></message>"))
                .await;
        }
        let bounced = juliet.recv().await;
        assert_eq!(bounced.attr("type"), Some("error"), "{}", show(&bounced));
        assert_eq!(bounced.attr("id"), Some(refused));
        assert_eq!(
            error_condition(&bounced).as_deref(),
            Some("resource-constraint")
        );
    }
    juliet.expect_nothing().await;
}

/// Two federating servers, capulet.lit and montague.lit, each the other's remote domain
/// through `[s2s.hosts]`; Juliet on the first, Romeo on the second.
async fn pair() -> (TestServer, TestServer) {
    pair_with(|_| {}).await
}

/// [`pair`], with `capulet` applied to capulet.lit's configuration.
async fn pair_with(capulet: impl FnOnce(&mut verona::config::Config)) -> (TestServer, TestServer) {
    let (capulet_port, montague_port) = (free_port(), free_port());
    let federate = |domain: &'static str, own: u16, other: &'static str, other_port: u16| {
        move |config: &mut verona::config::Config| {
            config.domain = domain.into();
            config.s2s.listen = vec![format!("127.0.0.1:{own}").parse().unwrap()];
            config
                .s2s
                .hosts
                .insert(other.into(), format!("127.0.0.1:{other_port}"));
        }
    };
    let federated = federate("capulet.lit", capulet_port, "montague.lit", montague_port);
    let capulet = TestServer::start_with(move |config| {
        federated(config);
        capulet(config);
    })
    .await;
    let montague = TestServer::start_with(federate(
        "montague.lit",
        montague_port,
        "capulet.lit",
        capulet_port,
    ))
    .await;
    capulet.add_user("juliet", "pw").await;
    montague.add_user("romeo", "pw").await;
    (capulet, montague)
}

/// Remote resources are remembered (and their capabilities asked about) only from presence
/// to an account that is online here: presence to an account that does not exist, or has no
/// available session, makes the server keep nothing and ask nothing.
#[tokio::test]
async fn only_presence_to_an_online_account_is_remembered() {
    let (capulet, montague) = pair().await;
    let mut juliet = capulet.login("juliet", "pw", "balcony").await;
    juliet.send("<presence xmlns='jabber:client'/>").await;
    assert_eq!(juliet.recv().await.name(), "presence");
    let mut romeo = montague.login("romeo", "pw", "orchard").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    assert_eq!(romeo.recv().await.name(), "presence");
    let (ignored, ignored_c) = caps(&["urn:example:ignored"]);
    let (asked, asked_c) = caps(&["urn:example:asked"]);
    // Sent in this order over one stream, so a question about the first would come first.
    for (to, c) in [
        ("nobody@capulet.lit", &ignored_c),
        ("juliet@capulet.lit", &asked_c),
    ] {
        romeo
            .send(&format!(
                "<presence xmlns='jabber:client' to='{to}'>{c}</presence>"
            ))
            .await;
    }
    let question = loop {
        let el = romeo.recv().await;
        if el.name() == "iq" && el.attr("from") == Some("capulet.lit") {
            break el;
        }
    };
    let node = question
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.attr("node"));
    assert_eq!(node, asked.node.as_deref(), "not {:?}", ignored.node);
}

/// Capabilities questions to one remote domain's users wait at most 100 at once: a server
/// that never answers cannot take the room the questions to every other server need.
#[tokio::test]
async fn unanswered_capabilities_questions_are_bounded_per_domain() {
    let (capulet, montague) = pair().await;
    let mut juliet = capulet.login("juliet", "pw", "balcony").await;
    juliet.send("<presence xmlns='jabber:client'/>").await;
    assert_eq!(juliet.recv().await.name(), "presence");
    let mut romeo = montague.login("romeo", "pw", "orchard").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    assert_eq!(romeo.recv().await.name(), "presence");
    let per_domain = 100;
    for n in 0..=per_domain {
        let feature = format!("urn:example:f{n}");
        let (_, c) = caps(&[feature.as_str()]);
        romeo
            .send(&format!(
                "<presence xmlns='jabber:client' to='juliet@capulet.lit'>{c}</presence>"
            ))
            .await;
    }
    let mut questions = 0;
    while questions < per_domain {
        let el = romeo.recv().await;
        if el.name() == "iq" && el.attr("from") == Some("capulet.lit") {
            questions += 1;
        }
    }
    romeo.expect_nothing().await;
}

/// A headline, groupchat or error message from another server arrives without what would
/// pass for this server's word: a `stanza-id` by the recipient (its archive's) and carbons;
/// what the other server's entities may add (their own ids, delays, addresses, pubsub events,
/// results of their own archives, XEP-0313 §4) passes.
#[tokio::test]
async fn another_servers_messages_lose_what_only_this_server_writes() {
    let (capulet, montague) = pair().await;
    let mut juliet = capulet.login("juliet", "pw", "balcony").await;
    juliet.send("<presence xmlns='jabber:client'/>").await;
    assert_eq!(juliet.recv().await.name(), "presence");
    let mut romeo = montague.login("romeo", "pw", "orchard").await;
    let forged = "<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.lit' id='FORGED'/>\
         <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='nurse@capulet.lit/x'/></forwarded></received>";
    let kept = "<delay xmlns='urn:xmpp:delay' from='montague.lit' stamp='2020-01-01T00:00:00Z'/>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='romeo@montague.lit' id='his'/>\
         <result xmlns='urn:xmpp:mam:2' id='r'/>";
    for kind in ["headline", "groupchat", "error"] {
        let error = if kind == "error" {
            "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        } else {
            ""
        };
        romeo
            .send(&format!(
                "<message xmlns='jabber:client' to='juliet@capulet.lit/balcony' type='{kind}'><body>{kind}</body>{forged}{kept}{error}</message>"
            ))
            .await;
        let got = loop {
            let el = juliet.recv().await;
            if el.name() == "message" {
                break el;
            }
        };
        assert_eq!(got.attr("type"), Some(kind));
        let kept = [
            ("body", NS_CLIENT),
            ("delay", "urn:xmpp:delay"),
            ("stanza-id", "urn:xmpp:sid:0"),
            ("result", "urn:xmpp:mam:2"),
        ];
        assert_children(&got, &kept);
    }
}

/// A user cannot make the server connect inside its own network: an address or `localhost`
/// as a domain, or a domain found only at a private address, is not a server to reach
/// (unless `[s2s.hosts]` names it); the request bounces and nothing connects.
#[tokio::test]
async fn the_server_does_not_connect_to_private_addresses_it_is_sent_to() {
    let trap = tokio::net::TcpListener::bind("127.0.0.2:5269")
        .await
        .expect("127.0.0.2:5269 is free for the test");
    let port = free_port();
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    })
    .await;
    capulet.add_user("juliet", "pw").await;
    let mut juliet = capulet.login("juliet", "pw", "balcony").await;
    for domain in ["127.0.0.2", "localhost"] {
        let ping = format!(
            "<iq xmlns='jabber:client' type='get' id='p' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        let reply = juliet.request(&ping).await;
        assert_eq!(
            error_condition(&reply).as_deref(),
            Some("remote-server-not-found"),
            "{domain}: {}",
            show(&reply)
        );
    }
    let connected =
        tokio::time::timeout(std::time::Duration::from_millis(300), trap.accept()).await;
    assert!(connected.is_err(), "the server connected to 127.0.0.2:5269");
}

/// `[limits] server_verifications_per_minute`: each dialback key a stream offers makes the
/// server connect to the domain the key claims, so streams from one address get only so many
/// keys checked; past them the stream asking ends with `policy-violation`, unchecked.
#[tokio::test]
async fn dialback_keys_checked_are_limited_per_address() {
    let port = free_port();
    // The claimed domains point at a port nobody listens on: each check fails at once.
    let closed = free_port();
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
        for domain in ["a.lit", "b.lit", "c.lit"] {
            let at = format!("127.0.0.1:{closed}");
            config.s2s.hosts.insert(domain.into(), at);
        }
        config.limits.server_verifications_per_minute = 2;
    })
    .await;
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut answers = Vec::new();
    for domain in ["a.lit", "b.lit", "c.lit"] {
        let mut raw = open_secured(capulet.server.cert_path(), port, domain, "capulet.lit").await;
        raw.send(&format!(
            "<db:result from='{domain}' to='capulet.lit'>{key}</db:result>"
        ))
        .await;
        let answer = raw.element().await;
        answers.push(match stream_error(&answer) {
            Some(condition) => condition,
            None => format!("{}:{}", answer.name(), answer.attr("type").unwrap_or("")),
        });
    }
    assert_eq!(
        answers,
        ["result:error", "result:error", "policy-violation"]
    );
}

/// XEP-0220 §2.4 and §3: a key whose authoritative server cannot be asked (nobody listens
/// there, or it never answers) was not found forged: the answer is `type='error'` with
/// the reason, not `invalid`, and the stream stays open for other keys (found by the
/// ejabberd audit: such keys were answered `invalid`, which reads as a forgery).
#[tokio::test]
async fn a_key_that_cannot_be_checked_is_answered_with_an_error() {
    let port = free_port();
    let closed = free_port();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
        let hosts = &mut config.s2s.hosts;
        hosts.insert("dead.lit".into(), format!("127.0.0.1:{closed}"));
        hosts.insert("silent.lit".into(), format!("127.0.0.1:{silent_port}"));
        config.s2s.connect_timeout_secs = 1;
    })
    .await;
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut raw = open_secured(capulet.server.cert_path(), port, "dead.lit", "capulet.lit").await;
    for (domain, conditions) in [
        ("dead.lit", &["remote-connection-failed"][..]),
        // Whichever gives up first: the stream's setup, or the wait for the answer.
        (
            "silent.lit",
            &["remote-connection-failed", "remote-server-timeout"][..],
        ),
    ] {
        raw.send(&format!(
            "<db:result from='{domain}' to='capulet.lit'>{key}</db:result>"
        ))
        .await;
        let answer = raw.element().await;
        assert!(answer.is("result", DIALBACK), "{}", show(&answer));
        assert_eq!(answer.attr("from"), Some("capulet.lit"));
        assert_eq!(answer.attr("to"), Some(domain));
        assert_eq!(answer.attr("type"), Some("error"), "{}", show(&answer));
        let condition = answer
            .get_child("error", "jabber:server")
            .and_then(|error| error.children().find(|c| c.ns() == NS_STANZAS))
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| panic!("{}", show(&answer)));
        assert!(
            conditions.contains(&condition.as_str()),
            "{}",
            show(&answer)
        );
    }
}

/// A domain whose server cannot be reached is not dialled again for each key claiming it: a
/// peer offering key after key for a dead domain, on one stream or several, gets each
/// answered `remote-connection-failed`, and the server tried to connect once (before, once
/// per key, at the rate the peer sent them).
#[tokio::test]
async fn keys_for_a_dead_domain_do_not_make_the_server_dial_it_again() {
    let port = free_port();
    // dead.lit's address takes connections and closes them at once, counting them.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    let dialled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = dialled.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = dead.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
        let at = format!("127.0.0.1:{dead_port}");
        config.s2s.hosts.insert("dead.lit".into(), at);
    })
    .await;
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for _ in 0..2 {
        let mut raw =
            open_secured(capulet.server.cert_path(), port, "dead.lit", "capulet.lit").await;
        for _ in 0..3 {
            raw.send(&format!(
                "<db:result from='dead.lit' to='capulet.lit'>{key}</db:result>"
            ))
            .await;
            let answer = raw.element().await;
            assert!(answer.is("result", DIALBACK), "{}", show(&answer));
            assert_eq!(answer.attr("type"), Some("error"), "{}", show(&answer));
            let condition = answer
                .get_child("error", "jabber:server")
                .and_then(|error| error.children().find(|c| c.ns() == NS_STANZAS))
                .map(|c| c.name().to_owned());
            assert_eq!(
                condition.as_deref(),
                Some("remote-connection-failed"),
                "{}",
                show(&answer)
            );
        }
    }
    assert_eq!(dialled.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A failed stream of one pair of domains says nothing of the others (third review, issue
/// #11): anyone can ask for dialback to `pubsub.capulet.lit`, which makes capulet.lit open a
/// stream from that subdomain to montague.lit; montague.lit cannot check it and refuses it,
/// and that must not make montague.lit unreachable from capulet.lit itself.
#[tokio::test]
async fn a_pair_of_domains_that_fails_takes_no_other_pair_down() {
    let (capulet_port, montague_port) = (free_port(), free_port());
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{capulet_port}").parse().unwrap()];
        let montague = format!("127.0.0.1:{montague_port}");
        config.s2s.hosts.insert("montague.lit".into(), montague);
    })
    .await;
    // montague.lit finds only capulet.lit: a stream from pubsub.capulet.lit fails dialback.
    let montague = TestServer::start_with(move |config| {
        config.domain = "montague.lit".into();
        config.s2s.listen = vec![format!("127.0.0.1:{montague_port}").parse().unwrap()];
        let capulet = format!("127.0.0.1:{capulet_port}");
        config.s2s.hosts.insert("capulet.lit".into(), capulet);
    })
    .await;
    capulet.add_user("juliet", "pw").await;
    montague.add_user("romeo", "pw").await;
    let mut juliet = capulet.login("juliet", "pw", "balcony").await;
    let mut romeo = montague.login("romeo", "pw", "orchard").await;
    let say = |id: &str| {
        format!(
            "<message xmlns='jabber:client' to='romeo@montague.lit/orchard' type='headline' id='{id}'><body>{id}</body></message>"
        )
    };
    juliet.send(&say("before")).await;
    let got = recv_until(&mut romeo, |el| el.name() == "message").await;
    assert_eq!(got.attr("id"), Some("before"));

    let mut raw = open_secured(
        capulet.server.cert_path(),
        capulet_port,
        "montague.lit",
        "pubsub.capulet.lit",
    )
    .await;
    raw.send("<db:result from='montague.lit' to='pubsub.capulet.lit'>00</db:result>")
        .await;
    let answer = raw.element().await;
    assert_eq!(answer.attr("type"), Some("invalid"), "{}", show(&answer));
    // The subdomain's stream has failed by now, or fails while this one goes.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for id in ["after", "later"] {
        juliet.send(&say(id)).await;
        let got = recv_until(&mut romeo, |el| el.name() == "message").await;
        assert_eq!(got.attr("id"), Some(id), "{}", show(&got));
    }
    juliet.expect_nothing().await;
}

/// Answers to another server's users count against the read rate that server's streams
/// share, as answers to an account's requests count against the account's: a remote user's
/// short requests for a node's long items cannot be repeated at the rate short requests are
/// read.
#[tokio::test]
async fn answers_to_another_servers_users_count_against_its_rate() {
    let (capulet, montague) = pair_with(|config| {
        // What montague.lit's streams send fits this burst many times over; one answer
        // of 150 KB, counted at an eighth, does not.
        config.s2s.read_bytes_per_sec = 1;
        config.s2s.read_burst_bytes = 12 * 1024;
        config.limits.read_bytes_per_sec = 0;
        config.limits.account_read_bytes_per_sec = 0;
    })
    .await;
    let mut juliet = capulet.login("juliet", "pw", "balcony").await;
    let text = "x".repeat(150_000);
    let published = juliet
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:example:big'><item id='only'><big xmlns='urn:example:big'>{text}</big></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>open</value></field></x></publish-options></pubsub></iq>"
        ))
        .await;
    assert_eq!(
        published.attr("type"),
        Some("result"),
        "{}",
        show(&published)
    );
    let mut romeo = montague.login("romeo", "pw", "orchard").await;
    let ping = |id: &str| {
        format!(
            "<iq xmlns='jabber:client' type='get' id='{id}' to='capulet.lit'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
    };
    assert_eq!(
        romeo.request(&ping("ping0")).await.attr("type"),
        Some("result")
    );
    let items = romeo
        .request("<iq xmlns='jabber:client' type='get' id='g1' to='juliet@capulet.lit'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:example:big'/></pubsub></iq>")
        .await;
    assert_eq!(items.attr("type"), Some("result"), "{}", show(&items));
    // montague.lit is past its rate: what capulet.lit read of its stream before reading
    // paused is answered (one ping), nothing after it is (the next).
    assert_eq!(
        romeo.request(&ping("ping1")).await.attr("type"),
        Some("result")
    );
    romeo.send(&ping("ping2")).await;
    romeo.expect_nothing().await;
}

/// Plays fake.lit for a stream capulet.lit opens to it on `listener`: STARTTLS, then reads
/// capulet.lit's dialback key, which is left to the test to answer.
async fn receive_key(listener: &tokio::net::TcpListener) -> RawStream {
    receive_key_of(listener, "capulet.lit").await
}

/// [`receive_key`] for a stream from `local`, one of capulet.lit's domains.
async fn receive_key_of(listener: &tokio::net::TcpListener, local: &str) -> RawStream {
    receive_key_between(listener, local, "fake.lit").await.0
}

/// [`receive_key`] for a stream from `local` to `remote`, which the test plays; with the key
/// (made for the stream id `s1`).
async fn receive_key_between(
    listener: &tokio::net::TcpListener,
    local: &str,
    remote: &str,
) -> (RawStream, String) {
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='{STREAMS}' xmlns:db='{DIALBACK}' from='{remote}' to='{local}' id='s1' version='1.0'>"
    );
    let mut raw = RawStream::accept(listener, "jabber:server").await;
    assert!(matches!(raw.event().await, Some(StreamEvent::Header(_))));
    raw.send(&header).await;
    raw.send("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>").await;
    assert!(raw.element().await.is("starttls", NS_TLS));
    raw.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    raw.accept_tls("fake.lit").await;
    raw.restart();
    assert!(matches!(raw.event().await, Some(StreamEvent::Header(_))));
    raw.send(&header).await;
    raw.send("<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>").await;
    let key = raw.element().await;
    assert!(key.is("result", DIALBACK), "{}", show(&key));
    assert_eq!(key.attr("from"), Some(local));
    assert_eq!(key.attr("to"), Some(remote));
    (raw, key.text())
}

/// The stanzas a stream from capulet.lit carries until capulet.lit closes it.
async fn until_closed(raw: &mut RawStream) -> Vec<Element> {
    let mut stanzas = Vec::new();
    loop {
        match raw.event().await {
            Some(StreamEvent::Stanza(el)) => stanzas.push(el),
            Some(StreamEvent::End) => return stanzas,
            other => panic!("expected the stream to be closed, got {other:?}"),
        }
    }
}

/// Juliet on capulet.lit, whose server reaches `fake.lit` at the listener returned (a test's
/// raw stream plays that server).
async fn juliet_and_a_fake_server() -> (tokio::net::TcpListener, TestServer, Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = listener.local_addr().unwrap().port();
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec!["127.0.0.1:0".parse().unwrap()];
        let at = format!("127.0.0.1:{fake}");
        config.s2s.hosts.insert("fake.lit".into(), at);
    })
    .await;
    capulet.add_user("juliet", "pw").await;
    let juliet = capulet.login("juliet", "pw", "balcony").await;
    (listener, capulet, juliet)
}

/// XEP-0220 §2.1.1: what waited on a dialback key the other server found invalid bounces with
/// `internal-server-error`.
#[tokio::test]
async fn a_key_found_invalid_bounces_as_an_internal_error() {
    let (listener, _capulet, mut juliet) = juliet_and_a_fake_server().await;
    juliet
        .send("<message xmlns='jabber:client' type='chat' to='romeo@fake.lit' id='i1'><body>hi</body></message>")
        .await;
    let mut raw = receive_key(&listener).await;
    raw.send("<db:result from='fake.lit' to='capulet.lit' type='invalid'/>")
        .await;
    let bounced = juliet.recv().await;
    assert_eq!(bounced.attr("id"), Some("i1"), "{}", show(&bounced));
    assert_eq!(bounced.attr("type"), Some("error"));
    assert_eq!(
        error_condition(&bounced).as_deref(),
        Some("internal-server-error"),
        "{}",
        show(&bounced)
    );
}

/// XEP-0220 §2.1.1 and §3, on the side that sends the key: an answer `type='error'` says the
/// other server could not check the key, not that it is forged. What waits bounces with
/// `remote-server-timeout` (not `remote-server-not-found`, as for a refusal), the domain is
/// asked again after a short wait, and errors in a row do not make that wait grow as
/// failures do.
#[tokio::test]
async fn a_key_the_other_server_could_not_check_is_no_refusal() {
    let (listener, _capulet, mut juliet) = juliet_and_a_fake_server().await;
    let say = |id: &str| {
        format!(
            "<message xmlns='jabber:client' type='chat' to='romeo@fake.lit' id='{id}'><body>{id}</body></message>"
        )
    };
    let bounced = async |juliet: &mut Client, id: &str| {
        let bounced = juliet.recv().await;
        assert_eq!(bounced.attr("id"), Some(id), "{}", show(&bounced));
        assert_eq!(bounced.attr("type"), Some("error"));
        assert_eq!(
            error_condition(&bounced).as_deref(),
            Some("remote-server-timeout"),
            "{}",
            show(&bounced)
        );
    };
    let could_not_check = "<db:result from='fake.lit' to='capulet.lit' type='error'><error type='cancel'><remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>";
    for (n, id) in ["e1", "e2"].into_iter().enumerate() {
        if n > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        }
        juliet.send(&say(id)).await;
        let mut raw = receive_key(&listener).await;
        raw.send(could_not_check).await;
        bounced(&mut juliet, id).await;
        // Sent during the wait, it bounces the same way.
        let during = format!("{id}-wait");
        juliet.send(&say(&during)).await;
        bounced(&mut juliet, &during).await;
    }
    // After two failures the wait would be 4 s; after two errors it is still short.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    juliet.send(&say("again")).await;
    let mut raw = receive_key(&listener).await;
    raw.send("<db:result from='fake.lit' to='capulet.lit' type='valid'/>")
        .await;
    let got = raw.element().await;
    assert_eq!(got.attr("id"), Some("again"), "{}", show(&got));
    juliet.expect_nothing().await;
}

/// RFC 6120 §4.9.3.4: a stream error on an authenticated stream (ejabberd ends a stream idle
/// for a while with `connection-timeout`) closes it as a plain close would: what Juliet sends
/// next goes over a new stream. Before, the stream error was taken for a server that cannot
/// be reached, and her messages bounced with `remote-server-not-found` for the wait that
/// follows a failure (the wire audit against ejabberd).
#[tokio::test]
async fn a_stream_the_other_server_ends_with_an_error_is_opened_again() {
    let (listener, _capulet, mut juliet) = juliet_and_a_fake_server().await;
    juliet.send(&say("romeo@fake.lit", "before")).await;
    let mut raw = receive_key(&listener).await;
    raw.send("<db:result from='fake.lit' to='capulet.lit' type='valid'/>")
        .await;
    assert_eq!(raw.element().await.attr("id"), Some("before"));
    raw.send("<stream:error><connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>").await;
    // capulet.lit leaves the stream (closing its side) before Juliet says more.
    assert!(matches!(raw.event().await, Some(StreamEvent::End) | None));
    juliet.send(&say("romeo@fake.lit", "after")).await;
    let mut raw = receive_key(&listener).await;
    raw.send("<db:result from='fake.lit' to='capulet.lit' type='valid'/>")
        .await;
    let got = raw.element().await;
    let sent: Element = "<message xmlns='jabber:server' from='juliet@capulet.lit/balcony' to='romeo@fake.lit' type='chat' id='after'><body>after</body></message>"
        .parse()
        .unwrap();
    assert_eq!(got, sent, "{}", show(&got));
    juliet.expect_nothing().await;
}

/// capulet.lit (Juliet, Nurse, Tybalt) and montague.lit (Romeo), a real server, with
/// `adjust` applied to capulet.lit's configuration; capulet.lit reaches `fake.lit` at the
/// listener returned, which [`fake_server`] plays.
async fn capulet_montague_and_fake(
    adjust: impl FnOnce(&mut verona::config::Config) + Send + 'static,
) -> (tokio::net::TcpListener, TestServer, TestServer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (capulet, montague) = pair_with(move |config| {
        config.s2s.hosts.insert("fake.lit".into(), fake);
        adjust(config);
    })
    .await;
    for user in ["nurse", "tybalt"] {
        capulet.add_user(user, "pw").await;
    }
    (listener, capulet, montague)
}

/// Plays fake.lit, a server whose users are whatever it says: a stream to capulet.lit
/// authenticated by dialback, capulet.lit checking the key over the stream it opens to
/// fake.lit on `listener` (which fake.lit lets in too). Returns the stream fake.lit sends
/// on, and the one capulet.lit answers on.
async fn fake_server(
    capulet: &TestServer,
    listener: &tokio::net::TcpListener,
) -> (RawStream, RawStream) {
    let port = capulet.server.s2s_addrs()[0].port();
    let mut sending =
        open_secured(capulet.server.cert_path(), port, "fake.lit", "capulet.lit").await;
    sending
        .send("<db:result from='fake.lit' to='capulet.lit'>0123456789abcdef</db:result>")
        .await;
    let mut answers = receive_key(listener).await;
    answers
        .send("<db:result from='fake.lit' to='capulet.lit' type='valid'/>")
        .await;
    let verify = answers.element().await;
    assert!(verify.is("verify", DIALBACK), "{}", show(&verify));
    let id = verify.attr("id").unwrap();
    answers
        .send(&format!(
            "<db:verify from='fake.lit' to='capulet.lit' id='{id}' type='valid'/>"
        ))
        .await;
    let result = sending.element().await;
    assert!(result.is("result", DIALBACK), "{}", show(&result));
    assert_eq!(result.attr("type"), Some("valid"), "{}", show(&result));
    (sending, answers)
}

/// A chat message from `from` to `to` with `body` as its id and body.
fn chat_from(from: &str, to: &str, body: &str) -> String {
    format!(
        "<message from='{from}' to='{to}' type='chat' id='{body}'><body>{body}</body></message>"
    )
}

/// What a client sends: a chat message to `to` with `body` as its id and body.
fn say(to: &str, body: &str) -> String {
    format!(
        "<message xmlns='jabber:client' to='{to}' type='chat' id='{body}'><body>{body}</body></message>"
    )
}

/// The next message a client gets, skipping presence.
async fn next_message(client: &mut Client) -> Element {
    recv_until(client, |el| el.name() == "message").await
}

/// `body`'s message reached `client` from `from`.
async fn got_chat(client: &mut Client, from: &str, body: &str) {
    let got = next_message(client).await;
    assert_eq!(got.attr("from"), Some(from), "{}", show(&got));
    assert_eq!(got.attr("type"), Some("chat"), "{}", show(&got));
    assert_eq!(
        got.get_child("body", NS_CLIENT).map(|b| b.text()),
        Some(body.into())
    );
}

/// `user`'s session on `server`, available.
async fn available(server: &TestServer, user: &str) -> Client {
    let mut client = server.login(user, "pw", "here").await;
    client.send("<presence xmlns='jabber:client'/>").await;
    recv_until(&mut client, |el| el.name() == "presence").await;
    client
}

/// A conversation another server's user starts with a local account is no subscription of
/// the account's (`[pubsub] max_subscriptions_per_jid`): a server inventing senders cannot
/// fill the account's bound and lock it out of every new contact (federation audit: 10,500
/// made-up senders left an account unable to follow anyone or start a conversation, and
/// refused every new remote contact with `policy-violation`, for good).
#[tokio::test]
async fn invented_remote_senders_take_no_subscriptions_of_the_account() {
    let quota = 3;
    let (listener, capulet, montague) = capulet_montague_and_fake(move |config| {
        config.pubsub.max_subscriptions_per_jid = quota;
    })
    .await;
    let mut juliet = available(&capulet, "juliet").await;
    let (mut fake, _answers) = fake_server(&capulet, &listener).await;
    for n in 0..=quota {
        let (from, body) = (format!("evil{n}@fake.lit/f"), format!("flood {n}"));
        fake.send(&chat_from(&from, "juliet@capulet.lit", &body))
            .await;
        got_chat(&mut juliet, &from, &body).await;
    }
    // She can still follow a contact…
    let mut nurse = available(&capulet, "nurse").await;
    juliet
        .send("<presence xmlns='jabber:client' type='subscribe' to='nurse@capulet.lit'/>")
        .await;
    let asked = recv_until(&mut nurse, |el| el.attr("type") == Some("subscribe")).await;
    assert_eq!(
        asked.attr("from"),
        Some("juliet@capulet.lit"),
        "{}",
        show(&asked)
    );
    // …start a conversation with another account here…
    let mut tybalt = available(&capulet, "tybalt").await;
    juliet.send(&say("tybalt@capulet.lit", "news")).await;
    got_chat(&mut tybalt, "juliet@capulet.lit/here", "news").await;
    // …and a new contact of another server can start one with her.
    let mut romeo = available(&montague, "romeo").await;
    romeo.send(&say("juliet@capulet.lit", "wherefore")).await;
    got_chat(&mut juliet, "romeo@montague.lit/here", "wherefore").await;
    romeo.expect_nothing().await;
}

/// `[limits] remote_conversations_per_minute`: the conversations one other server's users
/// start are bounded by a rate of that server's, ten times it at once. Past it a new sender's
/// message bounces with `resource-constraint` and is not kept; conversations already made go
/// on, and another server's users start theirs.
#[tokio::test]
async fn conversations_another_server_starts_are_bounded_by_a_rate() {
    let (listener, capulet, montague) = capulet_montague_and_fake(|config| {
        config.limits.remote_conversations_per_minute = 1;
    })
    .await;
    let burst = 10;
    let mut juliet = available(&capulet, "juliet").await;
    let (mut fake, mut answers) = fake_server(&capulet, &listener).await;
    for n in 0..burst {
        let (from, body) = (format!("evil{n}@fake.lit/f"), format!("flood {n}"));
        fake.send(&chat_from(&from, "juliet@capulet.lit", &body))
            .await;
        got_chat(&mut juliet, &from, &body).await;
    }
    let one_more = format!("evil{burst}@fake.lit/f");
    fake.send(&chat_from(&one_more, "juliet@capulet.lit", "one more"))
        .await;
    let bounced = loop {
        let el = answers.element().await;
        if el.name() == "message" {
            break el;
        }
    };
    assert_eq!(bounced.attr("type"), Some("error"), "{}", show(&bounced));
    assert_eq!(bounced.attr("id"), Some("one more"));
    assert_eq!(bounced.attr("to"), Some(one_more.as_str()));
    assert_eq!(bounced.attr("from"), Some("juliet@capulet.lit"));
    let error = bounced.get_child("error", "jabber:server").unwrap();
    assert_eq!(error.attr("type"), Some("wait"), "{}", show(&bounced));
    let condition: Vec<&str> = error
        .children()
        .filter(|c| c.ns() == NS_STANZAS)
        .map(|c| c.name())
        .collect();
    assert_eq!(condition, ["resource-constraint"], "{}", show(&bounced));
    juliet.expect_nothing().await;
    // Nothing of it was kept: her archive holds the burst's messages only.
    let (archived, _) = mam_page(&mut juliet, None, "").await;
    let bodies: Vec<String> = archived
        .iter()
        .filter_map(|result| {
            let forwarded = result
                .get_child("result", "urn:xmpp:mam:2")?
                .get_child("forwarded", "urn:xmpp:forward:0")?;
            Some(
                forwarded
                    .get_child("message", NS_CLIENT)?
                    .get_child("body", NS_CLIENT)?
                    .text(),
            )
        })
        .collect();
    let expected: Vec<String> = (0..burst).map(|n| format!("flood {n}")).collect();
    assert_eq!(bodies, expected);
    // A conversation already made goes on…
    fake.send(&chat_from(
        "evil0@fake.lit/f",
        "juliet@capulet.lit",
        "still here",
    ))
    .await;
    got_chat(&mut juliet, "evil0@fake.lit/f", "still here").await;
    // …and another server's users have a rate of their own.
    let mut romeo = available(&montague, "romeo").await;
    romeo.send(&say("juliet@capulet.lit", "wherefore")).await;
    got_chat(&mut juliet, "romeo@montague.lit/here", "wherefore").await;
    romeo.expect_nothing().await;
}

/// XEP-0045 §7.8.2: an invitation a room sends to another server's user, which that server
/// bounces (here fake.lit: no such user), is told to the inviter: an error for the message
/// that invited, naming that invitation, with the other server's condition (not its text).
/// A bounce of no invitation of the room's, or from another account, tells nobody.
#[tokio::test]
async fn a_bounced_invitation_is_told_to_the_inviter() {
    const MUC: &str = "http://jabber.org/protocol/muc";
    const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    const GARDEN: &str = "garden@chat.capulet.lit";
    let (listener, capulet, mut juliet) = juliet_and_a_fake_server().await;
    juliet
        .send(&format!(
            "<presence xmlns='jabber:client' to='{GARDEN}/Juliet'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    recv_until(&mut juliet, |el| el.has_child("subject", NS_CLIENT)).await;
    ok(&juliet
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='instant' to='{GARDEN}'>\
               <query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await);
    juliet
        .send(&format!(
            "<message xmlns='jabber:client' to='{GARDEN}' id='inv'><x xmlns='{MUC_USER}'><invite to='romeo@fake.lit'/></x></message>"
        ))
        .await;
    // The room's stream to fake.lit, and the invitation on it.
    let mut outgoing = receive_key_of(&listener, "chat.capulet.lit").await;
    outgoing
        .send("<db:result from='fake.lit' to='chat.capulet.lit' type='valid'/>")
        .await;
    let invitation = outgoing.element().await;
    assert_eq!(
        invitation.attr("to"),
        Some("romeo@fake.lit"),
        "{}",
        show(&invitation)
    );
    let sent_as = invitation.attr("id").expect("the room's id").to_owned();

    // fake.lit's stream to the rooms, by dialback checked over the room's stream.
    let port = capulet.server.s2s_addrs()[0].port();
    let mut incoming = open_secured(
        capulet.server.cert_path(),
        port,
        "fake.lit",
        "chat.capulet.lit",
    )
    .await;
    incoming
        .send("<db:result from='fake.lit' to='chat.capulet.lit'>0123456789abcdef</db:result>")
        .await;
    let verify = outgoing.element().await;
    assert!(verify.is("verify", DIALBACK), "{}", show(&verify));
    let id = verify.attr("id").unwrap();
    outgoing
        .send(&format!(
            "<db:verify from='fake.lit' to='chat.capulet.lit' id='{id}' type='valid'/>"
        ))
        .await;
    let result = incoming.element().await;
    assert_eq!(result.attr("type"), Some("valid"), "{}", show(&result));

    // Each with its own condition, to tell which one the inviter hears of.
    let bounce = |from: &str, id: &str, condition: &str| {
        format!(
            "<message from='{from}' to='{GARDEN}' type='error' id='{id}'><x xmlns='{MUC_USER}'><invite from='juliet@capulet.lit'/></x>\
               <error type='cancel'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>who?</text></error></message>"
        )
    };
    incoming
        .send(&bounce("tybalt@fake.lit", &sent_as, "gone"))
        .await;
    incoming
        .send(&bounce("romeo@fake.lit", "other", "not-allowed"))
        .await;
    incoming
        .send(&bounce("romeo@fake.lit", &sent_as, "item-not-found"))
        .await;
    let told = recv_until(&mut juliet, |el| el.name() == "message").await;
    let expected: Element = format!(
        "<message xmlns='jabber:client' type='error' id='inv' from='{GARDEN}' to='juliet@capulet.lit/balcony'><x xmlns='{MUC_USER}'><invite to='romeo@fake.lit'/></x><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    )
    .parse()
    .unwrap();
    assert_eq!(told, expected, "{}", show(&told));
    // Once.
    incoming
        .send(&bounce("romeo@fake.lit", &sent_as, "forbidden"))
        .await;
    juliet.expect_nothing().await;
}

/// A conversation message another server writes from its user's bare JID (as servers speaking
/// for an account, gateways and rooms' invitations do) is one of the pair's conversation, as
/// from a full JID (RFC 6121 §8.5.2.1.1, XEP-0313, XEP-0359, XEP-0280): at once to the
/// available resources of non-negative priority, with no delay and with the account's archive
/// id when it is kept; a copy to a resource that enabled carbons and was not addressed; in the
/// archive. A chat state passes through unkept; a service's word (a PEP event) is no
/// conversation's, and is delivered at once as it came. Before, each went through the offline
/// queue: stamped delayed, with no archive id, not archived and not copied.
#[tokio::test]
async fn a_remote_accounts_bare_jid_message_is_in_its_conversation() {
    const SID: &str = "urn:xmpp:sid:0";
    const CARBONS: &str = "urn:xmpp:carbons:2";
    const FORWARD: &str = "urn:xmpp:forward:0";
    const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
    const RECEIPTS: &str = "urn:xmpp:receipts";
    let (listener, capulet, _montague) = capulet_montague_and_fake(|_| {}).await;
    let mut juliet = available(&capulet, "juliet").await;
    let mut phone = capulet.login("juliet", "pw", "phone").await;
    phone
        .send("<presence xmlns='jabber:client'><priority>-1</priority></presence>")
        .await;
    recv_until(&mut phone, |el| el.name() == "presence").await;
    let enabled = phone
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='cc'><enable xmlns='{CARBONS}'/></iq>"
        ))
        .await;
    ok(&enabled);
    let (mut fake, _answers) = fake_server(&capulet, &listener).await;
    let cases = [
        ("chat", "<body>chat</body>", "body", NS_CLIENT, true),
        ("normal", "<body>normal</body>", "body", NS_CLIENT, true),
        (
            "chat",
            "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
            "composing",
            CHATSTATES,
            false,
        ),
        (
            "normal",
            "<received xmlns='urn:xmpp:receipts' id='chat'/>",
            "received",
            RECEIPTS,
            true,
        ),
    ];
    for (n, (kind, payload, name, ns, kept)) in cases.into_iter().enumerate() {
        let id = format!("m{n}");
        fake.send(&format!(
            "<message from='romeo@fake.lit' to='juliet@capulet.lit' type='{kind}' id='{id}'>{payload}</message>"
        ))
        .await;
        let got = next_message(&mut juliet).await;
        assert_eq!(got.attr("from"), Some("romeo@fake.lit"), "{}", show(&got));
        assert_eq!(got.attr("type"), Some(kind), "{}", show(&got));
        assert_eq!(got.attr("id"), Some(id.as_str()), "{}", show(&got));
        if kept {
            assert_children(&got, &[(name, ns), ("stanza-id", SID)]);
            let sid = got.get_child("stanza-id", SID).unwrap();
            assert_eq!(sid.attr("by"), Some("juliet@capulet.lit"), "{}", show(&got));
        } else {
            assert_children(&got, &[(name, ns)]);
        }
        // The resource of negative priority was not addressed: it has its copy.
        let copy = next_message(&mut phone).await;
        let copied = copy
            .get_child("received", CARBONS)
            .and_then(|received| received.get_child("forwarded", FORWARD))
            .and_then(|forwarded| forwarded.get_child("message", NS_CLIENT))
            .unwrap_or_else(|| panic!("{}", show(&copy)));
        assert_eq!(*copied, got);
    }
    let event = "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='i'/></items></event>";
    fake.send(&format!(
        "<message from='romeo@fake.lit' to='juliet@capulet.lit' id='e'>{event}</message>"
    ))
    .await;
    let got = next_message(&mut juliet).await;
    let sent: Element = format!(
        "<message xmlns='{NS_CLIENT}' from='romeo@fake.lit' to='juliet@capulet.lit' id='e'>{event}</message>"
    )
    .parse()
    .unwrap();
    assert_eq!(got, sent, "{}", show(&got));
    juliet.expect_nothing().await;
    phone.expect_nothing().await;
    let (archived, fin) = mam_page(&mut juliet, None, "").await;
    ok(&fin);
    let ids: Vec<&str> = archived
        .iter()
        .filter_map(|result| {
            let message = result
                .get_child("result", "urn:xmpp:mam:2")?
                .get_child("forwarded", FORWARD)?
                .get_child("message", NS_CLIENT)?;
            assert_eq!(message.attr("from"), Some("romeo@fake.lit"));
            message.attr("id")
        })
        .collect();
    assert_eq!(ids, ["m0", "m1", "m3"]);
}

/// Another server's user asking from its bare JID, or the server from its domain, reads an
/// account's vCard (XEP-0054 §3.2) as from a full JID; before, it was refused
/// `service-unavailable` (sixteenth review).
#[tokio::test]
async fn a_vcard_is_answered_to_a_remote_bare_jid() {
    let (listener, capulet, _montague) = capulet_montague_and_fake(|_| {}).await;
    let mut juliet = capulet.login("juliet", "pw", "balcony").await;
    let set = juliet
        .request("<iq xmlns='jabber:client' type='set' id='v0'><vCard xmlns='vcard-temp'><FN>Juliet</FN></vCard></iq>")
        .await;
    ok(&set);
    let (mut fake, mut answers) = fake_server(&capulet, &listener).await;
    for (id, asker) in [("v1", "romeo@fake.lit"), ("v2", "fake.lit")] {
        fake.send(&format!(
            "<iq from='{asker}' to='juliet@capulet.lit' type='get' id='{id}'><vCard xmlns='vcard-temp'/></iq>"
        ))
        .await;
        let card = loop {
            let el = answers.element().await;
            if el.name() == "iq" {
                break el;
            }
        };
        assert_eq!(card.attr("id"), Some(id), "{}", show(&card));
        assert_eq!(card.attr("type"), Some("result"), "{}", show(&card));
        assert_eq!(card.attr("to"), Some(asker));
        let name = card
            .children()
            .find(|c| c.name() == "vCard")
            .and_then(|v| v.children().find(|c| c.name() == "FN"))
            .map(Element::text);
        assert_eq!(name.as_deref(), Some("Juliet"), "{}", show(&card));
    }
}

/// Another server's sender written with its domain's final dot (RFC 7622 §3.2: the same JID)
/// reaches users written as the domain the stream checked, as do its recipients; before,
/// `romeo@fake.lit./r` and `fake.lit./r` were delivered as written (a contact the user does
/// not know), and `romeo@fake.lit.` ended the stream with `invalid-from` (identity audit F2).
#[tokio::test]
async fn another_servers_senders_are_written_as_their_domain_is() {
    let (listener, capulet, _montague) = capulet_montague_and_fake(|_| {}).await;
    let mut juliet = available(&capulet, "juliet").await;
    let (mut fake, _answers) = fake_server(&capulet, &listener).await;
    for (n, (from, written)) in [
        ("romeo@fake.lit./r", "romeo@fake.lit/r"),
        ("fake.lit./r", "fake.lit/r"),
        ("romeo@fake.lit.", "romeo@fake.lit"),
        ("Romeo@FAKE.lit./r", "romeo@fake.lit/r"),
    ]
    .into_iter()
    .enumerate()
    {
        fake.send(&format!(
            "<message from='{from}' to='juliet@capulet.lit./here' type='headline' id='h{n}'><body>hark</body></message>"
        ))
        .await;
        let got = next_message(&mut juliet).await;
        let sent: Element = format!(
            "<message xmlns='{NS_CLIENT}' from='{written}' to='juliet@capulet.lit/here' type='headline' id='h{n}'><body>hark</body></message>"
        )
        .parse()
        .unwrap();
        assert_eq!(got, sent, "{}", show(&got));
    }
    juliet.expect_nothing().await;
}

/// RFC 6121 §4.5.2 and XEP-0045 §7.14: a server told to stop (SIGTERM) ends its clients'
/// sessions first and writes what that sends other servers before it closes its streams to
/// them: Romeo on fake.lit, who follows Juliet, and the room on conference.fake.lit she is
/// in, hear her leave. The stream to the room's domain is still waiting for its dialback
/// answer when the server is told to stop: it is set up (the room's server checks the key
/// with capulet.lit, which still takes streams from other servers for that) and carries her
/// entering and her leaving. Before, every stream closed at once, the streams to other
/// servers before the sessions' unavailable presence reached them: on Prosody and ejabberd
/// she stayed online for ever, and in the room (the wire audit against both).
#[tokio::test]
async fn a_stopping_server_tells_other_servers_its_users_left() {
    const ROOM: &str = "hall@conference.fake.lit";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let capulet = TestServer::start_with(move |config| {
        config.domain = "capulet.lit".into();
        config.s2s.listen = vec!["127.0.0.1:0".parse().unwrap()];
        for remote in ["fake.lit", "conference.fake.lit"] {
            config.s2s.hosts.insert(remote.into(), fake.clone());
        }
    })
    .await;
    capulet.add_user("juliet", "pw").await;
    let mut juliet = capulet.login_available("juliet", "pw", "balcony").await;
    let (mut sending, mut answers) = fake_server(&capulet, &listener).await;
    sending
        .send("<presence from='romeo@fake.lit' to='juliet@capulet.lit' type='subscribe'/>")
        .await;
    recv_until(&mut juliet, |el| el.attr("type") == Some("subscribe")).await;
    juliet
        .send("<presence xmlns='jabber:client' type='subscribed' to='romeo@fake.lit'/>")
        .await;
    loop {
        let el = answers.element().await;
        if el.name() == "presence" && el.attr("type").is_none() {
            assert_eq!(el.attr("from"), Some("juliet@capulet.lit/balcony"));
            break;
        }
    }
    const JOIN: &str = "<x xmlns='http://jabber.org/protocol/muc'/>";
    juliet
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/Juliet'>{JOIN}</presence>"
        ))
        .await;
    let (mut room, key) =
        receive_key_between(&listener, "capulet.lit", "conference.fake.lit").await;

    let (cert, port) = (
        capulet.server.cert_path().to_owned(),
        capulet.server.s2s_addrs()[0].port(),
    );
    let TestServer { server, dir: _dir } = capulet;
    let stopping = tokio::spawn(server.shutdown());
    loop {
        match juliet.next_event().await {
            Some(StreamEvent::Stanza(el)) if el.is("error", NS_STREAMS) => {
                assert_eq!(stream_error(&el).as_deref(), Some("system-shutdown"));
                break;
            }
            Some(_) => {}
            None => panic!("Juliet's stream ended without an error"),
        }
    }
    let mut verifying = open_secured(&cert, port, "conference.fake.lit", "capulet.lit").await;
    verifying
        .send(&format!(
            "<db:verify from='conference.fake.lit' to='capulet.lit' id='s1'>{key}</db:verify>"
        ))
        .await;
    let verified = verifying.element().await;
    assert_eq!(verified.attr("type"), Some("valid"), "{}", show(&verified));
    room.send("<db:result from='conference.fake.lit' to='capulet.lit' type='valid'/>")
        .await;
    let stanza = |xml: String| -> Element { xml.parse().unwrap() };
    let gone = |to: &str| {
        stanza(format!(
            "<presence xmlns='jabber:server' from='juliet@capulet.lit/balcony' to='{to}' type='unavailable'/>"
        ))
    };
    assert_eq!(
        until_closed(&mut room).await,
        [
            stanza(format!(
                "<presence xmlns='jabber:server' from='juliet@capulet.lit/balcony' to='{ROOM}/Juliet'>{JOIN}</presence>"
            )),
            gone(&format!("{ROOM}/Juliet")),
        ]
    );
    assert_eq!(until_closed(&mut answers).await, [gone("romeo@fake.lit")]);
    stopping.await.unwrap();
}
