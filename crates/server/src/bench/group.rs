//! `group`: one group of G members, S of whom send at a combined fixed rate (open loop, latency
//! from the scheduled send time). Every member must receive every acknowledged message of the
//! others exactly once, in seq order; the run fails otherwise.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tidings_client::{Client, Event, Events, Outgoing};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::scenarios::{BENCH_TYPE, content, progress, schedule, sent_at};
use super::{DRAIN, Latencies, Record, Seqs, Target, Verdict, procstat, run_tag};

/// The group load.
#[derive(Debug, Clone)]
pub struct GroupLoad {
    pub members: usize,
    pub senders: usize,
    /// Messages per second over all senders.
    pub rate: u64,
    pub secs: u64,
    pub size: usize,
    /// Connection attempts in flight at once while members connect.
    pub concurrency: usize,
}

/// What one member saw of the group.
#[derive(Debug, Default)]
struct Seen {
    seqs: Seqs,
    last: u64,
    duplicated: u64,
    out_of_order: u64,
    latencies: Latencies,
}

/// Connects `users`, at most `concurrency` at a time, spread over local source addresses.
async fn connect_all(
    target: &Target,
    users: &[String],
    concurrency: usize,
) -> anyhow::Result<Vec<(Client, Events)>> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(users.len());
    for (i, user) in users.iter().enumerate() {
        let mut config = target.client_config(user, "bench")?;
        config.local_addr = Some(std::net::IpAddr::from([127, 0, 1, (i % 16) as u8 + 1]));
        let gate = gate.clone();
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            Client::connect(config)
                .await
                .with_context(|| format!("connecting {user}"))
        }));
    }
    let mut clients = Vec::with_capacity(users.len());
    for t in tasks {
        clients.push(t.await??);
    }
    Ok(clients)
}

