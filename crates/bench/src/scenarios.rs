//! The scenarios. Each sets up its clients, runs, and returns a [`Record`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tidings_client::{Client, Event, Outgoing, Status};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{DRAIN, Latencies, Ledger, Record, Target, Verdict, run_tag};

/// The load of `pairs` (closed loop, `window` in flight per sender) or `rate` (open loop).
#[derive(Debug, Clone)]
pub struct Load {
    pub pairs: usize,
    pub window: usize,
    pub rate: Option<u64>,
    pub secs: u64,
    pub size: usize,
}

/// The message type bench messages use; their content carries the send time.
pub(super) const BENCH_TYPE: &str = "bench";

/// Words for the text of bench messages: varied enough that the search index does the work
/// real text makes it do.
const WORDS: &str = "the quick brown fox jumps over a lazy dog while seven wizards quietly \
    box jugs of liquor and pack my box with five dozen jugs as sphinx of black quartz judges vows";

/// Content of `size` bytes (at least what the timestamp needs) carrying `t`, nanoseconds since
/// the run's epoch, and a `text` (so the message is indexed for search, as a text message is)
/// that starts at a word picked by `t`.
pub(super) fn content(t: u64, size: usize) -> String {
    let head = format!(r#"{{"t":{t},"text":""#);
    let pad = size.saturating_sub(head.len() + 2);
    let start = (t as usize / 7919) % WORDS.len();
    let text: String = WORDS[start..]
        .chars()
        .chain(std::iter::once(' '))
        .chain(WORDS.chars())
        .cycle()
        .take(pad)
        .collect();
    format!("{head}{text}\"}}")
}

pub(super) fn sent_at(content: &str) -> Option<u64> {
    // `content` puts the time first; reading it without a JSON parse keeps the generator's cost
    // per received message low.
    if let Some(rest) = content.strip_prefix(r#"{"t":"#) {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if let Ok(t) = rest[..end].parse() {
            return Some(t);
        }
    }
    let v: serde_json::Value = serde_json::from_str(content).ok()?;
    v.get("t")?.as_u64()
}

/// The open-loop send times: `rate` per second for `secs` seconds from `start`, evenly spaced,
/// computed from the start (not from the previous send) so that a late send never delays the
/// ones after it.
pub(super) fn schedule(start: Instant, rate: u64, secs: u64) -> impl Iterator<Item = Instant> {
    let total = rate.saturating_mul(secs);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    (0..total).map(move |n| start + interval.mul_f64(n as f64))
}

/// Prints a progress line to stderr every second until `done` is set.
pub(super) fn progress(
    label: &'static str,
    counters: Vec<(&'static str, Arc<AtomicU64>)>,
    done: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !done.load(Ordering::Relaxed) {
            tick.tick().await;
            let parts: Vec<String> = counters
                .iter()
                .map(|(k, v)| format!("{k} {}", v.load(Ordering::Relaxed)))
                .collect();
            eprintln!(
                "  {label} {:>4}s  {}",
                start.elapsed().as_secs(),
                parts.join("  ")
            );
        }
    });
}

