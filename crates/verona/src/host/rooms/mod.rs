//! Group chat on `chat.<domain>` (XEP-0207 §5, DESIGN §2) and its XEP-0045 view: a classic
//! join or leave presence is a temporary subscription with a `roomnick` made or ended, a
//! groupchat message a publish; what is said is vetted and carries its speaker's nick; each
//! occupant gets the room's events in the rendering of the way it joined. Occupant presence
//! (joins, leaves) goes to every occupant, native or classic, after the commit.

use crate::jids::Bare;
use std::cell::{Cell, RefCell};
use std::time::{Instant, SystemTime};

use verona_pubsub::{Affiliation, CreateRequest, ItemQuery, PubsubError, SubscriptionInfo};

use super::*;
use crate::eventing::groupchat::{
    self, Join, Occupant, OccupantIds, Role, RoomAffiliation, RoomPresence, VoiceForm, join_error,
    occupant_presence, presence_of, room_presence, said, speaker, subject_message,
};
use crate::eventing::{archive, room_vcard, shown};

mod admin;
mod approvals;
mod guesses;
mod invitations;
mod service;

pub(in crate::host) use guesses::PasswordGuesses;
pub(in crate::host) use invitations::Invitations;

pub(super) use service::CONCURRENT_ROOM_LISTS;

impl ServicesTask {
    /// A XEP-0045 stanza for a room or for an occupant.
    pub(super) fn room_stanza(&mut self, from: FullJid, stanza: Element, done: &mut Vec<Done>) {
        let Some(to) = stanza.attr("to").and_then(|to| Jid::new(to).ok()) else {
            return;
        };
        if stanza.attr("type") == Some("error") && stanza.name() != "iq" {
            return self.room_error(&Jid::from(from), &stanza, done);
        }
        match (stanza.name(), to.try_as_full()) {
            ("presence", Ok(room_nick)) => {
                match room_presence(&stanza, room_nick, SystemTime::now()) {
                    RoomPresence::Join(_)
                        if !groupchat::is_tidy_nick(room_nick.resource().as_str()) =>
                    {
                        let me = Jid::from(from.clone());
                        let id = stanza.attr("id");
                        let error = join_error(&me, room_nick, "jid-malformed", "modify", id);
                        done.push(Done::reply(from, Some(error)));
                    }
                    RoomPresence::Join(join) => self.join(&from, room_nick, join, &stanza, done),
                    RoomPresence::Leave => self.leave(&from, room_nick, &stanza, done),
                    RoomPresence::Probe => self.probe_occupant(&from, room_nick, done),
                    RoomPresence::Other => {}
                }
            }
            ("message", Err(room)) if stanza.attr("type") == Some("groupchat") => {
                self.say(&from, room, &stanza, done);
            }
            ("message", Err(room)) if groupchat::decline(&stanza).is_some() => {
                self.decline(&from, room, &stanza, done);
            }
            ("message", Err(room)) if stanza.has_child("x", ns::MUC_USER) => {
                self.invite(&from, room, &stanza, done);
            }
            ("message", Err(room)) => {
                if let Some(form) = groupchat::voice_form(&stanza) {
                    self.voice(&from, room, form, &stanza, done);
                } else if stanza.has_child("body", ns::CLIENT) {
                    // Said to the room but not as group chat: nobody would read it.
                    let why = Some("a room takes groupchat messages");
                    let reply = error_reply(&stanza, StanzaError::NotAcceptable, why);
                    done.push(Done::reply(from, reply));
                }
            }
            ("message", Ok(room_nick)) if stanza.attr("type") != Some("error") => {
                self.private_message(&from, room_nick, &stanza, done);
            }
            ("iq", Err(room)) => self.room_iq(&from, room, &stanza, done),
            ("iq", Ok(room_nick)) => self.occupant_iq(&from, room_nick, &stanza, done),
            // XEP-0045 §7.2.1: entering needs a nick.
            ("presence", Err(_)) if stanza.attr("type").is_none() => {
                let why = Some("a room is entered under a nick: room@service/nick");
                let reply = error_reply(&stanza, StanzaError::JidMalformed, why);
                done.push(Done::reply(from, reply));
            }
            // Leaving by the room's bare address (as Prosody accepts it).
            ("presence", Err(room)) if stanza.attr("type") == Some("unavailable") => {
                let node = room.node().map(|n| n.to_string()).unwrap_or_default();
                let mine = self.occupant_of(&node, &Jid::from(from.clone()));
                let nick = mine.as_ref().and_then(|s| groupchat::nick_of(&s.options));
                if let Some(room_nick) = nick.and_then(|nick| room.with_resource_str(nick).ok()) {
                    self.leave(&from, &room_nick, &stanza, done);
                }
            }
            ("presence" | "message", _) => {}
            _ => {
                let reply = error_reply(&stanza, StanzaError::ServiceUnavailable, None);
                done.push(Done::reply(from, reply));
            }
        }
    }

    /// Sends an occupant presence to `session`: without real JIDs when it may not see them
    /// (XEP-0045 §7.2.4, [`sees_real_jids`]).
    fn tell(&self, node: &str, session: FullJid, presence: Element, done: &mut Vec<Done>) {
        let to = Jid::from(session.clone());
        let hidden = (self.rooms.get(node))
            .is_some_and(|hosted| !sees_real_jids(&hosted.service, node, &to));
        let presence = if hidden {
            groupchat::anonymised(presence)
        } else {
            presence
        };
        done.push(Done::reply(session, Some(presence)));
    }

