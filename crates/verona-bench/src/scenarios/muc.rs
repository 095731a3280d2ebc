//! `muc` (XEP-0045): R rooms of O occupants each on a group chat service. In each room the
//! first occupant joins (creating the room) and submits an instant-room form, then the others
//! join; once every room is full, each room's first occupant says M groupchat messages, at most
//! W of them not yet received by every occupant of its room (its own reflected copy included).
//! Measures deliveries per second, send→delivery latency, lost and duplicated deliveries, and
//! the CPU the server and the generator spend per delivery. Joining is not measured.
//!
//! Against Verona, occupants 1..=N of each room can join natively instead (XEP-0207 §5 Ex. 13:
//! a pubsub subscription with a `roomnick`) and receive the messages as pubsub events.

use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::fanout::request;
use super::{
    Errors, Params, SATURATED, Setup, Tally, attr, check, close_all, condition, cpu_rows,
    fmt_latency, fmt_lost, log_in_all, table,
};
use crate::client::{Client, Error, Received, Stage, within};
use crate::stats::{ServerProbe, Summary, core_share, own_cpu};
use crate::stream::skim_stanza;

const NS_CLIENT: &str = "jabber:client";
const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const SUBSCRIBE_OPTIONS: &str = "http://jabber.org/protocol/pubsub#subscribe_options";

#[derive(Clone, Debug, Serialize)]
pub struct MucOptions {
    pub rooms: usize,
    /// Occupants per room, the sender included.
    pub occupants: usize,
    /// Messages said in each room.
    pub messages: usize,
    /// Messages per room sent but not yet received by every occupant of the room.
    pub in_flight: usize,
    /// Length of each message body; at least its sequence number and send time.
    pub payload_bytes: usize,
    /// Logins, then joins, in progress at once (over all rooms).
    pub login_in_flight: usize,
    /// The group chat service's JID.
    pub service: String,
    /// Occupants 1..=native of each room join natively (Verona only), the rest classically.
    pub native: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct MucReport {
    pub scenario: &'static str,
    #[serde(flatten)]
    pub params: Params,
    #[serde(flatten)]
    pub options: MucOptions,
    /// Clients logged in.
    pub connected: usize,
    /// Occupants in their room when the messages started, over all rooms.
    pub joined: usize,
    /// From the first join until every room was full.
    pub join_s: f64,
    /// Messages sent, over all rooms.
    pub sent: usize,
    pub errors: Errors,
    /// Σ over rooms of joined × messages: a message never sent counts as lost for everyone.
    pub expected: usize,
    /// Distinct deliveries, summed over occupants.
    pub received: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Deliveries that arrived after a later message of the same room.
    pub reordered: usize,
    pub none_lost: bool,
    pub native_occupants: KindReport,
    pub classic_occupants: KindReport,
    /// From the first message sent to the last delivery.
    pub elapsed_s: f64,
    /// Messages sent per second, over all rooms.
    pub messages_per_s: f64,
    pub deliveries_per_s: f64,
    /// From just before a message was sent to its delivery being parsed.
    pub latency: Option<Summary>,
    /// Server CPU time while the messages were delivered, divided by the deliveries.
    pub server_cpu_us_per_delivery: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    /// The generator's own CPU over the same window, in cores.
    pub generator_cpu_cores: f64,
    pub generator_saturated: bool,
}

/// One kind of occupant's share of the run, counted by what actually arrived.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindReport {
    pub joined: usize,
    /// joined × messages.
    pub expected: usize,
    /// Distinct deliveries.
    pub received: usize,
    /// Of those, the ones that came as XEP-0207 pubsub events (the rest as groupchat messages).
    pub as_events: usize,
}

/// Where an occupant sits, and how it joins.
#[derive(Clone)]
struct Seat {
    service: Arc<str>,
    /// The room's node on the service: the local part of its JID.
    node: Arc<str>,
    /// The room's bare JID.
    room: Arc<str>,
    nick: String,
    native: bool,
}

/// What an occupant tells its room's sender.
enum Note {
    /// Whether its join succeeded.
    Joined(bool),
    /// It received message `seq` for the first time.
    Received(usize),
}

/// What one occupant received.
struct Heard {
    native: bool,
    joined: bool,
    tally: Tally,
    /// Of the messages received, those that came as pubsub events.
    as_events: usize,
}

/// What every room's task shares.
#[derive(Clone)]
struct Shared {
    /// Joins in progress, over all rooms.
    joins: Arc<Semaphore>,
    /// True once every room is full: the senders start.
    go: watch::Receiver<bool>,
    options: Arc<MucOptions>,
    epoch: Instant,
    op_timeout: Duration,
}

