//! The one table from failures to stanza errors (XEP-0060 §7 of each use case, §13, §16.6).
//!
//! A failure is either an engine [`PubsubError`] or a protocol-level [`Error`] found while
//! reading the request. [`spec`] maps each to the error type, the RFC 6120 condition and the
//! `pubsub#errors` condition XEP-0060 prescribes for it.

use minidom::Element;
use verona_pubsub::{Feature, Limit, NotAuthorizedReason, PubsubError};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::ns;
use crate::xml::{BuilderExt, builder};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The engine refused the operation.
    #[error(transparent)]
    Pubsub(#[from] PubsubError),
    /// The request is malformed (missing or invalid attribute, unexpected element, bad form).
    #[error("malformed request")]
    BadRequest,
    /// A subscription request names no subscriber JID.
    #[error("subscriber JID required")]
    JidRequired,
    /// A published item carries more than one payload element.
    #[error("an item carries one payload element at most")]
    InvalidPayload,
    /// Options asked of, or set for, a subscription that does not exist (§6.3.4.2, where the
    /// error is the requester's to correct: `modify`, unlike unsubscribing's `cancel`).
    #[error("no such subscriber")]
    NoSuchSubscriber,
    /// An owner modification names a value that cannot be set (e.g. `pending`).
    #[error("modification not acceptable")]
    NotAcceptable,
    /// A request for a XEP-0060 feature Verona does not offer (e.g. collections).
    #[error("unsupported feature {0}")]
    Unsupported(&'static str),
    /// A request in a pubsub namespace that XEP-0060 does not define.
    #[error("request not implemented")]
    FeatureNotImplemented,
    /// A request in a namespace the service does not serve.
    #[error("namespace not served")]
    ServiceUnavailable,
    /// The request's storage writes failed; it was undone.
    #[error("storage failed")]
    StorageFailed,
}

/// The `http://jabber.org/protocol/pubsub#errors` conditions (XEP-0060 §16.6), all 23.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubsubCondition {
    /// `closed-node`.
    ClosedNode,
    /// `configuration-required`: never sent, Verona creates `unconfigured` subscriptions
    /// instead (§6.1.6 offers both).
    ConfigurationRequired,
    /// `invalid-jid`.
    InvalidJid,
    /// `invalid-options`.
    InvalidOptions,
    /// `invalid-payload`.
    InvalidPayload,
    /// `invalid-subid`.
    InvalidSubid,
    /// `item-forbidden`.
    ItemForbidden,
    /// `item-required`.
    ItemRequired,
    /// `jid-required`.
    JidRequired,
    /// `max-items-exceeded`: never sent, it concerns batch publishing, which XEP-0060 removed
    /// (§12.10); a publish with several items is a bad request.
    MaxItemsExceeded,
    /// `max-nodes-exceeded`.
    MaxNodesExceeded,
    /// `nodeid-required`.
    NodeidRequired,
    /// `not-in-roster-group`.
    NotInRosterGroup,
    /// `not-subscribed`.
    NotSubscribed,
    /// `payload-too-big`.
    PayloadTooBig,
    /// `payload-required`.
    PayloadRequired,
    /// `pending-subscription`.
    PendingSubscription,
    /// `precondition-not-met`.
    PreconditionNotMet,
    /// `presence-subscription-required`.
    PresenceSubscriptionRequired,
    /// `subid-required`.
    SubidRequired,
    /// `too-many-subscriptions`.
    TooManySubscriptions,
    /// `unsupported`, with the unsupported feature's name.
    Unsupported(&'static str),
    /// `unsupported-access-model`.
    UnsupportedAccessModel,
}

impl PubsubCondition {
    /// The element name.
    pub fn name(self) -> &'static str {
        match self {
            PubsubCondition::ClosedNode => "closed-node",
            PubsubCondition::ConfigurationRequired => "configuration-required",
            PubsubCondition::InvalidJid => "invalid-jid",
            PubsubCondition::InvalidOptions => "invalid-options",
            PubsubCondition::InvalidPayload => "invalid-payload",
            PubsubCondition::InvalidSubid => "invalid-subid",
            PubsubCondition::ItemForbidden => "item-forbidden",
            PubsubCondition::ItemRequired => "item-required",
            PubsubCondition::JidRequired => "jid-required",
            PubsubCondition::MaxItemsExceeded => "max-items-exceeded",
            PubsubCondition::MaxNodesExceeded => "max-nodes-exceeded",
            PubsubCondition::NodeidRequired => "nodeid-required",
            PubsubCondition::NotInRosterGroup => "not-in-roster-group",
            PubsubCondition::NotSubscribed => "not-subscribed",
            PubsubCondition::PayloadTooBig => "payload-too-big",
            PubsubCondition::PayloadRequired => "payload-required",
            PubsubCondition::PendingSubscription => "pending-subscription",
            PubsubCondition::PreconditionNotMet => "precondition-not-met",
            PubsubCondition::PresenceSubscriptionRequired => "presence-subscription-required",
            PubsubCondition::SubidRequired => "subid-required",
            PubsubCondition::TooManySubscriptions => "too-many-subscriptions",
            PubsubCondition::Unsupported(_) => "unsupported",
            PubsubCondition::UnsupportedAccessModel => "unsupported-access-model",
        }
    }

    fn element(self) -> Element {
        let feature = match self {
            PubsubCondition::Unsupported(feature) => Some(feature),
            _ => None,
        };
        builder(self.name(), ns::PUBSUB_ERRORS)
            .with("feature", feature)
            .build()
    }
}

