//! XEP-0402 §5.3 in the host: an account's private-storage bookmarks are a view of its
//! `urn:xmpp:bookmarks:1` node (`eventing::bookmarks`). A set becomes XEP-0060 publishes and
//! retracts run in the same batch, so they commit, notify and undo like any other.

use super::*;
use crate::eventing::bookmarks::{self, LEGACY, NODE, legacy_publish, legacy_view, sync};
use crate::eventing::stored::Asked;
use crate::jids::Bare;

/// (item id, payload) of a node's items, newest first.
type Items = Vec<(String, Element)>;

impl ServicesTask {
    /// A classic storage iq (`eventing::stored`): the XEP-0060 request it stands for, answered
    /// in its classic form whatever the pubsub answer was. An account's own bookmarks go
    /// through the XEP-0402 node first.
    pub(super) fn stored(
        &mut self,
        from: FullJid,
        target: Target,
        stanza: Element,
        asked: Box<Asked>,
        done: &mut Vec<Done>,
    ) {
        let own = matches!(&target, Target::Account(account) if *account == from.bare());
        if own && asked.is_bookmarks() {
            let account = from.bare();
            if !asked.is_set() && self.has_node(&account, NODE) {
                let items = self.node_items(&account, NODE);
                let legacy = self.node_items(&account, LEGACY);
                let legacy = legacy.first().map(|(_, storage)| storage);
                let answer = asked.answer_stored(legacy_view(legacy, &items));
                done.push(Done::reply(from, Some(answer)));
                return;
            }
            if let Some(storage) = asked.stored().cloned() {
                // The XEP-0048 node first: a refusal there changes nothing else.
                if let Some(error) = self.make_fit(&from, LEGACY, done) {
                    done.push(Done::reply(from, Some(asked.answer(&error))));
                    return;
                }
                let start = done.len();
                self.viewed(from.clone(), target, stanza, &asked, done);
                let end = done.len();
                let to = Jid::from(from.clone());
                let answer = (start..end)
                    .find(|&n| done[n].to.as_ref() == Some(&to) && done[n].reply.is_some());
                let stored = answer.is_some_and(|n| {
                    done[n].reply.as_ref().and_then(|r| r.attr("type")) == Some("result")
                });
                if stored
                    && let Some(error) = self.sync_bookmarks(&from, &storage, done)
                    && let Some(n) = answer
                {
                    done[n].reply = Some(asked.answer(&error));
                }
                return;
            }
        }
        self.viewed(from, target, stanza, &asked, done);
    }

    /// Runs `stanza` for the classic storage iq `asked`, whose classic answer it gets.
    fn viewed(
        &mut self,
        from: FullJid,
        target: Target,
        stanza: Element,
        asked: &Asked,
        done: &mut Vec<Done>,
    ) {
        let start = done.len();
        let to = Jid::from(from.clone());
        self.stanza(from, target, stanza, done);
        for answered in &mut done[start..] {
            if answered.to.as_ref() == Some(&to)
                && let Some(reply) = answered.reply.take()
            {
                answered.reply = Some(asked.answer(&reply));
            }
        }
    }

    /// A XEP-0060 stanza from a session, with XEP-0402 §5.3 around it for the account's own
    /// PEP service: bookmarks kept before the XEP-0402 node existed come over first, and a
    /// publish to the XEP-0048 PEP node is published to it after.
    pub(super) fn own_stanza(
        &mut self,
        from: FullJid,
        target: Target,
        stanza: Element,
        done: &mut Vec<Done>,
    ) {
        let own = matches!(&target, Target::Account(account) if *account == from.bare());
        if !own {
            return self.stanza(from, target, stanza, done);
        }
        self.bring_bookmarks_over(&from, &target, &stanza, done);
        let legacy = legacy_publish(&stanza).cloned();
        if legacy
            .as_ref()
            .is_some_and(|storage| !bookmarks::within_bounds(storage))
        {
            let why = Some("too many rooms");
            let reply = error_reply(&stanza, StanzaError::PolicyViolation, why);
            return done.push(Done::reply(from, reply));
        }
        // A change to the XEP-0402 node by the client (not a read).
        let changes_bookmarks = stanza.attr("type") == Some("set") && names_node(&stanza, NODE);
        let start = done.len();
        let to = Jid::from(from.clone());
        self.stanza(from.clone(), target, stanza, done);
        let succeeded = done[start..].iter().any(|d| {
            d.to.as_ref() == Some(&to)
                && d.reply.as_ref().and_then(|r| r.attr("type")) == Some("result")
        });
        if !succeeded {
            return;
        }
        if let Some(storage) = legacy {
            self.sync_bookmarks(&from, &storage, done);
        } else if changes_bookmarks {
            self.legacy_follows(&from, done);
        }
    }

