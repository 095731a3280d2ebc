//! RFC 7395 framing: over a WebSocket, each top-level element is one text message, and
//! `<open/>` and `<close/>` stand for the stream's start and end tags. These functions translate
//! between those messages and the byte stream that [`StreamParser`](crate::StreamParser) reads
//! and the server writes, so that one stream implementation serves both transports.

use rxml::error::EndOrError;
use rxml::writer::{Encoder, Item, TrackNamespace};
use rxml::{Event, Namespace, Parse, Parser};

use crate::{NS_STREAMS, StreamHeader, encode, ncname};

/// Namespace of `<open/>` and `<close/>`.
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// `<close/>`: ends the stream (RFC 7395 §3.6).
pub const CLOSE: &[u8] = b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";

/// What a peer's message is.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// `<open/>`, which (re)starts the stream, with its attributes.
    Open(StreamHeader),
    /// `<close/>`.
    Close,
    /// Anything else: one element of the stream, for the stream parser to judge.
    Element,
}

/// Reads `<open/>` and `<close/>`; other messages are [`Inbound::Element`], even ones that are
/// not XML (the stream parser rejects those).
pub fn inbound(message: &str) -> Inbound {
    // Only messages that can be framing elements are parsed here; stanzas are parsed once.
    if !message.starts_with("<open") && !message.starts_with("<close") {
        return Inbound::Element;
    }
    let mut xml = Parser::default();
    let mut rest = message.as_bytes();
    let Ok(Some(Event::StartElement(_, (ns, name), attrs))) = xml.parse(&mut rest, true) else {
        return Inbound::Element;
    };
    // An empty element and nothing after it.
    let empty = matches!(xml.parse(&mut rest, true), Ok(Some(Event::EndElement(_))))
        && matches!(
            xml.parse(&mut rest, true),
            Ok(None) | Err(EndOrError::NeedMoreData)
        );
    if ns != NS_FRAMING || !empty {
        return Inbound::Element;
    }
    let plain = |name: &str| attrs.get(&Namespace::NONE, name).cloned();
    match name.as_str() {
        "open" => Inbound::Open(StreamHeader {
            to: plain("to"),
            from: plain("from"),
            id: plain("id"),
            version: plain("version"),
            lang: attrs.get(&Namespace::XML, "lang").cloned(),
        }),
        "close" => Inbound::Close,
        _ => Inbound::Element,
    }
}

/// The stream header a peer's `<open/>` stands for: `<stream:stream xmlns='{content_ns}'
/// xmlns:stream='…' …>` with the same attributes, for the stream parser.
pub fn stream_header_for(content_ns: &str, open: &StreamHeader) -> Vec<u8> {
    let mut encoder = Encoder::new();
    let tracker = encoder.ns_tracker_mut();
    tracker.declare_fixed(None, content_ns.to_owned().into());
    tracker.declare_fixed(Some(ncname("stream")), Namespace::from_str(NS_STREAMS));
    encode(&mut encoder, header_items(NS_STREAMS, "stream", open))
}

/// The server's `<open/>` (RFC 7395 §3.4), in place of [`crate::stream_header`].
pub fn open(id: &str, from: &str, to: Option<&str>) -> Vec<u8> {
    let mut encoder = Encoder::new();
    encoder
        .ns_tracker_mut()
        .declare_fixed(None, Namespace::from_str(NS_FRAMING));
    let header = StreamHeader {
        to: to.map(str::to_owned),
        from: Some(from.to_owned()),
        id: Some(id.to_owned()),
        version: Some("1.0".to_owned()),
        lang: Some("en".to_owned()),
    };
    let mut items = header_items(NS_FRAMING, "open", &header);
    items.push(Item::ElementFoot);
    encode(&mut encoder, items)
}

fn header_items<'a>(ns: &'static str, name: &'static str, h: &'a StreamHeader) -> Vec<Item<'a>> {
    let mut items = vec![Item::ElementHeadStart(
        Namespace::from_str(ns),
        ncname(name),
    )];
    let attrs = [
        ("id", &h.id),
        ("from", &h.from),
        ("to", &h.to),
        ("version", &h.version),
    ];
    for (name, value) in attrs {
        if let Some(value) = value {
            items.push(Item::Attribute(Namespace::NONE, ncname(name), value));
        }
    }
    if let Some(lang) = &h.lang {
        items.push(Item::Attribute(Namespace::XML, ncname("lang"), lang));
    }
    items.push(Item::ElementHeadEnd);
    items
}

/// One WebSocket message to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Outbound {
    /// One top-level element, with every namespace it uses declared on it.
    Element(String),
    /// The output was only whitespace, a keepalive: a WebSocket ping stands for it.
    Keepalive,
}

