//! XEP-0060 over Verona's pubsub engine.
//!
//! The server hands every stanza addressed to a pubsub service to [`handle_stanza`], which parses
//! it ([`request`]), runs the engine operation on the [`Service`] and answers with the reply to
//! send, the engine's effects and its undo handle ([`Handled`]). After the caller has made the
//! `Persist` effects durable, [`render`] turns the delivery effects into ready-to-send stanzas;
//! if persisting failed, [`storage_failed`] gives the reply to send instead.
//!
//! Covered: XEP-0060 §5–§8 (without collections) and the §12 notes that concern the protocol,
//! §16.4 forms (XEP-0004), XEP-0059 paging of item retrieval, XEP-0030 discovery including node
//! meta-data, XEP-0033 `replyto` on notifications, XEP-0050 `pubsub#get-pending`. Every error
//! goes through the one table in [`errors`].

mod disco;
pub mod errors;
mod forms;
pub mod jids;
mod ns;
mod owner;
mod publisher;
mod render;
mod request;
mod subscriber;
mod xml;

use jid::{FullJid, Jid};
use minidom::Element;
use verona_pubsub::{AccessResolver, Effect, Outcome, Service, Undo};

use crate::errors::Error;
use crate::request::{IqKind, Request};

pub use disco::service_info;
pub use render::{Notifications, authorization_for, carries_message, is_message, render, stamp};
pub use subscriber::{affiliation_list, subscription_list};

/// Which kind of service a [`Service`] is, for what discovery announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A pubsub component such as `pubsub.<domain>` (identity `pubsub/service`).
    Pubsub,
    /// An account's personal eventing service (identity `pubsub/pep`).
    Pep,
    /// The group chat service `chat.<domain>`: a pubsub service whose nodes are rooms
    /// (identities `pubsub/service` and `conference/text`, feature XEP-0045 `muc`).
    Groupchat,
}

/// What the protocol layer needs to know about the service it speaks for.
pub struct ServiceContext<'a> {
    /// The service's address: the `from` of replies and notifications.
    pub jid: &'a Jid,
    /// The kind of service.
    pub kind: ServiceKind,
    /// Presence subscriptions and roster groups, for the `presence` and `roster` access models.
    pub resolver: &'a dyn AccessResolver,
}

/// The result of handling one stanza.
#[derive(Debug)]
pub struct Handled {
    /// The iq result or error (or, for a `<message>`, an error) to send back to the sender;
    /// `None` when nothing is owed.
    pub reply: Option<Element>,
    /// The engine's effects, storage writes first: make those durable before anything else.
    pub effects: Vec<Effect>,
    /// Reverts the operation if persisting fails.
    pub undo: Option<Undo>,
    /// The item a successful publish stored or notified.
    pub published: Option<Published>,
}

/// An item a publish request put on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub node: String,
    pub item_id: String,
}

impl Handled {
    fn nothing() -> Self {
        Handled {
            reply: None,
            effects: Vec::new(),
            undo: None,
            published: None,
        }
    }
}

/// A stanza to deliver, serialized.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The recipient: a full JID, or a bare JID meaning its available resources.
    pub to: Jid,
    /// The stanza, ready for the wire.
    pub stanza: verona_stream::Wire,
}

/// Handles one stanza addressed to the service: an iq get or set (every XEP-0060 request,
/// disco#info and disco#items including node meta-data, the XEP-0050 `get-pending` command), or
/// a `<message>` carrying an owner's answer to an authorization request (XEP-0060 §8.6), which is
/// matched by its form fields wherever it was addressed. `from` is the sender's full JID, as
/// stamped by the server.
pub fn handle_stanza(
    service: &mut Service,
    ctx: &ServiceContext,
    from: &FullJid,
    stanza: &Element,
) -> Handled {
    match stanza.name() {
        "iq" => handle_iq(service, ctx, from, stanza),
        "message" => owner::authorization_answer(service, ctx, from, stanza),
        _ => Handled::nothing(),
    }
}

