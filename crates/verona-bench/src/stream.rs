//! How the generator reads a server's XML stream: quick-xml's events, built into minidom
//! elements. The server's own parser (`verona-stream`, on rxml) checks everything a hostile
//! peer could send, at several times the cost per stanza; in the generator it was the bound of
//! every fan-out and group-chat run (the generator at 93–99 % of its core, three quarters of
//! that in rxml), so those runs measured the generator rather than the server. The servers
//! under test are trusted to send well-formed XML: what this reader does not check (characters
//! allowed, restricted XML) is the server's parser's business, not the benchmark's.

use std::borrow::Cow;

use minidom::Element;
use minidom::rxml::{Namespace, NcName};
use quick_xml::errors::{Error as XmlError, IllFormedError};
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::attributes::{AttrError, Attribute};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::PrefixDeclaration;
use quick_xml::{Reader, XmlVersion};
use verona_stream::Limits;

const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// What the server's stream brings next.
#[derive(Debug, PartialEq)]
pub enum StreamEvent {
    /// The stream header's start tag.
    Header,
    /// A complete top-level element, with the namespaces it was sent in.
    Stanza(Element),
    /// `</stream:stream>`
    End,
}

/// What [`StreamReader::next_skimmed`] gives.
#[derive(Debug, PartialEq)]
pub enum Skimmed<T> {
    /// What the skim made of a stanza it recognised, no element built.
    Taken(T),
    /// Anything else, as [`StreamReader::next_event`] reads it.
    Event(StreamEvent),
}

/// Namespace declarations in scope: (prefix, namespace), `None` for the default namespace.
type Scope = Vec<(Option<String>, String)>;

/// Why no event came out of the bytes read so far.
enum Failure {
    /// They end inside it: wait for more.
    Incomplete,
    /// They are not XML, or not namespace-well-formed.
    Bad(String),
}

impl From<AttrError> for Failure {
    fn from(e: AttrError) -> Self {
        Failure::Bad(e.to_string())
    }
}

impl From<XmlError> for Failure {
    fn from(e: XmlError) -> Self {
        match e {
            // quick-xml's syntax errors are all input that ends too soon, and so is a
            // reference cut before its `;`.
            XmlError::Syntax(_) | XmlError::IllFormed(IllFormedError::UnclosedReference) => {
                Failure::Incomplete
            }
            e => Failure::Bad(e.to_string()),
        }
    }
}

/// An incremental reader of one XML stream: bytes go in with [`StreamReader::feed`] as they
/// arrive, events come out of [`StreamReader::next_event`] once complete. A stanza that is not
/// complete yet is parsed again from its start when more bytes come.
#[derive(Default)]
pub struct StreamReader {
    text: String,
    /// Bytes of `text` before this are read.
    at: usize,
    /// The start of a character cut between two reads, completed by the next.
    cut: Vec<u8>,
    /// The header's declarations, once the header came; then what each stanza adds.
    scope: Option<Scope>,
}

