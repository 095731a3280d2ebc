//! Group chat (XEP-0207 §5, DESIGN §2): `chat.<domain>` is a pubsub service whose nodes are
//! rooms. Being in a room is a temporary subscription with a unique `roomnick` (Ex. 13);
//! saying something is a publish of a `<message/>` (Ex. 16), notified to every occupant with the
//! speaker as `replyto` (Ex. 17); the room's items are its history. The classic view is
//! XEP-0045: a join presence is that subscription, a groupchat message that publish, and
//! occupants who joined classically get `<message type='groupchat' from='room/nick'>` and
//! occupant presence built here from vetted fields, never a stored payload forwarded.

use std::collections::BTreeSet;
use std::time::SystemTime;

use jid::{BareJid, FullJid, Jid};
use minidom::{Element, Node};
use verona_pubsub::{
    AccessModel, Affiliation, ConfigField, ItemReply, Limits, MaxItems, NodeConfig, ServiceConfig,
    SubscriptionOptionField, SubscriptionOptions,
};

use crate::jids;
use crate::xml::{BuilderExt, StanzaError, builder, error_reply, ns, set_attr, text_child};

/// The subscription option naming an occupant's nick (Ex. 13).
pub const NICK_OPTION: &str = "roomnick";
/// The subscription option marking an occupant who joined with XEP-0045 presence: it gets the
/// classic rendering.
pub const MUC_OPTION: &str = "verona#muc";
/// The subscription option holding a role a moderator gave an occupant for this stay (voice
/// granted or taken, moderator made): set by the room only, never by a subscriber.
pub const ROLE_OPTION: &str = "verona#role";
/// The subscription option marking an occupant that asked for voice in this stay: one request
/// reaches the moderators, not a stream of them. Set by the room only.
pub const VOICE_ASKED_OPTION: &str = "verona#voice_asked";
/// History a classic join gets when it does not say (XEP-0045 §7.2.15 leaves it to the
/// service).
pub const DEFAULT_HISTORY: usize = 20;

/// `chat.<domain>`'s configuration: the engine's group chat preset, the server's limits,
/// notifications naming the speaker (`replyto`), and the options of occupants. The service
/// itself (`service`) acts as owner for what the room's admins and moderators may do, once
/// the view has checked their XEP-0045 rights.
pub fn rooms_config(limits: Limits, service: BareJid) -> ServiceConfig {
    let mut config = ServiceConfig::groupchat();
    config.limits = limits;
    // A room notifies at every message: its recipient list is kept whatever its size.
    config.limits.keep_recipients_from = 0;
    config.admins.insert(service);
    config.node_defaults.itemreply = ItemReply::Publisher;
    for (var, default) in ROOM_OPTIONS {
        config
            .node_defaults
            .extra
            .insert((*var).to_owned(), vec![(*default).to_owned()]);
    }
    // Lists, empty at first; and who may invite, unset until the owner says (see
    // [`occupants_invite`]).
    for list in [
        ADMINS,
        NICKS,
        BAN_REASONS,
        super::room_vcard::FIELD,
        ALLOW_INVITES,
        SUBJECT,
    ] {
        config
            .node_defaults
            .extra
            .insert(list.to_owned(), Vec::new());
    }
    config
        .node_defaults
        .extra
        .insert(LOCKED.to_owned(), vec!["0".to_owned()]);
    let options = [MUC_OPTION, ROLE_OPTION, VOICE_ASKED_OPTION];
    for option in options.into_iter().chain(super::shown::OPTIONS) {
        config
            .custom_subscription_options
            .insert(option.to_owned(), SubscriptionOptionField { unique: false });
    }
    config
}

/// The XEP-0045 room options a room keeps as node configuration beyond pubsub's own fields,
/// with their defaults: rooms persist (they are nodes) and are listed, only moderators change
/// the subject (XEP-0045 §8.1: "By default, only users with a role of 'moderator' SHOULD be
/// allowed to change the subject"), there is no limit on occupants, everyone has voice and no
/// password is asked.
/// (The admins, a list, default to none; who may invite follows the room's membership until
/// set, see [`occupants_invite`].)
const ROOM_OPTIONS: &[(&str, &str)] = &[
    (PERSISTENT, "1"),
    (PUBLIC, "1"),
    (CHANGE_SUBJECT, "0"),
    (MAX_USERS, "none"),
    (WHOIS, "anyone"),
    (MODERATED, "0"),
    (PASSWORD_PROTECTED, "0"),
    (SECRET, ""),
    (ALLOW_PM, "anyone"),
];
const PERSISTENT: &str = "muc#roomconfig_persistentroom";
const PUBLIC: &str = "muc#roomconfig_publicroom";
const CHANGE_SUBJECT: &str = "muc#roomconfig_changesubject";
const MAX_USERS: &str = "muc#roomconfig_maxusers";
const WHOIS: &str = "muc#roomconfig_whois";
const MODERATED: &str = "muc#roomconfig_moderatedroom";
const PASSWORD_PROTECTED: &str = "muc#roomconfig_passwordprotectedroom";
const SECRET: &str = "muc#roomconfig_roomsecret";
const ADMINS: &str = "muc#roomconfig_roomadmins";
/// The nicks accounts registered with the room (XEP-0045 §7.10), as `jid nick` values.
const NICKS: &str = "verona#registered_nicks";
/// Why each outcast was banned (XEP-0045 §9.2 lists it), as `jid reason` values.
const BAN_REASONS: &str = "verona#ban_reasons";
/// A room made by a join and not configured by its owner yet (XEP-0045 §10.1.1). Kept with
/// the configuration, so that the room list, read from storage whatever shard hosts the room,
/// leaves it out as the room itself refuses others.
const LOCKED: &str = "verona#locked";
const ALLOW_INVITES: &str = "muc#roomconfig_allowinvites";
/// The room's current subject (XEP-0045 §8.1): the item [`said`] that set it, then when it was
/// set. Kept with the configuration rather than only among the items, whose ring a busy room
/// (or one keeping no history) turns over, and which a restart would not bring back alike.
const SUBJECT: &str = "verona#subject";
const ALLOW_PM: &str = "muc#roomconfig_allowpm";
const REQUEST: &str = "http://jabber.org/protocol/muc#request";
const REGISTER: &str = "http://jabber.org/protocol/muc#register";
pub const IQ_REGISTER: &str = "jabber:iq:register";
/// XEP-0045 §10.1.4: asking the service for a unique room name.
pub const MUC_UNIQUE: &str = "http://jabber.org/protocol/muc#unique";
const ROOM_CONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";

/// The value of a room option.
fn option<'a>(config: &'a NodeConfig, var: &str) -> Option<&'a str> {
    config.extra.get(var)?.first().map(String::as_str)
}

fn truthy(value: Option<&str>) -> bool {
    matches!(value, Some("1" | "true"))
}

/// Whether the room is kept when its last occupant leaves.
pub fn is_persistent(config: &NodeConfig) -> bool {
    truthy(option(config, PERSISTENT))
}

/// Whether the room is listed in the service's disco#items.
pub fn is_public(config: &NodeConfig) -> bool {
    truthy(option(config, PUBLIC))
}

/// Whether the room was made by a join and its owner has not configured it yet: it does not
/// exist for anyone else (XEP-0045 §7.2.10).
pub fn is_locked(config: &NodeConfig) -> bool {
    truthy(option(config, LOCKED))
}

/// The configuration field that opens a locked room (its owner's first configuration).
pub fn opened() -> ConfigField {
    ConfigField::Extra {
        var: LOCKED.to_owned(),
        values: vec!["0".to_owned()],
    }
}

/// A native owner's configuration form, made to open the room as any configuration by its
/// owner does (XEP-0045 §10.1.1); whether a room is locked is the server's to say, never the
/// form's, and so is its subject, which only a subject change sets (or an owner could put
/// words in any occupant's mouth).
pub fn open_by_form(form: &mut Element) {
    let children: Vec<Element> = form.take_contents_as_children().collect();
    for child in children {
        if !matches!(child.attr("var"), Some(LOCKED | SUBJECT)) {
            form.append_child(child);
        }
    }
    if form.attr("type") == Some("submit") {
        let field = builder("field", ns::DATA_FORMS)
            .with("var", LOCKED)
            .append(builder("value", ns::DATA_FORMS).append("0"))
            .build();
        form.append_child(field);
    }
}

/// Whether occupants other than the moderators may change the subject.
pub fn occupants_change_subject(config: &NodeConfig) -> bool {
    truthy(option(config, CHANGE_SUBJECT))
}

/// Whether only the owners see occupants' real JIDs (XEP-0045 semi-anonymous): the others
/// see nicks, and `replyto` names `room/nick`.
pub fn is_semi_anonymous(config: &NodeConfig) -> bool {
    option(config, WHOIS) == Some("moderators")
}

/// A room's configuration form as a native owner sends it (a create's, or `pubsub#owner`
/// configure): `pubsub#itemreply` follows `muc#roomconfig_whois` as in the XEP-0045 form and
/// is never set apart from it, or a semi-anonymous room would name its speakers' real JIDs to
/// every native occupant. `Err` for a `whois` not offered.
pub fn align_itemreply(form: &mut Element) -> Result<(), String> {
    let mut whois = None;
    let children: Vec<Element> = form.take_contents_as_children().collect();
    for child in children {
        match child.attr("var") {
            Some("pubsub#itemreply") => continue,
            Some(WHOIS) => {
                let value = child.get_child("value", ns::DATA_FORMS).map(Element::text);
                whois = Some(value.unwrap_or_default());
            }
            _ => {}
        }
        form.append_child(child);
    }
    let itemreply = match whois.as_deref() {
        None => return Ok(()),
        Some("anyone" | "") => "publisher",
        Some("moderators") => "owner",
        Some(other) => return Err(format!("{WHOIS}: not offered: {other}")),
    };
    let field = builder("field", ns::DATA_FORMS)
        .with("var", "pubsub#itemreply")
        .append(builder("value", ns::DATA_FORMS).append(itemreply))
        .build();
    form.append_child(field);
    Ok(())
}

/// Whether occupants other than moderators may invite others (`muc#roomconfig_allowinvites`),
/// into a members-only room making them members. Until the owner says, anyone may invite into
/// an open room and only admins and owners into a members-only one (XEP-0045 §7.8.2: there,
/// inviting is keeping the member list).
pub fn occupants_invite(config: &NodeConfig) -> bool {
    match option(config, ALLOW_INVITES) {
        Some(value) => truthy(Some(value)),
        None => config.access_model != AccessModel::Whitelist,
    }
}

