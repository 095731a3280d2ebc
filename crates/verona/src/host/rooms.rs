//! Group chat on `chat.<domain>` (XEP-0207 §5, DESIGN §2) and its XEP-0045 view: a classic
//! join or leave presence is a temporary subscription with a `roomnick` made or ended, a
//! groupchat message a publish; what is said is vetted and carries its speaker's nick; each
//! occupant gets the room's events in the rendering of the way it joined. Occupant presence
//! (joins, leaves) goes to every occupant, native or classic, after the commit.

use std::time::SystemTime;

use verona_pubsub::{CreateRequest, ItemQuery, PubsubError, SubscriptionInfo};

use super::*;
use crate::eventing::groupchat::{
    self, Join, Occupant, RoomPresence, groupchat_message, join_error, occupant_presence,
    room_presence, said, speaker, subject_message,
};

impl ServicesTask {
    /// A XEP-0045 stanza for a room or for an occupant.
    pub(super) fn room_stanza(&mut self, from: FullJid, stanza: Element, done: &mut Vec<Done>) {
        let Some(to) = stanza.attr("to").and_then(|to| Jid::new(to).ok()) else {
            return;
        };
        match (stanza.name(), to.try_as_full()) {
            ("presence", Ok(room_nick)) => match room_presence(&stanza, room_nick) {
                RoomPresence::Join(join) => self.join(&from, room_nick, join, done),
                RoomPresence::Leave => self.leave(&from, room_nick, done),
                RoomPresence::Other => {}
            },
            ("message", Err(room)) if stanza.attr("type") == Some("groupchat") => {
                self.say(&from, room, &stanza, done);
            }
            ("iq", Err(room)) => self.room_iq(&from, room, &stanza, done),
            ("presence", Err(_)) => {}
            _ => {
                let reply = error_reply(&stanza, StanzaError::ServiceUnavailable, None);
                done.push(Done::reply(from, reply));
            }
        }
    }

    /// XEP-0045 §7.2: entering a room (creating it, as an instant room, if it does not exist).
    fn join(&mut self, from: &FullJid, room_nick: &FullJid, join: Join, done: &mut Vec<Done>) {
        let me = Jid::from(from.clone());
        let room = room_nick.to_bare();
        let Some(node) = room.node().map(|node| node.to_string()) else {
            return;
        };
        let refuse = |condition: &str, kind: &str| {
            Done::reply(
                from.clone(),
                Some(join_error(&me, room_nick, condition, kind)),
            )
        };
        let Some(hosted) = self.rooms.as_mut() else {
            return;
        };
        let service = &mut hosted.service;
        if let Some(mine) = service.subscribers(&node).into_iter().find(|s| s.jid == me) {
            if groupchat::nick_of(&mine.options) != Some(join.nick.as_str()) {
                // Nick changes (XEP-0045 §7.6) are not offered yet.
                done.push(refuse("not-acceptable", "modify"));
            }
            return;
        }
        let mut created = false;
        if service.node_config(&node).is_none() {
            let request = CreateRequest {
                node: Some(node.clone()),
                config: groupchat::instant_room(),
                affiliations: BTreeMap::new(),
            };
            match service.create(&me, request) {
                Ok(outcome) => {
                    created = true;
                    done.push(Done::new(Origin::Rooms, outcome.effects, outcome.undo));
                }
                Err(e) => {
                    tracing::debug!(%from, %room, "creating a room: {e}");
                    done.push(refuse("not-allowed", "cancel"));
                    return;
                }
            }
        }
        let options = groupchat::occupant_options(&join.nick, true);
        match service.subscribe(&self.presence, &me, &node, &me, Some(options)) {
            Ok(outcome) => {
                let admitted = outcome.value.state.is_approved();
                done.push(Done::new(Origin::Rooms, outcome.effects, outcome.undo));
                if admitted {
                    self.welcome(&room, &node, &me, join.history, created, done);
                } else {
                    // An `authorize` room: the owners have the request.
                    done.push(refuse("registration-required", "auth"));
                }
            }
            Err(PubsubError::OptionTaken { .. }) => done.push(refuse("conflict", "cancel")),
            Err(PubsubError::Forbidden) => done.push(refuse("forbidden", "auth")),
            Err(PubsubError::NotAuthorized(_)) => {
                done.push(refuse("registration-required", "auth"));
            }
            Err(e) => {
                tracing::debug!(%from, %room, "joining a room: {e}");
                done.push(refuse("not-allowed", "cancel"));
            }
        }
    }