pub async fn connections(
    target: &Target,
    n: usize,
    hold_secs: u64,
    concurrency: usize,
    sources: u8,
) -> anyhow::Result<Record> {
    let mut record = Record::new(
        "connections",
        target,
        json!({ "n": n, "holdSecs": hold_secs, "concurrency": concurrency, "sources": sources }),
    );
    let tag = run_tag();
    // Let the spawned server settle before taking its idle baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = target.reading();
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    progress(
        "connections",
        vec![("open", opened.clone()), ("failed", failed.clone())],
        done.clone(),
    );
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut config = target.client_config(&format!("c{tag}-{i}"), "bench")?;
        config.reconnect_delays = vec![Duration::from_secs(1)];
        if sources > 0 {
            let s = (i % usize::from(sources)) as u8;
            config.local_addr = Some(std::net::IpAddr::from([127, 0, 1, s + 1]));
        }
        let (gate, opened, failed) = (gate.clone(), opened.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            match Client::connect(config).await {
                Ok(c) => {
                    opened.fetch_add(1, Ordering::Relaxed);
                    Some(c)
                }
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("  connect failed: {e}");
                    }
                    None
                }
            }
        }));
    }
    let mut clients = Vec::with_capacity(n);
    for t in tasks {
        if let Some(c) = t.await? {
            clients.push(c);
        }
    }
    let connect_time = start.elapsed();
    let after_connect = target.reading();
    // Hold: the SDK keeps heartbeats going; count connections the server drops meanwhile.
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    let held = target.reading();
    done.store(true, Ordering::Relaxed);
    let mut dropped = 0u64;
    for (_, events) in clients.iter_mut() {
        while let Ok(e) = events.try_recv() {
            if matches!(
                e,
                Event::Status(Status::Disconnected { .. }) | Event::Kicked { .. }
            ) {
                dropped += 1;
            }
        }
    }
    let ok = clients.len() as f64;
    record.figure("opened", "connections opened", ok, "");
    record.figure(
        "failed",
        "failures",
        failed.load(Ordering::Relaxed) as f64,
        "",
    );
    record.figure(
        "droppedDuringHold",
        "dropped while held",
        dropped as f64,
        "",
    );
    record.figure(
        "connectPerSec",
        "connect rate",
        ok / connect_time.as_secs_f64(),
        "conn/s",
    );
    if let (Some(base), Some(after), Some(held)) = (baseline, after_connect, held) {
        let per_conn = (held.rss_kib.saturating_sub(base.rss_kib)) as f64 / ok.max(1.0);
        record.figure(
            "baselineRssKib",
            "server RSS idle",
            base.rss_kib as f64,
            "KiB",
        );
        record.figure(
            "heldRssKib",
            "server RSS holding",
            held.rss_kib as f64,
            "KiB",
        );
        record.figure(
            "kibPerConnection",
            "server memory per connection",
            per_conn,
            "KiB",
        );
        let cpu = after.cpu.saturating_sub(base.cpu);
        record.figure(
            "cpuMsPerLogin",
            "server CPU per login",
            cpu.as_secs_f64() * 1000.0 / ok.max(1.0),
            "ms",
        );
    }
    for (c, _) in &clients {
        c.close().await;
    }
    Ok(record)
}

/// One pair's shared state: the sender's and the receiver's view of their conversation.
struct Pair {
    ledger: Mutex<Ledger>,
}

/// What a sending task needs.
#[derive(Clone)]
struct SendCtx {
    client: Client,
    to: String,
    pair: Arc<Pair>,
    sent: Arc<AtomicU64>,
    puback: Arc<Mutex<Latencies>>,
    size: usize,
    epoch: Instant,
}

impl SendCtx {
    /// Sends one message stamped with `scheduled`; PUBACK latency counts from `scheduled`, so an
    /// open-loop run charges the server for its queueing. Returns false if the send failed.
    async fn send(&self, scheduled: Instant) -> bool {
        let t = scheduled.duration_since(self.epoch).as_nanos() as u64;
        let mut out = Outgoing::text(&self.to, "");
        out.msg_type = BENCH_TYPE.into();
        out.content = content(t, self.size);
        match self.client.send(out).await {
            Ok(s) => {
                let took = Instant::now().duration_since(scheduled);
                self.puback
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(took);
                self.pair
                    .ledger
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .acked(0, s.uid, s.seq);
                self.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                eprintln!("  send failed: {e}");
                false
            }
        }
    }
}

