//! XEP-0115 entity capabilities, as the server uses them: a client's `<c/>` names a hash of
//! its disco#info; the server asks the client once per unknown hash, checks the answer against
//! the hash, and keeps by hash, for every later session, what of them the server consults: the
//! `+notify` features (DESIGN §3: `presence+notify` decides native or classic rendering, the
//! others XEP-0163 `+notify` filtering).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minidom::Element;
use xmpp_parsers::caps::{Caps, hash_caps};

use super::rendering::{Features, PRESENCE_NOTIFY};
use crate::xml::{BuilderExt, builder, ns};

pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";

/// `+notify` features kept of one verified answer. Clients advertise a dozen or two (avatars,
/// OMEMO, bookmarks, nicknames, geolocation...); a client naming more only loses its own
/// notifications for the rest.
const MAX_NOTIFY: usize = 256;

/// Bytes of the longest `+notify` feature kept: the names clients advertise are under 100
/// (`eu.siacs.conversations.axolotl.devicelist+notify` is 47). With [`MAX_NOTIFY`], one
/// answer keeps at most about 64 KiB, whatever else it lists.
const MAX_NOTIFY_BYTES: usize = 256;

/// Estimated bytes the cache holds at most (see [`CapsCache`]). Ordinary clients' entries are
/// under 2 KiB each: thousands of them fit, or at least 50 of the largest.
const CACHE_BYTES: usize = 4 << 20;

/// What an entry costs beside its features' bytes and its key's (held twice: in the map and
/// in the use order): the map and order slots, the `Arc`'d set's header (estimate).
const ENTRY_OVERHEAD: usize = 160;

/// What a feature costs beside its bytes: its `String` and its set slot (estimate).
const FEATURE_OVERHEAD: usize = 48;

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

/// The features of a disco#info result the server consults, if the result hashes to what the
/// client advertised (XEP-0115 §5.4); `None` for an error, a malformed answer or a mismatch.
pub fn verify(caps: &Caps, answer: &Element) -> Option<Features> {
    if answer.attr("type") != Some("result") {
        return None;
    }
    let query = answer.get_child("query", ns::DISCO_INFO)?;
    let (input, features) = verification_string(query)?;
    let hash = hash_caps(&input, caps.hash.clone()).ok()?;
    (hash.hash == caps.ver).then(|| Arc::new(consulted(features)))
}

/// Of verified features (sorted), those the server looks at: `+notify` ones, at most
/// [`MAX_NOTIFY`] of at most [`MAX_NOTIFY_BYTES`] each, `presence+notify` first since it
/// decides the rendering. The rest of an answer (up to a stanza's size) is not kept.
fn consulted(features: Vec<String>) -> HashSet<String> {
    let (presence, others): (Vec<String>, Vec<String>) = features
        .into_iter()
        .filter(|f| f.ends_with("+notify") && f.len() <= MAX_NOTIFY_BYTES)
        .partition(|f| f == PRESENCE_NOTIFY);
    presence
        .into_iter()
        .chain(others)
        .take(MAX_NOTIFY)
        .collect()
}

/// XEP-0115 §5.1: identities, then features, then extended forms, each sorted and each
/// value followed by `<`. Sorting comes before the `<` is added, so `x` precedes `x+notify`.
/// §5.4: a duplicate identity or feature, or a form without a single FORM_TYPE, voids it.
fn verification_string(query: &Element) -> Option<(Vec<u8>, Vec<String>)> {
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
    Some((input, features))
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

/// Verified capabilities, by hash, shared by all sessions: at most [`CACHE_BYTES`] (estimated),
/// the least recently used hash forgotten first, so that hashes made up by clients (or other
/// servers' clients) cost a bounded amount and cannot keep out the ones in use. A session keeps
/// its own features when their hash is forgotten; a later session with it is asked again.
#[derive(Default)]
pub struct CapsCache(Mutex<Lru>);

#[derive(Default)]
struct Lru {
    entries: HashMap<String, Entry>,
    /// Keys by last use, oldest first.
    by_use: BTreeMap<u64, String>,
    clock: u64,
    bytes: usize,
}

struct Entry {
    features: Features,
    used: u64,
    bytes: usize,
}

impl Lru {
    fn touch(&mut self, key: &str) -> Option<Features> {
        let entry = self.entries.get_mut(key)?;
        self.clock += 1;
        if let Some(key) = self.by_use.remove(&entry.used) {
            self.by_use.insert(self.clock, key);
        }
        entry.used = self.clock;
        Some(entry.features.clone())
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_use.remove(&entry.used);
            self.bytes -= entry.bytes;
        }
    }
}

