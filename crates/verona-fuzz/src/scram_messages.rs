//! Arbitrary bytes as PLAIN's message, as SCRAM client-first, and as SCRAM client-final after a
//! valid start, with and without channel binding: parsing must never panic.

use std::sync::OnceLock;

use verona_auth::{
    Credentials, DEFAULT_ITERATIONS, ScramHash, ScramServer, TlsBinding, Unknown, parse_plain,
};

/// Derived once: PBKDF2 on every input would make the fuzzer crawl.
fn credentials() -> &'static Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        Credentials::derive_with_salt("pencil", b"fuzz salt", DEFAULT_ITERATIONS)
            .expect("valid password and iteration count")
    })
}

pub fn scram_messages(data: &[u8]) {
    let _ = parse_plain(data);

    let binding = TlsBinding {
        kind: "tls-exporter",
        data: vec![7; 32],
    };
    // (client chose -PLUS, binding offered, a client-first the server accepts): no -PLUS
    // advertised, -PLUS advertised but declined, -PLUS chosen.
    let servers = [
        (false, None, "n,,n=user,r=cli"),
        (false, Some(binding.clone()), "n,,n=user,r=cli"),
        (true, Some(binding), "p=tls-exporter,,n=user,r=cli"),
    ];
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        for (plus, binding, client_first) in &servers {
            let server =
                || ScramServer::with_binding_and_nonce(hash, *plus, binding.clone(), "srv");
            let _ = server().client_first(data);

            // Both the known-user and the unknown-user paths of client_final.
            for creds in [Some(credentials()), None] {
                let mut server = server();
                server
                    .client_first(client_first.as_bytes())
                    .expect("valid client-first");
                let unknown = || Unknown::new(b"secret", "user", DEFAULT_ITERATIONS);
                server.server_first(creds.ok_or_else(unknown));
                let _ = server.client_final(data);
            }
        }
    }
}
