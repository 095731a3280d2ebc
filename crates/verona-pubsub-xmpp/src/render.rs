//! Rendering delivery effects as stanzas ready for the wire.
//!
//! A notification goes to many recipients with the same content: its `<event/>` (and the
//! XEP-0033 `replyto`, which does not depend on the recipient) is built and serialized once;
//! each recipient's stanza is then the envelope start (`to`, a unique `id`) ‖ those shared
//! bytes ‖ an optional SHIM tail (when the recipient holds several subscriptions) ‖
//! `</message>`, as a [`Wire`] whose middle part is the same `Bytes` for every recipient.
//! Fan-out to N recipients therefore costs N small envelopes, not N element trees nor N copies
//! of the items.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use jid::Jid;
use minidom::Element;
use minidom::element::escape;
use verona_pubsub::{
    AuthorizationRequest, Effect, Event, Item, ItemReply, LastItems, Notification,
    NotificationType, Recipient, SubId,
};
use verona_stream::Wire;

use crate::forms;
use crate::ns;
use crate::xml::{BuilderExt, builder};
use crate::{Outgoing, ServiceContext, ServiceKind};

/// The stanzas that carry out `effects`' deliveries: notifications, authorization requests
/// (one per owner) and last published items (one message per item, with its XEP-0203 delay).
/// Storage writes are not deliveries and are skipped.
pub fn render(ctx: &ServiceContext, effects: &[Effect]) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for effect in effects {
        match effect {
            Effect::Persist(_) => {}
            Effect::Notify(notification) => notify(ctx, notification, &mut out),
            Effect::AuthorizationRequest(request) => authorization(ctx, request, &mut out),
            Effect::SendLastItems(last) => last_items(ctx, last, &mut out),
        }
    }
    out
}

fn notify(ctx: &ServiceContext, notification: &Notification, out: &mut Vec<Outgoing>) {
    let mut notifications = Notifications::new(ctx, notification);
    out.reserve(notification.recipients.len());
    for recipient in notification.recipients.iter() {
        out.push(Outgoing {
            to: recipient.jid.clone(),
            stanza: notifications.stanza(recipient),
        });
    }
}

/// A notification's messages, each made when asked for: what is shared by every recipient is
/// serialized once, and a recipient that gets another rendering (a classic session's
/// `<presence/>`) costs no message of its own.
pub struct Notifications {
    envelope: Envelope,
    shared: Bytes,
    per_subscription: bool,
    ids: Ids,
}

impl Notifications {
    pub fn new(ctx: &ServiceContext, notification: &Notification) -> Self {
        let items = match &notification.event {
            Event::Items { items } => items.as_slice(),
            _ => &[],
        };
        let naming = Naming::of(
            ctx,
            items,
            notification.itemreply,
            notification.notification_type,
        );
        let mut shared = serialize(&event(notification, |item| naming.attribute(item)));
        if let Some(publisher) = naming.replyto {
            shared.extend(serialize(&replyto_address(publisher)));
        }
        // §12.18: SubID headers only where the content depends on the subscription.
        let per_subscription = matches!(
            notification.event,
            Event::Items { .. } | Event::Retract { .. }
        );
        Notifications {
            envelope: Envelope::new(ctx.jid, naming.kind),
            shared: Bytes::from(shared),
            per_subscription,
            ids: Ids::reserve(notification.recipients.len()),
        }
    }

    /// The message for one of the notification's recipients.
    pub fn stanza(&mut self, recipient: &Recipient) -> Wire {
        self.stanza_at(recipient, None)
    }

    /// The message for one of the notification's recipients, at one of its sessions: a
    /// subscription of a bare JID is notified at each of the account's available resources,
    /// each copy addressed to its own (XEP-0207 Ex. 4), each with its own id.
    pub fn stanza_at(&mut self, recipient: &Recipient, resource: Option<&str>) -> Wire {
        let tail = (self.per_subscription && recipient.subids.len() > 1)
            .then(|| serialize(&headers(&recipient.subids)));
        let resource = resource.filter(|_| recipient.jid.is_bare());
        let to = To {
            jid: &recipient.jid,
            resource,
        };
        self.envelope
            .stanza(to, &mut self.ids, &self.shared, tail.as_deref())
    }
}

/// §8.6: one form per owner, at its bare JID.
fn authorization(ctx: &ServiceContext, request: &AuthorizationRequest, out: &mut Vec<Outgoing>) {
    for owner in &request.owners {
        out.push(authorization_for(ctx, request, &Jid::from(owner.clone())));
    }
}