impl StreamReader {
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        // What was read goes; what is left is at most a stanza begun, bounded as the server
        // bounds what it reads, so a server sending one endless stanza cannot grow it forever.
        self.text.drain(..self.at);
        self.at = 0;
        let most = Limits::default().max_stanza_bytes;
        if self.text.len() > most {
            return Err(format!("a stanza longer than {most} bytes"));
        }
        let joined;
        let bytes = if self.cut.is_empty() {
            bytes
        } else {
            self.cut.extend_from_slice(bytes);
            joined = std::mem::take(&mut self.cut);
            &joined
        };
        let whole = match std::str::from_utf8(bytes) {
            Ok(whole) => whole,
            Err(e) if e.error_len().is_none() => {
                self.cut = bytes[e.valid_up_to()..].to_vec();
                std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to there")
            }
            Err(e) => return Err(format!("not UTF-8: {e}")),
        };
        self.text.push_str(whole);
        Ok(())
    }

    /// The next complete event; `None` until more bytes come.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, String> {
        let mut reader = Reader::from_str(&self.text[self.at..]);
        // The stream's end tag closes a start tag this reader, which begins after it, never saw.
        reader.config_mut().allow_unmatched_ends = true;
        let read = match &mut self.scope {
            None => header(&mut reader).map(|declared| {
                self.scope = Some(declared);
                StreamEvent::Header
            }),
            Some(scope) => {
                let base = scope.len();
                let read = stanza(&mut reader, scope);
                scope.truncate(base);
                read
            }
        };
        match read {
            Ok(event) => {
                self.at += usize::try_from(reader.buffer_position()).expect("within the buffer");
                Ok(Some(event))
            }
            Err(Failure::Incomplete) => Ok(None),
            Err(Failure::Bad(why)) => Err(why),
        }
    }

    /// [`StreamReader::next_event`] for a reader that needs only a few facts from most
    /// stanzas: each complete stanza is offered as text to `skim` first, and becomes an
    /// element only if `skim` does not take it. Building minidom elements is most of what
    /// reading costs.
    pub fn next_skimmed<T>(
        &mut self,
        skim: &mut impl FnMut(&str) -> Option<T>,
    ) -> Result<Option<Skimmed<T>>, String> {
        if self.scope.is_some() {
            let text = &self.text[self.at..];
            match delimit(text) {
                Ok(Some(end)) => {
                    if let Some(taken) = skim(&text[..end]) {
                        self.at += end;
                        return Ok(Some(Skimmed::Taken(taken)));
                    }
                }
                Ok(None) => {}
                Err(Failure::Incomplete) => return Ok(None),
                Err(Failure::Bad(why)) => return Err(why),
            }
        }
        Ok(self.next_event()?.map(Skimmed::Event))
    }
}

/// What [`skim_stanza`] found in a stanza.
pub struct Skim {
    pub from: Option<String>,
    /// The `type` attribute.
    pub kind: Option<String>,
    /// The text of the first child asked for, if there is one.
    pub text: Option<String>,
}

/// The top-level `from` and `type` of a stanza named `name` in `jabber:client`, and the text
/// of its first child named `child` in `jabber:client`, read from the stanza's text without
/// building it (for [`StreamReader::next_skimmed`]). `None` for another stanza and for
/// anything a skim would have to resolve to be sure of: prefixes, namespace declarations
/// other than `jabber:client`, references in attributes or in that child's text, markup inside
/// it.
pub fn skim_stanza(text: &str, name: &str, child: &str) -> Option<Skim> {
    let in_client = |xmlns: Option<&str>| xmlns.is_none_or(|ns| ns == "jabber:client");
    let mut reader = Reader::from_str(text);
    let (mut depth, mut in_child) = (0usize, false);
    let mut skim = Skim {
        from: None,
        kind: None,
        text: None,
    };
    loop {
        let (tag, opens) = match reader.read_event().ok()? {
            Event::Start(tag) => (tag, true),
            Event::Empty(tag) => (tag, false),
            Event::Text(text) if in_child => {
                let found = skim.text.get_or_insert_default();
                found.push_str(&text.xml10_content());
                continue;
            }
            Event::End(_) => {
                in_child = false;
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(skim);
                }
                continue;
            }
            Event::GeneralRef(_) | Event::CData(_) if in_child => return None,
            Event::Eof => return None,
            _ => continue,
        };
        if in_child || tag.name().prefix().is_some() {
            return None;
        }
        let (xmlns, [from, kind]) = plain_attributes(&tag, ["from", "type"])?;
        let named = |wanted: &str| tag.name().as_ref() == wanted && in_client(xmlns.as_deref());
        match depth {
            0 if opens && named(name) => {
                skim.from = from.map(Cow::into_owned);
                skim.kind = kind.map(Cow::into_owned);
            }
            0 => return None,
            1 if named(child) && skim.text.is_none() => {
                skim.text = Some(String::new());
                in_child = opens;
            }
            _ => {}
        }
        depth += usize::from(opens);
    }
}