/// One room's part of the run.
#[derive(Default)]
struct RoomOutcome {
    heard: Vec<Heard>,
    sent: usize,
    errors: Errors,
    clients: Vec<Client>,
}

/// How a message reached an occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rendering {
    Groupchat,
    Event,
}

/// A room's message as received: its number, its send time, and how it came.
type Said = (usize, Duration, Rendering);

/// What a stanza means to a classic join in progress.
#[derive(Debug, PartialEq, Eq)]
enum JoinStep {
    /// The occupant's own presence (status 110): it is in.
    Own,
    /// The subject, which ends the join (XEP-0045 §7.2.15).
    Subject,
    /// The join was refused, with this condition.
    Refused(String),
    Other,
}

pub async fn run(setup: &Setup, options: &MucOptions, server: ServerProbe) -> MucReport {
    // Body timestamps count from here; senders and occupants share this process, hence this
    // clock.
    let epoch = Instant::now();
    let seats = options.rooms * options.occupants;
    let logins = log_in_all(setup, seats, options.login_in_flight, true, 0..0).await;
    let mut errors = logins.errors;
    let connected = logins.clients.len();
    // Logins finish in any order: client n (resource r{n}) is occupant n % O of room n / O.
    let mut rooms: Vec<Vec<(usize, Client)>> = (0..options.rooms).map(|_| Vec::new()).collect();
    let mut strays = Vec::new();
    for client in logins.clients {
        match client_number(&client.jid).filter(|&n| n < seats) {
            Some(n) => rooms[n / options.occupants].push((n % options.occupants, client)),
            None => {
                errors.add(&Error {
                    stage: Stage::Bind,
                    detail: format!("bound {}, not a resource r{{n}} asked for", client.jid),
                });
                strays.push(client);
            }
        }
    }

    let (go, go_watch) = watch::channel(false);
    let shared = Shared {
        joins: Arc::new(Semaphore::new(options.login_in_flight.max(1))),
        go: go_watch,
        options: Arc::new(options.clone()),
        epoch,
        op_timeout: setup.op_timeout,
    };
    let (ready, mut readied) = mpsc::unbounded_channel();
    let join_start = Instant::now();
    let tasks: Vec<_> = rooms
        .into_iter()
        .enumerate()
        .map(|(r, mut members)| {
            members.sort_unstable_by_key(|(index, _)| *index);
            tokio::spawn(hold_room(r, members, shared.clone(), ready.clone()))
        })
        .collect();
    drop(ready);
    // Every room says once that its joins are over, whether they succeeded or not.
    for _ in 0..options.rooms {
        if readied.recv().await.is_none() {
            break;
        }
    }
    let join_time = join_start.elapsed();

    let server_before = server.sample();
    let own_before = own_cpu();
    let start = Instant::now();
    go.send_replace(true);
    let mut outcome = RoomOutcome::default();
    for task in tasks {
        let room = task.await.expect("a room task panicked");
        outcome.heard.extend(room.heard);
        outcome.sent += room.sent;
        errors.merge(room.errors);
        outcome.clients.extend(room.clients);
    }
    let window = start.elapsed();
    let own = own_cpu() - own_before;
    let server_cpu = server_before
        .zip(server.sample())
        .map(|(before, after)| after.cpu.saturating_sub(before.cpu));
    outcome.clients.extend(strays);
    let clients = std::mem::take(&mut outcome.clients);
    errors.merge(close_all(clients, options.login_in_flight, setup.op_timeout).await);

    let mut tally = Tally::default();
    let (mut native_occupants, mut classic_occupants) =
        (KindReport::default(), KindReport::default());
    for heard in outcome.heard {
        let kind = if heard.native {
            &mut native_occupants
        } else {
            &mut classic_occupants
        };
        kind.joined += usize::from(heard.joined);
        kind.received += heard.tally.received;
        kind.as_events += heard.as_events;
        tally.merge(heard.tally);
    }
    for kind in [&mut native_occupants, &mut classic_occupants] {
        kind.expected = kind.joined * options.messages;
    }
    let joined = native_occupants.joined + classic_occupants.joined;
    let expected = joined * options.messages;
    let delivery = tally.last.map_or(window, |last| last - start);
    let seconds = delivery.as_secs_f64().max(f64::MIN_POSITIVE);
    let generator_cpu_cores = core_share(own, window);
    MucReport {
        scenario: "muc",
        params: setup.params(),
        options: options.clone(),
        connected,
        joined,
        join_s: join_time.as_secs_f64(),
        sent: outcome.sent,
        errors,
        expected,
        received: tally.received,
        lost: expected.saturating_sub(tally.received),
        duplicated: tally.duplicated,
        reordered: tally.reordered,
        none_lost: expected > 0 && tally.received == expected,
        native_occupants,
        classic_occupants,
        elapsed_s: delivery.as_secs_f64(),
        messages_per_s: outcome.sent as f64 / seconds,
        deliveries_per_s: tally.received as f64 / seconds,
        latency: Summary::of(&mut tally.latencies),
        server_cpu_us_per_delivery: server_cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / tally.received.max(1) as f64),
        server_cpu_cores: server_cpu.map(|cpu| core_share(cpu, window)),
        generator_cpu_cores,
        generator_saturated: generator_cpu_cores >= SATURATED,
    }
}

