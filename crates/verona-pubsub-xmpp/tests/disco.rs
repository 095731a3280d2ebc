//! XEP-0030 on the service and its nodes (XEP-0060 §5.1–§5.5), XEP-0050 command discovery,
//! and the answers to requests the service does not understand.

mod common;

use common::{Harness, JULIET, ROMEO, assert_error, assert_xml};
use verona_pubsub::ServiceConfig;
use verona_pubsub_xmpp::{ServiceContext, ServiceKind};

const INFO: &str = "http://jabber.org/protocol/disco#info";

fn features(reply: &minidom::Element) -> Vec<String> {
    reply
        .get_child("query", INFO)
        .expect("a disco#info query")
        .children()
        .filter(|child| child.name() == "feature")
        .map(|feature| feature.attr("var").unwrap().to_owned())
        .collect()
}

#[test]
fn service_identity_and_features() {
    let mut h = Harness::new();
    let reply = h.ask(
        ROMEO,
        "<iq type='get' from='romeo@localhost/orchard' to='pubsub.localhost' id='feature1'>
           <query xmlns='http://jabber.org/protocol/disco#info'/>
         </iq>",
    );
    let query = reply.get_child("query", INFO).unwrap();
    let identity = query.get_child("identity", INFO).unwrap();
    assert_eq!(identity.attr("category"), Some("pubsub"));
    assert_eq!(identity.attr("type"), Some("service"));
    let features = features(&reply);
    for wanted in [
        "http://jabber.org/protocol/pubsub",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/commands",
        "http://jabber.org/protocol/pubsub#access-authorize",
        "http://jabber.org/protocol/pubsub#create-and-configure",
        "http://jabber.org/protocol/pubsub#get-pending",
        "http://jabber.org/protocol/pubsub#publish-options",
        "http://jabber.org/protocol/pubsub#rsm",
        "http://jabber.org/protocol/pubsub#subscription-options",
    ] {
        assert!(features.iter().any(|f| f == wanted), "{wanted}");
    }
    for absent in ["#auto-create", "#collections", "#auto-subscribe"] {
        assert!(!features.iter().any(|f| f.ends_with(absent)), "{absent}");
    }
}

#[test]
fn pep_identity_and_auto_create() {
    let h = Harness::new();
    let ctx = ServiceContext {
        jid: &h.jid,
        kind: ServiceKind::Pep,
        resolver: &h.presence,
    };
    let account = jid::BareJid::new("juliet@localhost").unwrap();
    let info = verona_pubsub_xmpp::service_info(&ctx, &ServiceConfig::pep(account));
    assert_eq!(info.identities[0].type_, "pep");
    assert!(
        info.features
            .contains("http://jabber.org/protocol/pubsub#auto-create")
    );
    assert!(
        info.features
            .contains("http://jabber.org/protocol/pubsub#access-presence")
    );
    // XEP-0163 §1: what a PEP service must do, said.
    for feature in ["auto-subscribe", "filtered-notifications"] {
        let feature = format!("http://jabber.org/protocol/pubsub#{feature}");
        assert!(info.features.contains(&feature), "{feature}");
    }
}

#[test]
fn nodes_are_listed_to_those_they_admit() {
    let mut h = Harness::new();
    h.create(
        "princely_musings",
        &[
            ("pubsub#access_model", "open"),
            ("pubsub#title", "Princely Musings (Atom)"),
        ],
    );
    h.create("me_and_romeo", &[("pubsub#access_model", "whitelist")]);
    let disco = "<iq type='get' id='disco1'>
                   <query xmlns='http://jabber.org/protocol/disco#items'/>
                 </iq>";
    assert_xml(
        &h.ask(ROMEO, disco),
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='disco1'>
           <query xmlns='http://jabber.org/protocol/disco#items'>
             <item jid='pubsub.localhost' node='princely_musings' name='Princely Musings (Atom)'/>
           </query>
         </iq>",
    );
    assert_xml(
        &h.ask(JULIET, disco),
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='disco1'>
           <query xmlns='http://jabber.org/protocol/disco#items'>
             <item jid='pubsub.localhost' node='me_and_romeo'/>
             <item jid='pubsub.localhost' node='princely_musings' name='Princely Musings (Atom)'/>
           </query>
         </iq>",
    );
}

