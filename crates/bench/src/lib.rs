//! `tidings bench`: a load generator built on the client SDK that measures the server and checks
//! the delivery contract while doing so. The `tidings` binary parses [`BenchArgs`] and calls
//! [`run`], handing over what only it knows (a data directory's credentials, `--ca-file`'s TLS
//! settings) as a [`Host`]; with `--spawn` the bench starts that same binary's `serve`.
//!
//! Scenarios (`scenarios.rs`): `connections`, `pairs`, `rate`, `sync`; `group` (`group.rs`,
//! SDK senders and lean listening members); `chatroom` (`chatroom.rs`, with lean members of its
//! own rather than SDK clients, framed by hand in `wsframe.rs`, and the room's gap-marker
//! accounting); `relay` serves the baseline relay (`relay.rs`, over the server's WebSocket
//! library; with `--raw`, `relay_raw.rs`: a chatroom relay that frames and writes by hand, the
//! floor under a room's fan-out); `chart` renders JSON records as SVG (`chart.rs`). Each run prints a table and, with `--json FILE`,
//! appends one record (scenario, parameters, revision, figures, verdict, failed checks, and the
//! command that reproduces it). With `--spawn` the tool starts its own
//! `tidings serve` on a temporary data directory and samples its CPU and memory from /proc.
//! A new scenario is a function in `scenarios.rs` returning a [`Record`]; the plumbing here
//! (targets, tokens, sampling, reporting) is shared.

mod chart;
mod chatroom;
mod group;
mod journal;
mod ledger;
mod procstat;
mod relay;
mod relay_raw;
mod revision;
mod scenarios;
mod stats;
mod timer;
mod wsframe;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;
use tidings_client::{Client, ClientConfig, Events};
use tidings_engine::AppCredentials;

pub use ledger::{Ledger, Verdict};
pub use stats::Latencies;

/// What the bench takes from the `tidings` binary it runs in, which knows the server's files.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// Reads the app credentials in a server's data directory: they mint the bench users'
    /// tokens and sign its API requests.
    pub credentials: fn(&Path) -> anyhow::Result<AppCredentials>,
    /// The TLS settings for `--ca-file` (`None`: the SDK's default, the public CAs).
    pub tls: fn(Option<&Path>) -> anyhow::Result<Option<Arc<tidings_client::rustls::ClientConfig>>>,
}

