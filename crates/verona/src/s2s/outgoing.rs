//! One outgoing stream, from a local domain to a remote one (RFC 6120 §4, XEP-0220 §2.1):
//! connect, STARTTLS (required), dialback, then the queued stanzas; closed when idle.
//! Stanzas wait in the stream's bounded queue while it is set up; if it cannot be set up,
//! they bounce to their senders.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use verona_stream::StreamEvent;

use super::stream::{self, Stream, StreamFailure};
use super::{Federation, Out, STOP_FLUSH, Unchecked, Verdict, resolve};
use crate::xml::{StanzaError, ns};

/// How the stream ended.
enum Ended {
    /// It was never authenticated: what waits for it bounces.
    Unreached(String),
    /// The other server found our dialback key bogus (its authoritative server said so).
    Invalid,
    /// The other server answered our dialback key with an error (this condition): it could
    /// not check the key, which is no refusal (XEP-0220 §3). What waits bounces too.
    Unchecked(String),
    /// It worked, then closed (idle, peer, error, the peer's stream error): what waits goes
    /// to a new stream.
    Closed,
    /// The server is stopping: what waited was written, or could not be in time; what is
    /// left goes nowhere (no new stream is opened for it).
    Shutdown,
}

pub(super) async fn run(
    federation: Arc<Federation>,
    link: u64,
    local: String,
    remote: String,
    mut rx: mpsc::Receiver<Out>,
) {
    let mut pending = VecDeque::new();
    let ended = tokio::select! {
        ended = serve(&federation, &local, &remote, &mut rx, &mut pending) => ended,
        () = given_up(&federation) => Ended::Shutdown,
    };
    federation.unlink(&local, &remote, link);
    rx.close();
    while let Ok(out) = rx.try_recv() {
        pending.push_back(out);
    }
    let bounce = match ended {
        Ended::Unreached(why) => {
            tracing::info!(%local, %remote, "cannot reach the server: {why}");
            federation.failed(&local, &remote);
            // Noted before the keys are answered: the next key claiming the domain, which
            // may come at once, finds it.
            if pending.iter().any(|out| matches!(out, Out::Verify { .. })) {
                federation.keys_failed(&local, &remote);
            }
            StanzaError::RemoteServerNotFound
        }
        // XEP-0220 §2.1.1: what waited on a key found bogus bounces as an internal error.
        Ended::Invalid => {
            tracing::warn!(%local, %remote, "the server found our dialback key invalid");
            federation.failed(&local, &remote);
            StanzaError::InternalServerError
        }
        // XEP-0220 §2.1.1: stanzas waiting on such an answer bounce with a timeout.
        Ended::Unchecked(condition) => {
            tracing::info!(%local, %remote, "the server could not check our dialback key: {condition}");
            federation.unchecked(&local, &remote);
            StanzaError::RemoteServerTimeout
        }
        Ended::Shutdown => {
            if !pending.is_empty() {
                tracing::info!(%local, %remote, dropped = pending.len(), "stopping with stanzas queued");
            }
            return;
        }
        Ended::Closed => {
            for out in pending {
                match out {
                    Out::Stanza(stanza, charge) => {
                        // Given back first: the new stream's queue counts it again.
                        drop(charge);
                        federation.send(stanza);
                    }
                    Out::Verify { answer, .. } => {
                        let _ = answer.send(Verdict::Unchecked(Unchecked::Timeout));
                    }
                }
            }
            return;
        }
    };
    for out in pending {
        match out {
            Out::Stanza(stanza, _) => federation.bounce(&stanza, bounce),
            Out::Verify { answer, .. } => {
                let _ = answer.send(Verdict::Unchecked(Unchecked::ConnectionFailed));
            }
        }
    }
}

