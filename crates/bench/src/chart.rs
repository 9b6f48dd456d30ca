//! Renders bench records as an SVG chart: end-to-end latency (p50, p99; log scale) against
//! delivered load, one line per series (`rate` runs by offered rate; `pairs` runs as points at
//! their closed-loop throughput).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// One plotted point: load (msg/s) and latency (ms).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    x: f64,
    y: f64,
}

struct Series {
    name: String,
    color: &'static str,
    points: Vec<Point>,
    /// Joined by a line (a sweep) or drawn as separate markers.
    line: bool,
}

pub fn render(inputs: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    let mut records = Vec::new();
    for input in inputs {
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading {}", input.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            records.push(serde_json::from_str::<Value>(line)?);
        }
    }
    let svg = svg(&series(&records));
    std::fs::write(out, svg).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

fn series(records: &[Value]) -> Vec<Series> {
    let fig = |r: &Value, k: &str| r["figures"][k].as_f64();
    let mut rate_p50 = Vec::new();
    let mut rate_p99 = Vec::new();
    let mut pairs_p99 = Vec::new();
    let mut relay_p99 = Vec::new();
    let mut relay_rate_p99 = Vec::new();
    for r in records {
        let (Some(x), Some(p50), Some(p99)) = (
            fig(r, "deliveredPerSec"),
            fig(r, "e2eP50Ms"),
            fig(r, "e2eP99Ms"),
        ) else {
            continue;
        };
        match (r["scenario"].as_str(), r["target"].as_str()) {
            (Some("rate"), Some("tidings")) => {
                rate_p50.push(Point { x, y: p50 });
                rate_p99.push(Point { x, y: p99 });
            }
            (Some("pairs"), Some("tidings")) => pairs_p99.push(Point { x, y: p99 }),
            (Some("pairs"), Some("relay")) => relay_p99.push(Point { x, y: p99 }),
            (Some("rate"), Some("relay")) => relay_rate_p99.push(Point { x, y: p99 }),
            _ => {}
        }
    }
    for s in [&mut rate_p50, &mut rate_p99, &mut relay_rate_p99] {
        s.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    vec![
        Series {
            name: "rate: p50".into(),
            color: "#2b8cbe",
            points: rate_p50,
            line: true,
        },
        Series {
            name: "rate: p99".into(),
            color: "#e34a33",
            points: rate_p99,
            line: true,
        },
        Series {
            name: "pairs (max load): p99".into(),
            color: "#31a354",
            points: pairs_p99,
            line: false,
        },
        Series {
            name: "relay, max load: p99".into(),
            color: "#756bb1",
            points: relay_p99,
            line: false,
        },
        Series {
            name: "relay, rate: p99".into(),
            color: "#969696",
            points: relay_rate_p99,
            line: true,
        },
    ]
}

fn svg(series: &[Series]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 440.0;
    const L: f64 = 70.0;
    const R: f64 = 200.0;
    const T: f64 = 40.0;
    const B: f64 = 60.0;
    let all: Vec<Point> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let x_max = all.iter().map(|p| p.x).fold(1.0, f64::max) * 1.1;
    let y_min = all
        .iter()
        .map(|p| p.y)
        .fold(f64::INFINITY, f64::min)
        .max(0.01);
    let y_max = all
        .iter()
        .map(|p| p.y)
        .fold(0.0, f64::max)
        .max(y_min * 10.0);
    let (lo, hi) = (y_min.log10().floor(), y_max.log10().ceil());
    let px = |x: f64| L + x / x_max * (W - L - R);
    let py = |y: f64| H - B - (y.max(1e-3).log10() - lo) / (hi - lo).max(1.0) * (H - T - B);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{L}" y="22" font-size="15">End-to-end latency against delivered load</text>
<line x1="{L}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>
<line x1="{L}" y1="{T}" x2="{L}" y2="{y0}" stroke="black"/>
<text x="{xm}" y="{xl}" text-anchor="middle">delivered messages per second</text>
<text x="18" y="{ym}" transform="rotate(-90 18 {ym})" text-anchor="middle">latency (ms, log scale)</text>
"#,
        y0 = H - B,
        x1 = W - R,
        xm = (L + W - R) / 2.0,
        xl = H - 18.0,
        ym = (T + H - B) / 2.0,
    );
    for e in (lo as i32)..=(hi as i32) {
        let v = 10f64.powi(e);
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{v}</text>"##,
            x2 = W - R,
            tx = L - 6.0,
            ty = y + 4.0,
        );
    }
    let step = nice_step(x_max / 5.0);
    let mut v = 0.0;
    while v <= x_max {
        let x = px(v);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{ty}" text-anchor="middle">{v:.0}</text>"#,
            ty = H - B + 16.0,
        );
        v += step;
    }
    for (k, series) in series.iter().enumerate() {
        if series.points.is_empty() {
            continue;
        }
        if series.line {
            let pts: Vec<String> = series
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", px(p.x), py(p.y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
                series.color,
                pts.join(" ")
            );
        }
        for p in &series.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"/>"#,
                px(p.x),
                py(p.y),
                series.color
            );
        }
        let ly = T + 20.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{ry}" width="12" height="12" fill="{c}"/><text x="{tx}" y="{ty}">{n}</text>"#,
            lx = W - R + 16.0,
            ry = ly - 10.0,
            c = series.color,
            tx = W - R + 34.0,
            ty = ly,
            n = series.name,
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The round step (1, 2 or 5 times a power of ten) at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_sorted_series_and_an_svg() {
        let records: Vec<Value> = [
            r#"{"scenario":"rate","target":"tidings","figures":{"deliveredPerSec":4000,"e2eP50Ms":0.8,"e2eP99Ms":3.0}}"#,
            r#"{"scenario":"rate","target":"tidings","figures":{"deliveredPerSec":2000,"e2eP50Ms":0.5,"e2eP99Ms":1.5}}"#,
            r#"{"scenario":"pairs","target":"relay","figures":{"deliveredPerSec":90000,"e2eP50Ms":5,"e2eP99Ms":20}}"#,
            r#"{"scenario":"rate","target":"relay","figures":{"deliveredPerSec":4000,"e2eP50Ms":0.2,"e2eP99Ms":1.1}}"#,
            r#"{"scenario":"rate","target":"relay","figures":{"deliveredPerSec":2000,"e2eP50Ms":0.2,"e2eP99Ms":0.9}}"#,
            r#"{"scenario":"connections","target":"tidings","figures":{"opened":10}}"#,
        ]
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
        let s = series(&records);
        assert_eq!(
            s[0].points,
            vec![Point { x: 2000.0, y: 0.5 }, Point { x: 4000.0, y: 0.8 }]
        );
        assert_eq!(s[3].points.len(), 1);
        assert_eq!(
            s[4].points,
            vec![Point { x: 2000.0, y: 0.9 }, Point { x: 4000.0, y: 1.1 }]
        );
        let svg = svg(&s);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(4_800.0), 5_000.0);
        assert_eq!(nice_step(12_056.0), 20_000.0);
        assert_eq!(nice_step(1.5), 2.0);
        assert_eq!(nice_step(0.0), 1.0);
    }
}
