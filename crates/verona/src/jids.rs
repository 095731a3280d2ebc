//! JID helpers for hot paths.

use jid::{BareJid, FullJid, Jid};

/// The bare JID of a JID, cut from a copy of it. `jid`'s `to_bare` formats the string anew
/// (about 135 ns for `bench12@localhost/r123`); a copy cut at the slash takes about 45 ns, and
/// a message or a delivery asks for several.
pub trait Bare {
    fn bare(&self) -> BareJid;
}

impl Bare for Jid {
    fn bare(&self) -> BareJid {
        self.clone().into_bare()
    }
}

impl Bare for FullJid {
    fn bare(&self) -> BareJid {
        self.clone().into_bare()
    }
}

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
    fn the_bare_jid_is_the_one_to_bare_makes() {
        for jid in [
            "juliet@capulet.lit/balcony",
            "capulet.lit/a/b",
            "juliet@capulet.lit",
            "capulet.lit",
        ] {
            let jid = Jid::new(jid).unwrap();
            assert_eq!(jid.bare(), jid.to_bare(), "{jid}");
            if let Ok(full) = jid.clone().try_into_full() {
                assert_eq!(full.bare(), full.to_bare(), "{full}");
            }
        }
    }
}
