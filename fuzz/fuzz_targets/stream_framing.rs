//! The checks are `verona_fuzz::stream_framing` (crates/verona-fuzz), shared with the corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| verona_fuzz::stream_framing(data));
