//! Stream negotiation (RFC 6120 §4–7): the stream header and features, STARTTLS, SASL,
//! XEP-0077 registration before authentication, XEP-0138 compression, and resource binding,
//! after which the connection is a bound [`Session`](super::session::Session).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jid::{BareJid, ResourcePart};
use minidom::Element;
use verona_auth::{Failure, Mechanism, ScramHash, ScramServer};
use verona_stream::StreamHeader;
use xmpp_parsers::bind::{BindQuery, BindResponse};

use super::session::Session;
use super::transport::{Transport, tls_exporter};
use super::{Connection, End, HANDSHAKE_TIMEOUT, State, fault, random_id};
use crate::compress::Zlib;
use crate::iq;
use crate::router::SessionHandle;
use crate::xml::{BuilderExt, StanzaError, StreamError, builder, error_reply, iq_result, ns};

/// A SASL exchange waiting for the client's next message.
pub(super) enum Sasl {
    /// PLAIN without an initial response: the credentials come in `<response/>`.
    Plain,
    /// SCRAM (-PLUS when the flag is set) without an initial response: client-first comes in
    /// `<response/>`.
    ScramFirst(ScramHash, bool),
    /// SCRAM after the server-first challenge.
    ScramFinal {
        server: Box<ScramServer>,
        /// The account and the salt of its credentials.
        jid: Option<(BareJid, Vec<u8>)>,
    },
}

impl Connection {
    pub(super) fn on_header(&mut self, header: StreamHeader) -> Result<(), End> {
        let header_bytes = self.stream_header(header.from.as_deref());
        self.out.extend(header_bytes);
        let major = header
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major.is_none_or(|m| m < 1) {
            return Err(fault(
                StreamError::UnsupportedVersion,
                "XMPP 1.0 streams only",
            ));
        }
        if let Some(to) = &header.to {
            let ours = BareJid::new(to)
                .is_ok_and(|j| j.node().is_none() && j.domain().as_str() == self.shared.domain);
            if !ours {
                return Err(fault(
                    StreamError::HostUnknown,
                    format!("this server hosts {}", self.shared.domain),
                ));
            }
        }
        let key = FeaturesKey {
            state: match self.state {
                State::Unauthenticated { .. } => 0,
                State::Authenticated { .. } => 1,
                State::Bound(_) => 2,
            },
            secure: self.secure,
            binding: self.binding.as_ref().map(|binding| binding.kind),
            compressing: self.compression.is_some(),
            websocket: self.io.is_websocket(),
        };
        let features = self
            .shared
            .features
            .get(key, || verona_stream::stream_features(&self.features()));
        self.out.extend_from_slice(&features);
        Ok(())
    }

    /// Every input of this but the configuration is in [`FeaturesKey`].
    fn features(&self) -> Element {
        let config = &self.shared.config;
        let mut features = builder("features", ns::STREAMS);
        match &self.state {
            State::Unauthenticated { .. } => {
                // RFC 7395 §3.8: TLS is the WebSocket's own (wss), or a proxy's.
                if !self.secure && !self.io.is_websocket() {
                    let mut starttls = builder("starttls", ns::TLS);
                    if config.c2s.require_encryption {
                        starttls = starttls.append(Element::bare("required", ns::TLS));
                    }
                    features = features.append(starttls.build());
                }
                if self.secure || !config.c2s.require_encryption {
                    let mut mechanisms = builder("mechanisms", ns::SASL);
                    for mechanism in self.offered_mechanisms() {
                        mechanisms = mechanisms.append(crate::xml::text_child(
                            "mechanism",
                            ns::SASL,
                            mechanism.name(),
                        ));
                    }
                    features = features.append(mechanisms.build());
                    if let Some(binding) = &self.binding {
                        // XEP-0440: which channel binding the -PLUS mechanisms use.
                        let kind =
                            builder("channel-binding", ns::SASL_CB).with("type", binding.kind);
                        features = features.append(
                            builder("sasl-channel-binding", ns::SASL_CB)
                                .append(kind.build())
                                .build(),
                        );
                    }
                    if config.registration.allow && self.passwords_may_pass() {
                        features = features.append(Element::bare("register", ns::REGISTER_FEATURE));
                    }
                }
            }
            State::Authenticated { .. } => {
                // A WebSocket is compressed by its own extension, if at all (RFC 7395 §3.9).
                if config.compression.enabled
                    && self.compression.is_none()
                    && !self.io.is_websocket()
                {
                    let method = crate::xml::text_child("method", ns::COMPRESS_FEATURE, "zlib");
                    let compression = builder("compression", ns::COMPRESS_FEATURE).append(method);
                    features = features.append(compression.build());
                }
                features = features.append(Element::bare("bind", ns::BIND)).append(
                    builder("session", ns::SESSION)
                        .append(Element::bare("optional", ns::SESSION))
                        .build(),
                );
                // RFC 6121 §2.6: the roster is versioned.
                features = features.append(Element::bare("ver", ns::ROSTER_VER));
                features = features
                    .append(Element::bare("sm", ns::SM))
                    .append(Element::bare("csi", ns::CSI));
            }
            State::Bound(_) => {}
        }
        features.build()
    }

