//! Pubsub persistence: the [`StoreOp`]s of every pubsub service (`pubsub.<domain>`, each
//! account's PEP service, `chat.<domain>`), and the stored forms shared by the backends.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use verona_pubsub::{
    Affiliation, ConfigField, Item, NodeConfig, StoreOp, StoredNode, SubscriptionOptions,
    SubscriptionState,
};

use crate::{BoxFuture, StorageError};

/// One storage write of one pubsub service. `service` names the service instance:
/// "pubsub.localhost", a PEP account "juliet@localhost", "chat.localhost".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubWrite {
    pub service: String,
    pub op: StoreOp,
}

/// What becomes of a stored node with the deletion of an account
/// ([`crate::AccountStore::delete_account`]): moved to `to` (service, node) as
/// [`PubsubStore::move_node`] moves it, or deleted with what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEnd {
    pub service: String,
    pub node: String,
    pub to: Option<(String, String)>,
}

/// A stored node's configuration, as a directory read lists it ([`PubsubStore::node_configs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeListing {
    pub service: String,
    pub node: String,
    pub config: NodeConfig,
}

/// Which items [`PubsubStore::items_page`] reads: those of every node of `services`, in the
/// order they were stored, published within `start..=end`, after the item `after` and before
/// the item `before` (ids), at most `max`: the first ones, or with `backwards` the last ones
/// (XEP-0059 paging, as an archive query pages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemsQuery {
    pub services: Vec<String>,
    pub start: Option<SystemTime>,
    pub end: Option<SystemTime>,
    /// Only items stored after the item `after_id` and before the item `before_id` (XEP-0313
    /// `after-id`, `before-id`): these bound what matches, and what `count` counts; `after`
    /// and `before` page within it.
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    pub after: Option<String>,
    pub before: Option<String>,
    pub backwards: bool,
    pub max: usize,
    /// Only items with these ids (XEP-0313 `ids`), when given.
    pub ids: Option<Vec<String>>,
}

/// An item found by [`PubsubStore::items_page`], with where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundItem {
    pub service: String,
    pub node: String,
    pub item: Item,
}

/// A page of items, oldest first: `count` items match the query's services and times in all
/// (`None` when more than [`COUNTED_AT_MOST`] do), and `complete` says the page reaches the end
/// of them in the direction asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemsPage {
    pub items: Vec<FoundItem>,
    pub count: Option<usize>,
    pub complete: bool,
}

/// Matching items are counted up to this many: counting reads every matching entry of the
/// index, and an account's archive (all its conversations, 10,000 messages each) can hold
/// millions; one count of a million took 50 ms of a database connection, for a page request
/// of 200 bytes. XEP-0059 makes the count optional.
pub const COUNTED_AT_MOST: usize = 10_000;

/// A stored subscription, found by its subscriber: which service and node it is on, and its
/// state. What a user's relations need, and no more: read at every login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSubscription {
    pub service: String,
    pub node: String,
    pub state: SubscriptionState,
}

/// A stored affiliation, found by its JID: which service and node it is with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAffiliation {
    pub service: String,
    pub node: String,
    pub affiliation: Affiliation,
}

/// The services that each hold one conversation between two bare JIDs, named
/// `<prefix><low>/<high>`, on the server of `domain`. A subscription to one whose parties are
/// not both of `domain` is left out of [`PubsubStore::subscription_count`]: another server's
/// users can start as many as their server invents senders, so they cannot count against a
/// local account's bound (the server bounds them by a rate instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversations<'a> {
    pub prefix: &'a str,
    pub domain: &'a str,
}

impl Conversations<'_> {
    /// Whether `service` is a conversation with a party of another domain.
    pub fn is_federated(&self, service: &str) -> bool {
        let Some((low, high)) = service
            .strip_prefix(self.prefix)
            .and_then(|pair| pair.split_once('/'))
        else {
            return false;
        };
        // A retired conversation (`<low>/<high>/<time>`) is not a live pair.
        if high.contains('/') {
            return false;
        }
        let local = |party: &str| {
            party == self.domain
                || party
                    .strip_suffix(self.domain)
                    .is_some_and(|node| node.ends_with('@'))
        };
        !(local(low) && local(high))
    }
}

