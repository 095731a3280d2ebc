//! XEP-0060 §7: publish (with and without ItemID, publish-options), retract.

mod common;

use common::{Harness, JULIET, NURSE, ROMEO, assert_error, assert_xml, xml};
use minidom::Element;
use minidom::rxml::{Namespace, NcName};

const ENTRY: &str = "<entry xmlns='http://www.w3.org/2005/Atom'>
      <title>Soliloquy</title>
      <summary>
To be, or not to be: that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles,
And by opposing end them?
      </summary>
      <link rel='alternate' type='text/html' href='http://denmark.lit/2003/12/13/atom03'/>
      <id>tag:denmark.lit,2003:entry-32397</id>
      <published>2003-12-13T18:30:02Z</published>
      <updated>2003-12-13T18:30:02Z</updated>
    </entry>";

fn publish_request(id: &str, item_attrs: &str) -> String {
    // The example of §7.1.1 with the entry spliced in; test input only.
    [
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='",
        id,
        "'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='princely_musings'><item",
        item_attrs,
        ">",
        ENTRY,
        "</item></publish></pubsub></iq>",
    ]
    .concat()
}

/// An open node with Romeo and the Nurse subscribed.
fn musings() -> Harness {
    let mut h = Harness::new();
    h.create("princely_musings", &[("pubsub#access_model", "open")]);
    h.subscribe(ROMEO, "princely_musings");
    h.subscribe(NURSE, "princely_musings");
    h
}

/// Replaces the expected stanza's `id` with the actual one (ids are unique, not predictable).
#[track_caller]
fn assert_stanza(actual: &Element, expected: &str) {
    let mut expected = xml(expected);
    let id = actual.attr("id").expect("an id").to_owned();
    expected.set_attr(Namespace::NONE, NcName::try_from("id").unwrap(), id);
    assert_xml(actual, &String::from(&expected));
}

#[test]
fn publish_with_item_id_notifies_every_subscriber_with_the_payload() {
    let mut h = musings();
    let handled = h.send(
        JULIET,
        &publish_request("publish1", " id='ae890ac52d0df67ed7cfdf51b644e901'"),
    );
    assert_xml(
        handled.reply.as_ref().unwrap(),
        "<iq xmlns='jabber:client' type='result' from='pubsub.localhost'
             to='juliet@localhost/balcony' id='publish1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <publish node='princely_musings'>
               <item id='ae890ac52d0df67ed7cfdf51b644e901'/>
             </publish>
           </pubsub>
         </iq>",
    );
    assert!(handled.undo.is_some());
    let sent = h.rendered(&handled.effects);
    let recipients: Vec<&str> = sent.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(recipients, ["nurse@localhost", "romeo@localhost"]);
    let notification = [
        "<message xmlns='jabber:client' from='pubsub.localhost' to='romeo@localhost' id='x' type='headline'>
           <event xmlns='http://jabber.org/protocol/pubsub#event'>
             <items node='princely_musings'>
               <item id='ae890ac52d0df67ed7cfdf51b644e901'>",
        ENTRY,
        "      </item>
             </items>
           </event>
         </message>",
    ]
    .concat();
    assert_stanza(&sent[1].1, &notification);
}

#[test]
fn publish_without_item_id_returns_the_generated_id() {
    let mut h = musings();
    let reply = h.ask(JULIET, &publish_request("publish2", ""));
    let item = reply
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("publish", common::PUBSUB))
        .and_then(|p| p.get_child("item", common::PUBSUB))
        .expect("the item");
    let id = item.attr("id").expect("a generated id");
    assert!(!id.is_empty());
    // The id is the one the item is stored under.
    let items = h.ask(
        ROMEO,
        "<iq type='get' id='items1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <items node='princely_musings'/></pubsub></iq>",
    );
    let stored = items
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("items", common::PUBSUB))
        .and_then(|i| i.get_child("item", common::PUBSUB))
        .and_then(|i| i.attr("id"));
    assert_eq!(stored, Some(id));
}

