//! Figures of the benchmarks and fault tests in one shape, for `scripts/bench-report`: each run
//! writes its report as text (`target/bench/<name>.txt`) and its figures as rows
//! (`target/bench/figures/<name>.tsv`: figure, value, unit, baseline, baseline value, ratio),
//! the baseline measured in the same run.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Where the workspace's benchmark output goes.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench")
}

#[derive(Debug, Clone)]
struct Row {
    figure: String,
    value: f64,
    unit: String,
    baseline: Option<(String, f64)>,
}

/// The figures of one benchmark or fault test.
#[derive(Debug, Clone)]
pub struct Figures {
    name: String,
    rows: Vec<Row>,
}

impl Figures {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            rows: Vec::new(),
        }
    }

    /// A figure on its own (a count, a time with no baseline).
    pub fn add(&mut self, figure: &str, value: f64, unit: &str) -> &mut Self {
        self.rows.push(Row {
            figure: figure.to_string(),
            value,
            unit: unit.to_string(),
            baseline: None,
        });
        self
    }

    /// A figure next to its baseline from the same run (same unit); the ratio is value / baseline.
    pub fn against(
        &mut self,
        figure: &str,
        value: f64,
        unit: &str,
        baseline: &str,
        baseline_value: f64,
    ) -> &mut Self {
        self.rows.push(Row {
            figure: figure.to_string(),
            value,
            unit: unit.to_string(),
            baseline: Some((baseline.to_string(), baseline_value)),
        });
        self
    }

    /// Writes `report` (the human text) and the rows. A benchmark never fails on its output.
    pub fn write(&self, report: &str) {
        let out = dir();
        let _ = std::fs::create_dir_all(out.join("figures"));
        let _ = std::fs::write(out.join(format!("{}.txt", self.name)), report);
        let mut tsv = String::from("figure\tvalue\tunit\tbaseline\tbaseline value\tratio\n");
        for r in &self.rows {
            let clean = |s: &str| s.replace(['\t', '\n'], " ");
            let (name, value, ratio) = match &r.baseline {
                Some((b, v)) => (
                    clean(b),
                    format!("{v}"),
                    format!("{:.3}", r.value / v.max(f64::MIN_POSITIVE)),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            let _ = writeln!(
                tsv,
                "{}\t{}\t{}\t{name}\t{value}\t{ratio}",
                clean(&r.figure),
                r.value,
                clean(&r.unit)
            );
        }
        let _ = std::fs::write(out.join("figures").join(format!("{}.tsv", self.name)), tsv);
    }
}