/// Whether an occupant of `role` may send private messages (`muc#roomconfig_allowpm`).
pub fn may_message_privately(config: &NodeConfig, role: Role) -> bool {
    match option(config, ALLOW_PM) {
        Some("none") => false,
        Some("moderators") => role == Role::Moderator,
        Some("participants") => role >= Role::Participant,
        _ => true,
    }
}

/// Whether only occupants with voice speak: newcomers without an affiliation are visitors.
pub fn is_moderated(config: &NodeConfig) -> bool {
    truthy(option(config, MODERATED))
}

/// The password a join must give, if the room asks for one.
pub fn password(config: &NodeConfig) -> Option<&str> {
    if truthy(option(config, PASSWORD_PROTECTED)) {
        option(config, SECRET).filter(|secret| !secret.is_empty())
    } else {
        None
    }
}

/// The room's admins (XEP-0045 admins are members the room lists as such).
pub fn admins(config: &NodeConfig) -> &[String] {
    config.extra.get(ADMINS).map_or(&[], Vec::as_slice)
}

/// The admins a parsed configuration form lists, if it lists them.
pub fn admins_in(fields: &[ConfigField]) -> Option<BTreeSet<BareJid>> {
    fields.iter().find_map(|field| match field {
        ConfigField::Extra { var, values } if var == ADMINS => Some(
            values
                .iter()
                .filter_map(|value| jids::parse_bare(value).ok())
                .collect(),
        ),
        _ => None,
    })
}

/// The configuration field listing the room's admins, as `admins`.
pub fn admins_field(admins: &BTreeSet<BareJid>) -> ConfigField {
    ConfigField::Extra {
        var: ADMINS.to_owned(),
        values: admins.iter().map(|jid| jid.to_string()).collect(),
    }
}

/// The nick `jid` registered with the room, if it did.
pub fn registered_nick<'a>(config: &'a NodeConfig, jid: &BareJid) -> Option<&'a str> {
    registered(config)
        .find(|(who, _)| *who == jid.as_str())
        .map(|(_, nick)| nick)
}

/// The reason given when `jid` was banned, if one was.
pub fn ban_reason<'a>(config: &'a NodeConfig, jid: &BareJid) -> Option<&'a str> {
    ban_reasons(config)
        .find(|(who, _)| *who == jid.as_str())
        .map(|(_, reason)| reason)
}

fn ban_reasons(config: &NodeConfig) -> impl Iterator<Item = (&str, &str)> {
    config
        .extra
        .get(BAN_REASONS)
        .into_iter()
        .flatten()
        .filter_map(|value| value.split_once(' '))
}

/// The configuration field giving `jid`'s ban `reason` (already bounded, see
/// [`bounded_reason`]), or forgetting it (`None`: no reason given, or no longer banned).
pub fn ban_reason_field(config: &NodeConfig, jid: &BareJid, reason: Option<&str>) -> ConfigField {
    let values = ban_reasons(config)
        .filter(|(who, _)| *who != jid.as_str())
        .map(|(who, reason)| format!("{who} {reason}"))
        .chain(reason.map(|reason| format!("{jid} {reason}")))
        .collect();
    ConfigField::Extra {
        var: BAN_REASONS.to_owned(),
        values,
    }
}

/// Whether a nick is spaced as RFC 8266's nickname profile leaves one: no space before or
/// after it and never two in a row. Others would pass for someone else's (`Bob ` for `Bob`).
pub fn is_tidy_nick(nick: &str) -> bool {
    nick.trim() == nick && !nick.contains("  ")
}

/// Who registered `nick` with the room, if anyone did.
pub fn nick_owner<'a>(config: &'a NodeConfig, nick: &str) -> Option<&'a str> {
    registered(config)
        .find(|(_, n)| *n == nick)
        .map(|(who, _)| who)
}

fn registered(config: &NodeConfig) -> impl Iterator<Item = (&str, &str)> {
    config
        .extra
        .get(NICKS)
        .into_iter()
        .flatten()
        .filter_map(|value| value.split_once(' '))
}

/// The configuration field registering `nick` for `jid` (and whatever it had before, gone).
/// A nick is one account's: whoever else had it registered has it no more (an admin's
/// reservation, XEP-0045 §9.3, overrides; registering in-band refuses a taken nick first).
pub fn register_nick(config: &NodeConfig, jid: &BareJid, nick: &str) -> ConfigField {
    let values = registered(config)
        .filter(|(who, held)| *who != jid.as_str() && *held != nick)
        .map(|(who, nick)| format!("{who} {nick}"))
        .chain(std::iter::once(format!("{jid} {nick}")))
        .collect();
    ConfigField::Extra {
        var: NICKS.to_owned(),
        values,
    }
}

/// The configuration field that forgets the nick `jid` registered.
pub fn unregister_nick(config: &NodeConfig, jid: &BareJid) -> ConfigField {
    let values = registered(config)
        .filter(|(who, _)| *who != jid.as_str())
        .map(|(who, nick)| format!("{who} {nick}"))
        .collect();
    ConfigField::Extra {
        var: NICKS.to_owned(),
        values,
    }
}

/// The registration form of a room (XEP-0045 §7.10), or what an account already registered.
pub fn register_query(registered: Option<&str>) -> Element {
    let query = builder("query", IQ_REGISTER);
    if let Some(nick) = registered {
        return query
            .append(builder("registered", IQ_REGISTER).build())
            .append(text_child("username", IQ_REGISTER, nick))
            .build();
    }
    let form_type = builder("field", ns::DATA_FORMS)
        .with("var", "FORM_TYPE")
        .with("type", "hidden")
        .append(text_child("value", ns::DATA_FORMS, REGISTER))
        .build();
    let nick = builder("field", ns::DATA_FORMS)
        .with("var", "muc#register_roomnick")
        .with("type", "text-single")
        .with("label", "Nick")
        .append(builder("required", ns::DATA_FORMS).build())
        .build();
    let form = builder("x", ns::DATA_FORMS)
        .with("type", "form")
        .append(form_type)
        .append(nick)
        .build();
    query.append(form).build()
}

/// The nick a submitted registration asks for; `None` when the form names none.
pub fn register_submission(query: &Element) -> Option<String> {
    let form = query.get_child("x", ns::DATA_FORMS)?;
    let nick = form_value(form, "muc#register_roomnick")?;
    (!nick.is_empty()).then_some(nick)
}

/// A submitted form's value of `var`.
fn form_value(form: &Element, var: &str) -> Option<String> {
    form.children()
        .filter(|c| c.is("field", ns::DATA_FORMS))
        .find(|field| field.attr("var") == Some(var))
        .and_then(|field| field.get_child("value", ns::DATA_FORMS))
        .map(Element::text)
}

/// The room a stanza to `chat.<domain>` itself is about, for routing it to the room's shard:
/// the node a pubsub request or a disco query names, or the `pubsub#node` of an authorization
/// answer or of the get-pending step that chose it (XEP-0060 §8.7.2). `None` for requests
/// about the service as a whole.
pub fn addressed_room(stanza: &Element) -> Option<String> {
    let named = |el: &Element| {
        el.attr("node")
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
    };
    stanza.children().find_map(|child| {
        if child.is("pubsub", ns::PUBSUB) || child.is("pubsub", ns::PUBSUB_OWNER) {
            child.children().find_map(named)
        } else if child.is("query", ns::DISCO_INFO) || child.is("query", ns::DISCO_ITEMS) {
            named(child)
        } else if child.is("x", ns::DATA_FORMS) {
            form_value(child, "pubsub#node").filter(|node| !node.is_empty())
        } else if child.is("command", ns::COMMANDS) && child.attr("node") == Some(ns::GET_PENDING) {
            let form = child.get_child("x", ns::DATA_FORMS)?;
            form_value(form, "pubsub#node").filter(|node| !node.is_empty())
        } else {
            None
        }
    })
}

/// A message from the room to an occupant with status codes (XEP-0045 §10.2.1: 104 a
/// configuration change, 172 now non-anonymous, 173 now semi-anonymous).
pub fn room_notice(room: &BareJid, to: &Jid, codes: &[u16]) -> Element {
    let statuses = codes.iter().map(|code| {
        builder("status", ns::MUC_USER)
            .with("code", code.to_string())
            .build()
    });
    builder("message", ns::CLIENT)
        .with("type", "groupchat")
        .with("from", room.as_str())
        .with("to", to.as_str())
        .append(builder("x", ns::MUC_USER).append_all(statuses).build())
        .build()
}

/// The notice of an affiliation change of someone not in the room (XEP-0045 §9, §10: as
/// Prosody sends it to the occupants), with 301 for a ban, and the reason given.
pub fn affiliation_notice(
    room: &BareJid,
    to: &Jid,
    jid: &BareJid,
    affiliation: RoomAffiliation,
    reason: Option<&str>,
) -> Element {
    let item = builder("item", ns::MUC_USER)
        .with("jid", jid.as_str())
        .with("affiliation", affiliation.name())
        .append_all(reason.map(|reason| text_child("reason", ns::MUC_USER, reason)))
        .build();
    let banned = (affiliation == RoomAffiliation::Outcast)
        .then(|| builder("status", ns::MUC_USER).with("code", "301").build());
    builder("message", ns::CLIENT)
        .with("from", room.as_str())
        .with("to", to.as_str())
        .append(
            builder("x", ns::MUC_USER)
                .append_all(banned)
                .append(item)
                .build(),
        )
        .build()
}

/// A voice form sent to a room (XEP-0045 §7.13, §8.6): a visitor asking, or a moderator's
/// answer about `nick`.
#[derive(Debug, PartialEq, Eq)]
pub enum VoiceForm {
    Request,
    Answer { nick: String, allow: bool },
}

/// Reads a message to a room as a voice form, if it is one.
pub fn voice_form(message: &Element) -> Option<VoiceForm> {
    let form = message
        .children()
        .find(|c| c.is("x", ns::DATA_FORMS) && c.attr("type") == Some("submit"))?;
    if form_value(form, "FORM_TYPE").as_deref() != Some(REQUEST) {
        return None;
    }
    match form_value(form, "muc#request_allow") {
        None => Some(VoiceForm::Request),
        Some(allow) => Some(VoiceForm::Answer {
            nick: form_value(form, "muc#roomnick")?,
            allow: matches!(allow.as_str(), "1" | "true"),
        }),
    }
}

