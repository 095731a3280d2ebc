//! The hostile connections of the soak. Each kind has its slots, spread over a few source
//! addresses of its own; each slot connects, misbehaves until the server ends the connection
//! (or it gives up waiting), pauses about a second and starts again, until the soak ends.
//! The variant a slot plays is fixed by its number, so the mix stays the same all along.
//!
//! - garbage: random bytes or malformed XML, before the stream, in it, as the TLS handshake,
//!   and inside TLS.
//! - slow readers: log in through a small receive buffer, subscribe to the busy nodes, ask for
//!   their items five times a second and read a few hundred bytes a second.
//! - stalled writers: half a stream header, or half a stanza before TLS, after it, or after
//!   authenticating, then nothing.
//! - floods: log in and send pings, messages to idle good clients and publishes to their own
//!   node as fast as the server takes them.
//! - huge stanzas: over the pre-authentication limit before and after TLS, over the stanza
//!   limit after authenticating, and one that never ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Ended, KindReport, Mix, SoakOptions, hostile_address};
use crate::client::{Client, Error, Io, Origin, Stage, Target, Upto, connect, negotiate, within};
use crate::populate::SplitMix;
use crate::scenarios::{Setup, attr};

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// Sessions of one hostile account at once, below the default `max_sessions_per_account`
/// (20) so that logins are refused by nothing but the limits under test.
const SESSIONS_PER_ACCOUNT: usize = 16;
/// Slots start within this long after the soak begins (within a quarter of a shorter soak).
const RAMP: Duration = Duration::from_secs(10);
/// Pause between the end of one connection of a slot and the next: one second and up to one
/// more, so a slot's reconnections stay bounded.
const BACKOFF: Duration = Duration::from_secs(1);
const BACKOFF_JITTER_MS: usize = 1_000;
/// How long a connection waits for the server to end it, when it should: past the default
/// `unauthenticated_timeout_secs` (30 s).
const WAIT_FOR_END: Duration = Duration::from_secs(45);
/// Time allowed for each step before a connection starts to misbehave.
const NEGOTIATION: Duration = Duration::from_secs(30);
/// How long a slow reader reads fast at the end, to see whether the server had ended it.
const SLOW_DRAIN: Duration = Duration::from_secs(10);
/// SO_RCVBUF of slow readers (Linux doubles it).
const SLOW_RECV_BUFFER: u32 = 4096;
/// Busy nodes each slow reader subscribes to.
const SLOW_SUBSCRIPTIONS: usize = 10;
/// A slow reader asks for a busy node's items and reads a little this often: what it asks for
/// outgrows what it reads, until the server's socket buffer for it (up to 4 MiB on Linux) is
/// full and the server's own defences must act.
const SLOW_TICK: Duration = Duration::from_millis(200);
const SLOW_TICKS_PER_SEC: usize = 5;
/// Random bytes a garbage connection sends.
const NOISE: usize = 512;
/// A stanza over the default `max_unauthenticated_stanza_bytes` (16 KiB).
const HUGE_BEFORE_AUTH: usize = 64 * 1024;
/// A stanza over the default `max_stanza_bytes` (256 KiB).
const HUGE_AFTER_AUTH: usize = 320 * 1024;
/// Text of a stanza that never ends.
const ENDLESS: usize = 1024 * 1024;
/// Bytes of stanzas a flood writes at a time.
const FLOOD_CHUNK: usize = 64 * 1024;
/// Bytes of the server's output kept to find a stream error in when it closes.
const TAIL: usize = 4096;
/// How long the slots get to stop when the soak ends.
const GRACE: Duration = Duration::from_secs(10);