    /// What an occupant who just came in gets (XEP-0045 §7.2.3–§7.2.16): the others'
    /// presence, its own (110, 100, and 201 for a new room), the history, the subject; and what
    /// the others get: its presence.
    fn welcome(
        &self,
        room: &BareJid,
        node: &str,
        newcomer: &Jid,
        history: usize,
        created: bool,
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.as_ref() else {
            return;
        };
        let Ok(to) = newcomer.clone().try_into_full() else {
            return;
        };
        let occupants = occupants(&hosted.service, node);
        let Some(me) = occupants.iter().find(|o| o.jid == *newcomer) else {
            return;
        };
        let affiliation_of = |jid: &Jid| hosted.service.affiliation(node, &jid.to_bare());
        for other in occupants.iter().filter(|o| o.jid != *newcomer) {
            let occupant = Occupant {
                room,
                nick: &other.nick,
                jid: &other.jid,
                affiliation: affiliation_of(&other.jid),
            };
            let presence = occupant_presence(&occupant, newcomer, false, &[]);
            done.push(Done::reply(to.clone(), Some(presence)));
        }
        let occupant = Occupant {
            room,
            nick: &me.nick,
            jid: newcomer,
            affiliation: affiliation_of(newcomer),
        };
        let mut own = vec![100, 110];
        if created {
            own.push(201);
        }
        let presence = occupant_presence(&occupant, newcomer, false, &own);
        done.push(Done::reply(to.clone(), Some(presence)));
        self.announce_arrival(room, node, newcomer, done);
        // History, oldest first, then the subject: the last one said, or an empty one.
        let query = ItemQuery::Latest(self.pep_limits.max_items_per_node);
        let items = hosted
            .service
            .items(&self.presence, newcomer, node, &query)
            .map(|page| page.items)
            .unwrap_or_default();
        let payloads: Vec<(Element, SystemTime)> = items
            .iter()
            .filter_map(|item| {
                let payload = item.payload.as_deref()?.parse::<Element>().ok()?;
                Some((payload, item.published))
            })
            .collect();
        let subject = payloads.iter().find_map(|(payload, _)| {
            let text = payload.get_child("subject", ns::CLIENT)?.text();
            Some((speaker(payload)?, text))
        });
        let said: Vec<&(Element, SystemTime)> = payloads
            .iter()
            .filter(|(payload, _)| payload.has_child("body", ns::CLIENT))
            .take(history)
            .collect();
        for (payload, at) in said.into_iter().rev() {
            if let Some(message) = groupchat_message(room, newcomer, payload, Some(*at)) {
                done.push(Done::reply(to.clone(), Some(message)));
            }
        }
        let subject = subject
            .as_ref()
            .map(|(nick, text)| (nick.as_str(), text.as_str()));
        done.push(Done::reply(
            to,
            Some(subject_message(room, newcomer, subject)),
        ));
    }

    /// The other occupants of a room get a newcomer's presence (XEP-0045 §7.2.3), whether it
    /// joined with XEP-0045 or natively (Ex. 13).
    pub(super) fn announce_arrival(
        &self,
        room: &BareJid,
        node: &str,
        newcomer: &Jid,
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.as_ref() else {
            return;
        };
        let occupants = occupants(&hosted.service, node);
        let Some(me) = occupants.iter().find(|o| o.jid == *newcomer) else {
            return;
        };
        let occupant = Occupant {
            room,
            nick: &me.nick,
            jid: newcomer,
            affiliation: hosted.service.affiliation(node, &newcomer.to_bare()),
        };
        for other in occupants.iter().filter(|o| o.jid != *newcomer) {
            if let Ok(session) = other.jid.clone().try_into_full() {
                let presence = occupant_presence(&occupant, &other.jid, false, &[]);
                done.push(Done::reply(session, Some(presence)));
            }
        }
    }

