//! XEP-0060 §5.6–§5.7 and §6: own subscriptions and affiliations, subscribe, unsubscribe,
//! subscription options, item retrieval with XEP-0059 paging.

mod common;

use common::{Harness, JULIET, NURSE, ROMEO, assert_error, assert_xml};

fn open_node(h: &mut Harness) {
    h.create("princely_musings", &[("pubsub#access_model", "open")]);
}

#[test]
fn subscribe_with_bare_jid() {
    let mut h = Harness::new();
    open_node(&mut h);
    let reply = h.ask(
        ROMEO,
        "<iq type='set' from='romeo@localhost/orchard' to='pubsub.localhost' id='sub1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <subscribe node='princely_musings' jid='romeo@localhost'/>
           </pubsub>
         </iq>",
    );
    assert_xml(
        &reply,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='sub1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <subscription node='princely_musings' jid='romeo@localhost' subid='id1'
                           subscription='subscribed'/>
           </pubsub>
         </iq>",
    );
}

#[test]
fn subscribe_with_full_jid_and_mismatching_jid() {
    let mut h = Harness::new();
    open_node(&mut h);
    let reply = h.ask(
        ROMEO,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='romeo@localhost/orchard'/>
         </pubsub></iq>",
    );
    let subscription = reply
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("subscription", common::PUBSUB))
        .unwrap();
    assert_eq!(subscription.attr("jid"), Some("romeo@localhost/orchard"));
    assert_eq!(subscription.attr("subscription"), Some("subscribed"));

    let mismatch = h.ask(
        ROMEO,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='nurse@localhost'/>
         </pubsub></iq>",
    );
    assert_xml(
        &mismatch,
        "<iq type='error' from='pubsub.localhost' to='romeo@localhost/orchard' id='sub1'>
           <error type='modify'>
             <bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
             <invalid-jid xmlns='http://jabber.org/protocol/pubsub#errors'/>
           </error>
         </iq>",
    );
}

#[test]
fn subscribe_to_authorize_node_is_pending_and_asks_the_owners() {
    let mut h = Harness::new();
    h.create("princely_musings", &[]);
    let handled = h.send(
        ROMEO,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='romeo@localhost'/>
         </pubsub></iq>",
    );
    assert_xml(
        handled.reply.as_ref().unwrap(),
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='sub1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <subscription node='princely_musings' jid='romeo@localhost' subid='id1'
                           subscription='pending'/>
           </pubsub>
         </iq>",
    );
    let sent = h.rendered(&handled.effects);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "juliet@localhost");
    let form = sent[0].1.get_child("x", "jabber:x:data").expect("the form");
    assert_xml(
        form,
        "<x xmlns='jabber:x:data' type='form'>
           <title>PubSub subscriber request</title>
           <instructions>To approve this entity's subscription request, click the OK button. To deny the request, click the cancel button.</instructions>
           <field var='FORM_TYPE' type='hidden'>
             <value>http://jabber.org/protocol/pubsub#subscribe_authorization</value>
           </field>
           <field var='pubsub#subid' type='hidden'><value>id1</value></field>
           <field var='pubsub#node' label='Node ID'><value>princely_musings</value></field>
           <field var='pubsub#subscriber_jid' type='jid-single' label='Subscriber Address'>
             <value>romeo@localhost</value>
           </field>
           <field var='pubsub#allow' type='boolean'
                  label='Allow this JID to subscribe to this pubsub node?'>
             <value>false</value>
           </field>
         </x>",
    );

    // While pending: no items, and no second request.
    let items = h.ask(
        ROMEO,
        "<iq type='get' id='items1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <items node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&items, "auth", "not-authorized", Some("not-subscribed"));
    let again = h.ask(
        ROMEO,
        "<iq type='set' id='sub2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='romeo@localhost'/></pubsub></iq>",
    );
    assert_error(
        &again,
        "auth",
        "not-authorized",
        Some("pending-subscription"),
    );
}

