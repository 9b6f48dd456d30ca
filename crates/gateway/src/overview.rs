//! The admin console's live figures, from the Prometheus metrics (the same ones `/metrics`
//! serves): a sampler reads the rendered metrics every [`INTERVAL`] and keeps the last two
//! readings, and the overview reports the difference between them — messages accepted per
//! second, the percentiles of the publish-to-PUBACK and publish-to-delivery histograms, and
//! the drops — the way Prometheus' `rate` and `histogram_quantile` would over that interval.
//! Without metrics (`--metrics-listen off`) there is nothing to read and the figures are `null`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How often the metrics are read.
pub const INTERVAL: Duration = Duration::from_secs(2);

const ACCEPTED: &str = "tidings_messages_accepted_total";
const PUBACK: &str = "tidings_publish_to_puback_seconds_bucket";
const DELIVERY: &str = "tidings_publish_to_delivery_seconds_bucket";
/// The drop counters, with the names the overview gives them.
const DROPS: [(&str, &str); 3] = [
    ("tidings_outbound_overflows_total", "slowConsumersCut"),
    (
        "tidings_chatroom_items_dropped_total",
        "chatroomItemsDropped",
    ),
    ("tidings_gap_markers_total", "gapMarkers"),
];
const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)];

/// The process's metrics in the Prometheus text format, as `/metrics` renders them.
#[derive(Clone)]
pub struct MetricsSource(pub Arc<dyn Fn() -> String + Send + Sync>);

impl fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsSource")
    }
}

/// One reading of the metrics the overview needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reading {
    accepted: f64,
    drops: [f64; 3],
    /// Cumulative bucket counts, `(upper bound, count)`, in the order of their bounds.
    puback: Vec<(f64, f64)>,
    delivery: Vec<(f64, f64)>,
}

/// Reads the samples the overview needs from the text format; lines it does not understand are
/// skipped (the figures are then missing, never wrong).
pub(crate) fn read(text: &str) -> Reading {
    let mut r = Reading::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            ACCEPTED => r.accepted += value,
            PUBACK | DELIVERY => {
                let Some(le) = label(labels, "le").and_then(|le| le.parse::<f64>().ok()) else {
                    continue;
                };
                let buckets = if name == PUBACK {
                    &mut r.puback
                } else {
                    &mut r.delivery
                };
                match buckets.iter_mut().find(|(bound, _)| *bound == le) {
                    Some((_, count)) => *count += value,
                    None => buckets.push((le, value)),
                }
            }
            _ => {
                if let Some(i) = DROPS.iter().position(|(n, _)| *n == name) {
                    r.drops[i] += value;
                }
            }
        }
    }
    for buckets in [&mut r.puback, &mut r.delivery] {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    r
}

