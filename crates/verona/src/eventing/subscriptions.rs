//! Who follows whose presence, read from the engine: the answer of the `presence` and `roster`
//! access models, the derived roster (DESIGN §2), and which subscriptions were made with
//! classic `<presence type='subscribe'/>` (DESIGN §3, rendering rule 2).
//!
//! Only resident services are in the graph (DESIGN §5a). An owner's side comes from its
//! service when it is loaded; a resident user's outbound side (whose presence it follows or
//! asks for) is read from storage's subscriber index when the user is loaded ([`seed`]) and
//! kept up to date by the refreshes of resident owners, since an owner that is not resident
//! changes nothing.
//!
//! [`seed`]: PresenceGraph::seed

use crate::jids::Bare;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::FastHashMap;

use jid::{BareJid, Jid};
use verona_pubsub::{AccessResolver, Service, SubscriptionState, VecMap};
use verona_storage::HeldSubscription;

use super::presence::{PRESENCE_NODE, ROSTER_NODE, VIEW_OPTION};

/// The roster annotations of one contact (RFC 6121 §2.1.2: name and groups), kept as items of
/// the owner's private `roster` node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotation {
    pub name: Option<String>,
    pub groups: Vec<String>,
}

/// A subscriber of an account's presence node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Relation {
    /// Approved (`false`: waiting for the owner).
    approved: bool,
    /// Asked with `<presence type='subscribe'/>`.
    classic: bool,
}

/// One contact's item of an owner's `roster` node, as read.
struct Annotated {
    /// The item's payload, kept to know it unchanged at the next read (the engine shares it;
    /// a changed item is a new one): a roster set re-reads the node, and parsing a thousand
    /// payloads took 2 ms where comparing them takes microseconds.
    payload: Arc<str>,
    annotation: Annotation,
}

/// One account's side of the graph.
#[derive(Default)]
struct Owner {
    /// The subscribers of its presence node, one entry each.
    contacts: VecMap<Id, Relation>,
    /// Its `roster` node, by contact.
    annotations: BTreeMap<BareJid, Annotated>,
}

impl Owner {
    fn followers(&self) -> impl Iterator<Item = Id> + '_ {
        self.contacts
            .iter()
            .filter(|(_, relation)| relation.approved)
            .map(|(contact, _)| *contact)
    }

    fn follows(&self, contact: Id) -> bool {
        self.contacts.get(&contact).is_some_and(|r| r.approved)
    }

    fn asks(&self, contact: Id) -> bool {
        self.contacts.get(&contact).is_some_and(|r| !r.approved)
    }
}

/// A JID's number in the graph.
type Id = u32;

/// Every JID the graph mentions, kept once and counted: relations hold numbers, so a
/// contact's JID is not copied into every relation that names it (issue #9).
#[derive(Default)]
struct Jids {
    ids: FastHashMap<BareJid, Id>,
    /// By number: the JID and how many mentions it has (free numbers are `None`).
    entries: Vec<Option<(BareJid, u32)>>,
    free: Vec<Id>,
}

impl Jids {
    /// The number of a JID already mentioned.
    fn id(&self, jid: &BareJid) -> Option<Id> {
        self.ids.get(jid).copied()
    }

    fn jid(&self, id: Id) -> &BareJid {
        match &self.entries[id as usize] {
            Some((jid, _)) => jid,
            None => unreachable!("a released number is not held"),
        }
    }

