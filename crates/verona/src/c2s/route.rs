//! Routing as a table: a stanza from a bound session, `from` already checked and stamped, is
//! classified once into the [`Route`] that handles it. Pure: no sockets, no state.

use crate::jids::Bare;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;

use crate::eventing::presence::SubscriptionKind;
use crate::iq::Target;
use crate::xml::ns;

/// XEP-0012 Last Activity.
const LAST: &str = "jabber:iq:last";

/// Where a stanza from a bound session goes. Each row is one handler; the order of the checks
/// in [`classify`] is the precedence between rows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `to` is not a JID: `jid-malformed`.
    JidMalformed,
    /// An iq whose `type` is none of RFC 6120's four (§8.2.3): `bad-request`, not passed on.
    BadRequest,
    /// XEP-0163: a pubsub or discovery request for a local account's PEP service (no `to`: the
    /// sender's own). `own_presence`: a publish to the sender's own `presence` node, which
    /// marks a native XEP-0207 client (DESIGN §3).
    Pep {
        account: BareJid,
        own_presence: bool,
    },
    /// XEP-0054 vCard or XEP-0049 private storage of a local account (no `to`: the sender's
    /// own), as a request to its PEP service (`eventing::stored`).
    Stored { account: BareJid },
    /// XEP-0012 §4: how long ago a local account (no `to`: the sender's own) was online.
    LastActivity { account: BareJid },
    /// XEP-0191: a blocklist get, block or unblock of the sender's account.
    Blocking,
    /// RFC 6121 §2: a roster get or set of the sender's account.
    Roster,
    /// A presence broadcast (no `to`, available or `unavailable`): a publish to, or a
    /// retraction from, the sender's `presence` node (XEP-0207 §3); marks a classic client.
    PresenceBroadcast,
    /// RFC 6121 §4.3: a probe, answered from the contact's presence node.
    Probe { contact: BareJid },
    /// RFC 6121 §3: a presence subscription stanza, an operation on a presence node.
    Subscription {
        contact: BareJid,
        kind: SubscriptionKind,
    },
    /// A stanza other than presence for `pubsub.<domain>`.
    PubsubDomain,
    /// A stanza other than presence for `chat.<domain>` itself: XEP-0060 on rooms (Ex. 13,
    /// Ex. 16), discovery.
    RoomsService,
    /// A XEP-0045 stanza for a room or an occupant (`room@chat.<domain>[/nick]`).
    Room,
    /// XEP-0060 §8.6: an owner's answer to an authorization request, accepted wherever on this
    /// server it is sent (the seed's Ex. 11 addresses it to a server, not to the service).
    AuthorizationAnswer,
    /// Another domain: no federation yet.
    Remote,
    /// An iq the server answers itself, for the domain or for the sender's account.
    ServerIq(Target),
    /// An iq nobody here answers (`service-unavailable`; errors and results are dropped).
    ServiceUnavailable,
    /// A stanza for one session of a local account.
    Session(FullJid),
    /// A message for a local account (RFC 6121 §8.5.2).
    Account(BareJid),
    /// Nothing to do (e.g. presence of another type to the domain or to a bare JID).
    Drop,
}

/// A classified stanza.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Classified {
    pub route: Route,
    /// Another local account the stanza is for, where XEP-0191 blocking applies (not to PEP
    /// requests, which the outcast affiliation of every node governs).
    pub peer: Option<BareJid>,
}

/// The addresses a server answers for: its domain, its pubsub service and its group chat
/// service.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Addresses<'a> {
    pub domain: &'a str,
    pub pubsub: &'a str,
    pub rooms: &'a str,
}

