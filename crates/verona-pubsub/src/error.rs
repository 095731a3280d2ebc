//! The one error type of the engine.
//!
//! Every variant is one XEP-0060 error situation, named after its condition, so that the protocol
//! layer maps it to a stanza error plus `pubsub#errors` condition in a single table. The
//! suggested pair is given on each variant.

use thiserror::Error;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PubsubError {
    /// The node does not exist. `<item-not-found/>`.
    #[error("node does not exist")]
    NodeNotFound,
    /// The item (or a paging cursor naming an item) does not exist. `<item-not-found/>`.
    #[error("item does not exist")]
    ItemNotFound,
    /// A node with the requested NodeID exists. `<conflict/>`.
    #[error("node already exists")]
    NodeExists,
    /// A publish-options precondition does not match the node configuration.
    /// `<conflict/>` + `<precondition-not-met/>`.
    #[error("publish-options precondition not met")]
    PreconditionNotMet,
    /// Another entity already holds this value of a unique subscription option (a room nick).
    /// `<conflict/>`.
    #[error("subscription option {var} is already taken")]
    OptionTaken {
        /// The option's field name, e.g. `roomnick`.
        var: String,
    },
    /// Insufficient privileges, acting for another JID, or outcast. `<forbidden/>`.
    #[error("forbidden")]
    Forbidden,
    /// The access model denies the actor. `<not-authorized/>` + the reason's condition.
    #[error("not authorized: {0}")]
    NotAuthorized(NotAuthorizedReason),
    /// Whitelist node and the actor is not on the whitelist.
    /// `<not-allowed/>` + `<closed-node/>`.
    #[error("node is closed (whitelist)")]
    ClosedNode,
    /// The JID has no subscription to unsubscribe, configure or approve.
    /// `<unexpected-request/>` + `<not-subscribed/>`.
    #[error("not subscribed")]
    NotSubscribed,
    /// The subscription JID's bare JID differs from the requester's.
    /// `<bad-request/>` + `<invalid-jid/>`.
    #[error("subscription JID does not match the requester")]
    InvalidJid,
    /// An empty NodeID where one is required. `<bad-request/>` + `<nodeid-required/>`.
    #[error("node id required")]
    NodeIdRequired,
    /// The JID holds several subscriptions and no SubID was given.
    /// `<bad-request/>` + `<subid-required/>`.
    #[error("subscription id required")]
    SubidRequired,
    /// The SubID is not one of the JID's subscriptions. `<not-acceptable/>` + `<invalid-subid/>`.
    #[error("invalid subscription id")]
    InvalidSubid,
    /// Persistent node and the publish request has no item. `<bad-request/>` + `<item-required/>`.
    #[error("item required")]
    ItemRequired,
    /// Transient notification-only node and the publish request has an item.
    /// `<bad-request/>` + `<item-forbidden/>`.
    #[error("item forbidden")]
    ItemForbidden,
    /// Payload-delivering node and the item has no payload.
    /// `<bad-request/>` + `<payload-required/>`.
    #[error("payload required")]
    PayloadRequired,
    /// The payload exceeds the node's or the service's limit.
    /// `<not-acceptable/>` + `<payload-too-big/>`.
    #[error("payload too big")]
    PayloadTooBig,
    /// The access model is not offered by this service.
    /// `<not-acceptable/>` + `<unsupported-access-model/>`.
    #[error("unsupported access model")]
    UnsupportedAccessModel,
    /// Subscription options that cannot be accepted (unknown field, bad value).
    /// `<bad-request/>` + `<invalid-options/>`.
    #[error("invalid subscription options")]
    InvalidOptions,
    /// A configuration field this service does not know (configure, create, publish-options).
    /// `<not-acceptable/>`.
    #[error("unknown configuration field {var}")]
    UnknownField {
        /// The field's `var`.
        var: String,
    },
    /// A configuration field with a value that cannot be accepted. `<not-acceptable/>`.
    #[error("invalid value for configuration field {var}")]
    InvalidField {
        /// The field's `var`.
        var: String,
    },
    /// The change would leave the node without an owner. `<not-acceptable/>`.
    #[error("a node must keep at least one owner")]
    LastOwner,
    /// A service limit was reached. `<policy-violation/>` + the limit's condition.
    #[error("policy violation: {0}")]
    PolicyViolation(Limit),
    /// The node or service does not offer this feature.
    /// `<feature-not-implemented/>` + `<unsupported feature='…'/>`.
    #[error("unsupported feature {}", .0.as_str())]
    Unsupported(Feature),
}

string_enum! {
    /// The `pubsub#errors` condition accompanying [`PubsubError::NotAuthorized`].
    pub enum NotAuthorizedReason {
        /// Access model `presence`: the actor is not subscribed to an owner's presence.
        PresenceSubscriptionRequired = "presence-subscription-required",
        /// Access model `roster`: the actor is not in an allowed roster group of an owner.
        NotInRosterGroup = "not-in-roster-group",
        /// Access model `authorize`: only subscribers may retrieve items.
        NotSubscribed = "not-subscribed",
        /// The actor's earlier subscription request is still waiting for approval.
        PendingSubscription = "pending-subscription",
    }
}

string_enum! {
    /// The `pubsub#errors` condition accompanying [`PubsubError::PolicyViolation`].
    pub enum Limit {
        /// [`crate::Limits::max_subscriptions_per_jid`] reached.
        TooManySubscriptions = "too-many-subscriptions",
        /// [`crate::Limits::max_nodes_per_owner`] reached.
        MaxNodesExceeded = "max-nodes-exceeded",
        /// [`crate::Limits::max_affiliations_per_node`] reached.
        TooManyAffiliations = "too-many-affiliations",
        /// [`crate::Limits::max_pending_per_node`] reached.
        TooManyPending = "too-many-pending",
        /// [`crate::Limits::max_service_bytes`] reached.
        ServiceBytesExceeded = "service-bytes-exceeded",
        /// [`crate::Limits::max_owner_bytes`] reached.
        OwnerBytesExceeded = "owner-bytes-exceeded",
    }
}

string_enum! {
    /// The `feature` attribute of `<unsupported/>` for [`PubsubError::Unsupported`].
    pub enum Feature {
        /// The node does not accept subscriptions (`pubsub#subscribe` is false).
        Subscribe = "subscribe",
        /// Subscription leases (`pubsub#expire` as a date) are not offered.
        LeasedSubscription = "leased-subscription",
    }
}