    /// One more mention of `jid`; its number.
    fn hold(&mut self, jid: &BareJid) -> Id {
        if let Some(&id) = self.ids.get(jid) {
            self.hold_id(id);
            return id;
        }
        let entry = Some((jid.clone(), 1));
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                let id = Id::try_from(self.entries.len()).expect("fewer than 2^32 JIDs");
                self.entries.push(entry);
                id
            }
        };
        self.ids.insert(jid.clone(), id);
        id
    }

    fn hold_id(&mut self, id: Id) {
        if let Some((_, uses)) = &mut self.entries[id as usize] {
            *uses += 1;
        }
    }

    /// One mention fewer; the JID goes with its last.
    fn release(&mut self, id: Id) {
        let slot = &mut self.entries[id as usize];
        let Some((_, uses)) = slot else {
            return;
        };
        *uses -= 1;
        if *uses == 0
            && let Some((jid, _)) = slot.take()
        {
            self.ids.remove(&jid);
            self.free.push(id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A user's outbound relations (whose presence it follows, or asks for), by owner number,
/// sorted.
type Outbound = FastHashMap<Id, Vec<Id>>;

#[derive(Default)]
pub struct PresenceGraph {
    owners: FastHashMap<BareJid, Owner>,
    /// The reverse of `followers`: whose presence nodes an account follows.
    following: Outbound,
    /// The reverse of `pending`: whose presence nodes an account waits for.
    asking: Outbound,
    jids: Jids,
    /// (owner, contact): approved subscriptions that ended since [`PresenceGraph::take_ended`]
    /// was last called; the contact must see the owner go unavailable (RFC 6121 §3.2.2,
    /// §3.3.2).
    ended: Vec<(BareJid, BareJid)>,
}

/// Adds (`on`) or removes `owner` from `user`'s outbound set, holding or releasing the numbers
/// it keeps; returns whether it changed.
fn set_relation(jids: &mut Jids, map: &mut Outbound, user: Id, owner: Id, on: bool) -> bool {
    match (map.get_mut(&user), on) {
        (Some(owners), true) => match owners.binary_search(&owner) {
            Ok(_) => false,
            Err(at) => {
                owners.insert(at, owner);
                jids.hold_id(owner);
                true
            }
        },
        (None, true) => {
            map.insert(user, vec![owner]);
            jids.hold_id(user);
            jids.hold_id(owner);
            true
        }
        (Some(owners), false) => match owners.binary_search(&owner) {
            Ok(at) => {
                owners.remove(at);
                jids.release(owner);
                if owners.is_empty() {
                    map.remove(&user);
                    jids.release(user);
                }
                true
            }
            Err(_) => false,
        },
        (None, false) => false,
    }
}

/// Drops `user`'s whole outbound set.
fn clear_relations(jids: &mut Jids, map: &mut Outbound, user: Id) {
    if let Some(owners) = map.remove(&user) {
        for owner in owners {
            jids.release(owner);
        }
        jids.release(user);
    }
}

impl PresenceGraph {
    /// The (owner, contact) pairs whose approved subscription ended since the last call.
    pub fn take_ended(&mut self) -> Vec<(BareJid, BareJid)> {
        std::mem::take(&mut self.ended)
    }

    /// Reads an account's presence subscribers and roster annotations from its PEP service;
    /// returns the (user, contact) pairs whose roster item changed: both sides when a
    /// subscription changed, the asker's when a request did, the owner's when an annotation
    /// did.
    pub fn refresh(&mut self, owner: &BareJid, service: &Service) -> Vec<(BareJid, BareJid)> {
        let owner_jid = Jid::from(owner.clone());
        let mut next = Owner::default();
        let approved = service.node_subscriptions(&owner_jid, PRESENCE_NODE);
        let pending = service.pending_subscriptions(&owner_jid, PRESENCE_NODE);
        let subscriptions = (approved.unwrap_or_default().into_iter().map(|s| (s, true)))
            .chain(pending.unwrap_or_default().into_iter().map(|s| (s, false)));
        for (sub, approved) in subscriptions {
            let classic = sub.options.custom.get(VIEW_OPTION) == Some("presence");
            let id = self.jids.hold(&sub.jid.bare());
            // A bare JID's several subscriptions count once: approved if any is.
            let relation = match next.contacts.get(&id).copied() {
                Some(was) => {
                    self.jids.release(id);
                    Relation {
                        approved: was.approved | approved,
                        classic: was.classic | classic,
                    }
                }
                None => Relation { approved, classic },
            };
            next.contacts.insert(id, relation);
        }
        let mut old = self.owners.remove(owner).unwrap_or_default();
        let mut changed: BTreeSet<(BareJid, BareJid)> = BTreeSet::new();
        next.annotations = std::mem::take(&mut old.annotations);
        reread_annotations(service, &mut next.annotations, |contact| {
            changed.insert((owner.clone(), contact.clone()));
        });

        let owner_id = self.jids.hold(owner);
        let mut contacts: Vec<Id> = old
            .contacts
            .keys()
            .chain(next.contacts.keys())
            .copied()
            .collect();
        contacts.sort_unstable();
        contacts.dedup();
        for contact in contacts {
            let contact_jid = self.jids.jid(contact).clone();
            let follows = (old.follows(contact), next.follows(contact));
            let asks = (old.asks(contact), next.asks(contact));
            for ((was, now), map) in [(follows, &mut self.following), (asks, &mut self.asking)] {
                if was == now {
                    continue;
                }
                changed.insert((contact_jid.clone(), owner.clone()));
                set_relation(&mut self.jids, map, contact, owner_id, now);
            }
            if follows.0 != follows.1 {
                changed.insert((owner.clone(), contact_jid.clone()));
                if follows.0 {
                    self.ended.push((owner.clone(), contact_jid));
                }
            }
        }
        for &contact in old.contacts.keys() {
            self.jids.release(contact);
        }
        self.jids.release(owner_id);
        self.owners.insert(owner.clone(), next);
        changed.into_iter().collect()
    }

    /// Sets `user`'s outbound side from its stored subscriptions: the presence nodes it is
    /// subscribed to or waiting for. Call it when `user` becomes resident, between batches
    /// (when storage holds what resident services hold).
    pub fn seed(&mut self, user: &BareJid, held: &[HeldSubscription]) {
        let user_id = self.jids.hold(user);
        for map in [&mut self.following, &mut self.asking] {
            clear_relations(&mut self.jids, map, user_id);
        }
        for held in held.iter().filter(|held| held.node == PRESENCE_NODE) {
            let Ok(owner) = BareJid::new(&held.service) else {
                continue;
            };
            let map = match held.state {
                SubscriptionState::Subscribed => &mut self.following,
                SubscriptionState::Pending => &mut self.asking,
                _ => continue,
            };
            let owner_id = self.jids.hold(&owner);
            set_relation(&mut self.jids, map, user_id, owner_id, true);
            self.jids.release(owner_id);
        }
        self.jids.release(user_id);
    }

    /// Sets one of `user`'s outbound relations, as another shard reports it: whether it
    /// follows `owner`'s presence (`follows`) or waits for approval (`asks`).
    /// Returns whether anything changed.
    pub fn set_outbound(
        &mut self,
        user: &BareJid,
        owner: &BareJid,
        follows: bool,
        asks: bool,
    ) -> bool {
        let user_id = self.jids.hold(user);
        let owner_id = self.jids.hold(owner);
        let mut changed = false;
        for (on, map) in [(follows, &mut self.following), (asks, &mut self.asking)] {
            changed |= set_relation(&mut self.jids, map, user_id, owner_id, on);
        }
        self.jids.release(owner_id);
        self.jids.release(user_id);
        changed
    }

    /// Whether `contact` waits for `owner`'s approval.
    pub fn is_pending(&self, owner: &BareJid, contact: &BareJid) -> bool {
        self.relation(owner, contact).is_some_and(|r| !r.approved)
    }

    fn relation(&self, owner: &BareJid, contact: &BareJid) -> Option<Relation> {
        let contact = self.jids.id(contact)?;
        self.owners.get(owner)?.contacts.get(&contact).copied()
    }

    /// Drops `owner`, whose service leaves memory. What it contributed to the outbound side
    /// of users still resident stays (it is still true, and they are not re-read); the rest
    /// goes, as does `owner`'s own outbound side.
    pub fn forget(&mut self, owner: &BareJid, resident: impl Fn(&BareJid) -> bool) {
        let owner_id = self.jids.hold(owner);
        if let Some(old) = self.owners.remove(owner) {
            for (&contact, relation) in old.contacts.iter() {
                if !resident(self.jids.jid(contact)) {
                    let map = if relation.approved {
                        &mut self.following
                    } else {
                        &mut self.asking
                    };
                    set_relation(&mut self.jids, map, contact, owner_id, false);
                }
                self.jids.release(contact);
            }
        }
        for map in [&mut self.following, &mut self.asking] {
            clear_relations(&mut self.jids, map, owner_id);
        }
        self.jids.release(owner_id);
    }

    /// The accounts subscribed to `owner`'s presence.
    pub fn followers(&self, owner: &BareJid) -> impl Iterator<Item = &BareJid> {
        self.owners
            .get(owner)
            .into_iter()
            .flat_map(|o| o.followers())
            .map(|id| self.jids.jid(id))
    }

    /// The accounts waiting for `owner`'s approval of their request to follow it.
    pub fn askers(&self, owner: &BareJid) -> impl Iterator<Item = &BareJid> {
        self.owners
            .get(owner)
            .into_iter()
            .flat_map(|o| o.contacts.iter())
            .filter(|(_, relation)| !relation.approved)
            .map(|(&id, _)| self.jids.jid(id))
    }

    /// The accounts whose presence `contact` is subscribed to.
    pub fn following(&self, contact: &BareJid) -> impl Iterator<Item = &BareJid> {
        self.outbound(&self.following, contact)
    }

    fn outbound<'a>(
        &'a self,
        map: &'a Outbound,
        user: &BareJid,
    ) -> impl Iterator<Item = &'a BareJid> {
        self.jids
            .id(user)
            .and_then(|id| map.get(&id))
            .into_iter()
            .flatten()
            .map(|&id| self.jids.jid(id))
    }

    /// Whether `owner` is in `user`'s outbound set of `map` (a search: a roster asks it for
    /// each of its contacts).
    fn has_outbound(&self, map: &Outbound, user: &BareJid, owner: &BareJid) -> bool {
        let (Some(user), Some(owner)) = (self.jids.id(user), self.jids.id(owner)) else {
            return false;
        };
        map.get(&user)
            .is_some_and(|owners| owners.binary_search(&owner).is_ok())
    }

    /// Whether `contact` asked for `owner`'s presence with a classic `<presence/>` stanza (its
    /// rendering when its session advertised no capabilities); `None` when they have no
    /// relation. One lookup: a presence broadcast asks it for every recipient.
    pub fn subscribed_classically(&self, owner: &BareJid, contact: &BareJid) -> Option<bool> {
        self.relation(owner, contact).map(|r| r.classic)
    }

    /// `user`'s roster (RFC 6121 §2): every contact with a relation or an annotation.
    pub fn roster(&self, user: &BareJid) -> Vec<RosterEntry> {
        let owner = self.owners.get(user);
        let contacts: BTreeSet<&BareJid> = owner
            .into_iter()
            .flat_map(|o| {
                o.followers()
                    .map(|id| self.jids.jid(id))
                    .chain(o.annotations.keys())
            })
            .chain(self.following(user))
            .chain(self.outbound(&self.asking, user))
            .collect();
        contacts
            .into_iter()
            .filter_map(|contact| self.roster_entry(user, contact))
            .collect()
    }

    /// One roster entry of `user`, if `contact` is on the roster.
    pub fn roster_entry(&self, user: &BareJid, contact: &BareJid) -> Option<RosterEntry> {
        let owner = self.owners.get(user);
        let from = self.relation(user, contact).is_some_and(|r| r.approved);
        let to = self.has_outbound(&self.following, user, contact);
        let ask = self.has_outbound(&self.asking, user, contact);
        let annotation = owner
            .and_then(|o| o.annotations.get(contact))
            .map(|a| a.annotation.clone());
        if !(from || to || ask || annotation.is_some()) || user == contact {
            return None;
        }
        Some(RosterEntry {
            contact: contact.clone(),
            from,
            to,
            ask,
            annotation: annotation.unwrap_or_default(),
        })
    }
}

/// A derived roster item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterEntry {
    pub contact: BareJid,
    /// The contact follows the user's presence.
    pub from: bool,
    /// The user follows the contact's presence.
    pub to: bool,
    /// The user's request is waiting for the contact.
    pub ask: bool,
    pub annotation: Annotation,
}