/// Which [`Route`] a stanza from `me` takes on the server of `here`.
pub(crate) fn classify(el: &Element, me: &FullJid, here: Addresses) -> Classified {
    let domain = here.domain;
    let to = match el.attr("to").map(Jid::new) {
        None => None,
        Some(Ok(to)) => Some(to),
        Some(Err(_)) => return unblocked(Route::JidMalformed),
    };
    let own = me.bare();
    let is_local_account = |to: &Jid| to.domain().as_str() == domain && to.node().is_some();
    let known = match el.name() {
        "iq" => match el.attr("type") {
            // RFC 6120 §8.2.3: a request carries exactly one payload (checked here once, as
            // Prosody's router does, rather than by each handler).
            Some("get" | "set") => el.children().count() == 1,
            Some("result" | "error") => true,
            _ => false,
        },
        // RFC 6121 §4.7.1: a presence of no defined type is refused (as Prosody does), not
        // dropped unanswered.
        "presence" => matches!(
            el.attr("type"),
            None | Some(
                "unavailable"
                    | "subscribe"
                    | "subscribed"
                    | "unsubscribe"
                    | "unsubscribed"
                    | "probe"
                    | "error"
            )
        ),
        _ => true,
    };
    // One's own presence is not a contact's to ask for or grant (RFC 6121 §3; refused as
    // Prosody does, and as a roster set of one's own address is): accepted, it made a hidden
    // subscription that doubled every later presence to one's own resources.
    let to_self = el.name() == "presence"
        && el
            .attr("type")
            .is_some_and(|kind| SubscriptionKind::from_type(kind).is_some())
        && to.as_ref().is_some_and(|to| to.bare() == own);
    if !known || to_self {
        let peer = to
            .as_ref()
            .filter(|to| is_local_account(to))
            .and_then(|to| another(&to.bare(), &own));
        return Classified {
            route: Route::BadRequest,
            peer,
        };
    }
    let to_own_account = to
        .as_ref()
        .is_none_or(|to| to.is_bare() && to.bare() == own);
    if is_pep_request(el) {
        let account = match &to {
            None => Some(own.clone()),
            Some(to) if is_local_account(to) => to.try_as_full().err().cloned(),
            Some(_) => None,
        };
        if let Some(account) = account {
            let own_presence = account == own && publishes_presence(el);
            let peer = another(&account, &own);
            let route = Route::Pep {
                account,
                own_presence,
            };
            return Classified { route, peer };
        }
    }
    let iq_request = el.name() == "iq" && matches!(el.attr("type"), Some("get" | "set"));
    // disco#info about an account (one's own, or a contact's): its PEP host answers on its
    // behalf, with the features of its PEP service.
    let account_info = iq_request
        && el
            .children()
            .any(|c| c.is("query", ns::DISCO_INFO) && c.attr("node").is_none());
    // The local account an iq asks about (no `to`: the sender's own), made only for an iq
    // that asks about one.
    let about = || match &to {
        None => Some(own.clone()),
        Some(to) if is_local_account(to) => to.try_as_full().err().cloned(),
        Some(_) => None,
    };
    // What an iq about another account asks goes through XEP-0191 like a stanza to it: a
    // blocked asker gets what an absent account answers, not the access error that would
    // tell it it is blocked.
    if account_info && let Some(account) = about() {
        let peer = another(&account, &own);
        let route = Route::Pep {
            account,
            own_presence: false,
        };
        return Classified { route, peer };
    }
    if iq_request
        && crate::eventing::stored::is_storage(el)
        && let Some(account) = about()
    {
        // XEP-0049 §2.3: private storage is the account's own; another's is not there for
        // anyone, whatever it holds (no answer tells what it does).
        if account != own && el.has_child("query", crate::eventing::stored::PRIVATE) {
            return unblocked(Route::ServiceUnavailable);
        }
        let peer = another(&account, &own);
        return Classified {
            route: Route::Stored { account },
            peer,
        };
    }
    if iq_request
        && el.attr("type") == Some("get")
        && el.has_child("query", LAST)
        && let Some(account) = about()
    {
        // Not through XEP-0191: the service answers a blocked asker `forbidden`, as it
        // answers anyone who does not follow the account, or an account that does not exist.
        return unblocked(Route::LastActivity { account });
    }
    if iq_request && to_own_account && is_blocking_command(el) {
        return unblocked(Route::Blocking);
    }
    if iq_request && to_own_account && el.has_child("query", ns::ROSTER) {
        return unblocked(Route::Roster);
    }
    let Some(to) = to else {
        // No `to`: the stanza is for the user's own account (RFC 6120 §10.3).
        return unblocked(match el.name() {
            "iq" => Route::ServerIq(Target::Account),
            "message" => Route::Account(own),
            _ if matches!(el.attr("type"), None | Some("unavailable")) => Route::PresenceBroadcast,
            _ => Route::Drop,
        });
    };
    // A local account, or another server's: XEP-0191 blocks both (not services' nodes).
    let remote_account =
        to.node().is_some() && ![domain, here.pubsub, here.rooms].contains(&to.domain().as_str());
    let peer = ((is_local_account(&to) || remote_account) && to.bare() != own).then(|| to.bare());
    let route = route_to(el, &to, &own, here);
    Classified { route, peer }
}

