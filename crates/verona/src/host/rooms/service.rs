//! What a stanza for `chat.<domain>` itself meets before the protocol layer: what is for rooms
//! rather than the service is refused, the room list and unique names are answered here, a
//! room made natively must be named by its address and within the account's share, and a
//! native request is vetted as its XEP-0045 view would be.

use super::*;
use crate::jids::Bare;

impl ServicesTask {
    /// `false` when the stanza was answered here; `true` to go on to the protocol layer.
    pub(in crate::host) fn service_stanza(
        &mut self,
        from: &FullJid,
        stanza: &mut Element,
        done: &mut Vec<Done>,
    ) -> bool {
        // XEP-0060 §8.6: an owner cancelling an authorization form changes nothing, and needs
        // no answer; the form names no room to take it to.
        if stanza.name() == "message" && cancels_authorization(stanza) {
            return false;
        }
        // Presence, and messages that answer no authorization request, are for rooms, not
        // for the service (as ejabberd answers them).
        let answer =
            stanza.name() == "message" && eventing::groupchat::addressed_room(stanza).is_some();
        let not_for_the_service =
            stanza.name() == "presence" || (stanza.name() == "message" && !answer);
        if not_for_the_service && stanza.attr("type") != Some("error") {
            let to_resource = stanza
                .attr("to")
                .and_then(|to| Jid::new(to).ok())
                .is_some_and(|to| to.resource().is_some());
            let error = if stanza.name() == "message" && !to_resource {
                StanzaError::Forbidden
            } else {
                StanzaError::ServiceUnavailable
            };
            done.push(Done::reply(from.clone(), error_reply(stanza, error, None)));
            return false;
        }
        if is_service_items(stanza) {
            self.list_rooms(from.clone(), stanza.clone());
            return false;
        }
        if is_service_list(stanza, "subscriptions") {
            self.room_subscriptions(from.clone(), stanza.clone());
            return false;
        }
        if is_service_list(stanza, "affiliations") {
            self.room_affiliations(from.clone(), stanza.clone());
            return false;
        }
        if chooses_pending_room(stanza) {
            self.pending_rooms(from.clone(), stanza.clone());
            return false;
        }
        // XEP-0045 §10.1.4: a room name nobody has.
        if stanza.attr("type") == Some("get")
            && stanza.has_child("unique", eventing::groupchat::MUC_UNIQUE)
        {
            let name = crate::c2s::random_id();
            let unique = builder("unique", eventing::groupchat::MUC_UNIQUE)
                .append(name)
                .build();
            done.push(Done::reply(
                from.clone(),
                Some(iq_result(stanza, Some(unique))),
            ));
            return false;
        }
        // A room is named by its address, `node@chat.<domain>`: a node made without a
        // name, or with one that is not an address's own local part, could not be reached.
        let rooms = self.rooms_jid.domain().as_str();
        let unnamed = stanza
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|pubsub| pubsub.get_child("create", ns::PUBSUB))
            .is_some_and(|create| {
                let node = create.attr("node").unwrap_or_default();
                BareJid::new(&format!("{node}@{rooms}"))
                    .ok()
                    .and_then(|room| room.node().map(|local| local.as_str() == node))
                    != Some(true)
            });
        if unnamed {
            let why = Some("a room's name is the local part of its address");
            done.push(Done::reply(
                from.clone(),
                error_reply(stanza, StanzaError::NotAcceptable, why),
            ));
            return false;
        }
        if quota::is_create(stanza) && !self.admit_room(&from.bare()) {
            let reply = verona_pubsub_xmpp::over_limit(stanza, Limit::MaxNodesExceeded);
            done.push(Done::reply(from.clone(), Some(reply)));
            return false;
        }
        let mut aligned = Ok(());
        let pubsub = |c: &Element| c.is("pubsub", ns::PUBSUB) || c.is("pubsub", ns::PUBSUB_OWNER);
        for pubsub in stanza.children_mut().filter(|c| pubsub(c)) {
            for configure in pubsub.children_mut().filter(|c| c.name() == "configure") {
                for form in configure
                    .children_mut()
                    .filter(|c| c.is("x", ns::DATA_FORMS))
                {
                    aligned = aligned.and(groupchat::align_itemreply(form));
                    groupchat::open_by_form(form);
                }
            }
        }
        if let Err(why) = aligned {
            let reply = error_reply(stanza, StanzaError::NotAcceptable, Some(&why));
            done.push(Done::reply(from.clone(), reply));
            return false;
        }
        if let Err(error) = self.vet_room_request(from, stanza) {
            done.push(Done::reply(from.clone(), error_reply(stanza, error, None)));
            return false;
        }
        // A native occupant's new `roomnick` is a nick change, shown to the others as a
        // classic one is (XEP-0045 §7.6), not an option changed in silence.
        let me = Jid::from(from.clone());
        if let Some((node, nick)) = native_nick(stanza)
            && let Some(mine) = self.occupant_of(&node, &me)
            && groupchat::nick_of(&mine.options) != Some(nick.as_str())
        {
            let room_nick = room_address(&node, self.rooms_jid.domain())
                .and_then(|room| room.with_resource_str(&nick).ok());
            let reply =
                match room_nick.map(|room_nick| self.change_nick(from, &room_nick, mine, done)) {
                    Some(Ok(())) => Some(iq_result(stanza, None)),
                    Some(Err("conflict")) => error_reply(stanza, StanzaError::Conflict, None),
                    Some(Err(_)) => error_reply(stanza, StanzaError::NotAcceptable, None),
                    None => error_reply(stanza, StanzaError::JidMalformed, None),
                };
            done.push(Done::reply(from.clone(), reply));
            return false;
        }
        true
    }

    /// disco#items of `chat.<domain>` (XEP-0045 §6.3): the public rooms, by address, read
    /// from storage (rooms are resident only while used, on every shard); answered by a task
    /// of its own, as it changes nothing.
    fn list_rooms(&self, from: FullJid, stanza: Element) {
        let Some(permit) = self.service_read(&from, &stanza) else {
            return;
        };
        let stores = self.stores.clone();
        let router = self.router.clone();
        let rooms = self.rooms_jid.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let prefix = handle::room_key(rooms.as_str(), "");
            let reply = match stores.pubsub.node_configs(&prefix).await {
                Ok(listed) => {
                    let items = listed.iter().filter_map(|listing| {
                        let (node, config) = (&listing.node, &listing.config);
                        if !groupchat::is_public(config) || groupchat::is_locked(config) {
                            return None;
                        }
                        let room = room_address(node, rooms.domain())?;
                        let name = if config.title.is_empty() {
                            node.as_str()
                        } else {
                            config.title.as_str()
                        };
                        Some(
                            builder("item", ns::DISCO_ITEMS)
                                .with("jid", room.as_str())
                                .with("name", name)
                                .build(),
                        )
                    });
                    // A reply of bounded size, however many rooms there are.
                    let items = items.take(MAX_LISTED_ROOMS);
                    let query = builder("query", ns::DISCO_ITEMS).append_all(items).build();
                    Some(iq_result(&stanza, Some(query)))
                }
                Err(e) => {
                    tracing::error!("listing the rooms failed: {e}");
                    error_reply(&stanza, StanzaError::InternalServerError, None)
                }
            };
            if let Some(reply) = reply {
                let bytes = Bytes::from(verona_stream::element_bytes(&reply));
                router.deliver(&Jid::from(from), bytes);
            }
        });
    }

    /// XEP-0060 §5.6 of `chat.<domain>` as a whole: the subscriptions the asker's account
    /// holds in every room, gathered from every shard (each room is a service of its own, on
    /// the shard its address hashes to); answered by a task of its own, as it changes nothing.
    fn room_subscriptions(&self, from: FullJid, stanza: Element) {
        let Some(permit) = self.service_read(&from, &stanza) else {
            return;
        };
        let asker = Jid::from(from);
        let answers: Vec<_> = (self.peers.iter())
            .filter_map(|peer| {
                let (held, answer) = oneshot::channel();
                let asker = asker.clone();
                let request = Request::RoomSubscriptions { asker, held };
                peer.send(request).ok().map(|()| answer)
            })
            .collect();
        let router = self.router.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut held = Vec::new();
            for answer in answers {
                held.extend(answer.await.unwrap_or_default());
            }
            held.sort_by(|a, b| a.node.cmp(&b.node));
            let list = verona_pubsub_xmpp::subscription_list(&held, None);
            let reply = iq_result(&stanza, Some(list));
            router.deliver(&asker, Bytes::from(verona_stream::element_bytes(&reply)));
        });
    }

    /// The first step of get-pending at `chat.<domain>` (XEP-0060 §8.7.1): the rooms whose
    /// entry requests wait for the asker, gathered from every shard as
    /// [`Self::room_subscriptions`] gathers; choosing one (§8.7.2) goes to that room.
    fn pending_rooms(&self, from: FullJid, stanza: Element) {
        let Some(permit) = self.service_read(&from, &stanza) else {
            return;
        };
        let owner = from.to_bare();
        let answers: Vec<_> = (self.peers.iter())
            .filter_map(|peer| {
                let (held, answer) = oneshot::channel();
                let request = Request::PendingRooms {
                    owner: owner.clone(),
                    held,
                };
                peer.send(request).ok().map(|()| answer)
            })
            .collect();
        let router = self.router.clone();
        let rooms = self.rooms_jid.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut waiting = Vec::new();
            for answer in answers {
                waiting.extend(answer.await.unwrap_or_default());
            }
            waiting.sort();
            waiting.truncate(MAX_LISTED_ROOMS);
            let reply = verona_pubsub_xmpp::pending_nodes_answer(&rooms, &from, &stanza, &waiting)
                .or_else(|| error_reply(&stanza, StanzaError::BadRequest, None));
            if let Some(reply) = reply {
                let bytes = Bytes::from(verona_stream::element_bytes(&reply));
                router.deliver(&Jid::from(from), bytes);
            }
        });
    }

    /// XEP-0060 §5.7 of `chat.<domain>` as a whole: the affiliations the asker's account
    /// holds with the rooms, as their nodes keep them (an admin is a member the room lists),
    /// read from storage, as rooms are resident only while used; the first
    /// [`MAX_LISTED_ROOMS`], by room. Answered by a task of its own, as it changes nothing.
    fn room_affiliations(&self, from: FullJid, stanza: Element) {
        let Some(permit) = self.service_read(&from, &stanza) else {
            return;
        };
        let stores = self.stores.clone();
        let router = self.router.clone();
        let prefix = handle::room_key(self.rooms_jid.as_str(), "");
        tokio::spawn(async move {
            let _permit = permit;
            let asker = from.to_bare();
            let held = stores
                .pubsub
                .affiliations_of(asker.as_str(), &prefix, MAX_LISTED_ROOMS)
                .await;
            let reply = match held {
                Ok(held) => {
                    let held: Vec<_> = (held.into_iter())
                        .map(|held| (held.node, held.affiliation))
                        .collect();
                    let list = verona_pubsub_xmpp::affiliation_list(&held);
                    Some(iq_result(&stanza, Some(list)))
                }
                Err(e) => {
                    tracing::error!("reading an account's room affiliations failed: {e}");
                    error_reply(&stanza, StanzaError::InternalServerError, None)
                }
            };
            if let Some(reply) = reply {
                let bytes = Bytes::from(verona_stream::element_bytes(&reply));
                router.deliver(&Jid::from(from), bytes);
            }
        });
    }

    /// A permit to answer a request about every room: such an answer reads every room's
    /// configuration or asks every shard, so only a few run at a time, whoever asks (the
    /// shard's queue no longer holds the request once it is spawned). `None` when the asker
    /// was refused.
    fn service_read(
        &self,
        from: &FullJid,
        stanza: &Element,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.room_lists.clone().try_acquire_owned().ok();
        if permit.is_none()
            && let Some(reply) = error_reply(stanza, StanzaError::ResourceConstraint, None)
        {
            let bytes = Bytes::from(verona_stream::element_bytes(&reply));
            self.router.deliver(&Jid::from(from.clone()), bytes);
        }
        permit
    }

    /// A native request to a room, vetted as its XEP-0045 view would be: roles are the room's
    /// to give, never a subscription option one sets oneself; entering a password-protected
    /// room takes its password (the subscribe options' `muc#roomconfig_roomsecret`, which is
    /// not kept); what is published is vetted by [`Self::vet_room_publish`].
    fn vet_room_request(
        &mut self,
        from: &FullJid,
        stanza: &mut Element,
    ) -> Result<(), StanzaError> {
        let Some(pubsub) = stanza.get_child_mut("pubsub", ns::PUBSUB) else {
            return Ok(());
        };
        let me = Jid::from(from.clone());
        let reads = pubsub
            .children()
            .filter(|c| c.is("items", ns::PUBSUB))
            .filter_map(|c| c.attr("node"));
        for node in reads {
            if self.kept_from_history(node, &me) {
                return Err(StanzaError::Forbidden);
            }
        }
        // Ex. 13: being in a room is the session's own subscription, by its full JID: one
        // for another resource would outlive every session (an occupant nobody can end).
        let subscribes = pubsub.children().filter(|c| c.is("subscribe", ns::PUBSUB));
        for subscribe in subscribes {
            let jid = subscribe
                .attr("jid")
                .and_then(|jid| crate::jids::parse_full(jid).ok());
            if jid.as_ref() != Some(from) {
                return Err(StanzaError::BadRequest);
            }
        }
        let mut secret = None;
        let mut node = None;
        let mut nicks = Vec::new();
        for child in pubsub.children_mut() {
            if child.is("subscribe", ns::PUBSUB) {
                node = child.attr("node").map(str::to_owned);
            }
            let named = child.attr("node").map(str::to_owned);
            for form in child.children_mut().filter(|c| c.is("x", ns::DATA_FORMS)) {
                let fields: Vec<Element> = form.take_contents_as_children().collect();
                for field in fields {
                    let var = field.attr("var").unwrap_or_default();
                    let the_rooms = [groupchat::ROLE_OPTION, groupchat::VOICE_ASKED_OPTION];
                    if the_rooms.contains(&var) || shown::OPTIONS.contains(&var) {
                        return Err(StanzaError::Forbidden);
                    }
                    match var {
                        ROOM_SECRET => {
                            secret = field.get_child("value", ns::DATA_FORMS).map(Element::text);
                        }
                        groupchat::NICK_OPTION => {
                            let nick = room_nick(&field)?;
                            let field = builder("field", ns::DATA_FORMS)
                                .with("var", groupchat::NICK_OPTION)
                                .append(builder("value", ns::DATA_FORMS).append(nick.as_str()))
                                .build();
                            form.append_child(field);
                            nicks.push((named.clone(), nick));
                        }
                        _ => {
                            form.append_child(field);
                        }
                    }
                }
            }
        }
        if let Some(node) = node.as_deref() {
            // Without a nick it would be a listener the occupants cannot see (XEP-0045 §7.2.1
            // refuses a join without one alike); a second subscription, a second occupant.
            if nicks.is_empty() {
                return Err(StanzaError::JidMalformed);
            }
            if self.occupant_of(node, &me).is_some() {
                return Err(StanzaError::NotAllowed);
            }
        }
        if let Some(node) = node.as_deref()
            && !self.may_enter(node, &me)
        {
            // `[limits] max_rooms_per_session`.
            return Err(StanzaError::ResourceConstraint);
        }
        let account = from.bare();
        // What a classic join is checked for (XEP-0045 §7.2.9, §7.10), a native one is too.
        for (named, nick) in &nicks {
            let Some(node) = named.as_deref().or(node.as_deref()) else {
                continue;
            };
            let Some(hosted) = self.rooms.get(node) else {
                continue;
            };
            let Some(config) = hosted.service.node_config(node) else {
                continue;
            };
            if groupchat::nick_owner(config, nick).is_some_and(|who| who != account.as_str()) {
                return Err(StanzaError::Conflict);
            }
            let entering = self.occupant_of(node, &me).is_none();
            let full = groupchat::max_users(config)
                .is_some_and(|max| occupant_count(&hosted.service, node) >= max);
            if entering
                && full
                && affiliation_in(&hosted.service, node, &me) < RoomAffiliation::Admin
            {
                return Err(StanzaError::ServiceUnavailable);
            }
        }
        let password = node.as_deref().and_then(|node| {
            let hosted = self.rooms.get(node)?;
            let config = hosted.service.node_config(node)?;
            let owner = hosted.service.affiliation(node, &account) == Affiliation::Owner;
            groupchat::password(config)
                .filter(|_| !owner)
                .map(|password| (node, password.to_owned()))
        });
        if let Some((node, password)) = password {
            let now = Instant::now();
            if !self.guesses.may_try(node, &account, now) {
                return Err(StanzaError::ResourceConstraint);
            }
            if secret.as_deref() != Some(password.as_str()) {
                self.guesses.wrong(node, &account, now);
                return Err(StanzaError::NotAuthorized);
            }
            self.guesses.right(node, &account);
        }
        self.vet_room_publish(from, stanza)
    }

    /// Whether `jid` may not read a room's history although the room is open: a
    /// password-protected room's is for those who gave the password (its occupants) and its
    /// members, admins and owners, not for anyone who asks for the items or the archive.
    pub(super) fn kept_from_history(&self, node: &str, jid: &Jid) -> bool {
        let Some(hosted) = self.rooms.get(node) else {
            return false;
        };
        hosted
            .service
            .node_config(node)
            .is_some_and(|config| groupchat::password(config).is_some())
            && affiliation_in(&hosted.service, node, jid) < RoomAffiliation::Member
            && self.occupant_of(node, jid).is_none()
    }

    /// A native publish to a room (Ex. 16): each item is made what the speaker said, with its
    /// nick, as a classic groupchat message would be; `Err` when the publisher is not in the
    /// room, has no voice, or says nothing a room keeps.
    fn vet_room_publish(&self, from: &FullJid, stanza: &mut Element) -> Result<(), StanzaError> {
        let Some(publish) = stanza
            .get_child_mut("pubsub", ns::PUBSUB)
            .and_then(|pubsub| pubsub.get_child_mut("publish", ns::PUBSUB))
        else {
            return Ok(());
        };
        let node = publish.attr("node").unwrap_or_default().to_owned();
        let me = Jid::from(from.clone());
        let speaker = self.rooms.get(&node).and_then(|hosted| {
            let mine = self.occupant_of(&node, &me)?;
            let config = hosted.service.node_config(&node)?;
            let affiliation = affiliation_in(&hosted.service, &node, &me);
            let role = Role::of(config, affiliation, &mine.options);
            let may_set_subject =
                role == Role::Moderator || groupchat::occupants_change_subject(config);
            Some((
                groupchat::nick_of(&mine.options)?.to_owned(),
                role,
                may_set_subject,
            ))
        });
        let Some((nick, role, may_set_subject)) = speaker else {
            return Err(StanzaError::NotAcceptable);
        };
        let room = room_address(&node, self.rooms_jid.domain()).ok_or(StanzaError::ItemNotFound)?;
        let id = self.occupant_ids.of(&room, &from.bare());
        if role == Role::Visitor {
            return Err(StanzaError::Forbidden);
        }
        for item in publish.children_mut().filter(|c| c.is("item", ns::PUBSUB)) {
            let message = {
                let mut payloads = item.children();
                match (payloads.next(), payloads.next()) {
                    (Some(message), None) if message.is("message", ns::CLIENT) => {
                        // XEP-0045 §8.1, as for a classic subject change.
                        if groupchat::is_subject_change(message) && !may_set_subject {
                            return Err(StanzaError::Forbidden);
                        }
                        said(message, &nick, &id)
                    }
                    _ => None,
                }
            };
            let Some(message) = message else {
                return Err(StanzaError::InvalidPayload);
            };
            // The item id is the message's archive id (XEP-0359), the server's to give: one
            // a speaker chose could replace what someone else said.
            *item = builder("item", ns::PUBSUB).append(message).build();
            // Each notification names its speaker's nick, as a classic message does (`say`).
            self.broadcasts
                .charge(&from.bare(), nick.len(), std::time::Instant::now());
        }
        Ok(())
    }
}