/// The node list is paged (XEP-0059), 100 nodes at most per answer: anyone may make nodes,
/// and a list of them all could be megabytes for a hundred-byte request.
#[test]
fn the_node_list_comes_in_pages() {
    let mut h = Harness::new();
    for n in 0..150 {
        h.create(&format!("n{n:03}"), &[("pubsub#access_model", "open")]);
    }
    let mut page = |set: &str| {
        let reply = h.ask(
            ROMEO,
            &format!(
                "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#items'>{set}</query></iq>"
            ),
        );
        let query = reply
            .get_child("query", "http://jabber.org/protocol/disco#items")
            .unwrap_or_else(|| panic!("a disco#items answer: {}", String::from(&reply)));
        let nodes: Vec<String> = query
            .children()
            .filter(|child| child.name() == "item")
            .map(|item| item.attr("node").unwrap().to_owned())
            .collect();
        let set = query
            .get_child("set", "http://jabber.org/protocol/rsm")
            .map(|set| {
                let text = |name: &str| {
                    set.get_child(name, "http://jabber.org/protocol/rsm")
                        .map(|el| el.text())
                };
                (text("first"), text("last"))
            });
        (nodes, set)
    };
    let names = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|n| format!("n{n:03}")).collect()
    };
    let some = |name: &str| Some(name.to_owned());
    // Without a request for a page: the first 100, saying where they stop.
    let (nodes, set) = page("");
    assert_eq!(nodes, names(0..100));
    assert_eq!(set, Some((some("n000"), some("n099"))));
    // The rest.
    let (nodes, set) =
        page("<set xmlns='http://jabber.org/protocol/rsm'><after>n099</after></set>");
    assert_eq!(nodes, names(100..150));
    assert_eq!(set, Some((some("n100"), some("n149"))));
    // A smaller page; a larger one is cut to 100.
    let (nodes, _) = page("<set xmlns='http://jabber.org/protocol/rsm'><max>10</max></set>");
    assert_eq!(nodes, names(0..10));
    let (nodes, _) = page("<set xmlns='http://jabber.org/protocol/rsm'><max>1000</max></set>");
    assert_eq!(nodes.len(), 100);
    // Past the end: nothing.
    let (nodes, set) =
        page("<set xmlns='http://jabber.org/protocol/rsm'><after>n149</after></set>");
    assert!(nodes.is_empty());
    assert_eq!(set, Some((None, None)));
    // Backwards pages would need the nodes counted.
    let reply = h.ask(
        ROMEO,
        "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#items'><set xmlns='http://jabber.org/protocol/rsm'><before/></set></query></iq>",
    );
    assert_error(&reply, "cancel", "feature-not-implemented", None);
}

#[test]
fn node_information_and_meta_data() {
    let mut h = Harness::new();
    h.create("princely_musings", &[("pubsub#access_model", "open")]);
    h.subscribe(ROMEO, "princely_musings");
    let reply = h.ask(
        ROMEO,
        "<iq type='get' from='romeo@localhost/orchard' to='pubsub.localhost' id='meta1'>
           <query xmlns='http://jabber.org/protocol/disco#info' node='princely_musings'/>
         </iq>",
    );
    let query = reply.get_child("query", INFO).unwrap();
    assert_eq!(query.attr("node"), Some("princely_musings"));
    let identity = query.get_child("identity", INFO).unwrap();
    assert_eq!(
        (identity.attr("category"), identity.attr("type")),
        (Some("pubsub"), Some("leaf"))
    );
    let form = query.get_child("x", "jabber:x:data").expect("meta-data");
    assert_eq!(form.attr("type"), Some("result"));
    let value = |var: &str| {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .unwrap_or_else(|| panic!("{var}"))
            .children()
            .map(|v| v.text())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        value("FORM_TYPE"),
        ["http://jabber.org/protocol/pubsub#meta-data"]
    );
    assert_eq!(value("pubsub#owner"), ["juliet@localhost"]);
    assert_eq!(value("pubsub#num_subscribers"), ["1"]);
    assert_eq!(value("pubsub#access_model"), ["open"]);

    let missing = h.ask(
        ROMEO,
        "<iq type='get' id='info1'>
           <query xmlns='http://jabber.org/protocol/disco#info' node='nowhere'/></iq>",
    );
    assert_error(&missing, "cancel", "item-not-found", None);
}

/// A whitelist node's meta-data is for its members; to anyone else the node is one that does
/// not exist, as disco#items does not list it (its name alone tells what its owner uses).
#[test]
fn whitelist_node_meta_data_is_for_its_members_only() {
    let mut h = Harness::new();
    h.create("me_and_romeo", &[("pubsub#access_model", "whitelist")]);
    let info = "<iq type='get' id='info1'>
                  <query xmlns='http://jabber.org/protocol/disco#info' node='me_and_romeo'/></iq>";
    let stranger = h.ask(ROMEO, info);
    assert_error(&stranger, "cancel", "item-not-found", None);
    let owner = h.ask(JULIET, info);
    assert!(
        owner
            .get_child("query", INFO)
            .unwrap()
            .has_child("x", "jabber:x:data")
    );
}

