//! SCRAM (RFC 5802, RFC 7677), server and client, with and without channel binding (-PLUS).
//!
//! Messages are split on `,` as the grammar allows: no attribute value may contain a comma
//! (user names escape it as `=2C`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use subtle::ConstantTimeEq;

use crate::{
    AuthError, Credentials, DEFAULT_ITERATIONS, Failure, SALT_LEN, ScramHash, ScramKeys,
    TlsBinding, prep_password, prep_username,
};

/// Random bytes in a nonce: 24 bytes give 32 base64 characters, above the 18 bytes we promise.
const NONCE_BYTES: usize = 24;

/// Fresh random bytes for nonces. Without a working OS random source
/// no exchange can be secure, so this fails loudly instead of degrading.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).expect("OS random source failed");
    bytes
}

fn random_nonce() -> String {
    BASE64.encode(random_bytes::<NONCE_BYTES>())
}

/// The value of `part` if it is attribute `name`, i.e. `name=value`.
fn attr(part: Option<&str>, name: char) -> Option<&str> {
    part?.strip_prefix(name)?.strip_prefix('=')
}

/// A nonce is a non-empty run of printable ASCII other than `,`.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21..=0x2b | 0x2d..=0x7e))
}

/// A channel binding type name: `1*(ALPHA / DIGIT / "." / "-")` (RFC 5802 §7).
fn valid_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Checks the GS2 channel binding flag against the connection and the chosen mechanism
/// (RFC 5802 §6, §7) and returns the binding data client-final's `c=` must carry after the
/// GS2 header.
fn check_cbind_flag<'a>(
    flag: &str,
    plus: bool,
    binding: Option<&'a TlsBinding>,
) -> Result<&'a [u8], Failure> {
    use Failure::{MalformedRequest, NotAuthorized};
    match (flag, plus, binding) {
        // A -PLUS mechanism on a connection that offers no binding is the caller's mistake.
        (_, true, None) => Err(NotAuthorized),
        ("n", false, _) | ("y", false, None) => Ok(&[]),
        // The client could bind and believes we cannot, yet we advertised -PLUS: something
        // stripped it from our mechanism list (downgrade).
        ("y", false, Some(_)) => Err(NotAuthorized),
        // A -PLUS mechanism whose header does not bind.
        ("n" | "y", true, Some(_)) => Err(MalformedRequest),
        _ => {
            let name = flag
                .strip_prefix("p=")
                .filter(|name| valid_cb_name(name))
                .ok_or(MalformedRequest)?;
            match binding {
                // Binding requested under a mechanism without it.
                Some(_) if !plus => Err(MalformedRequest),
                Some(binding) if name == binding.kind => Ok(&binding.data),
                // A type we do not offer, or no -PLUS advertised at all.
                _ => Err(NotAuthorized),
            }
        }
    }
}

/// Extensions may follow the fixed attributes (RFC 5802 §5.1, §7) and unknown ones are ignored,
/// but each must be well formed, and none may repeat or reorder an attribute SCRAM defines.
fn extensions_ok<'a>(mut parts: impl Iterator<Item = &'a str>) -> bool {
    parts.all(|part| match part.as_bytes() {
        [name, b'=', value @ ..] => {
            name.is_ascii_alphabetic()
                && !b"aceimnprsv".contains(name)
                && !value.is_empty()
                && !value.contains(&0)
        }
        _ => false,
    })
}

/// Undoes the `=2C` / `=3D` escaping of a saslname; any other `=`, a NUL or emptiness is invalid.
fn decode_saslname(name: &str) -> Option<String> {
    if name.is_empty() || name.contains('\0') {
        return None;
    }
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        decoded.push_str(&rest[..i]);
        decoded.push(match rest.get(i + 1..i + 3)? {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    decoded.push_str(rest);
    Some(decoded)
}

fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// What the challenge for a name no account has shows instead of its credentials, so that
/// the challenge does not tell whether the account exists: a salt as stable per account as a
/// real one (across restarts too) and unrelated to any real salt, and the iteration count
/// new accounts get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl Unknown {
    /// For the account `name` (as normalised for storage, so that every spelling of one name
    /// gets the same salt), from a `secret` the server keeps.
    pub fn new(secret: &[u8], name: &str, iterations: u32) -> Self {
        let mut salt = ScramHash::Sha256.hmac(secret, name.as_bytes());
        salt.truncate(SALT_LEN);
        Unknown { salt, iterations }
    }
}

/// What the server learned from client-first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// SASLprep'ed, `=2C` / `=3D` decoded.
    pub username: String,
    /// Decoded but not otherwise checked: whether it is allowed is the caller's decision.
    pub authzid: Option<String>,
}

/// The parts of client-first that later steps need.
struct Exchange {
    /// What client-final's `c=` must decode to: the GS2 header, then the binding data if any.
    channel_binding: Vec<u8>,
    client_first_bare: String,
    /// Client nonce followed by ours.
    nonce: String,
}

enum ServerState {
    Start,
    ReceivedClientFirst(Exchange),
    SentServerFirst {
        exchange: Exchange,
        server_first: String,
        /// `None` for an unknown user.
        keys: Option<ScramKeys>,
    },
    /// Finished or failed; every further call fails.
    Done,
}

/// Server side of one SCRAM exchange, sans-IO: the caller looks the account up between
/// [`client_first`](Self::client_first) and [`server_first`](Self::server_first).
pub struct ScramServer {
    hash: ScramHash,
    server_nonce: String,
    plus: bool,
    binding: Option<TlsBinding>,
    state: ServerState,
}

impl ScramServer {
    /// For a connection where no -PLUS mechanism is advertised.
    ///
    /// # Panics
    /// If the OS random source fails.
    pub fn new(hash: ScramHash) -> Self {
        Self::with_binding(hash, false, None)
    }

    /// With a fixed server nonce part, for test vectors. It must be a valid nonce: printable
    /// ASCII without `,`.
    pub fn with_nonce(hash: ScramHash, server_nonce: &str) -> Self {
        Self::with_binding_and_nonce(hash, false, None, server_nonce)
    }

