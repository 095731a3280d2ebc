mod offline;
mod pubsub;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use verona_auth::ScramKeys;

use crate::{AccountStore, BoxFuture, Credentials, NodeEnd, StorageError};

/// Embedded into the binary so a deployed server needs no migration files.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connections for reads, which under WAL proceed alongside the write.
const READ_CONNECTIONS: u32 = 3;

/// Page cache per connection, in KiB (SQLite's default is 2 MiB).
const CACHE_KIB: u32 = 8 * 1024;

/// Pages the write-ahead log holds before they are copied into the database (SQLite's
/// default is 1,000). A page written many times between copies is copied once: archiving
/// chat messages, whose index pages are written again and again, cost about a tenth less CPU
/// per message than with the default. The log grows to about 32 MiB on disk.
const CHECKPOINT_PAGES: u32 = 8_000;

/// How long a connection waits for another's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type CredentialsRow = (Vec<u8>, i64, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// Store in a single SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Every write, on one connection: writers queue for it in order. SQLite serialises
    /// writers anyway, but a second writer on its own connection finds the database locked and
    /// polls, sleeping 1, 2, 5, 10… ms between tries: two shards committing at once made
    /// the second wait milliseconds after the first was done.
    writer: SqlitePool,
    /// [`pubsub::commit_groups`], which commits pubsub writes in groups on `writer`.
    committer: tokio::sync::mpsc::UnboundedSender<pubsub::Pending>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it and its parent directory if
    /// missing, and brings the schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore, StorageError> {
        Self::open_with(path, true).await
    }

    /// Opens the database at `path` without changing its schema, for one a running server
    /// holds (an upgrade under it would break it): [`StorageError::Schema`] unless its
    /// schema is exactly the one this build migrates to.
    pub async fn open_as_is(path: &Path) -> Result<SqliteStore, StorageError> {
        Self::open_with(path, false).await
    }

    async fn open_with(path: &Path, migrate: bool) -> Result<SqliteStore, StorageError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL under WAL syncs every commit, so an acknowledged write
            // (e.g. a registration) survives power loss, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Services are read when they become resident (a login reads its account's): keep
            // the indexes' inner pages in SQLite's cache rather than reading them again.
            .pragma("cache_size", format!("-{CACHE_KIB}"));
        // A statement that writes several rows keeps a journal of the pages it changed, to
        // undo it alone if it fails; in a file, that cost a write system call per page.
        // Only the writer's: it is at most the pages of one statement, while a reader's
        // temporary storage (a sort) could grow with what one query reads.
        let writer_options = options
            .clone()
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", CHECKPOINT_PAGES.to_string());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(closed_transaction(conn)))
            .connect_with(writer_options)
            .await?;
        if migrate {
            MIGRATOR.run(&writer).await?;
            // An upgrade that rewrote a table left its pages in the write-ahead log, which
            // keeps its largest size until the last connection closes (about 100 MB per
            // 300,000 archived messages for migration 0007): copy them into the database and
            // empty it.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&writer)
                .await?;
        } else {
            check_schema(&writer).await?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options)
            .await?;
        let (committer, pending) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(pubsub::commit_groups(writer.clone(), pending));
        Ok(SqliteStore {
            pool,
            writer,
            committer,
        })
    }
}

/// [`StorageError::Schema`] unless the migrations applied to the database are this build's.
async fn check_schema(writer: &SqlitePool) -> Result<(), StorageError> {
    let ours: Vec<i64> = MIGRATOR.iter().map(|migration| migration.version).collect();
    let migrated: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(writer)
    .await?;
    let mut applied: Vec<i64> = Vec::new();
    if migrated {
        applied = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(writer)
        .await?;
    }
    if applied != ours {
        return Err(StorageError::Schema(format!(
            "it has migrations {applied:?}, this build {ours:?}"
        )));
    }
    Ok(())
}