/// Malformed XML, sent where a stanza should be.
const MALFORMED: [&str; 6] = [
    "<message to='a@localhost'><body>mismatched</bod></message>",
    "<presence><<<&&&;;</presence>",
    "<iq type='get' id='1' id='2'/>",
    "<!DOCTYPE x [<!ENTITY a 'aaaaaaaa'>]><message>&a;</message>",
    "<?target instruction?><message/>",
    "<message>\u{1}\u{2}\u{3}</message>",
];
/// A stream header cut short.
const PARTIAL_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='local";
/// A stanza cut short.
const HALF_STANZA: &[u8] = b"<iq type='get' id='stall'><query xmlns='jabber:iq:ver";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Garbage,
    Slow,
    Stalled,
    Flood,
    Huge,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Garbage,
        Kind::Slow,
        Kind::Stalled,
        Kind::Flood,
        Kind::Huge,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Garbage => "garbage",
            Kind::Slow => "slow_reader",
            Kind::Stalled => "stalled_writer",
            Kind::Flood => "flood",
            Kind::Huge => "huge_stanza",
        }
    }

    /// Its addresses are 127.2.NUMBER.*.
    fn number(self) -> u8 {
        self as u8 + 1
    }

    fn slots(self, mix: &Mix) -> usize {
        match self {
            Kind::Garbage => mix.garbage,
            Kind::Slow => mix.slow,
            Kind::Stalled => mix.stalled,
            Kind::Flood => mix.flood,
            Kind::Huge => mix.huge,
        }
    }

    /// Accounts its slots use: garbage never logs in.
    fn accounts(self, mix: &Mix) -> usize {
        match self {
            Kind::Garbage => 0,
            _ => self.slots(mix).div_ceil(SESSIONS_PER_ACCOUNT),
        }
    }
}

/// Accounts the hostile kinds use, numbered after the good clients'.
pub(super) fn accounts(mix: &Mix) -> usize {
    Kind::ALL.iter().map(|k| k.accounts(mix)).sum()
}

/// What every slot needs.
pub(super) struct Context {
    target: Target,
    setup: Setup,
    mix: Mix,
    attack_addresses: usize,
    slow_read_bytes: usize,
    slow_hold: Duration,
    ramp: Duration,
    /// Bare JIDs of the idle good clients, which floods message.
    victims: Vec<String>,
    /// Bare JIDs of the active good clients, whose nodes slow readers follow.
    busy: Vec<String>,
    huge_before_auth: Vec<u8>,
    huge_after_auth: Vec<u8>,
    endless: Vec<u8>,
}

impl Context {
    pub(super) fn new(
        setup: &Setup,
        options: &SoakOptions,
        mix: Mix,
        victims: Vec<String>,
        busy: Vec<String>,
    ) -> Context {
        let domain = attr(&setup.target.domain);
        let padded = |head: String, size: usize, tail: &str| {
            let mut bytes = head.into_bytes();
            bytes.resize(size - tail.len(), b'x');
            bytes.extend_from_slice(tail.as_bytes());
            bytes
        };
        Context {
            target: setup.target.clone(),
            setup: setup.clone(),
            mix,
            attack_addresses: options.attack_addresses.max(1),
            slow_read_bytes: options.slow_read_bytes.max(1),
            slow_hold: Duration::from_secs(options.slow_hold_secs),
            ramp: RAMP.min(Duration::from_secs(options.secs) / 4),
            victims,
            busy,
            huge_before_auth: padded(
                "<iq type='get' id='huge'><query xmlns='jabber:iq:version'>".into(),
                HUGE_BEFORE_AUTH,
                "</query></iq>",
            ),
            huge_after_auth: padded(
                format!("<message to='{domain}' type='chat'><body>"),
                HUGE_AFTER_AUTH,
                "</body></message>",
            ),
            endless: padded(
                format!("<message to='{domain}' type='chat'><body>"),
                ENDLESS,
                "",
            ),
        }
    }

    /// The account slot `slot` of `kind` logs in as.
    fn account(&self, kind: Kind, slot: usize) -> usize {
        let before: usize = Kind::ALL
            .iter()
            .take_while(|&&k| k != kind)
            .map(|k| k.accounts(&self.mix))
            .sum();
        self.mix.good() + before + slot / SESSIONS_PER_ACCOUNT
    }

    fn origin(&self, kind: Kind, slot: usize) -> Origin {
        Origin {
            source: Some(hostile_address(kind.number(), slot % self.attack_addresses)),
            recv_buffer: (kind == Kind::Slow).then_some(SLOW_RECV_BUFFER),
        }
    }
}

