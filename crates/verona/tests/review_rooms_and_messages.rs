//! Regression tests for the second security review (issue #11): what a room's password keeps,
//! what a deleted account leaves in rooms, what was said staying said, native requests to a
//! room checked as the classic ones are, and what only the server writes in messages.

mod common;

use common::*;
use minidom::Element;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const MAM: &str = "urn:xmpp:mam:2";
const SID: &str = "urn:xmpp:sid:0";
const DELAY: &str = "urn:xmpp:delay";
const ADDRESS: &str = "http://jabber.org/protocol/address";
const ROOM: &str = "characters@chat.localhost";

/// A classic join; returns once the subject (which ends the join) arrived, and a room the
/// join made is opened as an instant room (XEP-0045 §10.1.2).
async fn enter(client: &mut Client, nick: &str, password: Option<&str>) {
    let password = password
        .map(|p| format!("<password>{p}</password>"))
        .unwrap_or_default();
    client
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/{nick}'><x xmlns='{MUC}'>{password}<history maxstanzas='0'/></x></presence>"
        ))
        .await;
    let mut created = false;
    loop {
        let el = client.recv().await;
        created |= el.name() == "presence"
            && el
                .get_child("x", MUC_USER)
                .into_iter()
                .flat_map(|x| x.children())
                .any(|status| status.is("status", MUC_USER) && status.attr("code") == Some("201"));
        if el.name() == "message" && el.has_child("subject", NS_CLIENT) {
            break;
        }
    }
    if created {
        ok(&client.request(&owner_form("")).await);
    }
}

fn owner_form(fields: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
           <x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>"
    )
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

/// A native subscription to the room with a nick (seed Ex. 13), from `jid`.
fn subscribe_with_nick(jid: &str, nick: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' to='chat.localhost' id='sub'>\
           <pubsub xmlns='{PUBSUB}'>\
             <subscribe node='characters' jid='{jid}'/>\
             <options node='characters' jid='{jid}'>\
               <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field>\
                 <field var='roomnick'><value>{nick}</value></field>\
               </x>\
             </options>\
           </pubsub>\
         </iq>"
    )
}

/// A native publish to the room (seed Ex. 16) of `message`, as an item with `id` if given.
fn publish(id: Option<&str>, message: &str) -> String {
    let id = id.map(|id| format!(" id='{id}'")).unwrap_or_default();
    format!(
        "<iq xmlns='jabber:client' to='chat.localhost' type='set' id='pub'>\
           <pubsub xmlns='{PUBSUB}'><publish node='characters'><item{id}>{message}</item></publish></pubsub>\
         </iq>"
    )
}

fn bodies(results: &[Element]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| r.get_child("result", MAM))
        .filter_map(|r| r.get_child("forwarded", "urn:xmpp:forward:0"))
        .filter_map(|f| f.get_child("message", NS_CLIENT))
        .filter_map(|m| m.get_child("body", NS_CLIENT).map(Element::text))
        .collect()
}

fn stanza_id(message: &Element) -> String {
    message
        .get_child("stanza-id", SID)
        .and_then(|s| s.attr("id"))
        .expect("a stanza-id")
        .to_owned()
}

/// Romeo's password-protected room, the nurse inside with the password and a secret said.
/// A stranger reads neither the archive nor the node's items; an occupant reads both.
#[tokio::test]
async fn a_password_protected_rooms_history_is_for_those_let_in() {
    let t = TestServer::start().await;
    for user in ["romeo", "nurse", "tybalt"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    let mut tybalt = t.login("tybalt", "pw", "street").await;
    enter(&mut romeo, "Romeo", None).await;
    let protect = owner_form(&format!(
        "{}{}{}",
        field("muc#roomconfig_persistentroom", "1"),
        field("muc#roomconfig_passwordprotectedroom", "1"),
        field("muc#roomconfig_roomsecret", "capulet"),
    ));
    ok(&romeo.request(&protect).await);
    enter(&mut nurse, "Nurse", Some("capulet")).await;
    nurse
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>the ladder at nine</body></message>"
        ))
        .await;
    recv_until(&mut nurse, |el| el.name() == "message").await;

    let (results, fin) = mam_page(&mut tybalt, Some(ROOM), "").await;
    assert!(results.is_empty());
    assert_eq!(
        stanza_error(&fin).as_deref(),
        Some("forbidden"),
        "{}",
        show(&fin)
    );
    let items = format!(
        "<iq xmlns='jabber:client' type='get' to='chat.localhost' id='items'><pubsub xmlns='{PUBSUB}'><items node='characters'/></pubsub></iq>"
    );
    let refused = tybalt.request(&items).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("forbidden"),
        "{}",
        show(&refused)
    );

    let (results, fin) = mam_page(&mut nurse, Some(ROOM), "").await;
    assert_eq!(fin.attr("type"), Some("result"), "{}", show(&fin));
    assert_eq!(bodies(&results), ["the ladder at nine"]);
    let read = nurse.request(&items).await;
    assert_eq!(read.attr("type"), Some("result"), "{}", show(&read));
}

