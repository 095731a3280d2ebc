//! XEP-0313 for an account: its archive is the items of its conversations (`eventing::chat`),
//! read from storage, so it holds exactly what was committed, whether or not a conversation is
//! resident, and a query never waits on a shard.

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use verona_pubsub::StoreOp;
use verona_storage::{PubsubStore, PubsubWrite};

use crate::eventing::archive::{self, Archived};
use crate::eventing::chat;
use crate::server::Shared;
use crate::xml::{BuilderExt, StanzaError, builder, error_reply, iq_result};

/// The messages answering a query, then the iq result with its `<fin/>`; or the error reply.
pub async fn query(shared: &Shared, iq: &Element, payload: &Element, me: &FullJid) -> Vec<Element> {
    let refuse = |error, text: &str| error_reply(iq, error, Some(text)).into_iter().collect();
    let mut query = match archive::parse(payload) {
        Ok(query) => query,
        Err(e) => return refuse(StanzaError::BadRequest, &e),
    };
    let account = me.to_bare();
    let services = match &query.with {
        Some(with) => Ok(vec![format!(
            "{}/{}",
            shared.pubsub.jid(),
            chat::node(&account, &with.to_bare())
        )]),
        None => conversations_of(shared.archive.as_ref(), shared.pubsub.jid(), &account).await,
    };
    // A bare `with` chose the conversation; a full one also filters by the resource, which
    // the store cannot page, so that conversation is read whole.
    if query.with.as_ref().is_some_and(Jid::is_bare) {
        query.with = None;
    }
    let page = match services {
        Ok(services) if query.with.is_none() => paged(shared, &query, services).await,
        Ok(services) => read(shared, &account, services).await.and_then(|archive| {
            archive::select(&query, archive).map_err(verona_storage::StorageError::UnknownItem)
        }),
        Err(e) => Err(e),
    };
    let page = match page {
        Ok(page) => page,
        Err(verona_storage::StorageError::UnknownItem(id)) => {
            return refuse(
                StanzaError::ItemNotFound,
                &format!("{id}: not in the archive"),
            );
        }
        Err(e) => {
            tracing::error!(%account, "reading the archive: {e}");
            return refuse(
                StanzaError::InternalServerError,
                "the archive cannot be read",
            );
        }
    };
    let from = Jid::from(account.clone());
    let to = Jid::from(me.clone());
    let mut answer: Vec<Element> = page
        .results
        .iter()
        .map(|found| {
            let queryid = query.queryid.as_deref();
            let message = found.message.clone();
            archive::result(&from, &to, queryid, &found.id, found.at, message)
        })
        .collect();
    answer.push(iq_result(iq, Some(archive::fin(&page))));
    answer
}

/// A page of the conversations' items as the store reads it (indexed, in commit order): only
/// the page's messages are read and parsed.
async fn paged(
    shared: &Shared,
    query: &archive::Query,
    services: Vec<String>,
) -> Result<archive::Page<Element>, verona_storage::StorageError> {
    let asked = verona_storage::ItemsQuery {
        services,
        start: query.start,
        end: query.end,
        after: query.after.clone(),
        before: match &query.before {
            Some(archive::Before::Id(id)) => Some(id.clone()),
            Some(archive::Before::Last) | None => None,
        },
        backwards: query.before.is_some(),
        max: query.max,
        ids: query.ids.clone(),
    };
    let page = shared.archive.items_page(&asked).await?;
    let mut results: Vec<Archived<Element>> = page
        .items
        .into_iter()
        .filter_map(|found| {
            let message: Element = found.item.payload.as_deref()?.parse().ok()?;
            Some(Archived {
                id: found.item.id,
                at: found.item.published,
                by: None,
                message,
            })
        })
        .collect();
    if query.flip {
        results.reverse();
    }
    Ok(archive::Page {
        results,
        complete: page.complete,
        count: page.count,
    })
}

/// The archive of `account` in `services` (its conversations), oldest first, each message
/// found by the other party's address.
async fn read(
    shared: &Shared,
    account: &BareJid,
    services: Vec<String>,
) -> Result<Vec<Archived<Element>>, verona_storage::StorageError> {
    let mut archive = Vec::new();
    for service in services {
        for node in shared.archive.load_service(&service).await? {
            if chat::parties(&node.id).is_none_or(|(low, high)| low != *account && high != *account)
            {
                continue;
            }
            for item in node.items {
                let Some(message) = item.payload.as_deref().and_then(|p| p.parse().ok()) else {
                    continue;
                };
                archive.push(Archived {
                    by: other_party(&message, account),
                    id: item.id,
                    at: item.published,
                    message,
                });
            }
        }
    }
    archive.sort_by_key(|found| found.at);
    Ok(archive)
}