/// `tidings bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Where the load goes and what is recorded; shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The server to load (ignored with --spawn).
    #[arg(long, default_value = tidings_client::DEFAULT_SERVER)]
    pub server: String,
    /// Start `tidings serve` on a temporary data directory, and sample its CPU and memory.
    #[arg(long)]
    pub spawn: bool,
    /// Sample this process (the server's pid) when not spawning.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's data directory, whose credentials mint the bench users' tokens (not needed
    /// with --spawn).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Append this run's record, one JSON line, to FILE.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// An extra argument for the spawned `tidings serve` (repeatable), e.g.
    /// `--serve-arg=--durability=process`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    /// Connect the receiving users (of `pairs` and `rate`; the members that only listen, of
    /// `group` and `chatroom`) to this server instead: another node of the same cluster, so
    /// every message crosses the bus (not with --spawn).
    #[arg(long)]
    pub receivers_server: Option<String>,
    /// With --receivers-server: every other pair sends the other way (its sender on the
    /// receivers' server, its receiver on the first), so that each node takes half the senders
    /// and half the receivers, as a cluster behind a load balancer would.
    #[arg(long, requires = "receivers_server")]
    pub both_ways: bool,
    /// Also trust the CA certificates in this PEM file for an `https://` server (one whose
    /// certificate a private CA signed); the public CAs are trusted anyway.
    #[arg(long, env = "TIDINGS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Open N authenticated connections and hold them with heartbeats.
    Connections {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Seconds to hold the connections once all are open.
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
        /// Connection attempts in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Client source addresses to spread over (127.0.1.1, 127.0.1.2, ...).
        #[arg(long, default_value_t = 16)]
        sources: u8,
    },
    /// K sender/receiver pairs, each sender keeping W messages in flight, for D seconds.
    Pairs {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        #[arg(long, default_value_t = 32)]
        window: usize,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        /// Message content size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[command(flatten)]
        baseline: Baseline,
    },
    /// The pairs load at a fixed offered rate (open loop: latency from the scheduled send time).
    Rate {
        #[command(flatten)]
        common: Common,
        /// Messages per second offered.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[command(flatten)]
        baseline: Baseline,
    },
    /// A user with M stored messages connects a fresh device: time until all are synced.
    Sync {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Entries per sync page the client asks for.
        #[arg(long, default_value_t = 500)]
        page: u32,
    },
    /// One group of M members, S of them sending at a combined fixed rate: every member must
    /// get every message.
    Group {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        members: usize,
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Messages per second over all senders.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Connection attempts in flight at once while members connect.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
    },
    /// One chatroom of N members, S of them sending at a combined fixed rate: every member must
    /// get every message of the others, or learn of its drop from a gap marker whose counts add
    /// up.
    Chatroom {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10_000)]
        members: usize,
        /// Members that send (SDK clients); the others are lean listeners.
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Messages per second over all senders.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// The priority of the messages sent (a lagging room drops LOW ones first).
        #[arg(long, value_enum, default_value_t = chatroom::SendPriority::Normal)]
        priority: chatroom::SendPriority,
        /// Connection attempts in flight at once while members connect.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        #[command(flatten)]
        baseline: Baseline,
    },
    /// Serve the relay baseline.
    Relay {
        #[arg(long, default_value = "127.0.0.1:9092")]
        listen: std::net::SocketAddr,
        /// The raw chatroom relay (chatrooms only).
        #[arg(long)]
        raw: bool,
        /// Append each 1:1 message to this file (emptied first) and sync it before forwarding
        /// the message and answering its PUBACK: the floor of a durable server.
        #[arg(long, conflicts_with = "raw")]
        journal: Option<std::path::PathBuf>,
    },
    /// Render JSON records (from --json) as an SVG chart of latency against load.
    Chart {
        /// Record files (JSON lines).
        inputs: Vec<PathBuf>,
        #[arg(long, default_value = "bench.svg")]
        out: PathBuf,
    },
}

/// Whether a load also (or only) runs against the relay baseline.
#[derive(clap::Args, Debug, Clone)]
pub struct Baseline {
    /// Also run the same load against the relay baseline (spawned) first; a closed-loop run
    /// reports its throughput as a ratio of the relay's.
    #[arg(long)]
    pub relay: bool,
    /// Load the relay baseline only.
    #[arg(long, conflicts_with = "relay")]
    pub relay_only: bool,
    /// With `--relay` or `--relay-only` (chatrooms only): the raw relay, which writes
    /// WebSocket frames to the sockets itself, one write per member and round from one thread,
    /// with no WebSocket library and no task per connection on the way out.
    #[arg(long)]
    pub raw: bool,
}

/// What a load runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// The server itself.
    No,
    /// The relay baseline over the server's WebSocket library (`relay.rs`).
    Library,
    /// The raw chatroom relay (`relay_raw.rs`).
    Raw,
}

/// The size of the journaling relay's file, which its records go round.
const JOURNAL_BYTES: u64 = 256 << 20;

/// One run's record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub scenario: String,
    /// `tidings`, `relay` or `relay-raw`.
    pub target: String,
    pub params: Value,
    pub figures: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Checks beyond the verdict's that failed (a chatroom's gap markers that do not add up,
    /// connections the server dropped, …); any fails the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    pub revision: String,
    pub command: String,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// The table printed for people: (label, value) rows.
    #[serde(skip)]
    pub rows: Vec<(String, String)>,
}

