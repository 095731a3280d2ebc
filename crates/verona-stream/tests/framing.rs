use minidom::Element;
use proptest::prelude::*;
use rxml::{Namespace, NcName};
use verona_stream::{
    FramingError, Limits, NS_STREAMS, STREAM_CLOSE, StreamEvent, StreamHeader, StreamParser,
    element_bytes, stream_error, stream_features, stream_header,
};

const HEADER: &str = "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' \
    version='1.0' xml:lang='en'>";
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// A client stream with multi-byte UTF-8, references, CDATA, keepalives and
/// foreign namespaces, so that splits land everywhere interesting.
fn realistic_stream() -> String {
    [
        HEADER,
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        "\n \t",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAByMG0zMA==</auth>",
        "<message to='romeo@example.net' type='chat' id='m1' xml:lang='fr'>",
        "<body>héllo ✓ 😀 &amp; &lt;3 &#x1F600; <![CDATA[<raw> & stuff]]></body>",
        "<x xmlns='urn:example:unknown' flag='yes'><deep><deeper/></deep></x>",
        "</message>",
        " ",
        "<presence><show>away</show></presence>",
        "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        "</stream:stream>",
    ]
    .concat()
}

/// A stream event in comparable form.
#[derive(Debug, PartialEq)]
enum Seen {
    Header(StreamHeader),
    Stanza(String),
    End,
}

fn seen(event: StreamEvent) -> Seen {
    match event {
        StreamEvent::Header(header) => Seen::Header(header),
        StreamEvent::Stanza(el) => Seen::Stanza(String::from_utf8(element_bytes(&el)).unwrap()),
        StreamEvent::End => Seen::End,
    }
}

/// Feeds each chunk and drains events after it; stops at the first error.
fn run(parser: &mut StreamParser, chunks: &[&[u8]]) -> (Vec<Seen>, Option<FramingError>) {
    let mut events = Vec::new();
    for chunk in chunks {
        parser.feed(chunk);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => events.push(seen(event)),
                Ok(None) => break,
                Err(err) => return (events, Some(err)),
            }
        }
    }
    (events, None)
}

fn run_chunks(chunks: &[&[u8]]) -> (Vec<Seen>, Option<FramingError>) {
    run(
        &mut StreamParser::new("jabber:client", Limits::default()),
        chunks,
    )
}

fn stanzas(input: &[u8]) -> Vec<Element> {
    let mut parser = StreamParser::new("jabber:client", Limits::default());
    parser.feed(input);
    let mut out = Vec::new();
    while let Some(event) = parser.next_event().unwrap() {
        if let StreamEvent::Stanza(el) = event {
            out.push(el);
        }
    }
    out
}

#[test]
fn header_stanzas_and_end() {
    let input = realistic_stream();
    let mut parser = StreamParser::new("jabber:client", Limits::default());
    parser.feed(input.as_bytes());
    let mut events = Vec::new();
    while let Some(event) = parser.next_event().unwrap() {
        events.push(event);
    }
    assert_eq!(parser.buffered_len(), 0);
    assert_eq!(events.len(), 7, "{events:?}");

    let StreamEvent::Header(header) = &events[0] else {
        panic!("expected header, got {:?}", events[0]);
    };
    let expected = StreamHeader {
        to: Some("example.com".into()),
        from: None,
        id: None,
        version: Some("1.0".into()),
        lang: Some("en".into()),
    };
    assert_eq!(header, &expected);

    let els: Vec<&Element> = events[1..6]
        .iter()
        .map(|event| match event {
            StreamEvent::Stanza(el) => el,
            other => panic!("expected stanza, got {other:?}"),
        })
        .collect();
    let names: Vec<(&str, String)> = els.iter().map(|el| (el.name(), el.ns())).collect();
    assert_eq!(
        names,
        [
            ("starttls", NS_TLS.to_owned()),
            ("auth", NS_SASL.to_owned()),
            ("message", "jabber:client".to_owned()),
            ("presence", "jabber:client".to_owned()),
            ("iq", "jabber:client".to_owned()),
        ]
    );
    assert!(matches!(events[6], StreamEvent::End));

    assert_eq!(els[1].attr("mechanism"), Some("PLAIN"));
    assert_eq!(els[1].text(), "AGp1bGlldAByMG0zMA==");

    let message = els[2];
    assert_eq!(message.attr("to"), Some("romeo@example.net"));
    assert_eq!(message.attr("type"), Some("chat"));
    assert_eq!(message.attr_ns(&Namespace::XML, "lang"), Some("fr"));
    assert_eq!(
        message.get_child("body", "jabber:client").unwrap().text(),
        "héllo ✓ 😀 & <3 😀 <raw> & stuff"
    );
    let unknown = message.get_child("x", "urn:example:unknown").unwrap();
    assert_eq!(unknown.attr("flag"), Some("yes"));
    let deep = unknown.get_child("deep", "urn:example:unknown").unwrap();
    assert!(deep.has_child("deeper", "urn:example:unknown"));

    let query = els[4].get_child("query", "jabber:iq:roster");
    assert!(query.is_some());
}

