//! `presence`: one user (account 0) and C contacts (accounts 1..=C). Each contact subscribes to
//! the user's presence (RFC 6121) and the user approves; then the user changes its presence R
//! times, each change's status carrying its number and send time, with at most K changes not
//! yet received by every subscribed contact. Measures presence deliveries per second,
//! change→receipt latency, lost and duplicated deliveries, and the CPU the server and the
//! generator spend per delivery.
//!
//! Against Verona, the first N contacts can be native XEP-0207 clients instead (see
//! [`native`]): they subscribe to the user's presence node over pubsub, publish their own
//! presence there, and receive the changes as pubsub events. The user stays classic.

mod native;

use std::collections::HashSet;
use std::time::Duration;

use minidom::Element;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{
    Errors, Params, SATURATED, Setup, Tally, attr, check, close_all, cpu_rows, fmt_latency,
    fmt_lost, log_in_all, table,
};
use crate::client::{Client, Error, Received, within};
use crate::stats::{ProcSample, ServerProbe, Summary, core_share, own_cpu};
use crate::stream::skim_stanza;

const NS_CLIENT: &str = "jabber:client";
const ROSTER_GET: &[u8] = b"<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>";

#[derive(Clone, Debug, Serialize)]
pub struct PresenceOptions {
    pub contacts: usize,
    /// Contacts 1..=native are native XEP-0207 clients (Verona only), the rest classic.
    pub native: usize,
    /// Presence changes the user makes.
    pub changes: usize,
    /// Changes sent that some subscribed contact has not received yet.
    pub in_flight: usize,
    /// Logins in progress at once.
    pub login_in_flight: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct PresenceReport {
    pub scenario: &'static str,
    #[serde(flatten)]
    pub params: Params,
    #[serde(flatten)]
    pub options: PresenceOptions,
    /// Contacts logged in.
    pub connected: usize,
    /// Contacts whose subscription the user approved in time.
    pub subscribed: usize,
    pub errors: Errors,
    /// subscribed × changes.
    pub expected: usize,
    /// Distinct changes received, summed over contacts.
    pub received: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Changes that arrived after a later one at the same contact.
    pub reordered: usize,
    pub none_lost: bool,
    pub native_contacts: KindReport,
    pub classic_contacts: KindReport,
    /// From the first change sent to the last one received.
    pub elapsed_s: f64,
    pub deliveries_per_s: f64,
    /// From just before a change was sent to its receipt being parsed.
    pub latency: Option<Summary>,
    /// Server CPU time while the changes were delivered, divided by the deliveries.
    pub server_cpu_us_per_delivery: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    /// The generator's own CPU over the same window, in cores.
    pub generator_cpu_cores: f64,
    pub generator_saturated: bool,
}

/// One kind of contact's share of the run, counted by what actually arrived.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindReport {
    pub connected: usize,
    pub subscribed: usize,
    /// subscribed × changes.
    pub expected: usize,
    /// Distinct changes received.
    pub received: usize,
    /// Of those, the ones that came as XEP-0207 pubsub events (the rest as `<presence/>`).
    pub as_events: usize,
}

/// What a contact tells the user's task.
enum Note {
    /// Whether its subscription was approved in time, and whether it is native.
    Subscribed { approved: bool, native: bool },
    /// It received change `seq` for the first time.
    Received(usize),
}

/// A contact's session, and how it speaks presence.
struct Contact {
    client: Client,
    native: bool,
    /// The disco#info queries a native contact answered, by id: each is answered once.
    answered: HashSet<String>,
}

/// What one contact received.
struct Heard {
    native: bool,
    tally: Tally,
    /// Of the changes received, those that came as pubsub events.
    as_events: usize,
}

/// How a change reached a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rendering {
    Presence,
    Event,
}

/// The user's side of the run.
struct Broadcast {
    probe: ServerProbe,
    subscribed: usize,
    /// Of `subscribed`, the native contacts.
    native_subscribed: usize,
    /// Taken just before the first change was sent: subscribing is not measured.
    start: Option<Start>,
}

struct Start {
    at: Instant,
    server: Option<ProcSample>,
    own: Duration,
}