/// Room `r`: its first member creates and configures it and is its sender; the others join,
/// each in its own task. Says on `ready` when the joins are over, then sends once `go` turns.
async fn hold_room(
    r: usize,
    members: Vec<(usize, Client)>,
    shared: Shared,
    ready: mpsc::UnboundedSender<()>,
) -> RoomOutcome {
    let options = shared.options.clone();
    let service: Arc<str> = options.service.as_str().into();
    let node: Arc<str> = format!("bench-room-{r}").into();
    let room: Arc<str> = format!("{node}@{service}").into();
    let seat = |index: usize| Seat {
        service: service.clone(),
        node: node.clone(),
        room: room.clone(),
        nick: format!("occ{index}"),
        native: (1..=options.native).contains(&index),
    };
    let mut outcome = RoomOutcome::default();
    let mut members = members.into_iter();
    let Some((first, mut host)) = members.next() else {
        let _ = ready.send(());
        return outcome;
    };
    let host_seat = Seat {
        native: false,
        ..seat(first)
    };
    let created = {
        let _permit = shared
            .joins
            .acquire()
            .await
            .expect("the join semaphore is never closed");
        within(shared.op_timeout, create(&mut host, &host_seat)).await
    };
    if let Err(e) = created {
        outcome.errors.add(&e);
        outcome.clients.extend(members.map(|(_, client)| client));
        let _ = ready.send(());
        return outcome;
    }

    let (notes, mut noted) = mpsc::unbounded_channel();
    let occupants: Vec<_> = members
        .map(|(index, client)| {
            let occupant = occupy(client, seat(index), shared.clone(), notes.clone());
            tokio::spawn(occupant)
        })
        .collect();
    drop(notes);
    let mut own = Heard {
        native: false,
        joined: true,
        tally: Tally::new(options.messages),
        as_events: 0,
    };
    let joining = await_joins(&mut host, &mut noted, occupants.len()).await;
    let _ = ready.send(());
    let spoken = match joining {
        Ok(joined) => {
            let room = Room {
                seat: &host_seat,
                joined,
                noted: &mut noted,
            };
            speak(&mut host, room, &shared, &mut own).await
        }
        Err(e) => Err(e),
    };
    match spoken {
        Ok(sent) => {
            outcome.sent = sent;
            outcome.clients.push(host);
        }
        Err(e) => outcome.errors.add(&e),
    }
    outcome.heard.push(own);
    for occupant in occupants {
        let (heard, client) = occupant.await.expect("an occupant task panicked");
        outcome.heard.push(heard);
        match client {
            Ok(client) => outcome.clients.push(client),
            Err(e) => outcome.errors.add(&e),
        }
    }
    outcome
}

/// The sender's room, as it speaks in it.
struct Room<'a> {
    seat: &'a Seat,
    /// Occupants in the room, the sender included.
    joined: usize,
    noted: &'a mut mpsc::UnboundedReceiver<Note>,
}

/// Joins classically, creating the room, and submits an instant-room form (XEP-0045 §10.1.2),
/// which unlocks a new room on servers that lock it until it is configured.
async fn create(host: &mut Client, seat: &Seat) -> Result<(), Error> {
    host.send(&classic_join(&seat.room, &seat.nick)).await?;
    loop {
        match join_step(&host.recv().await?, &seat.room, &seat.nick) {
            JoinStep::Own => break,
            JoinStep::Refused(why) => return Err(refused("creating the room", &why)),
            // The subject may come before or after the form's answer; it is drained later.
            JoinStep::Subject | JoinStep::Other => {}
        }
    }
    let reply = request(host, "instant", &instant_room(&seat.room)).await?;
    match condition(&reply) {
        None => Ok(()),
        Some(why) => Err(refused("the instant-room form", why)),
    }
}