/// Runs `tidings bench`. The caller raises the open-file limit first: a load opens many
/// connections.
pub async fn run(args: BenchArgs, host: Host) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Relay {
            listen,
            raw,
            journal,
        } => {
            let journal = journal
                .as_deref()
                .map(|path| journal::Journal::open(path, JOURNAL_BYTES))
                .transpose()?;
            let listener = tokio::net::TcpListener::bind(listen).await?;
            println!("relay listening on http://{}", listener.local_addr()?);
            if raw {
                relay_raw::serve(listener).await?;
            } else {
                relay::serve(listener, journal).await?;
            }
            Ok(())
        }
        Scenario::Chart { inputs, out } => chart::render(&inputs, &out),
        Scenario::Connections {
            common,
            n,
            hold_secs,
            concurrency,
            sources,
        } => {
            let target = Target::open(&common, host, Relay::No).await?;
            let record =
                scenarios::connections(&target, n, hold_secs, concurrency, sources).await?;
            finish(&common, vec![record])
        }
        Scenario::Pairs {
            common,
            pairs,
            window,
            secs,
            size,
            baseline,
        } => {
            let load = scenarios::Load {
                pairs,
                window,
                rate: None,
                secs,
                size,
            };
            let records = against_relay_and_server(&common, host, &load, &baseline).await?;
            finish(&common, records)
        }
        Scenario::Rate {
            common,
            rate,
            pairs,
            secs,
            size,
            baseline,
        } => {
            let load = scenarios::Load {
                pairs,
                window: 0,
                rate: Some(rate),
                secs,
                size,
            };
            let records = against_relay_and_server(&common, host, &load, &baseline).await?;
            finish(&common, records)
        }
        Scenario::Group {
            common,
            members,
            senders,
            rate,
            secs,
            size,
            concurrency,
        } => {
            let target = Target::open(&common, host, Relay::No).await?;
            let load = group::GroupLoad {
                members,
                senders,
                rate,
                secs,
                size,
                concurrency,
            };
            let record = group::group(&target, &load).await?;
            finish(&common, vec![record])
        }
        Scenario::Chatroom {
            common,
            members,
            senders,
            rate,
            secs,
            size,
            priority,
            concurrency,
            baseline,
        } => {
            let load = chatroom::ChatroomLoad {
                members,
                senders,
                rate,
                secs,
                size,
                priority,
                concurrency,
            };
            let mut records = Vec::new();
            if baseline.relay || baseline.relay_only {
                let kind = if baseline.raw {
                    Relay::Raw
                } else {
                    Relay::Library
                };
                let relay = Target::open(&common, host, kind).await?;
                records.push(chatroom::chatroom(&relay, &load).await?);
            }
            if !baseline.relay_only {
                let target = Target::open(&common, host, Relay::No).await?;
                records.push(chatroom::chatroom(&target, &load).await?);
            }
            finish(&common, records)
        }
        Scenario::Sync {
            common,
            messages,
            page,
        } => {
            let target = Target::open(&common, host, Relay::No).await?;
            let record = scenarios::sync(&target, messages, page).await?;
            finish(&common, vec![record])
        }
    }
}

/// Runs `load` against the relay baseline (when asked) and then against the server; a closed-loop
/// run's server record quotes its throughput as a ratio of the relay's.
async fn against_relay_and_server(
    common: &Common,
    host: Host,
    load: &scenarios::Load,
    baseline: &Baseline,
) -> anyhow::Result<Vec<Record>> {
    anyhow::ensure!(!baseline.raw, "the raw relay has chatrooms only");
    let mut records = Vec::new();
    if baseline.relay || baseline.relay_only {
        let target = Target::open(common, host, Relay::Library).await?;
        records.push(scenarios::pairs(&target, load).await?);
    }
    if baseline.relay_only {
        return Ok(records);
    }
    let target = Target::open(common, host, Relay::No).await?;
    let mut record = scenarios::pairs(&target, load).await?;
    if let Some(relay) = records.first().filter(|_| load.rate.is_none()) {
        let ours = record.figures["deliveredPerSec"].as_f64().unwrap_or(0.0);
        let base = relay.figures["deliveredPerSec"].as_f64().unwrap_or(0.0);
        if base > 0.0 {
            let ratio = ours / base;
            record.figures["relayRatio"] = ratio.into();
            record.rows.push((
                "throughput vs relay".into(),
                format!("{:.0}%", ratio * 100.0),
            ));
        }
    }
    records.push(record);
    Ok(records)
}

