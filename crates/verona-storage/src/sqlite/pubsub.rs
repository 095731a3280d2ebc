//! [`PubsubStore`] for [`SqliteStore`] (schema: `migrations/sqlite/0002_pubsub.sql`, items as
//! `0007_items_by_node_id.sql` left them).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use verona_pubsub::{Affiliation, Item, StoreOp, StoredNode, StoredSubscription};

use super::SqliteStore;
use crate::pubsub::{
    config_from_json, config_to_json, from_micros, node_of, options_from_json, options_to_json,
    parse, to_micros,
};
use crate::{
    BoxFuture, COUNTED_AT_MOST, Conversations, FoundItem, HeldAffiliation, HeldSubscription,
    ItemsPage, ItemsQuery, NodeListing, PubsubStore, PubsubWrite, StorageError,
};

type SubscriptionRow = (String, String, String, String, String);
type ItemRow = (String, String, Option<String>, String, i64);

impl SqliteStore {
    /// Every stored node of a service; with `items`, only each node's newest so many items.
    async fn load(
        &self,
        service: &str,
        items: Option<usize>,
    ) -> Result<Vec<StoredNode>, StorageError> {
        // One read transaction: a consistent view while batches commit.
        let mut tx = self.pool.begin().await?;
        let node_rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT node, config FROM pubsub_nodes WHERE service = $1 ORDER BY node",
        )
        .bind(service)
        .fetch_all(&mut *tx)
        .await?;
        let affiliation_rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT node, jid, affiliation FROM pubsub_affiliations WHERE service = $1 \
             ORDER BY node, jid",
        )
        .bind(service)
        .fetch_all(&mut *tx)
        .await?;
        // One row, as `SUBSCRIPTIONS_OF`: an account's service has a subscription for each
        // of its contacts.
        let subscription_rows: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(node, subid, jid, state, options) \
             ORDER BY node, subid) FROM pubsub_subscriptions WHERE service = $1",
        )
        .bind(service)
        .fetch_one(&mut *tx)
        .await?;
        let subscription_rows: Vec<SubscriptionRow> = serde_json::from_str(&subscription_rows)
            .map_err(|e| StorageError::Corrupt(format!("a service's subscriptions: {e}")))?;
        let item_rows: Vec<ItemRow> = match items {
            None => {
                sqlx::query_as(
                    "SELECT n.node, i.item_id, i.payload, i.publisher, i.published \
                     FROM pubsub_nodes AS n JOIN pubsub_items AS i ON i.node_id = n.id \
                     WHERE n.service = $1 ORDER BY n.node, i.seq",
                )
                .bind(service)
                .fetch_all(&mut *tx)
                .await?
            }
            Some(items) => {
                sqlx::query_as(
                    "SELECT node, item_id, payload, publisher, published FROM ( \
                       SELECT n.node, i.item_id, i.payload, i.publisher, i.published, i.seq, \
                       ROW_NUMBER() OVER (PARTITION BY i.node_id ORDER BY i.seq DESC) AS newer \
                       FROM pubsub_nodes AS n JOIN pubsub_items AS i ON i.node_id = n.id \
                       WHERE n.service = $1) \
                     WHERE newer <= $2 ORDER BY node, seq",
                )
                .bind(service)
                .bind(i64::try_from(items).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;

        let mut nodes = BTreeMap::new();
        for (id, config) in node_rows {
            let config = config_from_json(&config)?;
            nodes.insert(
                id.clone(),
                StoredNode {
                    id,
                    config,
                    affiliations: Vec::new(),
                    subscriptions: Vec::new(),
                    items: Vec::new(),
                },
            );
        }
        for (id, jid, affiliation) in affiliation_rows {
            let affiliation = (parse("JID", &jid)?, parse("affiliation", &affiliation)?);
            node_mut(&mut nodes, &id)?.affiliations.push(affiliation);
        }
        for (id, subid, jid, state, options) in subscription_rows {
            let subscription = StoredSubscription {
                subid: subid.into(),
                jid: parse("JID", &jid)?,
                state: parse("subscription state", &state)?,
                options: options_from_json(&options)?,
            };
            node_mut(&mut nodes, &id)?.subscriptions.push(subscription);
        }
        for (id, item_id, payload, publisher, published) in item_rows {
            let item = Item {
                id: item_id,
                payload: payload.map(Arc::from),
                publisher: parse("JID", &publisher)?,
                published: from_micros(published)?,
            };
            node_mut(&mut nodes, &id)?.items.push(item);
        }
        Ok(nodes.into_values().collect())
    }
}

/// A user's relations, as [`PubsubStore::subscriptions_of`] returns them: read at every login,
/// from the subscriber index alone (migration 0009), as one row. sqlx hands each row from the
/// database's thread to the caller's on its own, waking it: 50 rows for 50 contacts were 7 %
/// of the server's CPU in a login storm (`bench/scale.sh`), one JSON array is one wake.
const SUBSCRIPTIONS_OF: &str = "SELECT json_group_array(json_array(service, node, state) \
     ORDER BY service, node, subid) FROM pubsub_subscriptions WHERE subscriber = $1";

impl PubsubStore for SqliteStore {
    fn load_service<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredNode>, StorageError>> {
        Box::pin(self.load(service, None))
    }

    fn load_service_recent<'a>(
        &'a self,
        service: &'a str,
        items: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredNode>, StorageError>> {
        Box::pin(self.load(service, Some(items)))
    }

    fn trim_items<'a>(
        &'a self,
        service: &'a str,
        keep: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        Box::pin(async move {
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
            // Bytes as Rust counts a string's, not characters as LENGTH of TEXT does.
            let removed = sqlx::query(
                "DELETE FROM pubsub_items WHERE seq IN (SELECT seq FROM ( \
                   SELECT seq, ROW_NUMBER() OVER newest AS newer, \
                     SUM(LENGTH(CAST(item_id AS BLOB)) \
                         + COALESCE(LENGTH(CAST(payload AS BLOB)), 0)) OVER newest AS bytes \
                   FROM pubsub_items WHERE node_id IN \
                   (SELECT id FROM pubsub_nodes WHERE service = ?) \
                   WINDOW newest AS (PARTITION BY node_id ORDER BY seq DESC \
                     ROWS UNBOUNDED PRECEDING)) \
                 WHERE newer > ? OR (newer > 1 AND bytes > ?))",
            )
            .bind(service)
            .bind(keep)
            .bind(max_bytes)
            .execute(&self.writer)
            .await?
            .rows_affected();
            Ok(usize::try_from(removed).unwrap_or(usize::MAX))
        })
    }
    fn move_node<'a>(
        &'a self,
        service: &'a str,
        node: &'a str,
        to_service: &'a str,
        to_node: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await?;
            move_node_in(&mut tx, service, node, to_service, to_node).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar("SELECT DISTINCT service FROM pubsub_nodes ORDER BY service")
                    .fetch_all(&self.pool)
                    .await?,
            )
        })
    }

    fn node_configs<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeListing>, StorageError>> {
        Box::pin(async move {
            // A range on the primary key: every name that starts with `prefix` sorts between it
            // and `prefix` followed by the last code point.
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT service, node, config FROM pubsub_nodes \
                 WHERE service >= $1 AND service < $1 || char(1114111) ORDER BY service, node",
            )
            .bind(prefix)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(service, node, config)| {
                    Ok(NodeListing {
                        service,
                        node,
                        config: config_from_json(&config)?,
                    })
                })
                .collect()
        })
    }

    fn owned_count<'a>(
        &'a self,
        owner: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        Box::pin(async move {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pubsub_affiliations WHERE jid = $1 AND affiliation = $2 \
                 AND service >= $3 AND service < $3 || char(1114111)",
            )
            .bind(owner)
            .bind(Affiliation::Owner.as_str())
            .bind(prefix)
            .fetch_one(&self.pool)
            .await?;
            Ok(usize::try_from(count).unwrap_or(0))
        })
    }

    fn affiliations_of<'a>(
        &'a self,
        jid: &'a str,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<HeldAffiliation>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT service, node, affiliation FROM pubsub_affiliations WHERE jid = $1 \
                 AND service >= $2 AND service < $2 || char(1114111) \
                 ORDER BY service, node LIMIT $3",
            )
            .bind(jid)
            .bind(prefix)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(service, node, affiliation)| {
                    Ok(HeldAffiliation {
                        service,
                        node,
                        affiliation: parse("affiliation", &affiliation)?,
                    })
                })
                .collect()
        })
    }

    fn subscriptions_of<'a>(
        &'a self,
        subscriber: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HeldSubscription>, StorageError>> {
        Box::pin(async move {
            let rows: String = sqlx::query_scalar(SUBSCRIPTIONS_OF)
                .bind(subscriber)
                .fetch_one(&self.pool)
                .await?;
            let rows: Vec<(String, String, String)> = serde_json::from_str(&rows)
                .map_err(|e| StorageError::Corrupt(format!("a user's subscriptions: {e}")))?;
            rows.into_iter()
                .map(|(service, node, state)| {
                    Ok(HeldSubscription {
                        service,
                        node,
                        state: parse("subscription state", &state)?,
                    })
                })
                .collect()
        })
    }

    fn subscription_count<'a>(
        &'a self,
        subscriber: &'a str,
        conversations: Conversations<'a>,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        Box::pin(async move {
            // `Conversations::is_federated` in SQL, on the subscriber's rows only (indexed):
            // a live pair is `<prefix><low>/<high>` with no further `/`, and a party is local
            // when it is the domain or ends with `@` and the domain.
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM ( \
                   SELECT slash, substr(pair, 1, slash - 1) AS low, substr(pair, slash + 1) AS high \
                   FROM ( \
                     SELECT pair, coalesce(instr(pair, '/'), 0) AS slash FROM ( \
                       SELECT CASE WHEN substr(service, 1, length($2)) = $2 \
                         THEN substr(service, length($2) + 1) END AS pair \
                       FROM pubsub_subscriptions WHERE subscriber = $1))) \
                 WHERE NOT (slash > 0 AND instr(high, '/') = 0 AND NOT ( \
                   (low = $3 OR substr(low, -length($3) - 1) = '@' || $3) \
                   AND (high = $3 OR substr(high, -length($3) - 1) = '@' || $3)))",
            )
            .bind(subscriber)
            .bind(conversations.prefix)
            .bind(conversations.domain)
            .fetch_one(&self.pool)
            .await?;
            Ok(usize::try_from(count).unwrap_or(0))
        })
    }

    fn items_page<'a>(
        &'a self,
        query: &'a ItemsQuery,
    ) -> BoxFuture<'a, Result<ItemsPage, StorageError>> {
        Box::pin(async move {
            let nothing = || ItemsPage {
                items: Vec::new(),
                count: Some(0),
                complete: true,
            };
            if query.services.is_empty() {
                return Ok(nothing());
            }
            // One read transaction: a consistent view while batches commit.
            let mut tx = self.pool.begin().await?;
            // The services' nodes by number, as items name them: a conversation's one node is
            // then a range of the items' (node_id, seq) index, read in order.
            let nodes_sql = format!(
                "SELECT id, service, node FROM pubsub_nodes WHERE service IN ({})",
                vec!["?"; query.services.len()].join(", ")
            );
            let mut nodes_query = sqlx::query_as(sqlx::AssertSqlSafe(nodes_sql));
            for service in &query.services {
                nodes_query = nodes_query.bind(service.as_str());
            }
            let nodes: HashMap<i64, (String, String)> = nodes_query
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(id, service, node)| (id, (service, node)))
                .collect();
            if nodes.is_empty() {
                return Ok(nothing());
            }
            // Anonymous parameters, bound in order (see `anonymous_rows`): the node numbers,
            // then the times, then what each statement adds.
            let of_the_nodes = format!("node_id IN ({})", vec!["?"; nodes.len()].join(", "));
            let mut filter = of_the_nodes.clone();
            if query.start.is_some() {
                filter.push_str(" AND published >= ?");
            }
            if query.end.is_some() {
                filter.push_str(" AND published <= ?");
            }
            let ids = query.ids.as_deref().unwrap_or_default();
            if query.ids.is_some() {
                let marks = vec!["?"; ids.len()].join(", ");
                filter.push_str(&format!(" AND item_id IN ({marks})"));
            }
            let times: Vec<i64> = [query.start, query.end]
                .into_iter()
                .flatten()
                .map(to_micros)
                .collect::<Result<_, _>>()?;
            let filtered = |sql: String| {
                let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
                for node in nodes.keys() {
                    statement = statement.bind(*node);
                }
                for time in &times {
                    statement = statement.bind(*time);
                }
                for id in ids {
                    statement = statement.bind(id.as_str());
                }
                statement
            };
            let exceeded = Arc::new(AtomicBool::new(false));
            bound_work(&mut tx, &exceeded).await?;
            let read = async {
                // Each id becomes a bound on storage order (numbers the store made, written
                // into the statements as such): `after-id` and `before-id` bound the result set
                // (counted), then RSM's `after` and `before` the page within it. An id is
                // looked for among all the nodes' items, not among those the rest leaves
                // (XEP-0313 §4.1.4: `item-not-found` is for an id that is not there).
                let mut filter = filter;
                let anchor =
                    format!("SELECT seq FROM pubsub_items WHERE {of_the_nodes} AND item_id = ?");
                let mut page = String::new();
                let anchors = [
                    (&query.after_id, '>', true),
                    (&query.before_id, '<', true),
                    (&query.after, '>', false),
                    (&query.before, '<', false),
                ];
                for (id, bound, of_the_set) in anchors {
                    let Some(id) = id else { continue };
                    let mut statement = sqlx::query(sqlx::AssertSqlSafe(anchor.as_str()));
                    for node in nodes.keys() {
                        statement = statement.bind(*node);
                    }
                    let row = (statement.bind(id.as_str()))
                        .fetch_optional(&mut *tx)
                        .await?;
                    let seq: i64 = row
                        .ok_or_else(|| StorageError::UnknownItem(id.clone()))?
                        .get(0);
                    let clause = format!(" AND seq {bound} {seq}");
                    if of_the_set {
                        filter.push_str(&clause);
                    } else {
                        page.push_str(&clause);
                    }
                }
                let counted = format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM pubsub_items WHERE {filter} LIMIT {})",
                    COUNTED_AT_MOST + 1
                );
                let count: i64 = filtered(counted).fetch_one(&mut *tx).await?.get(0);
                let count = usize::try_from(count)
                    .ok()
                    .filter(|count| *count <= COUNTED_AT_MOST);
                let order = if query.backwards { "DESC" } else { "ASC" };
                let sql = format!(
                    "SELECT node_id, item_id, payload, publisher, published FROM pubsub_items \
                 WHERE {filter}{page} ORDER BY seq {order} LIMIT ?"
                );
                let statement = filtered(sql);
                let limit = i64::try_from(query.max.saturating_add(1)).unwrap_or(i64::MAX);
                let rows = statement.bind(limit).fetch_all(&mut *tx).await?;
                Ok::<_, StorageError>((count, rows))
            };
            let read = read.await;
            // The connection goes back to the pool without the bound, whatever happened.
            tx.lock_handle().await?.remove_progress_handler();
            let (count, rows) = match read {
                Err(_) if exceeded.load(Ordering::Relaxed) => return Err(StorageError::TooCostly),
                read => read?,
            };
            tx.commit().await?;
            let complete = rows.len() <= query.max;
            let mut items = rows
                .into_iter()
                .take(query.max)
                .map(|row| {
                    let (service, node) = nodes
                        .get(&row.get::<i64, _>(0))
                        .cloned()
                        .ok_or_else(|| StorageError::Corrupt("item of an unread node".into()))?;
                    Ok(FoundItem {
                        service,
                        node,
                        item: Item {
                            id: row.get(1),
                            payload: row.get::<Option<String>, _>(2).map(Arc::from),
                            publisher: parse("JID", row.get::<&str, _>(3))?,
                            published: from_micros(row.get(4))?,
                        },
                    })
                })
                .collect::<Result<Vec<_>, StorageError>>()?;
            if query.backwards {
                items.reverse();
            }
            Ok(ItemsPage {
                items,
                count,
                complete,
            })
        })
    }

    fn apply<'a>(&'a self, writes: &'a [PubsubWrite]) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            if writes.is_empty() {
                return Ok(());
            }
            let (done, outcome) = oneshot::channel();
            let closed = || StorageError::Closed;
            self.committer
                .send(Pending {
                    writes: writes.to_vec(),
                    done,
                })
                .map_err(|_| closed())?;
            outcome.await.map_err(|_| closed())?
        })
    }
}

