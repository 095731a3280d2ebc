//! The host side of presence ([`crate::eventing::presence`]): `<presence/>` broadcasts,
//! subscription stanzas, probes, coming online and going offline, run against the resident
//! services and the presence graph in a batch.

use super::*;
use crate::jids::Bare;

/// Authorization forms a service sends a session at login, at most.
const PENDING_FORMS_AT_LOGIN: usize = 10;

/// XEP-0012 Last Activity.
const LAST: &str = "jabber:iq:last";

impl ServicesTask {
    /// A session ended: its presence is retracted and its temporary subscriptions end, in
    /// `pubsub.<domain>` and in the services known to hold temporary subscriptions (not in
    /// every resident service).
    pub(super) fn session_ended(&mut self, jid: &Jid, done: &mut Vec<Done>) {
        if let Ok(full) = jid.try_as_full() {
            self.interested.remove(full);
            self.blocklist_interested.remove(full);
            self.bound.remove(full);
            self.retract_presence(full, None, done);
        }
        self.end_temporary(jid, None, done);
    }

    /// Ends the temporary subscriptions (`expire=presence`, room occupancy) a session or an
    /// account holds on this shard's services; the rooms it leaves give its occupants
    /// `status`, the one it went unavailable with.
    pub(super) fn end_temporary(&mut self, jid: &Jid, status: Option<&str>, done: &mut Vec<Done>) {
        if let Some(hosted) = &mut self.domain {
            let outcome = hosted.service.end_session(jid);
            done.push(Done::new(Origin::Domain, outcome.effects, outcome.undo));
        }
        // Occupied rooms are resident (occupancy is memory only, and pins them).
        let occupied: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, hosted)| hosted.service.has_temporary_subscriptions())
            .map(|(node, _)| node.clone())
            .collect();
        for node in occupied {
            let Some(hosted) = self.rooms.get_mut(&node) else {
                continue;
            };
            let outcome = hosted.service.end_session(jid);
            if outcome.value.is_empty() {
                continue;
            }
            done.push(Done::new(Origin::Room(node), outcome.effects, outcome.undo));
            self.announce_departures(&outcome.value, status, done);
            self.close_empty_rooms(&outcome.value, done);
        }
        let holders: Vec<BareJid> = self.temporary.iter().cloned().collect();
        for account in holders {
            if let Some(hosted) = self.accounts.get_mut(&account) {
                let outcome = hosted.service.end_session(jid);
                let origin = Origin::Account(account.clone());
                done.push(Done::new(origin, outcome.effects, outcome.undo));
            }
            self.note_temporary(&account);
        }
    }

    /// `<presence/>` → publish the stanza as the resource's item; `unavailable` → retract it.
    pub(super) fn classic_presence(
        &mut self,
        from: &FullJid,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        if stanza.attr("type") == Some("unavailable") {
            // Kept until the account is next online: as bounded as an occupant's status.
            let status = eventing::shown::status(stanza);
            let farewell = eventing::presence::Farewell::of(stanza);
            self.leaving.insert(from.clone(), farewell);
            return self.retract_presence(from, status, done);
        }
        let Some(vetted) = eventing::presence::vet(stanza, from) else {
            let why = Some("presence carries show, status, priority and extensions only");
            let reply = error_reply(stanza, StanzaError::BadRequest, why);
            done.push(Done::reply(from.clone(), reply));
            return;
        };
        self.came_online(from, done);
        let account = from.bare();
        let Some(hosted) = self.accounts.get_mut(&account) else {
            return;
        };
        let payload: String = String::from_utf8(verona_stream::element_bytes(&vetted))
            .expect("serialised XML is UTF-8");
        let request = PublishRequest::payload(Some(from.resource().as_str()), payload);
        match hosted
            .service
            .publish(&Jid::from(from.clone()), PRESENCE_NODE, request)
        {
            Ok(outcome) => self.presence_changed(from, outcome, done),
            Err(e) => tracing::warn!(jid = %from, "publishing presence: {e}"),
        }
    }

    /// RFC 6121 §3 subscription stanzas as operations on the owner's presence node. Requests
    /// that make no sense (nothing pending, nothing to end) change nothing, as RFC 6121 asks.
    pub(super) fn classic_subscription(
        &mut self,
        from: &BareJid,
        contact: &BareJid,
        kind: SubscriptionKind,
        extensions: Vec<Element>,
        done: &mut Vec<Done>,
    ) {
        let owner = kind.owner(from, contact);
        let shard = self.shard_of(owner.as_str());
        if shard != self.shard {
            // Another shard's presence node (removing a contact ends both subscriptions).
            let request = Request::Subscription {
                from: from.clone(),
                contact: contact.clone(),
                kind,
                extensions,
            };
            // Unless the writes of `from`'s own service in this batch (the other half of a
            // contact's removal) failed.
            let after = Committed::Service(Origin::Account(from.clone()));
            self.send_to(shard, request, after);
            return;
        }
        if kind == SubscriptionKind::Subscribe && !extensions.is_empty() {
            self.asked_with
                .insert((owner.clone(), from.clone()), extensions);
        }
        let me = Jid::from(from.clone());
        let asking_anew = kind == SubscriptionKind::Subscribe
            && self.accounts.get(&owner).is_some_and(|hosted| {
                hosted
                    .service
                    .own_subscriptions(&me, Some(PRESENCE_NODE))
                    .is_empty()
            });
        if asking_anew && !self.admit_subscription(from) {
            return;
        }
        let Some(hosted) = self.accounts.get_mut(&owner) else {
            return;
        };
        let service = &mut hosted.service;
        let them = Jid::from(contact.clone());
        // What the contact holds on the node, by any of its JIDs: a native request may name a
        // full JID (XEP-0207 Ex. 9), and a classic answer, by bare JID, is to all of them.
        let held =
            |wanted: fn(verona_pubsub::SubscriptionState) -> bool| -> Vec<SubscriptionChange> {
                service
                    .own_subscriptions(&them, Some(PRESENCE_NODE))
                    .into_iter()
                    .filter(|held| wanted(held.state))
                    .map(|held| SubscriptionChange {
                        jid: held.jid,
                        subid: Some(held.subid),
                        subscribed: kind == SubscriptionKind::Subscribed,
                    })
                    .collect()
            };
        let answered = match kind {
            SubscriptionKind::Subscribed => {
                held(|state| state == verona_pubsub::SubscriptionState::Pending)
            }
            SubscriptionKind::Unsubscribed => held(|_| true),
            _ => Vec::new(),
        };
        // The owner approved beforehand (made the requester a member of the node).
        let mut approved_at_once = false;
        let outcome = match kind {
            // Asking again while subscribed changes nothing but is answered for the contact,
            // with its presence (RFC 6121 §3.1.3), so that a requester whose roster lost the
            // subscription hears back; while pending, it changes nothing.
            SubscriptionKind::Subscribe
                if !service
                    .own_subscriptions(&me, Some(PRESENCE_NODE))
                    .is_empty() =>
            {
                if self.presence.has_presence_subscription(&owner, from) {
                    let answer = builder("presence", ns::CLIENT)
                        .with("type", "subscribed")
                        .with("from", owner.as_str())
                        .with("to", from.as_str())
                        .build();
                    done.push(Done::reply(from.clone(), Some(answer)));
                    self.probe(&me, &owner, done);
                }
                return;
            }
            SubscriptionKind::Subscribe => {
                let mut options = SubscriptionOptions::default();
                options.custom.insert(VIEW_OPTION, "presence");
                service
                    .subscribe(&self.presence, &me, PRESENCE_NODE, &me, Some(options))
                    .map(|o| {
                        approved_at_once =
                            o.value.state == verona_pubsub::SubscriptionState::Subscribed;
                        (o.effects, o.undo)
                    })
            }
            SubscriptionKind::Unsubscribe => service
                .unsubscribe(&me, PRESENCE_NODE, &me, None)
                .map(|o| (o.effects, o.undo)),
            // Approving what waits, or ending (or refusing) what there is. With nothing
            // waiting or held, the engine's refusal leaves everything as it is (RFC 6121
            // §3.1.5, §3.2.1).
            SubscriptionKind::Subscribed | SubscriptionKind::Unsubscribed
                if !answered.is_empty() =>
            {
                service
                    .set_subscriptions(&self.presence, &me, PRESENCE_NODE, &answered)
                    .map(|o| (o.effects, o.undo))
            }
            SubscriptionKind::Subscribed | SubscriptionKind::Unsubscribed => {
                let allow = kind == SubscriptionKind::Subscribed;
                service
                    .authorize(&me, PRESENCE_NODE, &them, None, allow)
                    .map(|o| (o.effects, o.undo))
            }
        };
        match outcome {
            Ok((effects, undo)) => {
                let origin = Origin::Account(owner.clone());
                let refresh = touches_presence_subscriptions(&effects);
                // If the owner's writes fail, the sender hears of it (RFC 6121 §3 stanzas get
                // no reply otherwise).
                let asked = builder("presence", ns::CLIENT)
                    .with("from", from.as_str())
                    .with("to", contact.as_str())
                    .with("type", kind.as_str())
                    .build();
                // RFC 6121 §3.1.6: a request approved at once is answered as an approval is.
                let answer = (approved_at_once && !self.is_remote(&owner)).then(|| {
                    builder("presence", ns::CLIENT)
                        .with("type", "subscribed")
                        .with("from", owner.as_str())
                        .with("to", from.as_str())
                        .build()
                });
                done.push(Done {
                    to: Some(Jid::from(from.clone())),
                    request: Some(asked),
                    reply: answer,
                    ..Done::new(origin.clone(), effects, undo)
                });
                if refresh {
                    self.refresh_presence(&origin);
                }
                if kind == SubscriptionKind::Unsubscribe && refresh {
                    self.tell_unsubscribed(&owner, from, done);
                    if self.is_remote(&owner) {
                        // The contact's own node is on its server, which must hear of it.
                        let withdrawn = builder("presence", ns::CLIENT)
                            .with("type", "unsubscribe")
                            .with("from", from.as_str())
                            .with("to", owner.as_str())
                            .build();
                        done.push(Done::reply(owner.clone(), Some(withdrawn)));
                    }
                }
            }
            Err(e) => tracing::debug!(jid = %from, ?kind, "subscription presence ignored: {e}"),
        }
    }

    /// A session's first presence: it gets the current items of every node it is subscribed to
    /// that sends them on presence (its contacts' presence among them), the presence of its
    /// account's other available resources (RFC 6121 §4.2.2), and the authorization requests
    /// still waiting for its account (XEP-0207 §4).
    pub(super) fn came_online(&mut self, session: &FullJid, done: &mut Vec<Done>) {
        let was = self
            .router
            .session(session)
            .map(|handle| handle.set_available(true));
        if was != Some(false) {
            // Already available, or already gone.
            return;
        }
        let owner = session.bare();
        let to = Jid::from(session.clone());
        if let Some(hosted) = self.accounts.get(&owner) {
            let origin = Origin::Account(owner.clone());
            self.send_pending_forms(&origin, hosted, session, PENDING_FORMS_AT_LOGIN, done);
        }
        // Rooms are on every shard.
        for shard in 0..self.peers.len() {
            if shard == self.shard {
                self.send_room_forms(session, done);
            } else {
                let request = Request::RoomForms {
                    session: session.clone(),
                };
                self.send_to(shard, request, Committed::Always);
            }
        }
        // Remote contacts' presence is not held here: their servers are asked (RFC 6121
        // §4.2.2), and answer to the account.
        for contact in self
            .presence
            .following(&owner)
            .filter(|c| self.is_remote(c))
        {
            let probe = builder("presence", ns::CLIENT)
                .with("type", "probe")
                .with("from", owner.as_str())
                .with("to", contact.as_str())
                .build();
            done.push(Done::reply(contact.clone(), Some(probe)));
        }
        // Only resident services can have anything to send: an account that is not resident
        // has no presence items. The services the batch found the user needs beyond that
        // (`relations`: other nodes it subscribes to, contacts' `+notify` nodes) are made
        // resident for it (`load`), each by its own shard.
        let mut owners: BTreeMap<usize, (Vec<BareJid>, Vec<BareJid>)> = BTreeMap::new();
        owners.entry(self.domain_shard).or_default();
        let following = self.presence.following(&owner).cloned();
        let load = self.relations.get(&owner).into_iter().flatten().cloned();
        for (account, must_load) in std::iter::once((owner.clone(), false))
            .chain(following.map(|o| (o, false)))
            .chain(load.map(|o| (o, true)))
        {
            let entry = owners.entry(self.shard_of(account.as_str())).or_default();
            if must_load {
                entry.1.push(account.clone());
            }
            entry.0.push(account);
        }
        for (shard, (mut accounts, load)) in owners {
            accounts.sort();
            accounts.dedup();
            let domain = shard == self.domain_shard;
            if shard == self.shard {
                self.send_current(session, &accounts, domain, done);
            } else {
                let request = Request::CameOnline {
                    session: session.clone(),
                    owners: accounts,
                    load,
                    domain,
                };
                self.send_to(shard, request, Committed::Always);
            }
        }
        let own = self.presence_items(&owner);
        let config = (self.accounts.get(&owner))
            .and_then(|hosted| hosted.service.node_config(PRESENCE_NODE).cloned());
        if let Some(config) = config.filter(|_| !own.is_empty()) {
            let node = PRESENCE_NODE.to_owned();
            let last = verona_pubsub::LastItems::of(to, node, &config, Default::default(), own);
            let origin = Origin::Account(owner);
            done.push(Done::new_effects(origin, vec![Effect::SendLastItems(last)]));
        }
    }

    /// What the services of `owners` held in this shard (and with `domain`,
    /// `pubsub.<domain>`) send a session coming online: their last items on presence
    /// (XEP-0060 `on_sub_and_presence`), the last items of the nodes its capabilities ask
    /// `+notify` for (XEP-0163 §4.3), and `pubsub.<domain>`'s waiting authorization forms.
    pub(super) fn send_current(
        &self,
        session: &FullJid,
        owners: &[BareJid],
        domain: bool,
        done: &mut Vec<Done>,
    ) {
        let domain = self.domain.as_ref().filter(|_| domain);
        if let Some(hosted) = domain {
            self.send_pending_forms(
                &Origin::Domain,
                hosted,
                session,
                PENDING_FORMS_AT_LOGIN,
                done,
            );
        }
        let services = domain
            .map(|hosted| (Origin::Domain, hosted))
            .into_iter()
            .chain(owners.iter().filter_map(|account| {
                let hosted = self.accounts.get(account)?;
                Some((Origin::Account(account.clone()), hosted))
            }));
        for (origin, hosted) in services {
            let effects: Vec<Effect> = hosted
                .service
                .on_presence(session)
                .into_iter()
                // A message node's messages reach an absent subscriber once, kept for it
                // (DESIGN §2): not again as last items at every login.
                .filter(|last| {
                    !(last.items.first())
                        .and_then(|item| item.payload.as_deref())
                        .is_some_and(verona_pubsub_xmpp::is_message)
                })
                .map(Effect::SendLastItems)
                .collect();
            if !effects.is_empty() {
                done.push(Done::new_effects(origin, effects));
            }
        }
        done.extend(self.last_notify_items(session, owners, false));
    }

    /// The entry requests waiting for the session's account in this shard's rooms (an owner
    /// away when they were made is told of them when it is back, XEP-0060 §8.6): a share of
    /// one service's [`PENDING_FORMS_AT_LOGIN`] for each shard; the rest are a get-pending
    /// away (§8.7).
    pub(super) fn send_room_forms(&self, session: &FullJid, done: &[Done]) {
        let mut left = PENDING_FORMS_AT_LOGIN.div_ceil(self.peers.len().max(1));
        let owner = session.bare();
        // Every login asks every resident room: most have nothing for it, found by one lookup
        // of the account's affiliations before anything of the batch is looked through.
        let waiting = (self.rooms.iter())
            .filter(|(_, hosted)| !hosted.service.pending_for_owner(&owner).is_empty());
        for (node, hosted) in waiting {
            if left == 0 {
                break;
            }
            let origin = Origin::Room(node.clone());
            left -= self.send_pending_forms(&origin, hosted, session, left, done);
        }
    }

    /// The authorization requests waiting for the session's account in one service
    /// (XEP-0207 §4), sent again at each login: the first `limit`; the rest are a XEP-0060
    /// §8.7 get-pending away, so that requests cannot flood a login. A request made earlier
    /// in this batch (`done`) is not among them: it reaches the session, available by then,
    /// as the batch is delivered, and would otherwise come twice. How many were sent.
    fn send_pending_forms(
        &self,
        origin: &Origin,
        hosted: &Hosted,
        session: &FullJid,
        limit: usize,
        done: &[Done],
    ) -> usize {
        // Looked up once: a batch can hold many effects, an owner many waiting requests.
        let announced: HashSet<(&str, &str)> = done
            .iter()
            .filter(|d| &d.origin == origin)
            .flat_map(|d| &d.effects)
            .filter_map(|effect| match effect {
                Effect::AuthorizationRequest(made) => {
                    Some((made.node.as_str(), made.subid.as_str()))
                }
                _ => None,
            })
            .collect();
        let owner = session.bare();
        let to = Jid::from(session.clone());
        let context = ServiceContext {
            jid: &hosted.jid,
            kind: hosted.kind,
            resolver: &self.presence,
        };
        let pending = hosted.service.pending_for_owner(&owner);
        let waiting = pending.into_iter().filter(|request| {
            !announced.contains(&(request.node.as_str(), request.subid.as_str()))
        });
        let mut sent = 0;
        for request in waiting.take(limit) {
            sent += 1;
            let out = verona_pubsub_xmpp::authorization_for(&context, &request, &to);
            let service = hosted.jid.bare();
            let subscriber = request.subscriber.bare();
            let effect = Effect::AuthorizationRequest(request);
            let classic = (hosted.kind == ServiceKind::Pep)
                .then(|| classic_presence(&service, &effect))
                .flatten()
                .map(|stanzas| ClassicStanzas::new(&stanzas));
            // Only a presence node's request has a classic rendering: any other node's form
            // reaches every session as it is, classic or not, as when the request was made.
            let Some(classic) = classic else {
                self.router.deliver(&out.to, out.stanza);
                continue;
            };
            self.router.deliver_views(
                &out.to,
                |_| out.stanza.clone(),
                self.made_classically(&service, &subscriber),
                Reach::Connected,
                || Some(classic.to(&out.to)),
            );
        }
        sent
    }

    /// A resource's presence item changed: the change waits for the commit like any other,
    /// and is reflected to the account's own resources.
    pub(super) fn presence_changed<T>(
        &self,
        from: &FullJid,
        outcome: verona_pubsub::Outcome<T>,
        done: &mut Vec<Done>,
    ) {
        let origin = Origin::Account(from.bare());
        done.push(Done::new(origin, outcome.effects, outcome.undo));
        self.reflect_presence(from, done);
    }

    /// RFC 6121 §4.2.2, §4.4.2, §4.5.2: a change of an account's presence also goes to the
    /// account's own available resources, the one that changed included while it stays
    /// available; one that went unavailable is no longer among them (RFC 3921 §5.1.5: "the
    /// user's other available resources").
    pub(super) fn reflect_presence(&self, from: &FullJid, done: &mut Vec<Done>) {
        let owner = from.bare();
        let available = self.router.available_sessions(&owner);
        let recipients: Vec<Recipient> = available.iter().map(recipient).collect();
        if recipients.is_empty() {
            return;
        }
        let resource = from.resource().as_str();
        let items: Vec<verona_pubsub::Item> = self
            .presence_items(&owner)
            .into_iter()
            .filter(|item| item.id == resource)
            .collect();
        let event = if items.is_empty() {
            Event::Retract {
                ids: vec![resource.to_owned()],
            }
        } else {
            Event::Items { items }
        };
        let notification = verona_pubsub::Notification {
            node: PRESENCE_NODE.to_owned(),
            event,
            recipients: recipients.into(),
            notification_type: verona_pubsub::NotificationType::Headline,
            presence_based_delivery: false,
            itemreply: ItemReply::Publisher,
        };
        let effects = vec![Effect::Notify(notification)];
        done.push(Done::new_effects(Origin::Account(owner), effects));
    }

    /// RFC 6121 §3.3.2: the owner hears that the contact left.
    pub(super) fn tell_unsubscribed(
        &self,
        owner: &BareJid,
        contact: &BareJid,
        done: &mut Vec<Done>,
    ) {
        for session in self.router.available_sessions(owner) {
            let notice = builder("presence", ns::CLIENT)
                .with("type", "unsubscribe")
                .with("from", contact.as_str())
                .with("to", session.as_str())
                .build();
            done.push(Done::reply(session, Some(notice)));
        }
    }

    /// RFC 6121 §3.2.2, §3.3.2, XEP-0191 §3.3: a contact whose subscription to an owner's
    /// presence ended (unsubscribed, unsubscribe, roster removal, block) sees each of the
    /// owner's available resources go offline: a retraction of the owner's current items, for
    /// the contact alone, in whichever rendering its sessions use.
    pub(super) fn subscriptions_ended(&mut self, done: &mut Vec<Done>) {
        for (owner, contact) in self.presence.take_ended() {
            let ids: Vec<String> = self
                .presence_items(&owner)
                .into_iter()
                .map(|item| item.id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            let notification = verona_pubsub::Notification {
                node: PRESENCE_NODE.to_owned(),
                event: Event::Retract { ids },
                recipients: vec![recipient_account(&contact)].into(),
                notification_type: verona_pubsub::NotificationType::Headline,
                presence_based_delivery: false,
                itemreply: ItemReply::Publisher,
            };
            let effects = vec![Effect::Notify(notification)];
            done.push(Done::new_effects(Origin::Account(owner), effects));
        }
    }

    /// disco#info about an account's bare JID, answered by the server on the account's behalf
    /// (RFC 6121, XEP-0030): its identity and its PEP service's, to the account itself (with
    /// what the server does for it) and to those who follow its presence; to anyone else the
    /// account looks as absent as a missing one.
    pub(super) fn contact_info(
        &self,
        owner: &BareJid,
        from: &FullJid,
        stanza: &Element,
    ) -> Option<Element> {
        let hosted = self.accounts.get(owner);
        let own = *owner == from.bare();
        let follower = own || self.presence.has_presence_subscription(owner, &from.bare());
        let Some(hosted) = hosted.filter(|_| follower) else {
            return error_reply(stanza, StanzaError::ServiceUnavailable, None);
        };
        let context = ServiceContext {
            jid: &hosted.jid,
            kind: hosted.kind,
            resolver: &self.presence,
        };
        let mut info = verona_pubsub_xmpp::service_info(&context, hosted.service.config());
        info.identities.insert(
            0,
            xmpp_parsers::disco::Identity {
                category: "account".to_owned(),
                type_: "registered".to_owned(),
                lang: None,
                name: None,
            },
        );
        if own {
            // What the server does for the account itself: its archive (XEP-0313 §7) and the
            // ids its messages carry, pings, its two kinds of bookmarks kept as one.
            info.features.extend(
                [
                    eventing::archive::NS,
                    eventing::archive::EXTENDED,
                    eventing::archive::SID,
                    ns::PING,
                    eventing::bookmarks::COMPAT,
                ]
                .map(String::from),
            );
        }
        Some(crate::xml::iq_result(stanza, Some(info.into())))
    }

    /// The current items of an account's presence node: its available resources' presence.
    pub(super) fn presence_items(&self, account: &BareJid) -> Vec<verona_pubsub::Item> {
        self.accounts
            .get(account)
            .and_then(|hosted| {
                let owner = Jid::from(account.clone());
                let query = verona_pubsub::ItemQuery::All;
                let page = hosted
                    .service
                    .items(&self.presence, &owner, PRESENCE_NODE, &query);
                page.ok()
            })
            .map(|page| page.items)
            .unwrap_or_default()
    }

    /// Of `contacts`, those that follow the presence of `session`'s account, if the session
    /// has broadcast presence: they get its unavailable presence with the broadcast.
    pub(super) fn reached(&self, session: &FullJid, mut contacts: Vec<BareJid>) -> Vec<BareJid> {
        let account = session.bare();
        let resource = session.resource().as_str();
        if !self
            .presence_items(&account)
            .iter()
            .any(|item| item.id == resource)
        {
            return Vec::new();
        }
        contacts.retain(|contact| self.presence.has_presence_subscription(&account, contact));
        contacts
    }

    /// How `subscriber`'s subscription to `owner`'s presence node was made, if it has one.
    pub(super) fn made_classically(&self, owner: &BareJid, subscriber: &BareJid) -> Option<bool> {
        self.presence.subscribed_classically(owner, subscriber)
    }

    /// [`Self::made_classically`] for a recipient's address, full or bare.
    pub(super) fn made_classically_for(&self, owner: &BareJid, to: &Jid) -> Option<bool> {
        match to.try_as_full() {
            Ok(full) => self.made_classically(owner, &full.bare()),
            Err(bare) => self.made_classically(owner, bare),
        }
    }

    /// RFC 6121 §4.3: a probe is answered from the contact's presence node, to a subscriber
    /// only; the user's own account may be probed by its resources.
    pub(super) fn probe(&self, from: &Jid, contact: &BareJid, done: &mut Vec<Done>) {
        let me = from.bare();
        let answer = |stanza: Element| {
            let mut stanza = stanza;
            set_attr(&mut stanza, "to", from.as_str());
            Done::reply(from.clone(), Some(stanza))
        };
        if *contact != me && !self.presence.has_presence_subscription(contact, &me) {
            let refused = builder("presence", ns::CLIENT)
                .with("type", "unsubscribed")
                .with("from", contact.as_str())
                .build();
            done.push(answer(refused));
            return;
        }
        let presences: Vec<Element> = self
            .presence_items(contact)
            .iter()
            .filter(|item| *contact != me || from.resource().is_none_or(|r| item.id != r.as_str()))
            .filter_map(|item| item.payload.as_deref()?.parse().ok())
            .collect();
        if presences.is_empty() && *contact != me {
            let gone = builder("presence", ns::CLIENT)
                .with("type", "unavailable")
                .with("from", contact.as_str())
                .build();
            done.push(answer(gone));
        }
        done.extend(presences.into_iter().map(answer));
    }

    /// The resource went offline: its presence item is retracted (subscribers see it go).
    /// A resource goes offline (`status`: what its unavailable presence said): its presence
    /// item is retracted, and when it was the account's last, the time is kept for XEP-0012.
    pub(super) fn retract_presence(
        &mut self,
        from: &FullJid,
        status: Option<String>,
        done: &mut Vec<Done>,
    ) {
        if let Some(handle) = self.router.session(from) {
            handle.set_available(false);
        }
        let account = from.bare();
        let Some(hosted) = self.accounts.get_mut(&account) else {
            return;
        };
        let resource = from.resource().as_str();
        let current = hosted
            .service
            .items(
                &self.presence,
                &Jid::from(account.clone()),
                PRESENCE_NODE,
                &verona_pubsub::ItemQuery::Ids(vec![resource.to_owned()]),
            )
            .is_ok_and(|page| !page.items.is_empty());
        if !current {
            return;
        }
        match hosted
            .service
            .retract(&Jid::from(account.clone()), PRESENCE_NODE, resource, true)
        {
            Ok(outcome) => {
                self.presence_changed(from, outcome, done);
                if self.presence_items(&account).is_empty() {
                    self.last_seen
                        .insert(account, (std::time::SystemTime::now(), status));
                }
            }
            Err(e) => tracing::warn!(jid = %from, "retracting presence: {e}"),
        }
    }

    /// XEP-0012 §4: to the account itself and those who follow its presence, 0 seconds while
    /// it is online, else the seconds since it last went offline (with the status it left
    /// with), as far as this server has seen since it started; to anyone else `forbidden`.
    pub(super) fn last_activity(&self, from: &FullJid, account: &BareJid, iq: &Element) -> Element {
        let asker = from.bare();
        let allowed = asker == *account || self.presence.has_presence_subscription(account, &asker);
        if !self.accounts.contains_key(account) || !allowed {
            let error = if allowed {
                StanzaError::ServiceUnavailable
            } else {
                StanzaError::Forbidden
            };
            return error_reply(iq, error, None).unwrap_or_else(|| iq_result(iq, None));
        }
        let online = !self.presence_items(account).is_empty();
        let (seconds, status) = match self.last_seen.get(account) {
            _ if online => (0, None),
            Some((at, status)) => {
                let ago = at.elapsed().unwrap_or_default().as_secs();
                (ago, status.as_deref())
            }
            None => {
                let why = Some("not seen offline since the server started");
                return error_reply(iq, StanzaError::ItemNotFound, why)
                    .unwrap_or_else(|| iq_result(iq, None));
            }
        };
        let mut query = builder("query", LAST).with("seconds", seconds.to_string());
        if let Some(status) = status {
            query = query.append(status);
        }
        iq_result(iq, Some(query.build()))
    }
}
