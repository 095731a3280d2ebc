//! The scenarios as library calls against a real Verona started in this process (so the
//! "server" sampled from /proc is this test process).

use std::time::Duration;

use verona::{Config, RunningServer};
use verona_bench::client::{Client, Mechanism, Target, within};
use verona_bench::scenarios::Setup;
use verona_bench::scenarios::chat::{self, ChatOptions, Receivers};
use verona_bench::scenarios::fanout::{self, FanoutOptions};
use verona_bench::scenarios::idle::{self, IdleOptions};
use verona_bench::scenarios::login::{self, LoginOptions};
use verona_bench::scenarios::presence::{self, PresenceOptions};
use verona_bench::scenarios::soak::{self, Mix, Shares, SoakOptions};
use verona_bench::stats::ServerProbe;

const OP_TIMEOUT: Duration = Duration::from_secs(20);

/// A server on a free loopback port over the data directory `dir`.
async fn serve(dir: &std::path::Path) -> RunningServer {
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    config.c2s.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.c2s.direct_tls_listen = vec![];
    config.c2s.websocket_tls_listen = vec![];
    RunningServer::start(config).await.unwrap()
}

/// A server on a free loopback port with accounts bench0..bench{accounts-1}, password pw{n}.
async fn start(accounts: usize) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path()).await;
    for n in 0..accounts {
        let jid = server
            .accounts()
            .parse_jid(&format!("bench{n}@localhost"))
            .unwrap();
        server
            .accounts()
            .create(&jid, &format!("pw{n}"))
            .await
            .unwrap();
    }
    (server, dir)
}

fn setup(server: &RunningServer, mechanism: Mechanism, accounts: usize) -> Setup {
    Setup {
        target: Target {
            addr: server.c2s_addrs()[0],
            domain: "localhost".into(),
            tls: true,
            mechanism,
        },
        user_pattern: "bench{n}".into(),
        password_pattern: "pw{n}".into(),
        accounts,
        op_timeout: OP_TIMEOUT,
    }
}

