//! Iqs the server answers itself: to its domain, or to an account's bare JID on the account's
//! behalf. Everything not understood gets `service-unavailable` (RFC 6120 §8.4).

use crate::jids::Bare;
use std::collections::BTreeSet;
use std::net::IpAddr;

use jid::{FullJid, Jid};
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item as DiscoItem};
use xmpp_parsers::version::VersionResult;

use crate::accounts::AccountError;
use crate::eventing::{archive, chat};
use crate::extdisco;
use crate::mam;
use crate::server::Shared;
use crate::xml::{BuilderExt, StanzaError, builder, error_reply, iq_result, ns, text_child};

/// Whom an iq is addressed to.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// The server's domain.
    Domain,
    /// The sender's own account (its bare JID, or no `to`); others' are not served yet.
    Account,
}

/// The answer to an iq, and what else happened.
pub struct Handled {
    /// Stanzas sent before the reply (the messages answering an archive query).
    pub before: Vec<Element>,
    pub reply: Option<Element>,
    /// Which of the account's sessions must end.
    pub end_sessions: EndSessions,
}

/// Sessions an account change ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndSessions {
    None,
    /// The password changed: every session but the one that changed it.
    Others,
    /// The account was deleted (XEP-0077 cancellation).
    All,
}

impl Handled {
    fn reply(reply: Element) -> Self {
        Handled {
            before: Vec::new(),
            reply: Some(reply),
            end_sessions: EndSessions::None,
        }
    }

    fn error(request: &Element, error: StanzaError) -> Self {
        Handled {
            before: Vec::new(),
            reply: error_reply(request, error, None),
            end_sessions: EndSessions::None,
        }
    }
}

/// The single payload of a get/set iq; `None` if the iq is not a well-formed request.
fn request_payload(iq: &Element) -> Option<&Element> {
    let mut children = iq.children();
    let payload = children.next()?;
    children.next().is_none().then_some(payload)
}

