//! Stanzas on their way out.

use bytes::Bytes;

/// A serialized stanza ready for the wire, in three parts. The recipients of one notification
/// share its `body` (the same bytes, counted references) and each holds only its own envelope,
/// `head` and `tail`: a large item sent to many costs its size once, not once per recipient
/// (issue #11 H5). A stanza built in one piece is all `head`.
#[derive(Clone, Debug, Default)]
pub struct Wire {
    head: Bytes,
    body: Bytes,
    tail: Bytes,
}

impl Wire {
    pub fn new(head: Bytes, body: Bytes, tail: Bytes) -> Self {
        Wire { head, body, tail }
    }

    /// Its length on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same stanza with `extra` inserted before its tail (an element added to each
    /// recipient's copy); the body stays shared.
    pub fn before_tail(&self, extra: &[u8]) -> Wire {
        Wire {
            head: self.head.clone(),
            body: self.body.clone(),
            tail: Bytes::from([extra, &self.tail[..]].concat()),
        }
    }

    /// The same stanza ending with `tail` instead (a tail [`Wire::before_tail`] made once for
    /// many recipients whose copies end alike).
    pub fn with_tail(&self, tail: Bytes) -> Wire {
        Wire {
            head: self.head.clone(),
            body: self.body.clone(),
            tail,
        }
    }

    /// What ends it.
    pub fn tail(&self) -> &Bytes {
        &self.tail
    }

    /// Its bytes in order.
    pub fn parts(&self) -> [&[u8]; 3] {
        [&self.head, &self.body, &self.tail]
    }

    /// Appends its bytes to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len());
        for part in self.parts() {
            out.extend_from_slice(part);
        }
    }

    /// Its bytes in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl From<Bytes> for Wire {
    fn from(head: Bytes) -> Self {
        Wire {
            head,
            ..Wire::default()
        }
    }
}

impl From<Vec<u8>> for Wire {
    fn from(head: Vec<u8>) -> Self {
        Wire::from(Bytes::from(head))
    }
}

impl From<&'static [u8]> for Wire {
    fn from(head: &'static [u8]) -> Self {
        Wire::from(Bytes::from_static(head))
    }
}

/// Equal when the bytes on the wire are, however they are split.
impl PartialEq for Wire {
    fn eq(&self, other: &Self) -> bool {
        let bytes = |wire: &Self| {
            wire.parts()
                .into_iter()
                .flatten()
                .copied()
                .collect::<Vec<u8>>()
        };
        self.len() == other.len() && bytes(self) == bytes(other)
    }
}

impl Eq for Wire {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_does_not_matter() {
        let split = Wire::new(
            Bytes::from_static(b"<a>"),
            Bytes::from_static(b"x"),
            Bytes::from_static(b"</a>"),
        );
        let whole = Wire::from(&b"<a>x</a>"[..]);
        assert_eq!(split, whole);
        assert_eq!(split.len(), 8);
        assert_eq!(split.to_vec(), b"<a>x</a>");
        assert_ne!(split, Wire::from(&b"<a>y</a>"[..]));
    }

    #[test]
    fn clones_share_the_body() {
        let body = Bytes::from(vec![b'x'; 1024]);
        let one = Wire::new(Bytes::from_static(b"<m>"), body.clone(), Bytes::new());
        let two = one.clone();
        assert_eq!(one.parts()[1].as_ptr(), two.parts()[1].as_ptr());
        assert_eq!(one.parts()[1].as_ptr(), body.as_ptr());
        let more = one.before_tail(b"<x/>");
        assert_eq!(more.parts()[1].as_ptr(), body.as_ptr());
        assert_eq!(more.parts()[2], b"<x/>");
    }
}
