//! One incoming stream from another server (RFC 6120 §4, XEP-0220 §2.2 and §2.4): STARTTLS
//! required, then dialback keys checked with their authoritative servers, and answers to
//! other servers' questions about our own keys; stanzas only for verified domain pairs.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use verona_stream::StreamEvent;

use super::stream::{self, Stream, StreamFailure};
use super::{Federation, Verdict};
use crate::c2s::random_id;
use crate::server::Shared;
use crate::slots::Proof;
use crate::xml::{StreamError, ns};

/// Dialback verifications one stream may have in flight.
const MAX_VERIFYING: usize = 8;
/// Longest a TLS handshake may take (less if the stream's time to authenticate ends sooner).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves one connection from another server until it closes.
pub async fn serve(
    shared: Arc<Shared>,
    federation: Arc<Federation>,
    tcp: TcpStream,
    peer: SocketAddr,
    proof: Proof,
) {
    let mut stream = Stream::new(tcp, federation.limits.clone(), federation.write_timeout);
    let s2s = &shared.config.s2s;
    stream.limit_reads(s2s.read_bytes_per_sec, s2s.read_burst_bytes);
    match run(&shared, &federation, &mut stream, peer, &proof).await {
        Ok(()) => tracing::debug!(%peer, "incoming stream closed"),
        Err((error, why)) => {
            tracing::info!(%peer, "incoming stream ended: {why}");
            if let Some(error) = error {
                let _ = stream
                    .write(&verona_stream::stream_error(error.condition(), None))
                    .await;
            }
        }
    }
    let _ = stream.write(verona_stream::STREAM_CLOSE).await;
}

type Failure = (Option<StreamError>, String);

fn lost(e: StreamFailure) -> Failure {
    match e {
        StreamFailure::Framing(framing) => {
            let error = StreamError::from(&framing);
            (Some(error), framing.to_string())
        }
        StreamFailure::Timeout => (Some(StreamError::ConnectionTimeout), "timed out".into()),
        other => (None, other.to_string()),
    }
}

/// A verification of a dialback key, done beside the stream (the other server may need this
/// stream to answer a question of ours meanwhile).
struct Verified {
    remote: String,
    local: String,
    verdict: Verdict,
}

