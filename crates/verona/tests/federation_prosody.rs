//! Federation with another implementation: Debian's Prosody as the remote domain
//! `prosody.lit`, on loopback beside Verona's `verona.lit`, each finding the other at a fixed
//! address (Verona through `[s2s.hosts]`, Prosody through the test module in
//! `tests/prosody/`). STARTTLS and XEP-0220 dialback both ways; messages, iqs and a presence
//! subscription cross. `.ci/run` installs Prosody; without it the test says so and passes.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use minidom::Element;
use verona_auth::ScramHash;

const CLIENT: &str = "jabber:client";

/// A Prosody process, killed when dropped.
struct Prosody {
    child: Child,
    c2s: u16,
    dir: tempfile::TempDir,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Prosody's log:\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prosody {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }

    fn cert(&self) -> std::path::PathBuf {
        self.dir.path().join("prosody.crt")
    }

    async fn login(&self, user: &str) -> Client {
        let mut client = Client::connect(([127, 0, 0, 1], self.c2s).into()).await;
        client.domain = "prosody.lit".into();
        client.open().await;
        client.starttls(&self.cert()).await;
        client.open().await;
        client
            .auth_scram(ScramHash::Sha1, user, "pw")
            .await
            .unwrap_or_else(|e| panic!("logging in to Prosody: {e:?}\n{}", self.log()));
        client.open().await;
        client.bind(Some("home")).await;
        client
    }
}

/// Whether `prosody` is on the PATH (running it to ask would start a server).
fn installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("prosody").is_file()))
}

/// Starts Prosody for `prosody.lit`, federating with Verona's domains at `verona_s2s`: with
/// a self-signed certificate and dialback, or with `authority`'s certificate, trusting only
/// certificates `authority` signed (`s2s_secure_auth`). `None` when another process held
/// one of its ports (free when picked, taken before Prosody bound it): the caller picks again.
async fn start_prosody(
    verona_s2s: u16,
    s2s: u16,
    authority: Option<&Authority>,
) -> Option<Prosody> {
    let dir = tempfile::tempdir().unwrap();
    let c2s = free_port();
    let trust = match authority {
        Some(authority) => {
            let (cert, key) = authority.issue(dir.path(), "prosody.lit");
            std::fs::rename(cert, dir.path().join("prosody.crt")).unwrap();
            std::fs::rename(key, dir.path().join("prosody.key")).unwrap();
            std::fs::write(dir.path().join("ca.pem"), &authority.pem).unwrap();
            format!(
                "s2s_secure_auth = true\nssl = {{ cafile = \"{}/ca.pem\" }}",
                dir.path().display()
            )
        }
        None => {
            let certified =
                rcgen::generate_simple_self_signed(vec!["prosody.lit".to_owned()]).unwrap();
            std::fs::write(dir.path().join("prosody.crt"), certified.cert.pem()).unwrap();
            std::fs::write(
                dir.path().join("prosody.key"),
                certified.signing_key.serialize_pem(),
            )
            .unwrap();
            "s2s_secure_auth = false".to_owned()
        }
    };
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/prosody");
    let d = dir.path().display();
    let routes: Vec<String> = ["verona.lit", "pubsub.verona.lit", "chat.verona.lit"]
        .iter()
        .map(|domain| format!("[\"{domain}\"] = {{ \"127.0.0.1\", {verona_s2s} }}"))
        .collect();
    let config = format!(
        r#"-- Written by crates/verona/tests/federation_prosody.rs
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
plugin_paths = {{ "{plugins}" }}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{d}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_require_encryption = true
s2s_require_encryption = true
{trust}
authentication = "internal_hashed"
network_settings = {{ nagle = false }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "pep"; "blocklist"; "verona_test_routes" }}
verona_test_routes = {{ {routes} }}
VirtualHost "prosody.lit"
ssl = {{ certificate = "{d}/prosody.crt"; key = "{d}/prosody.key" }}
"#,
        plugins = plugins.display(),
        routes = routes.join(", "),
    );
    let path = dir.path().join("prosody.cfg.lua");
    std::fs::write(&path, config).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    for user in ["romeo", "benvolio"] {
        let status = Command::new("prosodyctl")
            .arg("--config")
            .arg(&path)
            .args(["register", user, "prosody.lit", "pw"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "prosodyctl register {user}");
    }
    let child = Command::new("prosody")
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prosody = Prosody { child, c2s, dir };
    // Prosody opens every port before it serves any, so once c2s answers the log tells
    // whether s2s was opened too.
    let port_taken = |prosody: &Prosody| prosody.log().contains("Failed to open server port");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", c2s))
            .await
            .is_ok()
        {
            return (!port_taken(&prosody)).then_some(prosody);
        }
        if port_taken(&prosody) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Prosody did not start:\n{}", prosody.log());
}