#[test]
fn every_split_point_yields_the_same_events() {
    let input = realistic_stream();
    let input = input.as_bytes();
    let whole = run_chunks(&[input]);
    assert!(whole.1.is_none());
    assert_eq!(whole.0.len(), 7);
    for split in 0..=input.len() {
        let (head, tail) = input.split_at(split);
        let (events, err) = run_chunks(&[head, tail]);
        assert!(err.is_none(), "split at {split}: {err:?}");
        assert_eq!(events, whole.0, "split at {split}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run_chunks(&bytes).0, whole.0, "byte by byte");
}

proptest! {
    #[test]
    fn random_splits_yield_the_same_events(cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let input = realistic_stream();
        let input = input.as_bytes();
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&input[start..cut]);
            start = cut;
        }
        chunks.push(&input[start..]);
        let (events, err) = run_chunks(&chunks);
        prop_assert!(err.is_none());
        prop_assert_eq!(events, run_chunks(&[input]).0);
    }
}

#[test]
fn header_is_emitted_before_any_stanza_arrives() {
    let mut parser = StreamParser::new("jabber:client", Limits::default());
    parser.feed(&HEADER.as_bytes()[..HEADER.len() - 1]);
    assert!(parser.next_event().unwrap().is_none());
    parser.feed(b">");
    assert!(matches!(
        parser.next_event().unwrap(),
        Some(StreamEvent::Header(_))
    ));
    assert!(parser.next_event().unwrap().is_none());
}

/// XML lets a byte order mark and whitespace come before the document's first element, and
/// a client's keepalive can land just before a restarted stream's header.
#[test]
fn a_byte_order_mark_and_whitespace_may_precede_the_header() {
    let bare = HEADER.strip_prefix("<?xml version='1.0'?>\n").unwrap();
    let cases: [&[&[u8]]; 5] = [
        &[b"\n", bare.as_bytes()],
        &[b" \r\n\t", bare.as_bytes()],
        &[b"\xEF\xBB\xBF", HEADER.as_bytes()],
        &[b"\xEF", b"\xBB", b"\xBF\n", bare.as_bytes()],
        &[b"\xEF\xBB\xBF \n", bare.as_bytes(), b"<presence/>"],
    ];
    for chunks in cases {
        let (events, err) = run_chunks(chunks);
        assert!(err.is_none(), "{chunks:?}: {err:?}");
        assert!(
            matches!(events[0], Seen::Header(_)),
            "{chunks:?}: {events:?}"
        );
    }
    let (events, _) = run_chunks(&[b"\xEF\xBB\xBF \n", bare.as_bytes(), b"<presence/>"]);
    assert_eq!(
        events[1..],
        [Seen::Stanza("<presence xmlns='jabber:client'/>".into())]
    );
    // Anything else before the header is still not XML.
    let (_, err) = run_chunks(&[b"x", bare.as_bytes()]);
    assert!(
        matches!(err, Some(FramingError::NotWellFormed(_))),
        "{err:?}"
    );
    let (_, err) = run_chunks(&[b"\xEF\xBB", bare.as_bytes()]);
    assert!(
        matches!(err, Some(FramingError::NotWellFormed(_))),
        "{err:?}"
    );
}

