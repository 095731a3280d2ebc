//! Delivery of a committed batch: replies, notifications in each session's rendering, and
//! the recipients XEP-0163 `+notify` adds.

use super::*;
use crate::jids::Bare;
use crate::router::SessionHandle;

impl ServicesTask {
    /// Replies and notifications, once the batch is durable.
    pub(super) fn deliver(&self, done: Vec<Done>) {
        for d in done {
            // What a publish keeps for absent subscribers is paid before its publisher hears
            // of it, so that its next publish finds the bucket charged.
            if matches!(d.origin, Origin::Domain)
                && let Some(hosted) = self.hosted(&d.origin)
            {
                let context = ServiceContext {
                    jid: &hosted.jid,
                    kind: hosted.kind,
                    resolver: &self.presence,
                };
                for effect in &d.effects {
                    self.keep_for_the_absent(&context, effect);
                }
            }
            if let (Some(to), Some(reply)) = (&d.to, &d.reply) {
                let bytes = Bytes::from(verona_stream::element_bytes(reply));
                // The answer to a request goes to whoever made it.
                if d.request.is_some() {
                    self.charge_answer(to, bytes.len());
                }
                self.router.deliver(to, bytes);
            }
            if let (Some(to), Some(stanza)) = (&d.to, d.sent) {
                self.router.deliver(to, stanza);
            }
            if d.effects.is_empty() {
                if let Some(passing) = &d.passing {
                    self.deliver_passing(passing);
                }
                continue;
            }
            let Some(hosted) = self.hosted(&d.origin) else {
                continue;
            };
            if matches!(d.origin, Origin::Conversation(_)) {
                for effect in &d.effects {
                    self.deliver_conversation(hosted, effect, d.passing.as_deref());
                }
                continue;
            }
            if matches!(d.origin, Origin::Rooms | Origin::Room(_)) {
                for effect in &d.effects {
                    self.deliver_room(hosted, effect);
                }
                continue;
            }
            let context = ServiceContext {
                jid: &hosted.jid,
                kind: hosted.kind,
                resolver: &self.presence,
            };
            for effect in &d.effects {
                let reachable = self.reachable_only(effect);
                let effect = reachable.as_ref().unwrap_or(effect);
                let permitted = self.permitted_only(hosted, effect);
                let effect = permitted.as_ref().unwrap_or(effect);
                let shown = self.shown_only(effect);
                let effect = shown.as_ref().unwrap_or(effect);
                let implicit = self.implicit(&d.origin, hosted, effect);
                let classic = match &d.origin {
                    Origin::Account(owner) => classic_presence(owner, effect).map(|mut stanzas| {
                        self.add_said(owner, effect, &mut stanzas);
                        ClassicStanzas::new(&stanzas)
                    }),
                    Origin::Domain | Origin::Rooms | Origin::Room(_) | Origin::Conversation(_) => {
                        None
                    }
                };
                // XEP-0191: nothing from an account reaches one that blocked it: on a PEP
                // service the owner, on `pubsub.<domain>` whoever published the items or asks
                // to subscribe (issue #11 M3).
                let authors = match &d.origin {
                    Origin::Account(owner) => vec![owner.clone()],
                    Origin::Domain | Origin::Rooms | Origin::Room(_) | Origin::Conversation(_) => {
                        authors_of(effect)
                    }
                };
                if let (Effect::Notify(notification), None, Some(classic)) =
                    (effect, &implicit, &classic)
                {
                    self.deliver_presence(&context, hosted, notification, classic, &authors);
                    continue;
                }
                let mut outgoing =
                    verona_pubsub_xmpp::render(&context, std::slice::from_ref(effect));
                if let Some(implicit) = &implicit {
                    let more = verona_pubsub_xmpp::render(&context, std::slice::from_ref(implicit));
                    outgoing.extend(more);
                }
                self.router
                    .drop_blocked(&mut outgoing, |out| &out.to, &authors);
                // The last items a subscribe brings its asker are part of the answer: a
                // node's item can be 256 KiB, subscribing and unsubscribing 200 bytes each.
                if let (Effect::SendLastItems(last), Some(to), Some(_)) =
                    (effect, &d.to, &d.request)
                    && last.to.bare() == to.bare()
                {
                    let bytes = outgoing.iter().map(|out| out.stanza.len()).sum();
                    self.charge_answer(to, bytes);
                }
                let Some(classic) = classic else {
                    // A notification is a message (RFC 6121 §8.5.2.1.1). A form for the
                    // owners goes to every session, as a presence node's does to a native
                    // one (DESIGN §3); the last items a subscription brings are part of the
                    // answer to it.
                    let reach = match effect {
                        Effect::Notify(_) => Reach::Messages,
                        _ => Reach::Connected,
                    };
                    let outgoing = outgoing.into_iter().map(|out| (out.to, out.stanza));
                    self.router.deliver_all(outgoing, reach);
                    continue;
                };
                // Last items come as one message per item, all to one recipient; the classic
                // stanzas for all of them go with the first.
                let once = matches!(effect, Effect::SendLastItems(_));
                // Presence goes to the available resources of a subscribed account only
                // (XEP-0207 Ex. 4, RFC 6121 §4.2.2), and a request to subscribe to its classic
                // ones (RFC 6121 §3.1.3): a classic session that has not yet sent its presence
                // gets the requests waiting when it does (`came_online`), and would otherwise
                // get one twice.
                let reach = match effect {
                    Effect::AuthorizationRequest(_) => Reach::AvailableIfClassic,
                    Effect::Notify(n)
                        if matches!(n.event, Event::Items { .. } | Event::Retract { .. }) =>
                    {
                        Reach::Available
                    }
                    _ => Reach::Connected,
                };
                let owner = hosted.jid.bare();
                for (n, out) in outgoing.into_iter().enumerate() {
                    let stanzas = (!once || n == 0).then_some(&classic);
                    let made = match effect {
                        Effect::AuthorizationRequest(request) => {
                            self.made_classically(&owner, &request.subscriber.bare())
                        }
                        _ => self.made_classically_for(&owner, &out.to),
                    };
                    self.router.deliver_views(
                        &out.to,
                        |_| out.stanza.clone(),
                        made,
                        reach,
                        || stanzas.map(|stanzas| stanzas.to(&out.to)),
                    );
                }
            }
        }
    }

