//! Running a room (XEP-0045 §8–§10): roles and voice, affiliations and their lists, the
//! owner's configuration form and destruction, nick registration, and the room's archive
//! (XEP-0313).

use super::*;
use crate::jids::Bare;

impl ServicesTask {
    /// XEP-0045 §7.13, §8.6: a visitor asks for voice (each moderator gets the approval
    /// form; an occupant with voice has nothing to ask, and is ignored, as Prosody does), or
    /// a moderator answers one (an approval gives voice).
    pub(super) fn voice(
        &mut self,
        from: &FullJid,
        room: &BareJid,
        form: VoiceForm,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        let node = room.node().map(|n| n.to_string()).unwrap_or_default();
        let me = Jid::from(from.clone());
        let Some(mine) = self.occupant_of(&node, &me) else {
            let reply = error_reply(stanza, StanzaError::NotAcceptable, Some("not in the room"));
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        let Some(hosted) = self.rooms.get(&node) else {
            return;
        };
        let service = &hosted.service;
        let role = |jid: &Jid, options: &SubscriptionOptions| {
            let affiliation = affiliation_in(service, &node, jid);
            service
                .node_config(&node)
                .map_or(Role::Participant, |config| {
                    Role::of(config, affiliation, options)
                })
        };
        match form {
            VoiceForm::Request => {
                if role(&me, &mine.options) != Role::Visitor {
                    return;
                }
                if mine
                    .options
                    .custom
                    .contains_key(groupchat::VOICE_ASKED_OPTION)
                {
                    let why = Some("voice was asked for already");
                    let reply = error_reply(stanza, StanzaError::ResourceConstraint, why);
                    done.push(Done::reply(from.clone(), reply));
                    return;
                }
                let nick = groupchat::nick_of(&mine.options).unwrap_or_default();
                for moderator in occupants(service, &node) {
                    if role(&moderator.jid, &moderator.options) != Role::Moderator {
                        continue;
                    }
                    let Ok(session) = moderator.jid.clone().try_into_full() else {
                        continue;
                    };
                    let asking = sees_real_jids(service, &node, &moderator.jid).then_some(&me);
                    let message = groupchat::voice_request(room, &moderator.jid, asking, nick);
                    done.push(Done::reply(session, Some(message)));
                }
                let mut options = mine.options.clone();
                options.custom.insert(groupchat::VOICE_ASKED_OPTION, "1");
                let Some(hosted) = self.rooms.get_mut(&node) else {
                    return;
                };
                let asked = hosted.service.set_subscription_options(
                    &me,
                    &node,
                    &me,
                    Some(mine.subid.as_str()),
                    options,
                );
                if let Err(e) = record(done, &node, asked) {
                    tracing::debug!(%room, "noting a voice request: {e}");
                }
            }
            VoiceForm::Answer { nick, allow } => {
                if role(&me, &mine.options) != Role::Moderator {
                    let reply =
                        error_reply(stanza, StanzaError::Forbidden, Some("moderators only"));
                    done.push(Done::reply(from.clone(), reply));
                    return;
                }
                // Approving gives a visitor voice (XEP-0045 §8.6), and only that: it never
                // changes the role of anyone else, such as a moderator, owner or admin.
                if let (true, Some(asking)) = (allow, self.occupant_named(&node, &nick))
                    && role(&asking.jid, &asking.options) == Role::Visitor
                {
                    self.set_role(room, asking, Role::Participant, done);
                }
            }
        }
    }

    /// Gives an occupant a role for the rest of its stay, and tells the room.
    pub(super) fn set_role(
        &mut self,
        room: &BareJid,
        occupant: SubscriptionInfo,
        role: Role,
        done: &mut Vec<Done>,
    ) -> bool {
        let (node, jid) = (occupant.node.clone(), occupant.jid.clone());
        let set = self.give_role(room, occupant, role, done);
        if set {
            self.announce_standing(room, &node, &jid, &Removal::default(), done);
        }
        set
    }

    /// [`Self::set_role`] without telling the room.
    fn give_role(
        &mut self,
        room: &BareJid,
        occupant: SubscriptionInfo,
        role: Role,
        done: &mut Vec<Done>,
    ) -> bool {
        let Some(hosted) = self.rooms.get_mut(&occupant.node) else {
            return false;
        };
        let mut options = occupant.options.clone();
        options.custom.insert(groupchat::ROLE_OPTION, role.name());
        let changed = hosted.service.set_subscription_options(
            &occupant.jid,
            &occupant.node,
            &occupant.jid,
            Some(occupant.subid.as_str()),
            options,
        );
        match changed {
            Ok(outcome) => done.push(Done::new(
                Origin::Room(occupant.node.clone()),
                outcome.effects,
                outcome.undo,
            )),
            Err(e) => {
                tracing::debug!(%room, "giving an occupant a role: {e}");
                return false;
            }
        }
        true
    }

    /// An occupant's affiliation changed: the role it brings replaces whatever a moderator
    /// gave for the stay (§9, §10), and everyone sees the occupant's new standing, and `by`
    /// whom and why.
    pub(super) fn affiliation_changed(
        &mut self,
        room: &BareJid,
        node: &str,
        occupant: &Jid,
        by: &Removal,
        done: &mut Vec<Done>,
    ) {
        let before = self.occupant_of(node, occupant);
        let reset = before.and_then(|mine| {
            let hosted = self.rooms.get(node)?;
            let config = hosted.service.node_config(node)?;
            let affiliation = affiliation_in(&hosted.service, node, occupant);
            let mut options = mine.options.clone();
            options.custom.remove(groupchat::ROLE_OPTION);
            let role = Role::of(config, affiliation, &options);
            options.custom.insert(groupchat::ROLE_OPTION, role.name());
            (options != mine.options).then_some((mine, options))
        });
        if let Some((mine, options)) = reset
            && let Some(hosted) = self.rooms.get_mut(node)
        {
            let changed = hosted.service.set_subscription_options(
                occupant,
                node,
                occupant,
                Some(mine.subid.as_str()),
                options,
            );
            match changed {
                Ok(outcome) => {
                    let origin = Origin::Room(node.to_owned());
                    done.push(Done::new(origin, outcome.effects, outcome.undo));
                }
                Err(e) => tracing::debug!(%room, "resetting an occupant's role: {e}"),
            }
        }
        self.announce_standing(room, node, occupant, by, done);
    }

    /// Which of `sessions` in a room see its occupants' real JIDs now ([`sees_real_jids`]),
    /// to compare with after a change of roles or affiliations ([`Self::show_occupants_anew`]).
    pub(super) fn who_sees<'j>(
        &self,
        node: &str,
        sessions: impl IntoIterator<Item = &'j Jid>,
    ) -> BTreeMap<Jid, bool> {
        let Some(hosted) = self.rooms.get(node) else {
            return BTreeMap::new();
        };
        (sessions.into_iter())
            .map(|jid| (jid.clone(), sees_real_jids(&hosted.service, node, jid)))
            .collect()
    }