/// Prints each record's table, appends the records to the JSON file, and fails the run if any
/// delivery check failed.
fn finish(common: &Common, records: Vec<Record>) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for r in &records {
        println!("\n{} against {}", r.scenario, r.target);
        let width = r.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &r.rows {
            println!("  {k:<width$}  {v}");
        }
        println!("  {:<width$}  {}", "reproduce", r.command);
        if let Some(v) = r.verdict
            && !v.clean()
        {
            failed.push(format!(
                "{} against {}: {} lost, {} duplicated, {} out of order",
                r.scenario, r.target, v.lost, v.duplicated, v.out_of_order
            ));
        }
        if !r.failures.is_empty() {
            failed.push(format!(
                "{} against {}: {}",
                r.scenario,
                r.target,
                r.failures.join("; ")
            ));
        }
    }
    if let Some(path) = &common.json {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        for r in &records {
            writeln!(file, "{}", serde_json::to_string(r)?)?;
        }
    }
    if !failed.is_empty() {
        bail!("delivery check failed: {}", failed.join("; "));
    }
    Ok(())
}

/// The revision the binary was built from (`-dirty` when its code had uncommitted changes);
/// for a binary built outside a git working tree, that of the working tree the tool runs in,
/// or else of the tree the binary is in (`target/release/tidings` run from elsewhere).
fn revision() -> String {
    if let Some(built) = build_revision() {
        return built.to_string();
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let trees = [None, exe_dir];
    trees
        .iter()
        .find_map(|tree| revision_of(tree.as_deref()))
        .unwrap_or_else(|| "unknown".into())
}

/// The revision `build.rs` found when this binary was built, if it was built in a working tree.
fn build_revision() -> Option<&'static str> {
    Some(env!("TIDINGS_BUILD_REVISION")).filter(|r| !r.is_empty())
}

/// The revision of the working tree at `tree` (the current directory's if `None`), `-dirty`
/// when any tracked file has changes.
fn revision_of(tree: Option<&Path>) -> Option<String> {
    revision::revision_of(tree, &[])
}

/// The command line of this run, quoted for a POSIX shell.
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 { "tidings".to_string() } else { a };
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@".contains(&b))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Record {
    /// Fails the run if members' connections ended before it did, naming the first reason.
    pub fn ended_early(&mut self, ended: &[String]) {
        if let Some(first) = ended.first() {
            self.failures.push(format!(
                "{} members' connections ended early (first: {first})",
                ended.len()
            ));
        }
    }

    fn new(scenario: &str, target: &Target, params: Value) -> Record {
        Record {
            scenario: scenario.into(),
            target: match (target.relay, target.raw) {
                (false, _) => "tidings",
                (true, false) => "relay",
                (true, true) => "relay-raw",
            }
            .into(),
            params,
            figures: Value::Object(Default::default()),
            verdict: None,
            failures: Vec::new(),
            revision: revision(),
            command: command_line(),
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            rows: Vec::new(),
        }
    }

    /// Records a figure under `key` and shows it as `label` in the table.
    fn figure(&mut self, key: &str, label: &str, value: f64, unit: &str) {
        self.figures[key] = value.into();
        let shown = if value.abs() >= 100.0 || value == value.trunc() {
            format!("{value:.0}")
        } else if value.abs() >= 1.0 {
            format!("{value:.2}")
        } else {
            format!("{value:.3}")
        };
        self.rows
            .push((label.into(), format!("{shown} {unit}").trim_end().into()));
    }

    /// Records p50, p90, p99 and p99.9 of `samples` as `{key}P50Ms`… shown as `{label} p50`….
    fn percentiles(&mut self, key: &str, label: &str, samples: &mut Latencies) {
        let values = samples.summary_ms();
        for ((suffix, shown), value) in [
            ("P50", "p50"),
            ("P90", "p90"),
            ("P99", "p99"),
            ("P999", "p99.9"),
        ]
        .into_iter()
        .zip(values)
        {
            self.figure(
                &format!("{key}{suffix}Ms"),
                &format!("{label} {shown}"),
                value,
                "ms",
            );
        }
    }

    /// Records the server's CPU and memory over a window of `secs` seconds in which it
    /// delivered `delivered` messages (per delivery as `per_key`, shown as `per_label`), and
    /// the CPU the hypervisor stole meanwhile.
    fn server_cost(
        &mut self,
        (before, after): (Option<procstat::Reading>, Option<procstat::Reading>),
        secs: f64,
        delivered: u64,
        (per_key, per_label): (&str, &str),
        steal: Option<Duration>,
    ) {
        if let (Some(b), Some(a)) = (before, after) {
            let cpu = a.cpu.saturating_sub(b.cpu).as_secs_f64();
            self.figure(
                "serverCpuPercent",
                "server CPU",
                cpu * 100.0 / secs,
                "% of one core",
            );
            if delivered > 0 {
                self.figure(per_key, per_label, cpu * 1e6 / delivered as f64, "µs");
            }
            self.figure("serverRssKib", "server RSS", a.rss_kib as f64, "KiB");
        }
        if let Some(steal) = steal {
            self.figure(
                "stealMs",
                "CPU time stolen by the hypervisor",
                steal.as_secs_f64() * 1e3,
                "ms",
            );
        }
    }
}

