//! What other servers (and strangers on the server-to-server port) must not be able to do to
//! a server: hold its connection slots, fill its memory, or make it connect where it should
//! not.

mod common;

use common::*;
use minidom::Element;
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
