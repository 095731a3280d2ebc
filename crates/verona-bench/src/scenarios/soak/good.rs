//! The good clients of the soak: logged in from many addresses, idle ones reading whatever
//! comes, active ones timing a publish, a message and a ping every interval, and the check at
//! the end that every acknowledged publish is still there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use minidom::Element;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{DataCheck, Ended, KindReport, Phase, Samples, SoakOptions, good_address};
use crate::client::{Client, Error, Origin, Stage, connect, within};
use crate::scenarios::fanout::request;
use crate::scenarios::{Errors, Setup, attr, bounded, check, condition};

const NS_CLIENT: &str = "jabber:client";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// Namespace of the published payload.
const NS_BENCH: &str = "urn:verona:bench";
/// The node each active client publishes to, on its own PEP service.
pub(super) const NODE: &str = "soak";
/// Item ids one retrieval may name (the server answers at most 100 items).
const IDS_PER_REQUEST: usize = 100;
/// Verifying sessions at once.
const VERIFY_IN_FLIGHT: usize = 16;
/// While draining, how often an active client looks whether it is done.
const DRAIN_CHECK: Duration = Duration::from_millis(100);

/// `user@domain` of a full JID.
pub(super) fn bare(jid: &str) -> String {
    jid.split_once('/').map_or(jid, |(bare, _)| bare).to_owned()
}

/// What an active client sent its peer, for the peer to know when all of it is in.
#[derive(Default)]
struct Sending {
    messages: AtomicU64,
    /// It sends no more: its count is final. Without this, a peer that found every counted
    /// message in while the last one was being sent stopped reading before it came, and
    /// counted it lost.
    done: AtomicBool,
}

impl Sending {
    /// The messages sent, once no more will be.
    fn total(&self) -> Option<u64> {
        self.done
            .load(Ordering::Acquire)
            .then(|| self.messages.load(Ordering::Relaxed))
    }
}

/// Source-address numbers the good clients are spread over.
fn addresses(good: usize, per_address: usize) -> usize {
    good.div_ceil(per_address.max(1)).max(1)
}

/// Where good client `n` connects from. Consecutive clients use different addresses, so the
/// logins in flight never crowd one address past its unauthenticated limit.
fn origin(n: usize, addresses: usize) -> Origin {
    Origin {
        source: Some(good_address(n % addresses)),
        recv_buffer: None,
    }
}

/// Logs good client `n` in (account `n`, resource `g{n}`) from its address.
async fn log_in(
    setup: &Setup,
    n: usize,
    addresses: usize,
    resource: &str,
) -> Result<Client, Error> {
    let (user, password) = setup.credentials(n);
    within(setup.op_timeout, async {
        let tcp = connect(setup.target.addr, origin(n, addresses))
            .await
            .map_err(|e| Error {
                stage: Stage::Connect,
                detail: e.to_string(),
            })?;
        Client::login_on(tcp, &setup.target, &user, &password, resource).await
    })
    .await
}

/// The good clients, logged in and announced.
pub(super) struct Goods {
    pub idle: Vec<Client>,
    /// Active clients with their number.
    pub active: Vec<(usize, Client)>,
    pub idle_report: KindReport,
    pub active_report: KindReport,
}

/// Logs in every good client, `login_in_flight` at a time; clients `0..active` are the active
/// ones.
pub(super) async fn log_in_all(setup: &Setup, options: &SoakOptions, mix: &super::Mix) -> Goods {
    let addresses = addresses(mix.good(), options.per_good_address);
    let shared = Arc::new(setup.clone());
    let logins = bounded(0..mix.good(), options.login_in_flight, |n| {
        let setup = shared.clone();
        async move {
            let login = async {
                let mut client = log_in(&setup, n, addresses, &format!("g{n}")).await?;
                within(setup.op_timeout, client.send(b"<presence/>")).await?;
                Ok::<_, Error>(client)
            };
            (n, login.await)
        }
    })
    .await;
    let report = |slots| KindReport {
        slots,
        addresses: addresses.min(slots),
        attempts: slots as u64,
        ..KindReport::default()
    };
    let mut goods = Goods {
        idle: Vec::with_capacity(mix.idle),
        active: Vec::with_capacity(mix.active),
        idle_report: report(mix.idle),
        active_report: report(mix.active),
    };
    for (n, login) in logins {
        let is_active = n < mix.active;
        let report = if is_active {
            &mut goods.active_report
        } else {
            &mut goods.idle_report
        };
        match login {
            Ok(client) => {
                report.logged_in += 1;
                if is_active {
                    goods.active.push((n, client));
                } else {
                    goods.idle.push(client);
                }
            }
            Err(e) => report.count(Ended::LoginFailed(e.stage.as_str(), e.to_string())),
        }
    }
    goods
}