#[test]
fn whitespace_keepalives_are_ignored() {
    let (events, err) = run_chunks(&[
        HEADER.as_bytes(),
        b" ",
        b"\n",
        b"\r\n\t ",
        b"<presence/>",
        b"  ",
    ]);
    assert!(err.is_none());
    assert_eq!(
        events[1..],
        [Seen::Stanza("<presence xmlns='jabber:client'/>".into())]
    );
}

#[test]
fn buffered_len_counts_the_unfinished_stanza() {
    let mut parser = StreamParser::new("jabber:client", Limits::default());
    parser.feed(HEADER.as_bytes());
    parser.feed(b"<message><body>hel");
    assert_eq!(parser.buffered_len(), HEADER.len() + 18);
    assert!(matches!(
        parser.next_event().unwrap(),
        Some(StreamEvent::Header(_))
    ));
    assert_eq!(parser.buffered_len(), 18);
    assert!(parser.next_event().unwrap().is_none());
    assert_eq!(parser.buffered_len(), 18);
    parser.feed(b"lo</body></message>");
    assert!(matches!(
        parser.next_event().unwrap(),
        Some(StreamEvent::Stanza(_))
    ));
    assert_eq!(parser.buffered_len(), 0);
}

#[test]
fn text_longer_than_an_rxml_token_is_kept_whole() {
    let body = "abcdefghij".repeat(10_000);
    let input = format!("{HEADER}<message><body>{body}</body></message>");
    let input = input.as_bytes();
    let whole = stanzas(input);
    assert_eq!(whole.len(), 1);
    let text = whole[0].get_child("body", "jabber:client").unwrap().text();
    assert_eq!(text, body);

    let chunks: Vec<&[u8]> = input.chunks(1000).collect();
    let (events, err) = run_chunks(&chunks);
    assert!(err.is_none());
    assert_eq!(events, run_chunks(&[input]).0);
}

fn small_limits() -> Limits {
    Limits {
        max_stanza_bytes: 200,
        max_depth: 3,
        max_attributes: 3,
    }
}

fn header_then(rest: &str) -> Vec<u8> {
    [HEADER, rest].concat().into_bytes()
}

fn root(attrs: &str) -> Vec<u8> {
    format!("<stream:stream {attrs}>").into_bytes()
}

const ROOT_NS: &str = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";