/// The approval form a moderator gets for a visitor's voice request (§8.6).
pub fn voice_request(room: &BareJid, to: &Jid, jid: Option<&Jid>, nick: &str) -> Element {
    let field = |var: &str, kind: &str, label: &str, value: &str| {
        builder("field", ns::DATA_FORMS)
            .with("var", var)
            .with("type", kind)
            .with("label", label)
            .append(text_child("value", ns::DATA_FORMS, value))
            .build()
    };
    let form = builder("x", ns::DATA_FORMS)
        .with("type", "form")
        .append(text_child("title", ns::DATA_FORMS, "Voice request"))
        .append(field("FORM_TYPE", "hidden", "", REQUEST))
        .append(field(
            "muc#role",
            "list-single",
            "Requested role",
            "participant",
        ))
        .append_all(jid.map(|jid| field("muc#jid", "jid-single", "User ID", jid.as_str())))
        .append(field("muc#roomnick", "text-single", "Room nickname", nick))
        .append(field(
            "muc#request_allow",
            "boolean",
            "Grant voice to this person?",
            "false",
        ))
        .build();
    builder("message", ns::CLIENT)
        .with("from", room.as_str())
        .with("to", to.as_str())
        .append(form)
        .build()
}

/// The `<destroy/>` occupants of a destroyed room get (§10.9), with the alternate venue, its
/// password and the reason the owner gave.
pub fn destroyed(destroy: Option<&Element>) -> Element {
    let venue = destroy
        .and_then(|d| d.attr("jid"))
        .and_then(|jid| jids::parse_bare(jid).ok());
    let text = |name: &str| {
        destroy
            .and_then(|d| d.get_child(name, ns::MUC_OWNER))
            .map(|child| bounded_reason(child.text()))
    };
    let mut element = builder("destroy", ns::MUC_USER);
    if let Some(venue) = venue {
        element = element.with("jid", venue.to_string());
    }
    // §10.9: the alternate venue's password goes with it, for the occupants to enter there.
    element
        .append_all(text("reason").map(|reason| text_child("reason", ns::MUC_USER, reason)))
        .append_all(text("password").map(|pw| text_child("password", ns::MUC_USER, pw)))
        .build()
}

/// The `<destroy/>` of a room its owner deleted natively (XEP-0060 §8.4): the alternate venue
/// is the room its `<redirect/>` names, an `xmpp:` URI (RFC 5122) of a bare JID with a local
/// part; any other redirect names none.
pub fn redirected(uri: Option<&str>) -> Element {
    let venue = uri
        .and_then(|uri| uri.strip_prefix("xmpp:"))
        .and_then(|address| address.split(['?', '#']).next())
        .and_then(|address| jids::parse_bare(address).ok())
        .filter(|venue| venue.node().is_some());
    let destroy = venue.map(|venue| {
        builder("destroy", ns::MUC_OWNER)
            .with("jid", venue.to_string())
            .build()
    });
    destroyed(destroy.as_ref())
}

/// An invitee declining (§7.8.2): whom to tell, and why.
pub fn decline(message: &Element) -> Option<(Jid, Option<String>)> {
    let decline = message
        .get_child("x", ns::MUC_USER)?
        .get_child("decline", ns::MUC_USER)?;
    let to = jids::parse(decline.attr("to")?).ok()?;
    let reason = decline.get_child("reason", ns::MUC_USER).map(Element::text);
    Some((to, reason))
}

/// The decline the room passes on to the inviter.
pub fn declined(room: &BareJid, to: &Jid, from: &BareJid, reason: Option<&str>) -> Element {
    let decline = builder("decline", ns::MUC_USER)
        .with("from", from.as_str())
        .append_all(reason.map(|reason| text_child("reason", ns::MUC_USER, reason)))
        .build();
    builder("message", ns::CLIENT)
        .with("from", room.as_str())
        .with("to", to.as_str())
        .append(builder("x", ns::MUC_USER).append(decline).build())
        .build()
}

/// An account's place in a room (XEP-0045 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoomAffiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl RoomAffiliation {
    /// The engine's affiliation and the room's list of admins, read as XEP-0045's.
    pub fn of(config: &NodeConfig, affiliation: Affiliation, jid: &BareJid) -> RoomAffiliation {
        match affiliation {
            Affiliation::Owner => RoomAffiliation::Owner,
            Affiliation::Outcast => RoomAffiliation::Outcast,
            _ if admins(config).iter().any(|admin| admin == jid.as_str()) => RoomAffiliation::Admin,
            Affiliation::Member | Affiliation::Publisher | Affiliation::PublishOnly => {
                RoomAffiliation::Member
            }
            Affiliation::None => RoomAffiliation::None,
        }
    }

    pub fn parse(name: &str) -> Option<RoomAffiliation> {
        Some(match name {
            "owner" => RoomAffiliation::Owner,
            "admin" => RoomAffiliation::Admin,
            "member" => RoomAffiliation::Member,
            "outcast" => RoomAffiliation::Outcast,
            "none" => RoomAffiliation::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RoomAffiliation::Owner => "owner",
            RoomAffiliation::Admin => "admin",
            RoomAffiliation::Member => "member",
            RoomAffiliation::Outcast => "outcast",
            RoomAffiliation::None => "none",
        }
    }

    /// The engine's affiliation for it: admins are members the room lists.
    pub fn engine(self) -> Affiliation {
        match self {
            RoomAffiliation::Owner => Affiliation::Owner,
            RoomAffiliation::Admin | RoomAffiliation::Member => Affiliation::Member,
            RoomAffiliation::Outcast => Affiliation::Outcast,
            RoomAffiliation::None => Affiliation::None,
        }
    }
}

/// An occupant's role for its stay (XEP-0045 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        Some(match name {
            "moderator" => Role::Moderator,
            "participant" => Role::Participant,
            "visitor" => Role::Visitor,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Participant => "participant",
            Role::Visitor => "visitor",
        }
    }

    /// The role an occupant has: the one a moderator gave it for this stay, or the default of
    /// its affiliation (§5.1.2: owners and admins moderate; in a moderated room only members
    /// have voice).
    pub fn of(
        config: &NodeConfig,
        affiliation: RoomAffiliation,
        options: &SubscriptionOptions,
    ) -> Role {
        if let Some(role) = options.custom.get(ROLE_OPTION).and_then(Role::parse) {
            return role;
        }
        match affiliation {
            RoomAffiliation::Owner | RoomAffiliation::Admin => Role::Moderator,
            RoomAffiliation::None if is_moderated(config) => Role::Visitor,
            _ => Role::Participant,
        }
    }
}

/// How many may be in the room at once, if limited.
pub fn max_users(config: &NodeConfig) -> Option<usize> {
    option(config, MAX_USERS)?.parse().ok()
}

/// The room's configuration form (XEP-0045 §10.2): its pubsub fields under their XEP-0045
/// names, and the room options.
pub fn config_form(config: &NodeConfig) -> Element {
    let field = |var: &str, kind: &str, label: &str, value: String| {
        builder("field", ns::DATA_FORMS)
            .with("var", var)
            .with("type", kind)
            .with("label", label)
            .append(text_child("value", ns::DATA_FORMS, value))
            .build()
    };
    let flag = |on: bool| if on { "1" } else { "0" }.to_owned();
    // XEP-0004 §3.3: a list-single field says what it may be.
    let choice = |var: &str, label: &str, value: String, options: &[&str]| {
        let mut field = field(var, "list-single", label, value);
        for option in options {
            field.append_child(
                builder("option", ns::DATA_FORMS)
                    .with("label", *option)
                    .append(text_child("value", ns::DATA_FORMS, (*option).to_owned()))
                    .build(),
            );
        }
        field
    };
    let history = match config.max_items {
        MaxItems::Count(n) => n.to_string(),
        MaxItems::Max => "max".to_owned(),
    };
    let form_type = builder("field", ns::DATA_FORMS)
        .with("var", "FORM_TYPE")
        .with("type", "hidden")
        .append(text_child("value", ns::DATA_FORMS, ROOM_CONFIG))
        .build();
    let fields = [
        form_type,
        field(
            "muc#roomconfig_roomname",
            "text-single",
            "Name",
            config.title.clone(),
        ),
        field(
            "muc#roomconfig_roomdesc",
            "text-single",
            "Description",
            config.description.clone(),
        ),
        field(
            PERSISTENT,
            "boolean",
            "Persistent",
            flag(is_persistent(config)),
        ),
        field(PUBLIC, "boolean", "Listed", flag(is_public(config))),
        field(
            "muc#roomconfig_membersonly",
            "boolean",
            "Members only",
            flag(config.access_model == AccessModel::Whitelist),
        ),
        field(
            CHANGE_SUBJECT,
            "boolean",
            "Occupants may change the subject",
            flag(occupants_change_subject(config)),
        ),
        field(
            MAX_USERS,
            "text-single",
            "Maximum occupants (none: no limit)",
            option(config, MAX_USERS).unwrap_or("none").to_owned(),
        ),
        field(
            "muc#roomconfig_historylength",
            "text-single",
            "History kept",
            history,
        ),
        choice(
            WHOIS,
            "Who sees real JIDs",
            option(config, WHOIS).unwrap_or("anyone").to_owned(),
            &["anyone", "moderators"],
        ),
        field(
            MODERATED,
            "boolean",
            "Only occupants with voice speak",
            flag(is_moderated(config)),
        ),
        field(
            ALLOW_INVITES,
            "boolean",
            "Occupants may invite others",
            flag(occupants_invite(config)),
        ),
        choice(
            ALLOW_PM,
            "Who may send private messages",
            option(config, ALLOW_PM).unwrap_or("anyone").to_owned(),
            &["anyone", "participants", "moderators", "none"],
        ),
        field(
            PASSWORD_PROTECTED,
            "boolean",
            "A password is needed to enter",
            flag(password(config).is_some()),
        ),
        field(
            SECRET,
            "text-private",
            "Password",
            option(config, SECRET).unwrap_or_default().to_owned(),
        ),
        builder("field", ns::DATA_FORMS)
            .with("var", ADMINS)
            .with("type", "jid-multi")
            .with("label", "Admins")
            .append_all(
                admins(config)
                    .iter()
                    .map(|admin| text_child("value", ns::DATA_FORMS, admin.clone())),
            )
            .build(),
    ];
    let form = builder("x", ns::DATA_FORMS)
        .with("type", "form")
        .append_all(fields)
        .build();
    builder("query", ns::MUC_OWNER).append(form).build()
}

