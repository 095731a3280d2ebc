//! Owner use cases (XEP-0060 §8): create, configure, default configuration, delete, purge,
//! authorization answers, get-pending, subscriptions and affiliations management.

use std::collections::BTreeMap;

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use verona_pubsub::{
    Affiliation, AuthorizationRequest, ConfigField, CreateRequest, Effect, ItemReply,
    NotificationType, PubsubError, Service, SubId, SubscriptionChange,
};
use xmpp_parsers::data_forms::{DataForm, DataFormType};

use crate::errors::Error;
use crate::forms::{self, ConfigSubmission};
use crate::ns;
use crate::render::next_id;
use crate::request::{AffiliationEntry, Command, SubscriptionEntry};
use crate::subscriber::pubsub;
use crate::xml::{self, BuilderExt, builder};
use crate::{Answer, Failure, Handled, Handler, ServiceContext};

/// `<pubsub xmlns='…#owner'/>` around one child.
fn owner(child: Element) -> Element {
    builder("pubsub", ns::PUBSUB_OWNER).append(child).build()
}

/// §8.1. Only an instant node's result names the node (§8.1.2: the creator of a named node
/// already knows it).
pub(crate) fn create(
    service: &mut Service,
    actor: &Jid,
    node: Option<String>,
    config: Option<DataForm>,
) -> Handler {
    let submission = match &config {
        Some(form) if form.type_ != DataFormType::Cancel => {
            forms::read_node_config(form, service.config())?
        }
        _ => ConfigSubmission {
            fields: Vec::new(),
            publishers: Vec::new(),
        },
    };
    let instant = node.is_none();
    // A creator who names the node's publishers makes a conversation with them (XEP-0207 §6,
    // Ex. 18) and is subscribed to it, so gets the seed's "bcc" of every message (Ex. 20).
    let subscribe_creator = !submission.publishers.is_empty();
    let mut fields = submission.fields;
    if subscribe_creator {
        // What its notifications will be (DESIGN §2 "One-to-one"), unless the creator says
        // otherwise: its configuration form then tells what is sent.
        let given = |var: &str| fields.iter().any(|field| field.var() == var);
        let defaults = [
            ConfigField::NotificationType(NotificationType::Normal),
            ConfigField::ItemReply(ItemReply::Publisher),
        ];
        let missing: Vec<ConfigField> = (defaults.into_iter())
            .filter(|field| !given(field.var()))
            .collect();
        fields.extend(missing);
    }
    let request = CreateRequest {
        node,
        config: fields,
        affiliations: submission
            .publishers
            .into_iter()
            .map(|jid| (jid, Affiliation::Publisher))
            .collect(),
        subscribe_creator,
    };
    let outcome = service.create(actor, request)?;
    let payload = instant.then(|| {
        pubsub(
            builder("create", ns::PUBSUB)
                .with("node", outcome.value.as_str())
                .build(),
        )
    });
    Ok(Answer::outcome(payload, outcome))
}

/// §8.2.1: the configuration form.
pub(crate) fn configuration(service: &Service, actor: &Jid, node: &str) -> Handler {
    let config = service.configuration(actor, node)?;
    let form = forms::node_config(&config, Some(service.config()));
    let configure = builder("configure", ns::PUBSUB_OWNER)
        .with("node", node)
        .append(Element::from(form))
        .build();
    Ok(Answer::reply(Some(owner(configure))))
}

/// §8.2.4: a submitted configuration; a cancelled form keeps the configuration.
pub(crate) fn configure(
    service: &mut Service,
    ctx: &ServiceContext,
    actor: &Jid,
    node: &str,
    form: &DataForm,
) -> Handler {
    if form.type_ == DataFormType::Cancel {
        return Ok(Answer::reply(None));
    }
    // `pubsub#publisher` is read-only after creation: affiliations are managed per §8.9.
    let submission = forms::read_node_config(form, service.config())?;
    let outcome = service.configure(ctx.resolver, actor, node, &submission.fields)?;
    Ok(Answer::outcome(None, outcome))
}

/// §8.3.
pub(crate) fn default_config(service: &Service) -> Answer {
    let form = forms::node_config(service.default_config(), Some(service.config()));
    let default = builder("default", ns::PUBSUB_OWNER)
        .append(Element::from(form))
        .build();
    Answer::reply(Some(owner(default)))
}

/// §8.4.
pub(crate) fn delete(
    service: &mut Service,
    actor: &Jid,
    node: &str,
    redirect: Option<String>,
) -> Handler {
    let outcome = service.delete(actor, node, redirect)?;
    Ok(Answer::outcome(None, outcome))
}

/// §8.5.
pub(crate) fn purge(service: &mut Service, actor: &Jid, node: &str) -> Handler {
    let outcome = service.purge(actor, node)?;
    Ok(Answer::outcome(None, outcome))
}

