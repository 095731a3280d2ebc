//! Shared fixtures: a real engine with a deterministic environment and a table-backed
//! resolver, stanzas in as XML text, replies and rendered stanzas out as elements.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jid::{BareJid, FullJid, Jid};
use minidom::{Element, Node};
use verona_pubsub::{AccessResolver, Effect, Environment, Service, ServiceConfig};
use verona_pubsub_xmpp::{Handled, ServiceContext, ServiceKind};

pub const SERVICE: &str = "pubsub.localhost";
pub const JULIET: &str = "juliet@localhost/balcony";
pub const ROMEO: &str = "romeo@localhost/orchard";
pub const NURSE: &str = "nurse@localhost/chamber";

/// 2023-11-14T22:13:20Z, and ids `id1`, `id2`, …
#[derive(Clone)]
pub struct TestEnv {
    counter: Arc<Mutex<u64>>,
}

impl Environment for TestEnv {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn new_id(&mut self) -> String {
        let mut counter = self.counter.lock().unwrap();
        *counter += 1;
        format!("id{counter}")
    }
}

/// Presence subscriptions as a table: (owner, contact).
#[derive(Default)]
pub struct Presence(pub BTreeSet<(BareJid, BareJid)>);

impl AccessResolver for Presence {
    fn has_presence_subscription(&self, owner: &BareJid, contact: &BareJid) -> bool {
        self.0.contains(&(owner.clone(), contact.clone()))
    }

    fn in_roster_group(&self, _owner: &BareJid, _contact: &BareJid, _groups: &[String]) -> bool {
        false
    }
}

/// One pubsub service and the context the protocol layer sees.
pub struct Harness {
    pub service: Service,
    pub jid: Jid,
    pub presence: Presence,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(ServiceConfig::pubsub())
    }

    pub fn with_config(config: ServiceConfig) -> Self {
        let env = TestEnv {
            counter: Arc::new(Mutex::new(0)),
        };
        Harness {
            service: Service::new(config, Box::new(env)),
            jid: Jid::new(SERVICE).unwrap(),
            presence: Presence::default(),
        }
    }

    pub fn ctx(&self) -> ServiceContext<'_> {
        ServiceContext {
            jid: &self.jid,
            kind: ServiceKind::Pubsub,
            resolver: &self.presence,
        }
    }

    /// Handles `stanza` from `from`; the stanza's own `from` is irrelevant (the server stamps).
    pub fn send(&mut self, from: &str, stanza: &str) -> Handled {
        let from = FullJid::new(from).unwrap();
        let stanza = xml(stanza);
        let ctx = ServiceContext {
            jid: &self.jid,
            kind: ServiceKind::Pubsub,
            resolver: &self.presence,
        };
        verona_pubsub_xmpp::handle_stanza(&mut self.service, &ctx, &from, &stanza)
    }

    /// Sends and expects a reply; returns it.
    pub fn ask(&mut self, from: &str, stanza: &str) -> Element {
        self.send(from, stanza).reply.expect("a reply")
    }

    /// Sends, expects an iq result, returns the deliveries rendered from the effects.
    pub fn ok(&mut self, from: &str, stanza: &str) -> Vec<(String, Element)> {
        let handled = self.send(from, stanza);
        let reply = handled.reply.expect("a reply");
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "{}",
            String::from(&reply)
        );
        self.rendered(&handled.effects)
    }

    pub fn rendered(&self, effects: &[Effect]) -> Vec<(String, Element)> {
        verona_pubsub_xmpp::render(&self.ctx(), effects)
            .into_iter()
            .map(|out| {
                let text = std::str::from_utf8(&out.stanza.to_vec())
                    .expect("UTF-8")
                    .to_owned();
                (out.to.to_string(), xml(&text))
            })
            .collect()
    }

    /// Creates `node` owned by Juliet with the given node_config fields.
    pub fn create(&mut self, node: &str, fields: &[(&str, &str)]) {
        let mut create = Element::builder("pubsub", PUBSUB).append(
            Element::builder("create", PUBSUB)
                .attr(name("node"), node)
                .build(),
        );
        if !fields.is_empty() {
            create = create.append(
                Element::builder("configure", PUBSUB)
                    .append(submit_form(
                        "http://jabber.org/protocol/pubsub#node_config",
                        fields,
                    ))
                    .build(),
            );
        }
        let iq = iq("set", "create", create.build());
        self.ok(JULIET, &String::from(&iq));
    }

    /// Publishes `<p xmlns='urn:test'>text</p>` as Juliet under `id`.
    pub fn publish(&mut self, node: &str, id: &str, text: &str) -> Vec<(String, Element)> {
        let payload = Element::builder("p", "urn:test").append(text).build();
        let item = Element::builder("item", PUBSUB)
            .attr(name("id"), id)
            .append(payload)
            .build();
        let publish = Element::builder("publish", PUBSUB)
            .attr(name("node"), node)
            .append(item)
            .build();
        let stanza = iq(
            "set",
            "pub",
            Element::builder("pubsub", PUBSUB).append(publish).build(),
        );
        self.ok(JULIET, &String::from(&stanza))
    }

    /// Subscribes `who`'s bare JID to `node` and returns the SubID.
    pub fn subscribe(&mut self, who: &str, node: &str) -> String {
        let bare = FullJid::new(who).unwrap().to_bare().to_string();
        let subscribe = Element::builder("subscribe", PUBSUB)
            .attr(name("node"), node)
            .attr(name("jid"), bare)
            .build();
        let stanza = iq(
            "set",
            "sub",
            Element::builder("pubsub", PUBSUB).append(subscribe).build(),
        );
        let reply = self.ask(who, &String::from(&stanza));
        reply
            .get_child("pubsub", PUBSUB)
            .and_then(|p| p.get_child("subscription", PUBSUB))
            .and_then(|s| s.attr("subid"))
            .expect("a subid")
            .to_owned()
    }
}

pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";

fn name(n: &str) -> minidom::rxml::NcName {
    minidom::rxml::NcName::try_from(n).unwrap()
}

fn iq(kind: &str, id: &str, payload: Element) -> Element {
    Element::builder("iq", "jabber:client")
        .attr(name("type"), kind)
        .attr(name("id"), id)
        .attr(name("to"), SERVICE)
        .append(payload)
        .build()
}

fn submit_form(form_type: &str, fields: &[(&str, &str)]) -> Element {
    let field = |var: &str, value: &str| {
        Element::builder("field", "jabber:x:data")
            .attr(name("var"), var)
            .append(
                Element::builder("value", "jabber:x:data")
                    .append(value)
                    .build(),
            )
            .build()
    };
    Element::builder("x", "jabber:x:data")
        .attr(name("type"), "submit")
        .append(field("FORM_TYPE", form_type))
        .append_all(fields.iter().map(|(var, value)| field(var, value)))
        .build()
}

/// Parses XML text as a stream would (default namespace `jabber:client`), dropping
/// whitespace-only text (the indentation of examples).
pub fn xml(text: &str) -> Element {
    let element =
        Element::from_reader_with_prefixes(text.as_bytes(), Some("jabber:client".to_owned()))
            .expect("well-formed test XML");
    normalize(element)
}

fn normalize(mut element: Element) -> Element {
    for node in element.take_nodes() {
        match node {
            Node::Element(child) => {
                element.append_child(normalize(child));
            }
            Node::Text(text) if text.trim().is_empty() => {}
            Node::Text(text) => element.append_text_node(text),
        }
    }
    element
}

/// Asserts that `actual` equals the XML text `expected`, indentation aside.
#[track_caller]
pub fn assert_xml(actual: &Element, expected: &str) {
    let actual = normalize(actual.clone());
    let expected = xml(expected);
    assert!(
        actual == expected,
        "\nactual:   {}\nexpected: {}",
        String::from(&actual),
        String::from(&expected)
    );
}

/// The error reply's conditions: (type, stanza condition, pubsub#errors condition).
pub fn error_of(reply: &Element) -> (String, String, Option<String>) {
    assert_eq!(reply.attr("type"), Some("error"), "{}", String::from(reply));
    let error = reply.get_child("error", "jabber:client").expect("<error/>");
    let mut conditions = error.children();
    let stanza = conditions.next().expect("a condition").name().to_owned();
    let pubsub = conditions
        .find(|c| c.ns() == "http://jabber.org/protocol/pubsub#errors")
        .map(|c| match c.attr("feature") {
            Some(feature) => format!("{}:{feature}", c.name()),
            None => c.name().to_owned(),
        });
    (error.attr("type").unwrap().to_owned(), stanza, pubsub)
}

#[track_caller]
pub fn assert_error(reply: &Element, kind: &str, stanza: &str, pubsub: Option<&str>) {
    assert_eq!(
        error_of(reply),
        (
            kind.to_owned(),
            stanza.to_owned(),
            pubsub.map(str::to_owned)
        )
    );
}