/// The route of a stanza with a `to` that is not for a PEP service, the blocklist or the
/// roster.
fn route_to(el: &Element, to: &Jid, own: &BareJid, here: Addresses) -> Route {
    let Addresses {
        domain,
        pubsub,
        rooms,
    } = here;
    let local_account = to.domain().as_str() == domain && to.node().is_some();
    // Available or unavailable presence to one's own bare JID is the broadcast, as Prosody
    // and ejabberd (`process_self_presence`) take it: contacts hear it, not only the other
    // resources.
    let own_bare = to.try_as_full().is_err() && to.node().is_some() && to.to_bare() == *own;
    if el.name() == "presence" && own_bare && matches!(el.attr("type"), None | Some("unavailable"))
    {
        return Route::PresenceBroadcast;
    }
    if el.name() == "presence" && local_account {
        match el.attr("type") {
            Some("probe") => {
                return Route::Probe { contact: to.bare() };
            }
            Some(kind) => {
                if let Some(kind) = SubscriptionKind::from_type(kind) {
                    return Route::Subscription {
                        contact: to.bare(),
                        kind,
                    };
                }
            }
            None => {}
        }
    }
    // With another server's user too, subscription stanzas are operations on a presence
    // node: the sender's own (approving, refusing), or the remote contact's proxy here
    // (asking, withdrawing), whose changes its server hears of. A contact may be a bare
    // domain (a XEP-0100 gateway, another server): RFC 6121 §3.1.1 allows any bare JID.
    if el.name() == "presence"
        && to.domain().as_str() != domain
        && let Some(kind) = el.attr("type").and_then(SubscriptionKind::from_type)
    {
        let service = [pubsub, rooms].contains(&to.domain().as_str());
        // A room or a pubsub node has no presence to follow, and its service is no other
        // server to relay the request to.
        if service && to.node().is_some() {
            return Route::ServiceUnavailable;
        }
        if !service {
            return Route::Subscription {
                contact: to.bare(),
                kind,
            };
        }
    }
    if to.domain().as_str() == pubsub {
        return match el.name() {
            "presence" => Route::Drop,
            _ => Route::PubsubDomain,
        };
    }
    if to.domain().as_str() == rooms {
        return match (el.name(), to.node()) {
            (_, Some(_)) => Route::Room,
            // Presence is for a room, never for the service (answered as ejabberd does).
            ("presence", None) => Route::ServiceUnavailable,
            (_, None) => Route::RoomsService,
        };
    }
    if is_authorization_answer(el) && (to.node().is_none() || to.bare() == *own) {
        return Route::AuthorizationAnswer;
    }
    if to.domain().as_str() != domain {
        return Route::Remote;
    }
    match (to.node(), to.try_as_full()) {
        (None, Err(_)) if el.name() == "iq" => Route::ServerIq(Target::Domain),
        // The server takes no messages of its own (RFC 6120 §10.5.1, as Prosody answers); a
        // headline or an error is dropped, as they are for an account (RFC 6121 §8.5.2).
        (None, Err(_))
            if el.name() == "message" && !matches!(el.attr("type"), Some("headline" | "error")) =>
        {
            Route::ServiceUnavailable
        }
        (None, Err(_)) => Route::Drop,
        (None, Ok(_)) => Route::ServiceUnavailable,
        (Some(_), Ok(full)) => Route::Session(full.clone()),
        (Some(_), Err(bare)) => match el.name() {
            "iq" if bare == own => Route::ServerIq(Target::Account),
            "iq" => Route::ServiceUnavailable,
            // RFC 6121 §8.5.2.1: directed presence to a bare JID reaches its available
            // resources.
            "message" | "presence" => Route::Account(bare.clone()),
            _ => Route::Drop,
        },
    }
}