    /// A classic request to subscribe carries what the asker's `subscribe` did besides its
    /// type (RFC 6121 §3.1.3), and an unavailable presence what the resource's did (§4.5.2),
    /// when either was sent in this batch.
    fn add_said(&self, owner: &BareJid, effect: &Effect, stanzas: &mut [Element]) {
        let request = match effect {
            Effect::AuthorizationRequest(request) => request,
            // What a resource's unavailable presence said goes with the one made for it.
            Effect::Notify(notification)
                if matches!(notification.event, Event::Retract { .. })
                    && !self.leaving.is_empty() =>
            {
                for stanza in stanzas {
                    let from = stanza.attr("from").and_then(|from| FullJid::new(from).ok());
                    if let Some(farewell) = from.and_then(|from| self.leaving.get(&from)) {
                        farewell.apply(stanza);
                    }
                }
                return;
            }
            _ => return,
        };
        let asked = (owner.clone(), request.subscriber.bare());
        if let (Some(extensions), Some(stanza)) = (self.asked_with.get(&asked), stanzas.first_mut())
        {
            for extension in extensions {
                stanza.append_child(extension.clone());
            }
        }
    }

    /// What `done` sends `asker` counts against its account's read rate, as answers to its
    /// requests.
    pub(super) fn answered(&self, asker: &Jid, done: &[Done]) {
        let bytes = done
            .iter()
            .filter(|d| d.to.as_ref() == Some(asker))
            .map(|d| {
                d.reply.as_ref().map_or(0, budget::weight)
                    + d.sent.as_ref().map_or(0, verona_stream::Wire::len)
            })
            .sum();
        self.charge_answer(asker, bytes);
    }

    /// `bytes` answered a request of `asker`: a share of them counts against its account's
    /// read rate, or, for another server's user, against the read rate of that server's
    /// streams, so that its users' short requests for long answers are bounded too.
    fn charge_answer(&self, asker: &Jid, bytes: usize) {
        let bare = asker.bare();
        if self.is_remote(&bare) {
            let server = BareJid::from_parts(None, bare.domain());
            self.domains.answered(&server, bytes);
        } else {
            self.budgets.answered(&bare, bytes);
        }
    }