/// The §8.6 form of a request for one address: an owner's session that comes online while the
/// request is still pending gets it again.
pub fn authorization_for(
    ctx: &ServiceContext,
    request: &AuthorizationRequest,
    to: &Jid,
) -> Outgoing {
    let form = Bytes::from(serialize(&Element::from(forms::authorization_request(
        request,
    ))));
    let envelope = Envelope::new(ctx.jid, NotificationType::Normal);
    let stanza = envelope.stanza(to.into(), &mut Ids::reserve(1), &form, None);
    Outgoing {
        to: to.clone(),
        stanza,
    }
}

/// How a node's items name their publisher, and the type of the messages that carry them:
/// the same for their notifications and for the last items a subscriber is sent.
struct Naming<'a> {
    kind: NotificationType,
    with_publisher: bool,
    /// Where to reply (XEP-0033): the first item's publisher.
    replyto: Option<&'a Jid>,
    /// Who the items' payloads name already, when they are stanzas.
    named: Option<&'a Jid>,
}

impl<'a> Naming<'a> {
    fn of(
        ctx: &ServiceContext,
        items: &'a [Item],
        itemreply: ItemReply,
        kind: NotificationType,
    ) -> Self {
        let first = items.first().and_then(|item| item.payload.as_deref());
        // A node that carries messages (seed §6, Ex. 20) names who said each, and where to
        // reply, and its notifications are never headlines (DESIGN §2 "One-to-one").
        // Rooms decide themselves what names the speaker.
        let carries_message = ctx.kind == ServiceKind::Pubsub && first.is_some_and(is_message);
        let with_publisher = itemreply == ItemReply::Publisher || carries_message;
        let replyto = items
            .first()
            .map(|item| &item.publisher)
            .filter(|_| with_publisher);
        // Items that are stanzas (XEP-0207 presence and messages) name their publisher once,
        // in the `replyto`, as the seed's Ex. 4, 17 and 20 do: an item attribute saying it
        // again is 30-odd bytes more in every notification (issue #15). Other payloads keep
        // XEP-0060's attribute.
        let stanzas = first.is_some_and(|payload| is_stanza(payload, &["message", "presence"]));
        let named = replyto.filter(|_| carries_message || stanzas);
        let kind = match kind {
            NotificationType::Headline if carries_message => NotificationType::Normal,
            kind => kind,
        };
        Naming {
            kind,
            with_publisher,
            replyto,
            named,
        }
    }

    /// Whether `item` carries XEP-0060's `publisher` attribute.
    fn attribute(&self, item: &Item) -> bool {
        self.with_publisher && self.named != Some(&item.publisher)
    }
}

/// §6.1.7: the last items, oldest first so that the newest arrives last, each in its own
/// message stamped with its publication time, named and typed as the node's notifications.
fn last_items(ctx: &ServiceContext, last: &LastItems, out: &mut Vec<Outgoing>) {
    let mut ids = Ids::reserve(last.items.len());
    for item in last.items.iter().rev() {
        let naming = Naming::of(
            ctx,
            std::slice::from_ref(item),
            last.itemreply,
            last.notification_type,
        );
        let envelope = Envelope::new(ctx.jid, naming.kind);
        let items = builder("items", ns::PUBSUB_EVENT)
            .with("node", last.node.as_str())
            .append(item_element(ns::PUBSUB_EVENT, item, naming.attribute(item)))
            .build();
        let mut body = serialize(&builder("event", ns::PUBSUB_EVENT).append(items).build());
        if let Some(publisher) = naming.replyto {
            body.extend(serialize(&replyto_address(publisher)));
        }
        let delay = builder("delay", ns::DELAY)
            .with("stamp", stamp(item.published))
            .build();
        body.extend(serialize(&delay));
        let stanza = envelope.stanza((&last.to).into(), &mut ids, &Bytes::from(body), None);
        out.push(Outgoing {
            to: last.to.clone(),
            stanza,
        });
    }
}