/// The persistent state of pubsub services, written as the engine's [`StoreOp`]s and read back
/// as [`StoredNode`]s for `Service::restore`.
///
/// Writes follow the `StoreOp` documentation, plus: `NodeCreated` replaces a stored node of
/// the same id (with its affiliations, subscriptions and items); a write that adds to or
/// configures a node that is not stored fails with [`StorageError::NodeNotFound`]; removing
/// something absent succeeds. Item publication times are kept to the microsecond (finer
/// digits are dropped); a time more than ±292,000 years from 1970 fails with
/// [`StorageError::Unrepresentable`].
pub trait PubsubStore: Send + Sync {
    /// Every stored node of a service, ready for `Service::restore`: nodes by id, affiliations
    /// by JID, subscriptions by SubID, items oldest first. Empty for an unknown service.
    fn load_service<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredNode>, StorageError>>;

    /// [`PubsubStore::load_service`] with only the newest `items` items of each node: a service
    /// whose nodes keep more in storage than in memory (a conversation's archive).
    fn load_service_recent<'a>(
        &'a self,
        service: &'a str,
        items: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredNode>, StorageError>>;

    /// Services that have any stored node, sorted (administration and checks; the server
    /// itself loads services one by one, when needed).
    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>>;

    /// The configuration of every stored node of the services whose names start with
    /// `prefix`, sorted by service and node: a directory
    /// of services stored apart (each room of `chat.<domain>` is the service
    /// `chat.<domain>/<room>`), read without loading them.
    fn node_configs<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeListing>, StorageError>>;

    /// How many nodes `owner`'s bare JID owns on the services whose names start with
    /// `prefix` (an indexed count: the rooms one account made, for the per-account limit).
    fn owned_count<'a>(
        &'a self,
        owner: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<usize, StorageError>>;

    /// The affiliations `jid` (a bare JID) holds with the nodes of the services whose names
    /// start with `prefix`, sorted by service and node, the first `max` of them (an indexed
    /// lookup: an account's standing in every room, without loading the rooms).
    fn affiliations_of<'a>(
        &'a self,
        jid: &'a str,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<HeldAffiliation>, StorageError>>;

    /// Every stored subscription whose subscriber's bare JID is `subscriber`, on any service
    /// (read from an index alone: the relations of one user, without loading the services),
    /// one per subscription, sorted by service, node and SubID.
    fn subscriptions_of<'a>(
        &'a self,
        subscriber: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HeldSubscription>, StorageError>>;

    /// How many subscriptions (any state, any node, any service) `subscriber`'s bare JID holds,
    /// but those to `conversations` with another server's users
    /// ([`Conversations::is_federated`]): an indexed count, for the per-account subscription
    /// limit.
    fn subscription_count<'a>(
        &'a self,
        subscriber: &'a str,
        conversations: Conversations<'a>,
    ) -> BoxFuture<'a, Result<usize, StorageError>>;

    /// Removes the oldest items of each node of `service` beyond the newest `keep`, and beyond
    /// the newest whose bytes (ids and payloads, as the engine counts a node's) come to
    /// `max_bytes` at most, though the newest item always stays (an archive's bounds);
    /// returns how many went.
    fn trim_items<'a>(
        &'a self,
        service: &'a str,
        keep: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<usize, StorageError>>;

    /// Moves the stored node `node` of `service` to the service `to_service` as `to_node`, with
    /// its affiliations and subscriptions; its items keep their place in the order of storage
    /// (an archive read across services still finds them where they were). A stored node at
    /// the destination gives way; moving a node that is not stored does nothing.
    fn move_node<'a>(
        &'a self,
        service: &'a str,
        node: &'a str,
        to_service: &'a str,
        to_node: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// A page of the items of several services (an account's conversations: its archive),
    /// read and paged by the store without loading the services. Fails with
    /// [`StorageError::UnknownItem`] when `after` or `before` names no matching item.
    fn items_page<'a>(
        &'a self,
        query: &'a ItemsQuery,
    ) -> BoxFuture<'a, Result<ItemsPage, StorageError>>;

    /// Applies a batch of writes atomically, in order, in one transaction (the group commit:
    /// the server batches the writes of many requests and acknowledges them all after this
    /// returns Ok). On Err nothing of the batch is applied.
    fn apply<'a>(&'a self, writes: &'a [PubsubWrite]) -> BoxFuture<'a, Result<(), StorageError>>;
}

