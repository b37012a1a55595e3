//! Printing a run's result: human-readable lines, then one single-line JSON summary.

use serde::Serialize;

/// Prints `lines` (unless `json_only`) and then `summary` as one JSON line on stdout.
pub(crate) fn emit(json_only: bool, lines: &[String], summary: &impl Serialize) {
    if !json_only {
        for line in lines {
            println!("{line}");
        }
    }
    match serde_json::to_string(summary) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("error: could not encode the JSON summary: {e}"),
    }
}

/// Progress for the operator, on stderr so stdout stays the report.
pub(crate) fn progress(json_only: bool, line: &str) {
    if !json_only {
        eprintln!("[loadtest] {line}");
    }
}

/// A short id that keeps one run's channels apart from every other run's.
pub(crate) fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:08x}",
        (nanos ^ (u64::from(std::process::id()) << 32)) as u32
    )
}

/// `a / b` for per-unit figures, `None` when there is nothing to divide by.
pub(crate) fn per(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// `12.34` or `n/a`.
pub(crate) fn show(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2}"))
}
