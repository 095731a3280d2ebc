//! Access control as data: affiliations, the XEP-0060 §4.1 capability table, and the one
//! function deciding whether an actor may perform an action on a node.
//!
//! The decision has three steps:
//! 1. the actor's *explicit* affiliation (service admins count as owners; outcasts are refused
//!    everything);
//! 2. for an entity without affiliation, subscribing and retrieving are the access model's
//!    decision (through the [`AccessResolver`] for `presence` and `roster`), and the error
//!    names the reason XEP-0060 prescribes;
//! 3. otherwise the affiliation's row of [`CAPABILITIES`] decides, except that the publish
//!    model may still grant publishing (and retracting one's own items).

use crate::vecmap::VecSet;

use jid::BareJid;

use crate::config::{AccessModel, PublishModel};
use crate::error::{NotAuthorizedReason, PubsubError};
use crate::node::Node;

string_enum! {
    /// An entity's affiliation with a node (XEP-0060 §4.1). Affiliations are held by bare JIDs.
    pub enum Affiliation {
        /// Full control.
        Owner = "owner",
        /// Publishes and removes items.
        Publisher = "publisher",
        /// Publishes, removes its own items, but neither subscribes nor retrieves.
        PublishOnly = "publish-only",
        /// Subscribes and retrieves (on a whitelist node: is on the whitelist).
        Member = "member",
        /// No affiliation.
        None = "none",
        /// Banned.
        Outcast = "outcast",
    }
}

string_enum! {
    /// Something an actor may want to do to a node; one column of [`CAPABILITIES`].
    pub enum Action {
        /// Subscribe (the subscription may still need approval on an `authorize` node).
        Subscribe = "subscribe",
        /// Retrieve items.
        RetrieveItems = "retrieve-items",
        /// Publish an item.
        Publish = "publish",
        /// Retract an item the actor (its bare JID) published.
        RetractOwn = "retract-own",
        /// Retract any item.
        RetractAny = "retract-any",
        /// Remove all items.
        Purge = "purge",
        /// Read or change the node configuration.
        Configure = "configure",
        /// Delete the node.
        Delete = "delete",
        /// List, approve, change and remove subscriptions of others.
        ManageSubscriptions = "manage-subscriptions",
        /// List and change affiliations.
        ManageAffiliations = "manage-affiliations",
    }
}

/// One row of the capability table: the actions an affiliation allows by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The affiliation this row describes.
    pub affiliation: Affiliation,
    /// The actions it allows, whatever the node's access and publish models.
    pub allows: &'static [Action],
}

/// XEP-0060 §4.1 "Affiliations and their Privileges", extended with the owner-only management
/// actions. Publishers may remove any item ("Yes *" in the XEP); publish-only entities only
/// their own, as the XEP recommends.
pub const CAPABILITIES: [Capabilities; 6] = {
    use Action::*;
    [
        Capabilities {
            affiliation: Affiliation::Owner,
            allows: &[
                Subscribe,
                RetrieveItems,
                Publish,
                RetractOwn,
                RetractAny,
                Purge,
                Configure,
                Delete,
                ManageSubscriptions,
                ManageAffiliations,
            ],
        },
        Capabilities {
            affiliation: Affiliation::Publisher,
            allows: &[
                Subscribe,
                RetrieveItems,
                Publish,
                RetractOwn,
                RetractAny,
                Purge,
            ],
        },
        Capabilities {
            affiliation: Affiliation::PublishOnly,
            allows: &[Publish, RetractOwn],
        },
        Capabilities {
            affiliation: Affiliation::Member,
            allows: &[Subscribe, RetrieveItems],
        },
        Capabilities {
            affiliation: Affiliation::None,
            allows: &[Subscribe],
        },
        Capabilities {
            affiliation: Affiliation::Outcast,
            allows: &[],
        },
    ]
};

impl Affiliation {
    /// Whether this affiliation's row of [`CAPABILITIES`] allows `action`.
    pub fn allows(self, action: Action) -> bool {
        CAPABILITIES
            .iter()
            .find(|row| row.affiliation == self)
            .is_some_and(|row| row.allows.contains(&action))
    }
}