/// An attribute's value, if the tag has it.
pub type Attr<'t> = Option<Cow<'t, str>>;

/// A tag's `xmlns` and the values of the attributes `names`, for a skim; `None` when the tag
/// declares a prefix or a value holds a reference, which a skim leaves to the element reader.
pub fn plain_attributes<'t, const N: usize>(
    tag: &'t BytesStart<'_>,
    names: [&str; N],
) -> Option<(Attr<'t>, [Attr<'t>; N])> {
    let mut xmlns = None;
    let mut values = [const { None }; N];
    for attribute in tag.attributes().with_checks(false) {
        let attribute = attribute.ok()?;
        let value = attribute.value;
        if value.contains('&') {
            return None;
        }
        let key = attribute.key.as_ref();
        if key == "xmlns" {
            xmlns = Some(value);
        } else if key.starts_with("xmlns:") {
            return None;
        } else if let Some(at) = names.iter().position(|name| *name == key) {
            values[at] = Some(value);
        }
    }
    Some((xmlns, values))
}

/// Where the first complete top-level element of `text` ends; `None` when the stream's end
/// tag comes first.
fn delimit(text: &str) -> Result<Option<usize>, Failure> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().allow_unmatched_ends = true;
    let mut depth = 0usize;
    loop {
        match reader.read_event()? {
            Event::Start(_) => depth += 1,
            Event::End(_) if depth == 0 => return Ok(None),
            Event::End(_) => depth -= 1,
            Event::Empty(_) => {}
            Event::Eof => return Err(Failure::Incomplete),
            _ => continue,
        }
        if depth == 0 {
            return Ok(Some(
                usize::try_from(reader.buffer_position()).expect("within the text"),
            ));
        }
    }
}

/// The stream header's namespace declarations, once its start tag is read.
fn header(reader: &mut Reader<&[u8]>) -> Result<Scope, Failure> {
    loop {
        match reader.read_event()? {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::Text(_) => {}
            Event::Start(tag) => {
                let mut declared = Scope::new();
                declare(&tag, &mut declared)?;
                return Ok(declared);
            }
            Event::Eof => return Err(Failure::Incomplete),
            other => {
                return Err(Failure::Bad(format!(
                    "expected a stream header, got {other:?}"
                )));
            }
        }
    }
}

/// The next stanza built into an element, or the stream's end.
fn stanza(reader: &mut Reader<&[u8]>, scope: &mut Scope) -> Result<StreamEvent, Failure> {
    // Open elements, each with the scope's length before its declarations.
    let mut open: Vec<(Element, usize)> = Vec::new();
    loop {
        let closed = match reader.read_event()? {
            Event::Start(tag) => {
                let mark = scope.len();
                open.push((element(&tag, scope)?, mark));
                None
            }
            Event::Empty(tag) => {
                let mark = scope.len();
                let element = element(&tag, scope)?;
                scope.truncate(mark);
                Some(element)
            }
            Event::End(_) => match open.pop() {
                Some((element, mark)) => {
                    scope.truncate(mark);
                    Some(element)
                }
                None => return Ok(StreamEvent::End),
            },
            Event::Text(text) => {
                append(&mut open, text.xml10_content());
                None
            }
            Event::CData(text) => {
                append(&mut open, text.xml10_content());
                None
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref()? {
                    Some(c) => Cow::Owned(c.to_string()),
                    None => {
                        let name = reference.xml10_content();
                        let known = resolve_predefined_entity(&name)
                            .ok_or_else(|| Failure::Bad(format!("unknown entity &{name};")))?;
                        Cow::Borrowed(known)
                    }
                };
                append(&mut open, resolved);
                None
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => None,
            Event::Eof => return Err(Failure::Incomplete),
        };
        if let Some(element) = closed {
            match open.last_mut() {
                Some((parent, _)) => {
                    parent.append_child(element);
                }
                None => return Ok(StreamEvent::Stanza(element)),
            }
        }
    }
}

/// Text inside an element; between stanzas it is whitespace, and dropped.
fn append(open: &mut [(Element, usize)], text: Cow<'_, str>) {
    if let Some((element, _)) = open.last_mut() {
        element.append_text(text);
    }
}

/// Adds the namespace declarations among `tag`'s attributes to `scope`.
fn declare(tag: &BytesStart<'_>, scope: &mut Scope) -> Result<(), Failure> {
    for attribute in tag.attributes().with_checks(false) {
        let attribute = attribute?;
        let binding = match attribute.key.as_namespace_binding() {
            Some(PrefixDeclaration::Default) => None,
            Some(PrefixDeclaration::Named(prefix)) => Some(prefix.to_owned()),
            None => continue,
        };
        scope.push((binding, value(&attribute)?));
    }
    Ok(())
}

fn value(attribute: &Attribute<'_>) -> Result<String, Failure> {
    Ok(attribute
        .normalized_value(XmlVersion::Implicit1_0)?
        .into_owned())
}

fn resolve<'s>(scope: &'s Scope, prefix: Option<&str>) -> Result<&'s str, Failure> {
    if prefix == Some("xml") {
        return Ok(NS_XML);
    }
    scope
        .iter()
        .rev()
        .find(|(bound, _)| bound.as_deref() == prefix)
        .map(|(_, namespace)| namespace.as_str())
        .ok_or_else(|| Failure::Bad(format!("prefix {prefix:?} not declared")))
}

