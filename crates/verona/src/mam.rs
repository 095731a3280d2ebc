//! XEP-0313 for an account: its archive is the items of its conversations (`eventing::chat`),
//! read from storage, so it holds exactly what was committed, whether or not a conversation is
//! resident, and a query never waits on a shard.

use crate::jids::Bare;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use verona_storage::{NodeEnd, PubsubStore};

use crate::eventing::archive::{self, Archived};
use crate::eventing::chat;
use crate::server::Shared;
use crate::xml::{BuilderExt, StanzaError, builder, error_reply, iq_result};

/// The messages answering a query, then the iq result with its `<fin/>`; or the error reply.
pub async fn query(shared: &Shared, iq: &Element, payload: &Element, me: &FullJid) -> Vec<Element> {
    let refuse = |error, text: &str| error_reply(iq, error, Some(text)).into_iter().collect();
    let mut query = match archive::parse(payload) {
        Ok(query) => query,
        Err((error, why)) => return refuse(error, &why),
    };
    // §4.1.1: each id asked for must be there; only on a whole page without other filters or
    // bounds can a missing one be told from one they leave out.
    let unfiltered = query.with.is_none()
        && query.start.is_none()
        && query.end.is_none()
        && query.after_id.is_none()
        && query.before_id.is_none()
        && query.after.is_none()
        && query.before.is_none();
    let account = me.bare();
    let (archive, pubsub_jid) = (shared.archive.as_ref(), shared.pubsub.jid());
    let services = match &query.with {
        Some(with) => conversations_with(archive, pubsub_jid, &account, &with.bare()).await,
        None => conversations_of(archive, pubsub_jid, &account).await,
    };
    // A bare `with` chose the conversation; a full one also filters by the resource, which
    // the store cannot page on: that conversation is scanned a chunk at a time.
    let resource = query.with.take().filter(|with| !with.is_bare());
    let page = match (services, resource) {
        (Ok(services), None) => paged(shared, &query, services).await,
        (Ok(services), Some(with)) => {
            let archive = shared.archive.as_ref();
            scanned(archive, &query, services, &account, &with, SCAN_CHUNK).await
        }
        (Err(e), _) => Err(e),
    };
    let page = match page {
        Ok(page) => page,
        Err(verona_storage::StorageError::UnknownItem(id)) => {
            return refuse(
                StanzaError::ItemNotFound,
                &format!("{id}: not in the archive"),
            );
        }
        Err(verona_storage::StorageError::TooCostly) => {
            return refuse(
                StanzaError::PolicyViolation,
                "the query reads too much of the archive: choose a conversation with 'with'",
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
    let missing = (query.ids.iter().flatten()).find(|id| {
        unfiltered && page.complete && !page.results.iter().any(|found| found.id == **id)
    });
    if let Some(id) = missing {
        return refuse(
            StanzaError::ItemNotFound,
            &format!("{id}: not in the archive"),
        );
    }
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
        after_id: query.after_id.clone(),
        before_id: query.before_id.clone(),
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

/// How many stored messages a full-JID `with` reads at a time.
const SCAN_CHUNK: usize = 100;

/// A page of what one resource said or was sent (a full-JID `with`): the store pages the
/// conversation `chunk` messages at a time and the page is filled from those that match, so a
/// query holds one chunk at most however long the conversation is. How many match in all is
/// not counted: that would read the conversation whole.
async fn scanned(
    archive: &dyn PubsubStore,
    query: &archive::Query,
    services: Vec<String>,
    account: &BareJid,
    with: &Jid,
    chunk: usize,
) -> Result<archive::Page<Element>, verona_storage::StorageError> {
    let backwards = query.before.is_some();
    let mut cursor = match &query.before {
        Some(archive::Before::Id(id)) => Some(id.clone()),
        Some(archive::Before::Last) => None,
        None => query.after.clone(),
    };
    // In the order scanned: oldest first forwards, newest first backwards.
    let mut results: Vec<Archived<Element>> = Vec::new();
    let complete = loop {
        let asked = verona_storage::ItemsQuery {
            services: services.clone(),
            start: query.start,
            end: query.end,
            after_id: query.after_id.clone(),
            before_id: query.before_id.clone(),
            after: if backwards {
                query.after.clone()
            } else {
                cursor.clone()
            },
            before: if backwards { cursor.clone() } else { None },
            backwards,
            max: chunk,
            ids: query.ids.clone(),
        };
        let page = archive.items_page(&asked).await?;
        let next = if backwards {
            page.items.first()
        } else {
            page.items.last()
        };
        cursor = next.map(|found| found.item.id.clone());
        let mut items = page.items;
        if backwards {
            items.reverse();
        }
        for found in items {
            let Some(message) = found.item.payload.as_deref().and_then(|p| p.parse().ok()) else {
                continue;
            };
            if other_party(&message, account).as_ref() == Some(with) {
                results.push(Archived {
                    id: found.item.id,
                    at: found.item.published,
                    by: None,
                    message,
                });
            }
            if results.len() > query.max {
                break;
            }
        }
        if results.len() > query.max {
            break false;
        }
        if page.complete || cursor.is_none() {
            break true;
        }
    };
    results.truncate(query.max);
    if backwards != query.flip {
        results.reverse();
    }
    Ok(archive::Page {
        results,
        complete,
        count: None,
    })
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

/// The services of `account`'s conversation with `with`: the live one, and those retired when
/// earlier accounts of that name were deleted ([`chat::retired`]), which its archive still
/// holds under that JID.
async fn conversations_with(
    archive: &dyn PubsubStore,
    pubsub_jid: &str,
    account: &BareJid,
    with: &BareJid,
) -> Result<Vec<String>, verona_storage::StorageError> {
    let live = chat::node(account, with);
    let mut services = conversations_of(archive, pubsub_jid, account).await?;
    services.retain(|service| {
        node_of(pubsub_jid, service).and_then(chat::retired_from) == Some(live.as_str())
    });
    services.push(format!("{pubsub_jid}/{live}"));
    Ok(services)
}

/// A conversation's node, from its service `<pubsub>/<node>`.
fn node_of<'a>(pubsub_jid: &str, service: &'a str) -> Option<&'a str> {
    service.strip_prefix(pubsub_jid)?.strip_prefix('/')
}

/// What becomes of a deleted account's conversations in storage, in the transaction that
/// deletes it ([`verona_storage::AccountStore::delete_account`]; the shards have dropped them
/// from memory): one with another local account is retired ([`chat::retired`]), as that
/// account's archive is its own (XEP-0313), while the next owner of the deleted name neither
/// reads it nor is a party to it; the others (with itself, with another server's user,
/// already retired) are deleted.
pub async fn conversation_ends(
    accounts: &crate::accounts::Accounts,
    pubsub_jid: &str,
    account: &BareJid,
    services: Vec<String>,
) -> Vec<NodeEnd> {
    let mut ends = Vec::new();
    for service in services {
        let Some(node) = node_of(pubsub_jid, &service) else {
            continue;
        };
        let other = chat::parties(node)
            .map(|(low, high)| if low == *account { high } else { low })
            .filter(|other| other != account);
        let survives = match other {
            Some(other) => matches!(accounts.credentials(&other).await, Ok(Some(_))),
            None => false,
        };
        let node = node.to_owned();
        let to = survives.then(|| {
            let retired = chat::retired(&node, std::time::SystemTime::now());
            (format!("{pubsub_jid}/{retired}"), retired)
        });
        ends.push(NodeEnd { service, node, to });
    }
    ends
}

/// The address of the other side of an archived message: who sent it, or for one the account
/// sent, whom it was for.
fn other_party(message: &Element, account: &BareJid) -> Option<Jid> {
    let from = message.attr("from").and_then(|from| Jid::new(from).ok())?;
    if from.bare() != *account {
        return Some(from);
    }
    message.attr("to").and_then(|to| Jid::new(to).ok())
}

/// The archive's preferences (§6): everything is archived, the only setting there is.
/// XEP-0313 §6.1 (1.1): where the account's archive starts and ends, `<metadata/>` empty when
/// it holds nothing; two indexed reads of one item each.
pub async fn metadata(shared: &Shared, iq: &Element, me: &FullJid) -> Element {
    let account = me.bare();
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

/// Deletes an account while no server runs (`verona user del`): its conversations end as with
/// an in-band removal (XEP-0077), which a running server does.
pub async fn delete_stopped(
    accounts: &crate::accounts::Accounts,
    archive: &dyn PubsubStore,
    pubsub_jid: &str,
    account: &BareJid,
) -> anyhow::Result<()> {
    let conversations = conversations_of(archive, pubsub_jid, account).await?;
    let ends = conversation_ends(accounts, pubsub_jid, account, conversations).await;
    accounts.delete(account, &ends).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use verona_pubsub::{Item, NodeConfig, StoreOp};
    use verona_storage::{MemoryStore, PubsubWrite};

    use super::*;

    const SERVICE: &str = "pubsub.localhost/conversation";

    fn at(n: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(n)
    }

    /// Twelve messages between juliet and two of romeo's resources, in turn: from
    /// romeo/orchard, to romeo/orchard, from romeo/garden.
    fn said() -> Vec<(String, String)> {
        (0..12)
            .map(|n| {
                let (from, to) = match n % 3 {
                    0 => ("romeo@localhost/orchard", "juliet@localhost"),
                    1 => ("juliet@localhost/balcony", "romeo@localhost/orchard"),
                    _ => ("romeo@localhost/garden", "juliet@localhost"),
                };
                let message = format!(
                    "<message xmlns='jabber:client' type='chat' from='{from}' to='{to}'><body>{n}</body></message>"
                );
                (format!("m{n}"), message)
            })
            .collect()
    }

    async fn stored() -> MemoryStore {
        let store = MemoryStore::new();
        let node = "conversation".to_owned();
        let mut writes = vec![PubsubWrite {
            service: SERVICE.to_owned(),
            op: StoreOp::NodeCreated {
                node: node.clone(),
                config: NodeConfig::default(),
            },
        }];
        for (n, (id, message)) in said().into_iter().enumerate() {
            let item = Item {
                id,
                payload: Some(Arc::from(message.as_str())),
                publisher: Jid::new("romeo@localhost").unwrap(),
                published: at(n as u64 + 1),
            };
            let node = node.clone();
            let op = StoreOp::ItemStored { node, item };
            let service = SERVICE.to_owned();
            writes.push(PubsubWrite { service, op });
        }
        store.apply(&writes).await.unwrap();
        store
    }

    fn ids(page: &archive::Page<Element>) -> Vec<String> {
        page.results.iter().map(|found| found.id.clone()).collect()
    }

    /// Scanning a chunk at a time gives the page that filtering the whole conversation gives,
    /// whatever the chunk, forwards, backwards, flipped, between times and by ids.
    #[tokio::test]
    async fn a_full_jid_with_pages_as_the_whole_conversation_filtered_would() {
        let store = stored().await;
        let account = BareJid::new("juliet@localhost").unwrap();
        let with = Jid::new("romeo@localhost/orchard").unwrap();
        let whole: Vec<Archived<Element>> = said()
            .into_iter()
            .enumerate()
            .map(|(n, (id, message))| {
                let message: Element = message.parse().unwrap();
                let by = other_party(&message, &account);
                let at = at(n as u64 + 1);
                Archived {
                    id,
                    at,
                    by,
                    message,
                }
            })
            .collect();
        let query = |edit: &dyn Fn(&mut archive::Query)| {
            let mut query = archive::Query {
                queryid: None,
                with: Some(with.clone()),
                start: None,
                end: None,
                after_id: None,
                before_id: None,
                after: None,
                before: None,
                ids: None,
                max: 3,
                flip: false,
            };
            edit(&mut query);
            query
        };
        let queries = [
            query(&|_| {}),
            query(&|q| q.max = 100),
            query(&|q| q.max = 0),
            query(&|q| q.after = Some("m1".into())),
            query(&|q| q.after = Some("m6".into())),
            query(&|q| q.before = Some(archive::Before::Last)),
            query(&|q| q.before = Some(archive::Before::Id("m9".into()))),
            query(&|q| {
                q.before = Some(archive::Before::Id("m9".into()));
                q.after = Some("m3".into());
            }),
            query(&|q| {
                q.before = Some(archive::Before::Last);
                q.flip = true;
            }),
            query(&|q| q.flip = true),
            query(&|q| {
                q.start = Some(at(4));
                q.end = Some(at(10));
            }),
            query(&|q| q.ids = Some(vec!["m10".into(), "m3".into(), "m2".into()])),
        ];
        for query in queries {
            let expected = archive::select(&query, whole.clone()).unwrap();
            for chunk in [1, 2, 5, 100] {
                let services = vec![SERVICE.to_owned()];
                let page = scanned(&store, &query, services, &account, &with, chunk)
                    .await
                    .unwrap();
                assert_eq!(
                    (ids(&page), page.complete, page.count),
                    (ids(&expected), expected.complete, None),
                    "{query:?}, {chunk} at a time"
                );
            }
        }
        let unknown = query(&|q| q.after = Some("gone".into()));
        let services = vec![SERVICE.to_owned()];
        let scan = scanned(&store, &unknown, services, &account, &with, 5).await;
        assert!(scan.is_err(), "{scan:?}");
    }
}
