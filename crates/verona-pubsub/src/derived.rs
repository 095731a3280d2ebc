//! Indexes built only once a collection is large: below that a scan is cheaper than another
//! copy of every key held in memory (issue #9).

/// An index derived from data it sits beside: `None` until built. Two are equal when either
/// is not built, so that states compare by their data alone (undo and restore tests).
#[derive(Debug, Clone)]
pub(crate) struct Derived<T>(pub(crate) Option<T>);

impl<T> Default for Derived<T> {
    fn default() -> Self {
        Derived(None)
    }
}

impl<T: PartialEq> PartialEq for Derived<T> {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        }
    }
}

impl<T: Eq> Eq for Derived<T> {}