/// A native occupant's nick, prepared as a classic one is by its JID (RFC 7622 resourceprep):
/// one that is empty or no resource at all is refused, so no two spellings of a nick (or an
/// address without one) name occupants.
fn room_nick(field: &Element) -> Result<String, StanzaError> {
    let mut values = field.children().filter(|c| c.is("value", ns::DATA_FORMS));
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(StanzaError::JidMalformed);
    };
    let nick = value.text();
    jid::ResourcePart::new(&nick)
        .ok()
        .map(|nick| nick.as_str().to_owned())
        .filter(|nick| groupchat::is_tidy_nick(nick))
        .ok_or(StanzaError::JidMalformed)
}

/// A native occupant's options set that names a `roomnick` (no `<subscribe/>` with it: that
/// is entering): the room's node and the nick, as vetted.
fn native_nick(stanza: &Element) -> Option<(String, String)> {
    if stanza.name() != "iq" || stanza.attr("type") != Some("set") {
        return None;
    }
    let pubsub = stanza.get_child("pubsub", ns::PUBSUB)?;
    if pubsub.has_child("subscribe", ns::PUBSUB) {
        return None;
    }
    let options = pubsub.get_child("options", ns::PUBSUB)?;
    let form = options.get_child("x", ns::DATA_FORMS)?;
    let nick = form
        .children()
        .find(|field| field.attr("var") == Some(groupchat::NICK_OPTION))?
        .get_child("value", ns::DATA_FORMS)?
        .text();
    Some((options.attr("node")?.to_owned(), nick))
}

