//! `fanout` (XEP-0060): an owner creates an open node, S subscribers subscribe their full JIDs,
//! and the owner publishes M items, W at a time. Measures notifications delivered per second,
//! publish round trips, publish→notification latency, lost and duplicated notifications, and
//! the CPU the server and the generator spend per notification. With `settle`, one item at a
//! time: the next is published once every subscriber has the last, and publish→last
//! notification is what a publish costs its readers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minidom::Element;
use quick_xml::Reader;
use quick_xml::events::Event;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{
    Errors, Params, SATURATED, Setup, Tally, attr, bounded, check, close_all, condition, cpu_rows,
    fmt_latency, fmt_lost, log_in_all, table,
};
use crate::client::{Client, Error, Received, Stage, within};
use crate::stats::{ServerProbe, Summary, core_share, own_cpu};
use crate::stream::plain_attributes;

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// Namespace of the published payload, `<entry seq='…' t='…'>padding</entry>`.
const NS_BENCH: &str = "urn:verona:bench";

#[derive(Clone, Debug, Serialize)]
pub struct FanoutOptions {
    pub subscribers: usize,
    pub publishes: usize,
    /// Publish iqs awaiting their answer at once.
    pub in_flight: usize,
    /// One item at a time, the next once every subscriber has the last.
    pub settle: bool,
    /// Subscriber logins, and then subscriptions, in progress at once.
    pub login_in_flight: usize,
    /// Size of each payload element; at least its markup, whatever is asked.
    pub payload_bytes: usize,
    /// The pubsub service's JID.
    pub service: String,
    pub node: String,
    /// `pubsub#persist_items`.
    pub persist: bool,
    /// `pubsub#max_items`.
    pub max_items: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct FanoutReport {
    pub scenario: &'static str,
    #[serde(flatten)]
    pub params: Params,
    #[serde(flatten)]
    pub options: FanoutOptions,
    /// Subscribers logged in and subscribed.
    pub subscribed: usize,
    /// Publish iqs answered with a result.
    pub published: usize,
    pub errors: Errors,
    /// subscribed × publishes: a refused publish counts as lost for every subscriber.
    pub expected: usize,
    /// Distinct notifications received.
    pub received: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Notifications that arrived after one with a higher sequence number.
    pub reordered: usize,
    pub none_lost: bool,
    /// From the first publish to the last notification.
    pub elapsed_s: f64,
    pub notifications_per_s: f64,
    pub publish_rtt: Option<Summary>,
    /// From just before the publish was sent to the notification being parsed.
    pub latency: Option<Summary>,
    /// With `settle`: from just before the publish was sent to the last subscriber having
    /// parsed its notification.
    pub last_latency: Option<Summary>,
    /// Server CPU time from the first publish until every subscriber finished, divided by the
    /// notifications received.
    pub server_cpu_us_per_notification: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    /// The generator's own CPU over the same window, in cores.
    pub generator_cpu_cores: f64,
    pub generator_saturated: bool,
}

/// Measurements of a run; all zero when the node could not be set up.
#[derive(Default)]
struct Outcome {
    subscribed: usize,
    tally: Tally,
    rtts: Vec<Duration>,
    /// Publish→last notification of each item, with `settle`.
    lasts: Vec<Duration>,
    /// From the first publish until every subscriber finished.
    window: Duration,
    /// From the first publish to the last notification.
    delivery: Duration,
    server_cpu: Option<Duration>,
    own_cpu: Duration,
}

pub async fn run(setup: &Setup, options: &FanoutOptions, server: ServerProbe) -> FanoutReport {
    // Payload timestamps count from here; subscribers share this process, hence this clock.
    let epoch = Instant::now();
    let mut errors = Errors::default();
    let outcome = match within(setup.op_timeout, open_node(setup, options)).await {
        Ok(owner) => fan_out(setup, options, server, owner, epoch, &mut errors).await,
        Err(e) => {
            errors.add(&e);
            Outcome::default()
        }
    };
    FanoutReport::new(setup, options, errors, outcome)
}

/// Logs the owner (account 0) in and creates the node, replacing one of the same name.
async fn open_node(setup: &Setup, options: &FanoutOptions) -> Result<Client, Error> {
    let (user, password) = setup.credentials(0);
    let mut owner = Client::login(&setup.target, &user, &password, "owner").await?;
    let field =
        |var: &str, value: &str| format!("<field var='{var}'><value>{value}</value></field>");
    let create = format!(
        "<iq type='set' to='{}' id='create'><pubsub xmlns='{NS_PUBSUB}'><create node='{}'/>\
         <configure><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{NS_PUBSUB}#node_config</value></field>\
         {}{}{}{}</x></configure></pubsub></iq>",
        attr(&options.service),
        attr(&options.node),
        field("pubsub#access_model", "open"),
        field("pubsub#persist_items", &options.persist.to_string()),
        field("pubsub#max_items", &options.max_items.to_string()),
        field("pubsub#send_last_published_item", "never"),
    );
    let mut reply = request(&mut owner, "create", &create).await?;
    if condition(&reply) == Some("conflict") {
        // Left by an earlier run under the same name: start afresh.
        check(&request(&mut owner, "delete", &delete_iq(options)).await?)?;
        reply = request(&mut owner, "create", &create).await?;
    }
    check(&reply)?;
    Ok(owner)
}

async fn fan_out(
    setup: &Setup,
    options: &FanoutOptions,
    server: ServerProbe,
    mut owner: Client,
    epoch: Instant,
    errors: &mut Errors,
) -> Outcome {
    let logins = log_in_all(
        setup,
        options.subscribers,
        options.login_in_flight,
        true,
        0..0,
    )
    .await;
    errors.merge(logins.errors);
    let subscribers = subscribe_all(logins.clients, options, setup.op_timeout, errors).await;
    let subscribed = subscribers.len();
    let (stop, stopped) = watch::channel(false);
    let node: Arc<str> = options.node.as_str().into();
    let settle = options.settle.then(|| Arc::new(Settle::new(subscribed)));
    let receivers: Vec<_> = subscribers
        .into_iter()
        .map(|client| {
            tokio::spawn(receive(
                client,
                node.clone(),
                options.publishes,
                epoch,
                stopped.clone(),
                settle.clone(),
            ))
        })
        .collect();

    let server_before = server.sample();
    let own_before = own_cpu();
    let start = Instant::now();
    let rtts = publish_all(
        &mut owner,
        options,
        epoch,
        setup.op_timeout,
        settle.as_deref(),
        errors,
    )
    .await;
    // Whatever has not arrived within one more op timeout counts as lost.
    let op_timeout = setup.op_timeout;
    let deadline = tokio::spawn(async move {
        tokio::time::sleep(op_timeout).await;
        stop.send_replace(true);
    });
    let mut tally = Tally::default();
    let mut clients = Vec::with_capacity(subscribed + 1);
    for receiver in receivers {
        let (seen, client) = receiver.await.expect("a subscriber task panicked");
        tally.merge(seen);
        match client {
            Ok(client) => clients.push(client),
            Err(e) => errors.add(&e),
        }
    }
    deadline.abort();
    let window = start.elapsed();
    let own_cpu = own_cpu() - own_before;
    let server_cpu = server_before
        .zip(server.sample())
        .map(|(before, after)| after.cpu.saturating_sub(before.cpu));

    let deleted = within(op_timeout, async {
        check(&request(&mut owner, "delete", &delete_iq(options)).await?)
    })
    .await;
    if let Err(e) = deleted {
        errors.add(&e);
    }
    clients.push(owner);
    errors.merge(close_all(clients, options.login_in_flight, op_timeout).await);
    let lasts = settle.map_or_else(Vec::new, |settle| {
        std::mem::take(&mut *settle.lasts.lock().expect("no receiver panics holding it"))
    });
    Outcome {
        subscribed,
        lasts,
        delivery: tally.last.map_or(window, |last| last - start),
        tally,
        rtts,
        window,
        server_cpu,
        own_cpu,
    }
}

/// Subscribes each client's full JID to the node, `login_in_flight` at a time; returns the
/// clients that are subscribed.
async fn subscribe_all(
    clients: Vec<Client>,
    options: &FanoutOptions,
    op_timeout: Duration,
    errors: &mut Errors,
) -> Vec<Client> {
    let (service, node) = (attr(&options.service), attr(&options.node));
    let subscriptions = bounded(clients, options.login_in_flight, |mut client| {
        let iq = format!(
            "<iq type='set' to='{service}' id='subscribe'><pubsub xmlns='{NS_PUBSUB}'>\
             <subscribe node='{node}' jid='{}'/></pubsub></iq>",
            attr(&client.jid)
        );
        async move {
            within(op_timeout, async {
                let reply = request(&mut client, "subscribe", &iq).await?;
                check(&reply)?;
                // Pending or unconfigured subscriptions would get no notifications.
                let state = reply
                    .get_child("pubsub", NS_PUBSUB)
                    .and_then(|p| p.get_child("subscription", NS_PUBSUB))
                    .and_then(|s| s.attr("subscription"));
                match state {
                    None | Some("subscribed") => Ok(()),
                    Some(other) => Err(Error {
                        stage: Stage::Pubsub,
                        detail: format!("subscription is {other}"),
                    }),
                }
            })
            .await
            .map(|()| client)
        }
    })
    .await;
    subscriptions
        .into_iter()
        .filter_map(|s| s.map_err(|e| errors.add(&e)).ok())
        .collect()
}

/// What the subscribers of a `settle` run tell the publisher: how many notifications have
/// arrived, and when each item reached its last subscriber.
struct Settle {
    subscribers: usize,
    arrived: AtomicUsize,
    all_arrived: Notify,
    lasts: Mutex<Vec<Duration>>,
}

impl Settle {
    fn new(subscribers: usize) -> Self {
        Settle {
            subscribers,
            arrived: AtomicUsize::new(0),
            all_arrived: Notify::new(),
            lasts: Mutex::new(Vec::new()),
        }
    }

