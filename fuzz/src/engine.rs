//! A small mutational fuzzing engine: a corpus, havoc mutations with a dictionary, and an
//! optional coverage feedback that decides which inputs join the corpus. Used by the
//! coverage-guided `herald-fuzz` binary and, without feedback, by the corpus replay in the tests.

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// What the last run reached that no earlier run did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Novelty {
    /// Nothing new.
    None,
    /// A known edge taken a new number of times (kept for exploration, not saved).
    Count,
    /// An edge never taken before (saved to the corpus).
    Edge,
}

/// Tells what the last run covered that no earlier run did.
pub trait Feedback {
    /// Called before each run.
    fn reset(&mut self);
    /// Called after each run.
    fn novelty(&mut self) -> Novelty;
}

/// No feedback: nothing is ever new (plain random mutation of the corpus).
pub struct NoFeedback;

impl Feedback for NoFeedback {
    fn reset(&mut self) {}
    fn novelty(&mut self) -> Novelty {
        Novelty::None
    }
}

/// An input that made the target panic.
#[derive(Debug)]
pub struct Crash {
    pub input: Vec<u8>,
    pub message: String,
}

/// When a run stops.
#[derive(Clone, Copy)]
pub enum Budget {
    Runs(u64),
    Time(Duration),
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Stats {
    pub executions: u64,
    pub corpus: usize,
    pub elapsed: Duration,
}

/// Tokens worth inserting for each target.
pub fn dictionary(target: &str) -> Vec<&'static [u8]> {
    const JSON: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\"",
        b"\\",
        b"null",
        b"true",
        b"false",
        b"0",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"\"\\ud800\"",
        b"\"\\u0000\"",
        b"  ",
    ];
    const MESSAGE: &[&[u8]] = &[
        b"\"event\"",
        b"\"data\"",
        b"\"channel\"",
        b"\"auth\"",
        b"\"channel_data\"",
        b"\"user_data\"",
        b"\"user_id\"",
        b"\"user_info\"",
        b"\"pusher:subscribe\"",
        b"\"pusher:unsubscribe\"",
        b"\"pusher:ping\"",
        b"\"pusher:pong\"",
        b"\"pusher:signin\"",
        b"\"client-x\"",
        b"\"private-a\"",
        b"\"presence-a\"",
        b"\"#server-to-user-1\"",
        b"\"private-encrypted-a\"",
        b"\"cache-a\"",
    ];
    const FRAMES: &[&[u8]] = &[
        b"\x81\x80\0\0\0\0",
        b"\x81\xfe\x01\x00\0\0\0\0",
        b"\x81\xff",
        b"\x01\x80\0\0\0\0",
        b"\x80\x80\0\0\0\0",
        b"\x88\x82\0\0\0\0\x03\xe8",
        b"\x89\x80\0\0\0\0",
        b"\x8a\x80\0\0\0\0",
        b"\x82\x80\0\0\0\0",
        b"\xc1\x80\0\0\0\0",
        b"\x00\x80\0\0\0\0",
    ];
    const REST: &[&[u8]] = &[
        b"auth_key=key",
        b"auth_timestamp=1700000000",
        b"auth_version=1.0",
        b"auth_signature=",
        b"body_md5=d41d8cd98f00b204e9800998ecf8427e",
        b"&",
        b"=",
        b"%",
        b"%ZZ",
        b"%FF",
        b"%2F",
        b"+",
        b"/apps/1/events",
        b"/apps/1/channels/%23a",
        b"POST",
        b"GET",
        b"\n",
        b"AUTH_KEY",
    ];
    const CONFIG: &[&[u8]] = &[
        b"\"app_manager\"",
        b"\"array\"",
        b"\"apps\"",
        b"\"id\"",
        b"\"key\"",
        b"\"secret\"",
        b"\"webhooks\"",
        b"\"url\"",
        b"\"http://x\"",
        b"\"event_types\"",
        b"\"channel_occupied\"",
        b"\"filter\"",
        b"\"channel_type\"",
        b"\"channel_prefix\"",
        b"\"retry\"",
        b"\"batching\"",
        b"\"duration\"",
        b"\"port\"",
        b"\"host\"",
        b"\"max_in_flight\"",
        b"\"queue\"",
        b"\"max_bytes\"",
        b"\"lambda\"",
        b"\"function_name\"",
        b"\"http_api\"",
        b"\"request_limit_in_mb\"",
        b"\"max_connections\"",
        b"\"\\\"6001\\\"\"",
        b"\"NaN\"",
        b"1e308",
        b"-0.0",
        b"\"signature\"",
        b"\"standard-webhooks\"",
        b"\"jwt\"",
        b"\"whsec_\"",
    ];
    let tables: &[&[&'static [u8]]] = match target {
        "client-message" => &[JSON, MESSAGE],
        "ws-frames" => &[FRAMES, MESSAGE],
        "rest-query" => &[REST],
        "config" => &[JSON, CONFIG],
        _ => &[JSON],
    };
    tables.iter().flat_map(|t| t.iter().copied()).collect()
}

