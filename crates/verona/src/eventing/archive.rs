//! XEP-0313 Message Archive Management (`urn:xmpp:mam:2`) over what a node keeps: a room's
//! archive is its items, each item id the message's archive id (the XEP-0359 `stanza-id` its
//! live copies carry). Pure: a query parsed (with `xmpp-parsers`), a page chosen from the
//! archive in chronological order, and the result messages and `<fin/>` built.

use std::time::{SystemTime, UNIX_EPOCH};

use jid::Jid;
use minidom::Element;
use xmpp_parsers::mam;

use crate::xml::{BuilderExt, StanzaError, builder, ns, text_child};

pub const NS: &str = "urn:xmpp:mam:2";
/// XEP-0313 §4.1.1: `before-id`, `after-id`, `ids`, `<flip-page/>` and metadata, which
/// clients use only where this is said.
pub const EXTENDED: &str = "urn:xmpp:mam:2#extended";
/// XEP-0359: the archive id on a live message.
pub const SID: &str = "urn:xmpp:sid:0";
const RSM: &str = "http://jabber.org/protocol/rsm";
const FORWARD: &str = "urn:xmpp:forward:0";
/// Most results one page holds, and what a query that gives no `<max/>` gets.
pub const MAX_PAGE: usize = 100;

/// A query, read.
#[derive(Debug, PartialEq, Eq)]
pub struct Query {
    pub queryid: Option<String>,
    /// Only what this JID said (for a room: `room/nick`).
    pub with: Option<Jid>,
    pub start: Option<SystemTime>,
    pub end: Option<SystemTime>,
    /// The form's `after-id` and `before-id`: only what came between (the result set, which
    /// `count` counts).
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    /// RSM `<after/>`: the page after this id.
    pub after: Option<String>,
    /// RSM `<before/>`.
    pub before: Option<Before>,
    /// The form's `ids`: only these.
    pub ids: Option<Vec<String>>,
    pub max: usize,
    /// `<flip-page/>`: the page's results newest first.
    pub flip: bool,
}

/// Where a page ends, paging backwards.
#[derive(Debug, PartialEq, Eq)]
pub enum Before {
    /// An empty `<before/>`: the last page.
    Last,
    Id(String),
}

/// Reads a `<query xmlns='urn:xmpp:mam:2'/>`; `Err` says what is wrong with it, and the
/// error it gets.
pub fn parse(query: &Element) -> Result<Query, (StanzaError, String)> {
    let query = mam::Query::try_from(query.clone()).map_err(|e| e.to_string());
    let query = query.map_err(|e| (StanzaError::BadRequest, e))?;
    // XEP-0059 §2.5: a page by its index is not served (pages follow ids).
    if query
        .set
        .as_ref()
        .and_then(|set| set.index)
        .is_some_and(|index| index > 0)
    {
        let why = "pages by index are not served: page by after and before".to_owned();
        return Err((StanzaError::FeatureNotImplemented, why));
    }
    fields(query)
}

fn fields(query: mam::Query) -> Result<Query, (StanzaError, String)> {
    let bad = |why: String| (StanzaError::BadRequest, why);
    let mut parsed = Query {
        queryid: query.queryid.map(|id| id.0),
        with: None,
        start: None,
        end: None,
        after_id: None,
        before_id: None,
        after: None,
        before: None,
        ids: None,
        max: MAX_PAGE,
        flip: query.flip_page,
    };
    for field in query.form.iter().flat_map(|form| &form.fields) {
        let value = field.values.first().map(String::as_str).unwrap_or_default();
        match field.var.as_deref().unwrap_or_default() {
            "FORM_TYPE" if value == NS => {}
            "FORM_TYPE" => return Err(bad(format!("not a {NS} form: {value}"))),
            "with" => {
                let with = crate::jids::parse(value).map_err(|e| bad(format!("with: {e}")))?;
                parsed.with = Some(with);
            }
            "start" => parsed.start = Some(time(value).map_err(bad)?),
            // Up to the end of the instant it names, at the precision it is given (a client
            // asks with the stamps it was given, to the millisecond).
            "end" => parsed.end = Some(time(value).map_err(bad)? + within(value)),
            "after-id" => parsed.after_id = Some(value.to_owned()),
            "before-id" => parsed.before_id = Some(value.to_owned()),
            // A page's worth: each is looked up in the store.
            "ids" if field.values.len() > MAX_PAGE => {
                return Err(bad(format!("ids: more than {MAX_PAGE}")));
            }
            "ids" => parsed.ids = Some(field.values.clone()),
            // XEP-0313 §4.1.5: a field the server does not know (found by audit round 28).
            other => {
                let why = format!("{other}: not a field this archive offers");
                return Err((StanzaError::FeatureNotImplemented, why));
            }
        }
    }
    if let Some(set) = query.set {
        parsed.max = set.max.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        if let Some(after) = set.after {
            parsed.after = Some(after);
        }
        match set.before {
            Some(before) if before.is_empty() => parsed.before = Some(Before::Last),
            Some(before) => parsed.before = Some(Before::Id(before)),
            None => {}
        }
    }
    Ok(parsed)
}

