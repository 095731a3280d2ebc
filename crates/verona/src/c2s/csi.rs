//! XEP-0352 client state indication: while a client says it is inactive (a phone in a pocket),
//! what it need not see at once — presence, chat states, pubsub events without a message — is
//! held, and presence folded to the latest of each sender; anything important (a message
//! someone wrote, an iq, an error) goes at once, after what was held, so that order is kept.

use std::collections::VecDeque;

use minidom::Element;
use verona_stream::Wire;

/// Held stanzas, bounded like a session's queue: past its stanzas or bytes, everything held
/// goes out.
#[derive(Default)]
pub(super) struct Held {
    stanzas: VecDeque<(Option<String>, Wire)>,
    bytes: usize,
}

/// How much may be held.
#[derive(Clone, Copy)]
pub(super) struct Bound {
    pub(super) stanzas: usize,
    pub(super) bytes: usize,
}

impl Held {
    /// Holds `stanza` unless it is important; returns what must be written now, in order
    /// (what was held first), or nothing.
    pub(super) fn offer(&mut self, stanza: Wire, max: Bound) -> Vec<Wire> {
        let bytes = stanza.to_vec();
        let Some(parsed) = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|xml| xml.parse::<Element>().ok())
        else {
            return self.release_with(stanza);
        };
        if is_important(&parsed) {
            return self.release_with(stanza);
        }
        // Presence folds: only the latest of each sender matters.
        let fold = (parsed.name() == "presence")
            .then(|| parsed.attr("from").unwrap_or_default().to_owned());
        if let Some(key) = &fold {
            let bytes = &mut self.bytes;
            self.stanzas.retain(|(held, stanza)| {
                let folded = held.as_deref() == Some(key.as_str());
                if folded {
                    *bytes -= stanza.len();
                }
                !folded
            });
        }
        self.bytes += stanza.len();
        self.stanzas.push_back((fold, stanza));
        if self.stanzas.len() > max.stanzas || self.bytes > max.bytes {
            return self.release();
        }
        Vec::new()
    }

    /// Everything held, oldest first (the client became active).
    pub(super) fn release(&mut self) -> Vec<Wire> {
        self.bytes = 0;
        self.stanzas.drain(..).map(|(_, stanza)| stanza).collect()
    }

    fn release_with(&mut self, stanza: Wire) -> Vec<Wire> {
        let mut out = self.release();
        out.push(stanza);
        out
    }
}

/// What an inactive client gets at once: iqs (answers it waits for), errors, and messages
/// that carry something someone wrote (a body or an encrypted payload, also inside a carbon,
/// an archive result or an event), an invitation, or that are kept (XEP-0334 `<store/>`).
fn is_important(stanza: &Element) -> bool {
    match stanza.name() {
        "presence" => stanza.attr("type").is_some_and(|t| {
            // Subscription requests and errors are for the user to answer.
            matches!(t, "subscribe" | "error")
        }),
        "message" => {
            stanza.attr("type") == Some("error")
                || carries_writing(stanza, 0)
                || crate::eventing::chat::is_written(stanza)
        }
        _ => true,
    }
}

fn carries_writing(el: &Element, depth: usize) -> bool {
    if depth > 6 {
        return false;
    }
    el.children().any(|child| {
        matches!(child.name(), "body" | "encrypted" | "invite" | "subject")
            || carries_writing(child, depth + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(xml: &str) -> Wire {
        Wire::from(xml.as_bytes().to_vec())
    }

    const MAX: Bound = Bound {
        stanzas: 10,
        bytes: 1 << 20,
    };

    fn text(out: &[Wire]) -> Vec<String> {
        out.iter()
            .map(|w| String::from_utf8(w.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn presence_is_held_and_folded_messages_go_at_once_after_it() {
        let mut held = Held::default();
        let p = |from: &str, show: &str| {
            format!("<presence xmlns='jabber:client' from='{from}'><show>{show}</show></presence>")
        };
        for (from, show) in [("a@x/1", "away"), ("b@x/1", "dnd"), ("a@x/1", "xa")] {
            assert!(held.offer(wire(&p(from, show)), MAX).is_empty());
        }
        let state = "<message xmlns='jabber:client' from='c@x/1' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>";
        assert!(held.offer(wire(state), MAX).is_empty());
        let event = "<message xmlns='jabber:client' from='c@x'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='geoloc'/></event></message>";
        assert!(held.offer(wire(event), MAX).is_empty());
        let chat =
            "<message xmlns='jabber:client' from='c@x/1' type='chat'><body>hi</body></message>";
        let out = text(&held.offer(wire(chat), MAX));
        assert_eq!(
            out,
            [
                p("b@x/1", "dnd"),
                p("a@x/1", "xa"),
                state.into(),
                event.into(),
                chat.into()
            ]
        );
        // Important at once: iqs, carbons of writing, subscription requests.
        for xml in [
            "<iq xmlns='jabber:client' type='result' id='1'/>",
            "<message xmlns='jabber:client'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>x</body></message></forwarded></sent></message>",
            "<presence xmlns='jabber:client' type='subscribe' from='d@x'/>",
        ] {
            assert_eq!(text(&held.offer(wire(xml), MAX)), [xml.to_owned()]);
        }
    }

    #[test]
    fn holding_is_bounded() {
        let mut held = Held::default();
        for n in 0..3 {
            let xml = format!("<presence xmlns='jabber:client' from='{n}@x/1'/>");
            assert!(
                held.offer(wire(&xml), Bound { stanzas: 3, ..MAX })
                    .is_empty()
            );
        }
        let more = wire("<presence xmlns='jabber:client' from='9@x/1'/>");
        let out = held.offer(more, Bound { stanzas: 3, ..MAX });
        assert_eq!(out.len(), 4);
        assert!(held.release().is_empty());
        let big = format!(
            "<presence xmlns='jabber:client' from='a@x/1'><status>{}</status></presence>",
            "x".repeat(100)
        );
        let out = held.offer(wire(&big), Bound { bytes: 50, ..MAX });
        assert_eq!(out.len(), 1);
    }
}