/// The `<event/>` of a notification.
fn event(notification: &Notification, with_publisher: impl Fn(&Item) -> bool) -> Element {
    let node = notification.node.as_str();
    let child = match &notification.event {
        Event::Items { items } => builder("items", ns::PUBSUB_EVENT)
            .with("node", node)
            .append_all(
                items
                    .iter()
                    .map(|item| item_element(ns::PUBSUB_EVENT, item, with_publisher(item))),
            )
            .build(),
        Event::Retract { ids } => builder("items", ns::PUBSUB_EVENT)
            .with("node", node)
            .append_all(ids.iter().map(|id| {
                builder("retract", ns::PUBSUB_EVENT)
                    .with("id", id.as_str())
                    .build()
            }))
            .build(),
        Event::Purge => builder("purge", ns::PUBSUB_EVENT)
            .with("node", node)
            .build(),
        Event::Delete { redirect } => builder("delete", ns::PUBSUB_EVENT)
            .with("node", node)
            .append_all(redirect.as_deref().map(|uri| {
                builder("redirect", ns::PUBSUB_EVENT)
                    .with("uri", uri)
                    .build()
            }))
            .build(),
        Event::Configuration { config } => builder("configuration", ns::PUBSUB_EVENT)
            .with("node", node)
            .append_all(
                config
                    .as_deref()
                    .map(|config| Element::from(forms::node_config(config, None))),
            )
            .build(),
        Event::Subscription { jid, state, subid } => builder("subscription", ns::PUBSUB_EVENT)
            .with("node", node)
            .with("jid", jid.as_str())
            .with("subscription", state.as_str())
            .with("subid", subid.as_deref())
            .build(),
    };
    builder("event", ns::PUBSUB_EVENT).append(child).build()
}

/// An `<item/>` in `namespace` (`pubsub` in retrieval results, `pubsub#event` in
/// notifications), its payload relayed as published. A stored payload that no longer parses is
/// left out rather than making the whole node unreadable. The `publisher` is a bare JID, as
/// in XEP-0060's examples and Prosody's: the resource, kept with the item for `replyto`,
/// would tell every later reader of an open node the name of the device it came from.
pub(crate) fn item_element(namespace: &str, item: &Item, with_publisher: bool) -> Element {
    let payload = item
        .payload
        .as_deref()
        .and_then(|payload| payload.parse::<Element>().ok());
    let publisher = with_publisher.then(|| item.publisher.to_bare().to_string());
    builder("item", namespace)
        .with("id", item.id.as_str())
        .with("publisher", publisher)
        .append_all(payload)
        .build()
}

/// Whether a notification is of a message node (seed §6): its items are
/// `<message xmlns='jabber:client'/>`s, which someone wrote to its subscribers.
pub fn carries_message(notification: &Notification) -> bool {
    first_payload(notification).is_some_and(is_message)
}

/// Whether an item's payload is a `<message xmlns='jabber:client'/>` (a message node's).
pub fn is_message(payload: &str) -> bool {
    is_stanza(payload, &["message"])
}

fn first_payload(notification: &Notification) -> Option<&str> {
    match &notification.event {
        Event::Items { items } => items.first()?.payload.as_deref(),
        _ => None,
    }
}

/// Whether a payload is a `jabber:client` element named one of `names`.
fn is_stanza(payload: &str, names: &[&str]) -> bool {
    names.iter().any(|name| {
        payload
            .strip_prefix('<')
            .is_some_and(|rest| rest.starts_with(name))
    }) && payload
        .parse::<Element>()
        .is_ok_and(|el| el.ns() == ns::CLIENT && names.contains(&el.name()))
}

/// XEP-0033: replies go to the publisher.
fn replyto_address(publisher: &Jid) -> Element {
    let address = builder("address", ns::ADDRESS)
        .with("type", "replyto")
        .with("jid", publisher.as_str())
        .build();
    builder("addresses", ns::ADDRESS).append(address).build()
}

/// XEP-0131 SubID headers (§12.18).
fn headers(subids: &[SubId]) -> Element {
    builder("headers", ns::SHIM)
        .append_all(subids.iter().map(|subid| {
            builder("header", ns::SHIM)
                .with("name", "SubID")
                .append(subid.as_str())
                .build()
        }))
        .build()
}

fn serialize(element: &Element) -> Vec<u8> {
    let mut bytes = Vec::new();
    element
        .write_to(&mut bytes)
        .expect("elements built by this crate serialize");
    bytes
}

/// Where a message goes: a JID, and for a bare one the resource of the session it is for.
#[derive(Clone, Copy)]
struct To<'a> {
    jid: &'a Jid,
    resource: Option<&'a str>,
}

