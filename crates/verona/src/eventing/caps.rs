//! XEP-0115 entity capabilities, as the server uses them: a client's `<c/>` names a hash of
//! its disco#info; the server asks the client once per unknown hash, checks the answer against
//! the hash, and keeps the verified features by hash for every later session (DESIGN §3: they
//! decide native or classic rendering, and XEP-0163 `+notify` filtering).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minidom::Element;
use xmpp_parsers::caps::{Caps, hash_caps};

use super::rendering::Features;
use crate::xml::{BuilderExt, builder, ns};

pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";

/// Verified hashes kept at most; past that, new ones are verified per session but not kept
/// (a client making up hashes cannot grow the cache without bound).
const CACHE_LIMIT: usize = 10_000;

/// The capabilities a stanza advertises: a `<c/>` in a presence broadcast, or in the presence
/// a client publishes to its `presence` node (XEP-0207 Ex. 3). Legacy `<c/>` without `hash`
/// cannot be verified and counts as none.
pub fn advertised(stanza: &Element) -> Option<Caps> {
    let presence = match stanza.name() {
        "presence" => stanza,
        _ => stanza
            .get_child("pubsub", ns::PUBSUB)?
            .get_child("publish", ns::PUBSUB)
            .filter(|publish| publish.attr("node") == Some("presence"))?
            .get_child("item", ns::PUBSUB)?
            .get_child("presence", ns::CLIENT)?,
    };
    let c = presence.get_child("c", NS_CAPS)?;
    Caps::try_from(c.clone()).ok()
}

/// The cache key: algorithm and hash.
pub fn key(caps: &Caps) -> String {
    format!(
        "{}:{}",
        String::from(caps.hash.clone()),
        BASE64.encode(&caps.ver)
    )
}

/// The disco#info request for the client's capabilities node (XEP-0115 §6.2).
pub fn query(caps: &Caps, id: &str, from: &str, to: &str) -> Element {
    let node = format!("{}#{}", caps.node, BASE64.encode(&caps.ver));
    builder("iq", ns::CLIENT)
        .with("type", "get")
        .with("id", id)
        .with("from", from)
        .with("to", to)
        .append(builder("query", ns::DISCO_INFO).with("node", node).build())
        .build()
}

/// The features of a disco#info result, if they hash to what the client advertised
/// (XEP-0115 §5.4); `None` for an error, a malformed answer or a mismatch.
pub fn verify(caps: &Caps, answer: &Element) -> Option<Features> {
    if answer.attr("type") != Some("result") {
        return None;
    }
    let query = answer.get_child("query", ns::DISCO_INFO)?;
    let (input, features) = verification_string(query)?;
    let hash = hash_caps(&input, caps.hash.clone()).ok()?;
    (hash.hash == caps.ver).then(|| Arc::new(features))
}