/// Whether the writer, back in its pool, is outside any transaction: if not, it is closed and
/// the next write opens a new connection. After a statement or COMMIT failed for a full disk,
/// SQLite may have rolled back by itself; sqlx's ROLLBACK then fails and it goes on counting
/// the transaction as open, so every later transaction was a savepoint inside one that would
/// never commit, each reporting success (982 of 999 such writes were lost in
/// `tests/disk_full.rs`).
async fn closed_transaction(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A transaction dropped unfinished has its ROLLBACK queued: the ping waits for it.
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

impl SqliteStore {
    /// Creates many accounts in one transaction (bulk import, benchmarks): one commit instead
    /// of one per account. Fails with [`StorageError::AlreadyExists`], importing none, if any
    /// JID is taken.
    pub async fn import_accounts(
        &self,
        accounts: &[(String, Credentials)],
    ) -> Result<(), StorageError> {
        let mut tx = self.writer.begin().await?;
        for (jid, creds) in accounts {
            insert_account(&mut *tx, jid, creds).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Inserts one account; [`StorageError::AlreadyExists`] if the JID is taken.
async fn insert_account<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    jid: &str,
    creds: &Credentials,
) -> Result<(), StorageError> {
    // ON CONFLICT rather than matching the driver's unique-violation error: the same
    // statement works on PostgreSQL.
    let inserted = bind_credentials(
        sqlx::query(
            "INSERT INTO accounts (salt, iterations, sha1_stored, sha1_server, \
             sha256_stored, sha256_server, jid, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (jid) DO NOTHING",
        ),
        creds,
    )
    .bind(jid)
    .bind(unix_now())
    .execute(executor)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(StorageError::AlreadyExists);
    }
    Ok(())
}

type CredentialsQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds the stored credentials as parameters $1–$6: salt, iterations, then the SHA-1 and
/// SHA-256 stored and server keys.
fn bind_credentials<'q>(
    query: CredentialsQuery<'q>,
    creds: &'q Credentials,
) -> CredentialsQuery<'q> {
    query
        .bind(&creds.salt)
        .bind(i64::from(creds.iterations))
        .bind(&creds.sha1.stored_key)
        .bind(&creds.sha1.server_key)
        .bind(&creds.sha256.stored_key)
        .bind(&creds.sha256.server_key)
}

fn unix_now() -> i64 {
    // A clock before 1970 is a misconfiguration; recording 0 beats refusing
    // the registration.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().try_into().unwrap_or(i64::MAX))
}

fn credentials_from_row(
    (salt, iterations, sha1_stored, sha1_server, sha256_stored, sha256_server): CredentialsRow,
) -> Result<Credentials, StorageError> {
    let iterations = u32::try_from(iterations)
        .map_err(|_| StorageError::Corrupt(format!("iteration count {iterations}")))?;
    Ok(Credentials {
        salt,
        iterations,
        sha1: ScramKeys {
            stored_key: sha1_stored,
            server_key: sha1_server,
        },
        sha256: ScramKeys {
            stored_key: sha256_stored,
            server_key: sha256_server,
        },
    })
}

