//! Replays every fuzz seed (`fuzz/seeds/TARGET/`) and every input that ever crashed a fuzz
//! target or the server (`tests/fuzz-regressions/TARGET/`, named after what it broke) through
//! the same entry points the fuzz targets call. Fuzzing itself needs nightly: `make fuzz`.

mod support;

use earshot::fuzzing::TARGETS;

fn inputs(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn every_seed_and_every_input_that_once_crashed_runs_without_a_panic() {
    let root = support::repo_root();
    for (target, run) in TARGETS {
        let seeds = inputs(&root.join("fuzz/seeds").join(target));
        assert!(!seeds.is_empty(), "fuzz/seeds/{target} has no seed");
        let regressions = inputs(&root.join("tests/fuzz-regressions").join(target));
        for (name, bytes) in seeds.iter().chain(&regressions) {
            let outcome = std::panic::catch_unwind(|| run(bytes));
            assert!(outcome.is_ok(), "{target}: {name} panics");
        }
    }
}

#[test]
fn every_fuzz_target_has_an_entry_point() {
    let root = support::repo_root();
    for (target, _) in TARGETS {
        let source = root.join("fuzz/fuzz_targets").join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&source).expect("a fuzz target per entry point");
        assert!(text.contains(&format!("earshot::fuzzing::{target}(")));
    }
}
