//! Percentiles and summaries from hand-made samples (no clock involved).

use std::time::Duration;

use super::{Samples, percentile};

fn micros(values: &[u64]) -> Vec<Duration> {
    values.iter().copied().map(Duration::from_micros).collect()
}

#[test]
fn nearest_rank_percentiles() {
    let sorted = micros(&(1..=100).collect::<Vec<_>>());
    assert_eq!(percentile(&sorted, 0.50), Duration::from_micros(50));
    assert_eq!(percentile(&sorted, 0.99), Duration::from_micros(99));
    assert_eq!(percentile(&sorted, 1.0), Duration::from_micros(100));
    assert_eq!(percentile(&sorted, 0.0), Duration::from_micros(1));
}

#[test]
fn percentile_of_few_or_no_samples() {
    assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    let one = micros(&[7]);
    assert_eq!(percentile(&one, 0.99), Duration::from_micros(7));
    let two = micros(&[1, 9]);
    assert_eq!(percentile(&two, 0.50), Duration::from_micros(1));
    assert_eq!(percentile(&two, 0.99), Duration::from_micros(9));
}

#[test]
fn summary_sorts_and_merges_batches() {
    let mut samples = Samples {
        durations: micros(&[30, 10, 20]),
        wall: Duration::from_millis(1),
    };
    samples.extend(Samples {
        durations: micros(&[40]),
        wall: Duration::from_millis(1),
    });
    let summary = samples.summary();
    assert_eq!(summary.calls, 4);
    assert_eq!(summary.p50, Duration::from_micros(20));
    assert_eq!(summary.p99, Duration::from_micros(40));
    assert!((summary.calls_per_sec - 2000.0).abs() < 1e-6);
}
