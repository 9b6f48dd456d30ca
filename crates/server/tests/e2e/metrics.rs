//! Prometheus metrics as an operator sees them: the `tidings` binary serves them on their own
//! address (`--metrics-listen`), a scripted exchange moves the counters and histograms it
//! should, every label value is from its closed set, Debian's `prometheus` scrapes and queries
//! them, and every metric the Grafana dashboard queries exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidings_client::{Client, ClientConfig, Outgoing};
use tidings_proto::{Code, Encoding, codec};

use crate::process::{ServerProcess, token};
use crate::util::*;

/// How long a condition may take to hold: a failure guard, not a measurement.
const DEADLINE: Duration = Duration::from_secs(60);

/// One sample of a scrape: the metric's name and its labels.
type Series = (String, BTreeMap<String, String>);

/// A scrape: every sample's value, and the names `# TYPE` lines declare.
pub(crate) struct Scrape {
    samples: BTreeMap<Series, f64>,
    types: BTreeSet<String>,
}

impl Scrape {
    /// The sum of the samples of `name` whose labels include `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// Whether `name` is in the scrape: a sample of it, or its `# TYPE` line.
    fn has(&self, name: &str) -> bool {
        self.types.contains(name) || self.samples.keys().any(|(n, _)| n == name)
    }
}

/// Parses the Prometheus text format (the subset the exporter writes: no escapes in labels).
fn parse(text: &str) -> Scrape {
    let mut samples = BTreeMap::new();
    let mut types = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            types.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let labels = body
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').expect("label=value");
                        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        (k.to_string(), v.expect("a quoted label value").to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        samples.insert((name, labels), value);
    }
    Scrape { samples, types }
}

/// A plain GET: (status, body).
async fn get(url: &str) -> (u16, String) {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut resp = agent().get(&url).call().unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .unwrap()
}