/// How long the instant `value` names lasts, less a microsecond: `…34.889Z` is the whole of
/// that millisecond.
fn within(value: &str) -> std::time::Duration {
    let digits = value.split_once('.').map_or(0, |(_, fraction)| {
        fraction.chars().take_while(char::is_ascii_digit).count()
    });
    let micros = 10u64.pow(6u32.saturating_sub(digits.min(6) as u32));
    std::time::Duration::from_micros(micros - 1)
}

/// An XEP-0082 DateTime.
pub(crate) fn time(value: &str) -> Result<SystemTime, String> {
    let at = value
        .parse::<xmpp_parsers::date::DateTime>()
        .map_err(|e| format!("{value}: {e}"))?;
    let micros = at.0.timestamp_micros();
    let micros = u64::try_from(micros).map_err(|_| format!("{value}: before 1970"))?;
    Ok(UNIX_EPOCH + std::time::Duration::from_micros(micros))
}

/// One archived message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived<T> {
    pub id: String,
    pub at: SystemTime,
    /// Who said it, for `with`.
    pub by: Option<Jid>,
    pub message: T,
}

/// A page of results.
#[derive(Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub results: Vec<Archived<T>>,
    /// The page reaches the end of what matched, in the direction it was asked for.
    pub complete: bool,
    /// How many messages matched, when it is known without reading them all.
    pub count: Option<usize>,
}

/// The page `query` asks for of `archive` (oldest first). `Err` when it pages from an id
/// that is not in the archive (`item-not-found`).
pub fn select<T>(query: &Query, archive: Vec<Archived<T>>) -> Result<Page<T>, String> {
    // §4.1.1: each id asked for must be there.
    let missing = (query.ids.iter().flatten()).find(|id| !archive.iter().any(|a| a.id == **id));
    if let Some(id) = missing {
        return Err(format!("{id}: not in the archive"));
    }
    let matches = |a: &Archived<T>| {
        (query.with.as_ref()).is_none_or(|with| a.by.as_ref() == Some(with))
            && query.start.is_none_or(|start| a.at >= start)
            && query.end.is_none_or(|end| a.at <= end)
            && (query.ids.as_ref()).is_none_or(|ids| ids.contains(&a.id))
    };
    let bounds = verona_storage::Bounds {
        after_id: query.after_id.as_deref(),
        before_id: query.before_id.as_deref(),
        after: query.after.as_deref(),
        before: match &query.before {
            Some(Before::Id(before)) => Some(before.as_str()),
            Some(Before::Last) | None => None,
        },
        backwards: query.before.is_some(),
        max: query.max,
    };
    let (mut results, complete, count) = verona_storage::page(archive, |a| &a.id, matches, &bounds)
        .map_err(|id| format!("{id}: not in the archive"))?;
    if query.flip {
        results.reverse();
    }
    Ok(Page {
        results,
        complete,
        count: Some(count),
    })
}

/// One result message (§4.2): `message`, as archived, forwarded with when it was said.
pub fn result(
    from: &Jid,
    to: &Jid,
    queryid: Option<&str>,
    id: &str,
    at: SystemTime,
    message: Element,
) -> Element {
    let delay = builder("delay", ns::DELAY)
        .with("stamp", verona_pubsub_xmpp::stamp(at))
        .build();
    let forwarded = builder("forwarded", FORWARD)
        .append(delay)
        .append(message)
        .build();
    let mut result = builder("result", NS).with("id", id);
    if let Some(queryid) = queryid {
        result = result.with("queryid", queryid);
    }
    builder("message", ns::CLIENT)
        .with("from", from.as_str())
        .with("to", to.as_str())
        .append(result.append(forwarded).build())
        .build()
}

