//! Stream framing must not depend on how the input is split: feeding the input in two parts
//! yields exactly the events, and the error or not, of feeding it whole.

use verona_stream::{Limits, StreamEvent, StreamParser, element_bytes};

/// Events in comparable form, and whether parsing ended in an error.
fn run(chunks: &[&[u8]]) -> (Vec<String>, bool) {
    // Small limits so that fuzz inputs reach the limit checks.
    let limits = Limits {
        max_stanza_bytes: 512,
        max_depth: 8,
        max_attributes: 8,
    };
    let mut parser = StreamParser::new("jabber:client", limits);
    let mut events = Vec::new();
    for chunk in chunks {
        parser.feed(chunk);
        loop {
            match parser.next_event() {
                Ok(Some(StreamEvent::Header(header))) => events.push(format!("{header:?}")),
                Ok(Some(StreamEvent::Stanza(el))) => {
                    events.push(String::from_utf8(element_bytes(&el)).expect("UTF-8 output"))
                }
                Ok(Some(StreamEvent::End)) => events.push("end".to_owned()),
                Ok(None) => break,
                Err(_) => {
                    assert!(parser.next_event().is_err(), "parser must stay dead");
                    return (events, true);
                }
            }
        }
    }
    (events, false)
}

/// The first byte picks the split point of the rest.
pub fn stream_framing(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let (head, tail) = input.split_at(usize::from(first) % (input.len() + 1));
    assert_eq!(run(&[head, tail]), run(&[input]));
}