    /// A change of an account's `presence` node (or another node its contacts see as
    /// presence) to each recipient in the rendering its sessions take: the event is rendered
    /// for a recipient only if one of its sessions takes events, so a classic contact costs
    /// no message it does not get.
    fn deliver_presence(
        &self,
        context: &ServiceContext,
        hosted: &Hosted,
        notification: &verona_pubsub::Notification,
        classic: &ClassicStanzas,
        authors: &[BareJid],
    ) {
        let mut recipients: Vec<&Recipient> = notification.recipients.iter().collect();
        self.router
            .drop_blocked(&mut recipients, |recipient| &recipient.jid, authors);
        // Presence goes to the available resources of a subscribed account only (XEP-0207
        // Ex. 4, RFC 6121 §4.2.2).
        let reach = if matches!(
            notification.event,
            Event::Items { .. } | Event::Retract { .. }
        ) {
            Reach::Available
        } else {
            Reach::Connected
        };
        let mut events = verona_pubsub_xmpp::Notifications::new(context, notification);
        let owner = hosted.jid.bare();
        for recipient in recipients {
            let made = self.made_classically_for(&owner, &recipient.jid);
            self.router.deliver_views(
                &recipient.jid,
                |resource| events.stanza_at(recipient, resource),
                made,
                reach,
                || Some(classic.to(&recipient.jid)),
            );
        }
    }

    /// DESIGN §2: a notification of a message node (seed Ex. 18–20) for a subscriber with no
    /// session to take it (by bare JID: none available with a non-negative priority) is kept
    /// for it (XEP-0160), as a message to it would be, unless it blocks the publisher
    /// (XEP-0191). Each copy kept is a copy the server writes in the publisher's name: it is
    /// paid from the publisher's `[limits] broadcast_bytes_per_sec`, as the publish itself
    /// was, and one the bucket cannot pay stays in the node's items only, so one publish to
    /// many absent subscribers is not as many stored copies for the price of one (issue #11).
    fn keep_for_the_absent(&self, context: &ServiceContext, effect: &Effect) {
        let Effect::Notify(notification) = effect else {
            return;
        };
        if !verona_pubsub_xmpp::carries_message(notification) {
            return;
        }
        let authors = authors_of(effect);
        let Some(publisher) = authors.first() else {
            return;
        };
        let recipients = notification.recipients.iter().map(|r| &r.jid);
        let absent = self.router.unreachable(recipients, Reach::Messages);
        if absent.is_empty() {
            return;
        }
        let mut recipients: Vec<Recipient> = absent
            .iter()
            .map(|&at| notification.recipients[at].clone())
            .collect();
        self.router
            .drop_blocked(&mut recipients, |recipient| &recipient.jid, &authors);
        if recipients.is_empty() {
            return;
        }
        let kept = Effect::Notify(verona_pubsub::Notification {
            recipients: recipients.into(),
            ..notification.clone()
        });
        let now = std::time::Instant::now();
        let mut unpaid = 0;
        for out in verona_pubsub_xmpp::render(context, std::slice::from_ref(&kept)) {
            if !self.broadcasts.take_many(publisher, out.stanza.len(), now) {
                unpaid += 1;
                continue;
            }
            let Ok(stanza) = String::from_utf8(out.stanza.to_vec()) else {
                continue;
            };
            let account = out.to.bare();
            let shard = self.shard_of(account.as_str());
            let request = Request::Offline {
                account,
                stanzas: vec![stanza],
                origin: Some(publisher.clone()),
                at: std::time::SystemTime::now(),
            };
            self.send_peer(shard, request);
        }
        if unpaid > 0 {
            tracing::info!(%publisher, unpaid, "notifications not kept: the publisher's budget is spent");
        }
    }

    /// A notification without its recipients that have no session (`None` when all have
    /// one): nothing is rendered for them, so a presence change costs in proportion to the
    /// contacts online. Another server's users count as reachable: their server decides.
    pub(super) fn reachable_only(&self, effect: &Effect) -> Option<Effect> {
        let Effect::Notify(notification) = effect else {
            return None;
        };
        let recipients = notification.recipients.iter().map(|r| &r.jid);
        let unreachable = self.router.unreachable(recipients, Reach::Connected);
        // The usual fan-out reaches everyone: no copy of the recipients then.
        if unreachable.is_empty() {
            return None;
        }
        let mut gone = unreachable.iter().peekable();
        let recipients: Vec<Recipient> = notification
            .recipients
            .iter()
            .enumerate()
            .filter(|(at, _)| gone.next_if_eq(&at).is_none())
            .map(|(_, recipient)| recipient.clone())
            .collect();
        Some(Effect::Notify(verona_pubsub::Notification {
            recipients: recipients.into(),
            ..notification.clone()
        }))
    }