/// The `<fin/>` that ends a query's answer (§4.3).
pub fn fin<T>(page: &Page<T>) -> Element {
    let (first, last) = match page.results.as_slice() {
        [] => (None, None),
        [only] => (Some(only), Some(only)),
        [first, .., last] => (Some(first), Some(last)),
    };
    let mut set = builder("set", RSM);
    if let Some(first) = first {
        // No `index`: clients paging backwards (slixmpp) read `index + results == count`
        // as the end of the archive.
        set = set.append(text_child("first", RSM, first.id.clone()));
    }
    if let Some(last) = last {
        set = set.append(text_child("last", RSM, last.id.clone()));
    }
    if let Some(count) = page.count {
        set = set.append(text_child("count", RSM, count.to_string()));
    }
    let set = set.build();
    let mut fin = builder("fin", NS);
    if page.complete {
        fin = fin.with("complete", "true");
    }
    fin.append(set).build()
}

/// The fields a query may use (§5.1), for an iq get.
pub fn form() -> Element {
    let field = |var: &str, kind: &str| {
        builder("field", ns::DATA_FORMS)
            .with("var", var)
            .with("type", kind)
            .build()
    };
    let form_type = builder("field", ns::DATA_FORMS)
        .with("var", "FORM_TYPE")
        .with("type", "hidden")
        .append(text_child("value", ns::DATA_FORMS, NS))
        .build();
    let form = builder("x", ns::DATA_FORMS)
        .with("type", "form")
        .append(form_type)
        .append(field("with", "jid-single"))
        .append(field("start", "text-single"))
        .append(field("end", "text-single"))
        .append(field("after-id", "text-single"))
        .append(field("before-id", "text-single"))
        .append({
            // §5.1: the ids field says it takes any strings (XEP-0122).
            let validate = builder("validate", "http://jabber.org/protocol/xdata-validate")
                .with("datatype", "xs:string")
                .append(Element::bare(
                    "open",
                    "http://jabber.org/protocol/xdata-validate",
                ))
                .build();
            let mut ids = field("ids", "list-multi");
            ids.append_child(validate);
            ids
        })
        .build();
    builder("query", NS).append(form).build()
}