/// The value of `key` in a label set `a="x",le="0.5"}`.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The `q` quantile of the samples between two readings of a histogram's cumulative buckets,
/// interpolated linearly within its bucket as Prometheus' `histogram_quantile` does (a quantile
/// in the `+Inf` bucket is the highest finite bound); `None` without samples.
pub(crate) fn quantile(q: f64, before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let count_before = |bound: f64| {
        before
            .iter()
            .find(|(b, _)| *b == bound)
            .map_or(0.0, |(_, c)| *c)
    };
    let deltas: Vec<(f64, f64)> = after
        .iter()
        .map(|&(bound, count)| (bound, (count - count_before(bound)).max(0.0)))
        .collect();
    let total = deltas.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in &deltas {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            let share = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// The last two readings and when they were taken.
#[derive(Default)]
struct Window {
    previous: Option<(Instant, Reading)>,
    latest: Option<(Instant, Reading)>,
}

/// Reads the metrics every [`INTERVAL`] and answers the overview's figures.
pub(crate) struct Sampler {
    source: MetricsSource,
    window: Mutex<Window>,
}

impl Sampler {
    pub(crate) fn new(source: MetricsSource) -> Arc<Sampler> {
        Arc::new(Sampler {
            source,
            window: Mutex::new(Window::default()),
        })
    }

    fn sample(&self) {
        let reading = read(&(self.source.0)());
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        w.previous = w.latest.take();
        w.latest = Some((Instant::now(), reading));
    }

    /// Samples until `stop` is cancelled.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Rendering walks every metric: off the async workers.
            let me = self.clone();
            if tokio::task::spawn_blocking(move || me.sample())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// The overview's figures over the last interval: `null` until two readings were taken.
    pub(crate) fn figures(&self) -> Value {
        let w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let (Some((t0, before)), Some((t1, after))) = (&w.previous, &w.latest) else {
            return figures_off("metrics are on; the first readings are being taken");
        };
        let secs = t1.duration_since(*t0).as_secs_f64().max(1e-3);
        let percentiles = |b: &[(f64, f64)], a: &[(f64, f64)]| -> Value {
            if quantile(0.5, b, a).is_none() {
                return Value::Null;
            }
            QUANTILES
                .iter()
                .map(|(name, q)| {
                    let ms = quantile(*q, b, a).map(|s| (s * 1e6).round() / 1e3);
                    (name.to_string(), json!(ms))
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let drops = |pick: &dyn Fn(usize) -> f64| -> Value {
            DROPS
                .iter()
                .enumerate()
                .map(|(i, (_, name))| (name.to_string(), json!(pick(i))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "metrics": "on",
            "intervalSecs": (secs * 10.0).round() / 10.0,
            "messagesPerSecond": ((after.accepted - before.accepted).max(0.0) / secs * 10.0).round() / 10.0,
            "latencyMs": {
                "publishToPuback": percentiles(&before.puback, &after.puback),
                "publishToDelivery": percentiles(&before.delivery, &after.delivery),
            },
            "drops": {
                "total": drops(&|i| after.drops[i]),
                "lastInterval": drops(&|i| (after.drops[i] - before.drops[i]).max(0.0)),
            },
        })
    }
}

/// The figures when there are none to give, and why.
pub(crate) fn figures_off(why: &str) -> Value {
    json!({
        "metrics": why,
        "intervalSecs": Value::Null,
        "messagesPerSecond": Value::Null,
        "latencyMs": Value::Null,
        "drops": Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE tidings_messages_accepted_total counter
tidings_messages_accepted_total{conversation_type="private"} 10
tidings_messages_accepted_total{conversation_type="group"} 5
# TYPE tidings_publish_to_puback_seconds histogram
tidings_publish_to_puback_seconds_bucket{le="0.001"} 2
tidings_publish_to_puback_seconds_bucket{le="0.01"} 8
tidings_publish_to_puback_seconds_bucket{le="+Inf"} 10
tidings_publish_to_puback_seconds_sum 0.05
tidings_publish_to_puback_seconds_count 10
tidings_gap_markers_total 3
not a sample line
"#;

    #[test]
    fn a_reading_sums_label_sets_and_orders_buckets() {
        let r = read(TEXT);
        assert_eq!(r.accepted, 15.0);
        assert_eq!(r.drops, [0.0, 0.0, 3.0]);
        assert_eq!(r.puback, [(0.001, 2.0), (0.01, 8.0), (f64::INFINITY, 10.0)]);
        assert!(r.delivery.is_empty());
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_of_the_interval_s_samples() {
        let before = [(0.001, 2.0), (0.01, 8.0), (f64::INFINITY, 10.0)];
        // 100 more samples: 50 below 1 ms, 40 in 1–10 ms, 10 above.
        let after = [(0.001, 52.0), (0.01, 98.0), (f64::INFINITY, 110.0)];
        // Median: rank 50 of 100, in the first bucket: 50/50 of 0–1 ms.
        assert_eq!(quantile(0.5, &before, &after), Some(0.001));
        // p70: rank 70, 20 of the 40 in 1–10 ms: halfway.
        let p70 = quantile(0.7, &before, &after).unwrap();
        assert!((p70 - 0.0055).abs() < 1e-12, "{p70}");
        // p99 falls in +Inf: the highest finite bound.
        assert_eq!(quantile(0.99, &before, &after), Some(0.01));
        // No new samples: no quantile.
        assert_eq!(quantile(0.5, &before, &before), None);
        assert_eq!(quantile(0.5, &[], &[]), None);
    }

    #[test]
    fn figures_are_rates_and_percentiles_over_the_last_interval() {
        let source = MetricsSource(Arc::new(String::new));
        let sampler = Sampler::new(source);
        assert_eq!(sampler.figures()["messagesPerSecond"], Value::Null);
        let t0 = Instant::now();
        let mut later = read(TEXT);
        later.accepted += 40.0;
        later.drops[0] += 1.0;
        later.puback = vec![(0.001, 2.0), (0.01, 18.0), (f64::INFINITY, 20.0)];
        {
            let mut w = sampler.window.lock().unwrap();
            w.previous = Some((t0, read(TEXT)));
            w.latest = Some((t0 + Duration::from_secs(2), later));
        }
        let f = sampler.figures();
        assert_eq!(f["metrics"], "on");
        assert_eq!(f["messagesPerSecond"], 20.0);
        assert_eq!(f["latencyMs"]["publishToPuback"]["p50"], 5.5);
        assert_eq!(f["latencyMs"]["publishToDelivery"], Value::Null);
        assert_eq!(f["drops"]["total"]["slowConsumersCut"], 1.0);
        assert_eq!(f["drops"]["total"]["gapMarkers"], 3.0);
        assert_eq!(f["drops"]["lastInterval"]["gapMarkers"], 0.0);
        assert_eq!(f["drops"]["lastInterval"]["slowConsumersCut"], 1.0);
    }
}