    /// Sends `occupant`'s presence to each of `sessions` in a room: serialized once, and once
    /// without real JIDs for those who may not see them (as [`Self::tell`] decides); each
    /// copy only adds its own `to`. The occupant's own other sessions (its account's, under
    /// its nick) get theirs with 110, as Prosody sends it: it is their own presence.
    fn tell_each<'s>(
        &self,
        node: &str,
        occupant: &Occupant,
        (leaving, status): (bool, Option<&str>),
        sessions: impl IntoIterator<Item = &'s InRoom>,
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        let Some((plain, anonymous)) = groupchat::shared_presence(occupant, leaving, &[], status)
        else {
            return;
        };
        for InRoom { jid: to, nick, .. } in sessions {
            let Ok(session) = to.clone().try_into_full() else {
                continue;
            };
            if *nick == occupant.nick && to.bare() == occupant.jid.bare() {
                let mut own = presence_of(occupant, to, leaving, &[110], None);
                if let Some(status) = status {
                    own.append_child(builder("status", ns::CLIENT).append(status).build());
                }
                self.tell(node, session, own, done);
                continue;
            }
            let hidden = !sees_real_jids(&hosted.service, node, to);
            let rest = if hidden { &anonymous } else { &plain };
            let start = groupchat::recipient_start("presence", to);
            let stanza = verona_stream::Wire::new(start, rest.clone(), Bytes::new());
            done.push(Done::sent(to.clone(), stanza));
        }
    }

    /// Sends each occupant (its session) what `message` makes for it.
    fn tell_occupants(
        &self,
        node: &str,
        message: impl Fn(&Jid) -> Option<Element>,
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        for occupant in occupants(&hosted.service, node) {
            if let (Ok(session), Some(message)) =
                (occupant.jid.clone().try_into_full(), message(&occupant.jid))
            {
                done.push(Done::reply(session, Some(message)));
            }
        }
    }

    /// Whether `jid` may be in the room: it is already, or it is in (or asking to enter) fewer
    /// than `[limits] max_rooms_per_session` rooms of this shard. A scan of the occupied rooms,
    /// as a session's end is.
    fn may_enter(&self, node: &str, jid: &Jid) -> bool {
        let in_room = |node: &str, hosted: &Hosted| {
            hosted
                .service
                .subscriptions_of_jid(node, jid)
                .next()
                .is_some()
        };
        if self
            .rooms
            .get(node)
            .is_some_and(|hosted| in_room(node, hosted))
        {
            return true;
        }
        let entered = self
            .rooms
            .iter()
            .filter(|(_, hosted)| hosted.service.has_temporary_subscriptions())
            .filter(|(node, hosted)| in_room(node, hosted))
            .count();
        entered < self.max_rooms_per_session
    }

    /// The occupant `jid` is in a room as, if it is.
    pub(in crate::host) fn occupant_of(&self, node: &str, jid: &Jid) -> Option<SubscriptionInfo> {
        self.rooms.get(node).and_then(|hosted| {
            hosted
                .service
                .subscriptions_of_jid(node, jid)
                .find(|s| s.state.is_approved())
                .map(|s| s.to_info(node))
        })
    }

    /// An error message to a room or an occupant: the bounce of an invitation the room sent
    /// to another server's user, told to the inviter; or an occupant's error.
    pub(super) fn room_error(&mut self, from: &Jid, stanza: &Element, done: &mut Vec<Done>) {
        let Some(room) =
            (stanza.attr("to").and_then(|to| Jid::new(to).ok())).map(|to| to.to_bare())
        else {
            return;
        };
        let node = room.node().map(|n| n.to_string()).unwrap_or_default();
        let bounced = (stanza.name() == "message")
            .then(|| stanza.attr("id"))
            .flatten()
            .and_then(|id| self.invitations.bounced(&node, id, from, Instant::now()));
        if let Some(sent) = bounced {
            let id = sent.id.as_deref();
            let told =
                groupchat::invitation_bounced(&room, &sent.inviter, id, &sent.invitee, stanza);
            done.push(Done::reply(sent.inviter, told));
            return;
        }
        if let Ok(from) = from.clone().try_into_full() {
            self.occupant_error(&from, &room, stanza, done);
        }
    }

    /// An error from an occupant's address in answer to what the room sent it: an occupant
    /// that cannot be reached (its server gone, its session over) leaves with 333, as
    /// Prosody does, rather than stay listed and have everything sent to it bounce. Other
    /// errors (a full queue, a block) leave it be.
    fn occupant_error(
        &mut self,
        from: &FullJid,
        room: &BareJid,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        let node = room.node().map(|n| n.to_string()).unwrap_or_default();
        let condition = stanza
            .get_child("error", ns::CLIENT)
            .and_then(|error| error.children().find(|c| c.ns() == ns::STANZAS))
            .map(|c| c.name().to_owned());
        let unreachable = matches!(
            condition.as_deref(),
            Some(
                "gone"
                    | "item-not-found"
                    | "jid-malformed"
                    | "recipient-unavailable"
                    | "redirect"
                    | "remote-server-not-found"
                    | "remote-server-timeout"
                    | "service-unavailable"
            )
        );
        let Some(occupant) = self
            .occupant_of(&node, &Jid::from(from.clone()))
            .filter(|_| unreachable)
        else {
            return;
        };
        let Some(hosted) = self.rooms.get_mut(&node) else {
            return;
        };
        let end = SubscriptionChange {
            jid: occupant.jid.clone(),
            subid: Some(occupant.subid.clone()),
            subscribed: false,
        };
        let actor = hosted.jid.clone();
        let ended = hosted
            .service
            .set_subscriptions(&self.presence, &actor, &node, &[end]);
        if record(done, &node, ended).is_err() {
            return;
        }
        let why = format!(
            "Kicked: {}",
            condition.unwrap_or_default().replace('-', " ")
        );
        let removal = Removal {
            actor: None,
            reasons: BTreeMap::from([(occupant.jid.to_bare(), why)]),
        };
        let removed = [occupant];
        self.announce_removals(room, &removed, 333, &removal, done);
        self.close_empty_rooms(&removed, done);
    }

    /// Every session in the room under `nick` (an account may join from several).
    fn occupants_named(&self, node: &str, nick: &str) -> Vec<SubscriptionInfo> {
        self.rooms
            .get(node)
            .map(|hosted| {
                hosted
                    .service
                    .subscriptions(node)
                    .filter(|s| {
                        s.state.is_approved() && groupchat::nick_of(s.options) == Some(nick)
                    })
                    .map(|s| s.to_info(node))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The session in a room under `nick`, if any.
    fn occupant_named(&self, node: &str, nick: &str) -> Option<SubscriptionInfo> {
        self.rooms.get(node).and_then(|hosted| {
            hosted
                .service
                .subscriptions(node)
                .find(|s| s.state.is_approved() && groupchat::nick_of(s.options) == Some(nick))
                .map(|s| s.to_info(node))
        })
    }

    /// XEP-0045 §7.8.2: an occupant invites accounts of this server; in a members-only room an
    /// invitation by whoever may keep the member list makes them members (§9.3).
    fn invite(&mut self, from: &FullJid, room: &BareJid, stanza: &Element, done: &mut Vec<Done>) {
        let node = room.node().map(|n| n.to_string()).unwrap_or_default();
        let me = Jid::from(from.clone());
        let Some(mine) = self.occupant_of(&node, &me) else {
            let reply = error_reply(stanza, StanzaError::NotAcceptable, Some("not in the room"));
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        let Ok(invited) = groupchat::invitees(stanza) else {
            let why = format!("at most {} invitees a message", groupchat::MAX_INVITEES);
            let reply = error_reply(stanza, StanzaError::PolicyViolation, Some(&why));
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        if invited.is_empty() {
            // Every `<invite/>` without a `to` that is a JID: said, not dropped in silence.
            let why = Some("an invitation names its invitee in 'to'");
            let reply = error_reply(stanza, StanzaError::JidMalformed, why);
            done.push(Done::reply(from.clone(), reply));
            return;
        }
        let Some(hosted) = self.rooms.get_mut(&node) else {
            return;
        };
        let Some(config) = hosted.service.node_config(&node).cloned() else {
            return;
        };
        let affiliation = affiliation_in(&hosted.service, &node, &me);
        let role = Role::of(&config, affiliation, &mine.options);
        let members_only = config.access_model == AccessModel::Whitelist;
        // `muc#roomconfig_allowinvites` off: only moderators invite, and into a members-only
        // room only those who keep the member list, admins and owners (§7.8.2, forbidden).
        let refusal = match (groupchat::occupants_invite(&config), members_only) {
            (false, true) if affiliation < RoomAffiliation::Admin => Some((
                StanzaError::Forbidden,
                "only admins invite into this members-only room",
            )),
            (false, false) if role != Role::Moderator => {
                Some((StanzaError::NotAllowed, "only moderators invite here"))
            }
            _ => None,
        };
        if let Some((error, why)) = refusal {
            done.push(Done::reply(
                from.clone(),
                error_reply(stanza, error, Some(why)),
            ));
            return;
        }
        let inviter = from.bare();
        // An invitation to a local account that does not exist, or to someone who blocks the
        // inviter (XEP-0191), is not sent, and the inviter is told, as for a message to them:
        // `service-unavailable` (RFC 6120 §10.5.3.1), the same for both, so that a block is
        // not given away.
        let (invited, refused): (Vec<_>, Vec<_>) = invited.into_iter().partition(|invited| {
            let invitee = invited.jid.to_bare();
            !self.unknown_accounts.contains(&invitee) && !self.router.blocks(&invitee, &inviter)
        });
        for refused in &refused {
            let reply = groupchat::invitation_refused(
                stanza,
                &refused.jid,
                StanzaError::ServiceUnavailable,
            );
            done.push(Done::reply(from.clone(), reply));
        }
        let Some(hosted) = self.rooms.get_mut(&node) else {
            return;
        };
        let password = groupchat::password(&config).map(str::to_owned);
        if members_only {
            // §9.3: an invitation into a members-only room makes the invitees members.
            let members: BTreeMap<BareJid, Affiliation> = invited
                .iter()
                .map(|invitee| invitee.jid.to_bare())
                .filter(|jid| hosted.service.affiliation(&node, jid) == Affiliation::None)
                .map(|jid| (jid, Affiliation::Member))
                .collect();
            let actor = hosted.jid.clone();
            if let Err(e) = record(
                done,
                &node,
                hosted
                    .service
                    .set_affiliations(&self.presence, &actor, &node, &members),
            ) {
                tracing::debug!(%from, %room, "inviting into a members-only room: {e}");
            }
        }
        let now = Instant::now();
        for invited in invited {
            let invitee = invited.jid.to_bare();
            self.invitations.invited(&node, &invitee, &inviter, now);
            let invitation =
                |to: Jid| groupchat::invitation(room, &to, &inviter, &invited, password.as_deref());
            // Another server's user: its server delivers (or keeps) it, as any message. Its
            // id, the room's own, tells its bounce from others.
            if self.is_remote(&invitee) {
                let mut message = invitation(invited.jid.clone());
                let sent_as = crate::c2s::random_id();
                set_attr(&mut message, "id", sent_as.as_str());
                let inviter = (from.clone(), stanza.attr("id").map(str::to_owned));
                let (jid, node) = (invited.jid.clone(), node.as_str());
                self.invitations.sent_away(sent_as, node, jid, inviter, now);
                done.push(Done::reply(invited.jid.clone(), Some(message)));
                continue;
            }
            // XEP-0045 §7.8.2: an invitation is a message from the room, kept in the room's
            // and the invitee's conversation as any message is: in the invitee's archive
            // (XEP-0313, as Prosody keeps it), delivered as RFC 6121 §8.5 says or kept for an
            // invitee who is away (XEP-0160). It goes once this batch, and the membership it
            // may give, is committed.
            let conversation = crate::eventing::chat::node(room, &invitee);
            let request = Request::Chat {
                from: Jid::from(room.clone()),
                to: invited.jid.clone(),
                stanza: invitation(invited.jid.clone()),
            };
            let shard = self.shard_of(&handle::room_key(self.pubsub_jid.as_str(), &conversation));
            self.send_to(
                shard,
                request,
                Committed::Service(Origin::Room(node.clone())),
            );
        }
    }

    /// A presence probe of `room/nick` (as Prosody answers it): to an occupant, the presence
    /// of that nick's occupant, or for a nick registered by someone away, an unavailable one;
    /// to anyone else `not-acceptable`.
    fn probe_occupant(&self, from: &FullJid, room_nick: &FullJid, done: &mut Vec<Done>) {
        let node = room_nick.node().map(|n| n.to_string()).unwrap_or_default();
        let me = Jid::from(from.clone());
        let room = room_nick.bare();
        let refuse = |condition: &str| {
            Done::reply(
                from.clone(),
                Some(join_error(&me, room_nick, condition, "cancel", None)),
            )
        };
        let (Some(hosted), Some(_)) = (self.rooms.get(&node), self.occupant_of(&node, &me)) else {
            done.push(refuse("not-acceptable"));
            return;
        };
        let nick = room_nick.resource().as_str();
        if let Some(target) = self.occupant_named(&node, nick) {
            let occupant = described(
                &self.occupant_ids,
                &hosted.service,
                &room,
                &node,
                (nick, &target.jid, &target.options),
            );
            let presence = occupant_presence(&occupant, &me, false, &[]);
            self.tell(&node, from.clone(), presence, done);
            return;
        }
        let registered = hosted
            .service
            .node_config(&node)
            .and_then(|config| groupchat::nick_owner(config, nick))
            .and_then(|owner| crate::jids::parse(owner).ok());
        let Some(owner) = registered else {
            done.push(refuse("item-not-found"));
            return;
        };
        let occupant = described(
            &self.occupant_ids,
            &hosted.service,
            &room,
            &node,
            (nick, &owner, &SubscriptionOptions::default()),
        );
        let mut presence = groupchat::presence_of(&occupant, &me, true, &[], None);
        if let Some(item) = presence
            .get_child_mut("x", ns::MUC_USER)
            .and_then(|x| x.get_child_mut("item", ns::MUC_USER))
        {
            set_attr(item, "nick", nick);
        }
        self.tell(&node, from.clone(), presence, done);
    }

    /// XEP-0045 §7.8.2: an invitee declines; the inviter's available sessions are told, if
    /// the inviter did invite them there.
    fn decline(&mut self, from: &FullJid, room: &BareJid, stanza: &Element, done: &mut Vec<Done>) {
        let Some((to, reason)) = groupchat::decline(stanza) else {
            return;
        };
        let inviter = to.to_bare();
        let node = room.node().map(|n| n.to_string()).unwrap_or_default();
        let known = self
            .rooms
            .get(&node)
            .is_some_and(|hosted| hosted.service.node_config(&node).is_some());
        if !known {
            let reply = error_reply(stanza, StanzaError::ItemNotFound, None);
            done.push(Done::reply(from.clone(), reply));
            return;
        }
        let invitee = from.bare();
        if !self
            .invitations
            .declined(&node, &invitee, &inviter, Instant::now())
        {
            tracing::debug!(%from, %room, %inviter, "a decline of no open invitation");
            return;
        }
        if self.router.blocks(&inviter, &invitee) {
            return;
        }
        for session in available_at(&self.router, &to) {
            let to = Jid::from(session.clone());
            let message = groupchat::declined(room, &to, &from.bare(), reason.as_deref());
            done.push(Done::reply(session, Some(message)));
        }
    }

    /// Everyone in the room sees an occupant's new role or affiliation (XEP-0045 §8, §9),
    /// with the moderator's nick and reason when one changed it (§8.4, as Prosody tells it).
    fn announce_standing(
        &self,
        room: &BareJid,
        node: &str,
        occupant: &Jid,
        by: &Removal,
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        let everyone = occupants(&hosted.service, node);
        let Some(changed) = everyone.iter().find(|o| o.jid == *occupant) else {
            return;
        };
        let who = changed.described(&self.occupant_ids, &hosted.service, room, node);
        let reason = by.reasons.get(&occupant.bare()).map(String::as_str);
        for other in &everyone {
            if let Ok(session) = other.jid.clone().try_into_full() {
                // Every session under the nick is that occupant.
                let own: &[u16] = if other.nick == changed.nick {
                    &[110]
                } else {
                    &[]
                };
                let presence = presence_of(&who, &other.jid, false, own, None);
                let presence = groupchat::removed_by(presence, by.actor.as_deref(), reason);
                self.tell(node, session, presence, done);
            }
        }
    }

    /// XEP-0045 §7.5: a private message to another occupant, from the sender's nick.
    fn private_message(
        &self,
        from: &FullJid,
        room_nick: &FullJid,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        let node = room_nick.node().map(|n| n.to_string()).unwrap_or_default();
        let me = Jid::from(from.clone());
        // §7.5: a groupchat message is for the room, never for one occupant.
        if stanza.attr("type") == Some("groupchat") {
            let why = Some("a groupchat message goes to the room");
            let reply = error_reply(stanza, StanzaError::BadRequest, why);
            done.push(Done::reply(from.clone(), reply));
            return;
        }
        let Some(sender) = self.occupant_of(&node, &me) else {
            let reply = error_reply(stanza, StanzaError::NotAcceptable, Some("not in the room"));
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        // Every session under the nick is that occupant (§7.2.9: all of them get it).
        let recipients = self.occupants_named(&node, room_nick.resource().as_str());
        if recipients.is_empty() {
            let reply = error_reply(stanza, StanzaError::ItemNotFound, Some("no such occupant"));
            done.push(Done::reply(from.clone(), reply));
            return;
        }
        // `muc#roomconfig_allowpm`: who may send private messages here.
        let allowed = self.rooms.get(&node).is_some_and(|hosted| {
            hosted.service.node_config(&node).is_some_and(|config| {
                let affiliation = affiliation_in(&hosted.service, &node, &me);
                let role = Role::of(config, affiliation, &sender.options);
                groupchat::may_message_privately(config, role)
            })
        });
        if !allowed {
            let why = Some("private messages are not allowed here");
            let reply = error_reply(stanza, StanzaError::Forbidden, why);
            done.push(Done::reply(from.clone(), reply));
            return;
        }
        let nick = groupchat::nick_of(&sender.options).unwrap_or_default();
        let Ok(sent_as) = FullJid::new(&format!("{}/{nick}", room_nick.bare())) else {
            return;
        };
        let id = self.occupant_ids.of(&room_nick.bare(), &from.bare());
        for recipient in recipients {
            if let Ok(to) = recipient.jid.clone().try_into_full() {
                let message = groupchat::private_message(&sent_as, &recipient.jid, stanza, &id);
                done.push(Done::reply(to, Some(message)));
            }
        }
    }

    /// An iq to an occupant (XEP-0045 §7.5 for iqs): XEP-0410 self-ping is answered here (in
    /// the room: a result; not in it: `not-acceptable`); any other request, and the answer to
    /// one, goes to the occupant that nick names, from the sender's nick, with its id intact.
    /// Only occupants send through the room: another's disco request is a `bad-request`
    /// (§6.7, a MUST), anything else it asks `not-acceptable`.
    fn occupant_iq(
        &self,
        from: &FullJid,
        room_nick: &FullJid,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        let request = matches!(stanza.attr("type"), Some("get" | "set"));
        let node = room_nick.node().map(|n| n.to_string()).unwrap_or_default();
        let me = Jid::from(from.clone());
        let Some(mine) = self.occupant_of(&node, &me) else {
            if request {
                let why = Some("not in the room");
                let disco = stanza.has_child("query", ns::DISCO_INFO)
                    || stanza.has_child("query", ns::DISCO_ITEMS);
                let error = match disco {
                    true => StanzaError::BadRequest,
                    false => StanzaError::NotAcceptable,
                };
                done.push(Done::reply(from.clone(), error_reply(stanza, error, why)));
            }
            return;
        };
        let nick = groupchat::nick_of(&mine.options).unwrap_or_default();
        let target = room_nick.resource().as_str();
        if request && target == nick && stanza.has_child("ping", ns::PING) {
            done.push(Done::reply(from.clone(), Some(iq_result(stanza, None))));
            return;
        }
        let recipient = self
            .occupant_named(&node, target)
            .and_then(|occupant| occupant.jid.try_into_full().ok());
        let Some(recipient) = recipient else {
            if request {
                let reply =
                    error_reply(stanza, StanzaError::ItemNotFound, Some("no such occupant"));
                done.push(Done::reply(from.clone(), reply));
            }
            return;
        };
        let mut relayed = stanza.clone();
        set_attr(&mut relayed, "from", format!("{}/{nick}", room_nick.bare()));
        set_attr(&mut relayed, "to", recipient.to_string());
        done.push(Done::reply(recipient, Some(relayed)));
    }

    /// XEP-0045 §7.2: entering a room (creating it, locked until its owner configures it, if
    /// it does not exist).
    fn join(
        &mut self,
        from: &FullJid,
        room_nick: &FullJid,
        join: Join,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        let me = Jid::from(from.clone());
        let room = room_nick.bare();
        let Some(node) = room.node().map(|node| node.to_string()) else {
            return;
        };
        let refuse = |condition: &str, kind: &str| {
            Done::reply(
                from.clone(),
                Some(join_error(
                    &me,
                    room_nick,
                    condition,
                    kind,
                    stanza.attr("id"),
                )),
            )
        };
        if !self.may_enter(&node, &me) {
            // `[limits] max_rooms_per_session`.
            done.push(refuse("resource-constraint", "wait"));
            return;
        }
        let creating = self
            .rooms
            .get(&node)
            .is_some_and(|hosted| hosted.service.node_config(&node).is_none());
        if creating && !self.admit_room(&me.bare()) {
            // `[pubsub] max_nodes_per_owner` rooms made already.
            done.push(refuse("not-allowed", "cancel"));
            return;
        }
        let Some(hosted) = self.rooms.get_mut(&node) else {
            return;
        };
        let service = &mut hosted.service;
        let mine = service
            .subscriptions_of_jid(&node, &me)
            .next()
            .map(|s| s.to_info(&node));
        // §7.10: a registered nick is its account's, to enter with or change to; a session
        // already in the room under it is that occupant, whose presence is its own to update.
        let reserved = service
            .node_config(&node)
            .and_then(|config| groupchat::nick_owner(config, &join.nick));
        let holds_it = (mine.as_ref())
            .is_some_and(|mine| groupchat::nick_of(&mine.options) == Some(join.nick.as_str()));
        if reserved.is_some_and(|who| who != me.bare().as_str()) && !holds_it {
            done.push(refuse("conflict", "cancel"));
            return;
        }
        if let Some(mine) = mine {
            if !mine.state.is_approved() {
                // Waiting for the owners of an `authorize` room is not being in it: nothing
                // to tell the occupants (a nick change was shown to them all).
                done.push(refuse("registration-required", "auth"));
                return;
            }
            if groupchat::nick_of(&mine.options) != Some(join.nick.as_str()) {
                if let Err(condition) = self.change_nick(from, room_nick, mine, done) {
                    let id = stanza.attr("id");
                    let error = join_error(&me, room_nick, condition, "cancel", id);
                    done.push(Done::reply(from.clone(), Some(error)));
                }
            } else if stanza.has_child("x", ns::MUC) {
                // A join from a session already in the room: the client lost track, and gets
                // the room again (occupants, history, subject), as a join would.
                let id = stanza.attr("id");
                self.welcome(&node, &me, join.history, Entry::Resync, id, done);
            } else {
                self.occupant_presence_changed(&room, &node, &me, stanza, done);
            }
            return;
        }
        if is_locked(service, &node)
            && affiliation_in(service, &node, &me) != RoomAffiliation::Owner
        {
            // §7.2.10: until its owner configures it, a new room admits nobody else.
            done.push(refuse("item-not-found", "cancel"));
            return;
        }
        if let Some(config) = service.node_config(&node) {
            let affiliation = affiliation_in(service, &node, &me);
            let max = groupchat::max_users(config);
            // XEP-0045 §7.2.9: owners and admins get in when the room is full.
            if max.is_some_and(|max| occupant_count(service, &node) >= max)
                && affiliation < RoomAffiliation::Admin
            {
                done.push(refuse("service-unavailable", "wait"));
                return;
            }
            // §7.2.6: the password, asked of all but the owners, and not to be guessed.
            if let Some(secret) = groupchat::password(config)
                && affiliation != RoomAffiliation::Owner
            {
                let now = Instant::now();
                let account = me.bare();
                if !self.guesses.may_try(&node, &account, now) {
                    done.push(refuse("resource-constraint", "wait"));
                    return;
                }
                if join.password.as_deref() != Some(secret) {
                    self.guesses.wrong(&node, &account, now);
                    done.push(refuse("not-authorized", "auth"));
                    return;
                }
                self.guesses.right(&node, &account);
            }
        }
        let mut created = false;
        if service.node_config(&node).is_none() {
            let request = CreateRequest {
                node: Some(node.clone()),
                // §10.1.1: locked until the owner submits a configuration (an empty one
                // makes it an instant room).
                config: groupchat::instant_room(),
                affiliations: BTreeMap::new(),
                subscribe_creator: false,
            };
            match service.create(&me, request) {
                Ok(outcome) => {
                    created = true;
                    done.push(Done::new(
                        Origin::Room(node.clone()),
                        outcome.effects,
                        outcome.undo,
                    ));
                }
                Err(e) => {
                    tracing::debug!(%from, %room, "creating a room: {e}");
                    done.push(refuse("not-allowed", "cancel"));
                    return;
                }
            }
        }
        let mut options = groupchat::occupant_options(&join.nick, true);
        shown::keep(&mut options, stanza);
        // The role is the occupant's for its stay (XEP-0045 §5.1): a room made moderated
        // later leaves the voice of those in it as it was. Another session of an account
        // already in the room under this nick is that occupant, with its role.
        let present = service
            .subscriptions(&node)
            .find(|s| {
                s.state.is_approved()
                    && s.jid.to_bare() == me.to_bare()
                    && groupchat::nick_of(s.options) == Some(join.nick.as_str())
            })
            .and_then(|s| {
                s.options
                    .custom
                    .get(groupchat::ROLE_OPTION)
                    .map(str::to_owned)
            });
        if let Some(role) = present {
            options.custom.insert(groupchat::ROLE_OPTION, &role);
        } else if let Some(config) = service.node_config(&node) {
            let role = Role::of(config, affiliation_in(service, &node, &me), &options);
            options.custom.insert(groupchat::ROLE_OPTION, role.name());
        }
        match service.subscribe(&self.presence, &me, &node, &me, Some(options)) {
            Ok(outcome) => {
                let admitted = outcome.value.state.is_approved();
                done.push(Done::new(
                    Origin::Room(node.clone()),
                    outcome.effects,
                    outcome.undo,
                ));
                if admitted {
                    let entry = if created {
                        Entry::Created
                    } else {
                        Entry::Joined
                    };
                    let id = stanza.attr("id");
                    self.welcome(&node, &me, join.history, entry, id, done);
                } else {
                    // An `authorize` room: the owners have the request.
                    done.push(refuse("registration-required", "auth"));
                }
            }
            Err(PubsubError::OptionTaken { .. }) => done.push(refuse("conflict", "cancel")),
            Err(PubsubError::Forbidden) => done.push(refuse("forbidden", "auth")),
            // Members only (a whitelist), or waiting for the owners: XEP-0045 §7.2.7.
            Err(PubsubError::NotAuthorized(_) | PubsubError::ClosedNode) => {
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
        node: &str,
        newcomer: &Jid,
        history: groupchat::History,
        entry: Entry,
        id: Option<&str>,
        done: &mut Vec<Done>,
    ) {
        let (Some(hosted), Some(room)) = (
            self.rooms.get(node),
            room_address(node, self.rooms_jid.domain()),
        ) else {
            return;
        };
        let room = &room;
        let Ok(to) = newcomer.clone().try_into_full() else {
            return;
        };
        let occupants = occupants(&hosted.service, node);
        let Some(me) = occupants.iter().find(|o| o.jid == *newcomer) else {
            return;
        };
        let first = done.len();
        self.tell_others(room, node, &occupants, me, done);
        hosted.presences.prune(&occupants);
        let occupant = me.described(&self.occupant_ids, &hosted.service, room, node);
        let mut own = vec![100, 110];
        if entry == Entry::Created {
            own.push(201);
        }
        let mut presence = occupant_presence(&occupant, newcomer, false, &own);
        // §7.2.3: the join's id comes back on the self-presence, for the client to match.
        if let Some(id) = id {
            set_attr(&mut presence, "id", id);
        }
        self.tell(node, to.clone(), presence, done);
        if entry != Entry::Resync {
            self.announce_arrival_to(room, node, newcomer, &occupants, done);
        }
        // History, oldest first, then the subject: the room's, or an empty one.
        let query = ItemQuery::Latest(self.pep_limits.max_items_per_node);
        let items = hosted
            .service
            .items(&self.presence, newcomer, node, &query)
            .map(|page| page.items)
            .unwrap_or_default();
        let kept = (hosted.service.node_config(node))
            .and_then(groupchat::subject)
            .map(|(said, stamp)| (said, stamp.to_owned()));
        // A room whose subject was set before the configuration kept it has it among its
        // items, if they have not turned over: newest first, and only items whose text has one.
        let subject = kept.or_else(|| {
            items
                .iter()
                .filter_map(|item| Some((item.payload.as_deref()?, item.published)))
                .filter(|(payload, _)| payload.contains("<subject"))
                .filter_map(|(payload, at)| Some((payload.parse::<Element>().ok()?, at)))
                .find(|(said, _)| groupchat::is_subject_change(said) && speaker(said).is_some())
                .map(|(said, at)| (said, verona_pubsub_xmpp::stamp(at)))
        });
        let message_start = groupchat::recipient_start("message", newcomer);
        let said = items.iter().filter_map(|item| {
            let rest = hosted.history.rest(room, item)?;
            let size = message_start.len() + rest.len();
            Some((rest, item.published, size))
        });
        for rest in history.select(said).into_iter().rev() {
            let message = verona_stream::Wire::new(message_start.clone(), rest, Bytes::new());
            done.push(Done::sent(to.clone(), message));
        }
        hosted.history.prune(&items);
        done.push(Done::reply(
            to,
            Some(subject_message(
                room,
                newcomer,
                subject.as_ref().map(|(said, stamp)| (said, stamp.as_str())),
            )),
        ));
        // One short presence brings the room's occupants and history: the newcomer's account
        // pays for them, as for an answer, or leaving and entering again would make the server
        // render a room's history at the rate presences are read.
        self.answered(newcomer, &done[first..]);
    }

    /// The presences of the room's other occupants to the session `me` (XEP-0045 §7.2.3), one
    /// per nick (an account in the room from several sessions is one occupant; its own nick
    /// it hears of as its own), with real JIDs if it may see them, as [`Self::tell`] decides.
    pub(super) fn tell_others(
        &self,
        room: &BareJid,
        node: &str,
        occupants: &[InRoom],
        me: &InRoom,
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        let Ok(to) = me.jid.clone().try_into_full() else {
            return;
        };
        let hidden = !sees_real_jids(&hosted.service, node, &me.jid);
        let start = groupchat::recipient_start("presence", &me.jid);
        let mut told: BTreeSet<&str> = BTreeSet::from([me.nick.as_str()]);
        for other in occupants.iter().filter(|o| told.insert(o.nick.as_str())) {
            let occupant = other.described(&self.occupant_ids, &hosted.service, room, node);
            match hosted.presences.rest(&occupant, hidden) {
                Some(rest) => {
                    let stanza = verona_stream::Wire::new(start.clone(), rest, Bytes::new());
                    done.push(Done::sent(to.clone(), stanza));
                }
                None => {
                    let presence = occupant_presence(&occupant, &me.jid, false, &[]);
                    self.tell(node, to.clone(), presence, done);
                }
            }
        }
    }

    /// An occupant the owners let into an `authorize` room: one who asked with XEP-0045
    /// presence gets what a join gets (it was told `registration-required` meanwhile), a
    /// native one is announced to the others.
    pub(super) fn admitted(&self, node: &str, occupant: &Jid, done: &mut Vec<Done>) {
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        let Some(room) = room_address(node, hosted.jid.domain()) else {
            return;
        };
        let classic = self
            .occupant_of(node, occupant)
            .is_some_and(|s| groupchat::is_classic(&s.options));
        if classic {
            let history = groupchat::History {
                stanzas: groupchat::DEFAULT_HISTORY,
                chars: None,
                since: None,
            };
            self.welcome(node, occupant, history, Entry::Joined, None, done);
        } else {
            self.announce_arrival(&room, node, occupant, done);
        }
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
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        let occupants = occupants(&hosted.service, node);
        self.announce_arrival_to(room, node, newcomer, &occupants, done);
    }

    /// [`Self::announce_arrival`] to the room's `occupants`, already listed.
    fn announce_arrival_to(
        &self,
        room: &BareJid,
        node: &str,
        newcomer: &Jid,
        occupants: &[InRoom],
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        let Some(me) = occupants.iter().find(|o| o.jid == *newcomer) else {
            return;
        };
        let occupant = me.described(&self.occupant_ids, &hosted.service, room, node);
        let others = occupants.iter().filter(|o| o.jid != *newcomer);
        self.tell_each(node, &occupant, (false, None), others, done);
    }

    /// XEP-0045 §7.7: an occupant's presence changed (away, a status): everyone in the room
    /// sees it.
    fn occupant_presence_changed(
        &mut self,
        room: &BareJid,
        node: &str,
        occupant: &Jid,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.get_mut(node) else {
            return;
        };
        let Some(mine) = hosted
            .service
            .subscriptions_of_jid(node, occupant)
            .find(|s| s.state.is_approved())
            .map(|s| s.to_info(node))
        else {
            return;
        };
        // Kept, for those who enter later (§7.2.3).
        let mut options = mine.options;
        if shown::keep(&mut options, stanza) {
            let kept = hosted.service.set_subscription_options(
                occupant,
                node,
                occupant,
                Some(mine.subid.as_str()),
                options,
            );
            if let Err(e) = record(done, node, kept) {
                tracing::debug!(%room, "keeping an occupant's presence: {e}");
            }
        }
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        let everyone = occupants(&hosted.service, node);
        let Some(me) = everyone.iter().find(|o| o.jid == *occupant) else {
            return;
        };
        let who = me.described(&self.occupant_ids, &hosted.service, room, node);
        let others = everyone.iter().filter(|o| o.jid != *occupant);
        self.tell_each(node, &who, (false, None), others, done);
        if let Ok(session) = occupant.clone().try_into_full() {
            let presence = presence_of(&who, occupant, false, &[110], None);
            self.tell(node, session, presence, done);
        }
    }

    /// XEP-0045 §7.6: a new nick, if nobody has it: everyone sees the old one leave with 303
    /// and the new one arrive.
    pub(super) fn change_nick(
        &mut self,
        from: &FullJid,
        room_nick: &FullJid,
        mine: SubscriptionInfo,
        done: &mut Vec<Done>,
    ) -> Result<(), &'static str> {
        let me = Jid::from(from.clone());
        let room = room_nick.bare();
        let new = room_nick.resource().as_str();
        let Some(old) = groupchat::nick_of(&mine.options).map(str::to_owned) else {
            return Ok(());
        };
        let Some(hosted) = self.rooms.get_mut(&mine.node) else {
            return Ok(());
        };
        let mut options = mine.options.clone();
        options.custom.insert(groupchat::NICK_OPTION, new);
        let changed = hosted.service.set_subscription_options(
            &me,
            &mine.node,
            &me,
            Some(mine.subid.as_str()),
            options,
        );
        let outcome = changed.map_err(|e| match e {
            PubsubError::OptionTaken { .. } => "conflict",
            _ => "not-acceptable",
        })?;
        done.push(Done::new(
            Origin::Room(mine.node.clone()),
            outcome.effects,
            outcome.undo,
        ));
        let Some(hosted) = self.rooms.get(&mine.node) else {
            return Ok(());
        };
        let before = described(
            &self.occupant_ids,
            &hosted.service,
            &room,
            &mine.node,
            (&old, &me, &mine.options),
        );
        let after = Occupant {
            nick: new,
            ..before.clone()
        };
        let everyone = occupants(&hosted.service, &mine.node);
        // Another session of the account keeps the old nick: for the others that occupant
        // stays, and the new nick is one more.
        let node = &mine.node;
        let staying = (everyone.iter())
            .find(|o| o.nick == old && o.jid != me)
            .map(|staying| staying.described(&self.occupant_ids, &hosted.service, &room, node));
        let old_held = staying.is_some();
        // ...as the session that keeps it shows it (as Prosody tells them): the one that
        // left may have shown another status, or its real JID.
        if let Some(staying) = &staying {
            let others = everyone.iter().filter(|o| o.jid != me);
            self.tell_each(node, staying, (false, None), others, done);
        }
        for other in &everyone {
            let Ok(session) = other.jid.clone().try_into_full() else {
                continue;
            };
            let own = other.jid == me;
            if own || !old_held {
                let left: &[u16] = if own { &[303, 110] } else { &[303] };
                let gone = presence_of(&before, &other.jid, true, left, Some(new));
                self.tell(&mine.node, session.clone(), gone, done);
            }
            let came: &[u16] = if own { &[110] } else { &[] };
            let back = presence_of(&after, &other.jid, false, came, None);
            self.tell(&mine.node, session, back, done);
        }
        // The renamed session still sees the old nick, now another occupant's (as Prosody
        // tells it): its 303 alone would take that occupant off its list.
        if let Some(staying) = &staying {
            let renamed = everyone.iter().filter(|o| o.jid == me);
            self.tell_each(node, staying, (false, None), renamed, done);
        }
        Ok(())
    }

    /// XEP-0045 §7.14: leaving. The occupant and the others get its unavailable presence, with
    /// the status it gave (as bounded as an occupant's status is).
    fn leave(
        &mut self,
        from: &FullJid,
        room_nick: &FullJid,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        let me = Jid::from(from.clone());
        let room = room_nick.bare();
        let Some(node) = room.node().map(|node| node.to_string()) else {
            return;
        };
        let Some(hosted) = self.rooms.get_mut(&node) else {
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
                done.push(Done::new(
                    Origin::Room(node.clone()),
                    outcome.effects,
                    outcome.undo,
                ));
                // Someone waiting for an `authorize` room's owners withdraws the request; never
                // in, it has no departure to announce (one was shown, with its own status).
                if !mine.state.is_approved() {
                    return;
                }
                let ended = [mine];
                let status = shown::status(stanza);
                self.announce_departures(&ended, status.as_deref(), done);
                self.close_empty_rooms(&ended, done);
            }
            Err(e) => tracing::debug!(%from, %room, "leaving a room: {e}"),
        }
    }

    /// Occupants whose subscriptions ended (they left, or their session did): each remaining
    /// occupant and the one leaving get its unavailable presence, with `status` if it gave one.
    pub(super) fn announce_departures(
        &self,
        ended: &[SubscriptionInfo],
        status: Option<&str>,
        done: &mut Vec<Done>,
    ) {
        let domain = self.rooms_jid.domain();
        for departed in ended {
            let Some(hosted) = self.rooms.get(&departed.node) else {
                continue;
            };
            let Some(nick) = groupchat::nick_of(&departed.options) else {
                continue;
            };
            let Some(room) = room_address(&departed.node, domain) else {
                continue;
            };
            let occupant = described(
                &self.occupant_ids,
                &hosted.service,
                &room,
                &departed.node,
                (nick, &departed.jid, &departed.options),
            );
            let remaining = occupants(&hosted.service, &departed.node);
            let others = remaining.iter();
            match remaining.iter().find(|o| o.nick == nick) {
                // Another session of the account stays under the nick: the occupant is still
                // there for everyone else, as that session shows it (the one that left may
                // have shown another status, or its real JID), as Prosody announces it.
                Some(staying) => {
                    let node = &departed.node;
                    let staying =
                        staying.described(&self.occupant_ids, &hosted.service, &room, node);
                    self.tell_each(node, &staying, (false, None), others, done);
                }
                None => self.tell_each(&departed.node, &occupant, (true, status), others, done),
            }
            // The one who left: its own, with 110.
            if let Ok(session) = departed.jid.clone().try_into_full() {
                let mut presence = occupant_presence(&occupant, &departed.jid, true, &[110]);
                if let Some(status) = status {
                    presence.append_child(builder("status", ns::CLIENT).append(status).build());
                }
                self.tell(&departed.node, session, presence, done);
            }
        }
    }

    /// A room that is not persistent goes when its last occupant does (XEP-0045 §10.1.3).
    pub(super) fn close_empty_rooms(&mut self, ended: &[SubscriptionInfo], done: &mut Vec<Done>) {
        let nodes: BTreeSet<&str> = ended.iter().map(|s| s.node.as_str()).collect();
        for node in nodes {
            let Some(hosted) = self.rooms.get_mut(node) else {
                continue;
            };
            let Some(config) = hosted.service.node_config(node) else {
                continue;
            };
            if groupchat::is_persistent(config) || !occupants(&hosted.service, node).is_empty() {
                continue;
            }
            let owner = hosted
                .service
                .metadata(node)
                .and_then(|meta| meta.owners.first().cloned());
            let Some(owner) = owner else {
                continue;
            };
            match hosted.service.delete(&Jid::from(owner), node, None) {
                Ok(outcome) => {
                    let origin = Origin::Room(node.to_owned());
                    done.push(Done::new(origin, outcome.effects, outcome.undo));
                }
                Err(e) => tracing::debug!(node, "closing an empty room: {e}"),
            }
        }
    }

    /// XEP-0045 §7.4: a groupchat message, published to the room as what the speaker said.
    fn say(&mut self, from: &FullJid, room: &BareJid, stanza: &Element, done: &mut Vec<Done>) {
        let me = Jid::from(from.clone());
        let Some(node) = room.node().map(|node| node.to_string()) else {
            return;
        };
        let Some(hosted) = self.rooms.get_mut(&node) else {
            return;
        };
        let mine = hosted
            .service
            .subscriptions_of_jid(&node, &me)
            .find(|s| s.state.is_approved());
        let Some((nick, role)) = mine.and_then(|mine| {
            let nick = groupchat::nick_of(mine.options)?.to_owned();
            let config = hosted.service.node_config(&node)?;
            let affiliation = affiliation_in(&hosted.service, &node, &me);
            Some((nick, Role::of(config, affiliation, mine.options)))
        }) else {
            // XEP-0045 §7.4: only occupants speak; §18.2: in a room that does not exist (or
            // not yet, while locked, §7.2.10), nobody is.
            let exists = hosted
                .service
                .node_config(&node)
                .is_some_and(|c| !groupchat::is_locked(c));
            let reply = match exists {
                true => error_reply(stanza, StanzaError::NotAcceptable, Some("not in the room")),
                false => error_reply(stanza, StanzaError::ItemNotFound, Some("no such room")),
            };
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        if role == Role::Visitor {
            // §7.4: in a moderated room, only those with voice.
            let reply = error_reply(stanza, StanzaError::Forbidden, Some("you have no voice"));
            done.push(Done::reply(from.clone(), reply));
            return;
        }
        let may_set_subject = role == Role::Moderator
            || hosted
                .service
                .node_config(&node)
                .is_some_and(groupchat::occupants_change_subject);
        if groupchat::is_subject_change(stanza) && !may_set_subject {
            // XEP-0045 §8.1.
            let why = "only the moderators change the subject";
            let reply = error_reply(stanza, StanzaError::Forbidden, Some(why));
            done.push(Done::reply(from.clone(), reply));
            return;
        }
        let id = self.occupant_ids.of(room, &from.bare());
        let Some(item) = said(stanza, &nick, &id) else {
            return;
        };
        // Each copy names its speaker `room/nick`: the sender paid for the rest before it was
        // routed here (`[limits] broadcast_bytes_per_sec`), a long nick is the room's to add.
        self.broadcasts
            .charge(&from.bare(), nick.len(), Instant::now());
        let payload = String::from(&item);
        let request = verona_pubsub::PublishRequest {
            // Chat states and what asks not to be kept reach the occupants, and stay out of
            // the history and the archive.
            transient: !groupchat::is_kept(&item),
            ..verona_pubsub::PublishRequest::payload(None, payload)
        };
        match hosted.service.publish(&me, &node, request) {
            Ok(outcome) => {
                hosted.said.keep(room, &item, &outcome.effects);
                // If the room's writes fail, the speaker is told (`storage_failed`).
                done.push(Done {
                    to: Some(Jid::from(from.clone())),
                    request: Some(stanza.clone()),
                    ..Done::new(Origin::Room(node.clone()), outcome.effects, outcome.undo)
                });
                if groupchat::is_subject_change(&item) {
                    self.keep_subject(&node, &item, done);
                }
            }
            Err(e) => {
                tracing::debug!(%from, %room, "saying something in a room: {e}");
                let reply = error_reply(stanza, said_refused(&e), None);
                done.push(Done::reply(from.clone(), reply));
            }
        }
    }

    /// Keeps `said`, a subject change just published to the room, as its subject (XEP-0045
    /// §8.1): stored with its configuration, for who comes in later (§7.2.15) whatever its
    /// history keeps.
    pub(in crate::host) fn keep_subject(
        &mut self,
        node: &str,
        said: &Element,
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.get_mut(node) else {
            return;
        };
        let field = groupchat::subject_field(said, SystemTime::now());
        let actor = hosted.jid.clone();
        let setting = hosted
            .service
            .configure(&self.presence, &actor, node, &[field]);
        if let Err(e) = record(done, node, setting) {
            tracing::warn!(%node, "keeping a room's subject: {e}");
        }
    }

    /// (§10.1–§10.2) and destruction (§10.9), and the affiliation and role lists (§9, §8.2):
    /// kick, ban, membership.
    fn room_iq(&mut self, from: &FullJid, room: &BareJid, stanza: &Element, done: &mut Vec<Done>) {
        let first = done.len();
        self.answer_room_iq(from, room, stanza, done);
        // An archive page, the occupant list: answers count against the asker's read rate.
        self.answered(&Jid::from(from.clone()), &done[first..]);
    }

    fn answer_room_iq(
        &mut self,
        from: &FullJid,
        room: &BareJid,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        let node = room.node().map(|node| node.to_string()).unwrap_or_default();
        // A room locked until its owner configures it does not exist for anyone else yet
        // (XEP-0045 §7.2.10).
        let config = self.rooms.get(&node).and_then(|hosted| {
            let me = Jid::from(from.clone());
            let owner = affiliation_in(&hosted.service, &node, &me) == RoomAffiliation::Owner;
            (!is_locked(&hosted.service, &node) || owner)
                .then(|| hosted.service.node_config(&node).cloned())
                .flatten()
        });
        let Some(config) = config else {
            let reply = error_reply(stanza, StanzaError::ItemNotFound, None);
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        let get = stanza.attr("type") == Some("get");
        let set = stanza.attr("type") == Some("set");
        let info = stanza.get_child("query", ns::DISCO_INFO).filter(|_| get);
        let reply = if let Some(info) = info {
            if info.attr("node") == Some(ROOMUSER_ITEM) {
                Some(iq_result(stanza, Some(registered_identity(&config, from))))
            } else {
                // Occupants by nick: one person in several sessions is one occupant.
                let occupants = (self.rooms.get(&node))
                    .map(|hosted| occupants(&hosted.service, &node))
                    .unwrap_or_default();
                let nicks: BTreeSet<&str> = occupants.iter().map(|o| o.nick.as_str()).collect();
                Some(iq_result(
                    stanza,
                    Some(room_info(&node, &config, nicks.len())),
                ))
            }
        } else if let (Some(_), true) = (stanza.get_child("query", archive::NS), get) {
            Some(iq_result(stanza, Some(archive::form())))
        } else if let (Some(query), true) = (stanza.get_child("query", archive::NS), set) {
            self.archive_query(from, room, &node, stanza, query, done)
        } else if let Some(query) = stanza.get_child("query", groupchat::IQ_REGISTER) {
            self.register(from, &node, stanza, query, get, set, done)
        } else if get && stanza.has_child("query", ns::DISCO_ITEMS) {
            // XEP-0045 §6.5: the occupants, by `room/nick`, to those in the room only.
            let me = Jid::from(from.clone());
            let listed = self
                .rooms
                .get(&node)
                .filter(|_| self.occupant_of(&node, &me).is_some())
                .map(|hosted| occupants(&hosted.service, &node))
                .unwrap_or_default();
            let nicks: BTreeSet<&str> = listed.iter().map(|o| o.nick.as_str()).collect();
            let items = nicks.into_iter().map(|nick| {
                builder("item", ns::DISCO_ITEMS)
                    .with("jid", format!("{room}/{nick}"))
                    .build()
            });
            let query = builder("query", ns::DISCO_ITEMS).append_all(items).build();
            Some(iq_result(stanza, Some(query)))
        } else if let Some(query) = stanza.get_child("query", ns::MUC_OWNER) {
            self.owner_query(from, room, &node, stanza, query, get, done)
        } else if let (Some(query), true) = (stanza.get_child("query", ns::MUC_ADMIN), set) {
            self.admin_set(from, room, &node, stanza, query, done)
        } else if let (Some(query), true) = (stanza.get_child("query", ns::MUC_ADMIN), get) {
            self.admin_list(from, &node, stanza, query)
        } else if let (Some(_), true) = (stanza.get_child("vCard", room_vcard::NS), get) {
            Some(iq_result(stanza, Some(room_vcard::of(&config))))
        } else if let (Some(vcard), true) = (stanza.get_child("vCard", room_vcard::NS), set) {
            self.set_vcard(from, room, &node, stanza, vcard, done)
        } else if set || get {
            error_reply(stanza, StanzaError::ServiceUnavailable, None)
        } else {
            None
        };
        done.push(Done::reply(from.clone(), reply));
    }

    /// Occupants removed by an owner: each is told, and the others see it go, with `code`
    /// (307 kicked, 301 banned), who did it and why (§8.2, §9.1).
    fn announce_removals(
        &self,
        room: &BareJid,
        removed: &[SubscriptionInfo],
        code: u16,
        removal: &Removal,
        done: &mut Vec<Done>,
    ) {
        quiet_for_classic(done, removed);
        // The others hear of an occupant once, however many of its sessions went.
        let mut told_of: BTreeSet<&str> = BTreeSet::new();
        for gone in removed {
            let Some(hosted) = self.rooms.get(&gone.node) else {
                continue;
            };
            let Some(nick) = groupchat::nick_of(&gone.options) else {
                continue;
            };
            let occupant = described(
                &self.occupant_ids,
                &hosted.service,
                room,
                &gone.node,
                (nick, &gone.jid, &gone.options),
            );
            let remaining = occupants(&hosted.service, &gone.node);
            let own = [code, 110];
            // The nick still held by another of the account's sessions: only the removed
            // session hears of it.
            let held = remaining.iter().any(|o| o.nick == nick);
            let first = told_of.insert(nick);
            let told = remaining
                .iter()
                .filter(|_| !held && first)
                .map(|o| (&o.jid, &own[..1]))
                .chain(std::iter::once((&gone.jid, &own[..])));
            let reason = removal.reasons.get(&gone.jid.bare()).map(String::as_str);
            for (to, codes) in told {
                if let Ok(session) = to.clone().try_into_full() {
                    let presence = occupant_presence(&occupant, to, true, codes);
                    let presence =
                        groupchat::removed_by(presence, removal.actor.as_deref(), reason);
                    self.tell(&gone.node, session, presence, done);
                }
            }
        }
    }

    /// Who is in room `node`, to tell them if it goes ([`Self::announce_gone`]).
    pub(in crate::host) fn in_room(&self, node: &str) -> Vec<InRoom> {
        (self.rooms.get(node))
            .map(|hosted| occupants(&hosted.service, node))
            .unwrap_or_default()
    }

    /// Room `node` went with its owner's account, or its owner deleted it natively (XEP-0060
    /// §8.4; the engine deleted it, the last `done`): those who were in it hear of its
    /// destruction as from its owner (§10.9), the room a `redirect` names as the alternate
    /// venue.
    pub(in crate::host) fn announce_gone(
        &self,
        node: &str,
        leaving: &[InRoom],
        redirect: Option<&str>,
        done: &mut Vec<Done>,
    ) {
        let Some(room) = room_address(node, self.rooms_jid.domain().as_str()) else {
            return;
        };
        admin::spare_classic(done, leaving);
        let destroyed = groupchat::redirected(redirect);
        self.announce_destruction(&room, leaving, &destroyed, done);
    }

    /// Room `node`'s subscriptions, pending ones too, before an owner answers or changes them
    /// natively ([`Self::announce_owner_ended`]).
    pub(in crate::host) fn subscriptions_in(&self, node: &str) -> Vec<SubscriptionInfo> {
        (self.rooms.get(node))
            .map(|hosted| hosted.service.subscribers(node))
            .unwrap_or_default()
    }

    /// Subscriptions to room `node` that `from`, an owner, ended natively (XEP-0060 §8.8.2, or
    /// a request denied, §8.6), `before` being the room's until then. An occupant goes as a
    /// kicked one does (307, XEP-0045 §8.2), the owner named if it is in the room; a classic
    /// joiner still waiting hears nothing more: its join was answered `registration-required`
    /// when it asked (§7.2.7), and a refused request does not change that answer.
    pub(in crate::host) fn announce_owner_ended(
        &self,
        from: &FullJid,
        node: &str,
        before: &[SubscriptionInfo],
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        let Some(room) = room_address(node, hosted.jid.domain()) else {
            return;
        };
        let after = hosted.service.subscribers(node);
        let (removed, refused): (Vec<SubscriptionInfo>, Vec<SubscriptionInfo>) = before
            .iter()
            .filter(|s| match after.iter().find(|a| a.subid == s.subid) {
                Some(now) => s.state.is_approved() && !now.state.is_approved(),
                None => true,
            })
            .cloned()
            .partition(|s| s.state.is_approved());
        quiet_for_classic(done, &refused);
        if removed.is_empty() {
            return;
        }
        let actor = self
            .occupant_of(node, &Jid::from(from.clone()))
            .and_then(|mine| groupchat::nick_of(&mine.options).map(str::to_owned));
        let removal = Removal {
            actor,
            reasons: BTreeMap::new(),
        };
        self.announce_removals(&room, &removed, 307, &removal, done);
    }

    /// A destroyed room: every occupant gets its own unavailable presence with `<destroy/>`,
    /// naming the alternate venue and the reason if the owner gave them (§10.9).
    fn announce_destruction(
        &self,
        room: &BareJid,
        leaving: &[InRoom],
        destroy: &Element,
        done: &mut Vec<Done>,
    ) {
        for occupant in leaving {
            let Ok(session) = occupant.jid.clone().try_into_full() else {
                continue;
            };
            let destroy = destroy.clone();
            let x = builder("x", ns::MUC_USER)
                .append(
                    builder("item", ns::MUC_USER)
                        .with("affiliation", "none")
                        .with("role", "none")
                        .build(),
                )
                .append(destroy)
                .build();
            let presence = builder("presence", ns::CLIENT)
                .with("type", "unavailable")
                .with("from", format!("{room}/{}", occupant.nick))
                .with("to", occupant.jid.as_str())
                .append(x)
                .build();
            done.push(Done::reply(session, Some(presence)));
        }
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
        let (node, items) = match effect {
            Effect::Notify(n) => match &n.event {
                Event::Items { items } => (n.node.as_str(), Some(items)),
                _ => (n.node.as_str(), None),
            },
            // The owners' approval form for a room that authorizes its occupants, and the
            // history a native occupant gets on entering (a classic one gets it as messages).
            Effect::AuthorizationRequest(_) | Effect::SendLastItems(_) => {
                let skip = matches!(effect, Effect::SendLastItems(last)
                    if self.occupant_of(&last.node, &last.to)
                        .is_some_and(|s| groupchat::is_classic(&s.options)));
                if !skip {
                    for out in verona_pubsub_xmpp::render(&context, std::slice::from_ref(effect)) {
                        self.router.deliver(&out.to, out.stanza);
                    }
                }
                return;
            }
            Effect::Persist(_) => return,
        };
        let Some(room) = room_address(node, hosted.jid.domain()) else {
            return;
        };
        let items = items.map_or(&[][..], Vec::as_slice);
        let Effect::Notify(notification) = effect else {
            return;
        };
        // What classic occupants get, serialized once: each recipient's copy is its own start
        // tag, kept between messages, and the shared rest.
        let shared: Vec<Bytes> = items
            .iter()
            .filter_map(|item| hosted.said.take(&room, item))
            .collect();
        let classic = classic_recipients(hosted, node, &notification.recipients);
        let copies = (notification.recipients.iter().zip(&classic.starts))
            .filter_map(|(recipient, start)| Some((&recipient.jid, start.as_ref()?)))
            .flat_map(|(to, start)| {
                shared.iter().map(move |rest| {
                    let message =
                        verona_stream::Wire::new(start.clone(), rest.clone(), Bytes::new());
                    (to, message)
                })
            });
        self.router.deliver_all(copies, Reach::Connected);
        let native = Arc::clone(&classic.native);
        hosted.classic.keep(classic);
        if native.is_empty() {
            return;
        }
        // A semi-anonymous room names no publisher: the speaker's nick is where to reply.
        let semi_anonymous = hosted
            .service
            .node_config(node)
            .is_some_and(groupchat::is_semi_anonymous);
        let replyto = items
            .first()
            .filter(|_| semi_anonymous)
            .and_then(|item| speaker(&item.payload.as_deref()?.parse().ok()?))
            .map(|nick| {
                let address = builder("address", ns::ADDRESS)
                    .with("type", "replyto")
                    .with("jid", format!("{room}/{nick}"))
                    .build();
                let addresses = builder("addresses", ns::ADDRESS).append(address).build();
                verona_stream::element_bytes(&addresses)
            });
        let native = Effect::Notify(verona_pubsub::Notification {
            recipients: native,
            ..notification.clone()
        });
        // Every copy ends alike: the `replyto` goes before one shared tail.
        let mut tails: Option<(Bytes, Bytes)> = None;
        let copies = verona_pubsub_xmpp::render(&context, std::slice::from_ref(&native))
            .into_iter()
            .map(|out| {
                let Some(replyto) = &replyto else {
                    return (out.to, out.stanza);
                };
                let (plain, with_replyto) = tails.get_or_insert_with(|| {
                    let tail = out.stanza.tail();
                    (tail.clone(), Bytes::from([&replyto[..], tail].concat()))
                });
                let stanza = if out.stanza.tail() == plain {
                    out.stanza.with_tail(with_replyto.clone())
                } else {
                    out.stanza.before_tail(replyto)
                };
                (out.to, stanza)
            });
        self.router.deliver_all(copies, Reach::Connected);
    }
}

/// disco#info of a room (XEP-0045 §6.4): its identity, XEP-0045 and the features its
/// configuration gives it.
fn room_info(node: &str, config: &verona_pubsub::NodeConfig, occupants: usize) -> Element {
    let name = if config.title.is_empty() {
        node
    } else {
        config.title.as_str()
    };
    let identity = builder("identity", ns::DISCO_INFO)
        .with("category", "conference")
        .with("type", "text")
        .with("name", name)
        .build();
    let members_only = config.access_model == AccessModel::Whitelist;
    let features = [
        ns::MUC,
        // §7.4: a message comes back to everyone with its sender's id.
        "http://jabber.org/protocol/muc#stable_id",
        ns::OCCUPANT_ID,
        room_vcard::NS,
        groupchat::IQ_REGISTER,
        archive::NS,
        archive::EXTENDED,
        archive::SID,
        if groupchat::is_semi_anonymous(config) {
            "muc_semianonymous"
        } else {
            "muc_nonanonymous"
        },
        if groupchat::is_moderated(config) {
            "muc_moderated"
        } else {
            "muc_unmoderated"
        },
        if groupchat::password(config).is_some() {
            "muc_passwordprotected"
        } else {
            "muc_unsecured"
        },
        if members_only {
            "muc_membersonly"
        } else {
            "muc_open"
        },
        if groupchat::is_persistent(config) {
            "muc_persistent"
        } else {
            "muc_temporary"
        },
        if groupchat::is_public(config) {
            "muc_public"
        } else {
            "muc_hidden"
        },
    ]
    .into_iter()
    .map(|var| builder("feature", ns::DISCO_INFO).with("var", var).build());
    builder("query", ns::DISCO_INFO)
        .append(identity)
        .append_all(features)
        .append(roominfo(config, occupants))
        .build()
}

/// The extended information of a room's disco#info (XEP-0045 §6.4, XEP-0128): what clients
/// show before entering (its name, description, how many are in it, its avatar).
fn roominfo(config: &verona_pubsub::NodeConfig, occupants: usize) -> Element {
    let field = |var: &str, value: String| {
        builder("field", ns::DATA_FORMS)
            .with("var", var)
            .append(crate::xml::text_child("value", ns::DATA_FORMS, value))
            .build()
    };
    let form_type = builder("field", ns::DATA_FORMS)
        .with("var", "FORM_TYPE")
        .with("type", "hidden")
        .append(crate::xml::text_child(
            "value",
            ns::DATA_FORMS,
            "http://jabber.org/protocol/muc#roominfo",
        ))
        .build();
    let changes_subject = groupchat::occupants_change_subject(config);
    builder("x", ns::DATA_FORMS)
        .with("type", "result")
        .append(form_type)
        .append(field("muc#roomconfig_roomname", config.title.clone()))
        .append(field(
            "muc#roominfo_description",
            config.description.clone(),
        ))
        .append(field("muc#roominfo_occupants", occupants.to_string()))
        .append(field(
            "muc#roomconfig_changesubject",
            u8::from(changes_subject).to_string(),
        ))
        .append_all(room_vcard::avatar_field(config))
        .build()
}

/// The subscribe option a native occupant gives a password-protected room its password in.
const ROOM_SECRET: &str = "muc#roomconfig_roomsecret";

/// The disco#info node naming the nick an account registered (XEP-0045 §7.12).
const ROOMUSER_ITEM: &str = "x-roomuser-item";

/// disco#info `x-roomuser-item`: the nick `from` registered with the room, as an identity, or
/// nothing.
fn registered_identity(config: &verona_pubsub::NodeConfig, from: &FullJid) -> Element {
    let identity = groupchat::registered_nick(config, &from.bare()).map(|nick| {
        builder("identity", ns::DISCO_INFO)
            .with("category", "conference")
            .with("type", "text")
            .with("name", nick)
            .build()
    });
    builder("query", ns::DISCO_INFO)
        .with("node", ROOMUSER_ITEM)
        .append_all(identity)
        .build()
}

/// How a session comes to get what a join gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// It made the room (status 201).
    Created,
    Joined,
    /// It was in the room already and joined again: the others are not told.
    Resync,
}

/// One occupant of a room: the session in it, its nick and its subscription's options.
pub(in crate::host) struct InRoom {
    jid: Jid,
    nick: String,
    options: SubscriptionOptions,
}

impl InRoom {
    fn described<'a>(
        &'a self,
        ids: &OccupantIds,
        service: &Service,
        room: &'a BareJid,
        node: &str,
    ) -> Occupant<'a> {
        described(
            ids,
            service,
            room,
            node,
            (&self.nick, &self.jid, &self.options),
        )
    }
}

/// Who removed occupants from a room or changed their standing, by nick, and the reason given
/// for each (by bare JID).
#[derive(Default)]
pub(super) struct Removal {
    pub actor: Option<String>,
    pub reasons: BTreeMap<BareJid, String>,
}

/// What a room's classic occupants get of each message said there ([`groupchat::shared_groupchat`]),
/// made by `say` from the message it has at hand, until the message is delivered: otherwise
/// delivery would parse again what was just serialized. Keyed by the stored payload itself
/// (the engine shares one `Arc` from publish to notification), so an item published another
/// way, or again under the same id, is never mistaken for one of these.
#[derive(Default)]
pub(super) struct SaidCache(Cell<Vec<(Arc<str>, Option<Bytes>)>>);

impl SaidCache {
    /// Messages kept at most: each is taken at its delivery, so only those of a batch whose
    /// commit failed (never delivered) could pile up.
    const KEPT: usize = 64;

    fn keep(&self, room: &BareJid, said: &Element, effects: &[Effect]) {
        let Some(item) = effects.iter().find_map(|effect| match effect {
            Effect::Notify(n) => match &n.event {
                Event::Items { items } => items.first(),
                _ => None,
            },
            _ => None,
        }) else {
            return;
        };
        let Some(payload) = &item.payload else {
            return;
        };
        let mut kept = self.0.take();
        if kept.len() >= Self::KEPT {
            kept.remove(0);
        }
        let rest = groupchat::shared_groupchat(room, said, &item.id);
        kept.push((Arc::clone(payload), rest));
        self.0.set(kept);
    }

    /// What the classic occupants get of `item`: as `keep` made it, or made now.
    fn take(&self, room: &BareJid, item: &verona_pubsub::Item) -> Option<Bytes> {
        let payload = item.payload.as_ref()?;
        let mut kept = self.0.take();
        let found = kept.iter().position(|(p, _)| Arc::ptr_eq(p, payload));
        let rest = match found {
            Some(at) => kept.remove(at).1,
            None => groupchat::shared_groupchat(room, &payload.parse().ok()?, &item.id),
        };
        self.0.set(kept);
        rest
    }
}

/// The room's history as newcomers get it ([`groupchat::shared_history`]), by item: parsed
/// and serialized once, not for every join that asks for it. Keyed by the stored payload
/// itself, as [`SaidCache`] is; `None` for an item that is not said (a subject change).
#[derive(Default)]
pub(super) struct HistoryCache(RefCell<HashMap<String, Rendered>>);

/// A stored item's payload, and what a classic newcomer gets of it.
type Rendered = (Arc<str>, Option<Bytes>);

impl HistoryCache {
    fn rest(&self, room: &BareJid, item: &verona_pubsub::Item) -> Option<Bytes> {
        let payload = item.payload.as_ref()?;
        let mut cache = self.0.borrow_mut();
        if let Some((kept, rest)) = cache.get(&item.id)
            && Arc::ptr_eq(kept, payload)
        {
            return rest.clone();
        }
        let rest = payload
            .parse::<Element>()
            .ok()
            .filter(|said| !groupchat::is_subject_change(said))
            .and_then(|said| groupchat::shared_history(room, &said, item.published, &item.id));
        cache.insert(item.id.clone(), (Arc::clone(payload), rest.clone()));
        rest
    }

    /// Forgets items the room no longer holds, once they are as many as those it does.
    fn prune(&self, items: &[verona_pubsub::Item]) {
        let mut cache = self.0.borrow_mut();
        if cache.len() > 2 * items.len() + 16 {
            let held: HashSet<&str> = items.iter().map(|item| item.id.as_str()).collect();
            cache.retain(|id, _| held.contains(id.as_str()));
        }
    }
}

/// Each occupant's presence as a newcomer gets it ([`groupchat::shared_presence`], as it is
/// and without real JIDs), with what it was made from: a newcomer to a room of N gets N
/// presences, which are made again only for the occupants whose presence has changed since.
#[derive(Default)]
pub(super) struct PresenceCache(RefCell<HashMap<Jid, CachedPresence>>);

struct CachedPresence {
    nick: String,
    affiliation: groupchat::RoomAffiliation,
    role: groupchat::Role,
    id: String,
    shown: Vec<Element>,
    plain: Bytes,
    anonymous: Bytes,
}

impl PresenceCache {
    /// The rest of `occupant`'s presence after its start ([`groupchat::recipient_start`]).
    fn rest(&self, occupant: &Occupant, hidden: bool) -> Option<Bytes> {
        let pick = |cached: &CachedPresence| {
            if hidden {
                cached.anonymous.clone()
            } else {
                cached.plain.clone()
            }
        };
        let mut cache = self.0.borrow_mut();
        if let Some(cached) = cache.get(occupant.jid)
            && cached.nick == occupant.nick
            && cached.affiliation == occupant.affiliation
            && cached.role == occupant.role
            && cached.id == occupant.id
            && cached.shown == occupant.shown
        {
            return Some(pick(cached));
        }
        let (plain, anonymous) = groupchat::shared_presence(occupant, false, &[], None)?;
        let cached = CachedPresence {
            nick: occupant.nick.to_owned(),
            affiliation: occupant.affiliation,
            role: occupant.role,
            id: occupant.id.clone(),
            shown: occupant.shown.clone(),
            plain,
            anonymous,
        };
        let rest = pick(&cached);
        cache.insert(occupant.jid.clone(), cached);
        Some(rest)
    }

    /// Forgets those who left, once they are as many as those who stay.
    fn prune(&self, occupants: &[InRoom]) {
        let mut cache = self.0.borrow_mut();
        if cache.len() > 2 * occupants.len() + 16 {
            let present: HashSet<&Jid> = occupants.iter().map(|o| &o.jid).collect();
            cache.retain(|jid, _| present.contains(jid));
        }
    }
}

/// Which recipients of a room's notification joined with XEP-0045, by position, and the
/// others, who get the notification itself.
pub(super) struct ClassicFlags {
    recipients: Arc<[Recipient]>,
    /// For each recipient that joined classically, the start of each message to it
    /// ([`groupchat::recipient_start`]).
    starts: Vec<Option<Bytes>>,
    native: Arc<[Recipient]>,
}

/// The [`ClassicFlags`] of a room's last notification. The engine keeps a room's recipient
/// list until its subscriptions change, so while the same list comes back, a message costs no
/// lookup per occupant.
#[derive(Default)]
pub(super) struct ClassicCache(Cell<Option<Box<ClassicFlags>>>);

impl ClassicCache {
    fn keep(&self, flags: ClassicFlags) {
        self.0.set(Some(Box::new(flags)));
    }
}

/// Which of `recipients` joined `node` with XEP-0045: the cached answer while the list is the
/// same one, otherwise looked up once for the whole list.
fn classic_recipients(hosted: &Hosted, node: &str, recipients: &Arc<[Recipient]>) -> ClassicFlags {
    if let Some(cached) = hosted.classic.0.take()
        && Arc::ptr_eq(&cached.recipients, recipients)
    {
        return *cached;
    }
    let classic: HashSet<&Jid> = hosted
        .service
        .subscriptions(node)
        .filter(|s| groupchat::is_classic(s.options))
        .map(|s| s.jid)
        .collect();
    let starts: Vec<Option<Bytes>> = recipients
        .iter()
        .map(|r| {
            classic
                .contains(&r.jid)
                .then(|| groupchat::recipient_start("message", &r.jid))
        })
        .collect();
    let native = recipients
        .iter()
        .zip(&starts)
        .filter(|(_, start)| start.is_none())
        .map(|(recipient, _)| recipient.clone())
        .collect();
    ClassicFlags {
        recipients: Arc::clone(recipients),
        starts,
        native,
    }
}

/// Whether the room was made by a join and not configured by its owner yet (XEP-0045
/// §10.1.1): only its owners may enter.
pub(super) fn is_locked(service: &Service, node: &str) -> bool {
    service.node_config(node).is_some_and(groupchat::is_locked)
}

/// How many occupants a room has ([`occupants`], without copying them).
fn occupant_count(service: &Service, node: &str) -> usize {
    service
        .subscriptions(node)
        .filter(|s| s.state.is_approved() && groupchat::nick_of(s.options).is_some())
        .count()
}

/// The occupants of a room: its approved subscriptions with a nick.
fn occupants(service: &Service, node: &str) -> Vec<InRoom> {
    service
        .subscriptions(node)
        .filter(|s| s.state.is_approved())
        .filter_map(|s| {
            let nick = groupchat::nick_of(s.options)?.to_owned();
            Some(InRoom {
                jid: s.jid.clone(),
                nick,
                options: s.options.clone(),
            })
        })
        .collect()
}

/// Records an engine operation on a room in the batch (its effects and undo); its value, or
/// the engine's refusal.
/// A classic occupant removed from a room hears of it as XEP-0045 presence (307, 301, 321,
/// 322, 333), not also as the XEP-0060 notice that its subscription ended.
fn quiet_for_classic(done: &mut [Done], removed: &[SubscriptionInfo]) {
    let classic: Vec<(&str, &Jid)> = removed
        .iter()
        .filter(|gone| groupchat::is_classic(&gone.options))
        .map(|gone| (gone.node.as_str(), &gone.jid))
        .collect();
    if classic.is_empty() {
        return;
    }
    for d in done.iter_mut() {
        let Origin::Room(node) = &d.origin else {
            continue;
        };
        for effect in &mut d.effects {
            if let Effect::Notify(notice) = effect
                && matches!(notice.event, Event::Subscription { .. })
            {
                notice.recipients = notice
                    .recipients
                    .iter()
                    .filter(|r| !classic.contains(&(node.as_str(), &r.jid)))
                    .cloned()
                    .collect();
            }
        }
    }
}

/// The last subject change a native publish to a room carries, as vetted
/// ([`ServicesTask::vet_room_publish`] made each item what its speaker said).
pub(in crate::host) fn published_subject(stanza: &Element) -> Option<Element> {
    let publish = stanza
        .get_child("pubsub", ns::PUBSUB)?
        .get_child("publish", ns::PUBSUB)?;
    publish
        .children()
        .filter(|c| c.is("item", ns::PUBSUB))
        .filter_map(|item| item.get_child("message", ns::CLIENT))
        .filter(|said| groupchat::is_subject_change(said))
        .last()
        .cloned()
}

fn record<T>(
    done: &mut Vec<Done>,
    node: &str,
    outcome: Result<verona_pubsub::Outcome<T>, PubsubError>,
) -> Result<T, PubsubError> {
    let outcome = outcome?;
    done.push(Done::new(
        Origin::Room(node.to_owned()),
        outcome.effects,
        outcome.undo,
    ));
    Ok(outcome.value)
}

/// Each occupant's role.
fn roles(service: &Service, node: &str) -> BTreeMap<Jid, Role> {
    occupants(service, node)
        .into_iter()
        .map(|o| {
            let role = role_in(service, node, &o.jid, &o.options);
            (o.jid, role)
        })
        .collect()
}

/// An occupant's role, from the room's configuration, its affiliation and its options.
fn role_in(service: &Service, node: &str, jid: &Jid, options: &SubscriptionOptions) -> Role {
    let affiliation = affiliation_in(service, node, jid);
    service
        .node_config(node)
        .map_or(Role::Participant, |config| {
            Role::of(config, affiliation, options)
        })
}

/// Whether `jid` sees occupants' real JIDs: in any room but a semi-anonymous one, where only
/// its moderators do (XEP-0045 §7.2.4): its owners and admins, and an occupant given the
/// moderator role for its stay.
fn sees_real_jids(service: &Service, node: &str, jid: &Jid) -> bool {
    let Some(config) = service.node_config(node) else {
        return true;
    };
    if !groupchat::is_semi_anonymous(config) {
        return true;
    }
    let affiliation = affiliation_in(service, node, jid);
    affiliation >= RoomAffiliation::Admin
        || (service.subscriptions_of_jid(node, jid))
            .filter(|s| s.state.is_approved())
            .any(|s| Role::of(config, affiliation, s.options) == Role::Moderator)
}

/// An account's affiliation with a room, in XEP-0045's terms.
fn affiliation_in(service: &Service, node: &str, jid: &Jid) -> RoomAffiliation {
    let bare = jid.bare();
    service
        .node_config(node)
        .map_or(RoomAffiliation::None, |config| {
            RoomAffiliation::of(config, service.affiliation(node, &bare), &bare)
        })
}

/// An occupant (its nick, session and subscription options) as its presence describes it.
fn described<'a>(
    ids: &OccupantIds,
    service: &Service,
    room: &'a BareJid,
    node: &str,
    (nick, jid, options): (&'a str, &'a Jid, &SubscriptionOptions),
) -> Occupant<'a> {
    Occupant {
        room,
        nick,
        jid,
        affiliation: affiliation_in(service, node, jid),
        role: role_in(service, node, jid, options),
        id: ids.of(room, &jid.bare()),
        shown: shown::shown(options),
    }
}

/// A room's address: its node id at the service's domain.
fn room_address(node: &str, domain: &str) -> Option<BareJid> {
    BareJid::new(&format!("{node}@{domain}")).ok()
}

/// The sessions a message to `to` reaches: the session a full JID names, if it is there, else
/// every available session of the account (as a message to a resource that is gone goes to
/// the account, RFC 6121 §8.5.3.2.1).
fn available_at(router: &crate::router::Router, to: &Jid) -> Vec<FullJid> {
    match to.try_as_full() {
        Ok(full) if router.session(full).is_some() => vec![full.clone()],
        _ => router.available_sessions(&to.to_bare()),
    }
}

/// What a speaker is told when the room refuses what it said: `forbidden` only when it may not
/// speak, a limit as a limit (a message too large for the room, a bound of the service), a
/// room gone as gone.
fn said_refused(error: &verona_pubsub::PubsubError) -> StanzaError {
    use verona_pubsub::PubsubError as E;
    match error {
        E::Forbidden | E::NotAuthorized(_) | E::ClosedNode => StanzaError::Forbidden,
        E::PayloadTooBig | E::PolicyViolation(_) => StanzaError::PolicyViolation,
        E::NodeNotFound => StanzaError::ItemNotFound,
        // What the room makes of a message is always a payload in one item: anything else
        // the engine finds wrong with it is a message the room cannot take.
        _ => StanzaError::NotAcceptable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(id: &str, payload: &str) -> verona_pubsub::Item {
        verona_pubsub::Item {
            id: id.to_owned(),
            payload: Some(Arc::from(payload)),
            publisher: "juliet@localhost/balcony".parse().unwrap(),
            published: SystemTime::UNIX_EPOCH,
        }
    }

    fn notified(item: &verona_pubsub::Item) -> Vec<Effect> {
        vec![Effect::Notify(verona_pubsub::Notification {
            node: "garden".to_owned(),
            event: Event::Items {
                items: vec![item.clone()],
            },
            recipients: Arc::from([]),
            notification_type: verona_pubsub::NotificationType::Normal,
            presence_based_delivery: false,
            itemreply: verona_pubsub::ItemReply::Publisher,
        })]
    }

    /// A newcomer gets each occupant's presence as it is now: made once, made again when
    /// anything it shows changed, and forgotten for those who left.
    #[test]
    fn a_kept_presence_follows_its_occupant() {
        let room: BareJid = "garden@chat.localhost".parse().unwrap();
        let jid: Jid = "juliet@localhost/balcony".parse().unwrap();
        let mut occupant = Occupant {
            room: &room,
            nick: "Juliet",
            jid: &jid,
            affiliation: groupchat::RoomAffiliation::Member,
            role: groupchat::Role::Participant,
            id: "oid".to_owned(),
            shown: Vec::new(),
        };
        let made = |occupant: &Occupant, hidden: bool| {
            let (plain, anonymous) =
                groupchat::shared_presence(occupant, false, &[], None).unwrap();
            if hidden { anonymous } else { plain }
        };
        let cache = PresenceCache::default();
        for hidden in [false, true] {
            assert_eq!(cache.rest(&occupant, hidden), Some(made(&occupant, hidden)));
        }
        let changes: [&dyn Fn(&mut Occupant); 4] = [
            &|o| o.shown = vec!["<show xmlns='jabber:client'>away</show>".parse().unwrap()],
            &|o| o.role = groupchat::Role::Moderator,
            &|o| o.affiliation = groupchat::RoomAffiliation::Admin,
            &|o| o.nick = "Jules",
        ];
        for change in changes {
            let before = cache.rest(&occupant, false);
            change(&mut occupant);
            let after = cache.rest(&occupant, false);
            assert_ne!(after, before);
            assert_eq!(after, Some(made(&occupant, false)));
        }
        let stays = InRoom {
            jid: "romeo@localhost/orchard".parse().unwrap(),
            nick: "Romeo".to_owned(),
            options: Default::default(),
        };
        let many: Vec<Jid> = (0..40)
            .map(|n| format!("guest{n}@localhost/r").parse().unwrap())
            .collect();
        for guest in &many {
            cache.rest(
                &Occupant {
                    jid: guest,
                    ..occupant.clone()
                },
                false,
            );
        }
        cache.prune(std::slice::from_ref(&stays));
        assert!(cache.0.borrow().is_empty());
    }

    /// A history message is rendered once per stored item: again only for an item stored anew
    /// under the same id, never for a subject change, and forgotten once the room drops it.
    #[test]
    fn kept_history_follows_the_stored_items() {
        let room: BareJid = "garden@chat.localhost".parse().unwrap();
        let message = |text: &str| {
            let said: Element =
                format!("<message xmlns='jabber:client'><body>{text}</body></message>")
                    .parse()
                    .unwrap();
            String::from(&groupchat::said(&said, "Juliet", "oid").unwrap())
        };
        let made = |item: &verona_pubsub::Item| {
            let said: Element = item.payload.as_deref().unwrap().parse().unwrap();
            groupchat::shared_history(&room, &said, item.published, &item.id)
        };
        let cache = HistoryCache::default();
        let first = published("a1", &message("one"));
        assert_eq!(cache.rest(&room, &first), made(&first));
        assert!(made(&first).is_some());
        assert_eq!(cache.rest(&room, &first), made(&first));
        let again = published("a1", &message("two"));
        assert_eq!(cache.rest(&room, &again), made(&again));
        assert_ne!(made(&again), made(&first));
        let subject: Element = "<message xmlns='jabber:client'><subject>Verona</subject></message>"
            .parse()
            .unwrap();
        let subject = published(
            "s1",
            &String::from(&groupchat::said(&subject, "Juliet", "oid").unwrap()),
        );
        assert_eq!(cache.rest(&room, &subject), None);
        let many: Vec<verona_pubsub::Item> = (0..40)
            .map(|n| published(&format!("b{n}"), &message("more")))
            .collect();
        for item in &many {
            cache.rest(&room, item);
        }
        cache.prune(&many[..2]);
        let kept: HashSet<String> = cache.0.borrow().keys().cloned().collect();
        assert_eq!(kept, HashSet::from(["b0".to_owned(), "b1".to_owned()]));
    }

    /// What `say` keeps is what delivery would have made from the stored payload; only the
    /// very payload kept is taken, once, and the cache stays bounded.
    #[test]
    fn a_kept_rendering_is_what_delivery_would_make() {
        let room: BareJid = "garden@chat.localhost".parse().unwrap();
        let message: Element = "<message xmlns='jabber:client' type='groupchat' id='m1' xml:lang='en'><body>But soft &amp; &lt;hark&gt;</body><x xmlns='urn:example'/></message>".parse().unwrap();
        let said = groupchat::said(&message, "Juliet", "occ-1").unwrap();
        let item = published("a1", &String::from(&said));
        let cache = SaidCache::default();
        cache.keep(&room, &said, &notified(&item));

        // The same text under another allocation is not the kept message.
        let twin = published("a1", item.payload.as_deref().unwrap());
        let made = cache.take(&room, &twin);
        assert!(made.is_some());
        let kept = cache.take(&room, &item);
        assert_eq!(kept, made);
        // Taken once: the next delivery of it makes it again, alike.
        assert_eq!(cache.take(&room, &item), made);

        for n in 0..SaidCache::KEPT + 10 {
            let item = published(&format!("b{n}"), &String::from(&said));
            cache.keep(&room, &said, &notified(&item));
        }
        let kept = cache.0.take();
        assert_eq!(kept.len(), SaidCache::KEPT);
    }

    #[test]
    fn a_refused_message_is_told_why() {
        use verona_pubsub::{Limit, NotAuthorizedReason, PubsubError as E};
        let cases = [
            (E::Forbidden, StanzaError::Forbidden),
            (
                E::NotAuthorized(NotAuthorizedReason::NotSubscribed),
                StanzaError::Forbidden,
            ),
            (E::ClosedNode, StanzaError::Forbidden),
            (E::PayloadTooBig, StanzaError::PolicyViolation),
            (
                E::PolicyViolation(Limit::OwnerBytesExceeded),
                StanzaError::PolicyViolation,
            ),
            (E::NodeNotFound, StanzaError::ItemNotFound),
            (E::PayloadRequired, StanzaError::NotAcceptable),
        ];
        for (error, told) in cases {
            assert_eq!(said_refused(&error), told, "{error}");
        }
    }
}