#[test]
fn errors_have_the_right_condition_and_are_final() {
    let long_stanza = format!("<message><body>{}</body></message>", "x".repeat(200));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", header_then("<message <"), "not-well-formed"),
        (
            "mismatched end tag",
            header_then("<message><body>hi</message>"),
            "not-well-formed",
        ),
        (
            "duplicate attribute",
            header_then("<message to='a' to='b'/>"),
            "not-well-formed",
        ),
        // RFC 6120 §11.1: a DTD is restricted XML, a name or value too long a size limit.
        (
            "doctype",
            b"<?xml version='1.0'?><!DOCTYPE stream:stream>".to_vec(),
            "restricted-xml",
        ),
        (
            "an attribute value over 8 KiB",
            header_then(&format!("<message id='{}'/>", "x".repeat(8193))),
            "policy-violation",
        ),
        (
            "processing instruction",
            header_then("<?evil stuff?>"),
            "restricted-xml",
        ),
        ("comment", header_then("<!-- hi -->"), "restricted-xml"),
        (
            "undeclared entity",
            header_then("<message>&ent;</message>"),
            "not-well-formed",
        ),
        (
            "invalid utf-8",
            [
                HEADER.as_bytes(),
                b"<message><body>\xff\xfe</body></message>",
            ]
            .concat(),
            "not-well-formed",
        ),
        (
            "undeclared prefix",
            header_then("<foo:message/>"),
            "not-well-formed",
        ),
        (
            "text between stanzas",
            header_then("hello<presence/>"),
            "not-well-formed",
        ),
        (
            "wrong root name",
            format!("<stream:features {ROOT_NS}>").into_bytes(),
            "invalid-namespace",
        ),
        (
            "wrong root namespace",
            root("xmlns='jabber:client' xmlns:stream='urn:not-streams'"),
            "invalid-namespace",
        ),
        (
            "unprefixed root in the content namespace",
            b"<stream xmlns='jabber:client'>".to_vec(),
            "invalid-namespace",
        ),
        (
            "wrong default namespace",
            root("xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"),
            "invalid-namespace",
        ),
        (
            "no default namespace",
            root("xmlns:stream='http://etherx.jabber.org/streams'"),
            "invalid-namespace",
        ),
        (
            "too deep",
            header_then("<iq><a><b><c/></b></a></iq>"),
            "policy-violation",
        ),
        (
            "too many attributes",
            header_then("<message a='1' b='2' c='3' d='4'/>"),
            "policy-violation",
        ),
        (
            "too many attributes on the header",
            root(&format!("{ROOT_NS} a='1' b='2' c='3' d='4'")),
            "policy-violation",
        ),
        (
            "stanza over the byte limit",
            header_then(&long_stanza),
            "policy-violation",
        ),
        (
            "unclosed stanza over the byte limit",
            header_then(&format!("<message><body>{}", "x".repeat(300))),
            "policy-violation",
        ),
        (
            "second root",
            header_then("</stream:stream><stream:stream>"),
            "bad-format",
        ),
    ];
    for (name, input, condition) in cases {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        for chunks in [vec![&input[..]], bytes] {
            let mut parser = StreamParser::new("jabber:client", small_limits());
            let (_, err) = run(&mut parser, &chunks);
            let err = err.unwrap_or_else(|| panic!("{name}: no error"));
            assert_eq!(err.condition(), condition, "{name}: {err}");
            parser.feed(b"<presence/>");
            let again = parser.next_event().expect_err("parser must stay dead");
            assert_eq!(again.condition(), condition, "{name}");
        }
    }
}

#[test]
fn limits_are_inclusive() {
    let limits = small_limits();
    let at_depth = "<iq><a><b/></a></iq>";
    let at_attributes = "<message a='1' b='2' c='3'/>";
    let filler = 200 - "<message></message>".len();
    let at_size = format!("<message>{}</message>", "x".repeat(filler));
    let over_size = format!("<message>{}</message>", "x".repeat(filler + 1));
    for (stanza, ok) in [
        (at_depth, true),
        (at_attributes, true),
        (at_size.as_str(), true),
        (over_size.as_str(), false),
    ] {
        let input = header_then(stanza);
        let mut parser = StreamParser::new("jabber:client", limits.clone());
        let (events, err) = run(&mut parser, &[&input]);
        assert_eq!(err.is_none(), ok, "{stanza}: {err:?}");
        assert_eq!(events.len(), if ok { 2 } else { 1 }, "{stanza}");
    }
}