async fn run(
    shared: &Shared,
    federation: &Arc<Federation>,
    stream: &mut Stream,
    peer: SocketAddr,
    proof: &Proof,
) -> Result<(), Failure> {
    let setup = Duration::from_secs(shared.config.limits.unauthenticated_timeout_secs.max(1));
    let mut opened = open(federation, stream, setup, false).await?;
    proof.stepped();
    let mut authorized: HashSet<(String, String)> = HashSet::new();
    let mut senders = super::inbound::Senders::default();
    let mut proved = Proved {
        federation,
        shared,
        domains: HashSet::new(),
    };
    let (verified_tx, mut verified) = mpsc::channel::<Verified>(MAX_VERIFYING);
    let mut verifying = 0usize;
    // Closed at shutdown after the outgoing streams (see `Federation::stop`).
    let mut closing = federation.closing();
    let until_authorized = tokio::time::Instant::now() + setup;
    // An authenticated stream with nothing on it for this long is closed, as ours are.
    let idle = Duration::from_secs(federation.config.idle_timeout_secs.max(1));
    let mut last_read = tokio::time::Instant::now();
    loop {
        let wake = match (authorized.is_empty(), verifying) {
            (true, 0) => Some(until_authorized),
            (false, 0) => Some(last_read + idle),
            _ => None,
        };
        let deadline = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            event = stream.next() => match event.map_err(lost).inspect(|_| last_read = tokio::time::Instant::now())? {
                StreamEvent::Stanza(el) => {
                    if el.is("starttls", ns::TLS) && !stream.is_tls() {
                        proof.stepped();
                        stream
                            .write(format!("<proceed xmlns='{}'/>", ns::TLS).as_bytes())
                            .await
                            .map_err(lost)?;
                        // The select's deadline does not run while this arm does: without its
                        // own, a peer that never shakes hands would keep its slot for ever.
                        let left = until_authorized.saturating_duration_since(tokio::time::Instant::now());
                        tokio::time::timeout(HANDSHAKE_TIMEOUT.min(left), stream.accept_tls(&federation.acceptor))
                            .await
                            .map_err(|_| lost(StreamFailure::Timeout))?
                            .map_err(lost)?;
                        proof.stepped();
                        let left = until_authorized.saturating_duration_since(tokio::time::Instant::now());
                        opened = open(federation, stream, left, false).await?;
                        proof.stepped();
                    } else if el.is("auth", ns::SASL) {
                        // XEP-0178: the certificate proves the domain; then a new stream.
                        let Some(remote) = external(&el, &opened) else {
                            let failure = format!("<failure xmlns='{}'><not-authorized/></failure>", ns::SASL);
                            stream.write(failure.as_bytes()).await.map_err(lost)?;
                            continue;
                        };
                        stream.write(format!("<success xmlns='{}'/>", ns::SASL).as_bytes()).await.map_err(lost)?;
                        tracing::info!(%remote, local = %opened.local, "incoming stream authenticated by certificate");
                        proved.add(&remote, stream);
                        proof.proved();
                        authorized.insert((remote, opened.local.clone()));
                        stream.restart();
                        opened = open(federation, stream, setup, true).await?;
                    } else if el.is("result", ns::DIALBACK) {
                        proof.stepped();
                        if verifying >= MAX_VERIFYING {
                            return Err((Some(StreamError::PolicyViolation), "too many keys at once".into()));
                        }
                        let (remote, local) = dialback_pair(federation, &el, stream)?;
                        if !shared.throttle.may_verify(peer.ip()) {
                            let why = "too many keys to check from this address".into();
                            return Err((Some(StreamError::PolicyViolation), why));
                        }
                        verifying += 1;
                        let key = el.text();
                        let (federation, id, tx) = (federation.clone(), opened.id.clone(), verified_tx.clone());
                        tokio::spawn(async move {
                            let verdict = federation.verify(&local, &remote, &id, &key).await;
                            let _ = tx.send(Verified { remote, local, verdict }).await;
                        });
                    } else if el.is("verify", ns::DIALBACK) {
                        proof.stepped();
                        let (remote, local) = dialback_pair(federation, &el, stream)?;
                        let stream_id = el.attr("id").unwrap_or_default();
                        let valid = federation.secret.verify(&el.text(), &remote, &local, stream_id);
                        let kind = if valid { "valid" } else { "invalid" };
                        let answer = stream::dialback("verify", &local, &remote, Some(stream_id), Some(kind), None);
                        stream.write(&answer).await.map_err(lost)?;
                    } else if matches!(el.name(), "message" | "presence" | "iq") && el.ns() == ns::SERVER {
                        let pair = stanza_pair(&el)?;
                        if !authorized.contains(&pair) {
                            // RFC 6120 §4.9.3.12 before any authentication, §4.9.3.9 for a
                            // `from` none on this stream proved.
                            let error = if authorized.is_empty() { StreamError::NotAuthorized } else { StreamError::InvalidFrom };
                            let why = format!("stanza from {} to {} on a stream not verified for them", pair.0, pair.1);
                            return Err((Some(error), why));
                        }
                        if let Some(el) = stream::to_client_namespace(&el) {
                            super::inbound::dispatch(shared, el, false, &mut senders).await;
                        }
                    } else if el.is("error", ns::STREAMS) {
                        // The other server ends the stream (RFC 6120 §4.9): no error back.
                        let condition = el.children().next().map(|c| c.name().to_owned()).unwrap_or_default();
                        return Err((None, format!("the other server ended the stream: {condition}")));
                    } else {
                        return Err((Some(StreamError::UnsupportedStanzaType), format!("<{}/>", el.name())));
                    }
                }
                StreamEvent::Header(_) => {
                    return Err((Some(StreamError::BadFormat), "a second header".into()));
                }
                StreamEvent::End => return Ok(()),
            },
            Some(done) = verified.recv() => {
                verifying -= 1;
                let (local, remote) = (&done.local, &done.remote);
                match done.verdict {
                    Verdict::Valid => {
                        let answer = stream::dialback("result", local, remote, None, Some("valid"), None);
                        stream.write(&answer).await.map_err(lost)?;
                    }
                    Verdict::Invalid => {
                        let answer = stream::dialback("result", local, remote, None, Some("invalid"), None);
                        stream.write(&answer).await.map_err(lost)?;
                        return Err((None, format!("{remote}'s dialback key did not verify")));
                    }
                    // XEP-0220 §3: not a forgery, and not fatal to the stream, which may carry
                    // other pairs; with none, its time to authenticate still runs.
                    Verdict::Unchecked(why) => {
                        let answer = stream::dialback_error(local, remote, why.error());
                        stream.write(&answer).await.map_err(lost)?;
                        tracing::info!(%remote, %local, "dialback key not checked: {why:?}");
                        continue;
                    }
                }
                tracing::info!(remote = %done.remote, local = %done.local, "incoming stream authenticated");
                proved.add(&done.remote, stream);
                proof.proved();
                authorized.insert((done.remote, done.local));
            }
            () = deadline => {
                if authorized.is_empty() {
                    return Err((Some(StreamError::ConnectionTimeout), "not authenticated in time".into()));
                }
                // Idle: closed gracefully; the other server opens a new stream when it needs one.
                return Ok(());
            }
            () = super::raised(&mut closing) => {
                return Err((Some(StreamError::SystemShutdown), "shutting down".into()));
            }
        }
    }
}

/// The remote domains a stream proved, counted by the federation while the stream lasts.
struct Proved<'a> {
    federation: &'a Federation,
    shared: &'a Shared,
    domains: HashSet<String>,
}