/// A spawned child process that is killed when dropped.
struct Spawned {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server under load: its URL, how to mint tokens for it, and its sampler.
pub struct Target {
    pub url: String,
    /// Where receiving users connect, when not to `url`.
    pub receivers_url: Option<String>,
    /// Every other pair sends from `receivers_url` to `url` (`--both-ways`).
    pub both_ways: bool,
    /// The relay baseline takes the user id as the token.
    pub relay: bool,
    /// The raw chatroom relay.
    pub raw: bool,
    credentials: Option<AppCredentials>,
    sampler: Option<procstat::Sampler>,
    _spawned: Option<Spawned>,
    /// TLS settings for an `https://` server (`--ca-file`); `None`: the public CAs.
    tls: Option<Arc<tidings_client::rustls::ClientConfig>>,
}

impl Target {
    async fn open(common: &Common, host: Host, kind: Relay) -> anyhow::Result<Target> {
        let relay = kind != Relay::No;
        if relay && !common.spawn {
            bail!("the relay baseline runs with --spawn");
        }
        if common.spawn {
            let dir = tempfile::tempdir()?;
            let exe = std::env::current_exe()?;
            let mut cmd = Command::new(exe);
            if relay {
                cmd.args(["bench", "relay", "--listen", "127.0.0.1:0"]);
                if kind == Relay::Raw {
                    cmd.arg("--raw");
                }
            } else {
                cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                    .arg(dir.path())
                    .args(&common.serve_args);
                // The load is many times a person's send rate: lift the limit unless the
                // command sets one.
                if !common
                    .serve_args
                    .iter()
                    .any(|a| a.starts_with("--send-rate"))
                {
                    cmd.args(["--send-rate", "0"]);
                }
                // Likewise for the bound on connections still opening from one address:
                // the load opens hundreds at once from a few loopback addresses.
                if !common
                    .serve_args
                    .iter()
                    .any(|a| a.starts_with("--max-unauthenticated"))
                {
                    cmd.args(["--max-unauthenticated-per-address", "1000000"]);
                    cmd.args(["--max-unauthenticated", "1000000"]);
                }
            }
            // A metrics port of its own, so benches and servers running beside it never
            // collide on the default one; `--serve-arg=--metrics-listen=...` (a flag) or the
            // environment's setting wins.
            if std::env::var_os("TIDINGS_METRICS_LISTEN").is_none() {
                cmd.env("TIDINGS_METRICS_LISTEN", "127.0.0.1:0");
            }
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .env(
                    "TIDINGS_LOG",
                    std::env::var("TIDINGS_LOG").unwrap_or("warn".into()),
                )
                .spawn()
                .context("spawning the server")?;
            let stdout = child.stdout.take().context("server stdout")?;
            let pid = child.id();
            let spawned = Spawned { child, _dir: dir };
            let url = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
                let mut lines = BufReader::new(stdout).lines();
                for line in lines.by_ref() {
                    let line = line?;
                    if let Some((_, url)) = line.split_once(" listening on ") {
                        let url = url.to_string();
                        // Keep draining so the server never blocks on a full pipe.
                        std::thread::spawn(move || lines.for_each(drop));
                        return Ok(url);
                    }
                }
                bail!("the spawned server exited before listening")
            })
            .await??;
            let credentials = if relay {
                None
            } else {
                Some((host.credentials)(spawned._dir.path())?)
            };
            eprintln!(
                "spawned {} (pid {pid}) at {url}",
                if relay { "relay" } else { "tidings serve" }
            );
            if common.receivers_server.is_some() {
                bail!("--receivers-server loads servers already running (not with --spawn)");
            }
            return Ok(Target {
                url,
                receivers_url: None,
                both_ways: false,
                relay,
                raw: kind == Relay::Raw,
                credentials,
                sampler: Some(procstat::Sampler::start(pid)?),
                _spawned: Some(spawned),
                tls: None,
            });
        }
        let sampler = match common.server_pid {
            Some(pid) => Some(procstat::Sampler::start(pid)?),
            None => None,
        };
        Ok(Target {
            url: common.server.clone(),
            receivers_url: common.receivers_server.clone(),
            both_ways: common.both_ways,
            relay: false,
            raw: false,
            credentials: Some((host.credentials)(&common.data_dir)?),
            sampler,
            _spawned: None,
            tls: (host.tls)(common.ca_file.as_deref())?,
        })
    }

    /// A token for `user` (bench users are fresh, so their token version is 0).
    fn token(&self, user: &str) -> anyhow::Result<String> {
        match &self.credentials {
            None => Ok(user.to_string()),
            Some(creds) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs() as i64;
                tidings_engine::auth::mint(creds, user, 0, now, now + 24 * 3600)
                    .map_err(|c| anyhow::anyhow!("minting a token: {c}"))
            }
        }
    }

    fn client_config(&self, user: &str, device: &str) -> anyhow::Result<ClientConfig> {
        self.client_config_at(&self.url, user, device)
    }

    fn client_config_at(
        &self,
        url: &str,
        user: &str,
        device: &str,
    ) -> anyhow::Result<ClientConfig> {
        let mut c = ClientConfig::new(url, self.token(user)?);
        c.device_id = device.into();
        c.platform = "bench".into();
        c.initial_cursor = Some(0);
        c.tls = self.tls.clone();
        Ok(c)
    }

    /// Where receiving users connect: the receivers' server when one is set.
    fn receivers(&self) -> &str {
        self.receivers_url.as_deref().unwrap_or(&self.url)
    }

    /// Where pair `i`'s sender and receiver connect: the receiver to the receivers' server when
    /// one is set, the sender to the first; the other way round for odd pairs with
    /// `--both-ways`.
    fn pair_urls(&self, i: usize) -> (&str, &str) {
        let there = self.receivers();
        if self.both_ways && i % 2 == 1 {
            (there, &self.url)
        } else {
            (&self.url, there)
        }
    }

    /// Pair `i`'s receiving (`sending` false) or sending user's client.
    async fn pair_client(
        &self,
        i: usize,
        sending: bool,
        user: &str,
        device: &str,
    ) -> anyhow::Result<(Client, Events)> {
        let (sender, receiver) = self.pair_urls(i);
        let url = if sending { sender } else { receiver };
        Client::connect(self.client_config_at(url, user, device)?)
            .await
            .with_context(|| format!("connecting {user}"))
    }

    async fn client(&self, user: &str, device: &str) -> anyhow::Result<(Client, Events)> {
        Client::connect(self.client_config(user, device)?)
            .await
            .with_context(|| format!("connecting {user}"))
    }

    /// A signed HTTP API request to the server; the JSON answer, or the error it carries.
    async fn api(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let creds = self
            .credentials
            .clone()
            .context("the relay has no HTTP API")?;
        let url = format!("{}{path}", self.url);
        let nonce = format!("bench-{:016x}", rand::random::<u64>());
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            .to_string();
        let body = body.to_string();
        // The signature covers the request target as sent, a base URL's own path included.
        let parsed = reqwest::Url::parse(&url)?;
        let target = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let signature = tidings_engine::auth::sign_request(
            &creds.app_secret,
            &nonce,
            &timestamp,
            method,
            &target,
            body.as_bytes(),
        );
        let tls = self
            .tls
            .clone()
            .unwrap_or_else(tidings_client::tls::public_roots);
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .build()?;
        let response = client
            .request(reqwest::Method::from_bytes(method.as_bytes())?, parsed)
            .header("App-Key", &creds.app_key)
            .header("Nonce", &nonce)
            .header("Timestamp", &timestamp)
            .header("Signature", signature)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        if !status.is_success() {
            bail!("{method} {url}: {status}: {answer}");
        }
        Ok(answer)
    }

    fn reading(&self) -> Option<procstat::Reading> {
        self.sampler.as_ref().map(procstat::Sampler::now)
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        self.sampler.as_ref().map(procstat::Sampler::peak_rss_kib)
    }
}

