//! Counts as figures: the two conversions every report and probe shares.

use std::time::Duration;

/// A count as a figure. Counts stay far below 2^53, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
pub(super) fn approx(count: u64) -> f64 {
    count as f64
}

/// `count` per second of `elapsed` (zero for an empty interval).
pub(super) fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        approx(count) / seconds
    } else {
        0.0
    }
}