impl<'a> From<&'a Jid> for To<'a> {
    fn from(jid: &'a Jid) -> Self {
        To {
            jid,
            resource: None,
        }
    }
}

/// The recipient-independent start of a `<message/>`, up to the `to` value.
struct Envelope {
    head: Vec<u8>,
}

impl Envelope {
    fn new(from: &Jid, kind: NotificationType) -> Self {
        let mut head = Vec::with_capacity(96);
        head.extend_from_slice(b"<message xmlns='jabber:client' from='");
        head.extend_from_slice(&escape(from.as_str().as_bytes()));
        // `normal` is the default type and is left implicit.
        match kind {
            NotificationType::Normal => {}
            NotificationType::Headline => head.extend_from_slice(b"' type='headline"),
            NotificationType::Chat => head.extend_from_slice(b"' type='chat"),
        }
        head.extend_from_slice(b"' to='");
        Envelope { head }
    }

    /// One recipient's message: the envelope, `body` (already serialized, shared with the
    /// other recipients), `tail`.
    fn stanza(&self, to: To<'_>, ids: &mut Ids, body: &Bytes, tail: Option<&[u8]>) -> Wire {
        const ID: &[u8] = b"' id='";
        const OPEN: &[u8] = b"'>";
        let resource = to.resource.map(|resource| escape(resource.as_bytes()));
        let to = escape(to.jid.as_str().as_bytes());
        let resource_len = resource.as_ref().map_or(0, |resource| 1 + resource.len());
        let mut id = [0; Ids::MAX_LEN];
        let id = ids.next_into(&mut id);
        // Sized exactly: `Bytes` takes over a full `Vec` without allocating again.
        let mut head = Vec::with_capacity(
            self.head.len() + to.len() + resource_len + ID.len() + id.len() + OPEN.len(),
        );
        head.extend_from_slice(&self.head);
        head.extend_from_slice(&to);
        if let Some(resource) = resource {
            head.push(b'/');
            head.extend_from_slice(&resource);
        }
        head.extend_from_slice(ID);
        head.extend_from_slice(id);
        head.extend_from_slice(OPEN);
        let tail = match tail {
            None => Bytes::from_static(END),
            Some(tail) => Bytes::from([tail, END].concat()),
        };
        Wire::new(Bytes::from(head), body.clone(), tail)
    }
}

const END: &[u8] = b"</message>";

/// Stanza ids unique within the process and across restarts: a random per-process prefix and
/// a counter. A block is reserved per notification, so fan-out touches the atomic once.
struct Ids {
    next: u64,
    end: u64,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 32 random bits: ids need only be unique within a stream, and a stream ends with its
/// process; the prefix keeps apart the ids of stanzas kept across a restart (offline
/// storage). Each byte of an id is in every notification (issue #15).
fn prefix() -> u32 {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        use std::hash::BuildHasher;
        // Truncation keeps 32 of the hash's random bits.
        std::collections::hash_map::RandomState::new().hash_one(SystemTime::now()) as u32
    })
}

impl Ids {
    fn reserve(count: usize) -> Self {
        let count = u64::try_from(count.max(1)).unwrap_or(u64::MAX);
        let next = COUNTER.fetch_add(count, Ordering::Relaxed);
        Ids {
            next,
            end: next.saturating_add(count),
        }
    }

    /// A `u32` and a `u64` in hex and a dash.
    const MAX_LEN: usize = 25;

    /// The next id, written into `buf`.
    fn next_into<'a>(&mut self, buf: &'a mut [u8; Self::MAX_LEN]) -> &'a [u8] {
        // More copies than recipients (an account's several sessions): another block.
        if self.next == self.end {
            *self = Ids::reserve(16);
        }
        // By hand: `write!` through `fmt` was 5 % of a fan-out's server time.
        let mut len = hex_into(u64::from(prefix()), buf);
        buf[len] = b'-';
        len += 1;
        len += hex_into(self.next, &mut buf[len..]);
        self.next += 1;
        &buf[..len]
    }
}

/// `value` in lowercase hex without leading zeros (as `{:x}`) at the start of `out`; its length.
fn hex_into(value: u64, out: &mut [u8]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let len = ((64 - value.leading_zeros()).div_ceil(4) as usize).max(1);
    for (at, byte) in out[..len].iter_mut().enumerate() {
        let shift = 4 * (len - 1 - at);
        *byte = DIGITS[((value >> shift) & 0xf) as usize];
    }
    len
}

