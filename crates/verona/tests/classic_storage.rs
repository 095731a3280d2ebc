//! What classic clients ask of an account at login and after, as views of its PEP service:
//! vCards (XEP-0054), private XML storage (XEP-0049, where profanity keeps bookmarks), the
//! account's own disco#info, and presence as clients write it.

mod common;

use common::*;
use minidom::Element;

const VCARD: &str = "vcard-temp";
const PRIVATE: &str = "jabber:iq:private";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

fn vcard_get(id: &str, to: Option<&str>) -> String {
    let to = to.map(|to| format!(" to='{to}'")).unwrap_or_default();
    format!("<iq xmlns='jabber:client' type='get' id='{id}'{to}><vCard xmlns='{VCARD}'/></iq>")
}

fn full_name(reply: &Element) -> Option<String> {
    reply
        .get_child("vCard", VCARD)
        .and_then(|card| card.get_child("FN", VCARD))
        .map(Element::text)
}

/// A vCard is set by its owner and read by anyone; one never set reads as empty; nobody sets
/// another's.
#[tokio::test]
async fn vcards_are_set_by_their_owner_and_read_by_anyone() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;

    let empty = juliet.request(&vcard_get("g0", None)).await;
    assert_eq!(empty.attr("type"), Some("result"), "{}", show(&empty));
    let card = empty.get_child("vCard", VCARD).expect("an empty vCard");
    assert_eq!(card.children().count(), 0);

    let set = format!(
        "<iq xmlns='jabber:client' type='set' id='s1'><vCard xmlns='{VCARD}'><FN>Juliet Capulet</FN><NICKNAME>Jule</NICKNAME></vCard></iq>"
    );
    let stored = juliet.request(&set).await;
    assert_eq!(stored.attr("type"), Some("result"), "{}", show(&stored));
    assert_eq!(stored.children().count(), 0);

    let own = juliet
        .request(&vcard_get("g1", Some("juliet@localhost")))
        .await;
    assert_eq!(full_name(&own).as_deref(), Some("Juliet Capulet"));
    let hers = romeo
        .request(&vcard_get("g2", Some("juliet@localhost")))
        .await;
    assert_eq!(hers.attr("from"), Some("juliet@localhost"));
    assert_eq!(full_name(&hers).as_deref(), Some("Juliet Capulet"));

    let forged = format!(
        "<iq xmlns='jabber:client' type='set' id='s2' to='juliet@localhost'><vCard xmlns='{VCARD}'><FN>Romeo's Juliet</FN></vCard></iq>"
    );
    let refused = romeo.request(&forged).await;
    assert_eq!(refused.attr("type"), Some("error"), "{}", show(&refused));
    let again = romeo
        .request(&vcard_get("g3", Some("juliet@localhost")))
        .await;
    assert_eq!(full_name(&again).as_deref(), Some("Juliet Capulet"));
}

/// Private storage keeps one element per namespace for its owner alone: what profanity
/// stores as bookmarks comes back after a new login; a namespace never stored reads as the
/// empty element; another account reads nothing; the reserved namespaces are refused.
#[tokio::test]
async fn private_storage_keeps_bookmarks_for_their_owner() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let bookmarks = "<storage xmlns='storage:bookmarks'><conference jid='lounge@chat.localhost' autojoin='false' name='lounge'/></storage>";
    let set = format!(
        "<iq xmlns='jabber:client' type='set' id='b1'><query xmlns='{PRIVATE}'>{bookmarks}</query></iq>"
    );
    ok(&juliet.request(&set).await);
    drop(juliet);

    let mut juliet = t.login("juliet", "pw", "chamber").await;
    let get = format!(
        "<iq xmlns='jabber:client' type='get' id='b2'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'/></query></iq>"
    );
    let reply = juliet.request(&get).await;
    let stored = reply
        .get_child("query", PRIVATE)
        .and_then(|q| q.get_child("storage", "storage:bookmarks"))
        .unwrap_or_else(|| panic!("{}", show(&reply)));
    let conference = stored
        .get_child("conference", "storage:bookmarks")
        .expect("the bookmark");
    assert_eq!(conference.attr("jid"), Some("lounge@chat.localhost"));

    let notes = format!(
        "<iq xmlns='jabber:client' type='get' id='n1'><query xmlns='{PRIVATE}'><storage xmlns='storage:rosternotes'/></query></iq>"
    );
    let reply = juliet.request(&notes).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", show(&reply));
    let empty = reply
        .get_child("query", PRIVATE)
        .and_then(|q| q.get_child("storage", "storage:rosternotes"))
        .expect("the empty element asked for");
    assert_eq!(empty.children().count(), 0);

    let reserved = format!(
        "<iq xmlns='jabber:client' type='set' id='r1'><query xmlns='{PRIVATE}'><message xmlns='jabber:client'/></query></iq>"
    );
    let refused = juliet.request(&reserved).await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("not-acceptable"));

    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let hers = format!(
        "<iq xmlns='jabber:client' type='get' id='b3' to='juliet@localhost'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'/></query></iq>"
    );
    let refused = romeo.request(&hers).await;
    assert_eq!(refused.attr("type"), Some("error"), "{}", show(&refused));
}