fn unblocked(route: Route) -> Classified {
    Classified { route, peer: None }
}

/// `account`, when it is not the sender's own: the peer XEP-0191 checks.
fn another(account: &BareJid, own: &BareJid) -> Option<BareJid> {
    (account != own).then(|| account.clone())
}

fn is_blocking_command(el: &Element) -> bool {
    el.has_child("blocklist", ns::BLOCKING)
        || el.has_child("block", ns::BLOCKING)
        || el.has_child("unblock", ns::BLOCKING)
}

/// An iq for an account's PEP service: a XEP-0060 request, the get-pending command it
/// advertises (§8.7), or discovery of its nodes and items (disco#items, disco#info about a
/// node; disco#info about the account is answered on its behalf, see [`classify`]).
pub(super) fn is_pep_request(el: &Element) -> bool {
    el.name() == "iq"
        && matches!(el.attr("type"), Some("get" | "set"))
        && el.children().any(|c| {
            c.is("pubsub", ns::PUBSUB)
                || c.is("pubsub", ns::PUBSUB_OWNER)
                || (c.is("command", ns::COMMANDS) && c.attr("node") == Some(ns::GET_PENDING))
                || c.is("query", ns::DISCO_ITEMS)
                || (c.is("query", ns::DISCO_INFO) && c.attr("node").is_some())
        })
}

/// A publish to the `presence` node.
pub(crate) fn publishes_presence(el: &Element) -> bool {
    el.get_child("pubsub", ns::PUBSUB)
        .and_then(|pubsub| pubsub.get_child("publish", ns::PUBSUB))
        .is_some_and(|publish| publish.attr("node") == Some("presence"))
}

/// A `<message/>` carrying a submitted `pubsub#subscribe_authorization` form.
pub(crate) fn is_authorization_answer(el: &Element) -> bool {
    el.name() == "message"
        && el.children().any(|x| {
            x.is("x", ns::DATA_FORMS)
                && x.attr("type") == Some("submit")
                && x.children().any(|field| {
                    field.attr("var") == Some("FORM_TYPE")
                        && field
                            .children()
                            .any(|v| v.text() == ns::PUBSUB_AUTHORIZATION)
                })
        })
}