    /// A classic occupant's session that has come to see real JIDs (made moderator, admin or
    /// owner of a semi-anonymous room), or no longer does, since `saw` was taken gets every
    /// other occupant's presence again as it may now see it: with real JIDs, or without them
    /// (as Prosody sends them when moderator status is gained or lost). Otherwise it would
    /// know real JIDs only of those who come or change later, or keep showing ones it may no
    /// longer see.
    pub(super) fn show_occupants_anew(
        &self,
        room: &BareJid,
        node: &str,
        saw: &BTreeMap<Jid, bool>,
        done: &mut Vec<Done>,
    ) {
        let Some(hosted) = self.rooms.get(node) else {
            return;
        };
        let everyone = occupants(&hosted.service, node);
        for me in &everyone {
            let changed = saw
                .get(&me.jid)
                .is_some_and(|saw| *saw != sees_real_jids(&hosted.service, node, &me.jid));
            if changed && groupchat::is_classic(&me.options) {
                self.tell_others(room, node, &everyone, me, done);
            }
        }
    }

    /// XEP-0313 on a room: its history (the node's items), page by page, to whoever may read
    /// the room's items; the results, then the `<fin/>`.
    pub(super) fn archive_query(
        &self,
        from: &FullJid,
        room: &BareJid,
        node: &str,
        stanza: &Element,
        query: &Element,
        done: &mut Vec<Done>,
    ) -> Option<Element> {
        let parsed = match archive::parse(query) {
            Ok(parsed) => parsed,
            Err((error, why)) => return error_reply(stanza, error, Some(&why)),
        };
        let hosted = self.rooms.get(node)?;
        let me = Jid::from(from.clone());
        if self.kept_from_history(node, &me) {
            return error_reply(stanza, StanzaError::Forbidden, Some("not for you to read"));
        }
        let Ok(kept) = hosted
            .service
            .items(&self.presence, &me, node, &ItemQuery::All)
        else {
            return error_reply(stanza, StanzaError::Forbidden, Some("not for you to read"));
        };
        // XEP-0313 §"MUC Archives": whoever may see occupants' real JIDs now sees who said
        // each message.
        let real_jids = sees_real_jids(&hosted.service, node, &me);
        // Newest first from the engine; the archive is oldest first.
        let archived: Vec<archive::Archived<(Element, BareJid)>> = kept
            .items
            .iter()
            .rev()
            .filter_map(|item| {
                let payload: Element = item.payload.as_deref()?.parse().ok()?;
                let nick = speaker(&payload)?;
                Some(archive::Archived {
                    id: item.id.to_string(),
                    at: item.published,
                    by: Jid::new(&format!("{room}/{nick}")).ok(),
                    message: (payload, item.publisher.to_bare()),
                })
            })
            .collect();
        let page = match archive::select(&parsed, archived) {
            Ok(page) => page,
            Err(why) => return error_reply(stanza, StanzaError::ItemNotFound, Some(&why)),
        };
        let archive_jid = Jid::from(room.clone());
        for archived in &page.results {
            let (payload, speaker) = &archived.message;
            let real = real_jids.then_some(speaker);
            let Some(mut message) = groupchat::archived_message(room, payload, real) else {
                continue;
            };
            message.append_child(archive::stanza_id(&archived.id, room.as_str()));
            let result = archive::result(
                &archive_jid,
                &me,
                parsed.queryid.as_deref(),
                &archived.id,
                archived.at,
                message,
            );
            done.push(Done::reply(from.clone(), Some(result)));
        }
        Some(iq_result(stanza, Some(archive::fin(&page))))
    }