impl Proved<'_> {
    /// `remote` proved itself on `stream`: the stream now reads within the rate `remote`'s
    /// streams share.
    fn add(&mut self, remote: &str, stream: &mut Stream) {
        if self.domains.insert(remote.to_owned()) {
            self.federation.incoming_proved(remote);
            if let Some(budget) = self.shared.pubsub.domain_budget(remote) {
                stream.share_reads(budget);
            }
        }
    }
}

impl Drop for Proved<'_> {
    fn drop(&mut self) {
        for remote in &self.domains {
            self.federation.incoming_ended(remote);
        }
    }
}

/// What a stream's header and TLS said.
struct Opened {
    /// Its id: dialback keys are made for it.
    id: String,
    /// The domain of ours it is for.
    local: String,
    /// The peer's domain, if its certificate proves it (SASL EXTERNAL is offered then).
    certified: Option<String>,
}

/// Reads the other server's stream header, answers with ours and the features.
/// `authenticated`: the stream restarts after SASL, and offers it no more.
async fn open(
    federation: &Federation,
    stream: &mut Stream,
    limit: Duration,
    authenticated: bool,
) -> Result<Opened, Failure> {
    let header = stream.header_within(limit).await.map_err(lost)?;
    let local = header.to.clone().unwrap_or_default();
    let id = random_id();
    let reply_to = header.from.as_deref().unwrap_or("");
    let served = if federation.hosts(&local) {
        local.clone()
    } else {
        federation.hosted[0].clone()
    };
    stream
        .write(&stream::header(&served, reply_to, Some(&id)))
        .await
        .map_err(lost)?;
    if !federation.hosts(&local) {
        return Err((
            Some(StreamError::HostUnknown),
            format!("not a domain of ours: {local:?}"),
        ));
    }
    let certified = header
        .from
        .filter(|_| stream.is_tls() && !authenticated)
        .filter(|from| !federation.hosts(from) && federation.proves(&stream.peer_chain(), from));
    let features = if !stream.is_tls() {
        format!(
            "<stream:features><starttls xmlns='{}'><required/></starttls></stream:features>",
            ns::TLS
        )
    } else {
        let mechanisms = if certified.is_some() {
            format!(
                "<mechanisms xmlns='{}'><mechanism>EXTERNAL</mechanism></mechanisms>",
                ns::SASL
            )
        } else {
            String::new()
        };
        format!(
            "<stream:features>{mechanisms}<dialback xmlns='{}'><errors/></dialback></stream:features>",
            ns::DIALBACK_FEATURE
        )
    };
    stream.write(features.as_bytes()).await.map_err(lost)?;
    Ok(Opened {
        id,
        local,
        certified,
    })
}

/// The domain a SASL EXTERNAL `<auth/>` proves: the certified one, which the authorization
/// identity (base64, `=` for none) may only repeat (XEP-0178 §3).
fn external(auth: &Element, opened: &Opened) -> Option<String> {
    use base64::Engine;
    let certified = opened.certified.clone()?;
    if auth.attr("mechanism") != Some("EXTERNAL") {
        return None;
    }
    let text = auth.text();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Some(certified);
    }
    let asked = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    (asked == certified.as_bytes()).then_some(certified)
}

/// The (remote, local) domains of a dialback element; refused before TLS, for a domain that
/// is not ours, or for a remote name that is not a domain.
fn dialback_pair(
    federation: &Federation,
    el: &Element,
    stream: &Stream,
) -> Result<(String, String), Failure> {
    if !stream.is_tls() {
        return Err((
            Some(StreamError::PolicyViolation),
            "dialback before TLS".into(),
        ));
    }
    let domain = |attr: &str| -> Option<String> {
        let jid = crate::jids::parse_bare(el.attr(attr)?).ok()?;
        jid.node().is_none().then(|| jid.domain().to_string())
    };
    let (Some(remote), Some(local)) = (domain("from"), domain("to")) else {
        return Err((
            Some(StreamError::ImproperAddressing),
            "dialback without domains".into(),
        ));
    };
    if !federation.hosts(&local) {
        return Err((
            Some(StreamError::HostUnknown),
            format!("not a domain of ours: {local}"),
        ));
    }
    if federation.hosts(&remote) {
        return Err((Some(StreamError::InvalidFrom), format!("{remote} is ours")));
    }
    Ok((remote, local))
}

/// The (sender's domain, recipient's domain) of a stanza from another server, which must have
/// both addresses (RFC 6120 §8.1.1.2, §8.1.2.2).
fn stanza_pair(el: &Element) -> Result<(String, String), Failure> {
    let domain = |attr: &str| -> Option<String> {
        // Read as dispatch reads it: the domain checked is the one stamped.
        Some(
            crate::jids::parse(el.attr(attr)?)
                .ok()?
                .domain()
                .to_string(),
        )
    };
    match (domain("from"), domain("to")) {
        (Some(from), Some(to)) => Ok((from, to)),
        _ => Err((
            Some(StreamError::ImproperAddressing),
            "a stanza without from or to".into(),
        )),
    }
}
