//! XEP-0220 dialback keys, made as XEP-0185 recommends: an HMAC of the two domains and the
//! stream id under a secret only this process knows, so that the key proves which server
//! opened the stream without anything being stored.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::hex;

/// The secret keys are made with; a new one per process (a key only has to survive until the
/// receiving server asks back, seconds later).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn random() -> Secret {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source works");
        Secret(bytes.to_vec())
    }

    /// XEP-0185 §3: HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' stream id), in
    /// hex.
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let hashed = hex(&Sha256::digest(&self.0));
        let mut mac =
            Hmac::<Sha256>::new_from_slice(hashed.as_bytes()).expect("HMAC takes any key length");
        mac.update(receiving.as_bytes());
        mac.update(b" ");
        mac.update(originating.as_bytes());
        mac.update(b" ");
        mac.update(stream_id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `key` is the one this server made for the stream, compared in constant time.
    pub fn verify(&self, key: &str, receiving: &str, originating: &str, stream_id: &str) -> bool {
        let expected = self.key(receiving, originating, stream_id);
        expected.len() == key.trim().len()
            && bool::from(expected.as_bytes().ct_eq(key.trim().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_bind_both_domains_and_the_stream() {
        let secret = Secret::random();
        let key = secret.key("capulet.lit", "montague.lit", "D60000229F");
        assert_eq!(key.len(), 64);
        assert!(secret.verify(&key, "capulet.lit", "montague.lit", "D60000229F"));
        let cases = [
            ("montague.lit", "capulet.lit", "D60000229F"),
            ("capulet.lit", "montague.lit", "D60000229G"),
            ("capulet.lit", "nurse.lit", "D60000229F"),
        ];
        for (receiving, originating, id) in cases {
            assert!(
                !secret.verify(&key, receiving, originating, id),
                "{receiving} {originating} {id}"
            );
        }
        assert!(!Secret::random().verify(&key, "capulet.lit", "montague.lit", "D60000229F"));
        assert!(!secret.verify("", "capulet.lit", "montague.lit", "D60000229F"));
    }

    #[test]
    fn the_xep_0220_example() {
        // XEP-0220 §2.1.1: the secret "s3cr3tf0rd14lb4ck" and the key it gives.
        let secret = Secret(b"s3cr3tf0rd14lb4ck".to_vec());
        assert_eq!(
            secret.key("montague.example", "capulet.example", "D60000229F"),
            "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
        );
    }
}
