//! Behaviour every [`AccountStore`] backend must share; each backend's tests
//! run it against a fresh, empty store. The [`pubsub`] module does the same for
//! [`crate::PubsubStore`].

pub(crate) mod pubsub;

use verona_auth::{DEFAULT_ITERATIONS, ScramKeys};

use std::time::{Duration, UNIX_EPOCH};

use crate::{AccountStore, Credentials, OfflineStore, StorageError};

/// Distinct credentials per `seed`, with bytes (NUL, 0xFF, uneven lengths)
/// that a text-typed or truncating backend would mangle.
pub(crate) fn sample_credentials(seed: u8) -> Credentials {
    let bytes = |tag: u8, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(37) ^ tag ^ seed)
            .chain([0x00, 0xff, seed])
            .collect()
    };
    Credentials {
        salt: bytes(0x10, 16),
        iterations: 4096 + u32::from(seed),
        sha1: ScramKeys {
            stored_key: bytes(0x20, 20),
            server_key: bytes(0x30, 20),
        },
        sha256: ScramKeys {
            stored_key: bytes(0x40, 32),
            server_key: bytes(0x50, 32),
        },
    }
}

pub(crate) async fn account_store(store: &dyn AccountStore) {
    const JULIET: &str = "juliet@capulet.lit";
    const ROMEO: &str = "romeo@montague.lit";
    const NOBODY: &str = "nobody@verona.lit";
    let juliet = sample_credentials(1);
    let romeo = sample_credentials(2);
    let juliet_new = sample_credentials(3);

    assert_eq!(store.list_accounts().await.unwrap(), Vec::<String>::new());
    assert_eq!(store.credentials(JULIET).await.unwrap(), None);

    // Created out of order to check that listing sorts.
    store.create_account(ROMEO, &romeo).await.unwrap();
    store.create_account(JULIET, &juliet).await.unwrap();
    assert_eq!(store.list_accounts().await.unwrap(), [JULIET, ROMEO]);
    assert_eq!(
        store.credentials(JULIET).await.unwrap(),
        Some(juliet.clone())
    );
    assert_eq!(store.credentials(ROMEO).await.unwrap(), Some(romeo.clone()));

    // A duplicate is refused and leaves the original untouched.
    assert!(matches!(
        store.create_account(JULIET, &juliet_new).await,
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(
        store.credentials(JULIET).await.unwrap(),
        Some(juliet.clone())
    );

    // Keys are compared exactly; normalisation is the caller's job.
    assert_eq!(store.credentials("Juliet@capulet.lit").await.unwrap(), None);

    store.set_credentials(JULIET, &juliet_new).await.unwrap();
    assert_eq!(store.credentials(JULIET).await.unwrap(), Some(juliet_new));
    assert_eq!(store.credentials(ROMEO).await.unwrap(), Some(romeo.clone()));

    // Operations on a missing account: reads give None, writes NotFound,
    // and none of them creates it.
    assert!(matches!(
        store.set_credentials(NOBODY, &juliet).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store.delete_account(NOBODY, &[]).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(store.credentials(NOBODY).await.unwrap(), None);

    store.delete_account(JULIET, &[]).await.unwrap();
    assert_eq!(store.credentials(JULIET).await.unwrap(), None);
    assert_eq!(store.list_accounts().await.unwrap(), [ROMEO]);
    assert!(matches!(
        store.delete_account(JULIET, &[]).await,
        Err(StorageError::NotFound)
    ));

    // A deleted JID can be registered again.
    store.create_account(JULIET, &juliet).await.unwrap();
    assert_eq!(store.credentials(JULIET).await.unwrap(), Some(juliet));

    // Real derived credentials still verify after the round trip.
    let derived = Credentials::derive("wherefore art thou", DEFAULT_ITERATIONS).unwrap();
    store.set_credentials(ROMEO, &derived).await.unwrap();
    let loaded = store.credentials(ROMEO).await.unwrap().unwrap();
    assert_eq!(loaded, derived);
    assert!(loaded.verify_password("wherefore art thou"));
    assert!(!loaded.verify_password("wherefore art thee"));
}

/// Behaviour every [`OfflineStore`] backend shares: queues per account, in order, partial
/// removal, bounded reads, times kept to the microsecond.
pub(crate) async fn offline_store(store: &dyn OfflineStore) {
    let at = |micros: u64| UNIX_EPOCH + Duration::from_micros(micros);
    let juliet = "juliet@capulet.lit";
    assert!(store.kept(juliet, 10).await.unwrap().is_empty());
    let first = [("<a/>".to_owned(), at(1)), ("<b/>".to_owned(), at(2))];
    store.keep(juliet, &first).await.unwrap();
    store
        .keep("romeo@montague.lit", &[("<r/>".to_owned(), at(3))])
        .await
        .unwrap();
    store
        .keep(juliet, &[("<c/>".to_owned(), at(4))])
        .await
        .unwrap();
    let kept = store.kept(juliet, 10).await.unwrap();
    let stanzas: Vec<(&str, _)> = kept.iter().map(|k| (k.stanza.as_str(), k.at)).collect();
    assert_eq!(stanzas, [("<a/>", at(1)), ("<b/>", at(2)), ("<c/>", at(4))]);
    assert!(kept.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.kept_count(juliet).await.unwrap(), 3);
    let mut with_kept = store.accounts_with_kept().await.unwrap();
    with_kept.sort();
    assert_eq!(with_kept, [juliet, "romeo@montague.lit"]);
    assert_eq!(store.kept(juliet, 2).await.unwrap(), kept[..2]);
    store.delivered(juliet, kept[1].seq).await.unwrap();
    assert_eq!(store.kept(juliet, 10).await.unwrap(), kept[2..]);
    assert_eq!(store.kept_count("romeo@montague.lit").await.unwrap(), 1);
    store.delivered(juliet, kept[2].seq).await.unwrap();
    assert_eq!(store.kept_count(juliet).await.unwrap(), 0);
    assert_eq!(
        store.accounts_with_kept().await.unwrap(),
        ["romeo@montague.lit"]
    );
    // Later messages come after, whatever was removed.
    store
        .keep(juliet, &[("<d/>".to_owned(), at(5))])
        .await
        .unwrap();
    assert!(store.kept(juliet, 1).await.unwrap()[0].seq > kept[2].seq);
}