/// The pubsub configuration a submitted room configuration form asks for; `Err` names a field
/// this server does not offer or a value it cannot take.
pub fn parse_config(form: &Element) -> Result<Vec<ConfigField>, String> {
    let mut fields = Vec::new();
    for field in form.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
        let var = field.attr("var").unwrap_or_default();
        let values: Vec<String> = field
            .children()
            .filter(|c| c.is("value", ns::DATA_FORMS))
            .map(Element::text)
            .collect();
        let value = values.first().map(String::as_str).unwrap_or_default();
        let boolean = || match value {
            "1" | "true" => Ok(true),
            "0" | "false" | "" => Ok(false),
            other => Err(format!("{var}: not a boolean: {other}")),
        };
        let extra = |value: &str| ConfigField::Extra {
            var: var.to_owned(),
            values: vec![value.to_owned()],
        };
        match var {
            "FORM_TYPE" => {}
            "muc#roomconfig_roomname" if value.len() > verona_pubsub::MAX_TITLE_BYTES => {
                let max = verona_pubsub::MAX_TITLE_BYTES;
                return Err(format!("{var}: longer than {max} bytes"));
            }
            "muc#roomconfig_roomdesc" if value.len() > verona_pubsub::MAX_TEXT_BYTES => {
                let max = verona_pubsub::MAX_TEXT_BYTES;
                return Err(format!("{var}: longer than {max} bytes"));
            }
            "muc#roomconfig_roomname" => fields.push(ConfigField::Title(value.to_owned())),
            "muc#roomconfig_roomdesc" => fields.push(ConfigField::Description(value.to_owned())),
            PERSISTENT | PUBLIC | CHANGE_SUBJECT | MODERATED | PASSWORD_PROTECTED => {
                fields.push(extra(if boolean()? { "1" } else { "0" }));
            }
            MAX_USERS => match value {
                "" | "none" | "0" => fields.push(extra("none")),
                n if n.parse::<usize>().is_ok() => fields.push(extra(n)),
                other => return Err(format!("{var}: not a number: {other}")),
            },
            "muc#roomconfig_membersonly" => fields.push(ConfigField::AccessModel(if boolean()? {
                AccessModel::Whitelist
            } else {
                AccessModel::Open
            })),
            "muc#roomconfig_historylength" | "muc#maxhistoryfetch" => match value.parse() {
                Ok(n) => fields.push(ConfigField::MaxItems(MaxItems::Count(n))),
                Err(_) => return Err(format!("{var}: not a number: {value}")),
            },
            // Semi-anonymous rooms name no publisher in what they send (`replyto` is then the
            // speaker's nick, added by the view).
            WHOIS => match value {
                "anyone" | "" => {
                    fields.push(extra("anyone"));
                    fields.push(ConfigField::ItemReply(ItemReply::Publisher));
                }
                "moderators" => {
                    fields.push(extra("moderators"));
                    fields.push(ConfigField::ItemReply(ItemReply::Owner));
                }
                other => return Err(format!("{var}: not offered: {other}")),
            },
            SECRET => fields.push(extra(value)),
            ADMINS => {
                let admins = values
                    .iter()
                    .map(|value| jids::parse_bare(value).map_err(|_| format!("{var}: {value}")))
                    .collect::<Result<BTreeSet<BareJid>, String>>()?;
                fields.push(admins_field(&admins));
            }
            ALLOW_INVITES => fields.push(extra(if boolean()? { "1" } else { "0" })),
            ALLOW_PM => match value {
                "anyone" | "participants" | "moderators" | "none" => fields.push(extra(value)),
                other => return Err(format!("{var}: not offered: {other}")),
            },
            // Other servers' and other registered fields (presence broadcast, logging,
            // language, …): Verona has their meaning as fixed behaviour, and a client that
            // sends back a form it got elsewhere is not refused for them.
            other if other.starts_with("muc#") => {}
            other => return Err(format!("{other}: not offered by this server")),
        }
    }
    // A password given without saying the room is protected protects it (as on Prosody).
    let secret_given = fields.iter().any(|field| {
        matches!(field, ConfigField::Extra { var, values } if var == SECRET
            && values.first().is_some_and(|secret| !secret.is_empty()))
    });
    let protection_said = fields
        .iter()
        .any(|field| matches!(field, ConfigField::Extra { var, .. } if var == PASSWORD_PROTECTED));
    if secret_given && !protection_said {
        fields.push(ConfigField::Extra {
            var: PASSWORD_PROTECTED.to_owned(),
            values: vec!["1".to_owned()],
        });
    }
    Ok(fields)
}

/// A private message between occupants (XEP-0045 §7.5), from `room/nick` and with what was
/// said only, marked as coming through the room.
pub fn private_message(from: &FullJid, to: &Jid, message: &Element, occupant_id: &str) -> Element {
    // Its type as sent (§7.5 allows `chat` and `normal`, which is no type).
    let mut private = builder("message", ns::CLIENT);
    if let Some(kind @ ("chat" | "normal" | "headline")) = message.attr("type") {
        private = private.with("type", kind);
    }
    let mut private = private.with("from", from.as_str()).with("to", to.as_str());
    // The sender's id, which receipts (XEP-0184) and corrections (XEP-0308) name.
    if let Some(id) = message.attr("id") {
        private = private.with("id", id);
    }
    private
        .append_all(message.children().filter(|c| spoken(c)).cloned())
        .append(builder("x", ns::MUC_USER).build())
        .append(occupant_id_element(occupant_id))
        .build()
}

/// An occupant presence as someone who may not see real JIDs gets it: without the `jid` of its
/// item and without status 100 (non-anonymous).
pub fn anonymised(mut presence: Element) -> Element {
    if let Some(x) = presence.get_child_mut("x", ns::MUC_USER) {
        for node in x.take_nodes() {
            match node {
                Node::Element(c)
                    if c.is("status", ns::MUC_USER) && c.attr("code") == Some("100") => {}
                Node::Element(c) if c.is("item", ns::MUC_USER) => {
                    let mut item = builder("item", ns::MUC_USER);
                    for ((_, name), value) in c.attrs().iter() {
                        if name.as_str() != "jid" {
                            item = item.with(name.as_str(), value.clone());
                        }
                    }
                    x.append_child(item.append_all(c.children().cloned()).build());
                }
                other => x.append_node(other),
            }
        }
    }
    presence
}

/// How many accounts one message may invite: a room does not relay a mass mailing.
pub const MAX_INVITEES: usize = 20;

/// A message inviting more than [`MAX_INVITEES`] accounts: refused whole, so that the inviter
/// gets one error and knows that nobody was invited, instead of one error per invitation past
/// the cap (as many as a stanza can hold).
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyInvitees;

/// One invitation of a message to a room (XEP-0045 §7.8.2).
#[derive(Debug)]
pub struct Invitee {
    /// As the inviter wrote it: a full JID names the session to invite (the XEP's own
    /// example), a bare JID the account.
    pub jid: Jid,
    pub reason: Option<String>,
    /// A `<continue/>` (§7.9): the one-to-one thread the room continues.
    pub continues: Option<Element>,
}

/// The accounts a message to a room invites (XEP-0045 §7.8.2), each with what its invitation
/// says, each account once; more than [`MAX_INVITEES`] of them are refused.
pub fn invitees(message: &Element) -> Result<Vec<Invitee>, TooManyInvitees> {
    let mut invited: Vec<Invitee> = Vec::new();
    let invites = message
        .get_child("x", ns::MUC_USER)
        .into_iter()
        .flat_map(|x| x.children())
        .filter(|c| c.is("invite", ns::MUC_USER));
    for invite in invites {
        let Some(to) = invite.attr("to").and_then(|to| jids::parse(to).ok()) else {
            continue;
        };
        if invited
            .iter()
            .any(|already| already.jid.to_bare() == to.to_bare())
        {
            continue;
        }
        if invited.len() == MAX_INVITEES {
            return Err(TooManyInvitees);
        }
        // Only what §7.9 defines passes on: the room writes the invitation.
        let continues = invite.get_child("continue", ns::MUC_USER).map(|c| {
            let mut continues = Element::bare("continue", ns::MUC_USER);
            if let Some(thread) = c.attr("thread") {
                set_attr(&mut continues, "thread", thread);
            }
            continues
        });
        invited.push(Invitee {
            jid: to,
            reason: invite.get_child("reason", ns::MUC_USER).map(Element::text),
            continues,
        });
    }
    Ok(invited)
}

/// The error the inviter gets for one invitation of its message the room did not send: the
/// message's error with that `<invite/>` (RFC 6120 §8.3.1 lets an error carry what it is
/// about), so that the inviter knows which of several failed.
pub fn invitation_refused(message: &Element, invitee: &Jid, error: StanzaError) -> Option<Element> {
    let mut reply = error_reply(message, error, None)?;
    let condition = reply.remove_child("error", ns::CLIENT)?;
    let invite = builder("invite", ns::MUC_USER).with("to", invitee.as_str());
    reply.append_child(builder("x", ns::MUC_USER).append(invite.build()).build());
    reply.append_child(condition);
    Some(reply)
}

/// RFC 6120 §8.3.3's defined conditions.
const DEFINED_CONDITIONS: &[&str] = &[
    "bad-request",
    "conflict",
    "feature-not-implemented",
    "forbidden",
    "gone",
    "internal-server-error",
    "item-not-found",
    "jid-malformed",
    "not-acceptable",
    "not-allowed",
    "not-authorized",
    "policy-violation",
    "recipient-unavailable",
    "redirect",
    "registration-required",
    "remote-server-not-found",
    "remote-server-timeout",
    "resource-constraint",
    "service-unavailable",
    "subscription-required",
    "undefined-condition",
    "unexpected-request",
];

/// What the inviter gets when another server bounces the invitation the room sent for its
/// message `id` (XEP-0045 §7.8.2 says nothing of it; Prosody and ejabberd tell nobody): the
/// error [`invitation_refused`] would be, with the condition and type of the `bounce` (only a
/// defined condition, not the other server's text; `service-unavailable` if it gives none),
/// so that the inviter learns the invitation went nowhere, and why.
pub fn invitation_bounced(
    room: &BareJid,
    inviter: &FullJid,
    id: Option<&str>,
    invitee: &Jid,
    bounce: &Element,
) -> Option<Element> {
    let mut message = builder("message", ns::CLIENT)
        .with("from", inviter.as_str())
        .with("to", room.as_str())
        .build();
    if let Some(id) = id {
        set_attr(&mut message, "id", id);
    }
    let mut reply = invitation_refused(&message, invitee, StanzaError::ServiceUnavailable)?;
    let error = bounce.get_child("error", ns::CLIENT);
    let condition = (error.into_iter())
        .flat_map(Element::children)
        .find(|c| c.ns() == ns::STANZAS && DEFINED_CONDITIONS.contains(&c.name()));
    if let (Some(error), Some(condition)) = (error, condition) {
        let kind = (error.attr("type"))
            .filter(|kind| ["auth", "cancel", "continue", "modify", "wait"].contains(kind))
            .unwrap_or("cancel");
        reply.remove_child("error", ns::CLIENT);
        let error = builder("error", ns::CLIENT)
            .with("type", kind)
            .append(Element::bare(condition.name(), ns::STANZAS));
        reply.append_child(error.build());
    }
    Some(reply)
}