    /// One subscriber has item `seq` (published `latency` ago); the publisher publishes only
    /// once every earlier item is everywhere, so the count says when this one is.
    fn arrived(&self, seq: usize, latency: Duration) {
        let arrived = self.arrived.fetch_add(1, Ordering::AcqRel) + 1;
        if arrived == (seq + 1) * self.subscribers {
            self.lasts
                .lock()
                .expect("no receiver panics holding it")
                .push(latency);
            self.all_arrived.notify_one();
        }
    }

    /// Until every subscriber has the first `items` items.
    async fn wait_for(&self, items: usize) {
        while self.arrived.load(Ordering::Acquire) < items * self.subscribers {
            self.all_arrived.notified().await;
        }
    }
}

/// Publishes item 0..publishes with at most `in_flight` unanswered (with `settle`, each once
/// every subscriber has the one before); returns the round trips of the accepted ones. Stops
/// at the first connection failure or unanswered publish.
async fn publish_all(
    owner: &mut Client,
    options: &FanoutOptions,
    epoch: Instant,
    op_timeout: Duration,
    settle: Option<&Settle>,
    errors: &mut Errors,
) -> Vec<Duration> {
    let mut sent_at: Vec<Option<Instant>> = vec![None; options.publishes];
    let mut rtts = Vec::with_capacity(options.publishes);
    let (mut sent, mut answered) = (0, 0);
    while answered < options.publishes {
        while sent < options.publishes && sent - answered < options.in_flight.max(1) {
            if let Some(settle) = settle {
                // A lost notification would stall the run: it ends as the op timeout says.
                if within(op_timeout, async {
                    settle.wait_for(sent).await;
                    Ok(())
                })
                .await
                .is_err()
                {
                    return rtts;
                }
            }
            let now = Instant::now();
            let iq = publish_iq(options, sent, now - epoch);
            if let Err(e) = owner.send(iq.as_bytes()).await {
                errors.add(&e);
                return rtts;
            }
            sent_at[sent] = Some(now);
            sent += 1;
        }
        let reply = match within(op_timeout, owner.recv()).await {
            Ok(reply) => reply,
            Err(e) => {
                errors.add(&e);
                return rtts;
            }
        };
        let seq = reply
            .attr("id")
            .and_then(|id| id.strip_prefix("publish-")?.parse::<usize>().ok());
        let Some(at) = seq.and_then(|seq| sent_at.get_mut(seq)?.take()) else {
            continue;
        };
        answered += 1;
        match check(&reply) {
            Ok(()) => rtts.push(at.elapsed()),
            Err(e) => errors.add(&e),
        }
    }
    rtts
}

/// Item `seq`, its payload padded to `payload_bytes` and stamped with its send time.
fn publish_iq(options: &FanoutOptions, seq: usize, sent: Duration) -> String {
    let head = format!(
        "<entry xmlns='{NS_BENCH}' seq='{seq}' t='{}'>",
        sent.as_nanos()
    );
    const TAIL: &str = "</entry>";
    let padding = "x".repeat(
        options
            .payload_bytes
            .saturating_sub(head.len() + TAIL.len()),
    );
    format!(
        "<iq type='set' to='{}' id='publish-{seq}'><pubsub xmlns='{NS_PUBSUB}'>\
         <publish node='{}'><item id='{seq}'>{head}{padding}{TAIL}</item></publish></pubsub></iq>",
        attr(&options.service),
        attr(&options.node),
    )
}

fn delete_iq(options: &FanoutOptions) -> String {
    format!(
        "<iq type='set' to='{}' id='delete'><pubsub xmlns='{NS_PUBSUB_OWNER}'>\
         <delete node='{}'/></pubsub></iq>",
        attr(&options.service),
        attr(&options.node),
    )
}

/// Counts the client's notifications until all `publishes` arrived or `stop` turns true.
/// Gives the client back for closing, unless its connection failed.
async fn receive(
    mut client: Client,
    node: Arc<str>,
    publishes: usize,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
    settle: Option<Arc<Settle>>,
) -> (Tally, Result<Client, Error>) {
    let mut tally = Tally::new(publishes);
    // Notifications are skimmed, not built into elements.
    let skim = |text: &str| skim_items(text, &node);
    while tally.received < publishes {
        let received = tokio::select! {
            received = client.recv_skimmed(skim) => received,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let items = match received {
            Ok(Received::Skimmed(items)) => items,
            Ok(Received::Stanza(stanza)) => notified_items(&stanza, &node).collect(),
            Err(e) => return (tally, Err(e)),
        };
        let now = Instant::now();
        for (seq, sent) in items {
            tally.record(seq, sent, now, epoch);
            if let Some(settle) = &settle {
                settle.arrived(seq, (now - epoch).saturating_sub(sent));
            }
        }
    }
    (tally, Ok(client))
}

/// The sequence number and send time of each bench item in an event notification about
/// `node`: a walk over the parsed stanza, nothing copied.
fn notified_items<'a>(
    stanza: &'a Element,
    node: &'a str,
) -> impl Iterator<Item = (usize, Duration)> + 'a {
    Some(stanza)
        .filter(|s| s.name() == "message")
        .and_then(|s| s.get_child("event", NS_EVENT)?.get_child("items", NS_EVENT))
        .filter(|items| items.attr("node") == Some(node))
        .into_iter()
        .flat_map(Element::children)
        .filter(|item| item.is("item", NS_EVENT))
        .filter_map(|item| {
            let entry = item.get_child("entry", NS_BENCH)?;
            let seq = entry.attr("seq")?.parse().ok()?;
            let sent = entry.attr("t")?.parse().ok()?;
            Some((seq, Duration::from_nanos(sent)))
        })
}

