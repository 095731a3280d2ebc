//! Subscription states and options (XEP-0060 §4.2, §6.3, §16.4 `pubsub#subscribe_options`).

use compact_str::CompactString;
use jid::Jid;

use crate::error::{Feature, PubsubError};

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
    /// Service-declared options (such as `roomnick`), by field name.
    pub custom: CustomOptions,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions {
            deliver: true,
            digest: false,
            include_body: false,
            show_values: None,
            temporary: false,
            custom: CustomOptions::new(),
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
                let value = single()?;
                if other.contains(NUL) || value.contains(NUL) {
                    return Err(PubsubError::InvalidOptions);
                }
                self.custom.insert(other, value);
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
                .map(|(var, value)| (var.to_owned(), vec![value.to_owned()])),
        );
        fields
    }
}

/// What separates names and values in [`CustomOptions`]: XML cannot carry it, so no option
/// submitted in a form holds it.
const NUL: char = '\0';

/// A subscription's service-declared options, name → value, in name order. Held as one string
/// (`name NUL value NUL name NUL value`), so that the usual set (a classic contact's one
/// marker, 20 bytes) fits in the string itself and costs no allocation: a contact's
/// subscription is held once per online user (issue #9). Names and values hold no NUL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CustomOptions(CompactString);

impl CustomOptions {
    /// No options.
    pub fn new() -> Self {
        CustomOptions::default()
    }

    /// The options, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut parts = (!self.0.is_empty()).then(|| self.0.split(NUL));
        std::iter::from_fn(move || {
            let parts = parts.as_mut()?;
            Some((parts.next()?, parts.next()?))
        })
    }

    /// The option names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(name, _)| name)
    }

    /// The value of option `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find_map(|(held, value)| (held == name).then_some(value))
    }

    /// Whether option `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets option `name` to `value`.
    pub fn insert(&mut self, name: &str, value: &str) {
        debug_assert!(!name.contains(NUL) && !value.contains(NUL));
        let mut options: Vec<(&str, &str)> = self.iter().filter(|(n, _)| *n != name).collect();
        let at = options.partition_point(|(n, _)| *n < name);
        options.insert(at, (name, value));
        self.0 = Self::pack(options);
    }

    /// Removes option `name`; whether it was set.
    pub fn remove(&mut self, name: &str) -> bool {
        if !self.contains_key(name) {
            return false;
        }
        let kept: Vec<(&str, &str)> = self.iter().filter(|(n, _)| *n != name).collect();
        self.0 = Self::pack(kept);
        true
    }

    fn pack(options: Vec<(&str, &str)>) -> CompactString {
        let mut packed = CompactString::default();
        for (at, (name, value)) in options.into_iter().enumerate() {
            if at > 0 {
                packed.push(NUL);
            }
            packed.push_str(name);
            packed.push(NUL);
            packed.push_str(value);
        }
        packed
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for CustomOptions {
    /// Later values replace earlier ones of the same name.
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(options: I) -> Self {
        let mut custom = CustomOptions::new();
        for (name, value) in options {
            custom.insert(name, value);
        }
        custom
    }
}

impl<'a, const N: usize> From<[(&'a str, &'a str); N]> for CustomOptions {
    fn from(options: [(&'a str, &'a str); N]) -> Self {
        options.into_iter().collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_options_behave_as_an_ordered_map() {
        let mut custom = CustomOptions::new();
        assert!(custom.is_empty() && custom.get("a").is_none());
        custom.insert("verona#view", "presence");
        custom.insert("muc#nick", "");
        custom.insert("", "empty name");
        assert_eq!(
            custom.iter().collect::<Vec<_>>(),
            [
                ("", "empty name"),
                ("muc#nick", ""),
                ("verona#view", "presence")
            ]
        );
        custom.insert("muc#nick", "Romeo «Montague»");
        assert_eq!(custom.get("muc#nick"), Some("Romeo «Montague»"));
        assert_eq!(custom.get("muc"), None);
        assert!(custom.remove("") && !custom.remove(""));
        assert_eq!(
            custom.keys().collect::<Vec<_>>(),
            ["muc#nick", "verona#view"]
        );
        assert_eq!(
            custom,
            CustomOptions::from([
                ("verona#view", "presence"),
                ("muc#nick", "Romeo «Montague»")
            ])
        );
        assert!(custom.remove("muc#nick") && custom.remove("verona#view"));
        assert!(custom.is_empty() && custom == CustomOptions::new());
    }

    #[test]
    fn a_classic_contacts_marker_needs_no_allocation() {
        let custom = CustomOptions::from([("verona#view", "presence")]);
        assert!(!custom.0.is_heap_allocated());
    }

    #[test]
    fn an_option_holding_a_nul_is_refused() {
        let mut options = SubscriptionOptions::default();
        let nul = ["a\0b".to_owned()];
        assert_eq!(
            options.set_field("x#nick", &nul),
            Err(PubsubError::InvalidOptions)
        );
        assert_eq!(
            options.set_field("x\0y", &["v".to_owned()]),
            Err(PubsubError::InvalidOptions)
        );
        assert!(options.custom.is_empty());
        options.set_field("x#nick", &["v".to_owned()]).unwrap();
        assert_eq!(options.custom.get("x#nick"), Some("v"));
    }
}