/// XEP-0115 §5.1: identities, then features, then extended forms, each sorted and each
/// value followed by `<`. Sorting comes before the `<` is added, so `x` precedes `x+notify`.
/// §5.4: a duplicate identity or feature, or a form without a single FORM_TYPE, voids it.
fn verification_string(query: &Element) -> Option<(Vec<u8>, HashSet<String>)> {
    let mut identities: Vec<String> = query
        .children()
        .filter(|c| c.is("identity", ns::DISCO_INFO))
        .map(|i| {
            let attr = |name| i.attr(name).unwrap_or_default();
            format!(
                "{}/{}/{}/{}",
                attr("category"),
                attr("type"),
                i.attr_ns("http://www.w3.org/XML/1998/namespace", "lang")
                    .unwrap_or_default(),
                attr("name")
            )
        })
        .collect();
    let mut features: Vec<String> = query
        .children()
        .filter(|c| c.is("feature", ns::DISCO_INFO))
        .filter_map(|f| f.attr("var").map(str::to_owned))
        .collect();
    let mut forms: Vec<(String, Vec<u8>)> = Vec::new();
    for form in query.children().filter(|c| c.is("x", ns::DATA_FORMS)) {
        let mut form_type = None;
        let mut fields: Vec<(String, Vec<String>)> = Vec::new();
        for field in form.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
            let mut values: Vec<String> = field
                .children()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(Element::text)
                .collect();
            match field.attr("var") {
                Some("FORM_TYPE") if form_type.is_none() && values.len() == 1 => {
                    form_type = values.pop();
                }
                Some("FORM_TYPE") => return None,
                Some(var) => {
                    values.sort();
                    fields.push((var.to_owned(), values));
                }
                None => {}
            }
        }
        fields.sort();
        let mut bytes = Vec::new();
        for (var, values) in fields {
            bytes.extend(var.as_bytes());
            bytes.push(b'<');
            for value in values {
                bytes.extend(value.as_bytes());
                bytes.push(b'<');
            }
        }
        forms.push((form_type?, bytes));
    }
    identities.sort();
    features.sort();
    forms.sort();
    let unique = |list: &[String]| list.windows(2).all(|w| w[0] != w[1]);
    if !unique(&identities) || !unique(&features) {
        return None;
    }
    let mut input = Vec::new();
    for item in identities.iter().chain(&features) {
        input.extend(item.as_bytes());
        input.push(b'<');
    }
    for (form_type, fields) in forms {
        input.extend(form_type.as_bytes());
        input.push(b'<');
        input.extend(fields);
    }
    Some((input, features.into_iter().collect()))
}

/// A session's question to its client, and the presence stanzas held until the answer, so that
/// they are rendered for what the client is (DESIGN §3).
pub struct Pending {
    pub id: String,
    pub caps: Caps,
    pub held: Vec<Element>,
    pub until: tokio::time::Instant,
    /// The presence went on unanswered: the answer is still taken until `until`, for the
    /// session's `+notify` events from then on and for every later session with the hash.
    pub late: bool,
}

/// Verified capabilities, by hash, shared by all sessions.
#[derive(Default)]
pub struct CapsCache(Mutex<HashMap<String, Features>>);