/// The element `tag` opens, its declarations added to `scope`.
fn element(tag: &BytesStart<'_>, scope: &mut Scope) -> Result<Element, Failure> {
    declare(tag, scope)?;
    let name = tag.name();
    let prefix = name.prefix().map(|p| p.into_inner());
    let mut element = Element::bare(name.local_name().into_inner(), resolve(scope, prefix)?);
    for attribute in tag.attributes().with_checks(false) {
        let attribute = attribute?;
        if attribute.key.as_namespace_binding().is_some() {
            continue;
        }
        let local = NcName::try_from(attribute.key.local_name().into_inner())
            .map_err(|e| Failure::Bad(format!("attribute name: {e}")))?;
        let value = value(&attribute)?;
        let namespace = match attribute.key.prefix() {
            // Unprefixed attributes are in no namespace.
            None => Namespace::NONE,
            Some(prefix) => Namespace::from(resolve(scope, Some(prefix.into_inner()))?.to_owned()),
        };
        element.attrs_mut().insert(namespace, local, value);
    }
    Ok(element)
}

#[cfg(test)]
mod tests {
    use super::*;
    use verona_stream::{Limits, StreamParser};

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='x' version='1.0'>";

    /// What the server's own parser makes of the header and `xml`.
    fn reference(xml: &str) -> Vec<StreamEvent> {
        let mut parser = StreamParser::new("jabber:client", Limits::default());
        parser.feed(HEADER.as_bytes());
        parser.feed(xml.as_bytes());
        let mut events = Vec::new();
        while let Some(event) = parser.next_event().expect("well-formed") {
            events.push(match event {
                verona_stream::StreamEvent::Header(_) => StreamEvent::Header,
                verona_stream::StreamEvent::Stanza(element) => StreamEvent::Stanza(element),
                verona_stream::StreamEvent::End => StreamEvent::End,
            });
        }
        events
    }

    /// What this reader makes of the header and `xml`, fed in pieces of `piece` bytes.
    fn read(xml: &str, piece: usize) -> Vec<StreamEvent> {
        let bytes = [HEADER.as_bytes(), xml.as_bytes()].concat();
        let mut reader = StreamReader::default();
        let mut events = Vec::new();
        for chunk in bytes.chunks(piece) {
            reader.feed(chunk).expect("UTF-8");
            while let Some(event) = reader.next_event().expect("well-formed") {
                events.push(event);
            }
        }
        events
    }