/// Starts every slot; they run until `stop`.
pub(super) fn spawn(
    context: Arc<Context>,
    stop: watch::Receiver<bool>,
) -> JoinSet<(Kind, KindReport)> {
    let mut slots = JoinSet::new();
    for kind in Kind::ALL {
        for slot in 0..kind.slots(&context.mix) {
            slots.spawn(run_slot(context.clone(), kind, slot, stop.clone()));
        }
    }
    slots
}

/// Waits for the slots to stop (aborting those that do not within [`GRACE`]); one report per
/// kind, by name.
pub(super) async fn collect(
    mut slots: JoinSet<(Kind, KindReport)>,
    addresses: usize,
) -> Vec<(&'static str, KindReport)> {
    let mut reports: BTreeMap<&'static str, KindReport> = BTreeMap::new();
    let deadline = Instant::now() + GRACE;
    while let Ok(Some(finished)) = tokio::time::timeout_at(deadline, slots.join_next()).await {
        let (kind, report) = finished.expect("a hostile slot panicked");
        let total = reports.entry(kind.name()).or_insert_with(|| KindReport {
            addresses,
            ..KindReport::default()
        });
        total.merge(report);
        total.addresses = addresses.min(total.slots);
    }
    if !slots.is_empty() {
        eprintln!(
            "verona-bench: {} hostile slots did not stop within {GRACE:?}: aborted",
            slots.len()
        );
        slots.abort_all();
    }
    reports.into_iter().collect()
}

/// One slot: connection after connection until `stop`.
async fn run_slot(
    context: Arc<Context>,
    kind: Kind,
    slot: usize,
    mut stop: watch::Receiver<bool>,
) -> (Kind, KindReport) {
    let mut report = KindReport {
        slots: 1,
        ..KindReport::default()
    };
    let mut rng = SplitMix(((kind.number() as u64) << 32) | slot as u64);
    let origin = context.origin(kind, slot);
    let ramp_ms = context.ramp.as_millis().max(1) as usize;
    let mut pause = Duration::from_millis(rng.below(ramp_ms) as u64);
    loop {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(pause) => false,
            _ = stop.wait_for(|stop| *stop) => true,
        };
        if stopped {
            break;
        }
        report.attempts += 1;
        let ended = tokio::select! {
            ended = episode(&context, kind, slot, origin, &mut rng, &mut report) => ended,
            _ = stop.wait_for(|stop| *stop) => Ended::Open,
        };
        let open = ended == Ended::Open;
        report.count(ended);
        if open {
            break;
        }
        pause = BACKOFF + Duration::from_millis(rng.below(BACKOFF_JITTER_MS) as u64);
    }
    (kind, report)
}

async fn episode(
    context: &Context,
    kind: Kind,
    slot: usize,
    origin: Origin,
    rng: &mut SplitMix,
    report: &mut KindReport,
) -> Ended {
    let ended = match kind {
        Kind::Garbage => garbage(context, slot, origin, rng, report).await,
        Kind::Slow => slow(context, slot, origin, report).await,
        Kind::Stalled => stalled(context, slot, origin, report).await,
        Kind::Flood => flood(context, slot, origin, report).await,
        Kind::Huge => huge(context, slot, origin, report).await,
    };
    // An episode that ends early says so as its error.
    ended.unwrap_or_else(|early| early)
}

async fn tcp(context: &Context, origin: Origin) -> Result<TcpStream, Ended> {
    connect(context.target.addr, origin)
        .await
        .map_err(|_| Ended::ConnectFailed)
}

/// A failure to get as far as a scenario wanted: no stream at all is a refusal.
fn failed(error: Error) -> Ended {
    match error.stage {
        Stage::Connect => Ended::Refused,
        stage => Ended::LoginFailed(stage.as_str(), error.to_string()),
    }
}

/// Connects and negotiates up to `upto`.
async fn open(context: &Context, origin: Origin, upto: Upto) -> Result<Box<dyn Io>, Ended> {
    let tcp = tcp(context, origin).await?;
    within(NEGOTIATION, negotiate(tcp, &context.target.domain, upto))
        .await
        .map_err(failed)
}

