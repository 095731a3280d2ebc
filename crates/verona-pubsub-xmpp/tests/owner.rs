//! XEP-0060 §8: create, configure, default configuration, delete, purge, subscription
//! requests (authorization forms by message, get-pending), subscriptions and affiliations.

mod common;

use common::{Harness, JULIET, NURSE, ROMEO, assert_error, assert_xml, xml};
use minidom::Element;
use verona_pubsub::Effect;

const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";

fn field_values(form: &Element, var: &str) -> Vec<String> {
    form.children()
        .find(|field| field.attr("var") == Some(var))
        .unwrap_or_else(|| panic!("field {var}"))
        .children()
        .filter(|child| child.name() == "value")
        .map(Element::text)
        .collect()
}

fn configuration_form(h: &mut Harness, node: &str) -> Element {
    let request = Element::builder("iq", "jabber:client")
        .attr("type".try_into().unwrap(), "get")
        .attr("id".try_into().unwrap(), "config1")
        .append(
            Element::builder("pubsub", OWNER)
                .append(
                    Element::builder("configure", OWNER)
                        .attr("node".try_into().unwrap(), node)
                        .build(),
                )
                .build(),
        )
        .build();
    let reply = h.ask(JULIET, &String::from(&request));
    reply
        .get_child("pubsub", OWNER)
        .and_then(|p| p.get_child("configure", OWNER))
        .and_then(|c| c.get_child("x", "jabber:x:data"))
        .unwrap_or_else(|| panic!("a form in {}", String::from(&reply)))
        .clone()
}

