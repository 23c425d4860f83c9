//! What a bench run found and how it is printed: named figures, compared
//! with reference figures measured elsewhere, as text or `--json` (one
//! object per run, then a summary object of medians when there were more).

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Map, Value, json};

pub(super) use super::figures::{approx, per_second};
use super::local::ProcessSample;
use super::reference::Reference;

/// How a figure is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Count,
    PerSecond,
    MegabytesPerSecond,
    /// Memory, in 2^20 bytes.
    Mebibytes,
    /// A duration: shown in µs, ms or s as fits.
    Micros,
    /// CPU time per entry, in µs with decimals.
    CpuMicros,
    Seconds,
    Ratio,
}

/// One number a run measured. `key` is its JSON name and says its unit
/// (`_us`, `_mib`, `_per_second`).
#[derive(Debug, Clone)]
pub(super) struct Figure {
    pub(super) key: String,
    pub(super) label: String,
    pub(super) unit: Unit,
    pub(super) value: f64,
}

impl Figure {
    pub(super) fn new(key: &str, label: &str, unit: Unit, value: f64) -> Self {
        Self {
            key: key.to_owned(),
            label: label.to_owned(),
            unit,
            value,
        }
    }
}

/// Everything one run found.
#[derive(Debug, Clone)]
pub(super) struct RunReport {
    /// `ingest`, `follow`, `catch-up` or `store`.
    pub(super) bench: &'static str,
    /// The workload, as given (and as derived: connections, server).
    pub(super) params: Vec<(&'static str, Value)>,
    pub(super) figures: Vec<Figure>,
    pub(super) references: Vec<Reference>,
}

impl RunReport {
    pub(super) fn new(bench: &'static str, params: Vec<(&'static str, Value)>) -> Self {
        Self {
            bench,
            params,
            figures: Vec::new(),
            references: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, key: &str, label: &str, unit: Unit, value: f64) {
        self.figures.push(Figure::new(key, label, unit, value));
    }

    /// Entries/s and MB/s of encoded entries over `elapsed`: how ingest and
    /// the raw store report their rate, so the two compare line by line.
    pub(super) fn push_throughput(&mut self, entries: u64, bytes: u64, elapsed: Duration) {
        self.push(
            "entries_per_second",
            "entries/s",
            Unit::PerSecond,
            per_second(entries, elapsed),
        );
        self.push(
            "megabytes_per_second",
            "MB/s (encoded entries, 10^6 B)",
            Unit::MegabytesPerSecond,
            per_second(bytes, elapsed) / 1e6,
        );
    }

    pub(super) fn value(&self, key: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|figure| figure.key == key)
            .map(|figure| figure.value)
    }

    fn params_json(&self) -> Value {
        Value::Object(
            self.params
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.clone()))
                .collect(),
        )
    }

    fn params_text(&self) -> String {
        self.params
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => format!("{key}={text}"),
                other => format!("{key}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn references_json(&self, ours: impl Fn(&str) -> Option<f64>) -> Value {
        Value::Array(
            self.references
                .iter()
                .map(|reference| {
                    json!({
                        "figure": reference.key,
                        "what": reference.what,
                        "value": reference.value,
                        "target": reference.target,
                        "ratio": ours(reference.key).map(|value| value / reference.value),
                    })
                })
                .collect(),
        )
    }
}

/// Prints one run: a text block, or one JSON object with the figures as
/// top-level keys.
pub(super) fn print_run(report: &RunReport, run: u32, runs: u32, json: bool) -> anyhow::Result<()> {
    if json {
        let mut object = Map::new();
        object.insert("bench".to_owned(), json!(report.bench));
        object.insert("run".to_owned(), json!(run));
        object.insert("params".to_owned(), report.params_json());
        for figure in &report.figures {
            object.insert(figure.key.clone(), number(figure.value));
        }
        object.insert(
            "references".to_owned(),
            report.references_json(|key| report.value(key)),
        );
        return print_line(&Value::Object(object).to_string());
    }
    print_line(&format!(
        "{} run {run} of {runs}: {}",
        report.bench,
        report.params_text()
    ))?;
    for figure in &report.figures {
        print_line(&format!(
            "  {:<34} {}",
            figure.label,
            show(figure.unit, figure.value)
        ))?;
    }
    print_references(report, |key| report.value(key))
}