/// Private storage never takes the name of a node the server or other clients rely on being
/// public or its own: stored under `vcard-temp` it made the vCard private to everyone and
/// refused every later vCard set (found by audit round 20); under `presence` it would take
/// the XEP-0207 presence node.
#[tokio::test]
async fn private_storage_keeps_out_of_public_and_server_nodes() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    for (n, element) in [
        "<vCard xmlns='vcard-temp'><FN>secret</FN></vCard>",
        "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
        "<nick xmlns='http://jabber.org/protocol/nick'>secret</nick>",
        "<x xmlns='presence'/>",
        "<x xmlns='roster'/>",
    ]
    .iter()
    .enumerate()
    {
        let set = format!(
            "<iq xmlns='jabber:client' type='set' id='p{n}'><query xmlns='{PRIVATE}'>{element}</query></iq>"
        );
        let refused = juliet.request(&set).await;
        assert_eq!(
            stanza_error(&refused).as_deref(),
            Some("not-acceptable"),
            "{element}: {}",
            show(&refused)
        );
    }

    let set = format!(
        "<iq xmlns='jabber:client' type='set' id='v1'><vCard xmlns='{VCARD}'><FN>Juliet Capulet</FN></vCard></iq>"
    );
    ok(&juliet.request(&set).await);
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let hers = romeo
        .request(&vcard_get("g1", Some("juliet@localhost")))
        .await;
    assert_eq!(full_name(&hers).as_deref(), Some("Juliet Capulet"));
}

/// An account's disco#info to itself (with `to` its bare JID, or without `to`) lists what
/// its PEP service does (clients look there for publish-options before using PEP storage)
/// and what the server does for it.
#[tokio::test]
async fn an_account_sees_its_own_features() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    for to in [" to='juliet@localhost'", ""] {
        let info = juliet
            .request(&format!(
                "<iq xmlns='jabber:client' type='get' id='d'{to}><query xmlns='{DISCO_INFO}'/></iq>"
            ))
            .await;
        let query = info
            .get_child("query", DISCO_INFO)
            .unwrap_or_else(|| panic!("{}", show(&info)));
        let features: Vec<&str> = query
            .children()
            .filter(|c| c.is("feature", DISCO_INFO))
            .filter_map(|c| c.attr("var"))
            .collect();
        for wanted in [
            "http://jabber.org/protocol/pubsub#publish-options",
            "urn:xmpp:mam:2",
            // XEP-0313 §4.1.1: before-id, after-id, ids and flip-page, which it answers.
            "urn:xmpp:mam:2#extended",
            "urn:xmpp:ping",
            "urn:xmpp:bookmarks:1#compat",
        ] {
            assert!(features.contains(&wanted), "{wanted} in {features:?}");
        }
        let identities: Vec<(Option<&str>, Option<&str>)> = query
            .children()
            .filter(|c| c.is("identity", DISCO_INFO))
            .map(|c| (c.attr("category"), c.attr("type")))
            .collect();
        assert!(identities.contains(&(Some("account"), Some("registered"))));
        assert!(identities.contains(&(Some("pubsub"), Some("pep"))));
    }
}