/// Logs slot `slot` of `kind` in (resource: the kind and slot) and announces it.
async fn log_in(
    context: &Context,
    kind: Kind,
    slot: usize,
    origin: Origin,
    report: &mut KindReport,
) -> Result<Client, Ended> {
    let tcp = tcp(context, origin).await?;
    let (user, password) = context.setup.credentials(context.account(kind, slot));
    let resource = format!("{}{slot}", kind.name());
    let mut client = within(
        NEGOTIATION,
        Client::login_on(tcp, &context.target, &user, &password, &resource),
    )
    .await
    .map_err(failed)?;
    report.logged_in += 1;
    if client.send(b"<presence/>").await.is_err() {
        return Err(Ended::ByServer("closed".into()));
    }
    Ok(client)
}

/// Writes all of `bytes`; false once the connection is gone.
async fn write(io: &mut (impl AsyncWrite + Unpin), bytes: &[u8], sent: &mut u64) -> bool {
    let written = io.write_all(bytes).await.is_ok() && io.flush().await.is_ok();
    if written {
        *sent += bytes.len() as u64;
    }
    written
}

/// Reads what the server sends, remembering the end of it.
struct Reader<'a, R> {
    io: R,
    received: &'a mut u64,
    /// Nothing received on this connection yet: ending now is a refusal.
    fresh: bool,
    tail: Vec<u8>,
    buffer: Vec<u8>,
}

impl<'a, R: AsyncRead + Unpin> Reader<'a, R> {
    fn new(io: R, received: &'a mut u64, fresh: bool) -> Self {
        Reader {
            io,
            received,
            fresh,
            tail: Vec::new(),
            buffer: vec![0; 16 * 1024],
        }
    }

    /// Reads at most `max` bytes; how the connection ended if it did.
    async fn read_some(&mut self, max: usize) -> Result<usize, Ended> {
        let max = max.clamp(1, self.buffer.len());
        let read = self.io.read(&mut self.buffer[..max]).await;
        match read {
            Ok(0) => Err(self.ended("closed")),
            Ok(n) => {
                *self.received += n as u64;
                self.fresh = false;
                self.tail.extend_from_slice(&self.buffer[..n]);
                if self.tail.len() > 2 * TAIL {
                    self.tail.drain(..self.tail.len() - TAIL);
                }
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(self.ended("reset")),
            // TLS without close_notify: closed all the same.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(self.ended("closed")),
            Err(e) => Err(self.ended(&e.kind().to_string())),
        }
    }

    fn ended(&self, how: &str) -> Ended {
        if self.fresh {
            return Ended::Refused;
        }
        Ended::ByServer(stream_error(&self.tail).unwrap_or_else(|| how.to_owned()))
    }

    /// Reads and throws away until the server ends the connection, or `limit` passes.
    async fn drain(&mut self, limit: Option<Duration>) -> Ended {
        let deadline = limit.map(|limit| Instant::now() + limit);
        loop {
            let read = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.read_some(usize::MAX)).await {
                        Ok(read) => read,
                        Err(_) => return Ended::Outlasted,
                    }
                }
                None => self.read_some(usize::MAX).await,
            };
            if let Err(ended) = read {
                return ended;
            }
        }
    }
}

/// The condition of the stream error in `tail`, the end of what a server sent.
fn stream_error(tail: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(tail);
    const OPEN: &str = "<stream:error>";
    let after = &text[text.rfind(OPEN)? + OPEN.len()..];
    let condition = &after[after.find('<')? + 1..];
    let name: String = condition
        .chars()
        .take_while(|c| !matches!(c, ' ' | '/' | '>'))
        .collect();
    (!name.is_empty()).then_some(name)
}

async fn garbage(
    context: &Context,
    slot: usize,
    origin: Origin,
    rng: &mut SplitMix,
    report: &mut KindReport,
) -> Result<Ended, Ended> {
    let noise: Vec<u8> = (0..NOISE).map(|_| rng.next() as u8).collect();
    let malformed = MALFORMED[rng.below(MALFORMED.len())].as_bytes();
    let (mut io, payload, fresh): (Box<dyn Io>, &[u8], bool) = match slot % 5 {
        0 => (Box::new(tcp(context, origin).await?), &noise, true),
        1 => (open(context, origin, Upto::Opened).await?, malformed, false),
        // Noise where the TLS handshake should be.
        2 => (open(context, origin, Upto::Proceed).await?, &noise, false),
        3 => (open(context, origin, Upto::Secured).await?, &noise, false),
        _ => (
            open(context, origin, Upto::Secured).await?,
            malformed,
            false,
        ),
    };
    let KindReport {
        bytes_sent,
        bytes_received,
        ..
    } = report;
    // A failed write means the server already closed: the reading says how.
    write(&mut io, payload, bytes_sent).await;
    Ok(Reader::new(io, bytes_received, fresh)
        .drain(Some(WAIT_FOR_END))
        .await)
}