/// Virtual machine steps one archive query may take, in units of [`STEPS_PER_CHECK`]: at
/// most about 0.1 s of a database connection. A page of an archive follows an index and stops
/// at the page's end (a page of a 1,000,000-message archive: 1.6 ms), but a time range or ids
/// that match little of a large archive make SQLite read all of it to find them (a future
/// `start` over 1,000,000 messages: 350–500 ms) for a request of 200 bytes. Any query of one
/// conversation (10,000 messages at most) stays far below; a time range over all of a large
/// archive (a few hundred thousand messages) is refused.
#[cfg(not(test))]
const QUERY_STEP_CHECKS: u32 = 2_000;
/// Smaller in tests, so that a test archive can be large enough to exceed it.
#[cfg(test)]
const QUERY_STEP_CHECKS: u32 = 300;
const STEPS_PER_CHECK: i32 = 1_000;

/// Interrupts the statements `conn` runs once they have taken [`QUERY_STEP_CHECKS`] checks'
/// worth of steps in all, and then sets `exceeded`.
async fn bound_work(
    conn: &mut SqliteConnection,
    exceeded: &Arc<AtomicBool>,
) -> Result<(), StorageError> {
    let (exceeded, mut checks) = (exceeded.clone(), 0u32);
    conn.lock_handle()
        .await?
        .set_progress_handler(STEPS_PER_CHECK, move || {
            checks += 1;
            if checks <= QUERY_STEP_CHECKS {
                return true;
            }
            exceeded.store(true, Ordering::Relaxed);
            false
        });
    Ok(())
}

