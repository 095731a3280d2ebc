//! The checks of Verona's cargo-fuzz targets, one function per target: each takes the fuzzer's
//! bytes and panics on a finding. They live here, not in `fuzz/`, so that `cargo test` can
//! replay the committed corpora through them (`tests/corpora.rs`), which is the CI smoke run
//! of every target. See docs/fuzzing.md.

mod classic_queries;
mod pubsub_requests;
mod scram_messages;
mod stream_framing;

pub use classic_queries::classic_queries;
pub use pubsub_requests::pubsub_requests;
pub use scram_messages::scram_messages;
pub use stream_framing::stream_framing;

/// A target's checks: panics on a finding.
pub type Check = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/` and `fuzz/corpus/` name them.
pub const TARGETS: [(&str, Check); 4] = [
    ("stream_framing", stream_framing),
    ("scram_messages", scram_messages),
    ("pubsub_requests", pubsub_requests),
    ("classic_queries", classic_queries),
];