/// A stanza error: type, RFC 6120 condition, `pubsub#errors` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorSpec {
    /// The `type` attribute of `<error/>`.
    pub kind: ErrorType,
    /// The defined condition.
    pub condition: DefinedCondition,
    /// The application-specific condition.
    pub pubsub: Option<PubsubCondition>,
}

/// The table: the stanza error XEP-0060 prescribes for each failure.
pub fn spec(error: &Error) -> ErrorSpec {
    use DefinedCondition as C;
    use ErrorType::{Auth, Cancel, Modify, Wait};
    use PubsubCondition as P;
    let (kind, condition, pubsub) = match error {
        Error::Pubsub(error) => match error {
            PubsubError::NodeNotFound | PubsubError::ItemNotFound => {
                (Cancel, C::ItemNotFound, None)
            }
            PubsubError::NodeExists | PubsubError::OptionTaken { .. } => {
                (Cancel, C::Conflict, None)
            }
            PubsubError::PreconditionNotMet => (Cancel, C::Conflict, Some(P::PreconditionNotMet)),
            PubsubError::Forbidden => (Auth, C::Forbidden, None),
            PubsubError::NotAuthorized(reason) => {
                let condition = match reason {
                    NotAuthorizedReason::PresenceSubscriptionRequired => {
                        P::PresenceSubscriptionRequired
                    }
                    NotAuthorizedReason::NotInRosterGroup => P::NotInRosterGroup,
                    NotAuthorizedReason::NotSubscribed => P::NotSubscribed,
                    NotAuthorizedReason::PendingSubscription => P::PendingSubscription,
                };
                (Auth, C::NotAuthorized, Some(condition))
            }
            PubsubError::ClosedNode => (Cancel, C::NotAllowed, Some(P::ClosedNode)),
            PubsubError::NotSubscribed => (Cancel, C::UnexpectedRequest, Some(P::NotSubscribed)),
            PubsubError::InvalidJid => (Modify, C::BadRequest, Some(P::InvalidJid)),
            PubsubError::NodeIdRequired => (Modify, C::BadRequest, Some(P::NodeidRequired)),
            PubsubError::SubidRequired => (Modify, C::BadRequest, Some(P::SubidRequired)),
            PubsubError::InvalidSubid => (Modify, C::NotAcceptable, Some(P::InvalidSubid)),
            PubsubError::ItemRequired => (Modify, C::BadRequest, Some(P::ItemRequired)),
            PubsubError::ItemForbidden => (Modify, C::BadRequest, Some(P::ItemForbidden)),
            PubsubError::PayloadRequired => (Modify, C::BadRequest, Some(P::PayloadRequired)),
            PubsubError::PayloadTooBig => (Modify, C::NotAcceptable, Some(P::PayloadTooBig)),
            PubsubError::UnsupportedAccessModel => {
                (Modify, C::NotAcceptable, Some(P::UnsupportedAccessModel))
            }
            PubsubError::InvalidOptions => (Modify, C::BadRequest, Some(P::InvalidOptions)),
            PubsubError::UnknownField { .. }
            | PubsubError::InvalidField { .. }
            | PubsubError::LastOwner => (Modify, C::NotAcceptable, None),
            PubsubError::PolicyViolation(limit) => {
                // XEP-0060 names no condition for a node's affiliations or for bytes held.
                let condition = match limit {
                    Limit::TooManySubscriptions => Some(P::TooManySubscriptions),
                    Limit::MaxNodesExceeded => Some(P::MaxNodesExceeded),
                    Limit::TooManyAffiliations
                    | Limit::TooManyPending
                    | Limit::ServiceBytesExceeded
                    | Limit::OwnerBytesExceeded => None,
                };
                (Wait, C::PolicyViolation, condition)
            }
            PubsubError::Unsupported(feature) => {
                let feature = match feature {
                    Feature::Subscribe => "subscribe",
                    Feature::LeasedSubscription => "leased-subscription",
                };
                (
                    Cancel,
                    C::FeatureNotImplemented,
                    Some(P::Unsupported(feature)),
                )
            }
        },
        Error::BadRequest => (Modify, C::BadRequest, None),
        Error::JidRequired => (Modify, C::BadRequest, Some(P::JidRequired)),
        Error::InvalidPayload => (Modify, C::BadRequest, Some(P::InvalidPayload)),
        Error::NotAcceptable => (Modify, C::NotAcceptable, None),
        Error::NoSuchSubscriber => (Modify, C::UnexpectedRequest, Some(P::NotSubscribed)),
        Error::Unsupported(feature) => (
            Cancel,
            C::FeatureNotImplemented,
            Some(P::Unsupported(feature)),
        ),
        Error::FeatureNotImplemented => (Cancel, C::FeatureNotImplemented, None),
        Error::ServiceUnavailable => (Cancel, C::ServiceUnavailable, None),
        Error::StorageFailed => (Wait, C::InternalServerError, None),
    };
    ErrorSpec {
        kind,
        condition,
        pubsub,
    }
}