impl RosterEntry {
    /// The RFC 6121 `subscription` value.
    pub fn subscription(&self) -> &'static str {
        match (self.from, self.to) {
            (true, true) => "both",
            (true, false) => "from",
            (false, true) => "to",
            (false, false) => "none",
        }
    }
}

/// The items of the owner's `roster` node: id = contact, payload = a roster `<item/>`.
/// Brings `annotations` (the last read of an owner's `roster` node) up to date with the node,
/// telling `changed` of each contact whose annotation came, went or differs. An item whose
/// payload is the one read last time is not parsed again.
fn reread_annotations(
    service: &Service,
    annotations: &mut BTreeMap<BareJid, Annotated>,
    mut changed: impl FnMut(&BareJid),
) {
    let mut current = 0;
    for item in service.node_items(ROSTER_NODE) {
        let (Some(payload), Ok(contact)) = (&item.payload, BareJid::new(&item.id)) else {
            continue;
        };
        if let Some(was) = annotations.get(&contact)
            && Arc::ptr_eq(&was.payload, payload)
        {
            current += 1;
            continue;
        }
        let Some(annotation) = parse_annotation(payload) else {
            continue;
        };
        current += 1;
        let payload = payload.clone();
        let was = annotations.insert(
            contact.clone(),
            Annotated {
                payload,
                annotation,
            },
        );
        let now = annotations.get(&contact).map(|a| &a.annotation);
        if was.map(|w| w.annotation).as_ref() != now {
            changed(&contact);
        }
    }
    if current == annotations.len() {
        return;
    }
    // Some went (rarer: a removal reads the node twice).
    let held: FastHashMap<BareJid, &Arc<str>> = service
        .node_items(ROSTER_NODE)
        .filter_map(|item| Some((BareJid::new(&item.id).ok()?, item.payload.as_ref()?)))
        .collect();
    annotations.retain(|contact, annotated| {
        let kept = held
            .get(contact)
            .is_some_and(|payload| Arc::ptr_eq(payload, &annotated.payload));
        if !kept {
            changed(contact);
        }
        kept
    });
}

