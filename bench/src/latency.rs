//! What a load phase counts: its latency histogram (HDR, microseconds, three
//! significant digits) and its totals of entries, bytes and appends.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::report::{Figure, Unit, approx};

/// The longest latency told apart from longer ones: anything slower is
/// recorded as this.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Latencies in microseconds, to three significant digits.
#[derive(Debug, Clone)]
pub(super) struct Latency(Histogram<u64>);

impl Latency {
    pub(super) fn new() -> Self {
        Self(
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant bounds within what hdrhistogram supports"),
        )
    }

    pub(super) fn record(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    pub(super) fn merge(&mut self, other: &Self) {
        self.0
            .add(&other.0)
            .expect("histograms made by `new` have the same bounds");
    }

    /// p50, p99, p99.9 and max as figures `<prefix>_p50_us` and so on.
    pub(super) fn figures(&self, prefix: &str, label: &str) -> Vec<Figure> {
        let quantiles = [("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)];
        quantiles
            .into_iter()
            .map(|(name, quantile)| Figure {
                key: format!("{prefix}_{name}_us"),
                label: format!("{label} {name}"),
                unit: Unit::Micros,
                value: approx(self.0.value_at_quantile(quantile)),
            })
            .collect()
    }
}

/// What a load phase's appends (or sled batches) added up to.
#[derive(Debug, Clone)]
pub(super) struct Totals {
    pub(super) entries: u64,
    /// Encoded entry bytes.
    pub(super) bytes: u64,
    pub(super) appends: u64,
    pub(super) latency: Latency,
}

impl Totals {
    pub(super) fn new() -> Self {
        Self {
            entries: 0,
            bytes: 0,
            appends: 0,
            latency: Latency::new(),
        }
    }

    pub(super) fn add(&mut self, other: &Self) {
        self.entries += other.entries;
        self.bytes += other.bytes;
        self.appends += other.appends;
        self.latency.merge(&other.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_come_from_the_histogram() {
        let mut latency = Latency::new();
        for micros in 1..=1_000 {
            latency.record(Duration::from_micros(micros));
        }
        let figures = latency.figures("append", "append latency");
        let p50 = figures[0].value;
        assert!((499.0..=501.0).contains(&p50), "{p50}");
        assert_eq!(figures[3].key, "append_max_us");
        assert!((999.0..=1_001.0).contains(&figures[3].value));
    }
}