/// A presence with an empty `<show/>` (as go-sendxmpp sends it) is plain available presence:
/// broadcast, not refused.
#[tokio::test]
async fn an_empty_show_is_plain_available_presence() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    // Available, she is asked at once (RFC 6121 §3.1.3).
    juliet.send("<presence xmlns='jabber:client'/>").await;
    romeo
        .send("<presence xmlns='jabber:client' type='subscribe' to='juliet@localhost'/>")
        .await;
    recv_until(&mut juliet, |el| el.attr("type") == Some("subscribe")).await;
    juliet
        .send("<presence xmlns='jabber:client' type='subscribed' to='romeo@localhost'/>")
        .await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    juliet
        .send("<presence xmlns='jabber:client'><show></show><status>here</status></presence>")
        .await;
    let seen = recv_until(&mut romeo, |el| {
        el.name() == "presence"
            && el.attr("from") == Some("juliet@localhost/balcony")
            && el.has_child("status", NS_CLIENT)
    })
    .await;
    assert_eq!(seen.attr("type"), None, "{}", show(&seen));
    assert!(!seen.has_child("show", NS_CLIENT), "{}", show(&seen));
}

const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";

fn private_bookmarks_get(id: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='get' id='{id}'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'/></query></iq>"
    )
}

/// The `<storage/>` of a private-storage answer.
fn private_bookmarks(reply: &Element) -> Element {
    reply
        .get_child("query", PRIVATE)
        .and_then(|q| q.get_child("storage", "storage:bookmarks"))
        .cloned()
        .unwrap_or_else(|| panic!("{}", show(reply)))
}

/// (item id, `<conference/>`) of an items answer or event, in document order.
fn conferences(items: &Element) -> Vec<(String, Element)> {
    items
        .children()
        .filter(|c| c.is("item", PUBSUB) || c.is("item", "http://jabber.org/protocol/pubsub#event"))
        .map(|item| {
            let conference = item.get_child("conference", BOOKMARKS).cloned();
            (item.attr("id").unwrap().to_owned(), conference.unwrap())
        })
        .collect()
}

fn items_get(id: &str, to: Option<&str>) -> String {
    let to = to.map(|to| format!(" to='{to}'")).unwrap_or_default();
    format!(
        "<iq xmlns='jabber:client' type='get' id='{id}'{to}><pubsub xmlns='{PUBSUB}'><items node='{BOOKMARKS}'/></pubsub></iq>"
    )
}

fn el(xml: &str) -> Element {
    xml.parse().unwrap()
}

