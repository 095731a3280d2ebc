//! Account management shared by the command line and in-band registration: JID checks, credential
//! derivation (off the async threads, since PBKDF2 is deliberately slow) and the store calls.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, mpsc};

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

/// Credentials kept in memory at most: about 250 bytes each.
const REMEMBERED_CREDENTIALS: usize = 10_000;

/// PBKDF2 runs on its own threads, one per core, taking attempts in order from one queue: a
/// flood of PLAIN attempts or registrations then waits its turn instead of taking up to 512
/// blocking threads that starve the async workers serving everyone else, and the threads go
/// from one derivation to the next without waiting for an async worker in between.
static HASHING: LazyLock<mpsc::Sender<Job>> = LazyLock::new(|| {
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    for n in 0..std::thread::available_parallelism().map_or(1, |n| n.get()) {
        let queue = queue.clone();
        std::thread::Builder::new()
            .name(format!("pbkdf2-{n}"))
            .spawn(move || {
                loop {
                    // The queue is let go before the job runs.
                    let job = queue.lock().expect("not poisoned").recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })
            .expect("starting a PBKDF2 thread");
    }
    jobs
});

type Job = Box<dyn FnOnce() + Send>;

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source works");
    key
}

#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn AccountStore>,
    domain: String,
    iterations: u32,
    remembered: Arc<Mutex<Remembered>>,
    /// Credentials no password opens, checked for an account that does not exist so that
    /// the answer takes as long as for one that does (RFC 6120 §13.5).
    decoy: Arc<std::sync::OnceLock<Credentials>>,
    /// The key of the SCRAM salts shown for accounts that do not exist ([`Self::unknown`]).
    unknown_key: Arc<[u8]>,
}

/// Credentials read recently, so that a login costs no storage round trip (on SQLite a hop to
/// its worker thread and back, a sixth of a SCRAM login's server CPU; issue #15). Every
/// change of an account's credentials goes through [`Accounts`], which forgets them after it.
#[derive(Default)]
struct Remembered {
    /// `None`: the account does not exist. Remembered too, so that a login for a made-up
    /// name costs what one for a real name does (no storage round trip to tell them apart).
    by_jid: HashMap<BareJid, Option<Credentials>>,
    /// Counts changes, so that a read that overlapped one does not keep what it read.
    changes: u64,
}

impl Remembered {
    fn keep(&mut self, jid: &BareJid, creds: &Option<Credentials>, read_after: u64) {
        if self.changes != read_after {
            return;
        }
        if self.by_jid.len() >= REMEMBERED_CREDENTIALS {
            // Any one goes: what matters is the bound.
            if let Some(old) = self.by_jid.keys().next().cloned() {
                self.by_jid.remove(&old);
            }
        }
        self.by_jid.insert(jid.clone(), creds.clone());
    }

    fn forget(&mut self, jid: &BareJid) {
        self.changes += 1;
        self.by_jid.remove(jid);
    }
}

impl Accounts {
    pub fn new(store: Arc<dyn AccountStore>, domain: String, iterations: u32) -> Self {
        Accounts {
            store,
            domain,
            iterations,
            remembered: Arc::default(),
            decoy: Arc::default(),
            unknown_key: Arc::from(random_key()),
        }
    }

    /// Derives the salts shown for accounts that do not exist from the server's kept secret
    /// ([`crate::server::server_secret`]), so that they stay the same across restarts, as a
    /// real account's do. Without it (the command line, which answers no SASL) they are
    /// random per process.
    pub fn with_secret(mut self, secret: &[u8]) -> Self {
        use hmac::{KeyInit, Mac};
        let mut key =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        key.update(b"SCRAM salts of accounts that do not exist");
        self.unknown_key = Arc::from(key.finalize().into_bytes().as_slice());
        self
    }