    /// XEP-0402 §5.3 the other way: the XEP-0048 node, for the clients that read it there
    /// (and what a later XEP-0048 publish starts from), follows a change a XEP-0402 client
    /// made, as private storage's view does; a node deleted leaves it with no rooms, so none
    /// come back.
    fn legacy_follows(&mut self, from: &FullJid, done: &mut Vec<Done>) {
        let account = from.bare();
        let items = self.node_items(&account, NODE);
        let legacy = self.node_items(&account, LEGACY);
        let old = legacy.first().map(|(_, storage)| storage);
        if old.is_none() && items.is_empty() {
            return;
        }
        let new = legacy_view(old, &items);
        if old == Some(&new) || self.make_fit(from, LEGACY, done).is_some() {
            return;
        }
        let exists = self.has_node(&account, LEGACY);
        self.quietly(from, bookmarks::legacy_publish_request(new, exists), done);
    }

    /// Gives the account's `node` its options (see [`bookmarks::is_fit`]) if a client made
    /// it otherwise; `Some(answer)` if that was refused.
    fn make_fit(&mut self, from: &FullJid, node: &str, done: &mut Vec<Done>) -> Option<Element> {
        let unfit = self
            .accounts
            .get(&from.bare())
            .and_then(|hosted| hosted.service.node_config(node))
            .is_some_and(|config| !bookmarks::is_fit(node, config));
        if unfit {
            self.quietly(from, bookmarks::configure(node), done)
        } else {
            None
        }
    }

    /// Makes the account's XEP-0402 node hold the conferences of `storage` (see
    /// [`sync`]); `Some(answer)` if a step was refused. A node a client made without
    /// XEP-0402's options is given them first, as Prosody does: open to contacts, what
    /// private storage kept (passwords too) would be published to them; keeping one item, it
    /// would keep one room.
    fn sync_bookmarks(
        &mut self,
        from: &FullJid,
        storage: &Element,
        done: &mut Vec<Done>,
    ) -> Option<Element> {
        let account = from.bare();
        let exists = self.has_node(&account, NODE);
        if let Some(error) = self.make_fit(from, NODE, done) {
            return Some(error);
        }
        let items = self.node_items(&account, NODE);
        for request in sync(storage, &items, exists) {
            if let Some(error) = self.quietly(from, request, done) {
                return Some(error);
            }
        }
        None
    }

    /// XEP-0402 §5.3 for bookmarks kept before the node existed: the first time the
    /// account's own session asks anything of the node, the node is made from what private
    /// storage holds, so a client that reads XEP-0402 sees the rooms a private-storage client
    /// saved before.
    fn bring_bookmarks_over(
        &mut self,
        from: &FullJid,
        target: &Target,
        stanza: &Element,
        done: &mut Vec<Done>,
    ) {
        let Target::Account(account) = target else {
            return;
        };
        if *account != from.bare() || !names_node(stanza, NODE) || self.has_node(account, NODE) {
            return;
        }
        let legacy = self.node_items(account, LEGACY);
        if let Some((_, storage)) = legacy.first() {
            self.sync_bookmarks(from, storage, done);
        }
    }

    /// Runs `request` as `from`'s, keeping its effects but not its answer: `Some(answer)` if
    /// it was refused.
    fn quietly(
        &mut self,
        from: &FullJid,
        request: Element,
        done: &mut Vec<Done>,
    ) -> Option<Element> {
        let start = done.len();
        let to = Jid::from(from.clone());
        self.stanza(from.clone(), Target::Account(from.bare()), request, done);
        let mut refused = None;
        for answered in &mut done[start..] {
            if answered.to.as_ref() == Some(&to) {
                // Not the session's request: nothing to answer, also if the batch fails.
                answered.request = None;
                if let Some(reply) = answered.reply.take()
                    && reply.attr("type") == Some("error")
                {
                    refused = Some(reply);
                }
            }
        }
        refused
    }

    fn has_node(&self, account: &BareJid, node: &str) -> bool {
        self.accounts
            .get(account)
            .is_some_and(|hosted| hosted.service.node_config(node).is_some())
    }

    /// The items of the account's `node`, read as the account.
    fn node_items(&self, account: &BareJid, node: &str) -> Items {
        let Some(hosted) = self.accounts.get(account) else {
            return Vec::new();
        };
        let owner = Jid::from(account.clone());
        let query = verona_pubsub::ItemQuery::All;
        let Ok(page) = hosted.service.items(&self.presence, &owner, node, &query) else {
            return Vec::new();
        };
        page.items
            .into_iter()
            .filter_map(|item| Some((item.id, item.payload.as_deref()?.parse().ok()?)))
            .collect()
    }
}

/// Whether a XEP-0060 iq names `node` in its operation.
fn names_node(stanza: &Element, node: &str) -> bool {
    [ns::PUBSUB, ns::PUBSUB_OWNER]
        .into_iter()
        .filter_map(|namespace| stanza.get_child("pubsub", namespace))
        .flat_map(Element::children)
        .any(|op| op.attr("node") == Some(node))
}