async fn scrape(metrics_url: &str) -> Scrape {
    let (status, body) = get(metrics_url).await;
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

/// Waits until a scrape satisfies `check`; fails with the last scrape's failure otherwise.
pub(crate) async fn scrape_until(
    metrics_url: &str,
    check: impl Fn(&Scrape) -> Result<(), String>,
) -> Scrape {
    let start = Instant::now();
    loop {
        let s = scrape(metrics_url).await;
        match check(&s) {
            Ok(()) => return s,
            Err(why) if start.elapsed() > DEADLINE => panic!("metrics never showed it: {why}"),
            // The back-off between scrapes: the loop ends when `check` holds.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A signed HTTP API call to the server whose data directory is `data`.
async fn api_call(base: &str, data: &Path, method: &str, path: &str, body: serde_json::Value) {
    let (creds, _) = tidings_server::credentials::load_or_create(data).unwrap();
    let body = body.to_string();
    let nonce = format!("metrics-{}", now_ms());
    let ts = now_ms().to_string();
    let signature = tidings_engine::auth::sign_request(
        &creds.app_secret,
        &nonce,
        &ts,
        method,
        path,
        body.as_bytes(),
    );
    let (url, method) = (format!("{base}{path}"), method.to_string());
    let (status, answer) = tokio::task::spawn_blocking(move || {
        let mut resp = agent()
            .post(&url)
            .header("App-Key", &creds.app_key)
            .header("Nonce", &nonce)
            .header("Timestamp", &ts)
            .header("Signature", &signature)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{method} {path}: {answer}");
}

/// Opens a long-poll session with `token` (it lives until it is idle for a heartbeat interval).
async fn long_poll(server: &ServerProcess, token: &str) {
    let body = codec::encode(&connect(token), Encoding::Json).unwrap();
    let url = format!("{}/v1/poll", server.url);
    let (status, answer) = tokio::task::spawn_blocking(move || {
        let mut resp = agent()
            .post(&url)
            .header("Content-Type", "application/json")
            .send(&body[..])
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .unwrap();
    assert!(status == 200 && answer.contains("\"session\""), "{answer}");
}

/// What stays connected after the exchange.
struct Connected {
    _alice: Client,
    _dave: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// The scripted exchange: alice and bob connect over WebSocket, carol by long-polling and dave
/// in the seed-003 dialect;
/// alice sends bob a message and the group both are in a message; a bad token is refused; bob
/// disconnects. Returns once all of it has happened (the messages arrived, bob's session
/// closed); alice, carol and dave stay connected.
async fn exchange(server: &ServerProcess, data: &Path) -> Connected {
    api_call(
        &server.url,
        data,
        "POST",
        "/api/v1/groups",
        serde_json::json!({ "groupId": "team", "ownerId": "alice", "name": "Team", "memberIds": ["bob"] }),
    )
    .await;
    // Every token first: `tidings token` closing its own store truncates the WAL file, and the
    // messages below are what must grow it again.
    let tokens: BTreeMap<&str, String> = ["alice", "bob", "carol", "dave"]
        .into_iter()
        .map(|u| (u, token(data, u)))
        .collect();
    let config = |user: &str| {
        let mut c = ClientConfig::new(&server.url, tokens[user].clone());
        c.device_id = format!("{user}-phone");
        c
    };
    let (alice, _alice_events) = Client::connect(config("alice")).await.unwrap();
    let (bob, mut bob_events) = Client::connect(config("bob")).await.unwrap();
    long_poll(server, &tokens["carol"]).await;
    let ws = server.url.replacen("http", "ws", 1);
    let (dave, _) = tokio_tungstenite::connect_async(format!("{ws}/imserver/{}", tokens["dave"]))
        .await
        .unwrap();
    alice
        .send(Outgoing::text("bob", "hello bob"))
        .await
        .unwrap();
    alice
        .send(Outgoing::group_text("team", "hello team"))
        .await
        .unwrap();
    let mut got = BTreeSet::new();
    while got.len() < 2 {
        let m = next_message(&mut bob_events).await;
        got.insert(m.conversation_type);
    }
    let refused = Client::connect(ClientConfig::new(&server.url, "not-a-token")).await;
    assert!(refused.is_err(), "a bad token is refused");
    bob.close().await;
    Connected {
        _alice: alice,
        _dave: dave,
    }
}

/// The label values each label may take: closed sets, never an id.
fn check_labels(s: &Scrape) {
    let codes: BTreeSet<String> = Code::ALL.iter().map(|c| c.as_u32().to_string()).collect();
    let allowed = |label: &str, value: &str| -> bool {
        match label {
            "code" => codes.contains(value),
            "conversation_type" => {
                ["private", "group", "chatroom", "system", "other"].contains(&value)
            }
            "transport" => ["ws", "poll"].contains(&value),
            "dialect" => ["native", "seed000", "seed001", "seed002", "seed003"].contains(&value),
            "outcome" => [
                "sent",
                "dropped",
                "failed",
                "delivered",
                "expired",
                "retry",
                "ok",
                "unavailable",
            ]
            .contains(&value),
            "hook" => ["sent", "moderation"].contains(&value),
            "provider" => ["webpush", "fcm", "apns", "none"].contains(&value),
            "reason" => ["version", "malformed"].contains(&value),
            "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
            _ => false,
        }
    };
    for (name, labels) in s.samples.keys() {
        assert!(
            name.starts_with("tidings_"),
            "{name} is not named tidings_*"
        );
        for (k, v) in labels {
            assert!(
                allowed(k, v),
                "{name}: label {k}={v:?} is not from its closed set"
            );
        }
    }
}

#[tokio::test]
async fn metrics_count_a_scripted_exchange_on_their_own_port() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let metrics_url = server.metrics_url().expect("a metrics line");
    let data = cwd.path().join("data");

    let before = scrape(&metrics_url).await;
    assert_eq!(before.sum("tidings_connects_total", &[]), 0.0);
    assert!(before.has("tidings_process_resident_memory_bytes"));
    assert!(before.has("tidings_process_open_fds"));

    let _alice = exchange(&server, &data).await;
    let after = scrape_until(&metrics_url, |s| {
        let checks = [
            ("connects", s.sum("tidings_connects_total", &[]) >= 2.0),
            (
                "refusal 31004",
                s.sum(
                    "tidings_connect_refusals_total",
                    &[("code", &Code::TokenInvalid.as_u32().to_string())],
                ) >= 1.0,
            ),
            (
                "bob's disconnect",
                s.sum("tidings_disconnects_total", &[]) >= 1.0,
            ),
            (
                "private",
                s.sum(
                    "tidings_messages_accepted_total",
                    &[("conversation_type", "private")],
                ) >= 1.0,
            ),
            (
                "group",
                s.sum(
                    "tidings_messages_accepted_total",
                    &[("conversation_type", "group")],
                ) >= 1.0,
            ),
            (
                "alice connected",
                s.sum(
                    "tidings_connections",
                    &[("transport", "ws"), ("dialect", "native")],
                ) == 1.0,
            ),
            (
                "carol long-polling",
                s.sum(
                    "tidings_connections",
                    &[("transport", "poll"), ("dialect", "native")],
                ) == 1.0,
            ),
            (
                "dave in seed 003",
                s.sum(
                    "tidings_connections",
                    &[("transport", "ws"), ("dialect", "seed003")],
                ) == 1.0,
            ),
            ("open sessions", s.sum("tidings_sessions", &[]) == 3.0),
            ("deliveries", s.sum("tidings_deliveries_total", &[]) >= 2.0),
            // Measured after each checkpoint pass (every 100 ms).
            ("WAL size", s.sum("tidings_sqlite_wal_bytes", &[]) > 0.0),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((what, _)) => Err(what.to_string()),
            None => Ok(()),
        }
    })
    .await;
    // Histograms, as Prometheus histograms: buckets, a count and a sum.
    for h in [
        "tidings_publish_to_puback_seconds",
        "tidings_publish_to_delivery_seconds",
        "tidings_store_commit_seconds",
    ] {
        assert!(after.sum(&format!("{h}_count"), &[]) >= 2.0, "{h}");
        assert!(after.sum(&format!("{h}_sum"), &[]) > 0.0, "{h}");
        assert!(
            after.sum(&format!("{h}_bucket"), &[("le", "+Inf")]) >= 2.0,
            "{h} has buckets"
        );
    }
    assert!(after.sum("tidings_fanout_sessions_count", &[]) >= 2.0);
    assert!(after.sum("tidings_store_batch_ops_sum", &[]) >= 2.0);
    check_labels(&after);

    // Not on the public port.
    let (status, body) = get(&format!("{}/metrics", server.url)).await;
    assert_ne!(status, 200, "{body}");
    assert!(!body.contains("tidings_connects_total"));
}

#[test]
fn metrics_off_serves_none_and_a_taken_address_stops_serve() {
    let cwd = tempfile::tempdir().unwrap();
    let off = ServerProcess::start(cwd.path(), &["--metrics-listen", "off"]);
    assert!(off.metrics_url().is_none());
    drop(off);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let stderr = serve_fails(cwd.path(), &addr);
    assert!(
        stderr.contains(&format!("binding the metrics address {addr}")),
        "{stderr}"
    );
    let stderr = serve_fails(cwd.path(), "nine");
    assert!(
        stderr.contains("metrics_listen must be an address"),
        "{stderr}"
    );
}

/// Runs `tidings serve --metrics-listen METRICS`, which must fail; returns what it printed.
fn serve_fails(cwd: &Path, metrics: &str) -> String {
    let out = Command::new(crate::process::BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            metrics,
        ])
        .current_dir(cwd)
        .env("TIDINGS_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Debian's Prometheus, scraping `target` (host:port) every second.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

const PROMETHEUS: &str = "/usr/bin/prometheus";

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tidings\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Prometheus' answer to an instant query.
    async fn answer(&self, promql: &str) -> Option<serde_json::Value> {
        let url = format!("{}/api/v1/query", self.url);
        let promql = promql.to_string();
        tokio::task::spawn_blocking(move || {
            let mut resp = agent().get(&url).query("query", &promql).call().ok()?;
            resp.body_mut().read_json::<serde_json::Value>().ok()
        })
        .await
        .unwrap()
    }

    /// The value of an instant query's first result, if it has one.
    async fn query(&self, promql: &str) -> Option<f64> {
        let body = self.answer(promql).await?;
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` answers a value that `ok` accepts.
    async fn until(&self, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        loop {
            match self.query(promql).await {
                Some(v) if ok(v) => return v,
                last if start.elapsed() > DEADLINE => {
                    panic!("Prometheus never answered {promql} as wanted (last: {last:?})")
                }
                // The back-off between queries: the loop ends when `ok` holds.
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_missing(test: &str) -> bool {
    if Path::new(PROMETHEUS).exists() {
        return false;
    }
    eprintln!("SKIPPED {test}: {PROMETHEUS} is missing (apt-get install prometheus)");
    true
}

#[tokio::test]
async fn prometheus_scrapes_the_counters_a_scripted_exchange_raises() {
    if prometheus_missing("prometheus_scrapes_the_counters_a_scripted_exchange_raises") {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let metrics_url = server.metrics_url().expect("a metrics line");
    let target = metrics_url
        .strip_prefix("http://")
        .and_then(|t| t.strip_suffix("/metrics"))
        .unwrap();
    let prometheus = Prometheus::start(target);
    // Scraped once before the exchange, so its increase falls between two scrapes.
    prometheus.until("up{job=\"tidings\"}", |v| v == 1.0).await;
    assert_eq!(
        prometheus.query("sum(tidings_connects_total)").await,
        Some(0.0)
    );

    let _alice = exchange(&server, &cwd.path().join("data")).await;
    prometheus
        .until("sum(tidings_connects_total)", |v| v >= 2.0)
        .await;
    prometheus
        .until(
            "sum(tidings_messages_accepted_total{conversation_type=\"private\"})",
            |v| v >= 1.0,
        )
        .await;
    prometheus
        .until(
            "sum(tidings_messages_accepted_total{conversation_type=\"group\"})",
            |v| v >= 1.0,
        )
        .await;
    prometheus
        .until("sum(tidings_deliveries_total)", |v| v >= 2.0)
        .await;
    prometheus
        .until("sum(tidings_connect_refusals_total)", |v| v >= 1.0)
        .await;
    // The histograms are real histograms: a quantile over their buckets.
    prometheus
        .until(
            "histogram_quantile(0.99, sum by (le) (rate(tidings_publish_to_puback_seconds_bucket[1m])))",
            |v| v.is_finite() && v > 0.0,
        )
        .await;
    // Every query of the Grafana dashboard is valid PromQL (with Grafana's rate interval).
    for expr in dashboard_exprs() {
        let promql = expr.replace("$__rate_interval", "1m");
        let answer = prometheus.answer(&promql).await.expect("an answer");
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
    }
}

/// The dashboard's queries: every `expr` anywhere in it.
fn dashboard_exprs() -> Vec<String> {
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => collect(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/tidings.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    collect(&dashboard, &mut exprs);
    exprs
}

/// The metric names a PromQL expression names (every `tidings_*` word).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("tidings_") {
        let word: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + word.len()..];
        names.push(word);
    }
    names
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_exists_in_a_live_scrape() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "the dashboard has its panels: {exprs:?}");
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &[]);
    let metrics_url = server.metrics_url().expect("a metrics line");
    let _alice = exchange(&server, &cwd.path().join("data")).await;
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(!names.is_empty());
    scrape_until(&metrics_url, |s| {
        for name in &names {
            // A histogram's series are its name with a suffix; its `# TYPE` line names it bare.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| s.types.contains(*base));
            if !(s.has(name) || base.is_some()) {
                return Err(format!("{name} is not in the scrape"));
            }
        }
        Ok(())
    })
    .await;
}

/// Web Push and the hooks report their outcomes: bob, offline, has one subscription the push
/// service takes and one it says is gone; the after-send callback is answered 2xx, and the
/// moderation hook with no verdict (an empty body), so the message goes through unmoderated.
#[tokio::test]
async fn push_and_webhook_outcomes_are_counted() {
    use crate::push::{Answer, Device, PushService};
    let service = PushService::start().await;
    service.script("/bob/2", &[Answer::Status(410)]);
    let cwd = tempfile::tempdir().unwrap();
    let webhook = format!("{}/callbacks", service.origin);
    let moderation = format!("{}/moderation", service.origin);
    let server = ServerProcess::start(
        cwd.path(),
        &[
            "--webhook-url",
            &webhook,
            "--moderation-url",
            &moderation,
            // The push service in the test listens on 127.0.0.1.
            "--push-allow-private-endpoints",
            "on",
        ],
    );
    let metrics_url = server.metrics_url().expect("a metrics line");
    let data = cwd.path().join("data");
    let (alice_token, bob_token) = (token(&data, "alice"), token(&data, "bob"));

    let (bob, _b) = Client::connect(ClientConfig::new(&server.url, bob_token))
        .await
        .unwrap();
    for path in ["/bob/1", "/bob/2"] {
        bob.register_push(&Device::new(&service, path).subscription())
            .await
            .unwrap();
    }
    bob.close().await;
    scrape_until(&metrics_url, |s| match s.sum("tidings_sessions", &[]) {
        0.0 => Ok(()),
        n => Err(format!("{n} sessions")),
    })
    .await;
    let (alice, _a) = Client::connect(ClientConfig::new(&server.url, alice_token))
        .await
        .unwrap();
    alice
        .send(Outgoing::text("bob", "are you there?"))
        .await
        .unwrap();
    scrape_until(&metrics_url, |s| {
        let pushed = |outcome| s.sum("tidings_push_sends_total", &[("outcome", outcome)]);
        let called = |hook, outcome| {
            s.sum(
                "tidings_webhook_calls_total",
                &[("hook", hook), ("outcome", outcome)],
            )
        };
        let (sent, moderated) = (called("sent", "ok"), called("moderation", "unavailable"));
        if pushed("delivered") >= 1.0 && pushed("expired") >= 1.0 && sent >= 1.0 && moderated >= 1.0
        {
            Ok(())
        } else {
            Err(format!(
                "delivered {}, expired {}, callbacks {sent}, moderation {moderated}",
                pushed("delivered"),
                pushed("expired")
            ))
        }
    })
    .await;
}

/// Resends and sync pages are counted: a message bob's device does not acknowledge is resent
/// after the ack timeout, and bob's second device, connecting after the message, syncs it.
#[tokio::test]
async fn resends_and_sync_pages_are_counted() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd.path(), &["--ack-timeout-ms", "100"]);
    let metrics_url = server.metrics_url().expect("a metrics line");
    let data = cwd.path().join("data");
    let config = |user: &str, device: &str| {
        let mut c = ClientConfig::new(&server.url, token(&data, user));
        c.device_id = device.into();
        c
    };
    let mut quiet = config("bob", "phone");
    quiet.auto_ack = false;
    let (_bob, mut bob_events) = Client::connect(quiet).await.unwrap();
    let (alice, _a) = Client::connect(config("alice", "phone")).await.unwrap();
    alice.send(Outgoing::text("bob", "ack me")).await.unwrap();
    next_message(&mut bob_events).await;
    scrape_until(&metrics_url, |s| {
        match s.sum("tidings_resends_total", &[]) {
            n if n >= 1.0 => Ok(()),
            _ => Err("no resend".into()),
        }
    })
    .await;

    let before = scrape(&metrics_url)
        .await
        .sum("tidings_sync_pages_total", &[]);
    let (_laptop, mut laptop_events) = Client::connect(config("bob", "laptop")).await.unwrap();
    assert_eq!(next_message(&mut laptop_events).await.seq, 1, "synced");
    scrape_until(&metrics_url, |s| {
        match s.sum("tidings_sync_pages_total", &[]) {
            n if n > before => Ok(()),
            n => Err(format!("{n} sync pages")),
        }
    })
    .await;
}
