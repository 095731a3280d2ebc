//! tokio-xmpp 6 (a third-party client) against a real Verona: login over STARTTLS and direct
//! TLS, SASL outcomes, iq routing between clients, chat messages and the server's own iqs.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use sasl::common::ChannelBinding;
use tokio::time::timeout;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::error::{AuthError, Error};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::sasl::DefinedCondition as SaslCondition;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, IqRequest, IqResponse, Stanza, client_login};

use common::{
    JULIET, JULIET_PASSWORD, ROMEO, ROMEO_PASSWORD, TIMEOUT, TappedStartTls, TestServer,
    Transcript, bare, juliet_credentials, next_stanza, online,
};

#[tokio::test]
async fn client_logs_in_over_starttls_and_binds_a_resource() {
    let server = TestServer::start().await;
    // The stock connector hides the wire, so a tapped one shows which mechanism was chosen.
    let transcript = Transcript::default();
    let connector = TappedStartTls {
        addr: server.server.c2s_addrs()[0],
        transcript: transcript.clone(),
    };
    let mut client =
        Client::new_with_connector(bare(JULIET), JULIET_PASSWORD, connector, Timeouts::tight());

    let bound = online(&mut client).await;
    assert_eq!(bound.to_bare(), bare(JULIET));
    assert!(!bound.resource().as_str().is_empty());
    assert_eq!(client.bound_jid(), Some(&bound));
    // With TLS 1.3 tokio-xmpp derives tls-exporter data and prefers SCRAM-SHA-256-PLUS, which
    // Verona offers (RFC 9266); without it the client would fall back to PLAIN.
    assert_eq!(
        transcript.sasl_mechanism().as_deref(),
        Some("SCRAM-SHA-256-PLUS")
    );

    client.send_end().await.expect("clean close");
    server.shutdown().await;
}

/// How a login attempt binds to the TLS channel.
#[derive(Clone, Copy, Debug)]
enum Binding {
    /// The tls-exporter data the client derived (p=tls-exporter).
    Exporter,
    /// n: no binding.
    None,
    /// y: the client could bind but believes the server cannot.
    ClaimUnsupported,
}