/// What the `presence` and `roster` access models need to know about the IM world. The
/// eventing layer implements it over its presence and roster state; the engine never caches
/// the answers, so they are always current.
pub trait AccessResolver {
    /// Whether `contact` is subscribed to `owner`'s presence.
    fn has_presence_subscription(&self, owner: &BareJid, contact: &BareJid) -> bool;

    /// Whether `contact` is in at least one of `groups` in `owner`'s roster.
    fn in_roster_group(&self, owner: &BareJid, contact: &BareJid, groups: &[String]) -> bool;
}

/// A resolver that knows no presence subscriptions and no rosters: `presence` and `roster`
/// nodes are reserved to affiliated entities.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRoster;

impl AccessResolver for NoRoster {
    fn has_presence_subscription(&self, _owner: &BareJid, _contact: &BareJid) -> bool {
        false
    }

    fn in_roster_group(&self, _owner: &BareJid, _contact: &BareJid, _groups: &[String]) -> bool {
        false
    }
}

/// The affiliation `actor` holds, counting service admins as owners.
pub(crate) fn affiliation_of(
    node: &Node,
    admins: &VecSet<BareJid>,
    actor: &BareJid,
) -> Affiliation {
    if admins.contains(actor) {
        return Affiliation::Owner;
    }
    match node.affiliation(actor) {
        Affiliation::None if node.outcast_domain(actor) => Affiliation::Outcast,
        affiliation => affiliation,
    }
}

/// Decides whether `actor` may perform `action` on `node` (see the module documentation).
pub(crate) fn may(
    node: &Node,
    admins: &VecSet<BareJid>,
    resolver: &dyn AccessResolver,
    actor: &BareJid,
    action: Action,
) -> Result<(), PubsubError> {
    let affiliation = affiliation_of(node, admins, actor);
    if affiliation == Affiliation::Outcast {
        return Err(PubsubError::Forbidden);
    }
    // The access model decides what an entity without affiliation may subscribe to and
    // retrieve; explicit affiliations (members are the whitelist) override it.
    if affiliation == Affiliation::None
        && matches!(action, Action::Subscribe | Action::RetrieveItems)
    {
        return access_model_grants(node, resolver, actor, action);
    }
    if affiliation.allows(action) {
        return Ok(());
    }
    // Publish models that admit subscribers or anyone admit members and unaffiliated entities
    // too; publish-only entities already may publish.
    match action {
        Action::Publish | Action::RetractOwn => match node.config.publish_model {
            PublishModel::Open => Ok(()),
            PublishModel::Subscribers if node.has_approved_subscription(actor) => Ok(()),
            _ => Err(PubsubError::Forbidden),
        },
        _ => Err(PubsubError::Forbidden),
    }
}

/// The access model's answer for an entity without affiliation.
fn access_model_grants(
    node: &Node,
    resolver: &dyn AccessResolver,
    actor: &BareJid,
    action: Action,
) -> Result<(), PubsubError> {
    let mut owners = node.owners();
    match node.config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence => {
            if owners.any(|owner| resolver.has_presence_subscription(owner, actor)) {
                Ok(())
            } else {
                Err(PubsubError::NotAuthorized(
                    NotAuthorizedReason::PresenceSubscriptionRequired,
                ))
            }
        }
        AccessModel::Roster => {
            let groups = &node.config.roster_groups_allowed;
            if owners.any(|owner| resolver.in_roster_group(owner, actor, groups)) {
                Ok(())
            } else {
                Err(PubsubError::NotAuthorized(
                    NotAuthorizedReason::NotInRosterGroup,
                ))
            }
        }
        // Anyone may ask; the request waits for an owner. Items are for approved subscribers.
        AccessModel::Authorize => {
            if action == Action::Subscribe || node.has_approved_subscription(actor) {
                Ok(())
            } else {
                Err(PubsubError::NotAuthorized(
                    NotAuthorizedReason::NotSubscribed,
                ))
            }
        }
        AccessModel::Whitelist => Err(PubsubError::ClosedNode),
    }
}
