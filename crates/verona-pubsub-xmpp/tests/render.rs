//! Rendering: unique ids, one shared serialization of the event (the same bytes in memory), SHIM headers, XEP-0033
//! `replyto`, notification types, escaping, and the reply when storage fails.

mod common;

use common::{Harness, JULIET, NURSE, ROMEO, assert_error, assert_xml, xml};

/// The bytes of a rendered stanza between `<event` and `</event>`.
fn event_bytes(stanza: &[u8]) -> &[u8] {
    let text = std::str::from_utf8(stanza).unwrap();
    let start = text.find("<event").expect("an event");
    let end = text.find("</event>").expect("an event end") + "</event>".len();
    &stanza[start..end]
}

#[test]
fn every_recipient_gets_a_unique_id_and_the_same_event_bytes() {
    let mut h = Harness::new();
    h.create("princely_musings", &[("pubsub#access_model", "open")]);
    for who in [ROMEO, NURSE, JULIET] {
        h.subscribe(who, "princely_musings");
    }
    let handled = h.send(
        JULIET,
        "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish node='princely_musings'><item id='i'><p xmlns='urn:test'>x</p></item></publish>
         </pubsub></iq>",
    );
    let out = verona_pubsub_xmpp::render(&h.ctx(), &handled.effects);
    assert_eq!(out.len(), 3);
    let ids: std::collections::BTreeSet<String> = out
        .iter()
        .map(|o| {
            let message = xml(std::str::from_utf8(&o.stanza.to_vec()).unwrap());
            assert_eq!(message.attr("to"), Some(o.to.as_str()));
            message.attr("id").unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 3);
    let first = out[0].stanza.to_vec();
    let shared = event_bytes(&first);
    assert!(
        out.iter()
            .all(|o| event_bytes(&o.stanza.to_vec()) == shared)
    );
    // Not only equal: the same bytes in memory, whatever the number of recipients (issue #11 H5).
    let body = out[0].stanza.parts()[1];
    assert!(body.len() >= shared.len());
    assert!(
        out.iter()
            .all(|o| o.stanza.parts()[1].as_ptr() == body.as_ptr())
    );
    // Rendering again gives fresh ids.
    let again = verona_pubsub_xmpp::render(&h.ctx(), &handled.effects);
    let id = xml(std::str::from_utf8(&again[0].stanza.to_vec()).unwrap())
        .attr("id")
        .unwrap()
        .to_owned();
    assert!(!ids.contains(&id));
}

#[test]
fn several_subscriptions_get_subid_headers_on_items_and_retractions_only() {
    let mut h = Harness::new();
    h.create("princely_musings", &[("pubsub#access_model", "open")]);
    let first = h.subscribe(ROMEO, "princely_musings");
    let second = h.ask(
        ROMEO,
        "<iq type='set' id='sub2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='romeo@localhost'/>
           <options><x xmlns='jabber:x:data' type='submit'>
             <field var='pubsub#include_body'><value>1</value></field>
           </x></options>
         </pubsub></iq>",
    );
    let second = second
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("subscription", common::PUBSUB))
        .and_then(|s| s.attr("subid"))
        .unwrap()
        .to_owned();
    h.subscribe(NURSE, "princely_musings");

    let sent = h.publish("princely_musings", "ae890ac52d0df67ed7cfdf51b644e901", "x");
    let romeo = &sent
        .iter()
        .find(|(to, _)| to == "romeo@localhost")
        .unwrap()
        .1;
    let headers = romeo
        .get_child("headers", "http://jabber.org/protocol/shim")
        .expect("SubID headers");
    let expected = [
        "<headers xmlns='http://jabber.org/protocol/shim'><header name='SubID'>",
        &first,
        "</header><header name='SubID'>",
        &second,
        "</header></headers>",
    ]
    .concat();
    assert_xml(headers, &expected);
    assert_eq!(romeo.children().last().unwrap().name(), "headers");
    let nurse = &sent
        .iter()
        .find(|(to, _)| to == "nurse@localhost")
        .unwrap()
        .1;
    assert!(!nurse.has_child("headers", "http://jabber.org/protocol/shim"));

    let purge = h.ok(
        JULIET,
        "<iq type='set' id='purge1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <purge node='princely_musings'/></pubsub></iq>",
    );
    assert!(
        purge
            .iter()
            .all(|(_, m)| !m.has_child("headers", "http://jabber.org/protocol/shim"))
    );
}

