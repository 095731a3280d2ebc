//! Queue budgets in bytes (DESIGN §6): a request holds credit from its session's budget and
//! from its shard's while it is queued and handled. A session that sends faster than the
//! services answer waits for its own credit (only its own reading stops), so one session's
//! burst takes at most its budget of a shard's queue, and a shard's queue holds at most its
//! budget of bytes whatever the number of sessions.

use std::sync::Arc;

use minidom::{Element, Node};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Credit is counted in units of this many bytes.
pub const UNIT: usize = 1024;

/// A byte budget shared by the requests that draw on it.
#[derive(Clone, Debug)]
pub struct Budget {
    units: Arc<Semaphore>,
    size: u32,
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        let size = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        Budget {
            units: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }

    /// Waits until `bytes` of credit are free and takes them (a request larger than the
    /// whole budget takes all of it, so that it waits for the others but not forever).
    pub async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.size);
        self.units
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("budgets are never closed")
    }

    /// Free credit, in bytes.
    #[cfg(test)]
    pub fn free(&self) -> usize {
        self.units.available_permits() * UNIT
    }
}

/// The credit one queued request holds; given back when it is dropped, after the request is
/// handled.
pub struct Credit {
    _session: Option<OwnedSemaphorePermit>,
    _shard: OwnedSemaphorePermit,
}

impl Credit {
    pub fn new(session: Option<OwnedSemaphorePermit>, shard: OwnedSemaphorePermit) -> Credit {
        Credit {
            _session: session,
            _shard: shard,
        }
    }
}

/// What an element costs in a queue: its serialised size, estimated without serialising
/// (names, attributes and text, plus markup).
pub fn weight(el: &Element) -> usize {
    let attrs: usize = el
        .attrs()
        .iter()
        .map(|((_, name), value)| name.len() + value.len() + 4)
        .sum();
    let children: usize = el
        .nodes()
        .map(|node| match node {
            Node::Element(child) => weight(child),
            Node::Text(text) => text.len(),
        })
        .sum();
    2 * el.name().len() + 5 + attrs + children
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_is_close_to_the_serialised_size() {
        for xml in [
            "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
            "<message xmlns='jabber:client' to='romeo@montague.lit'><body>Wherefore art thou, Romeo? Deny thy father and refuse thy name.</body></message>",
        ] {
            let el: Element = xml.parse().unwrap();
            let serialised = verona_stream::element_bytes(&el).len();
            let weight = weight(&el);
            assert!(
                weight * 2 >= serialised && weight <= serialised * 2,
                "{weight} vs {serialised}: {xml}"
            );
        }
        let big = format!(
            "<message xmlns='jabber:client'><body>{}</body></message>",
            "x".repeat(100_000)
        );
        let el: Element = big.parse().unwrap();
        assert!(weight(&el) >= 100_000);
    }

    #[tokio::test]
    async fn credit_waits_until_given_back() {
        let budget = Budget::new(4 * UNIT);
        let first = budget.take(3 * UNIT).await;
        assert_eq!(budget.free(), UNIT);
        // More than is free waits…
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), budget.take(2 * UNIT)).await;
        assert!(waiting.is_err());
        // …until the first request is done.
        drop(first);
        let second = budget.take(2 * UNIT).await;
        assert_eq!(budget.free(), 2 * UNIT);
        // A request larger than the budget takes all of it rather than waiting forever.
        drop(second);
        let huge = budget.take(100 * UNIT).await;
        assert_eq!(budget.free(), 0);
        drop(huge);
        assert_eq!(budget.free(), 4 * UNIT);
    }
}
