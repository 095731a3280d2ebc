//! What a native XEP-0207 contact says and understands, Verona only: presence published to and
//! followed through `presence` PEP nodes, entity capabilities (XEP-0115) that mark the session
//! as one that wants pubsub events, and the disco#info answer those capabilities promise.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minidom::Element;
use sha1::{Digest, Sha1};

use super::{NS_CLIENT, bare};
use crate::scenarios::attr;

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_CAPS: &str = "http://jabber.org/protocol/caps";
const NS_DATA: &str = "jabber:x:data";
const AUTHORIZATION_FORM: &str = "http://jabber.org/protocol/pubsub#subscribe_authorization";
const NODE: &str = "presence";

/// The id of the publish of the contact's own presence.
pub const PUBLISH_ID: &str = "pub1";
/// The id of the subscription to the user's presence node.
pub const SUBSCRIBE_ID: &str = "sub1";

/// XEP-0115 `node`: who made this client.
const CAPS_NODE: &str = "https://verona.example/bench";
/// The only identity: category, type, name (no xml:lang).
const IDENTITY: (&str, &str, &str) = ("client", "bot", "verona-bench");
/// `presence+notify` asks for presence as pubsub events (XEP-0163 filtered notifications).
const FEATURES: [&str; 4] = [NS_DISCO_INFO, NS_CAPS, "presence", "presence+notify"];

/// The verification string of [`IDENTITY`] and [`FEATURES`], computed once.
static VER: LazyLock<String> = LazyLock::new(|| {
    let (category, kind, name) = IDENTITY;
    caps_ver(&format!("{category}/{kind}//{name}"), &FEATURES)
});

/// XEP-0115 §5.1 verification string (sha-1) of one identity, written `category/type/lang/name`,
/// and `features`, without extended forms.
pub fn caps_ver(identity: &str, features: &[&str]) -> String {
    let mut features = features.to_vec();
    features.sort_unstable();
    let mut s = format!("{identity}<");
    for feature in features {
        s.push_str(feature);
        s.push('<');
    }
    BASE64.encode(Sha1::digest(s.as_bytes()))
}

/// Publishes the contact's presence to its own node (seed Ex. 3): it becomes available, and
/// its capabilities tell the server it wants events.
pub fn publish_iq() -> Vec<u8> {
    format!(
        "<iq type='set' id='{PUBLISH_ID}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{NODE}'>\
         <item><presence xmlns='{NS_CLIENT}'><status>here</status>\
         <c xmlns='{NS_CAPS}' hash='sha-1' node='{CAPS_NODE}' ver='{}'/></presence></item>\
         </publish></pubsub></iq>",
        *VER
    )
    .into_bytes()
}

/// Subscribes `contact_bare` to the presence node of `user_bare` (seed Ex. 9).
pub fn subscribe_iq(user_bare: &str, contact_bare: &str) -> Vec<u8> {
    format!(
        "<iq type='set' to='{}' id='{SUBSCRIBE_ID}'><pubsub xmlns='{NS_PUBSUB}'>\
         <subscribe node='{NODE}' jid='{}'/></pubsub></iq>",
        attr(user_bare),
        attr(contact_bare)
    )
    .into_bytes()
}

/// The state a subscribe result reports (`pending`, `subscribed`…).
pub fn subscription_state(reply: &Element) -> Option<&str> {
    reply
        .get_child("pubsub", NS_PUBSUB)?
        .get_child("subscription", NS_PUBSUB)?
        .attr("subscription")
}

/// Whether `stanza` is a disco#info query, which a native client must answer.
pub fn is_disco_query(stanza: &Element) -> bool {
    stanza.name() == "iq"
        && stanza.attr("type") == Some("get")
        && stanza.has_child("query", NS_DISCO_INFO)
}

