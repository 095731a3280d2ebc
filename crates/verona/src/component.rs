//! XEP-0114 external components: a program connects, names the domain it serves, proves it
//! knows that domain's secret (`<handshake/>`, SHA-1 of the stream id and the secret), and
//! from then on gets every stanza addressed to the domain and may send stanzas from it. Its
//! stanzas enter the server as another server's would (`s2s::inbound`), except that they may
//! go on to other components and servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::BareJid;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use tokio::net::TcpStream;
use verona_stream::{Limits, StreamEvent};

use crate::c2s::random_id;
use crate::router::SessionHandle;
use crate::s2s::stream::{self, Stream, StreamFailure};
use crate::server::Shared;
use crate::slots::Proof;
use crate::xml::{StreamError, ns};

type Failure = (Option<StreamError>, String);

/// Serves one component connection until it closes.
pub async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, proof: Proof) {
    let limits = Limits {
        max_stanza_bytes: shared.config.limits.max_stanza_bytes,
        max_depth: shared.config.limits.max_depth,
        max_attributes: shared.config.limits.max_attributes,
    };
    let write_timeout = Duration::from_secs(shared.config.c2s.write_timeout_secs.max(1));
    let mut stream = Stream::with_namespace(tcp, ns::COMPONENT, limits, write_timeout);
    match run(&shared, &mut stream, peer, &proof).await {
        Ok(domain) => tracing::info!(%peer, %domain, "component disconnected"),
        Err((error, why)) => {
            tracing::info!(%peer, "component stream ended: {why}");
            if let Some(error) = error {
                let _ = stream
                    .write(&verona_stream::stream_error(error.condition(), None))
                    .await;
            }
        }
    }
    let _ = stream.write(verona_stream::STREAM_CLOSE).await;
}

fn lost(e: StreamFailure) -> Failure {
    match e {
        StreamFailure::Framing(framing) => (Some(StreamError::from(&framing)), framing.to_string()),
        StreamFailure::Timeout => (Some(StreamError::ConnectionTimeout), "timed out".into()),
        other => (None, other.to_string()),
    }
}

/// XEP-0114 §2: the handshake is the lower-case hex SHA-1 of the stream id and the secret.
fn handshake(stream_id: &str, secret: &str) -> String {
    crate::hex(&Sha1::digest(format!("{stream_id}{secret}")))
}

async fn run(
    shared: &Shared,
    stream: &mut Stream,
    peer: SocketAddr,
    proof: &Proof,
) -> Result<String, Failure> {
    let setup = Duration::from_secs(shared.config.limits.unauthenticated_timeout_secs.max(1));
    let header = stream.header_within(setup).await.map_err(lost)?;
    proof.stepped();
    // Looked up as the domain it names (`GW.capulet.lit.` is gw.capulet.lit), as the
    // configured names were normalised.
    let domain = header.to.clone().unwrap_or_default();
    let domain = crate::jids::parse_bare(&domain)
        .ok()
        .filter(|jid| jid.node().is_none())
        .map_or(domain, |jid| jid.to_string());
    let id = random_id();
    let opening = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' from='{}' id='{id}'>",
        ns::COMPONENT,
        ns::STREAMS,
        domain
            .replace('&', "&amp;")
            .replace('\'', "&apos;")
            .replace('<', "&lt;"),
    );
    stream.write(opening.as_bytes()).await.map_err(lost)?;
    let Some(secret) = shared.config.components.secrets.get(&domain) else {
        return Err((
            Some(StreamError::HostUnknown),
            format!("no component {domain:?}"),
        ));
    };
    let given = stream.element_within(setup).await.map_err(lost)?;
    proof.stepped();
    // Guesses at a component's secret wait as guesses at a password do (`throttle.rs`), by
    // address and by the component's domain: answered at once, 50 addresses made 47,000 a
    // minute.
    let throttle = &shared.throttle;
    let named = BareJid::new(&domain).ok();
    let wait = throttle.delay(peer.ip(), named.as_ref(), Instant::now());
    tokio::time::sleep(wait).await;
    let expected = handshake(&id, secret);
    let text = given.text();
    let valid = given.is("handshake", ns::COMPONENT)
        && text.trim().len() == expected.len()
        && bool::from(text.trim().as_bytes().ct_eq(expected.as_bytes()));
    if !valid {
        throttle.failure(peer.ip(), named.as_ref(), Instant::now());
        return Err((
            Some(StreamError::NotAuthorized),
            format!("{domain}: wrong handshake"),
        ));
    }
    proof.proved();
    let limits = &shared.config.limits;
    let (handle, mut ends) = SessionHandle::new(limits.outbound_queue, limits.outbound_queue_bytes);
    if !shared.router.add_component(&domain, handle.clone()) {
        return Err((
            Some(StreamError::Conflict),
            format!("{domain} is already connected"),
        ));
    }
    tracing::info!(%domain, "component connected");
    let served = serve_stanzas(shared, stream, &domain, &mut ends).await;
    shared.router.remove_component(&domain, &handle);
    served.map(|()| domain)
}

async fn serve_stanzas(
    shared: &Shared,
    stream: &mut Stream,
    domain: &str,
    ends: &mut crate::router::SessionEnds,
) -> Result<(), Failure> {
    stream
        .write(format!("<handshake xmlns='{}'/>", ns::COMPONENT).as_bytes())
        .await
        .map_err(lost)?;
    let mut shutdown = shared.shutdown.clone();
    let mut senders = crate::s2s::inbound::Senders::default();
    loop {
        tokio::select! {
            event = stream.next() => match event.map_err(lost)? {
                StreamEvent::Stanza(el) if matches!(el.name(), "message" | "presence" | "iq") && el.ns() == ns::COMPONENT => {
                    // Read as dispatch reads it: the domain checked is the one stamped.
                    let from = el.attr("from").and_then(|f| crate::jids::parse(f).ok());
                    if from.as_ref().is_none_or(|f| f.domain().as_str() != domain) {
                        return Err((Some(StreamError::InvalidFrom), format!("a stanza not from {domain}")));
                    }
                    if el.attr("to").and_then(|t| crate::jids::parse(t).ok()).is_none() {
                        return Err((Some(StreamError::ImproperAddressing), "a stanza without to".into()));
                    }
                    if let Some(el) = stream::from_namespace(&el, ns::COMPONENT) {
                        crate::s2s::inbound::dispatch(shared, el, true, &mut senders).await;
                    }
                }
                StreamEvent::Stanza(el) => {
                    return Err((Some(StreamError::UnsupportedStanzaType), format!("<{}/>", el.name())));
                }
                StreamEvent::Header(_) => return Err((Some(StreamError::BadFormat), "a second header".into())),
                StreamEvent::End => return Ok(()),
            },
            wire = ends.queue.recv() => {
                let bytes = stream::swap_top_namespace(&wire.to_vec(), ns::CLIENT, ns::COMPONENT);
                stream.write(&bytes).await.map_err(lost)?;
            }
            _ = ends.close.changed() => {
                let reason = *ends.close.borrow();
                let error = reason.map(|r| r.stream_error());
                return Err((error, format!("closed by the server: {reason:?}")));
            }
            _ = shutdown.changed() => {
                return Err((Some(StreamError::SystemShutdown), "shutting down".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_is_the_hex_sha1_of_id_and_secret() {
        // Computed independently (Python's hashlib) for XEP-0114's stream id.
        assert_eq!(
            handshake("3BF96D32", "secret"),
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        );
    }
}