/// The invitation the room sends on an occupant's behalf (XEP-0045 §7.8.2), with the room's
/// password if it has one.
pub fn invitation(
    room: &BareJid,
    to: &Jid,
    from: &BareJid,
    invitee: &Invitee,
    password: Option<&str>,
) -> Element {
    let reason = invitee.reason.as_deref();
    let invite = builder("invite", ns::MUC_USER)
        .with("from", from.as_str())
        .append_all(reason.map(|reason| text_child("reason", ns::MUC_USER, reason)))
        .append_all(invitee.continues.clone())
        .build();
    let x = builder("x", ns::MUC_USER)
        .append(invite)
        .append_all(password.map(|password| text_child("password", ns::MUC_USER, password)))
        .build();
    builder("message", ns::CLIENT)
        .with("type", "normal")
        .with("from", room.as_str())
        .with("to", to.as_str())
        .append(x)
        .build()
}

/// A room a classic client creates by joining it (an XEP-0045 instant room): open to anyone
/// and temporary (gone with its last occupant unless its owner makes it persistent), as
/// Prosody's and ejabberd's default rooms are; locked until its owner configures it
/// (§10.1.1).
pub fn instant_room() -> Vec<ConfigField> {
    vec![
        ConfigField::AccessModel(AccessModel::Open),
        ConfigField::Extra {
            var: PERSISTENT.to_owned(),
            values: vec!["0".to_owned()],
        },
        ConfigField::Extra {
            var: LOCKED.to_owned(),
            values: vec!["1".to_owned()],
        },
    ]
}

/// What a classic join asks for: its nick, how much history, and the password it gives.
#[derive(Debug, PartialEq, Eq)]
pub struct Join {
    pub nick: String,
    pub history: History,
    pub password: Option<String>,
}

/// How much history a join asks for (XEP-0045 §7.2.15): each limit applies.
#[derive(Debug, PartialEq, Eq)]
pub struct History {
    /// `maxstanzas`, or the service's default.
    pub stanzas: usize,
    /// `maxchars`: the messages' total size, as sent.
    pub chars: Option<usize>,
    /// `seconds` or `since`: nothing older.
    pub since: Option<SystemTime>,
}

impl History {
    fn asked(x: Option<&Element>, now: SystemTime) -> History {
        let history = x.and_then(|x| x.get_child("history", ns::MUC));
        let number = |name: &str| history.and_then(|h| h.attr(name)?.parse::<u64>().ok());
        let seconds = number("seconds").map(|s| now - std::time::Duration::from_secs(s));
        let since = history
            .and_then(|h| h.attr("since"))
            .and_then(|since| since.parse::<xmpp_parsers::date::DateTime>().ok())
            // To the millisecond the delays stamps carry: a client asks from its last one.
            .and_then(|at| u64::try_from(at.0.timestamp_millis()).ok())
            .map(|millis| std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis));
        History {
            stanzas: number("maxstanzas").map_or(DEFAULT_HISTORY, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            chars: number("maxchars").map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            since: seconds.max(since),
        }
    }

    /// Of `said` (newest first, with when each was said and its size), which to send.
    pub fn select<T>(&self, said: impl IntoIterator<Item = (T, SystemTime, usize)>) -> Vec<T> {
        let mut chars = 0usize;
        said.into_iter()
            .take(self.stanzas)
            .take_while(|(_, at, _)| self.since.is_none_or(|since| *at >= since))
            .take_while(|(_, _, size)| {
                chars += size;
                self.chars.is_none_or(|max| chars <= max)
            })
            .map(|(said, _, _)| said)
            .collect()
    }
}

/// The classic presence a session sends to `room/nick`.
#[derive(Debug, PartialEq, Eq)]
pub enum RoomPresence {
    Join(Join),
    Leave,
    /// A probe of an occupant's presence.
    Probe,
    /// Any other type: nothing to do.
    Other,
}

/// Reads a presence addressed to `room/nick`.
pub fn room_presence(stanza: &Element, to: &FullJid, now: SystemTime) -> RoomPresence {
    match stanza.attr("type") {
        None => {
            let x = stanza.get_child("x", ns::MUC);
            RoomPresence::Join(Join {
                nick: to.resource().to_string(),
                history: History::asked(x, now),
                password: x
                    .and_then(|x| x.get_child("password", ns::MUC))
                    .map(Element::text),
            })
        }
        Some("unavailable") => RoomPresence::Leave,
        Some("probe") => RoomPresence::Probe,
        Some(_) => RoomPresence::Other,
    }
}

/// The subscription options of an occupant joining as `nick`.
pub fn occupant_options(nick: &str, classic: bool) -> SubscriptionOptions {
    let mut options = SubscriptionOptions::default();
    options.custom.insert(NICK_OPTION, nick);
    if classic {
        options.custom.insert(MUC_OPTION, "1");
    }
    options
}

/// An occupant's nick, from its subscription options.
pub fn nick_of(options: &SubscriptionOptions) -> Option<&str> {
    options.custom.get(NICK_OPTION)
}

/// Whether an occupant joined with XEP-0045 presence.
pub fn is_classic(options: &SubscriptionOptions) -> bool {
    options.custom.contains_key(MUC_OPTION)
}

/// Children of a message said in a room that say nothing about who or when: those the server
/// writes itself (or that would let one occupant speak as another) are dropped.
fn spoken(child: &Element) -> bool {
    let server_written = [
        ("delay", ns::DELAY),
        ("nick", ns::NICK),
        ("addresses", ns::ADDRESS),
        ("stanza-id", "urn:xmpp:sid:0"),
        ("x", ns::MUC_USER),
        ("event", "http://jabber.org/protocol/pubsub#event"),
        ("occupant-id", ns::OCCUPANT_ID),
        ("x", "jabber:x:delay"),
        ("sent", crate::eventing::chat::CARBONS),
        ("received", crate::eventing::chat::CARBONS),
        ("result", crate::eventing::archive::NS),
    ];
    if server_written
        .iter()
        .any(|(name, namespace)| child.is(*name, *namespace))
    {
        return false;
    }
    // In the stanza's own namespace only what a message says, never an `error`.
    child.ns() != ns::CLIENT || ["body", "subject", "thread"].contains(&child.name())
}

/// Children of a kept item that its classic rendering carries: what was said, and the
/// speaker's occupant id, which only [`said`] writes.
fn rendered(child: &Element) -> bool {
    spoken(child) || child.is("occupant-id", ns::OCCUPANT_ID)
}

/// XEP-0421 occupant ids: HMAC-SHA256 under the server's secret of the room's address and
/// the occupant's real bare JID. The same person has the same id in a room across sessions,
/// nicks and restarts, other ids in other rooms, and nobody without the secret can tell whose
/// an id is (§4.1: not a hash of the JID alone).
///
/// Each of a room's presences names its occupant's id, so a join into a room of N computes N;
/// the keyed hash is prepared once and recent ids are remembered (per shard: a clone starts
/// with none).
pub struct OccupantIds {
    keyed: hmac::Hmac<sha2::Sha256>,
    /// By room, then by person; and how many in all.
    recent: std::cell::RefCell<(RecentIds, usize)>,
}

type RecentIds = std::collections::HashMap<BareJid, std::collections::HashMap<BareJid, String>>;

impl Clone for OccupantIds {
    fn clone(&self) -> Self {
        OccupantIds {
            keyed: self.keyed.clone(),
            recent: Default::default(),
        }
    }
}

impl OccupantIds {
    /// Ids remembered at most; past it they are forgotten all at once.
    const RECENT: usize = 16_384;

    pub fn new(secret: &[u8]) -> Self {
        use hmac::KeyInit;
        OccupantIds {
            keyed: hmac::Hmac::new_from_slice(secret).expect("HMAC takes any key length"),
            recent: Default::default(),
        }
    }