/// Reads the sender's stream (the others' arrivals) until every other occupant has said how
/// its join went; returns the occupants in the room, the sender included.
async fn await_joins(
    host: &mut Client,
    noted: &mut mpsc::UnboundedReceiver<Note>,
    others: usize,
) -> Result<usize, Error> {
    let (mut answered, mut joined) = (0, 1);
    while answered < others {
        tokio::select! {
            stanza = host.recv() => drop(stanza?),
            note = noted.recv() => match note {
                Some(Note::Joined(ok)) => {
                    answered += 1;
                    joined += usize::from(ok);
                }
                Some(Note::Received(_)) => {}
                None => break,
            },
        }
    }
    Ok(joined)
}

/// Once `go` turns, sends the room's messages, keeping at most `in_flight` that some occupant
/// has not received, and counts its own reflected copies. Stops early when nothing arrives
/// and no occupant reports progress for `op_timeout` (what is missing then counts as lost).
/// Returns the messages sent.
async fn speak(
    host: &mut Client,
    room: Room<'_>,
    shared: &Shared,
    own: &mut Heard,
) -> Result<usize, Error> {
    let mut go = shared.go.clone();
    loop {
        tokio::select! {
            stanza = host.recv() => drop(stanza?),
            started = go.wait_for(|go| *go) => match started {
                Ok(_) => break,
                Err(_) => return Ok(0),
            },
        }
    }
    let options = &shared.options;
    // Per message, the occupants that received it; the first `complete` reached them all.
    let mut delivered = vec![0; options.messages];
    let (mut sent, mut complete) = (0, 0);
    let mut open = true;
    loop {
        while complete < options.messages && delivered[complete] >= room.joined {
            complete += 1;
        }
        if complete == options.messages {
            break;
        }
        while sent < options.messages && sent - complete < options.in_flight.max(1) {
            let body = body(sent, shared.epoch.elapsed(), options.payload_bytes);
            host.send(&groupchat(&room.seat.room, sent, &body)).await?;
            sent += 1;
        }
        enum Progress {
            Stanza(Result<Element, Error>),
            Note(Option<Note>),
        }
        let progress = tokio::time::timeout(shared.op_timeout, async {
            tokio::select! {
                stanza = host.recv() => Progress::Stanza(stanza),
                note = room.noted.recv(), if open => Progress::Note(note),
            }
        })
        .await;
        match progress {
            Err(_) => break,
            Ok(Progress::Stanza(stanza)) => {
                let stanza = stanza?;
                // A message the room bounced (throttled, not allowed) would otherwise only show
                // as lost.
                if stanza.name() == "message"
                    && let Some(why) = condition(&stanza)
                {
                    return Err(refused("a groupchat message", why));
                }
                let said = said(&stanza, &room.seat.room, &room.seat.node);
                if let Some(seq) = said.and_then(|said| hear(own, said, shared.epoch)) {
                    delivered[seq] += 1;
                }
            }
            Ok(Progress::Note(Some(Note::Received(seq)))) => delivered[seq] += 1,
            Ok(Progress::Note(Some(Note::Joined(_)))) => {}
            Ok(Progress::Note(None)) => open = false,
        }
    }
    Ok(sent)
}

/// One occupant but the sender: joins (at most `login_in_flight` joins at once over all
/// rooms), reads the room's presence until `go`, and counts the room's messages until it has
/// them all or, once `go` turned, nothing came for `op_timeout`. Gives the client back for
/// closing, unless its connection failed.
async fn occupy(
    mut client: Client,
    seat: Seat,
    shared: Shared,
    notes: mpsc::UnboundedSender<Note>,
) -> (Heard, Result<Client, Error>) {
    let messages = shared.options.messages;
    let mut heard = Heard {
        native: seat.native,
        joined: false,
        tally: Tally::new(messages),
        as_events: 0,
    };
    let joined = {
        let _permit = shared
            .joins
            .acquire()
            .await
            .expect("the join semaphore is never closed");
        within(shared.op_timeout, join(&mut client, &seat)).await
    };
    let _ = notes.send(Note::Joined(joined.is_ok()));
    if let Err(e) = joined {
        return (heard, Err(e));
    }
    heard.joined = true;
    // Until every room is full only later joiners' presence comes; it is read and dropped so
    // that the server never waits on this client. A stanza read as `go` turns may already be a
    // message, so every stanza is counted.
    let mut go = shared.go.clone();
    let mut started = false;
    // Most of what comes is the room's messages: they are skimmed, not built into elements.
    let skim = |text: &str| skim_said(text, &seat.room);
    while heard.tally.received < messages {
        let stanza = if started {
            match tokio::time::timeout(shared.op_timeout, client.recv_skimmed(skim)).await {
                Err(_) => break,
                Ok(stanza) => stanza,
            }
        } else {
            tokio::select! {
                stanza = client.recv_skimmed(skim) => stanza,
                go = go.wait_for(|go| *go) => match go {
                    Ok(_) => {
                        started = true;
                        continue;
                    }
                    Err(_) => break,
                },
            }
        };
        let said = match stanza {
            Ok(Received::Skimmed(said)) => Some(said),
            Ok(Received::Stanza(stanza)) => said(&stanza, &seat.room, &seat.node),
            Err(e) => return (heard, Err(e)),
        };
        if let Some(seq) = said.and_then(|said| hear(&mut heard, said, shared.epoch)) {
            let _ = notes.send(Note::Received(seq));
        }
    }
    (heard, Ok(client))
}