    /// XEP-0045 §7.14: leaving. The occupant and the others get its unavailable presence.
    fn leave(&mut self, from: &FullJid, room_nick: &FullJid, done: &mut Vec<Done>) {
        let me = Jid::from(from.clone());
        let room = room_nick.to_bare();
        let Some(node) = room.node().map(|node| node.to_string()) else {
            return;
        };
        let Some(hosted) = self.rooms.as_mut() else {
            return;
        };
        let Some(mine) = hosted
            .service
            .subscribers(&node)
            .into_iter()
            .find(|s| s.jid == me)
        else {
            return;
        };
        match hosted
            .service
            .unsubscribe(&me, &node, &me, Some(mine.subid.as_str()))
        {
            Ok(outcome) => {
                done.push(Done::new(Origin::Rooms, outcome.effects, outcome.undo));
                self.announce_departures(&[mine], done);
            }
            Err(e) => tracing::debug!(%from, %room, "leaving a room: {e}"),
        }
    }

    /// Occupants whose subscriptions ended (they left, or their session did): each remaining
    /// occupant and the one leaving get its unavailable presence.
    pub(super) fn announce_departures(&self, ended: &[SubscriptionInfo], done: &mut Vec<Done>) {
        let Some(hosted) = self.rooms.as_ref() else {
            return;
        };
        let domain = hosted.jid.domain();
        for departed in ended {
            let Some(nick) = groupchat::nick_of(&departed.options) else {
                continue;
            };
            let Some(room) = room_address(&departed.node, domain) else {
                continue;
            };
            let occupant = Occupant {
                room: &room,
                nick,
                jid: &departed.jid,
                affiliation: hosted
                    .service
                    .affiliation(&departed.node, &departed.jid.to_bare()),
            };
            let remaining = occupants(&hosted.service, &departed.node);
            let told = remaining
                .iter()
                .map(|o| (&o.jid, &[][..]))
                .chain(std::iter::once((&departed.jid, &[110u16][..])));
            for (to, codes) in told {
                if let Ok(session) = to.clone().try_into_full() {
                    let presence = occupant_presence(&occupant, to, true, codes);
                    done.push(Done::reply(session, Some(presence)));
                }
            }
        }
    }