#[test]
fn subscription_that_must_be_configured_says_so() {
    let mut config = verona_pubsub::ServiceConfig::pubsub();
    config.subscription_options = verona_pubsub::SubscriptionOptionsPolicy::Required;
    let mut h = Harness::with_config(config);
    open_node(&mut h);
    let reply = h.ask(
        ROMEO,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='romeo@localhost'/></pubsub></iq>",
    );
    assert_xml(
        &reply,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='sub1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <subscription node='princely_musings' jid='romeo@localhost' subid='id1'
                           subscription='unconfigured'>
               <subscribe-options><required/></subscribe-options>
             </subscription>
           </pubsub>
         </iq>",
    );
}

#[test]
fn whitelist_node_refuses_strangers() {
    let mut h = Harness::new();
    h.create("me_and_romeo", &[("pubsub#access_model", "whitelist")]);
    let reply = h.ask(
        NURSE,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='me_and_romeo' jid='nurse@localhost'/></pubsub></iq>",
    );
    assert_xml(
        &reply,
        "<iq type='error' from='pubsub.localhost' to='nurse@localhost/chamber' id='sub1'>
           <error type='cancel'>
             <not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
             <closed-node xmlns='http://jabber.org/protocol/pubsub#errors'/>
           </error>
         </iq>",
    );
}

#[test]
fn subscribe_to_missing_node_and_without_jid() {
    let mut h = Harness::new();
    let missing = h.ask(
        ROMEO,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='nowhere' jid='romeo@localhost'/></pubsub></iq>",
    );
    assert_error(&missing, "cancel", "item-not-found", None);
    let no_jid = h.ask(
        ROMEO,
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='nowhere'/></pubsub></iq>",
    );
    assert_error(&no_jid, "modify", "bad-request", Some("jid-required"));
}

const OPTIONS_FORM: &str = "<x xmlns='jabber:x:data' type='submit'>
    <field var='FORM_TYPE' type='hidden'>
      <value>http://jabber.org/protocol/pubsub#subscribe_options</value>
    </field>
    <field var='pubsub#deliver'><value>1</value></field>
    <field var='pubsub#digest'><value>0</value></field>
    <field var='pubsub#include_body'><value>false</value></field>
    <field var='pubsub#show-values'>
      <value>chat</value>
      <value>online</value>
      <value>away</value>
    </field>
  </x>";

#[test]
fn subscribe_and_configure_returns_the_resulting_options() {
    let mut h = Harness::new();
    open_node(&mut h);
    let request = [
        "<iq type='set' id='sub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='romeo@localhost'/>
           <options>",
        OPTIONS_FORM,
        "</options></pubsub></iq>",
    ]
    .concat();
    let reply = h.ask(ROMEO, &request);
    assert_xml(
        &reply,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='sub1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <subscription node='princely_musings' jid='romeo@localhost' subid='id1'
                           subscription='subscribed'/>
             <options>
               <x xmlns='jabber:x:data' type='result'>
                 <field var='FORM_TYPE' type='hidden'>
                   <value>http://jabber.org/protocol/pubsub#subscribe_options</value>
                 </field>
                 <field var='pubsub#deliver' type='boolean' label='Enable delivery?'>
                   <value>true</value>
                 </field>
                 <field var='pubsub#digest' type='boolean' label='Receive digest notifications?'>
                   <value>false</value>
                 </field>
                 <field var='pubsub#include_body' type='boolean'
                        label='Receive message body in addition to payload?'>
                   <value>false</value>
                 </field>
                 <field var='pubsub#show-values' type='list-multi'
                        label='Select the presence types which are allowed to receive event notifications'>
                   <value>away</value>
                   <value>chat</value>
                   <value>online</value>
                 </field>
               </x>
             </options>
           </pubsub>
         </iq>",
    );
}

