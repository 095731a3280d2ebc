//! `wire`: the bytes one presence broadcast puts on the wire to one contact, as a classic
//! `<presence/>` and as an XEP-0207 notification from the publisher's presence node, plain and
//! through a warm zlib stream (XEP-0138).
//!
//! Verona's presence node does not exist yet, so both stanzas are built here with minidom the way
//! `verona-pubsub-xmpp`'s renderer shapes notifications: the `<event/>` and the XEP-0033
//! `replyto` serialized by minidom (an item carries `publisher` whenever `replyto` is sent), inside
//! a hand-written envelope `<message xmlns='jabber:client' from=… to=… id=…>` whose id is
//! `{per-process hex prefix}-{hex counter}`.

use flate2::{Compress, Compression, FlushCompress};
use minidom::rxml::NcName;
use minidom::{Element, ElementBuilder};
use serde::Serialize;

const NS_CLIENT: &str = "jabber:client";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_ADDRESS: &str = "http://jabber.org/protocol/address";

/// Stanzas compressed before the measured one, so that the zlib window holds similar text.
const WARM_UP: usize = 50;
/// Stands in for the renderer's random per-process id prefix (a u64, in hex).
const ID_PREFIX: u64 = 0x9b3c_5e71_a04d_28f6;

const CONTACT: &str = "romeo@localhost/orchard";
const STATUSES: [(&str, &str); 4] = [
    ("away", "Out in the orchard"),
    ("dnd", "In a meeting until noon"),
    ("xa", "On holiday, back on Monday"),
    ("chat", "Free to talk"),
];

/// One presence: who, which resource, and what it says.
struct Presence<'a> {
    account: &'a str,
    resource: &'a str,
    show: &'a str,
    status: &'a str,
}

impl Presence<'_> {
    fn full_jid(&self) -> String {
        format!("{}/{}", self.account, self.resource)
    }

    /// The presence payload as the client sends it (no addresses).
    fn payload(&self) -> ElementBuilder {
        Element::builder("presence", NS_CLIENT)
            .append(Element::builder("show", NS_CLIENT).append(self.show))
            .append(Element::builder("status", NS_CLIENT).append(self.status))
    }

    /// The classic broadcast: the payload addressed from the full JID to the contact.
    fn classic(&self) -> Vec<u8> {
        serialize(
            &self
                .payload()
                .attr(ncname("from"), self.full_jid())
                .attr(ncname("to"), CONTACT)
                .build(),
        )
    }

    /// The notification of item `resource` of the account's `presence` node, with stanza id
    /// number `counter`.
    fn notification(&self, counter: u64) -> Vec<u8> {
        let item = Element::builder("item", NS_EVENT)
            .attr(ncname("id"), self.resource)
            .attr(ncname("publisher"), self.full_jid())
            .append(self.payload().build());
        let event = Element::builder("event", NS_EVENT)
            .append(
                Element::builder("items", NS_EVENT)
                    .attr(ncname("node"), "presence")
                    .append(item),
            )
            .build();
        let replyto = Element::builder("addresses", NS_ADDRESS)
            .append(
                Element::builder("address", NS_ADDRESS)
                    .attr(ncname("type"), "replyto")
                    .attr(ncname("jid"), self.full_jid()),
            )
            .build();
        let mut stanza = format!(
            "<message xmlns='jabber:client' from='{}' to='{CONTACT}' id='{ID_PREFIX:x}-{counter:x}'>",
            self.account
        )
        .into_bytes();
        stanza.extend(serialize(&event));
        stanza.extend(serialize(&replyto));
        stanza.extend_from_slice(b"</message>");
        stanza
    }
}

fn ncname(name: &str) -> NcName {
    NcName::try_from(name).expect("attribute names here are NCNames")
}

fn serialize(element: &Element) -> Vec<u8> {
    let mut bytes = Vec::new();
    element
        .write_to(&mut bytes)
        .expect("elements built here serialize");
    bytes
}

