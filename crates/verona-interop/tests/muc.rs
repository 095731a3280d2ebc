//! tokio-xmpp 6 as a XEP-0045 client against a real Verona: two users join a room on
//! `chat.localhost` and talk. Every occupant presence and groupchat message is parsed with
//! xmpp-parsers' MUC types, so the server's XEP-0045 view is checked by a third party's reading
//! of the protocol, not by ours.

mod common;

use tokio::time::timeout;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::muc::Muc;
use tokio_xmpp::parsers::muc::user::{Affiliation, MucUser, Role, Status};
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::{Client, Stanza};

use common::{
    JULIET, JULIET_PASSWORD, ROMEO, ROMEO_PASSWORD, TIMEOUT, TestServer, next_stanza, online,
};

const ROOM: &str = "balcony@chat.localhost";

async fn log_in(server: &TestServer, jid: &str, password: &str) -> (Client, FullJid) {
    let mut client = server.client(jid, password);
    let me = online(&mut client).await;
    (client, me)
}

async fn send(client: &mut Client, stanza: impl Into<Stanza>) {
    timeout(TIMEOUT, client.send_stanza(stanza.into()))
        .await
        .expect("sent in time")
        .expect("stanza sent");
}

/// The XEP-0045 join presence to `room/nick`.
fn join(nick: &str) -> Presence {
    let to = FullJid::new(&format!("{ROOM}/{nick}")).expect("occupant JID");
    Presence::available()
        .with_to(Jid::from(to))
        .with_payloads(vec![Muc::new().into()])
}

/// The next presence, with its `muc#user` payload parsed.
async fn occupant_presence(client: &mut Client) -> (Presence, MucUser) {
    loop {
        if let Stanza::Presence(presence) = next_stanza(client).await {
            let x = presence
                .payloads
                .iter()
                .find(|p| p.is("x", "http://jabber.org/protocol/muc#user"))
                .cloned()
                .unwrap_or_else(|| panic!("no muc#user in {presence:?}"));
            let user = MucUser::try_from(x).expect("xmpp-parsers reads the muc#user payload");
            return (presence, user);
        }
    }
}

/// The next groupchat message.
async fn groupchat(client: &mut Client) -> Message {
    loop {
        if let Stanza::Message(message) = next_stanza(client).await
            && message.type_ == MessageType::Groupchat
        {
            return message;
        }
    }
}

fn occupant(nick: &str) -> Option<Jid> {
    Some(Jid::from(
        FullJid::new(&format!("{ROOM}/{nick}")).expect("occupant JID"),
    ))
}

#[tokio::test]
async fn two_clients_join_a_room_and_talk() {
    let server = TestServer::start().await;
    let (mut juliet, juliet_jid) = log_in(&server, JULIET, JULIET_PASSWORD).await;
    let (mut romeo, romeo_jid) = log_in(&server, ROMEO, ROMEO_PASSWORD).await;

    // Juliet creates the room by entering it: her own presence, owner and moderator, with
    // 110 (this is you), 100 (non-anonymous) and 201 (new room).
    send(&mut juliet, join("Juliet")).await;
    let (own, user) = occupant_presence(&mut juliet).await;
    assert_eq!(own.from, occupant("Juliet"));
    for status in [
        Status::SelfPresence,
        Status::NonAnonymousRoom,
        Status::RoomHasBeenCreated,
    ] {
        assert!(
            user.status.contains(&status),
            "{status:?} in {:?}",
            user.status
        );
    }
    assert_eq!(user.items[0].affiliation, Affiliation::Owner);
    assert_eq!(user.items[0].role, Role::Moderator);
    assert_eq!(user.items[0].jid.as_ref(), Some(&juliet_jid));
    // The end of the (empty) history: the subject.
    let subject = groupchat(&mut juliet).await;
    assert!(!subject.subjects.is_empty(), "{subject:?}");
    // The new room is locked until she accepts its defaults (XEP-0045 §10.1.2).
    let instant: Element = "<query xmlns='http://jabber.org/protocol/muc#owner'>\
        <x xmlns='jabber:x:data' type='submit'/></query>"
        .parse()
        .expect("well-formed");
    let room = BareJid::new(ROOM).expect("room JID");
    let accept = Iq::Set {
        from: None,
        to: Some(Jid::from(room.clone())),
        id: "instant".into(),
        payload: instant,
    };
    send(&mut juliet, accept).await;
    loop {
        match next_stanza(&mut juliet).await {
            Stanza::Iq(Iq::Result { id, .. }) if id == "instant" => break,
            Stanza::Iq(other) => panic!("instant room refused: {other:?}"),
            _ => {}
        }
    }

    // Romeo enters: he sees Juliet, then himself; she sees him.
    send(&mut romeo, join("Romeo")).await;
    let (first, _) = occupant_presence(&mut romeo).await;
    assert_eq!(first.from, occupant("Juliet"));
    let (own, user) = occupant_presence(&mut romeo).await;
    assert_eq!(own.from, occupant("Romeo"));
    assert!(user.status.contains(&Status::SelfPresence));
    assert_eq!(user.items[0].affiliation, Affiliation::None);
    assert_eq!(user.items[0].role, Role::Participant);
    groupchat(&mut romeo).await;
    let (arrival, user) = occupant_presence(&mut juliet).await;
    assert_eq!(arrival.from, occupant("Romeo"));
    assert_eq!(user.items[0].jid.as_ref(), Some(&romeo_jid));

    // Romeo speaks; both get it from his nick.
    let said = Message::groupchat(Some(Jid::from(room)))
        .with_body(Lang::new(), "But soft, what light".into());
    send(&mut romeo, said).await;
    for client in [&mut romeo, &mut juliet] {
        let message = groupchat(client).await;
        assert_eq!(message.from, occupant("Romeo"));
        let body = message.get_best_body(vec![]).map(|(_, body)| body.clone());
        assert_eq!(body.as_deref(), Some("But soft, what light"));
    }

    // Romeo leaves: Juliet sees him go.
    let leave = Presence::new(PresenceType::Unavailable).with_to(occupant("Romeo").unwrap());
    send(&mut romeo, leave).await;
    let (gone, user) = occupant_presence(&mut juliet).await;
    assert_eq!(gone.from, occupant("Romeo"));
    assert_eq!(gone.type_, PresenceType::Unavailable);
    assert_eq!(user.items[0].role, Role::None);

    for client in [juliet, romeo] {
        timeout(TIMEOUT, client.send_end())
            .await
            .expect("closed in time")
            .expect("clean close");
    }
    server.shutdown().await;
}
