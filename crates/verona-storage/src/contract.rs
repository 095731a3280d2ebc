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
/// removal, bounded reads, times kept to the microsecond, what each origin holds.
pub(crate) async fn offline_store(store: &dyn OfflineStore) {
    use crate::{Held, ToKeep};
    let at = |micros: u64| UNIX_EPOCH + Duration::from_micros(micros);
    let keep = |stanza: &str, micros: u64, origin: &str| ToKeep {
        stanza: stanza.to_owned(),
        at: at(micros),
        origin: origin.to_owned(),
    };
    let held = async |account: &str| {
        let mut held = store.held(account).await.unwrap();
        held.sort_by(|a, b| a.origin.cmp(&b.origin));
        held
    };
    let (juliet, romeo, nurse) = (
        "juliet@capulet.lit",
        "romeo@montague.lit",
        "nurse@capulet.lit",
    );
    assert!(store.kept(juliet, 10).await.unwrap().is_empty());
    let first = [keep("<a/>", 1, romeo), keep("<bb/>", 2, nurse)];
    store.keep(juliet, &first).await.unwrap();
    store.keep(romeo, &[keep("<r/>", 3, juliet)]).await.unwrap();
    store.keep(juliet, &[keep("<c/>", 4, romeo)]).await.unwrap();
    let kept = store.kept(juliet, 10).await.unwrap();
    let stanzas: Vec<(&str, _, &str)> = kept
        .iter()
        .map(|k| (k.stanza.as_str(), k.at, k.origin.as_str()))
        .collect();
    assert_eq!(
        stanzas,
        [
            ("<a/>", at(1), romeo),
            ("<bb/>", at(2), nurse),
            ("<c/>", at(4), romeo)
        ]
    );
    assert!(kept.windows(2).all(|w| w[0].seq < w[1].seq));
    let holds = |origin: &str, messages, bytes| Held {
        origin: origin.to_owned(),
        messages,
        bytes,
    };
    assert_eq!(held(juliet).await, [holds(nurse, 1, 5), holds(romeo, 2, 8)]);
    let mut with_kept = store.accounts_with_kept().await.unwrap();
    with_kept.sort();
    assert_eq!(with_kept, [juliet, romeo]);
    assert_eq!(store.kept(juliet, 2).await.unwrap(), kept[..2]);
    store.delivered(juliet, kept[1].seq).await.unwrap();
    assert_eq!(store.kept(juliet, 10).await.unwrap(), kept[2..]);
    assert_eq!(held(juliet).await, [holds(romeo, 1, 4)]);
    assert_eq!(held(romeo).await, [holds(juliet, 1, 4)]);
    store.delivered(juliet, kept[2].seq).await.unwrap();
    assert!(held(juliet).await.is_empty());
    assert_eq!(store.accounts_with_kept().await.unwrap(), [romeo]);
    // Later messages come after, whatever was removed.
    store.keep(juliet, &[keep("<d/>", 5, "")]).await.unwrap();
    assert!(store.kept(juliet, 1).await.unwrap()[0].seq > kept[2].seq);
}