    /// XEP-0060 `pubsub#show-values`: a subscriber that asked for notifications in some
    /// presence states only gets them at its sessions whose last available presence shows one
    /// of them; one subscribed by bare JID whose sessions differ is sent to the matching ones by
    /// full JID (`None` when nobody asked). Other servers' users are left as they are: their
    /// show is not known here.
    pub(super) fn shown_only(&self, effect: &Effect) -> Option<Effect> {
        let Effect::Notify(notification) = effect else {
            return None;
        };
        if notification
            .recipients
            .iter()
            .all(|r| r.show_values.is_none())
        {
            return None;
        }
        let mut recipients = Vec::with_capacity(notification.recipients.len());
        for recipient in notification.recipients.iter() {
            let Some(shows) = recipient.show_values else {
                recipients.push(recipient.clone());
                continue;
            };
            let sessions = self.router.resources_of(&recipient.jid.bare());
            if sessions.is_empty() {
                recipients.push(recipient.clone());
                continue;
            }
            let available: Vec<&(FullJid, SessionHandle)> = sessions
                .iter()
                .filter(|(_, handle)| handle.is_available())
                .collect();
            let shown = |handle: &SessionHandle| shows.contains(handle.show());
            match recipient.jid.try_as_full() {
                Ok(full) => {
                    if available
                        .iter()
                        .any(|(jid, handle)| jid == full && shown(handle))
                    {
                        recipients.push(recipient.clone());
                    }
                }
                Err(_) if available.iter().all(|(_, handle)| shown(handle)) => {
                    if !available.is_empty() {
                        recipients.push(recipient.clone());
                    }
                }
                Err(_) => {
                    recipients.extend(available.iter().filter(|(_, handle)| shown(handle)).map(
                        |(jid, _)| Recipient {
                            jid: Jid::from(jid.clone()),
                            ..recipient.clone()
                        },
                    ))
                }
            }
        }
        Some(Effect::Notify(verona_pubsub::Notification {
            recipients: recipients.into(),
            ..notification.clone()
        }))
    }

    /// Defence in depth for XEP-0163 §8.1 (issue #11 H2): a notification of a PEP node with the
    /// `presence` or `roster` access model goes only to the recipients that model allows now,
    /// whatever subscriptions remain (`None` when all may read it).
    pub(super) fn permitted_only(&self, hosted: &Hosted, effect: &Effect) -> Option<Effect> {
        let Effect::Notify(notification) = effect else {
            return None;
        };
        if hosted.kind != ServiceKind::Pep {
            return None;
        }
        let model = hosted.service.node_config(&notification.node)?.access_model;
        if !matches!(model, AccessModel::Presence | AccessModel::Roster) {
            return None;
        }
        let node = notification.node.as_str();
        let allowed: Vec<Recipient> = notification
            .recipients
            .iter()
            .filter(|r| {
                let read = hosted
                    .service
                    .may(&self.presence, &r.jid, Action::RetrieveItems, node);
                read.is_ok()
            })
            .cloned()
            .collect();
        if allowed.len() == notification.recipients.len() {
            return None;
        }
        Some(Effect::Notify(verona_pubsub::Notification {
            recipients: allowed.into(),
            ..notification.clone()
        }))
    }

    /// Who gets an event of a PEP node without subscribing to it: every available resource of
    /// the account and of its presence subscribers whose capabilities ask for `NODE+notify`
    /// and that may read the node (XEP-0163 §4.3).
    pub(super) fn implicit(
        &self,
        origin: &Origin,
        hosted: &Hosted,
        effect: &Effect,
    ) -> Option<Effect> {
        let (Origin::Account(owner), Effect::Notify(notification)) = (origin, effect) else {
            return None;
        };
        if !matches!(
            notification.event,
            Event::Items { .. } | Event::Retract { .. } | Event::Purge
        ) || [PRESENCE_NODE, ROSTER_NODE].contains(&notification.node.as_str())
        {
            return None;
        }
        let explicit: HashSet<&Jid> = notification.recipients.iter().map(|r| &r.jid).collect();
        let notify = format!("{}+notify", notification.node);
        let recipients: Vec<Recipient> = std::iter::once(owner)
            .chain(self.presence.followers(owner))
            .filter(|contact| !explicit.contains(&Jid::from((*contact).clone())))
            .flat_map(|contact| {
                let mut sessions = self.router.available_sessions(contact);
                // Another server's user: the resources whose presence reached us.
                sessions.extend(self.router.remote_resources(contact));
                sessions
            })
            .filter(|session| !explicit.contains(&Jid::from(session.clone())))
            .filter(|session| self.wants_notify(session, &notify))
            .filter(|session| {
                let actor = Jid::from(session.clone());
                let read = verona_pubsub::Action::RetrieveItems;
                let node = &notification.node;
                hosted
                    .service
                    .may(&self.presence, &actor, read, node)
                    .is_ok()
            })
            .map(|session| recipient(&session))
            .collect();
        (!recipients.is_empty()).then(|| {
            Effect::Notify(verona_pubsub::Notification {
                recipients: recipients.into(),
                ..notification.clone()
            })
        })
    }