/// A fresh unique identifier (XEP-0050 session ids).
pub(crate) fn next_id() -> String {
    let mut id = [0; Ids::MAX_LEN];
    String::from_utf8(Ids::reserve(1).next_into(&mut id).to_vec()).expect("hex digits and a dash")
}

/// An XEP-0082 DateTime in UTC, with milliseconds when there are any.
pub fn stamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
    );
    let millis = since_epoch.subsec_millis();
    let fraction = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}")
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_xep_0082_utc() {
        let at = |seconds: u64, millis: u64| {
            stamp(UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_071_359_917, 0), "2003-12-13T23:58:37Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_700_000_000, 0), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn ids_are_hex_as_format_writes_it() {
        for value in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            4096,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = [0; Ids::MAX_LEN];
            let len = hex_into(value, &mut out);
            assert_eq!(&out[..len], format!("{value:x}").as_bytes());
        }
        let mut ids = Ids::reserve(2);
        let mut buf = [0; Ids::MAX_LEN];
        let first = String::from_utf8(ids.next_into(&mut buf).to_vec()).unwrap();
        assert_eq!(first, format!("{:x}-{:x}", prefix(), ids.next - 1));
    }

    #[test]
    fn ids_never_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            assert!(seen.insert(next_id()));
        }
    }

    #[test]
    fn each_recipient_gets_its_own_envelope_around_the_shared_body() {
        let from = Jid::new("pubsub.capulet.lit").unwrap();
        let envelope = Envelope::new(&from, NotificationType::Headline);
        let body = Bytes::from_static(b"<event xmlns='http://jabber.org/protocol/pubsub#event'/>");
        let mut ids = Ids::reserve(2);
        let stanzas: Vec<Element> = ["juliet@capulet.lit/b'alcony", "romeo@montague.lit"]
            .into_iter()
            .map(|to| {
                let to = Jid::new(to).unwrap();
                let wire = envelope.stanza((&to).into(), &mut ids, &body, None);
                String::from_utf8(wire.to_vec()).unwrap().parse().unwrap()
            })
            .collect();
        let to: Vec<_> = stanzas.iter().map(|s| s.attr("to").unwrap()).collect();
        assert_eq!(to, ["juliet@capulet.lit/b'alcony", "romeo@montague.lit"]);
        for stanza in &stanzas {
            assert_eq!(stanza.attr("from"), Some("pubsub.capulet.lit"));
            assert_eq!(stanza.attr("type"), Some("headline"));
            let event = stanza.get_child("event", ns::PUBSUB_EVENT).unwrap();
            assert_eq!(event.children().count(), 0);
        }
        let [first, second] = [0, 1].map(|n| stanzas[n].attr("id").unwrap());
        assert_ne!(first, second);
        let (prefix, counter) = first.split_once('-').unwrap();
        assert!(
            u64::from_str_radix(prefix, 16).is_ok() && u64::from_str_radix(counter, 16).is_ok()
        );
    }

    /// A bare JID's subscription notified at each of its sessions: each copy is addressed to
    /// its session and has an id of its own, more copies than the ids reserved included.
    #[test]
    fn each_session_of_a_bare_subscriber_gets_its_own_address_and_id() {
        let from = Jid::new("juliet@capulet.lit").unwrap();
        let envelope = Envelope::new(&from, NotificationType::Headline);
        let body = Bytes::from_static(b"<event xmlns='http://jabber.org/protocol/pubsub#event'/>");
        let romeo = Jid::new("romeo@montague.lit").unwrap();
        let mut ids = Ids::reserve(1);
        let stanzas: Vec<Element> = ["mobile", "o'rchard", "pda"]
            .into_iter()
            .map(|resource| {
                let to = To {
                    jid: &romeo,
                    resource: Some(resource),
                };
                let wire = envelope.stanza(to, &mut ids, &body, None);
                String::from_utf8(wire.to_vec()).unwrap().parse().unwrap()
            })
            .collect();
        let to: Vec<_> = stanzas.iter().map(|s| s.attr("to").unwrap()).collect();
        assert_eq!(
            to,
            [
                "romeo@montague.lit/mobile",
                "romeo@montague.lit/o'rchard",
                "romeo@montague.lit/pda"
            ]
        );
        let ids: std::collections::HashSet<&str> =
            stanzas.iter().map(|s| s.attr("id").unwrap()).collect();
        assert_eq!(ids.len(), 3);
    }
}
