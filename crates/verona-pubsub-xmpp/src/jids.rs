//! JIDs read from what others send, written the way RFC 7622 compares them, so that two
//! spellings of one address never become two entries (a block, an affiliation, a roster item).

use jid::{BareJid, Error, FullJid, Jid};

/// The JID `text` written the way RFC 7622 compares it, when that differs from how the `jid`
/// crate keeps it: a domain's final dot removed (§3.2; the crate drops it only when the rest
/// needs no other change, and then keeps it in the string) and its A-labels as U-labels (§3.2.1,
/// so that `xn--caf-dma.example` and `café.example` are one domain). `None` when `text` needs
/// neither.
pub fn canonical(text: &str) -> Option<String> {
    let (address, resource) = match text.split_once('/') {
        Some((address, resource)) => (address, Some(resource)),
        None => (text, None),
    };
    let (node, domain) = match address.split_once('@') {
        Some((node, domain)) => (Some(node), domain),
        None => (None, address),
    };
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    let a_labels = trimmed.split('.').any(|label| {
        label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
    });
    if trimmed.len() == domain.len() && !a_labels {
        return None;
    }
    let domain = if a_labels {
        match idna::domain_to_unicode(trimmed) {
            (unicode, Ok(())) => unicode,
            (_, Err(_)) => trimmed.to_owned(),
        }
    } else {
        trimmed.to_owned()
    };
    let mut out = String::with_capacity(text.len() + 8);
    if let Some(node) = node {
        out.push_str(node);
        out.push('@');
    }
    out.push_str(&domain);
    if let Some(resource) = resource {
        out.push('/');
        out.push_str(resource);
    }
    Some(out)
}

/// `text` as a JID, written as [`canonical`] writes it. The `jid` crate alone keeps
/// `juliet@capulet.lit.` as written (and then misplaces its parts: the resource of
/// `juliet@capulet.lit./balcony` comes out as `./balcony`), which compares unequal to the
/// account. Validity is the crate's verdict on `text` as sent.
pub fn parse(text: &str) -> Result<Jid, Error> {
    let jid = Jid::new(text)?;
    match canonical(text) {
        Some(text) => Jid::new(&text),
        None => Ok(jid),
    }
}

/// [`parse`] for a bare JID: one with a resource is refused.
pub fn parse_bare(text: &str) -> Result<BareJid, Error> {
    parse(text)?.try_into()
}

/// [`parse`] for a full JID: one without a resource is refused.
pub fn parse_full(text: &str) -> Result<FullJid, Error> {
    parse(text)?.try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jids_are_written_as_rfc_7622_compares_them() {
        for (text, canonical_form) in [
            ("juliet@capulet.lit", None),
            ("juliet@capulet.lit/balcony.", None),
            ("juliet@capulet.lit.", Some("juliet@capulet.lit")),
            (
                "juliet@capulet.lit./balcony",
                Some("juliet@capulet.lit/balcony"),
            ),
            ("capulet.lit.", Some("capulet.lit")),
            ("juliet@xn--caf-dma.example", Some("juliet@café.example")),
            ("XN--caf-dma.example./r/s", Some("café.example/r/s")),
            ("juliet@xn--.example", Some("juliet@xn--.example")),
        ] {
            assert_eq!(canonical(text).as_deref(), canonical_form, "{text}");
        }
        assert_eq!(
            Jid::new(&canonical("romeo@localhost./orchard").unwrap()).unwrap(),
            Jid::new("romeo@localhost/orchard").unwrap()
        );
    }

    #[test]
    fn parsed_jids_are_canonical_and_as_valid_as_the_crate_says() {
        for (text, parsed) in [
            ("bob@localhost.", "bob@localhost"),
            ("Bob@LocalHost.", "bob@localhost"),
            ("bob@localhost./r", "bob@localhost/r"),
            ("localhost./r", "localhost/r"),
            ("bob@xn--caf-dma.example.", "bob@café.example"),
            ("bob@localhost", "bob@localhost"),
        ] {
            let jid = parse(text).unwrap();
            assert_eq!(jid, Jid::new(parsed).unwrap(), "{text}");
            assert_eq!(jid.as_str(), parsed, "{text}");
        }
        assert_eq!(
            parse("bob@localhost./r")
                .unwrap()
                .resource()
                .unwrap()
                .as_str(),
            "r"
        );
        for invalid in ["localhost..", "bob@", "@localhost.", "a@b@c."] {
            assert!(parse(invalid).is_err(), "{invalid}");
        }
        assert!(parse_bare("bob@localhost./r").is_err());
        assert_eq!(
            parse_bare("bob@localhost.").unwrap().as_str(),
            "bob@localhost"
        );
        assert!(parse_full("bob@localhost.").is_err());
        assert_eq!(parse_full("localhost./r").unwrap().as_str(), "localhost/r");
    }
}
