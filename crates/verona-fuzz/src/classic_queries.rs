//! The classic queries every logged-in user can send: arbitrary bytes inside a roster get and
//! set (RFC 6121 §2), a block and an unblock (XEP-0191), an available `<presence/>`, a publish
//! to the `presence` node (XEP-0207 §3), a room join, a room message, a room configuration
//! form (XEP-0045) and a room archive query (XEP-0313), and alone as whole stanzas, parsed by the stream
//! parser as a client's stream would carry them. Every stanza is classified by the router and
//! handed to the parser of its route, as a session does. Beyond "no panic": the route agrees
//! with the stanza, what a parser accepts is only what the server may store and send (bare JIDs
//! that read back as themselves, presence and nothing else), and storing it and reading it
//! back changes nothing.

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use verona::fuzzing::{self, Command, PresencePublish, RosterSet, Route, StanzaError};
use verona_stream::{Limits, StreamEvent, StreamParser, element_bytes};

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
const DOMAIN: &str = "localhost";
const PUBSUB: &str = "pubsub.localhost";
const ROOMS: &str = "chat.localhost";
const ME: &str = "juliet@localhost/balcony";

const CLIENT: &str = "jabber:client";
const ROSTER: &str = "jabber:iq:roster";
const BLOCKING: &str = "urn:xmpp:blocking";
const PUBSUB_NS: &str = "http://jabber.org/protocol/pubsub";

/// Where the input goes: inside each query, and alone.
const WRAPPERS: [(&[u8], &[u8]); 11] = [
    (
        b"<iq type='set' id='r'><query xmlns='jabber:iq:roster'>",
        b"</query></iq>",
    ),
    (
        b"<iq type='get' id='r'><query xmlns='jabber:iq:roster'>",
        b"</query></iq>",
    ),
    (
        b"<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>",
        b"</block></iq>",
    ),
    (
        b"<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'>",
        b"</unblock></iq>",
    ),
    (b"<presence>", b"</presence>"),
    (
        b"<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='presence'><item>",
        b"</item></publish></pubsub></iq>",
    ),
    (
        b"<presence to='room@chat.localhost/Nurse'><x xmlns='http://jabber.org/protocol/muc'>",
        b"</x></presence>",
    ),
    (
        b"<message to='room@chat.localhost' type='groupchat'>",
        b"</message>",
    ),
    (
        b"<iq type='set' id='o' to='room@chat.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'>",
        b"</query></iq>",
    ),
    (
        b"<iq type='set' id='m' to='room@chat.localhost'><query xmlns='urn:xmpp:mam:2'>",
        b"</query></iq>",
    ),
    (b"", b""),
];

pub fn classic_queries(data: &[u8]) {
    let me = FullJid::new(ME).unwrap();
    for (open, close) in WRAPPERS {
        for stanza in stanzas(&[open, data, close]) {
            check(&stanza, &me);
        }
    }
}

/// The stanzas of a client stream carrying `parts`, up to its first framing error (where the
/// server closes the stream).
fn stanzas(parts: &[&[u8]]) -> Vec<Element> {
    let mut parser = StreamParser::new(CLIENT, Limits::default());
    parser.feed(HEADER);
    for part in parts {
        parser.feed(part);
    }
    let mut stanzas = Vec::new();
    while let Ok(Some(event)) = parser.next_event() {
        if let StreamEvent::Stanza(stanza) = event {
            stanzas.push(stanza);
        }
    }
    stanzas
}

/// One stanza from the session `me`: its route, then the parser the route hands it to.
fn check(el: &Element, me: &FullJid) {
    // The connection ends the stream on any other top-level element: only these are routed.
    let routed = matches!(el.name(), "iq" | "message" | "presence") && el.ns() == CLIENT;
    if !routed {
        return;
    }
    let (route, peer) = fuzzing::classify(el, me, DOMAIN, PUBSUB);
    check_route(el, me, &route, peer.as_ref());
    match route {
        Route::Roster => check_roster_set(el),
        Route::Blocking => check_blocking(el),
        Route::PresenceBroadcast if el.attr("type").is_none() => {
            check_vetted(el, me);
        }
        Route::Pep {
            account,
            own_presence,
        } => check_presence_publish(el, me, &account, own_presence),
        Route::Room => check_room_stanza(el),
        _ => {}
    }
}