pub async fn run(setup: &Setup, options: &PresenceOptions, server: ServerProbe) -> PresenceReport {
    // Status timestamps count from here; user and contacts share this process, hence this clock.
    let epoch = Instant::now();
    // Native contacts become available by publishing, not with `<presence/>`, which would
    // make them classic.
    let natives = 1..options.native + 1;
    let logins = log_in_all(
        setup,
        options.contacts + 1,
        options.login_in_flight,
        true,
        natives.clone(),
    )
    .await;
    let mut errors = logins.errors;
    let bare_of = |n| format!("{}@{}", setup.credentials(n).0, setup.target.domain);
    let user_bare = bare_of(0);
    let native_bares: HashSet<String> = natives.map(|n| bare_of(n).to_lowercase()).collect();
    let (users, contacts): (Vec<Client>, Vec<Client>) = logins
        .clients
        .into_iter()
        .partition(|c| bare(&c.jid).eq_ignore_ascii_case(&user_bare));
    let connected = contacts.len();
    let contacts: Vec<Contact> = contacts
        .into_iter()
        .map(|client| Contact {
            native: native_bares.contains(&bare(&client.jid).to_lowercase()),
            client,
            answered: HashSet::new(),
        })
        .collect();
    let mut native_contacts = KindReport {
        connected: contacts.iter().filter(|c| c.native).count(),
        ..KindReport::default()
    };
    let mut classic_contacts = KindReport {
        connected: connected - native_contacts.connected,
        ..KindReport::default()
    };
    let user = match users.into_iter().next() {
        Some(mut user) => match within(setup.op_timeout, request_roster(&mut user)).await {
            Ok(()) => Some(user),
            Err(e) => {
                errors.add(&e);
                None
            }
        },
        None => None,
    };

    let (notes, mut noted) = mpsc::unbounded_channel();
    let (go, ready) = watch::channel(false);
    let listeners: Vec<_> = contacts
        .into_iter()
        .map(|contact| {
            let listener = listen(
                contact,
                user_bare.clone(),
                options.changes,
                (notes.clone(), ready.clone()),
                epoch,
                setup.op_timeout,
            );
            tokio::spawn(listener)
        })
        .collect();
    drop(notes);
    let mut clients = Vec::with_capacity(connected + 1);
    let mut done = Broadcast {
        probe: server,
        subscribed: 0,
        native_subscribed: 0,
        start: None,
    };
    // Without the user (its failure is counted above) no contact gets approved.
    if let Some(mut user) = user {
        let channels = (&mut noted, go);
        let result = broadcast(
            &mut user,
            options,
            connected,
            channels,
            epoch,
            setup.op_timeout,
            &mut done,
        )
        .await;
        match result {
            Ok(()) => clients.push(user),
            Err(e) => errors.add(&e),
        }
    }
    let mut tally = Tally::default();
    for listener in listeners {
        let (heard, contact) = listener.await.expect("a presence contact task panicked");
        let kind = if heard.native {
            &mut native_contacts
        } else {
            &mut classic_contacts
        };
        kind.received += heard.tally.received;
        kind.as_events += heard.as_events;
        tally.merge(heard.tally);
        match contact {
            Ok(client) => clients.push(client),
            Err(e) => errors.add(&e),
        }
    }
    let (window, own, server_cpu) =
        done.start
            .as_ref()
            .map_or((Duration::ZERO, Duration::ZERO, None), |start| {
                let server_cpu = start
                    .server
                    .zip(server.sample())
                    .map(|(before, after)| after.cpu.saturating_sub(before.cpu));
                (start.at.elapsed(), own_cpu() - start.own, server_cpu)
            });
    errors.merge(close_all(clients, options.login_in_flight, setup.op_timeout).await);

    let expected = done.subscribed * options.changes;
    native_contacts.subscribed = done.native_subscribed;
    classic_contacts.subscribed = done.subscribed - done.native_subscribed;
    for kind in [&mut native_contacts, &mut classic_contacts] {
        kind.expected = kind.subscribed * options.changes;
    }
    let delivery = match (&done.start, tally.last) {
        (Some(start), Some(last)) => last - start.at,
        _ => Duration::ZERO,
    };
    let generator_cpu_cores = core_share(own, window);
    PresenceReport {
        scenario: "presence",
        params: setup.params(),
        options: options.clone(),
        connected,
        subscribed: done.subscribed,
        errors,
        expected,
        received: tally.received,
        lost: expected.saturating_sub(tally.received),
        duplicated: tally.duplicated,
        reordered: tally.reordered,
        none_lost: expected > 0 && tally.received == expected,
        native_contacts,
        classic_contacts,
        elapsed_s: delivery.as_secs_f64(),
        deliveries_per_s: tally.received as f64 / delivery.as_secs_f64().max(f64::MIN_POSITIVE),
        latency: Summary::of(&mut tally.latencies),
        server_cpu_us_per_delivery: server_cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / tally.received.max(1) as f64),
        server_cpu_cores: server_cpu.map(|cpu| core_share(cpu, window)),
        generator_cpu_cores,
        generator_saturated: generator_cpu_cores >= SATURATED,
    }
}

