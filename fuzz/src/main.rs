//! herald-fuzz: a coverage-guided fuzzer for Herald's parsers on the stable toolchain.
//!
//! Built with LLVM's SanitizerCoverage (`-C passes=sancov-module`, trace-pc-guard); the
//! callbacks below record edge hits in a 64 KiB map, AFL-style, and the engine keeps every input
//! that reaches a new edge (or a new hit-count bucket of one). Run through `fuzz/run.sh`.

#[allow(dead_code)] // NoFeedback is for the corpus replay in the tests.
mod engine;

use std::cell::UnsafeCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use engine::{Budget, Feedback, Fuzzer, Novelty};

const MAP_SIZE: usize = 1 << 16;

#[repr(C, align(64))]
struct Map(UnsafeCell<[u8; MAP_SIZE]>);

// Written only by the fuzzing thread (the targets spawn none).
unsafe impl Sync for Map {}

static HITS: Map = Map(UnsafeCell::new([0; MAP_SIZE]));
static GUARDS: AtomicU32 = AtomicU32::new(0);

/// Numbers every edge guard of a module (called by the instrumentation at start-up).
///
/// # Safety
/// Called by LLVM's instrumentation with a valid guard range.
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_trace_pc_guard_init(start: *mut u32, stop: *mut u32) {
    if start == stop || *start != 0 {
        return;
    }
    let mut guard = start;
    while guard < stop {
        *guard = GUARDS.fetch_add(1, Ordering::Relaxed) + 1;
        guard = guard.add(1);
    }
}

/// Counts one pass over an edge.
///
/// # Safety
/// Called by LLVM's instrumentation with a guard numbered by the init callback.
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_trace_pc_guard(guard: *mut u32) {
    let slot = (*guard as usize) & (MAP_SIZE - 1);
    let hits = HITS.0.get() as *mut u8;
    *hits.add(slot) = (*hits.add(slot)).wrapping_add(1);
}

/// Coarse hit-count buckets: 1, 2-3, 4-15, 16+.
fn bucket(count: u8) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2..=3 => 2,
        4..=15 => 4,
        _ => 8,
    }
}

/// Edge coverage from the map: new when an edge or a bucket of one was never seen before.
struct Edges {
    seen: Box<[u8; MAP_SIZE]>,
    edges: usize,
}

impl Feedback for Edges {
    fn reset(&mut self) {
        // SAFETY: only this thread touches the map.
        unsafe { (*HITS.0.get()).fill(0) };
    }

    fn novelty(&mut self) -> Novelty {
        // SAFETY: only this thread touches the map.
        let hits = unsafe { &*HITS.0.get() };
        let mut novelty = Novelty::None;
        let (_, words, _) = unsafe { hits.align_to::<u64>() };
        for (w, &word) in words.iter().enumerate() {
            if word == 0 {
                continue;
            }
            let range = w * 8..w * 8 + 8;
            for (hit, seen) in hits[range.clone()].iter().zip(&mut self.seen[range]) {
                let b = bucket(*hit);
                if b & !*seen != 0 {
                    if *seen == 0 {
                        self.edges += 1;
                        novelty = Novelty::Edge;
                    } else if novelty == Novelty::None {
                        novelty = Novelty::Count;
                    }
                    *seen |= b;
                }
            }
        }
        novelty
    }
}

struct Args {
    target: String,
    budget: Budget,
    corpus: PathBuf,
    crashes: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let target = argv
        .next()
        .ok_or("usage: herald-fuzz TARGET [--runs N | --seconds S] [--corpus DIR]")?;
    let mut budget = Budget::Runs(1_000_000);
    let mut corpus = PathBuf::from("fuzz/corpus").join(&target);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => budget = Budget::Runs(value.parse().map_err(|e| format!("--runs: {e}"))?),
            "--seconds" => {
                let secs = value.parse().map_err(|e| format!("--seconds: {e}"))?;
                budget = Budget::Time(Duration::from_secs(secs));
            }
            "--corpus" => corpus = PathBuf::from(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        target,
        budget,
        corpus,
        crashes: PathBuf::from("fuzz/crashes"),
    })
}

fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!(
                "{error}\ntargets: {:?}",
                herald::fuzz_targets::TARGETS.map(|(name, _)| name)
            );
            std::process::exit(2);
        }
    };
    let Some((_, target)) = herald::fuzz_targets::TARGETS
        .iter()
        .find(|(name, _)| *name == args.target)
    else {
        eprintln!("unknown target {}", args.target);
        std::process::exit(2);
    };
    // Panics are caught and reported as crashes; the default hook would print each one.
    std::panic::set_hook(Box::new(|_| {}));
    let corpus = engine::load_corpus(&args.corpus);
    let seeds = corpus.len();
    let mut fuzzer = Fuzzer::new(*target, corpus, &engine::dictionary(&args.target), 0x5eed);
    let mut edges = Edges {
        seen: Box::new([0; MAP_SIZE]),
        edges: 0,
    };
    let guards = GUARDS.load(Ordering::Relaxed);
    if guards == 0 {
        eprintln!(
            "warning: no coverage instrumentation (build with fuzz/run.sh); mutating blindly"
        );
    }
    let outcome = fuzzer.replay(&mut edges).and_then(|_| {
        eprintln!(
            "{}: {seeds} corpus inputs replayed, {} edges of {guards} guards",
            args.target, edges.edges
        );
        std::fs::create_dir_all(&args.corpus).expect("corpus directory");
        let corpus_dir = args.corpus.clone();
        fuzzer.run(
            args.budget,
            &mut edges,
            |input| {
                let _ = std::fs::write(corpus_dir.join(engine::input_name(input)), input);
            },
            |stats| {
                eprintln!(
                    "  {} executions, {:.0}/s, corpus {}",
                    stats.executions,
                    stats.executions as f64 / stats.elapsed.as_secs_f64().max(1e-9),
                    stats.corpus
                )
            },
        )
    });
    match outcome {
        Ok(stats) => println!(
            "{}: {} executions in {:.1} s ({:.0}/s), no crash; corpus {} (+{}), {} edges",
            args.target,
            stats.executions,
            stats.elapsed.as_secs_f64(),
            stats.executions as f64 / stats.elapsed.as_secs_f64().max(1e-9),
            stats.corpus,
            stats.corpus.saturating_sub(seeds.max(1)),
            edges.edges
        ),
        Err(crash) => {
            std::fs::create_dir_all(&args.crashes).expect("crashes directory");
            let path = args.crashes.join(format!(
                "{}-{}",
                args.target,
                engine::input_name(&crash.input)
            ));
            let _ = std::fs::write(&path, &crash.input);
            eprintln!(
                "CRASH in {}: {}\ninput saved to {}",
                args.target,
                crash.message,
                path.display()
            );
            std::process::exit(1);
        }
    }
}