/// Joins an existing room: classically, up to its own presence and then the subject; or
/// natively, up to a subscription that is `subscribed`.
async fn join(client: &mut Client, seat: &Seat) -> Result<(), Error> {
    if seat.native {
        let iq = native_join(&seat.service, &seat.node, &client.jid, &seat.nick);
        let reply = request(client, "join", &iq).await?;
        check(&reply)?;
        let state = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("subscription", NS_PUBSUB))
            .and_then(|s| s.attr("subscription"));
        return match state {
            None | Some("subscribed") => Ok(()),
            Some(other) => Err(refused("the native join", &format!("subscription {other}"))),
        };
    }
    client.send(&classic_join(&seat.room, &seat.nick)).await?;
    let mut own = false;
    loop {
        match join_step(&client.recv().await?, &seat.room, &seat.nick) {
            JoinStep::Own => own = true,
            JoinStep::Subject if own => return Ok(()),
            JoinStep::Refused(why) => return Err(refused("the join", &why)),
            JoinStep::Subject | JoinStep::Other => {}
        }
    }
}

fn refused(what: &str, why: &str) -> Error {
    Error {
        stage: Stage::Room,
        detail: format!("{what} refused: {why}"),
    }
}

/// Counts one of the room's messages; returns its number when it is the first copy.
fn hear(heard: &mut Heard, said: Said, epoch: Instant) -> Option<usize> {
    let (seq, sent, rendering) = said;
    let before = heard.tally.received;
    heard.tally.record(seq, sent, Instant::now(), epoch);
    if heard.tally.received == before {
        return None;
    }
    heard.as_events += usize::from(rendering == Rendering::Event);
    Some(seq)
}

/// The number of client `n` from its bound JID's resource `r{n}`.
fn client_number(jid: &str) -> Option<usize> {
    jid.split_once('/')?.1.strip_prefix('r')?.parse().ok()
}

/// XEP-0045 §7.2 Ex. 21, asking for no history.
fn classic_join(room: &str, nick: &str) -> Vec<u8> {
    format!(
        "<presence to='{}/{}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>",
        attr(room),
        attr(nick)
    )
    .into_bytes()
}

/// XEP-0045 §10.1.2: accept the default configuration.
fn instant_room(room: &str) -> String {
    format!(
        "<iq type='set' to='{}' id='instant'><query xmlns='{NS_MUC_OWNER}'>\
         <x xmlns='jabber:x:data' type='submit'/></query></iq>",
        attr(room)
    )
}

/// XEP-0207 §5 Ex. 13: a subscription of `jid` to the room's node, with a `roomnick`.
fn native_join(service: &str, node: &str, jid: &str, nick: &str) -> String {
    let (node, jid) = (attr(node), attr(jid));
    format!(
        "<iq type='set' to='{}' id='join'><pubsub xmlns='{NS_PUBSUB}'>\
         <subscribe node='{node}' jid='{jid}'/><options node='{node}' jid='{jid}'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{SUBSCRIBE_OPTIONS}</value></field>\
         <field var='roomnick'><value>{}</value></field></x></options></pubsub></iq>",
        attr(service),
        attr(nick),
    )
}

/// Message `seq`'s body: `SEQ SENT_NANOS`, padded with `x`s to `payload_bytes`.
fn body(seq: usize, sent: Duration, payload_bytes: usize) -> String {
    let mut body = format!("{seq} {}", sent.as_nanos());
    if payload_bytes > body.len() + 1 {
        body.push(' ');
        body.push_str(&"x".repeat(payload_bytes - body.len()));
    }
    body
}

