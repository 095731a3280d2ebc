//! The publish-subscribe engine of Verona (XEP-0060 semantics, no protocol).
//!
//! One [`Service`] value holds the state of one pubsub service: `pubsub.<domain>`, one account's
//! PEP service, or `chat.<domain>`. Presets for those three live on [`ServiceConfig`].
//!
//! The engine knows nodes, their typed configuration, affiliations, subscriptions and items. It
//! knows nothing of XML, streams, storage or presence:
//!
//! * Access models that depend on the IM world (`presence`, `roster`) ask an injected
//!   [`AccessResolver`]; time and fresh identifiers come from an injected [`Environment`].
//! * Payloads are opaque `Arc<str>` (the protocol layer's serialized XML), shared between the
//!   store, the node and every notification, never copied per recipient.
//! * Every mutating operation returns an [`Outcome`]: a value, the list of [`Effect`]s for the
//!   caller to carry out (storage writes, notifications, authorization requests, last items), and
//!   an [`Undo`] handle. The caller makes the [`StoreOp`]s durable first; if that fails it calls
//!   [`Service::undo`] and the in-memory state is exactly as before the operation.
//!
//! Access control is data: [`access::CAPABILITIES`] is the XEP-0060 §4.1 table, and
//! [`Service::may`] is the one function that answers "may this actor do this on this node".

#![warn(missing_docs)]

/// Declares a closed set of XEP-0060 string values as a `Copy` enum with `as_str`, `FromStr`,
/// `Display` and `ALL`, so that the protocol layer maps form values without its own tables.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The value as written in XEP-0060 data forms and attributes.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownValue;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::UnknownValue),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod access;
pub mod config;
mod derived;
pub mod effects;
pub mod env;
pub mod error;
pub mod item;
mod node;
mod service;
mod state;
pub mod subscription;
mod vecmap;

pub use access::{AccessResolver, Action, Affiliation, NoRoster};
pub use config::{
    AccessModel, ConfigField, CreatePolicy, ItemReply, Limits, MAX_TEXT_BYTES, MAX_TITLE_BYTES,
    MaxItems, NodeConfig, NotificationType, PublishModel, SendLastPublishedItem, ServiceConfig,
    SubscriptionOptionField, SubscriptionOptionsPolicy,
};
pub use effects::{
    AuthorizationRequest, Effect, Event, LastItems, Notification, Outcome, Recipient, StoreOp,
    StoredNode, StoredSubscription,
};
pub use env::{Environment, SystemEnvironment};
pub use error::{Feature, Limit, NotAuthorizedReason, PubsubError};
pub use item::{Item, ItemQuery, ItemsPage, PagePosition, PageRequest};
pub use service::{
    CreateRequest, NewItem, NodeMetadata, PublishRequest, Published, Service, Snapshot,
    SubscriptionChange, SubscriptionInfo, SubscriptionRef,
};
pub use state::{Undo, UndoError};
pub use subscription::{CustomOptions, Show, ShowSet, SubscriptionOptions, SubscriptionState};
pub use vecmap::{VecMap, VecSet};

/// Identifier of a node within a service (XEP-0060 NodeID).
pub type NodeId = String;
/// Identifier of an item within a node (XEP-0060 ItemID).
pub type ItemId = String;
/// Identifier of one subscription among a JID's subscriptions to a node (XEP-0060 SubID).
/// Held inline up to 24 bytes, as the ones the engine makes are: every subscription of every
/// online user's presence node has one (issue #9).
pub type SubId = compact_str::CompactString;

/// A string is not one of the values an enum of XEP-0060 values (such as [`AccessModel`]) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown value")]
pub struct UnknownValue;