    /// The occupant id of `real` in `room`: 128 bits, 22 characters (at most 128 allowed).
    pub fn of(&self, room: &BareJid, real: &BareJid) -> String {
        use base64::Engine;
        use hmac::Mac;
        if let Some(id) = self
            .recent
            .borrow()
            .0
            .get(room)
            .and_then(|ids| ids.get(real))
        {
            return id.clone();
        }
        let mut mac = self.keyed.clone();
        mac.update(room.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(real.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
        let (recent, count) = &mut *self.recent.borrow_mut();
        if *count >= Self::RECENT {
            recent.clear();
            *count = 0;
        }
        let ids = recent.entry(room.clone()).or_default();
        if ids.insert(real.clone(), id.clone()).is_none() {
            *count += 1;
        }
        id
    }
}

/// `<occupant-id xmlns='urn:xmpp:occupant-id:0' id='…'/>` (XEP-0421 §3).
pub fn occupant_id_element(id: &str) -> Element {
    builder("occupant-id", ns::OCCUPANT_ID)
        .with("id", id)
        .build()
}

/// The item a message said in a room becomes (Ex. 16): one `<message xmlns='jabber:client'>`
/// with what the speaker said, the id it gave it (XEP-0045 §7.4: reflected as sent, so that
/// the speaker knows its own message) and its nick (XEP-0172), nothing else. `None` when it
/// says nothing a room keeps.
pub fn said(message: &Element, nick: &str, occupant_id: &str) -> Option<Element> {
    let children: Vec<Element> = message.children().filter(|c| spoken(c)).cloned().collect();
    if children.is_empty() {
        return None;
    }
    let mut item = builder("message", ns::CLIENT);
    if let Some(id) = message.attr("id") {
        item = item.with("id", id);
    }
    let mut item = item
        .append_all(children)
        .append(text_child("nick", ns::NICK, nick))
        .append(occupant_id_element(occupant_id))
        .build();
    crate::xml::copy_lang(message, &mut item);
    Some(item)
}

/// Whether what is said in a room is kept (its history, its archive): what a person wrote
/// ([`crate::eventing::chat::is_written`]) and anything with a subject, as Prosody's and
/// ejabberd's room histories keep; chat states, markers and receipts alone, and what asks
/// not to be kept (XEP-0334), are only passed on.
pub fn is_kept(message: &Element) -> bool {
    crate::eventing::chat::is_written(message) || message.has_child("subject", ns::CLIENT)
}

/// Whether a message changes the subject (XEP-0045 §8.1): a `<subject/>` with neither a
/// `<body/>` nor a `<thread/>` (with them it is a message that has a subject).
pub fn is_subject_change(message: &Element) -> bool {
    message.has_child("subject", ns::CLIENT)
        && !message.has_child("body", ns::CLIENT)
        && !message.has_child("thread", ns::CLIENT)
}

/// The speaker's nick in an item [`said`] built.
pub fn speaker(payload: &Element) -> Option<String> {
    payload.get_child("nick", ns::NICK).map(Element::text)
}

/// The classic rendering of an item: `<message type='groupchat' from='room/nick'>` with what
/// was said, and for history its XEP-0203 delay. What the shared renderings below must equal.
#[cfg(test)]
fn groupchat_message(
    room: &BareJid,
    to: &Jid,
    payload: &Element,
    delayed: Option<SystemTime>,
) -> Option<Element> {
    message_to(room, Some(to), payload, delayed)
}

/// A room message as the room's archive gives it (XEP-0313 §"MUC Archives"): without a `to`,
/// and with the speaker's real JID for whoever may see real JIDs (`real`).
pub fn archived_message(
    room: &BareJid,
    payload: &Element,
    real: Option<&BareJid>,
) -> Option<Element> {
    let mut message = message_to(room, None, payload, None)?;
    if let Some(real) = real {
        let item = builder("item", ns::MUC_USER)
            .with("jid", real.as_str())
            .build();
        message.append_child(builder("x", ns::MUC_USER).append(item).build());
    }
    Some(message)
}

/// A message of a room's history as every newcomer gets it (the classic rendering with its
/// XEP-0203 delay and XEP-0359 archive id): all of it but its start, which names the
/// recipient ([`recipient_start`]).
pub fn shared_history(
    room: &BareJid,
    payload: &Element,
    said_at: SystemTime,
    archive_id: &str,
) -> Option<bytes::Bytes> {
    let mut message = message_to(room, None, payload, Some(said_at))?;
    message.append_child(crate::eventing::archive::stanza_id(
        archive_id,
        room.as_str(),
    ));
    after_start(&message)
}

/// `stanza` serialized, without the start [`recipient_start`] makes for each recipient
/// (`stanza` has no `to`); `None` if it does not begin as that start does.
fn after_start(stanza: &Element) -> Option<bytes::Bytes> {
    let bytes = verona_stream::element_bytes(stanza);
    let start = format!("<{} xmlns='{}'", stanza.name(), ns::CLIENT);
    let rest = bytes.strip_prefix(start.as_bytes())?;
    Some(bytes::Bytes::copy_from_slice(rest))
}

fn message_to(
    room: &BareJid,
    to: Option<&Jid>,
    payload: &Element,
    delayed: Option<SystemTime>,
) -> Option<Element> {
    let nick = speaker(payload)?;
    let from = format!("{room}/{nick}");
    let said = payload.children().filter(|c| rendered(c)).cloned();
    let delay = delayed.map(|at| {
        builder("delay", ns::DELAY)
            .with("from", room.as_str())
            .with("stamp", verona_pubsub_xmpp::stamp(at))
            .build()
    });
    let mut message = builder("message", ns::CLIENT)
        .with("type", "groupchat")
        .with("from", from);
    if let Some(to) = to {
        message = message.with("to", to.as_str());
    }
    if let Some(id) = payload.attr("id") {
        message = message.with("id", id);
    }
    let mut message = message.append_all(said).append_all(delay).build();
    crate::xml::copy_lang(payload, &mut message);
    Some(message)
}

/// The classic rendering with its XEP-0359 archive id, for many recipients at once: all of
/// the message but its start, which names the recipient ([`recipient_start`]). A recipient's
/// copy is its start and this; both are shared, so a copy costs no allocation.
pub fn shared_groupchat(
    room: &BareJid,
    payload: &Element,
    archive_id: &str,
) -> Option<bytes::Bytes> {
    use minidom::element::escape;
    let nick = speaker(payload)?;
    let from = format!("{room}/{nick}");
    let mut rest = b" type='groupchat' from='".to_vec();
    rest.extend_from_slice(&escape(from.as_bytes()));
    rest.push(b'\'');
    if let Some(id) = payload.attr("id") {
        rest.extend_from_slice(b" id='");
        rest.extend_from_slice(&escape(id.as_bytes()));
        rest.push(b'\'');
    }
    if let Some(lang) = crate::xml::lang(payload) {
        rest.extend_from_slice(b" xml:lang='");
        rest.extend_from_slice(&escape(lang.as_bytes()));
        rest.push(b'\'');
    }
    // Serialized inside a `jabber:client` parent, so that the children need no namespace of
    // their own; the parent's start tag is then cut off. A message not kept has no place in
    // the archive to name.
    let archived =
        is_kept(payload).then(|| crate::eventing::archive::stanza_id(archive_id, room.as_str()));
    let said = builder("message", ns::CLIENT)
        .append_all(payload.children().filter(|c| rendered(c)).cloned())
        .append_all(archived)
        .build();
    let bytes = verona_stream::element_bytes(&said);
    let start = bytes.iter().position(|b| *b == b'>')?;
    rest.extend_from_slice(&bytes[start..]);
    Some(bytes::Bytes::from(rest))
}

/// The start of a `name` stanza (`message`, `presence`) to `to`, up to its other attributes:
/// what [`shared_groupchat`] and [`shared_presence`] lack. The same for every message to one
/// occupant, so it is made once per occupant.
pub fn recipient_start(name: &str, to: &Jid) -> bytes::Bytes {
    let mut start = format!("<{name} xmlns='jabber:client' to='").into_bytes();
    start.extend_from_slice(&minidom::element::escape(to.as_str().as_bytes()));
    start.push(b'\'');
    bytes::Bytes::from(start)
}

/// The configuration field keeping `said` (an item [`said`] made, a subject change) as the
/// room's subject, set at `at`.
pub fn subject_field(said: &Element, at: SystemTime) -> ConfigField {
    ConfigField::Extra {
        var: SUBJECT.to_owned(),
        values: vec![String::from(said), verona_pubsub_xmpp::stamp(at)],
    }
}

/// The room's current subject as [`subject_field`] kept it: the item that set it, and when.
/// `None` for a room whose subject was never set that way (its subject, if any, is among its
/// items, as rooms kept it before).
pub fn subject(config: &NodeConfig) -> Option<(Element, &str)> {
    let [said, at] = config.extra.get(SUBJECT)?.as_slice() else {
        return None;
    };
    let said = said.parse::<Element>().ok()?;
    (is_subject_change(&said) && speaker(&said).is_some()).then_some((said, at.as_str()))
}

/// The subject a classic join gets after the history (XEP-0045 §7.2.16): the room's, as
/// `said` (an item [`said`] made) at `stamp` (XEP-0082), from its speaker's nick, with its
/// occupant id and, as §7.2.15 asks, a XEP-0203 delay saying when it was set; or an empty
/// one from the room. It marks the end of the history either way.
pub fn subject_message(room: &BareJid, to: &Jid, said: Option<(&Element, &str)>) -> Element {
    let set = said.and_then(|(item, stamp)| {
        let text = item.get_child("subject", ns::CLIENT)?.text();
        let occupant_id = item.get_child("occupant-id", ns::OCCUPANT_ID).cloned();
        let delay = builder("delay", ns::DELAY)
            .with("from", room.as_str())
            .with("stamp", stamp)
            .build();
        let from = format!("{room}/{}", speaker(item)?);
        Some((from, text, occupant_id, Some(delay)))
    });
    let (from, text, occupant_id, delay) =
        set.unwrap_or_else(|| (room.to_string(), String::new(), None, None));
    builder("message", ns::CLIENT)
        .with("type", "groupchat")
        .with("from", from)
        .with("to", to.as_str())
        .append(text_child("subject", ns::CLIENT, text))
        .append_all(occupant_id)
        .append_all(delay)
        .build()
}

/// One occupant's presence as another (or itself) sees it: from `room/nick`, with its
/// affiliation, role and real JID (the view strips the JID for those who may not see it) and
/// the status codes that apply (110 to itself, 100 non-anonymous, 201 a new room).
#[derive(Clone)]
pub struct Occupant<'a> {
    pub room: &'a BareJid,
    pub nick: &'a str,
    pub jid: &'a Jid,
    pub affiliation: RoomAffiliation,
    pub role: Role,
    /// Its XEP-0421 occupant id.
    pub id: String,
    /// What its presence shows ([`shown`]).
    pub shown: Vec<Element>,
}

pub fn occupant_presence(
    occupant: &Occupant,
    to: &Jid,
    leaving: bool,
    statuses: &[u16],
) -> Element {
    presence_of(occupant, to, leaving, statuses, None)
}

/// [`occupant_presence`] with, for a nick change (303), the new nick. An occupant's presence
/// shows its show and status, but not when it leaves.
pub fn presence_of(
    occupant: &Occupant,
    to: &Jid,
    leaving: bool,
    statuses: &[u16],
    new_nick: Option<&str>,
) -> Element {
    presence_to(occupant, Some(to), leaving, statuses, new_nick)
}

/// [`occupant_presence`] for many recipients at once: all of it but its start, which names
/// the recipient ([`recipient_start`]), as it is and as [`anonymised`] (for those who may not
/// see real JIDs). Each recipient's copy is its start and one of these, shared.
pub fn shared_presence(
    occupant: &Occupant,
    leaving: bool,
    statuses: &[u16],
    status: Option<&str>,
) -> Option<(bytes::Bytes, bytes::Bytes)> {
    let mut presence = presence_to(occupant, None, leaving, statuses, None);
    if let Some(status) = status {
        presence.append_child(builder("status", ns::CLIENT).append(status).build());
    }
    Some((after_start(&presence)?, after_start(&anonymised(presence))?))
}

fn presence_to(
    occupant: &Occupant,
    to: Option<&Jid>,
    leaving: bool,
    statuses: &[u16],
    new_nick: Option<&str>,
) -> Element {
    // A nick change's unavailable presence (303) keeps the role (XEP-0045 §7.6): the
    // occupant is not leaving.
    let role = if leaving && new_nick.is_none() {
        "none"
    } else {
        occupant.role.name()
    };
    let mut item = builder("item", ns::MUC_USER)
        .with("affiliation", occupant.affiliation.name())
        .with("role", role)
        .with("jid", occupant.jid.as_str());
    if let Some(nick) = new_nick {
        item = item.with("nick", nick);
    }
    let item = item.build();
    let codes = statuses.iter().map(|code| {
        builder("status", ns::MUC_USER)
            .with("code", code.to_string())
            .build()
    });
    let x = builder("x", ns::MUC_USER)
        .append(item)
        .append_all(codes)
        .build();
    let mut presence = builder("presence", ns::CLIENT)
        .with("from", format!("{}/{}", occupant.room, occupant.nick));
    if let Some(to) = to {
        presence = presence.with("to", to.as_str());
    }
    if leaving {
        presence = presence.with("type", "unavailable");
    }
    let shown = occupant.shown.iter().filter(|_| !leaving).cloned();
    presence
        .append_all(shown)
        .append(x)
        .append(occupant_id_element(&occupant.id))
        .build()
}

/// Characters of a kick or ban reason kept: each occupant gets its own copy of the presence
/// that carries it, so a long one would be multiplied by the room's size.
pub const MAX_REASON_CHARS: usize = 1024;

/// A removal's reason, cut to [`MAX_REASON_CHARS`].
pub fn bounded_reason(reason: String) -> String {
    cut(reason, MAX_REASON_CHARS)
}

/// `text`'s first `max` characters.
pub(super) fn cut(mut text: String, max: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
    }
    text
}