/// The node a write concerns.
pub(crate) fn node_of(op: &StoreOp) -> &str {
    match op {
        StoreOp::NodeCreated { node, .. }
        | StoreOp::NodeConfigured { node, .. }
        | StoreOp::NodeDeleted { node }
        | StoreOp::AffiliationSet { node, .. }
        | StoreOp::SubscriptionSet { node, .. }
        | StoreOp::SubscriptionRemoved { node, .. }
        | StoreOp::ItemStored { node, .. }
        | StoreOp::ItemRemoved { node, .. }
        | StoreOp::ItemsPurged { node } => node,
    }
}

/// Whole microseconds since the Unix epoch, negative before it.
pub(crate) fn to_micros(time: SystemTime) -> Result<i64, StorageError> {
    let micros = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).ok(),
        Err(before) => i64::try_from(before.duration().as_micros())
            .ok()
            .map(|micros| -micros),
    };
    micros.ok_or_else(|| StorageError::Unrepresentable(format!("time {time:?}")))
}

pub(crate) fn from_micros(micros: i64) -> Result<SystemTime, StorageError> {
    let offset = Duration::from_micros(micros.unsigned_abs());
    let time = if micros >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    time.ok_or_else(|| StorageError::Corrupt(format!("time {micros} µs from 1970")))
}

/// Form fields as JSON, `[[var, [values…]], …]`: configurations and options are stored in the
/// syntax the engine parses, so a field added to the engine needs no schema change.
fn fields_to_json(fields: &[(String, Vec<String>)]) -> Result<String, StorageError> {
    serde_json::to_string(fields).map_err(|e| StorageError::Unrepresentable(e.to_string()))
}

fn fields_from_json(json: &str) -> Result<Vec<(String, Vec<String>)>, StorageError> {
    serde_json::from_str(json).map_err(|e| StorageError::Corrupt(format!("form fields: {e}")))
}

/// Only the fields that differ from [`NodeConfig::default`]: a node with a kind's usual
/// configuration (an account's `presence` node) costs a few bytes, not a whole form.
pub(crate) fn config_to_json(config: &NodeConfig) -> Result<String, StorageError> {
    let defaults = NodeConfig::default().fields();
    let fields: Vec<_> = config
        .fields()
        .into_iter()
        .filter(|field| !defaults.contains(field))
        .map(|field| (field.var().to_owned(), field.values()))
        .collect();
    fields_to_json(&fields)
}

/// The configuration fields whose values name accounts: a value is the account's bare JID, or
/// starts with it and a space (`jid nick`, a nick registered with a room; `jid reason`, why
/// it was banned from one).
const ACCOUNT_LISTS: [&str; 4] = [
    "pubsub#contact",
    "muc#roomconfig_roomadmins",
    "verona#registered_nicks",
    "verona#ban_reasons",
];

