//! SASL for Verona: SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), their -PLUS variants
//! with channel binding (RFC 9266 `tls-exporter`), and PLAIN (RFC 4616).
//!
//! Pure and sans-IO: callers pass in each SASL message (already base64-decoded from the XMPP
//! element) and get the next one back. Accounts keep only [`Credentials`]: salt, iteration
//! count, StoredKey and ServerKey. Neither the password nor SaltedPassword is ever stored, so a
//! leaked database does not let anyone log in.

mod plain;
mod scram;

pub use plain::{PlainMessage, parse_plain, plain_message};
pub use scram::{ClientFirst, ClientKeyCache, ScramClient, ScramServer, Unknown};

use std::borrow::Cow;

use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Iteration count for new credentials, and the minimum accepted: RFC 5802 §5.1 and RFC 7677
/// §4 ask for at least 4096.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Length of the random salt of new credentials.
const SALT_LEN: usize = 16;

/// The hash function a SCRAM mechanism is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    pub fn mechanism_name(self) -> &'static str {
        match self {
            Self::Sha1 => "SCRAM-SHA-1",
            Self::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// `Hi()` of RFC 5802 §2.2: PBKDF2 with HMAC as PRF, one output block long.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha1 => hi::<Sha1>(password, salt, iterations),
            Self::Sha256 => hi::<Sha256>(password, salt, iterations),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => hmac::<Sha1>(key, data),
            Self::Sha256 => hmac::<Sha256>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// The key schedule of RFC 5802 §3 for a SASLprep'ed password. ClientKey is returned
    /// alongside the stored keys because the client builds its proof from it.
    fn derive_keys(self, password: &str, salt: &[u8], iterations: u32) -> (Vec<u8>, ScramKeys) {
        let salted_password = self.hi(password.as_bytes(), salt, iterations);
        let client_key = self.hmac(&salted_password, b"Client Key");
        let keys = ScramKeys {
            stored_key: self.hash(&client_key),
            server_key: self.hmac(&salted_password, b"Server Key"),
        };
        (client_key, keys)
    }
}

fn hi<D: EagerHash>(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0; <D as Digest>::output_size()];
    pbkdf2::pbkdf2_hmac::<D>(password, salt, iterations, &mut out);
    out
}

fn hmac<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<D> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Channel binding data of the TLS connection an exchange runs over (RFC 5056).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsBinding {
    /// The channel binding type, as named in the GS2 header: `tls-exporter` (RFC 9266).
    pub kind: &'static str,
    /// For `tls-exporter`: 32 bytes of TLS exporter output, label `EXPORTER-Channel-Binding`,
    /// empty context.
    pub data: Vec<u8>,
}

/// A SASL mechanism Verona implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Scram(ScramHash),
    /// SCRAM with channel binding: offered only where a [`TlsBinding`] is available.
    ScramPlus(ScramHash),
    Plain,
}

impl Mechanism {
    const ALL: [Mechanism; 5] = [
        Mechanism::ScramPlus(ScramHash::Sha256),
        Mechanism::ScramPlus(ScramHash::Sha1),
        Mechanism::Scram(ScramHash::Sha256),
        Mechanism::Scram(ScramHash::Sha1),
        Mechanism::Plain,
    ];

    /// Looks up a mechanism by its exact, case-sensitive SASL name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Scram(hash) => hash.mechanism_name(),
            Self::ScramPlus(ScramHash::Sha1) => "SCRAM-SHA-1-PLUS",
            Self::ScramPlus(ScramHash::Sha256) => "SCRAM-SHA-256-PLUS",
            Self::Plain => "PLAIN",
        }
    }
}

/// StoredKey and ServerKey for one hash: enough to verify a SCRAM proof and to sign the
/// server's answer, but not to compute a proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// What an account stores: one salt and iteration count, keys for both hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

impl Credentials {
    /// Derives credentials with a fresh random salt.
    pub fn derive(password: &str, iterations: u32) -> Result<Credentials, AuthError> {
        let mut salt = [0; SALT_LEN];
        getrandom::fill(&mut salt).map_err(AuthError::Random)?;
        Self::derive_with_salt(password, &salt, iterations)
    }