/// The `<error/>` element for a failure.
pub(crate) fn error_element(error: &Error) -> Element {
    let spec = spec(error);
    Element::from(StanzaError {
        type_: spec.kind,
        by: None,
        defined_condition: spec.condition,
        texts: Default::default(),
        other: spec.pubsub.map(PubsubCondition::element),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every engine error, each variant with every value it can carry.
    fn engine_errors() -> Vec<PubsubError> {
        let mut errors = vec![
            PubsubError::NodeNotFound,
            PubsubError::ItemNotFound,
            PubsubError::NodeExists,
            PubsubError::PreconditionNotMet,
            PubsubError::OptionTaken {
                var: "roomnick".into(),
            },
            PubsubError::Forbidden,
            PubsubError::ClosedNode,
            PubsubError::NotSubscribed,
            PubsubError::InvalidJid,
            PubsubError::NodeIdRequired,
            PubsubError::SubidRequired,
            PubsubError::InvalidSubid,
            PubsubError::ItemRequired,
            PubsubError::ItemForbidden,
            PubsubError::PayloadRequired,
            PubsubError::PayloadTooBig,
            PubsubError::UnsupportedAccessModel,
            PubsubError::InvalidOptions,
            PubsubError::UnknownField { var: "x-a".into() },
            PubsubError::InvalidField { var: "x-b".into() },
            PubsubError::LastOwner,
        ];
        errors.extend(
            NotAuthorizedReason::ALL
                .iter()
                .map(|r| PubsubError::NotAuthorized(*r)),
        );
        errors.extend(Limit::ALL.iter().map(|l| PubsubError::PolicyViolation(*l)));
        errors.extend(Feature::ALL.iter().map(|f| PubsubError::Unsupported(*f)));
        errors
    }

    fn row(error: impl Into<Error>) -> (ErrorType, DefinedCondition, Option<&'static str>) {
        let spec = spec(&error.into());
        (
            spec.kind,
            spec.condition,
            spec.pubsub.map(PubsubCondition::name),
        )
    }

    #[test]
    fn engine_errors_map_as_xep_0060_prescribes() {
        use DefinedCondition as C;
        use ErrorType::*;
        let expected = [
            (PubsubError::NodeNotFound, (Cancel, C::ItemNotFound, None)),
            (PubsubError::ItemNotFound, (Cancel, C::ItemNotFound, None)),
            (PubsubError::NodeExists, (Cancel, C::Conflict, None)),
            (
                PubsubError::PreconditionNotMet,
                (Cancel, C::Conflict, Some("precondition-not-met")),
            ),
            (PubsubError::Forbidden, (Auth, C::Forbidden, None)),
            (
                PubsubError::NotAuthorized(NotAuthorizedReason::PresenceSubscriptionRequired),
                (
                    Auth,
                    C::NotAuthorized,
                    Some("presence-subscription-required"),
                ),
            ),
            (
                PubsubError::NotAuthorized(NotAuthorizedReason::NotInRosterGroup),
                (Auth, C::NotAuthorized, Some("not-in-roster-group")),
            ),
            (
                PubsubError::NotAuthorized(NotAuthorizedReason::NotSubscribed),
                (Auth, C::NotAuthorized, Some("not-subscribed")),
            ),
            (
                PubsubError::NotAuthorized(NotAuthorizedReason::PendingSubscription),
                (Auth, C::NotAuthorized, Some("pending-subscription")),
            ),
            (
                PubsubError::ClosedNode,
                (Cancel, C::NotAllowed, Some("closed-node")),
            ),
            (
                PubsubError::NotSubscribed,
                (Cancel, C::UnexpectedRequest, Some("not-subscribed")),
            ),
            (
                PubsubError::InvalidJid,
                (Modify, C::BadRequest, Some("invalid-jid")),
            ),
            (
                PubsubError::NodeIdRequired,
                (Modify, C::BadRequest, Some("nodeid-required")),
            ),
            (
                PubsubError::SubidRequired,
                (Modify, C::BadRequest, Some("subid-required")),
            ),
            (
                PubsubError::InvalidSubid,
                (Modify, C::NotAcceptable, Some("invalid-subid")),
            ),
            (
                PubsubError::ItemRequired,
                (Modify, C::BadRequest, Some("item-required")),
            ),
            (
                PubsubError::ItemForbidden,
                (Modify, C::BadRequest, Some("item-forbidden")),
            ),
            (
                PubsubError::PayloadRequired,
                (Modify, C::BadRequest, Some("payload-required")),
            ),
            (
                PubsubError::PayloadTooBig,
                (Modify, C::NotAcceptable, Some("payload-too-big")),
            ),
            (
                PubsubError::UnsupportedAccessModel,
                (Modify, C::NotAcceptable, Some("unsupported-access-model")),
            ),
            (
                PubsubError::InvalidOptions,
                (Modify, C::BadRequest, Some("invalid-options")),
            ),
            (PubsubError::LastOwner, (Modify, C::NotAcceptable, None)),
            (
                PubsubError::PolicyViolation(Limit::TooManySubscriptions),
                (Wait, C::PolicyViolation, Some("too-many-subscriptions")),
            ),
            (
                PubsubError::PolicyViolation(Limit::MaxNodesExceeded),
                (Wait, C::PolicyViolation, Some("max-nodes-exceeded")),
            ),
        ];
        for (error, wanted) in expected {
            assert_eq!(row(error.clone()), wanted, "{error:?}");
        }
        let unsupported = spec(&PubsubError::Unsupported(Feature::Subscribe).into());
        assert_eq!(
            unsupported.pubsub,
            Some(PubsubCondition::Unsupported("subscribe"))
        );
        assert_eq!(unsupported.condition, C::FeatureNotImplemented);
    }

    #[test]
    fn every_pubsub_condition_is_reachable_except_the_two_verona_never_needs() {
        let mut reached: Vec<&str> = engine_errors()
            .into_iter()
            .map(Error::from)
            .chain([
                Error::BadRequest,
                Error::JidRequired,
                Error::InvalidPayload,
                Error::NotAcceptable,
                Error::NoSuchSubscriber,
                Error::Unsupported("collections"),
                Error::FeatureNotImplemented,
                Error::ServiceUnavailable,
                Error::StorageFailed,
            ])
            .filter_map(|error| spec(&error).pubsub.map(PubsubCondition::name))
            .collect();
        reached.sort_unstable();
        reached.dedup();
        let never = ["configuration-required", "max-items-exceeded"];
        assert_eq!(reached.len() + never.len(), 23);
        assert!(never.iter().all(|name| !reached.contains(name)));
    }

    #[test]
    fn error_element_carries_both_conditions() {
        let element = error_element(&Error::Unsupported("collections"));
        let expected: Element = "<error xmlns='jabber:client' type='cancel'>\
             <feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <unsupported xmlns='http://jabber.org/protocol/pubsub#errors' feature='collections'/>\
             </error>"
            .parse()
            .unwrap();
        assert_eq!(element, expected);

        let element = error_element(&PubsubError::Forbidden.into());
        let expected: Element = "<error xmlns='jabber:client' type='auth'>\
             <forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
            .parse()
            .unwrap();
        assert_eq!(element, expected);
    }
}