#[test]
fn subscribe_options_may_repeat_the_subscribe_node_and_jid_but_not_differ() {
    let mut h = Harness::with_config(verona_pubsub::ServiceConfig::groupchat());
    h.create("characters", &[("pubsub#access_model", "open")]);
    // XEP-0207 Example 13.
    let reply = h.ask(
        JULIET,
        "<iq type='set' from='juliet@localhost/balcony' to='chat.localhost' id='sub2'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <subscribe node='characters' jid='juliet@localhost/balcony'/>
             <options node='characters' jid='juliet@localhost/balcony'>
               <x xmlns='jabber:x:data' type='submit'>
                 <field var='FORM_TYPE' type='hidden'>
                   <value>http://jabber.org/protocol/pubsub#subscribe_options</value>
                 </field>
                 <field var='roomnick'><value>JC</value></field>
               </x>
             </options>
           </pubsub>
         </iq>",
    );
    assert_eq!(reply.attr("type"), Some("result"));
    let other = h.ask(
        ROMEO,
        "<iq type='set' id='sub3'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='characters' jid='romeo@localhost/orchard'/>
           <options node='elsewhere'/>
         </pubsub></iq>",
    );
    assert_error(&other, "modify", "bad-request", None);
    // The nick is taken.
    let taken = h.ask(
        ROMEO,
        "<iq type='set' id='sub4'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='characters' jid='romeo@localhost/orchard'/>
           <options><x xmlns='jabber:x:data' type='submit'>
             <field var='roomnick'><value>JC</value></field>
           </x></options>
         </pubsub></iq>",
    );
    assert_error(&taken, "cancel", "conflict", None);
}

#[test]
fn options_get_and_set() {
    let mut h = Harness::new();
    open_node(&mut h);
    h.subscribe(ROMEO, "princely_musings");
    let get = "<iq type='get' from='romeo@localhost/orchard' to='pubsub.localhost' id='options1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <options node='princely_musings' jid='romeo@localhost'/>
           </pubsub>
         </iq>";
    let reply = h.ask(ROMEO, get);
    assert_xml(
        &reply,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='options1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <options node='princely_musings' jid='romeo@localhost'>
               <x xmlns='jabber:x:data' type='form'>
                 <field var='FORM_TYPE' type='hidden'>
                   <value>http://jabber.org/protocol/pubsub#subscribe_options</value>
                 </field>
                 <field var='pubsub#deliver' type='boolean' label='Enable delivery?'>
                   <value>true</value>
                 </field>
                 <field var='pubsub#digest' type='boolean' label='Receive digest notifications?'>
                   <value>false</value>
                 </field>
                 <field var='pubsub#include_body' type='boolean'
                        label='Receive message body in addition to payload?'>
                   <value>false</value>
                 </field>
               </x>
             </options>
           </pubsub>
         </iq>",
    );

    let set = [
        "<iq type='set' id='options2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <options node='princely_musings' jid='romeo@localhost'>",
        OPTIONS_FORM,
        "</options></pubsub></iq>",
    ]
    .concat();
    let handled = h.send(ROMEO, &set);
    assert_xml(
        handled.reply.as_ref().unwrap(),
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='options2'/>",
    );
    assert!(handled.undo.is_some());
    let after = String::from(&h.ask(ROMEO, get));
    assert!(after.contains("pubsub#show-values"), "{after}");

    // Fields the service does not know are ignored (XEP-0004 §3.3).
    let unknown = h.ask(
        ROMEO,
        "<iq type='set' id='options4'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <options node='princely_musings' jid='romeo@localhost'>
             <x xmlns='jabber:x:data' type='submit'>
               <field var='pubsub#subscription_type'><value>items</value></field>
               <field var='pubsub#include_body'><value>1</value></field>
             </x>
           </options></pubsub></iq>",
    );
    assert_eq!(unknown.attr("type"), Some("result"));

    let bad = h.ask(
        ROMEO,
        "<iq type='set' id='options3'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <options node='princely_musings' jid='romeo@localhost'>
             <x xmlns='jabber:x:data' type='submit'>
               <field var='pubsub#deliver'><value>perhaps</value></field>
             </x>
           </options></pubsub></iq>",
    );
    assert_error(&bad, "modify", "bad-request", Some("invalid-options"));
}

