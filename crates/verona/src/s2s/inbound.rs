//! A stanza from another server, its domains already checked against the stream: routed by
//! the same table as a session's ([`route::classify`]), with the remote sender where the
//! session would be. A remote sender owns nothing here, so only what one account may ask of
//! another's services is open to it; presence subscriptions and probes, which servers send
//! from bare JIDs, are operations on the local account's presence node as a local contact's
//! would be (XEP-0207 across domains).

use std::collections::HashMap;

use crate::jids::Bare;
use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;

use crate::c2s::route::{self, Route};
use crate::eventing::presence::SubscriptionKind;
use crate::host::Touched;
use crate::iq::{self, Target};
use crate::server::Shared;
use crate::xml::{StanzaError, error_reply, ns};

/// `relay`: the sender is one of this server's components, whose stanzas may go on to other
/// components and servers; another server's may not.
///
/// `senders` are the stream's: each sender's stanzas are handled in order (RFC 6120 §10.1),
/// those that go directly to sessions after those it sent through the services.
pub(crate) async fn dispatch(shared: &Shared, mut el: Element, relay: bool, senders: &mut Senders) {
    let parse = |attr: &str| el.attr(attr).and_then(|v| crate::jids::parse(v).ok());
    let (Some(from), Some(to)) = (parse("from"), parse("to")) else {
        return;
    };
    // As the addresses were checked, written canonically: `EVIL.LIT` or `evil.lit.` is
    // evil.lit (also with a node and a resource), and a client shown it as written would take
    // it for another contact.
    crate::xml::set_attr(&mut el, "from", from.as_str());
    crate::xml::set_attr(&mut el, "to", to.as_str());
    // RFC 6120 §8.2.3, as for clients: an iq of no known type is refused, not passed on.
    if el.name() == "iq" && !matches!(el.attr("type"), Some("get" | "set" | "result" | "error")) {
        return answer(shared, &el, StanzaError::BadRequest);
    }
    let local_account =
        (to.node().is_some() && to.domain().as_str() == shared.domain).then(|| to.bare());
    if let Some(account) = &local_account
        && shared.router.blocks(account, &from.bare())
    {
        // XEP-0191 §3.3: the blocked party learns nothing (presence vanishes silently).
        if el.name() != "presence" {
            answer(shared, &el, StanzaError::ServiceUnavailable);
        }
        return;
    }
    if el.name() == "iq" && caps_answer(shared, &el, &from).await {
        return;
    }
    let touched = senders.of(&from.bare());
    let pubsub = shared.pubsub.for_account(&from.bare()).on_stream(&touched);
    // A component's domain is one of this server's: other servers reach it too.
    if shared
        .config
        .components
        .secrets
        .contains_key(to.domain().as_str())
    {
        pubsub.settled().await;
        // What it does not take bounces to the sender.
        let bytes = Bytes::from(verona_stream::element_bytes(&el));
        shared.router.deliver(&to, bytes);
        return;
    }
    if let Some(account) = &local_account
        && el.name() == "presence"
    {
        if !relay {
            note_presence(shared, &el, &from, account).await;
        }
        match el.attr("type") {
            Some("probe") => return pubsub.probe(from, account.clone()).await,
            // A request or its withdrawal acts on the local account's presence node; an answer
            // on the remote contact's proxy (nothing, if no local account asked).
            Some(kind) => {
                if let Some(kind) = SubscriptionKind::from_type(kind) {
                    let extensions = crate::eventing::presence::request_extensions(&el);
                    return pubsub
                        .subscription(from.bare(), account.clone(), kind, extensions)
                        .await;
                }
            }
            // Presence of a remote contact, to the account's available sessions.
            None => {
                pubsub.settled().await;
                return deliver_to_sessions(shared, &el, account);
            }
        }
        if el.attr("type") == Some("unavailable") {
            pubsub.settled().await;
            return deliver_to_sessions(shared, &el, account);
        }
    }
    let Ok(sender) = from.clone().try_into_full() else {
        // A bare sender: its server speaking for an account (a message, directed presence),
        // or a component speaking for itself.
        let here = [shared.domain.as_str(), pubsub.jid(), pubsub.rooms_jid()];
        pubsub.settled().await;
        if relay && !here.contains(&to.domain().as_str()) {
            return relay_on(shared, &el, &to);
        }
        // An error from another server's user to a room: the bounce of an invitation the room
        // sent it (XEP-0045 §7.8.2), for the room to tell the inviter.
        if to.domain().as_str() == pubsub.rooms_jid()
            && el.name() == "message"
            && el.attr("type") == Some("error")
        {
            return pubsub.room_error(from, el).await;
        }
        // An account's vCard, and its last activity to its contacts, are answered as to a full
        // JID: the sender's resource plays no part, and the answer, made from the request,
        // goes back to the address that asked. (A PEP reply is addressed to the asker's full
        // JID, so PEP reads still need one.)
        if el.name() == "iq"
            && el.attr("type") == Some("get")
            && local_account.is_some()
            && let Ok(asker) = from.bare().with_resource_str("server")
        {
            let here = route::Addresses {
                domain: &shared.domain,
                pubsub: pubsub.jid(),
                rooms: pubsub.rooms_jid(),
            };
            match route::classify(&el, &asker, here).route {
                Route::Stored { account } => match crate::eventing::stored::asked(&el) {
                    Ok(asked) => return pubsub.stored(asker, account, asked).await,
                    Err(error) => return answer(shared, &el, error),
                },
                Route::LastActivity { account } => {
                    return pubsub.last_activity(asker, account, el).await;
                }
                _ => {}
            }
        }
        if to.node().is_none() && to.domain().as_str() == shared.domain && is_public_query(&el) {
            // Answered from the request alone: the sender's resource plays no part.
            let asker = from.bare().with_resource_str("server").ok();
            if let Some(asker) = asker {
                let handled = iq::handle(shared, &el, &Target::Domain, &asker).await;
                if let Some(mut reply) = handled.reply {
                    crate::xml::set_attr(&mut reply, "to", from.as_str());
                    send(shared, &reply);
                }
            }
            return;
        }
        let conversational =
            el.name() == "message" && crate::eventing::chat::is_conversational(&el);
        // A message kept for a local account counts against its sender's rate, however its
        // server writes the sender.
        if conversational && crate::eventing::chat::is_kept(&el) && !pubsub.may_keep(&from.bare()) {
            return answer(shared, &el, StanzaError::ResourceConstraint);
        }
        // An account's bare JID (a user's server writing for it, a gateway's contact, a
        // room's invitation) is in a conversation as its full JID would be: delivered at once
        // with its archive id, copied, kept while the account is away; not passed through
        // the offline queue, which stamped it delayed and left it out of the archive.
        if conversational
            && from.node().is_some()
            && local_account.is_some()
            && !crate::eventing::chat::is_service_message(&el)
        {
            return pubsub.chat(from, to, el).await;
        }
        return deliver(shared, el, &to).await;
    };
    let here = route::Addresses {
        domain: &shared.domain,
        pubsub: pubsub.jid(),
        rooms: pubsub.rooms_jid(),
    };
    let route = route::classify(&el, &sender, here).route;
    // A remote user's messages to rooms and publishes here count as a local account's do;
    // all of its server's users together are bounded by `[s2s] read_bytes_per_sec`.
    let broadcast = route::broadcast_bytes(&route, &el, &sender);
    if broadcast > 0 && !pubsub.may_broadcast_bytes(&sender.bare(), broadcast) {
        return answer(shared, &el, StanzaError::ResourceConstraint);
    }
    match route {
        Route::Pep { account, .. } => pubsub.submit_pep(sender, account, el).await,
        Route::PubsubDomain => pubsub.submit(sender, el).await,
        Route::RoomsService => pubsub.submit_rooms(sender, el).await,
        Route::Room => pubsub.room(sender, el).await,
        Route::AuthorizationAnswer => pubsub.submit_answer(sender, el).await,
        // An account's vCard is anyone's to read (XEP-0054 §3.2), its last activity its
        // contacts' (XEP-0012 §4): the same requests, checked the same way, as from here.
        // Private storage is refused by its node's access model.
        Route::Stored { account } => match crate::eventing::stored::asked(&el) {
            Ok(asked) => pubsub.stored(sender, account, asked).await,
            Err(error) => answer(shared, &el, error),
        },
        Route::LastActivity { account } => pubsub.last_activity(sender, account, el).await,
        Route::ServerIq(Target::Domain) if is_public_query(&el) => {
            pubsub.settled().await;
            let handled = iq::handle(shared, &el, &Target::Domain, &sender).await;
            if let Some(reply) = handled.reply {
                send(shared, &reply);
            }
        }
        // A conversation with a local account: published to the pair's node, as between two
        // local accounts (archived, carbons, kept while the account is away).
        Route::Session(_) | Route::Account(_)
            if el.name() == "message" && crate::eventing::chat::is_conversational(&el) =>
        {
            // Each remote sender has its own rate of kept messages, as a local account has.
            if crate::eventing::chat::is_kept(&el) && !pubsub.may_keep(&sender.bare()) {
                answer(shared, &el, StanzaError::ResourceConstraint);
            } else {
                pubsub.chat(sender.into(), to, el).await;
            }
        }
        Route::Session(_) | Route::Account(_) => {
            pubsub.settled().await;
            deliver(shared, el, &to).await;
        }
        Route::Remote if relay => {
            pubsub.settled().await;
            relay_on(shared, &el, &to);
        }
        Route::JidMalformed => answer(shared, &el, StanzaError::JidMalformed),
        Route::Drop => {}
        // What only an account's own sessions may ask (its roster, blocklist, archive,
        // registration), and what nobody answers.
        _ => answer(shared, &el, StanzaError::ServiceUnavailable),
    }
}