/// A `roster` node item's payload: a roster `<item/>` with its name and groups.
fn parse_annotation(payload: &str) -> Option<Annotation> {
    let parsed: minidom::Element = payload.parse().ok()?;
    Some(Annotation {
        name: parsed.attr("name").map(str::to_owned),
        groups: parsed
            .children()
            .filter(|c| c.name() == "group")
            .map(|g| g.text())
            .collect(),
    })
}

impl AccessResolver for PresenceGraph {
    fn has_presence_subscription(&self, owner: &BareJid, contact: &BareJid) -> bool {
        self.relation(owner, contact).is_some_and(|r| r.approved)
    }

    fn in_roster_group(&self, owner: &BareJid, contact: &BareJid, groups: &[String]) -> bool {
        self.owners
            .get(owner)
            .and_then(|o| o.annotations.get(contact))
            .is_some_and(|a| a.annotation.groups.iter().any(|g| groups.contains(g)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventing::pep_config;
    use crate::eventing::presence::presence_node_config;
    use verona_pubsub::{CreateRequest, PublishRequest, SubscriptionOptions, SystemEnvironment};

    fn bare(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    /// Juliet's PEP service with Romeo approved (asked classically), Nurse pending, and
    /// annotations for Romeo and for Tybalt (no relation).
    fn juliets_service() -> Service {
        let juliet = bare("juliet@capulet.lit");
        let owner = Jid::from(juliet.clone());
        let mut service = Service::new(
            pep_config(juliet, verona_pubsub::Limits::default()),
            Box::new(SystemEnvironment::default()),
        );
        let presence = CreateRequest {
            node: Some(PRESENCE_NODE.to_owned()),
            config: presence_node_config(),
            ..CreateRequest::default()
        };
        let _ = service.create(&owner, presence).unwrap();
        let roster = CreateRequest {
            node: Some(ROSTER_NODE.to_owned()),
            config: crate::eventing::roster::roster_node_config(),
            ..CreateRequest::default()
        };
        let _ = service.create(&owner, roster).unwrap();
        let romeo = Jid::new("romeo@montague.lit").unwrap();
        let mut classic = SubscriptionOptions::default();
        classic.custom.insert(VIEW_OPTION, "presence");
        let resolver = PresenceGraph::default();
        let _ = service
            .subscribe(&resolver, &romeo, PRESENCE_NODE, &romeo, Some(classic))
            .unwrap();
        let _ = service
            .authorize(&owner, PRESENCE_NODE, &romeo, None, true)
            .unwrap();
        let nurse = Jid::new("nurse@capulet.lit").unwrap();
        let _ = service
            .subscribe(&resolver, &nurse, PRESENCE_NODE, &nurse, None)
            .unwrap();
        for (contact, item) in [
            (
                "romeo@montague.lit",
                "<item xmlns='jabber:iq:roster' jid='romeo@montague.lit' name='Romeo'><group>Montagues</group></item>",
            ),
            (
                "tybalt@capulet.lit",
                "<item xmlns='jabber:iq:roster' jid='tybalt@capulet.lit'><group>Family</group></item>",
            ),
        ] {
            let publish = PublishRequest::payload(Some(contact), item);
            let _ = service.publish(&owner, ROSTER_NODE, publish).unwrap();
        }
        service
    }

    #[test]
    fn the_roster_is_derived_both_ways() {
        let mut graph = PresenceGraph::default();
        let juliet = bare("juliet@capulet.lit");
        let changed = graph.refresh(&juliet, &juliets_service());
        let romeo = bare("romeo@montague.lit");
        let nurse = bare("nurse@capulet.lit");
        let tybalt = bare("tybalt@capulet.lit");
        // (user, contact, subscription, ask, name, groups); None: not on the roster.
        type Row<'a> = (
            &'a BareJid,
            &'a BareJid,
            Option<(&'a str, bool, Option<&'a str>, &'a [&'a str])>,
        );
        let rows: [Row; 6] = [
            (
                &juliet,
                &romeo,
                Some(("from", false, Some("Romeo"), &["Montagues"])),
            ),
            (&juliet, &tybalt, Some(("none", false, None, &["Family"]))),
            (&juliet, &nurse, None),
            (&romeo, &juliet, Some(("to", false, None, &[]))),
            (&nurse, &juliet, Some(("none", true, None, &[]))),
            (&tybalt, &juliet, None),
        ];
        for (user, contact, expected) in rows {
            let entry = graph.roster_entry(user, contact);
            let got = entry.as_ref().map(|e| {
                let groups: Vec<&str> = e.annotation.groups.iter().map(String::as_str).collect();
                (
                    e.subscription(),
                    e.ask,
                    e.annotation.name.as_deref(),
                    groups,
                )
            });
            let expected = expected.map(|(s, ask, name, groups)| (s, ask, name, groups.to_vec()));
            assert_eq!(got, expected, "{user} → {contact}");
        }
        assert_eq!(graph.roster(&juliet).len(), 2);
        assert_eq!(graph.subscribed_classically(&juliet, &romeo), Some(true));
        assert_eq!(graph.subscribed_classically(&juliet, &nurse), Some(false));
        let stranger = BareJid::new("stranger@verona.lit").unwrap();
        assert_eq!(graph.subscribed_classically(&juliet, &stranger), None);
        assert!(graph.in_roster_group(&juliet, &romeo, &["Montagues".to_owned()]));
        assert!(!graph.in_roster_group(&juliet, &romeo, &["Family".to_owned()]));
        // Every changed item is reported, on the side whose item changed.
        for pair in [
            (juliet.clone(), romeo.clone()),
            (romeo.clone(), juliet.clone()),
            (nurse.clone(), juliet.clone()),
            (juliet.clone(), tybalt.clone()),
        ] {
            assert!(changed.contains(&pair), "{pair:?}");
        }
        assert!(!changed.contains(&(juliet.clone(), nurse.clone())));
        // Nothing changed since: nothing reported.
        assert!(graph.refresh(&juliet, &juliets_service()).is_empty());
    }

    /// A roster set re-reads the `roster` node: each step reports exactly the contacts
    /// whose annotation came, changed or went, and the graph answers from the new one.
    #[test]
    fn each_reread_reports_the_annotations_that_changed() {
        let juliet = bare("juliet@capulet.lit");
        let owner = Jid::from(juliet.clone());
        let romeo = bare("romeo@montague.lit");
        let tybalt = bare("tybalt@capulet.lit");
        let mut service = juliets_service();
        let mut graph = PresenceGraph::default();
        let _ = graph.refresh(&juliet, &service);
        let item = |jid: &str, group: &str| {
            format!("<item xmlns='jabber:iq:roster' jid='{jid}'><group>{group}</group></item>")
        };
        // (what the step does, the contacts reported, Tybalt's groups after it)
        type Step<'a> = (&'a dyn Fn(&mut Service), &'a [&'a BareJid], Option<&'a str>);
        let publish = |contact: &'static str, group: &'static str| {
            let owner = owner.clone();
            move |service: &mut Service| {
                let request = PublishRequest::payload(Some(contact), item(contact, group).as_str());
                let _ = service.publish(&owner, ROSTER_NODE, request).unwrap();
            }
        };
        let retract = |service: &mut Service| {
            let juliet = Jid::from(bare("juliet@capulet.lit"));
            let tybalt = "tybalt@capulet.lit";
            let _ = service
                .retract(&juliet, ROSTER_NODE, tybalt, false)
                .unwrap();
        };
        let steps: [Step; 5] = [
            (&|_| {}, &[], Some("Family")),
            (
                &publish("tybalt@capulet.lit", "Enemies"),
                &[&tybalt],
                Some("Enemies"),
            ),
            // The same content again is a new item, but no change.
            (
                &publish("tybalt@capulet.lit", "Enemies"),
                &[],
                Some("Enemies"),
            ),
            (
                &publish("romeo@montague.lit", "Lovers"),
                &[&romeo],
                Some("Enemies"),
            ),
            (&retract, &[&tybalt], None),
        ];
        for (at, (step, reported, group)) in steps.into_iter().enumerate() {
            step(&mut service);
            let changed = graph.refresh(&juliet, &service);
            let expected: Vec<(BareJid, BareJid)> = reported
                .iter()
                .map(|&contact| (juliet.clone(), contact.clone()))
                .collect();
            assert_eq!(changed, expected, "step {at}");
            let groups = graph
                .roster_entry(&juliet, &tybalt)
                .map(|entry| entry.annotation.groups);
            assert_eq!(groups, group.map(|g| vec![g.to_owned()]), "step {at}");
        }
        assert!(graph.in_roster_group(&juliet, &romeo, &["Lovers".to_owned()]));
    }

    fn held(service: &str, node: &str, state: SubscriptionState) -> HeldSubscription {
        HeldSubscription {
            service: service.to_owned(),
            node: node.to_owned(),
            state,
        }
    }

    /// A user's outbound side comes from storage when it is loaded; an owner that leaves
    /// memory takes with it only what no resident user needs.
    #[test]
    fn seeded_from_storage_and_forgotten_on_eviction() {
        let mut graph = PresenceGraph::default();
        let juliet = bare("juliet@capulet.lit");
        let romeo = bare("romeo@montague.lit");
        let (nurse, tybalt) = (bare("nurse@capulet.lit"), bare("tybalt@capulet.lit"));
        graph.seed(
            &romeo,
            &[
                held(
                    "juliet@capulet.lit",
                    PRESENCE_NODE,
                    SubscriptionState::Subscribed,
                ),
                held(
                    "tybalt@capulet.lit",
                    PRESENCE_NODE,
                    SubscriptionState::Pending,
                ),
                // Other nodes, and other states, are no presence relation.
                held("nurse@capulet.lit", "geoloc", SubscriptionState::Subscribed),
                held(
                    "nurse@capulet.lit",
                    PRESENCE_NODE,
                    SubscriptionState::Unconfigured,
                ),
            ],
        );
        let entry = |graph: &PresenceGraph, contact: &BareJid| {
            graph
                .roster_entry(&romeo, contact)
                .map(|e| (e.subscription(), e.ask))
        };
        assert_eq!(entry(&graph, &juliet), Some(("to", false)));
        assert_eq!(entry(&graph, &tybalt), Some(("none", true)));
        assert_eq!(entry(&graph, &nurse), None);

        // Juliet's service is loaded (Romeo follows, Nurse waits), then leaves memory while
        // Romeo is resident and Nurse is not.
        let _ = graph.refresh(&juliet, &juliets_service());
        assert!(graph.following(&nurse).next().is_none());
        assert_eq!(graph.outbound(&graph.asking, &nurse).count(), 1);
        graph.forget(&juliet, |contact| *contact == romeo);
        assert!(!graph.has_presence_subscription(&juliet, &romeo));
        assert_eq!(
            entry(&graph, &juliet),
            Some(("to", false)),
            "still true for Romeo"
        );
        assert_eq!(
            graph.outbound(&graph.asking, &nurse).count(),
            0,
            "Nurse is not resident"
        );
        // Romeo leaves memory too: nothing of his outbound side stays.
        graph.forget(&romeo, |_| false);
        assert!(graph.following(&romeo).next().is_none());
        assert_eq!(graph.outbound(&graph.asking, &romeo).count(), 0);
        // Every JID the graph held is released with the last relation naming it.
        assert!(graph.owners.is_empty());
        assert!(graph.following.is_empty() && graph.asking.is_empty());
        assert_eq!(graph.jids.len(), 0);
    }

    /// Outbound relations set and unset in any order agree with a plain model, and the graph
    /// keeps no JID once nothing names it (the numbers are counted, not leaked).
    #[test]
    fn relations_agree_with_a_model_and_release_every_jid() {
        let people: Vec<BareJid> = (0..6).map(|n| bare(&format!("p{n}@verona.lit"))).collect();
        let mut graph = PresenceGraph::default();
        let mut model: BTreeMap<(usize, usize), (bool, bool)> = BTreeMap::new();
        // A fixed pseudo-random walk (xorshift) over users, owners and flags.
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let (user, owner) = ((x % 6) as usize, ((x >> 3) % 6) as usize);
            let (follows, asks) = ((x >> 6) & 1 == 1, (x >> 7) & 3 == 0);
            let before = model.get(&(user, owner)).copied().unwrap_or_default();
            let changed = graph.set_outbound(&people[user], &people[owner], follows, asks);
            assert_eq!(changed, before != (follows, asks));
            model.insert((user, owner), (follows, asks));
            for (u, who) in people.iter().enumerate() {
                let expected: BTreeSet<&BareJid> = model
                    .iter()
                    .filter(|((m, _), (f, _))| *m == u && *f)
                    .map(|((_, o), _)| &people[*o])
                    .collect();
                assert_eq!(graph.following(who).collect::<BTreeSet<_>>(), expected);
            }
        }
        for who in &people {
            graph.forget(who, |_| false);
        }
        assert!(graph.following.is_empty() && graph.asking.is_empty());
        assert_eq!(graph.jids.len(), 0);
    }
}