/// An occupant's unavailable presence naming who removed it and why (XEP-0045 §8.2, §9.1:
/// `<actor nick/>` and `<reason/>` in its `<item/>`).
pub fn removed_by(mut presence: Element, actor: Option<&str>, reason: Option<&str>) -> Element {
    let item = presence
        .get_child_mut("x", ns::MUC_USER)
        .and_then(|x| x.get_child_mut("item", ns::MUC_USER));
    if let Some(item) = item {
        if let Some(nick) = actor {
            item.append_child(builder("actor", ns::MUC_USER).with("nick", nick).build());
        }
        if let Some(reason) = reason {
            item.append_child(text_child("reason", ns::MUC_USER, reason));
        }
    }
    presence
}

/// The presence error a join gets (XEP-0045 §7.2.6–§7.2.9): `conflict` for a nick in use,
/// `forbidden` for a banned user, `registration-required` while the owners have not admitted
/// it.
pub fn join_error(
    to: &Jid,
    room_nick: &FullJid,
    condition: &str,
    kind: &str,
    id: Option<&str>,
) -> Element {
    let error = builder("error", ns::CLIENT)
        .with("type", kind)
        .append(builder(condition, ns::STANZAS).build())
        .build();
    let mut presence = builder("presence", ns::CLIENT)
        .with("type", "error")
        .with("from", room_nick.as_str())
        .with("to", to.as_str());
    // RFC 6120 §8.3.1: an error names the stanza it answers.
    if let Some(id) = id {
        presence = presence.with("id", id);
    }
    presence
        .append(builder("x", ns::MUC).build())
        .append(error)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_reasons_are_bounded() {
        assert_eq!(bounded_reason("Avaunt".into()), "Avaunt");
        let long = "é".repeat(MAX_REASON_CHARS + 10);
        let kept = bounded_reason(long);
        assert_eq!(kept.chars().count(), MAX_REASON_CHARS);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn a_redirect_names_a_room_only() {
        let venue = |uri| redirected(uri).attr("jid").map(str::to_owned);
        let room = Some("other@chat.localhost".to_owned());
        assert_eq!(venue(Some("xmpp:other@chat.localhost")), room);
        assert_eq!(venue(Some("xmpp:other@chat.localhost?join")), room);
        for none in [
            None,
            Some("https://example.com/other"),
            Some("xmpp:chat.localhost"),
            Some("xmpp:other@chat.localhost/nick"),
        ] {
            assert_eq!(venue(none), None, "{none:?}");
        }
    }

    #[test]
    fn presence_to_a_room_is_a_join_or_a_leave() {
        use std::time::{Duration, UNIX_EPOCH};
        let to = FullJid::new("characters@chat.localhost/JC").unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let join = |stanzas, chars, since| {
            RoomPresence::Join(Join {
                nick: "JC".into(),
                history: History {
                    stanzas,
                    chars,
                    since,
                },
                password: None,
            })
        };
        let cases = [
            (
                "<presence xmlns='jabber:client'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
                join(DEFAULT_HISTORY, None, None),
            ),
            (
                "<presence xmlns='jabber:client'/>",
                join(DEFAULT_HISTORY, None, None),
            ),
            (
                "<presence xmlns='jabber:client'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='3' maxchars='0'/></x></presence>",
                join(3, Some(0), None),
            ),
            (
                "<presence xmlns='jabber:client'><x xmlns='http://jabber.org/protocol/muc'><history seconds='60'/></x></presence>",
                join(DEFAULT_HISTORY, None, Some(now - Duration::from_secs(60))),
            ),
            (
                "<presence xmlns='jabber:client'><x xmlns='http://jabber.org/protocol/muc'><history since='1970-01-02T00:00:00Z'/></x></presence>",
                join(
                    DEFAULT_HISTORY,
                    None,
                    Some(UNIX_EPOCH + Duration::from_secs(86_400)),
                ),
            ),
            (
                "<presence xmlns='jabber:client'><x xmlns='http://jabber.org/protocol/muc'><history since='1970-01-02T00:00:00.661Z'/></x></presence>",
                join(
                    DEFAULT_HISTORY,
                    None,
                    Some(UNIX_EPOCH + Duration::from_millis(86_400_661)),
                ),
            ),
            (
                "<presence xmlns='jabber:client' type='unavailable'/>",
                RoomPresence::Leave,
            ),
            (
                "<presence xmlns='jabber:client' type='probe'/>",
                RoomPresence::Probe,
            ),
            (
                "<presence xmlns='jabber:client' type='subscribe'/>",
                RoomPresence::Other,
            ),
        ];
        for (xml, expected) in cases {
            assert_eq!(room_presence(&el(xml), &to, now), expected, "{xml}");
        }
    }

    /// Recipients whose addresses need escaping and whose don't.
    const RECIPIENTS: [&str; 2] = [
        "romeo@localhost/orchard",
        "romeo@localhost/o'brien &amp; co",
    ];

    /// Each recipient's copy (its start, then `rest`) reads as `alone(recipient)`, the
    /// stanza made for that recipient alone.
    fn each_copy_reads_as(name: &str, rest: &[u8], alone: impl Fn(&Jid) -> Element) {
        for to in RECIPIENTS {
            let to = Jid::new(to).unwrap();
            let bytes = [&recipient_start(name, &to)[..], rest].concat();
            let shared: Element = std::str::from_utf8(&bytes).unwrap().parse().unwrap();
            assert_eq!(shared, alone(&to), "{}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn a_shared_message_is_the_message_each_recipient_would_get() {
        let room = BareJid::new("characters@chat.localhost").unwrap();
        let said = said(
            &el("<message xmlns='jabber:client' id='a&apos;b'><body>hi &amp; bye</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"),
            "J'C",
            "oid",
        )
        .unwrap();
        let rest = shared_groupchat(&room, &said, "item1").unwrap();
        each_copy_reads_as("message", &rest, |to| {
            let mut one = groupchat_message(&room, to, &said, None).unwrap();
            one.append_child(crate::eventing::archive::stanza_id("item1", room.as_str()));
            one
        });
    }

    /// A history message shares one body with every newcomer's copy; each must read as the
    /// message made for its recipient alone.
    #[test]
    fn a_shared_history_message_is_the_one_each_newcomer_would_get() {
        let room = BareJid::new("characters@chat.localhost").unwrap();
        let said = said(
            &el("<message xmlns='jabber:client' id='m&amp;1' xml:lang='en'><body>a &lt;b&gt; 'c'</body></message>"),
            "J&C",
            "oid",
        )
        .unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let rest = shared_history(&room, &said, at, "item1").unwrap();
        each_copy_reads_as("message", &rest, |to| {
            let mut one = groupchat_message(&room, to, &said, Some(at)).unwrap();
            one.append_child(crate::eventing::archive::stanza_id("item1", room.as_str()));
            one
        });
    }

    /// A room's presence broadcast shares one body; each copy must read as the presence
    /// made for its recipient alone, as it is and without real JIDs, arriving or leaving.
    #[test]
    fn a_shared_presence_is_the_presence_each_recipient_would_get() {
        let room = BareJid::new("characters@chat.localhost").unwrap();
        let jid = Jid::new("juliet@localhost/balc'ony").unwrap();
        let occupant = Occupant {
            room: &room,
            nick: "J&C",
            jid: &jid,
            affiliation: RoomAffiliation::Member,
            role: Role::Participant,
            id: "oid".to_owned(),
            shown: vec![el("<show xmlns='jabber:client'>away</show>")],
        };
        for (leaving, status) in [(false, None), (true, Some("gone <home> & 'out'"))] {
            let (plain, anonymous) = shared_presence(&occupant, leaving, &[], status).unwrap();
            let alone = |to: &Jid| {
                let mut one = occupant_presence(&occupant, to, leaving, &[]);
                if let Some(status) = status {
                    one.append_child(builder("status", ns::CLIENT).append(status).build());
                }
                one
            };
            each_copy_reads_as("presence", &plain, alone);
            each_copy_reads_as("presence", &anonymous, |to| anonymised(alone(to)));
        }
    }

    #[test]
    fn occupant_ids_are_stable_distinct_and_keyed() {
        let ids = OccupantIds::new(&[7; 32]);
        let room = BareJid::new("characters@chat.localhost").unwrap();
        let other_room = BareJid::new("garden@chat.localhost").unwrap();
        let juliet = BareJid::new("juliet@localhost").unwrap();
        let romeo = BareJid::new("romeo@localhost").unwrap();
        let id = ids.of(&room, &juliet);
        assert_eq!(id, ids.of(&room, &juliet), "stable");
        assert_eq!(
            id,
            OccupantIds::new(&[7; 32]).of(&room, &juliet),
            "across restarts"
        );
        assert!((1..=128).contains(&id.len()));
        assert_ne!(id, ids.of(&room, &romeo), "unique per person");
        assert_ne!(id, ids.of(&other_room, &juliet), "other rooms, other ids");
        assert_ne!(id, OccupantIds::new(&[8; 32]).of(&room, &juliet), "keyed");
        // The room and the JID are separated: `a@x` in `b@y` is not `a@xb@y` in nothing.
        let a = BareJid::new("a@chat.l").unwrap();
        let b = BareJid::new("b@l").unwrap();
        let ab = BareJid::new("a@chat.lb").unwrap();
        let l = BareJid::new("l").unwrap();
        assert_ne!(ids.of(&a, &b), ids.of(&ab, &l));
        // Remembered ids are the ids; what is remembered is bounded.
        for n in 0..OccupantIds::RECENT + 10 {
            let who = BareJid::new(&format!("u{n}@localhost")).unwrap();
            let again = ids.of(&room, &who);
            assert_eq!(again, ids.of(&room, &who));
            assert_eq!(again, ids.clone().of(&room, &who), "{who}");
        }
        assert!(ids.recent.borrow().1 < OccupantIds::RECENT);
    }

    #[test]
    fn only_a_bare_subject_changes_it() {
        let cases = [
            ("<subject>news</subject>", true),
            ("<subject/>", true),
            ("<subject>Greetings</subject><body>Hello</body>", false),
            ("<subject>New thread</subject><thread>t1</thread>", false),
            ("<body>hi</body>", false),
        ];
        for (children, expected) in cases {
            let message = el(&format!(
                "<message xmlns='jabber:client'>{children}</message>"
            ));
            assert_eq!(is_subject_change(&message), expected, "{children}");
        }
    }

    #[test]
    fn invitations_are_bounded_and_distinct() {
        let message = |invites: String| {
            el(&format!(
                "<message xmlns='jabber:client'><x xmlns='http://jabber.org/protocol/muc#user'>{invites}</x></message>"
            ))
        };
        // Thirty invitations of the cap's number of accounts, and one naming nobody.
        let invites: String = (0..30)
            .map(|n| format!("<invite to='u{}@localhost'/>", n % MAX_INVITEES))
            .chain(["<invite to='not a jid@@'/>".to_owned()])
            .collect();
        let invited: Vec<String> = invitees(&message(invites))
            .unwrap()
            .into_iter()
            .map(|invitee| invitee.jid.to_string())
            .collect();
        let expected: Vec<String> = (0..MAX_INVITEES)
            .map(|n| format!("u{n}@localhost"))
            .collect();
        assert_eq!(invited, expected);
        let invites: String = (0..=MAX_INVITEES)
            .map(|n| format!("<invite to='u{n}@localhost'/>"))
            .collect();
        assert_eq!(
            invitees(&message(invites)).map(|i| i.len()),
            Err(TooManyInvitees)
        );
    }

    #[test]
    fn a_refused_invitation_names_its_invitee() {
        let message = el(
            "<message xmlns='jabber:client' from='juliet@capulet.lit/balcony' to='crypt@chat.capulet.lit' id='i1'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='romeo@montague.lit/garden'><reason>come</reason></invite></x></message>",
        );
        let invited = invitees(&message).unwrap();
        let refused =
            invitation_refused(&message, &invited[0].jid, StanzaError::ServiceUnavailable).unwrap();
        let expected = el(
            "<message xmlns='jabber:client' type='error' id='i1' to='juliet@capulet.lit/balcony' from='crypt@chat.capulet.lit'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='romeo@montague.lit/garden'/></x><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        );
        assert_eq!(refused, expected);
    }

    #[test]
    fn a_bounced_invitation_names_its_invitee_and_the_condition_only() {
        let room = BareJid::new("crypt@chat.capulet.lit").unwrap();
        let inviter = FullJid::new("juliet@capulet.lit/balcony").unwrap();
        let invitee = Jid::new("romeo@montague.lit").unwrap();
        let bounce = |error: &str| {
            el(&format!(
                "<message xmlns='jabber:client' type='error' id='x1' from='romeo@montague.lit' to='crypt@chat.capulet.lit'>{error}</message>"
            ))
        };
        let told = |bounce: &Element| {
            invitation_bounced(&room, &inviter, Some("i1"), &invitee, bounce).unwrap()
        };
        let expected = |error: &str| {
            el(&format!(
                "<message xmlns='jabber:client' type='error' id='i1' to='juliet@capulet.lit/balcony' from='crypt@chat.capulet.lit'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='romeo@montague.lit'/></x>{error}</message>"
            ))
        };
        let gone = "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no such user</text><x xmlns='urn:x'/></error>";
        let said = "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>";
        assert_eq!(told(&bounce(gone)), expected(said));
        let unavailable = "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>";
        for odd in [
            "",
            "<error type='odd'><made-up xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
        ] {
            assert_eq!(told(&bounce(odd)), expected(unavailable));
        }
    }

    #[test]
    fn stanzas_to_the_service_name_their_room() {
        let cases = [
            (
                "<iq xmlns='jabber:client'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='characters' jid='j@l/b'/><options node='characters'/></pubsub></iq>",
                Some("characters"),
            ),
            (
                "<iq xmlns='jabber:client'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='garden'/></pubsub></iq>",
                Some("garden"),
            ),
            (
                "<iq xmlns='jabber:client'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create/></pubsub></iq>",
                None,
            ),
            (
                "<iq xmlns='jabber:client'><query xmlns='http://jabber.org/protocol/disco#info' node='characters'/></iq>",
                Some("characters"),
            ),
            (
                "<iq xmlns='jabber:client'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
                None,
            ),
            (
                "<message xmlns='jabber:client'><x xmlns='jabber:x:data' type='submit'><field var='pubsub#node'><value>characters</value></field></x></message>",
                Some("characters"),
            ),
            (
                "<iq xmlns='jabber:client'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node=''/></pubsub></iq>",
                None,
            ),
            (
                "<iq xmlns='jabber:client'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/pubsub#get-pending'><x xmlns='jabber:x:data' type='submit'><field var='pubsub#node'><value>characters</value></field></x></command></iq>",
                Some("characters"),
            ),
            (
                "<iq xmlns='jabber:client'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/pubsub#get-pending'/></iq>",
                None,
            ),
        ];
        for (xml, expected) in cases {
            assert_eq!(addressed_room(&el(xml)).as_deref(), expected, "{xml}");
        }
    }

    #[test]
    fn history_applies_every_limit() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        // Newest first: (what, when, size).
        let said = || vec![("c", at(30), 10), ("b", at(20), 10), ("a", at(10), 10)];
        let history = |stanzas, chars, since| History {
            stanzas,
            chars,
            since,
        };
        let cases = [
            (history(20, None, None), vec!["c", "b", "a"]),
            (history(2, None, None), vec!["c", "b"]),
            (history(20, Some(25), None), vec!["c", "b"]),
            (history(20, Some(0), None), vec![]),
            (history(20, None, Some(at(20))), vec!["c", "b"]),
            (history(1, Some(100), Some(at(0))), vec!["c"]),
        ];
        for (history, expected) in cases {
            assert_eq!(history.select(said()), expected, "{history:?}");
        }
    }

    #[test]
    fn what_is_said_keeps_only_what_a_speaker_may_say() {
        let message = el(
            "<message xmlns='jabber:client' type='groupchat' to='characters@chat.localhost'>\
               <body>hi</body><subject>news</subject><error type='cancel'/>\
               <delay xmlns='urn:xmpp:delay' stamp='1999-01-01T00:00:00Z'/>\
               <nick xmlns='http://jabber.org/protocol/nick'>Romeo</nick>\
               <x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x>\
               <active xmlns='http://jabber.org/protocol/chatstates'/>\
               <occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/>\
             </message>",
        );
        let item = said(&message, "JC", "oid").unwrap();
        let names: Vec<(&str, String)> = item.children().map(|c| (c.name(), c.ns())).collect();
        assert_eq!(
            names,
            [
                ("body", ns::CLIENT.to_owned()),
                ("subject", ns::CLIENT.to_owned()),
                ("active", "http://jabber.org/protocol/chatstates".to_owned()),
                ("nick", ns::NICK.to_owned()),
                ("occupant-id", ns::OCCUPANT_ID.to_owned()),
            ]
        );
        // The server's occupant id replaces the one the speaker wrote, and is rendered.
        let rendered = groupchat_message(
            &BareJid::new("r@chat.l").unwrap(),
            &Jid::new("j@l/b").unwrap(),
            &item,
            None,
        )
        .unwrap();
        let ids: Vec<&str> = rendered
            .children()
            .filter(|c| c.is("occupant-id", ns::OCCUPANT_ID))
            .filter_map(|c| c.attr("id"))
            .collect();
        assert_eq!(ids, ["oid"]);
        assert_eq!(speaker(&item).as_deref(), Some("JC"));
        assert!(
            item.attrs().iter().next().is_none(),
            "no type, from or to is kept"
        );
        // The sender's id is kept, to be reflected.
        let with_id = el(
            "<message xmlns='jabber:client' id='rm1' type='groupchat'><body>hi</body></message>",
        );
        let kept = said(&with_id, "JC", "oid").unwrap();
        let attrs: Vec<String> = kept
            .attrs()
            .iter()
            .map(|((_, name), value)| format!("{name}={value}"))
            .collect();
        assert_eq!(attrs, ["id=rm1"]);
        assert_eq!(
            groupchat_message(
                &BareJid::new("r@chat.l").unwrap(),
                &Jid::new("j@l/b").unwrap(),
                &kept,
                None
            )
            .and_then(|m| m.attr("id").map(str::to_owned))
            .as_deref(),
            Some("rm1")
        );
        // Nothing said: nothing to keep.
        let empty = el("<message xmlns='jabber:client'><error type='cancel'/></message>");
        assert_eq!(said(&empty, "JC", "oid"), None);
    }

    #[test]
    fn what_is_said_keeps_its_language() {
        let room = BareJid::new("r@chat.l").unwrap();
        let message = el(
            "<message xmlns='jabber:client' type='groupchat' xml:lang='it'><body>ciao</body></message>",
        );
        let item = said(&message, "JC", "oid").unwrap();
        assert_eq!(crate::xml::lang(&item), Some("it"));
        let classic = groupchat_message(&room, &Jid::new("j@l/b").unwrap(), &item, None).unwrap();
        assert_eq!(crate::xml::lang(&classic), Some("it"));
        let rest = shared_groupchat(&room, &item, "a1").unwrap();
        let start = recipient_start("message", &Jid::new("j@l/b").unwrap());
        let shared: Element = String::from_utf8([&start[..], &rest].concat())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(crate::xml::lang(&shared), Some("it"));
        let plain = said(
            &el("<message xmlns='jabber:client'><body>hi</body></message>"),
            "JC",
            "oid",
        );
        assert_eq!(plain.as_ref().and_then(crate::xml::lang), None);
    }

    #[test]
    fn the_classic_view_speaks_from_the_nick() {
        let room = BareJid::new("characters@chat.localhost").unwrap();
        let to = Jid::new("romeo@localhost/orchard").unwrap();
        let item = said(
            &el("<message xmlns='jabber:client'><body>hi</body></message>"),
            "JC",
            "oid",
        )
        .unwrap();
        let out = groupchat_message(&room, &to, &item, None).unwrap();
        assert_eq!(out.attr("from"), Some("characters@chat.localhost/JC"));
        assert_eq!(out.attr("type"), Some("groupchat"));
        assert_eq!(
            out.get_child("body", ns::CLIENT)
                .map(Element::text)
                .as_deref(),
            Some("hi")
        );
        assert!(out.get_child("nick", ns::NICK).is_none());
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400);
        let old = groupchat_message(&room, &to, &item, Some(at)).unwrap();
        let delay = old.get_child("delay", ns::DELAY).unwrap();
        assert_eq!(delay.attr("stamp"), Some("1970-01-02T00:00:00Z"));
    }
}