/// After several runs: each figure's median with its range.
pub(super) fn print_summary(reports: &[RunReport], json: bool) -> anyhow::Result<()> {
    let Some(first) = reports.first() else {
        return Ok(());
    };
    let spread = |key: &str| {
        let mut values: Vec<f64> = reports.iter().filter_map(|run| run.value(key)).collect();
        values.sort_by(f64::total_cmp);
        Spread::of(&values)
    };
    if json {
        let mut medians = Map::new();
        let mut minimums = Map::new();
        let mut maximums = Map::new();
        for figure in &first.figures {
            if let Some(spread) = spread(&figure.key) {
                medians.insert(figure.key.clone(), number(spread.median));
                minimums.insert(figure.key.clone(), number(spread.min));
                maximums.insert(figure.key.clone(), number(spread.max));
            }
        }
        let median_of = |key: &str| spread(key).map(|spread| spread.median);
        let object = json!({
            "bench": first.bench,
            "summary": true,
            "runs": reports.len(),
            "params": first.params_json(),
            "median": medians,
            "min": minimums,
            "max": maximums,
            "references": first.references_json(median_of),
        });
        return print_line(&object.to_string());
    }
    print_line(&format!(
        "{} summary of {} runs: median [min..max]",
        first.bench,
        reports.len()
    ))?;
    for figure in &first.figures {
        if let Some(spread) = spread(&figure.key) {
            print_line(&format!(
                "  {:<34} {} [{}..{}]",
                figure.label,
                show(figure.unit, spread.median),
                show(figure.unit, spread.min),
                show(figure.unit, spread.max)
            ))?;
        }
    }
    print_references(first, |key| spread(key).map(|spread| spread.median))
}

/// `vs <reference> (<its figure>, measured elsewhere): <ours ÷ theirs>x`.
fn print_references(report: &RunReport, ours: impl Fn(&str) -> Option<f64>) -> anyhow::Result<()> {
    for reference in &report.references {
        let unit = report
            .figures
            .iter()
            .find(|figure| figure.key == reference.key)
            .map(|figure| figure.unit);
        if let (Some(value), Some(unit)) = (ours(reference.key), unit) {
            let source = if reference.target {
                "the target"
            } else {
                "measured elsewhere"
            };
            print_line(&format!(
                "  vs {} ({}, {source}): {:.2}x",
                reference.what,
                show(unit, reference.value),
                value / reference.value
            ))?;
        }
    }
    Ok(())
}

/// Writes one line to stdout. A closed pipe (`| head`) ends the bench
/// quietly, as for other Unix tools.
fn print_line(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}") {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        written => written.context("cannot write to stdout"),
    }
}

/// A figure in JSON: whole numbers without a fraction, so counts read as
/// integers.
fn number(value: f64) -> Value {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.fract() == 0.0 && value.abs() <= MAX_EXACT {
        #[allow(clippy::cast_possible_truncation)] // whole and within 2^53
        return json!(value as i64);
    }
    json!(value)
}

#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    /// Of sorted values; `None` when there are none.
    fn of(sorted: &[f64]) -> Option<Self> {
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Self { median, min, max })
    }
}

/// A process's CPU time and memory over the measured phase, as figures.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResourceUse {
    pub(super) before: Option<ProcessSample>,
    pub(super) after: Option<ProcessSample>,
}

