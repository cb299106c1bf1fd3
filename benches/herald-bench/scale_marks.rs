//! The arrivals of marked broadcasts in one client process: one time per socket and marker,
//! reported to the parent as a JSON line once every ready socket has it (or when asked).

use std::collections::HashMap;

use serde_json::json;

/// Arrivals of one marker.
struct Mark {
    /// `CLOCK_MONOTONIC` nanoseconds per socket slot; 0: not yet.
    arrivals: Vec<u64>,
    got: u64,
    duplicates: u64,
    reported: bool,
}

/// Every marker seen so far.
#[derive(Default)]
pub struct Marks {
    by_marker: HashMap<u32, Mark>,
}

impl Marks {
    /// Socket `index` (of `slots`) got `marker` at `now`; prints the report once `expected`
    /// sockets have it.
    pub fn arrived(&mut self, marker: u32, index: usize, slots: usize, now: u64, expected: u64) {
        let mark = self.by_marker.entry(marker).or_insert_with(|| Mark {
            arrivals: vec![0; slots],
            got: 0,
            duplicates: 0,
            reported: false,
        });
        match mark.arrivals[index] {
            0 => {
                mark.arrivals[index] = now;
                mark.got += 1;
            }
            _ => mark.duplicates += 1,
        }
        if !mark.reported && mark.got >= expected {
            self.print(marker, expected);
        }
    }

    /// Prints what arrived of `marker` (the parent asks when its wait ran out).
    pub fn print(&mut self, marker: u32, expected: u64) {
        let Some(mark) = self.by_marker.get_mut(&marker) else {
            let line = json!({"mark": {"marker": marker, "got": 0, "expected": expected,
                "duplicates": 0, "first_ns": 0, "after_first_us": []}});
            return println!("{line}");
        };
        mark.reported = true;
        let mut times: Vec<u64> = mark.arrivals.iter().copied().filter(|t| *t > 0).collect();
        times.sort_unstable();
        let first = times.first().copied().unwrap_or(0);
        // Microseconds after the first: every arrival, so the parent's percentiles are exact.
        let after: Vec<u64> = times.iter().map(|t| (t - first) / 1000).collect();
        let line = json!({"mark": {
            "marker": marker, "got": mark.got, "expected": expected,
            "duplicates": mark.duplicates, "first_ns": first, "after_first_us": after,
        }});
        println!("{line}");
    }
}
