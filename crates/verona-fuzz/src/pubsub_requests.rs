//! Arbitrary bytes as the payload of an iq (and as a message) to a pubsub service: parsed by
//! the stream parser as a client would send them, then handled by the XEP-0060 protocol layer
//! over a service with nodes, items, subscriptions and a pending request. Nothing may panic,
//! every iq get/set gets exactly one reply, and a failed operation leaves the engine as it was.

use jid::{BareJid, FullJid, Jid};
use verona_pubsub::{
    AccessModel, AccessResolver, ConfigField, CreateRequest, NoRoster, PublishRequest, Service,
    ServiceConfig, SystemEnvironment,
};
use verona_pubsub_xmpp::{ServiceContext, ServiceKind, handle_stanza};
use verona_stream::{Limits, StreamEvent, StreamParser};

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Everyone follows everyone: every access model path is reachable.
struct Everyone;

impl AccessResolver for Everyone {
    fn has_presence_subscription(&self, _owner: &BareJid, _contact: &BareJid) -> bool {
        true
    }

    fn in_roster_group(&self, _owner: &BareJid, _contact: &BareJid, _groups: &[String]) -> bool {
        true
    }
}

fn service() -> Service {
    let mut service = Service::new(
        ServiceConfig::pubsub(),
        Box::new(SystemEnvironment::default()),
    );
    let owner = Jid::new("juliet@localhost/balcony").unwrap();
    let romeo = Jid::new("romeo@localhost/orchard").unwrap();
    for (node, model) in [
        ("open", AccessModel::Open),
        ("auth", AccessModel::Authorize),
    ] {
        let request = CreateRequest {
            node: Some(node.to_owned()),
            config: vec![ConfigField::AccessModel(model)],
            ..CreateRequest::default()
        };
        let _ = service.create(&owner, request).unwrap();
        let item = PublishRequest::payload(Some("i1"), "<p xmlns='urn:x'>1</p>".to_owned());
        let _ = service.publish(&owner, node, item).unwrap();
        let _ = service
            .subscribe(&NoRoster, &romeo, node, &romeo, None)
            .unwrap();
    }
    service
}

pub fn pubsub_requests(data: &[u8]) {
    let mut parser = StreamParser::new("jabber:client", Limits::default());
    parser.feed(HEADER);
    for wrapper in [
        (
            &b"<iq type='set' id='f' to='pubsub.localhost'>"[..],
            &b"</iq>"[..],
        ),
        (b"<iq type='get' id='f' to='pubsub.localhost'>", b"</iq>"),
        (b"<message to='pubsub.localhost'>", b"</message>"),
    ] {
        parser.feed(wrapper.0);
        parser.feed(data);
        parser.feed(wrapper.1);
    }
    let service_jid = Jid::new("pubsub.localhost").unwrap();
    let context = ServiceContext {
        jid: &service_jid,
        kind: ServiceKind::Pubsub,
        resolver: &Everyone,
    };
    let mut stanzas = Vec::new();
    while let Ok(Some(event)) = parser.next_event() {
        if let StreamEvent::Stanza(stanza) = event {
            stanzas.push(stanza);
        }
    }
    let mut service = service();
    for from in ["juliet@localhost/balcony", "romeo@localhost/orchard"] {
        let from = FullJid::new(from).unwrap();
        for stanza in &stanzas {
            let before = service.snapshot();
            let handled = handle_stanza(&mut service, &context, &from, stanza);
            if stanza.name() == "iq" && matches!(stanza.attr("type"), Some("get" | "set")) {
                assert!(handled.reply.is_some(), "every iq request is answered");
            }
            match handled.undo {
                Some(undo) => {
                    service.undo(undo).unwrap();
                    assert!(service.snapshot() == before, "undo restores the engine");
                }
                None => assert!(
                    service.snapshot() == before,
                    "nothing to undo, nothing changed"
                ),
            }
        }
    }
}