/// XEP-0402 §5.3: bookmarks a private-storage client (profanity) saves are the XEP-0402
/// client's (Conversations, Dino) and the other way round, as on Prosody and ejabberd: a
/// private-storage set is published one item per room (the XEP-0402 client hears of it at
/// once), and a private-storage get shows the node's items, with what has no XEP-0402 form
/// (a `<url/>`) kept. Nobody else reads them.
#[tokio::test]
async fn private_storage_and_pep_bookmarks_are_one_set() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut profanity = t.login("juliet", "pw", "profanity").await;
    let mut dino = t.login("juliet", "pw", "dino").await;
    let features = [
        "http://jabber.org/protocol/caps",
        "urn:xmpp:bookmarks:1+notify",
    ];
    dino.presence_with_caps("", &features, true).await;
    // Its own presence back: from here on, what it gets is bookmarks.
    recv_until(&mut dino, |el| el.name() == "presence").await;

    let set = format!(
        "<iq xmlns='jabber:client' type='set' id='s1'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'>\
         <conference jid='lounge@chat.localhost' name='Lounge' autojoin='true'><nick>jule</nick></conference>\
         <url name='Verona' url='https://verona.example/'/>\
         </storage></query></iq>"
    );
    ok(&profanity.request(&set).await);
    let event = recv_until(&mut dino, |el| el.name() == "message").await;
    let items = event
        .get_child("event", "http://jabber.org/protocol/pubsub#event")
        .and_then(|e| e.get_child("items", "http://jabber.org/protocol/pubsub#event"))
        .unwrap_or_else(|| panic!("{}", show(&event)));
    assert_eq!(items.attr("node"), Some(BOOKMARKS));
    let lounge = el(
        "<conference xmlns='urn:xmpp:bookmarks:1' name='Lounge' autojoin='true'><nick>jule</nick></conference>",
    );
    assert_eq!(
        conferences(items),
        [("lounge@chat.localhost".to_owned(), lounge.clone())]
    );

    // Dino adds a room and drops the lounge, as XEP-0402 §3 and §4 say.
    let publish = format!(
        "<iq xmlns='jabber:client' type='set' id='p1'><pubsub xmlns='{PUBSUB}'>\
         <publish node='{BOOKMARKS}'><item id='crypt@chat.localhost'>\
         <conference xmlns='{BOOKMARKS}' name='Crypt'><password>tomb</password><extensions><pinned xmlns='urn:x'/></extensions></conference>\
         </item></publish>\
         <publish-options><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='pubsub#persist_items'><value>true</value></field>\
         <field var='pubsub#max_items'><value>max</value></field>\
         <field var='pubsub#send_last_published_item'><value>never</value></field>\
         <field var='pubsub#access_model'><value>whitelist</value></field>\
         </x></publish-options></pubsub></iq>"
    );
    ok(&dino.request(&publish).await);
    let retract = format!(
        "<iq xmlns='jabber:client' type='set' id='r1'><pubsub xmlns='{PUBSUB}'><retract node='{BOOKMARKS}' notify='true'><item id='lounge@chat.localhost'/></retract></pubsub></iq>"
    );
    ok(&dino.request(&retract).await);

    let storage = private_bookmarks(&profanity.request(&private_bookmarks_get("g1")).await);
    assert_eq!(
        storage,
        el("<storage xmlns='storage:bookmarks'>\
            <url name='Verona' url='https://verona.example/'/>\
            <conference jid='crypt@chat.localhost' name='Crypt'><password>tomb</password></conference>\
            </storage>")
    );

    // profanity renames the crypt: Dino's extension stays with the item.
    let rename = format!(
        "<iq xmlns='jabber:client' type='set' id='s2'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'>\
         <conference jid='crypt@chat.localhost' name='The crypt'><password>tomb</password></conference>\
         </storage></query></iq>"
    );
    ok(&profanity.request(&rename).await);
    let reply = dino.request(&items_get("g2", None)).await;
    let items = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .unwrap_or_else(|| panic!("{}", show(&reply)));
    assert_eq!(
        conferences(items),
        [(
            "crypt@chat.localhost".to_owned(),
            el(
                "<conference xmlns='urn:xmpp:bookmarks:1' name='The crypt'><password>tomb</password><extensions><pinned xmlns='urn:x'/></extensions></conference>"
            )
        )]
    );

    // The XEP-0048 PEP node keeps the list as private storage last set it, for the clients
    // that read it there (XEP-0411): not emptied.
    let legacy = dino
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' id='g4'><pubsub xmlns='{PUBSUB}'><items node='storage:bookmarks'/></pubsub></iq>"
        ))
        .await;
    let kept = legacy
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .and_then(|i| i.get_child("item", PUBSUB))
        .and_then(|i| i.get_child("storage", "storage:bookmarks"))
        .unwrap_or_else(|| panic!("{}", show(&legacy)));
    assert_eq!(
        kept.children()
            .filter_map(|c| c.attr("jid"))
            .collect::<Vec<_>>(),
        ["crypt@chat.localhost"]
    );
    // A client keeping bookmarks there (XEP-0411) publishes a list: it is the XEP-0402 node's.
    let old_style = format!(
        "<iq xmlns='jabber:client' type='set' id='p2'><pubsub xmlns='{PUBSUB}'><publish node='storage:bookmarks'><item id='current'>\
         <storage xmlns='storage:bookmarks'><conference jid='tomb@chat.localhost' autojoin='true'/></storage>\
         </item></publish></pubsub></iq>"
    );
    ok(&profanity.request(&old_style).await);
    let reply = dino.request(&items_get("g5", None)).await;
    let items = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .unwrap_or_else(|| panic!("{}", show(&reply)));
    assert_eq!(
        conferences(items),
        [(
            "tomb@chat.localhost".to_owned(),
            el("<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/>")
        )]
    );

    let mut romeo = t.login("romeo", "pw", "orchard").await;
    let refused = romeo
        .request(&items_get("g3", Some("juliet@localhost")))
        .await;
    assert_eq!(refused.attr("type"), Some("error"), "{}", show(&refused));
}

/// XEP-0402 §5.3 for bookmarks saved before: rooms a client kept in the XEP-0411 PEP node
/// (`storage:bookmarks`, which private storage also reads) are in the XEP-0402 node the first
/// time a client asks for it.
#[tokio::test]
async fn bookmarks_kept_before_come_over_to_pep() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    let mut old = t.login("juliet", "pw", "old").await;
    let legacy = format!(
        "<iq xmlns='jabber:client' type='set' id='p0'><pubsub xmlns='{PUBSUB}'><publish node='storage:bookmarks'><item id='current'>\
         <storage xmlns='storage:bookmarks'><conference jid='lounge@chat.localhost' autojoin='1'><nick>jule</nick></conference></storage>\
         </item></publish></pubsub></iq>"
    );
    ok(&old.request(&legacy).await);
    drop(old);

    let mut new = t.login("juliet", "pw", "new").await;
    let reply = new.request(&items_get("g1", None)).await;
    let items = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .unwrap_or_else(|| panic!("{}", show(&reply)));
    assert_eq!(
        conferences(items),
        [(
            "lounge@chat.localhost".to_owned(),
            el(
                "<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'><nick>jule</nick></conference>"
            )
        )]
    );
}