pub async fn handle(shared: &Shared, iq: &Element, target: &Target, me: &FullJid) -> Handled {
    let kind = iq.attr("type");
    if !matches!(kind, Some("get") | Some("set")) || iq.attr("id").is_none() {
        // Results and errors for the server are not expected; malformed iqs get bad-request.
        if matches!(kind, Some("result") | Some("error")) {
            return Handled {
                before: Vec::new(),
                reply: None,
                end_sessions: EndSessions::None,
            };
        }
        return Handled::error(iq, StanzaError::BadRequest);
    }
    let Some(payload) = request_payload(iq) else {
        return Handled::error(iq, StanzaError::BadRequest);
    };
    let is_get = kind == Some("get");
    match (is_get, payload.name(), payload.ns().as_str()) {
        (true, "ping", ns::PING) => Handled::reply(iq_result(iq, None)),
        // An account's own is answered by its PEP host (`c2s::route`).
        (true, "query", ns::DISCO_INFO)
            if payload.attr("node").is_none() && matches!(target, Target::Domain) =>
        {
            Handled::reply(iq_result(iq, Some(disco_info(shared, me))))
        }
        (true, "query", ns::DISCO_ITEMS) if payload.attr("node").is_none() => {
            let services = match target {
                Target::Domain => [
                    (shared.pubsub.jid(), "Publish-Subscribe"),
                    (shared.pubsub.rooms_jid(), "Chatrooms"),
                ]
                .into_iter()
                .map(|(jid, name)| DiscoItem {
                    jid: Jid::new(jid).expect("the service address is a valid JID"),
                    node: None,
                    name: Some(name.into()),
                })
                .collect(),
                _ => Vec::new(),
            };
            let items = DiscoItemsResult {
                node: None,
                items: services,
                rsm: None,
            };
            Handled::reply(iq_result(iq, Some(items.into())))
        }
        (true, "query", ns::DISCO_INFO | ns::DISCO_ITEMS) => {
            Handled::error(iq, StanzaError::ItemNotFound)
        }
        (true, "query", ns::VERSION) if matches!(target, Target::Domain) => {
            let version = VersionResult {
                name: "Verona".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                os: None,
            };
            Handled::reply(iq_result(iq, Some(version.into())))
        }
        // XEP-0012 §5: a server's last activity is its uptime.
        (true, "query", LAST) if matches!(target, Target::Domain) => {
            let seconds = shared.started.elapsed().as_secs().to_string();
            let last = builder("query", LAST).with("seconds", seconds).build();
            Handled::reply(iq_result(iq, Some(last)))
        }
        // XEP-0202: the server's clock, in UTC.
        (true, "time", TIME) if matches!(target, Target::Domain) => {
            let now = verona_pubsub_xmpp::stamp(std::time::SystemTime::now());
            let time = builder("time", TIME)
                .append(text_child("tzo", TIME, "+00:00"))
                .append(text_child("utc", TIME, now))
                .build();
            Handled::reply(iq_result(iq, Some(time)))
        }
        // XEP-0215: STUN and TURN servers for calls, to the server's own users.
        (true, "services" | "credentials", extdisco::NS)
            if matches!(target, Target::Domain) && me.domain().as_str() == shared.domain =>
        {
            match extdisco::answer(&shared.config.turn, payload, std::time::SystemTime::now()) {
                Ok(answer) => Handled::reply(iq_result(iq, Some(answer))),
                Err(error) => Handled::error(iq, error),
            }
        }
        (false, "session", ns::SESSION) => Handled::reply(iq_result(iq, None)),
        // XEP-0280 §4: carbons are the session's choice, whichever address it asks.
        (false, "enable" | "disable", chat::CARBONS) => {
            if let Some(session) = shared.router.session(me) {
                session.set_carbons(payload.name() == "enable");
            }
            Handled::reply(iq_result(iq, None))
        }
        (false, "query", archive::NS) if matches!(target, Target::Account) => {
            let _turn = shared.pubsub.for_account(&me.bare()).archive_turn().await;
            let mut answer = mam::query(shared, iq, payload, me).await;
            let reply = answer.pop();
            Handled {
                before: answer,
                reply,
                end_sessions: EndSessions::None,
            }
        }
        (true, "query", archive::NS) if matches!(target, Target::Account) => {
            Handled::reply(iq_result(iq, Some(archive::form())))
        }
        (true, "metadata", archive::NS) if matches!(target, Target::Account) => {
            let _turn = shared.pubsub.for_account(&me.bare()).archive_turn().await;
            Handled::reply(mam::metadata(shared, iq, me).await)
        }
        (_, "prefs", archive::NS) if matches!(target, Target::Account) => {
            Handled::reply(mam::prefs(iq))
        }
        (_, "query", ns::REGISTER) => registered_account(shared, iq, payload, is_get, me).await,
        _ => Handled::error(iq, StanzaError::ServiceUnavailable),
    }
}

/// XEP-0202 Entity Time.
const TIME: &str = "urn:xmpp:time";
/// XEP-0012 Last Activity.
const LAST: &str = "jabber:iq:last";