/// A stored configuration without the values naming `account` (see [`ACCOUNT_LISTS`]);
/// `None` when it names it nowhere. A deleted account's name passes to whoever registers it
/// next, and must not bring along what a room gave the old owner.
pub(crate) fn config_without_account(
    json: &str,
    account: &str,
) -> Result<Option<String>, StorageError> {
    let names = |value: &String| {
        value
            .strip_prefix(account)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    };
    let mut fields = fields_from_json(json)?;
    let mut changed = false;
    for (var, values) in &mut fields {
        if ACCOUNT_LISTS.contains(&var.as_str()) && values.iter().any(names) {
            values.retain(|value| !names(value));
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    fields_to_json(&fields).map(Some)
}

/// Fields missing from the JSON keep [`NodeConfig::default`] values.
pub(crate) fn config_from_json(json: &str) -> Result<NodeConfig, StorageError> {
    let mut config = NodeConfig::default();
    for (var, values) in fields_from_json(json)? {
        let field = ConfigField::parse(&var, &values)
            .map_err(|e| StorageError::Corrupt(format!("node configuration: {e}")))?;
        config.set(field);
    }
    Ok(config)
}

/// Only the options that differ from [`SubscriptionOptions::default`] (usually none: `[]`).
pub(crate) fn options_to_json(options: &SubscriptionOptions) -> Result<String, StorageError> {
    let defaults = SubscriptionOptions::default().fields();
    let fields: Vec<_> = options
        .fields()
        .into_iter()
        .filter(|field| !defaults.contains(field))
        .collect();
    fields_to_json(&fields)
}

pub(crate) fn options_from_json(json: &str) -> Result<SubscriptionOptions, StorageError> {
    let mut options = SubscriptionOptions::default();
    for (var, values) in fields_from_json(json)? {
        options
            .set_field(&var, &values)
            .map_err(|e| StorageError::Corrupt(format!("subscription options: {e}")))?;
    }
    Ok(options)
}

/// Where a page of a result set lies, by ids: `after_id` and `before_id` bound the set itself
/// (XEP-0313), `after` and `before` page within it (XEP-0059); `backwards` pages from the end
/// (before `before`, or the last page).
pub struct Bounds<'a> {
    pub after_id: Option<&'a str>,
    pub before_id: Option<&'a str>,
    pub after: Option<&'a str>,
    pub before: Option<&'a str>,
    pub backwards: bool,
    pub max: usize,
}

/// The page of `archive` (oldest first) that `bounds` ask for, of the set its items that
/// `matches` takes make; whether it reaches the end of the set in the direction asked; and
/// how many the set holds. Ids are looked for in the whole archive, so an id outside the set
/// (or bounds that leave nothing between them) makes an empty page, not an error
/// (XEP-0313 §4.1.4: `item-not-found` is for an id that is not there). `Err` names an id
/// that is not in the archive.
pub fn page<T>(
    archive: Vec<T>,
    id_of: impl Fn(&T) -> &str,
    matches: impl Fn(&T) -> bool,
    bounds: &Bounds,
) -> Result<(Vec<T>, bool, usize), String> {
    let position = |id: Option<&str>| {
        id.map(|id| {
            (archive.iter())
                .position(|found| id_of(found) == id)
                .ok_or_else(|| id.to_owned())
        })
        .transpose()
    };
    let after_id = position(bounds.after_id)?;
    let before_id = position(bounds.before_id)?;
    let after = position(bounds.after)?;
    let before = position(bounds.before)?;
    // The set, each item with its place in the archive.
    let matching: Vec<(usize, T)> = (archive.into_iter().enumerate())
        .filter(|(at, found)| {
            after_id.is_none_or(|after| *at > after)
                && before_id.is_none_or(|before| *at < before)
                && matches(found)
        })
        .collect();
    let count = matching.len();
    let from = after.map_or(0, |after| matching.partition_point(|(at, _)| *at <= after));
    let until = before
        .map_or(count, |before| {
            matching.partition_point(|(at, _)| *at < before)
        })
        .max(from);
    let (first, last, complete) = if bounds.backwards {
        let first = until.saturating_sub(bounds.max).max(from);
        (first, until, first == from)
    } else {
        let last = (from + bounds.max).min(until);
        (from, last, last == until)
    };
    let items = (matching.into_iter())
        .skip(first)
        .take(last - first)
        .map(|(_, found)| found)
        .collect();
    Ok((items, complete, count))
}

/// Parses a stored JID, affiliation or subscription state.
pub(crate) fn parse<T: FromStr>(what: &str, text: &str) -> Result<T, StorageError> {
    text.parse()
        .map_err(|_| StorageError::Corrupt(format!("{what} {text:?}")))
}

/// Pages `archive` (the items of the query's services, in storage order) as
/// [`PubsubStore::items_page`] says: the reference a backend without an index follows.
pub(crate) fn page_of(
    archive: Vec<FoundItem>,
    query: &ItemsQuery,
) -> Result<ItemsPage, StorageError> {
    let matches = |found: &FoundItem| {
        let published = found.item.published;
        query.start.is_none_or(|start| published >= start)
            && query.end.is_none_or(|end| published <= end)
            && (query.ids.as_ref()).is_none_or(|ids| ids.contains(&found.item.id))
    };
    let bounds = Bounds {
        after_id: query.after_id.as_deref(),
        before_id: query.before_id.as_deref(),
        after: query.after.as_deref(),
        before: query.before.as_deref(),
        backwards: query.backwards,
        max: query.max,
    };
    let (items, complete, count) = page(archive, |found| &found.item.id, matches, &bounds)
        .map_err(StorageError::UnknownItem)?;
    Ok(ItemsPage {
        items,
        count: (count <= COUNTED_AT_MOST).then_some(count),
        complete,
    })
}