#[test]
fn a_message_node_names_its_publisher_once_in_a_replyto() {
    let mut h = Harness::new();
    // A one-to-one conversation node (XEP-0207 §6): messages, replies to the publisher.
    h.create(
        "me_and_romeo",
        &[
            ("pubsub#access_model", "whitelist"),
            ("pubsub#itemreply", "publisher"),
            ("pubsub#notification_type", "normal"),
            ("pubsub#publisher", "romeo@localhost"),
        ],
    );
    h.subscribe(ROMEO, "me_and_romeo");
    h.subscribe(JULIET, "me_and_romeo");
    let handled = h.send(
        JULIET,
        "<iq from='juliet@localhost/balcony' to='pubsub.localhost' type='set' id='msg1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <publish node='me_and_romeo'>
               <item>
                 <message xmlns='jabber:client'>
                   <body>wherefore art thou?</body>
                 </message>
               </item>
             </publish>
           </pubsub>
         </iq>",
    );
    let reply = handled.reply.as_ref().unwrap();
    let id = reply
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("publish", common::PUBSUB))
        .and_then(|p| p.get_child("item", common::PUBSUB))
        .and_then(|i| i.attr("id"))
        .expect("the generated id")
        .to_owned();
    let sent = h.rendered(&handled.effects);
    let recipients: Vec<&str> = sent.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(recipients, ["juliet@localhost", "romeo@localhost"]);
    let romeo = &sent[1].1;
    assert_eq!(romeo.attr("type"), None, "notification type normal");
    let mut expected = xml(
        "<message xmlns='jabber:client' from='pubsub.localhost' to='romeo@localhost' id='x'>
           <event xmlns='http://jabber.org/protocol/pubsub#event'>
             <items node='me_and_romeo'>
               <item id='x'>
                 <message xmlns='jabber:client'>
                   <body>wherefore art thou?</body>
                 </message>
               </item>
             </items>
           </event>
           <addresses xmlns='http://jabber.org/protocol/address'>
             <address type='replyto' jid='juliet@localhost/balcony'/>
           </addresses>
         </message>",
    );
    let id_attr = || minidom::rxml::NcName::try_from("id").unwrap();
    let none = minidom::rxml::Namespace::NONE;
    expected.set_attr(none.clone(), id_attr(), romeo.attr("id").unwrap());
    let event = expected.get_child_mut("event", "http://jabber.org/protocol/pubsub#event");
    let item = event
        .and_then(|e| e.get_child_mut("items", "http://jabber.org/protocol/pubsub#event"))
        .and_then(|i| i.get_child_mut("item", "http://jabber.org/protocol/pubsub#event"))
        .unwrap();
    item.set_attr(none, id_attr(), id.as_str());
    assert_xml(romeo, &String::from(&expected));

    // The seed's Ex. 20 names the publisher in the `replyto` alone; retrieval, which has no
    // `replyto`, shows it as XEP-0060 does (§7.1.2.3), by its bare JID.
    let items = h.ask(
        ROMEO,
        "<iq type='get' id='items1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <items node='me_and_romeo'/></pubsub></iq>",
    );
    let publisher = items
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("items", common::PUBSUB))
        .and_then(|i| i.get_child("item", common::PUBSUB))
        .and_then(|i| i.attr("publisher"));
    assert_eq!(publisher, Some("juliet@localhost"));
}

#[test]
fn chat_notifications_and_escaped_recipients() {
    let mut h = Harness::new();
    h.create(
        "talk",
        &[
            ("pubsub#access_model", "open"),
            ("pubsub#notification_type", "chat"),
        ],
    );
    let odd = "romeo@localhost/it's <me> & \"you\"";
    let subscribe = minidom::Element::builder("iq", "jabber:client")
        .attr("type".try_into().unwrap(), "set")
        .attr("id".try_into().unwrap(), "s")
        .append(
            minidom::Element::builder("pubsub", common::PUBSUB)
                .append(
                    minidom::Element::builder("subscribe", common::PUBSUB)
                        .attr("node".try_into().unwrap(), "talk")
                        .attr("jid".try_into().unwrap(), odd)
                        .build(),
                )
                .build(),
        )
        .build();
    let reply = h.ask(odd, &String::from(&subscribe));
    assert_eq!(reply.attr("type"), Some("result"));
    let sent = h.publish("talk", "i", "hello");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.attr("to"), Some(odd));
    assert_eq!(sent[0].1.attr("type"), Some("chat"));
}

#[test]
fn owners_hear_of_subscriptions_when_notify_sub_is_set() {
    let mut h = Harness::new();
    h.create(
        "princely_musings",
        &[("pubsub#access_model", "open"), ("pubsub#notify_sub", "1")],
    );
    let handled = h.send(
        ROMEO,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='romeo@localhost'/></pubsub></iq>",
    );
    let sent = h.rendered(&handled.effects);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "juliet@localhost");
    assert_xml(
        sent[0]
            .1
            .get_child("event", "http://jabber.org/protocol/pubsub#event")
            .unwrap(),
        "<event xmlns='http://jabber.org/protocol/pubsub#event'>
           <subscription node='princely_musings' jid='romeo@localhost'
                         subscription='subscribed' subid='id1'/>
         </event>",
    );
}

#[test]
fn storage_failure_replies() {
    let request = xml(
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='publish1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub>
         </iq>",
    );
    let reply = verona_pubsub_xmpp::storage_failed(&request).expect("an error");
    assert_xml(
        &reply,
        "<iq type='error' from='pubsub.localhost' to='juliet@localhost/balcony' id='publish1'>
           <error type='wait'>
             <internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
           </error>
         </iq>",
    );
    let message = xml("<message from='juliet@localhost/balcony' to='pubsub.localhost'/>");
    let reply = verona_pubsub_xmpp::storage_failed(&message).expect("an error");
    assert_error(&reply, "wait", "internal-server-error", None);
    assert!(verona_pubsub_xmpp::storage_failed(&xml("<iq type='result' id='r'/>")).is_none());
    assert!(verona_pubsub_xmpp::storage_failed(&xml("<message type='error'/>")).is_none());
}