/// [`notified_items`] for a notification given as text, no element built; `None` for
/// anything else and for anything unusual (prefixes, references, namespaces declared other
/// than where the bench puts them, a second `<event/>` or `<items/>`), which is then read
/// whole.
fn skim_items(text: &str, node: &str) -> Option<Vec<(usize, Duration)>> {
    let mut reader = Reader::from_str(text);
    let mut items = Vec::new();
    // Elements open, and how many of them are message, event, items, item, in that order.
    let (mut depth, mut path) = (0usize, 0usize);
    let (mut events, mut lists, mut entry_seen) = (0, 0, false);
    loop {
        let (tag, opens) = match reader.read_event().ok()? {
            Event::Start(tag) => (tag, true),
            Event::Empty(tag) => (tag, false),
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                path = path.min(depth);
                if depth == 0 {
                    return Some(items);
                }
                continue;
            }
            Event::Eof => return None,
            _ => continue,
        };
        if tag.name().prefix().is_some() {
            return None;
        }
        let (xmlns, [node_attr, seq, sent]) = plain_attributes(&tag, ["node", "seq", "t"])?;
        let name = tag.name();
        let name = name.as_ref();
        let xmlns = xmlns.as_deref();
        let in_event = xmlns.is_none_or(|ns| ns == NS_EVENT);
        if depth == path {
            match path {
                0 if name == "message" && xmlns.is_none_or(|ns| ns == "jabber:client") => {}
                0 => return None,
                1 if name == "event" && xmlns == Some(NS_EVENT) => {
                    events += 1;
                }
                1 if name == "event" => return None,
                1 => {}
                2 if name == "items" && in_event => {
                    lists += 1;
                    if node_attr.as_deref() != Some(node) {
                        return None;
                    }
                }
                2 if in_event => {}
                3 if name == "item" && in_event => entry_seen = false,
                3 if in_event => {}
                4 if name == "entry" && xmlns == Some(NS_BENCH) && !entry_seen => {
                    entry_seen = true;
                    let seq = seq.and_then(|seq| seq.parse().ok());
                    let sent = sent.and_then(|sent| sent.parse().ok());
                    if let (Some(seq), Some(sent)) = (seq, sent) {
                        items.push((seq, Duration::from_nanos(sent)));
                    }
                }
                _ if in_event || path == 4 => {}
                _ => return None,
            }
            if events > 1 || lists > 1 {
                return None;
            }
            let on_path = matches!(
                (path, name),
                (0, "message") | (1, "event") | (2, "items") | (3, "item")
            );
            if opens && on_path {
                path += 1;
            }
        }
        depth += usize::from(opens);
    }
}