/// §8.6: an owner's answer to an authorization request, sent as a `<message/>`. It is matched
/// by its fields (node, subscriber, optional SubID), so it is accepted wherever it was
/// addressed. Messages without such a form are not for this service and get no answer.
pub(crate) fn authorization_answer(
    service: &mut Service,
    ctx: &ServiceContext,
    from: &FullJid,
    message: &Element,
) -> Handled {
    if message.attr("type") == Some("error") {
        return Handled::nothing();
    }
    let submitted = message
        .children()
        .filter(|child| child.is("x", ns::DATA_FORMS))
        .filter_map(|x| DataForm::try_from(x.clone()).ok())
        .find(|form| {
            form.type_ == DataFormType::Submit
                && form.form_type() == Some(ns::SUBSCRIBE_AUTHORIZATION)
        });
    let Some(form) = submitted else {
        return Handled::nothing();
    };
    let actor = Jid::from(from.clone());
    let result = forms::read_authorization(&form).and_then(|answer| {
        service
            .authorize(
                &actor,
                &answer.node,
                &answer.subscriber,
                answer.subid.as_deref(),
                answer.allow,
            )
            .map_err(Error::from)
    });
    match result {
        Ok(outcome) => Handled {
            reply: None,
            effects: outcome.effects,
            undo: Some(outcome.undo),
            published: None,
        },
        Err(error) => Handled {
            reply: Some(xml::error_reply(
                message,
                Some((ctx.jid, from)),
                &error,
                None,
            )),
            effects: Vec::new(),
            undo: None,
            published: None,
        },
    }
}

/// §8.7, a stateless XEP-0050 command: executing it without a form returns the owner's nodes to
/// choose from; submitting a node sends the owner one authorization request per pending
/// subscription of that node.
pub(crate) fn get_pending(service: &Service, actor: &Jid, command: Command) -> Handler {
    let sessionid = command.sessionid.unwrap_or_else(next_id);
    let reply = |status: &str, child: Option<Element>| {
        builder("command", ns::COMMANDS)
            .with("node", ns::GET_PENDING)
            .with("sessionid", sessionid.as_str())
            .with("status", status)
            .append_all(child)
            .build()
    };
    if command.cancel {
        return Ok(Answer::reply(Some(reply("canceled", None))));
    }
    let Some(form) = command
        .form
        .filter(|form| form.type_ == DataFormType::Submit)
    else {
        let nodes: Vec<String> = service
            .own_affiliations(actor, None)
            .into_iter()
            .filter(|(_, affiliation)| *affiliation == Affiliation::Owner)
            .map(|(node, _)| node)
            .collect();
        return Ok(Answer::reply(Some(pending_choice(&sessionid, &nodes)?)));
    };
    let node = forms::read_pending_node(&form)?;
    let pending = service.pending_subscriptions(actor, &node)?;
    let effects = pending
        .into_iter()
        .map(|info| {
            Effect::AuthorizationRequest(AuthorizationRequest {
                node: info.node,
                subscriber: info.jid,
                subid: info.subid,
                owners: vec![actor.to_bare()],
            })
        })
        .collect();
    Ok(Answer {
        effects,
        ..Answer::reply(Some(reply("completed", None)))
    })
}

/// The first step of get-pending (§8.7.1): the `nodes` to choose from, `forbidden` when
/// there are none.
pub(crate) fn pending_choice(sessionid: &str, nodes: &[String]) -> Result<Element, Error> {
    if nodes.is_empty() {
        return Err(PubsubError::Forbidden.into());
    }
    Ok(builder("command", ns::COMMANDS)
        .with("node", ns::GET_PENDING)
        .with("sessionid", sessionid)
        .with("status", "executing")
        .append(
            builder("actions", ns::COMMANDS)
                .with("execute", "complete")
                .append(Element::bare("complete", ns::COMMANDS))
                .build(),
        )
        .append(Element::from(forms::pending_nodes(nodes)))
        .build())
}

/// §8.8.1: the node's subscriptions, pending ones too (the owner SHOULD see those waiting
/// for approval there as well as through get-pending).
pub(crate) fn subscriptions(service: &Service, actor: &Jid, node: &str) -> Handler {
    let subscriptions = service.listed_subscriptions(actor, node)?;
    let list = builder("subscriptions", ns::PUBSUB_OWNER)
        .with("node", node)
        .append_all(
            subscriptions
                .iter()
                .map(|info| subscription_entry(&info.jid, Some(&info.subid), info.state.as_str())),
        )
        .build();
    Ok(Answer::reply(Some(owner(list))))
}

fn subscription_entry(jid: &Jid, subid: Option<&str>, state: &str) -> Element {
    builder("subscription", ns::PUBSUB_OWNER)
        .with("jid", jid.as_str())
        .with("subscription", state)
        .with("subid", subid)
        .build()
}