/// XEP-0060 §8.7.1 for a service whose nodes are held apart (`chat.<domain>`, each room a
/// service of its own): when `iq` is the first step of get-pending (no node chosen yet), its
/// answer from `service` to `from`, offering `nodes`, which the caller found; `None` for any
/// other stanza.
pub fn pending_nodes_answer(
    service: &Jid,
    from: &FullJid,
    iq: &Element,
    nodes: &[String],
) -> Option<Element> {
    if iq.attr("type") != Some("set") {
        return None;
    }
    let Ok(Request::GetPending(command)) = request::parse(IqKind::Set, iq) else {
        return None;
    };
    let submitted = (command.form.as_ref())
        .is_some_and(|form| form.type_ == xmpp_parsers::data_forms::DataFormType::Submit);
    if command.cancel || submitted {
        return None;
    }
    let sessionid = command.sessionid.unwrap_or_else(render::next_id);
    Some(match owner::pending_choice(&sessionid, nodes) {
        Ok(payload) => xml::result_reply(iq, service, from, Some(payload)),
        Err(error) => xml::error_reply(iq, Some((service, from)), &error, None),
    })
}

/// The reply to send instead of the normal one when the request's storage writes failed (the
/// caller has undone the operation): `wait` / `internal-server-error`, so that the client may
/// retry. `None` for stanzas that are never answered. Its addresses are the request's,
/// swapped: stamp the request's `from` and `to` first for the reply to carry them.
pub fn storage_failed(request: &Element) -> Option<Element> {
    let answerable = match (request.name(), request.attr("type")) {
        ("iq", Some("get" | "set")) => true,
        ("message", kind) => kind != Some("error"),
        _ => false,
    };
    answerable.then(|| xml::error_reply(request, None, &Error::StorageFailed, None))
}

/// The reply to a request the server refuses before its service sees it, for a limit the
/// server keeps across services (issue #11 M7): the error XEP-0060 prescribes for `limit`.
/// Addresses as for [`storage_failed`].
pub fn over_limit(request: &Element, limit: verona_pubsub::Limit) -> Element {
    let error = Error::Pubsub(verona_pubsub::PubsubError::PolicyViolation(limit));
    xml::error_reply(request, None, &error, None)
}

/// What a request handler produces on success.
struct Answer {
    payload: Option<Element>,
    effects: Vec<Effect>,
    undo: Option<Undo>,
    published: Option<Published>,
    /// Set when part of a request of several entries was refused while the rest was done
    /// (XEP-0060 §8.8.2.4, §8.9.2.4): the reply is this error, the effects still happen.
    refused: Option<Failure>,
}

impl Answer {
    /// A reply without side effects.
    fn reply(payload: Option<Element>) -> Self {
        Answer {
            payload,
            effects: Vec::new(),
            undo: None,
            published: None,
            refused: None,
        }
    }

    /// A reply to a mutating engine operation.
    fn outcome<T>(payload: Option<Element>, outcome: Outcome<T>) -> Self {
        Answer {
            payload,
            effects: outcome.effects,
            undo: Some(outcome.undo),
            published: None,
            refused: None,
        }
    }

    /// An operation on several entries of which some were refused: what was done stays, the
    /// reply is `refused` (when there is one).
    fn partly<T>(outcome: Outcome<T>, refused: Option<Failure>) -> Self {
        Answer {
            refused,
            ..Answer::outcome(None, outcome)
        }
    }
}

/// Why a request failed: the error, and for owner modifications of several entries the entries
/// that caused it in their current state (XEP-0060 §8.8.2.4, §8.9.2.4).
#[derive(Debug)]
struct Failure {
    error: Error,
    echo: Option<Box<Element>>,
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            error: error.into(),
            echo: None,
        }
    }
}

type Handler = Result<Answer, Failure>;

