//! The PLAIN mechanism (RFC 4616). Only to be offered over TLS: the password travels as is.

use std::fmt;

use crate::{Failure, prep_username};

/// Result of parsing PLAIN's single message.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage {
    pub authzid: Option<String>,
    /// SASLprep'ed.
    pub authcid: String,
    /// As sent; [`crate::Credentials::verify_password`] prepares it.
    pub password: String,
}

/// Keeps the password out of logs.
impl fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .finish_non_exhaustive()
    }
}

/// Parses `[authzid] NUL authcid NUL passwd` (RFC 4616 §2).
pub fn parse_plain(msg: &[u8]) -> Result<PlainMessage, Failure> {
    let msg = std::str::from_utf8(msg).map_err(|_| Failure::MalformedRequest)?;
    let mut fields = msg.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Failure::MalformedRequest);
    };
    if password.is_empty() {
        return Err(Failure::MalformedRequest);
    }
    Ok(PlainMessage {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        authcid: prep_username(authcid)?,
        password: password.to_owned(),
    })
}

/// PLAIN message builder for clients: `\0authcid\0password`.
pub fn plain_message(authcid: &str, password: &str) -> Vec<u8> {
    format!("\0{authcid}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let ok = |authzid: Option<&str>, authcid: &str, password: &str| {
            Ok(PlainMessage {
                authzid: authzid.map(str::to_owned),
                authcid: authcid.to_owned(),
                password: password.to_owned(),
            })
        };
        let cases: [(&[u8], Result<PlainMessage, Failure>); 12] = [
            (b"\0user\0pencil", ok(None, "user", "pencil")),
            (
                b"admin@example.org\0user\0pencil",
                ok(Some("admin@example.org"), "user", "pencil"),
            ),
            // SASLprep applies to the authcid only; the password is checked against credentials later.
            (
                "\0I\u{ad}X\0pen\u{a0}cil".as_bytes(),
                ok(None, "IX", "pen\u{a0}cil"),
            ),
            ("\0us\u{2003}er\0p".as_bytes(), ok(None, "us er", "p")),
            (b"", Err(Failure::MalformedRequest)),
            (b"user\0pencil", Err(Failure::MalformedRequest)),
            (b"\0user\0", Err(Failure::MalformedRequest)),
            (b"\0\0pencil", Err(Failure::MalformedRequest)),
            (b"\0user\0pencil\0more", Err(Failure::MalformedRequest)),
            (b"\0us\xffer\0pencil", Err(Failure::MalformedRequest)),
            (b"\0user\x07\0pencil", Err(Failure::MalformedRequest)),
            (
                "\0\u{ad}\0pencil".as_bytes(),
                Err(Failure::MalformedRequest),
            ),
        ];
        for (msg, expected) in cases {
            assert_eq!(parse_plain(msg), expected, "{msg:?}");
        }
    }

    #[test]
    fn builder_round_trips() {
        let msg = plain_message("user", "pencil");
        assert_eq!(msg, b"\0user\0pencil");
        let parsed = parse_plain(&msg).unwrap();
        assert_eq!((parsed.authzid, parsed.authcid.as_str()), (None, "user"));
        assert_eq!(parsed.password, "pencil");
    }

    #[test]
    fn debug_hides_password() {
        let parsed = parse_plain(b"\0user\0pencil").unwrap();
        assert!(!format!("{parsed:?}").contains("pencil"));
    }
}
