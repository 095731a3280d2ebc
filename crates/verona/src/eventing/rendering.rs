//! DESIGN §3, the rendering rule: whether a session gets an event of a XEP-0207 node as the
//! pubsub event itself (a native client) or as the classic stanza of its view.

use std::collections::HashSet;
use std::sync::Arc;

/// A client's verified disco#info features (XEP-0115), shared by every session with the
/// same capabilities.
pub type Features = Arc<HashSet<String>>;

/// The feature by which a client says it wants presence as pubsub events (XEP-0163 `+notify`
/// on the `presence` node).
pub const PRESENCE_NOTIFY: &str = "presence+notify";

/// Whether a session gets the classic rendering: its capabilities decide when known;
/// otherwise `made_classically`, how the subscription behind the event was made; otherwise
/// how the session publishes its own presence.
pub fn wants_classic(
    features: Option<&Features>,
    made_classically: Option<bool>,
    publishes_classically: bool,
) -> bool {
    if let Some(features) = features {
        return !features.contains(PRESENCE_NOTIFY);
    }
    made_classically.unwrap_or(publishes_classically)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Capabilities first, then how the subscription was made, then how the session
    /// publishes its own presence.
    #[test]
    fn the_rendering_rule() {
        let notify: Features = Arc::new(HashSet::from([PRESENCE_NOTIFY.to_owned()]));
        let plain: Features = Arc::new(HashSet::from(["urn:xmpp:ping".to_owned()]));
        let cases: &[(Option<&Features>, Option<bool>, bool, bool)] = &[
            // (features, made classically, publishes <presence/>, wants classic)
            (Some(&notify), Some(true), true, false),
            (Some(&plain), Some(false), false, true),
            (None, Some(true), false, true),
            (None, Some(false), true, false),
            (None, None, true, true),
            (None, None, false, false),
        ];
        for (n, &(features, made, publishes, expected)) in cases.iter().enumerate() {
            assert_eq!(
                wants_classic(features, made, publishes),
                expected,
                "case {n}"
            );
        }
    }
}