pub async fn pairs(target: &Target, load: &Load) -> anyhow::Result<Record> {
    let scenario = if load.rate.is_some() { "rate" } else { "pairs" };
    let mut record = Record::new(
        scenario,
        target,
        json!({
            "pairs": load.pairs, "window": load.window, "rate": load.rate,
            "secs": load.secs, "size": load.size, "bothWays": target.both_ways,
        }),
    );
    let tag = run_tag();
    let epoch = Instant::now();
    let pairs: Vec<Arc<Pair>> = (0..load.pairs)
        .map(|_| {
            Arc::new(Pair {
                ledger: Mutex::new(Ledger::default()),
            })
        })
        .collect();
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let received_in_window = Arc::new(AtomicU64::new(0));
    let e2e = Arc::new(Mutex::new(Latencies::default()));
    let puback = Arc::new(Mutex::new(Latencies::default()));

    // Receivers first, so nothing is sent to a user who is not connected yet.
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    // The end of the measured window, known once the window starts.
    let window_end = Arc::new(std::sync::OnceLock::<Instant>::new());
    for (i, pair) in pairs.iter().enumerate() {
        let (rx_client, mut events) = target
            .pair_client(i, false, &format!("r{tag}-{i}"), "bench")
            .await?;
        let (pair, received, received_in_window, e2e, window_end) = (
            pair.clone(),
            received.clone(),
            received_in_window.clone(),
            e2e.clone(),
            window_end.clone(),
        );
        receivers.push(tokio::spawn(async move {
            let mut local = Latencies::default();
            while let Some(e) = events.recv().await {
                if let Event::Message(m) = e {
                    let now = Instant::now();
                    if let Some(t) = sent_at(&m.content) {
                        local.record(
                            now.duration_since(epoch)
                                .saturating_sub(Duration::from_nanos(t)),
                        );
                    }
                    pair.ledger
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .received(0, &m.uid, m.seq);
                    received.fetch_add(1, Ordering::Relaxed);
                    if window_end.get().is_some_and(|end| now < *end) {
                        received_in_window.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            e2e.lock().unwrap_or_else(|p| p.into_inner()).extend(local);
        }));
        let (tx_client, _tx_events) = target
            .pair_client(i, true, &format!("s{tag}-{i}"), "bench")
            .await?;
        senders.push((tx_client, _tx_events, rx_client, format!("r{tag}-{i}")));
    }

    let done = Arc::new(AtomicBool::new(false));
    progress(
        scenario,
        vec![("sent", sent.clone()), ("received", received.clone())],
        done.clone(),
    );
    // The measured window starts now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let window_start = Instant::now();
    let before = target.reading();
    let steal_before = super::procstat::machine_steal();
    let deadline = window_start + Duration::from_secs(load.secs);
    let _ = window_end.set(deadline);
    let contexts: Vec<SendCtx> = (0..load.pairs)
        .map(|i| SendCtx {
            client: senders[i].0.clone(),
            to: senders[i].3.clone(),
            pair: pairs[i].clone(),
            sent: sent.clone(),
            puback: puback.clone(),
            size: load.size,
            epoch,
        })
        .collect();
    let mut tasks = Vec::new();
    match load.rate {
        None => {
            for ctx in &contexts {
                for _ in 0..load.window.max(1) {
                    let ctx = ctx.clone();
                    tasks.push(tokio::spawn(async move {
                        while Instant::now() < deadline {
                            if !ctx.send(Instant::now()).await {
                                break;
                            }
                        }
                    }));
                }
            }
        }
        Some(rate) => {
            let timer = super::timer::PreciseTimer::new()?;
            for (n, scheduled) in schedule(window_start, rate, load.secs).enumerate() {
                timer.sleep_until(scheduled).await?;
                let ctx = contexts[n % contexts.len().max(1)].clone();
                tasks.push(tokio::spawn(async move {
                    ctx.send(scheduled).await;
                }));
            }
        }
    }
    for t in tasks {
        t.await?;
    }
    let sending_ended = Instant::now();
    let after = target.reading();
    let steal = super::procstat::machine_steal()
        .zip(steal_before)
        .map(|(a, b)| a.saturating_sub(b));
    // Drain: wait until every acknowledged message has reached its receiver.
    let drain_deadline = Instant::now() + DRAIN;
    while Instant::now() < drain_deadline
        && !pairs.iter().all(|p| {
            p.ledger
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .complete()
        })
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, Ordering::Relaxed);
    for (tx, _, rx, _) in &senders {
        tx.close().await;
        rx.close().await;
    }
    for r in receivers {
        r.await?;
    }
    let verdict = pairs.iter().fold(
        Verdict {
            acked: 0,
            received: 0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
        },
        |acc, p| {
            let v = p.ledger.lock().unwrap_or_else(|p| p.into_inner()).verdict();
            Verdict {
                acked: acc.acked + v.acked,
                received: acc.received + v.received,
                lost: acc.lost + v.lost,
                duplicated: acc.duplicated + v.duplicated,
                out_of_order: acc.out_of_order + v.out_of_order,
            }
        },
    );
    let window = sending_ended.duration_since(window_start).as_secs_f64();
    let in_window = received_in_window.load(Ordering::Relaxed) as f64;
    record.figure("sent", "messages acknowledged", verdict.acked as f64, "");
    record.figure("received", "messages received", verdict.received as f64, "");
    record.figure("lost", "lost", verdict.lost as f64, "");
    record.figure("duplicated", "duplicated", verdict.duplicated as f64, "");
    record.figure(
        "outOfOrder",
        "out of order",
        verdict.out_of_order as f64,
        "",
    );
    record.figure(
        "deliveredPerSec",
        "delivered",
        in_window / load.secs.max(1) as f64,
        "msg/s",
    );
    if let Some(rate) = load.rate {
        record.figure("offeredPerSec", "offered", rate as f64, "msg/s");
    }
    record.percentiles(
        "puback",
        "PUBACK",
        &mut puback.lock().unwrap_or_else(|p| p.into_inner()),
    );
    record.percentiles(
        "e2e",
        "end-to-end",
        &mut e2e.lock().unwrap_or_else(|p| p.into_inner()),
    );
    record.server_cost(
        (before, after),
        window,
        verdict.received,
        ("serverCpuUsPerMessage", "server CPU per delivered message"),
        steal,
    );
    if let Some(peak) = target.peak_rss_kib() {
        record.figure("serverPeakRssKib", "server peak RSS", peak as f64, "KiB");
    }
    record.verdict = Some(verdict);
    Ok(record)
}

pub async fn sync(target: &Target, messages: usize, page: u32) -> anyhow::Result<Record> {
    let mut record = Record::new(
        "sync",
        target,
        json!({ "messages": messages, "page": page }),
    );
    let tag = run_tag();
    let (sender, _e) = target.client(&format!("ys{tag}"), "bench").await?;
    let receiver = format!("yr{tag}");
    // Fill the inbox, 64 sends in flight.
    let filled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    progress("sync fill", vec![("stored", filled.clone())], done.clone());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let next = Arc::new(AtomicU64::new(0));
    let fill_start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (sender, to, next, filled, ledger) = (
            sender.clone(),
            receiver.clone(),
            next.clone(),
            filled.clone(),
            ledger.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < messages {
                let mut out = Outgoing::text(&to, "");
                out.msg_type = BENCH_TYPE.into();
                out.content = content(0, 64);
                let sent = sender.send(out).await?;
                ledger
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .acked(0, sent.uid, sent.seq);
                filled.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let fill_time = fill_start.elapsed();
    done.store(true, Ordering::Relaxed);
    sender.close().await;

    // A fresh device of the receiver syncs everything.
    let before = target.reading();
    let start = Instant::now();
    let mut config = target.client_config(&receiver, "fresh-device")?;
    config.sync_page = page;
    let (client, mut events) = Client::connect(config).await?;
    let mut got = 0usize;
    while got < messages {
        match tokio::time::timeout(super::DRAIN, events.recv()).await {
            Ok(Some(Event::Message(m))) => {
                ledger
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .received(0, &m.uid, m.seq);
                got += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let took = start.elapsed();
    let after = target.reading();
    client.close().await;
    let verdict = ledger.lock().unwrap_or_else(|p| p.into_inner()).verdict();
    record.figure("stored", "messages stored", messages as f64, "");
    record.figure(
        "fillPerSec",
        "store rate while filling",
        messages as f64 / fill_time.as_secs_f64(),
        "msg/s",
    );
    record.figure("synced", "messages synced", got as f64, "");
    record.figure("syncSecs", "sync time", took.as_secs_f64(), "s");
    record.figure(
        "syncPerSec",
        "sync rate",
        got as f64 / took.as_secs_f64(),
        "msg/s",
    );
    if let (Some(b), Some(a)) = (before, after) {
        record.figure(
            "serverCpuMs",
            "server CPU during sync",
            a.cpu.saturating_sub(b.cpu).as_secs_f64() * 1000.0,
            "ms",
        );
    }
    record.verdict = Some(verdict);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_loop_schedule_is_evenly_spaced_from_the_start() {
        let start = Instant::now();
        let times: Vec<Instant> = schedule(start, 4, 2).collect();
        assert_eq!(times.len(), 8);
        assert_eq!(times[0], start);
        for (n, t) in times.iter().enumerate() {
            let expected = Duration::from_millis(250 * n as u64);
            let got = t.duration_since(start);
            assert!(
                got.abs_diff(expected) < Duration::from_micros(1),
                "{n}: {got:?}"
            );
        }
        assert!(times.iter().all(|t| *t < start + Duration::from_secs(2)));
        assert_eq!(schedule(start, 0, 5).count(), 0);
    }

    #[test]
    fn content_has_the_size_asked_and_carries_the_time() {
        let minimal = content(123_456_789, 0).len();
        for size in [0, 10, 64, 1000] {
            let c = content(123_456_789, size);
            assert_eq!(c.len(), size.max(minimal));
            assert_eq!(sent_at(&c), Some(123_456_789));
        }
        let v: serde_json::Value = serde_json::from_str(&content(987_654_321, 64)).unwrap();
        assert!(
            v["text"].as_str().is_some_and(|t| t.len() > 20),
            "a searchable text"
        );
    }
}
