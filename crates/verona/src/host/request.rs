//! What a shard handles: requests from sessions and from other shards, and a handled
//! request waiting for its batch's commit.

use super::*;

/// Which service a stanza is for.
pub(super) enum Target {
    /// `pubsub.<domain>`.
    Domain,
    /// `chat.<domain>`, the rooms.
    Rooms,
    /// The PEP service of a local account.
    Account(BareJid),
    /// A conversation node of `pubsub.<domain>` (`eventing::chat`), by node.
    Conversation(String),
    /// An owner's answer to an authorization request, sent to the server rather than to a
    /// service (the seed's Ex. 11): the service holding the form's node gets it.
    Answer,
}

pub(super) enum Request {
    Stanza {
        from: FullJid,
        target: Target,
        stanza: Element,
        /// A classic storage iq the stanza stands for: the answer is made for it.
        view: Option<Box<eventing::stored::Asked>>,
    },
    /// A session was bound: its account's service is made resident (and its blocklist known
    /// to the router) before `ready` is answered, and stays while the session lasts.
    SessionStarted {
        session: FullJid,
        ready: oneshot::Sender<()>,
    },
    /// XEP-0012 §4: how long ago `account` was last online, asked by `from`.
    LastActivity {
        from: FullJid,
        account: BareJid,
        iq: Element,
    },
    /// RFC 6121 §3: `user` asked for (`approval` false) or approved a subscription with
    /// `contact`, so the contact is on its roster, and stays there (`none`) when the
    /// subscriptions end. An approval with no request to approve keeps nothing.
    KeepOnRoster {
        user: BareJid,
        contact: BareJid,
        approval: bool,
    },
    /// An account is about to be deleted: its relations with its contacts end
    /// ([`ServicesTask::end_relations`]).
    EndRelations(BareJid),
    /// An account is to be deleted from storage: the shard forgets it (its own service, and
    /// what it held on every resident service), and loads or changes nothing of it until
    /// [`Request::Deleted`]; `ready` is answered after the commit, with whether the forgetting
    /// was stored.
    Forget {
        account: BareJid,
        ready: oneshot::Sender<bool>,
    },
    /// The deletion [`Request::Forget`] began is over (done or failed): the name is free.
    Deleted(BareJid),
    /// A session (full JID), or an account's last session (bare JID), ended: temporary
    /// (`expire=presence`) subscriptions made from it end too.
    /// `session` names the ended session of a full JID: if another session holds that JID by
    /// the time this is handled, it replaced this one (and ended its temporary subscriptions
    /// when it bound), and what it holds now is its own.
    SessionEnded { jid: Jid, session: Option<u64> },
    /// A session went unavailable without ending: its temporary subscriptions end, and the
    /// rooms it was in tell their occupants the `status` it gave.
    Unavailable {
        session: FullJid,
        status: Option<String>,
    },
    /// XEP-0060 §5.6 asked of `chat.<domain>` as a whole: the subscriptions `asker`'s account
    /// holds in this shard's rooms, answered on `held`. Being in a room is what such a
    /// subscription is, and is not stored: an occupied room is resident.
    RoomSubscriptions {
        asker: Jid,
        held: oneshot::Sender<Vec<verona_pubsub::SubscriptionInfo>>,
    },
    /// XEP-0060 §8.7.1 asked of `chat.<domain>`: the rooms of this shard whose entry requests
    /// wait for `owner`, answered on `held`. A request waits in a resident room: the joiner's
    /// subscription is its session's, and is not stored.
    PendingRooms {
        owner: BareJid,
        held: oneshot::Sender<Vec<String>>,
    },
    /// An owner's session came online: this shard's rooms send it the entry requests waiting
    /// for it, as `pubsub.<domain>` does its own ([`ServicesTask::came_online`]).
    RoomForms { session: FullJid },
    /// A XEP-0045 stanza for a room (`room@chat.<domain>` or `room@chat.<domain>/nick`): a
    /// join or leave presence, a groupchat message, a disco query.
    Room { from: FullJid, stanza: Element },
    /// An error message to a room from an address that may be bare (another server speaking
    /// for its user, or our federation bouncing what the room sent): what it answers is
    /// looked for by the room's shard ([`ServicesTask::room_error`]).
    RoomError { from: Jid, stanza: Element },
    /// A classic `<presence/>` broadcast (no `to`): published to, or for `unavailable`
    /// retracted from, the sender's `presence` node.
    Presence { from: FullJid, stanza: Element },
    /// A classic presence subscription stanza (RFC 6121 §3) between `from` and `contact`.
    Subscription {
        from: BareJid,
        contact: BareJid,
        kind: SubscriptionKind,
        /// What a `subscribe` carries besides its type (RFC 6121 §3.1.2; e.g. the asker's
        /// XEP-0172 nick), passed on with the request, vetted by
        /// [`crate::eventing::presence::request_extensions`].
        extensions: Vec<Element>,
    },
    /// A `jabber:iq:roster` get or set: the roster is a view of presence-node subscriptions
    /// and the `roster` node.
    Roster { from: FullJid, iq: Element },
    /// A XEP-0191 blocklist get, block or unblock.
    Blocking { from: FullJid, iq: Element },
    /// XEP-0163 §4.3: another server's user's resource came online with `+notify` features
    /// (see [`super::PubsubHandle::notify_last`]), or a local session's features became known
    /// only after its presence went on: it gets the last items of `owner`'s nodes.
    NotifyLast { session: FullJid, owner: BareJid },
    /// A local session's features became known late (its client answered the capabilities
    /// question after its presence went on): the last items of its own account's nodes and
    /// of the accounts it follows, from each one's shard.
    FeaturesKnown(FullJid),
    /// A presence probe (RFC 6121 §4.3) from a session to a local account.
    Probe { from: Jid, contact: BareJid },
    /// A `chat` or `normal` message with a local account (`to`: the address the sender gave;
    /// `from`: a session, or another server's account, which may write from its bare JID): a
    /// publish to the pair's conversation node, or for one that is not kept, a message passed
    /// on by the same rules.
    Chat { from: Jid, to: Jid, stanza: Element },
    /// From the shard of a conversation, after its commit: a message for `account`, which had
    /// no available session to take it: delivered if it has one now, else kept (XEP-0160).
    /// `origin`: who they are from, a sender's or a publisher's bare JID (`None`: each
    /// stanza's `from`), for the share of the queue it may take and the account's blocklist.
    Offline {
        account: BareJid,
        stanzas: Vec<String>,
        origin: Option<BareJid>,
        at: std::time::SystemTime,
    },
    /// Deliver more of the kept messages to a session that came online (the first round
    /// filled its queue).
    Flush(FullJid),
    /// Answered once the batch holding it is committed ([`super::PubsubHandle::settled`]).
    Barrier(oneshot::Sender<()>),
    /// Of `contacts`, those `session`'s broadcast presence reaches (it has broadcast some and
    /// they follow its account's presence): its unavailable presence reaches them anyway.
    Reached {
        session: FullJid,
        contacts: Vec<BareJid>,
        ready: oneshot::Sender<Vec<BareJid>>,
    },
    /// Remove expired items (from the task's own timer).
    ExpireItems,
    /// From another shard, after its commit: `owner`'s presence node now has `contact` (a
    /// user of this shard) as an approved (`follows`) or waiting (`asks`) subscriber, or not;
    /// `contact`'s outbound relations and roster follow.
    Relation {
        owner: BareJid,
        contact: BareJid,
        follows: bool,
        asks: bool,
    },
    /// From the shard of a session coming online: the services of `owners` held here (those
    /// in `load` made resident first) send it what they send on presence; with `domain`,
    /// `pubsub.<domain>` too, and the authorization forms waiting for its account there.
    CameOnline {
        session: FullJid,
        owners: Vec<BareJid>,
        load: Vec<BareJid>,
        domain: bool,
    },
}

