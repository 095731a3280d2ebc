//! `chat`: P sender→receiver pairs. Each sender sends M `<message type='chat'/>` to its
//! receiver's full JID, keeping at most W sent that the receiver has not got yet (the receipt is
//! the acknowledgement). Measures messages delivered per second, send→receipt latency, lost and
//! duplicated messages, and the CPU the server and the generator spend per message. With
//! `receivers`, the receivers are on another server, so that every message crosses a
//! server-to-server stream (federation); both servers' CPU counts.

use std::time::Duration;

use minidom::Element;
use serde::Serialize;
use tokio::time::Instant;

use super::{
    Errors, Params, SATURATED, Setup, Tally, attr, close_all, cpu_rows, fmt_latency, fmt_lost,
    log_in_all, table,
};
use crate::client::{Client, Error};
use crate::stats::{ServerProbe, Summary, core_share, own_cpu};

const NS_CLIENT: &str = "jabber:client";

#[derive(Clone, Debug, Serialize)]
pub struct ChatOptions {
    pub pairs: usize,
    /// Messages each sender sends.
    pub messages: usize,
    /// Messages a sender may have sent that its receiver has not got yet.
    pub window: usize,
    /// Logins in progress at once.
    pub login_in_flight: usize,
    /// The server the receivers log in to, if not the senders'.
    pub receivers: Option<Receivers>,
}

/// Where the receivers are when they are on another server.
#[derive(Clone, Debug, Serialize)]
pub struct Receivers {
    pub addr: std::net::SocketAddr,
    pub domain: String,
    /// That server's process, sampled with the senders' server.
    pub server_pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatReport {
    pub scenario: &'static str,
    #[serde(flatten)]
    pub params: Params,
    #[serde(flatten)]
    pub options: ChatOptions,
    /// Pairs whose two clients both logged in.
    pub connected_pairs: usize,
    pub errors: Errors,
    /// connected_pairs × messages.
    pub expected: usize,
    /// Distinct messages received.
    pub received: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Messages that arrived after a later one of the same sender.
    pub reordered: usize,
    pub none_lost: bool,
    /// From the first message sent to the last one received.
    pub elapsed_s: f64,
    pub messages_per_s: f64,
    /// From just before a message was sent to its receipt being parsed.
    pub latency: Option<Summary>,
    /// Server CPU time while the pairs talked, divided by the messages received.
    pub server_cpu_us_per_message: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    /// The generator's own CPU over the same window, in cores.
    pub generator_cpu_cores: f64,
    pub generator_saturated: bool,
}

pub async fn run(setup: &Setup, options: &ChatOptions, server: ServerProbe) -> ChatReport {
    // Message timestamps count from here; both ends of a pair share this process, hence this clock.
    let epoch = Instant::now();
    let (mut errors, pairs, spare) = match &options.receivers {
        None => log_in_pairs(setup, options).await,
        Some(receivers) => log_in_across(setup, receivers, options).await,
    };
    let connected_pairs = pairs.len();
    let remote = ServerProbe(options.receivers.as_ref().and_then(|r| r.server_pid));

    let server_before = server.sample();
    let remote_before = remote.sample();
    let own_before = own_cpu();
    let start = Instant::now();
    let talks: Vec<_> = pairs
        .into_iter()
        .map(|(sender, receiver)| {
            tokio::spawn(converse(
                sender,
                receiver,
                options.clone(),
                epoch,
                setup.op_timeout,
            ))
        })
        .collect();
    let mut tally = Tally::default();
    let mut clients = Vec::with_capacity(2 * connected_pairs + 1);
    for talk in talks {
        let (seen, ends) = talk.await.expect("a chat pair task panicked");
        tally.merge(seen);
        for end in ends {
            match end {
                Ok(client) => clients.push(client),
                Err(e) => errors.add(&e),
            }
        }
    }
    let window = start.elapsed();
    let own = own_cpu() - own_before;
    let server_cpu = server_before
        .zip(server.sample())
        .map(|(before, after)| after.cpu.saturating_sub(before.cpu));
    let remote_cpu = remote_before
        .zip(remote.sample())
        .map(|(before, after)| after.cpu.saturating_sub(before.cpu));
    let server_cpu = match (server_cpu, remote_cpu) {
        (Some(local), Some(remote)) => Some(local + remote),
        (local, None) => local,
        (None, remote) => remote,
    };
    clients.extend(spare);
    errors.merge(close_all(clients, options.login_in_flight, setup.op_timeout).await);

    let expected = connected_pairs * options.messages;
    let delivery = tally.last.map_or(window, |last| last - start);
    let generator_cpu_cores = core_share(own, window);
    ChatReport {
        scenario: "chat",
        params: setup.params(),
        options: options.clone(),
        connected_pairs,
        errors,
        expected,
        received: tally.received,
        lost: expected.saturating_sub(tally.received),
        duplicated: tally.duplicated,
        reordered: tally.reordered,
        none_lost: expected > 0 && tally.received == expected,
        elapsed_s: delivery.as_secs_f64(),
        messages_per_s: tally.received as f64 / delivery.as_secs_f64().max(f64::MIN_POSITIVE),
        latency: Summary::of(&mut tally.latencies),
        server_cpu_us_per_message: server_cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / tally.received.max(1) as f64),
        server_cpu_cores: server_cpu.map(|cpu| core_share(cpu, window)),
        generator_cpu_cores,
        generator_saturated: generator_cpu_cores >= SATURATED,
    }
}