/// The services of the conversations `account` is a party to.
pub async fn conversations_of(
    archive: &dyn PubsubStore,
    pubsub_jid: &str,
    account: &BareJid,
) -> Result<Vec<String>, verona_storage::StorageError> {
    let prefix = chat::key_prefix(pubsub_jid);
    let mut held: Vec<String> = archive
        .subscriptions_of(account.as_str())
        .await?
        .into_iter()
        .filter(|held| held.service.starts_with(&prefix))
        .map(|held| held.service)
        .collect();
    held.dedup();
    Ok(held)
}

/// Deletes the conversations of a deleted account from storage (the shards have dropped
/// theirs from memory), so that whoever takes the name next reads none of them.
pub async fn delete_conversations(
    archive: &dyn PubsubStore,
    pubsub_jid: &str,
    services: Vec<String>,
) {
    let writes: Vec<PubsubWrite> = services
        .into_iter()
        .filter_map(|service| {
            let node = service.strip_prefix(pubsub_jid)?.strip_prefix('/')?;
            let op = StoreOp::NodeDeleted {
                node: node.to_owned(),
            };
            Some(PubsubWrite { service, op })
        })
        .collect();
    if let Err(e) = archive.apply(&writes).await {
        tracing::error!("deleting {} conversations: {e}", writes.len());
    }
}

/// The address of the other side of an archived message: who sent it, or for one the account
/// sent, whom it was for.
fn other_party(message: &Element, account: &BareJid) -> Option<Jid> {
    let from = message.attr("from").and_then(|from| Jid::new(from).ok())?;
    if from.to_bare() != *account {
        return Some(from);
    }
    message.attr("to").and_then(|to| Jid::new(to).ok())
}

/// The archive's preferences (§6): everything is archived, the only setting there is.
/// XEP-0313 §6.1 (1.1): where the account's archive starts and ends, `<metadata/>` empty when
/// it holds nothing; two indexed reads of one item each.
pub async fn metadata(shared: &Shared, iq: &Element, me: &FullJid) -> Element {
    let account = me.to_bare();
    let ends = async {
        let services =
            conversations_of(shared.archive.as_ref(), shared.pubsub.jid(), &account).await?;
        let mut ends = Vec::new();
        for backwards in [false, true] {
            let asked = verona_storage::ItemsQuery {
                services: services.clone(),
                backwards,
                max: 1,
                ..verona_storage::ItemsQuery::default()
            };
            let page = shared.archive.items_page(&asked).await?;
            ends.extend(page.items.into_iter().next().map(|found| found.item));
        }
        Ok::<_, verona_storage::StorageError>(ends)
    };
    let ends = match ends.await {
        Ok(ends) => ends,
        Err(e) => {
            tracing::error!(%account, "reading the archive's ends: {e}");
            let why = Some("the archive cannot be read");
            return error_reply(iq, StanzaError::InternalServerError, why)
                .unwrap_or_else(|| iq_result(iq, None));
        }
    };
    let mut metadata = builder("metadata", archive::NS);
    if let [first, last] = ends.as_slice() {
        for (name, item) in [("start", first), ("end", last)] {
            metadata = metadata.append(
                builder(name, archive::NS)
                    .with("id", item.id.as_str())
                    .with("timestamp", verona_pubsub_xmpp::stamp(item.published))
                    .build(),
            );
        }
    }
    iq_result(iq, Some(metadata.build()))
}

pub fn prefs(iq: &Element) -> Element {
    let prefs = builder("prefs", archive::NS)
        .with("default", "always")
        .append(Element::bare("always", archive::NS))
        .append(Element::bare("never", archive::NS))
        .build();
    iq_result(iq, Some(prefs))
}

/// Deletes an account while no server runs (`verona user del`): its conversations go with it,
/// as with an in-band removal (XEP-0077), which a running server does.
pub async fn delete_stopped(
    accounts: &crate::accounts::Accounts,
    archive: &dyn PubsubStore,
    pubsub_jid: &str,
    account: &BareJid,
) -> anyhow::Result<()> {
    let conversations = conversations_of(archive, pubsub_jid, account).await?;
    accounts.delete(account).await?;
    delete_conversations(archive, pubsub_jid, conversations).await;
    Ok(())
}