/// What private storage keeps is its owner's alone: a XEP-0402 node a client made without
/// XEP-0402's options (open to the account's contacts) is made whitelist before a
/// private-storage set is published to it, passwords and all.
#[tokio::test]
async fn bookmarks_from_private_storage_stay_private() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let careless = format!(
        "<iq xmlns='jabber:client' type='set' id='p1'><pubsub xmlns='{PUBSUB}'><publish node='{BOOKMARKS}'><item id='hall@chat.localhost'>\
         <conference xmlns='{BOOKMARKS}'/></item></publish></pubsub></iq>"
    );
    ok(&juliet.request(&careless).await);
    let access = |reply: &Element| {
        reply
            .get_child("pubsub", "http://jabber.org/protocol/pubsub#owner")
            .and_then(|p| p.get_child("configure", "http://jabber.org/protocol/pubsub#owner"))
            .and_then(|c| c.get_child("x", "jabber:x:data"))
            .into_iter()
            .flat_map(|x| x.children())
            .find(|f| f.attr("var") == Some("pubsub#access_model"))
            .and_then(|f| f.get_child("value", "jabber:x:data"))
            .map(Element::text)
    };
    let configuration = format!(
        "<iq xmlns='jabber:client' type='get' id='c'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='{BOOKMARKS}'/></pubsub></iq>"
    );
    let before = juliet.request(&configuration).await;
    assert_eq!(
        access(&before).as_deref(),
        Some("presence"),
        "{}",
        show(&before)
    );
    let set = format!(
        "<iq xmlns='jabber:client' type='set' id='s1'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'>\
         <conference jid='crypt@chat.localhost'><password>tomb</password></conference>\
         </storage></query></iq>"
    );
    ok(&juliet.request(&set).await);
    let after = juliet.request(&configuration).await;
    assert_eq!(
        access(&after).as_deref(),
        Some("whitelist"),
        "{}",
        show(&after)
    );
}

/// The rooms of the XEP-0048 node at `client`'s account, as its readers see them.
async fn legacy_rooms(client: &mut Client, id: &str) -> Vec<String> {
    let reply = client
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' id='{id}'><pubsub xmlns='{PUBSUB}'><items node='storage:bookmarks'/></pubsub></iq>"
        ))
        .await;
    reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .and_then(|i| i.get_child("item", PUBSUB))
        .and_then(|i| i.get_child("storage", "storage:bookmarks"))
        .into_iter()
        .flat_map(|s| s.children())
        .filter_map(|c| c.attr("jid").map(str::to_owned))
        .collect()
}

/// XEP-0402 §5.3 the other way: what a XEP-0402 client changes (a room added, one removed,
/// the node deleted) reaches the XEP-0048 node, so a client reading bookmarks there sees
/// them as they are, and a room removed never comes back (found by the last review: a
/// deleted node was made again from the XEP-0048 node's stale list).
#[tokio::test]
async fn a_change_made_with_xep_0402_reaches_the_xep_0048_node() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    let mut profanity = t.login("juliet", "pw", "profanity").await;
    let mut dino = t.login("juliet", "pw", "dino").await;
    let set = format!(
        "<iq xmlns='jabber:client' type='set' id='s1'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'>\
         <conference jid='x@chat.localhost'/><conference jid='y@chat.localhost'/></storage></query></iq>"
    );
    ok(&profanity.request(&set).await);
    let retract = format!(
        "<iq xmlns='jabber:client' type='set' id='r1'><pubsub xmlns='{PUBSUB}'><retract node='{BOOKMARKS}' notify='true'><item id='x@chat.localhost'/></retract></pubsub></iq>"
    );
    ok(&dino.request(&retract).await);
    assert_eq!(
        legacy_rooms(&mut profanity, "l1").await,
        ["y@chat.localhost"]
    );
    let publish = format!(
        "<iq xmlns='jabber:client' type='set' id='p1'><pubsub xmlns='{PUBSUB}'><publish node='{BOOKMARKS}'><item id='z@chat.localhost'><conference xmlns='{BOOKMARKS}'/></item></publish></pubsub></iq>"
    );
    ok(&dino.request(&publish).await);
    assert_eq!(
        legacy_rooms(&mut profanity, "l2").await,
        ["y@chat.localhost", "z@chat.localhost"]
    );
    let delete = format!(
        "<iq xmlns='jabber:client' type='set' id='d1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='{BOOKMARKS}'/></pubsub></iq>"
    );
    ok(&dino.request(&delete).await);
    assert!(legacy_rooms(&mut profanity, "l3").await.is_empty());
    let reply = profanity.request(&private_bookmarks_get("g1")).await;
    assert_eq!(private_bookmarks(&reply).children().count(), 0);
    let gone = dino.request(&items_get("g2", None)).await;
    assert_eq!(stanza_error(&gone).as_deref(), Some("item-not-found"));
}