/// The server's disco#info, as `asker` sees it.
fn disco_info(shared: &Shared, asker: &FullJid) -> Element {
    let mut features: BTreeSet<String> = [
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::VERSION,
        TIME,
        LAST,
        chat::CARBONS,
        // XEP-0160: messages to an offline account are kept.
        "msgoffline",
        // XEP-0191 §2: clients (profanity) look for blocking on the server.
        ns::BLOCKING,
        // XEP-0054 §2: clients (Gajim) look for vCards on the server.
        crate::eventing::stored::VCARD,
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // An account changes its password and removes itself in-band whether or not new accounts
    // may register (XEP-0077 §3.2, §3.3), and clients (Conversations) offer that only when
    // the server advertises the namespace, as Prosody always does.
    if shared.config.registration.allow || asker.domain().as_str() == shared.domain {
        features.insert(ns::REGISTER.into());
    }
    if !shared.config.turn.host.is_empty() && asker.domain().as_str() == shared.domain {
        features.insert(extdisco::NS.into());
    }
    DiscoInfoResult {
        node: None,
        identities: vec![identity("server", "im")],
        features,
        extensions: contact_info(&shared.config.contact_info)
            .into_iter()
            .collect(),
    }
    .into()
}

/// XEP-0157: the configured contact addresses, as the `serverinfo` form; none when none are.
fn contact_info(config: &crate::config::ContactInfoConfig) -> Option<DataForm> {
    let fields: Vec<Field> = config
        .fields()
        .into_iter()
        .filter(|(_, addresses)| !addresses.is_empty())
        .map(|(var, addresses)| {
            let mut field = Field::new(var, FieldType::ListMulti);
            field.values = addresses.to_vec();
            field
        })
        .collect();
    (!fields.is_empty()).then(|| DataForm::new(DataFormType::Result_, SERVER_INFO, fields))
}

/// XEP-0157's form type.
const SERVER_INFO: &str = "http://jabber.org/network/serverinfo";

fn identity(category: &str, type_: &str) -> Identity {
    Identity {
        category: category.into(),
        type_: type_.into(),
        lang: None,
        name: None,
    }
}

fn child_text(payload: &Element, name: &str) -> Option<String> {
    payload.get_child(name, ns::REGISTER).map(|c| c.text())
}

/// Deletes an account from storage, with its conversations in the same transaction; read
/// once the shards have forgotten it, so that no conversation is started after the list.
async fn delete_account(shared: &Shared, bare: &jid::BareJid) -> Result<(), StanzaError> {
    let (archive, pubsub_jid) = (shared.archive.as_ref(), shared.pubsub.jid());
    let conversations = match mam::conversations_of(archive, pubsub_jid, bare).await {
        Ok(conversations) => conversations,
        Err(e) => {
            tracing::error!(jid = %bare, "reading the account's conversations: {e}");
            return Err(StanzaError::InternalServerError);
        }
    };
    let accounts = &shared.accounts;
    let ends = mam::conversation_ends(accounts, pubsub_jid, bare, conversations).await;
    (accounts.delete(bare, &ends).await).map_err(|e| account_error_condition(&e))
}

/// Deletes a running server's account, with everything it holds, as its owner's XEP-0077
/// `<remove/>` or the operator (`verona user del`) asks; its sessions are the caller's to end.
pub(crate) async fn remove_account(
    shared: &Shared,
    bare: &jid::BareJid,
) -> Result<(), StanzaError> {
    // Before the deletion, which takes the relations out of storage: its contacts are told.
    shared.pubsub.end_relations(bare.clone()).await;
    // The shards forget it first, and take nothing of it until it is deleted: no write of
    // theirs reaches a node the deletion removes or retires (`host/deletion.rs`).
    let deleted = if shared.pubsub.forget_account(bare.clone()).await {
        delete_account(shared, bare).await
    } else {
        tracing::error!(jid = %bare, "forgetting the account could not be stored");
        Err(StanzaError::InternalServerError)
    };
    shared.pubsub.account_deleted(bare.clone()).await;
    deleted
}

/// XEP-0077 on an authenticated stream: look up, change the password, or cancel the account.
async fn registered_account(
    shared: &Shared,
    iq: &Element,
    payload: &Element,
    is_get: bool,
    me: &FullJid,
) -> Handled {
    let bare = me.bare();
    let accounts = &shared.accounts;
    if is_get {
        let username = bare.node().map(|n| n.to_string()).unwrap_or_default();
        let query = builder("query", ns::REGISTER)
            .append(Element::bare("registered", ns::REGISTER))
            .append(text_child("username", ns::REGISTER, username))
            .build();
        return Handled::reply(iq_result(iq, Some(query)));
    }
    if payload.has_child("remove", ns::REGISTER) {
        // XEP-0077 §3.2: `<remove/>` comes alone; a removal cannot be undone, so a request
        // that says more is refused rather than guessed at.
        if payload.children().count() > 1 {
            return Handled::error(iq, StanzaError::BadRequest);
        }
        return match remove_account(shared, &bare).await {
            Ok(()) => {
                tracing::info!(jid = %bare, "account removed by its owner");
                Handled {
                    before: Vec::new(),
                    reply: Some(iq_result(iq, None)),
                    end_sessions: EndSessions::All,
                }
            }
            Err(error) => Handled::error(iq, error),
        };
    }
    let username = child_text(payload, "username");
    let same_user = username
        .as_deref()
        .is_none_or(|u| accounts.jid_for_username(u).is_some_and(|jid| jid == bare));
    match child_text(payload, "password") {
        Some(password) if same_user => match accounts.set_password(&bare, &password).await {
            Ok(()) => {
                tracing::info!(jid = %bare, "password changed by its owner");
                Handled {
                    before: Vec::new(),
                    reply: Some(iq_result(iq, None)),
                    end_sessions: EndSessions::Others,
                }
            }
            Err(e) => account_error(iq, e),
        },
        Some(_) => Handled::error(iq, StanzaError::NotAllowed),
        None => Handled::error(iq, StanzaError::BadRequest),
    }
}

/// XEP-0077 before authentication: the form, or the creation of an account.
pub async fn register_new(shared: &Shared, iq: &Element, peer: IpAddr) -> Element {
    let refuse = |error| error_reply(iq, error, None).unwrap_or_else(|| iq_result(iq, None));
    if !shared.config.registration.allow {
        return refuse(StanzaError::ServiceUnavailable);
    }
    let Some(payload) = request_payload(iq).filter(|p| p.is("query", ns::REGISTER)) else {
        return refuse(StanzaError::BadRequest);
    };
    match iq.attr("type") {
        Some("get") => {
            let query = builder("query", ns::REGISTER)
                .append(text_child(
                    "instructions",
                    ns::REGISTER,
                    "Choose a username and password.",
                ))
                .append(Element::bare("username", ns::REGISTER))
                .append(Element::bare("password", ns::REGISTER))
                .build();
            iq_result(iq, Some(query))
        }
        Some("set") => {
            let (Some(username), Some(password)) = (
                child_text(payload, "username"),
                child_text(payload, "password"),
            ) else {
                return refuse(StanzaError::NotAcceptable);
            };
            let Some(jid) = shared.accounts.jid_for_new_username(&username) else {
                return refuse(StanzaError::NotAcceptable);
            };
            // A name taken or an empty password is refused before the address's quota is
            // counted: trying a few names must not lock out an address for the hour, and these
            // cost no key derivation.
            if password.is_empty() {
                return refuse(StanzaError::NotAcceptable);
            }
            match shared.accounts.credentials(&jid).await {
                Ok(Some(_)) => return refuse(StanzaError::Conflict),
                Ok(None) => {}
                Err(e) => {
                    return account_error(iq, e)
                        .reply
                        .unwrap_or_else(|| iq_result(iq, None));
                }
            }
            // Issue #11 M6: one address cannot register accounts without end.
            if !shared
                .throttle
                .may_register(peer, std::time::Instant::now())
            {
                tracing::info!(%peer, "registration refused: too many from this address");
                return refuse(StanzaError::ResourceConstraint);
            }
            match shared.accounts.create(&jid, &password).await {
                Ok(()) => {
                    tracing::info!(%jid, "account registered in-band");
                    iq_result(iq, None)
                }
                Err(e) => account_error(iq, e)
                    .reply
                    .unwrap_or_else(|| iq_result(iq, None)),
            }
        }
        _ => refuse(StanzaError::BadRequest),
    }
}

fn account_error(iq: &Element, e: AccountError) -> Handled {
    Handled::error(iq, account_error_condition(&e))
}

fn account_error_condition(e: &AccountError) -> StanzaError {
    match e {
        AccountError::Exists(_) => StanzaError::Conflict,
        AccountError::BadPassword | AccountError::InvalidJid(_) => StanzaError::NotAcceptable,
        AccountError::NotFound(_) | AccountError::ForeignDomain(..) => StanzaError::ItemNotFound,
        AccountError::Storage(e) => {
            tracing::error!("storage failed: {e}");
            StanzaError::InternalServerError
        }
    }
}