/// The stream's life; `pending` holds what was taken from the queue but not sent.
async fn serve(
    federation: &Arc<Federation>,
    local: &str,
    remote: &str,
    rx: &mut mpsc::Receiver<Out>,
    pending: &mut VecDeque<Out>,
) -> Ended {
    let setup = Duration::from_secs(federation.config.connect_timeout_secs.max(1));
    let deadline = Instant::now() + setup;
    let Opened {
        mut stream,
        id,
        features,
    } = match connect(federation, local, remote, setup).await {
        Ok(opened) => opened,
        Err(why) => return Ended::Unreached(why),
    };
    // XEP-0178 when the remote server takes our certificate, else dialback: the key for the
    // stream id it gave us.
    let mut authenticated = false;
    if offers_external(&features) {
        match external(&mut stream, local, remote, setup).await {
            Ok(done) => authenticated = done,
            Err(e) => return Ended::Unreached(e.to_string()),
        }
    }
    if authenticated {
        federation.reached(local, remote);
        tracing::info!(%local, %remote, "outgoing stream authenticated by certificate");
    } else {
        let Some(id) = id else {
            return Ended::Unreached("no stream id".into());
        };
        let key = federation.secret.key(remote, local, &id);
        let result = stream::dialback("result", local, remote, None, None, Some(&key));
        if let Err(e) = stream.write(&result).await {
            return Ended::Unreached(e.to_string());
        }
    }
    let mut asked: HashMap<String, oneshot::Sender<Verdict>> = HashMap::new();
    let idle = Duration::from_secs(federation.config.idle_timeout_secs.max(1));
    let mut last_use = Instant::now();
    let mut stopping = federation.stopping.subscribe();
    let mut stopped = false;
    loop {
        if authenticated {
            while let Some(out) = pending.pop_front() {
                if let Err(e) = send(&mut stream, local, remote, out, &mut asked).await {
                    tracing::debug!(%local, %remote, "stream lost: {e}");
                    return Ended::Closed;
                }
            }
            if stopped {
                let _ = stream.write(verona_stream::STREAM_CLOSE).await;
                return Ended::Shutdown;
            }
        }
        let wake = if authenticated {
            last_use + idle
        } else {
            deadline
        };
        tokio::select! {
            event = stream.next() => match event {
                Ok(StreamEvent::Stanza(el)) => {
                    match answer(&el, local, remote, &mut asked) {
                        Answer::Authenticated => {
                            authenticated = true;
                            federation.reached(local, remote);
                            tracing::info!(%local, %remote, "outgoing stream authenticated");
                        }
                        Answer::Refused(why) => return Ended::Unreached(why),
                        // RFC 6120 §4.9.3.4: an authenticated stream the other server ends
                        // (idle, restarting) is an ordinary close; what follows goes over a new
                        // stream, as after a plain close.
                        Answer::Ended(condition) if authenticated => {
                            tracing::debug!(%local, %remote, condition, "the other server ended the stream");
                            let _ = stream.write(verona_stream::STREAM_CLOSE).await;
                            return Ended::Closed;
                        }
                        Answer::Ended(condition) => {
                            return Ended::Unreached(format!("stream error {condition}"));
                        }
                        Answer::Invalid => return Ended::Invalid,
                        Answer::Unchecked(condition) => return Ended::Unchecked(condition),
                        Answer::Other => {}
                    }
                    last_use = Instant::now();
                }
                Ok(StreamEvent::Header(_)) => return fail(&mut stream, authenticated).await,
                Ok(StreamEvent::End) | Err(_) => {
                    return if authenticated {
                        Ended::Closed
                    } else {
                        Ended::Unreached("the stream closed during dialback".into())
                    };
                }
            },
            out = rx.recv(), if !stopped => {
                let Some(out) = out else { return Ended::Closed };
                last_use = Instant::now();
                match out {
                    // Verification requests go at once, even before this stream is
                    // authenticated: the other server may be waiting on them to answer ours.
                    Out::Verify { .. } => {
                        if let Err(e) = send(&mut stream, local, remote, out, &mut asked).await {
                            return if authenticated {
                                Ended::Closed
                            } else {
                                Ended::Unreached(e.to_string())
                            };
                        }
                    }
                    Out::Stanza(stanza, _) if pending.len() >= federation.config.max_queue => {
                        federation.bounce(&stanza, StanzaError::ResourceConstraint);
                    }
                    stanza @ Out::Stanza(..) => pending.push_back(stanza),
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if !authenticated {
                    return Ended::Unreached("dialback timed out".into());
                }
                if pending.is_empty() && asked.is_empty() {
                    let _ = stream.write(verona_stream::STREAM_CLOSE).await;
                    tracing::debug!(%local, %remote, "idle stream closed");
                    return Ended::Closed;
                }
                last_use = Instant::now();
            }
            () = super::raised(&mut stopping), if !stopped => {
                // Shutdown, once the clients' sessions have ended: what waits (their
                // unavailable presence among it) is written, once the stream is
                // authenticated, then it closes; nothing more is taken.
                stopped = true;
                rx.close();
                while let Ok(out) = rx.try_recv() {
                    pending.push_back(out);
                }
            }
        }
    }
}

/// Resolves [`STOP_FLUSH`] after shutdown began for federation: a stream still writing or
/// being set up then (a dead peer) is given up.
async fn given_up(federation: &Federation) {
    super::raised(&mut federation.stopping.subscribe()).await;
    tokio::time::sleep(STOP_FLUSH).await;
}

async fn fail(stream: &mut Stream, authenticated: bool) -> Ended {
    let _ = stream.write(verona_stream::STREAM_CLOSE).await;
    if authenticated {
        Ended::Closed
    } else {
        Ended::Unreached("unexpected stream header".into())
    }
}

/// What an element on an outgoing stream answers.
enum Answer {
    /// Our dialback key was accepted: stanzas may flow.
    Authenticated,
    Refused(String),
    /// The other server ended the stream with a stream error: this condition.
    Ended(String),
    /// The other server's authoritative server said our key is not its.
    Invalid,
    /// The other server could not check our key: the condition of its error.
    Unchecked(String),
    Other,
}

fn answer(
    el: &Element,
    local: &str,
    remote: &str,
    asked: &mut HashMap<String, oneshot::Sender<Verdict>>,
) -> Answer {
    let ours = el.attr("from") == Some(remote) && el.attr("to") == Some(local);
    if el.is("result", ns::DIALBACK) && ours {
        return match el.attr("type") {
            Some("valid") => Answer::Authenticated,
            Some("invalid") => Answer::Invalid,
            Some("error") => Answer::Unchecked(
                (el.get_child("error", ns::SERVER))
                    .and_then(|error| error.children().find(|c| c.ns() == ns::STANZAS))
                    .map_or_else(String::new, |condition| condition.name().to_owned()),
            ),
            other => Answer::Refused(format!("dialback answered {other:?}")),
        };
    }
    if el.is("verify", ns::DIALBACK) && ours {
        if let Some(answer) = el.attr("id").and_then(|id| asked.remove(id)) {
            let verdict = match el.attr("type") {
                Some("valid") => Verdict::Valid,
                Some("invalid") => Verdict::Invalid,
                _ => Verdict::Unchecked(Unchecked::Error),
            };
            let _ = answer.send(verdict);
        }
        return Answer::Other;
    }
    if el.is("error", ns::STREAMS) {
        let condition = el.children().next().map(|c| c.name()).unwrap_or("");
        return Answer::Ended(condition.to_owned());
    }
    Answer::Other
}

async fn send(
    stream: &mut Stream,
    local: &str,
    remote: &str,
    out: Out,
    asked: &mut HashMap<String, oneshot::Sender<Verdict>>,
) -> Result<(), StreamFailure> {
    match out {
        // The charge is given back once the stanza is written.
        Out::Stanza(stanza, _charge) => {
            stream
                .write(&stream::wire_to_server_namespace(&stanza))
                .await
        }
        Out::Verify { id, key, answer } => {
            let verify = stream::dialback("verify", local, remote, Some(&id), None, Some(&key));
            asked.insert(id, answer);
            stream.write(&verify).await
        }
    }
}

/// A stream set up to the point of authentication.
struct Opened {
    stream: Stream,
    /// The id the remote server gave the stream (dialback keys are made for it).
    id: Option<String>,
    features: Element,
}

fn offers_external(features: &Element) -> bool {
    features.get_child("mechanisms", ns::SASL).is_some_and(|m| {
        m.children()
            .any(|c| c.is("mechanism", ns::SASL) && c.text() == "EXTERNAL")
    })
}

/// SASL EXTERNAL (XEP-0178) for `local`; true once the stream has restarted authenticated,
/// false if the remote server refused (dialback remains).
async fn external(
    stream: &mut Stream,
    local: &str,
    remote: &str,
    step: Duration,
) -> Result<bool, StreamFailure> {
    use base64::Engine;
    let authzid = base64::engine::general_purpose::STANDARD.encode(local);
    let auth = format!(
        "<auth xmlns='{}' mechanism='EXTERNAL'>{authzid}</auth>",
        ns::SASL
    );
    stream.write(auth.as_bytes()).await?;
    let answer = stream.element_within(step).await?;
    if !answer.is("success", ns::SASL) {
        return Ok(false);
    }
    stream.restart();
    stream.write(&stream::header(local, remote, None)).await?;
    stream.header_within(step).await?;
    stream.element_within(step).await?;
    Ok(true)
}

/// Connects to the first target that answers and negotiates TLS.
async fn connect(
    federation: &Federation,
    local: &str,
    remote: &str,
    limit: Duration,
) -> Result<Opened, String> {
    let targets = resolve::targets(&federation.config, federation.resolver.as_ref(), remote).await;
    let mut last = String::from("no address");
    for target in targets {
        let attempt = tokio::time::timeout(limit, open(federation, local, remote, &target));
        match attempt.await {
            Ok(Ok(opened)) => return Ok(opened),
            Ok(Err(e)) => last = format!("{}:{}: {e}", target.host, target.port),
            Err(_) => last = format!("{}:{}: timed out", target.host, target.port),
        }
    }
    Err(last)
}

async fn open(
    federation: &Federation,
    local: &str,
    remote: &str,
    target: &resolve::Target,
) -> Result<Opened, StreamFailure> {
    let tcp = TcpStream::connect(resolve::addresses(target).await?.as_slice()).await?;
    let _ = tcp.set_nodelay(true);
    let step = Duration::from_secs(federation.config.connect_timeout_secs.max(1));
    let mut stream = Stream::new(tcp, federation.limits.clone(), federation.write_timeout);
    if target.direct_tls {
        stream.connect_tls(&federation.direct_tls, remote).await?;
    }
    loop {
        stream.write(&stream::header(local, remote, None)).await?;
        let header = stream.header_within(step).await?;
        let features = stream.element_within(step).await?;
        if !features.is("features", ns::STREAMS) {
            return Err(StreamFailure::Protocol("expected stream features".into()));
        }
        if stream.is_tls() {
            return Ok(Opened {
                stream,
                id: header.id,
                features,
            });
        }
        if !features.has_child("starttls", ns::TLS) {
            return Err(StreamFailure::Protocol("the server offers no TLS".into()));
        }
        stream
            .write(format!("<starttls xmlns='{}'/>", ns::TLS).as_bytes())
            .await?;
        let proceed = stream.element_within(step).await?;
        if !proceed.is("proceed", ns::TLS) {
            return Err(StreamFailure::Protocol("STARTTLS refused".into()));
        }
        stream.connect_tls(&federation.starttls, remote).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse::<Element>()
            .unwrap_or_else(|e| panic!("{xml}: {e}"))
    }

    #[test]
    fn only_answers_for_this_pair_count() {
        let db = "xmlns:db='jabber:server:dialback'";
        let mut asked = HashMap::new();
        let (tx, mut rx) = oneshot::channel();
        asked.insert("i1".to_owned(), tx);
        let cases = [
            (
                format!("<db:result {db} from='montague.lit' to='capulet.lit' type='valid'/>"),
                "auth",
            ),
            (
                format!("<db:result {db} from='nurse.lit' to='capulet.lit' type='valid'/>"),
                "other",
            ),
            (
                format!("<db:result {db} from='montague.lit' to='capulet.lit' type='invalid'/>"),
                "invalid",
            ),
            (
                format!("<db:result {db} from='montague.lit' to='capulet.lit' type='bogus'/>"),
                "refused",
            ),
            (
                format!(
                    "<db:result {db} from='montague.lit' to='capulet.lit' type='error'><error xmlns='jabber:server' type='cancel'><remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"
                ),
                "unchecked remote-connection-failed",
            ),
            (
                format!(
                    "<db:verify {db} from='montague.lit' to='capulet.lit' id='i2' type='valid'/>"
                ),
                "other",
            ),
            (
                "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>".to_owned(),
                "ended connection-timeout",
            ),
        ];
        for (xml, expected) in cases {
            let got = match answer(&el(&xml), "capulet.lit", "montague.lit", &mut asked) {
                Answer::Authenticated => "auth".to_owned(),
                Answer::Refused(_) => "refused".to_owned(),
                Answer::Ended(condition) => format!("ended {condition}"),
                Answer::Invalid => "invalid".to_owned(),
                Answer::Unchecked(condition) => format!("unchecked {condition}"),
                Answer::Other => "other".to_owned(),
            };
            assert_eq!(got, expected, "{xml}");
        }
        assert!(rx.try_recv().is_err(), "i1 is still waiting");
        let verified =
            format!("<db:verify {db} from='montague.lit' to='capulet.lit' id='i1' type='valid'/>");
        answer(&el(&verified), "capulet.lit", "montague.lit", &mut asked);
        assert_eq!(rx.try_recv(), Ok(Verdict::Valid));
        assert!(asked.is_empty());
    }

    /// XEP-0220 §2.1.2: the authoritative server's answer is valid, invalid, or an error,
    /// which says nothing of the key.
    #[test]
    fn a_verification_error_is_no_verdict_on_the_key() {
        let db = "xmlns:db='jabber:server:dialback'";
        for (kind, expected) in [
            ("valid", Verdict::Valid),
            ("invalid", Verdict::Invalid),
            ("error", Verdict::Unchecked(Unchecked::Error)),
        ] {
            let mut asked = HashMap::new();
            let (tx, mut rx) = oneshot::channel();
            asked.insert("i1".to_owned(), tx);
            let xml = format!(
                "<db:verify {db} from='montague.lit' to='capulet.lit' id='i1' type='{kind}'/>"
            );
            answer(&el(&xml), "capulet.lit", "montague.lit", &mut asked);
            assert_eq!(rx.try_recv(), Ok(expected), "{kind}");
        }
    }
}