/// The user's task: approves subscription requests until every contact has answered (each
/// contact bounds its own wait), then sends the changes. It reads its own stream throughout, so
/// the server never blocks on it, and stops early when no contact reports progress for
/// `op_timeout` (the missing changes count as lost). Dropping `go` on failure stops the contacts.
async fn broadcast(
    user: &mut Client,
    options: &PresenceOptions,
    contacts: usize,
    (noted, go): (&mut mpsc::UnboundedReceiver<Note>, watch::Sender<bool>),
    epoch: Instant,
    op_timeout: Duration,
    done: &mut Broadcast,
) -> Result<(), Error> {
    let mut answered = 0;
    while answered < contacts {
        tokio::select! {
            stanza = user.recv() => {
                if let Some(answer) = approval(&stanza?) {
                    user.send(&answer).await?;
                }
            }
            note = noted.recv() => match note {
                Some(Note::Subscribed { approved, native }) => {
                    answered += 1;
                    done.subscribed += usize::from(approved);
                    done.native_subscribed += usize::from(approved && native);
                }
                Some(Note::Received(_)) | None => break,
            },
        }
    }
    let _ = go.send(true);
    if done.subscribed == 0 {
        return Ok(());
    }
    // Per change, the contacts that received it; the first `complete` reached them all.
    let mut delivered = vec![0; options.changes];
    let (mut sent, mut complete) = (0, 0);
    done.start = Some(Start {
        server: done.probe.sample(),
        own: own_cpu(),
        at: Instant::now(),
    });
    loop {
        while complete < options.changes && delivered[complete] >= done.subscribed {
            complete += 1;
        }
        if complete == options.changes {
            break;
        }
        while sent < options.changes && sent - complete < options.in_flight.max(1) {
            user.send(&change(sent, epoch.elapsed())).await?;
            sent += 1;
        }
        tokio::select! {
            stanza = user.recv() => drop(stanza?),
            note = tokio::time::timeout(op_timeout, noted.recv()) => match note {
                Ok(Some(Note::Received(seq))) => delivered[seq] += 1,
                Ok(Some(Note::Subscribed { .. })) => {}
                Ok(None) | Err(_) => break,
            },
        }
    }
    Ok(())
}

/// One contact: subscribes to the user, waits for the approval, then for `go`, then counts
/// the numbered changes from the user until it has them all or nothing came for
/// `op_timeout`. Gives the client back for closing, unless its connection failed.
async fn listen(
    mut contact: Contact,
    user_bare: String,
    changes: usize,
    (notes, mut go): (mpsc::UnboundedSender<Note>, watch::Receiver<bool>),
    epoch: Instant,
    op_timeout: Duration,
) -> (Heard, Result<Client, Error>) {
    let mut heard = Heard {
        native: contact.native,
        tally: Tally::new(changes),
        as_events: 0,
    };
    let approved = within(op_timeout, subscribe(&mut contact, &user_bare)).await;
    let _ = notes.send(Note::Subscribed {
        approved: approved.is_ok(),
        native: contact.native,
    });
    if let Err(e) = approved {
        return (heard, Err(e));
    }
    // The user's task ends early only on failure, which it reports itself.
    if go.wait_for(|go| *go).await.is_err() {
        return (heard, Ok(contact.client));
    }
    // Classic presences are skimmed, not built into elements.
    let skim = |text: &str| skim_numbered(text, &user_bare);
    while heard.tally.received < changes {
        // Only the wait is timed: an answer to a disco#info query is never cut short.
        let received = contact.client.recv_skimmed(skim);
        let numbered = match tokio::time::timeout(op_timeout, received).await {
            Err(_) => break,
            Ok(Err(e)) => return (heard, Err(e)),
            Ok(Ok(Received::Skimmed(numbered))) => Some(numbered),
            Ok(Ok(Received::Stanza(stanza))) => match contact.answer_disco(&stanza).await {
                Ok(true) => continue,
                Ok(false) => numbered(&stanza, &user_bare),
                Err(e) => return (heard, Err(e)),
            },
        };
        if let Some((seq, sent_at, rendering)) = numbered {
            let before = heard.tally.received;
            heard.tally.record(seq, sent_at, Instant::now(), epoch);
            if heard.tally.received > before {
                heard.as_events += usize::from(rendering == Rendering::Event);
                let _ = notes.send(Note::Received(seq));
            }
        }
    }
    (heard, Ok(contact.client))
}