/// The bytes a stanza on `route` has the server broadcast in its sender's name (0: none), for
/// `[limits] broadcast_bytes_per_sec`: a message to a room or to one of its occupants, the
/// items of a publish or a retraction (to a PEP node, a node of `pubsub.<domain>`, a room
/// natively), each counted once however many it reaches, as large as a copy a reader gets:
/// what `sender` wrote, [`COPY_OVERHEAD`] and `sender`'s full JID (a PEP event's `replyto`); a
/// room adds its speaker's nick. An owner's changes to a node's subscriptions and
/// affiliations, a purge, a deletion and a new configuration notify too, and count the same
/// way (each subscription or affiliation changed is told to its holder), as do a room's
/// changes of a role, an affiliation or its configuration, told to everyone in it, and
/// available presence. A
/// publish to a one-to-one conversation is a message between two, counted as a kept message
/// instead.
pub(crate) fn broadcast_bytes(route: &Route, el: &Element, sender: &FullJid) -> usize {
    use crate::host::budget::weight;
    let copy = |written: usize| written + COPY_OVERHEAD + sender.as_str().len();
    match route {
        Route::Room if el.name() == "message" && el.attr("type") != Some("error") => {
            copy(weight(el))
        }
        // Available presence reaches everyone who follows the account, or everyone in a room.
        Route::PresenceBroadcast | Route::Room
            if el.name() == "presence" && el.attr("type").is_none() =>
        {
            copy(weight(el))
        }
        // A moderator's or admin's change of a role or an affiliation is a presence, with its
        // reason and the occupant's own status as the room keeps it, to everyone in the room;
        // an owner's new configuration is a notice to everyone in it (XEP-0045 §10.2.1).
        Route::Room if el.name() == "iq" && el.attr("type") == Some("set") => {
            let changes: usize = el
                .get_child("query", ns::MUC_ADMIN)
                .into_iter()
                .flat_map(Element::children)
                .map(|item| copy(weight(item)) + KEPT_STATUS_BYTES)
                .sum();
            let configured = el
                .get_child("query", ns::MUC_OWNER)
                .map_or(0, |query| copy(weight(query)));
            changes + configured
        }
        Route::Pep { .. } | Route::PubsubDomain | Route::RoomsService
            if el.name() == "iq" && el.attr("type") == Some("set") =>
        {
            let said = el
                .get_child("pubsub", ns::PUBSUB)
                .and_then(|pubsub| pubsub.children().next())
                .filter(|action| {
                    action.is("publish", ns::PUBSUB) || action.is("retract", ns::PUBSUB)
                })
                .filter(|action| {
                    action
                        .attr("node")
                        .is_none_or(|node| crate::eventing::chat::parties(node).is_none())
                })
                .map_or(0, |action| copy(weight(action)));
            let managed = el
                .get_child("pubsub", ns::PUBSUB_OWNER)
                .into_iter()
                .flat_map(Element::children)
                .map(|action| match action.name() {
                    "subscriptions" | "affiliations" => {
                        action.children().map(|entry| copy(weight(entry))).sum()
                    }
                    "purge" | "delete" | "configure" => copy(weight(action)),
                    _ => 0,
                })
                .sum::<usize>();
            said + managed
        }
        _ => 0,
    }
}

/// What the server adds to each copy of a broadcast stanza besides its sender's JID and a
/// room's nick: the reader's `to`, a room's `occupant-id` and `stanza-id`, a PEP event's
/// wrapping. A one-character room message of 76 bytes reached its reader as 287 (the review of
/// 2026-12-07, evening): counted as written, a flood of tiny messages or of tiny messages under
/// a long nick outran the rate it was meant to keep below a slow reader's, and its burst alone
/// was more stanzas than a reader's queue holds.
pub(crate) const COPY_OVERHEAD: usize = 256;

