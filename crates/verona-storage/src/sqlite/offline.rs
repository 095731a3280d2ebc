//! [`OfflineStore`] for [`SqliteStore`] (schema: `migrations/sqlite/0005_offline.sql`).

use std::time::SystemTime;

use super::SqliteStore;
use crate::pubsub::{from_micros, to_micros};
use crate::{BoxFuture, Kept, OfflineStore, StorageError};

impl OfflineStore for SqliteStore {
    fn keep<'a>(
        &'a self,
        account: &'a str,
        stanzas: &'a [(String, SystemTime)],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut tx = self.writer.begin().await?;
            for (stanza, at) in stanzas {
                sqlx::query("INSERT INTO offline (account, stanza, kept) VALUES ($1, $2, $3)")
                    .bind(account)
                    .bind(stanza)
                    .bind(to_micros(*at)?)
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
            let rows: Vec<(i64, String, i64)> = sqlx::query_as(
                "SELECT seq, stanza, kept FROM offline WHERE account = $1 ORDER BY seq LIMIT $2",
            )
            .bind(account)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(seq, stanza, kept)| {
                    Ok(Kept {
                        seq,
                        stanza,
                        at: from_micros(kept)?,
                    })
                })
                .collect()
        })
    }

    fn kept_count<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<usize, StorageError>> {
        Box::pin(async move {
            let (count,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM offline WHERE account = $1")
                    .bind(account)
                    .fetch_one(&self.pool)
                    .await?;
            Ok(usize::try_from(count).unwrap_or_default())
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
        let at = SystemTime::UNIX_EPOCH;
        store
            .keep(juliet, &[("<a/>".to_owned(), at)])
            .await
            .unwrap();
        store.delete_account(juliet, &[]).await.unwrap();
        assert_eq!(store.kept_count(juliet).await.unwrap(), 0);
    }
}