fn groupchat(room: &str, seq: usize, body: &str) -> Vec<u8> {
    format!(
        "<message type='groupchat' to='{}' id='m{seq}'><body>{body}</body></message>",
        attr(room)
    )
    .into_bytes()
}

/// What `stanza`, received while joining `room` as `nick`, means to the join.
fn join_step(stanza: &Element, room: &str, nick: &str) -> JoinStep {
    let from = stanza.attr("from").unwrap_or_default();
    let (bare, resource) = from.split_once('/').unwrap_or((from, ""));
    if !bare.eq_ignore_ascii_case(room) {
        return JoinStep::Other;
    }
    match stanza.name() {
        "presence" => {
            if let Some(why) = condition(stanza) {
                return JoinStep::Refused(why.to_owned());
            }
            let own = stanza.attr("type").is_none()
                && resource == nick
                && stanza.get_child("x", NS_MUC_USER).is_some_and(|x| {
                    x.children()
                        .any(|c| c.is("status", NS_MUC_USER) && c.attr("code") == Some("110"))
                });
            if own { JoinStep::Own } else { JoinStep::Other }
        }
        "message"
            if stanza.attr("type") == Some("groupchat")
                && stanza.has_child("subject", NS_CLIENT)
                && !stanza.has_child("body", NS_CLIENT) =>
        {
            JoinStep::Subject
        }
        _ => JoinStep::Other,
    }
}

/// The sequence number and send time of one of the room's messages, and how it came: a
/// groupchat message from an occupant of `room`, or a pubsub event about `node` carrying the
/// message; `None` for anything else (presence, the subject, other rooms).
fn said(stanza: &Element, room: &str, node: &str) -> Option<Said> {
    if stanza.name() != "message" {
        return None;
    }
    let (message, rendering) = match stanza.get_child("event", NS_EVENT) {
        Some(event) => {
            let items = event
                .get_child("items", NS_EVENT)
                .filter(|items| items.attr("node") == Some(node))?;
            let message = items
                .get_child("item", NS_EVENT)?
                .get_child("message", NS_CLIENT)?;
            (message, Rendering::Event)
        }
        None => {
            let from = stanza.attr("from")?;
            let (bare, _nick) = from.split_once('/')?;
            if stanza.attr("type") != Some("groupchat") || !bare.eq_ignore_ascii_case(room) {
                return None;
            }
            (stanza, Rendering::Groupchat)
        }
    };
    numbers(&message.get_child("body", NS_CLIENT)?.text(), rendering)
}

/// A message's number and send time, from its body.
fn numbers(body: &str, rendering: Rendering) -> Option<Said> {
    let mut words = body.split(' ');
    let seq = words.next()?.parse().ok()?;
    let sent = words.next()?.parse().ok()?;
    Some((seq, Duration::from_nanos(sent), rendering))
}

/// [`said`] for a classic groupchat message given as text, no element built; `None` for
/// anything else and anything unusual, which is then read whole.
fn skim_said(text: &str, room: &str) -> Option<Said> {
    let skimmed = skim_stanza(text, "message", "body")?;
    let (bare, _nick) = skimmed.from.as_deref()?.split_once('/')?;
    if skimmed.kind.as_deref() != Some("groupchat") || !bare.eq_ignore_ascii_case(room) {
        return None;
    }
    numbers(&skimmed.text?, Rendering::Groupchat)
}

impl KindReport {
    fn describe(&self) -> String {
        format!(
            "{} joined; {} of {} received, {} as pubsub events",
            self.joined, self.received, self.expected, self.as_events
        )
    }
}