/// Asks for the user's presence and waits for the approval. A classic contact fetches its
/// roster and sends `<presence type='subscribe'/>`; a native one publishes its presence
/// (becoming available, and native to the server), then subscribes to the user's presence node.
async fn subscribe(contact: &mut Contact, user_bare: &str) -> Result<(), Error> {
    if contact.native {
        contact.client.send(&native::publish_iq()).await?;
        loop {
            let reply = contact.recv().await?;
            if reply.name() == "iq" && reply.attr("id") == Some(native::PUBLISH_ID) {
                check(&reply)?;
                break;
            }
        }
        let contact_bare = bare(&contact.client.jid).to_owned();
        let iq = native::subscribe_iq(user_bare, &contact_bare);
        contact.client.send(&iq).await?;
    } else {
        request_roster(&mut contact.client).await?;
        let subscribe = format!("<presence type='subscribe' to='{}'/>", attr(user_bare));
        contact.client.send(subscribe.as_bytes()).await?;
    }
    loop {
        let stanza = contact.recv().await?;
        // The approval may overtake the subscribe result, so both are looked for at once.
        if stanza.name() == "iq" && stanza.attr("id") == Some(native::SUBSCRIBE_ID) {
            check(&stanza)?;
            if native::subscription_state(&stanza) == Some("subscribed") {
                return Ok(());
            }
        } else if native::approves(&stanza, user_bare) {
            return Ok(());
        }
    }
}

impl Contact {
    /// The next stanza that is not a disco#info query to this contact, answering those.
    async fn recv(&mut self) -> Result<Element, Error> {
        loop {
            let stanza = self.client.recv().await?;
            if !self.answer_disco(&stanza).await? {
                return Ok(stanza);
            }
        }
    }

    /// Whether `stanza` is a disco#info query to a native contact, which is then answered
    /// unless it was already (XEP-0115: the server asks what the advertised caps mean).
    async fn answer_disco(&mut self, stanza: &Element) -> Result<bool, Error> {
        if !self.native || !native::is_disco_query(stanza) {
            return Ok(false);
        }
        let id = stanza.attr("id").unwrap_or_default();
        if self.answered.insert(id.to_owned()) {
            self.client.send(&native::disco_result(stanza)).await?;
        }
        Ok(true)
    }
}

/// Fetches the roster, which makes the session an "interested resource" (RFC 6121 §2.1.6):
/// Prosody delivers subscription requests and approvals only to those.
async fn request_roster(client: &mut Client) -> Result<(), Error> {
    client.send(ROSTER_GET).await?;
    loop {
        let stanza = client.recv().await?;
        if stanza.name() == "iq" && stanza.attr("id") == Some("roster") {
            return Ok(());
        }
    }
}

/// The approval of a subscription request, `None` for any other stanza. The request comes as
/// `<presence type='subscribe'/>` or as a pubsub authorization form (seed Ex. 10), as the
/// server renders it; Verona takes the classic approval for a pubsub subscription too.
fn approval(stanza: &Element) -> Option<Vec<u8>> {
    let subscriber = match stanza.name() {
        "presence" if stanza.attr("type") == Some("subscribe") => stanza.attr("from")?.to_owned(),
        _ => native::authorization_subscriber(stanza)?,
    };
    Some(
        format!(
            "<presence type='subscribed' to='{}'/>",
            attr(bare(&subscriber))
        )
        .into_bytes(),
    )
}

/// Change `seq`, its status `SEQ SENT_NANOS`.
fn change(seq: usize, sent: Duration) -> Vec<u8> {
    format!(
        "<presence><status>{seq} {}</status></presence>",
        sent.as_nanos()
    )
    .into_bytes()
}