/// Bytes of one shape of the broadcast.
#[derive(Clone, Debug, Serialize)]
pub struct Sizes {
    pub plain: usize,
    /// After [`WARM_UP`] similar stanzas went through the same zlib stream, each sync-flushed.
    pub zlib_warm: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct WireReport {
    pub classic: Sizes,
    pub notification: Sizes,
    pub classic_stanza: String,
    pub notification_stanza: String,
}

/// Juliet's presence as the measured broadcast, after presences of other contacts.
pub fn measure() -> WireReport {
    let juliet = Presence {
        account: "juliet@localhost",
        resource: "balcony",
        show: "away",
        status: "Wherefore art thou, Romeo?",
    };
    let names: Vec<(String, String)> = (0..WARM_UP)
        .map(|n| (format!("friend{n}@localhost"), format!("phone{n}")))
        .collect();
    let earlier: Vec<Presence> = names
        .iter()
        .zip(STATUSES.iter().cycle())
        .map(|((account, resource), (show, status))| Presence {
            account,
            resource,
            show,
            status,
        })
        .collect();
    let classic = juliet.classic();
    let notification = juliet.notification(WARM_UP as u64);
    WireReport {
        classic: Sizes {
            plain: classic.len(),
            zlib_warm: deflated_warm(earlier.iter().map(Presence::classic), &classic),
        },
        notification: Sizes {
            plain: notification.len(),
            zlib_warm: deflated_warm(
                earlier.iter().zip(0..).map(|(p, n)| p.notification(n)),
                &notification,
            ),
        },
        classic_stanza: String::from_utf8_lossy(&classic).into_owned(),
        notification_stanza: String::from_utf8_lossy(&notification).into_owned(),
    }
}

/// Compressed size of `stanza` once `earlier` went through the same stream, as Verona compresses
/// (zlib, default level, a sync flush after each write).
fn deflated_warm(earlier: impl Iterator<Item = Vec<u8>>, stanza: &[u8]) -> usize {
    let mut zlib = Compress::new(Compression::default(), true);
    for prior in earlier {
        deflate(&mut zlib, &prior);
    }
    deflate(&mut zlib, stanza).len()
}

/// `input` compressed and sync-flushed: what goes on the wire for it.
fn deflate(zlib: &mut Compress, input: &[u8]) -> Vec<u8> {
    let before = zlib.total_in();
    // Room for incompressible input, its block header and the flush marker.
    let mut out = Vec::with_capacity(input.len() + 64);
    zlib.compress_vec(input, &mut out, FlushCompress::Sync)
        .expect("deflating into a buffer cannot fail");
    assert!(
        zlib.total_in() - before == input.len() as u64 && out.len() < out.capacity(),
        "the output buffer was large enough for the whole flush"
    );
    out
}

impl WireReport {
    /// A markdown table and the stanzas measured.
    pub fn table(&self) -> String {
        let ratio = |n: usize, c: usize| n as f64 / c as f64;
        format!(
            "| one presence broadcast to one contact | plain | zlib, warm stream |\n\
             |---|---:|---:|\n\
             | classic `<presence/>` with show + status | {} B | {} B |\n\
             | XEP-0207 notification of the same presence | {} B | {} B |\n\
             | notification / classic | {:.2} | {:.2} |\n\n\
             Both stanzas built with minidom in the shape Verona's pubsub renderer \
             (`crates/verona-pubsub-xmpp/src/render.rs`) gives presence-node notifications, \
             so no server is needed; zlib is flate2 (zlib-rs) at the default level, measured \
             as the sync-flushed bytes of this stanza after {WARM_UP} similar ones on the same \
             stream.\n\n\
             - classic: `{}`\n\
             - notification: `{}`\n",
            self.classic.plain,
            self.classic.zlib_warm,
            self.notification.plain,
            self.notification.zlib_warm,
            ratio(self.notification.plain, self.classic.plain),
            ratio(self.notification.zlib_warm, self.classic.zlib_warm),
            self.classic_stanza,
            self.notification_stanza,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    #[test]
    fn stanzas_have_the_renderers_shape() {
        let report = measure();
        let notification: Element = report.notification_stanza.parse().unwrap();
        assert_eq!(notification.attr("from"), Some("juliet@localhost"));
        assert_eq!(notification.attr("to"), Some(CONTACT));
        assert_eq!(notification.attr("id"), Some("9b3c5e71a04d28f6-32"));
        let item = notification
            .get_child("event", NS_EVENT)
            .and_then(|e| e.get_child("items", NS_EVENT))
            .filter(|items| items.attr("node") == Some("presence"))
            .and_then(|items| items.get_child("item", NS_EVENT))
            .unwrap();
        assert_eq!(item.attr("id"), Some("balcony"));
        let payload = item.get_child("presence", NS_CLIENT).unwrap();
        assert_eq!(payload.get_child("show", NS_CLIENT).unwrap().text(), "away");
        let replyto = notification
            .get_child("addresses", NS_ADDRESS)
            .and_then(|a| a.get_child("address", NS_ADDRESS))
            .unwrap();
        assert_eq!(replyto.attr("jid"), Some("juliet@localhost/balcony"));

        let classic: Element = report.classic_stanza.parse().unwrap();
        assert_eq!(classic.attr("from"), Some("juliet@localhost/balcony"));
        assert_eq!(
            classic.get_child("status", NS_CLIENT).unwrap().text(),
            payload.get_child("status", NS_CLIENT).unwrap().text()
        );
        assert_eq!(report.classic.plain, report.classic_stanza.len());
        assert!(report.notification.plain > report.classic.plain);
        // A warm stream compresses well below the plain size.
        assert!(report.classic.zlib_warm * 2 < report.classic.plain);
        assert!(report.notification.zlib_warm * 2 < report.notification.plain);
    }

    #[test]
    fn each_flush_decodes_at_once() {
        let stanzas = [
            b"<presence/>".to_vec(),
            b"<presence><show>away</show></presence>".to_vec(),
        ];
        let mut zlib = Compress::new(Compression::default(), true);
        let mut inflate = Decompress::new(true);
        for stanza in &stanzas {
            let wire = deflate(&mut zlib, stanza);
            assert!(wire.ends_with(&[0, 0, 0xff, 0xff]));
            let mut out = Vec::with_capacity(1024);
            inflate
                .decompress_vec(&wire, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(&out, stanza);
        }
    }

    #[test]
    fn the_table_names_both_shapes() {
        let table = measure().table();
        assert!(table.contains("| classic `<presence/>` with show + status |"));
        assert!(table.contains("render.rs"));
    }
}