    /// What a SCRAM challenge shows for `account` when it does not exist: a salt stable per
    /// account (its JID as normalised, so that every spelling of a name gets one salt) and the
    /// iteration count new accounts get, so that the challenge does not tell it is missing.
    pub fn unknown(&self, account: &str) -> verona_auth::Unknown {
        verona_auth::Unknown::new(&self.unknown_key, account, self.iterations)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered.lock().expect("not poisoned")
    }

    pub fn store(&self) -> &Arc<dyn AccountStore> {
        &self.store
    }

    /// A bare `user@domain` of this server, normalised.
    pub fn parse_jid(&self, text: &str) -> Result<BareJid, AccountError> {
        let jid = BareJid::new(text.trim()).map_err(|_| AccountError::InvalidJid(text.into()))?;
        // As for registration: only a name that preparing again leaves as it is.
        let stable = BareJid::new(jid.as_str()).is_ok_and(|again| again == jid);
        if jid.node().is_none() || !stable {
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

    /// The account JID for a name asked for in registration (XEP-0077), if a login with that
    /// name reaches it (SASLprep, then nodeprep) and preparing it again changes nothing. A
    /// name only a second preparation settles (`ᴱve` is `Eve` once prepared, `eve` twice; its
    /// character is unassigned in the Unicode 3.2 of stringprep, which should have refused it)
    /// would be stored under a spelling no login reaches, and shown as another account.
    pub fn jid_for_new_username(&self, username: &str) -> Option<BareJid> {
        let jid = self.jid_for_username(username)?;
        let stable = self.jid_for_username(jid.node()?.as_str()).as_ref() == Some(&jid);
        let login = verona_auth::prep_username(username)
            .ok()
            .and_then(|prepared| self.jid_for_username(&prepared));
        (stable && login.as_ref() == Some(&jid)).then_some(jid)
    }

    async fn derive(&self, password: &str) -> Result<Credentials, AccountError> {
        if password.is_empty() {
            return Err(AccountError::BadPassword);
        }
        let password = password.to_owned();
        let iterations = self.iterations;
        hashing(move || Credentials::derive(&password, iterations))
            .await
            .map_err(|_| AccountError::BadPassword)
    }

    /// Whether `password` is the account's (SASL PLAIN): PBKDF2, off the async threads. For
    /// an account that does not exist (`None`) the same work is done on decoy credentials,
    /// and the answer is no.
    pub async fn verify_password(&self, creds: Option<Credentials>, password: String) -> bool {
        let exists = creds.is_some();
        let (iterations, decoy) = (self.iterations, self.decoy.clone());
        let valid = hashing(move || {
            let creds = creds.unwrap_or_else(|| {
                let decoy = decoy.get_or_init(|| {
                    let mut secret = [0u8; 16];
                    getrandom::fill(&mut secret).expect("the OS random source works");
                    Credentials::derive(&crate::hex(&secret), iterations)
                        .expect("a random password derives")
                });
                decoy.clone()
            });
            creds.verify_password(&password)
        })
        .await;
        exists && valid
    }

    pub async fn create(&self, jid: &BareJid, password: &str) -> Result<(), AccountError> {
        let creds = self.derive(password).await?;
        let created = self.store.create_account(jid.as_str(), &creds).await;
        self.remembered().forget(jid);
        created.map_err(|e| self.map(jid, e))
    }

    pub async fn set_password(&self, jid: &BareJid, password: &str) -> Result<(), AccountError> {
        let creds = self.derive(password).await?;
        let set = self.store.set_credentials(jid.as_str(), &creds).await;
        self.remembered().forget(jid);
        set.map_err(|e| self.map(jid, e))
    }

    /// Deletes the account, and in the same transaction ends `ends` (its conversations).
    pub async fn delete(
        &self,
        jid: &BareJid,
        ends: &[verona_storage::NodeEnd],
    ) -> Result<(), AccountError> {
        let deleted = self.store.delete_account(jid.as_str(), ends).await;
        self.remembered().forget(jid);
        deleted.map_err(|e| self.map(jid, e))
    }

    pub async fn list(&self) -> Result<Vec<String>, AccountError> {
        self.store
            .list_accounts()
            .await
            .map_err(AccountError::Storage)
    }

    pub async fn credentials(&self, jid: &BareJid) -> Result<Option<Credentials>, AccountError> {
        let read_after = {
            let remembered = self.remembered();
            if let Some(creds) = remembered.by_jid.get(jid) {
                return Ok(creds.clone());
            }
            remembered.changes
        };
        let creds = (self.store.credentials(jid.as_str()).await).map_err(AccountError::Storage)?;
        self.remembered().keep(jid, &creds, read_after);
        Ok(creds)
    }

    fn map(&self, jid: &BareJid, e: StorageError) -> AccountError {
        match e {
            StorageError::AlreadyExists => AccountError::Exists(jid.to_string()),
            StorageError::NotFound => AccountError::NotFound(jid.to_string()),
            other => AccountError::Storage(other),
        }
    }
}

/// Runs `work` (PBKDF2) on the hashing threads.
async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        done.send(work()).ok();
    });
    HASHING.send(job).expect("the PBKDF2 threads never stop");
    result.await.expect("PBKDF2 does not panic")
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

    /// What a new account may be called: what a login with the name reaches, settled by one
    /// preparation (audit round 27: `ᴱve` was stored as `Eve`).
    #[test]
    fn new_names_are_settled_ones() {
        let a = accounts();
        let cases = [
            ("Nurse", Some("nurse@capulet.lit")),
            ("\u{ff2e}urse", Some("nurse@capulet.lit")),
            ("\u{1d31}ve", None),
            ("\u{1d2c}bc", None),
            ("a b", None),
        ];
        for (name, expected) in cases {
            let got = a.jid_for_new_username(name);
            assert_eq!(got.as_ref().map(|jid| jid.as_str()), expected, "{name:?}");
        }
        for text in ["\u{1d31}ve@capulet.lit", "\u{1d2c}bc@capulet.lit"] {
            if let Ok(jid) = a.parse_jid(text) {
                assert_eq!(a.jid_for_username(jid.node().unwrap().as_str()), Some(jid));
            }
        }
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
        a.delete(&jid, &[]).await.unwrap();
        assert_eq!(a.credentials(&jid).await.unwrap(), None);
        assert!(matches!(
            a.delete(&jid, &[]).await,
            Err(AccountError::NotFound(_))
        ));
        // The name's next owner logs in with its own password only.
        a.create(&jid, "nurse").await.unwrap();
        let creds = a.credentials(&jid).await.unwrap().unwrap();
        assert!(creds.verify_password("nurse") && !creds.verify_password("balcony"));
        assert!(a.verify_password(Some(creds), "nurse".into()).await);
        assert!(!a.verify_password(None, "nurse".into()).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pbkdf2_runs_at_most_once_per_core_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..cores * 4)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(hashing(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=cores).contains(&most),
            "{most} at once on {cores} cores"
        );
    }

    #[test]
    fn remembered_credentials_are_bounded_and_never_outlive_a_change() {
        let creds = Some(Credentials::derive("r0meo", 4096).unwrap());
        let juliet = BareJid::new("juliet@capulet.lit").unwrap();
        let mut remembered = Remembered::default();
        // A read that a password change overlapped keeps nothing.
        let read_after = remembered.changes;
        remembered.forget(&juliet);
        remembered.keep(&juliet, &creds, read_after);
        assert!(remembered.by_jid.is_empty());
        remembered.keep(&juliet, &creds, remembered.changes);
        assert_eq!(remembered.by_jid.get(&juliet), Some(&creds));
        for n in 0..REMEMBERED_CREDENTIALS + 5 {
            let jid = BareJid::new(&format!("user{n}@capulet.lit")).unwrap();
            remembered.keep(&jid, &creds, remembered.changes);
        }
        assert_eq!(remembered.by_jid.len(), REMEMBERED_CREDENTIALS);
    }
}