#[tokio::test]
async fn every_offered_mechanism_authenticates() {
    let server = TestServer::start().await;
    let attempts = [
        ("SCRAM-SHA-256-PLUS", Binding::Exporter, true),
        ("SCRAM-SHA-1-PLUS", Binding::Exporter, true),
        ("SCRAM-SHA-256", Binding::None, true),
        ("SCRAM-SHA-1", Binding::None, true),
        ("PLAIN", Binding::None, true),
        // Verona offered -PLUS, so a client claiming it did not is being downgraded.
        ("SCRAM-SHA-256", Binding::ClaimUnsupported, false),
    ];
    for (mechanism, binding, succeeds) in attempts {
        let (offered, stream, derived) = server.sasl_ready().await;
        let expected: BTreeSet<String> = [
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(offered, expected);
        assert!(
            matches!(derived, ChannelBinding::TlsExporter(_)),
            "TLS 1.3 expected, client derived {derived:?}"
        );
        let channel_binding = match binding {
            Binding::Exporter => derived,
            Binding::None => ChannelBinding::None,
            Binding::ClaimUnsupported => ChannelBinding::Unsupported,
        };
        // client_login picks from the set it is given, so passing one mechanism forces it.
        let only = BTreeSet::from([mechanism.to_owned()]);
        let credentials = juliet_credentials(JULIET_PASSWORD, channel_binding);
        let result = timeout(TIMEOUT, client_login(stream, only, credentials))
            .await
            .expect("SASL finished in time");
        match (result, succeeds) {
            (Ok(_), true) => {}
            (Err(Error::Auth(AuthError::Fail(SaslCondition::NotAuthorized))), false) => {}
            (Err(e), _) => panic!("{mechanism} with {binding:?}: {e}"),
            (Ok(_), false) => panic!("{mechanism} with {binding:?} was accepted"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_not_authorized() {
    let server = TestServer::start().await;
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
        let (_, stream, _) = server.sasl_ready().await;
        let only = BTreeSet::from([mechanism.to_owned()]);
        let credentials = juliet_credentials("wrong", ChannelBinding::None);
        let result = timeout(TIMEOUT, client_login(stream, only, credentials))
            .await
            .expect("SASL finished in time");
        match result {
            Err(Error::Auth(AuthError::Fail(SaslCondition::NotAuthorized))) => {}
            Err(e) => panic!("{mechanism}: expected not-authorized, got {e:?}"),
            Ok(_) => panic!("{mechanism}: a wrong password was accepted"),
        }
    }

    // The full client retries failed logins forever and reports nothing, so "never online"
    // means "no event at all" within a few retries.
    let mut client = server.client(JULIET, "wrong");
    let event = timeout(Duration::from_secs(3), client.next()).await;
    assert!(event.is_err(), "expected silence, got {event:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn iq_and_chat_message_travel_between_clients() {
    let server = TestServer::start().await;
    let mut juliet = server.client(JULIET, JULIET_PASSWORD);
    let mut romeo = server.client(&format!("{ROMEO}/balcony"), ROMEO_PASSWORD);
    let juliet_jid = online(&mut juliet).await;
    let romeo_jid = online(&mut romeo).await;
    assert_eq!(romeo_jid.to_string(), format!("{ROMEO}/balcony"));

    // The response token only completes for a reply from exactly the addressee with the
    // request's id, which is the routing guarantee under test.
    let response = juliet
        .send_iq(
            Some(Jid::from(romeo_jid.clone())),
            IqRequest::Get(Ping.into()),
        )
        .await;
    let Stanza::Iq(Iq::Get {
        from, id, payload, ..
    }) = next_stanza(&mut romeo).await
    else {
        panic!("expected an iq get");
    };
    assert_eq!(from, Some(Jid::from(juliet_jid.clone())));
    assert!(payload.is("ping", "urn:xmpp:ping"), "{payload:?}");
    let reply = Iq::Result {
        from: None,
        to: from,
        id,
        payload: None,
    };
    romeo.send_stanza(reply.into()).await.expect("reply sent");
    let response = timeout(TIMEOUT, response)
        .await
        .expect("ping result reached Juliet")
        .expect("iq sent");
    assert!(matches!(response, IqResponse::Result(None)), "{response:?}");

    let body = "But, soft! what light through yonder window breaks? <&> «»";
    let message =
        Message::chat(Some(Jid::from(romeo_jid.clone()))).with_body(Lang::default(), body.into());
    juliet
        .send_stanza(message.into())
        .await
        .expect("message sent");
    let Stanza::Message(received) = next_stanza(&mut romeo).await else {
        panic!("expected a message");
    };
    assert_eq!(received.type_, MessageType::Chat);
    assert_eq!(received.from, Some(Jid::from(juliet_jid)));
    assert_eq!(
        received.get_best_body(vec![]).map(|(_, b)| b.as_str()),
        Some(body)
    );

    juliet.send_end().await.expect("clean close");
    romeo.send_end().await.expect("clean close");
    server.shutdown().await;
}

#[tokio::test]
async fn domain_answers_ping_and_refuses_unknown_payloads() {
    let server = TestServer::start().await;
    let mut client = server.client(JULIET, JULIET_PASSWORD);
    online(&mut client).await;
    let domain = Jid::from(bare(server.server.domain()));

    let ping = client
        .send_iq(Some(domain.clone()), IqRequest::Get(Ping.into()))
        .await;
    let response = timeout(TIMEOUT, ping)
        .await
        .expect("ping answered")
        .expect("iq sent");
    assert!(matches!(response, IqResponse::Result(None)), "{response:?}");

    let unknown = Element::builder("query", "urn:example:unknown").build();
    let request = client.send_iq(Some(domain), IqRequest::Get(unknown)).await;
    let response = timeout(TIMEOUT, request)
        .await
        .expect("unknown payload answered")
        .expect("iq sent");
    let IqResponse::Error(error) = response else {
        panic!("expected an error, got {response:?}");
    };
    assert_eq!(
        error.defined_condition,
        DefinedCondition::ServiceUnavailable
    );
    assert_eq!(error.type_, ErrorType::Cancel);

    client.send_end().await.expect("clean close");
    server.shutdown().await;
}

#[tokio::test]
async fn client_logs_in_over_direct_tls() {
    let server = TestServer::start().await;
    let addr = DnsConfig::addr(&server.server.direct_tls_addrs()[0].to_string());
    let mut client =
        Client::new_direct_tls_with_config(bare(JULIET), JULIET_PASSWORD, addr, Timeouts::tight());
    let bound = online(&mut client).await;
    assert_eq!(bound.to_bare(), bare(JULIET));

    client.send_end().await.expect("clean close");
    server.shutdown().await;
}

/// The results of a XEP-0313 query of the client's own archive.
async fn own_archive(client: &mut Client) -> Vec<tokio_xmpp::parsers::mam::Result_> {
    use tokio_xmpp::parsers::mam::{Query, QueryId, Result_ as MamResult};
    let query = Query {
        queryid: Some(QueryId("q".into())),
        node: None,
        form: None,
        set: None,
        flip_page: false,
    };
    let answer = client.send_iq(None, IqRequest::Set(query.into())).await;
    tokio::pin!(answer);
    let mut results = Vec::new();
    loop {
        tokio::select! {
            // Results the client has already read come first: the answer may be resolved in
            // the same read as the last of them.
            biased;
            stanza = next_stanza(client) => {
                if let Stanza::Message(message) = stanza
                    && let Some(result) = message
                        .payloads
                        .iter()
                        .find_map(|p| MamResult::try_from(p.clone()).ok())
                {
                    results.push(result);
                }
            }
            done = &mut answer => {
                let done = done.expect("iq sent");
                assert!(matches!(done, IqResponse::Result(Some(_))), "{done:?}");
                return results;
            }
        }
    }
}

/// XEP-0160 and XEP-0313 seen by a third-party client: a chat message sent while Romeo is
/// offline reaches him at his first presence, with its delay and archive id, and his archive
/// query returns it.
#[tokio::test]
async fn offline_messages_and_the_archive_reach_a_client() {
    use tokio_xmpp::parsers::delay::Delay;
    use tokio_xmpp::parsers::presence::Presence;
    use tokio_xmpp::parsers::stanza_id::StanzaId;

    let server = TestServer::start().await;
    let mut juliet = server.client(JULIET, JULIET_PASSWORD);
    online(&mut juliet).await;
    let body = "Good night, good night! Parting is such sweet sorrow";
    let message =
        Message::chat(Some(Jid::from(bare(ROMEO)))).with_body(Lang::default(), body.into());
    juliet
        .send_stanza(message.into())
        .await
        .expect("message sent");
    // Once the message is in Juliet's archive it was handled, Romeo being away.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while own_archive(&mut juliet).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never archived");
    }

    let mut romeo = server.client(&format!("{ROMEO}/balcony"), ROMEO_PASSWORD);
    online(&mut romeo).await;
    romeo
        .send_stanza(Presence::available().into())
        .await
        .expect("presence sent");
    let received = loop {
        if let Stanza::Message(received) = next_stanza(&mut romeo).await {
            break received;
        }
    };
    assert_eq!(
        received.get_best_body(vec![]).map(|(_, b)| b.as_str()),
        Some(body)
    );
    let delay = received
        .payloads
        .iter()
        .find_map(|p| Delay::try_from(p.clone()).ok())
        .expect("a delay");
    assert_eq!(delay.from, Some(Jid::from(bare("localhost"))));
    let archived = received
        .payloads
        .iter()
        .find_map(|p| StanzaId::try_from(p.clone()).ok())
        .expect("an archive id");
    assert_eq!(archived.by, Jid::from(bare(ROMEO)));

    let results = own_archive(&mut romeo).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].id, archived.id);
    let said = &results[0].forwarded.message;
    assert_eq!(
        said.get_best_body(vec![]).map(|(_, b)| b.as_str()),
        Some(body)
    );

    juliet.send_end().await.expect("clean close");
    romeo.send_end().await.expect("clean close");
    server.shutdown().await;
}