/// Splits what the server wrote at the boundaries of its top-level elements. The output is the
/// server's own serialization: no comments, no CDATA, `<` only in tags, and `>` outside quotes
/// only at the end of a tag, so tags and quotes are all that need reading. `<stream:…>`
/// elements, written for a stream that declares the `stream` prefix, declare it themselves.
pub fn outbound(out: &[u8]) -> Vec<Outbound> {
    let mut messages = Vec::new();
    let (mut depth, mut start, mut at) = (0usize, None, 0);
    while let Some(offset) = out[at..].iter().position(|&b| b == b'<') {
        let open = at + offset;
        let Some(end) = tag_end(out, open) else {
            break;
        };
        let begins = *start.get_or_insert(open);
        if out.get(open + 1) == Some(&b'/') {
            depth = depth.saturating_sub(1);
        } else if out[end - 1] != b'/' {
            depth += 1;
        }
        at = end + 1;
        if depth == 0 {
            start = None;
            messages.push(Outbound::Element(element(&out[begins..at])));
        }
    }
    // Never expected of the serializer; sent as it is rather than lost.
    let rest = &out[start.unwrap_or(at)..];
    if !rest.trim_ascii().is_empty() {
        messages.push(Outbound::Element(element(rest)));
    }
    if messages.is_empty() && !out.is_empty() {
        messages.push(Outbound::Keepalive);
    }
    messages
}

/// The index of the `>` that ends the tag opened at `open`.
fn tag_end(out: &[u8], open: usize) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in out.iter().enumerate().skip(open) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn element(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let Some(name) = text.strip_prefix("<stream:") else {
        return text.into_owned();
    };
    let name_end = "<stream:".len()
        + name
            .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
            .unwrap_or(name.len());
    let declaration = format!(" xmlns:stream='{NS_STREAMS}'");
    let mut text = text.into_owned();
    text.insert_str(name_end, &declaration);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, StreamEvent, StreamParser};

    fn texts(out: &[u8]) -> Vec<String> {
        outbound(out)
            .into_iter()
            .map(|m| match m {
                Outbound::Element(text) => text,
                Outbound::Keepalive => " ".to_owned(),
            })
            .collect()
    }

    #[test]
    fn output_is_split_into_complete_elements() {
        let out = b"<a xmlns='x' v='>'/><message xmlns='jabber:client' to=\"b>c\"><body>x &gt; y</body><x xmlns='y'/></message><iq xmlns='jabber:client'/>";
        assert_eq!(
            texts(out),
            [
                "<a xmlns='x' v='>'/>",
                "<message xmlns='jabber:client' to=\"b>c\"><body>x &gt; y</body><x xmlns='y'/></message>",
                "<iq xmlns='jabber:client'/>",
            ]
        );
    }

    #[test]
    fn stream_prefixed_elements_declare_the_prefix() {
        let mut out =
            b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
                .to_vec();
        out.extend(crate::stream_error("policy-violation", Some("too big")));
        out.extend(CLOSE);
        let texts = texts(&out);
        assert_eq!(texts.len(), 3);
        for text in &texts {
            let el: minidom::Element = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(el.ns() == NS_STREAMS || el.ns() == NS_FRAMING, "{text}");
        }
        assert!(texts[0].starts_with("<stream:features xmlns:stream="));
        assert_eq!(texts[2].as_bytes(), CLOSE);
    }

    #[test]
    fn whitespace_alone_is_a_keepalive() {
        assert_eq!(outbound(b" "), [Outbound::Keepalive]);
        assert_eq!(texts(b" <a xmlns='x'/> "), ["<a xmlns='x'/>"]);
        assert!(outbound(b"").is_empty());
    }

    #[test]
    fn open_and_close_are_read() {
        let open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0' xml:lang='de'/>";
        let Inbound::Open(header) = inbound(open) else {
            panic!("not an open");
        };
        assert_eq!(header.to.as_deref(), Some("localhost"));
        assert_eq!(header.version.as_deref(), Some("1.0"));
        assert_eq!(header.lang.as_deref(), Some("de"));
        assert_eq!(
            inbound("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
            Inbound::Close
        );
        for other in [
            "<open xmlns='jabber:client'/>",
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/><x/>",
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'>",
            "<message xmlns='jabber:client'/>",
            "<openx/>",
        ] {
            assert_eq!(inbound(other), Inbound::Element, "{other}");
        }
    }

    #[test]
    fn an_open_becomes_a_header_the_parser_reads() {
        let header = StreamHeader {
            to: Some("a&b".into()),
            from: None,
            id: None,
            version: Some("1.0".into()),
            lang: Some("en".into()),
        };
        let mut parser = StreamParser::new("jabber:client", Limits::default());
        parser.feed(&stream_header_for("jabber:client", &header));
        match parser.next_event() {
            Ok(Some(StreamEvent::Header(read))) => assert_eq!(read, header),
            other => panic!("{other:?}"),
        }
        assert_eq!(parser.buffered_len(), 0);
    }

    #[test]
    fn the_servers_open_is_a_framing_element() {
        let open = String::from_utf8(open("abc", "localhost", Some("x@localhost"))).unwrap();
        let el: minidom::Element = open.parse().unwrap();
        assert!(el.is("open", NS_FRAMING), "{open}");
        assert_eq!(el.attr("id"), Some("abc"));
        assert_eq!(el.attr("from"), Some("localhost"));
        assert_eq!(el.attr("to"), Some("x@localhost"));
        assert_eq!(el.attr("version"), Some("1.0"));
        assert!(open.contains("xml:lang='en'"), "{open}");
    }
}