/// Senders on one stream remembered at most, beyond those with requests unsettled.
const MAX_SENDERS: usize = 1024;

/// The shards each sender on one stream sent requests to since they were last settled.
#[derive(Default)]
pub(crate) struct Senders(HashMap<BareJid, Touched>);

impl Senders {
    fn of(&mut self, sender: &BareJid) -> Touched {
        if self.0.len() >= MAX_SENDERS {
            self.0
                .retain(|_, touched| touched.load(std::sync::atomic::Ordering::Acquire) != 0);
        }
        self.0.entry(sender.clone()).or_default().clone()
    }
}

/// A component's stanza for another component or another server.
fn relay_on(shared: &Shared, el: &Element, to: &Jid) {
    let bytes = Bytes::from(verona_stream::element_bytes(el));
    // A component's domain bounces what it does not take, as another server's does.
    if shared.router.deliver(to, bytes) == 0
        && shared.federation.is_none()
        && !shared.router.is_component_domain(to.domain().as_str())
    {
        answer(shared, el, StanzaError::RemoteServerNotFound);
    }
}

/// What the server tells anyone about itself: ping, discovery, version.
fn is_public_query(el: &Element) -> bool {
    el.attr("type") == Some("get")
        && el.children().any(|c| {
            c.is("ping", ns::PING)
                || c.is("query", ns::DISCO_INFO)
                || c.is("query", ns::DISCO_ITEMS)
                || c.is("query", ns::VERSION)
        })
}

