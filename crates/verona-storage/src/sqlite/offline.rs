//! [`OfflineStore`] for [`SqliteStore`] (schema: `migrations/sqlite/0005_offline.sql`).

use super::SqliteStore;
use crate::pubsub::{from_micros, to_micros};
use crate::{BoxFuture, Held, Kept, OfflineStore, StorageError, ToKeep};

impl OfflineStore for SqliteStore {
    fn keep<'a>(
        &'a self,
        account: &'a str,
        stanzas: &'a [ToKeep],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await?;
            for kept in stanzas {
                sqlx::query(
                    "INSERT INTO offline (account, stanza, kept, origin, bytes) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(account)
                .bind(&kept.stanza)
                .bind(to_micros(kept.at)?)
                .bind(&kept.origin)
                .bind(i64::try_from(kept.stanza.len()).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn kept<'a>(
        &'a self,
        account: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Kept>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
                "SELECT seq, stanza, kept, origin FROM offline WHERE account = $1 \
                 ORDER BY seq LIMIT $2",
            )
            .bind(account)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(seq, stanza, kept, origin)| {
                    Ok(Kept {
                        seq,
                        stanza,
                        at: from_micros(kept)?,
                        origin,
                    })
                })
                .collect()
        })
    }

    fn held<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Vec<Held>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT origin, COUNT(*), SUM(bytes) FROM offline WHERE account = $1 \
                 GROUP BY origin",
            )
            .bind(account)
            .fetch_all(&self.pool)
            .await?;
            let count = |n: i64| usize::try_from(n).unwrap_or_default();
            Ok(rows
                .into_iter()
                .map(|(origin, messages, bytes)| Held {
                    origin,
                    messages: count(messages),
                    bytes: count(bytes),
                })
                .collect())
        })
    }

    fn accounts_with_kept(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        Box::pin(async move {
            let accounts = sqlx::query_scalar("SELECT DISTINCT account FROM offline")
                .fetch_all(&self.pool)
                .await?;
            Ok(accounts)
        })
    }

    fn delivered<'a>(
        &'a self,
        account: &'a str,
        through: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM offline WHERE account = $1 AND seq <= $2")
                .bind(account)
                .bind(through)
                .execute(&self.writer)
                .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn satisfies_the_offline_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("verona.db"))
            .await
            .unwrap();
        crate::contract::offline_store(&store).await;
    }

    #[tokio::test]
    async fn deleting_an_account_empties_its_queue() {
        use crate::AccountStore;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("verona.db"))
            .await
            .unwrap();
        let juliet = "juliet@capulet.lit";
        let creds = crate::contract::sample_credentials(1);
        store.create_account(juliet, &creds).await.unwrap();
        let at = std::time::SystemTime::UNIX_EPOCH;
        let kept = crate::ToKeep {
            stanza: "<a/>".to_owned(),
            at,
            origin: String::new(),
        };
        store.keep(juliet, &[kept]).await.unwrap();
        store.delete_account(juliet, &[]).await.unwrap();
        assert!(store.held(juliet).await.unwrap().is_empty());
    }
}