    /// The `+notify` resources that would hear of `stanza`, if it deletes one of `owner`'s PEP
    /// nodes that notifies deletions: asked before the deletion, while the node can still
    /// say who may read it.
    pub(super) fn notified_of_delete(
        &self,
        owner: &BareJid,
        origin: &Origin,
        stanza: &Element,
    ) -> Option<verona_pubsub::Notification> {
        let delete = stanza
            .get_child("pubsub", ns::PUBSUB_OWNER)?
            .get_child("delete", ns::PUBSUB_OWNER)?;
        let node = delete.attr("node")?;
        let hosted = self.accounts.get(owner)?;
        let config = hosted.service.node_config(node)?;
        if !(config.notify_delete && config.deliver_notifications) {
            return None;
        }
        let asked = unaddressed(node, Event::Purge, config);
        let Some(Effect::Notify(found)) = self.implicit(origin, hosted, &Effect::Notify(asked))
        else {
            return None;
        };
        let redirect = delete
            .get_child("redirect", ns::PUBSUB_OWNER)
            .and_then(|r| r.attr("uri"))
            .map(str::to_owned);
        Some(verona_pubsub::Notification {
            event: Event::Delete { redirect },
            ..found
        })
    }

    /// Whether a session's verified capabilities include `feature`.
    pub(super) fn wants_notify(&self, session: &FullJid, feature: &str) -> bool {
        self.router
            .session(session)
            .and_then(|handle| handle.features())
            .or_else(|| self.router.remote_features(session))
            .is_some_and(|features| features.contains(feature))
    }

    /// XEP-0163 §4.3: a newly available session that asks for `NODE+notify` gets the last
    /// item of every such node of its own account and of the accounts it follows.
    pub(super) fn last_notify_items(
        &self,
        session: &FullJid,
        owners: &[BareJid],
        late: bool,
    ) -> Vec<Done> {
        let handle = self.router.session(session);
        // Features that came after the presence bring their items themselves (`late`): the
        // presence's own turn may come after them, and would send the items again.
        if !late && handle.as_ref().is_some_and(SessionHandle::features_late) {
            return Vec::new();
        }
        let features = handle.and_then(|h| h.features());
        let Some(features) = features.or_else(|| self.router.remote_features(session)) else {
            return Vec::new();
        };
        let actor = Jid::from(session.clone());
        let mut done = Vec::new();
        for owner in owners {
            let Some(hosted) = self.accounts.get(owner) else {
                continue;
            };
            // A node the session also subscribed to brings its last item on presence that way
            // (`on_sub_and_presence`): once is enough (XEP-0163 §4.3).
            let subscribed: Vec<String> = (hosted.service.on_presence(session).into_iter())
                .map(|last| last.node)
                .collect();
            let effects: Vec<Effect> = hosted
                .service
                .node_ids()
                .filter(|node| ![PRESENCE_NODE, ROSTER_NODE].contains(&node.as_str()))
                .filter(|node| features.contains(&format!("{node}+notify")))
                .filter(|node| !subscribed.contains(node))
                .filter_map(|node| {
                    // A node that sends no last item (XEP-0402's and XEP-0490's ask for
                    // `never`) sends none to `+notify` sessions either (XEP-0163 §4.3.4).
                    let config = hosted.service.node_config(node)?;
                    if config.send_last_published_item
                        == verona_pubsub::SendLastPublishedItem::Never
                    {
                        return None;
                    }
                    let query = verona_pubsub::ItemQuery::Latest(1);
                    let page = hosted
                        .service
                        .items(&self.presence, &actor, node, &query)
                        .ok()?;
                    (!page.items.is_empty()).then(|| {
                        Effect::SendLastItems(verona_pubsub::LastItems::of(
                            actor.clone(),
                            node.clone(),
                            config,
                            Default::default(),
                            page.items,
                        ))
                    })
                })
                .collect();
            if !effects.is_empty() {
                done.push(Done::new_effects(Origin::Account(owner.clone()), effects));
            }
        }
        done
    }
}