/// The server learns what a publish stored from the typed result, not by reading its own reply.
#[test]
fn a_publish_reports_its_item_and_a_refused_one_nothing() {
    let mut h = musings();
    let handled = h.send(
        JULIET,
        &publish_request("publish3", " id='ae890ac52d0df67ed7cfdf51b644e901'"),
    );
    let expected = verona_pubsub_xmpp::Published {
        node: "princely_musings".to_owned(),
        item_id: "ae890ac52d0df67ed7cfdf51b644e901".to_owned(),
    };
    assert_eq!(handled.published, Some(expected));
    let refused = h.send(ROMEO, &publish_request("publish4", " id='x'"));
    assert_eq!(
        refused.reply.as_ref().and_then(|r| r.attr("type")),
        Some("error")
    );
    assert_eq!(refused.published, None);
}

#[test]
fn publish_options_precondition_met_and_not_met() {
    let mut h = musings();
    let with_options = |access: &str| {
        [
            "<iq type='set' id='pub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <publish node='princely_musings'><item id='current'>",
            ENTRY,
            "</item></publish>
               <publish-options>
                 <x xmlns='jabber:x:data' type='submit'>
                   <field var='FORM_TYPE' type='hidden'>
                     <value>http://jabber.org/protocol/pubsub#publish-options</value>
                   </field>
                   <field var='pubsub#access_model'><value>",
            access,
            "</value></field>
                 </x>
               </publish-options>
             </pubsub></iq>",
        ]
        .concat()
    };
    let met = h.ask(JULIET, &with_options("open"));
    assert_eq!(met.attr("type"), Some("result"));
    let unmet = h.ask(JULIET, &with_options("presence"));
    assert_xml(
        &unmet,
        "<iq xmlns='jabber:client' type='error' from='pubsub.localhost'
             to='juliet@localhost/balcony' id='pub1'>
           <error type='cancel'>
             <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
             <precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/>
           </error>
         </iq>",
    );
}

#[test]
fn publish_options_without_their_form_type_are_refused() {
    let mut h = musings();
    let reply = h.ask(
        JULIET,
        "<iq type='set' id='pub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish node='princely_musings'><item><p xmlns='urn:test'/></item></publish>
           <publish-options><x xmlns='jabber:x:data' type='submit'>
             <field var='pubsub#access_model'><value>open</value></field>
           </x></publish-options>
         </pubsub></iq>",
    );
    assert_error(&reply, "modify", "bad-request", None);
}