/// The route says what the stanza is, and XEP-0191 blocking sees every stanza for another
/// local account except requests to its PEP service (which outcast affiliations govern).
fn check_route(el: &Element, me: &FullJid, route: &Route, peer: Option<&BareJid>) {
    let to = match el.attr("to").map(Jid::new).transpose() {
        Ok(to) => to,
        Err(_) => {
            assert_eq!(
                (route, peer),
                (&Route::JidMalformed, None),
                "a malformed `to`"
            );
            return;
        }
    };
    let own = me.to_bare();
    let name = el.name();
    let kind = el.attr("type");
    let iq_request = name == "iq" && matches!(kind, Some("get" | "set"));
    let local_account = |jid: &BareJid| jid.domain().as_str() == DOMAIN && jid.node().is_some();
    let to_bare = to.as_ref().map(Jid::to_bare);
    let other_account = to_bare
        .clone()
        .filter(|bare| local_account(bare) && *bare != own);
    let to_own_account = to
        .as_ref()
        .is_none_or(|to| to.is_bare() && to.to_bare() == own);
    if matches!(
        route,
        Route::Pep { .. } | Route::Stored { .. } | Route::LastActivity { .. }
    ) {
        assert_eq!(peer, None, "PEP requests are not blocked by the router");
    } else {
        assert_eq!(
            peer,
            other_account.as_ref(),
            "the blocking peer is the addressee"
        );
    }
    if name == "iq" && !matches!(kind, Some("get" | "set" | "result" | "error")) {
        assert_eq!(*route, Route::BadRequest, "an iq of no known type");
    }
    if name == "presence" && to.is_none() && matches!(kind, None | Some("unavailable")) {
        assert_eq!(*route, Route::PresenceBroadcast, "a presence broadcast");
    }
    match route {
        Route::JidMalformed => panic!("a well-formed `to` routed as malformed"),
        Route::BadRequest => assert!(
            name == "iq" && !matches!(kind, Some("get" | "set" | "result" | "error")),
            "only an iq of no known type is refused as such"
        ),
        Route::Pep {
            account,
            own_presence,
        } => {
            assert!(iq_request, "PEP requests are iq get or set");
            match &to {
                None => assert_eq!(*account, own, "no `to`: the sender's own PEP service"),
                Some(to) => {
                    assert!(to.is_bare() && local_account(account), "a local account");
                    assert_eq!(Some(account), to_bare.as_ref(), "the addressed account");
                }
            }
            assert!(
                !own_presence || *account == own,
                "own presence is the sender's"
            );
        }
        Route::LastActivity { account } => {
            assert!(
                name == "iq" && kind == Some("get"),
                "a last activity query is a get"
            );
            match &to {
                None => assert_eq!(*account, own, "no `to`: the sender's own account"),
                Some(to) => {
                    assert!(to.is_bare() && local_account(account), "a local account");
                    assert_eq!(Some(account), to_bare.as_ref(), "the addressed account");
                }
            }
        }
        Route::Stored { account } => {
            assert!(iq_request, "storage requests are iq get or set");
            match &to {
                None => assert_eq!(*account, own, "no `to`: the sender's own storage"),
                Some(to) => {
                    assert!(to.is_bare() && local_account(account), "a local account");
                    assert_eq!(Some(account), to_bare.as_ref(), "the addressed account");
                }
            }
        }
        Route::Blocking | Route::Roster => {
            assert!(iq_request && to_own_account, "only the sender's own lists");
        }
        Route::PresenceBroadcast => {
            assert!(
                name == "presence" && to.is_none(),
                "a broadcast has no `to`"
            );
        }
        Route::Probe { contact } => {
            assert!(name == "presence" && kind == Some("probe"));
            assert!(local_account(contact) && Some(contact) == to_bare.as_ref());
        }
        Route::Subscription {
            contact,
            kind: subscription,
        } => {
            assert!(name == "presence");
            assert_eq!(
                kind.and_then(fuzzing::SubscriptionKind::from_type),
                Some(*subscription)
            );
            assert!(local_account(contact) && Some(contact) == to_bare.as_ref());
        }
        Route::PubsubDomain => {
            assert!(name != "presence" && to_bare.is_some_and(|to| to.as_str() == PUBSUB));
        }
        Route::RoomsService => {
            assert!(to.is_some_and(|to| to.node().is_none() && to.domain().as_str() == ROOMS));
        }
        Route::Room => {
            assert!(to.is_some_and(|to| to.node().is_some() && to.domain().as_str() == ROOMS));
        }
        Route::AuthorizationAnswer => {
            assert!(name == "message", "an answer is a message");
            assert!(to.is_some_and(|to| to.node().is_none() || to.to_bare() == own));
        }
        Route::Remote => {
            let domain = to.expect("a remote addressee").domain().to_string();
            assert!(
                domain != DOMAIN && domain != PUBSUB && domain != ROOMS,
                "{domain} is not remote"
            );
        }
        Route::ServerIq(_) => assert_eq!(name, "iq"),
        Route::ServiceUnavailable => {
            // Not only iqs: a stanza of any kind for a resource of the server (`localhost/x`).
            let server_resource = to.as_ref().is_some_and(|to| {
                to.node().is_none() && to.resource().is_some() && to.domain().as_str() == DOMAIN
            });
            // Presence for the group chat service itself, rather than for one of its rooms.
            let rooms_service = name == "presence"
                && to
                    .as_ref()
                    .is_some_and(|to| to.node().is_none() && to.domain().as_str() == ROOMS);
            assert!(
                name == "iq" || server_resource || rooms_service,
                "an iq, or for the server"
            );
        }
        Route::Session(full) => {
            assert_eq!(to, Some(Jid::from(full.clone())), "the addressed session");
            assert!(local_account(&full.to_bare()), "a session here");
        }
        Route::Account(bare) => {
            assert_eq!(name, "message", "only messages go to an account");
            assert!(local_account(bare), "an account here");
        }
        Route::Drop => {}
    }
}