/// A stanza for a local account or one of its sessions (RFC 6121 §8.5): a full JID's
/// session, else a message goes to the account, kept while it has no available session
/// (XEP-0160); an iq for a session that is not there, or for an account that does not
/// exist, is answered `service-unavailable`.
async fn deliver(shared: &Shared, mut el: Element, to: &Jid) {
    // Another server's message is passed on without what would pass for this server's word
    // (a `stanza-id` by the recipient, for its archive's; a carbon).
    if el.name() == "message"
        && let Some(sender) = el.attr("from").and_then(|from| Jid::new(from).ok())
    {
        crate::eventing::chat::strip_forged(&mut el, &sender, &shared.domain);
    }
    let router = &shared.router;
    let bytes = Bytes::from(verona_stream::element_bytes(&el));
    if let Ok(full) = to.try_as_full()
        && let Some(session) = router.session(full)
    {
        if !session.offer(bytes) {
            answer(shared, &el, StanzaError::ResourceConstraint);
        }
        return;
    }
    let account = to.bare();
    match el.name() {
        // RFC 6121 §8.5.3.2.1: a headline for a resource that is not there is dropped.
        "message" if to.is_full() && el.attr("type") == Some("headline") => {}
        "message" => keep_or_deliver(shared, el, account).await,
        "presence" if to.is_bare() => deliver_to_sessions(shared, &el, &account),
        "iq" => answer(shared, &el, StanzaError::ServiceUnavailable),
        _ => {}
    }
}

async fn keep_or_deliver(shared: &Shared, el: Element, account: BareJid) {
    let exists = matches!(shared.accounts.credentials(&account).await, Ok(Some(_)));
    if !exists {
        answer(shared, &el, StanzaError::ServiceUnavailable);
        return;
    }
    // RFC 6121 §8.5.2 and §8.5.3.2.1, as for a local sender: a groupchat message for an
    // account (or a resource it does not have) is refused, an error dropped, and a headline
    // goes to the available resources of non-negative priority, or nowhere; none is kept.
    match el.attr("type") {
        Some("groupchat") => return answer(shared, &el, StanzaError::ServiceUnavailable),
        Some("error") => return,
        Some("headline") => {
            let bytes = Bytes::from(verona_stream::element_bytes(&el));
            for (_, session) in shared.router.message_sessions(&account) {
                session.offer(bytes.clone());
            }
            return;
        }
        _ => {}
    }
    // §8.5.2.1.1: at once to the available resources of non-negative priority; kept, and
    // stamped delayed when it comes, only if none takes it.
    let bytes = Bytes::from(verona_stream::element_bytes(&el));
    let mut taken = false;
    for (_, session) in shared.router.message_sessions(&account) {
        taken |= session.offer(bytes.clone());
    }
    if taken {
        return;
    }
    let stanza = String::from(&el);
    shared
        .pubsub
        .for_account(&account)
        .undelivered(account, vec![stanza])
        .await;
}

