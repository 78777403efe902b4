//! The markdown output: one table of measurements, one of requirements.
//!
//! Times are printed in milliseconds with two decimals, peak RSS in MiB with one decimal, session
//! counts with thousands separators. A case that could not be measured keeps its row, with the
//! reason in place of the figures, so a partial run still reads as a table.

use std::fmt;

use crate::measure::Summary;

/// The figures of one measured case.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Wall-time statistics.
    pub time: Summary,
    /// Peak RSS in KiB (maximum over the helper runs), when measured.
    pub peak_rss_kib: Option<u64>,
}

/// One row of the measurement table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was run, as shown (e.g. `` `session reconcile` (no-op) ``).
    pub case: String,
    /// `(ended, live)` session counts of the fixture, if any.
    pub sessions: Option<(usize, usize)>,
    /// The figures, or why the case could not be measured.
    pub outcome: Result<Figures, String>,
}

/// How a requirement came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Met.
    Pass,
    /// Not met.
    Fail,
    /// Reported for information; there is no target.
    Info,
    /// The case it depends on was not measured.
    NotMeasured,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "**FAIL**",
            Verdict::Info => "info",
            Verdict::NotMeasured => "not measured",
        })
    }
}

/// One row of the requirements table.
#[derive(Debug, Clone)]
pub struct Check {
    /// What is compared.
    pub requirement: String,
    /// The target, as shown (e.g. `≤ 5 ms`; `–` for information).
    pub target: String,
    /// The measured value, as shown, if measured.
    pub measured: Option<String>,
    /// The outcome.
    pub verdict: Verdict,
}

impl Check {
    /// A check of `value` against `limit` (pass when `value <= limit`), shown with `show`.
    pub fn at_most(
        requirement: impl Into<String>,
        target: impl Into<String>,
        value: Option<f64>,
        limit: f64,
        show: impl Fn(f64) -> String,
    ) -> Self {
        let verdict = match value {
            None => Verdict::NotMeasured,
            Some(v) if v <= limit => Verdict::Pass,
            Some(_) => Verdict::Fail,
        };
        Self {
            requirement: requirement.into(),
            target: target.into(),
            measured: value.map(show),
            verdict,
        }
    }

    /// A value reported without a target.
    pub fn info(requirement: impl Into<String>, value: Option<String>) -> Self {
        let verdict = if value.is_some() {
            Verdict::Info
        } else {
            Verdict::NotMeasured
        };
        Self {
            requirement: requirement.into(),
            target: "–".to_owned(),
            measured: value,
            verdict,
        }
    }
}

/// The whole output.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Lines printed above the tables (what was run, how).
    pub header: Vec<String>,
    /// The measurement table.
    pub rows: Vec<Row>,
    /// The requirements table.
    pub checks: Vec<Check>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.header {
            writeln!(f, "{line}")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "| Case | Sessions (ended + live) | Median (ms) | Min (ms) | Max (ms) | Runs | Peak RSS (MiB) |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|")?;
        for row in &self.rows {
            let sessions = row.sessions.map_or_else(
                || "–".to_owned(),
                |(ended, live)| format!("{} + {live}", thousands(ended)),
            );
            match &row.outcome {
                Ok(figures) => writeln!(
                    f,
                    "| {} | {sessions} | {} | {} | {} | {} | {} |",
                    row.case,
                    millis(figures.time.median.as_secs_f64() * 1e3),
                    millis(figures.time.min.as_secs_f64() * 1e3),
                    millis(figures.time.max.as_secs_f64() * 1e3),
                    figures.time.runs,
                    figures
                        .peak_rss_kib
                        .map_or_else(|| "–".to_owned(), |kib| mebibytes(kib_to_mib(kib))),
                )?,
                Err(reason) => writeln!(
                    f,
                    "| {} | {sessions} | not measured: {} | – | – | – | – |",
                    row.case,
                    reason.replace('|', "\\|")
                )?,
            }
        }
        writeln!(f)?;
        writeln!(f, "| Requirement | Target | Measured | Verdict |")?;
        writeln!(f, "|---|---|---:|---|")?;
        for check in &self.checks {
            writeln!(
                f,
                "| {} | {} | {} | {} |",
                check.requirement,
                check.target,
                check.measured.as_deref().unwrap_or("–"),
                check.verdict
            )?;
        }
        Ok(())
    }
}

/// KiB to MiB.
pub fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A millisecond figure as shown (`3.14 ms` without the unit).
pub fn millis(ms: f64) -> String {
    format!("{ms:.2}")
}

/// A MiB figure as shown.
pub fn mebibytes(mib: f64) -> String {
    format!("{mib:.1}")
}

/// A ratio as shown (`1.23x`).
pub fn ratio(value: f64) -> String {
    format!("{value:.2}x")
}

/// `n` with `,` every three digits.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn renders_measured_and_failed_rows() {
        let time = Summary {
            median: Duration::from_micros(2_500),
            min: Duration::from_millis(2),
            max: Duration::from_millis(4),
            runs: 20,
        };
        let report = Report {
            header: vec!["# bench".to_owned()],
            rows: vec![
                Row {
                    case: "a".to_owned(),
                    sessions: Some((10_000, 10)),
                    outcome: Ok(Figures {
                        time,
                        peak_rss_kib: Some(8 * 1024),
                    }),
                },
                Row {
                    case: "b".to_owned(),
                    sessions: None,
                    outcome: Err("x | y".to_owned()),
                },
            ],
            checks: vec![Check::at_most("a", "≤ 5 ms", Some(2.5), 5.0, millis)],
        };
        let text = report.to_string();
        assert!(text.contains("| a | 10,000 + 10 | 2.50 | 2.00 | 4.00 | 20 | 8.0 |"));
        assert!(text.contains("| b | – | not measured: x \\| y | – | – | – | – |"));
        assert!(text.contains("| a | ≤ 5 ms | 2.50 | pass |"));
    }
}