/// The accounts behind an event of `pubsub.<domain>`: the publishers of its items, or the
/// entity asking to subscribe.
fn authors_of(effect: &Effect) -> Vec<BareJid> {
    match effect {
        Effect::Notify(notification) => match &notification.event {
            Event::Items { items } => items.iter().map(|item| item.publisher.bare()).collect(),
            _ => Vec::new(),
        },
        Effect::SendLastItems(last) => last.items.iter().map(|i| i.publisher.bare()).collect(),
        Effect::AuthorizationRequest(request) => vec![request.subscriber.bare()],
        _ => Vec::new(),
    }
}

/// A PEP publish that notified no subscriber, as a notification with no recipients yet, so
/// that contacts asking for `NODE+notify` still hear of it (XEP-0163 §4.3; see `implicit`).
pub(super) fn unheard_publish(
    hosted: &Hosted,
    owner: &BareJid,
    published: &verona_pubsub_xmpp::Published,
    effects: &[Effect],
) -> Option<(BareJid, verona_pubsub::Notification)> {
    let (node, id) = (published.node.as_str(), published.item_id.as_str());
    if !unheard(node, effects) {
        return None;
    }
    let config = hosted.service.node_config(node)?;
    let owner_jid = Jid::from(owner.clone());
    let query = verona_pubsub::ItemQuery::Ids(vec![id.to_owned()]);
    let items = hosted
        .service
        .items(&verona_pubsub::NoRoster, &owner_jid, node, &query)
        .ok()?
        .items;
    let event = Event::Items { items };
    Some((owner.clone(), unaddressed(node, event, config)))
}

/// A retract or purge on a PEP node that notified no subscriber, as a notification with no
/// recipients yet, so that resources asking for `NODE+notify` hear of it as of a publish
/// (XEP-0163 §4.3; XEP-0402 §3.3 removes a bookmark by retracting it). Only when the request
/// succeeded and asked for a notification (`notify`) or the node sends them
/// (`notify_retract`).
pub(super) fn unheard_removal(
    hosted: &Hosted,
    owner: &BareJid,
    stanza: &Element,
    reply: Option<&Element>,
    effects: &[Effect],
) -> Option<(BareJid, verona_pubsub::Notification)> {
    if reply.and_then(|r| r.attr("type")) != Some("result") {
        return None;
    }
    let (node, event, asked) = if let Some(retract) = stanza
        .get_child("pubsub", ns::PUBSUB)
        .and_then(|p| p.get_child("retract", ns::PUBSUB))
    {
        let ids: Vec<String> = retract
            .children()
            .filter(|c| c.is("item", ns::PUBSUB))
            .filter_map(|c| c.attr("id").map(str::to_owned))
            .collect();
        let notify = matches!(retract.attr("notify"), Some("true" | "1"));
        (retract.attr("node")?, Event::Retract { ids }, notify)
    } else {
        let purge = stanza
            .get_child("pubsub", ns::PUBSUB_OWNER)
            .and_then(|p| p.get_child("purge", ns::PUBSUB_OWNER))?;
        (purge.attr("node")?, Event::Purge, false)
    };
    if !unheard(node, effects) {
        return None;
    }
    let config = hosted.service.node_config(node)?;
    if !(asked || config.notify_retract) || !config.deliver_notifications {
        return None;
    }
    Some((owner.clone(), unaddressed(node, event, config)))
}

/// Whether no notification of `node` is among `effects`, and it is one `+notify` serves (not
/// the `presence` and `roster` nodes, whose events are the presence views').
fn unheard(node: &str, effects: &[Effect]) -> bool {
    let notified = effects
        .iter()
        .any(|e| matches!(e, Effect::Notify(n) if n.node == node));
    !notified && ![PRESENCE_NODE, ROSTER_NODE].contains(&node)
}

/// A notification of `event` on `node` as its configuration has it, with no recipients yet
/// (`implicit` finds them).
fn unaddressed(
    node: &str,
    event: Event,
    config: &verona_pubsub::NodeConfig,
) -> verona_pubsub::Notification {
    verona_pubsub::Notification {
        node: node.to_owned(),
        event,
        recipients: Vec::new().into(),
        notification_type: config.notification_type,
        presence_based_delivery: config.presence_based_delivery,
        itemreply: config.itemreply,
    }
}