/// Verona and Prosody federating on freshly picked ports, picked again if a port was taken
/// by another process between the pick and Prosody's bind.
async fn start_pair(
    certified: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
    authority: Option<&Authority>,
) -> (TestServer, Prosody) {
    for _ in 0..5 {
        let (verona_s2s, prosody_s2s) = (free_port(), free_port());
        let verona = verona(verona_s2s, prosody_s2s, certified.clone()).await;
        if let Some(prosody) = start_prosody(verona_s2s, prosody_s2s, authority).await {
            return (verona, prosody);
        }
    }
    panic!("Prosody found its ports taken five times");
}

/// Verona for `verona.lit`; with `certified` (certificate, key, authority file) it only
/// federates with servers whose certificates that authority signed.
async fn verona(
    own: u16,
    prosody_s2s: u16,
    certified: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
) -> TestServer {
    let server = TestServer::start_with(|config| {
        config.domain = "verona.lit".into();
        if let Some((cert, key, ca_file)) = certified {
            config.tls.cert = Some(cert);
            config.tls.key = Some(key);
            config.s2s.ca_file = Some(ca_file);
            config.s2s.require_valid_cert = true;
        }
        config.s2s.listen = vec![format!("127.0.0.1:{own}").parse().unwrap()];
        config
            .s2s
            .hosts
            .insert("prosody.lit".into(), format!("127.0.0.1:{prosody_s2s}"));
    })
    .await;
    server.add_user("juliet", "pw").await;
    server
}

async fn online(client: &mut Client) {
    client.send("<presence xmlns='jabber:client'/>").await;
}