/// A XEP-0048 node an old client made open (no publish-options) does not make every later
/// private-storage set fail: it is made private first, and the set is stored whole. A PEP
/// publish of more rooms than a set may hold is refused, not cut.
#[tokio::test]
async fn an_open_xep_0048_node_is_made_private_and_bounded() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "old").await;
    let careless = format!(
        "<iq xmlns='jabber:client' type='set' id='p0'><pubsub xmlns='{PUBSUB}'><publish node='storage:bookmarks'><item id='current'>\
         <storage xmlns='storage:bookmarks'><conference jid='x@chat.localhost'/></storage></item></publish></pubsub></iq>"
    );
    ok(&juliet.request(&careless).await);
    let set = format!(
        "<iq xmlns='jabber:client' type='set' id='s1'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'>\
         <conference jid='secret@chat.localhost'><password>hunter2</password></conference></storage></query></iq>"
    );
    ok(&juliet.request(&set).await);
    assert_eq!(
        legacy_rooms(&mut juliet, "l1").await,
        ["secret@chat.localhost"]
    );
    let rooms: String = (0..300)
        .map(|n| format!("<conference jid='r{n}@chat.localhost'/>"))
        .collect();
    let many = format!(
        "<iq xmlns='jabber:client' type='set' id='p1'><pubsub xmlns='{PUBSUB}'><publish node='storage:bookmarks'><item id='current'>\
         <storage xmlns='storage:bookmarks'>{rooms}</storage></item></publish></pubsub></iq>"
    );
    let refused = juliet.request(&many).await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("policy-violation"));
    assert_eq!(
        legacy_rooms(&mut juliet, "l2").await,
        ["secret@chat.localhost"]
    );
}

/// A payload bound a client set on the XEP-0402 node does not make a private-storage set
/// fail half-way (the XEP-0048 node written, the XEP-0402 one refused): the node is given its
/// options, that bound among them, first.
#[tokio::test]
async fn a_clients_payload_bound_does_not_split_a_set() {
    let t = TestServer::start().await;
    t.add_user("juliet", "pw").await;
    let mut juliet = t.login("juliet", "pw", "dino").await;
    let publish = format!(
        "<iq xmlns='jabber:client' type='set' id='p1'><pubsub xmlns='{PUBSUB}'><publish node='{BOOKMARKS}'><item id='a@chat.localhost'><conference xmlns='{BOOKMARKS}'/></item></publish></pubsub></iq>"
    );
    ok(&juliet.request(&publish).await);
    let tiny = format!(
        "<iq xmlns='jabber:client' type='set' id='c1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='{BOOKMARKS}'>\
         <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
         <field var='pubsub#access_model'><value>whitelist</value></field>\
         <field var='pubsub#persist_items'><value>1</value></field>\
         <field var='pubsub#max_items'><value>max</value></field>\
         <field var='pubsub#max_payload_size'><value>10</value></field></x></configure></pubsub></iq>"
    );
    ok(&juliet.request(&tiny).await);
    let set = format!(
        "<iq xmlns='jabber:client' type='set' id='s1'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'>\
         <conference jid='b@chat.localhost' name='A room with a long name'/></storage></query></iq>"
    );
    ok(&juliet.request(&set).await);
    let reply = juliet.request(&items_get("g1", None)).await;
    let items = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .unwrap_or_else(|| panic!("{}", show(&reply)));
    let ids: Vec<String> = conferences(items).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["b@chat.localhost"]);
    assert_eq!(legacy_rooms(&mut juliet, "l1").await, ["b@chat.localhost"]);
}