/// XEP-0163 §4.3 for remote contacts: an available remote resource is remembered with its
/// capabilities; unknown capabilities are asked about once (from the server's domain). Only
/// presence to an account with an available session counts: that is whom `+notify` serves
/// (an account coming online probes its contacts), and a server cannot fill the table, or
/// make us ask questions, with presence to anyone else.
async fn note_presence(shared: &Shared, el: &Element, from: &Jid, account: &BareJid) {
    let (Ok(full), Some(federation)) = (from.try_as_full(), &shared.federation) else {
        return;
    };
    match el.attr("type") {
        None if !shared.router.available_sessions(account).is_empty() => {
            let caps = crate::eventing::caps::advertised(el);
            let known = caps.as_ref().and_then(|caps| shared.caps.get(caps));
            let unknown = caps.filter(|_| known.is_none());
            let features = known.is_some();
            let initial = shared.router.remote_presence(full, true, known);
            // XEP-0163 §4.3: its initial presence brings it the last items of the account's
            // nodes it asks `+notify` for (once its features are known).
            if initial && features {
                notify_last(shared, full, account).await;
            }
            if let Some(caps) = unknown {
                let id = crate::c2s::random_id();
                if federation.ask_caps(&id, full.clone(), account.clone(), caps.clone()) {
                    let query =
                        crate::eventing::caps::query(&caps, &id, &shared.domain, full.as_str());
                    send(shared, &query);
                }
            }
        }
        Some("unavailable") => {
            shared.router.remote_presence(full, false, None);
        }
        _ => {}
    }
}

/// An answer to a capabilities question of ours: verified, kept, and the resource's features
/// set. True if `el` was one.
async fn caps_answer(shared: &Shared, el: &Element, from: &Jid) -> bool {
    let Some(federation) = &shared.federation else {
        return false;
    };
    if !matches!(el.attr("type"), Some("result" | "error"))
        || el.attr("to") != Some(shared.domain.as_str())
    {
        return false;
    }
    let Some((full, account, caps)) = el
        .attr("id")
        .and_then(|id| federation.caps_answered(id, from.as_str()))
    else {
        return false;
    };
    if let Some(features) = crate::eventing::caps::verify(&caps, el) {
        shared.caps.insert(&caps, features.clone());
        shared.router.set_remote_features(&full, features);
        notify_last(shared, &full, &account).await;
    }
    true
}

/// The last items of `account`'s nodes that the remote resource `full` asks `+notify` for
/// and may read, from the shard that has the account's service.
async fn notify_last(shared: &Shared, full: &FullJid, account: &BareJid) {
    let pubsub = shared.pubsub.for_account(account);
    pubsub.notify_last(full.clone(), account.clone()).await;
}

/// Presence from another server's user: to the session it names, or to the account's
/// available sessions.
fn deliver_to_sessions(shared: &Shared, el: &Element, account: &BareJid) {
    let bytes = Bytes::from(verona_stream::element_bytes(el));
    let to = el.attr("to").and_then(|to| Jid::new(to).ok());
    match to.as_ref().map(Jid::try_as_full) {
        Some(Ok(full)) => {
            shared.router.deliver(&Jid::from(full.clone()), bytes);
        }
        _ => {
            for session in shared.router.available_sessions(account) {
                shared.router.deliver(&Jid::from(session), bytes.clone());
            }
        }
    }
}

fn answer(shared: &Shared, el: &Element, error: StanzaError) {
    if let Some(reply) = error_reply(el, error, None) {
        send(shared, &reply);
    }
}

/// A reply to the other server's user.
fn send(shared: &Shared, reply: &Element) {
    if let Some(to) = reply.attr("to").and_then(|to| Jid::new(to).ok()) {
        let bytes = Bytes::from(verona_stream::element_bytes(reply));
        shared.router.deliver(&to, bytes);
    }
}