/// The nurse is an admin of Romeo's room and registered her nick there, then deletes her
/// account; whoever registers the name next is nobody in the room.
#[tokio::test]
async fn a_deleted_accounts_standing_in_a_room_is_not_inherited() {
    let t = TestServer::start().await;
    for user in ["romeo", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    enter(&mut romeo, "Romeo", None).await;
    ok(&romeo
        .request(&owner_form(&field("muc#roomconfig_persistentroom", "1")))
        .await);
    let admin = format!(
        "<iq xmlns='jabber:client' type='set' id='adm' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='admin' jid='nurse@localhost'/></query></iq>"
    );
    ok(&romeo.request(&admin).await);
    let register = format!(
        "<iq xmlns='jabber:client' type='set' id='reg' to='{ROOM}'><query xmlns='jabber:iq:register'>\
           <x xmlns='jabber:x:data' type='submit'>{}{}</x></query></iq>",
        field("FORM_TYPE", "http://jabber.org/protocol/muc#register"),
        field("muc#register_roomnick", "Angelica"),
    );
    ok(&nurse.request(&register).await);
    let remove = "<iq xmlns='jabber:client' type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";
    ok(&nurse.request(remove).await);
    assert_eq!(nurse.expect_stream_error().await, "not-authorized");

    t.add_user("nurse", "another").await;
    let mut impostor = t.login("nurse", "another", "chamber").await;
    let nick = impostor
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' id='n' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>"
        ))
        .await;
    let named = nick
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_child("identity", "http://jabber.org/protocol/disco#info"))
        .and_then(|i| i.attr("name"));
    assert_eq!(named, None, "{}", show(&nick));
    impostor
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/Impostor'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    let own = recv_until(&mut impostor, |el| {
        el.name() == "presence" && el.attr("from") == Some(&format!("{ROOM}/Impostor"))
    })
    .await;
    let item = own
        .get_child("x", MUC_USER)
        .and_then(|x| x.get_child("item", MUC_USER))
        .expect("an occupant item");
    assert_eq!(
        (item.attr("affiliation"), item.attr("role")),
        (Some("none"), Some("participant"))
    );
    let admins = romeo
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' id='l' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='admin'/></query></iq>"
        ))
        .await;
    let listed = admins
        .get_child("query", "http://jabber.org/protocol/muc#admin")
        .map(|q| q.children().count());
    assert_eq!(listed, Some(0), "{}", show(&admins));
}

/// A participant who publishes natively with the id of someone else's message gets a new id:
/// the room's history keeps both; so does a conversation's archive.
#[tokio::test]
async fn what_was_said_cannot_be_replaced_by_another() {
    let t = TestServer::start().await;
    for user in ["romeo", "nurse", "juliet"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    enter(&mut romeo, "Romeo", None).await;
    ok(&nurse
        .request(&subscribe_with_nick("nurse@localhost/chamber", "Nurse"))
        .await);
    romeo
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>it was the nightingale</body></message>"
        ))
        .await;
    let said = recv_until(&mut romeo, |el| el.name() == "message").await;
    let id = stanza_id(&said);
    let overwrite = publish(
        Some(&id),
        "<message xmlns='jabber:client'><body>it was the lark</body></message>",
    );
    ok(&nurse.request(&overwrite).await);
    let (results, _) = mam_page(&mut romeo, Some(ROOM), "").await;
    assert_eq!(
        bodies(&results),
        ["it was the nightingale", "it was the lark"]
    );

    let mut juliet = t.login("juliet", "pw", "balcony").await;
    juliet
        .send("<message xmlns='jabber:client' to='romeo@localhost/mobile' type='chat' id='c1'><body>wilt thou be gone?</body></message>")
        .await;
    let got = recv_until(&mut romeo, |el| {
        el.name() == "message" && el.attr("type") == Some("chat")
    })
    .await;
    let id = stanza_id(&got);
    let overwrite = format!(
        "<iq xmlns='jabber:client' to='pubsub.localhost' type='set' id='pub'>\
           <pubsub xmlns='{PUBSUB}'><publish node='chat/juliet@localhost/romeo@localhost'><item id='{id}'>\
             <message xmlns='jabber:client'><body>yes</body></message>\
           </item></publish></pubsub>\
         </iq>"
    );
    ok(&romeo.request(&overwrite).await);
    let (results, _) = mam_page(&mut juliet, None, "").await;
    assert_eq!(bodies(&results), ["wilt thou be gone?", "yes"]);
    // Nor does a party leave the conversation: its archive (and its deletion) would lose it.
    let leave = format!(
        "<iq xmlns='jabber:client' to='pubsub.localhost' type='set' id='leave'>\
           <pubsub xmlns='{PUBSUB}'><unsubscribe node='chat/juliet@localhost/romeo@localhost' jid='romeo@localhost'/></pubsub>\
         </iq>"
    );
    let refused = romeo.request(&leave).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("not-allowed"),
        "{}",
        show(&refused)
    );
    let (results, _) = mam_page(&mut romeo, None, "").await;
    assert_eq!(bodies(&results), ["wilt thou be gone?", "yes"]);
    // Messages asked for by id are looked up, not found by reading the whole archive; one
    // that is not there is `item-not-found` (XEP-0313 §4.1.1).
    let by_ids = |ids: &str| {
        format!(
            "<x xmlns='jabber:x:data' type='submit'>{}<field var='ids'>{ids}</field></x>",
            field("FORM_TYPE", MAM)
        )
    };
    let (results, fin) = mam_page(&mut romeo, None, &by_ids(&format!("<value>{id}</value>"))).await;
    assert_eq!(fin.attr("type"), Some("result"), "{}", show(&fin));
    assert_eq!(bodies(&results), ["wilt thou be gone?"]);
    let both = by_ids(&format!("<value>{id}</value><value>unknown</value>"));
    let (results, fin) = mam_page(&mut romeo, None, &both).await;
    assert!(results.is_empty());
    assert_eq!(stanza_error(&fin).as_deref(), Some("item-not-found"));
}