/// One [`PubsubStore::apply`] call waiting for the committer.
pub(super) struct Pending {
    writes: Vec<PubsubWrite>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// Write sets committed together at most: one transaction, one sync to disk.
const GROUP: usize = 64;

/// Commits the write sets of [`PubsubStore::apply`] calls that arrive together (one from each
/// pubsub shard, say) in one transaction: one sync to disk serves them all. If that fails, each
/// set is committed alone, so a set that fails is undone alone and reported to its caller.
pub(super) async fn commit_groups(
    writer: SqlitePool,
    mut pending: mpsc::UnboundedReceiver<Pending>,
) {
    let mut group = Vec::with_capacity(GROUP);
    while pending.recv_many(&mut group, GROUP).await > 0 {
        let together = group.len() > 1 && commit(&writer, &group).await.is_ok();
        for pending in group.drain(..) {
            let outcome = if together {
                Ok(())
            } else {
                commit(&writer, std::slice::from_ref(&pending)).await
            };
            // A caller that stopped waiting needs no answer.
            pending.done.send(outcome).ok();
        }
    }
}

/// The sets in one transaction, rolled back (as it drops) if any write fails.
async fn commit(writer: &SqlitePool, sets: &[Pending]) -> Result<(), StorageError> {
    let mut tx = writer.begin().await?;
    let writes: Vec<&PubsubWrite> = sets.iter().flat_map(|set| &set.writes).collect();
    apply_writes(&mut tx, &in_runs(&writes)).await?;
    tx.commit().await?;
    Ok(())
}

/// The order in which to apply `writes` so that writes of one kind come together, as few
/// statements: each statement is a round trip to the database's thread (two thread switches),
/// which costs more than the rows it writes. A room's message is an item stored and its
/// oldest removed; a hundred rooms' messages, interleaved, were two hundred statements, and
/// are two. Writes of one node stay in their order, and so do writes of one kind (items keep
/// the order they were published in, which is an archive's order across a service's nodes).
fn in_runs<'a>(writes: &[&'a PubsubWrite]) -> Vec<&'a PubsubWrite> {
    let key = |w: &'a PubsubWrite| (w.service.as_str(), node_of(&w.op));
    // For each write, how many earlier writes its node has: it may go once that many have.
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    let rank: Vec<usize> = writes
        .iter()
        .map(|w| {
            let count = seen.entry(key(w)).or_default();
            *count += 1;
            *count - 1
        })
        .collect();
    let mut by_kind: Vec<(std::mem::Discriminant<StoreOp>, Vec<usize>)> = Vec::new();
    for (at, write) in writes.iter().enumerate() {
        let kind = std::mem::discriminant(&write.op);
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, list)) => list.push(at),
            None => by_kind.push((kind, vec![at])),
        }
    }
    let mut gone: HashMap<(&str, &str), usize> = HashMap::new();
    let mut next = vec![0; by_kind.len()];
    let mut order = Vec::with_capacity(writes.len());
    // Each pass takes, kind by kind, the writes whose node is ready for them, up to the
    // first that is not; the earliest write not taken is always ready, so each pass takes
    // at least one.
    while order.len() < writes.len() {
        for ((_, list), next) in by_kind.iter().zip(next.iter_mut()) {
            while let Some(&at) = list.get(*next) {
                let done = gone.entry(key(writes[at])).or_default();
                if *done != rank[at] {
                    break;
                }
                *done += 1;
                order.push(writes[at]);
                *next += 1;
            }
        }
    }
    order
}