/// Reads what comes to an idle client until `stop`; gives the stanzas it got, and the client
/// or why the server ended it.
pub(super) async fn idle(
    mut client: Client,
    mut stop: watch::Receiver<bool>,
) -> (u64, Result<Client, String>) {
    let mut stanzas = 0;
    loop {
        tokio::select! {
            stanza = client.recv() => match stanza {
                Ok(_) => stanzas += 1,
                Err(e) => return (stanzas, Err(reason(&e))),
            },
            _ = stop.wait_for(|stop| *stop) => return (stanzas, Ok(client)),
        }
    }
}

/// What a good client saw when the server ended it, as [`Ended::ByServer`] counts it.
fn reason(error: &Error) -> String {
    match error.detail.strip_prefix("stream error: ") {
        Some(condition) => condition.to_owned(),
        None if error.detail.starts_with("the server closed") => "closed".to_owned(),
        None => error.detail.clone(),
    }
}

/// An active client ready to run.
pub(super) struct Active {
    pub n: usize,
    pub client: Client,
    /// The next active client's full JID, which this one messages.
    peer: String,
    /// Messages this client sent.
    sent: Arc<Sending>,
    /// Messages the previous active client (the one messaging this one) sent.
    sender_sent: Arc<Sending>,
    /// Delay before the first operation, so the clients spread over the interval.
    offset: Duration,
}

/// Creates each active client's node (open, persistent, `max_items`) and links them in a
/// ring: each messages the next. A client whose node cannot be made is dropped, with an error.
pub(super) async fn prepare(
    clients: Vec<(usize, Client)>,
    options: &SoakOptions,
    op_timeout: Duration,
    errors: &mut Errors,
) -> Vec<Active> {
    let create = create_iq(options.max_items);
    let created = bounded(clients, options.login_in_flight, |(n, mut client)| {
        let create = create.clone();
        async move {
            let made = within(op_timeout, async {
                check(&request(&mut client, "create", &create).await?)
            })
            .await;
            (n, made.map(|()| client))
        }
    })
    .await;
    let mut ready: Vec<(usize, Client)> = created
        .into_iter()
        .filter_map(|(n, made)| {
            made.map(|client| (n, client))
                .map_err(|e| errors.add(&e))
                .ok()
        })
        .collect();
    ready.sort_by_key(|(n, _)| *n);
    let count = ready.len();
    let sent: Vec<Arc<Sending>> = (0..count).map(|_| Arc::default()).collect();
    let jids: Vec<String> = ready.iter().map(|(_, c)| c.jid.clone()).collect();
    let interval = Duration::from_millis(options.interval_ms);
    ready
        .into_iter()
        .enumerate()
        .map(|(i, (n, client))| Active {
            n,
            client,
            peer: jids[(i + 1) % count].clone(),
            sent: sent[i].clone(),
            sender_sent: sent[(i + count - 1) % count].clone(),
            offset: interval.mul_f64(i as f64 / count as f64),
        })
        .collect()
}

fn create_iq(max_items: usize) -> String {
    let field =
        |var: &str, value: &str| format!("<field var='{var}'><value>{value}</value></field>");
    format!(
        "<iq type='set' id='create'><pubsub xmlns='{NS_PUBSUB}'><create node='{NODE}'/>\
         <configure><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{NS_PUBSUB}#node_config</value></field>\
         {}{}{}</x></configure></pubsub></iq>",
        field("pubsub#access_model", "open"),
        field("pubsub#persist_items", "true"),
        field("pubsub#max_items", &max_items.to_string()),
    )
}