/// Sends an iq and waits for the answer with the same id, skipping anything else (such as
/// notifications) that arrives meanwhile.
pub(super) async fn request(client: &mut Client, id: &str, iq: &str) -> Result<Element, Error> {
    client.send(iq.as_bytes()).await?;
    loop {
        let reply = client.recv().await?;
        if reply.name() == "iq" && reply.attr("id") == Some(id) {
            return Ok(reply);
        }
    }
}

impl FanoutReport {
    fn new(setup: &Setup, options: &FanoutOptions, errors: Errors, outcome: Outcome) -> Self {
        let Outcome {
            subscribed,
            mut tally,
            mut rtts,
            mut lasts,
            window,
            delivery,
            server_cpu,
            own_cpu,
        } = outcome;
        let expected = subscribed * options.publishes;
        let generator_cpu_cores = core_share(own_cpu, window);
        FanoutReport {
            scenario: "fanout",
            params: setup.params(),
            options: options.clone(),
            subscribed,
            published: rtts.len(),
            errors,
            expected,
            received: tally.received,
            lost: expected.saturating_sub(tally.received),
            duplicated: tally.duplicated,
            reordered: tally.reordered,
            none_lost: expected > 0 && tally.received == expected,
            elapsed_s: delivery.as_secs_f64(),
            notifications_per_s: tally.received as f64
                / delivery.as_secs_f64().max(f64::MIN_POSITIVE),
            publish_rtt: Summary::of(&mut rtts),
            latency: Summary::of(&mut tally.latencies),
            last_latency: Summary::of(&mut lasts),
            server_cpu_us_per_notification: server_cpu
                .map(|cpu| cpu.as_secs_f64() * 1e6 / tally.received.max(1) as f64),
            server_cpu_cores: server_cpu.map(|cpu| core_share(cpu, window)),
            generator_cpu_cores,
            generator_saturated: generator_cpu_cores >= SATURATED,
        }
    }

