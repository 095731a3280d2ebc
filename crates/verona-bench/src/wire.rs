//! `wire`: the bytes one presence broadcast puts on the wire to one contact, as a classic
//! `<presence/>` and as an XEP-0207 notification from the publisher's presence node, plain and
//! through a warm zlib stream (XEP-0138).
//!
//! The classic stanza is built with minidom as the server serializes it; the notification is
//! made by `verona-pubsub-xmpp`'s renderer itself, so what is measured is what Verona sends.

use std::sync::Arc;
use std::time::SystemTime;

use flate2::{Compress, Compression, FlushCompress};
use jid::Jid;
use minidom::rxml::NcName;
use minidom::{Element, ElementBuilder};
use serde::Serialize;
use verona_pubsub::{
    Effect, Event, Item, ItemReply, NoRoster, Notification, NotificationType, Recipient,
};
use verona_pubsub_xmpp::{ServiceContext, ServiceKind, render};

const NS_CLIENT: &str = "jabber:client";

/// Stanzas compressed before the measured one, so that the zlib window holds similar text.
const WARM_UP: usize = 50;

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

    /// The notification of item `resource` of the account's `presence` node, as Verona's
    /// renderer makes it for one contact: the payload as the server stores a published
    /// presence (rebuilt and stamped with the publishing resource), the node's configuration
    /// (`headline`, `itemreply` = publisher).
    fn notification(&self) -> Vec<u8> {
        let payload = self.payload().attr(ncname("from"), self.full_jid()).build();
        let item = Item {
            id: self.resource.to_owned(),
            payload: Some(Arc::from(String::from(&payload))),
            publisher: Jid::new(&self.full_jid()).expect("a full JID"),
            published: SystemTime::now(),
        };
        let notification = Notification {
            node: "presence".to_owned(),
            event: Event::Items { items: vec![item] },
            recipients: Arc::from([Recipient {
                jid: Jid::new(CONTACT).expect("a full JID"),
                subids: Vec::new(),
                show_values: None,
                include_body: false,
            }]),
            notification_type: NotificationType::Headline,
            presence_based_delivery: true,
            itemreply: ItemReply::Publisher,
        };
        let service = Jid::new(self.account).expect("a bare JID");
        let context = ServiceContext {
            jid: &service,
            kind: ServiceKind::Pep,
            resolver: &NoRoster,
        };
        let mut out = render(&context, &[Effect::Notify(notification)]);
        assert_eq!(out.len(), 1, "one recipient, one stanza");
        out.remove(0).stanza.to_vec()
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
    let notification = juliet.notification();
    WireReport {
        classic: Sizes {
            plain: classic.len(),
            zlib_warm: deflated_warm(earlier.iter().map(Presence::classic), &classic),
        },
        notification: Sizes {
            plain: notification.len(),
            zlib_warm: deflated_warm(earlier.iter().map(Presence::notification), &notification),
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
             The notification is made by Verona's pubsub renderer \
             (`crates/verona-pubsub-xmpp/src/render.rs`) for a presence-node item as the \
             server stores it, the classic stanza by minidom as the server serializes it; zlib is flate2 (zlib-rs) at the default level, measured \
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

    const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
    const NS_ADDRESS: &str = "http://jabber.org/protocol/address";

    #[test]
    fn stanzas_have_the_renderers_shape() {
        let report = measure();
        let notification: Element = report.notification_stanza.parse().unwrap();
        assert_eq!(notification.attr("from"), Some("juliet@localhost"));
        assert_eq!(notification.attr("to"), Some(CONTACT));
        let id = notification.attr("id").unwrap();
        assert!(id.len() <= 12, "{id}");
        assert_eq!(notification.attr("type"), Some("headline"));
        let item = notification
            .get_child("event", NS_EVENT)
            .and_then(|e| e.get_child("items", NS_EVENT))
            .filter(|items| items.attr("node") == Some("presence"))
            .and_then(|items| items.get_child("item", NS_EVENT))
            .unwrap();
        assert_eq!(item.attr("id"), Some("balcony"));
        // The `replyto` names the publisher: the item does not again.
        assert_eq!(item.attr("publisher"), None);
        let payload = item.get_child("presence", NS_CLIENT).unwrap();
        assert_eq!(payload.attr("from"), Some("juliet@localhost/balcony"));
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
