//! The checks are `verona_fuzz::pubsub_requests` (crates/verona-fuzz), shared with the corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| verona_fuzz::pubsub_requests(data));