    fn offered_mechanisms(&self) -> Vec<Mechanism> {
        let mut offered = Vec::with_capacity(5);
        if self.binding.is_some() {
            offered.push(Mechanism::ScramPlus(ScramHash::Sha256));
            offered.push(Mechanism::ScramPlus(ScramHash::Sha1));
        }
        offered.push(Mechanism::Scram(ScramHash::Sha256));
        offered.push(Mechanism::Scram(ScramHash::Sha1));
        if self.passwords_may_pass() {
            offered.push(Mechanism::Plain);
        }
        offered
    }

    /// Whether a password may be sent on this stream as it is (PLAIN, XEP-0077 registration
    /// and password change): over TLS, or where the operator allows it in the clear.
    pub(super) fn passwords_may_pass(&self) -> bool {
        self.secure || self.shared.config.c2s.allow_insecure_auth
    }

    pub(super) async fn unauthenticated(
        &mut self,
        el: Element,
        namespace: &str,
    ) -> Result<(), End> {
        let config = &self.shared.config;
        if namespace == ns::TLS && el.name() == "starttls" {
            return self.starttls().await;
        }
        if !self.secure && config.c2s.require_encryption {
            if namespace == ns::SASL && el.name() == "auth" {
                self.send_sasl_failure(Failure::EncryptionRequired);
                return Ok(());
            }
            let why = match self.io.is_websocket() {
                true => "this WebSocket is not encrypted: connect with wss://",
                false => "use STARTTLS first",
            };
            return Err(fault(StreamError::PolicyViolation, why));
        }
        if namespace == ns::SASL {
            return self.sasl(el).await;
        }
        if el.name() == "iq" && el.has_child("query", ns::REGISTER) {
            return self.register_account(el).await;
        }
        if el.is("compress", ns::COMPRESS) {
            // Compression only follows authentication; XEP-0138 failures are not stream errors.
            self.send_compress_failure("setup-failed");
            return Ok(());
        }
        Err(fault(StreamError::NotAuthorized, "authenticate first"))
    }

