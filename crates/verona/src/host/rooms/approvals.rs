//! An owner's approval of a request to enter an `authorize` room (XEP-0060 §8.6 by form,
//! §8.8.2 among the room's subscriptions) admits only whom a join would admit now: a request
//! waits holding no nick and no place, so by the time it is approved its nick may be an
//! occupant's, or the room full.

use super::*;
use crate::xml::text_child;

/// An approved request that a join would now refuse: it ends as a denied one does, and the
/// joiner hears why, as its join would have told it.
pub(in crate::host) struct Unadmitted {
    jid: Jid,
    nick: String,
    classic: bool,
    condition: &'static str,
    kind: &'static str,
}

impl ServicesTask {
    /// The approvals `from` makes in `stanza` (an answer to an authorization request, or a
    /// change of room `node`'s subscriptions) of requests a join would now refuse: the nick
    /// is another account's occupant's or registered to another (XEP-0045 §7.2.9, §7.10),
    /// taken while the request waited, or the room is full (`muc#roomconfig_maxusers`,
    /// §7.2.9). Each is
    /// made a denial in `stanza`; who they were is returned, for [`Self::tell_unadmitted`].
    /// Only an owner's approvals are looked at: anyone else's are refused as they are.
    pub(in crate::host) fn vet_approvals(
        &self,
        from: &FullJid,
        node: &str,
        stanza: &mut Element,
    ) -> Vec<Unadmitted> {
        let Some(hosted) = self.rooms.get(node) else {
            return Vec::new();
        };
        let service = &hosted.service;
        if affiliation_in(service, node, &Jid::from(from.clone())) != RoomAffiliation::Owner {
            return Vec::new();
        }
        let config = service.node_config(node);
        let max = config.and_then(groupchat::max_users);
        let occupants = occupant_count(service, node);
        // Those this stanza lets in count towards the room's maximum as they come in.
        let mut admitting = 0;
        let mut unadmitted = Vec::new();
        let mut refuse = |jid: &str, subid: Option<&str>| -> bool {
            let Ok(jid) = Jid::new(jid) else {
                return false;
            };
            let Some(waiting) = service
                .subscriptions_of_jid(node, &jid)
                .find(|s| {
                    s.state == verona_pubsub::SubscriptionState::Pending
                        && subid.is_none_or(|subid| s.subid.as_str() == subid)
                })
                .map(|s| s.to_info(node))
            else {
                return false;
            };
            let Some(nick) = groupchat::nick_of(&waiting.options) else {
                return false;
            };
            let bare = jid.to_bare();
            let registered = config
                .and_then(|config| groupchat::nick_owner(config, nick))
                .is_some_and(|who| who != bare.as_str());
            let held = service.subscriptions(node).any(|s| {
                s.state.is_approved()
                    && s.jid.to_bare() != bare
                    && groupchat::nick_of(s.options) == Some(nick)
            });
            // §7.2.9: owners and admins get in when the room is full, as with a join.
            let full = max.is_some_and(|max| occupants + admitting >= max)
                && affiliation_in(service, node, &jid) < RoomAffiliation::Admin;
            let (condition, kind) = if registered || held {
                ("conflict", "cancel")
            } else if full {
                ("service-unavailable", "wait")
            } else {
                admitting += 1;
                return false;
            };
            unadmitted.push(Unadmitted {
                nick: nick.to_owned(),
                classic: groupchat::is_classic(&waiting.options),
                jid,
                condition,
                kind,
            });
            true
        };
        if stanza.name() == "message" {
            deny_answer(stanza, &mut refuse);
        } else {
            deny_entries(stanza, &mut refuse);
        }
        unadmitted
    }

    /// Tells each joiner whose approval was refused by [`Self::vet_approvals`] why: a classic
    /// one with the error its join would have had (it was told `registration-required` when
    /// it asked); a native one has the engine's notice that its subscription is `none`.
    pub(in crate::host) fn tell_unadmitted(
        &self,
        node: &str,
        unadmitted: &[Unadmitted],
        done: &mut Vec<Done>,
    ) {
        let Some(room) = room_address(node, self.rooms_jid.domain().as_str()) else {
            return;
        };
        for refused in unadmitted.iter().filter(|refused| refused.classic) {
            let (Ok(room_nick), Ok(session)) = (
                room.with_resource_str(&refused.nick),
                refused.jid.clone().try_into_full(),
            ) else {
                continue;
            };
            let error = join_error(
                &refused.jid,
                &room_nick,
                refused.condition,
                refused.kind,
                None,
            );
            done.push(Done::reply(session, Some(error)));
        }
    }
}

/// An authorization answer (§8.6) allowing a request `refuse` refuses: it is made a denial.
fn deny_answer(stanza: &mut Element, refuse: &mut impl FnMut(&str, Option<&str>) -> bool) {
    let Some(form) = stanza.get_child_mut("x", ns::DATA_FORMS) else {
        return;
    };
    let value = |form: &Element, var: &str| {
        (form.children())
            .find(|field| field.attr("var") == Some(var))
            .and_then(|field| field.get_child("value", ns::DATA_FORMS))
            .map(Element::text)
    };
    let allowed = value(form, "pubsub#allow").is_some_and(|allow| allow == "1" || allow == "true");
    let Some(jid) = value(form, "pubsub#subscriber_jid") else {
        return;
    };
    let subid = value(form, "pubsub#subid");
    if !allowed || !refuse(&jid, subid.as_deref()) {
        return;
    }
    for field in form.children_mut() {
        if field.attr("var") == Some("pubsub#allow") {
            *field = builder("field", ns::DATA_FORMS)
                .with("var", "pubsub#allow")
                .append(text_child("value", ns::DATA_FORMS, "false"))
                .build();
        }
    }
}

/// A change of subscriptions (§8.8.2) approving requests `refuse` refuses: those entries
/// are made `none`, ending the requests.
fn deny_entries(stanza: &mut Element, refuse: &mut impl FnMut(&str, Option<&str>) -> bool) {
    let Some(subscriptions) = stanza
        .get_child_mut("pubsub", ns::PUBSUB_OWNER)
        .and_then(|pubsub| pubsub.get_child_mut("subscriptions", ns::PUBSUB_OWNER))
    else {
        return;
    };
    for entry in subscriptions.children_mut() {
        if entry.is("subscription", ns::PUBSUB_OWNER)
            && entry.attr("subscription") == Some("subscribed")
            && let Some(jid) = entry.attr("jid").map(str::to_owned)
            && refuse(&jid, entry.attr("subid"))
        {
            crate::xml::set_attr(entry, "subscription", "none");
        }
    }
}