#[test]
fn publish_errors() {
    let mut h = musings();
    let missing = h.ask(
        JULIET,
        "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish node='nonexistent'><item><p xmlns='urn:test'/></item></publish>
         </pubsub></iq>",
    );
    assert_error(&missing, "cancel", "item-not-found", None);

    let forbidden = h.ask(ROMEO, &publish_request("p", ""));
    assert_error(&forbidden, "auth", "forbidden", None);

    let no_item = h.ask(
        JULIET,
        "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&no_item, "modify", "bad-request", Some("item-required"));

    let no_payload = h.ask(
        JULIET,
        "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish node='princely_musings'><item id='x'/></publish></pubsub></iq>",
    );
    assert_error(
        &no_payload,
        "modify",
        "bad-request",
        Some("payload-required"),
    );

    let two_payloads = h.ask(
        JULIET,
        "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish node='princely_musings'><item><a xmlns='urn:a'/><b xmlns='urn:b'/></item>
           </publish></pubsub></iq>",
    );
    assert_error(
        &two_payloads,
        "modify",
        "bad-request",
        Some("invalid-payload"),
    );

    let no_node = h.ask(
        JULIET,
        "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish><item><p xmlns='urn:test'/></item></publish></pubsub></iq>",
    );
    assert_error(&no_node, "modify", "bad-request", Some("nodeid-required"));
}

/// §7.1.3.5: a node configured with `pubsub#type` takes payloads of that namespace only (the
/// field was kept and shown but not applied, found by audit round 20).
#[test]
fn a_payload_not_of_the_nodes_type_is_refused() {
    let mut h = musings();
    h.create("avatars", &[("pubsub#type", "urn:xmpp:avatar:data")]);
    let other = h.ask(
        JULIET,
        "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish node='avatars'><item id='x'><other xmlns='urn:y'/></item></publish>
         </pubsub></iq>",
    );
    assert_error(&other, "modify", "bad-request", Some("invalid-payload"));
    h.ok(
        JULIET,
        "<iq type='set' id='q'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish node='avatars'><item id='x'><data xmlns='urn:xmpp:avatar:data'>AAAA</data></item></publish>
         </pubsub></iq>",
    );
    // Who may not publish hears that first: the node's type is not told by trial.
    let stranger = h.ask(
        ROMEO,
        "<iq type='set' id='r'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <publish node='avatars'><item id='y'><other xmlns='urn:y'/></item></publish>
         </pubsub></iq>",
    );
    assert_error(&stranger, "auth", "forbidden", None);
}

/// A node a publish makes (PEP auto-creation, XEP-0163 §3) with `pubsub#type` in its
/// publish-options takes that publish only if the payload is of that type (the recheck of
/// audit round 20: the first publish made the node and was kept, whatever its payload).
#[test]
fn a_node_made_by_a_publish_checks_its_type_on_that_publish() {
    let account = jid::BareJid::new("juliet@localhost").unwrap();
    let mut h = Harness::with_config(verona_pubsub::ServiceConfig::pep(account));
    let publish = |payload: &str| {
        format!(
            "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <publish node='urn:xmpp:po'><item id='c'>{payload}</item></publish>
               <publish-options><x xmlns='jabber:x:data' type='submit'>
                 <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>
                 <field var='pubsub#type'><value>urn:xmpp:po</value></field>
               </x></publish-options></pubsub></iq>"
        )
    };
    let wrong = h.ask(JULIET, &publish("<x xmlns='urn:other'/>"));
    assert_error(&wrong, "modify", "bad-request", Some("invalid-payload"));
    h.ok(JULIET, &publish("<x xmlns='urn:xmpp:po'/>"));
}

#[test]
fn retract_with_notify_tells_subscribers() {
    let mut h = musings();
    h.create(
        "quiet",
        &[
            ("pubsub#access_model", "open"),
            ("pubsub#notify_retract", "0"),
        ],
    );
    h.subscribe(ROMEO, "quiet");
    h.publish("quiet", "ae890ac52d0df67ed7cfdf51b644e901", "soliloquy");

    let silent = h.ok(
        JULIET,
        "<iq type='set' id='retract1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <retract node='quiet'><item id='ae890ac52d0df67ed7cfdf51b644e901'/></retract>
         </pubsub></iq>",
    );
    assert!(silent.is_empty());

    h.publish("quiet", "ae890ac52d0df67ed7cfdf51b644e901", "soliloquy");
    let handled = h.send(
        JULIET,
        "<iq type='set' id='retract1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <retract node='quiet' notify='true'>
             <item id='ae890ac52d0df67ed7cfdf51b644e901'/>
           </retract>
         </pubsub></iq>",
    );
    assert_xml(
        handled.reply.as_ref().unwrap(),
        "<iq xmlns='jabber:client' type='result' from='pubsub.localhost'
             to='juliet@localhost/balcony' id='retract1'/>",
    );
    let sent = h.rendered(&handled.effects);
    assert_eq!(sent.len(), 1);
    assert_stanza(
        &sent[0].1,
        "<message xmlns='jabber:client' from='pubsub.localhost' to='romeo@localhost' id='x' type='headline'>
           <event xmlns='http://jabber.org/protocol/pubsub#event'>
             <items node='quiet'>
               <retract id='ae890ac52d0df67ed7cfdf51b644e901'/>
             </items>
           </event>
         </message>",
    );
}

#[test]
fn retract_errors() {
    let mut h = musings();
    h.publish("princely_musings", "i1", "one");
    let no_id = h.ask(
        JULIET,
        "<iq type='set' id='r'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <retract node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&no_id, "modify", "bad-request", Some("item-required"));
    let unknown = h.ask(
        JULIET,
        "<iq type='set' id='r'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <retract node='princely_musings'><item id='nope'/></retract></pubsub></iq>",
    );
    assert_error(&unknown, "cancel", "item-not-found", None);
    let not_theirs = h.ask(
        ROMEO,
        "<iq type='set' id='r'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <retract node='princely_musings'><item id='i1'/></retract></pubsub></iq>",
    );
    assert_error(&not_theirs, "auth", "forbidden", None);
}