/// What a room reads from a stanza addressed to it: a join's history limits hold for any
/// history, what is said keeps only what an occupant may say, invitees are bare JIDs, and a
/// configuration form parses or is refused.
fn check_room_stanza(el: &Element) {
    let to: Jid = el.attr("to").unwrap().parse().unwrap();
    match el.name() {
        "presence" => {
            let Ok(room_nick) = to.try_into_full() else {
                return;
            };
            let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
            if let fuzzing::RoomPresence::Join(join) = fuzzing::room_presence(el, &room_nick, now) {
                assert_eq!(join.nick, room_nick.resource().as_str());
                check_history(&join.history, now);
            }
        }
        "message" => {
            for invitee in fuzzing::invitees(el).into_iter().flatten() {
                assert_eq!(
                    Jid::new(invitee.jid.as_str()).ok().as_ref(),
                    Some(&invitee.jid)
                );
                check_bare(&invitee.jid.to_bare());
            }
            if let Some(item) = fuzzing::said(el, "Nurse", "oid") {
                check_said(&item);
            }
        }
        _ if el.has_child("query", "urn:xmpp:mam:2") => {
            check_archive_query(el.get_child("query", "urn:xmpp:mam:2").unwrap());
        }
        _ => {
            let forms = el
                .children()
                .flat_map(Element::children)
                .filter(|form| form.is("x", "jabber:x:data"));
            for form in forms {
                let _ = fuzzing::room_config(form);
            }
        }
    }
}

/// A MAM query that parses pages within bounds over any archive: at most `MAX_PAGE` (and
/// what it asked) results, in archive order (reversed with flip-page), among those it counts.
fn check_archive_query(query: &Element) {
    let Ok(parsed) = fuzzing::archive_query(query) else {
        return;
    };
    assert!(parsed.max <= fuzzing::MAX_PAGE, "{parsed:?}");
    let base = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let archive: Vec<fuzzing::Archived<u64>> = (0..30u64)
        .map(|n| fuzzing::Archived {
            id: format!("m{n}"),
            at: base + std::time::Duration::from_secs(n * 60),
            by: Jid::new(if n % 3 == 0 {
                "room@chat.localhost/a"
            } else {
                "room@chat.localhost/b"
            })
            .ok(),
            message: n,
        })
        .collect();
    let Ok(page) = fuzzing::archive_page(&parsed, archive) else {
        return;
    };
    assert!(page.results.len() <= parsed.max, "{parsed:?}");
    let count = page.count.expect("a page of the whole archive counts it");
    assert!(count <= 30 && page.results.len() <= count);
    let order: Vec<u64> = page.results.iter().map(|a| a.message).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    if parsed.flip {
        sorted.reverse();
    }
    assert_eq!(order, sorted, "{parsed:?}");
}

