//! The CI smoke run of the fuzz targets: every input of each committed corpus
//! (`fuzz/corpus/<target>/`, minimised with `cargo fuzz cmin`) replayed through the target's
//! checks, so that `cargo test --workspace` fails on an input a target once passed and a
//! change broke.

use std::fs;
use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target() {
    let corpora = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, check) in verona_fuzz::TARGETS {
        let dir = corpora.join(target);
        let Ok(entries) = fs::read_dir(&dir) else {
            eprintln!("{target}: no corpus at {}, skipped", dir.display());
            continue;
        };
        let mut inputs: Vec<_> = entries.map(|entry| entry.unwrap().path()).collect();
        inputs.sort();
        for input in &inputs {
            let data = fs::read(input).unwrap();
            let replay = std::panic::catch_unwind(|| check(&data));
            assert!(replay.is_ok(), "{target} fails on {}", input.display());
        }
        eprintln!("{target}: {} inputs replayed", inputs.len());
    }
}