async fn stalled(
    context: &Context,
    slot: usize,
    origin: Origin,
    report: &mut KindReport,
) -> Result<Ended, Ended> {
    // Only the authenticated variant may stay: the server times the others out.
    let (mut io, payload, fresh, limit): (Box<dyn Io>, &[u8], bool, Option<Duration>) =
        match slot % 4 {
            0 => (
                Box::new(tcp(context, origin).await?),
                PARTIAL_HEADER,
                true,
                Some(WAIT_FOR_END),
            ),
            1 => (
                open(context, origin, Upto::Opened).await?,
                HALF_STANZA,
                false,
                Some(WAIT_FOR_END),
            ),
            2 => (
                open(context, origin, Upto::Secured).await?,
                HALF_STANZA,
                false,
                Some(WAIT_FOR_END),
            ),
            _ => (
                log_in(context, Kind::Stalled, slot, origin, report)
                    .await?
                    .into_io(),
                HALF_STANZA,
                false,
                None,
            ),
        };
    let KindReport {
        bytes_sent,
        bytes_received,
        ..
    } = report;
    write(&mut io, payload, bytes_sent).await;
    Ok(Reader::new(io, bytes_received, fresh).drain(limit).await)
}

async fn huge(
    context: &Context,
    slot: usize,
    origin: Origin,
    report: &mut KindReport,
) -> Result<Ended, Ended> {
    let (mut io, payload): (Box<dyn Io>, &[u8]) = match slot % 4 {
        0 => (
            open(context, origin, Upto::Opened).await?,
            &context.huge_before_auth,
        ),
        1 => (
            open(context, origin, Upto::Secured).await?,
            &context.huge_before_auth,
        ),
        2 => (
            log_in(context, Kind::Huge, slot, origin, report)
                .await?
                .into_io(),
            &context.huge_after_auth,
        ),
        _ => (
            log_in(context, Kind::Huge, slot, origin, report)
                .await?
                .into_io(),
            &context.endless,
        ),
    };
    let KindReport {
        bytes_sent,
        bytes_received,
        ..
    } = report;
    write(&mut io, payload, bytes_sent).await;
    Ok(Reader::new(io, bytes_received, false)
        .drain(Some(WAIT_FOR_END))
        .await)
}

async fn flood(
    context: &Context,
    slot: usize,
    origin: Origin,
    report: &mut KindReport,
) -> Result<Ended, Ended> {
    let io = log_in(context, Kind::Flood, slot, origin, report)
        .await?
        .into_io();
    let chunk = flood_chunk(slot, &context.victims, &context.target.domain);
    let (read, mut write_half) = tokio::io::split(io);
    let KindReport {
        bytes_sent,
        bytes_received,
        ..
    } = report;
    let mut reader = Reader::new(read, bytes_received, false);
    let flooding = async { while write(&mut write_half, &chunk, bytes_sent).await {} };
    // The server ending the connection ends the writes too.
    let (ended, ()) = tokio::join!(reader.drain(None), flooding);
    Ok(ended)
}

/// About [`FLOOD_CHUNK`] bytes of stanzas: pings to the server, messages to idle good clients
/// (slot `slot` starts at its own victim) and publishes to the flood's own node, in turn.
fn flood_chunk(slot: usize, victims: &[String], domain: &str) -> Vec<u8> {
    let domain = attr(domain);
    let mut chunk = Vec::with_capacity(FLOOD_CHUNK + 512);
    let mut i = 0usize;
    while chunk.len() < FLOOD_CHUNK {
        let stanza = match i % 3 {
            1 if !victims.is_empty() => format!(
                "<message type='chat' to='{}' id='f{i}'><body>flood {i} from slot {slot}</body></message>",
                attr(&victims[(slot * 7 + i) % victims.len()])
            ),
            2 => format!(
                "<iq type='set' id='f{i}'><pubsub xmlns='{NS_PUBSUB}'><publish node='flood'>\
                 <item id='last'><flood xmlns='urn:verona:bench'>{i}</flood></item></publish></pubsub></iq>"
            ),
            _ => {
                format!("<iq type='get' to='{domain}' id='f{i}'><ping xmlns='urn:xmpp:ping'/></iq>")
            }
        };
        chunk.extend_from_slice(stanza.as_bytes());
        i += 1;
    }
    chunk
}