    /// XEP-0045 §7.10: the registration form, or registering a nick with the room. Only
    /// accounts the room is affiliated with register (as on Prosody; §7.10 lets a room leave
    /// membership to its admins): were registering to make an account a member, anyone would
    /// give itself voice in a moderated room, over a moderator's mute.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn register(
        &mut self,
        from: &FullJid,
        node: &str,
        stanza: &Element,
        query: &Element,
        get: bool,
        set: bool,
        done: &mut Vec<Done>,
    ) -> Option<Element> {
        let me = from.bare();
        let hosted = self.rooms.get_mut(node)?;
        let config = hosted.service.node_config(node)?.clone();
        let affiliation = affiliation_in(&hosted.service, node, &Jid::from(me.clone()));
        let registered = groupchat::registered_nick(&config, &me);
        match affiliation {
            RoomAffiliation::Outcast => {
                return error_reply(stanza, StanzaError::Forbidden, Some("banned"));
            }
            // One whose membership was taken still sees and removes the nick it registered.
            RoomAffiliation::None if registered.is_none() => {
                let why = Some("an admin makes you a member");
                return error_reply(stanza, StanzaError::RegistrationRequired, why);
            }
            _ => {}
        }
        if get {
            let query = groupchat::register_query(registered);
            return Some(iq_result(stanza, Some(query)));
        }
        if !set {
            return None;
        }
        if query.has_child("remove", groupchat::IQ_REGISTER) {
            return self.unregister(from, node, stanza, done);
        }
        let Some(nick) = groupchat::register_submission(query) else {
            return error_reply(stanza, StanzaError::NotAcceptable, Some("which nick?"));
        };
        let taken = groupchat::nick_owner(&config, &nick).is_some_and(|who| who != me.as_str())
            || occupants(&hosted.service, node)
                .iter()
                .any(|o| o.nick == nick && o.jid.bare() != me);
        if taken {
            return error_reply(stanza, StanzaError::Conflict, Some("the nick is taken"));
        }
        let actor = hosted.jid.clone();
        let fields = [groupchat::register_nick(&config, &me, &nick)];
        let registering = hosted
            .service
            .configure(&self.presence, &actor, node, &fields);
        if let Err(e) = record(done, node, registering) {
            return refused(stanza, &e);
        }
        Some(iq_result(stanza, None))
    }

    /// XEP-0045 §7.10 `<remove/>`: the nick is no longer the account's, nor, for a member,
    /// the membership; in a members-only room its sessions leave with 321.
    pub(super) fn unregister(
        &mut self,
        from: &FullJid,
        node: &str,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) -> Option<Element> {
        let me = from.bare();
        let room = room_address(node, self.rooms_jid.domain())?;
        let hosted = self.rooms.get_mut(node)?;
        let config = hosted.service.node_config(node)?.clone();
        let affiliation = affiliation_in(&hosted.service, node, &Jid::from(me.clone()));
        let actor = hosted.jid.clone();
        let before = hosted.service.subscribers(node);
        if groupchat::registered_nick(&config, &me).is_some() {
            let fields = [groupchat::unregister_nick(&config, &me)];
            if let Err(e) = record(
                done,
                node,
                hosted
                    .service
                    .configure(&self.presence, &actor, node, &fields),
            ) {
                return refused(stanza, &e);
            }
        }
        if affiliation == RoomAffiliation::Member {
            let none = BTreeMap::from([(me.clone(), Affiliation::None)]);
            if let Err(e) = record(
                done,
                node,
                hosted
                    .service
                    .set_affiliations(&self.presence, &actor, node, &none),
            ) {
                return refused(stanza, &e);
            }
        }
        let after = hosted.service.subscribers(node);
        let removed: Vec<SubscriptionInfo> = before
            .into_iter()
            .filter(|s| s.state.is_approved() && !after.iter().any(|a| a.subid == s.subid))
            .collect();
        let staying: Vec<Jid> = after
            .iter()
            .filter(|s| s.state.is_approved() && s.jid.bare() == me)
            .map(|s| s.jid.clone())
            .collect();
        self.announce_removals(&room, &removed, 321, &Removal::default(), done);
        if affiliation == RoomAffiliation::Member {
            for session in staying {
                self.affiliation_changed(&room, node, &session, &Removal::default(), done);
            }
        }
        Some(iq_result(stanza, None))
    }

    /// `muc#owner`: the configuration form, its submission (an empty one accepts an instant
    /// room's defaults, §10.1.2; either opens a new room; `cancel` destroys a new room and
    /// changes nothing otherwise), or the room's destruction.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn owner_query(
        &mut self,
        from: &FullJid,
        room: &BareJid,
        node: &str,
        stanza: &Element,
        query: &Element,
        get: bool,
        done: &mut Vec<Done>,
    ) -> Option<Element> {
        let me = Jid::from(from.clone());
        let hosted = self.rooms.get_mut(node)?;
        if hosted.service.affiliation(node, &me.bare()) != Affiliation::Owner {
            return error_reply(stanza, StanzaError::Forbidden, Some("owners only"));
        }
        if get {
            let config = hosted.service.node_config(node)?;
            return Some(iq_result(stanza, Some(groupchat::config_form(config))));
        }
        if let Some(destroy) = query.get_child("destroy", ns::MUC_OWNER) {
            let leaving = occupants(&hosted.service, node);
            return match record(done, node, hosted.service.delete(&me, node, None)) {
                Ok(()) => {
                    spare_classic(done, &leaving);
                    let destroyed = groupchat::destroyed(Some(destroy));
                    self.announce_destruction(room, &leaving, &destroyed, done);
                    Some(iq_result(stanza, None))
                }
                Err(e) => {
                    tracing::debug!(%from, %room, "destroying a room: {e}");
                    error_reply(stanza, StanzaError::NotAllowed, None)
                }
            };
        }
        let Some(form) = query.get_child("x", ns::DATA_FORMS) else {
            return error_reply(stanza, StanzaError::BadRequest, Some("no form"));
        };
        if form.attr("type") == Some("cancel") {
            // §10.1.1: cancelling a new room's first configuration destroys it; a later
            // cancel changes nothing.
            if is_locked(&hosted.service, node) {
                let leaving = occupants(&hosted.service, node);
                if let Err(e) = record(done, node, hosted.service.delete(&me, node, None)) {
                    tracing::debug!(%from, %room, "destroying a room not configured: {e}");
                    return error_reply(stanza, StanzaError::NotAllowed, None);
                }
                spare_classic(done, &leaving);
                let destroyed = groupchat::destroyed(None);
                self.announce_destruction(room, &leaving, &destroyed, done);
            }
            return Some(iq_result(stanza, None));
        }
        let mut fields = match groupchat::parse_config(form) {
            Ok(fields) => fields,
            Err(why) => return error_reply(stanza, StanzaError::NotAcceptable, Some(&why)),
        };
        // §10.1.1: the first configuration opens a new room.
        fields.push(groupchat::opened());
        let config_before = hosted.service.node_config(node).cloned();
        let before = hosted.service.subscribers(node);
        let roles_before = roles(&hosted.service, node);
        let was_semi_anonymous = hosted
            .service
            .node_config(node)
            .is_some_and(groupchat::is_semi_anonymous);
        // §10.6 through the form: an account it makes admin is affiliated (a member, as
        // `muc#admin` makes admins), so a members-only room keeps it and the admin list shows
        // it; every occupant whose affiliation the form changed is announced.
        let admins_before: BTreeSet<BareJid> = config_before
            .as_ref()
            .map(|config| {
                groupchat::admins(config)
                    .iter()
                    .filter_map(|admin| crate::jids::parse_bare(admin).ok())
                    .collect()
            })
            .unwrap_or_default();
        let admins_after = groupchat::admins_in(&fields);
        let affiliated: BTreeSet<BareJid> = admins_after
            .as_ref()
            .map(|after| {
                after
                    .symmetric_difference(&admins_before)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let made_members: BTreeMap<BareJid, Affiliation> = admins_after
            .iter()
            .flatten()
            .filter(|jid| {
                matches!(
                    hosted.service.affiliation(node, jid),
                    Affiliation::None | Affiliation::Outcast
                )
            })
            .map(|jid| (jid.clone(), Affiliation::Member))
            .collect();
        let reaffiliating: Vec<Jid> = occupants(&hosted.service, node)
            .into_iter()
            .map(|occupant| occupant.jid)
            .filter(|occupant| affiliated.contains(&occupant.to_bare()))
            .collect();
        let saw = self.who_sees(node, &reaffiliating);
        let hosted = self.rooms.get_mut(node)?;
        if !made_members.is_empty() {
            let actor = hosted.jid.clone();
            let made = hosted
                .service
                .set_affiliations(&self.presence, &actor, node, &made_members);
            if let Err(e) = record(done, node, made) {
                return refused(stanza, &e);
            }
        }
        match record(
            done,
            node,
            hosted.service.configure(&self.presence, &me, node, &fields),
        ) {
            Ok(()) => {
                // Opening the room is no change its occupants hear of.
                let opened_before = config_before.map(|mut config| {
                    config.set(groupchat::opened());
                    config
                });
                let reconfigured = hosted.service.node_config(node) != opened_before.as_ref();
                // XEP-0045 §9.6: a room made members-only removes the others (322).
                let after = hosted.service.subscribers(node);
                let removed: Vec<SubscriptionInfo> = before
                    .into_iter()
                    .filter(|s| s.state.is_approved() && !after.iter().any(|a| a.subid == s.subid))
                    .collect();
                // A room made moderated or not changes who has voice: everyone sees it.
                let changed: Vec<Jid> = roles(&hosted.service, node)
                    .into_iter()
                    .filter(|(occupant, role)| {
                        roles_before
                            .get(occupant)
                            .is_some_and(|before| before != role)
                    })
                    .map(|(occupant, _)| occupant)
                    .filter(|occupant| !affiliated.contains(&occupant.to_bare()))
                    .collect();
                let semi_anonymous = hosted
                    .service
                    .node_config(node)
                    .is_some_and(groupchat::is_semi_anonymous);
                self.announce_removals(room, &removed, 322, &Removal::default(), done);
                for occupant in changed {
                    self.announce_standing(room, node, &occupant, &Removal::default(), done);
                }
                // An occupant the form removed (322) is no longer there to hear of.
                for occupant in &reaffiliating {
                    let by = Removal::default();
                    self.affiliation_changed(room, node, occupant, &by, done);
                }
                self.show_occupants_anew(room, node, &saw, done);
                // §10.2.1: everyone in the room hears that its configuration changed, and
                // whether real JIDs are now shown (172) or hidden (173); an empty form (the
                // instant room's defaults accepted) changes nothing to hear of.
                let mut codes = vec![104];
                match (was_semi_anonymous, semi_anonymous) {
                    (true, false) => codes.push(172),
                    (false, true) => codes.push(173),
                    _ => {}
                }
                if reconfigured {
                    self.tell_occupants(
                        node,
                        |to| Some(groupchat::room_notice(room, to, &codes)),
                        done,
                    );
                }
                Some(iq_result(stanza, None))
            }
            Err(e) => refused(stanza, &e),
        }
    }

    /// The changes a `muc#admin` set asks for, each checked against the rights of who asks;
    /// `Err` is the refusal to send back.
    fn admin_changes(
        &self,
        from: &FullJid,
        node: &str,
        stanza: &Element,
        query: &Element,
    ) -> Result<AdminChanges, Option<Element>> {
        let Some(hosted) = self.rooms.get(node) else {
            return Err(None);
        };
        let Some(config) = hosted.service.node_config(node).cloned() else {
            return Err(None);
        };
        let me = Jid::from(from.clone());
        let service = &hosted.service;
        let actor = affiliation_in(service, node, &me);
        let actor_role = self
            .occupant_of(node, &me)
            .map(|mine| Role::of(&config, actor, &mine.options));
        let mut kicked = Vec::new();
        let mut roles = Vec::new();
        let mut affiliations: BTreeMap<BareJid, RoomAffiliation> = BTreeMap::new();
        let mut nicks: Vec<(BareJid, String)> = Vec::new();
        let mut reasons = BTreeMap::new();
        if !query.children().any(|c| c.is("item", ns::MUC_ADMIN)) {
            let why = Some("nothing to change: no item");
            return Err(error_reply(stanza, StanzaError::BadRequest, why));
        }
        for item in query.children().filter(|c| c.is("item", ns::MUC_ADMIN)) {
            let reason = item
                .get_child("reason", ns::MUC_ADMIN)
                .map(|reason| groupchat::bounded_reason(reason.text()))
                .filter(|text| !text.is_empty());
            match (item.attr("role"), item.attr("affiliation")) {
                (Some(role), None) => {
                    // §8.2, §8.4: a role is given to an occupant, named by its nick.
                    let Some(nick) = item.attr("nick").filter(|nick| !nick.is_empty()) else {
                        let why = Some("a role goes to an occupant: name its nick");
                        return Err(error_reply(stanza, StanzaError::BadRequest, why));
                    };
                    // A nick is one occupant, whatever number of its account's sessions
                    // joined under it: a role is given to, or taken from, all of them.
                    let targets = self.occupants_named(node, nick);
                    let Some(target) = targets.first() else {
                        return Err(error_reply(stanza, StanzaError::ItemNotFound, None));
                    };
                    let theirs = affiliation_in(service, node, &target.jid);
                    let current = Role::of(&config, theirs, &target.options);
                    let wanted = match role {
                        "none" => None,
                        other => match Role::parse(other) {
                            Some(role) => Some(role),
                            None => return Err(error_reply(stanza, StanzaError::BadRequest, None)),
                        },
                    };
                    let moderator = actor_role == Some(Role::Moderator);
                    if !moderator && actor < RoomAffiliation::Admin {
                        return Err(error_reply(stanza, StanzaError::Forbidden, None));
                    }
                    // §8.2, §8.4: nobody kicks an admin or owner or takes its voice, and no
                    // moderator acts on a higher affiliation than its own.
                    if theirs >= RoomAffiliation::Admin && wanted != Some(Role::Moderator) {
                        let why = "admins and owners keep their role";
                        return Err(error_reply(stanza, StanzaError::NotAllowed, Some(why)));
                    }
                    if theirs > actor {
                        let why = "a higher affiliation than yours";
                        return Err(error_reply(stanza, StanzaError::NotAllowed, Some(why)));
                    }
                    // Moderators give and take voice; admins make and unmake moderators.
                    let needs_admin = wanted == Some(Role::Moderator) || current == Role::Moderator;
                    let allowed = if needs_admin {
                        actor >= RoomAffiliation::Admin
                    } else {
                        moderator
                    };
                    if !allowed {
                        return Err(error_reply(stanza, StanzaError::Forbidden, None));
                    }
                    // The reason goes with the kick or the new role (§8.2, §8.4).
                    if let Some(reason) = reason {
                        reasons.insert(target.jid.bare(), reason);
                    }
                    match wanted {
                        None => kicked.extend(targets),
                        Some(role) => roles.extend(targets.into_iter().map(|t| (t, role))),
                    }
                }
                (None, Some(affiliation)) => {
                    // By JID, or by the nick of an occupant (as Prosody and ejabberd take a
                    // ban): whoever cannot see its JID can still act on it.
                    let named = || {
                        let nick = item.attr("nick")?;
                        let occupant = self.occupants_named(node, nick).into_iter().next()?;
                        Some(Jid::from(occupant.jid.to_bare()))
                    };
                    let jid = match item.attr("jid") {
                        Some(jid) => crate::jids::parse(jid).ok(),
                        None => named(),
                    };
                    let Some(jid) = jid else {
                        let why = Some("no jid, nor the nick of an occupant");
                        return Err(error_reply(stanza, StanzaError::BadRequest, why));
                    };
                    let Some(wanted) = RoomAffiliation::parse(affiliation) else {
                        return Err(error_reply(stanza, StanzaError::BadRequest, None));
                    };
                    let theirs = affiliation_in(service, node, &jid);
                    // §9.1: an admin or owner does not ban itself.
                    if wanted == RoomAffiliation::Outcast
                        && jid.bare() == me.bare()
                        && actor >= RoomAffiliation::Admin
                    {
                        let why = "you cannot ban yourself";
                        return Err(error_reply(stanza, StanzaError::Conflict, Some(why)));
                    }
                    // §9.1: an admin acting on an admin or owner is not-allowed; only owners
                    // keep the admin and owner lists (§10.3–§10.7), others are forbidden.
                    if actor == RoomAffiliation::Admin
                        && theirs >= RoomAffiliation::Admin
                        && wanted < RoomAffiliation::Admin
                    {
                        let why = "a higher or equal affiliation than yours";
                        return Err(error_reply(stanza, StanzaError::NotAllowed, Some(why)));
                    }
                    let needs_owner = wanted >= RoomAffiliation::Admin;
                    let allowed = if needs_owner {
                        actor == RoomAffiliation::Owner
                    } else {
                        actor >= RoomAffiliation::Admin
                    };
                    if !allowed {
                        return Err(error_reply(stanza, StanzaError::Forbidden, None));
                    }
                    // A nick given with a membership is registered for it (§9.3, as on
                    // Prosody).
                    if let (Some(nick), RoomAffiliation::Member) = (item.attr("nick"), wanted) {
                        nicks.push((jid.bare(), nick.to_owned()));
                    }
                    if let Some(reason) = reason {
                        reasons.insert(jid.bare(), reason);
                    }
                    affiliations.insert(jid.bare(), wanted);
                }
                _ => return Err(error_reply(stanza, StanzaError::BadRequest, None)),
            }
        }
        // §10.7: the last owner does not give up ownership (a room nobody may configure).
        if affiliations.values().any(|a| *a != RoomAffiliation::Owner) {
            let owners = service
                .node_affiliations(&hosted.jid, node)
                .unwrap_or_default()
                .into_iter()
                .filter(|(jid, affiliation)| {
                    *affiliation == Affiliation::Owner && !affiliations.contains_key(jid)
                })
                .count()
                + affiliations
                    .values()
                    .filter(|a| **a == RoomAffiliation::Owner)
                    .count();
            if owners == 0 {
                let why = "a room keeps an owner";
                return Err(error_reply(stanza, StanzaError::Conflict, Some(why)));
            }
        }
        // Taking a nick from an admin or owner (its registration, or its place in the room
        // under it) is acting on it: an admin may not (§9.1, as for its affiliation).
        if actor < RoomAffiliation::Owner {
            for (member, nick) in &nicks {
                let registrant = groupchat::nick_owner(&config, nick)
                    .and_then(|jid| crate::jids::parse(jid).ok())
                    .into_iter();
                let occupants = self.occupants_named(node, nick).into_iter().map(|o| o.jid);
                let higher = registrant
                    .chain(occupants)
                    .filter(|holder| holder.bare() != *member)
                    .any(|holder| affiliation_in(service, node, &holder) >= RoomAffiliation::Admin);
                if higher {
                    let why = "the nick is an admin's or owner's";
                    return Err(error_reply(stanza, StanzaError::NotAllowed, Some(why)));
                }
            }
        }
        // §9.3: a nick registered for a member is hers to enter with (§7.2.9), so whoever
        // else holds it leaves the room, as kicked by the room (as on Prosody).
        let evicted = nicks
            .iter()
            .flat_map(|(owner, nick)| {
                self.occupants_named(node, nick)
                    .into_iter()
                    .filter(move |o| o.jid.bare() != *owner)
            })
            .filter(|o| !kicked.iter().any(|k| k.subid == o.subid))
            .filter(|o| affiliations.get(&o.jid.bare()) != Some(&RoomAffiliation::Outcast))
            .collect();
        let actor = actor_role
            .and_then(|_| self.occupant_of(node, &me))
            .and_then(|mine| groupchat::nick_of(&mine.options).map(str::to_owned));
        Ok(AdminChanges {
            kicked,
            evicted,
            roles,
            affiliations,
            nicks,
            removal: Removal { actor, reasons },
        })
    }

    /// `muc#admin` set (XEP-0045 §8, §9, §10): moderators kick (role `none`, status 307) and
    /// give or take voice; admins ban (`outcast`, 301), grant or take membership (a member
    /// removed from a members-only room goes with 321) and make moderators; owners make and
    /// unmake admins and owners. Nobody acts on an affiliation above their own.
    pub(super) fn admin_set(
        &mut self,
        from: &FullJid,
        room: &BareJid,
        node: &str,
        stanza: &Element,
        query: &Element,
        done: &mut Vec<Done>,
    ) -> Option<Element> {
        let AdminChanges {
            kicked,
            evicted,
            roles,
            affiliations,
            nicks,
            removal,
        } = match self.admin_changes(from, node, stanza, query) {
            Ok(changes) => changes,
            Err(refusal) => return refusal,
        };
        let hosted = self.rooms.get(node)?;
        let config = hosted.service.node_config(node)?.clone();
        let actor_jid = hosted.jid.clone();
        let before = hosted.service.subscribers(node);
        let in_room = occupants(&hosted.service, node);
        // Who was in the room before the change: those it removes (banned, no longer members)
        // hear of it in their unavailable presence, not also as accounts not in the room.
        let present: BTreeSet<BareJid> = in_room.iter().map(|o| o.jid.bare()).collect();
        let saw = self.who_sees(node, in_room.iter().map(|o| &o.jid));
        let hosted = self.rooms.get_mut(node)?;
        if !affiliations.is_empty() {
            let engine: BTreeMap<BareJid, Affiliation> = affiliations
                .iter()
                .map(|(jid, affiliation)| (jid.clone(), affiliation.engine()))
                .collect();
            let mut admins: BTreeSet<BareJid> = groupchat::admins(&config)
                .iter()
                .filter_map(|admin| crate::jids::parse_bare(admin).ok())
                .collect();
            for (jid, affiliation) in &affiliations {
                if *affiliation == RoomAffiliation::Admin {
                    admins.insert(jid.clone());
                } else {
                    admins.remove(jid);
                }
            }
            let applied = hosted
                .service
                .set_affiliations(&self.presence, &actor_jid, node, &engine)
                .and_then(|outcome| {
                    done.push(Done::new(
                        Origin::Room(node.to_owned()),
                        outcome.effects,
                        outcome.undo,
                    ));
                    let mut registered = config.clone();
                    let mut fields = vec![groupchat::admins_field(&admins)];
                    for (jid, nick) in &nicks {
                        let field = groupchat::register_nick(&registered, jid, nick);
                        registered.set(field.clone());
                        fields.push(field);
                    }
                    // §9.1: an outcast's nick is registered no more.
                    let banned = (affiliations.iter())
                        .filter(|(_, affiliation)| **affiliation == RoomAffiliation::Outcast);
                    for (jid, _) in banned {
                        if groupchat::registered_nick(&registered, jid).is_some() {
                            let field = groupchat::unregister_nick(&registered, jid);
                            registered.set(field.clone());
                            fields.push(field);
                        }
                    }
                    // §9.2: the ban list gives each ban's reason; one lifted, or given
                    // again without a reason, keeps none.
                    for (jid, affiliation) in &affiliations {
                        let reason = (*affiliation == RoomAffiliation::Outcast)
                            .then(|| removal.reasons.get(jid).map(String::as_str))
                            .flatten();
                        if groupchat::ban_reason(&registered, jid) != reason {
                            let field = groupchat::ban_reason_field(&registered, jid, reason);
                            registered.set(field.clone());
                            fields.push(field);
                        }
                    }
                    hosted
                        .service
                        .configure(&self.presence, &actor_jid, node, &fields)
                });
            if let Err(e) = record(done, node, applied) {
                return refused(stanza, &e);
            }
        }
        let ends: Vec<SubscriptionChange> = (kicked.iter().chain(&evicted))
            .map(|occupant| SubscriptionChange {
                jid: occupant.jid.clone(),
                subid: Some(occupant.subid.clone()),
                subscribed: false,
            })
            .collect();
        if !ends.is_empty()
            && let Err(e) = record(
                done,
                node,
                hosted
                    .service
                    .set_subscriptions(&self.presence, &actor_jid, node, &ends),
            )
        {
            return refused(stanza, &e);
        }
        // Those the new affiliations shut out: banned (301), or no longer members (321).
        let after = hosted.service.subscribers(node);
        let (banned, unmembered): (Vec<SubscriptionInfo>, Vec<SubscriptionInfo>) = before
            .into_iter()
            .filter(|s| s.state.is_approved() && !after.iter().any(|a| a.subid == s.subid))
            .filter(|s| !kicked.iter().chain(&evicted).any(|k| k.subid == s.subid))
            .partition(|s| affiliations.get(&s.jid.bare()) == Some(&RoomAffiliation::Outcast));
        self.announce_removals(room, &kicked, 307, &removal, done);
        let reserved = Removal {
            actor: None,
            reasons: (evicted.iter())
                .map(|o| (o.jid.bare(), "This nickname is reserved".to_owned()))
                .collect(),
        };
        self.announce_removals(room, &evicted, 307, &reserved, done);
        self.announce_removals(room, &banned, 301, &removal, done);
        self.announce_removals(room, &unmembered, 321, &removal, done);
        // Each session under a nick takes the role; the room hears of the occupant once.
        let mut announced: BTreeSet<String> = BTreeSet::new();
        for (occupant, role) in roles {
            let nick = groupchat::nick_of(&occupant.options).map(str::to_owned);
            let jid = occupant.jid.clone();
            if self.give_role(room, occupant, role, done)
                && nick.is_some_and(|nick| announced.insert(nick))
            {
                self.announce_standing(room, node, &jid, &removal, done);
            }
        }
        let changed: Vec<Jid> = after
            .iter()
            .filter(|s| s.state.is_approved() && affiliations.contains_key(&s.jid.bare()))
            .map(|s| s.jid.clone())
            .collect();
        // Accounts not in the room: its occupants hear of the change, those who see real JIDs
        // (everyone, or in a semi-anonymous room its owners and admins).
        let hosted = self.rooms.get(node)?;
        for (jid, affiliation) in affiliations
            .iter()
            .filter(|(jid, _)| !present.contains(*jid))
        {
            self.tell_occupants(
                node,
                |to| {
                    let sees = sees_real_jids(&hosted.service, node, to);
                    let reason = removal.reasons.get(jid).map(String::as_str);
                    sees.then(|| groupchat::affiliation_notice(room, to, jid, *affiliation, reason))
                },
                done,
            );
        }
        for occupant in changed {
            self.affiliation_changed(room, node, &occupant, &removal, done);
        }
        self.show_occupants_anew(room, node, &saw, done);
        Some(iq_result(stanza, None))
    }

    /// XEP-0486 §3.2: an owner sets the room's vCard (an empty one removes it); everyone in
    /// the room hears that its configuration changed (104).
    pub(super) fn set_vcard(
        &mut self,
        from: &FullJid,
        room: &BareJid,
        node: &str,
        stanza: &Element,
        vcard: &Element,
        done: &mut Vec<Done>,
    ) -> Option<Element> {
        let me = Jid::from(from.clone());
        let max_bytes = self.rooms_config.limits.max_payload_bytes;
        let hosted = self.rooms.get_mut(node)?;
        if affiliation_in(&hosted.service, node, &me) != RoomAffiliation::Owner {
            let why = Some("only owners set the room's vCard");
            return error_reply(stanza, StanzaError::Forbidden, why);
        }
        let field = room_vcard::set(vcard);
        let too_large = matches!(&field, verona_pubsub::ConfigField::Extra { values, .. }
            if values.iter().map(String::len).sum::<usize>() > max_bytes);
        if too_large {
            let why = Some("the vCard is too large");
            return error_reply(stanza, StanzaError::NotAcceptable, why);
        }
        let actor = hosted.jid.clone();
        let setting = hosted
            .service
            .configure(&self.presence, &actor, node, &[field]);
        if let Err(e) = record(done, node, setting) {
            return refused(stanza, &e);
        }
        self.tell_occupants(
            node,
            |to| Some(groupchat::room_notice(room, to, &[104])),
            done,
        );
        Some(iq_result(stanza, None))
    }

    /// `muc#admin` get: the accounts holding one affiliation (§9.5, §10.5; admins and owners),
    /// or the occupants holding one role (§8.5, §9.8; moderators).
    pub(super) fn admin_list(
        &self,
        from: &FullJid,
        node: &str,
        stanza: &Element,
        query: &Element,
    ) -> Option<Element> {
        let me = Jid::from(from.clone());
        let hosted = self.rooms.get(node)?;
        let service = &hosted.service;
        let config = service.node_config(node)?;
        let actor = affiliation_in(service, node, &me);
        let asked = query.get_child("item", ns::MUC_ADMIN);
        let items: Vec<Element> = if let Some(role) = asked
            .and_then(|item| item.attr("role"))
            .and_then(Role::parse)
        {
            let moderator = self
                .occupant_of(node, &me)
                .is_some_and(|mine| Role::of(config, actor, &mine.options) == Role::Moderator);
            if !moderator {
                return error_reply(stanza, StanzaError::Forbidden, Some("moderators only"));
            }
            // Real JIDs only to whom the room shows them.
            let sees = sees_real_jids(service, node, &me);
            occupants(service, node)
                .iter()
                .filter_map(|occupant| {
                    let held = role_in(service, node, &occupant.jid, &occupant.options);
                    (held == role).then(|| {
                        let affiliation = affiliation_in(service, node, &occupant.jid);
                        let item = builder("item", ns::MUC_ADMIN)
                            .with("affiliation", affiliation.name())
                            .with("role", role.name())
                            .with("nick", occupant.nick.as_str());
                        if sees {
                            item.with("jid", occupant.jid.as_str()).build()
                        } else {
                            item.build()
                        }
                    })
                })
                .collect()
        } else {
            let Some(wanted) = asked
                .and_then(|item| item.attr("affiliation"))
                .and_then(RoomAffiliation::parse)
                .filter(|wanted| *wanted != RoomAffiliation::None)
            else {
                return error_reply(stanza, StanzaError::BadRequest, Some("which list?"));
            };
            // In a room that shows real JIDs, members may read who owns and administers it
            // (§10.5, §10.8: a MAY) and, when it is members-only, its members (as Prosody
            // lets them); the ban list is its admins' (§9.2). The owner and admin lists of a
            // semi-anonymous room are its owners'.
            let semi_anonymous = groupchat::is_semi_anonymous(config);
            let members_only = config.access_model == AccessModel::Whitelist;
            let member_may = actor == RoomAffiliation::Member
                && !semi_anonymous
                && (wanted >= RoomAffiliation::Admin
                    || (wanted == RoomAffiliation::Member && members_only));
            if actor < RoomAffiliation::Admin && !member_may {
                return error_reply(stanza, StanzaError::Forbidden, Some("admins only"));
            }
            if semi_anonymous && wanted >= RoomAffiliation::Admin && actor != RoomAffiliation::Owner
            {
                return error_reply(stanza, StanzaError::Forbidden, Some("owners only"));
            }
            let Ok(all) = service.node_affiliations(&hosted.jid, node) else {
                return error_reply(stanza, StanzaError::Forbidden, None);
            };
            all.into_iter()
                .filter(|(jid, affiliation)| {
                    RoomAffiliation::of(config, *affiliation, jid) == wanted
                })
                .map(|(jid, _)| {
                    let reason = groupchat::ban_reason(config, &jid);
                    let mut item = builder("item", ns::MUC_ADMIN)
                        .with("affiliation", wanted.name())
                        .with("jid", jid.as_str())
                        .append_all(
                            reason.map(|why| crate::xml::text_child("reason", ns::MUC_ADMIN, why)),
                        )
                        .build();
                    // §9.5: an item may carry the nick its account registered (Prosody's do).
                    if let Some(nick) = groupchat::registered_nick(config, &jid) {
                        crate::xml::set_attr(&mut item, "nick", nick);
                    }
                    item
                })
                .collect()
        };
        let result = builder("query", ns::MUC_ADMIN).append_all(items).build();
        Some(iq_result(stanza, Some(result)))
    }
}

/// What a `muc#admin` set changes: occupants kicked, occupants put out of a nick registered
/// for another account, roles given, affiliations set, and nicks registered with memberships.
struct AdminChanges {
    kicked: Vec<SubscriptionInfo>,
    evicted: Vec<SubscriptionInfo>,
    roles: Vec<(SubscriptionInfo, Role)>,
    affiliations: BTreeMap<BareJid, RoomAffiliation>,
    nicks: Vec<(BareJid, String)>,
    removal: Removal,
}

/// A destroyed room's classic occupants hear of it as XEP-0045 presence (§10.9), not also as
/// a pubsub `<delete/>`: once the room's subscriptions are gone, delivery cannot tell them
/// from native occupants.
pub(super) fn spare_classic(done: &mut [Done], leaving: &[InRoom]) {
    let classic: HashSet<&Jid> = leaving
        .iter()
        .filter(|occupant| groupchat::is_classic(&occupant.options))
        .map(|occupant| &occupant.jid)
        .collect();
    let Some(deleted) = done.last_mut() else {
        return;
    };
    for effect in &mut deleted.effects {
        if let Effect::Notify(notification) = effect {
            notification.recipients = notification
                .recipients
                .iter()
                .filter(|recipient| !classic.contains(&recipient.jid))
                .cloned()
                .collect();
        }
    }
}

/// The answer to a request the engine refused: `not-acceptable`, saying why.
fn refused(stanza: &Element, error: &PubsubError) -> Option<Element> {
    error_reply(stanza, StanzaError::NotAcceptable, Some(&error.to_string()))
}