impl Request {
    /// What the request costs in a queue, in bytes.
    pub(super) fn weight(&self) -> usize {
        match self {
            Request::Stanza { stanza, .. }
            | Request::Presence { stanza, .. }
            | Request::Room { stanza, .. }
            | Request::RoomError { stanza, .. }
            | Request::Chat { stanza, .. } => budget::weight(stanza),
            Request::Roster { iq, .. } | Request::Blocking { iq, .. } => budget::weight(iq),
            Request::Offline { stanzas, .. } => stanzas.iter().map(String::len).sum(),
            _ => budget::UNIT,
        }
    }
}

/// Where a handled request's effects came from.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Origin {
    Domain,
    /// `chat.<domain>` as a whole (disco, requests naming no room): a service without nodes.
    Rooms,
    /// One room of `chat.<domain>`, by node.
    Room(String),
    /// One conversation of `pubsub.<domain>`, by node.
    Conversation(String),
    Account(BareJid),
}

/// One handled request of a batch, waiting for the batch's commit.
pub(super) struct Done {
    pub(super) origin: Origin,
    pub(super) to: Option<Jid>,
    pub(super) request: Option<Element>,
    pub(super) reply: Option<Element>,
    pub(super) effects: Vec<Effect>,
    pub(super) undo: Option<Undo>,
    /// A message of a conversation: one that is not kept, delivered in its place among the
    /// batch's deliveries; or, with the publish's effects, the message as it was kept.
    pub(super) passing: Option<Box<Passing>>,
    /// A stanza to `to` already serialized, its body shared with other recipients' copies
    /// (a room's presences and history): sent as it is, like `reply`, and like it dropped if the
    /// batch is not stored.
    pub(super) sent: Option<verona_stream::Wire>,
}