impl AccountStore for SqliteStore {
    fn create_account<'a>(
        &'a self,
        jid: &'a str,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(insert_account(&self.writer, jid, creds))
    }

    fn credentials<'a>(
        &'a self,
        jid: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credentials>, StorageError>> {
        Box::pin(async move {
            let row: Option<CredentialsRow> = sqlx::query_as(
                "SELECT salt, iterations, sha1_stored, sha1_server, sha256_stored, sha256_server \
                 FROM accounts WHERE jid = $1",
            )
            .bind(jid)
            .fetch_optional(&self.pool)
            .await?;
            row.map(credentials_from_row).transpose()
        })
    }

    fn set_credentials<'a>(
        &'a self,
        jid: &'a str,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let updated = bind_credentials(
                sqlx::query(
                    "UPDATE accounts SET salt = $1, iterations = $2, sha1_stored = $3, \
                     sha1_server = $4, sha256_stored = $5, sha256_server = $6 WHERE jid = $7",
                ),
                creds,
            )
            .bind(jid)
            .execute(&self.writer)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StorageError::NotFound);
            }
            Ok(())
        })
    }

    fn delete_account<'a>(
        &'a self,
        jid: &'a str,
        ends: &'a [NodeEnd],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await?;
            let deleted = sqlx::query("DELETE FROM accounts WHERE jid = $1")
                .bind(jid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(StorageError::NotFound);
            }
            // Its PEP service, the nodes it alone owned elsewhere (with their affiliations,
            // subscriptions and items, by cascade), then what it held on other nodes.
            for statement in [
                "DELETE FROM pubsub_nodes WHERE service = $1",
                "DELETE FROM pubsub_nodes WHERE (service, node) IN (
                     SELECT service, node FROM pubsub_affiliations AS mine
                     WHERE jid = $1 AND affiliation = 'owner' AND NOT EXISTS (
                         SELECT 1 FROM pubsub_affiliations AS other
                         WHERE other.service = mine.service AND other.node = mine.node
                           AND other.affiliation = 'owner' AND other.jid <> $1))",
                "DELETE FROM pubsub_subscriptions WHERE subscriber = $1",
                "DELETE FROM pubsub_affiliations WHERE jid = $1",
                "DELETE FROM offline WHERE account = $1",
            ] {
                sqlx::query(statement).bind(jid).execute(&mut *tx).await?;
            }
            // What other nodes' configurations say of it (a room's admins, its nick there).
            let named: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT service, node, config FROM pubsub_nodes WHERE instr(config, $1) > 0",
            )
            .bind(jid)
            .fetch_all(&mut *tx)
            .await?;
            for (service, node, config) in named {
                if let Some(config) = crate::pubsub::config_without_account(&config, jid)? {
                    sqlx::query(
                        "UPDATE pubsub_nodes SET config = $3 WHERE service = $1 AND node = $2",
                    )
                    .bind(service)
                    .bind(node)
                    .bind(config)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            for end in ends {
                match &end.to {
                    Some((to_service, to_node)) => {
                        pubsub::move_node_in(&mut tx, &end.service, &end.node, to_service, to_node)
                            .await?
                    }
                    None => {
                        sqlx::query("DELETE FROM pubsub_nodes WHERE service = $1 AND node = $2")
                            .bind(&end.service)
                            .bind(&end.node)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn list_accounts(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar("SELECT jid FROM accounts ORDER BY jid")
                .fetch_all(&self.pool)
                .await?)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        // Closing the last connection checkpoints the WAL into the main file.
        Box::pin(async move {
            self.pool.close().await;
            self.writer.close().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::sample_credentials;

    #[tokio::test]
    async fn imports_accounts_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("verona.db"))
            .await
            .unwrap();
        let creds = sample_credentials(1);
        let first = [
            ("a@x".to_owned(), creds.clone()),
            ("b@x".to_owned(), creds.clone()),
        ];
        store.import_accounts(&first).await.unwrap();
        let clash = [
            ("c@x".to_owned(), creds.clone()),
            ("a@x".to_owned(), creds.clone()),
        ];
        assert!(matches!(
            store.import_accounts(&clash).await,
            Err(StorageError::AlreadyExists)
        ));
        assert_eq!(store.list_accounts().await.unwrap(), ["a@x", "b@x"]);
        assert_eq!(store.credentials("b@x").await.unwrap(), Some(creds));
        store.close().await;
    }

    #[tokio::test]
    async fn satisfies_account_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("verona.db"))
            .await
            .unwrap();
        crate::contract::account_store(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn data_survives_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verona.db");
        let creds = sample_credentials(1);

        let store = SqliteStore::open(&path).await.unwrap();
        store
            .create_account("juliet@capulet.lit", &creds)
            .await
            .unwrap();
        store.close().await;
        store.close().await; // idempotent
        assert!(
            store.credentials("juliet@capulet.lit").await.is_err(),
            "a closed store must not serve requests"
        );

        let reopened = SqliteStore::open(&path).await.unwrap();
        assert_eq!(
            reopened.credentials("juliet@capulet.lit").await.unwrap(),
            Some(creds)
        );
        assert_eq!(
            reopened.list_accounts().await.unwrap(),
            ["juliet@capulet.lit"]
        );
        reopened.close().await;
    }

    #[tokio::test]
    async fn open_creates_missing_parent_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("nested").join("verona.db");

        let store = SqliteStore::open(&path).await.unwrap();
        store.close().await;

        assert!(path.is_file());
    }

    #[tokio::test]
    async fn rerunning_migrations_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("verona.db"))
            .await
            .unwrap();
        store
            .create_account("romeo@montague.lit", &sample_credentials(2))
            .await
            .unwrap();

        MIGRATOR.run(&store.writer).await.unwrap();

        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(applied, i64::try_from(MIGRATOR.iter().count()).unwrap());
        assert_eq!(store.list_accounts().await.unwrap(), ["romeo@montague.lit"]);
        store.close().await;
    }

    #[tokio::test]
    async fn uses_wal_full_sync_foreign_keys_and_a_writer_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("verona.db"))
            .await
            .unwrap();
        let mut conn = store.pool.acquire().await.unwrap();

        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();

        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "2 is FULL");
        assert_eq!(foreign_keys, 1);
        let temp_store = "PRAGMA temp_store";
        let read: i64 = sqlx::query_scalar(temp_store)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let written: i64 = sqlx::query_scalar(temp_store)
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(
            (read, written),
            (0, 2),
            "0 is the default (files), 2 memory"
        );
        let checkpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(checkpoint, i64::from(CHECKPOINT_PAGES));
        drop(conn);
        store.close().await;
    }

    #[tokio::test]
    async fn out_of_range_iterations_are_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("verona.db"))
            .await
            .unwrap();
        store
            .create_account("nurse@capulet.lit", &sample_credentials(3))
            .await
            .unwrap();
        sqlx::query("UPDATE accounts SET iterations = -1")
            .execute(&store.writer)
            .await
            .unwrap();

        assert!(matches!(
            store.credentials("nurse@capulet.lit").await,
            Err(StorageError::Corrupt(_))
        ));
        store.close().await;
    }
}