/// xorshift64*: fast, and reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The engine for one target.
pub struct Fuzzer {
    target: fn(&[u8]),
    corpus: Vec<Vec<u8>>,
    dictionary: Vec<&'static [u8]>,
    max_len: usize,
    rng: Rng,
}

const INTERESTING: [u8; 12] = [
    0, 1, 0x7f, 0x80, 0xff, b'"', b'{', b'}', b'\\', b'0', b'9', b'\n',
];

impl Fuzzer {
    /// An engine for `target` starting from `corpus` (an empty input when it is empty).
    pub fn new(
        target: fn(&[u8]),
        corpus: Vec<Vec<u8>>,
        dictionary: &[&'static [u8]],
        seed: u64,
    ) -> Fuzzer {
        let corpus = if corpus.is_empty() {
            vec![Vec::new()]
        } else {
            corpus
        };
        Fuzzer {
            target,
            corpus,
            dictionary: dictionary.to_vec(),
            max_len: 2048,
            rng: Rng(seed | 1),
        }
    }

    /// Runs one input, catching a panic.
    pub fn execute(&self, input: &[u8]) -> Result<(), Crash> {
        let target = self.target;
        panic::catch_unwind(AssertUnwindSafe(|| target(input))).map_err(|payload| Crash {
            input: input.to_vec(),
            message: payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned()),
        })
    }

    /// Runs every corpus input once, recording its coverage.
    pub fn replay(&mut self, feedback: &mut impl Feedback) -> Result<u64, Crash> {
        for input in &self.corpus {
            feedback.reset();
            self.execute(input)?;
            feedback.novelty();
        }
        Ok(self.corpus.len() as u64)
    }

    /// Mutates and runs until the budget is spent; inputs with new coverage join the corpus, and
    /// those reaching a new edge are handed to `found`.
    pub fn run(
        &mut self,
        budget: Budget,
        feedback: &mut impl Feedback,
        mut found: impl FnMut(&[u8]),
        mut progress: impl FnMut(&Stats),
    ) -> Result<Stats, Crash> {
        let started = Instant::now();
        let mut stats = Stats::default();
        let mut last_report = Instant::now();
        loop {
            if stats.executions % 1024 == 0 {
                stats.elapsed = started.elapsed();
                stats.corpus = self.corpus.len();
                let done = match budget {
                    Budget::Runs(runs) => stats.executions >= runs,
                    Budget::Time(limit) => stats.elapsed >= limit,
                };
                if done {
                    return Ok(stats);
                }
                if last_report.elapsed() >= Duration::from_secs(5) {
                    progress(&stats);
                    last_report = Instant::now();
                }
            }
            let input = self.mutant();
            feedback.reset();
            self.execute(&input)?;
            stats.executions += 1;
            match feedback.novelty() {
                Novelty::None => {}
                Novelty::Count => self.corpus.push(input),
                Novelty::Edge => {
                    found(&input);
                    self.corpus.push(input);
                }
            }
        }
    }

    fn mutant(&mut self) -> Vec<u8> {
        let mut input = self.corpus[self.rng.below(self.corpus.len())].clone();
        let stack = 1 << self.rng.below(4);
        for _ in 0..stack {
            self.mutate(&mut input);
        }
        input.truncate(self.max_len);
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        let len = input.len();
        let at = self.rng.below(len + 1);
        match self.rng.below(9) {
            0 if len > 0 => {
                let i = self.rng.below(len);
                input[i] ^= 1 << self.rng.below(8);
            }
            1 if len > 0 => {
                let i = self.rng.below(len);
                input[i] = INTERESTING[self.rng.below(INTERESTING.len())];
            }
            2 => {
                let byte = self.rng.next() as u8;
                input.insert(at, byte);
            }
            3 if len > 0 => {
                let end = (at + 1 + self.rng.below(16)).min(len);
                input.drain(at.min(len - 1)..end);
            }
            4 if len > 0 => {
                let from = self.rng.below(len);
                let end = (from + 1 + self.rng.below(32)).min(len);
                let chunk = input[from..end].to_vec();
                input.splice(at..at, chunk);
            }
            5 | 6 if !self.dictionary.is_empty() => {
                let token = self.dictionary[self.rng.below(self.dictionary.len())];
                if self.rng.below(2) == 0 || len == 0 {
                    input.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    input.splice(at.min(len)..end, token.iter().copied());
                }
            }
            7 => {
                let other = &self.corpus[self.rng.below(self.corpus.len())];
                let from = self.rng.below(other.len() + 1);
                let tail = other[from..].to_vec();
                input.truncate(at);
                input.extend(tail);
            }
            _ => {
                let digits = (self.rng.next() % 100_000).to_string();
                input.splice(at..at, digits.bytes());
            }
        }
    }
}

/// The corpus inputs in `dir` (none when it does not exist), in file-name order.
pub fn load_corpus(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// A file name for an input: FNV-1a of its bytes.
pub fn input_name(input: &[u8]) -> String {
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}