/// A namespace declared once under a prefix and used by many elements is written out once per
/// element: the stanza limit holds for what the stanza becomes, not only for what was sent (a
/// 188 KB stanza of 30,000 `<p:q/>` under an 8 KiB namespace was 240 MB written out).
#[test]
fn namespaces_count_as_they_are_written_out() {
    let limits = Limits {
        max_stanza_bytes: 10_000,
        ..Limits::default()
    };
    let long = format!("urn:{}", "l".repeat(1000));
    let prefixed = |count: usize, ns: &str| {
        format!(
            "<message><w xmlns='urn:s' xmlns:p='{ns}'>{}</w></message>",
            "<p:q/>".repeat(count)
        )
    };
    let attributes = |count: usize| {
        format!(
            "<message xmlns:p='{long}'>{}</message>",
            "<x p:a='1'/>".repeat(count)
        )
    };
    for (name, stanza, ok) in [
        // Eight elements of a 1 KB namespace: about 8 KB written out.
        ("a few prefixed elements", prefixed(8, &long), true),
        // Twenty: about 20 KB written out, though 1.3 KB was sent.
        ("many prefixed elements", prefixed(20, &long), false),
        (
            "elements of a short namespace",
            prefixed(300, "urn:s2"),
            true,
        ),
        ("attributes in a namespace", attributes(20), false),
    ] {
        let mut parser = StreamParser::new("jabber:client", limits.clone());
        let (events, err) = run(&mut parser, &[&header_then(&stanza)]);
        assert_eq!(err.is_none(), ok, "{name}: {err:?}");
        if let Some(err) = err {
            assert_eq!(err.condition(), "policy-violation", "{name}: {err}");
        }
        assert_eq!(events.len(), if ok { 2 } else { 1 }, "{name}");
    }
}

#[test]
fn endless_element_is_cut_off_at_the_limit() {
    let limits = Limits {
        max_stanza_bytes: 10_000,
        ..Limits::default()
    };
    /// Makes the next chunk, given the bytes fed so far.
    type Filler = fn(usize) -> Vec<u8>;
    let cases: [(&str, &[u8], Filler); 2] = [
        ("endless text", b"<message><body>", |_| vec![b'a'; 512]),
        // Fresh names each time: a repeated name would be a duplicate attribute.
        ("endless start tag", b"<message", |fed| {
            (0..20)
                .flat_map(|i| format!(" a{fed}x{i}='v'").into_bytes())
                .collect()
        }),
    ];
    for (name, opening, filler) in cases {
        let mut parser = StreamParser::new("jabber:client", limits.clone());
        parser.feed(HEADER.as_bytes());
        parser.feed(opening);
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Header(_)))
        ));
        let mut fed = 0;
        let err = loop {
            let chunk = filler(fed);
            parser.feed(&chunk);
            fed += chunk.len();
            match parser.next_event() {
                Ok(None) => assert!(parser.buffered_len() <= limits.max_stanza_bytes),
                Ok(Some(event)) => panic!("{name}: unexpected {event:?}"),
                Err(err) => break err,
            }
        };
        assert_eq!(err.condition(), "policy-violation", "{name}: {err}");
        let cut = limits.max_stanza_bytes - 512..limits.max_stanza_bytes + 512;
        assert!(cut.contains(&fed), "{name}: cut at {fed}");
    }
}

#[test]
fn stream_header_round_trips_hostile_values() {
    let hostile = "a'b\"c<d>&e]]>\tf";
    let bytes = stream_header("jabber:client", hostile, "example.com", Some(hostile));
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("<?xml version='1.0'"), "{text}");
    assert!(
        text.contains(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        ),
        "{text}"
    );
    assert!(!text.contains(hostile), "{text}");

    let mut parser = StreamParser::new("jabber:client", Limits::default());
    let (events, err) = run(&mut parser, &[&bytes, STREAM_CLOSE]);
    assert!(err.is_none(), "{err:?}");
    let expected = StreamHeader {
        to: Some(hostile.into()),
        from: Some("example.com".into()),
        id: Some(hostile.into()),
        version: Some("1.0".into()),
        lang: Some("en".into()),
    };
    assert_eq!(events, [Seen::Header(expected), Seen::End]);

    let without_to = stream_header("jabber:server", "id1", "example.com", None);
    let mut parser = StreamParser::new("jabber:server", Limits::default());
    let (events, _) = run(&mut parser, &[&without_to]);
    assert!(matches!(
        &events[..],
        [Seen::Header(StreamHeader { to: None, .. })]
    ));
}

