//! Account management shared by the command line and in-band registration: JID checks, credential
//! derivation (off the async threads, since PBKDF2 is deliberately slow) and the store calls.

use std::sync::Arc;

use jid::BareJid;
use verona_auth::Credentials;
use verona_storage::{AccountStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0:?} is not a valid account JID (user@domain)")]
    InvalidJid(String),
    #[error("{0} is not hosted here (this server serves {1})")]
    ForeignDomain(String, String),
    #[error("the password is empty or contains characters SASLprep forbids")]
    BadPassword,
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("storage: {0}")]
    Storage(StorageError),
}

#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn AccountStore>,
    domain: String,
    iterations: u32,
}

impl Accounts {
    pub fn new(store: Arc<dyn AccountStore>, domain: String, iterations: u32) -> Self {
        Accounts {
            store,
            domain,
            iterations,
        }
    }

    pub fn store(&self) -> &Arc<dyn AccountStore> {
        &self.store
    }

    /// A bare `user@domain` of this server, normalised.
    pub fn parse_jid(&self, text: &str) -> Result<BareJid, AccountError> {
        let jid = BareJid::new(text.trim()).map_err(|_| AccountError::InvalidJid(text.into()))?;
        if jid.node().is_none() {
            return Err(AccountError::InvalidJid(text.into()));
        }
        if jid.domain().as_str() != self.domain {
            return Err(AccountError::ForeignDomain(
                jid.to_string(),
                self.domain.clone(),
            ));
        }
        Ok(jid)
    }

    /// The account JID for a SASL username (the localpart, as XMPP clients send it).
    pub fn jid_for_username(&self, username: &str) -> Option<BareJid> {
        let node = jid::NodePart::new(username).ok()?;
        let domain = jid::DomainPart::new(&self.domain).ok()?;
        Some(BareJid::from_parts(Some(&node), &domain))
    }

    async fn derive(&self, password: &str) -> Result<Credentials, AccountError> {
        if password.is_empty() {
            return Err(AccountError::BadPassword);
        }
        let password = password.to_owned();
        let iterations = self.iterations;
        tokio::task::spawn_blocking(move || Credentials::derive(&password, iterations))
            .await
            .expect("credential derivation does not panic")
            .map_err(|_| AccountError::BadPassword)
    }

    pub async fn create(&self, jid: &BareJid, password: &str) -> Result<(), AccountError> {
        let creds = self.derive(password).await?;
        self.store
            .create_account(jid.as_str(), &creds)
            .await
            .map_err(|e| self.map(jid, e))
    }

    pub async fn set_password(&self, jid: &BareJid, password: &str) -> Result<(), AccountError> {
        let creds = self.derive(password).await?;
        self.store
            .set_credentials(jid.as_str(), &creds)
            .await
            .map_err(|e| self.map(jid, e))
    }

    pub async fn delete(&self, jid: &BareJid) -> Result<(), AccountError> {
        self.store
            .delete_account(jid.as_str())
            .await
            .map_err(|e| self.map(jid, e))
    }

    pub async fn list(&self) -> Result<Vec<String>, AccountError> {
        self.store
            .list_accounts()
            .await
            .map_err(AccountError::Storage)
    }

    pub async fn credentials(&self, jid: &BareJid) -> Result<Option<Credentials>, AccountError> {
        self.store
            .credentials(jid.as_str())
            .await
            .map_err(AccountError::Storage)
    }

    fn map(&self, jid: &BareJid, e: StorageError) -> AccountError {
        match e {
            StorageError::AlreadyExists => AccountError::Exists(jid.to_string()),
            StorageError::NotFound => AccountError::NotFound(jid.to_string()),
            other => AccountError::Storage(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verona_storage::MemoryStore;

    fn accounts() -> Accounts {
        Accounts::new(Arc::new(MemoryStore::new()), "capulet.lit".into(), 4096)
    }

    #[test]
    fn jid_checks() {
        let a = accounts();
        assert_eq!(
            a.parse_jid("Juliet@Capulet.lit").unwrap().as_str(),
            "juliet@capulet.lit"
        );
        let cases = ["capulet.lit", "", "a@b@c", "romeo@montague.lit"];
        for text in cases {
            assert!(a.parse_jid(text).is_err(), "{text:?} accepted");
        }
        assert!(matches!(
            a.parse_jid("romeo@montague.lit"),
            Err(AccountError::ForeignDomain(..))
        ));
        assert_eq!(
            a.jid_for_username("Nurse").unwrap().as_str(),
            "nurse@capulet.lit"
        );
        assert!(a.jid_for_username("a@b").is_none());
    }

    #[tokio::test]
    async fn lifecycle() {
        let a = accounts();
        let jid = a.parse_jid("juliet@capulet.lit").unwrap();
        a.create(&jid, "r0meo").await.unwrap();
        assert!(matches!(
            a.create(&jid, "x").await,
            Err(AccountError::Exists(_))
        ));
        assert!(
            a.credentials(&jid)
                .await
                .unwrap()
                .unwrap()
                .verify_password("r0meo")
        );
        a.set_password(&jid, "balcony").await.unwrap();
        let creds = a.credentials(&jid).await.unwrap().unwrap();
        assert!(creds.verify_password("balcony") && !creds.verify_password("r0meo"));
        assert!(matches!(
            a.set_password(&jid, "").await,
            Err(AccountError::BadPassword)
        ));
        assert_eq!(a.list().await.unwrap(), vec!["juliet@capulet.lit"]);
        a.delete(&jid).await.unwrap();
        assert!(matches!(
            a.delete(&jid).await,
            Err(AccountError::NotFound(_))
        ));
    }
}