    async fn starttls(&mut self) -> Result<(), End> {
        if self.io.is_websocket() {
            return Err(fault(
                StreamError::PolicyViolation,
                "no STARTTLS over a WebSocket: connect with wss://",
            ));
        }
        if self.secure {
            return Err(fault(
                StreamError::PolicyViolation,
                "TLS is already in place",
            ));
        }
        self.send(&Element::bare("proceed", ns::TLS));
        self.flush().await?;
        let Transport::Plain(tcp) = std::mem::replace(&mut self.io, Transport::Upgrading) else {
            return Err(End::Gone);
        };
        let accept = self.shared.starttls.accept(tcp);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(tls)) => {
                self.binding = tls_exporter(&tls);
                self.io = Transport::Tls(Box::new(tls));
                self.secure = true;
                self.restart_stream();
                Ok(())
            }
            _ => Err(End::Gone),
        }
    }

    /// After STARTTLS and SASL success both sides start a new stream (RFC 6120 §5.4.3.3, §6.4.6).
    pub(super) fn restart_stream(&mut self) {
        let authenticated = !matches!(self.state, State::Unauthenticated { .. });
        self.parser = super::new_parser(&self.shared, authenticated);
        if authenticated {
            self.io.authenticated();
        }
        self.header_sent = false;
    }

    async fn sasl(&mut self, el: Element) -> Result<(), End> {
        let State::Unauthenticated { sasl } = &mut self.state else {
            unreachable!("sasl() is only called before authentication");
        };
        let pending = sasl.take();
        match (el.name(), pending) {
            ("auth", _) => {
                let Some(mechanism) = el
                    .attr("mechanism")
                    .and_then(Mechanism::from_name)
                    .filter(|m| self.offered_mechanisms().contains(m))
                else {
                    let failure = if el.attr("mechanism") == Some("PLAIN") {
                        Failure::EncryptionRequired
                    } else {
                        Failure::InvalidMechanism
                    };
                    return self.sasl_failure(failure).await;
                };
                let Some(data) = decode_sasl(&el) else {
                    return self.sasl_failure(Failure::IncorrectEncoding).await;
                };
                let exchange = match mechanism {
                    Mechanism::Plain => Sasl::Plain,
                    Mechanism::Scram(hash) => Sasl::ScramFirst(hash, false),
                    Mechanism::ScramPlus(hash) => Sasl::ScramFirst(hash, true),
                };
                // `=` is an initial response of no bytes (RFC 6120 §6.4.2), which the
                // mechanism then judges; no text at all is none: ask for it.
                if data.is_empty() && el.text().trim() != "=" {
                    // No initial response: ask for it with an empty challenge.
                    self.set_sasl(exchange);
                    self.send(&builder("challenge", ns::SASL).build());
                    return Ok(());
                }
                self.sasl_step(exchange, &data).await
            }
            ("response", Some(exchange)) => {
                let Some(data) = decode_sasl(&el) else {
                    return self.sasl_failure(Failure::IncorrectEncoding).await;
                };
                self.sasl_step(exchange, &data).await
            }
            ("abort", _) => {
                self.send_sasl_failure(Failure::Aborted);
                Ok(())
            }
            _ => self.sasl_failure(Failure::MalformedRequest).await,
        }
    }

    fn set_sasl(&mut self, exchange: Sasl) {
        if let State::Unauthenticated { sasl } = &mut self.state {
            *sasl = Some(exchange);
        }
    }

    async fn sasl_step(&mut self, exchange: Sasl, data: &[u8]) -> Result<(), End> {
        let outcome = match exchange {
            Sasl::Plain => self.plain(data).await.map(|jid| (jid, None)),
            Sasl::ScramFirst(hash, plus) => return self.scram_first(hash, plus, data).await,
            Sasl::ScramFinal { mut server, jid } => {
                server.client_final(data).and_then(|server_final| {
                    Ok((jid.ok_or(Failure::NotAuthorized)?, Some(server_final)))
                })
            }
        };
        match outcome {
            Ok((jid, additional)) => {
                self.sasl_success(jid, additional);
                Ok(())
            }
            Err(failure) => self.sasl_failure(failure).await,
        }
    }

    async fn plain(&mut self, data: &[u8]) -> Result<(BareJid, Vec<u8>), Failure> {
        let message = verona_auth::parse_plain(data)?;
        let jid = self
            .shared
            .accounts
            .jid_for_username(&message.authcid)
            .ok_or(Failure::NotAuthorized)?;
        self.attempted = Some(jid.clone());
        check_authzid(message.authzid.as_deref(), &jid)?;
        self.wait_turn().await?;
        let creds = self
            .shared
            .accounts
            .credentials(&jid)
            .await
            .map_err(|_| Failure::TemporaryAuthFailure)?;
        // An account that does not exist costs the same hashing: the time tells nothing.
        let salt = creds.as_ref().map(|creds| creds.salt.clone());
        let valid = (self.shared.accounts)
            .verify_password(creds, message.password)
            .await;
        match salt {
            Some(salt) if valid => Ok((jid, salt)),
            _ => Err(Failure::NotAuthorized),
        }
    }

    /// An authenticated stream binds or resumes only while the credentials it proved are
    /// still its account's (XEP-0077 §3.2, issue #11 H3): an account deleted, or whose
    /// password changed, since, ends the stream.
    pub(super) async fn still_authorized(&self, jid: &BareJid, salt: &[u8]) -> Result<(), End> {
        match self.shared.accounts.credentials(jid).await {
            Ok(Some(creds)) if creds.salt == salt => Ok(()),
            Ok(_) => Err(fault(
                StreamError::NotAuthorized,
                "the account changed since it was authenticated",
            )),
            Err(e) => Err(fault(StreamError::InternalServerError, e.to_string())),
        }
    }

    async fn scram_first(&mut self, hash: ScramHash, plus: bool, data: &[u8]) -> Result<(), End> {
        let mut server = Box::new(ScramServer::with_binding(hash, plus, self.binding.clone()));
        let first = match server.client_first(data) {
            Ok(first) => first,
            Err(failure) => return self.sasl_failure(failure).await,
        };
        let jid = self.shared.accounts.jid_for_username(&first.username);
        self.attempted = jid.clone();
        if let Some(jid) = &jid
            && let Err(failure) = check_authzid(first.authzid.as_deref(), jid)
        {
            return self.sasl_failure(failure).await;
        }
        if let Err(failure) = self.wait_turn().await {
            return self.sasl_failure(failure).await;
        }
        let creds = match &jid {
            Some(jid) => match self.shared.accounts.credentials(jid).await {
                Ok(creds) => creds,
                Err(_) => return self.sasl_failure(Failure::TemporaryAuthFailure).await,
            },
            None => None,
        };
        // Unknown users get a plausible challenge too, so existence does not leak.
        let name = jid
            .as_ref()
            .map_or(first.username.as_str(), |jid| jid.as_str());
        let unknown = || self.shared.accounts.unknown(name);
        let challenge = server.server_first(creds.as_ref().ok_or_else(unknown));
        self.send(
            &builder("challenge", ns::SASL)
                .append(BASE64.encode(challenge))
                .build(),
        );
        let jid = jid.zip(creds.map(|creds| creds.salt));
        self.set_sasl(Sasl::ScramFinal { server, jid });
        Ok(())
    }

    fn sasl_success(&mut self, (jid, salt): (BareJid, Vec<u8>), additional: Option<Vec<u8>>) {
        let mut success = builder("success", ns::SASL);
        if let Some(data) = additional {
            success = success.append(BASE64.encode(data));
        }
        self.send(&success.build());
        self.shared.throttle.success(&jid);
        self.admission = None;
        self.attempted = None;
        self.lane = None;
        tracing::info!(%jid, "authenticated");
        let bind_by = tokio::time::Instant::now()
            + std::time::Duration::from_secs(
                self.shared.config.limits.unauthenticated_timeout_secs,
            );
        self.state = State::Authenticated { jid, salt, bind_by };
        self.deadline = self.keepalive_deadline(tokio::time::Instant::now());
        self.restart_stream();
    }

    /// An attempt waits, before it is verified, for as long as the failures from its address
    /// and on its account have earned, so that a right guess is answered no sooner than a
    /// wrong one (issue #11 H4).
    async fn wait_turn(&mut self) -> Result<(), Failure> {
        let now = std::time::Instant::now();
        let throttle = &self.shared.throttle;
        // A turn an aborted attempt held is given back before this one takes its own.
        self.lane = None;
        if let Some(account) = &self.attempted {
            // Held until this attempt is judged (`sasl_success`, `sasl_failure`).
            let turn = throttle.turn(self.peer.ip(), account, now).await;
            let turn = turn.ok_or(Failure::TemporaryAuthFailure)?;
            if turn.in_lane() {
                tracing::debug!(%account, "an attempt from an address that failed on the account");
            }
            self.lane = Some(turn);
        }
        let delay = throttle.delay(self.peer.ip(), self.attempted.as_ref(), now);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// A failed attempt: counted for its address and account, and fatal after too many.
    async fn sasl_failure(&mut self, failure: Failure) -> Result<(), End> {
        self.auth_failures += 1;
        let account = self.attempted.take();
        self.lane = None;
        let now = std::time::Instant::now();
        (self.shared.throttle).failure(self.peer.ip(), account.as_ref(), now);
        tracing::info!(
            condition = failure.condition(),
            account = account.as_ref().map(|a| a.as_str()),
            "authentication failed"
        );
        self.send_sasl_failure(failure);
        if self.auth_failures >= self.shared.config.auth.max_failures_per_connection {
            return Err(fault(
                StreamError::PolicyViolation,
                "too many failed authentication attempts",
            ));
        }
        Ok(())
    }

    fn send_sasl_failure(&mut self, failure: Failure) {
        self.set_sasl_none();
        let failure = builder("failure", ns::SASL)
            .append(Element::bare(failure.condition(), ns::SASL))
            .build();
        self.send(&failure);
    }

    fn set_sasl_none(&mut self) {
        if let State::Unauthenticated { sasl } = &mut self.state {
            *sasl = None;
        }
    }

    /// XEP-0077 registration of a new account, before authentication.
    async fn register_account(&mut self, el: Element) -> Result<(), End> {
        // RFC 6120 §8.2.3: an answer is never answered.
        if matches!(el.attr("type"), Some("result" | "error")) {
            return Ok(());
        }
        // Before authentication only the server is spoken to: a request for anyone else is
        // refused in the server's name, not answered as if that address had.
        let for_the_server = el
            .attr("to")
            .is_none_or(|to| jid::Jid::new(to).is_ok_and(|to| to.as_str() == self.shared.domain));
        if !for_the_server {
            if let Some(mut reply) = error_reply(&el, StanzaError::ServiceUnavailable, None) {
                crate::xml::set_attr(&mut reply, "from", self.shared.domain.as_str());
                self.send(&reply);
            }
            return Ok(());
        }
        if !self.passwords_may_pass() {
            let why = Some(INSECURE_REGISTRATION);
            if let Some(reply) = error_reply(&el, StanzaError::NotAuthorized, why) {
                self.send(&reply);
            }
            return Ok(());
        }
        let reply = iq::register_new(&self.shared, &el, self.peer.ip()).await;
        self.send(&reply);
        Ok(())
    }

    /// XEP-0138: `<compressed/>` goes out uncompressed, then both sides restart the stream
    /// compressed.
    pub(super) async fn compress(&mut self, el: &Element) -> Result<(), End> {
        let offered = self.shared.config.compression.enabled && !self.io.is_websocket();
        if !offered || self.compression.is_some() {
            self.send_compress_failure("setup-failed");
            return Ok(());
        }
        let method = el.get_child("method", ns::COMPRESS).map(|m| m.text());
        if method.as_deref() != Some("zlib") {
            self.send_compress_failure("unsupported-method");
            return Ok(());
        }
        self.send(&Element::bare("compressed", ns::COMPRESS));
        self.flush().await?;
        self.compression = Some(Box::new(Zlib::new()));
        self.restart_stream();
        Ok(())
    }

    fn send_compress_failure(&mut self, condition: &str) {
        let failure = builder("failure", ns::COMPRESS)
            .append(Element::bare(condition, ns::COMPRESS))
            .build();
        self.send(&failure);
    }

    pub(super) async fn authenticated(&mut self, el: Element, jid: BareJid) -> Result<(), End> {
        if el.name() != "iq" || el.attr("type") != Some("set") {
            return Err(fault(StreamError::NotAuthorized, "bind a resource first"));
        }
        if el.has_child("session", ns::SESSION) {
            // RFC 3921 sessions are a no-op kept for old clients (RFC 6121 Appendix E).
            self.send(&iq_result(&el, None));
            return Ok(());
        }
        let Some(bind) = el.get_child("bind", ns::BIND) else {
            return Err(fault(StreamError::NotAuthorized, "bind a resource first"));
        };
        // RFC 6120 §7.6.2: a bind request the server cannot read is a stanza error; the
        // client may try again.
        let Ok(request) = BindQuery::try_from(bind.clone()) else {
            let why = Some("a bind request has at most one <resource/>, of text");
            if let Some(reply) = error_reply(&el, StanzaError::BadRequest, why) {
                self.send(&reply);
            }
            return Ok(());
        };
        let resource = match request.resource.filter(|r| !r.is_empty()) {
            Some(r) => match ResourcePart::new(&r) {
                Ok(r) => r.into_owned(),
                Err(_) => {
                    let reply = error_reply(&el, StanzaError::BadRequest, Some("invalid resource"));
                    self.send(&reply.expect("an iq set is answered"));
                    return Ok(());
                }
            },
            None => ResourcePart::new(&format!("verona-{}", random_id()))
                .expect("valid")
                .into_owned(),
        };
        let full = jid.with_resource(&resource);
        let limit = self.shared.config.limits.max_sessions_per_account;
        let router = &self.shared.router;
        while router.session(&full).is_none() && router.sessions_of(&jid).len() >= limit {
            // A session parked for resumption makes room, the one parked longest ago first, as
            // Prosody's mod_smacks ends its oldest hibernating session: a client reconnecting
            // without resuming is not locked out of its account for the resumption window.
            // What it did not deliver reaches the account, as when its window ends.
            if let Some((id, parked)) = self.shared.resumable.take_oldest_parked(&jid) {
                self.shared.resumable.forget(&id);
                let ended = &parked.session.jid;
                tracing::info!(jid = %ended, "too many sessions: the parked session ends");
                super::sm::end_session(&self.shared, parked.session, Some(parked.sm)).await;
                continue;
            }
            // RFC 6120 §7.6.2.1; a client rebinding one of its resources replaces it instead.
            let reply = error_reply(&el, StanzaError::TooManyResources, None);
            self.send(&reply.expect("an iq set is answered"));
            return Ok(());
        }
        // A session of this resource parked for resumption (its client restarted and lost
        // what resuming needs) ends now, as on Prosody: what it held reaches the account, and
        // its end, later, cannot take the new session's presence with it.
        if let Some((id, parked)) = self.shared.resumable.take_parked(&full) {
            self.shared.resumable.forget(&id);
            tracing::info!(jid = %full, "resource bound again: the parked session ends");
            super::sm::end_session(&self.shared, parked.session, Some(parked.sm)).await;
        }
        if router.session(&full).is_some() {
            self.shared.pubsub.session_replaced(full.clone()).await;
        }
        // The account's services (and its blocklist) are in memory before any stanza of the
        // session is routed.
        self.shared.pubsub.session_started(full.clone()).await;
        let limits = &self.shared.config.limits;
        let (handle, ends) = SessionHandle::new(limits.outbound_queue, limits.outbound_queue_bytes);
        self.shared.router.bind(&full, handle.clone());
        tracing::info!(jid = %full, "resource bound");
        let payload = Element::from(BindResponse { jid: full.clone() });
        self.send(&iq_result(&el, Some(payload)));
        self.state = State::Bound(Session {
            pubsub: self.shared.pubsub.for_account(&jid),
            jid: full,
            handle,
            ends,
            caps_wait: None,
            caps_refused: None,
            sm: None,
            inactive: None,
            directed: None,
        });
        Ok(())
    }
}