#[test]
fn stream_error_round_trips() {
    for (condition, text) in [
        ("not-well-formed", None),
        ("policy-violation", Some("too <big> & 'bad' \"x\"")),
    ] {
        let error = stream_error(condition, text);
        let shown = String::from_utf8(error.clone()).unwrap();
        assert!(
            shown.starts_with(&format!(
                "<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            )),
            "{shown}"
        );
        assert!(shown.ends_with("</stream:error>"), "{shown}");

        let input = [HEADER.as_bytes(), &error, STREAM_CLOSE].concat();
        let els = stanzas(&input);
        assert_eq!(els.len(), 1);
        let el = &els[0];
        assert!(el.is("error", NS_STREAMS));
        let errors_ns = "urn:ietf:params:xml:ns:xmpp-streams";
        assert!(el.has_child(condition, errors_ns), "{shown}");
        let got_text = el.get_child("text", errors_ns).map(Element::text);
        assert_eq!(got_text.as_deref(), text);
    }
}

/// Features go out as `<stream:features>` (the prefix the header declares) and parse back as
/// the same element.
#[test]
fn stream_features_are_prefixed_and_round_trip() {
    let features: Element = "<features xmlns='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></features>"
        .parse()
        .unwrap();
    let bytes = stream_features(&features);
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
    );
    let input = [HEADER.as_bytes(), &bytes, STREAM_CLOSE].concat();
    let els = stanzas(&input);
    assert_eq!(els.len(), 1);
    assert!(els[0].is("features", NS_STREAMS));
    assert!(els[0].has_child("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
}

#[test]
fn element_bytes_round_trips() {
    let input = realistic_stream();
    let parsed = stanzas(input.as_bytes());
    assert_eq!(parsed.len(), 5);
    let reserialised: Vec<u8> = parsed.iter().flat_map(element_bytes).collect();
    let again = stanzas(&[HEADER.as_bytes(), &reserialised].concat());
    assert_eq!(again, parsed);

    let message = &parsed[2];
    let bytes = String::from_utf8(element_bytes(message)).unwrap();
    assert!(
        bytes.starts_with("<message xmlns='jabber:client' "),
        "{bytes}"
    );
}

#[test]
fn element_bytes_escapes_hostile_values() {
    let hostile = "'\"<>&]]>";
    let to: NcName = "to".try_into().unwrap();
    let el = Element::builder("message", "jabber:client")
        .attr(to, hostile)
        .append(
            Element::builder("body", "jabber:client")
                .append(hostile)
                .build(),
        )
        .build();
    let bytes = element_bytes(&el);
    assert!(!String::from_utf8_lossy(&bytes).contains(hostile));
    let again = stanzas(&[HEADER.as_bytes(), &bytes].concat());
    assert_eq!(again, [el]);
}

/// An idle connection frees the parser's buffers between reads: releasing them at any split,
/// even inside an element, changes nothing that is parsed.
#[test]
fn releasing_idle_buffers_loses_nothing() {
    let input = realistic_stream();
    let (expected, error) = run_chunks(&[input.as_bytes()]);
    assert!(error.is_none());
    for split in 1..input.len() {
        let mut parser = StreamParser::new("jabber:client", Limits::default());
        let (mut events, error) = run(&mut parser, &[&input.as_bytes()[..split]]);
        assert!(error.is_none());
        parser.release_idle();
        let (more, error) = run(&mut parser, &[&input.as_bytes()[split..]]);
        events.extend(more);
        assert!(error.is_none(), "split at {split}");
        assert_eq!(events, expected, "split at {split}");
    }
}

/// Releasing between top-level elements drops rxml's parser; a new one is given the header
/// again. What the header declared stays in scope (a server stream's `db` prefix), a keepalive
/// held back by rxml is dropped as the whitespace it is, and the size limit still counts from
/// the element's start.
#[test]
fn a_released_parser_resumes_with_the_headers_declarations() {
    let header = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='a.example' from='b.example' version='1.0'>";
    let limits = Limits {
        max_stanza_bytes: 200,
        ..Limits::default()
    };
    let mut parser = StreamParser::new("jabber:server", limits);
    let (events, error) = run(&mut parser, &[header.as_bytes(), b"<presence/> \n"]);
    assert!(error.is_none());
    assert_eq!(events.len(), 2, "{events:?}");
    parser.release_idle();
    let result = "<db:result from='b.example' to='a.example'>key</db:result>";
    let (events, error) = run(&mut parser, &[result.as_bytes()]);
    assert!(error.is_none(), "{error:?}");
    let expected: Element =
        "<result xmlns='jabber:server:dialback' from='b.example' to='a.example'>key</result>"
            .parse()
            .unwrap();
    assert_eq!(
        events,
        [Seen::Stanza(
            String::from_utf8(element_bytes(&expected)).unwrap()
        )]
    );
    parser.release_idle();
    let big = format!("<message><body>{}</body></message>", "x".repeat(200));
    let (events, error) = run(&mut parser, &[big.as_bytes()]);
    assert!(events.is_empty());
    assert!(
        matches!(error, Some(FramingError::PolicyViolation(_))),
        "{error:?}"
    );
}

/// A caller that releases right after an element, before asking for more, loses nothing
/// rxml already took of the next one.
#[test]
fn releasing_with_the_next_element_begun_loses_nothing() {
    let mut parser = StreamParser::new("jabber:client", Limits::default());
    let (_, error) = run(&mut parser, &[HEADER.as_bytes()]);
    assert!(error.is_none());
    parser.feed(b"<presence/><message><bo");
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
    parser.release_idle();
    let (events, error) = run(&mut parser, &[b"dy>hi</body></message>"]);
    assert!(error.is_none(), "{error:?}");
    let expected = Element::builder("message", "jabber:client")
        .append(Element::builder("body", "jabber:client").append("hi"))
        .build();
    assert_eq!(
        events,
        [Seen::Stanza(
            String::from_utf8(element_bytes(&expected)).unwrap()
        )]
    );
}

/// However the header is written (a declaration, whitespace before the root, `>` in an
/// attribute value), the parser given it again after a release reads on in its namespace.
#[test]
fn a_released_parser_resumes_after_any_header() {
    for header in [
        "<?xml version='1.0'?>\n\n  \t<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com'>",
        "<stream:stream to='a&gt;b' id=\"x>y\" xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' >",
    ] {
        let mut parser = StreamParser::new("jabber:client", Limits::default());
        let (events, error) = run(&mut parser, &[header.as_bytes(), b"<r/>\n"]);
        assert!(error.is_none(), "{header}: {error:?}");
        assert_eq!(events.len(), 2, "{header}: {events:?}");
        parser.release_idle();
        let (events, error) = run(&mut parser, &[b"<presence/></stream:stream>"]);
        assert!(error.is_none(), "{header}: {error:?}");
        let presence = Element::builder("presence", "jabber:client").build();
        assert_eq!(
            events,
            [
                Seen::Stanza(String::from_utf8(element_bytes(&presence)).unwrap()),
                Seen::End
            ],
            "{header}"
        );
    }
}

/// A header too large to keep (here 4 KB of one attribute) is not kept: the stream keeps its
/// parser when idle, and what follows is still read in the header's namespace.
#[test]
fn a_huge_header_is_not_kept_and_the_parser_stays() {
    let header = format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='{}'>",
        "x".repeat(4096)
    );
    let mut parser = StreamParser::new("jabber:client", Limits::default());
    let (events, error) = run(&mut parser, &[header.as_bytes(), b"<r/>"]);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(events.len(), 2, "{events:?}");
    parser.release_idle();
    let (events, error) = run(&mut parser, &[b"<presence/>"]);
    assert!(error.is_none(), "{error:?}");
    let presence = Element::builder("presence", "jabber:client").build();
    assert_eq!(
        events,
        [Seen::Stanza(
            String::from_utf8(element_bytes(&presence)).unwrap()
        )]
    );
}