    pub fn derive_with_salt(
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Credentials, AuthError> {
        if iterations < DEFAULT_ITERATIONS {
            return Err(AuthError::IterationsTooLow(iterations));
        }
        let password = prep_password(password)?;
        Ok(Credentials {
            salt: salt.to_vec(),
            iterations,
            sha1: ScramHash::Sha1.derive_keys(&password, salt, iterations).1,
            sha256: ScramHash::Sha256.derive_keys(&password, salt, iterations).1,
        })
    }

    pub fn keys(&self, hash: ScramHash) -> &ScramKeys {
        match hash {
            ScramHash::Sha1 => &self.sha1,
            ScramHash::Sha256 => &self.sha256,
        }
    }

    /// Checks a plaintext password (for PLAIN) by recomputing the SHA-256 StoredKey and
    /// comparing in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let Ok(password) = prep_password(password) else {
            return false;
        };
        let (_, keys) = ScramHash::Sha256.derive_keys(&password, &self.salt, self.iterations);
        keys.stored_key.ct_eq(&self.sha256.stored_key).into()
    }
}

/// SASLprep (RFC 4013) as SCRAM and PLAIN require; what maps to nothing is no password.
fn prep_password(password: &str) -> Result<Cow<'_, str>, AuthError> {
    match stringprep::saslprep(password) {
        Ok(prepared) if !prepared.is_empty() => Ok(prepared),
        _ => Err(AuthError::PasswordNotAllowed),
    }
}

/// SASLprep for a user name received from a client; one that fails or maps to nothing cannot
/// name an account (RFC 5802 §5.1 says to abort).
pub fn prep_username(username: &str) -> Result<String, Failure> {
    match stringprep::saslprep(username) {
        Ok(prepared) if !prepared.is_empty() => Ok(prepared.into_owned()),
        _ => Err(Failure::MalformedRequest),
    }
}

