//! Subscription states and options (XEP-0060 §4.2, §6.3, §16.4 `pubsub#subscribe_options`).

use compact_str::CompactString;
use jid::Jid;

use crate::error::{Feature, PubsubError};
use crate::vecmap::VecMap;

string_enum! {
    /// The state of a subscription.
    pub enum SubscriptionState {
        /// No subscription (only reported, when one ends or is denied).
        None = "none",
        /// Waiting for an owner's approval; receives nothing.
        Pending = "pending",
        /// Approved but options must still be configured; receives nothing.
        Unconfigured = "unconfigured",
        /// Receives notifications.
        Subscribed = "subscribed",
    }
}

impl SubscriptionState {
    /// Whether an owner (or the access model) has let the subscriber in.
    pub fn is_approved(self) -> bool {
        matches!(
            self,
            SubscriptionState::Subscribed | SubscriptionState::Unconfigured
        )
    }
}

string_enum! {
    /// A presence `<show/>` value, as used by `pubsub#show-values`.
    pub enum Show {
        /// `away`.
        Away = "away",
        /// `chat`.
        Chat = "chat",
        /// `dnd`.
        Dnd = "dnd",
        /// Available without `<show/>`.
        Online = "online",
        /// `xa`.
        Xa = "xa",
    }
}

/// A set of [`Show`] values in one byte: every subscription may carry one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ShowSet(u8);

impl ShowSet {
    /// The empty set.
    pub const fn new() -> Self {
        ShowSet(0)
    }

    fn bit(show: Show) -> u8 {
        1 << show as u8
    }

    /// Adds `show`.
    pub fn insert(&mut self, show: Show) {
        self.0 |= Self::bit(show);
    }

    /// Whether `show` is in the set.
    pub fn contains(self, show: Show) -> bool {
        self.0 & Self::bit(show) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The values, in [`Show::ALL`] order (alphabetical).
    pub fn iter(self) -> impl Iterator<Item = Show> {
        Show::ALL
            .iter()
            .copied()
            .filter(move |show| self.contains(*show))
    }

    /// Both sets' values.
    pub fn union(self, other: ShowSet) -> ShowSet {
        ShowSet(self.0 | other.0)
    }
}

impl FromIterator<Show> for ShowSet {
    fn from_iter<I: IntoIterator<Item = Show>>(shows: I) -> Self {
        let mut set = ShowSet::new();
        for show in shows {
            set.insert(show);
        }
        set
    }
}

impl<const N: usize> From<[Show; N]> for ShowSet {
    fn from(shows: [Show; N]) -> Self {
        shows.into_iter().collect()
    }
}

/// The options of one subscription. Two subscriptions of the same JID to the same node must
/// differ in options (a second identical subscribe returns the first).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// `pubsub#deliver`: receive notifications at all.
    pub deliver: bool,
    /// `pubsub#digest`: the subscriber asks for digests (the protocol layer may aggregate).
    pub digest: bool,
    /// `pubsub#include_body`.
    pub include_body: bool,
    /// `pubsub#show-values`: deliver only to resources whose presence show is listed;
    /// `None` delivers regardless of show. Applied by the protocol layer, which knows presence.
    pub show_values: Option<ShowSet>,
    /// `pubsub#expire` = `presence`: the subscription ends with the subscriber's session
    /// ([`crate::Service::end_session`]) and is never stored.
    pub temporary: bool,
    /// Service-declared options (such as `roomnick`), by field name; names and values up to
    /// 24 bytes are held without an allocation of their own.
    pub custom: VecMap<CompactString, CompactString>,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions {
            deliver: true,
            digest: false,
            include_body: false,
            show_values: None,
            temporary: false,
            custom: VecMap::new(),
        }
    }
}

impl SubscriptionOptions {
    /// Sets one option from a submitted form field. Unrecognised fields are kept in
    /// [`Self::custom`] for the service to accept or refuse; malformed values give
    /// [`PubsubError::InvalidOptions`]; a lease date in `pubsub#expire` gives
    /// [`PubsubError::Unsupported`] (only `presence` is offered).
    pub fn set_field(&mut self, var: &str, values: &[String]) -> Result<(), PubsubError> {
        let single = || match values {
            [] => Ok(""),
            [one] => Ok(one.as_str()),
            _ => Err(PubsubError::InvalidOptions),
        };
        let boolean = || match single()? {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(PubsubError::InvalidOptions),
        };
        match var {
            "pubsub#deliver" => self.deliver = boolean()?,
            "pubsub#digest" => self.digest = boolean()?,
            "pubsub#include_body" => self.include_body = boolean()?,
            "pubsub#show-values" => {
                let shows = values
                    .iter()
                    .map(|value| value.parse().map_err(|_| PubsubError::InvalidOptions))
                    .collect::<Result<_, _>>()?;
                self.show_values = Some(shows);
            }
            "pubsub#expire" => {
                self.temporary = match single()? {
                    "presence" => true,
                    "" => false,
                    _ => return Err(PubsubError::Unsupported(Feature::LeasedSubscription)),
                }
            }
            other => {
                self.custom.insert(other.into(), single()?.into());
            }
        }
        Ok(())
    }

    /// The options as form fields `(var, values)`, standard ones first.
    pub fn fields(&self) -> Vec<(String, Vec<String>)> {
        let mut fields = vec![
            ("pubsub#deliver".to_owned(), vec![self.deliver.to_string()]),
            ("pubsub#digest".to_owned(), vec![self.digest.to_string()]),
            (
                "pubsub#include_body".to_owned(),
                vec![self.include_body.to_string()],
            ),
        ];
        if let Some(shows) = self.show_values {
            let values = shows.iter().map(|show| show.as_str().to_owned()).collect();
            fields.push(("pubsub#show-values".to_owned(), values));
        }
        if self.temporary {
            fields.push(("pubsub#expire".to_owned(), vec!["presence".to_owned()]));
        }
        fields.extend(
            self.custom
                .iter()
                .map(|(var, value)| (var.to_string(), vec![value.to_string()])),
        );
        fields
    }
}

/// One subscription as the engine keeps it; the node and SubID are its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// The subscribed JID (bare or full): where notifications go.
    pub jid: Jid,
    pub state: SubscriptionState,
    pub options: SubscriptionOptions,
}