fn this_process() -> ServerProbe {
    ServerProbe(Some(std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_over_starttls_and_scram_sha_256() {
    let (server, _dir) = start(3).await;
    let setup = setup(&server, Mechanism::ScramSha256, 3);
    let options = LoginOptions {
        clients: 20,
        in_flight: 4,
        keep: false,
    };
    let report = login::run(&setup, &options, this_process()).await;
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    assert_eq!(report.ok, 20);
    assert_eq!(
        (report.clients, report.in_flight, report.params.accounts),
        (20, 4, 3)
    );
    assert_eq!(report.params.mechanism, "SCRAM-SHA-256");
    assert!(report.params.tls);
    assert!(report.logins_per_s > 0.0);
    let latency = report.latency.as_ref().expect("latencies");
    assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    assert!(report.server_cpu_us_per_login.is_some());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenario"], "login");
    assert_eq!(json["ok"], 20);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_sessions_with_scram_sha_1_and_plain() {
    let (server, _dir) = start(2).await;
    for mechanism in [Mechanism::ScramSha1, Mechanism::Plain] {
        let options = LoginOptions {
            clients: 6,
            in_flight: 6,
            keep: true,
        };
        let report = login::run(&setup(&server, mechanism, 2), &options, ServerProbe(None)).await;
        assert_eq!(
            (report.ok, report.errors.total),
            (6, 0),
            "{:?}",
            report.errors
        );
        assert_eq!(report.server_cpu_us_per_login, None);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_count_as_auth_errors() {
    let (server, _dir) = start(1).await;
    let mut setup = setup(&server, Mechanism::ScramSha256, 1);
    setup.password_pattern = "wrong{n}".into();
    let options = LoginOptions {
        clients: 2,
        in_flight: 2,
        keep: false,
    };
    let report = login::run(&setup, &options, ServerProbe(None)).await;
    assert_eq!(report.ok, 0);
    assert_eq!(report.errors.total, 2);
    assert_eq!(report.errors.by_stage["auth"], 2);
    let first = report.errors.first.unwrap();
    assert!(first.contains("not-authorized"), "{first}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_held_and_measured() {
    let (server, _dir) = start(2).await;
    let options = IdleOptions {
        clients: 10,
        in_flight: 5,
        hold: Duration::from_millis(200),
        settle: Duration::ZERO,
    };
    let report = idle::run(
        &setup(&server, Mechanism::ScramSha256, 2),
        &options,
        this_process(),
    )
    .await;
    assert_eq!(
        (report.connected, report.errors.total, report.lost),
        (10, 0, 0)
    );
    assert!(report.server_rss_per_connection_kib.is_some());
    assert!(report.server_idle_cpu_cores.is_some());
    server.shutdown().await;
}

/// A small fan-out run on `node` of the test server's pubsub service.
fn fanout_options(node: &str) -> FanoutOptions {
    FanoutOptions {
        subscribers: 5,
        publishes: 20,
        in_flight: 4,
        settle: false,
        login_in_flight: 5,
        payload_bytes: 300,
        service: "pubsub.localhost".into(),
        node: node.into(),
        persist: true,
        max_items: 10,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_notification_exactly_once() {
    let (server, _dir) = start(3).await;
    let options = fanout_options("fanout-test");
    let setup = setup(&server, Mechanism::ScramSha256, 3);
    let report = fanout::run(&setup, &options, this_process()).await;
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    assert_eq!(
        (report.subscribed, report.published, report.expected),
        (5, 20, 100)
    );
    assert_eq!(
        (report.received, report.lost, report.duplicated),
        (100, 0, 0)
    );
    assert!(report.none_lost && report.ok());
    let latency = report.latency.as_ref().expect("latencies");
    assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    assert!(report.publish_rtt.is_some());
    assert!(report.notifications_per_s > 0.0);
    assert!(report.server_cpu_us_per_notification.is_some());
    assert!(report.table().contains("none lost"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenario"], "fanout");
    assert_eq!(json["none_lost"], true);
    assert!(report.last_latency.is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_one_at_a_time_times_each_item_to_its_last_subscriber() {
    let (server, _dir) = start(3).await;
    let options = FanoutOptions {
        subscribers: 4,
        publishes: 12,
        in_flight: 1,
        settle: true,
        persist: false,
        ..fanout_options("settle-test")
    };
    let setup = setup(&server, Mechanism::ScramSha256, 3);
    let report = fanout::run(&setup, &options, this_process()).await;
    assert!(report.ok(), "{:?}", report.errors);
    assert_eq!((report.received, report.reordered), (48, 0));
    let lasts = report.last_latency.as_ref().expect("one per item");
    let all = report.latency.as_ref().expect("latencies");
    // The last arrival of each item is the slowest of its notifications.
    assert_eq!(lasts.max_ms, all.max_ms);
    assert!(report.table().contains("one at a time"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_delivers_every_message_exactly_once() {
    // Fewer accounts than clients: pairs also share accounts, as in the benchmark.
    let (server, _dir) = start(3).await;
    let options = ChatOptions {
        pairs: 4,
        messages: 30,
        window: 5,
        login_in_flight: 8,
        receivers: None,
    };
    let report = chat::run(
        &setup(&server, Mechanism::Plain, 3),
        &options,
        this_process(),
    )
    .await;
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    assert_eq!((report.connected_pairs, report.expected), (4, 120));
    assert_eq!(
        (report.received, report.lost, report.duplicated),
        (120, 0, 0)
    );
    assert!(report.ok());
    let latency = report.latency.as_ref().expect("latencies");
    assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    assert!(report.messages_per_s > 0.0);
    assert!(report.server_cpu_us_per_message.is_some());
    assert!(report.table().contains("none lost"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenario"], "chat");
    assert_eq!(json["window"], 5);
    server.shutdown().await;
}

/// Runs the presence scenario with `contacts` contacts (the first `native` of them native)
/// making 10 changes, and checks what holds for any mix: every change reached every contact
/// once, with latencies, rates and CPU reported.
async fn presence_run(
    contacts: usize,
    native: usize,
) -> (presence::PresenceReport, RunningServer, tempfile::TempDir) {
    let accounts = contacts + 1;
    let (server, dir) = start(accounts).await;
    let options = PresenceOptions {
        contacts,
        native,
        changes: 10,
        in_flight: 3,
        login_in_flight: accounts,
    };
    let report = presence::run(
        &setup(&server, Mechanism::ScramSha256, accounts),
        &options,
        this_process(),
    )
    .await;
    let expected = contacts * 10;
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    assert_eq!(
        (report.connected, report.subscribed, report.expected),
        (contacts, contacts, expected)
    );
    assert_eq!(
        (report.received, report.lost, report.duplicated),
        (expected, 0, 0)
    );
    assert!(report.ok());
    let latency = report.latency.as_ref().expect("latencies");
    assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    assert!(report.deliveries_per_s > 0.0);
    assert!(report.server_cpu_us_per_delivery.is_some());
    assert!(report.table().contains("none lost"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenario"], "presence");
    assert_eq!(json["native"], native);
    (report, server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_every_subscribed_contact_exactly_once() {
    let (report, server, _dir) = presence_run(5, 0).await;
    assert_eq!(
        (
            report.classic_contacts.received,
            report.classic_contacts.as_events
        ),
        (50, 0)
    );
    assert_eq!(report.native_contacts.connected, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_native_contacts_as_pubsub_events() {
    let (report, server, _dir) = presence_run(6, 3).await;
    for kind in [&report.native_contacts, &report.classic_contacts] {
        assert_eq!(
            (
                kind.connected,
                kind.subscribed,
                kind.expected,
                kind.received
            ),
            (3, 3, 30, 30),
            "{kind:?}"
        );
    }
    // Each kind gets the rendering it asked for.
    assert_eq!(report.native_contacts.as_events, 30);
    assert_eq!(report.classic_contacts.as_events, 0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["native_contacts"]["as_events"], 30);
    assert!(
        report
            .table()
            .contains("30 of 30 received, 30 as pubsub events")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_exchanges_stanzas_once_bound() {
    let (server, _dir) = start(1).await;
    let target = setup(&server, Mechanism::ScramSha256, 1).target;
    let mut client = within(OP_TIMEOUT, Client::login(&target, "bench0", "pw0", "phone"))
        .await
        .unwrap();
    assert_eq!(client.jid, "bench0@localhost/phone");
    client
        .send(b"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    let reply = within(OP_TIMEOUT, client.recv()).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"));
    assert_eq!(reply.attr("id"), Some("p1"));
    within(OP_TIMEOUT, client.close()).await.unwrap();
    server.shutdown().await;
}

/// `populate` writes the server's own rows: a server started on the directory lets the
/// accounts log in, and their rosters are the graph that was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_writes_a_database_the_server_serves() {
    use verona_bench::populate::{self, PopulateOptions};
    let dir = tempfile::tempdir().unwrap();
    let options = PopulateOptions {
        data_dir: dir.path().to_owned(),
        domain: "localhost".into(),
        user_pattern: "bench{n}".into(),
        password_pattern: "pw{n}".into(),
        accounts: 30,
        contacts: 4,
        annotate_every: 2,
        passwords: 3,
        iterations: 4096,
        seed: 5,
    };
    let report = populate::run(options.clone()).await.unwrap();
    assert_eq!(
        (report.accounts, report.subscriptions, report.annotations),
        (30, 120, 60)
    );
    // Writing over an existing database is refused.
    assert!(populate::run(options).await.is_err());

    let server = serve(dir.path()).await;
    let target = setup(&server, Mechanism::ScramSha256, 30).target;
    let timeout = OP_TIMEOUT;
    // Account 0 is annotated: the names it gives its followers are in its roster.
    let login = Client::login(&target, "bench0", "pw0", "scale");
    let mut client = within(timeout, login).await.unwrap();
    client
        .send(b"<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await
        .unwrap();
    let roster = within(timeout, client.recv()).await.unwrap();
    let query = roster.get_child("query", "jabber:iq:roster").unwrap();
    let mut items: Vec<(String, String, Option<String>)> = query
        .children()
        .map(|i| {
            (
                i.attr("jid").unwrap().to_owned(),
                i.attr("subscription").unwrap().to_owned(),
                i.attr("name").map(str::to_owned),
            )
        })
        .collect();
    items.sort();
    let from: Vec<_> = items.iter().filter(|i| i.1 != "to").collect();
    assert!(from.len() >= 4, "{items:?}");
    for (jid, subscription, name) in &from {
        assert!(
            subscription == "from" || subscription == "both",
            "{items:?}"
        );
        assert_eq!(name.as_deref(), jid.strip_suffix("@localhost"), "{items:?}");
    }
    client.close().await.unwrap();
    // Accounts past --passwords exist but nobody knows their password.
    let unknown = Client::login(&target, "bench5", "pw5", "scale");
    assert!(within(timeout, unknown).await.is_err());
    server.shutdown().await;
}

/// A soak in miniature against a server with its default limits: every kind runs, the good
/// clients keep their sessions and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_mixes_every_kind() {
    let shares = Shares {
        active: 8.0,
        garbage: 10.0,
        slow: 6.0,
        stalled: 8.0,
        flood: 2.0,
        huge: 8.0,
    };
    let mix = Mix::of(50, &shares).unwrap();
    assert_eq!((mix.idle, mix.active, mix.accounts()), (29, 4, 37));
    let (server, _dir) = start(mix.accounts()).await;
    let options = SoakOptions {
        connections: 50,
        shares,
        quiet_secs: 2,
        secs: 4,
        interval_ms: 200,
        login_in_flight: 8,
        per_good_address: 8,
        attack_addresses: 2,
        max_items: 1000,
        sample_secs: 1,
        slow_read_bytes: 256,
        slow_hold_secs: 2,
    };
    let setup = setup(&server, Mechanism::ScramSha256, mix.accounts());
    let report = soak::run(&setup, &options, mix, this_process()).await;
    let summary = report.table();
    assert_eq!(report.errors.total, 0, "{summary}");
    assert_eq!(report.good_disconnected, 0, "{summary}");
    assert!(report.data_intact && report.data.checked > 0, "{summary}");
    assert_eq!(report.data.checked, report.data.acknowledged, "{summary}");
    assert!(report.data.messages_sent > 0, "{summary}");
    assert!(report.quiet.publish.is_some() && report.soak.ping.is_some());
    let kinds = &report.kinds;
    assert_eq!(kinds["good_idle"].logged_in, 29, "{summary}");
    for kind in [
        "garbage",
        "slow_reader",
        "stalled_writer",
        "flood",
        "huge_stanza",
    ] {
        assert!(kinds[kind].attempts > 0, "{kind}: {summary}");
    }
    assert!(kinds["garbage"].ended_by_server() > 0, "{summary}");
    assert!(
        kinds["huge_stanza"]
            .ended_by_server
            .contains_key("policy-violation"),
        "{summary}"
    );
    assert!(kinds["flood"].bytes_sent > 0, "{summary}");
    let server_report = report.server.as_ref().expect("samples of this process");
    assert!(server_report.rss_max_kib >= server_report.rss_min_kib);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenario"], "soak");
    assert_eq!(json["mix"]["flood"], 1);
    server.shutdown().await;
}

/// Two federating servers, `localhost` and `montague.localhost`, with accounts bench{n}.
async fn federated_pair(accounts: usize) -> [(RunningServer, tempfile::TempDir); 2] {
    // Below the kernel's ephemeral range (from 32768 by default), so that no client socket
    // of a test running alongside takes the port before the server binds it.
    let free = || {
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new();
        (0u64..)
            .map(|n| 20_000 + (random.hash_one(n) % 12_000) as u16)
            .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
            .expect("a free port below 32000")
    };
    let ports = [free(), free()];
    let domains = ["localhost", "montague.localhost"];
    let mut servers = Vec::new();
    for side in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            domain: domains[side].into(),
            ..Config::default()
        };
        config.c2s.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.c2s.direct_tls_listen = vec![];
        config.c2s.websocket_tls_listen = vec![];
        config.s2s.listen = vec![format!("127.0.0.1:{}", ports[side]).parse().unwrap()];
        config.s2s.hosts.insert(
            domains[1 - side].into(),
            format!("127.0.0.1:{}", ports[1 - side]),
        );
        let server = RunningServer::start(config).await.unwrap();
        for n in 0..accounts {
            let jid = server
                .accounts()
                .parse_jid(&format!("bench{n}@{}", domains[side]))
                .unwrap();
            server
                .accounts()
                .create(&jid, &format!("pw{n}"))
                .await
                .unwrap();
        }
        servers.push((server, dir));
    }
    let montague = servers.pop().expect("two servers");
    let capulet = servers.pop().expect("two servers");
    [capulet, montague]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_across_federated_servers_delivers_every_message() {
    let [(capulet, _a), (montague, _b)] = federated_pair(4).await;
    let options = ChatOptions {
        pairs: 4,
        messages: 25,
        window: 5,
        login_in_flight: 8,
        receivers: Some(Receivers {
            addr: montague.c2s_addrs()[0],
            domain: "montague.localhost".into(),
            server_pid: None,
        }),
    };
    let report = chat::run(
        &setup(&capulet, Mechanism::Plain, 4),
        &options,
        this_process(),
    )
    .await;
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    assert_eq!((report.connected_pairs, report.expected), (4, 100));
    assert_eq!(
        (
            report.received,
            report.lost,
            report.duplicated,
            report.reordered
        ),
        (100, 0, 0, 0)
    );
    assert!(report.ok());
    capulet.shutdown().await;
    montague.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_timed_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let options = verona_bench::commits::CommitsOptions {
        data_dir: dir.path().to_owned(),
        writers: 3,
        commits: 20,
    };
    let report = verona_bench::commits::run(options).await.unwrap();
    assert_eq!((report.writers, report.commits), (3, 60));
    assert!(report.latency.is_some_and(|l| l.p50_ms <= l.max_ms));
    // The database is kept: running again over it would measure a different store.
    let again = verona_bench::commits::CommitsOptions {
        data_dir: dir.path().to_owned(),
        writers: 1,
        commits: 1,
    };
    assert!(verona_bench::commits::run(again).await.is_err());
}