/// The answer to a disco#info query: our identity and features, about the node asked for.
pub fn disco_result(query: &Element) -> Vec<u8> {
    let to = query
        .attr("from")
        .map(|from| format!(" to='{}'", attr(from)))
        .unwrap_or_default();
    let id = attr(query.attr("id").unwrap_or_default());
    let node = query
        .get_child("query", NS_DISCO_INFO)
        .and_then(|q| q.attr("node"))
        .map(|node| format!(" node='{}'", attr(node)))
        .unwrap_or_default();
    let (category, kind, name) = IDENTITY;
    let features: String = FEATURES
        .iter()
        .map(|f| format!("<feature var='{f}'/>"))
        .collect();
    format!(
        "<iq type='result'{to} id='{id}'><query xmlns='{NS_DISCO_INFO}'{node}>\
         <identity category='{category}' type='{kind}' name='{name}'/>{features}</query></iq>"
    )
    .into_bytes()
}

/// The subscriber a pubsub authorization request (seed Ex. 10) is about, if `stanza` is one
/// for a presence node.
pub fn authorization_subscriber(stanza: &Element) -> Option<String> {
    if stanza.name() != "message" {
        return None;
    }
    let form = stanza.get_child("x", NS_DATA)?;
    let value = |var: &str| {
        form.children()
            .find(|f| f.is("field", NS_DATA) && f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", NS_DATA))
            .map(Element::text)
    };
    if value("FORM_TYPE")? != AUTHORIZATION_FORM
        || value("pubsub#node").is_some_and(|node| node != NODE)
    {
        return None;
    }
    value("pubsub#subscriber_jid")
}

/// Whether `stanza` tells of the user approving the subscription: a `subscription` event of
/// the user's presence node, or the classic `<presence type='subscribed'/>`.
pub fn approves(stanza: &Element, user_bare: &str) -> bool {
    let from_user = stanza
        .attr("from")
        .is_some_and(|f| bare(f).eq_ignore_ascii_case(user_bare));
    from_user
        && match stanza.name() {
            "presence" => stanza.attr("type") == Some("subscribed"),
            "message" => stanza
                .get_child("event", NS_EVENT)
                .and_then(|e| e.get_child("subscription", NS_EVENT))
                .is_some_and(|s| {
                    s.attr("node") == Some(NODE) && s.attr("subscription") == Some("subscribed")
                }),
            _ => false,
        }
}

/// The presence inside a notification from the user's presence node: the item a change
/// publishes (seed Ex. 4). `None` for anything else, retractions included.
pub fn event_presence<'a>(stanza: &'a Element, user_bare: &str) -> Option<&'a Element> {
    if stanza.name() != "message" || !stanza.attr("from")?.eq_ignore_ascii_case(user_bare) {
        return None;
    }
    stanza
        .get_child("event", NS_EVENT)?
        .get_child("items", NS_EVENT)
        .filter(|items| items.attr("node") == Some(NODE))?
        .get_child("item", NS_EVENT)?
        .get_child("presence", NS_CLIENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn verification_string_of_the_xep_0115_example() {
        // XEP-0115 §5.2.
        let features = [
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#items",
        ];
        assert_eq!(
            caps_ver("client/pc//Exodus 0.9.1", &features),
            "QgayPKawpkPSDYmwT/WM94uAlu0="
        );
    }

    #[test]
    fn the_disco_answer_hashes_to_the_advertised_ver() {
        let query = parse(
            "<iq xmlns='jabber:client' type='get' from='localhost' to='bench1@localhost/r1' \
             id='d&apos;1'><query xmlns='http://jabber.org/protocol/disco#info' \
             node='https://verona.example/bench#X'/></iq>",
        );
        assert!(is_disco_query(&query));
        let answer = parse(
            &String::from_utf8(disco_result(&query))
                .unwrap()
                .replace("<iq ", "<iq xmlns='jabber:client' "),
        );
        assert_eq!(
            (answer.attr("type"), answer.attr("to"), answer.attr("id")),
            (Some("result"), Some("localhost"), Some("d'1"))
        );
        let info = answer.get_child("query", NS_DISCO_INFO).unwrap();
        assert_eq!(info.attr("node"), Some("https://verona.example/bench#X"));
        let identity = info.get_child("identity", NS_DISCO_INFO).unwrap();
        let identity = format!(
            "{}/{}//{}",
            identity.attr("category").unwrap(),
            identity.attr("type").unwrap(),
            identity.attr("name").unwrap()
        );
        let features: Vec<&str> = info
            .children()
            .filter(|c| c.name() == "feature")
            .filter_map(|c| c.attr("var"))
            .collect();
        assert!(features.contains(&"presence+notify"));
        assert_eq!(caps_ver(&identity, &features), *VER);
        // Computed independently over `…<presence<presence+notify<`: a feature sorts before
        // the longer ones it prefixes (i;octet, XEP-0115 §5.4). Appending `<` before sorting
        // would put `presence+notify<` first and give another hash.
        assert_eq!(*VER, "Mx4IW2qcz8RTiYmRRyEDezz/RT0=");
        let publish = String::from_utf8(publish_iq()).unwrap();
        assert!(publish.contains(&format!("ver='{}'", *VER)), "{publish}");
        assert!(!is_disco_query(&parse(
            "<iq xmlns='jabber:client' type='result' id='x'>\
             <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )));
    }

    #[test]
    fn subscription_requests_come_as_forms() {
        let form = |node: &str| {
            parse(&format!(
                "<message xmlns='jabber:client' from='bench0@localhost' to='bench0@localhost'>\
                 <x xmlns='jabber:x:data' type='form'>\
                 <field var='FORM_TYPE' type='hidden'><value>{AUTHORIZATION_FORM}</value></field>\
                 <field var='pubsub#node'><value>{node}</value></field>\
                 <field var='pubsub#subscriber_jid'><value>bench1@localhost</value></field>\
                 </x></message>"
            ))
        };
        assert_eq!(
            authorization_subscriber(&form("presence")).as_deref(),
            Some("bench1@localhost")
        );
        assert_eq!(authorization_subscriber(&form("mood")), None);
        assert_eq!(
            authorization_subscriber(&parse(
                "<message xmlns='jabber:client'><body>hi</body></message>"
            )),
            None
        );
    }

    #[test]
    fn approval_comes_as_an_event_or_a_presence() {
        let event = parse(&format!(
            "<message xmlns='jabber:client' from='bench0@localhost'><event xmlns='{NS_EVENT}'>\
             <subscription node='presence' jid='bench1@localhost' subscription='subscribed'/>\
             </event></message>"
        ));
        assert!(approves(&event, "bench0@localhost"));
        assert!(!approves(&event, "bench2@localhost"));
        let pending = parse(&format!(
            "<message xmlns='jabber:client' from='bench0@localhost'><event xmlns='{NS_EVENT}'>\
             <subscription node='presence' jid='bench1@localhost' subscription='pending'/>\
             </event></message>"
        ));
        assert!(!approves(&pending, "bench0@localhost"));
        let presence =
            parse("<presence xmlns='jabber:client' from='bench0@localhost' type='subscribed'/>");
        assert!(approves(&presence, "bench0@localhost"));
        let result = parse(&format!(
            "<iq xmlns='jabber:client' type='result' id='{SUBSCRIBE_ID}'>\
             <pubsub xmlns='{NS_PUBSUB}'><subscription node='presence' \
             jid='bench1@localhost' subscription='pending'/></pubsub></iq>"
        ));
        assert_eq!(subscription_state(&result), Some("pending"));
    }

    #[test]
    fn notifications_carry_the_presence() {
        let event = parse(&format!(
            "<message xmlns='jabber:client' from='bench0@localhost' type='headline'>\
             <event xmlns='{NS_EVENT}'><items node='presence'>\
             <item id='r0' publisher='bench0@localhost/r0'>\
             <presence xmlns='jabber:client' from='bench0@localhost/r0'>\
             <status>3 99</status></presence></item></items></event></message>"
        ));
        let presence = event_presence(&event, "bench0@localhost").unwrap();
        assert_eq!(
            presence.get_child("status", NS_CLIENT).unwrap().text(),
            "3 99"
        );
        assert!(event_presence(&event, "bench2@localhost").is_none());
        let retract = parse(&format!(
            "<message xmlns='jabber:client' from='bench0@localhost'>\
             <event xmlns='{NS_EVENT}'><items node='presence'><retract id='r0'/></items>\
             </event></message>"
        ));
        assert!(event_presence(&retract, "bench0@localhost").is_none());
    }
}