impl MucReport {
    /// Every message reached every occupant of its room exactly once, and nothing failed.
    pub fn ok(&self) -> bool {
        self.none_lost && self.duplicated == 0 && self.errors.total == 0
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let latency = fmt_latency(&self.latency);
        let lost = fmt_lost(self.none_lost, self.lost, self.expected);
        table(
            &format!(
                "muc: {} rooms x {} occupants ({} native), {} messages per room ({} in flight, \
                 {} B bodies) on {}, {} via {}{}",
                o.rooms,
                o.occupants,
                o.native,
                o.messages,
                o.in_flight,
                o.payload_bytes,
                o.service,
                self.params.mechanism,
                self.params.addr,
                if self.params.tls { " (STARTTLS)" } else { "" }
            ),
            &[
                (
                    "occupants",
                    format!(
                        "{} connected, {} joined in {:.2} s, of {}",
                        self.connected,
                        self.joined,
                        self.join_s,
                        o.rooms * o.occupants
                    ),
                ),
                (
                    "messages",
                    format!(
                        "{} of {} sent: {:.0}/s",
                        self.sent,
                        o.rooms * o.messages,
                        self.messages_per_s
                    ),
                ),
                (
                    "deliveries",
                    format!(
                        "{} of {} in {:.2} s: {:.0}/s",
                        self.received, self.expected, self.elapsed_s, self.deliveries_per_s
                    ),
                ),
                ("native occupants", self.native_occupants.describe()),
                ("classic occupants", self.classic_occupants.describe()),
                ("lost", lost),
                ("duplicated", self.duplicated.to_string()),
                ("reordered", self.reordered.to_string()),
                ("send->delivery", latency),
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

    const ROOM: &str = "bench-room-0@chat.localhost";

    fn parse(xml: &str) -> Element {
        xml.replacen(' ', " xmlns='jabber:client' ", 1)
            .parse()
            .unwrap()
    }

    #[test]
    fn bodies_carry_number_and_send_time_padded_to_size() {
        let sent = Duration::from_nanos(1234);
        assert_eq!(body(7, sent, 0), "7 1234");
        assert_eq!(body(7, sent, 7), "7 1234");
        assert_eq!(body(7, sent, 8), "7 1234 x");
        assert_eq!(body(7, sent, 100).len(), 100);
        let text = String::from_utf8(groupchat("r'1@chat.localhost", 7, "7 1234")).unwrap();
        assert_eq!(
            text,
            "<message type='groupchat' to='r&apos;1@chat.localhost' id='m7'>\
             <body>7 1234</body></message>"
        );
    }

    #[test]
    fn messages_are_read_in_both_renderings() {
        let event = |node: &str, body: &str| {
            format!(
                "<message from='chat.localhost' to='bench1@localhost/r1'>\
                 <event xmlns='{NS_EVENT}'><items node='{node}'><item id='i1'>\
                 <message xmlns='jabber:client'><body>{body}</body>\
                 <nick xmlns='http://jabber.org/protocol/nick'>occ0</nick></message>\
                 </item></items></event></message>"
            )
        };
        // The expected number, send time in nanoseconds and rendering.
        type Said = Option<(usize, u64, Rendering)>;
        let cases: &[(String, Said)] = &[
            (
                format!("<message type='groupchat' from='{ROOM}/occ0'><body>3 99 xx</body></message>"),
                Some((3, 99, Rendering::Groupchat)),
            ),
            (
                format!("<message type='groupchat' from='{ROOM}/occ0'><body>3 99</body></message>"),
                Some((3, 99, Rendering::Groupchat)),
            ),
            (event("bench-room-0", "4 100 x"), Some((4, 100, Rendering::Event))),
            (event("bench-room-1", "4 100 x"), None),
            (event("bench-room-0", "hello"), None),
            (
                format!("<message type='groupchat' from='{ROOM}'><subject/></message>"),
                None,
            ),
            (
                format!("<message type='error' from='{ROOM}/occ0'><body>3 99</body></message>"),
                None,
            ),
            (
                "<message type='groupchat' from='other@chat.localhost/occ0'><body>3 99</body></message>"
                    .into(),
                None,
            ),
            (
                format!("<presence from='{ROOM}/occ3'><status>3 99</status></presence>"),
                None,
            ),
        ];
        for (xml, expected) in cases {
            let got = said(&parse(xml), ROOM, "bench-room-0");
            let expected = expected.map(|(seq, t, r)| (seq, Duration::from_nanos(t), r));
            assert_eq!(got, expected, "{xml}");
        }
    }

    #[test]
    fn a_skimmed_message_reads_as_the_whole_one_or_is_left_to_it() {
        let classic = |attrs: &str, inner: &str| format!("<message {attrs}>{inner}</message>");
        let ours = format!("type='groupchat' from='{ROOM}/occ0'");
        // The text, and whether the skim takes it (else the whole stanza is read).
        let cases = [
            (classic(&ours, "<body>3 99 xx</body>"), true),
            (
                classic(
                    &format!("xmlns='jabber:client' to='b@localhost/r1' {ours} id='m3'"),
                    "<body>3 99</body><stanza-id xmlns='urn:xmpp:sid:0' id='x' by='r'/>",
                ),
                true,
            ),
            (
                classic(
                    &format!("type='groupchat' from='{}/occ0'", ROOM.to_uppercase()),
                    "<body>3 99</body>",
                ),
                true,
            ),
            (
                classic(
                    &ours,
                    "<subject>s</subject><body>3 99</body><body>4 100</body>",
                ),
                true,
            ),
            (classic(&ours, "<body>3 99 &amp;</body>"), false),
            (classic(&ours, "<body xmlns='urn:other'>3 99</body>"), false),
            (
                classic(&ours, "<b:body xmlns:b='jabber:client'>3 99</b:body>"),
                false,
            ),
            (classic(&ours, "<body>3 <b>99</b></body>"), false),
            (classic(&ours, "<subject/>"), false),
            (classic(&ours, "<body/>"), false),
            (
                classic(&format!("xmlns='urn:other' {ours}"), "<body>3 99</body>"),
                false,
            ),
            (
                classic(
                    &format!("type='error' from='{ROOM}/occ0'"),
                    "<body>3 99</body>",
                ),
                false,
            ),
            (
                classic(
                    &format!("type='groupchat' from='{ROOM}'"),
                    "<body>3 99</body>",
                ),
                false,
            ),
            (
                classic(
                    "type='groupchat' from='other@chat.localhost/occ0'",
                    "<body>3 99</body>",
                ),
                false,
            ),
            (
                format!("<presence from='{ROOM}/occ3'><status>3 99</status></presence>"),
                false,
            ),
        ];
        for (xml, taken) in cases {
            let skimmed = skim_said(&xml, ROOM);
            assert_eq!(skimmed.is_some(), taken, "{xml}");
            if taken {
                let whole = if xml.starts_with("<message xmlns=") {
                    xml.parse().expect("well-formed")
                } else {
                    parse(&xml)
                };
                assert_eq!(skimmed, said(&whole, ROOM, "bench-room-0"), "{xml}");
            }
        }
    }

    #[test]
    fn joins_end_with_own_presence_then_subject() {
        let own = format!(
            "<presence from='{ROOM}/occ5'><x xmlns='{NS_MUC_USER}'>\
             <item affiliation='none' role='participant'/>\
             <status code='100'/><status code='110'/></x></presence>"
        );
        let cases: &[(String, JoinStep)] = &[
            (own.clone(), JoinStep::Own),
            (own.replace("occ5", "occ6"), JoinStep::Other),
            (own.replace("code='110'", "code='201'"), JoinStep::Other),
            (
                own.replace("<presence ", "<presence type='unavailable' "),
                JoinStep::Other,
            ),
            (
                format!("<message type='groupchat' from='{ROOM}'><subject/></message>"),
                JoinStep::Subject,
            ),
            (
                format!(
                    "<message type='groupchat' from='{ROOM}/occ0'><subject>hi</subject></message>"
                ),
                JoinStep::Subject,
            ),
            (
                format!("<message type='groupchat' from='{ROOM}/occ0'><body>1 2</body></message>"),
                JoinStep::Other,
            ),
            (
                "<message type='groupchat' from='other@chat.localhost'><subject/></message>".into(),
                JoinStep::Other,
            ),
            (
                format!(
                    "<presence type='error' from='{ROOM}/occ5'><error type='cancel'>\
                     <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
                ),
                JoinStep::Refused("conflict".into()),
            ),
        ];
        for (xml, expected) in cases {
            assert_eq!(&join_step(&parse(xml), ROOM, "occ5"), expected, "{xml}");
        }
    }

    #[test]
    fn clients_are_numbered_by_resource() {
        for (jid, expected) in [
            ("bench1@localhost/r42", Some(42)),
            ("bench1@localhost/r0", Some(0)),
            ("bench1@localhost/owner", None),
            ("bench1@localhost/r4x", None),
            ("bench1@localhost", None),
        ] {
            assert_eq!(client_number(jid), expected, "{jid}");
        }
    }

    #[test]
    fn join_requests() {
        assert_eq!(
            String::from_utf8(classic_join(ROOM, "occ1")).unwrap(),
            format!(
                "<presence to='{ROOM}/occ1'><x xmlns='{NS_MUC}'><history maxstanzas='0'/>\
                 </x></presence>"
            )
        );
        let native = native_join("chat.localhost", "bench-room-0", "b@localhost/r1", "occ1");
        let iq: Element = native
            .replacen(' ', " xmlns='jabber:client' ", 1)
            .parse()
            .unwrap();
        let pubsub = iq.get_child("pubsub", NS_PUBSUB).unwrap();
        let subscribe = pubsub.get_child("subscribe", NS_PUBSUB).unwrap();
        assert_eq!(subscribe.attr("jid"), Some("b@localhost/r1"));
        assert!(native.contains("<field var='roomnick'><value>occ1</value></field>"));
        assert!(instant_room(ROOM).contains(&format!("to='{ROOM}'")));
    }
}