    /// `binding`: what this connection offers; `None` when the server advertises no -PLUS
    /// mechanism on it. `plus`: whether the client chose a -PLUS mechanism, which requires
    /// `binding` (without it, every exchange fails).
    ///
    /// # Panics
    /// If the OS random source fails.
    pub fn with_binding(hash: ScramHash, plus: bool, binding: Option<TlsBinding>) -> Self {
        Self::with_binding_and_nonce(hash, plus, binding, &random_nonce())
    }

    /// [`with_binding`](Self::with_binding) with a fixed server nonce part, as for
    /// [`with_nonce`](Self::with_nonce).
    pub fn with_binding_and_nonce(
        hash: ScramHash,
        plus: bool,
        binding: Option<TlsBinding>,
        server_nonce: &str,
    ) -> Self {
        Self {
            hash,
            server_nonce: server_nonce.to_owned(),
            plus,
            binding,
            state: ServerState::Start,
        }
    }

    /// Parses `gs2-header client-first-message-bare`.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<ClientFirst, Failure> {
        // Taking the state out means any early return leaves the exchange failed.
        let ServerState::Start = mem::replace(&mut self.state, ServerState::Done) else {
            return Err(Failure::MalformedRequest);
        };
        let msg = std::str::from_utf8(msg).map_err(|_| Failure::MalformedRequest)?;
        let mut header = msg.splitn(3, ',');
        let (Some(cbind_flag), Some(authzid), Some(bare)) =
            (header.next(), header.next(), header.next())
        else {
            return Err(Failure::MalformedRequest);
        };
        let binding_data = check_cbind_flag(cbind_flag, self.plus, self.binding.as_ref())?;
        let authzid = match authzid {
            "" => None,
            _ => Some(
                attr(Some(authzid), 'a')
                    .and_then(decode_saslname)
                    .ok_or(Failure::MalformedRequest)?,
            ),
        };

        let mut attrs = bare.split(',');
        let username = attr(attrs.next(), 'n').and_then(decode_saslname);
        let client_nonce = attr(attrs.next(), 'r').filter(|nonce| valid_nonce(nonce));
        let (Some(username), Some(client_nonce)) = (username, client_nonce) else {
            return Err(Failure::MalformedRequest);
        };
        if !extensions_ok(attrs) {
            return Err(Failure::MalformedRequest);
        }
        let username = prep_username(&username)?;