    #[test]
    fn reads_what_the_servers_parser_reads_however_the_bytes_are_cut() {
        let cases = [
            "<message from='room@chat.localhost/occ1' to='a@localhost/r1' type='groupchat' \
             id='m1'><body>12 345 &amp; &lt;more&gt; &#233;t&#xE9; \u{e9}</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='room@chat.localhost'/></message>",
            "<message from='pubsub.localhost' to='a@localhost/r1'><event \
             xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='i1' \
             publisher='b@localhost/x'><entry xmlns='urn:x'>text<![CDATA[<raw>]]></entry></item>\
             </items></event><addresses xmlns='http://jabber.org/protocol/address'><address \
             type='replyto' jid='b@localhost/x'/></addresses></message>",
            "<presence from='b@localhost/x' xml:lang='en'><show>away</show>\
             <status>\"out\" &apos;here&apos;</status></presence>\n  <iq type='result' id='1'/>",
            "<x:iq xmlns:x='jabber:client' type='get' id='2'><q:query xmlns:q='urn:q' \
             q:attr='v'/></x:iq><stream:error><not-well-formed \
             xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
        ];
        for xml in cases {
            let expected = reference(xml);
            assert_eq!(expected[0], StreamEvent::Header);
            assert!(expected.len() > 1, "{xml}");
            for piece in [1, 2, 3, 7, 64, 4096] {
                assert_eq!(read(xml, piece), expected, "{piece}-byte pieces of {xml}");
            }
        }
    }

    #[test]
    fn a_skim_takes_the_stanzas_it_recognises_and_the_rest_are_read_whole() {
        let xml = "<presence from='b@localhost/x'/> <message id='1'><body>one</body></message>\
                   <message id='2'><body>two</body></message></stream:stream>";
        for piece in [1, 5, 4096] {
            let bytes = [HEADER.as_bytes(), xml.as_bytes()].concat();
            let mut reader = StreamReader::default();
            let mut got = Vec::new();
            // Takes message 1 only, as its text.
            let mut skim = |text: &str| text.contains("id='1'").then(|| text.trim().to_owned());
            for chunk in bytes.chunks(piece) {
                reader.feed(chunk).expect("UTF-8");
                while let Some(event) = reader.next_skimmed(&mut skim).expect("well-formed") {
                    got.push(event);
                }
            }
            // What was not skimmed reads as the server's parser reads it; message 1 was taken.
            let mut want: Vec<Skimmed<String>> =
                reference(xml).into_iter().map(Skimmed::Event).collect();
            want[2] = Skimmed::Taken("<message id='1'><body>one</body></message>".to_owned());
            assert_eq!(got, want, "{piece}");
        }
    }

    #[test]
    fn ill_formed_input_is_an_error_not_a_wait() {
        let cases = [
            "<message><body>a</wrong></message>",
            "<message><body>&nbsp;</body></message>",
            "<p:message/>",
        ];
        for xml in cases {
            let mut reader = StreamReader::default();
            reader.feed(HEADER.as_bytes()).expect("UTF-8");
            assert_eq!(reader.next_event(), Ok(Some(StreamEvent::Header)));
            reader.feed(xml.as_bytes()).expect("UTF-8");
            assert!(reader.next_event().is_err(), "{xml}");
        }
        assert!(StreamReader::default().feed(b"<a>\xff</a>").is_err());
    }

    #[test]
    fn a_stanza_is_bounded_as_the_server_bounds_it() {
        let mut reader = StreamReader::default();
        reader.feed(HEADER.as_bytes()).expect("UTF-8");
        assert_eq!(reader.next_event(), Ok(Some(StreamEvent::Header)));
        reader.feed(b"<message><body>").expect("UTF-8");
        let chunk = vec![b'x'; 4096];
        let most = Limits::default().max_stanza_bytes;
        let mut fed = 0;
        let refused = loop {
            assert_eq!(
                reader.next_event(),
                Ok(None),
                "incomplete after {fed} bytes"
            );
            if let Err(why) = reader.feed(&chunk) {
                break why;
            }
            fed += chunk.len();
            assert!(fed <= most + chunk.len(), "still reading after {fed} bytes");
        };
        assert!(refused.contains("longer than"), "{refused}");
    }
}