/// Logged-in (sender, receiver) pairs on one server, and an odd client out.
async fn log_in_pairs(
    setup: &Setup,
    options: &ChatOptions,
) -> (Errors, Vec<(Client, Client)>, Vec<Client>) {
    let logins = log_in_all(
        setup,
        2 * options.pairs,
        options.login_in_flight,
        true,
        0..0,
    )
    .await;
    let mut clients = logins.clients;
    // Logins finish in any order: pair clients as they came; an odd one out has no partner.
    let spare = clients.split_off(clients.len() - clients.len() % 2);
    let mut pairs = Vec::with_capacity(clients.len() / 2);
    let mut logged_in = clients.into_iter();
    while let (Some(sender), Some(receiver)) = (logged_in.next(), logged_in.next()) {
        pairs.push((sender, receiver));
    }
    (logins.errors, pairs, spare)
}

/// Senders on `setup`'s server, receivers on the other one, paired as they logged in.
async fn log_in_across(
    setup: &Setup,
    receivers: &Receivers,
    options: &ChatOptions,
) -> (Errors, Vec<(Client, Client)>, Vec<Client>) {
    let mut remote = setup.clone();
    remote.target.addr = receivers.addr;
    remote.target.domain = receivers.domain.clone();
    let senders = log_in_all(setup, options.pairs, options.login_in_flight, true, 0..0).await;
    let listeners = log_in_all(&remote, options.pairs, options.login_in_flight, true, 0..0).await;
    let mut errors = senders.errors;
    errors.merge(listeners.errors);
    let mut senders = senders.clients;
    let mut listeners = listeners.clients;
    // Those without a partner (a login on the other side failed) are closed unused.
    let paired = senders.len().min(listeners.len());
    let mut spare = senders.split_off(paired);
    spare.append(&mut listeners.split_off(paired));
    let pairs = senders.into_iter().zip(listeners).collect();
    (errors, pairs, spare)
}