/// Rooms one answer about every room names at most (public rooms listed, affiliations).
const MAX_LISTED_ROOMS: usize = 1000;

/// Room lists being read, or subscriptions in rooms gathered, at once, over the whole server.
pub(in crate::host) const CONCURRENT_ROOM_LISTS: usize = 2;

/// XEP-0060 §5.6 or §5.7 asked of the service itself (`list` is `subscriptions` or
/// `affiliations`): those on every node.
fn is_service_list(stanza: &Element, list: &str) -> bool {
    let mut asked =
        (stanza.get_child("pubsub", ns::PUBSUB).into_iter()).flat_map(Element::children);
    stanza.name() == "iq"
        && stanza.attr("type") == Some("get")
        && matches!(
            (asked.next(), asked.next()),
            (Some(asked), None) if asked.is(list, ns::PUBSUB) && asked.attr("node").is_none()
        )
}

/// A disco#items request about a service itself (no node).
fn is_service_items(stanza: &Element) -> bool {
    stanza.attr("type") == Some("get")
        && stanza
            .get_child("query", ns::DISCO_ITEMS)
            .is_some_and(|query| query.attr("node").is_none())
}

/// Whether `message` carries a cancelled subscription authorization form (XEP-0060 §8.6).
fn cancels_authorization(message: &Element) -> bool {
    message
        .children()
        .filter(|x| x.is("x", ns::DATA_FORMS) && x.attr("type") == Some("cancel"))
        .flat_map(|x| x.children())
        .any(|field| {
            field.attr("var") == Some("FORM_TYPE")
                && field
                    .children()
                    .any(|value| value.text().trim() == ns::PUBSUB_AUTHORIZATION)
        })
}

/// The first step of get-pending (XEP-0060 §8.7.1), executed without a node chosen: which
/// rooms, is a question for every shard.
fn chooses_pending_room(stanza: &Element) -> bool {
    stanza.attr("type") == Some("set")
        && stanza
            .get_child("command", ns::COMMANDS)
            .is_some_and(|command| {
                command.attr("node") == Some(ns::GET_PENDING)
                    && command.attr("action") != Some("cancel")
                    && !command
                        .children()
                        .any(|x| x.is("x", ns::DATA_FORMS) && x.attr("type") == Some("submit"))
            })
}
