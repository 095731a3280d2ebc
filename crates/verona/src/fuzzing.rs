//! The parsers of the classic queries every logged-in user can send (RFC 6121 roster sets,
//! XEP-0191 block/unblock, presence and presence publishes, XEP-0045 joins, room messages,
//! invitations and configuration forms, XEP-0313 queries, the router's table), for the
//! fuzz targets of `crates/verona-fuzz`. Their modules are private to this crate; this one
//! exposes the functions as the server calls them, and nothing else. Not an API.

use jid::{BareJid, FullJid};
use minidom::Element;

use crate::c2s::route;
pub use crate::eventing::archive::{
    Archived, MAX_PAGE, Query as ArchiveQuery, parse as archive_query, select as archive_page,
};
pub use crate::eventing::blocking::{Command, item as blocking_item, parse_set as blocking_set};
pub use crate::eventing::groupchat::{
    History, RoomPresence, invitees, parse_config as room_config, room_presence, said,
};
pub use crate::eventing::presence::{PresencePublish, SubscriptionKind, vet, vet_presence_publish};
pub use crate::eventing::roster::{RosterSet, parse_set as roster_set, set_contact};
pub use crate::iq::Target;
pub use crate::xml::StanzaError;

/// The router's [`route::Route`], row for row: that one is private to the session code. The
/// exhaustive match in [`classify`] keeps the two in step.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    JidMalformed,
    BadRequest,
    Pep {
        account: BareJid,
        own_presence: bool,
    },
    LastActivity {
        account: BareJid,
    },
    Stored {
        account: BareJid,
    },
    Blocking,
    Roster,
    PresenceBroadcast,
    Probe {
        contact: BareJid,
    },
    Subscription {
        contact: BareJid,
        kind: SubscriptionKind,
    },
    PubsubDomain,
    RoomsService,
    Room,
    AuthorizationAnswer,
    Remote,
    ServerIq(Target),
    ServiceUnavailable,
    Session(FullJid),
    Account(BareJid),
    Drop,
}

/// How the router classifies a stanza from a bound session `me`, on the server of `domain`
/// whose pubsub service is `pubsub`: its route, and the other local account it is for when
/// XEP-0191 blocking applies.
pub fn classify(
    el: &Element,
    me: &FullJid,
    domain: &str,
    pubsub: &str,
) -> (Route, Option<BareJid>) {
    let rooms = format!("chat.{domain}");
    let here = route::Addresses {
        domain,
        pubsub,
        rooms: &rooms,
    };
    let classified = route::classify(el, me, here);
    let route = match classified.route {
        route::Route::JidMalformed => Route::JidMalformed,
        route::Route::BadRequest => Route::BadRequest,
        route::Route::Pep {
            account,
            own_presence,
        } => Route::Pep {
            account,
            own_presence,
        },
        route::Route::Stored { account } => Route::Stored { account },
        route::Route::LastActivity { account } => Route::LastActivity { account },
        route::Route::Blocking => Route::Blocking,
        route::Route::Roster => Route::Roster,
        route::Route::PresenceBroadcast => Route::PresenceBroadcast,
        route::Route::Probe { contact } => Route::Probe { contact },
        route::Route::Subscription { contact, kind } => Route::Subscription { contact, kind },
        route::Route::PubsubDomain => Route::PubsubDomain,
        route::Route::RoomsService => Route::RoomsService,
        route::Route::Room => Route::Room,
        route::Route::AuthorizationAnswer => Route::AuthorizationAnswer,
        route::Route::Remote => Route::Remote,
        route::Route::ServerIq(target) => Route::ServerIq(target),
        route::Route::ServiceUnavailable => Route::ServiceUnavailable,
        route::Route::Session(full) => Route::Session(full),
        route::Route::Account(bare) => Route::Account(bare),
        route::Route::Drop => Route::Drop,
    };
    (route, classified.peer)
}