/// The sequence number and send time of a change from the user, and whether it came as a
/// classic `<presence/>` or a pubsub event; `None` for any other stanza (such as the user's
/// initial presence, or roster pushes).
fn numbered(stanza: &Element, user_bare: &str) -> Option<(usize, Duration, Rendering)> {
    let (presence, rendering) = match native::event_presence(stanza, user_bare) {
        Some(presence) => (presence, Rendering::Event),
        None => (stanza, Rendering::Presence),
    };
    let from_user = match (presence.attr("from"), rendering) {
        (Some(from), _) => bare(from).eq_ignore_ascii_case(user_bare) && from.contains('/'),
        // Inside an event the sender of the event vouches for it.
        (None, Rendering::Event) => true,
        (None, Rendering::Presence) => false,
    };
    if presence.name() != "presence" || presence.attr("type").is_some() || !from_user {
        return None;
    }
    let status = presence.get_child("status", NS_CLIENT)?.text();
    let (seq, sent) = status.split_once(' ')?;
    Some((
        seq.parse().ok()?,
        Duration::from_nanos(sent.parse().ok()?),
        rendering,
    ))
}

/// [`numbered`] for a classic presence given as text, no element built; `None` for anything
/// else and anything unusual, which is then read whole.
fn skim_numbered(text: &str, user_bare: &str) -> Option<(usize, Duration, Rendering)> {
    let skimmed = skim_stanza(text, "presence", "status")?;
    let from = skimmed.from?;
    if skimmed.kind.is_some() || !bare(&from).eq_ignore_ascii_case(user_bare) || !from.contains('/')
    {
        return None;
    }
    let status = skimmed.text?;
    let (seq, sent) = status.split_once(' ')?;
    Some((
        seq.parse().ok()?,
        Duration::from_nanos(sent.parse().ok()?),
        Rendering::Presence,
    ))
}

/// The bare part of a JID.
fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

impl KindReport {
    fn describe(&self) -> String {
        format!(
            "{} connected, {} subscribed; {} of {} received, {} as pubsub events",
            self.connected, self.subscribed, self.received, self.expected, self.as_events
        )
    }
}