/// The most an occupant's status, as a room keeps it, takes written out: its characters, four
/// bytes each at most, and escaped (`&` as five bytes). A role change sends it again to
/// everyone, and a 1,000-ampersand status made each change 5.4 KB for 330 counted (the review
/// of 2026-12-07, evening).
const KEPT_STATUS_BYTES: usize = 5 * crate::eventing::shown::MAX_STATUS_CHARS;

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "juliet@localhost/balcony";

    fn bare(jid: &str) -> BareJid {
        BareJid::new(jid).unwrap()
    }

    fn stanza(xml: &str) -> Element {
        let xml = ["iq", "message", "presence"]
            .iter()
            .fold(xml.to_owned(), |xml, name| {
                xml.replace(
                    &format!("<{name} "),
                    &format!("<{name} xmlns='jabber:client' "),
                )
                .replace(
                    &format!("<{name}>"),
                    &format!("<{name} xmlns='jabber:client'>"),
                )
                .replace(
                    &format!("<{name}/>"),
                    &format!("<{name} xmlns='jabber:client'/>"),
                )
            });
        xml.parse().unwrap()
    }

    /// Every row of the table, with the stanza that takes it and whether blocking applies.
    #[test]
    fn each_stanza_takes_its_row() {
        const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
        let publish_presence = format!(
            "<iq type='set' id='1'><pubsub xmlns='{PUBSUB}'><publish node='presence'/></pubsub></iq>"
        );
        let items_of = |to: &str| {
            format!(
                "<iq type='get' id='1' to='{to}'><pubsub xmlns='{PUBSUB}'><items node='n'/></pubsub></iq>"
            )
        };
        let answer = |to: &str| {
            format!(
                "<message to='{to}'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field>\
                 </x></message>"
            )
        };
        let roster = "<query xmlns='jabber:iq:roster'/>";
        let blocklist = "<blocklist xmlns='urn:xmpp:blocking'/>";
        let cases: Vec<(String, Route, Option<&str>)> = vec![
            ("<message to='@@'/>".into(), Route::JidMalformed, None),
            (
                "<iq type='wrong' id='1' to='romeo@localhost/orchard'/>".into(),
                Route::BadRequest,
                Some("romeo@localhost"),
            ),
            ("<iq id='1' to='pubsub.localhost'/>".into(), Route::BadRequest, None),
            (
                publish_presence.clone(),
                Route::Pep {
                    account: bare("juliet@localhost"),
                    own_presence: true,
                },
                None,
            ),
            (
                items_of("romeo@localhost"),
                Route::Pep {
                    account: bare("romeo@localhost"),
                    own_presence: false,
                },
                Some("romeo@localhost"),
            ),
            // A full JID is a client, not a PEP service.
            (
                items_of("romeo@localhost/pda"),
                Route::Session(FullJid::new("romeo@localhost/pda").unwrap()),
                Some("romeo@localhost"),
            ),
            (items_of("pubsub.localhost"), Route::PubsubDomain, None),
            (items_of("chat.localhost"), Route::RoomsService, None),
            (
                "<presence to='characters@chat.localhost/JC'/>".into(),
                Route::Room,
                None,
            ),
            (
                "<message type='groupchat' to='characters@chat.localhost'/>".into(),
                Route::Room,
                None,
            ),
            ("<presence to='chat.localhost'/>".into(), Route::ServiceUnavailable, None),
            (items_of("montague.lit"), Route::Remote, None),
            (
                format!("<iq type='get' id='1'>{blocklist}</iq>"),
                Route::Blocking,
                None,
            ),
            (
                format!("<iq type='get' id='1' to='juliet@localhost'>{blocklist}</iq>"),
                Route::Blocking,
                None,
            ),
            (
                "<iq type='get' id='1' to='romeo@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>".into(),
                Route::Pep {
                    account: bare("romeo@localhost"),
                    own_presence: false,
                },
                Some("romeo@localhost"),
            ),
            (
                "<iq type='get' id='1' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>".into(),
                Route::Pep {
                    account: bare("juliet@localhost"),
                    own_presence: false,
                },
                None,
            ),
            (
                "<iq type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>".into(),
                Route::Pep {
                    account: bare("juliet@localhost"),
                    own_presence: false,
                },
                None,
            ),
            (
                "<iq type='get' id='1' to='romeo@localhost'><query xmlns='jabber:iq:last'/></iq>".into(),
                Route::LastActivity {
                    account: bare("romeo@localhost"),
                },
                None,
            ),
            (
                "<iq type='get' id='1' to='localhost'><query xmlns='jabber:iq:last'/></iq>".into(),
                Route::ServerIq(Target::Domain),
                None,
            ),
            (
                "<iq type='set' id='1'><vCard xmlns='vcard-temp'><FN>J</FN></vCard></iq>".into(),
                Route::Stored {
                    account: bare("juliet@localhost"),
                },
                None,
            ),
            (
                "<iq type='get' id='1' to='romeo@localhost'><vCard xmlns='vcard-temp'/></iq>".into(),
                Route::Stored {
                    account: bare("romeo@localhost"),
                },
                Some("romeo@localhost"),
            ),
            (
                "<iq type='get' id='1' to='juliet@localhost'><query xmlns='jabber:iq:private'><x xmlns='urn:x'/></query></iq>".into(),
                Route::Stored {
                    account: bare("juliet@localhost"),
                },
                None,
            ),
            // Another's private storage tells nothing of what it holds (XEP-0049 §2.3).
            (
                "<iq type='get' id='1' to='romeo@localhost'><query xmlns='jabber:iq:private'><x xmlns='storage:bookmarks'/></query></iq>".into(),
                Route::ServiceUnavailable,
                None,
            ),
            // Someone else's blocklist is nobody's business.
            (
                format!("<iq type='get' id='1' to='romeo@localhost'>{blocklist}</iq>"),
                Route::ServiceUnavailable,
                Some("romeo@localhost"),
            ),
            (
                format!("<iq type='set' id='1'>{roster}</iq>"),
                Route::Roster,
                None,
            ),
            (
                format!("<iq type='result' id='1'>{roster}</iq>"),
                Route::ServerIq(Target::Account),
                None,
            ),
            (
                "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>".into(),
                Route::ServerIq(Target::Account),
                None,
            ),
            (
                "<iq type='get' id='1' to='juliet@localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
                    .into(),
                Route::ServerIq(Target::Account),
                None,
            ),
            (
                "<iq type='get' id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>".into(),
                Route::ServerIq(Target::Domain),
                None,
            ),
            (
                "<iq type='get' id='1' to='localhost/x'><ping xmlns='urn:xmpp:ping'/></iq>".into(),
                Route::ServiceUnavailable,
                None,
            ),
            // RFC 6120 §8.2.3: a request has exactly one payload, wherever it goes.
            (
                "<iq type='get' id='1' to='localhost/x'/>".into(),
                Route::BadRequest,
                None,
            ),
            (
                "<iq type='set' id='1' to='romeo@localhost/orchard'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>".into(),
                Route::BadRequest,
                Some("romeo@localhost"),
            ),
            (
                "<message><body>hi</body></message>".into(),
                Route::Account(bare("juliet@localhost")),
                None,
            ),
            ("<presence/>".into(), Route::PresenceBroadcast, None),
            (
                "<presence type='unavailable'/>".into(),
                Route::PresenceBroadcast,
                None,
            ),
            // To one's own bare JID: the broadcast too (audit round 27: it went to the other
            // resources only).
            (
                "<presence to='juliet@localhost'/>".into(),
                Route::PresenceBroadcast,
                None,
            ),
            (
                "<presence type='unavailable' to='Juliet@localhost'/>".into(),
                Route::PresenceBroadcast,
                None,
            ),
            (
                "<presence to='juliet@localhost/balcony'/>".into(),
                Route::Session(FullJid::new("juliet@localhost/balcony").unwrap()),
                None,
            ),
            ("<presence type='subscribe'/>".into(), Route::Drop, None),
            (
                "<presence type='probe' to='romeo@localhost'/>".into(),
                Route::Probe {
                    contact: bare("romeo@localhost"),
                },
                Some("romeo@localhost"),
            ),
            (
                "<presence type='subscribe' to='romeo@localhost/pda'/>".into(),
                Route::Subscription {
                    contact: bare("romeo@localhost"),
                    kind: SubscriptionKind::Subscribe,
                },
                Some("romeo@localhost"),
            ),
            (
                "<presence type='unsubscribed' to='romeo@localhost'/>".into(),
                Route::Subscription {
                    contact: bare("romeo@localhost"),
                    kind: SubscriptionKind::Unsubscribed,
                },
                Some("romeo@localhost"),
            ),
            (
                "<presence to='pubsub.localhost'/>".into(),
                Route::Drop,
                None,
            ),
            (
                "<message to='pubsub.localhost'/>".into(),
                Route::PubsubDomain,
                None,
            ),
            (answer("localhost"), Route::AuthorizationAnswer, None),
            (
                "<message type='chat' to='localhost'><body>hi</body></message>".into(),
                Route::ServiceUnavailable,
                None,
            ),
            (
                "<message type='headline' to='localhost'/>".into(),
                Route::Drop,
                None,
            ),
            ("<presence to='localhost'/>".into(), Route::Drop, None),
            // The seed's Ex. 11 sends the answer to a server, whichever.
            (answer("capulet.lit"), Route::AuthorizationAnswer, None),
            (answer("juliet@localhost"), Route::AuthorizationAnswer, None),
            (
                answer("romeo@localhost"),
                Route::Account(bare("romeo@localhost")),
                Some("romeo@localhost"),
            ),
            (
                "<message to='romeo@montague.lit'/>".into(),
                Route::Remote,
                Some("romeo@montague.lit"),
            ),
            (
                "<presence type='subscribed' to='romeo@montague.lit'/>".into(),
                Route::Subscription {
                    contact: bare("romeo@montague.lit"),
                    kind: SubscriptionKind::Subscribed,
                },
                Some("romeo@montague.lit"),
            ),
            (
                "<presence type='unsubscribed' to='romeo@montague.lit'/>".into(),
                Route::Subscription {
                    contact: bare("romeo@montague.lit"),
                    kind: SubscriptionKind::Unsubscribed,
                },
                Some("romeo@montague.lit"),
            ),
            (
                "<presence type='subscribe' to='romeo@montague.lit'/>".into(),
                Route::Subscription {
                    contact: bare("romeo@montague.lit"),
                    kind: SubscriptionKind::Subscribe,
                },
                Some("romeo@montague.lit"),
            ),
            (
                "<presence type='probe' to='romeo@montague.lit'/>".into(),
                Route::Remote,
                Some("romeo@montague.lit"),
            ),
            (
                "<presence type='subscribe' to='tavern@chat.localhost'/>".into(),
                Route::ServiceUnavailable,
                None,
            ),
            (
                "<presence type='subscribed' to='node@pubsub.localhost'/>".into(),
                Route::ServiceUnavailable,
                None,
            ),
            ("<message to='localhost'/>".into(), Route::ServiceUnavailable, None),
            (
                "<message to='romeo@localhost/pda'/>".into(),
                Route::Session(FullJid::new("romeo@localhost/pda").unwrap()),
                Some("romeo@localhost"),
            ),
            (
                "<presence to='juliet@localhost/chamber'/>".into(),
                Route::Session(FullJid::new("juliet@localhost/chamber").unwrap()),
                None,
            ),
            (
                "<message to='romeo@localhost'/>".into(),
                Route::Account(bare("romeo@localhost")),
                Some("romeo@localhost"),
            ),
            (
                "<iq type='get' id='1' to='romeo@localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
                    .into(),
                Route::ServiceUnavailable,
                Some("romeo@localhost"),
            ),
            (
                "<presence to='romeo@localhost'/>".into(),
                Route::Account(bare("romeo@localhost")),
                Some("romeo@localhost"),
            ),
        ];
        for (xml, route, peer) in cases {
            let expected = Classified {
                route,
                peer: peer.map(bare),
            };
            let el = stanza(&xml);
            let here = Addresses {
                domain: "localhost",
                pubsub: "pubsub.localhost",
                rooms: "chat.localhost",
            };
            let got = classify(&el, &FullJid::new(ME).unwrap(), here);
            assert_eq!(got, expected, "{xml}");
        }
    }
}