/// The next stanza named `name` within the client's wait, skipping others.
async fn next(client: &mut Client, name: &str, prosody: &Prosody) -> Element {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let el = client.recv().await;
            if el.name() == name {
                return el;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no <{name}/> arrived; Prosody's log:\n{}", prosody.log()))
}

fn body(el: &Element) -> Option<String> {
    el.get_child("body", CLIENT).map(|b| b.text())
}

#[tokio::test]
async fn verona_and_prosody_federate() {
    if !installed() {
        eprintln!("prosody is not installed (.ci/run installs it): skipped");
        return;
    }
    let (verona, prosody) = start_pair(None, None).await;
    let mut juliet = verona.login("juliet", "pw", "balcony").await;
    online(&mut juliet).await;
    let mut romeo = prosody.login("romeo").await;
    online(&mut romeo).await;

    // Verona → Prosody: Verona's outgoing stream, Prosody dialing back to verify it.
    juliet
        .send("<message xmlns='jabber:client' type='chat' to='romeo@prosody.lit' id='v1'><body>Wherefore art thou?</body></message>")
        .await;
    let got = next(&mut romeo, "message", &prosody).await;
    assert_eq!(got.attr("from"), Some("juliet@verona.lit/balcony"));
    assert_eq!(got.attr("id"), Some("v1"));
    assert_eq!(body(&got).as_deref(), Some("Wherefore art thou?"));

    // Prosody → Verona: Prosody's outgoing stream, Verona dialing back.
    romeo
        .send("<message xmlns='jabber:client' type='chat' to='juliet@verona.lit' id='p1'><body>Here, by the orchard wall</body></message>")
        .await;
    let got = next(&mut juliet, "message", &prosody).await;
    assert_eq!(got.attr("from"), Some("romeo@prosody.lit/home"));
    assert_eq!(body(&got).as_deref(), Some("Here, by the orchard wall"));

    // An iq each way, answered by the other server.
    let pong = juliet
        .request("<iq xmlns='jabber:client' type='get' to='prosody.lit' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"), "{}", show(&pong));
    let pong = romeo
        .request("<iq xmlns='jabber:client' type='get' to='verona.lit' id='ping2'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"), "{}", show(&pong));

    // XEP-0207 across domains: Romeo (Prosody) asks to follow Juliet's presence node; the
    // request waits for her; her approval and her presence reach him.
    romeo
        .send("<presence xmlns='jabber:client' type='subscribe' to='juliet@verona.lit'/>")
        .await;
    let request = next(&mut juliet, "presence", &prosody).await;
    assert_eq!(
        request.attr("type"),
        Some("subscribe"),
        "{}",
        show(&request)
    );
    assert_eq!(request.attr("from"), Some("romeo@prosody.lit"));
    juliet
        .send("<presence xmlns='jabber:client' type='subscribed' to='romeo@prosody.lit'/>")
        .await;
    let mut seen_available = false;
    while !seen_available {
        let el = next(&mut romeo, "presence", &prosody).await;
        seen_available =
            el.attr("from") == Some("juliet@verona.lit/balcony") && el.attr("type").is_none();
    }
    // Prosody's roster now has her, subscription "to".
    let roster = romeo
        .request(
            "<iq xmlns='jabber:client' type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    let item = roster
        .get_child("query", "jabber:iq:roster")
        .and_then(|q| {
            q.children()
                .find(|i| i.attr("jid") == Some("juliet@verona.lit"))
        })
        .unwrap_or_else(|| panic!("{}", show(&roster)));
    assert_eq!(item.attr("subscription"), Some("to"));

    // The other direction: Juliet (Verona) asks for Benvolio's presence (Prosody); he
    // approves; her roster, kept in the proxy of his presence node, says `to`.
    let mut benvolio = prosody.login("benvolio").await;
    online(&mut benvolio).await;
    // Roster pushes go to the sessions that fetched the roster (RFC 6121 §2.1.6).
    juliet
        .request(
            "<iq xmlns='jabber:client' type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    juliet
        .send("<presence xmlns='jabber:client' type='subscribe' to='benvolio@prosody.lit'/>")
        .await;
    let mut request = next(&mut benvolio, "presence", &prosody).await;
    while request.attr("type").is_none() {
        // His own presence, reflected.
        request = next(&mut benvolio, "presence", &prosody).await;
    }
    assert_eq!(
        request.attr("type"),
        Some("subscribe"),
        "{}",
        show(&request)
    );
    assert_eq!(request.attr("from"), Some("juliet@verona.lit"));
    benvolio
        .send("<presence xmlns='jabber:client' type='subscribed' to='juliet@verona.lit'/>")
        .await;
    let approved = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let el = juliet.recv().await;
            let item = el
                .get_child("query", "jabber:iq:roster")
                .and_then(|q| {
                    q.children()
                        .find(|i| i.attr("jid") == Some("benvolio@prosody.lit"))
                })
                .cloned();
            if let Some(item) = item
                && item.attr("subscription") == Some("to")
            {
                return item;
            }
        }
    })
    .await;
    assert!(
        approved.is_ok(),
        "no roster push; Prosody's log:\n{}",
        prosody.log()
    );

    // Benvolio asks for Juliet's presence (classic, Prosody); she approves natively with the
    // XEP-0207 Ex. 11 form.
    benvolio
        .send("<presence xmlns='jabber:client' type='subscribe' to='juliet@verona.lit'/>")
        .await;
    let mut asked = next(&mut juliet, "presence", &prosody).await;
    while asked.attr("type") != Some("subscribe") {
        asked = next(&mut juliet, "presence", &prosody).await;
    }
    assert_eq!(asked.attr("from"), Some("benvolio@prosody.lit"));
    juliet
        .send("<message xmlns='jabber:client' to='verona.lit'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field><field var='pubsub#node'><value>presence</value></field><field var='pubsub#subscriber_jid'><value>benvolio@prosody.lit</value></field><field var='pubsub#allow'><value>true</value></field></x></message>")
        .await;
    // Prosody records it: Benvolio's roster now has Juliet both ways.
    let both = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let roster = benvolio
                .request("<iq xmlns='jabber:client' type='get' id='r3'><query xmlns='jabber:iq:roster'/></iq>")
                .await;
            let subscription = roster
                .get_child("query", "jabber:iq:roster")
                .and_then(|q| q.children().find(|i| i.attr("jid") == Some("juliet@verona.lit")))
                .and_then(|item| item.attr("subscription").map(str::to_owned));
            if subscription.as_deref() == Some("both") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(both.is_ok(), "Prosody's log:\n{}", prosody.log());

    // Remote PEP, both ways: a contact reads the other's items (the `presence` access model).
    let tune = |title: &str| {
        format!(
            "<iq xmlns='jabber:client' type='set' id='tune-{title}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/tune'><item id='current'><tune xmlns='http://jabber.org/protocol/tune'><title>{title}</title></tune></item></publish></pubsub></iq>"
        )
    };
    let published = benvolio.request(&tune("Greensleeves")).await;
    assert_eq!(
        published.attr("type"),
        Some("result"),
        "{}",
        show(&published)
    );
    let published = juliet.request(&tune("Nightingale")).await;
    assert_eq!(
        published.attr("type"),
        Some("result"),
        "{}",
        show(&published)
    );
    let read = |to: &str| {
        format!(
            "<iq xmlns='jabber:client' type='get' to='{to}' id='read-{to}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='http://jabber.org/protocol/tune'/></pubsub></iq>"
        )
    };
    let title = |reply: &Element| -> Option<String> {
        let items = reply
            .get_child("pubsub", "http://jabber.org/protocol/pubsub")?
            .get_child("items", "http://jabber.org/protocol/pubsub")?;
        let item = items.children().next()?;
        let tune = item.get_child("tune", "http://jabber.org/protocol/tune")?;
        Some(
            tune.get_child("title", "http://jabber.org/protocol/tune")?
                .text(),
        )
    };
    let reply = juliet.request(&read("benvolio@prosody.lit")).await;
    assert_eq!(
        title(&reply).as_deref(),
        Some("Greensleeves"),
        "{}",
        show(&reply)
    );
    let reply = romeo.request(&read("juliet@verona.lit")).await;
    assert_eq!(
        title(&reply).as_deref(),
        Some("Nightingale"),
        "{}",
        show(&reply)
    );

    // Remote pubsub: Romeo (Prosody) subscribes to a node of pubsub.verona.lit.
    let create = juliet
        .request("<iq xmlns='jabber:client' type='set' to='pubsub.verona.lit' id='c1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='balcony'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>")
        .await;
    assert_eq!(create.attr("type"), Some("result"), "{}", show(&create));
    let subscribed = romeo
        .request("<iq xmlns='jabber:client' type='set' to='pubsub.verona.lit' id='s1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='balcony' jid='romeo@prosody.lit/home'/></pubsub></iq>")
        .await;
    assert_eq!(
        subscribed.attr("type"),
        Some("result"),
        "{}",
        show(&subscribed)
    );
    juliet
        .request("<iq xmlns='jabber:client' type='set' to='pubsub.verona.lit' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='balcony'><item id='i1'><entry xmlns='urn:example'>soft</entry></item></publish></pubsub></iq>")
        .await;
    let mut event = next(&mut romeo, "message", &prosody).await;
    while event.attr("from") != Some("pubsub.verona.lit") {
        event = next(&mut romeo, "message", &prosody).await;
    }
    let items = event
        .get_child("event", "http://jabber.org/protocol/pubsub#event")
        .and_then(|e| e.get_child("items", "http://jabber.org/protocol/pubsub#event"))
        .unwrap_or_else(|| panic!("{}", show(&event)));
    assert_eq!(items.attr("node"), Some("balcony"));

    // Remote PEP `+notify` (XEP-0163 §4.3, XEP-0115): Juliet's client advertises
    // `tune+notify` in its capabilities; her presence carries them to Benvolio's server, which
    // asks her client what they mean, then sends her Benvolio's next tune as an event.
    let features = [
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/tune+notify",
    ];
    let ver = {
        use base64::Engine;
        use sha1::Digest;
        let mut s = String::from("client/pc//Verona test<");
        for feature in features {
            s.push_str(feature);
            s.push('<');
        }
        base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
    };
    let caps_node = "https://verona.example/test";
    juliet
        .send(&format!("<presence xmlns='jabber:client'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{caps_node}' ver='{ver}'/></presence>"))
        .await;
    let answer = |query: &Element| -> String {
        let id = query.attr("id").unwrap_or_default();
        let to = query.attr("from").unwrap_or_default();
        let node = query
            .get_child("query", "http://jabber.org/protocol/disco#info")
            .and_then(|q| q.attr("node"))
            .map(|n| format!(" node='{n}'"))
            .unwrap_or_default();
        let features: String = features
            .iter()
            .map(|f| format!("<feature var='{f}'/>"))
            .collect();
        format!(
            "<iq xmlns='jabber:client' type='result' id='{id}' to='{to}'><query xmlns='http://jabber.org/protocol/disco#info'{node}><identity category='client' type='pc' name='Verona test'/>{features}</query></iq>"
        )
    };
    let mut published = false;
    let notified = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let el = juliet.recv().await;
            if el.name() == "iq"
                && el.attr("type") == Some("get")
                && el.has_child("query", "http://jabber.org/protocol/disco#info")
            {
                juliet.send(&answer(&el)).await;
                if !published && el.attr("from").is_some_and(|f| f.ends_with("prosody.lit")) {
                    // Benvolio's server knows what her capabilities mean now.
                    let reply = benvolio.request(&tune("Pavane")).await;
                    assert_eq!(reply.attr("type"), Some("result"));
                    published = true;
                }
                continue;
            }
            let event = el
                .get_child("event", "http://jabber.org/protocol/pubsub#event")
                .and_then(|e| e.get_child("items", "http://jabber.org/protocol/pubsub#event"))
                .filter(|items| items.attr("node") == Some("http://jabber.org/protocol/tune"));
            if el.attr("from") == Some("benvolio@prosody.lit")
                && let Some(items) = event
                && show(items).contains("Pavane")
            {
                return;
            }
        }
    })
    .await;
    assert!(
        notified.is_ok(),
        "no tune event; Prosody's log:\n{}",
        prosody.log()
    );

    // And the other way: Benvolio's client (another client, other capabilities) advertises
    // `tune+notify`; Verona asks it what its hash means, then sends him Juliet's next tune.
    let his_features = [
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/tune+notify",
    ];
    let his_ver = {
        use base64::Engine;
        use sha1::Digest;
        let mut s = String::from("client/phone//Benvolio's phone<");
        for feature in his_features {
            s.push_str(feature);
            s.push('<');
        }
        base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
    };
    benvolio
        .send(&format!("<presence xmlns='jabber:client'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{caps_node}' ver='{his_ver}'/></presence>"))
        .await;
    let query = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let el = benvolio.recv().await;
            if el.name() == "iq"
                && el.attr("from") == Some("verona.lit")
                && el.has_child("query", "http://jabber.org/protocol/disco#info")
            {
                return el;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("Verona did not ask; Prosody's log:\n{}", prosody.log()));
    let node = query
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.attr("node"))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(node, format!("{caps_node}#{his_ver}"));
    let his_answer: String = his_features
        .iter()
        .map(|f| format!("<feature var='{f}'/>"))
        .collect();
    benvolio
        .send(&format!("<iq xmlns='jabber:client' type='result' id='{}' to='verona.lit'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'><identity category='client' type='phone' name=\"Benvolio's phone\"/>{his_answer}</query></iq>", query.attr("id").unwrap_or_default()))
        .await;
    // A round trip over the same streams: Verona has had the answer when the ping returns.
    let ping = benvolio
        .request("<iq xmlns='jabber:client' type='get' to='verona.lit' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(ping.attr("type"), Some("result"));
    let reply = juliet.request(&tune("Lavolta")).await;
    assert_eq!(reply.attr("type"), Some("result"));
    // XEP-0163 §4.3.3: his resource's initial presence with `tune+notify` brought him
    // Juliet's last tune once Verona knew what his capabilities mean; then the new one.
    let mut heard = Vec::new();
    let notified = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let el = benvolio.recv().await;
            let title = el
                .get_child("event", "http://jabber.org/protocol/pubsub#event")
                .and_then(|e| e.get_child("items", "http://jabber.org/protocol/pubsub#event"))
                .filter(|items| items.attr("node") == Some("http://jabber.org/protocol/tune"))
                .and_then(|items| {
                    items.get_child("item", "http://jabber.org/protocol/pubsub#event")
                })
                .and_then(|item| item.get_child("tune", "http://jabber.org/protocol/tune"))
                .and_then(|tune| tune.get_child("title", "http://jabber.org/protocol/tune"))
                .map(Element::text);
            if el.attr("from") == Some("juliet@verona.lit")
                && let Some(title) = title
            {
                heard.push(title);
                if heard.last().map(String::as_str) == Some("Lavolta") {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        notified.is_ok(),
        "no tune event from Verona; Prosody's log:\n{}",
        prosody.log()
    );
    assert_eq!(heard, ["Nightingale", "Lavolta"]);

    // Blocking a remote JID (XEP-0191): his messages do not reach her, hers to him are refused.
    let blocked = juliet
        .request("<iq xmlns='jabber:client' type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='benvolio@prosody.lit'/></block></iq>")
        .await;
    assert_eq!(blocked.attr("type"), Some("result"), "{}", show(&blocked));
    benvolio
        .send("<message xmlns='jabber:client' type='chat' to='juliet@verona.lit' id='bb1'><body>Hear me</body></message>")
        .await;
    let mut refused = next(&mut benvolio, "message", &prosody).await;
    while refused.attr("id") != Some("bb1") {
        refused = next(&mut benvolio, "message", &prosody).await;
    }
    assert_eq!(refused.attr("type"), Some("error"), "{}", show(&refused));
    juliet
        .send("<message xmlns='jabber:client' type='chat' to='benvolio@prosody.lit' id='bb2'><body>No</body></message>")
        .await;
    let mut own = next(&mut juliet, "message", &prosody).await;
    while own.attr("id") != Some("bb2") {
        own = next(&mut juliet, "message", &prosody).await;
    }
    assert_eq!(own.attr("type"), Some("error"));
    let condition = own
        .get_child("error", CLIENT)
        .and_then(|e| e.children().next())
        .map(|c| c.name().to_owned());
    assert_eq!(condition.as_deref(), Some("not-acceptable"));
}

/// XEP-0045 across servers with Prosody as the remote side: Romeo, on Prosody, enters a room on
/// Verona that Juliet made. Each sees the other's presence (Romeo's arrival shared by the room's
/// occupants, Juliet's presence as a newcomer gets it), both hear what is said, and his leaving
/// reaches her.
#[tokio::test]
async fn a_prosody_user_takes_part_in_a_verona_room() {
    if !installed() {
        eprintln!("prosody is not installed (.ci/run installs it): skipped");
        return;
    }
    const MUC: &str = "http://jabber.org/protocol/muc";
    const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    let room = "garden@chat.verona.lit";
    let (verona, prosody) = start_pair(None, None).await;
    let mut juliet = verona.login("juliet", "pw", "balcony").await;
    online(&mut juliet).await;
    juliet
        .send(&format!(
            "<presence xmlns='jabber:client' to='{room}/Juliet'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    let subject = |el: &Element| el.name() == "message" && el.has_child("subject", CLIENT);
    while !subject(&next(&mut juliet, "message", &prosody).await) {}
    let instant = juliet
        .request(&format!("<iq xmlns='jabber:client' type='set' id='instant' to='{room}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"))
        .await;
    assert_eq!(instant.attr("type"), Some("result"), "{}", show(&instant));

    let mut romeo = prosody.login("romeo").await;
    online(&mut romeo).await;
    romeo
        .send(&format!(
            "<presence xmlns='jabber:client' to='{room}/Romeo'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    // Romeo: Juliet's presence, then his own (110), then the subject.
    let mut from_room = Vec::new();
    loop {
        let el = tokio::time::timeout(Duration::from_secs(20), romeo.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("no answer from the room; Prosody's log:\n{}", prosody.log())
            });
        if subject(&el) {
            break;
        }
        if el.name() == "presence" && el.attr("from").is_some_and(|f| f.starts_with(room)) {
            from_room.push(el);
        }
    }
    let item = |el: &Element| {
        el.get_child("x", MUC_USER)
            .and_then(|x| x.get_child("item", MUC_USER))
            .map(|i| {
                (
                    i.attr("affiliation").map(str::to_owned),
                    i.attr("role").map(str::to_owned),
                )
            })
    };
    let theirs: Vec<(Option<&str>, Option<&str>)> = from_room
        .iter()
        .map(|el| (el.attr("from"), el.attr("to")))
        .collect();
    assert_eq!(
        theirs,
        [
            (
                Some("garden@chat.verona.lit/Juliet"),
                Some("romeo@prosody.lit/home")
            ),
            (
                Some("garden@chat.verona.lit/Romeo"),
                Some("romeo@prosody.lit/home")
            ),
        ]
    );
    assert_eq!(
        item(&from_room[0]),
        Some((Some("owner".to_owned()), Some("moderator".to_owned())))
    );
    // Juliet: Romeo's arrival, with his real JID (the room is not anonymous).
    let arrival = next(&mut juliet, "presence", &prosody).await;
    assert_eq!(arrival.attr("from"), Some("garden@chat.verona.lit/Romeo"));
    let jid = arrival
        .get_child("x", MUC_USER)
        .and_then(|x| x.get_child("item", MUC_USER))
        .and_then(|i| i.attr("jid"));
    assert_eq!(jid, Some("romeo@prosody.lit/home"));

    romeo
        .send(&format!("<message xmlns='jabber:client' type='groupchat' to='{room}' id='r1'><body>With love's light wings</body></message>"))
        .await;
    for client in [&mut juliet, &mut romeo] {
        let heard = next(client, "message", &prosody).await;
        assert_eq!(heard.attr("from"), Some("garden@chat.verona.lit/Romeo"));
        assert_eq!(heard.attr("type"), Some("groupchat"));
        assert_eq!(body(&heard).as_deref(), Some("With love's light wings"));
    }
    romeo
        .send(&format!(
            "<presence xmlns='jabber:client' type='unavailable' to='{room}/Romeo'/>"
        ))
        .await;
    let left = next(&mut juliet, "presence", &prosody).await;
    assert_eq!(left.attr("from"), Some("garden@chat.verona.lit/Romeo"));
    assert_eq!(left.attr("type"), Some("unavailable"));
}

/// Both sides with certificates from one test authority, each trusting only it: they
/// authenticate each other with SASL EXTERNAL (XEP-0178) and chat both ways.
#[tokio::test]
async fn verona_and_prosody_authenticate_by_certificate() {
    if !installed() {
        eprintln!("prosody is not installed (.ci/run installs it): skipped");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let authority = Authority::new();
    let ca_file = certs.path().join("ca.pem");
    std::fs::write(&ca_file, &authority.pem).unwrap();
    let (cert, key) = authority.issue(certs.path(), "verona.lit");
    let (verona, prosody) = start_pair(Some((cert, key, ca_file)), Some(&authority)).await;
    let mut juliet = verona.login("juliet", "pw", "balcony").await;
    online(&mut juliet).await;
    let mut romeo = prosody.login("romeo").await;
    online(&mut romeo).await;
    juliet
        .send("<message xmlns='jabber:client' type='chat' to='romeo@prosody.lit' id='c1'><body>Sealed</body></message>")
        .await;
    let got = next(&mut romeo, "message", &prosody).await;
    assert_eq!(got.attr("id"), Some("c1"));
    assert_eq!(body(&got).as_deref(), Some("Sealed"));
    romeo
        .send("<message xmlns='jabber:client' type='chat' to='juliet@verona.lit' id='c2'><body>And signed</body></message>")
        .await;
    let got = next(&mut juliet, "message", &prosody).await;
    assert_eq!(got.attr("id"), Some("c2"));
    let log = prosody.log();
    assert!(
        log.contains("SASL EXTERNAL with verona.lit succeeded"),
        "Prosody did not authenticate to Verona by certificate:\n{log}"
    );
    assert!(
        log.contains("Accepting SASL EXTERNAL identity from verona.lit"),
        "Verona did not authenticate to Prosody by certificate:\n{log}"
    );
}