/// What an active client measured and sent.
pub(super) struct ActiveEnd {
    pub n: usize,
    pub quiet: Samples,
    pub soak: Samples,
    /// Publishes sent, acknowledged or not (item ids 0..published).
    pub published: u64,
    /// Item ids acknowledged with a result.
    pub acked: Vec<u64>,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub messages_duplicated: u64,
    /// Its own messages the server returned as errors (not delivered now; kept in the archive).
    pub messages_bounced: u64,
    /// Stanzas received, of any kind.
    pub stanzas: u64,
    /// The client, or why the server ended it.
    pub client: Result<Client, String>,
}

#[derive(Clone, Copy)]
enum Op {
    Publish(u64),
    Ping,
}

struct Pending {
    op: Op,
    sent: Instant,
    phase: Phase,
}

/// The operations of one active client; see [`active`].
struct Run {
    quiet: Samples,
    soak: Samples,
    pending: HashMap<String, Pending>,
    seq: u64,
    acked: Vec<u64>,
    /// Which message numbers from the sender arrived, one bit each.
    seen: Vec<u64>,
    received: u64,
    duplicated: u64,
    bounced: u64,
    stanzas: u64,
}

impl Run {
    fn samples(&mut self, phase: Phase) -> Option<&mut Samples> {
        match phase {
            Phase::Quiet => Some(&mut self.quiet),
            Phase::Soak => Some(&mut self.soak),
            _ => None,
        }
    }

    /// Counts requests unanswered for `limit` as timed out and forgets them.
    fn expire(&mut self, limit: Duration) {
        let now = Instant::now();
        let late: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now - p.sent >= limit)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            let pending = self.pending.remove(&id).expect("listed above");
            if let Some(samples) = self.samples(pending.phase) {
                samples.timeouts += 1;
            }
        }
    }

    fn on_stanza(&mut self, stanza: &Element, epoch: Instant) {
        self.stanzas += 1;
        let now = Instant::now();
        if stanza.name() == "iq" {
            let Some(pending) = stanza.attr("id").and_then(|id| self.pending.remove(id)) else {
                return;
            };
            let refusal = condition(stanza).map(str::to_owned);
            let Some(samples) = self.samples(pending.phase) else {
                return;
            };
            match (refusal, pending.op) {
                (Some(condition), _) => *samples.refused.entry(condition).or_default() += 1,
                (None, Op::Publish(item)) => {
                    samples.publish.push(now - pending.sent);
                    self.acked.push(item);
                }
                (None, Op::Ping) => samples.ping.push(now - pending.sent),
            }
            return;
        }
        if stanza.name() == "message" && stanza.attr("type") == Some("error") {
            // One of its own messages, refused (a full queue at the peer, say).
            self.bounced += 1;
            return;
        }
        let Some((seq, sent, phase)) = numbered(stanza) else {
            return;
        };
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[word] |= bit;
        self.received += 1;
        if let Some(samples) = self.samples(phase) {
            samples.message.push((now - epoch).saturating_sub(sent));
        }
    }
}