#[test]
fn create_named_node() {
    let mut h = Harness::new();
    let handled = h.send(
        JULIET,
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='create1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <create node='princely_musings'/>
           </pubsub>
         </iq>",
    );
    assert_xml(
        handled.reply.as_ref().unwrap(),
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='create1'/>",
    );
    assert!(handled.undo.is_some());
    assert!(matches!(
        handled.effects.first(),
        Some(verona_pubsub::Effect::Persist(verona_pubsub::StoreOp::NodeCreated { node, .. }))
            if node == "princely_musings"
    ));
    let again = h.ask(
        ROMEO,
        "<iq type='set' id='create1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <create node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&again, "cancel", "conflict", None);
}

#[test]
fn create_instant_node() {
    let mut h = Harness::new();
    let reply = h.ask(
        JULIET,
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='create2'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <create/>
           </pubsub>
         </iq>",
    );
    assert_xml(
        &reply,
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='create2'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <create node='id1'/>
           </pubsub>
         </iq>",
    );
}

#[test]
fn create_and_configure_applies_known_fields_and_ignores_the_others() {
    let mut h = Harness::new();
    // §8.1.3 Example, including fields Verona does not know (purge_offline, body_xslt).
    let reply = h.ask(
        JULIET,
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='create1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <create node='princely_musings'/>
             <configure>
               <x xmlns='jabber:x:data' type='submit'>
                 <field var='FORM_TYPE' type='hidden'>
                   <value>http://jabber.org/protocol/pubsub#node_config</value>
                 </field>
                 <field var='pubsub#title'><value>Princely Musings (Atom)</value></field>
                 <field var='pubsub#deliver_notifications'><value>1</value></field>
                 <field var='pubsub#deliver_payloads'><value>1</value></field>
                 <field var='pubsub#persist_items'><value>1</value></field>
                 <field var='pubsub#max_items'><value>10</value></field>
                 <field var='pubsub#item_expire'><value>604800</value></field>
                 <field var='pubsub#access_model'><value>open</value></field>
                 <field var='pubsub#publish_model'><value>publishers</value></field>
                 <field var='pubsub#purge_offline'><value>0</value></field>
                 <field var='pubsub#send_last_published_item'><value>never</value></field>
                 <field var='pubsub#presence_based_delivery'><value>false</value></field>
                 <field var='pubsub#notification_type'><value>headline</value></field>
                 <field var='pubsub#notify_config'><value>0</value></field>
                 <field var='pubsub#notify_delete'><value>0</value></field>
                 <field var='pubsub#notify_retract'><value>0</value></field>
                 <field var='pubsub#notify_sub'><value>0</value></field>
                 <field var='pubsub#max_payload_size'><value>1028</value></field>
                 <field var='pubsub#type'><value>urn:example:e2ee:bundle</value></field>
                 <field var='pubsub#body_xslt'>
                   <value>http://jabxslt.jabberstudio.org/atom_body.xslt</value>
                 </field>
               </x>
             </configure>
           </pubsub>
         </iq>",
    );
    assert_xml(
        &reply,
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='create1'/>",
    );
    let form = configuration_form(&mut h, "princely_musings");
    assert_eq!(
        field_values(&form, "pubsub#title"),
        ["Princely Musings (Atom)"]
    );
    assert_eq!(field_values(&form, "pubsub#access_model"), ["open"]);
    assert_eq!(field_values(&form, "pubsub#item_expire"), ["604800"]);
    assert_eq!(
        field_values(&form, "pubsub#send_last_published_item"),
        ["never"]
    );
    assert_eq!(field_values(&form, "pubsub#notify_delete"), ["false"]);
    assert_eq!(field_values(&form, "pubsub#max_payload_size"), ["1028"]);
    assert_eq!(
        field_values(&form, "pubsub#type"),
        ["urn:example:e2ee:bundle"]
    );
    assert!(
        form.children()
            .all(|f| f.attr("var") != Some("pubsub#body_xslt"))
    );
}

#[test]
fn create_errors() {
    let mut h = Harness::new();
    let collection = h.ask(
        JULIET,
        "<iq type='set' id='c'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <create node='c'/>
           <configure><x xmlns='jabber:x:data' type='submit'>
             <field var='pubsub#node_type'><value>collection</value></field>
           </x></configure>
         </pubsub></iq>",
    );
    assert_error(
        &collection,
        "cancel",
        "feature-not-implemented",
        Some("unsupported:collections"),
    );
    let bad_value = h.ask(
        JULIET,
        "<iq type='set' id='c'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <create node='c'/>
           <configure><x xmlns='jabber:x:data' type='submit'>
             <field var='pubsub#access_model'><value>everyone</value></field>
           </x></configure>
         </pubsub></iq>",
    );
    assert_error(&bad_value, "modify", "not-acceptable", None);

    let mut limited = verona_pubsub::ServiceConfig::pubsub();
    limited
        .access_models
        .remove(&verona_pubsub::AccessModel::Roster);
    let mut h = Harness::with_config(limited);
    let unsupported = h.ask(
        JULIET,
        "<iq type='set' id='create2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <create node='princely_musings'/>
           <configure><x xmlns='jabber:x:data' type='submit'>
             <field var='FORM_TYPE' type='hidden'>
               <value>http://jabber.org/protocol/pubsub#node_config</value>
             </field>
             <field var='pubsub#access_model'><value>roster</value></field>
           </x></configure>
         </pubsub></iq>",
    );
    assert_error(
        &unsupported,
        "modify",
        "not-acceptable",
        Some("unsupported-access-model"),
    );
}

#[test]
fn one_to_one_node_of_xep_0207_example_18() {
    let mut h = Harness::new();
    let reply = h.ask(
        JULIET,
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='create1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <create node='me_and_romeo'/>
             <configure>
               <x xmlns='jabber:x:data' type='submit'>
                 <field var='FORM_TYPE' type='hidden'>
                   <value>http://jabber.org/protocol/pubsub#node_config</value>
                 </field>
                 <field var='pubsub#access_model'><value>whitelist</value></field>
                 <field var='pubsub#publisher'><value>romeo@localhost</value></field>
               </x>
             </configure>
           </pubsub>
         </iq>",
    );
    assert_eq!(reply.attr("type"), Some("result"));
    let affiliations = h.ask(
        JULIET,
        "<iq type='get' id='ent1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <affiliations node='me_and_romeo'/></pubsub></iq>",
    );
    assert_xml(
        &affiliations,
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='ent1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <affiliations node='me_and_romeo'>
               <affiliation jid='juliet@localhost' affiliation='owner'/>
               <affiliation jid='romeo@localhost' affiliation='publisher'/>
             </affiliations>
           </pubsub>
         </iq>",
    );
    // The owner subscribes Romeo (Example 18's second request, with its errata fixed).
    let sent = h.ok(
        JULIET,
        "<iq type='set' id='manage1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <subscriptions node='me_and_romeo'>
             <subscription jid='romeo@localhost' subscription='subscribed'/>
           </subscriptions>
         </pubsub></iq>",
    );
    assert_eq!(sent.len(), 1, "Romeo is told he is subscribed");
    assert_eq!(sent[0].0, "romeo@localhost");
}

#[test]
fn default_configuration_form() {
    let mut h = Harness::new();
    let reply = h.ask(
        JULIET,
        "<iq type='get' from='juliet@localhost/balcony' to='pubsub.localhost' id='def1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <default/>
           </pubsub>
         </iq>",
    );
    assert_xml(
        &reply,
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='def1'>
          <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <default>
            <x xmlns='jabber:x:data' type='form'>
             <field var='FORM_TYPE' type='hidden'>
              <value>http://jabber.org/protocol/pubsub#node_config</value>
             </field>
             <field var='pubsub#access_model' type='list-single'
                    label='Who may subscribe and retrieve items'>
              <option><value>open</value></option>
              <option><value>presence</value></option>
              <option><value>roster</value></option>
              <option><value>authorize</value></option>
              <option><value>whitelist</value></option>
              <value>authorize</value>
             </field>
             <field var='pubsub#publish_model' type='list-single' label='The publisher model'>
              <option><value>publishers</value></option>
              <option><value>subscribers</value></option>
              <option><value>open</value></option>
              <value>publishers</value>
             </field>
             <field var='pubsub#max_items' label='Max # of items to persist'>
              <value>10</value>
             </field>
             <field var='pubsub#persist_items' type='boolean' label='Persist items to storage'>
              <value>true</value>
             </field>
             <field var='pubsub#deliver_notifications' type='boolean'
                    label='Deliver event notifications'>
              <value>true</value>
             </field>
             <field var='pubsub#deliver_payloads' type='boolean'
                    label='Deliver payloads with event notifications'>
              <value>true</value>
             </field>
             <field var='pubsub#notify_config' type='boolean'
                    label='Notify subscribers when the node configuration changes'>
              <value>false</value>
             </field>
             <field var='pubsub#notify_delete' type='boolean'
                    label='Notify subscribers when the node is deleted'>
              <value>true</value>
             </field>
             <field var='pubsub#notify_retract' type='boolean'
                    label='Notify subscribers when items are removed from the node'>
              <value>true</value>
             </field>
             <field var='pubsub#notify_sub' type='boolean'
                    label='Notify owners about new subscribers and unsubscribes'>
              <value>false</value>
             </field>
             <field var='pubsub#presence_based_delivery' type='boolean'
                    label='Deliver notifications only to available users'>
              <value>false</value>
             </field>
             <field var='pubsub#send_last_published_item' type='list-single'
                    label='When to send the last published item'>
              <option><value>never</value></option>
              <option><value>on_sub</value></option>
              <option><value>on_sub_and_presence</value></option>
              <value>on_sub_and_presence</value>
             </field>
             <field var='pubsub#notification_type' type='list-single'
                    label='Specify the delivery style for notifications'>
              <option><value>normal</value></option>
              <option><value>headline</value></option>
              <option><value>chat</value></option>
              <value>headline</value>
             </field>
             <field var='pubsub#itemreply' type='list-single'
                    label='Whether owners or publisher should receive replies to items'>
              <option><value>owner</value></option>
              <option><value>publisher</value></option>
              <option><value>none</value></option>
              <value>none</value>
             </field>
             <field var='pubsub#item_expire'
                    label='Number of seconds after which to automatically purge items'>
              <value>max</value>
             </field>
             <field var='pubsub#title' label='A friendly name for the node'><value/></field>
             <field var='pubsub#description' label='A description of the node'><value/></field>
             <field var='pubsub#type'
                    label='The semantic type information of data in the node'><value/></field>
             <field var='pubsub#roster_groups_allowed' type='text-multi'
                    label='Roster groups allowed to subscribe'/>
             <field var='pubsub#subscribe' type='boolean' label='Whether to allow subscriptions'>
              <value>true</value>
             </field>
             <field var='pubsub#max_payload_size' label='The maximum payload size in bytes'>
              <value>max</value>
             </field>
             <field var='pubsub#tempsub' type='boolean'
                    label='Make all subscriptions temporary, based on subscriber presence'>
              <value>false</value>
             </field>
            </x>
           </default>
          </pubsub>
         </iq>",
    );
    let collection = h.ask(
        JULIET,
        "<iq type='get' id='def1collection'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><default type='collection'/></pubsub>
         </iq>",
    );
    assert_error(
        &collection,
        "cancel",
        "feature-not-implemented",
        Some("unsupported:collections"),
    );
}

#[test]
fn configure_set_then_get_and_notify_config() {
    let mut h = Harness::new();
    h.create(
        "princely_musings",
        &[
            ("pubsub#access_model", "open"),
            ("pubsub#notify_config", "1"),
        ],
    );
    h.subscribe(ROMEO, "princely_musings");
    // §8.2.4 Example, notify_config kept on to see the notification.
    let handled = h.send(
        JULIET,
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='config2'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <configure node='princely_musings'>
               <x xmlns='jabber:x:data' type='submit'>
                 <field var='FORM_TYPE' type='hidden'>
                   <value>http://jabber.org/protocol/pubsub#node_config</value>
                 </field>
                 <field var='pubsub#title'><value>Princely Musings (Atom)</value></field>
                 <field var='pubsub#max_items'><value>10</value></field>
                 <field var='pubsub#access_model'><value>open</value></field>
                 <field var='pubsub#roster_groups_allowed'>
                   <value>friends</value>
                   <value>servants</value>
                   <value>courtiers</value>
                 </field>
                 <field var='pubsub#purge_offline'><value>0</value></field>
               </x>
             </configure>
           </pubsub>
         </iq>",
    );
    assert_xml(
        handled.reply.as_ref().unwrap(),
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='config2'/>",
    );
    let form = configuration_form(&mut h, "princely_musings");
    assert_eq!(form.attr("type"), Some("form"));
    assert_eq!(
        field_values(&form, "pubsub#title"),
        ["Princely Musings (Atom)"]
    );
    assert_eq!(
        field_values(&form, "pubsub#roster_groups_allowed"),
        ["friends", "servants", "courtiers"]
    );
    let sent = h.rendered(&handled.effects);
    assert_eq!(sent.len(), 1);
    let configuration = sent[0]
        .1
        .get_child("event", "http://jabber.org/protocol/pubsub#event")
        .and_then(|e| e.get_child("configuration", "http://jabber.org/protocol/pubsub#event"))
        .expect("a configuration notification");
    assert_eq!(configuration.attr("node"), Some("princely_musings"));
    let result = configuration
        .get_child("x", "jabber:x:data")
        .expect("the new configuration");
    assert_eq!(result.attr("type"), Some("result"));
    assert_eq!(
        field_values(result, "pubsub#title"),
        ["Princely Musings (Atom)"]
    );
    assert!(
        result
            .children()
            .all(|field| field.children().all(|c| c.name() != "option"))
    );
}

#[test]
fn configure_errors_and_cancel() {
    let mut h = Harness::new();
    h.create("princely_musings", &[]);
    let not_owner = h.ask(
        ROMEO,
        "<iq type='get' id='config1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <configure node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&not_owner, "auth", "forbidden", None);
    let no_node = h.ask(
        JULIET,
        "<iq type='get' id='config1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <configure/></pubsub></iq>",
    );
    assert_error(&no_node, "modify", "bad-request", Some("nodeid-required"));
    let missing = h.ask(
        JULIET,
        "<iq type='get' id='config1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <configure node='nowhere'/></pubsub></iq>",
    );
    assert_error(&missing, "cancel", "item-not-found", None);
    let cancel = h.send(
        JULIET,
        "<iq type='set' id='config2'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <configure node='princely_musings'><x xmlns='jabber:x:data' type='cancel'/></configure>
         </pubsub></iq>",
    );
    assert_eq!(cancel.reply.unwrap().attr("type"), Some("result"));
    assert!(cancel.effects.is_empty());
    let no_form = h.ask(
        JULIET,
        "<iq type='set' id='config3'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <configure node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&no_form, "modify", "bad-request", None);
}

#[test]
fn delete_with_redirect_notifies_subscribers() {
    let mut h = Harness::new();
    h.create("princely_musings", &[("pubsub#access_model", "open")]);
    h.subscribe(ROMEO, "princely_musings");
    let forbidden = h.ask(
        ROMEO,
        "<iq type='set' id='delete1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <delete node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&forbidden, "auth", "forbidden", None);
    let handled = h.send(
        JULIET,
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='delete1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <delete node='princely_musings'>
               <redirect uri='xmpp:juliet@localhost?;node=blog'/>
             </delete>
           </pubsub>
         </iq>",
    );
    assert_xml(
        handled.reply.as_ref().unwrap(),
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='delete1'/>",
    );
    let sent = h.rendered(&handled.effects);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "romeo@localhost");
    assert_xml(
        sent[0]
            .1
            .get_child("event", "http://jabber.org/protocol/pubsub#event")
            .unwrap(),
        "<event xmlns='http://jabber.org/protocol/pubsub#event'>
           <delete node='princely_musings'>
             <redirect uri='xmpp:juliet@localhost?;node=blog'/>
           </delete>
         </event>",
    );
    let gone = h.ask(
        JULIET,
        "<iq type='set' id='delete2'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <delete node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&gone, "cancel", "item-not-found", None);
}

#[test]
fn purge_removes_items_and_notifies_once() {
    let mut h = Harness::new();
    h.create("princely_musings", &[("pubsub#access_model", "open")]);
    h.subscribe(ROMEO, "princely_musings");
    h.publish("princely_musings", "i1", "one");
    h.publish("princely_musings", "i2", "two");
    let sent = h.ok(
        JULIET,
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='purge1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <purge node='princely_musings'/>
           </pubsub>
         </iq>",
    );
    assert_eq!(sent.len(), 1);
    assert_xml(
        sent[0]
            .1
            .get_child("event", "http://jabber.org/protocol/pubsub#event")
            .unwrap(),
        "<event xmlns='http://jabber.org/protocol/pubsub#event'>
           <purge node='princely_musings'/>
         </event>",
    );
    let items = h.ask(
        ROMEO,
        "<iq type='get' id='items1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <items node='princely_musings'/></pubsub></iq>",
    );
    assert_xml(
        &items,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='items1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <items node='princely_musings'/>
           </pubsub>
         </iq>",
    );
}

/// An authorize node with one item, and Romeo's pending subscription; returns its SubID.
fn pending_romeo(h: &mut Harness) -> String {
    h.create("princely_musings", &[]);
    h.publish("princely_musings", "i1", "soliloquy");
    h.subscribe(ROMEO, "princely_musings")
}

#[test]
fn owner_approves_by_submitting_the_form() {
    let mut h = Harness::new();
    let subid = pending_romeo(&mut h);
    // §8.6 Example, at whatever address the owner sent it.
    let approve = [
        "<message from='juliet@localhost/balcony' to='localhost' id='approve1'>
           <x xmlns='jabber:x:data' type='submit'>
             <field var='FORM_TYPE' type='hidden'>
               <value>http://jabber.org/protocol/pubsub#subscribe_authorization</value>
             </field>
             <field var='pubsub#subid'><value>",
        &subid,
        "</value></field>
             <field var='pubsub#node'><value>princely_musings</value></field>
             <field var='pubsub#subscriber_jid'><value>romeo@localhost</value></field>
             <field var='pubsub#allow'><value>true</value></field>
           </x>
         </message>",
    ]
    .concat();
    let handled = h.send(JULIET, &approve);
    assert!(handled.reply.is_none());
    assert!(handled.undo.is_some());
    let sent = h.rendered(&handled.effects);
    let events: Vec<Element> = sent
        .iter()
        .map(|(to, message)| {
            assert_eq!(to, "romeo@localhost");
            message
                .get_child("event", "http://jabber.org/protocol/pubsub#event")
                .unwrap()
                .clone()
        })
        .collect();
    assert_xml(
        &events[0],
        "<event xmlns='http://jabber.org/protocol/pubsub#event'>
           <subscription node='princely_musings' jid='romeo@localhost'
                         subscription='subscribed' subid='id1'/>
         </event>",
    );
    // The last published item follows, stamped with its publication time.
    assert_xml(
        &events[1],
        "<event xmlns='http://jabber.org/protocol/pubsub#event'>
           <items node='princely_musings'>
             <item id='i1'><p xmlns='urn:test'>soliloquy</p></item>
           </items>
         </event>",
    );
    let delay = sent[1].1.get_child("delay", "urn:xmpp:delay").unwrap();
    assert_eq!(delay.attr("stamp"), Some("2023-11-14T22:13:20Z"));
}

#[test]
fn owner_denies_with_the_seed_spelling_of_the_subscriber_field() {
    let mut h = Harness::new();
    pending_romeo(&mut h);
    // XEP-0207 Example 10's misspelt field, and no SubID.
    let handled = h.send(
        JULIET,
        "<message from='juliet@localhost/balcony' to='montague.lit' id='approve1'>
           <x xmlns='jabber:x:data' type='submit'>
             <field var='FORM_TYPE' type='hidden'>
               <value>http://jabber.org/protocol/pubsub#subscribe_authorization</value>
             </field>
             <field var='pubsub#node'><value>princely_musings</value></field>
             <field var='pusub#subscriber_jid'><value>romeo@localhost</value></field>
             <field var='pubsub#allow'><value>false</value></field>
           </x>
         </message>",
    );
    assert!(handled.reply.is_none());
    let sent = h.rendered(&handled.effects);
    assert_eq!(sent.len(), 1);
    assert_xml(
        sent[0]
            .1
            .get_child("event", "http://jabber.org/protocol/pubsub#event")
            .unwrap(),
        "<event xmlns='http://jabber.org/protocol/pubsub#event'>
           <subscription node='princely_musings' jid='romeo@localhost'
                         subscription='none' subid='id1'/>
         </event>",
    );
    // The subscription is gone: Romeo may ask again.
    let again = h.ask(
        ROMEO,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='romeo@localhost'/></pubsub></iq>",
    );
    assert_eq!(again.attr("type"), Some("result"));
}

#[test]
fn authorization_forms_from_non_owners_and_cancelled_forms() {
    let mut h = Harness::new();
    pending_romeo(&mut h);
    let form = "<message id='approve1'>
           <x xmlns='jabber:x:data' type='submit'>
             <field var='FORM_TYPE' type='hidden'>
               <value>http://jabber.org/protocol/pubsub#subscribe_authorization</value>
             </field>
             <field var='pubsub#node'><value>princely_musings</value></field>
             <field var='pubsub#subscriber_jid'><value>romeo@localhost</value></field>
             <field var='pubsub#allow'><value>true</value></field>
           </x>
         </message>";
    let intruder = h.send(NURSE, form);
    let reply = intruder.reply.expect("an error message");
    assert_eq!(reply.name(), "message");
    assert_error(&reply, "auth", "forbidden", None);
    assert!(intruder.effects.is_empty());

    let cancelled = h.send(
        JULIET,
        "<message id='approve1'><x xmlns='jabber:x:data' type='cancel'>
           <field var='FORM_TYPE' type='hidden'>
             <value>http://jabber.org/protocol/pubsub#subscribe_authorization</value>
           </field>
         </x></message>",
    );
    assert!(cancelled.reply.is_none() && cancelled.effects.is_empty());
    let chat = h.send(JULIET, "<message type='chat'><body>hi</body></message>");
    assert!(chat.reply.is_none() && chat.effects.is_empty());
}

#[test]
fn get_pending_by_ad_hoc_command() {
    let mut h = Harness::new();
    pending_romeo(&mut h);
    h.create("news_from_elsinore", &[]);
    let reply = h.ask(
        JULIET,
        "<iq type='set' from='juliet@localhost/balcony' to='pubsub.localhost' id='pending1'>
           <command xmlns='http://jabber.org/protocol/commands'
                    node='http://jabber.org/protocol/pubsub#get-pending'
                    action='execute'/>
         </iq>",
    );
    let command = reply
        .get_child("command", "http://jabber.org/protocol/commands")
        .expect("a command");
    let sessionid = command.attr("sessionid").expect("a session").to_owned();
    let mut expected = xml("<command xmlns='http://jabber.org/protocol/commands'
                  node='http://jabber.org/protocol/pubsub#get-pending'
                  sessionid='s' status='executing'>
           <actions execute='complete'><complete/></actions>
           <x xmlns='jabber:x:data' type='form'>
             <field var='FORM_TYPE' type='hidden'>
               <value>http://jabber.org/protocol/pubsub#subscribe_authorization</value>
             </field>
             <field type='list-single' var='pubsub#node' label='Node ID'>
               <option><value>news_from_elsinore</value></option>
               <option><value>princely_musings</value></option>
             </field>
           </x>
         </command>");
    expected.set_attr(
        minidom::rxml::Namespace::NONE,
        "sessionid".try_into().unwrap(),
        sessionid.as_str(),
    );
    assert_xml(command, &String::from(&expected));

    let submit = [
        "<iq type='set' to='pubsub.localhost' id='pending2'>
           <command xmlns='http://jabber.org/protocol/commands' sessionid='",
        &sessionid,
        "' node='http://jabber.org/protocol/pubsub#get-pending' action='execute'>
             <x xmlns='jabber:x:data' type='submit'>
               <field var='pubsub#node'><value>princely_musings</value></field>
             </x>
           </command>
         </iq>",
    ]
    .concat();
    let handled = h.send(JULIET, &submit);
    let done = handled.reply.as_ref().unwrap();
    let command = done
        .get_child("command", "http://jabber.org/protocol/commands")
        .unwrap();
    assert_eq!(command.attr("status"), Some("completed"));
    assert_eq!(command.attr("sessionid"), Some(sessionid.as_str()));
    let sent = h.rendered(&handled.effects);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "juliet@localhost");
    let form = sent[0].1.get_child("x", "jabber:x:data").unwrap();
    assert_eq!(
        field_values(form, "pubsub#subscriber_jid"),
        ["romeo@localhost"]
    );

    let stranger = h.ask(
        NURSE,
        "<iq type='set' id='pending1'><command xmlns='http://jabber.org/protocol/commands'
           node='http://jabber.org/protocol/pubsub#get-pending' action='execute'/></iq>",
    );
    assert_error(&stranger, "auth", "forbidden", None);
    let unknown = h.ask(
        JULIET,
        "<iq type='set' id='c'><command xmlns='http://jabber.org/protocol/commands'
           node='urn:unknown' action='execute'/></iq>",
    );
    assert_error(&unknown, "cancel", "item-not-found", None);
}

#[test]
fn owner_manages_subscriptions() {
    let mut h = Harness::with_config(verona_pubsub::ServiceConfig {
        owners_subscribe_others: true,
        ..verona_pubsub::ServiceConfig::pubsub()
    });
    let subid = pending_romeo(&mut h);
    let invalid = h.ask(
        JULIET,
        "<iq type='set' id='subman3'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <subscriptions node='princely_musings'>
             <subscription jid='romeo@localhost' subscription='unconfigured'/>
           </subscriptions>
         </pubsub></iq>",
    );
    assert_xml(
        &invalid,
        "<iq type='error' from='pubsub.localhost' to='juliet@localhost/balcony' id='subman3'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <subscriptions node='princely_musings'>
               <subscription jid='romeo@localhost' subscription='pending'/>
             </subscriptions>
           </pubsub>
           <error type='modify'>
             <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
           </error>
         </iq>",
    );
    let sent = h.ok(
        JULIET,
        "<iq type='set' id='subman2'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <subscriptions node='princely_musings'>
             <subscription jid='romeo@localhost' subscription='subscribed'/>
             <subscription jid='nurse@localhost' subscription='subscribed'/>
           </subscriptions>
         </pubsub></iq>",
    );
    assert!(sent.iter().any(|(to, _)| to == "nurse@localhost"));
    let list = h.ask(
        JULIET,
        "<iq type='get' id='subman1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <subscriptions node='princely_musings'/></pubsub></iq>",
    );
    let expected = [
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='subman1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <subscriptions node='princely_musings'>
               <subscription jid='nurse@localhost' subscription='subscribed' subid='id2'/>
               <subscription jid='romeo@localhost' subscription='subscribed' subid='",
        &subid,
        "'/>
             </subscriptions>
           </pubsub>
         </iq>",
    ]
    .concat();
    assert_xml(&list, &expected);
    let removed = h.ok(
        JULIET,
        "<iq type='set' id='subman4'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <subscriptions node='princely_musings'>
             <subscription jid='nurse@localhost' subscription='none'/>
           </subscriptions>
         </pubsub></iq>",
    );
    assert_eq!(removed.len(), 1);
    // §8.8.2.4: of several entries, the refused ones come back in their current state and the
    // others are done.
    let mixed = h.send(
        JULIET,
        "<iq type='set' id='subman5'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <subscriptions node='princely_musings'>
             <subscription jid='romeo@localhost' subscription='unconfigured'/>
             <subscription jid='benvolio@localhost' subscription='subscribed'/>
           </subscriptions>
         </pubsub></iq>",
    );
    assert_xml(
        mixed.reply.as_ref().unwrap(),
        "<iq type='error' from='pubsub.localhost' to='juliet@localhost/balcony' id='subman5'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <subscriptions node='princely_musings'>
               <subscription jid='romeo@localhost' subscription='subscribed'/>
             </subscriptions>
           </pubsub>
           <error type='modify'>
             <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
           </error>
         </iq>",
    );
    let told = h.rendered(&mixed.effects);
    assert!(
        told.iter().any(|(to, _)| to == "benvolio@localhost"),
        "{told:?}"
    );
    let list = h.ask(
        JULIET,
        "<iq type='get' id='subman6'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <subscriptions node='princely_musings'/></pubsub></iq>",
    );
    let listed: Vec<&str> = list
        .get_child("pubsub", OWNER)
        .and_then(|p| p.get_child("subscriptions", OWNER))
        .into_iter()
        .flat_map(|s| s.children())
        .filter_map(|s| s.attr("jid"))
        .collect();
    assert_eq!(listed, ["benvolio@localhost", "romeo@localhost"]);
    let forbidden = h.ask(
        ROMEO,
        "<iq type='get' id='subman1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <subscriptions node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&forbidden, "auth", "forbidden", None);
}

#[test]
fn owner_manages_affiliations() {
    let mut h = Harness::new();
    h.create("princely_musings", &[]);
    let set = h.send(
        JULIET,
        "<iq type='set' id='ent2'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <affiliations node='princely_musings'>
             <affiliation jid='romeo@localhost' affiliation='publisher'/>
             <affiliation jid='nurse@localhost' affiliation='outcast'/>
           </affiliations>
         </pubsub></iq>",
    );
    assert_xml(
        set.reply.as_ref().unwrap(),
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='ent2'/>",
    );
    // §8.9.2.4 Example: the last owner cannot leave; the offending entry comes back, and the
    // entries the error does not list are done.
    let last_owner = h.send(
        JULIET,
        "<iq type='set' id='ent3'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <affiliations node='princely_musings'>
             <affiliation jid='juliet@localhost' affiliation='none'/>
             <affiliation jid='benvolio@localhost' affiliation='member'/>
             <affiliation jid='romeo@localhost' affiliation='publisher'/>
           </affiliations>
         </pubsub></iq>",
    );
    assert!(
        last_owner
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::Persist(_))),
        "the member is stored"
    );
    let last_owner = last_owner.reply.unwrap();
    assert_xml(
        &last_owner,
        "<iq type='error' from='pubsub.localhost' to='juliet@localhost/balcony' id='ent3'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <affiliations node='princely_musings'>
               <affiliation jid='juliet@localhost' affiliation='owner'/>
             </affiliations>
           </pubsub>
           <error type='modify'>
             <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
           </error>
         </iq>",
    );
    let list = h.ask(
        JULIET,
        "<iq type='get' id='ent1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <affiliations node='princely_musings'/></pubsub></iq>",
    );
    assert_xml(
        &list,
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='ent1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
             <affiliations node='princely_musings'>
               <affiliation jid='benvolio@localhost' affiliation='member'/>
               <affiliation jid='juliet@localhost' affiliation='owner'/>
               <affiliation jid='nurse@localhost' affiliation='outcast'/>
               <affiliation jid='romeo@localhost' affiliation='publisher'/>
             </affiliations>
           </pubsub>
         </iq>",
    );
    let unknown = h.ask(
        JULIET,
        "<iq type='set' id='ent4'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <affiliations node='princely_musings'>
             <affiliation jid='romeo@localhost' affiliation='king'/>
           </affiliations>
         </pubsub></iq>",
    );
    let echoed = unknown
        .get_child("pubsub", OWNER)
        .and_then(|p| p.get_child("affiliations", OWNER))
        .and_then(|a| a.get_child("affiliation", OWNER))
        .and_then(|a| a.attr("affiliation"));
    assert_eq!(echoed, Some("publisher"));
    assert_error(&unknown, "modify", "not-acceptable", None);
    let twice = h.ask(
        JULIET,
        "<iq type='set' id='ent5'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <affiliations node='princely_musings'>
             <affiliation jid='romeo@localhost' affiliation='member'/>
             <affiliation jid='romeo@localhost' affiliation='outcast'/>
           </affiliations>
         </pubsub></iq>",
    );
    assert_error(&twice, "modify", "bad-request", None);
    // The outcast is refused.
    let outcast = h.ask(
        NURSE,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='nurse@localhost'/></pubsub></iq>",
    );
    assert_error(&outcast, "auth", "forbidden", None);
}
