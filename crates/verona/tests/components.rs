//! XEP-0114 external components: a component connects with its secret, takes its domain, gets
//! what users send there and speaks from it; a wrong secret, an unknown domain, a second
//! connection for the same domain and a stanza from another domain are refused.

mod common;

use common::*;
use minidom::Element;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use verona_stream::{Limits, StreamEvent, StreamParser};

const COMPONENT: &str = "jabber:component:accept";
const STREAMS: &str = "http://etherx.jabber.org/streams";
const CLIENT: &str = "jabber:client";

struct Component {
    tcp: TcpStream,
    parser: StreamParser,
    id: String,
}

impl Component {
    /// Connects and opens a stream for `domain`; the server's header is read.
    async fn open(server: &TestServer, domain: &str) -> Component {
        let addr = server.server.component_addrs()[0];
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut component = Component {
            tcp,
            parser: StreamParser::new(COMPONENT, Limits::default()),
            id: String::new(),
        };
        component
            .send(&format!(
                "<stream:stream xmlns='{COMPONENT}' xmlns:stream='{STREAMS}' to='{domain}'>"
            ))
            .await;
        match component.event().await {
            Some(StreamEvent::Header(header)) => component.id = header.id.unwrap_or_default(),
            other => panic!("expected a header, got {other:?}"),
        }
        component
    }

    async fn send(&mut self, xml: &str) {
        self.tcp.write_all(xml.as_bytes()).await.unwrap();
    }

    async fn event(&mut self) -> Option<StreamEvent> {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match self.parser.next_event() {
                    Ok(Some(event)) => return Some(event),
                    Ok(None) => {}
                    Err(_) => return None,
                }
                let mut buf = [0u8; 4096];
                let n = self.tcp.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                self.parser.feed(&buf[..n]);
            }
        })
        .await
        .expect("timed out waiting for the server")
    }

    async fn element(&mut self) -> Element {
        match self.event().await {
            Some(StreamEvent::Stanza(el)) => el,
            other => panic!("expected an element, got {other:?}"),
        }
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

fn stream_error(el: &Element) -> Option<String> {
    el.is("error", STREAMS)
        .then(|| el.children().next().map(|c| c.name().to_owned()))
        .flatten()
}

async fn server() -> TestServer {
    let server = TestServer::start_with(|config| {
        config.components.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config
            .components
            .secrets
            .insert("gateway.localhost".into(), "s3cr3t".into());
    })
    .await;
    server.add_user("juliet", "pw").await;
    server
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