/// Writes in order, with runs of subscriptions, of stored items and of removed items as
/// multi-row statements.
async fn apply_writes(
    conn: &mut SqliteConnection,
    writes: &[&PubsubWrite],
) -> Result<(), StorageError> {
    let mut rest = writes;
    while !rest.is_empty() {
        let kind = std::mem::discriminant(&rest[0].op);
        let run = rest
            .iter()
            .take_while(|w| std::mem::discriminant(&w.op) == kind)
            .count();
        match &rest[0].op {
            StoreOp::SubscriptionSet { .. } if run > 1 => {
                for chunk in rest[..run].chunks(SUBSCRIPTIONS_PER_STATEMENT) {
                    set_subscriptions(conn, chunk).await?;
                }
            }
            StoreOp::ItemStored { .. } => store_items(conn, &rest[..run]).await?,
            StoreOp::ItemRemoved { .. } => {
                for chunk in rest[..run].chunks(ITEMS_PER_STATEMENT) {
                    remove_items(conn, chunk).await?;
                }
            }
            _ => {
                apply_write(conn, rest[0]).await?;
                rest = &rest[1..];
                continue;
            }
        }
        rest = &rest[run..];
    }
    Ok(())
}

/// Subscription rows written by one statement: each statement is a round trip to the
/// database's worker thread, which costs more than writing a row (7 parameters a row, well
/// under SQLite's limit of 32,766).
const SUBSCRIPTIONS_PER_STATEMENT: usize = 500;

/// Consecutive `SubscriptionSet` writes as one multi-row upsert; rows apply in order, so a
/// SubID written twice keeps its last row, as one statement each would.
async fn set_subscriptions(
    conn: &mut SqliteConnection,
    writes: &[&PubsubWrite],
) -> Result<(), StorageError> {
    let mut sql = String::from(
        "INSERT INTO pubsub_subscriptions \
         (service, node, subid, jid, state, options, subscriber) VALUES ",
    );
    sql.push_str(&anonymous_rows(writes.len(), 7));
    sql.push_str(
        " ON CONFLICT (service, node, subid) DO UPDATE SET jid = excluded.jid, \
         state = excluded.state, options = excluded.options, subscriber = excluded.subscriber",
    );
    let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
    for write in writes {
        let StoreOp::SubscriptionSet { node, subscription } = &write.op else {
            unreachable!("a run of subscription writes");
        };
        statement = statement
            .bind(write.service.as_str())
            .bind(node.as_str())
            .bind(subscription.subid.as_str())
            .bind(subscription.jid.as_str())
            .bind(subscription.state.as_str())
            .bind(options_to_json(&subscription.options)?)
            .bind(subscription.jid.to_bare().to_string());
    }
    match statement.execute(&mut *conn).await {
        Ok(_) => Ok(()),
        // Some row's node is not stored; the first write names the batch.
        Err(error) if is_missing_node(&error) => Err(StorageError::NodeNotFound {
            service: writes[0].service.clone(),
            node: node_of(&writes[0].op).to_owned(),
        }),
        Err(error) => Err(error.into()),
    }
}

/// `count` rows of `width` anonymous parameters, `(?, ?), (?, ?)`, bound in order. Not `$n`:
/// SQLite finds a named parameter's name by a linear scan, and sqlx asks it for every
/// parameter's name, which makes binding a multi-row statement quadratic (19 % of the server's
/// CPU in the chat benchmark with 500-row statements).
fn anonymous_rows(count: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; count].join(",")
}

/// Item rows written by one statement (7 parameters a row).
const ITEMS_PER_STATEMENT: usize = 500;