#[test]
fn options_errors() {
    let mut h = Harness::new();
    open_node(&mut h);
    let not_subscribed = h.ask(
        NURSE,
        "<iq type='get' id='options1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <options node='princely_musings' jid='nurse@localhost'/></pubsub></iq>",
    );
    // §6.3.4.2's "No such subscriber": `modify` (unsubscribing's, §6.2.3.2, is `cancel`).
    assert_error(
        &not_subscribed,
        "modify",
        "unexpected-request",
        Some("not-subscribed"),
    );
    let someone_else = h.ask(
        NURSE,
        "<iq type='get' id='options1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <options node='princely_musings' jid='romeo@localhost'/></pubsub></iq>",
    );
    assert_error(&someone_else, "auth", "forbidden", None);
    let no_jid = h.ask(
        NURSE,
        "<iq type='get' id='options1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <options node='princely_musings'/></pubsub></iq>",
    );
    assert_error(&no_jid, "modify", "bad-request", Some("jid-required"));
}

#[test]
fn default_subscription_options() {
    let mut h = Harness::new();
    open_node(&mut h);
    let reply = h.ask(
        ROMEO,
        "<iq type='get' id='def1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <default node='princely_musings'/></pubsub></iq>",
    );
    let default = reply
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("default", common::PUBSUB))
        .unwrap();
    assert_eq!(default.attr("node"), Some("princely_musings"));
    let form = default.get_child("x", "jabber:x:data").unwrap();
    assert_eq!(form.attr("type"), Some("result"));
    let missing = h.ask(
        ROMEO,
        "<iq type='get' id='def1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <default node='nowhere'/></pubsub></iq>",
    );
    assert_error(&missing, "cancel", "item-not-found", None);
}

/// Romeo's bare JID subscribed twice to an open node (the second with options); the first
/// SubID.
fn subscribed_twice() -> (Harness, String) {
    let mut h = Harness::new();
    open_node(&mut h);
    let first = h.subscribe(ROMEO, "princely_musings");
    let second_request = [
        "<iq type='set' id='sub2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscribe node='princely_musings' jid='romeo@localhost'/><options>",
        OPTIONS_FORM,
        "</options></pubsub></iq>",
    ]
    .concat();
    assert_eq!(h.ask(ROMEO, &second_request).attr("type"), Some("result"));
    (h, first)
}

/// §6.5.9.1–2: a retrieval by an entity with several subscriptions names one of them, also
/// on an open node, where nobody needs a subscription to retrieve.
#[test]
fn items_with_several_subscriptions_need_the_subid() {
    let (mut h, first) = subscribed_twice();

    let items = |subid: Option<&str>| {
        let attr = subid
            .map(|s| [" subid='", s, "'"].concat())
            .unwrap_or_default();
        [
            "<iq type='get' id='items1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <items node='princely_musings'",
            &attr,
            "/></pubsub></iq>",
        ]
        .concat()
    };
    let without = h.ask(ROMEO, &items(None));
    assert_error(&without, "modify", "bad-request", Some("subid-required"));
    let wrong = h.ask(ROMEO, &items(Some("nope")));
    assert_error(&wrong, "modify", "not-acceptable", Some("invalid-subid"));
    let right = h.ask(ROMEO, &items(Some(&first)));
    assert_xml(
        &right,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='items1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <items node='princely_musings'/>
           </pubsub>
         </iq>",
    );
    // Someone holding no subscription retrieves an open node's items as before.
    let nurse = h.ask(NURSE, &items(None));
    assert_eq!(nurse.attr("type"), Some("result"));
}