async fn slow(
    context: &Context,
    slot: usize,
    origin: Origin,
    report: &mut KindReport,
) -> Result<Ended, Ended> {
    let client = log_in(context, Kind::Slow, slot, origin, report).await?;
    let jid = attr(&client.jid);
    let io = client.into_io();
    let busy = &context.busy;
    let follows = SLOW_SUBSCRIPTIONS.min(busy.len());
    let subscribes: String = (0..follows)
        .map(|k| {
            format!(
                "<iq type='set' to='{}' id='s{k}'><pubsub xmlns='{NS_PUBSUB}'>\
                 <subscribe node='{}' jid='{jid}'/></pubsub></iq>",
                attr(&busy[(slot * follows + k) % busy.len()]),
                super::good::NODE
            )
        })
        .collect();
    let (read, mut write_half) = tokio::io::split(io);
    let KindReport {
        bytes_sent,
        bytes_received,
        ..
    } = report;
    let mut reader = Reader::new(read, bytes_received, false);
    let mut writing = write(&mut write_half, subscribes.as_bytes(), bytes_sent).await;
    let hold_until = Instant::now() + context.slow_hold;
    let mut n = 0;
    let read_per_tick = context.slow_read_bytes.div_ceil(SLOW_TICKS_PER_SEC);
    while Instant::now() < hold_until {
        let next = Instant::now() + SLOW_TICK;
        if writing && follows > 0 {
            let ask = format!(
                "<iq type='get' to='{}' id='i{n}'><pubsub xmlns='{NS_PUBSUB}'>\
                 <items node='{}' max_items='100'/></pubsub></iq>",
                attr(&busy[(slot + n) % busy.len()]),
                super::good::NODE
            );
            // A write cut short by the timeout would leave half a stanza: write no more.
            writing = matches!(
                tokio::time::timeout_at(next, write(&mut write_half, ask.as_bytes(), bytes_sent))
                    .await,
                Ok(true)
            );
        }
        if let Ok(Err(ended)) = tokio::time::timeout_at(next, reader.read_some(read_per_tick)).await
        {
            return Ok(ended);
        }
        tokio::time::sleep_until(next).await;
        n += 1;
    }
    // Whatever the server still had comes now, then its end if it ended the connection.
    Ok(reader.drain(Some(SLOW_DRAIN)).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    fn mix() -> Mix {
        Mix {
            idle: 100,
            active: 10,
            garbage: 20,
            slow: 20,
            stalled: 17,
            flood: 3,
            huge: 33,
        }
    }

    #[test]
    fn hostile_accounts_follow_the_good_ones() {
        let mix = mix();
        // slow 2, stalled 2, flood 1, huge 3; garbage none.
        assert_eq!(accounts(&mix), 8);
        let setup = Setup {
            target: Target {
                addr: "127.0.0.1:5222".parse().unwrap(),
                domain: "localhost".into(),
                tls: true,
                mechanism: crate::client::Mechanism::Plain,
            },
            user_pattern: "bench{n}".into(),
            password_pattern: "pw{n}".into(),
            accounts: 200,
            op_timeout: Duration::from_secs(1),
        };
        let options = SoakOptions {
            connections: 203,
            shares: super::super::Shares {
                active: 0.0,
                garbage: 0.0,
                slow: 0.0,
                stalled: 0.0,
                flood: 0.0,
                huge: 0.0,
            },
            quiet_secs: 1,
            secs: 1,
            interval_ms: 1000,
            login_in_flight: 1,
            per_good_address: 64,
            attack_addresses: 2,
            max_items: 10,
            sample_secs: 1,
            slow_read_bytes: 10,
            slow_hold_secs: 1,
        };
        let context = Context::new(&setup, &options, mix, vec![], vec![]);
        assert_eq!(context.account(Kind::Slow, 0), 110);
        assert_eq!(context.account(Kind::Slow, 16), 111);
        assert_eq!(context.account(Kind::Stalled, 0), 112);
        assert_eq!(context.account(Kind::Flood, 2), 114);
        assert_eq!(context.account(Kind::Huge, 32), 117);
        let origin = context.origin(Kind::Slow, 3);
        assert_eq!(origin.source.unwrap().to_string(), "127.2.2.2");
        assert_eq!(origin.recv_buffer, Some(SLOW_RECV_BUFFER));
        assert_eq!(context.origin(Kind::Huge, 3).recv_buffer, None);
        assert_eq!(context.huge_before_auth.len(), HUGE_BEFORE_AUTH);
        assert_eq!(context.huge_after_auth.len(), HUGE_AFTER_AUTH);
        assert!(context.huge_after_auth.ends_with(b"</body></message>"));
        assert_eq!(context.endless.len(), ENDLESS);
    }

    #[test]
    fn stream_errors_are_found_in_the_tail() {
        let mut tail = b"<message xmlns='jabber:client'/>".to_vec();
        tail.extend(verona_stream::stream_error(
            "policy-violation",
            Some("too big"),
        ));
        tail.extend_from_slice(verona_stream::STREAM_CLOSE);
        assert_eq!(stream_error(&tail).as_deref(), Some("policy-violation"));
        let bare = verona_stream::stream_error("not-well-formed", None);
        assert_eq!(stream_error(&bare).as_deref(), Some("not-well-formed"));
        assert_eq!(stream_error(b"<message/></stream:stream>"), None);
    }

    #[test]
    fn flood_chunks_are_whole_stanzas() {
        let victims = vec!["v0@localhost".to_owned(), "v'1@localhost".to_owned()];
        let chunk = flood_chunk(3, &victims, "localhost");
        assert!(chunk.len() >= FLOOD_CHUNK);
        let text = String::from_utf8(chunk).unwrap();
        let wrapped: Element = format!("<x xmlns='jabber:client'>{text}</x>")
            .parse()
            .unwrap();
        let names: Vec<&str> = wrapped.children().take(3).map(Element::name).collect();
        assert_eq!(names, ["iq", "message", "iq"]);
        assert!(
            wrapped
                .children()
                .any(|c| c.attr("to") == Some("v'1@localhost"))
        );
        // Without victims there are no messages.
        let alone = String::from_utf8(flood_chunk(0, &[], "localhost")).unwrap();
        assert!(!alone.contains("<message"));
    }

    #[test]
    fn malformed_input_ends_a_stream() {
        use verona_stream::{Limits, StreamEvent, StreamParser};
        for bad in MALFORMED {
            let mut parser = StreamParser::new("jabber:client", Limits::default());
            parser.feed(
                b"<stream:stream xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
            );
            parser.feed(bad.as_bytes());
            let mut outcome = Ok(None);
            for _ in 0..3 {
                outcome = parser.next_event();
                if !matches!(outcome, Ok(Some(StreamEvent::Header(_)))) {
                    break;
                }
            }
            assert!(outcome.is_err(), "{bad}: {outcome:?}");
        }
    }

    #[tokio::test]
    async fn readers_tell_refusals_from_ends() {
        let mut received = 0;
        let mut refused = Reader::new(&b""[..], &mut received, true);
        assert_eq!(refused.drain(None).await, Ended::Refused);
        let mut spoken = verona_stream::stream_error("connection-timeout", None);
        spoken.extend_from_slice(verona_stream::STREAM_CLOSE);
        let mut ended = Reader::new(&spoken[..], &mut received, true);
        assert_eq!(
            ended.drain(None).await,
            Ended::ByServer("connection-timeout".into())
        );
        let mut closed = Reader::new(&b"<presence/>"[..], &mut received, false);
        assert_eq!(closed.drain(None).await, Ended::ByServer("closed".into()));
        assert_eq!(received as usize, spoken.len() + "<presence/>".len());
    }
}