        let gs2_header = &msg.as_bytes()[..msg.len() - bare.len()];
        self.state = ServerState::ReceivedClientFirst(Exchange {
            channel_binding: [gs2_header, binding_data].concat(),
            client_first_bare: bare.to_owned(),
            nonce: format!("{client_nonce}{}", self.server_nonce),
        });
        Ok(ClientFirst { username, authzid })
    }

    /// Builds server-first. `Err` means the user is unknown: the challenge shows what
    /// [`Unknown`] holds and [`client_final`](Self::client_final) then fails with
    /// [`Failure::NotAuthorized`].
    ///
    /// Called out of order it returns an empty message and the exchange fails.
    pub fn server_first(&mut self, creds: Result<&Credentials, Unknown>) -> Vec<u8> {
        let ServerState::ReceivedClientFirst(exchange) =
            mem::replace(&mut self.state, ServerState::Done)
        else {
            return Vec::new();
        };
        let (salt, iterations, keys) = match creds {
            Ok(creds) => (
                creds.salt.clone(),
                creds.iterations,
                Some(creds.keys(self.hash).clone()),
            ),
            Err(unknown) => (unknown.salt, unknown.iterations, None),
        };
        let server_first = format!(
            "r={},s={},i={iterations}",
            exchange.nonce,
            BASE64.encode(salt)
        );
        let msg = server_first.clone().into_bytes();
        self.state = ServerState::SentServerFirst {
            exchange,
            server_first,
            keys,
        };
        msg
    }

    /// Verifies client-final's proof in constant time and returns server-final (`v=...`).
    pub fn client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, Failure> {
        let ServerState::SentServerFirst {
            exchange,
            server_first,
            keys,
        } = mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(Failure::MalformedRequest);
        };
        let msg = std::str::from_utf8(msg).map_err(|_| Failure::MalformedRequest)?;
        // Extensions come before the proof, so the proof is the last attribute.
        let (without_proof, proof) = msg.rsplit_once(',').ok_or(Failure::MalformedRequest)?;
        let mut attrs = without_proof.split(',');
        let channel_binding = attr(attrs.next(), 'c').and_then(|c| BASE64.decode(c).ok());
        let nonce = attr(attrs.next(), 'r');
        let proof = attr(Some(proof), 'p').and_then(|p| BASE64.decode(p).ok());
        let (Some(channel_binding), Some(nonce), Some(proof)) = (channel_binding, nonce, proof)
        else {
            return Err(Failure::MalformedRequest);
        };
        if !extensions_ok(attrs) {
            return Err(Failure::MalformedRequest);
        }
        // c= repeats the GS2 header, so a downgrade shows up here even without binding. The
        // binding data derives from TLS secrets, hence the constant-time comparison.
        let binding_ok = bool::from(channel_binding.ct_eq(&exchange.channel_binding));
        if !binding_ok || nonce != exchange.nonce {
            return Err(Failure::NotAuthorized);
        }

        let auth_message = format!(
            "{},{server_first},{without_proof}",
            exchange.client_first_bare
        );
        // An unknown user runs the same computation against an empty key, which no hash equals,
        // so the time taken does not reveal whether the account exists.
        let known = keys.is_some();
        let keys = keys.unwrap_or(ScramKeys {
            stored_key: Vec::new(),
            server_key: Vec::new(),
        });
        let client_signature = self.hash.hmac(&keys.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        let proof_ok = proof.len() == client_signature.len()
            && bool::from(self.hash.hash(&client_key).ct_eq(&keys.stored_key));
        if !(known && proof_ok) {
            return Err(Failure::NotAuthorized);
        }
        let server_signature = self.hash.hmac(&keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

enum ClientState {
    Start,
    SentClientFirst { client_first_bare: String },
    SentClientFinal { server_signature: Vec<u8> },
}

/// What a client derived from a password for one salt and iteration count. RFC 5802 §5.1 lets a
/// client keep ClientKey and ServerKey so that logging in again costs no PBKDF2; a client that
/// opens many sessions (a load generator) shares one cache among them. It grows by one entry
/// per password and salt it meets.
#[derive(Default)]
pub struct ClientKeyCache {
    keys: Mutex<HashMap<KeyOrigin, (Vec<u8>, ScramKeys)>>,
}

/// What the derived keys depend on.
#[derive(PartialEq, Eq, Hash)]
struct KeyOrigin {
    hash: ScramHash,
    password: String,
    salt: Vec<u8>,
    iterations: u32,
}

impl ClientKeyCache {
    fn derive(&self, origin: KeyOrigin) -> (Vec<u8>, ScramKeys) {
        let keys = self
            .keys
            .lock()
            .expect("not poisoned")
            .get(&origin)
            .cloned();
        if let Some(keys) = keys {
            return keys;
        }
        let derived = (origin.hash).derive_keys(&origin.password, &origin.salt, origin.iterations);
        let mut cached = self.keys.lock().expect("not poisoned");
        cached.insert(origin, derived.clone());
        derived
    }
}

/// Client side of one SCRAM exchange, without authzid.
pub struct ScramClient {
    hash: ScramHash,
    username: String,
    password: String,
    nonce: String,
    /// `n,,`, `y,,` or `p=<type>,,`.
    gs2_header: String,
    /// What `c=` carries after the GS2 header; empty unless bound.
    binding_data: Vec<u8>,
    state: ClientState,
    cache: Option<Arc<ClientKeyCache>>,
}

impl ScramClient {
    /// Without channel binding.
    ///
    /// # Panics
    /// If the OS random source fails.
    pub fn new(hash: ScramHash, username: &str, password: &str) -> Self {
        Self::with_binding(hash, username, password, None)
    }

    /// With a fixed client nonce, for test vectors. It must be a valid nonce: printable ASCII
    /// without `,`.
    pub fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        Self::with_binding_and_nonce(hash, username, password, None, nonce)
    }

    /// Binds to `binding` (`p=<kind>`, for a -PLUS mechanism) when given, else `n,,` as
    /// [`new`](Self::new).
    ///
    /// # Panics
    /// If the OS random source fails.
    pub fn with_binding(
        hash: ScramHash,
        username: &str,
        password: &str,
        binding: Option<TlsBinding>,
    ) -> Self {
        Self::with_binding_and_nonce(hash, username, password, binding, &random_nonce())
    }

    /// [`with_binding`](Self::with_binding) with a fixed client nonce, as for
    /// [`with_nonce`](Self::with_nonce).
    pub fn with_binding_and_nonce(
        hash: ScramHash,
        username: &str,
        password: &str,
        binding: Option<TlsBinding>,
        nonce: &str,
    ) -> Self {
        let (gs2_header, binding_data) = match binding {
            Some(binding) => (format!("p={},,", binding.kind), binding.data),
            None => ("n,,".to_owned(), Vec::new()),
        };
        Self::with_gs2(hash, username, password, nonce, gs2_header, binding_data)
    }

    /// Sends `y,,`: could bind, but believes the server cannot. A server that did advertise
    /// -PLUS must refuse this as a downgrade; useful to test exactly that.
    ///
    /// # Panics
    /// If the OS random source fails.
    pub fn claiming_server_lacks_binding(hash: ScramHash, username: &str, password: &str) -> Self {
        let nonce = random_nonce();
        Self::with_gs2(
            hash,
            username,
            password,
            &nonce,
            "y,,".to_owned(),
            Vec::new(),
        )
    }

    fn with_gs2(
        hash: ScramHash,
        username: &str,
        password: &str,
        nonce: &str,
        gs2_header: String,
        binding_data: Vec<u8>,
    ) -> Self {
        // A name SASLprep refuses is sent as given, and the server then refuses it.
        let username =
            stringprep::saslprep(username).map_or_else(|_| username.to_owned(), Cow::into_owned);
        Self {
            hash,
            username,
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            gs2_header,
            binding_data,
            state: ClientState::Start,
            cache: None,
        }
    }

    /// Takes the derived keys from `cache` when it holds them for the server's salt and count,
    /// and keeps them there otherwise.
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<ClientKeyCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// `gs2-header n=user,r=nonce`. Calling it again restarts the exchange.
    pub fn client_first(&mut self) -> Vec<u8> {
        let client_first_bare = format!("n={},r={}", encode_saslname(&self.username), self.nonce);
        let msg = format!("{}{client_first_bare}", self.gs2_header).into_bytes();
        self.state = ClientState::SentClientFirst { client_first_bare };
        msg
    }

    /// Takes server-first and returns client-final.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        let ClientState::SentClientFirst { client_first_bare } =
            mem::replace(&mut self.state, ClientState::Start)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let msg = std::str::from_utf8(msg).map_err(|_| AuthError::MalformedServerMessage)?;
        let mut attrs = msg.split(',');
        let nonce = attr(attrs.next(), 'r').filter(|nonce| valid_nonce(nonce));
        let salt = attr(attrs.next(), 's').and_then(|s| BASE64.decode(s).ok());
        let iterations = attr(attrs.next(), 'i').and_then(|i| i.parse::<u32>().ok());
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(AuthError::MalformedServerMessage);
        };
        if !extensions_ok(attrs) {
            return Err(AuthError::MalformedServerMessage);
        }
        // The server must add fresh randomness to our nonce, or it could replay an old exchange.
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(AuthError::NonceMismatch);
        }
        // A low count would make the proof we send cheap to brute-force.
        if iterations < DEFAULT_ITERATIONS {
            return Err(AuthError::IterationsTooLow(iterations));
        }

        let password = prep_password(&self.password)?;
        let (client_key, keys) = match &self.cache {
            Some(cache) => cache.derive(KeyOrigin {
                hash: self.hash,
                password: password.into_owned(),
                salt,
                iterations,
            }),
            None => self.hash.derive_keys(&password, &salt, iterations),
        };
        let channel_binding = [self.gs2_header.as_bytes(), &self.binding_data].concat();
        let without_proof = format!("c={},r={nonce}", BASE64.encode(channel_binding));
        let auth_message = format!("{client_first_bare},{msg},{without_proof}");
        let client_signature = self.hash.hmac(&keys.stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        self.state = ClientState::SentClientFinal {
            server_signature: self.hash.hmac(&keys.server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Takes server-final and checks that the server proved it knows our credentials.
    pub fn server_final(&mut self, msg: &[u8]) -> Result<(), AuthError> {
        let ClientState::SentClientFinal { server_signature } =
            mem::replace(&mut self.state, ClientState::Start)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let msg = std::str::from_utf8(msg).map_err(|_| AuthError::MalformedServerMessage)?;
        let mut attrs = msg.split(',');
        let first = attrs.next();
        if let Some(error) = attr(first, 'e') {
            return Err(AuthError::ServerRejected(error.to_owned()));
        }
        let Some(verifier) = attr(first, 'v').and_then(|v| BASE64.decode(v).ok()) else {
            return Err(AuthError::MalformedServerMessage);
        };
        if !extensions_ok(attrs) {
            return Err(AuthError::MalformedServerMessage);
        }
        if bool::from(verifier.ct_eq(&server_signature)) {
            Ok(())
        } else {
            Err(AuthError::ServerSignatureMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "pencil";
    const SALT: &[u8] = b"salt of the earth";

    fn creds(password: &str) -> Credentials {
        Credentials::derive_with_salt(password, SALT, DEFAULT_ITERATIONS).unwrap()
    }

    struct Vector {
        hash: ScramHash,
        client_nonce: &'static str,
        server_nonce: &'static str,
        salt: &'static str,
        /// client-first, server-first, client-final, server-final.
        messages: [&'static str; 4],
    }

    const VECTORS: [Vector; 2] = [
        // RFC 5802 §5.
        Vector {
            hash: ScramHash::Sha1,
            client_nonce: "fyko+d2lbbFgONRv9qkxdawL",
            server_nonce: "3rfcNHYJY1ZVvWVs7j",
            salt: "QSXCR+Q6sek8bf92",
            messages: [
                "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
            ],
        },
        // RFC 7677 §3.
        Vector {
            hash: ScramHash::Sha256,
            client_nonce: "rOprNGfwEbeRWgbNEkqO",
            server_nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
            messages: [
                "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            ],
        },
    ];

    #[test]
    fn rfc_vectors_server_side() {
        for v in &VECTORS {
            let salt = BASE64.decode(v.salt).unwrap();
            let creds = Credentials::derive_with_salt(PASSWORD, &salt, 4096).unwrap();
            let mut server = ScramServer::with_nonce(v.hash, v.server_nonce);
            let first = server.client_first(v.messages[0].as_bytes()).unwrap();
            assert_eq!(
                first,
                ClientFirst {
                    username: "user".into(),
                    authzid: None
                }
            );
            assert_eq!(server.server_first(Ok(&creds)), v.messages[1].as_bytes());
            assert_eq!(
                server.client_final(v.messages[2].as_bytes()).unwrap(),
                v.messages[3].as_bytes()
            );
        }
    }

    #[test]
    fn rfc_vectors_client_side() {
        for v in &VECTORS {
            let mut client = ScramClient::with_nonce(v.hash, "user", PASSWORD, v.client_nonce);
            assert_eq!(client.client_first(), v.messages[0].as_bytes());
            assert_eq!(
                client.server_first(v.messages[1].as_bytes()).unwrap(),
                v.messages[2].as_bytes()
            );
            client.server_final(v.messages[3].as_bytes()).unwrap();
        }
    }

    #[test]
    fn cached_client_keys_answer_like_derived_ones() {
        let cache = Arc::new(ClientKeyCache::default());
        for v in &VECTORS {
            for _ in 0..2 {
                let mut client = ScramClient::with_nonce(v.hash, "user", PASSWORD, v.client_nonce)
                    .with_cache(cache.clone());
                client.client_first();
                assert_eq!(
                    client.server_first(v.messages[1].as_bytes()).unwrap(),
                    v.messages[2].as_bytes()
                );
                client.server_final(v.messages[3].as_bytes()).unwrap();
            }
        }
        assert_eq!(cache.keys.lock().unwrap().len(), VECTORS.len());
        // Another password with the same salt is derived, not taken from the cache.
        let creds = creds("another");
        let client = ScramClient::new(ScramHash::Sha256, "user", "another").with_cache(cache);
        let server = ScramServer::new(ScramHash::Sha256);
        assert_eq!(
            exchange(client, server, Some(&creds)).as_deref(),
            Ok("user")
        );
    }

    /// Runs a whole exchange; returns the user name the server saw, or the server's failure.
    /// The client must accept everything a succeeding server sends.
    fn exchange(
        mut client: ScramClient,
        mut server: ScramServer,
        creds: Option<&Credentials>,
    ) -> Result<String, Failure> {
        let first = server.client_first(&client.client_first())?;
        let creds = creds.ok_or_else(|| Unknown::new(b"secret", "nobody", DEFAULT_ITERATIONS));
        let client_final = client.server_first(&server.server_first(creds)).unwrap();
        let server_final = server.client_final(&client_final)?;
        client.server_final(&server_final).unwrap();
        Ok(first.username)
    }

    /// [`exchange`] with random nonces and no channel binding.
    fn round_trip(
        hash: ScramHash,
        username: &str,
        password: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, Failure> {
        let client = ScramClient::new(hash, username, password);
        exchange(client, ScramServer::new(hash), creds)
    }

    /// Stands in for a TLS exporter's output: 0, 8, …, 248.
    fn exporter_data() -> Vec<u8> {
        (0..32).map(|i| i * 8).collect()
    }

    fn tls_binding(kind: &'static str, data: Vec<u8>) -> TlsBinding {
        TlsBinding { kind, data }
    }

    #[test]
    fn plus_round_trips() {
        let creds = creds(PASSWORD);
        let binding = tls_binding("tls-exporter", exporter_data());
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            for username in ["user", "a,b=c"] {
                let client =
                    ScramClient::with_binding(hash, username, PASSWORD, Some(binding.clone()));
                let server = ScramServer::with_binding(hash, true, Some(binding.clone()));
                let result = exchange(client, server, Some(&creds));
                assert_eq!(result.as_deref(), Ok(username), "{hash:?}");
            }
        }
    }

    #[test]
    fn wrong_binding_data_is_not_authorized() {
        let creds = creds(PASSWORD);
        let mut flipped = exporter_data();
        flipped[31] ^= 1;
        let wrong = [
            flipped,
            exporter_data()[..31].to_vec(),
            [exporter_data(), vec![0]].concat(),
            Vec::new(),
        ];
        let server_binding = tls_binding("tls-exporter", exporter_data());
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            for data in &wrong {
                let client_binding = tls_binding("tls-exporter", data.clone());
                let client =
                    ScramClient::with_binding(hash, "user", PASSWORD, Some(client_binding));
                let server = ScramServer::with_binding(hash, true, Some(server_binding.clone()));
                let result = exchange(client, server, Some(&creds));
                assert_eq!(result, Err(Failure::NotAuthorized), "{hash:?} {data:?}");
            }
        }
    }

    #[test]
    fn cbind_flag_matrix() {
        use Failure::{MalformedRequest as Malformed, NotAuthorized};
        // (server offers tls-exporter, client chose -PLUS, client sends, client-first outcome).
        // Accepted cases must then complete the exchange.
        let cases: [(bool, bool, &str, Result<(), Failure>); 16] = [
            (false, false, "n", Ok(())),
            (false, false, "y", Ok(())),
            (false, false, "tls-exporter", Err(NotAuthorized)),
            (false, false, "tls-unique", Err(NotAuthorized)),
            (false, true, "n", Err(NotAuthorized)),
            (false, true, "y", Err(NotAuthorized)),
            (false, true, "tls-exporter", Err(NotAuthorized)),
            (false, true, "tls-unique", Err(NotAuthorized)),
            (true, false, "n", Ok(())),
            (true, false, "y", Err(NotAuthorized)),
            (true, false, "tls-exporter", Err(Malformed)),
            (true, false, "tls-unique", Err(Malformed)),
            (true, true, "n", Err(Malformed)),
            (true, true, "y", Err(Malformed)),
            (true, true, "tls-exporter", Ok(())),
            (true, true, "tls-unique", Err(NotAuthorized)),
        ];
        let creds = creds(PASSWORD);
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            for (offered, plus, sends, expected) in cases {
                let server = || {
                    let binding = offered.then(|| tls_binding("tls-exporter", exporter_data()));
                    ScramServer::with_binding(hash, plus, binding)
                };
                let client = || match sends {
                    "n" => ScramClient::new(hash, "user", PASSWORD),
                    "y" => ScramClient::claiming_server_lacks_binding(hash, "user", PASSWORD),
                    kind => {
                        let binding = tls_binding(kind, exporter_data());
                        ScramClient::with_binding(hash, "user", PASSWORD, Some(binding))
                    }
                };
                let case = format!("{hash:?} offered={offered} plus={plus} {sends}");
                let first = server().client_first(&client().client_first());
                assert_eq!(first.map(drop), expected, "{case}");
                if expected.is_ok() {
                    let result = exchange(client(), server(), Some(&creds));
                    assert_eq!(result.as_deref(), Ok("user"), "{case}");
                }
            }
        }
    }

    #[test]
    fn plus_known_answer() {
        // base64("p=tls-exporter,," ‖ exporter_data()), computed outside this crate.
        const C: &str = "cD10bHMtZXhwb3J0ZXIsLAAIEBggKDA4QEhQWGBocHiAiJCYoKiwuMDI0Njg6PD4";
        let binding = tls_binding("tls-exporter", exporter_data());
        let mut client = ScramClient::with_binding_and_nonce(
            ScramHash::Sha256,
            "user",
            PASSWORD,
            Some(binding.clone()),
            "cli",
        );
        let server =
            ScramServer::with_binding_and_nonce(ScramHash::Sha256, true, Some(binding), "srv");
        let client_first = client.client_first();
        assert_eq!(client_first, b"p=tls-exporter,,n=user,r=cli");
        let mut server = awaiting_final(server, "p=tls-exporter,,");
        let client_final = client
            .server_first(expected_server_first().as_bytes())
            .unwrap();
        let expected_final = sign(&format!("c={C},r=clisrv"));
        assert_eq!(String::from_utf8(client_final).unwrap(), expected_final);
        let server_final = server.client_final(expected_final.as_bytes()).unwrap();
        client.server_final(&server_final).unwrap();
    }

    #[test]
    fn plus_client_final_checks() {
        let data = exporter_data();
        let mut flipped = data.clone();
        flipped[0] ^= 0x80;
        let header = b"p=tls-exporter,,".as_slice();
        let with_authzid = b"p=tls-exporter,a=admin,".as_slice();
        let cases: [(&[u8], Vec<u8>, bool); 11] = [
            (header, [header, &data].concat(), true),
            (with_authzid, [with_authzid, &data].concat(), true),
            // The authzid is part of the header c= must repeat.
            (with_authzid, [header, &data].concat(), false),
            (header, [with_authzid, &data].concat(), false),
            (header, header.to_vec(), false),
            (header, data.clone(), false),
            (header, [header, &flipped].concat(), false),
            (header, [header, &data[..31]].concat(), false),
            (header, [header, &data, &[0]].concat(), false),
            (header, [b"n,,".as_slice(), &data].concat(), false),
            (header, b"n,,".to_vec(), false),
        ];
        for (gs2_header, channel_binding, accepted) in cases {
            let gs2_header = std::str::from_utf8(gs2_header).unwrap();
            let binding = tls_binding("tls-exporter", data.clone());
            let server =
                ScramServer::with_binding_and_nonce(ScramHash::Sha256, true, Some(binding), "srv");
            let mut server = awaiting_final(server, gs2_header);
            let msg = sign(&format!("c={},r=clisrv", BASE64.encode(&channel_binding)));
            let expected = if accepted {
                Ok(())
            } else {
                Err(Failure::NotAuthorized)
            };
            let result = server.client_final(msg.as_bytes()).map(drop);
            assert_eq!(result, expected, "{gs2_header} {channel_binding:?}");
        }
    }

    #[test]
    fn round_trips() {
        // Escaping and SASLprep of the user name survive the trip.
        let cases = [
            ("user", "user"),
            ("a,b=c", "a,b=c"),
            ("us\u{a0}er", "us er"),
            ("\u{2168}", "IX"),
        ];
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            for (username, expected) in cases {
                let result = round_trip(hash, username, "pen\u{2003}cil", Some(&creds("pen cil")));
                assert_eq!(result.as_deref(), Ok(expected), "{hash:?} {username:?}");
            }
        }
    }

    #[test]
    fn wrong_password_is_not_authorized() {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let result = round_trip(hash, "user", "pencil2", Some(&creds(PASSWORD)));
            assert_eq!(result, Err(Failure::NotAuthorized), "{hash:?}");
        }
    }

    #[test]
    fn unknown_user_gets_plausible_challenge_then_not_authorized() {
        let challenge = |hash, unknown: Unknown| {
            let mut server = ScramServer::with_nonce(hash, "srv");
            server.client_first(b"n,,n=Alice,r=cli").unwrap();
            String::from_utf8(server.server_first(Err(unknown))).unwrap()
        };
        let unknown = Unknown::new(b"secret", "alice@localhost", 10_000);
        let alice = challenge(ScramHash::Sha256, unknown.clone());
        assert_eq!(
            alice,
            format!("r=clisrv,s={},i=10000", BASE64.encode(&unknown.salt))
        );
        assert_eq!(unknown.salt.len(), SALT_LEN);
        // Stable per account and secret, shared across hashes, as a real account's salt is.
        assert_eq!(alice, challenge(ScramHash::Sha1, unknown.clone()));
        assert_eq!(unknown, Unknown::new(b"secret", "alice@localhost", 10_000));
        assert_ne!(unknown, Unknown::new(b"secret", "bob@localhost", 10_000));
        assert_ne!(unknown, Unknown::new(b"other", "alice@localhost", 10_000));

        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            assert_eq!(
                round_trip(hash, "nobody", PASSWORD, None),
                Err(Failure::NotAuthorized)
            );
        }
    }

    #[test]
    fn client_first_accepted() {
        let cases: [(&str, &str, Option<&str>); 5] = [
            ("n,,n=user,r=abc", "user", None),
            ("y,,n=user,r=abc", "user", None),
            (
                "n,a=admin=2Cx=3Dy,n=u=2Cs=3Der,r=abc",
                "u,s=er",
                Some("admin,x=y"),
            ),
            ("n,,n=I\u{ad}X,r=abc", "IX", None),
            ("n,,n=user,r=abc,x=unknown extension,Y=too", "user", None),
        ];
        for (msg, username, authzid) in cases {
            let first = ScramServer::new(ScramHash::Sha256).client_first(msg.as_bytes());
            let expected = ClientFirst {
                username: username.into(),
                authzid: authzid.map(Into::into),
            };
            assert_eq!(first, Ok(expected), "{msg:?}");
        }
    }

    #[test]
    fn client_first_rejected() {
        use Failure::{MalformedRequest as Malformed, NotAuthorized};
        let cases: [(&[u8], Failure); 30] = [
            (b"", Malformed),
            (b"n", Malformed),
            (b"n,,", Malformed),
            (b"x,,n=user,r=abc", Malformed),
            (b"N,,n=user,r=abc", Malformed),
            (b"p=tls-unique,,n=user,r=abc", NotAuthorized),
            (b"p=tls-exporter,a=admin,n=user,r=abc", NotAuthorized),
            (b"n,admin,n=user,r=abc", Malformed),
            (b"n,a=,n=user,r=abc", Malformed),
            (b"n,,n=user", Malformed),
            (b"n,,r=abc", Malformed),
            (b"n,,r=abc,n=user", Malformed),
            (b"n,,n=user,r=abc,r=def", Malformed),
            (b"n,,n=user,n=user,r=abc", Malformed),
            (b"n,,m=ext,n=user,r=abc", Malformed),
            (b"n,,n=user,r=abc,m=ext", Malformed),
            (b"n,,n=user,r=abc,extension", Malformed),
            (b"n,,n=user,r=abc,x=", Malformed),
            (b"n,,n=user,r=abc,x=a\0b", Malformed),
            (b"n,a=ad\0min,n=user,r=abc", Malformed),
            (b"n,,n=us\xffer,r=abc", Malformed),
            (b"n,,n=us=2cer,r=abc", Malformed),
            (b"n,,n=user=,r=abc", Malformed),
            (b"n,,n=,r=abc", Malformed),
            (b"n,,n=bell\x07,r=abc", Malformed),
            (b"n,,n=user,r=a\x7fc", Malformed),
            (b"p=,,n=user,r=abc", Malformed),
            (b"p=tls_unique,,n=user,r=abc", Malformed),
            (b"p,,n=user,r=abc", Malformed),
            (b"Y,,n=user,r=abc", Malformed),
        ];
        for (msg, expected) in cases {
            let result = ScramServer::new(ScramHash::Sha256).client_first(msg);
            assert_eq!(result, Err(expected), "{:?}", String::from_utf8_lossy(msg));
        }
    }

    /// The server-first of [`server_awaiting_final`].
    fn expected_server_first() -> String {
        format!("r=clisrv,s={},i=4096", BASE64.encode(SALT))
    }

    /// A SHA-256 server without binding that received `{gs2_header}n=user,r=cli` and answered
    /// for `PASSWORD`.
    fn server_awaiting_final(gs2_header: &str) -> ScramServer {
        awaiting_final(
            ScramServer::with_nonce(ScramHash::Sha256, "srv"),
            gs2_header,
        )
    }

    /// `server` (SHA-256, server nonce `srv`) after receiving `{gs2_header}n=user,r=cli` and
    /// answering for `PASSWORD`.
    fn awaiting_final(mut server: ScramServer, gs2_header: &str) -> ScramServer {
        server
            .client_first(format!("{gs2_header}n=user,r=cli").as_bytes())
            .unwrap();
        let server_first = server.server_first(Ok(&creds(PASSWORD)));
        assert_eq!(server_first, expected_server_first().as_bytes());
        server
    }

    /// Appends the proof a client knowing `PASSWORD` computes for `without_proof`. Done here
    /// rather than by [`ScramClient`] so tests can sign any channel binding, nonce or extension.
    fn sign(without_proof: &str) -> String {
        let (client_key, keys) = ScramHash::Sha256.derive_keys(PASSWORD, SALT, 4096);
        let auth_message = format!("n=user,r=cli,{},{without_proof}", expected_server_first());
        let signature = ScramHash::Sha256.hmac(&keys.stored_key, auth_message.as_bytes());
        format!(
            "{without_proof},p={}",
            BASE64.encode(xor(&client_key, &signature))
        )
    }

    #[test]
    fn client_final_checks() {
        use Failure::{MalformedRequest as Malformed, NotAuthorized};
        let valid = sign("c=biws,r=clisrv");
        let proof = valid.rsplit_once(",p=").unwrap().1;
        let authzid_binding = BASE64.encode("n,a=admin,");
        // The valid proof with a byte appended: the XOR must not just ignore the excess.
        let long_proof = BASE64.encode([BASE64.decode(proof).unwrap(), vec![0]].concat());
        let cases: [(&str, String, Result<(), Failure>); 26] = [
            ("n,,", valid.clone(), Ok(())),
            ("y,,", sign("c=eSws,r=clisrv"), Ok(())),
            (
                "n,a=admin,",
                sign(&format!("c={authzid_binding},r=clisrv")),
                Ok(()),
            ),
            ("n,,", sign("c=biws,r=clisrv,x=ignored extension"), Ok(())),
            // Correctly signed, but the channel binding or nonce contradicts the exchange.
            ("n,,", sign("c=eSws,r=clisrv"), Err(NotAuthorized)),
            ("y,,", sign("c=biws,r=clisrv"), Err(NotAuthorized)),
            ("n,a=admin,", sign("c=biws,r=clisrv"), Err(NotAuthorized)),
            (
                "n,,",
                sign("c=cD10bHMtdW5pcXVlLCw=,r=clisrv"),
                Err(NotAuthorized),
            ),
            ("n,,", sign("c=biws,r=clisrvX"), Err(NotAuthorized)),
            ("n,,", sign("c=biws,r=cli"), Err(NotAuthorized)),
            // Wrong proofs.
            (
                "n,,",
                format!("c=biws,r=clisrv,x=ext,p={proof}"),
                Err(NotAuthorized),
            ),
            (
                "n,,",
                format!("c=biws,r=clisrv,p={}", BASE64.encode([0; 32])),
                Err(NotAuthorized),
            ),
            (
                "n,,",
                "c=biws,r=clisrv,p=AAAA".to_owned(),
                Err(NotAuthorized),
            ),
            (
                "n,,",
                format!("c=biws,r=clisrv,p={long_proof}"),
                Err(NotAuthorized),
            ),
            // Syntax.
            ("n,,", format!("c=bi*s,r=clisrv,p={proof}"), Err(Malformed)),
            ("n,,", "c=biws,r=clisrv,p=!!!!".to_owned(), Err(Malformed)),
            ("n,,", "c=biws,r=clisrv".to_owned(), Err(Malformed)),
            ("n,,", format!("r=clisrv,c=biws,p={proof}"), Err(Malformed)),
            ("n,,", format!("c=biws,p={proof}"), Err(Malformed)),
            ("n,,", sign("c=biws,r=clisrv,r=clisrv"), Err(Malformed)),
            ("n,,", sign("c=biws,m=ext,r=clisrv"), Err(Malformed)),
            ("n,,", sign("c=biws,r=clisrv,extension"), Err(Malformed)),
            ("n,,", format!("{valid},x=ext"), Err(Malformed)),
            ("n,,", format!("{valid},p={proof}"), Err(Malformed)),
            ("n,,", format!("{valid}\u{fffd}"), Err(Malformed)),
            ("n,,", String::new(), Err(Malformed)),
        ];
        for (gs2_header, msg, expected) in cases {
            let mut server = server_awaiting_final(gs2_header);
            let result = server.client_final(msg.as_bytes()).map(drop);
            assert_eq!(result, expected, "{gs2_header} {msg:?}");
        }
        let invalid_utf8 = [valid.as_bytes(), b"\xff"].concat();
        let result = server_awaiting_final("n,,").client_final(&invalid_utf8);
        assert_eq!(result, Err(Malformed));
    }

    #[test]
    fn server_steps_out_of_order() {
        let malformed = Some(Failure::MalformedRequest);
        let creds = creds(PASSWORD);

        let mut server = ScramServer::new(ScramHash::Sha256);
        assert_eq!(server.client_final(b"c=biws,r=x,p=AAAA").err(), malformed);
        let mut server = ScramServer::new(ScramHash::Sha256);
        assert!(server.server_first(Ok(&creds)).is_empty());
        assert_eq!(server.client_first(b"n,,n=user,r=cli").err(), malformed);

        let mut server = ScramServer::new(ScramHash::Sha256);
        server.client_first(b"n,,n=user,r=cli").unwrap();
        assert_eq!(server.client_first(b"n,,n=user,r=cli").err(), malformed);

        let mut server = ScramServer::new(ScramHash::Sha256);
        server.client_first(b"n,,n=user,r=cli").unwrap();
        assert!(!server.server_first(Ok(&creds)).is_empty());
        assert!(server.server_first(Ok(&creds)).is_empty());

        // A failed step ends the exchange, even if the retry would be valid.
        let mut server = server_awaiting_final("n,,");
        assert_eq!(server.client_final(b"garbage").err(), malformed);
        assert_eq!(
            server
                .client_final(sign("c=biws,r=clisrv").as_bytes())
                .err(),
            malformed
        );

        let mut server = server_awaiting_final("n,,");
        let valid = sign("c=biws,r=clisrv");
        assert!(server.client_final(valid.as_bytes()).is_ok());
        assert_eq!(server.client_final(valid.as_bytes()).err(), malformed);
    }

    #[test]
    fn client_rejects_server_first() {
        let salt = BASE64.encode(SALT);
        let cases: [(String, &str); 12] = [
            (
                format!("r=clisrv,s={salt},i=4095"),
                "IterationsTooLow(4095)",
            ),
            (format!("r=clisrv,s={salt},i=1"), "IterationsTooLow(1)"),
            (format!("r=other,s={salt},i=4096"), "NonceMismatch"),
            (format!("r=cli,s={salt},i=4096"), "NonceMismatch"),
            ("r=clisrv,s=!!,i=4096".to_owned(), "MalformedServerMessage"),
            (
                format!("r=cli srv,s={salt},i=4096"),
                "MalformedServerMessage",
            ),
            (
                format!("r=clisrv,s={salt},i=lots"),
                "MalformedServerMessage",
            ),
            (
                format!("r=clisrv,i=4096,s={salt}"),
                "MalformedServerMessage",
            ),
            (
                format!("m=ext,r=clisrv,s={salt},i=4096"),
                "MalformedServerMessage",
            ),
            (
                format!("r=clisrv,s={salt},i=4096,i=4096"),
                "MalformedServerMessage",
            ),
            ("e=other-error".to_owned(), "MalformedServerMessage"),
            (String::new(), "MalformedServerMessage"),
        ];
        for (msg, expected) in cases {
            let mut client = ScramClient::with_nonce(ScramHash::Sha256, "user", PASSWORD, "cli");
            client.client_first();
            let err = client.server_first(msg.as_bytes()).unwrap_err();
            assert_eq!(format!("{err:?}"), expected, "{msg:?}");
        }

        let mut client = ScramClient::with_nonce(ScramHash::Sha256, "user", "bell\u{7}", "cli");
        client.client_first();
        let result = client.server_first(format!("r=clisrv,s={salt},i=4096").as_bytes());
        assert!(matches!(result, Err(AuthError::PasswordNotAllowed)));
    }

    #[test]
    fn client_checks_server_final() {
        let mut server = server_awaiting_final("n,,");
        let mut client = ScramClient::with_nonce(ScramHash::Sha256, "user", PASSWORD, "cli");
        let server_first = expected_server_first();
        client.client_first();
        let client_final = client.server_first(server_first.as_bytes()).unwrap();
        let server_final = String::from_utf8(server.client_final(&client_final).unwrap()).unwrap();

        let cases: [(String, &str); 6] = [
            (server_final.clone(), "Ok(())"),
            (format!("{server_final},x=ext"), "Ok(())"),
            (
                format!("v={}", BASE64.encode([0; 32])),
                "Err(ServerSignatureMismatch)",
            ),
            (
                "e=invalid-proof".to_owned(),
                "Err(ServerRejected(\"invalid-proof\"))",
            ),
            ("v=!!!!".to_owned(), "Err(MalformedServerMessage)"),
            (format!("{server_final},v=x"), "Err(MalformedServerMessage)"),
        ];
        for (msg, expected) in cases {
            let mut client = ScramClient::with_nonce(ScramHash::Sha256, "user", PASSWORD, "cli");
            client.client_first();
            client.server_first(server_first.as_bytes()).unwrap();
            let result = client.server_final(msg.as_bytes());
            assert_eq!(format!("{result:?}"), expected, "{msg:?}");
        }
    }

    #[test]
    fn client_steps_out_of_order() {
        let mut client = ScramClient::new(ScramHash::Sha1, "user", PASSWORD);
        assert!(matches!(
            client.server_first(b"r=x,s=AAAA,i=4096"),
            Err(AuthError::OutOfOrder)
        ));
        assert!(matches!(
            client.server_final(b"v=AAAA"),
            Err(AuthError::OutOfOrder)
        ));
        // A rejected server-first ends the exchange.
        client.client_first();
        assert!(client.server_first(b"garbage").is_err());
        assert!(matches!(
            client.server_final(b"v=AAAA"),
            Err(AuthError::OutOfOrder)
        ));
    }

    #[test]
    fn random_nonces_are_fresh_and_long() {
        fn client_nonce() -> String {
            let msg = ScramClient::new(ScramHash::Sha256, "u", "p").client_first();
            let msg = String::from_utf8(msg).unwrap();
            msg.strip_prefix("n,,n=u,r=").unwrap().to_owned()
        }
        fn server_nonce() -> String {
            let mut server = ScramServer::new(ScramHash::Sha256);
            server.client_first(b"n,,n=u,r=cli").unwrap();
            let unknown = Unknown::new(b"secret", "u", DEFAULT_ITERATIONS);
            let msg = String::from_utf8(server.server_first(Err(unknown))).unwrap();
            let (nonce, _) = msg.strip_prefix("r=cli").unwrap().split_once(',').unwrap();
            nonce.to_owned()
        }
        for nonce in [client_nonce, server_nonce] {
            let (a, b) = (nonce(), nonce());
            assert_ne!(a, b);
            assert!(valid_nonce(&a) && a.len() >= 24, "{a}");
        }
    }
}