impl CapsCache {
    pub fn get(&self, caps: &Caps) -> Option<Features> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .touch(&key(caps))
    }

    pub fn insert(&self, caps: &Caps, features: Features) {
        let key = key(caps);
        let bytes = ENTRY_OVERHEAD
            + 2 * key.len()
            + (features.iter())
                .map(|f| f.len() + FEATURE_OVERHEAD)
                .sum::<usize>();
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache.remove(&key);
        while cache.bytes + bytes > CACHE_BYTES {
            let Some((_, oldest)) = cache.by_use.pop_first() else {
                break;
            };
            cache.remove(&oldest);
        }
        cache.clock += 1;
        let used = cache.clock;
        cache.by_use.insert(used, key.clone());
        cache.bytes += bytes;
        cache.entries.insert(
            key,
            Entry {
                features,
                used,
                bytes,
            },
        );
    }

    /// The estimated bytes held, and the hashes.
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (cache.bytes, cache.entries.len())
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

    /// Verified, with nothing the server consults: no `+notify`.
    #[test]
    fn a_matching_answer_is_verified() {
        let caps = advertised(&presence_with_caps(EXODUS_VER)).unwrap();
        let features = verify(&caps, &answer(&EXODUS_FEATURES)).unwrap();
        assert!(features.is_empty(), "{features:?}");
    }

    /// Capabilities advertising `features`, and their verified answer.
    fn verified(features: &[String]) -> (Caps, Option<Features>) {
        let features: String = features
            .iter()
            .map(|f| format!("<feature var='{f}'/>"))
            .collect();
        let answer: Element = format!(
            "<iq xmlns='jabber:client' type='result'><query xmlns='{}'>\
             <identity category='client' type='pc' name='x'/>{features}</query></iq>",
            ns::DISCO_INFO
        )
        .parse()
        .unwrap();
        let query = answer.get_child("query", ns::DISCO_INFO).unwrap();
        let (input, _) = verification_string(query).unwrap();
        let algo = xmpp_parsers::hashes::Algo::Sha_1;
        let caps = Caps {
            ext: None,
            node: "http://x".into(),
            hash: algo.clone(),
            ver: hash_caps(&input, algo).unwrap().hash,
        };
        let features = verify(&caps, &answer);
        (caps, features)
    }

    /// A client's made-up answer of thousands of features (the audit's had 9,000, 252 KB)
    /// keeps only the `+notify` ones of bounded length, `presence+notify` first.
    #[test]
    fn only_a_bounded_number_of_notify_features_is_kept() {
        let mut features: Vec<String> = (0..3_000).map(|i| format!("urn:x:{i:05}")).collect();
        features.extend((0..300).map(|i| format!("urn:n:{i:03}+notify")));
        features.push(format!("urn:{}+notify", "l".repeat(MAX_NOTIFY_BYTES)));
        features.push(PRESENCE_NOTIFY.to_owned());
        let kept = verified(&features).1.expect("verified");
        assert_eq!(kept.len(), MAX_NOTIFY);
        assert!(kept.contains(PRESENCE_NOTIFY));
        assert!(kept.contains("urn:n:000+notify"));
        assert!(!kept.contains("urn:n:299+notify"));
        assert!(
            kept.iter()
                .all(|f| f.ends_with("+notify") && f.len() <= MAX_NOTIFY_BYTES)
        );
    }

    /// Many large verified answers, each under a new hash: the cache stays within its bytes,
    /// forgetting the least recently used hash first (the one in use stays).
    #[test]
    fn the_cache_is_bounded_in_bytes_and_forgets_the_least_recently_used() {
        let cache = CapsCache::default();
        let entry = |n: usize| {
            let mut features: Vec<String> = (0..500).map(|i| format!("urn:x:{n}:{i:05}")).collect();
            features.extend((0..300).map(|i| format!("urn:{n}:{i:03}:{}+notify", "n".repeat(230))));
            let (caps, features) = verified(&features);
            (caps, features.expect("verified"))
        };
        let (popular, features) = entry(0);
        cache.insert(&popular, features);
        let (forgotten, features) = entry(1);
        cache.insert(&forgotten, features);
        let mut last = None;
        for n in 2..100 {
            assert!(cache.get(&popular).is_some(), "the hash in use stays");
            let (caps, features) = entry(n);
            cache.insert(&caps, features);
            let (bytes, _) = cache.size();
            assert!(bytes <= CACHE_BYTES, "{bytes} bytes after {n} hashes");
            last = Some(caps);
        }
        assert!(
            cache.get(&forgotten).is_none(),
            "the oldest unused is forgotten"
        );
        assert!(cache.get(&last.unwrap()).is_some(), "the newest is kept");
        let (_, hashes) = cache.size();
        assert!(hashes < 100, "{hashes} hashes kept");
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
