//! Arbitrary bytes as PLAIN's message, as SCRAM client-first, and as SCRAM client-final after a
//! valid start: parsing must never panic.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use verona_auth::{Credentials, DEFAULT_ITERATIONS, ScramHash, ScramServer, parse_plain};

/// Derived once: PBKDF2 on every input would make the fuzzer crawl.
fn credentials() -> &'static Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        Credentials::derive_with_salt("pencil", b"fuzz salt", DEFAULT_ITERATIONS)
            .expect("valid password and iteration count")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_plain(data);

    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let _ = ScramServer::with_nonce(hash, "srv").client_first(data);

        // Both the known-user and the unknown-user paths of client_final.
        for creds in [Some(credentials()), None] {
            let mut server = ScramServer::with_nonce(hash, "srv");
            server
                .client_first(b"n,,n=user,r=cli")
                .expect("valid client-first");
            server.server_first(creds);
            let _ = server.client_final(data);
        }
    }
});
