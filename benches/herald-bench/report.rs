//! Results: one row per figure, printed as a table and as JSON.

use serde_json::{json, Value};

/// The figures of one scenario.
pub struct Report {
    pub scenario: &'static str,
    pub rows: Vec<(String, f64, &'static str)>,
    /// Why the run failed although it has figures (a lost delivery): printed, then exit 1.
    pub failure: Option<String>,
    /// Readings taken during the run (the soak's samples), kept in the JSON as `samples`.
    pub samples: Vec<Value>,
}

impl Report {
    pub fn new(scenario: &'static str) -> Report {
        Report {
            scenario,
            rows: Vec::new(),
            failure: None,
            samples: Vec::new(),
        }
    }

    pub fn add(&mut self, name: &str, value: f64, unit: &'static str) {
        self.rows.push((name.to_owned(), value, unit));
    }

    /// The value of the row `name`, 0 when there is none.
    pub fn value(&self, name: &str) -> f64 {
        self.rows.iter().find(|r| r.0 == name).map_or(0.0, |r| r.1)
    }

    /// Copies the rows `names` of `from`, each name behind `prefix`.
    pub fn add_from(&mut self, prefix: &str, from: &Report, names: &[&str]) {
        for row in from.rows.iter().filter(|r| names.contains(&r.0.as_str())) {
            self.rows.push((format!("{prefix}{}", row.0), row.1, row.2));
        }
    }

    pub fn print(&self) {
        println!("\n{}", self.scenario);
        // At least 38 wide, as always; wider when a scenario's names are longer.
        let width = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(0)
            .max(38);
        for (name, value, unit) in &self.rows {
            println!("  {name:<width$} {value:>14.2} {unit}");
        }
    }

    pub fn json(&self) -> Value {
        let figures: serde_json::Map<String, Value> = self
            .rows
            .iter()
            .map(|(n, v, _)| (n.clone(), json!(v)))
            .collect();
        let mut out = json!({"scenario": self.scenario, "figures": figures});
        if !self.samples.is_empty() {
            out["samples"] = Value::Array(self.samples.clone());
        }
        out
    }
}

/// The p-th percentile of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