/// `<auth/>` and `<response/>` carry base64; `=` (or nothing) is the empty message.
fn decode_sasl(el: &Element) -> Option<Vec<u8>> {
    let text = el.text();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Some(Vec::new());
    }
    BASE64.decode(text).ok()
}

/// Only the account itself may be named as the authorization identity.
fn check_authzid(authzid: Option<&str>, jid: &BareJid) -> Result<(), Failure> {
    match authzid {
        None => Ok(()),
        Some(a) if BareJid::new(a).is_ok_and(|a| &a == jid) => Ok(()),
        Some(_) => Err(Failure::InvalidAuthzid),
    }
}

/// What a stream's features depend on besides the server's configuration: every stream gets
/// one of a handful of feature lists, each serialized once ([`FeaturesCache`]).
#[derive(Clone, Copy, PartialEq, Eq)]
struct FeaturesKey {
    state: u8,
    secure: bool,
    binding: Option<&'static str>,
    compressing: bool,
    websocket: bool,
}

/// The serialized stream features by [`FeaturesKey`]: three streams per login each sent a
/// list built and serialized anew (3 % of the server's CPU per TLS login).
#[derive(Default)]
pub struct FeaturesCache(std::sync::Mutex<Vec<(FeaturesKey, Arc<[u8]>)>>);

impl FeaturesCache {
    fn get(&self, key: FeaturesKey, make: impl FnOnce() -> Vec<u8>) -> Arc<[u8]> {
        let mut made = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, bytes)) = made.iter().find(|(k, _)| *k == key) {
            return Arc::clone(bytes);
        }
        let bytes: Arc<[u8]> = make().into();
        made.push((key, Arc::clone(&bytes)));
        bytes
    }
}

/// Why XEP-0077 registration and password change are refused (`not-authorized`, §3.3) on a
/// stream that may not carry a password in the clear ([`Connection::passwords_may_pass`]).
pub(super) const INSECURE_REGISTRATION: &str =
    "this stream is not encrypted: it would carry the password in clear";