impl CapsCache {
    pub fn get(&self, caps: &Caps) -> Option<Features> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key(caps))
            .cloned()
    }

    pub fn insert(&self, caps: &Caps, features: Features) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() < CACHE_LIMIT {
            cache.insert(key(caps), features);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.2, the simple example.
    const EXODUS_VER: &str = "QgayPKawpkPSDYmwT/WM94uAlu0=";

    fn presence_with_caps(ver: &str) -> Element {
        format!(
            "<presence xmlns='jabber:client'><c xmlns='{NS_CAPS}' hash='sha-1' \
             node='http://code.google.com/p/exodus' ver='{ver}'/></presence>"
        )
        .parse()
        .unwrap()
    }

    fn answer(features: &[&str]) -> Element {
        let features: String = features
            .iter()
            .map(|f| format!("<feature var='{f}'/>"))
            .collect();
        format!(
            "<iq xmlns='jabber:client' type='result' id='q'><query xmlns='{}' \
             node='http://code.google.com/p/exodus#{EXODUS_VER}'>\
             <identity category='client' name='Exodus 0.9.1' type='pc'/>{features}</query></iq>",
            ns::DISCO_INFO
        )
        .parse()
        .unwrap()
    }

    const EXODUS_FEATURES: [&str; 4] = [
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/muc",
    ];

    #[test]
    fn a_matching_answer_is_verified() {
        let caps = advertised(&presence_with_caps(EXODUS_VER)).unwrap();
        let features = verify(&caps, &answer(&EXODUS_FEATURES)).unwrap();
        assert!(features.contains("http://jabber.org/protocol/muc"));
        assert_eq!(features.len(), 4);
    }

    #[test]
    fn answers_that_do_not_match_are_refused() {
        let caps = advertised(&presence_with_caps(EXODUS_VER)).unwrap();
        let cases: Vec<(&str, Element)> = vec![
            (
                "a feature more",
                answer(&[EXODUS_FEATURES.as_slice(), &["presence+notify"]].concat()),
            ),
            ("a feature less", answer(&EXODUS_FEATURES[..3])),
            (
                "a feature twice",
                answer(&[EXODUS_FEATURES.as_slice(), &[EXODUS_FEATURES[0]]].concat()),
            ),
            (
                "an error",
                "<iq xmlns='jabber:client' type='error' id='q'/>"
                    .parse()
                    .unwrap(),
            ),
        ];
        for (case, answer) in cases {
            assert!(verify(&caps, &answer).is_none(), "{case}");
        }
    }

    /// `presence` sorts before `presence+notify`: the `<` is added after sorting. The value
    /// was computed independently (Python hashlib) for verona-bench's client.
    #[test]
    fn a_feature_and_its_notify_twin_sort_as_strings() {
        let caps = Caps {
            ext: None,
            node: "https://verona.example/bench".into(),
            hash: xmpp_parsers::hashes::Algo::Sha_1,
            ver: BASE64.decode("Mx4IW2qcz8RTiYmRRyEDezz/RT0=").unwrap(),
        };
        let answer: Element = format!(
            "<iq xmlns='jabber:client' type='result'><query xmlns='{}'>\
             <identity category='client' type='bot' name='verona-bench'/>\
             <feature var='presence+notify'/><feature var='presence'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/caps'/></query></iq>",
            ns::DISCO_INFO
        )
        .parse()
        .unwrap();
        assert!(verify(&caps, &answer).is_some_and(|f| f.contains("presence+notify")));
    }

    /// XEP-0115 §5.3, the complex example: two identities with languages and an extended
    /// form.
    #[test]
    fn the_complex_example_verifies() {
        let caps = Caps {
            ext: None,
            node: "http://psi-im.org".into(),
            hash: xmpp_parsers::hashes::Algo::Sha_1,
            ver: BASE64.decode("q07IKJEyjvHSyhy//CH0CxmKi8w=").unwrap(),
        };
        let answer: Element = format!(
            "<iq xmlns='jabber:client' type='result'><query xmlns='{}'>\
             <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
             <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/>\
             <x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
             <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
             <field var='os'><value>Mac</value></field>\
             <field var='os_version'><value>10.5.1</value></field>\
             <field var='software'><value>Psi</value></field>\
             <field var='software_version'><value>0.11</value></field>\
             </x></query></iq>",
            ns::DISCO_INFO
        )
        .parse()
        .unwrap();
        assert!(verify(&caps, &answer).is_some());
    }

    #[test]
    fn caps_are_found_in_a_presence_publish_and_legacy_caps_are_not() {
        let publish: Element = format!(
            "<iq xmlns='jabber:client' type='set'><pubsub xmlns='{}'><publish node='presence'>\
             <item>{}</item></publish></pubsub></iq>",
            ns::PUBSUB,
            String::from_utf8(verona_stream::element_bytes(&presence_with_caps(
                EXODUS_VER
            )))
            .unwrap()
        )
        .parse()
        .unwrap();
        assert!(advertised(&publish).is_some());
        let legacy: Element = format!(
            "<presence xmlns='jabber:client'><c xmlns='{NS_CAPS}' node='n' ver='1.0'/></presence>"
        )
        .parse()
        .unwrap();
        assert!(advertised(&legacy).is_none());
    }

    #[test]
    fn the_query_names_the_capabilities_node() {
        let caps = advertised(&presence_with_caps(EXODUS_VER)).unwrap();
        let query = query(&caps, "q1", "localhost", "juliet@localhost/balcony");
        let node = query
            .get_child("query", ns::DISCO_INFO)
            .unwrap()
            .attr("node");
        assert_eq!(
            node,
            Some(format!("http://code.google.com/p/exodus#{EXODUS_VER}").as_str())
        );
    }
}