impl PresenceReport {
    /// Every change reached every subscribed contact exactly once, and nothing failed.
    pub fn ok(&self) -> bool {
        self.none_lost && self.duplicated == 0 && self.errors.total == 0
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let latency = fmt_latency(&self.latency);
        let lost = fmt_lost(self.none_lost, self.lost, self.expected);
        table(
            &format!(
                "presence: 1 user x {} contacts, {} changes ({} in flight), {} via {}{}",
                o.contacts,
                o.changes,
                o.in_flight,
                self.params.mechanism,
                self.params.addr,
                if self.params.tls { " (STARTTLS)" } else { "" }
            ),
            &[
                (
                    "contacts",
                    format!(
                        "{} connected, {} subscribed, of {}",
                        self.connected, self.subscribed, o.contacts
                    ),
                ),
                (
                    "deliveries",
                    format!(
                        "{} of {} in {:.2} s: {:.0}/s",
                        self.received, self.expected, self.elapsed_s, self.deliveries_per_s
                    ),
                ),
                ("native contacts", self.native_contacts.describe()),
                ("classic contacts", self.classic_contacts.describe()),
                ("lost", lost),
                ("duplicated", self.duplicated.to_string()),
                ("reordered", self.reordered.to_string()),
                ("change->receipt", latency),
                ("errors", self.errors.describe()),
            ]
            .into_iter()
            .chain(cpu_rows(
                "server CPU/delivery",
                self.server_cpu_us_per_delivery,
                self.server_cpu_cores,
                self.generator_cpu_cores,
            ))
            .collect::<Vec<_>>(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.replace("<presence ", "<presence xmlns='jabber:client' ")
            .parse()
            .unwrap()
    }

    #[test]
    fn changes_carry_their_number_and_send_time() {
        let text = String::from_utf8(change(42, Duration::from_nanos(1234))).unwrap();
        assert_eq!(text, "<presence><status>42 1234</status></presence>");
        let received = parse(&text.replace(
            "<presence>",
            "<presence from='bench0@localhost/r0' to='bench1@localhost/r1'>",
        ));
        assert_eq!(
            numbered(&received, "bench0@localhost"),
            Some((42, Duration::from_nanos(1234), Rendering::Presence))
        );
        assert_eq!(numbered(&received, "bench2@localhost"), None);
    }

    #[test]
    fn changes_are_read_from_pubsub_events_too() {
        let event = |presence: &str| {
            format!(
                "<message xmlns='jabber:client' from='bench0@localhost' to='bench1@localhost/r1'>\
                 <event xmlns='http://jabber.org/protocol/pubsub#event'><items node='presence'>\
                 <item id='r0' publisher='bench0@localhost/r0'>{presence}</item></items></event>\
                 </message>"
            )
            .parse::<Element>()
            .unwrap()
        };
        let numbered_as_event = Some((7, Duration::from_nanos(55), Rendering::Event));
        for presence in [
            "<presence xmlns='jabber:client' from='bench0@localhost/r0'><status>7 55</status></presence>",
            "<presence xmlns='jabber:client'><status>7 55</status></presence>",
        ] {
            assert_eq!(
                numbered(&event(presence), "bench0@localhost"),
                numbered_as_event,
                "{presence}"
            );
        }
        for presence in [
            "<presence xmlns='jabber:client' from='bench0@localhost/r0'/>",
            "<presence xmlns='jabber:client' from='bench2@localhost/r2'><status>7 55</status></presence>",
            "<presence xmlns='jabber:client' type='unavailable'><status>7 55</status></presence>",
        ] {
            assert_eq!(
                numbered(&event(presence), "bench0@localhost"),
                None,
                "{presence}"
            );
        }
    }

    #[test]
    fn a_skimmed_presence_reads_as_the_whole_one_or_is_left_to_it() {
        // The text, and whether the skim takes it (else the whole stanza is read).
        let cases = [
            (
                "<presence from='bench0@localhost/r0'><status>7 55</status></presence>",
                true,
            ),
            (
                "<presence xmlns='jabber:client' from='BENCH0@localhost/r0' to='bench1@localhost/r1'>\
                 <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>\
                 <status>7 55</status><status>8 66</status></presence>",
                true,
            ),
            (
                "<presence from='bench0@localhost/r0'><status>7 55 &amp;</status></presence>",
                false,
            ),
            (
                "<presence from='bench0@localhost/r0'><status>7 <b>55</b></status></presence>",
                false,
            ),
            (
                "<presence from='bench0@localhost/r0'><status xmlns='urn:x'>7 55</status></presence>",
                false,
            ),
            ("<presence from='bench0@localhost/r0'/>", false),
            (
                "<presence from='bench0@localhost/r0' type='unavailable'><status>1 2</status></presence>",
                false,
            ),
            (
                "<presence from='bench0@localhost'><status>1 2</status></presence>",
                false,
            ),
            (
                "<presence from='bench2@localhost/r2'><status>1 2</status></presence>",
                false,
            ),
            (
                "<message from='bench0@localhost/r0'><status>1 2</status></message>",
                false,
            ),
            (
                "<iq from='bench0@localhost/r0' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
                false,
            ),
        ];
        for (xml, taken) in cases {
            let skimmed = skim_numbered(xml, "bench0@localhost");
            assert_eq!(skimmed.is_some(), taken, "{xml}");
            if taken {
                let whole = if xml.starts_with("<presence xmlns=") {
                    xml.parse().expect("well-formed")
                } else {
                    parse(xml)
                };
                assert_eq!(skimmed, numbered(&whole, "bench0@localhost"), "{xml}");
            }
        }
    }

    #[test]
    fn other_presence_is_not_counted() {
        for xml in [
            "<presence from='bench0@localhost/r0'/>",
            "<presence from='bench0@localhost/r0' type='unavailable'><status>1 2</status></presence>",
            "<presence from='bench0@localhost' type='subscribed'><status>1 2</status></presence>",
            "<presence from='bench0@localhost/r0'><status>away</status></presence>",
        ] {
            assert_eq!(numbered(&parse(xml), "bench0@localhost"), None, "{xml}");
        }
    }

    #[test]
    fn subscription_requests_are_approved() {
        let request = parse("<presence from='b&apos;1@localhost/r1' type='subscribe'/>");
        assert_eq!(
            approval(&request).unwrap(),
            b"<presence type='subscribed' to='b&apos;1@localhost'/>"
        );
        assert_eq!(approval(&parse("<presence from='x@localhost/r'/>")), None);
        let form: Element = "<message xmlns='jabber:client' from='bench0@localhost'>\
            <x xmlns='jabber:x:data' type='form'>\
            <field var='FORM_TYPE' type='hidden'>\
            <value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field>\
            <field var='pubsub#subscriber_jid'><value>bench1@localhost</value></field>\
            </x></message>"
            .parse()
            .unwrap();
        assert_eq!(
            approval(&form).unwrap(),
            b"<presence type='subscribed' to='bench1@localhost'/>"
        );
    }
}
