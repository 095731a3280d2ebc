//! A XEP-0060 stanza for a service, through the protocol layer into the engine, and what it
//! means for presence, blocking and residency; answers to authorization requests sent to the
//! server; disco#info about a contact, answered on its behalf.

use super::*;
use crate::jids::Bare;

impl ServicesTask {
    /// A XEP-0060 stanza for a service: through the protocol layer into the engine, then
    /// what it means for presence, blocking and residency.
    pub(super) fn stanza(
        &mut self,
        from: FullJid,
        target: Target,
        mut stanza: Element,
        done: &mut Vec<Done>,
    ) {
        let Some(own_presence) = self.presence_publish(&from, &target, &mut stanza, done) else {
            return;
        };
        if matches!(target, Target::Rooms) && !self.service_stanza(&from, &mut stanza, done) {
            return;
        }
        // A node's items name no sender but the publish (its `replyto`).
        if matches!(target, Target::Domain | Target::Account(_)) {
            let own_presence = matches!(target, Target::Account(_))
                && crate::c2s::route::publishes_presence(&stanza);
            eventing::chat::vet_published_stanzas(&mut stanza, own_presence);
        }
        if let Target::Conversation(node) = &target
            && let Err(error) = self.vet_conversation_request(&from, node, &mut stanza, done)
        {
            done.push(Done::reply(from, error_reply(&stanza, error, None)));
            return;
        }
        if quota::is_subscribe(&stanza) && !self.admit_subscription(&from.bare()) {
            let reply = verona_pubsub_xmpp::over_limit(&stanza, Limit::TooManySubscriptions);
            done.push(Done::reply(from, Some(reply)));
            return;
        }
        // Only an answer sent to the server may be a room's; one sent to `pubsub.<domain>` is
        // its own, and an error about it comes from there (RFC 6120 §8.3.1).
        let to_server = matches!(target, Target::Answer);
        let origin = match target {
            Target::Domain => Origin::Domain,
            Target::Rooms => match eventing::groupchat::addressed_room(&stanza) {
                Some(node) => Origin::Room(node),
                None => Origin::Rooms,
            },
            Target::Account(account) => Origin::Account(account),
            Target::Conversation(node) => Origin::Conversation(node),
            Target::Answer => {
                if let Some(to) = self.answer_for_elsewhere(&from, &stanza) {
                    return self.send_answer_away(from, &to, stanza, done);
                }
                match self.answer_origin(&from, &stanza) {
                    Some(origin) => origin,
                    None => return self.forward_answer(from, stanza),
                }
            }
        };
        if to_server
            && origin == Origin::Domain
            && let Some(node) = self.room_answered(&stanza)
        {
            return self.answer_room(from, stanza, &node);
        }
        if let Origin::Account(owner) = &origin
            && is_account_info(&stanza)
        {
            let reply = self.contact_info(owner, &from, &stanza);
            done.push(Done::reply(from, reply));
            return;
        }
        // An account's `presence` and `roster` nodes are its presence subscriptions and its
        // roster (XEP-0207 §3, §4): deleting or purging one would end every relation at once,
        // and the roster's items are written through `jabber:iq:roster`, which keeps its view.
        if matches!(origin, Origin::Account(_)) && alters_view_node(&stanza) {
            let why = Some("the account's presence and roster nodes are kept by the server");
            let reply = error_reply(&stanza, StanzaError::NotAllowed, why);
            done.push(Done::reply(from, reply));
            return;
        }
        // Who would hear of a PEP node's deletion through `+notify`, asked while the node is
        // there to say who may read it.
        let unheard_delete = match &origin {
            Origin::Account(owner) => self.notified_of_delete(owner, &origin, &stanza),
            _ => None,
        };
        // A native occupant that unsubscribes leaves the room: the others hear of it as of
        // a classic occupant leaving.
        let leaving = match &origin {
            Origin::Room(node) if is_unsubscribe(&stanza) => {
                self.occupant_of(node, &Jid::from(from.clone()))
            }
            _ => None,
        };
        // What an owner's answer to an authorization request, or change of subscriptions,
        // ends in a room is rendered for its classic occupants after it, as their kick is.
        let owned = match &origin {
            Origin::Room(node)
                if is_subscriptions_set(&stanza) || answer_node(&stanza).is_some() =>
            {
                Some((node.clone(), self.subscriptions_in(node)))
            }
            _ => None,
        };
        // A room deleted natively is destroyed for those in it, as with `muc#owner`.
        let deleting = match &origin {
            Origin::Room(node) => {
                room_delete(&stanza).map(|redirect| (node.clone(), self.in_room(node), redirect))
            }
            _ => None,
        };
        // A follower leaving natively is heard by the owner as a classic `unsubscribe` is.
        let follower = match &origin {
            Origin::Account(owner) if is_unsubscribe(&stanza) => {
                let follower = from.bare();
                (follower != *owner && self.presence.has_presence_subscription(owner, &follower))
                    .then_some((owner.clone(), follower))
            }
            _ => None,
        };
        // An approval a join would now refuse is a denial (see `rooms::approvals`).
        let unadmitted = match &origin {
            Origin::Room(node)
                if is_subscriptions_set(&stanza) || answer_node(&stanza).is_some() =>
            {
                self.vet_approvals(&from, node, &mut stanza)
            }
            _ => Vec::new(),
        };
        let Some(hosted) = (match &origin {
            Origin::Domain => self.domain.as_mut(),
            Origin::Rooms => self.rooms_service.as_mut(),
            Origin::Room(node) => self.rooms.get_mut(node),
            Origin::Conversation(node) => self.conversations.get_mut(node),
            Origin::Account(account) => self.accounts.get_mut(account),
        }) else {
            // No such account: nobody hosts a PEP service there.
            let reply = error_reply(&stanza, StanzaError::ServiceUnavailable, None);
            done.push(Done::reply(from, reply));
            return;
        };
        if let Origin::Room(node) = &origin
            && rooms::is_locked(&hosted.service, node)
            && stanza.name() == "iq"
            && matches!(stanza.attr("type"), Some("get" | "set"))
            && hosted.service.affiliation(node, &from.bare()) != verona_pubsub::Affiliation::Owner
        {
            // XEP-0045 §7.2.10, natively: a room its owner has not configured is no room for
            // anyone else yet, to enter or to read (its items, its disco, its subscriptions).
            let reply = error_reply(&stanza, StanzaError::ItemNotFound, None);
            done.push(Done::reply(from, reply));
            return;
        }
        let context = ServiceContext {
            jid: &hosted.jid,
            kind: hosted.kind,
            resolver: &self.presence,
        };
        // An owner's answer to a room's authorization request (§8.6), or its approval of a
        // pending one among the node's subscriptions (§8.8.2), may let occupants in: either
        // way they are welcomed and announced as on entering.
        let answered = match &origin {
            Origin::Room(node)
                if (stanza.name() == "message" && answer_node(&stanza).is_some())
                    || is_subscriptions_set(&stanza) =>
            {
                Some((node.clone(), in_room(&hosted.service, node)))
            }
            _ => None,
        };
        let mut handled =
            verona_pubsub_xmpp::handle_stanza(&mut hosted.service, &context, &from, &stanza);
        let deleted = handled.reply.as_ref().and_then(|r| r.attr("type")) == Some("result");
        if let Some(notification) = unheard_delete.filter(|_| deleted) {
            add_delete_recipients(&mut handled.effects, notification);
        }
        let admitted: Vec<(String, Jid)> = answered
            .map(|(node, before)| {
                in_room(&hosted.service, &node)
                    .difference(&before)
                    .map(|jid| (node.clone(), jid.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let unheard = match (&origin, &handled.published) {
            (Origin::Account(owner), Some(item)) if !own_presence => {
                unheard_publish(hosted, owner, item, &handled.effects)
            }
            (Origin::Account(owner), None) => unheard_removal(
                hosted,
                owner,
                &stanza,
                handled.reply.as_ref(),
                &handled.effects,
            ),
            _ => None,
        };
        // A native subject change (Ex. 16 with a bare `<subject/>`, vetted as a classic one):
        // the room keeps it, as it keeps a classic one.
        let subject = match (&origin, &handled.published) {
            (Origin::Room(node), Some(_)) => {
                rooms::published_subject(&stanza).map(|said| (node.clone(), said))
            }
            _ => None,
        };
        let joined = (matches!(origin, Origin::Room(_)) && quota::is_subscribe(&stanza))
            .then(|| joined_room(&hosted.service, &hosted.jid, &from, &stanza))
            .flatten();
        if touches_presence_subscriptions(&handled.effects) {
            self.refresh_presence(&origin);
        }
        let published = own_presence && handled.published.is_some();
        let created = created_nodes(&handled.effects);
        let account = match &origin {
            Origin::Account(account) => Some(account.clone()),
            Origin::Domain | Origin::Rooms | Origin::Room(_) | Origin::Conversation(_) => None,
        };
        let subscribing = changes_subscription_options(&stanza);
        done.push(Done {
            origin,
            to: Some(Jid::from(from.clone())),
            request: Some(stanza),
            reply: handled.reply,
            effects: handled.effects,
            undo: handled.undo,
            passing: None,
            sent: None,
        });
        if let Some((node, before)) = owned {
            self.announce_owner_ended(&from, &node, &before, done);
            self.tell_unadmitted(&node, &unadmitted, done);
        }
        if let Some((node, leaving, redirect)) = deleting
            && deleted
        {
            self.announce_gone(&node, &leaving, redirect.as_deref(), done);
        }
        if published {
            self.reflect_presence(&from, done);
        }
        if let Some((node, said)) = subject {
            self.keep_subject(&node, &said, done);
        }
        if let Some((owner, follower)) = follower
            && !self.presence.has_presence_subscription(&owner, &follower)
        {
            self.tell_unsubscribed(&owner, &follower, done);
        }
        if let Some((room, node)) = joined {
            self.announce_arrival(&room, &node, &Jid::from(from.clone()), done);
        }
        if let Some(occupant) = leaving
            && self.occupant_of(&occupant.node, &occupant.jid).is_none()
        {
            let ended = [occupant];
            self.announce_departures(&ended, None, done);
            self.close_empty_rooms(&ended, done);
        }
        for (node, occupant) in admitted {
            self.admitted(&node, &occupant, done);
        }
        if let Some(account) = account {
            self.carry_blocks(&account, &created, done);
            if subscribing {
                self.note_temporary(&account);
            }
        }
        if let Some((owner, notification)) = unheard {
            let effects = vec![Effect::Notify(notification)];
            done.push(Done::new_effects(Origin::Account(owner), effects));
        }
    }

    /// A publish to a `presence` node, vetted (C1): `Some(true)` for the sender's own
    /// available presence (it comes online), `Some(false)` for any other stanza, `None` when
    /// it was answered here (refused, or `unavailable`, a retraction).
    fn presence_publish(
        &mut self,
        from: &FullJid,
        target: &Target,
        stanza: &mut Element,
        done: &mut Vec<Done>,
    ) -> Option<bool> {
        let own_account = matches!(target, Target::Account(account) if *account == from.bare());
        let presence = match target {
            Target::Account(_) => vet_presence_publish(stanza, from),
            _ => PresencePublish::Other,
        };
        match presence {
            PresencePublish::Unavailable if own_account => {
                self.retract_presence(from, None, done);
                done.push(Done::reply(from.clone(), Some(iq_result(stanza, None))));
                None
            }
            PresencePublish::Invalid | PresencePublish::Unavailable => {
                let reply = error_reply(stanza, StanzaError::InvalidPayload, None);
                done.push(Done::reply(from.clone(), reply));
                None
            }
            PresencePublish::Available if own_account => {
                self.came_online(from, done);
                Some(true)
            }
            PresencePublish::Available | PresencePublish::Other => Some(false),
        }
    }

    /// An answer sent to the server, for `pubsub.<domain>` (or a room, when it matches no
    /// request there) held by another shard: the sender's account is not there.
    fn forward_answer(&mut self, from: FullJid, stanza: Element) {
        let request = Request::Stanza {
            from,
            target: Target::Answer,
            stanza,
            view: None,
        };
        self.send_to(self.domain_shard, request, Committed::Always);
    }

    /// The room an authorization answer sent to the server (or the owner's bare JID) is
    /// about, when no request of `pubsub.<domain>` waits for it (DESIGN, seed errata: the
    /// answer is taken at the owner's server, whichever service asked).
    fn room_answered(&self, stanza: &Element) -> Option<String> {
        if stanza.name() != "message" || !crate::c2s::route::is_authorization_answer(stanza) {
            return None;
        }
        let node = answer_node(stanza).filter(|node| !node.is_empty())?;
        // Matched by the request it answers (the seed's errata: form fields and id), not by
        // the node's name alone: anyone may make a node of a room's name on `pubsub.<domain>`.
        let subid = form_field(stanza, &["pubsub#subid"]);
        let subscriber = form_field(stanza, &["pubsub#subscriber_jid", "pusub#subscriber_jid"])
            .and_then(|jid| crate::jids::parse(&jid).ok());
        let waits_on_domain = self.domain.as_ref().is_some_and(|hosted| {
            (hosted.service.subscriptions(&node))
                .filter(|s| s.state == verona_pubsub::SubscriptionState::Pending)
                .any(|s| {
                    subid.as_deref() == Some(s.subid.as_str()) || subscriber.as_ref() == Some(s.jid)
                })
        });
        (!waits_on_domain).then_some(node)
    }

    /// Hands an authorization answer to the shard of the room it is about, as if sent to
    /// `chat.<domain>`.
    fn answer_room(&mut self, from: FullJid, mut stanza: Element, node: &str) {
        crate::xml::set_attr(&mut stanza, "to", self.rooms_jid.as_str());
        let shard = self.shard_of(&handle::room_key(self.rooms_jid.as_str(), node));
        let request = Request::Stanza {
            from,
            target: Target::Rooms,
            stanza,
            view: None,
        };
        self.send_to(shard, request, Committed::Always);
    }

    /// An answer sent to the server goes to the sender's own PEP service when it has the
    /// form's node (e.g. its `presence` node), otherwise to `pubsub.<domain>`: `None` when
    /// that is another shard's. Own nodes first, so that nobody can take an account's answers
    /// by creating a node of the same name at `pubsub.<domain>`.
    fn answer_origin(&self, from: &FullJid, stanza: &Element) -> Option<Origin> {
        if self.answers_own_node(from, stanza) {
            Some(Origin::Account(from.bare()))
        } else {
            self.domain.as_ref().map(|_| Origin::Domain)
        }
    }

    /// Whether the form's node is one of the sender's own PEP nodes (the seed's Ex. 11: an
    /// owner answering for its `presence` node).
    fn answers_own_node(&self, from: &FullJid, stanza: &Element) -> bool {
        answer_node(stanza).is_some_and(|node| {
            self.accounts
                .get(&from.bare())
                .is_some_and(|hosted| hosted.service.node_config(&node).is_some())
        })
    }

    /// Where an answer addressed to another server goes, when it is not about the sender's
    /// own nodes: the seed's Ex. 11 addresses an answer about the owner's own node to another
    /// domain (taken here, DESIGN's errata), but the owner of a node on another server's
    /// service must reach that service to approve or deny (XEP-0060 §8.6).
    fn answer_for_elsewhere(&self, from: &FullJid, stanza: &Element) -> Option<Jid> {
        let to = Jid::new(stanza.attr("to")?).ok()?;
        let domain = to.domain().as_str();
        let here = [
            self.domain_name.as_str(),
            self.pubsub_jid.as_str(),
            self.rooms_jid.as_str(),
        ];
        (!here.contains(&domain) && !self.answers_own_node(from, stanza)).then_some(to)
    }

    /// Sends an answer on to the server it is addressed to (or its component).
    fn send_answer_away(&self, from: FullJid, to: &Jid, stanza: Element, done: &mut Vec<Done>) {
        let bytes = Bytes::from(verona_stream::element_bytes(&stanza));
        // A component's domain bounces what it does not take itself.
        if self.router.deliver(to, bytes) == 0
            && !self.router.is_component_domain(to.domain().as_str())
        {
            let why = Some("the server it is addressed to cannot be reached from here");
            let reply = error_reply(&stanza, StanzaError::RemoteServerNotFound, why);
            done.push(Done::reply(from, reply));
        }
    }
}

/// The node an authorization answer (XEP-0060 §8.6) is about.
fn answer_node(stanza: &Element) -> Option<String> {
    form_field(stanza, &["pubsub#node"])
}

/// The first value of the first of `vars` a form of `stanza` has.
fn form_field(stanza: &Element, vars: &[&str]) -> Option<String> {
    stanza
        .children()
        .filter(|x| x.is("x", ns::DATA_FORMS))
        .flat_map(|x| x.children())
        .find(|field| field.attr("var").is_some_and(|var| vars.contains(&var)))
        .and_then(|field| field.children().next())
        .map(|value| value.text())
}

/// The sessions in a room (approved subscriptions).
fn in_room(service: &Service, node: &str) -> BTreeSet<Jid> {
    service
        .subscribers(node)
        .into_iter()
        .filter(|s| s.state.is_approved())
        .map(|s| s.jid)
        .collect()
}

/// The room a XEP-0060 subscribe to `chat.<domain>` (Ex. 13) has just let `from` into, if it
/// did: its address and node.
fn joined_room(
    service: &Service,
    rooms: &Jid,
    from: &FullJid,
    stanza: &Element,
) -> Option<(BareJid, String)> {
    let node = stanza
        .get_child("pubsub", ns::PUBSUB)?
        .get_child("subscribe", ns::PUBSUB)?
        .attr("node")?;
    let me = Jid::from(from.clone());
    let inside = service
        .subscribers(node)
        .iter()
        .any(|s| s.jid == me && s.state.is_approved());
    let room = BareJid::new(&format!("{node}@{}", rooms.domain())).ok()?;
    inside.then(|| (room, node.to_owned()))
}

/// A XEP-0060 unsubscribe request.
fn is_unsubscribe(stanza: &Element) -> bool {
    stanza.attr("type") == Some("set")
        && stanza
            .get_child("pubsub", ns::PUBSUB)
            .is_some_and(|pubsub| pubsub.has_child("unsubscribe", ns::PUBSUB))
}

/// An owner's change of a node's subscriptions (XEP-0060 §8.8.2).
fn is_subscriptions_set(stanza: &Element) -> bool {
    stanza.attr("type") == Some("set")
        && stanza
            .get_child("pubsub", ns::PUBSUB_OWNER)
            .is_some_and(|pubsub| pubsub.has_child("subscriptions", ns::PUBSUB_OWNER))
}

/// An owner's deletion of a node (XEP-0060 §8.4), with the URI of its redirect if it has one.
fn room_delete(stanza: &Element) -> Option<Option<String>> {
    if stanza.attr("type") != Some("set") {
        return None;
    }
    let delete = stanza
        .get_child("pubsub", ns::PUBSUB_OWNER)?
        .get_child("delete", ns::PUBSUB_OWNER)?;
    let redirect = delete.get_child("redirect", ns::PUBSUB_OWNER);
    Some(redirect.and_then(|r| r.attr("uri")).map(str::to_owned))
}

/// A disco#info request about an account itself (no node).
fn is_account_info(stanza: &Element) -> bool {
    stanza.attr("type") == Some("get")
        && stanza
            .get_child("query", ns::DISCO_INFO)
            .is_some_and(|query| query.attr("node").is_none())
}

/// The nodes effects create.
fn created_nodes(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Persist(StoreOp::NodeCreated { node, .. }) => Some(node.clone()),
            _ => None,
        })
        .collect()
}

/// The `+notify` recipients of a deleted PEP node join those its subscribers were told by,
/// or are told on their own.
fn add_delete_recipients(effects: &mut Vec<Effect>, notification: verona_pubsub::Notification) {
    let told = effects.iter_mut().find_map(|effect| match effect {
        Effect::Notify(n)
            if n.node == notification.node && matches!(n.event, Event::Delete { .. }) =>
        {
            Some(n)
        }
        _ => None,
    });
    match told {
        Some(told) => {
            let mut recipients = told.recipients.to_vec();
            recipients.extend(
                notification
                    .recipients
                    .iter()
                    .filter(|r| !told.recipients.iter().any(|t| t.jid == r.jid))
                    .cloned(),
            );
            told.recipients = recipients.into();
        }
        None => effects.push(Effect::Notify(notification)),
    }
}

/// Whether `stanza` deletes or purges an account's `presence` or `roster` node, or publishes
/// or retracts `roster` items: the roster view would go on showing what the node no longer
/// holds, or not show what it does.
fn alters_view_node(stanza: &Element) -> bool {
    let ops = |namespace: &str, names: &[&str]| -> Vec<String> {
        (stanza.get_child("pubsub", namespace).into_iter())
            .flat_map(Element::children)
            .filter(|op| names.iter().any(|name| op.is(*name, namespace)))
            .filter_map(|op| op.attr("node").map(str::to_owned))
            .collect()
    };
    let removed = ops(ns::PUBSUB_OWNER, &["delete", "purge"]);
    let written = ops(ns::PUBSUB, &["publish", "retract"]);
    removed
        .iter()
        .any(|node| [PRESENCE_NODE, ROSTER_NODE].contains(&node.as_str()))
        || written.iter().any(|node| node == ROSTER_NODE)
}
