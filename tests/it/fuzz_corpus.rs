//! The fuzz targets in CI: every input of the kept corpus (`fuzz/corpus/`) replayed, then a
//! short bounded run of mutations per target. The long coverage-guided runs are `fuzz/run.sh`.

use std::path::Path;
use std::time::Duration;

#[allow(dead_code)]
#[path = "../../fuzz/src/engine.rs"]
mod engine;

use engine::{Budget, Fuzzer, NoFeedback};

fn fuzz(name: &str) {
    let (_, target) = herald::fuzz_targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a fuzz target");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let corpus = engine::load_corpus(&dir);
    assert!(!corpus.is_empty(), "no corpus in {}", dir.display());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut fuzzer = Fuzzer::new(*target, corpus, &engine::dictionary(name), seed);
    let report = |crash: engine::Crash| -> ! {
        panic!(
            "{name} panicked on {:?} (seed {seed}): {}",
            String::from_utf8_lossy(&crash.input),
            crash.message
        )
    };
    if let Err(crash) = fuzzer.replay(&mut NoFeedback) {
        report(crash);
    }
    let stats = fuzzer
        .run(
            Budget::Time(Duration::from_secs(3)),
            &mut NoFeedback,
            |_| {},
            |_| {},
        )
        .unwrap_or_else(|crash| report(crash));
    assert!(stats.executions > 0);
}

#[test]
fn client_message_parser_survives_the_corpus_and_mutations() {
    fuzz("client-message");
}

#[test]
fn websocket_frames_survive_the_corpus_and_mutations() {
    fuzz("ws-frames");
}

#[test]
fn rest_query_checks_survive_the_corpus_and_mutations() {
    fuzz("rest-query");
}

#[test]
fn config_loader_survives_the_corpus_and_mutations() {
    fuzz("config");
}