/// §8.8.2. Owners set `subscribed` or `none`; each entry is done or refused on its own, and
/// the refused ones are returned with their current state in an error (§8.8.2.4: what the
/// error does not list was done).
pub(crate) fn set_subscriptions(
    service: &mut Service,
    ctx: &ServiceContext,
    actor: &Jid,
    node: &str,
    entries: Vec<SubscriptionEntry>,
) -> Handler {
    let (valid, invalid): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|entry| matches!(entry.state.as_str(), "subscribed" | "none"));
    let changes: Vec<SubscriptionChange> = valid
        .iter()
        .map(|entry| SubscriptionChange {
            subscribed: entry.state == "subscribed",
            jid: entry.jid.clone(),
            subid: entry.subid.clone().map(SubId::from),
        })
        .collect();
    let outcome = service.set_subscriptions_each(ctx.resolver, actor, node, &changes)?;
    // §8.8.2.4: whatever refused an entry (a state no owner sets, a stranger an owner may
    // not subscribe), the answer is `not-acceptable` naming the refused entries, so that one
    // refused among several reads as what it is, not as a refusal of the whole request.
    let error = Error::NotAcceptable;
    let mut refused: Vec<&SubscriptionEntry> = valid
        .iter()
        .zip(&outcome.value)
        .filter(|(_, result)| result.is_err())
        .map(|(entry, _)| entry)
        .collect();
    refused.extend(&invalid);
    if refused.is_empty() {
        return Ok(Answer::outcome(None, outcome));
    }
    let mut current = service.node_subscriptions(actor, node)?;
    current.extend(service.pending_subscriptions(actor, node)?);
    let echo = refused.iter().map(|entry| {
        let found = current.iter().find(|info| {
            info.jid == entry.jid && entry.subid.as_ref().is_none_or(|s| *s == info.subid)
        });
        let state = found.map_or("none", |info| info.state.as_str());
        subscription_entry(&entry.jid, entry.subid.as_deref(), state)
    });
    let list = builder("subscriptions", ns::PUBSUB_OWNER)
        .with("node", node)
        .append_all(echo)
        .build();
    let failure = Failure {
        error,
        echo: Some(Box::new(owner(list))),
    };
    Ok(Answer::partly(outcome, Some(failure)))
}

/// §8.9.1.
pub(crate) fn affiliations(service: &Service, actor: &Jid, node: &str) -> Handler {
    let affiliations = service.node_affiliations(actor, node)?;
    let list = builder("affiliations", ns::PUBSUB_OWNER)
        .with("node", node)
        .append_all(
            affiliations
                .iter()
                .map(|(jid, affiliation)| affiliation_entry(jid.as_str(), affiliation.as_str())),
        )
        .build();
    Ok(Answer::reply(Some(owner(list))))
}

fn affiliation_entry(jid: &str, affiliation: &str) -> Element {
    builder("affiliation", ns::PUBSUB_OWNER)
        .with("jid", jid)
        .with("affiliation", affiliation)
        .build()
}

/// §8.9.2. Each entry is done or refused on its own: an unknown affiliation, or the demotion
/// of owners that would leave the node without one, is refused, and the refused entries are
/// returned with their current affiliation in a `not-acceptable` error (§8.9.2.4: what the
/// error does not list was done).
pub(crate) fn set_affiliations(
    service: &mut Service,
    ctx: &ServiceContext,
    actor: &Jid,
    node: &str,
    entries: Vec<AffiliationEntry>,
) -> Handler {
    let current: BTreeMap<_, _> = service
        .node_affiliations(actor, node)?
        .into_iter()
        .collect();
    let (mut changes, mut refused) = (BTreeMap::new(), Vec::new());
    for entry in &entries {
        match entry.affiliation.parse::<Affiliation>() {
            Ok(affiliation) => {
                changes.insert(entry.jid.clone(), affiliation);
            }
            Err(_) => refused.push(entry),
        }
    }
    let is_owner = |jid: &BareJid| current.get(jid) == Some(&Affiliation::Owner);
    let owner_after =
        |jid: &BareJid| changes.get(jid).or(current.get(jid)) == Some(&Affiliation::Owner);
    if !current.keys().chain(changes.keys()).any(owner_after) {
        let demotes = |jid: &BareJid, to: &Affiliation| is_owner(jid) && *to != Affiliation::Owner;
        refused.extend(entries.iter().filter(|entry| {
            changes
                .get(&entry.jid)
                .is_some_and(|to| demotes(&entry.jid, to))
        }));
        changes.retain(|jid, to| !demotes(jid, to));
    }
    let outcome = service.set_affiliations(ctx.resolver, actor, node, &changes)?;
    if refused.is_empty() {
        return Ok(Answer::outcome(None, outcome));
    }
    let list = builder("affiliations", ns::PUBSUB_OWNER)
        .with("node", node)
        .append_all(refused.iter().map(|entry| {
            let affiliation = current
                .get(&entry.jid)
                .copied()
                .unwrap_or(Affiliation::None);
            affiliation_entry(entry.jid.as_str(), affiliation.as_str())
        }))
        .build();
    let failure = Failure {
        error: Error::NotAcceptable,
        echo: Some(Box::new(owner(list))),
    };
    Ok(Answer::partly(outcome, Some(failure)))
}