#[test]
fn unsubscribe_with_several_subscriptions_needs_the_subid() {
    let (mut h, first) = subscribed_twice();

    let unsubscribe = |subid: Option<&str>| {
        let attr = subid
            .map(|s| [" subid='", s, "'"].concat())
            .unwrap_or_default();
        [
            "<iq type='set' id='unsub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <unsubscribe node='princely_musings' jid='romeo@localhost'",
            &attr,
            "/></pubsub></iq>",
        ]
        .concat()
    };
    let without = h.ask(ROMEO, &unsubscribe(None));
    assert_error(&without, "modify", "bad-request", Some("subid-required"));
    let wrong = h.ask(ROMEO, &unsubscribe(Some("nope")));
    assert_error(&wrong, "modify", "not-acceptable", Some("invalid-subid"));
    let right = h.ask(ROMEO, &unsubscribe(Some(&first)));
    assert_xml(
        &right,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='unsub1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <subscription node='princely_musings' jid='romeo@localhost'
                           subscription='none' subid='id1'/>
           </pubsub>
         </iq>",
    );
    let nurse = h.ask(
        NURSE,
        "<iq type='set' id='unsub1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <unsubscribe node='princely_musings' jid='nurse@localhost'/></pubsub></iq>",
    );
    assert_error(
        &nurse,
        "cancel",
        "unexpected-request",
        Some("not-subscribed"),
    );
}

/// Three items `i1`, `i2`, `i3`, published in that order.
fn three_items() -> Harness {
    let mut h = Harness::new();
    open_node(&mut h);
    for (id, text) in [("i1", "one"), ("i2", "two"), ("i3", "three")] {
        h.publish("princely_musings", id, text);
    }
    h
}

fn item_ids(reply: &minidom::Element) -> Vec<String> {
    reply
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("items", common::PUBSUB))
        .expect("items")
        .children()
        .map(|item| item.attr("id").unwrap().to_owned())
        .collect()
}

#[test]
fn retrieve_all_items_newest_first_with_payloads() {
    let mut h = three_items();
    let reply = h.ask(
        ROMEO,
        "<iq type='get' from='romeo@localhost/orchard' to='pubsub.localhost' id='items1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <items node='princely_musings'/>
           </pubsub>
         </iq>",
    );
    assert_xml(
        &reply,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='items1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <items node='princely_musings'>
               <item id='i3'><p xmlns='urn:test'>three</p></item>
               <item id='i2'><p xmlns='urn:test'>two</p></item>
               <item id='i1'><p xmlns='urn:test'>one</p></item>
             </items>
           </pubsub>
         </iq>",
    );
}

#[test]
fn retrieve_most_recent_and_by_id() {
    let mut h = three_items();
    let recent = h.ask(
        ROMEO,
        "<iq type='get' id='items2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <items node='princely_musings' max_items='2'/></pubsub></iq>",
    );
    assert_eq!(item_ids(&recent), ["i3", "i2"]);
    let by_id = h.ask(
        ROMEO,
        "<iq type='get' id='items3'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <items node='princely_musings'>
             <item id='i1'/>
             <item id='i3'/>
             <item id='missing'/>
           </items>
         </pubsub></iq>",
    );
    assert_eq!(item_ids(&by_id), ["i1", "i3"]);
}

#[test]
fn retrieve_pages_with_rsm() {
    let mut h = three_items();
    let first = h.ask(
        ROMEO,
        "<iq type='get' id='page1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <items node='princely_musings'/>
           <set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set>
         </pubsub></iq>",
    );
    assert_xml(
        &first,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='page1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <items node='princely_musings'>
               <item id='i3'><p xmlns='urn:test'>three</p></item>
               <item id='i2'><p xmlns='urn:test'>two</p></item>
             </items>
             <set xmlns='http://jabber.org/protocol/rsm'>
               <first index='0'>i3</first>
               <last>i2</last>
               <count>3</count>
             </set>
           </pubsub>
         </iq>",
    );
    let next = h.ask(
        ROMEO,
        "<iq type='get' id='page2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <items node='princely_musings'/>
           <set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>i2</after></set>
         </pubsub></iq>",
    );
    assert_eq!(item_ids(&next), ["i1"]);
    let set = next
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("set", "http://jabber.org/protocol/rsm"))
        .unwrap();
    assert_eq!(
        set.get_child("first", "http://jabber.org/protocol/rsm")
            .and_then(|f| f.attr("index")),
        Some("2")
    );
    let unknown = h.ask(
        ROMEO,
        "<iq type='get' id='page3'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <items node='princely_musings'/>
           <set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>gone</after></set>
         </pubsub></iq>",
    );
    assert_error(&unknown, "cancel", "item-not-found", None);
}