fn handle_iq(service: &mut Service, ctx: &ServiceContext, from: &FullJid, iq: &Element) -> Handled {
    let kind = match iq.attr("type") {
        Some("get") => IqKind::Get,
        Some("set") => IqKind::Set,
        _ => return Handled::nothing(),
    };
    let result = request::parse(kind, iq)
        .map_err(Failure::from)
        .and_then(|request| dispatch(service, ctx, from, request));
    match result {
        Ok(Answer {
            refused: Some(failure),
            effects,
            undo,
            ..
        }) => Handled {
            reply: Some(xml::error_reply(
                iq,
                Some((ctx.jid, from)),
                &failure.error,
                failure.echo.map(|echo| *echo),
            )),
            effects,
            undo,
            published: None,
        },
        Ok(answer) => Handled {
            reply: Some(xml::result_reply(iq, ctx.jid, from, answer.payload)),
            effects: answer.effects,
            undo: answer.undo,
            published: answer.published,
        },
        Err(failure) => Handled {
            reply: Some(xml::error_reply(
                iq,
                Some((ctx.jid, from)),
                &failure.error,
                failure.echo.map(|echo| *echo),
            )),
            effects: Vec::new(),
            undo: None,
            published: None,
        },
    }
}

fn dispatch(
    service: &mut Service,
    ctx: &ServiceContext,
    from: &FullJid,
    request: Request,
) -> Handler {
    let actor = Jid::from(from.clone());
    match request {
        Request::DiscoInfo { node } => disco::info(service, ctx, &actor, node.as_deref()),
        Request::DiscoItems { node, max, after } => {
            let page = disco::Page {
                max,
                after: after.as_deref(),
            };
            disco::items(service, ctx, &actor, node.as_deref(), page)
        }
        Request::OwnSubscriptions { node } => {
            Ok(subscriber::own_subscriptions(service, &actor, node))
        }
        Request::OwnAffiliations { node } => {
            Ok(subscriber::own_affiliations(service, &actor, node))
        }
        Request::Subscribe { node, jid, options } => {
            subscriber::subscribe(service, ctx, &actor, &node, &jid, options)
        }
        Request::Unsubscribe { node, jid, subid } => {
            subscriber::unsubscribe(service, &actor, &node, &jid, subid.as_deref())
        }
        Request::Options { target, form } => match form {
            None => subscriber::options(service, &actor, &target),
            Some(form) => subscriber::set_options(service, &actor, &target, &form),
        },
        Request::DefaultOptions { node } => subscriber::default_options(service, node),
        Request::Items {
            node,
            query,
            paged,
            subid,
        } => subscriber::items(service, ctx, &actor, &node, &query, paged, subid.as_deref()),
        Request::Publish {
            node,
            item,
            payload_ns,
            options,
        } => publisher::publish(service, &actor, node, item, payload_ns, options),
        Request::Retract { node, id, notify } => {
            publisher::retract(service, &actor, &node, &id, notify)
        }
        Request::Create { node, config } => owner::create(service, &actor, node, config),
        Request::Configuration { node } => owner::configuration(service, &actor, &node),
        Request::Configure { node, form } => owner::configure(service, ctx, &actor, &node, &form),
        Request::DefaultConfig => Ok(owner::default_config(service)),
        Request::Delete { node, redirect } => owner::delete(service, &actor, &node, redirect),
        Request::Purge { node } => owner::purge(service, &actor, &node),
        Request::NodeSubscriptions { node } => owner::subscriptions(service, &actor, &node),
        Request::SetSubscriptions { node, entries } => {
            owner::set_subscriptions(service, ctx, &actor, &node, entries)
        }
        Request::NodeAffiliations { node } => owner::affiliations(service, &actor, &node),
        Request::SetAffiliations { node, entries } => {
            owner::set_affiliations(service, ctx, &actor, &node, entries)
        }
        Request::GetPending(command) => owner::get_pending(service, &actor, command),
    }
}