/// One pair's conversation. It ends when every message arrived, or when nothing arrived for
/// `op_timeout` (what is missing then counts as lost). Gives both clients back for closing,
/// unless their connection failed.
async fn converse(
    mut sender: Client,
    mut receiver: Client,
    options: ChatOptions,
    epoch: Instant,
    op_timeout: Duration,
) -> (Tally, [Result<Client, Error>; 2]) {
    let to = attr(&receiver.jid);
    let mut tally = Tally::new(options.messages);
    let mut sent = 0;
    while tally.received < options.messages {
        while sent < options.messages && sent - tally.received < options.window.max(1) {
            if let Err(e) = sender.send(&message(&to, sent, epoch.elapsed())).await {
                return (tally, [Err(e), Ok(receiver)]);
            }
            sent += 1;
        }
        let stanza = match tokio::time::timeout(op_timeout, receiver.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => return (tally, [Ok(sender), Err(e)]),
            Ok(Ok(stanza)) => stanza,
        };
        if let Some((seq, sent_at)) = numbered(&stanza) {
            tally.record(seq, sent_at, Instant::now(), epoch);
        }
    }
    (tally, [Ok(sender), Ok(receiver)])
}

/// Message `seq` to `to` (already escaped), its body `SEQ SENT_NANOS`.
fn message(to: &str, seq: usize, sent: Duration) -> Vec<u8> {
    format!(
        "<message type='chat' to='{to}' id='m{seq}'><body>{seq} {}</body></message>",
        sent.as_nanos()
    )
    .into_bytes()
}

/// The sequence number and send time of a bench chat message; `None` for any other stanza
/// (such as presence from the account's other resources).
fn numbered(stanza: &Element) -> Option<(usize, Duration)> {
    if stanza.name() != "message" || stanza.attr("type") != Some("chat") {
        return None;
    }
    let body = stanza.get_child("body", NS_CLIENT)?.text();
    let (seq, sent) = body.split_once(' ')?;
    Some((seq.parse().ok()?, Duration::from_nanos(sent.parse().ok()?)))
}

impl ChatReport {
    /// Every message arrived exactly once, and nothing failed.
    pub fn ok(&self) -> bool {
        self.none_lost && self.duplicated == 0 && self.errors.total == 0
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let latency = fmt_latency(&self.latency);
        let lost = fmt_lost(self.none_lost, self.lost, self.expected);
        table(
            &format!(
                "chat: {} pairs x {} messages ({} in flight per pair), {} via {}{}",
                o.pairs,
                o.messages,
                o.window,
                self.params.mechanism,
                self.params.addr,
                if self.params.tls { " (STARTTLS)" } else { "" }
            ),
            &[
                (
                    "pairs",
                    format!("{} of {} connected", self.connected_pairs, o.pairs),
                ),
                (
                    "messages",
                    format!(
                        "{} of {} in {:.2} s: {:.0}/s",
                        self.received, self.expected, self.elapsed_s, self.messages_per_s
                    ),
                ),
                ("lost", lost),
                ("duplicated", self.duplicated.to_string()),
                ("reordered", self.reordered.to_string()),
                ("send->receipt", latency),
                ("errors", self.errors.describe()),
            ]
            .into_iter()
            .chain(cpu_rows(
                "server CPU/msg",
                self.server_cpu_us_per_message,
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

    #[test]
    fn messages_carry_their_number_and_send_time() {
        let bytes = message("b&apos;1@localhost/r1", 42, Duration::from_nanos(1234));
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            "<message type='chat' to='b&apos;1@localhost/r1' id='m42'>\
             <body>42 1234</body></message>"
        );
        let received: Element = text
            .replace("<message ", "<message xmlns='jabber:client' ")
            .parse()
            .unwrap();
        assert_eq!(numbered(&received), Some((42, Duration::from_nanos(1234))));
    }

    #[test]
    fn other_stanzas_are_not_counted() {
        for xml in [
            "<presence xmlns='jabber:client'><status>1 2</status></presence>",
            "<message xmlns='jabber:client' type='error'><body>1 2</body></message>",
            "<message xmlns='jabber:client' type='chat'><body>hello there</body></message>",
            "<message xmlns='jabber:client' type='chat'/>",
        ] {
            let stanza: Element = xml.parse().unwrap();
            assert_eq!(numbered(&stanza), None, "{xml}");
        }
    }
}