/// A message passed on without being kept (chat states, receipts): from the sending session
/// to the address it gave, vetted.
pub(super) struct Passing {
    pub(super) from: Jid,
    pub(super) to: Jid,
    pub(super) message: Element,
}

impl Done {
    pub(super) fn new(origin: Origin, effects: Vec<Effect>, undo: Undo) -> Self {
        Done {
            origin,
            to: None,
            request: None,
            reply: None,
            effects,
            undo: Some(undo),
            passing: None,
            sent: None,
        }
    }

    /// Deliveries that change nothing (nothing to store or undo).
    pub(super) fn new_effects(origin: Origin, effects: Vec<Effect>) -> Self {
        Done {
            origin,
            to: None,
            request: None,
            reply: None,
            effects,
            undo: None,
            passing: None,
            sent: None,
        }
    }

    pub(super) fn reply(to: impl Into<Jid>, reply: Option<Element>) -> Self {
        Done {
            origin: Origin::Domain,
            to: Some(to.into()),
            request: None,
            reply,
            effects: Vec::new(),
            undo: None,
            passing: None,
            sent: None,
        }
    }

    /// A stanza serialized already ([`Done::sent`]).
    pub(super) fn sent(to: impl Into<Jid>, stanza: verona_stream::Wire) -> Self {
        Done {
            sent: Some(stanza),
            ..Done::reply(to, None)
        }
    }

    /// A message of a conversation that is not kept ([`Passing`]).
    pub(super) fn passing(origin: Origin, passing: Passing) -> Self {
        Done {
            passing: Some(Box::new(passing)),
            ..Done::new_effects(origin, Vec::new())
        }
    }
}

/// A message for another shard, sent once the batch is durable, if `committed` allows.
pub(super) struct Outgoing {
    pub(super) shard: usize,
    pub(super) request: Request,
    pub(super) committed: Committed,
}

/// Which writes of the batch must have been stored for an [`Outgoing`] message to be sent.
pub(super) enum Committed {
    /// None: it is sent whatever became of them.
    Always,
    /// Those of one service (the room an invitation is from, the account whose contact's
    /// removal it completes).
    Service(Origin),
}