/// The XEP-0359 id a live message carries: its place in `by`'s archive.
pub fn stanza_id(id: &str, by: &str) -> Element {
    builder("stanza-id", SID)
        .with("id", id)
        .with("by", by)
        .build()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn query() -> Query {
        Query {
            queryid: None,
            with: None,
            start: None,
            end: None,
            after_id: None,
            before_id: None,
            after: None,
            before: None,
            ids: None,
            max: MAX_PAGE,
            flip: false,
        }
    }

    #[test]
    fn queries_read_their_form_and_page() {
        let form = |fields: &str| {
            format!(
                "<query xmlns='urn:xmpp:mam:2' queryid='q1'><x xmlns='jabber:x:data' type='submit'>\
                   <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{fields}</x></query>"
            )
        };
        let cases = [
            ("<query xmlns='urn:xmpp:mam:2'/>".to_owned(), Ok(query())),
            (
                form("<field var='with'><value>room@chat.localhost/JC</value></field><field var='start'><value>1970-01-01T00:01:40Z</value></field>"),
                Ok(Query {
                    queryid: Some("q1".into()),
                    with: Some(Jid::new("room@chat.localhost/JC").unwrap()),
                    start: Some(at(100)),
                    ..query()
                }),
            ),
            (
                "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>5</max><before/></set></query>".to_owned(),
                Ok(Query { max: 5, before: Some(Before::Last), ..query() }),
            ),
            (
                "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>100000</max><after>a</after></set><flip-page/></query>".to_owned(),
                Ok(Query { after: Some("a".into()), flip: true, ..query() }),
            ),
            (
                form("<field var='before-id'><value>b</value></field>"),
                Ok(Query { queryid: Some("q1".into()), before_id: Some("b".into()), ..query() }),
            ),
            // The end is the whole of the instant it names, at its precision.
            (
                form("<field var='end'><value>1970-01-01T00:01:40.889Z</value></field>"),
                Ok(Query {
                    queryid: Some("q1".into()),
                    end: Some(at(100) + std::time::Duration::from_micros(889_999)),
                    ..query()
                }),
            ),
            (
                form("<field var='end'><value>1970-01-01T00:01:40Z</value></field>"),
                Ok(Query {
                    queryid: Some("q1".into()),
                    end: Some(at(100) + std::time::Duration::from_micros(999_999)),
                    ..query()
                }),
            ),
            (form("<field var='start'><value>yesterday</value></field>"), Err(StanzaError::BadRequest)),
            (
                form("<field var='colour'><value>red</value></field>"),
                Err(StanzaError::FeatureNotImplemented),
            ),
            (
                "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>3</max><index>5</index></set></query>".to_owned(),
                Err(StanzaError::FeatureNotImplemented),
            ),
        ];
        for (xml, expected) in cases {
            let parsed = parse(&el(&xml)).map_err(|(error, _)| error);
            assert_eq!(parsed, expected, "{xml}");
        }
    }

    #[test]
    fn pages_go_forwards_and_backwards() {
        let archive = || -> Vec<Archived<()>> {
            (1..=5)
                .map(|n| Archived {
                    id: format!("m{n}"),
                    at: at(n * 10),
                    by: Some(Jid::new(if n % 2 == 0 { "r@c/even" } else { "r@c/odd" }).unwrap()),
                    message: (),
                })
                .collect()
        };
        let ids = |page: &Page<()>| {
            page.results
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        // (query, ids, complete, count)
        let cases = [
            (query(), "m1,m2,m3,m4,m5", true, 5),
            (Query { max: 2, ..query() }, "m1,m2", false, 5),
            // `after-id` and `before-id` make the result set (counted), paged from its start.
            (
                Query {
                    after_id: Some("m1".into()),
                    before_id: Some("m5".into()),
                    max: 2,
                    ..query()
                },
                "m2,m3",
                false,
                3,
            ),
            (
                Query {
                    before_id: Some("m4".into()),
                    before: Some(Before::Last),
                    max: 2,
                    ..query()
                },
                "m2,m3",
                false,
                3,
            ),
            (
                Query {
                    max: 2,
                    after: Some("m2".into()),
                    ..query()
                },
                "m3,m4",
                false,
                5,
            ),
            (
                Query {
                    max: 2,
                    after: Some("m3".into()),
                    ..query()
                },
                "m4,m5",
                true,
                5,
            ),
            (
                Query {
                    max: 2,
                    before: Some(Before::Last),
                    ..query()
                },
                "m4,m5",
                false,
                5,
            ),
            (
                Query {
                    max: 2,
                    before: Some(Before::Id("m2".into())),
                    ..query()
                },
                "m1",
                true,
                5,
            ),
            (
                Query {
                    max: 2,
                    before: Some(Before::Last),
                    flip: true,
                    ..query()
                },
                "m5,m4",
                false,
                5,
            ),
            (
                Query {
                    with: Some(Jid::new("r@c/even").unwrap()),
                    ..query()
                },
                "m2,m4",
                true,
                2,
            ),
            (
                Query {
                    start: Some(at(20)),
                    end: Some(at(40)),
                    ..query()
                },
                "m2,m3,m4",
                true,
                3,
            ),
            (
                Query {
                    ids: Some(vec!["m5".into(), "m1".into()]),
                    ..query()
                },
                "m1,m5",
                true,
                2,
            ),
            (Query { max: 0, ..query() }, "", false, 5),
            // Ids are of the archive, not of what the rest leaves (§4.1.4): bounds that
            // leave nothing make an empty page, a bound outside the times still bounds.
            (
                Query {
                    after_id: Some("m4".into()),
                    before_id: Some("m2".into()),
                    ..query()
                },
                "",
                true,
                0,
            ),
            (
                Query {
                    start: Some(at(30)),
                    after_id: Some("m1".into()),
                    ..query()
                },
                "m3,m4,m5",
                true,
                3,
            ),
            (
                Query {
                    ids: Some(vec!["m2".into()]),
                    after_id: Some("m3".into()),
                    ..query()
                },
                "",
                true,
                0,
            ),
        ];
        for (query, expected, complete, count) in cases {
            let page = select(&query, archive()).unwrap();
            assert_eq!(
                (ids(&page).as_str(), page.complete, page.count),
                (expected, complete, Some(count)),
                "{query:?}"
            );
        }
        let unknown = Query {
            after: Some("gone".into()),
            ..query()
        };
        assert!(select(&unknown, archive()).is_err());
        let unknown = Query {
            ids: Some(vec!["m1".into(), "gone".into()]),
            ..query()
        };
        assert!(select(&unknown, archive()).is_err());
    }
}