#[test]
fn node_items_are_named_by_item_id() {
    let mut h = Harness::new();
    h.create("princely_musings", &[("pubsub#access_model", "open")]);
    h.publish(
        "princely_musings",
        "368866411b877c30064a5f62b917cffe",
        "one",
    );
    h.publish(
        "princely_musings",
        "3300659945416e274474e469a1f0154c",
        "two",
    );
    let reply = h.ask(
        ROMEO,
        "<iq type='get' from='romeo@localhost/orchard' to='pubsub.localhost' id='items1'>
           <query xmlns='http://jabber.org/protocol/disco#items' node='princely_musings'/>
         </iq>",
    );
    assert_xml(
        &reply,
        "<iq type='result' from='pubsub.localhost' to='romeo@localhost/orchard' id='items1'>
           <query xmlns='http://jabber.org/protocol/disco#items' node='princely_musings'>
             <item jid='pubsub.localhost' name='3300659945416e274474e469a1f0154c'/>
             <item jid='pubsub.localhost' name='368866411b877c30064a5f62b917cffe'/>
           </query>
         </iq>",
    );
}

#[test]
fn the_get_pending_command_is_discoverable() {
    let mut h = Harness::new();
    let items = h.ask(
        JULIET,
        "<iq type='get' id='cmd1'><query xmlns='http://jabber.org/protocol/disco#items'
           node='http://jabber.org/protocol/commands'/></iq>",
    );
    assert_xml(
        &items,
        "<iq type='result' from='pubsub.localhost' to='juliet@localhost/balcony' id='cmd1'>
           <query xmlns='http://jabber.org/protocol/disco#items'
                  node='http://jabber.org/protocol/commands'>
             <item jid='pubsub.localhost' node='http://jabber.org/protocol/pubsub#get-pending'
                   name='Get pending subscription requests'/>
           </query>
         </iq>",
    );
    let info = h.ask(
        JULIET,
        "<iq type='get' id='cmd2'><query xmlns='http://jabber.org/protocol/disco#info'
           node='http://jabber.org/protocol/pubsub#get-pending'/></iq>",
    );
    let identity = info
        .get_child("query", INFO)
        .unwrap()
        .get_child("identity", INFO)
        .unwrap();
    assert_eq!(identity.attr("category"), Some("automation"));
    assert_eq!(identity.attr("type"), Some("command-node"));
}

#[test]
fn requests_the_service_does_not_understand() {
    let mut h = Harness::new();
    let unknown_namespace = h.ask(
        ROMEO,
        "<iq type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>",
    );
    assert_xml(
        &unknown_namespace,
        "<iq type='error' from='pubsub.localhost' to='romeo@localhost/orchard' id='v1'>
           <error type='cancel'>
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
           </error>
         </iq>",
    );
    let unknown_action = h.ask(
        ROMEO,
        "<iq type='set' id='x1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
           <subscription node='n' jid='romeo@localhost'/></pubsub></iq>",
    );
    assert_error(&unknown_action, "cancel", "feature-not-implemented", None);
    let two_payloads = h.ask(
        ROMEO,
        "<iq type='get' id='x2'>
           <query xmlns='http://jabber.org/protocol/disco#info'/>
           <query xmlns='http://jabber.org/protocol/disco#items'/>
         </iq>",
    );
    assert_error(&two_payloads, "modify", "bad-request", None);
    let disco_set = h.ask(
        ROMEO,
        "<iq type='set' id='x3'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    assert_error(&disco_set, "modify", "bad-request", None);
    let empty_pubsub = h.ask(
        ROMEO,
        "<iq type='get' id='x4'><pubsub xmlns='http://jabber.org/protocol/pubsub'/></iq>",
    );
    assert_error(&empty_pubsub, "modify", "bad-request", None);
    let wrong_namespace = h.ask(
        ROMEO,
        "<iq type='set' id='x5'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
           <publish node='n'/></pubsub></iq>",
    );
    assert_error(&wrong_namespace, "cancel", "feature-not-implemented", None);
    // Results and errors are never answered.
    assert!(h.send(ROMEO, "<iq type='result' id='r1'/>").reply.is_none());
    assert!(h.send(ROMEO, "<iq type='error' id='r2'/>").reply.is_none());
    assert!(h.send(ROMEO, "<presence/>").reply.is_none());
}