pub async fn group(target: &Target, load: &GroupLoad) -> anyhow::Result<Record> {
    anyhow::ensure!(
        load.senders >= 1 && load.senders <= load.members,
        "--senders is 1 to --members"
    );
    let mut record = Record::new(
        "group",
        target,
        json!({
            "members": load.members, "senders": load.senders, "rate": load.rate,
            "secs": load.secs, "size": load.size,
        }),
    );
    let tag = run_tag();
    let group = format!("g{tag}");
    let users: Vec<String> = (0..load.members).map(|i| format!("m{tag}-{i}")).collect();
    let connect_start = Instant::now();
    let clients = connect_all(target, &users, load.concurrency).await?;
    eprintln!(
        "  {} members connected in {:.1} s",
        clients.len(),
        connect_start.elapsed().as_secs_f64()
    );
    target
        .api(
            "POST",
            "/api/v1/groups",
            json!({ "groupId": group, "ownerId": users[0], "memberIds": users }),
        )
        .await
        .context("creating the group")?;

    let epoch = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let received_in_window = Arc::new(AtomicU64::new(0));
    let window_end = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut receivers = Vec::with_capacity(clients.len());
    let mut senders = Vec::with_capacity(load.senders);
    let mut keep = Vec::with_capacity(clients.len());
    for (i, (client, mut events)) in clients.into_iter().enumerate() {
        let (received, received_in_window, window_end) = (
            received.clone(),
            received_in_window.clone(),
            window_end.clone(),
        );
        receivers.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            while let Some(e) = events.recv().await {
                let Event::Message(m) = e else { continue };
                if m.msg_type != BENCH_TYPE {
                    continue;
                }
                let now = Instant::now();
                if let Some(t) = sent_at(&m.content) {
                    seen.latencies.record(
                        now.duration_since(epoch)
                            .saturating_sub(Duration::from_nanos(t)),
                    );
                }
                if !seen.seqs.insert(m.seq) {
                    seen.duplicated += 1;
                    continue;
                }
                if m.seq < seen.last {
                    seen.out_of_order += 1;
                }
                seen.last = seen.last.max(m.seq);
                received.fetch_add(1, Ordering::Relaxed);
                if window_end.get().is_some_and(|end| now < *end) {
                    received_in_window.fetch_add(1, Ordering::Relaxed);
                }
            }
            seen
        }));
        if i < load.senders {
            senders.push(client.clone());
        }
        keep.push(client);
    }

    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    progress(
        "group",
        vec![("sent", sent.clone()), ("delivered", received.clone())],
        done.clone(),
    );
    // (seq, sender index) of every acknowledged message.
    let acked = Arc::new(Mutex::new(Vec::<(u64, usize)>::new()));
    let puback = Arc::new(Mutex::new(Latencies::default()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let generator = procstat::read(std::process::id(), procstat::ticks_per_second()).ok();
    let before = target.reading();
    let steal_before = procstat::machine_steal();
    let window_start = Instant::now();
    let deadline = window_start + Duration::from_secs(load.secs);
    let _ = window_end.set(deadline);
    let timer = super::timer::PreciseTimer::new()?;
    let mut tasks = Vec::new();
    for (n, scheduled) in schedule(window_start, load.rate, load.secs).enumerate() {
        timer.sleep_until(scheduled).await?;
        let who = n % senders.len();
        let client = senders[who].clone();
        let (acked, puback, sent, group) =
            (acked.clone(), puback.clone(), sent.clone(), group.clone());
        let size = load.size;
        tasks.push(tokio::spawn(async move {
            let t = scheduled.duration_since(epoch).as_nanos() as u64;
            let out = Outgoing {
                msg_type: BENCH_TYPE.into(),
                content: content(t, size),
                ..Outgoing::group_text(&group, "")
            };
            match client.send(out).await {
                Ok(s) => {
                    puback
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(Instant::now().duration_since(scheduled));
                    acked
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((s.seq, who));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => eprintln!("  send failed: {e}"),
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let sending_ended = Instant::now();
    let after = target.reading();
    let generator_after = procstat::read(std::process::id(), procstat::ticks_per_second()).ok();
    let steal = procstat::machine_steal()
        .zip(steal_before)
        .map(|(a, b)| a.saturating_sub(b));
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));
    // Each message goes to every member but its sender.
    let expected = acked.len() as u64 * (load.members as u64 - 1);
    let drain_deadline = Instant::now() + DRAIN;
    while Instant::now() < drain_deadline && received.load(Ordering::Relaxed) < expected {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, Ordering::Relaxed);
    for c in &keep {
        c.close().await;
    }
    let mut e2e = Latencies::default();
    let mut verdict = Verdict {
        acked: expected,
        received: 0,
        lost: 0,
        duplicated: 0,
        out_of_order: 0,
    };
    for (i, r) in receivers.into_iter().enumerate() {
        let seen = r.await?;
        verdict.received += seen.seqs.len() + seen.duplicated;
        verdict.duplicated += seen.duplicated;
        verdict.out_of_order += seen.out_of_order;
        verdict.lost += acked
            .iter()
            .filter(|(seq, who)| *who != i && !seen.seqs.contains(*seq))
            .count() as u64;
        e2e.extend(seen.latencies);
    }

    let window = sending_ended.duration_since(window_start).as_secs_f64();
    record.figure("sent", "messages acknowledged", acked.len() as f64, "");
    record.figure("expected", "deliveries expected", expected as f64, "");
    record.figure(
        "received",
        "deliveries received",
        verdict.received as f64,
        "",
    );
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
        "deliveries",
        received_in_window.load(Ordering::Relaxed) as f64 / load.secs.max(1) as f64,
        "msg/s",
    );
    record.percentiles(
        "puback",
        "PUBACK",
        &mut puback.lock().unwrap_or_else(|p| p.into_inner()),
    );
    record.percentiles("e2e", "delivery", &mut e2e);
    if let (Some(b), Some(a)) = (generator, generator_after) {
        record.figure(
            "generatorCpuPercent",
            "load generator CPU",
            a.cpu.saturating_sub(b.cpu).as_secs_f64() * 100.0 / window,
            "% of one core",
        );
    }
    record.server_cost(
        (before, after),
        window,
        verdict.received,
        ("serverCpuUsPerDelivery", "server CPU per delivery"),
        steal,
    );
    record.verdict = Some(verdict);
    Ok(record)
}