/// Consecutive `ItemStored` writes (a batch of messages to conversations, say) as one
/// multi-row insert-or-replace per chunk, instead of two round trips each. An id stored twice in the run keeps only its last item, which is what
/// storing them one after the other leaves, in the same order.
async fn store_items(
    conn: &mut SqliteConnection,
    writes: &[&PubsubWrite],
) -> Result<(), StorageError> {
    let key = |write: &PubsubWrite| match &write.op {
        StoreOp::ItemStored { node, item } => {
            (write.service.clone(), node.clone(), item.id.clone())
        }
        _ => unreachable!("a run of item writes"),
    };
    let mut last = std::collections::HashMap::new();
    for (at, write) in writes.iter().enumerate() {
        last.insert(key(write), at);
    }
    let kept: Vec<&PubsubWrite> = writes
        .iter()
        .enumerate()
        .filter(|(at, write)| last.get(&key(write)) == Some(at))
        .map(|(_, write)| *write)
        .collect();
    for chunk in kept.chunks(ITEMS_PER_STATEMENT) {
        // REPLACE deletes a row with the same id before inserting: the new row gets a new, larger
        // seq, as storing one item after the other does.
        // Each row finds its node's number by a join, not a subquery of its own: SQLite keeps
        // every subquery's cursor open until the statement ends, and opening one walks the
        // list of those open, which made a 500-row insert quadratic. A node that is not stored
        // has no number, and its row's NULL fails the insert. The rows go in in their order
        // (the last column), which gives the items their seqs.
        let insert = format!(
            "INSERT OR REPLACE INTO pubsub_items \
             (node_id, item_id, payload, publisher, published) \
             SELECT n.id, v.column3, v.column4, v.column5, v.column6 FROM (VALUES {}) AS v \
             LEFT JOIN pubsub_nodes AS n ON n.service = v.column1 AND n.node = v.column2 \
             ORDER BY v.column7",
            anonymous_rows(chunk.len(), 7)
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(insert));
        for (at, write) in chunk.iter().enumerate() {
            let StoreOp::ItemStored { node, item } = &write.op else {
                unreachable!("a run of item writes");
            };
            statement = statement
                .bind(write.service.as_str())
                .bind(node.as_str())
                .bind(item.id.as_str())
                // The shared payload itself: a `&str` would be copied into a new string.
                .bind(item.payload.clone())
                .bind(item.publisher.as_str())
                .bind(to_micros(item.published)?)
                .bind(i64::try_from(at).unwrap_or(i64::MAX));
        }
        match statement.execute(&mut *conn).await {
            Ok(_) => {}
            // Some row's node is not stored; the first write names the batch.
            Err(error) if is_missing_node(&error) => {
                return Err(StorageError::NodeNotFound {
                    service: chunk[0].service.clone(),
                    node: node_of(&chunk[0].op).to_owned(),
                });
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Consecutive `ItemRemoved` writes (rooms' oldest messages giving way to new ones, say) as
/// one statement, which finds each item by its unique index.
async fn remove_items(
    conn: &mut SqliteConnection,
    writes: &[&PubsubWrite],
) -> Result<(), StorageError> {
    let delete = format!(
        "DELETE FROM pubsub_items WHERE seq IN (SELECT p.seq FROM (VALUES {}) AS gone \
         JOIN pubsub_nodes AS n ON n.service = gone.column1 AND n.node = gone.column2 \
         JOIN pubsub_items AS p ON p.node_id = n.id AND p.item_id = gone.column3)",
        anonymous_rows(writes.len(), 3)
    );
    let mut statement = sqlx::query(sqlx::AssertSqlSafe(delete));
    for write in writes {
        let StoreOp::ItemRemoved { node, id } = &write.op else {
            unreachable!("a run of removed items");
        };
        statement = statement
            .bind(write.service.as_str())
            .bind(node.as_str())
            .bind(id.as_str());
    }
    statement.execute(&mut *conn).await?;
    Ok(())
}

/// Foreign keys rule out rows of a node that is not stored.
fn node_mut<'a>(
    nodes: &'a mut BTreeMap<String, StoredNode>,
    id: &str,
) -> Result<&'a mut StoredNode, StorageError> {
    nodes
        .get_mut(id)
        .ok_or_else(|| StorageError::Corrupt(format!("row of missing node {id:?}")))
}

type Statement = Query<'static, Sqlite, SqliteArguments>;

async fn apply_write(conn: &mut SqliteConnection, write: &PubsubWrite) -> Result<(), StorageError> {
    let (service, node) = (write.service.as_str(), node_of(&write.op));
    // Every statement's first two parameters are the write's service and node.
    let on_node = |sql: &'static str| -> Statement { sqlx::query(sql).bind(service).bind(node) };
    let statements = match &write.op {
        StoreOp::NodeCreated { config, .. } => vec![
            // A stale node of the same id gives way, its rows with it (ON DELETE CASCADE).
            on_node("DELETE FROM pubsub_nodes WHERE service = $1 AND node = $2"),
            on_node(
                "INSERT INTO pubsub_nodes (service, node, config, id) VALUES ($1, $2, $3, \
                 (SELECT IFNULL(MAX(id), 0) + 1 FROM pubsub_nodes))",
            )
            .bind(config_to_json(config)?),
        ],
        StoreOp::NodeConfigured { config, .. } => vec![
            on_node("UPDATE pubsub_nodes SET config = $3 WHERE service = $1 AND node = $2")
                .bind(config_to_json(config)?),
        ],
        StoreOp::NodeDeleted { .. } => vec![on_node(
            "DELETE FROM pubsub_nodes WHERE service = $1 AND node = $2",
        )],
        StoreOp::AffiliationSet {
            jid,
            affiliation: Affiliation::None,
            ..
        } => vec![
            on_node(
                "DELETE FROM pubsub_affiliations WHERE service = $1 AND node = $2 AND jid = $3",
            )
            .bind(jid.as_str()),
        ],
        StoreOp::AffiliationSet {
            jid, affiliation, ..
        } => vec![
            on_node(
                "INSERT INTO pubsub_affiliations (service, node, jid, affiliation) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (service, node, jid) \
                 DO UPDATE SET affiliation = excluded.affiliation",
            )
            .bind(jid.as_str())
            .bind(affiliation.as_str()),
        ],
        StoreOp::SubscriptionSet { subscription, .. } => vec![
            on_node(
                "INSERT INTO pubsub_subscriptions \
                 (service, node, subid, jid, state, options, subscriber) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (service, node, subid) \
                 DO UPDATE SET jid = excluded.jid, state = excluded.state, \
                 options = excluded.options, subscriber = excluded.subscriber",
            )
            .bind(subscription.subid.as_str())
            .bind(subscription.jid.as_str())
            .bind(subscription.state.as_str())
            .bind(options_to_json(&subscription.options)?)
            .bind(subscription.jid.to_bare().to_string()),
        ],
        StoreOp::SubscriptionRemoved { subid, .. } => vec![
            on_node(
                "DELETE FROM pubsub_subscriptions WHERE service = $1 AND node = $2 AND subid = $3",
            )
            .bind(subid.as_str()),
        ],
        StoreOp::ItemStored { .. } | StoreOp::ItemRemoved { .. } => {
            unreachable!("items are stored and removed by runs (`apply_writes`)")
        }
        StoreOp::ItemsPurged { .. } => vec![on_node(
            "DELETE FROM pubsub_items WHERE node_id = \
             (SELECT id FROM pubsub_nodes WHERE service = $1 AND node = $2)",
        )],
    };

    let missing = || StorageError::NodeNotFound {
        service: service.to_owned(),
        node: node.to_owned(),
    };
    let mut changed = 0;
    for statement in statements {
        changed = match statement.execute(&mut *conn).await {
            Ok(done) => done.rows_affected(),
            Err(error) if is_missing_node(&error) => return Err(missing()),
            Err(error) => return Err(error.into()),
        };
    }
    if changed == 0 && matches!(write.op, StoreOp::NodeConfigured { .. }) {
        return Err(missing());
    }
    Ok(())
}

/// Whether `error` says a row's node is not stored: a foreign key names no node, or an item's
/// node number, joined by its service and node, is NULL.
fn is_missing_node(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| {
        e.is_foreign_key_violation() || matches!(e.kind(), sqlx::error::ErrorKind::NotNullViolation)
    })
}

/// [`PubsubStore::move_node`] within a transaction (an account's deletion moves its
/// conversations in its own). A new node row, the others' rows pointed at it, the old row
/// gone: the foreign keys name a node by (service, node), which an UPDATE of the row would
/// break. Items name it by number, and keep their seq.
pub(super) async fn move_node_in(
    tx: &mut sqlx::SqliteConnection,
    service: &str,
    node: &str,
    to_service: &str,
    to_node: &str,
) -> Result<(), StorageError> {
    for statement in [
        "DELETE FROM pubsub_nodes WHERE service = $3 AND node = $4 AND EXISTS \
         (SELECT 1 FROM pubsub_nodes WHERE service = $1 AND node = $2)",
        "INSERT INTO pubsub_nodes (service, node, config, id) \
         SELECT $3, $4, config, (SELECT MAX(id) + 1 FROM pubsub_nodes) \
         FROM pubsub_nodes WHERE service = $1 AND node = $2",
        "UPDATE pubsub_affiliations SET service = $3, node = $4 \
         WHERE service = $1 AND node = $2",
        "UPDATE pubsub_subscriptions SET service = $3, node = $4 \
         WHERE service = $1 AND node = $2",
        "UPDATE pubsub_items \
         SET node_id = (SELECT id FROM pubsub_nodes WHERE service = $3 AND node = $4) \
         WHERE node_id = (SELECT id FROM pubsub_nodes WHERE service = $1 AND node = $2)",
        "DELETE FROM pubsub_nodes WHERE service = $1 AND node = $2",
    ] {
        sqlx::query(statement)
            .bind(service)
            .bind(node)
            .bind(to_service)
            .bind(to_node)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::AssertSqlSafe;
    use tempfile::TempDir;

    use super::*;
    use crate::AccountStore;
    use crate::contract::pubsub as contract;

    async fn open(dir: &TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("verona.db"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn matches_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_matches_engine(&store).await;
        store.close().await;
    }

    /// A user's relations are read from the subscriber index alone: one index range per
    /// login, not one table lookup per subscription (the array's order is a sort of those).
    #[tokio::test]
    async fn relations_are_read_from_the_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let explain = format!("EXPLAIN QUERY PLAN {SUBSCRIPTIONS_OF}");
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(AssertSqlSafe(explain))
            .bind("romeo@montague.lit")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let reads: Vec<&str> = (plan.iter().map(|step| step.3.as_str()))
            .filter(|step| step.starts_with("SEARCH") || step.starts_with("SCAN"))
            .collect();
        assert_eq!(
            reads,
            ["SEARCH pubsub_subscriptions USING COVERING INDEX \
                 pubsub_subscriptions_by_subscriber (subscriber=?)"]
        );
        store.close().await;
    }

    #[tokio::test]
    async fn write_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_write_semantics(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn account_deletion_forgets_pubsub() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::account_deletion_forgets_pubsub(&store, &store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn batch_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_batch_is_atomic(&store).await;
        store.close().await;
    }

    /// A database written before items named their node by number (migration 0007) reads
    /// back the same after it: every item with its node, in its order, paged as before; and
    /// writing goes on (a new item, a new node, a deleted node's items gone with it).
    #[tokio::test]
    async fn items_stored_before_node_numbers_survive_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verona.db");
        let before_numbers = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(super::super::MIGRATOR.migrations[..6].to_vec()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        let old = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .foreign_keys(true),
        )
        .await
        .unwrap();
        before_numbers.run(&old).await.unwrap();
        let (chat, pep) = ("pubsub.l/chat/a@l/b@l", "juliet@l");
        let nodes = [
            (chat, "chat/a@l/b@l"),
            (pep, "urn:xmpp:avatar:data"),
            (pep, "presence"),
        ];
        for (service, node) in nodes {
            sqlx::query("INSERT INTO pubsub_nodes (service, node, config) VALUES (?, ?, '[]')")
                .bind(service)
                .bind(node)
                .execute(&old)
                .await
                .unwrap();
        }
        // Interleaved across nodes, as a shared table holds them.
        let rows = [
            (0, "m1"),
            (2, "p1"),
            (0, "m2"),
            (1, "a1"),
            (0, "m3"),
            (2, "p2"),
        ];
        for (at, (node, id)) in rows.iter().enumerate() {
            let (service, node) = nodes[*node];
            sqlx::query(
                "INSERT INTO pubsub_items (service, node, item_id, payload, publisher, published) \
                 VALUES (?, ?, ?, ?, 'juliet@l/balcony', ?)",
            )
            .bind(service)
            .bind(node)
            .bind(id)
            .bind(format!("<body>{id}</body>"))
            .bind(i64::try_from(at).unwrap() * 1_000_000)
            .execute(&old)
            .await
            .unwrap();
        }
        old.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        // The rewritten table's pages are in the database, not held in the log.
        let log = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
        assert_eq!(log, 0);
        let ids = |nodes: &[StoredNode]| -> Vec<(String, Vec<String>)> {
            nodes
                .iter()
                .map(|n| (n.id.clone(), n.items.iter().map(|i| i.id.clone()).collect()))
                .collect()
        };
        let strings = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        let loaded = store.load_service(pep).await.unwrap();
        assert_eq!(
            ids(&loaded),
            [
                ("presence".to_owned(), strings(&["p1", "p2"])),
                ("urn:xmpp:avatar:data".to_owned(), strings(&["a1"])),
            ]
        );
        let item = &loaded[0].items[1];
        assert_eq!(item.payload.as_deref(), Some("<body>p2</body>"));
        assert_eq!(item.publisher.as_str(), "juliet@l/balcony");
        assert_eq!(item.published, from_micros(5_000_000).unwrap());
        let recent = store.load_service_recent(chat, 2).await.unwrap();
        assert_eq!(
            ids(&recent),
            [("chat/a@l/b@l".to_owned(), strings(&["m2", "m3"]))]
        );
        let page = store
            .items_page(&ItemsQuery {
                services: vec![chat.to_owned()],
                after: Some("m1".to_owned()),
                max: 10,
                ..ItemsQuery::default()
            })
            .await
            .unwrap();
        let found: Vec<_> = page.items.iter().map(|f| f.item.id.as_str()).collect();
        assert_eq!(found, ["m2", "m3"]);
        assert_eq!(page.items[0].node, "chat/a@l/b@l");

        let item = Item {
            id: "m4".to_owned(),
            payload: None,
            publisher: jid::Jid::new("b@l").unwrap(),
            published: from_micros(9_000_000).unwrap(),
        };
        let stored = PubsubWrite {
            service: chat.to_owned(),
            op: StoreOp::ItemStored {
                node: "chat/a@l/b@l".to_owned(),
                item,
            },
        };
        let created = PubsubWrite {
            service: pep.to_owned(),
            op: StoreOp::NodeCreated {
                node: "urn:xmpp:mood".to_owned(),
                config: verona_pubsub::NodeConfig::default(),
            },
        };
        let deleted = PubsubWrite {
            service: pep.to_owned(),
            op: StoreOp::NodeDeleted {
                node: "presence".to_owned(),
            },
        };
        store.apply(&[stored, created, deleted]).await.unwrap();
        let loaded = store.load_service(chat).await.unwrap();
        assert_eq!(
            ids(&loaded),
            [(
                "chat/a@l/b@l".to_owned(),
                strings(&["m1", "m2", "m3", "m4"])
            )]
        );
        let loaded = store.load_service(pep).await.unwrap();
        assert_eq!(
            ids(&loaded),
            [
                ("urn:xmpp:avatar:data".to_owned(), strings(&["a1"])),
                ("urn:xmpp:mood".to_owned(), Vec::new()),
            ]
        );
        assert_eq!(count(&store, "pubsub_items").await, 5);
        let numbers: Vec<i64> = sqlx::query_scalar("SELECT id FROM pubsub_nodes ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(numbers, [1, 2, 4]);
        store.close().await;
    }

    /// A query that would read much of a large archive to find little (a time range, ids) is
    /// stopped and refused; a page of the same archive, or of one conversation, is not.
    #[tokio::test]
    async fn a_query_reading_too_much_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let publisher = jid::Jid::new("juliet@capulet.lit").unwrap();
        let services: Vec<String> = (0..10).map(|n| format!("pubsub.l/chat/{n}")).collect();
        for service in &services {
            let mut writes = vec![PubsubWrite {
                service: service.clone(),
                op: StoreOp::NodeCreated {
                    node: "n".into(),
                    config: verona_pubsub::NodeConfig::default(),
                },
            }];
            writes.extend((0..10_000u64).map(|n| PubsubWrite {
                service: service.clone(),
                op: StoreOp::ItemStored {
                    node: "n".into(),
                    item: Item {
                        id: n.to_string(),
                        payload: None,
                        publisher: publisher.clone(),
                        published: std::time::UNIX_EPOCH + std::time::Duration::from_secs(n),
                    },
                },
            }));
            store.apply(&writes).await.unwrap();
        }
        let query = |services: &[String], start: Option<u64>| crate::ItemsQuery {
            services: services.to_vec(),
            start: start.map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)),
            max: 50,
            ..crate::ItemsQuery::default()
        };
        let future = Some(1 << 33);
        let refused = store.items_page(&query(&services, future)).await;
        assert!(
            matches!(refused, Err(StorageError::TooCostly)),
            "{refused:?}"
        );
        let page = store.items_page(&query(&services, None)).await.unwrap();
        assert_eq!((page.items.len(), page.count), (50, None));
        let one = store
            .items_page(&query(&services[..1], future))
            .await
            .unwrap();
        assert_eq!((one.items.len(), one.count), (0, Some(0)));
        // The bound went with the query: the connection serves a long read again.
        let everything = store.load_service(&services[0]).await.unwrap();
        assert_eq!(everything[0].items.len(), 10_000);
        store.close().await;
    }

    fn write(service: &str, op: &str, node: &str, id: &str) -> PubsubWrite {
        let op = match op {
            "create" => StoreOp::NodeCreated {
                node: node.into(),
                config: verona_pubsub::NodeConfig::default(),
            },
            "store" => StoreOp::ItemStored {
                node: node.into(),
                item: Item {
                    id: id.into(),
                    payload: Some(format!("<p xmlns='urn:example'>{id}</p>").into()),
                    publisher: jid::Jid::new("juliet@capulet.lit").unwrap(),
                    published: std::time::UNIX_EPOCH,
                },
            },
            "remove" => StoreOp::ItemRemoved {
                node: node.into(),
                id: id.into(),
            },
            "delete" => StoreOp::NodeDeleted { node: node.into() },
            other => unreachable!("{other}"),
        };
        PubsubWrite {
            service: service.into(),
            op,
        }
    }

    /// How [`in_runs`] orders writes: by kind where a node's own order allows, never changing
    /// the order of one node's writes or of one kind's.
    #[test]
    fn writes_of_a_kind_come_together_in_their_order() {
        let describe = |w: &PubsubWrite| {
            let (op, id) = match &w.op {
                StoreOp::NodeCreated { .. } => ("create", ""),
                StoreOp::ItemStored { item, .. } => ("store", item.id.as_str()),
                StoreOp::ItemRemoved { id, .. } => ("remove", id.as_str()),
                StoreOp::NodeDeleted { .. } => ("delete", ""),
                _ => ("other", ""),
            };
            format!("{op} {} {id}", node_of(&w.op))
                .trim_end()
                .to_owned()
        };
        // Writes as (op, node, item), and the order they are applied in.
        type Case<'a> = (&'a [(&'a str, &'a str, &'a str)], &'a [&'a str]);
        let table: &[Case] = &[
            // Three rooms' messages, each a new item and the oldest removed.
            (
                &[
                    ("store", "r1", "new"),
                    ("remove", "r1", "old"),
                    ("store", "r2", "new"),
                    ("remove", "r2", "old"),
                    ("store", "r3", "new"),
                    ("remove", "r3", "old"),
                ],
                &[
                    "store r1 new",
                    "store r2 new",
                    "store r3 new",
                    "remove r1 old",
                    "remove r2 old",
                    "remove r3 old",
                ],
            ),
            // A node's writes keep their order: the removal waits for the first store, the
            // second store for the removal.
            (
                &[
                    ("store", "n", "a"),
                    ("remove", "n", "a"),
                    ("store", "n", "a"),
                    ("store", "m", "b"),
                ],
                &["store n a", "remove n a", "store n a", "store m b"],
            ),
            // Items keep their order across nodes: m's item waits behind n's, which waits for
            // n to be created.
            (
                &[
                    ("create", "n", ""),
                    ("create", "m", ""),
                    ("store", "n", "1"),
                    ("store", "m", "2"),
                    ("delete", "m", ""),
                    ("create", "k", ""),
                ],
                &[
                    "create n",
                    "create m",
                    "create k",
                    "store n 1",
                    "store m 2",
                    "delete m",
                ],
            ),
            (&[], &[]),
        ];
        for (writes, expected) in table {
            let writes: Vec<PubsubWrite> = writes
                .iter()
                .map(|(op, node, id)| write("s", op, node, id))
                .collect();
            let refs: Vec<&PubsubWrite> = writes.iter().collect();
            let ordered: Vec<String> = in_runs(&refs).into_iter().map(describe).collect();
            assert_eq!(ordered, *expected);
        }
    }

    /// Interleaved writes of many nodes, applied in runs, leave what applying them one by one
    /// leaves.
    #[tokio::test]
    async fn writes_applied_in_runs_leave_what_one_by_one_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let mut first = Vec::new();
        for room in ["r1", "r2", "r3"] {
            first.push(write("chat", "create", room, ""));
            first.push(write("chat", "store", room, "old"));
        }
        store.apply(&first).await.unwrap();
        let mut then = Vec::new();
        for room in ["r1", "r2", "r3"] {
            then.push(write("chat", "store", room, "new"));
            then.push(write("chat", "remove", room, "old"));
        }
        then.push(write("chat", "remove", "r2", "new"));
        then.push(write("chat", "store", "r2", "newer"));
        store.apply(&then).await.unwrap();
        let memory = crate::MemoryStore::default();
        for write in first.iter().chain(&then) {
            memory.apply(std::slice::from_ref(write)).await.unwrap();
        }
        let items = |nodes: Vec<StoredNode>| -> Vec<(String, Vec<String>)> {
            nodes
                .into_iter()
                .map(|n| (n.id, n.items.into_iter().map(|i| i.id).collect()))
                .collect()
        };
        let stored = items(store.load_service("chat").await.unwrap());
        assert_eq!(stored, items(memory.load_service("chat").await.unwrap()));
        assert_eq!(
            stored,
            [
                ("r1".to_owned(), vec!["new".to_owned()]),
                ("r2".to_owned(), vec!["newer".to_owned()]),
                ("r3".to_owned(), vec!["new".to_owned()]),
            ]
        );
        store.close().await;
    }

    /// Sets that reach the committer together share a transaction; one that fails is undone
    /// alone, and the others are stored.
    #[tokio::test]
    async fn sets_committed_together_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let created = |service: &str| PubsubWrite {
            service: service.into(),
            op: StoreOp::NodeCreated {
                node: "n".into(),
                config: verona_pubsub::NodeConfig::default(),
            },
        };
        let item_on = |service: &str, node: &str| PubsubWrite {
            service: service.into(),
            op: StoreOp::ItemStored {
                node: node.into(),
                item: Item {
                    id: "i".into(),
                    payload: None,
                    publisher: jid::Jid::new("juliet@capulet.lit").unwrap(),
                    published: std::time::UNIX_EPOCH,
                },
            },
        };
        let (first, failing, third) = (
            [created("a"), item_on("a", "n")],
            [created("b"), item_on("b", "missing")],
            [created("c")],
        );
        // Joined, all three are sent before the committer runs: one group.
        let (first, failing, third) = tokio::join!(
            store.apply(&first),
            store.apply(&failing),
            store.apply(&third)
        );
        assert!(first.is_ok(), "{first:?}");
        assert!(
            matches!(failing, Err(StorageError::NodeNotFound { ref node, .. }) if node == "missing"),
            "{failing:?}"
        );
        assert!(third.is_ok(), "{third:?}");
        let a = store.load_service("a").await.unwrap();
        assert_eq!((a.len(), a[0].items.len()), (1, 1));
        assert_eq!(store.load_service("b").await.unwrap(), []);
        assert_eq!(store.load_service("c").await.unwrap().len(), 1);
        store.close().await;
    }

    #[tokio::test]
    async fn time_precision() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_time_precision(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn node_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_node_directory(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn node_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_node_moves(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn conversations_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_conversations_counted(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn items_paged() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_items_paged(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn items_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_items_trimmed(&store).await;
        store.close().await;
    }

    async fn everything(store: &SqliteStore) -> Vec<(String, Vec<StoredNode>)> {
        let mut everything = Vec::new();
        for service in store.services().await.unwrap() {
            let nodes = store.load_service(&service).await.unwrap();
            everything.push((service, nodes));
        }
        everything
    }

    #[tokio::test]
    async fn data_survives_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_matches_engine(&store).await;
        let before = everything(&store).await;
        store.close().await;

        let reopened = open(&dir).await;
        assert_eq!(everything(&reopened).await, before);
        assert_eq!(before.len(), 2);
        reopened.close().await;
    }

    async fn count(store: &SqliteStore, table: &str) -> i64 {
        // The table names are the test's own constants.
        let sql = AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        sqlx::query_scalar(sql)
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn deleting_every_node_leaves_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        contract::pubsub_matches_engine(&store).await;
        let tables = [
            "pubsub_nodes",
            "pubsub_affiliations",
            "pubsub_subscriptions",
            "pubsub_items",
        ];
        for table in tables {
            assert!(count(&store, table).await > 0, "{table}");
        }
        let mut deletions = Vec::new();
        for (service, nodes) in everything(&store).await {
            deletions.extend(nodes.into_iter().map(|node| PubsubWrite {
                service: service.clone(),
                op: StoreOp::NodeDeleted { node: node.id },
            }));
        }
        store.apply(&deletions).await.unwrap();
        for table in tables {
            assert_eq!(count(&store, table).await, 0, "{table}");
        }
        store.close().await;
    }

    /// A node with one row in every table.
    fn one_of_each() -> Vec<PubsubWrite> {
        let node = || "n".to_owned();
        let juliet = || jid::Jid::new("juliet@capulet.lit").unwrap();
        let ops = [
            StoreOp::NodeCreated {
                node: node(),
                config: verona_pubsub::NodeConfig::default(),
            },
            StoreOp::AffiliationSet {
                node: node(),
                jid: juliet().to_bare(),
                affiliation: Affiliation::Owner,
            },
            StoreOp::SubscriptionSet {
                node: node(),
                subscription: StoredSubscription {
                    subid: "s".into(),
                    jid: juliet(),
                    state: verona_pubsub::SubscriptionState::Subscribed,
                    options: verona_pubsub::SubscriptionOptions::default(),
                },
            },
            StoreOp::ItemStored {
                node: node(),
                item: Item {
                    id: "i".to_owned(),
                    payload: None,
                    publisher: juliet(),
                    published: std::time::UNIX_EPOCH,
                },
            },
        ];
        ops.into_iter()
            .map(|op| PubsubWrite {
                service: "s".to_owned(),
                op,
            })
            .collect()
    }

    #[tokio::test]
    async fn undecodable_rows_are_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        for (table, column, value) in [
            (
                "pubsub_nodes",
                "config",
                r#"[["pubsub#max_items", ["many"]]]"#,
            ),
            ("pubsub_nodes", "config", "not json"),
            ("pubsub_affiliations", "affiliation", "friend"),
            ("pubsub_subscriptions", "state", "bored"),
            (
                "pubsub_subscriptions",
                "options",
                r#"[["pubsub#deliver", ["perhaps"]]]"#,
            ),
            ("pubsub_items", "publisher", "@"),
        ] {
            // Creating the node again replaces the previous case's damage.
            store.apply(&one_of_each()).await.unwrap();
            assert_eq!(store.load_service("s").await.unwrap().len(), 1);
            sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET {column} = $1")))
                .bind(value)
                .execute(&store.writer)
                .await
                .unwrap();
            let loaded = store.load_service("s").await;
            assert!(
                matches!(loaded, Err(StorageError::Corrupt(_))),
                "{table}.{column} = {value}: {loaded:?}"
            );
        }
        store.close().await;
    }
}