/// A history selection never exceeds what was asked: at most `stanzas` messages, at most
/// `chars` in all, none older than `since`.
fn check_history(history: &fuzzing::History, now: std::time::SystemTime) {
    let said = (0..40u64).map(|age| {
        let at = now - std::time::Duration::from_secs(age * 60);
        (age, at, usize::try_from(age).unwrap() * 7 + 1)
    });
    let chosen = history.select(said.clone());
    assert!(chosen.len() <= history.stanzas, "{history:?}");
    let sizes: usize = said
        .clone()
        .filter(|(age, _, _)| chosen.contains(age))
        .map(|(_, _, size)| size)
        .sum();
    assert!(history.chars.is_none_or(|max| sizes <= max), "{history:?}");
    for (age, at, _) in said {
        if chosen.contains(&age) {
            assert!(history.since.is_none_or(|since| at >= since), "{history:?}");
        }
    }
}

/// The item a room keeps for a message: one `<message/>`, the speaker's nick written by the
/// server once, and nothing an occupant could use to speak as another or as the server.
fn check_said(item: &Element) {
    assert!(item.is("message", CLIENT));
    let nicks: Vec<_> = item
        .children()
        .filter(|c| c.is("nick", "http://jabber.org/protocol/nick"))
        .map(Element::text)
        .collect();
    assert_eq!(nicks, ["Nurse"], "one nick, the server's");
    let ids: Vec<_> = item
        .children()
        .filter(|c| c.is("occupant-id", "urn:xmpp:occupant-id:0"))
        .filter_map(|c| c.attr("id"))
        .collect();
    assert_eq!(ids, ["oid"], "one occupant id, the server's");
    for child in item.children() {
        assert!(!child.is("delay", "urn:xmpp:delay"), "a forged delay");
        assert!(!child.is("x", "http://jabber.org/protocol/muc#user"));
        assert!(!child.is("addresses", "http://jabber.org/protocol/address"));
        assert!(child.ns() != CLIENT || ["body", "subject", "thread"].contains(&child.name()));
    }
}

/// A bare JID the server stores as a string (roster node item ids, outcast affiliations) reads
/// back as itself.
fn check_bare(jid: &BareJid) {
    assert_eq!(BareJid::new(jid.as_str()).ok().as_ref(), Some(jid), "{jid}");
}

/// An iq carrying `child`, as the parsers of sets see it.
fn iq_with(child: Element) -> Element {
    Element::builder("iq", CLIENT).append(child).build()
}

/// A roster request: `set_contact` (which every roster request goes through) and `parse_set`
/// agree, a set names a valid bare JID, and what it stores is a well-formed roster item.
fn check_roster_set(iq: &Element) {
    let parsed = fuzzing::roster_set(iq);
    let contact = match &parsed {
        Ok(RosterSet::Update { contact, .. } | RosterSet::Remove { contact }) => Some(contact),
        Err(_) => None,
    };
    assert_eq!(fuzzing::set_contact(iq).as_ref(), contact);
    match &parsed {
        Err((error, _)) => assert!(
            matches!(error, StanzaError::BadRequest | StanzaError::NotAcceptable),
            "{error:?}"
        ),
        Ok(RosterSet::Remove { contact }) => check_bare(contact),
        Ok(RosterSet::Update { contact, item }) => {
            check_bare(contact);
            check_roster_item(contact, item);
        }
    }
}

/// The `roster` node item of a roster set: the contact, a non-empty name or none, distinct
/// non-blank groups, nothing else; stored and read back by the roster view it is the same item,
/// and a roster set of it is accepted unchanged.
fn check_roster_item(contact: &BareJid, item: &Element) {
    assert!(item.is("item", ROSTER));
    assert_eq!(item.attr("jid"), Some(contact.as_str()));
    let name = item.attr("name");
    assert_ne!(name, Some(""), "an empty name is no name");
    assert_eq!(
        item.attrs().len(),
        1 + usize::from(name.is_some()),
        "only the contact and a name"
    );
    let mut groups = Vec::new();
    for group in item.children() {
        assert!(group.is("group", ROSTER), "only groups");
        let text = group.text();
        assert!(!text.trim().is_empty(), "a group has a name");
        assert!(!groups.contains(&text), "a group is listed once");
        groups.push(text);
    }
    let stored = String::from_utf8(element_bytes(item)).expect("UTF-8");
    let read: Element = stored.parse().expect("a stored roster item parses");
    assert_eq!(&read, item, "the stored item reads back as itself");
    let again = iq_with(Element::builder("query", ROSTER).append(read).build());
    match fuzzing::roster_set(&again) {
        Ok(RosterSet::Update {
            contact: again_contact,
            item: again_item,
        }) => {
            assert_eq!(&again_contact, contact);
            assert_eq!(&again_item, item);
        }
        _ => panic!("a stored roster item is a valid roster set"),
    }
}