#[test]
fn own_subscriptions_and_affiliations() {
    let mut h = Harness::new();
    open_node(&mut h);
    h.create("other", &[("pubsub#access_model", "open")]);
    h.subscribe(JULIET, "princely_musings");
    h.subscribe(JULIET, "other");
    let all = h.ask(
        JULIET,
        "<iq type='get' id='subscriptions1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscriptions/></pubsub></iq>",
    );
    assert_xml(
        &all,
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony'
             id='subscriptions1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <subscriptions>
               <subscription node='other' jid='juliet@localhost' subid='id2'
                             subscription='subscribed'/>
               <subscription node='princely_musings' jid='juliet@localhost' subid='id1'
                             subscription='subscribed'/>
             </subscriptions>
           </pubsub>
         </iq>",
    );
    let one = h.ask(
        JULIET,
        "<iq type='get' id='subscriptions2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscriptions node='other'/></pubsub></iq>",
    );
    let list = one
        .get_child("pubsub", common::PUBSUB)
        .and_then(|p| p.get_child("subscriptions", common::PUBSUB))
        .unwrap();
    assert_eq!(list.attr("node"), Some("other"));
    assert_eq!(list.children().count(), 1);

    let affiliations = h.ask(
        JULIET,
        "<iq type='get' id='affil1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <affiliations/></pubsub></iq>",
    );
    assert_xml(
        &affiliations,
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='affil1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>
             <affiliations>
               <affiliation node='other' affiliation='owner'/>
               <affiliation node='princely_musings' affiliation='owner'/>
             </affiliations>
           </pubsub>
         </iq>",
    );
    let none = h.ask(
        ROMEO,
        "<iq type='get' id='affil1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <affiliations/></pubsub></iq>",
    );
    assert_xml(
        &none,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='affil1'>
           <pubsub xmlns='http://jabber.org/protocol/pubsub'><affiliations/></pubsub>
         </iq>",
    );
}

/// The RSM `<set/>` of an items reply: (returned items, count, last id).
fn page_of(reply: &minidom::Element) -> (usize, Option<String>, Option<String>) {
    let pubsub = reply
        .get_child("pubsub", common::PUBSUB)
        .expect("a pubsub payload");
    let items = pubsub.get_child("items", common::PUBSUB).unwrap();
    let set = pubsub.get_child("set", "http://jabber.org/protocol/rsm");
    let text = |name: &str| set.and_then(|s| s.get_child(name, "http://jabber.org/protocol/rsm"));
    (
        items.children().count(),
        text("count").map(|c| c.text()),
        text("last").map(|l| l.text()),
    )
}

/// Issue #11 H5: a retrieval without limits returns a bounded page (100 items, 512 KiB of
/// payloads, at least one item), newest first, with the RSM `<set/>` that says there is more.
#[test]
fn item_retrieval_is_bounded_in_items_and_bytes() {
    let mut h = Harness::new();
    h.create(
        "princely_musings",
        &[("pubsub#access_model", "open"), ("pubsub#max_items", "max")],
    );
    for n in 0..150 {
        h.publish("princely_musings", &format!("i{n}"), "x");
    }
    let all = "<iq type='get' from='romeo@localhost/orchard' to='pubsub.localhost' id='all'>
         <pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='princely_musings'/></pubsub></iq>";
    assert_eq!(
        page_of(&h.ask(ROMEO, all)),
        (100, Some("150".to_owned()), Some("i50".to_owned()))
    );
    let latest = all.replace(
        "<items node='princely_musings'/>",
        "<items node='princely_musings' max_items='2'/>",
    );
    assert_eq!(
        page_of(&h.ask(ROMEO, &latest)),
        (2, None, None),
        "what was asked: no <set/>"
    );

    let big = "y".repeat(200 * 1024);
    for n in 0..3 {
        h.publish("princely_musings", &format!("big{n}"), &big);
    }
    assert_eq!(
        page_of(&h.ask(ROMEO, all)),
        (2, Some("153".to_owned()), Some("big1".to_owned()))
    );
}