/// Native requests to a room are held to what the classic ones are: the subject is the
/// moderators' when the room says so, a registered nick is its owner's, a nick is prepared
/// as a JID's resource (so `ｒｏｍｅｏ` is `romeo`, and an empty one is none), and a full
/// room takes nobody more.
#[tokio::test]
async fn native_room_requests_are_checked_as_classic_ones() {
    let t = TestServer::start().await;
    for user in ["romeo", "nurse", "tybalt"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    let mut tybalt = t.login("tybalt", "pw", "street").await;
    enter(&mut romeo, "romeo", None).await;
    ok(&romeo
        .request(&owner_form(&field("muc#roomconfig_changesubject", "0")))
        .await);
    let register = format!(
        "<iq xmlns='jabber:client' type='set' id='reg' to='{ROOM}'><query xmlns='jabber:iq:register'>\
           <x xmlns='jabber:x:data' type='submit'>{}{}</x></query></iq>",
        field("FORM_TYPE", "http://jabber.org/protocol/muc#register"),
        field("muc#register_roomnick", "Prince"),
    );
    ok(&romeo.request(&register).await);

    let refused = |reply: &Element| stanza_error(reply);
    let me = "tybalt@localhost/street";
    let cases = [
        ("Prince", "conflict"),
        ("ｒｏｍｅｏ", "conflict"),
        ("", "jid-malformed"),
    ];
    for (nick, condition) in cases {
        let reply = tybalt.request(&subscribe_with_nick(me, nick)).await;
        assert_eq!(
            refused(&reply).as_deref(),
            Some(condition),
            "{nick:?}: {}",
            show(&reply)
        );
    }

    ok(&nurse
        .request(&subscribe_with_nick("nurse@localhost/chamber", "Nurse"))
        .await);
    let subject = publish(
        None,
        "<message xmlns='jabber:client'><subject>Tybalt is a coward</subject></message>",
    );
    let reply = nurse.request(&subject).await;
    assert_eq!(
        refused(&reply).as_deref(),
        Some("forbidden"),
        "{}",
        show(&reply)
    );

    ok(&romeo
        .request(&owner_form(&field("muc#roomconfig_maxusers", "2")))
        .await);
    let reply = tybalt.request(&subscribe_with_nick(me, "Tybalt")).await;
    assert_eq!(
        refused(&reply).as_deref(),
        Some("service-unavailable"),
        "{}",
        show(&reply)
    );
}

/// Being in a room natively is the session's own subscription, under one nick, seen by the
/// others both ways (third review, issue #11): a subscription for another resource (which no
/// session would end), one without a nick (a listener nobody sees) and a second one (a second
/// occupant) are refused; a nick spaced to pass for another is refused natively and
/// classically; leaving by unsubscribing is announced as leaving by presence is.
#[tokio::test]
async fn a_native_occupant_is_its_session_under_one_nick() {
    let t = TestServer::start().await;
    for user in ["romeo", "tybalt", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut tybalt = t.login("tybalt", "pw", "street").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    enter(&mut romeo, "romeo", None).await;
    let me = "tybalt@localhost/street";
    let nickless = format!(
        "<iq xmlns='jabber:client' type='set' to='chat.localhost' id='sub'>\
           <pubsub xmlns='{PUBSUB}'><subscribe node='characters' jid='{me}'/></pubsub></iq>"
    );
    let cases = [
        (
            subscribe_with_nick("tybalt@localhost/ghost", "ghost"),
            "bad-request",
        ),
        (
            subscribe_with_nick("tybalt@localhost", "ghost"),
            "bad-request",
        ),
        (nickless, "jid-malformed"),
        (subscribe_with_nick(me, "romeo "), "jid-malformed"),
        (subscribe_with_nick(me, " romeo"), "jid-malformed"),
        (subscribe_with_nick(me, "ro  meo"), "jid-malformed"),
    ];
    for (request, condition) in &cases {
        let reply = tybalt.request(request).await;
        assert_eq!(
            stanza_error(&reply).as_deref(),
            Some(*condition),
            "{request}: {}",
            show(&reply)
        );
    }
    romeo.expect_nothing().await;
    // A room's name is what the public list shows: it is bounded (256 bytes).
    let long = "n".repeat(257);
    let reply = romeo
        .request(&owner_form(&field("muc#roomconfig_roomname", &long)))
        .await;
    assert_eq!(stanza_error(&reply).as_deref(), Some("not-acceptable"));
    ok(&romeo
        .request(&owner_form(&field("muc#roomconfig_roomname", &long[1..])))
        .await);
    ok(&tybalt.request(&subscribe_with_nick(me, "Tybalt")).await);
    let arrived = recv_until(&mut romeo, |el| el.name() == "presence").await;
    assert_eq!(
        arrived.attr("from"),
        Some("characters@chat.localhost/Tybalt")
    );
    let reply = tybalt.request(&subscribe_with_nick(me, "Cat")).await;
    assert_eq!(stanza_error(&reply).as_deref(), Some("not-allowed"));
    // Classically, a nick spaced like another's is refused too.
    nurse
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/romeo '><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    let refused = nurse.recv().await;
    assert_eq!(refused.attr("type"), Some("error"), "{}", show(&refused));
    assert_eq!(stanza_error(&refused).as_deref(), Some("jid-malformed"));
    romeo.expect_nothing().await;
    let unsubscribe = format!(
        "<iq xmlns='jabber:client' type='set' to='chat.localhost' id='unsub'>\
           <pubsub xmlns='{PUBSUB}'><unsubscribe node='characters' jid='{me}'/></pubsub></iq>"
    );
    ok(&tybalt.request(&unsubscribe).await);
    let left = recv_until(&mut romeo, |el| el.name() == "presence").await;
    assert_eq!(left.attr("from"), Some("characters@chat.localhost/Tybalt"));
    assert_eq!(left.attr("type"), Some("unavailable"));
    romeo.expect_nothing().await;
}

/// Approving a voice request (XEP-0045 §8.6) gives a visitor voice and does nothing else: a
/// moderator cannot use the form to take an owner's moderator role (third review, issue #11).
#[tokio::test]
async fn a_voice_approval_changes_only_a_visitors_role() {
    let t = TestServer::start().await;
    for user in ["romeo", "tybalt", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut tybalt = t.login("tybalt", "pw", "street").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    enter(&mut romeo, "romeo", None).await;
    enter(&mut tybalt, "tybalt", None).await;
    enter(&mut nurse, "nurse", None).await;
    ok(&romeo
        .request(&admin("m", "<item nick='tybalt' role='moderator'/>"))
        .await);
    tybalt
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>{}{}{}{}</x></message>",
            field("FORM_TYPE", "http://jabber.org/protocol/muc#request"),
            field("muc#role", "participant"),
            field("muc#roomnick", "romeo"),
            field("muc#request_allow", "true"),
        ))
        .await;
    // The room has handled the form once it answers Tybalt's next request to it.
    let info = format!(
        "<iq xmlns='jabber:client' type='get' id='i' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    );
    ok(&tybalt.request(&info).await);
    // Romeo is still a moderator: he can kick.
    ok(&romeo
        .request(&admin("k", "<item nick='nurse' role='none'/>"))
        .await);
}

/// A headline, a groupchat or an error message one account sends another arrives without
/// what would pass for the server's word (a `stanza-id` by the recipient would pass for its
/// archive's, carbons and archive results come only from one's own account); what any sender
/// may add (a delay, its own ids) passes, and an error message keeps its error.
#[tokio::test]
async fn messages_of_every_type_lose_what_only_the_server_writes() {
    let t = TestServer::start().await;
    for user in ["juliet", "romeo"] {
        t.add_user(user, "pw").await;
    }
    let mut juliet = t.login("juliet", "pw", "balcony").await;
    let mut romeo = t.login("romeo", "pw", "orchard").await;
    romeo.send("<presence xmlns='jabber:client'/>").await;
    recv_until(&mut romeo, |el| el.name() == "presence").await;
    let forged = format!(
        "<stanza-id xmlns='{SID}' by='romeo@localhost' id='FORGED'/>\
         <stanza-id xmlns='{SID}' by='chat.localhost' id='FORGED'/>\
         <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='prince@localhost/x'/></forwarded></received>\
         <result xmlns='{MAM}' id='r'/>"
    );
    let kept = format!(
        "<delay xmlns='{DELAY}' from='localhost' stamp='2020-01-01T00:00:00Z'/>\
         <stanza-id xmlns='{SID}' by='juliet@localhost' id='hers'/>\
         <addresses xmlns='{ADDRESS}'><address type='replyto' jid='juliet@localhost/balcony'/></addresses>"
    );
    for kind in ["headline", "groupchat", "error"] {
        let error = if kind == "error" {
            "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        } else {
            ""
        };
        juliet
            .send(&format!(
                "<message xmlns='jabber:client' to='romeo@localhost/orchard' type='{kind}'><body>{kind}</body>{forged}{kept}{error}</message>"
            ))
            .await;
        let got = recv_until(&mut romeo, |el| el.name() == "message").await;
        assert_eq!(got.attr("type"), Some(kind));
        let kept = [
            ("body", NS_CLIENT),
            ("delay", DELAY),
            ("stanza-id", SID),
            ("addresses", ADDRESS),
        ];
        assert_children(&got, &kept);
    }
}

/// Invitations may be kept for invitees who are away (XEP-0160), so each counts against the
/// inviter's rate of kept messages, as a chat message does.
#[tokio::test]
async fn invitations_count_as_kept_messages() {
    let t = TestServer::start_with(|config| {
        config.limits.kept_messages_per_minute = 1;
        config.limits.kept_messages_burst = 2;
    })
    .await;
    for user in ["romeo", "benvolio", "mercutio", "tybalt"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    enter(&mut romeo, "Romeo", None).await;
    let invite = |who: &[&str]| {
        let invites: String = who
            .iter()
            .map(|w| format!("<invite to='{w}@localhost'/>"))
            .collect();
        format!(
            "<message xmlns='jabber:client' to='{ROOM}' id='inv'><x xmlns='{MUC_USER}'>{invites}</x></message>"
        )
    };
    romeo
        .send(&invite(&["benvolio", "mercutio", "tybalt"]))
        .await;
    let refused = recv_until(&mut romeo, |el| el.attr("type") == Some("error")).await;
    assert_eq!(
        stanza_error(&refused).as_deref(),
        Some("resource-constraint"),
        "{}",
        show(&refused)
    );
}

fn admin(id: &str, item: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' to='{ROOM}'>\
           <query xmlns='http://jabber.org/protocol/muc#admin'>{item}</query></iq>"
    )
}

fn admin_list(id: &str, affiliation: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='get' id='{id}' to='{ROOM}'>\
           <query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='{affiliation}'/></query></iq>"
    )
}

/// The `jid`s a `muc#admin` list answers.
fn listed(reply: &Element) -> Vec<String> {
    reply
        .get_child("query", "http://jabber.org/protocol/muc#admin")
        .unwrap_or_else(|| panic!("{}", show(reply)))
        .children()
        .filter_map(|item| item.attr("jid").map(str::to_owned))
        .collect()
}

/// (affiliation, role, status codes) of an occupant presence.
fn standing(presence: &Element) -> (String, String, Vec<String>) {
    let x = presence
        .get_child("x", MUC_USER)
        .unwrap_or_else(|| panic!("{}", show(presence)));
    let item = x.get_child("item", MUC_USER).unwrap();
    let codes = x
        .children()
        .filter(|c| c.is("status", MUC_USER))
        .filter_map(|c| c.attr("code").map(str::to_owned))
        .collect();
    (
        item.attr("affiliation").unwrap_or_default().to_owned(),
        item.attr("role").unwrap_or_default().to_owned(),
        codes,
    )
}

fn said(text: &str) -> String {
    format!(
        "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>{text}</body></message>"
    )
}

/// XEP-0045 §8.2, §8.4: a nick is one occupant, also when its account joined under it from
/// two sessions: taking its voice silences both, kicking it removes both, each told it was
/// itself (110).
#[tokio::test]
async fn a_nick_is_one_occupant_across_its_sessions() {
    let t = TestServer::start().await;
    for user in ["romeo", "tybalt"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    enter(&mut romeo, "romeo", None).await;
    ok(&romeo
        .request(&owner_form(&field("muc#roomconfig_moderatedroom", "1")))
        .await);
    let mut street = t.login("tybalt", "pw", "street").await;
    let mut square = t.login("tybalt", "pw", "square").await;
    enter(&mut street, "tybalt", None).await;
    enter(&mut square, "tybalt", None).await;
    // What Romeo hears of tybalt from now on, within a moment.
    async fn heard_of_tybalt(romeo: &mut Client) -> Vec<Element> {
        let mut heard = Vec::new();
        while let Ok(el) =
            tokio::time::timeout(std::time::Duration::from_millis(300), romeo.recv()).await
        {
            if el.attr("from") == Some("characters@chat.localhost/tybalt") {
                heard.push(el);
            }
        }
        heard
    }
    heard_of_tybalt(&mut romeo).await;
    // A private message to the nick reaches each of its sessions (§7.2.9, as on Prosody).
    romeo
        .send(&format!(
            "<message xmlns='jabber:client' type='chat' to='{ROOM}/tybalt'><body>to both</body></message>"
        ))
        .await;
    for session in [&mut street, &mut square] {
        let got = recv_until(session, |el| {
            el.name() == "message" && el.has_child("body", NS_CLIENT)
        })
        .await;
        assert_eq!(got.attr("from"), Some("characters@chat.localhost/romeo"));
    }

    ok(&romeo
        .request(&admin("v", "<item nick='tybalt' role='visitor'/>"))
        .await);
    // The room tells of the occupant once, not once per session.
    let heard = heard_of_tybalt(&mut romeo).await;
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(standing(&heard[0]).1, "visitor");
    for session in [&mut street, &mut square] {
        // Each session hears of itself (110); the other session's presence may come first.
        recv_until(session, |el| {
            el.name() == "presence"
                && el.attr("from") == Some("characters@chat.localhost/tybalt")
                && standing(el).1 == "visitor"
                && standing(el).2.contains(&"110".to_owned())
        })
        .await;
        session.send(&said("still here")).await;
        let refused = recv_until(session, |el| el.name() == "message").await;
        assert_eq!(stanza_error(&refused).as_deref(), Some("forbidden"));
    }
    // A third session under the nick is that occupant, silenced too; when it leaves, the
    // occupant is still there for the others, as the sessions that stay show it.
    let mut home = t.login("tybalt", "pw", "home").await;
    home.send(&format!(
        "<presence xmlns='jabber:client' to='{ROOM}/tybalt'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let own = recv_until(&mut home, |el| {
        el.name() == "presence" && standing(el).2.contains(&"110".to_owned())
    })
    .await;
    assert_eq!(standing(&own).1, "visitor");
    recv_until(&mut home, |el| el.has_child("subject", NS_CLIENT)).await;
    // What Romeo heard so far (the changes of role, the new session): read and set aside.
    while tokio::time::timeout(std::time::Duration::from_millis(300), romeo.recv())
        .await
        .is_ok()
    {}
    home.send(&format!(
        "<presence xmlns='jabber:client' type='unavailable' to='{ROOM}/tybalt'/>"
    ))
    .await;
    recv_until(&mut home, |el| el.attr("type") == Some("unavailable")).await;
    let stays = romeo.recv().await;
    assert_eq!(
        (stays.name(), stays.attr("from"), stays.attr("type")),
        ("presence", Some(format!("{ROOM}/tybalt").as_str()), None),
        "{}",
        show(&stays)
    );
    romeo.expect_nothing().await;

    ok(&romeo
        .request(&admin("k", "<item nick='tybalt' role='none'/>"))
        .await);
    let heard = heard_of_tybalt(&mut romeo).await;
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(heard[0].attr("type"), Some("unavailable"));
    for session in [&mut street, &mut square] {
        let gone = recv_until(session, |el| {
            el.name() == "presence" && el.attr("type") == Some("unavailable")
        })
        .await;
        let (_, role, codes) = standing(&gone);
        assert_eq!(role, "none");
        assert!(codes.contains(&"307".to_owned()), "{}", show(&gone));
        assert!(codes.contains(&"110".to_owned()), "{}", show(&gone));
    }
    romeo.send(&said("gone at last")).await;
    recv_until(&mut romeo, |el| el.name() == "message").await;
    street.expect_nothing().await;
    square.expect_nothing().await;
}

/// §8.2, §8.4, §9.1, §10.7: a moderator acts on no higher affiliation than its own
/// (not-allowed); nobody bans itself, and the last owner stays one (conflict).
#[tokio::test]
async fn room_powers_stop_at_higher_affiliations_and_at_oneself() {
    let t = TestServer::start().await;
    for user in ["romeo", "tybalt", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut tybalt = t.login("tybalt", "pw", "street").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    enter(&mut romeo, "romeo", None).await;
    enter(&mut tybalt, "tybalt", None).await;
    enter(&mut nurse, "nurse", None).await;
    ok(&romeo
        .request(&admin(
            "m",
            "<item affiliation='member' jid='nurse@localhost'/>",
        ))
        .await);
    // Tybalt, of no affiliation, made a moderator for his stay.
    ok(&romeo
        .request(&admin("t", "<item nick='tybalt' role='moderator'/>"))
        .await);
    for (id, item) in [
        ("k", "<item nick='nurse' role='none'/>"),
        ("v", "<item nick='nurse' role='visitor'/>"),
        ("o", "<item nick='romeo' role='none'/>"),
    ] {
        let refused = tybalt.request(&admin(id, item)).await;
        assert_eq!(
            stanza_error(&refused).as_deref(),
            Some("not-allowed"),
            "{item}"
        );
    }
    for (id, item) in [
        ("b", "<item affiliation='outcast' jid='romeo@localhost'/>"),
        ("d", "<item affiliation='admin' jid='romeo@localhost'/>"),
        ("n", "<item affiliation='none' jid='romeo@localhost'/>"),
    ] {
        let refused = romeo.request(&admin(id, item)).await;
        assert_eq!(
            stanza_error(&refused).as_deref(),
            Some("conflict"),
            "{item}"
        );
    }
    let owners = romeo.request(&admin_list("l", "owner")).await;
    assert_eq!(listed(&owners), ["romeo@localhost"]);
    // With a second owner, Romeo may step down, but still not ban himself.
    ok(&romeo
        .request(&admin(
            "o2",
            "<item affiliation='owner' jid='nurse@localhost'/>",
        ))
        .await);
    let refused = romeo
        .request(&admin(
            "b2",
            "<item affiliation='outcast' jid='romeo@localhost'/>",
        ))
        .await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("conflict"));
    ok(&romeo
        .request(&admin(
            "s",
            "<item affiliation='admin' jid='romeo@localhost'/>",
        ))
        .await);
}

/// §10.2, §10.6: an account the configuration form names an admin is one: listed, kept when
/// the room becomes members-only, announced; an invitation into a members-only room makes a
/// member when an admin sends it and is refused from a member (§7.8.2); in a semi-anonymous
/// room the owner and admin lists are the owners' (§10.5, §10.8).
#[tokio::test]
async fn form_admins_invitations_and_lists_of_a_members_only_room() {
    let t = TestServer::start().await;
    for user in ["romeo", "tybalt", "nurse", "benvolio"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut tybalt = t.login("tybalt", "pw", "street").await;
    enter(&mut romeo, "romeo", None).await;
    enter(&mut tybalt, "tybalt", None).await;
    let form = format!(
        "{}{}",
        field("muc#roomconfig_roomadmins", "tybalt@localhost"),
        field("muc#roomconfig_whois", "moderators"),
    );
    ok(&romeo.request(&owner_form(&form)).await);
    let announced = recv_until(&mut tybalt, |el| {
        el.name() == "presence" && el.attr("from") == Some("characters@chat.localhost/tybalt")
    })
    .await;
    let (affiliation, role, _) = standing(&announced);
    assert_eq!(
        (affiliation.as_str(), role.as_str()),
        ("admin", "moderator")
    );
    let admins = romeo.request(&admin_list("a", "admin")).await;
    assert_eq!(listed(&admins), ["tybalt@localhost"]);
    let refused = tybalt.request(&admin_list("o", "owner")).await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("forbidden"));

    ok(&romeo
        .request(&owner_form(&field("muc#roomconfig_membersonly", "1")))
        .await);
    // Tybalt stays; Romeo hears of nobody leaving.
    let members = tybalt.request(&admin_list("m", "member")).await;
    assert_eq!(members.attr("type"), Some("result"), "{}", show(&members));

    let invite = |to: &str| {
        format!(
            "<message xmlns='jabber:client' to='{ROOM}'><x xmlns='{MUC_USER}'><invite to='{to}'/></x></message>"
        )
    };
    tybalt.send(&invite("nurse@localhost")).await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    enter(&mut nurse, "nurse", None).await;
    nurse.send(&invite("benvolio@localhost")).await;
    let refused = recv_until(&mut nurse, |el| el.attr("type") == Some("error")).await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("forbidden"));
    let mut benvolio = t.login("benvolio", "pw", "square").await;
    benvolio
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/benvolio'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    let kept_out = recv_until(&mut benvolio, |el| el.name() == "presence").await;
    assert_eq!(
        stanza_error(&kept_out).as_deref(),
        Some("registration-required")
    );
}

/// §10.2 `muc#roomconfig_historylength` 0: the room keeps nothing to give newcomers or the
/// archive, and still passes on what is said; §10.9: the alternate venue's password goes to
/// the occupants of a destroyed room.
#[tokio::test]
async fn a_room_without_history_keeps_nothing_and_a_destroyed_one_gives_the_way_on() {
    let t = TestServer::start().await;
    for user in ["romeo", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    enter(&mut romeo, "romeo", None).await;
    ok(&romeo
        .request(&owner_form(&field("muc#roomconfig_historylength", "0")))
        .await);
    romeo.send(&said("unrecorded")).await;
    let echo = recv_until(&mut romeo, |el| el.has_child("body", NS_CLIENT)).await;
    assert_eq!(
        echo.get_child("body", NS_CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("unrecorded")
    );
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    nurse
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/nurse'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    let before_subject = loop {
        let el = nurse.recv().await;
        if el.name() == "message" {
            break el;
        }
    };
    assert!(
        before_subject.has_child("subject", NS_CLIENT),
        "no history: {}",
        show(&before_subject)
    );
    let (results, fin) = mam_page(&mut nurse, Some(ROOM), "").await;
    assert_eq!(fin.attr("type"), Some("result"), "{}", show(&fin));
    assert!(bodies(&results).is_empty());
    // A chat message to the room itself would be read by nobody: refused, not dropped.
    nurse
        .send(&format!(
            "<message xmlns='jabber:client' type='chat' to='{ROOM}'><body>anyone?</body></message>"
        ))
        .await;
    let refused = recv_until(&mut nurse, |el| el.attr("type") == Some("error")).await;
    assert_eq!(stanza_error(&refused).as_deref(), Some("not-acceptable"));

    ok(&romeo
        .request(&format!(
            "<iq xmlns='jabber:client' type='set' id='x' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
               <destroy jid='crypt@chat.localhost'><password>tomb</password><reason>elsewhere</reason></destroy></query></iq>"
        ))
        .await);
    let gone = recv_until(&mut nurse, |el| el.attr("type") == Some("unavailable")).await;
    let destroy = gone
        .get_child("x", MUC_USER)
        .and_then(|x| x.get_child("destroy", MUC_USER))
        .unwrap_or_else(|| panic!("{}", show(&gone)));
    assert_eq!(destroy.attr("jid"), Some("crypt@chat.localhost"));
    let text = |name: &str| destroy.get_child(name, MUC_USER).map(Element::text);
    assert_eq!(text("password").as_deref(), Some("tomb"));
    assert_eq!(text("reason").as_deref(), Some("elsewhere"));
}

/// An occupant that cannot be reached (its server answers what the room sends it with
/// `service-unavailable`, `remote-server-not-found`…) leaves with 333, as on Prosody, rather
/// than stay listed for ever; an error that says nothing of that (a full queue) changes
/// nothing, and nobody's error removes another.
#[tokio::test]
async fn an_occupant_that_cannot_be_reached_is_removed() {
    let t = TestServer::start().await;
    for user in ["romeo", "nurse"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    enter(&mut romeo, "romeo", None).await;
    enter(&mut nurse, "nurse", None).await;
    recv_until(&mut romeo, |el| el.name() == "presence").await;
    let error = |to: &str, condition: &str| {
        format!(
            "<message xmlns='jabber:client' type='error' to='{to}'><error type='cancel'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )
    };
    nurse
        .send(&error(&format!("{ROOM}/romeo"), "resource-constraint"))
        .await;
    ok(&romeo.request(&admin_list("l0", "owner")).await);
    romeo.expect_nothing().await;

    nurse
        .send(&error(&format!("{ROOM}/romeo"), "service-unavailable"))
        .await;
    let gone = recv_until(&mut romeo, |el| el.attr("type") == Some("unavailable")).await;
    assert_eq!(gone.attr("from"), Some("characters@chat.localhost/nurse"));
    let (_, role, codes) = standing(&gone);
    assert_eq!((role.as_str(), codes), ("none", vec!["333".to_owned()]));
    romeo.send(&said("still there?")).await;
    recv_until(&mut romeo, |el| el.has_child("body", NS_CLIENT)).await;
    let heard = recv_until(&mut nurse, |el| {
        el.name() == "message" || el.name() == "presence"
    })
    .await;
    assert_eq!(heard.attr("type"), Some("unavailable"), "{}", show(&heard));
    nurse.expect_nothing().await;
}

/// Found with profanity: a room's error presences and private messages keep the id the
/// client gave (RFC 6120 §8.3.1; receipts and corrections name it), the configuration form's
/// choices list what they may be (XEP-0004 §3.3), and an account in the room from two
/// sessions is one occupant to newcomers and in the occupant list.
#[tokio::test]
async fn room_answers_keep_ids_and_an_account_is_one_occupant() {
    let t = TestServer::start().await;
    for user in ["romeo", "nurse", "tybalt"] {
        t.add_user(user, "pw").await;
    }
    let mut romeo = t.login("romeo", "pw", "mobile").await;
    let mut nurse = t.login("nurse", "pw", "chamber").await;
    enter(&mut romeo, "romeo", None).await;
    nurse
        .send(&format!(
            "<presence xmlns='jabber:client' id='j1' to='{ROOM}/romeo'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    let taken = recv_until(&mut nurse, |el| el.attr("type") == Some("error")).await;
    assert_eq!(stanza_error(&taken).as_deref(), Some("conflict"));
    assert_eq!(taken.attr("id"), Some("j1"));
    enter(&mut nurse, "nurse", None).await;
    romeo
        .send(&format!(
            "<message xmlns='jabber:client' type='chat' id='pm-42' to='{ROOM}/nurse'><body>psst</body></message>"
        ))
        .await;
    let private = recv_until(&mut nurse, |el| el.has_child("body", NS_CLIENT)).await;
    assert_eq!(private.attr("id"), Some("pm-42"));

    let form = romeo
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' id='f' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"
        ))
        .await;
    let whois: Vec<String> = form
        .get_child("query", "http://jabber.org/protocol/muc#owner")
        .and_then(|q| q.get_child("x", "jabber:x:data"))
        .into_iter()
        .flat_map(|x| x.children())
        .filter(|f| f.attr("var") == Some("muc#roomconfig_whois"))
        .flat_map(|f| f.children())
        .filter(|c| c.is("option", "jabber:x:data"))
        .filter_map(|o| o.get_child("value", "jabber:x:data").map(Element::text))
        .collect();
    assert_eq!(whois, ["anyone", "moderators"]);

    // Romeo from a second session, under his nick.
    let mut laptop = t.login("romeo", "pw", "laptop").await;
    enter(&mut laptop, "romeo", None).await;
    let items = nurse
        .request(&format!(
            "<iq xmlns='jabber:client' type='get' id='i' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        ))
        .await;
    let mut listed: Vec<String> = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .into_iter()
        .flat_map(|q| q.children())
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect();
    listed.sort();
    assert_eq!(listed, [format!("{ROOM}/nurse"), format!("{ROOM}/romeo")]);
    let mut tybalt = t.login("tybalt", "pw", "street").await;
    tybalt
        .send(&format!(
            "<presence xmlns='jabber:client' id='t1' to='{ROOM}/tybalt'><x xmlns='{MUC}'/></presence>"
        ))
        .await;
    let mut heard = Vec::new();
    loop {
        let el = tybalt.recv().await;
        if el.name() == "message" {
            break;
        }
        // The self-presence carries the join's id (§7.2.3), for the client to match.
        if el.attr("from") == Some(format!("{ROOM}/tybalt").as_str()) {
            assert_eq!(el.attr("id"), Some("t1"), "{}", show(&el));
        }
        heard.push(el.attr("from").unwrap_or_default().to_owned());
    }
    heard.sort();
    assert_eq!(
        heard,
        [
            format!("{ROOM}/nurse"),
            format!("{ROOM}/romeo"),
            format!("{ROOM}/tybalt")
        ]
    );
    // One of Romeo's sessions takes another nick: for the others, romeo stays (as the session
    // that keeps it shows it) and the new nick arrives (no 303: nobody left).
    while tokio::time::timeout(std::time::Duration::from_millis(300), nurse.recv())
        .await
        .is_ok()
    {}
    laptop
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/montague'/>"
        ))
        .await;
    let stays = recv_until(&mut nurse, |el| el.name() == "presence").await;
    assert_eq!(stays.attr("from"), Some(format!("{ROOM}/romeo").as_str()));
    assert_eq!(stays.attr("type"), None);
    let arrived = recv_until(&mut nurse, |el| el.name() == "presence").await;
    assert_eq!(
        arrived.attr("from"),
        Some(format!("{ROOM}/montague").as_str())
    );
    assert_eq!(arrived.attr("type"), None);
    nurse.expect_nothing().await;
}