/// RFC 6120 §6.5 SASL failure conditions; [`Failure::condition`] names the `<failure/>` child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("SASL failure: {}", self.condition())]
pub enum Failure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl Failure {
    /// The element name of the condition inside `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`.
    pub fn condition(self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::AccountDisabled => "account-disabled",
            Self::CredentialsExpired => "credentials-expired",
            Self::EncryptionRequired => "encryption-required",
            Self::IncorrectEncoding => "incorrect-encoding",
            Self::InvalidAuthzid => "invalid-authzid",
            Self::InvalidMechanism => "invalid-mechanism",
            Self::MalformedRequest => "malformed-request",
            Self::MechanismTooWeak => "mechanism-too-weak",
            Self::NotAuthorized => "not-authorized",
            Self::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// Errors of credential derivation and of the client side of SCRAM.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password not allowed by SASLprep (prohibited characters, or empty)")]
    PasswordNotAllowed,
    #[error("iteration count {0} is below the minimum of {DEFAULT_ITERATIONS}")]
    IterationsTooLow(u32),
    #[error("random source failed: {0}")]
    Random(getrandom::Error),
    #[error("SCRAM client method called out of order")]
    OutOfOrder,
    #[error("malformed SCRAM message from the server")]
    MalformedServerMessage,
    #[error("server nonce does not extend the client nonce")]
    NonceMismatch,
    #[error("server rejected the authentication: {0}")]
    ServerRejected(String),
    #[error("server signature does not verify; the server does not know the credentials")]
    ServerSignatureMismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "pencil";
    const SALT: &[u8] = b"some salt";

    fn creds(password: &str) -> Credentials {
        Credentials::derive_with_salt(password, SALT, DEFAULT_ITERATIONS).unwrap()
    }

    #[test]
    fn mechanism_names() {
        let cases = [
            ("SCRAM-SHA-1", Some(Mechanism::Scram(ScramHash::Sha1))),
            ("SCRAM-SHA-256", Some(Mechanism::Scram(ScramHash::Sha256))),
            (
                "SCRAM-SHA-1-PLUS",
                Some(Mechanism::ScramPlus(ScramHash::Sha1)),
            ),
            (
                "SCRAM-SHA-256-PLUS",
                Some(Mechanism::ScramPlus(ScramHash::Sha256)),
            ),
            ("PLAIN", Some(Mechanism::Plain)),
            ("scram-sha-1", None),
            ("scram-sha-256-plus", None),
            ("SCRAM-SHA-256-PLUS ", None),
            ("SCRAM-SHA-512-PLUS", None),
            ("PLAIN-PLUS", None),
            ("SCRAM-SHA-512", None),
            ("", None),
        ];
        for (name, expected) in cases {
            assert_eq!(Mechanism::from_name(name), expected, "{name:?}");
            if let Some(mechanism) = expected {
                assert_eq!(mechanism.name(), name);
            }
        }
    }

    #[test]
    fn failure_conditions() {
        let cases = [
            (Failure::Aborted, "aborted"),
            (Failure::AccountDisabled, "account-disabled"),
            (Failure::CredentialsExpired, "credentials-expired"),
            (Failure::EncryptionRequired, "encryption-required"),
            (Failure::IncorrectEncoding, "incorrect-encoding"),
            (Failure::InvalidAuthzid, "invalid-authzid"),
            (Failure::InvalidMechanism, "invalid-mechanism"),
            (Failure::MalformedRequest, "malformed-request"),
            (Failure::MechanismTooWeak, "mechanism-too-weak"),
            (Failure::NotAuthorized, "not-authorized"),
            (Failure::TemporaryAuthFailure, "temporary-auth-failure"),
        ];
        for (failure, condition) in cases {
            assert_eq!(failure.condition(), condition);
            assert_eq!(failure.to_string(), format!("SASL failure: {condition}"));
        }
    }

    #[test]
    fn verify_password() {
        let creds = creds(PASSWORD);
        assert!(creds.verify_password(PASSWORD));
        for wrong in ["", "pencil ", "Pencil", "pencil\u{7}"] {
            assert!(!creds.verify_password(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn saslprep_maps_passwords() {
        // Non-ASCII spaces map to U+0020, soft hyphens to nothing, compatibility forms to NFKC.
        let creds = creds("pen cil");
        for equivalent in ["pen\u{a0}cil", "pen\u{2003}cil", "pen\u{ad} cil"] {
            assert!(creds.verify_password(equivalent), "{equivalent:?}");
        }
        assert_eq!(self::creds("\u{2168}"), self::creds("IX"));
    }

    #[test]
    fn saslprep_rejects_passwords() {
        for password in ["", "\u{ad}", "bell\u{7}", "private\u{e000}", "\u{627}1"] {
            assert!(
                matches!(
                    Credentials::derive_with_salt(password, SALT, DEFAULT_ITERATIONS),
                    Err(AuthError::PasswordNotAllowed)
                ),
                "{password:?}"
            );
        }
    }

    #[test]
    fn iterations_below_minimum_are_rejected() {
        assert!(matches!(
            Credentials::derive(PASSWORD, DEFAULT_ITERATIONS - 1),
            Err(AuthError::IterationsTooLow(4095))
        ));
        assert_eq!(creds(PASSWORD).iterations, DEFAULT_ITERATIONS);
    }

    #[test]
    fn derive_uses_fresh_salts() {
        let a = Credentials::derive(PASSWORD, DEFAULT_ITERATIONS).unwrap();
        let b = Credentials::derive(PASSWORD, DEFAULT_ITERATIONS).unwrap();
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.sha256, b.sha256);
        assert!(a.verify_password(PASSWORD) && b.verify_password(PASSWORD));
    }

    #[test]
    fn keys_per_hash() {
        let creds = creds(PASSWORD);
        assert_eq!(creds.keys(ScramHash::Sha1), &creds.sha1);
        assert_eq!(creds.keys(ScramHash::Sha256), &creds.sha256);
        assert_eq!(creds.sha1.stored_key.len(), 20);
        assert_eq!(creds.sha256.stored_key.len(), 32);
    }
}