    /// Every expected notification arrived exactly once, and nothing failed.
    pub fn ok(&self) -> bool {
        self.none_lost && self.duplicated == 0 && self.errors.total == 0
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let lost = fmt_lost(self.none_lost, self.lost, self.expected);
        table(
            &format!(
                "fanout: {} subscribers x {} publishes ({}, {} B payloads, persist {}) \
                 to {} node {}, {} via {}{}",
                o.subscribers,
                o.publishes,
                if o.settle {
                    "one at a time, each once all have the last".to_owned()
                } else {
                    format!("{} in flight", o.in_flight)
                },
                o.payload_bytes,
                o.persist,
                o.service,
                o.node,
                self.params.mechanism,
                self.params.addr,
                if self.params.tls { " (STARTTLS)" } else { "" }
            ),
            &[
                (
                    "subscribed",
                    format!("{} of {}", self.subscribed, o.subscribers),
                ),
                (
                    "published",
                    format!("{} of {}", self.published, o.publishes),
                ),
                (
                    "notifications",
                    format!(
                        "{} of {} in {:.2} s: {:.0}/s",
                        self.received, self.expected, self.elapsed_s, self.notifications_per_s
                    ),
                ),
                ("lost", lost),
                ("duplicated", self.duplicated.to_string()),
                ("reordered", self.reordered.to_string()),
                ("publish RTT", fmt_latency(&self.publish_rtt)),
                ("publish->notify", fmt_latency(&self.latency)),
                ("publish->last", fmt_latency(&self.last_latency)),
                ("errors", self.errors.describe()),
            ]
            .into_iter()
            .chain(cpu_rows(
                "server CPU/notif",
                self.server_cpu_us_per_notification,
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

    fn options(payload_bytes: usize) -> FanoutOptions {
        FanoutOptions {
            subscribers: 1,
            publishes: 10,
            in_flight: 1,
            settle: false,
            login_in_flight: 1,
            payload_bytes,
            service: "pubsub.localhost".into(),
            node: "n'1".into(),
            persist: true,
            max_items: 10,
        }
    }

    fn payload(iq: &str) -> &str {
        let start = iq.find("<entry").unwrap();
        let end = iq.find("</entry>").unwrap() + "</entry>".len();
        &iq[start..end]
    }

    #[test]
    fn payloads_are_padded_to_size() {
        let iq = publish_iq(&options(300), 7, Duration::from_nanos(123_456));
        assert_eq!(payload(&iq).len(), 300);
        assert!(iq.contains("id='publish-7'") && iq.contains("node='n&apos;1'"));
        let small = publish_iq(&options(0), 7, Duration::from_nanos(1));
        assert_eq!(
            payload(&small),
            "<entry xmlns='urn:verona:bench' seq='7' t='1'></entry>"
        );
    }

    #[test]
    fn notifications_are_read_from_the_event() {
        let stanza: Element = format!(
            "<message xmlns='jabber:client' from='pubsub.localhost'>\
             <event xmlns='{NS_EVENT}'><items node='n'>\
             <item id='3'><entry xmlns='{NS_BENCH}' seq='3' t='1000'>xx</entry></item>\
             <item id='4'><entry xmlns='{NS_BENCH}' seq='4' t='2000'/></item>\
             <item id='x'><other xmlns='urn:x'/></item>\
             </items></event></message>"
        )
        .parse()
        .unwrap();
        let items: Vec<_> = notified_items(&stanza, "n").collect();
        assert_eq!(
            items,
            [
                (3, Duration::from_nanos(1000)),
                (4, Duration::from_nanos(2000))
            ]
        );
        assert_eq!(notified_items(&stanza, "other").count(), 0);
    }

    #[test]
    fn a_skimmed_notification_reads_as_the_whole_one_or_is_left_to_it() {
        let event = |inner: &str| {
            format!(
                "<message xmlns='jabber:client' from='pubsub.localhost' to='b@localhost/r'>\
                 <event xmlns='{NS_EVENT}'>{inner}</event>\
                 <addresses xmlns='http://jabber.org/protocol/address'>\
                 <address type='replyto' jid='a@localhost/x'/></addresses></message>"
            )
        };
        let entry = |seq: usize| format!("<entry xmlns='{NS_BENCH}' seq='{seq}' t='{seq}00'/>");
        // The text, and whether the skim takes it (else the whole stanza is read).
        let cases = [
            (
                event(&format!(
                    "<items node='n'><item id='3' publisher='a@localhost/x'>{}</item></items>",
                    entry(3)
                )),
                true,
            ),
            (
                event(&format!(
                    "<items node='n'><item id='3'>{}</item><item id='4'>{}{}</item><retract id='1'/></items>",
                    entry(3),
                    entry(4),
                    entry(5)
                )),
                true,
            ),
            (
                event(&format!(
                    "<items node='n'><item id='x'><other xmlns='urn:x'/></item><item id='6'><entry xmlns='{NS_BENCH}'/></item></items>"
                )),
                true,
            ),
            (
                event(&format!(
                    "<items node='other'><item id='3'>{}</item></items>",
                    entry(3)
                )),
                false,
            ),
            (
                event(&format!(
                    "<items node='n'><item id='3'>{}</item></items><items node='n'/>",
                    entry(3)
                )),
                false,
            ),
            (
                event(&format!(
                    "<items node='n' xmlns='urn:x'><item id='3'>{}</item></items>",
                    entry(3)
                )),
                false,
            ),
            (
                event(&format!(
                    "<items node='n'><e:item xmlns:e='{NS_EVENT}'>{}</e:item></items>",
                    entry(3)
                )),
                false,
            ),
            (
                event(&format!(
                    "<items node='n&apos;'><item id='3'>{}</item></items>",
                    entry(3)
                )),
                false,
            ),
            (
                "<message xmlns='jabber:client'><event xmlns='urn:x'><items node='n'/></event></message>"
                    .to_owned(),
                false,
            ),
            (
                "<iq xmlns='jabber:client' type='result' id='publish-3'/>".to_owned(),
                false,
            ),
        ];
        for (xml, taken) in cases {
            let skimmed = skim_items(&xml, "n");
            assert_eq!(skimmed.is_some(), taken, "{xml}");
            if let Some(skimmed) = skimmed {
                let whole: Element = xml.parse().expect("well-formed");
                let expected: Vec<_> = notified_items(&whole, "n").collect();
                assert_eq!(skimmed, expected, "{xml}");
            }
        }
    }
}