/// Every `interval`, while the phase is quiet or soak: publishes item `seq` to its node,
/// messages its peer and pings the server, timing each. Once the phase moves on it waits for
/// its last answers and for every message its sender sent (at most `op_timeout`).
pub(super) async fn active(
    a: Active,
    interval: Duration,
    op_timeout: Duration,
    domain: Arc<str>,
    epoch: Instant,
    mut phase: watch::Receiver<Phase>,
) -> ActiveEnd {
    let Active {
        n,
        mut client,
        peer,
        sent,
        sender_sent,
        offset,
    } = a;
    let peer = attr(&peer);
    let mut run = Run {
        quiet: Samples::default(),
        soak: Samples::default(),
        pending: HashMap::new(),
        seq: 0,
        acked: Vec::new(),
        seen: Vec::new(),
        received: 0,
        duplicated: 0,
        bounced: 0,
        stanzas: 0,
    };
    let mut tick = tokio::time::interval_at(Instant::now() + offset, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining: Option<Instant> = None;
    let mut failure = None;
    loop {
        let now_phase = *phase.borrow();
        let measuring = matches!(now_phase, Phase::Quiet | Phase::Soak);
        if !measuring {
            // From here on this client sends nothing.
            sent.done.store(true, Ordering::Release);
            let since = *draining.get_or_insert_with(Instant::now);
            run.expire(op_timeout);
            let all_in = sender_sent
                .total()
                .is_some_and(|total| run.received >= total);
            if (run.pending.is_empty() && all_in) || since.elapsed() >= op_timeout {
                break;
            }
        }
        tokio::select! {
            stanza = client.recv() => match stanza {
                Ok(stanza) => run.on_stanza(&stanza, epoch),
                Err(e) => {
                    failure = Some(reason(&e));
                    break;
                }
            },
            _ = tick.tick(), if measuring => {
                run.expire(op_timeout);
                let seq = run.seq;
                run.seq += 1;
                let at = Instant::now();
                let batch = operations(seq, &peer, &domain, (at - epoch).as_nanos(), now_phase);
                if let Err(e) = client.send(batch.as_bytes()).await {
                    failure = Some(reason(&e));
                    break;
                }
                sent.messages.fetch_add(1, Ordering::Relaxed);
                for (id, op) in [(format!("p{seq}"), Op::Publish(seq)), (format!("q{seq}"), Op::Ping)] {
                    run.pending.insert(id, Pending { op, sent: at, phase: now_phase });
                }
            },
            changed = phase.changed() => if changed.is_err() {
                break;
            },
            _ = tokio::time::sleep(DRAIN_CHECK), if !measuring => {}
        }
    }
    sent.done.store(true, Ordering::Release);
    ActiveEnd {
        n,
        quiet: run.quiet,
        soak: run.soak,
        published: run.seq,
        acked: run.acked,
        messages_sent: sent.messages.load(Ordering::Relaxed),
        messages_received: run.received,
        messages_duplicated: run.duplicated,
        messages_bounced: run.bounced,
        stanzas: run.stanzas,
        client: match failure {
            None => Ok(client),
            Some(reason) => Err(reason),
        },
    }
}

/// One round of an active client, written at once: publish item `seq`, message `seq` to `peer`
/// (escaped), ping the server. The message body carries its number, send time and phase.
fn operations(seq: u64, peer: &str, domain: &str, sent_nanos: u128, phase: Phase) -> String {
    format!(
        "<iq type='set' id='p{seq}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{NODE}'>\
         <item id='{seq}'><entry xmlns='{NS_BENCH}' t='{sent_nanos}'>{PADDING}</entry></item>\
         </publish></pubsub></iq>\
         <message type='chat' to='{peer}' id='m{seq}'><body>{seq} {sent_nanos} {}</body></message>\
         <iq type='get' to='{domain}' id='q{seq}'><ping xmlns='urn:xmpp:ping'/></iq>",
        phase.as_str()
    )
}

/// Payload text, so items are of a realistic size (about 100 bytes with their markup).
const PADDING: &str = "The quick brown fox jumps over the lazy dog";

/// The number, send time and phase of an active client's message; `None` for anything else.
fn numbered(stanza: &Element) -> Option<(u64, Duration, Phase)> {
    if stanza.name() != "message" || stanza.attr("type") != Some("chat") {
        return None;
    }
    let body = stanza.get_child("body", NS_CLIENT)?.text();
    let mut fields = body.split(' ');
    let seq = fields.next()?.parse().ok()?;
    let sent = Duration::from_nanos(fields.next()?.parse().ok()?);
    let phase = match fields.next()? {
        "quiet" => Phase::Quiet,
        "soak" => Phase::Soak,
        _ => return None,
    };
    Some((seq, sent, phase))
}

/// Fetches every acknowledged item that its node must still hold (the last `max_items`
/// published) from a new session of its account, and counts the messages. `good`: the number
/// of good clients, which places each on its address.
pub(super) async fn verify(
    setup: &Setup,
    options: &SoakOptions,
    good: usize,
    ends: &[ActiveEnd],
    errors: &mut Errors,
) -> DataCheck {
    let mut check = DataCheck::default();
    for end in ends {
        check.acknowledged += end.acked.len() as u64;
        check.messages_sent += end.messages_sent;
        check.messages_received += end.messages_received;
        check.messages_duplicated += end.messages_duplicated;
        check.messages_bounced += end.messages_bounced;
    }
    // A bounced message was refused with its sender told, not lost silently.
    check.messages_lost = check
        .messages_sent
        .saturating_sub(check.messages_received + check.messages_bounced);
    let addresses = addresses(good, options.per_good_address);
    let shared = Arc::new(setup.clone());
    let wanted: Vec<(usize, Vec<u64>)> = ends
        .iter()
        .map(|end| (end.n, retained(end, options.max_items)))
        .collect();
    let results = bounded(wanted, VERIFY_IN_FLIGHT, |(n, items)| {
        let setup = shared.clone();
        async move {
            let found = fetch(&setup, n, addresses, &items).await;
            (n, items, found)
        }
    })
    .await;
    for (n, items, found) in results {
        check.checked += items.len() as u64;
        match found {
            Ok(found) => {
                let missing = absent(&items, &found);
                check.found += (items.len() - missing.len()) as u64;
                check.missing += missing.len() as u64;
                if let Some(first) = missing.first() {
                    check
                        .first_missing
                        .get_or_insert_with(|| format!("item {first} of account {n}"));
                }
            }
            Err(e) => {
                check.unchecked += items.len() as u64;
                errors.add(&e);
            }
        }
    }
    check
}

/// The acknowledged items the node must still hold: publishing past `max_items` rightly
/// retracts the oldest, and unanswered publishes may have counted too.
fn retained(end: &ActiveEnd, max_items: usize) -> Vec<u64> {
    let oldest = end.published.saturating_sub(max_items as u64);
    end.acked.iter().copied().filter(|&i| i >= oldest).collect()
}

/// The items not found.
fn absent(items: &[u64], found: &HashSet<u64>) -> Vec<u64> {
    items
        .iter()
        .copied()
        .filter(|i| !found.contains(i))
        .collect()
}

/// The ids among `items` that account `n`'s node holds, asked from a new session.
async fn fetch(
    setup: &Setup,
    n: usize,
    addresses: usize,
    items: &[u64],
) -> Result<HashSet<u64>, Error> {
    let mut client = log_in(setup, n, addresses, "verify").await?;
    let mut found = HashSet::with_capacity(items.len());
    for (k, chunk) in items.chunks(IDS_PER_REQUEST).enumerate() {
        let id = format!("v{k}");
        let ids: String = chunk.iter().map(|i| format!("<item id='{i}'/>")).collect();
        let iq = format!(
            "<iq type='get' id='{id}'><pubsub xmlns='{NS_PUBSUB}'><items node='{NODE}'>{ids}</items></pubsub></iq>"
        );
        let reply = within(setup.op_timeout, request(&mut client, &id, &iq)).await?;
        check(&reply)?;
        let held = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("items", NS_PUBSUB))
            .into_iter()
            .flat_map(Element::children)
            .filter_map(|item| item.attr("id")?.parse::<u64>().ok());
        found.extend(held);
    }
    within(setup.op_timeout, client.close()).await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.replace("<message ", "<message xmlns='jabber:client' ")
            .replace("<iq ", "<iq xmlns='jabber:client' ")
            .parse()
            .unwrap()
    }

    #[test]
    fn operations_are_three_stanzas() {
        let text = operations(7, "b&apos;1@localhost/g1", "localhost", 1234, Phase::Soak);
        let wrapped: Element = format!("<x xmlns='jabber:client'>{text}</x>")
            .parse()
            .unwrap();
        let names: Vec<&str> = wrapped.children().map(Element::name).collect();
        assert_eq!(names, ["iq", "message", "iq"]);
        let message = wrapped.children().nth(1).unwrap();
        assert_eq!(message.attr("to"), Some("b'1@localhost/g1"));
        assert_eq!(
            numbered(message),
            Some((7, Duration::from_nanos(1234), Phase::Soak))
        );
        let publish = wrapped.children().next().unwrap();
        assert_eq!(publish.attr("id"), Some("p7"));
        assert!(text.contains("<item id='7'>"));
    }

    #[test]
    fn other_messages_are_not_numbered() {
        for xml in [
            "<message type='chat'><body>1 2 drain</body></message>",
            "<message type='chat'><body>1 2</body></message>",
            "<message type='normal'><body>1 2 soak</body></message>",
        ] {
            assert_eq!(numbered(&parse(xml)), None, "{xml}");
        }
    }

    #[test]
    fn run_counts_answers_and_receipts() {
        let epoch = Instant::now();
        let mut run = Run {
            quiet: Samples::default(),
            soak: Samples::default(),
            pending: HashMap::new(),
            seq: 1,
            acked: Vec::new(),
            seen: Vec::new(),
            received: 0,
            duplicated: 0,
            bounced: 0,
            stanzas: 0,
        };
        for (id, op) in [("p0", Op::Publish(0)), ("q0", Op::Ping)] {
            let pending = Pending {
                op,
                sent: Instant::now(),
                phase: Phase::Quiet,
            };
            run.pending.insert(id.into(), pending);
        }
        run.on_stanza(&parse("<iq type='result' id='p0'/>"), epoch);
        run.on_stanza(
            &parse(
                "<iq type='error' id='q0'><error type='wait'>\
                 <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            ),
            epoch,
        );
        let message = parse("<message type='chat'><body>70 0 soak</body></message>");
        run.on_stanza(&message, epoch);
        run.on_stanza(&message, epoch);
        let bounce = parse(
            "<message type='error'><body>71 0 soak</body><error type='wait'>\
             <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        );
        run.on_stanza(&bounce, epoch);
        assert_eq!(run.acked, [0]);
        assert_eq!(run.quiet.publish.len(), 1);
        assert_eq!(run.quiet.refused["resource-constraint"], 1);
        assert_eq!((run.received, run.duplicated, run.stanzas), (1, 1, 5));
        assert_eq!(run.bounced, 1);
        assert_eq!(run.soak.message.len(), 1);
        assert!(run.pending.is_empty());
    }

    #[test]
    fn a_senders_count_is_final_only_once_it_is_done() {
        let sending = Sending::default();
        sending.messages.fetch_add(3, Ordering::Relaxed);
        assert_eq!(sending.total(), None);
        sending.done.store(true, Ordering::Release);
        assert_eq!(sending.total(), Some(3));
    }

    #[test]
    fn late_requests_time_out() {
        let mut run = Run {
            quiet: Samples::default(),
            soak: Samples::default(),
            pending: HashMap::new(),
            seq: 0,
            acked: Vec::new(),
            seen: Vec::new(),
            received: 0,
            duplicated: 0,
            bounced: 0,
            stanzas: 0,
        };
        run.pending.insert(
            "p0".into(),
            Pending {
                op: Op::Publish(0),
                sent: Instant::now(),
                phase: Phase::Soak,
            },
        );
        run.expire(Duration::from_secs(60));
        assert_eq!(run.soak.timeouts, 0);
        run.expire(Duration::ZERO);
        assert_eq!(run.soak.timeouts, 1);
        assert!(run.pending.is_empty());
    }

    #[test]
    fn good_clients_spread_over_addresses() {
        assert_eq!(addresses(8_780, 64), 138);
        assert_eq!(addresses(10, 64), 1);
        let a = origin(0, 138).source.unwrap();
        let b = origin(1, 138).source.unwrap();
        assert_ne!(a, b);
        assert_eq!(origin(138, 138).source, Some(a));
        assert_eq!(bare("a@b/c"), "a@b");
        assert_eq!(bare("a@b"), "a@b");
    }

    #[test]
    fn the_node_is_created_open_and_persistent() {
        let iq: Element = create_iq(1000)
            .replace("<iq ", "<iq xmlns='jabber:client' ")
            .parse()
            .unwrap();
        let text = String::from_utf8(verona_stream::element_bytes(&iq)).unwrap();
        assert!(text.contains("<create node='soak'/>"));
        for value in ["open", "true", "1000"] {
            assert!(text.contains(&format!("<value>{value}</value>")), "{value}");
        }
    }

    #[test]
    fn only_what_the_node_must_hold_is_checked() {
        let end = ActiveEnd {
            n: 0,
            quiet: Samples::default(),
            soak: Samples::default(),
            published: 12,
            acked: vec![0, 1, 5, 9, 11],
            messages_sent: 0,
            messages_received: 0,
            messages_duplicated: 0,
            messages_bounced: 0,
            stanzas: 0,
            client: Err("closed".into()),
        };
        assert_eq!(retained(&end, 10), [5, 9, 11]);
        assert_eq!(retained(&end, 1000), [0, 1, 5, 9, 11]);
        let found = HashSet::from([5, 11]);
        assert_eq!(absent(&[5, 9, 11], &found), [9]);
    }
}