    /// XEP-0045 §7.4: a groupchat message, published to the room as what the speaker said.
    fn say(&mut self, from: &FullJid, room: &BareJid, stanza: &Element, done: &mut Vec<Done>) {
        let me = Jid::from(from.clone());
        let Some(node) = room.node().map(|node| node.to_string()) else {
            return;
        };
        let Some(hosted) = self.rooms.as_mut() else {
            return;
        };
        let nick = hosted
            .service
            .subscribers(&node)
            .into_iter()
            .find(|s| s.jid == me && s.state.is_approved())
            .and_then(|s| groupchat::nick_of(&s.options).map(str::to_owned));
        let Some(nick) = nick else {
            // XEP-0045 §7.4: only occupants speak.
            let reply = error_reply(stanza, StanzaError::NotAcceptable, Some("not in the room"));
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        let Some(item) = said(stanza, &nick) else {
            return;
        };
        let payload = String::from(&item);
        let request = verona_pubsub::PublishRequest::payload(None, payload);
        match hosted.service.publish(&me, &node, request) {
            Ok(outcome) => done.push(Done::new(Origin::Rooms, outcome.effects, outcome.undo)),
            Err(e) => {
                tracing::debug!(%from, %room, "saying something in a room: {e}");
                let reply = error_reply(stanza, StanzaError::Forbidden, None);
                done.push(Done::reply(from.clone(), reply));
            }
        }
    }

    /// disco#info about a room (XEP-0045 §6.4); other iqs to a room are not served yet.
    fn room_iq(&self, from: &FullJid, room: &BareJid, stanza: &Element, done: &mut Vec<Done>) {
        let node = room.node().map(|node| node.to_string()).unwrap_or_default();
        let exists = self
            .rooms
            .as_ref()
            .is_some_and(|hosted| hosted.service.node_config(&node).is_some());
        let info = stanza.attr("type") == Some("get") && stanza.has_child("query", ns::DISCO_INFO);
        let reply = match (exists, info) {
            (true, true) => {
                let identity = builder("identity", ns::DISCO_INFO)
                    .with("category", "conference")
                    .with("type", "text")
                    .with("name", node.as_str())
                    .build();
                let features = [ns::MUC, "muc_open", "muc_nonanonymous", "muc_temporary"]
                    .into_iter()
                    .map(|var| builder("feature", ns::DISCO_INFO).with("var", var).build());
                let query = builder("query", ns::DISCO_INFO)
                    .append(identity)
                    .append_all(features)
                    .build();
                Some(iq_result(stanza, Some(query)))
            }
            (false, _) => error_reply(stanza, StanzaError::ItemNotFound, None),
            (true, false) => error_reply(stanza, StanzaError::ServiceUnavailable, None),
        };
        done.push(Done::reply(from.clone(), reply));
    }

    /// A native publish to a room (Ex. 16): each item is made what the speaker said, with its
    /// nick, as a classic groupchat message would be; `Err` when the publisher is not in the
    /// room or says nothing a room keeps.
    pub(super) fn vet_room_publish(
        &self,
        from: &FullJid,
        stanza: &mut Element,
    ) -> Result<(), StanzaError> {
        let Some(publish) = stanza
            .get_child_mut("pubsub", ns::PUBSUB)
            .and_then(|pubsub| pubsub.get_child_mut("publish", ns::PUBSUB))
        else {
            return Ok(());
        };
        let node = publish.attr("node").unwrap_or_default().to_owned();
        let me = Jid::from(from.clone());
        let nick = self.rooms.as_ref().and_then(|hosted| {
            hosted
                .service
                .subscribers(&node)
                .into_iter()
                .find(|s| s.jid == me && s.state.is_approved())
                .and_then(|s| groupchat::nick_of(&s.options).map(str::to_owned))
        });
        let Some(nick) = nick else {
            return Err(StanzaError::NotAcceptable);
        };
        for item in publish.children_mut().filter(|c| c.is("item", ns::PUBSUB)) {
            let message = {
                let mut payloads = item.children();
                match (payloads.next(), payloads.next()) {
                    (Some(message), None) if message.is("message", ns::CLIENT) => {
                        said(message, &nick)
                    }
                    _ => None,
                }
            };
            let Some(message) = message else {
                return Err(StanzaError::InvalidPayload);
            };
            let id = item.attr("id").map(str::to_owned);
            let mut vetted = builder("item", ns::PUBSUB).append(message).build();
            if let Some(id) = id {
                set_attr(&mut vetted, "id", id);
            }
            *item = vetted;
        }
        Ok(())
    }

    /// The stanzas an event of a room becomes: the Ex. 17 notification for occupants who joined
    /// natively, a groupchat message from the speaker's nick for those who joined with
    /// XEP-0045 (and for other subscribers nothing else).
    pub(super) fn deliver_room(&self, hosted: &Hosted, effect: &Effect) {
        let context = ServiceContext {
            jid: &hosted.jid,
            kind: hosted.kind,
            resolver: &self.presence,
        };
        let classic = |jid: &Jid, node: &str| {
            hosted
                .service
                .subscribers(node)
                .into_iter()
                .find(|s| s.jid == *jid)
                .is_some_and(|s| groupchat::is_classic(&s.options))
        };
        let (node, items) = match effect {
            Effect::Notify(n) => match &n.event {
                Event::Items { items } => (n.node.as_str(), Some(items)),
                _ => (n.node.as_str(), None),
            },
            _ => ("", None),
        };
        let Some(room) = room_address(node, hosted.jid.domain()) else {
            return;
        };
        let payloads: Vec<Element> = items
            .into_iter()
            .flatten()
            .filter_map(|item| item.payload.as_deref()?.parse().ok())
            .collect();
        for out in verona_pubsub_xmpp::render(&context, std::slice::from_ref(effect)) {
            if !node.is_empty() && classic(&out.to, node) {
                for payload in &payloads {
                    if let Some(message) = groupchat_message(&room, &out.to, payload, None) {
                        let bytes = Bytes::from(verona_stream::element_bytes(&message));
                        self.router.deliver(&out.to, bytes);
                    }
                }
            } else {
                self.router.deliver(&out.to, out.stanza);
            }
        }
    }
}

/// One occupant of a room: the session in it and its nick.
struct InRoom {
    jid: Jid,
    nick: String,
}

/// The occupants of a room: its approved subscriptions with a nick.
fn occupants(service: &Service, node: &str) -> Vec<InRoom> {
    service
        .subscribers(node)
        .into_iter()
        .filter(|s| s.state.is_approved())
        .filter_map(|s| {
            let nick = groupchat::nick_of(&s.options)?.to_owned();
            Some(InRoom { jid: s.jid, nick })
        })
        .collect()
}

/// A room's address: its node id at the service's domain.
fn room_address(node: &str, domain: &str) -> Option<BareJid> {
    BareJid::new(&format!("{node}@{domain}")).ok()
}