/// A set of small integers (the seqs of one run, which are small and dense), as a bitmap.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seqs(Vec<u64>);

impl Seqs {
    /// Adds `seq`; false if it was there.
    pub(crate) fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let fresh = self.0[word] & (1 << bit) == 0;
        self.0[word] |= 1 << bit;
        fresh
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.0
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    pub(crate) fn len(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// A short random tag that keeps one run's users apart from another's on a persistent server.
fn run_tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// How long to wait for stragglers once a run's sending stops.
const DRAIN: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    /// A record names the revision of the tree it was run in, or of the tree the binary is in:
    /// never a guess.
    #[test]
    fn a_revision_is_read_from_a_working_tree_and_nowhere_else() {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"));
        if source.ancestors().any(|d| d.join(".git").exists()) {
            let here = revision_of(Some(source)).expect("the source's revision");
            let hex = here.trim_end_matches("-dirty");
            assert_eq!(hex.len(), 12, "{here}");
            assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{here}");
        } else {
            eprintln!("skipped the revision of the source: it is not in a git working tree");
        }
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(revision_of(Some(outside.path())), None);
    }

    /// A binary built in a working tree names the commit it was built from, whatever tree it
    /// later runs in (the build script records it).
    #[test]
    fn a_binary_built_in_a_working_tree_names_its_own_revision() {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"));
        let Some(here) = revision_of(Some(source)) else {
            eprintln!("skipped: the source is not in a git working tree");
            assert_eq!(build_revision(), None);
            return;
        };
        let built = build_revision().expect("the build's revision");
        let hex = built.trim_end_matches("-dirty");
        assert_eq!(hex.len(), 12, "{built}");
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{built}");
        // Built from this tree's commit (a test binary is built from the tree it tests).
        assert_eq!(hex, here.trim_end_matches("-dirty"));
        assert_eq!(revision(), built);
    }

    fn target(receivers: Option<&str>, both_ways: bool) -> Target {
        Target {
            url: "http://a".into(),
            receivers_url: receivers.map(str::to_string),
            both_ways,
            relay: false,
            raw: false,
            credentials: None,
            sampler: None,
            _spawned: None,
            tls: None,
        }
    }

    /// Pairs send from the first server to the receivers' server; with `--both-ways`, every
    /// other pair the other way round.
    #[test]
    fn pairs_go_one_way_or_both_ways_between_two_servers() {
        let one = target(None, false);
        assert_eq!(one.pair_urls(1), ("http://a", "http://a"));
        assert_eq!(one.receivers(), "http://a");
        assert_eq!(target(Some("http://b"), false).receivers(), "http://b");
        let across = target(Some("http://b"), false);
        assert_eq!(across.pair_urls(0), ("http://a", "http://b"));
        assert_eq!(across.pair_urls(1), ("http://a", "http://b"));
        let both = target(Some("http://b"), true);
        assert_eq!(both.pair_urls(0), ("http://a", "http://b"));
        assert_eq!(both.pair_urls(1), ("http://b", "http://a"));
        assert_eq!(both.pair_urls(2), ("http://a", "http://b"));
    }
}