/// The server's CPU per entry and share of the cores, its memory (peak,
/// at the end, and idle right after start-up), and the bench's own CPU
/// per entry: on one machine, the load generator competes for the cores.
pub(super) fn push_cpu_and_memory(
    report: &mut RunReport,
    entries: u64,
    elapsed: Duration,
    server: ResourceUse,
    idle: Option<ProcessSample>,
    client: ResourceUse,
) {
    const MIB: f64 = 1_048_576.0;
    let per_entry = |before: ProcessSample, after: ProcessSample| {
        (after.cpu_seconds - before.cpu_seconds) * 1e6 / approx(entries.max(1))
    };
    if let (Some(before), Some(after)) = (server.before, server.after) {
        report.push(
            "server_cpu_us_per_entry",
            "server CPU per entry",
            Unit::CpuMicros,
            per_entry(before, after),
        );
        let seconds = elapsed.as_secs_f64();
        if seconds > 0.0 {
            report.push(
                "server_cpu_cores",
                "server CPU (cores busy)",
                Unit::Ratio,
                (after.cpu_seconds - before.cpu_seconds) / seconds,
            );
        }
        report.push(
            "server_peak_rss_mib",
            "server peak RSS (VmHWM)",
            Unit::Mebibytes,
            approx(after.peak_rss_bytes) / MIB,
        );
        report.push(
            "server_rss_mib",
            "server RSS at the end",
            Unit::Mebibytes,
            approx(after.rss_bytes) / MIB,
        );
    }
    if let Some(idle) = idle {
        report.push(
            "server_idle_rss_mib",
            "server RSS idle, after start-up",
            Unit::Mebibytes,
            approx(idle.rss_bytes) / MIB,
        );
    }
    if let (Some(before), Some(after)) = (client.before, client.after) {
        report.push(
            "client_cpu_us_per_entry",
            "bench client CPU per entry",
            Unit::CpuMicros,
            per_entry(before, after),
        );
    }
}

/// The server's CPU over the measured phase divided by other counts than
/// entries (`(key, label, count)`: appends, deliveries), beside what
/// `push_cpu_and_memory` reports per entry.
pub(super) fn push_cpu_per<const N: usize>(
    report: &mut RunReport,
    server: ResourceUse,
    per: [(&str, &str, u64); N],
) {
    let (Some(before), Some(after)) = (server.before, server.after) else {
        return;
    };
    let micros = (after.cpu_seconds - before.cpu_seconds) * 1e6;
    for (key, label, count) in per {
        report.push(key, label, Unit::CpuMicros, micros / approx(count.max(1)));
    }
}

/// A figure for people: thousands grouped, durations in a readable unit.
pub(super) fn show(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Count => grouped(value),
        Unit::PerSecond => format!("{}/s", grouped(value)),
        Unit::MegabytesPerSecond => format!("{value:.1} MB/s"),
        Unit::Mebibytes => format!("{value:.1} MiB"),
        Unit::Micros if value >= 1_000_000.0 => format!("{:.2} s", value / 1_000_000.0),
        Unit::Micros if value >= 1_000.0 => format!("{:.2} ms", value / 1_000.0),
        Unit::Micros => format!("{value:.0} µs"),
        Unit::CpuMicros => format!("{value:.2} µs"),
        Unit::Seconds => format!("{value:.2} s"),
        Unit::Ratio => format!("{value:.2}x"),
    }
}

/// `1234567.8` as `1,234,568`.
fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < -0.5 {
        out.push('-');
    }
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_like_people_write_them() {
        assert_eq!(show(Unit::PerSecond, 171_234.4), "171,234/s");
        assert_eq!(show(Unit::Count, 999.0), "999");
        assert_eq!(show(Unit::Micros, 850.0), "850 µs");
        assert_eq!(show(Unit::Micros, 12_345.0), "12.35 ms");
        assert_eq!(show(Unit::Micros, 2_500_000.0), "2.50 s");
    }

    #[test]
    fn medians_of_odd_and_even_runs() {
        let odd = Spread::of(&[1.0, 2.0, 9.0]).expect("values");
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 9.0));
        let even = Spread::of(&[1.0, 2.0, 4.0, 9.0]).expect("values");
        assert_eq!(even.median, 3.0);
        assert!(Spread::of(&[]).is_none());
    }
}