/// A block or unblock: a block names someone, every item is kept as a valid bare JID, and the
/// command rebuilt from the items the server renders means the same.
fn check_blocking(iq: &Element) {
    let Some(Command { block, jids }) = fuzzing::blocking_set(iq) else {
        return;
    };
    assert!(!block || !jids.is_empty(), "a block names someone");
    let name = if block { "block" } else { "unblock" };
    let command = iq.get_child(name, BLOCKING).expect("the parsed command");
    let items = command.children().filter(|c| c.is("item", BLOCKING));
    assert_eq!(items.count(), jids.len(), "every item is kept");
    jids.iter().for_each(check_bare);
    let rebuilt = Element::builder(name, BLOCKING)
        .append_all(jids.iter().map(fuzzing::blocking_item))
        .build();
    assert_eq!(
        fuzzing::blocking_set(&iq_with(rebuilt)),
        Some(Command { block, jids })
    );
}

/// Available presence as `vet` rebuilds it for `me`: a `<presence/>` from `me` with no other
/// attribute, at most one `show` and one `priority`, text-only jabber:client children; vetting
/// it again, or storing it and reading it back as the classic view does, gives it again; and
/// on the wire it is exactly one stanza, this presence.
fn check_vetted(payload: &Element, me: &FullJid) -> Option<Element> {
    let vetted = fuzzing::vet(payload, me)?;
    assert!(vetted.is("presence", CLIENT));
    assert_eq!(vetted.attr("from"), Some(me.as_str()));
    assert_eq!(vetted.attrs().len(), 1, "no `type`, `to` or `id`");
    let (mut show, mut priority) = (0, 0);
    for child in vetted.children().filter(|c| c.has_ns(CLIENT)) {
        match child.name() {
            "show" => show += 1,
            "priority" => priority += 1,
            "status" => {}
            other => panic!("<{other}/> in vetted presence"),
        }
        assert_eq!(child.children().count(), 0, "text only");
    }
    assert!(show <= 1 && priority <= 1, "one show, one priority");
    let revet = |el: &Element| fuzzing::vet(el, me);
    assert_eq!(
        revet(&vetted).as_ref(),
        Some(&vetted),
        "vetting is idempotent"
    );
    let bytes = element_bytes(&vetted);
    let read: Element = std::str::from_utf8(&bytes)
        .expect("UTF-8")
        .parse()
        .expect("stored presence parses");
    assert_eq!(
        revet(&read).as_ref(),
        Some(&vetted),
        "stored presence reads back"
    );
    let wire = stanzas(&[&bytes]);
    assert_eq!(wire.len(), 1, "one stanza on the wire");
    assert_eq!(revet(&wire[0]).as_ref(), Some(&vetted), "the same presence");
    Some(vetted)
}

/// A PEP request: the router's "own presence" and the vetting agree on what a presence publish
/// is, so none escapes vetting; an available one becomes the vetted payload under the
/// publisher's resource, and vetting it again changes nothing.
fn check_presence_publish(iq: &Element, me: &FullJid, account: &BareJid, own_presence: bool) {
    let mut stamped = iq.clone();
    let outcome = fuzzing::vet_presence_publish(&mut stamped, me);
    assert_eq!(
        own_presence,
        *account == me.to_bare() && outcome != PresencePublish::Other,
        "{outcome:?}"
    );
    match outcome {
        PresencePublish::Other => assert_eq!(&stamped, iq, "not a presence publish: untouched"),
        PresencePublish::Available => {
            let item = published_item(&stamped);
            assert_eq!(item.attr("id"), Some(me.resource().as_str()));
            assert_eq!(item.nodes().count(), 1, "the payload alone");
            let payload = published_item(iq).children().next().expect("a payload");
            let vetted = check_vetted(payload, me).expect("available presence");
            assert_eq!(item.children().next(), Some(&vetted), "the vetted payload");
            let mut again = stamped.clone();
            let outcome = fuzzing::vet_presence_publish(&mut again, me);
            assert_eq!(outcome, PresencePublish::Available);
            assert_eq!(again, stamped, "vetting a vetted publish changes nothing");
        }
        PresencePublish::Unavailable | PresencePublish::Invalid => {}
    }
}

/// The item of a presence publish, as `vet_presence_publish` finds it.
fn published_item(iq: &Element) -> &Element {
    iq.get_child("pubsub", PUBSUB_NS)
        .and_then(|pubsub| pubsub.get_child("publish", PUBSUB_NS))
        .and_then(|publish| publish.get_child("item", PUBSUB_NS))
        .expect("a presence publish has an item")
}
