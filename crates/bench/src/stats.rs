//! Latency samples and their percentiles.

use std::time::Duration;

/// Every sample of one run, in nanoseconds. Runs are short enough to keep them all, which makes
/// percentiles exact rather than bucketed.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<u64>,
    sorted: bool,
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.samples.push(d.as_nanos().min(u64::MAX as u128) as u64);
        self.sorted = false;
    }

    pub fn extend(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The nearest-rank percentile `p` (0-100): the smallest sample with at least p% of the
    /// samples at or below it. `None` without samples.
    pub fn percentile(&mut self, p: f64) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        if !self.sorted {
            self.samples.sort_unstable();
            self.sorted = true;
        }
        let n = self.samples.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        Some(Duration::from_nanos(self.samples[index]))
    }

    /// p50, p90, p99 and p99.9 in milliseconds (0 without samples).
    pub fn summary_ms(&mut self) -> [f64; 4] {
        [50.0, 90.0, 99.0, 99.9].map(|p| {
            self.percentile(p)
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        assert_eq!(l.percentile(50.0), None);
        for ms in (1..=100).rev() {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.percentile(50.0), Some(Duration::from_millis(50)));
        assert_eq!(l.percentile(90.0), Some(Duration::from_millis(90)));
        assert_eq!(l.percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(l.percentile(99.9), Some(Duration::from_millis(100)));
        assert_eq!(l.percentile(100.0), Some(Duration::from_millis(100)));
        assert_eq!(l.percentile(0.0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let mut l = Latencies::default();
        l.record(Duration::from_micros(7));
        assert_eq!(l.summary_ms(), [0.007; 4]);
    }

    #[test]
    fn extending_merges_and_resorts() {
        let mut a = Latencies::default();
        a.record(Duration::from_millis(10));
        let _ = a.percentile(50.0);
        let mut b = Latencies::default();
        b.record(Duration::from_millis(1));
        b.record(Duration::from_millis(2));
        a.extend(b);
        assert_eq!(a.percentile(50.0), Some(Duration::from_millis(2)));
        assert_eq!(a.len(), 3);
    }
}
