//! `group`: one group of G members, S of whom send at a combined fixed rate (open loop, latency
//! from the scheduled send time). Every member must receive every acknowledged message of the
//! others exactly once, in seq order; the run fails otherwise.
//!
//! The senders are SDK clients. The members that only listen are lean, as in the chatroom bench
//! (one thread for all of them, frames read in place), so the generator is not the hidden
//! bottleneck: a group message is an inbox delivery, so each lean member also acknowledges what
//! it holds as the SDK does — one QUERYCON of its cursor (the highest inbox seq it holds with
//! none missing below) at most 50 ms after the first entry it has not acknowledged, or once 64
//! wait.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tidings_client::{Client, Event, Events, Outgoing};
use tidings_proto::conversation_type;
use tidings_proto::v1::{self, frame::Body};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;

use super::chatroom::{
    MemberThread, OPEN_TIMEOUT, Ws, client_frame, connect, lean_endpoint, poll_frames, wire,
};
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
    /// Why a lean member's connection ended before the run did.
    ended: Option<String>,
    /// Frames a lean member could not read.
    malformed: u64,
}

/// What every member counts into.
struct Counters {
    group: String,
    /// The zero of the send times carried in the content.
    epoch: Instant,
    window_end: std::sync::OnceLock<Instant>,
    received: Arc<AtomicU64>,
    received_in_window: AtomicU64,
}

impl Seen {
    /// One bench message of the group, with seq `seq`, received at `now`.
    fn message(&mut self, seq: u64, sent: Option<u64>, counters: &Counters, now: Instant) {
        if let Some(t) = sent {
            self.latencies.record(
                now.duration_since(counters.epoch)
                    .saturating_sub(Duration::from_nanos(t)),
            );
        }
        if !self.seqs.insert(seq) {
            self.duplicated += 1;
            return;
        }
        if seq < self.last {
            self.out_of_order += 1;
        }
        self.last = self.last.max(seq);
        counters.received.fetch_add(1, Ordering::Relaxed);
        if counters.window_end.get().is_some_and(|end| now < *end) {
            counters.received_in_window.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Inbox entries a lean member holds without acknowledging before it acknowledges them.
const ACK_AFTER: u64 = 64;
/// How long a lean member holds an entry before acknowledging it.
const ACK_WITHIN: Duration = Duration::from_millis(50);

/// A lean member's inbox position: the highest seq it holds with none missing below, and the
/// seqs it holds above a gap.
#[derive(Default)]
struct Cursor {
    at: u64,
    ahead: std::collections::BTreeSet<u64>,
    acknowledged: u64,
}

impl Cursor {
    fn hold(&mut self, inbox_seq: u64) {
        if inbox_seq <= self.at {
            return;
        }
        self.ahead.insert(inbox_seq);
        while self.ahead.remove(&(self.at + 1)) {
            self.at += 1;
        }
    }
}

/// Why a lean member's task woke.
enum Wake {
    Stop,
    Ended(String),
    Acknowledge,
    Ping,
}

/// A lean member's life: reads the group's deliveries until `stop`, acknowledging them
/// cumulatively and sending a PINGREQ every heartbeat interval.
async fn lean_member(
    mut ws: Ws,
    heartbeat: Duration,
    counters: Arc<Counters>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Seen {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;
    use tokio::io::AsyncWriteExt;

    let mut seen = Seen::default();
    let mut cursor = Cursor::default();
    let ping = client_frame(Body::Pingreq(v1::PingReq {}));
    let pinging = tokio::time::sleep(heartbeat);
    tokio::pin!(pinging);
    let acking = tokio::time::sleep(ACK_WITHIN);
    tokio::pin!(acking);
    let mut ack_armed = false;
    loop {
        let wake = std::future::poll_fn(|cx| {
            if Pin::new(&mut stop).poll(cx).is_ready() {
                return Poll::Ready(Wake::Stop);
            }
            let mut now = None;
            let (_, ended) = poll_frames(&mut ws, cx, &mut |bytes| match wire::read_inbox(bytes) {
                Ok(wire::View::Message(p)) => {
                    cursor.hold(p.inbox_seq);
                    if p.msg_type == BENCH_TYPE.as_bytes()
                        && p.conversation_type == conversation_type::GROUP
                        && p.target_id == counters.group.as_bytes()
                    {
                        let now = *now.get_or_insert_with(Instant::now);
                        seen.message(p.seq, wire::sent_at(p.content), &counters, now);
                    }
                }
                Ok(wire::View::Other { .. }) => {}
                Err(wire::Malformed) => seen.malformed += 1,
            });
            if let Some(why) = ended {
                return Poll::Ready(Wake::Ended(why));
            }
            let waiting = cursor.at - cursor.acknowledged;
            if waiting >= ACK_AFTER {
                return Poll::Ready(Wake::Acknowledge);
            }
            if waiting > 0 {
                if !ack_armed {
                    acking.as_mut().reset(Instant::now() + ACK_WITHIN);
                    ack_armed = true;
                }
                if acking.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Acknowledge);
                }
            }
            if pinging.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Ping);
            }
            Poll::Pending
        })
        .await;
        let frame = match wake {
            Wake::Stop => break,
            Wake::Ended(why) => {
                seen.ended = Some(why);
                break;
            }
            Wake::Acknowledge => {
                cursor.acknowledged = cursor.at;
                ack_armed = false;
                client_frame(Body::Querycon(v1::QueryCon {
                    query_id: 0,
                    inbox_seq: cursor.at,
                }))
            }
            Wake::Ping => {
                pinging.as_mut().reset(Instant::now() + heartbeat);
                ping.clone()
            }
        };
        if !matches!(
            tokio::time::timeout(heartbeat, ws.stream.write_all(&frame)).await,
            Ok(Ok(()))
        ) {
            seen.ended = Some("a frame could not be sent".into());
            break;
        }
    }
    seen
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
    let counters = Arc::new(Counters {
        group: group.clone(),
        epoch: Instant::now(),
        window_end: std::sync::OnceLock::new(),
        received: Arc::new(AtomicU64::new(0)),
        received_in_window: AtomicU64::new(0),
    });
    let connect_start = Instant::now();
    // The senders first (the first of them owns the group), then the lean members.
    let clients = connect_all(target, &users[..load.senders], load.concurrency).await?;
    let (url, remote) = lean_endpoint(target, &users[0]).await?;
    let members_thread = MemberThread::start()?;
    let gate = Arc::new(Semaphore::new(load.concurrency.max(1)));
    let mut opening = Vec::with_capacity(load.members - load.senders);
    for (i, user) in users.iter().enumerate().skip(load.senders) {
        let (token, url, gate) = (target.token(user)?, url.clone(), gate.clone());
        let local = std::net::IpAddr::from([127, 0, 1, (i % 16) as u8 + 1]);
        opening.push(members_thread.handle.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            tokio::time::timeout(OPEN_TIMEOUT, connect(&url, remote, local, token))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer in {OPEN_TIMEOUT:?}")))
        }));
    }
    let mut lean = Vec::with_capacity(opening.len());
    for o in opening {
        lean.push(o.await??);
    }
    eprintln!(
        "  {} members connected in {:.1} s",
        clients.len() + lean.len(),
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

    let epoch = counters.epoch;
    let mut receivers = Vec::with_capacity(load.members);
    let mut stops = Vec::with_capacity(lean.len());
    let mut senders = Vec::with_capacity(load.senders);
    for (client, mut events) in clients {
        let counters = counters.clone();
        receivers.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            while let Some(e) = events.recv().await {
                let Event::Message(m) = e else { continue };
                if m.msg_type != BENCH_TYPE {
                    continue;
                }
                seen.message(m.seq, sent_at(&m.content), &counters, Instant::now());
            }
            seen
        }));
        senders.push(client);
    }
    for (ws, heartbeat) in lean {
        let (stop, stopped) = oneshot::channel();
        stops.push(stop);
        receivers.push(members_thread.handle.spawn(lean_member(
            ws,
            heartbeat,
            counters.clone(),
            stopped,
        )));
    }
    let received = counters.received.clone();
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
    let _ = counters.window_end.set(deadline);
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
    for c in &senders {
        c.close().await;
    }
    for stop in stops {
        // A member whose connection ended has dropped its receiver and returns regardless.
        let _ = stop.send(());
    }
    let mut e2e = Latencies::default();
    let mut verdict = Verdict {
        acked: expected,
        received: 0,
        lost: 0,
        duplicated: 0,
        out_of_order: 0,
    };
    let mut ended = Vec::new();
    let mut malformed = 0;
    for (i, r) in receivers.into_iter().enumerate() {
        let seen = r.await?;
        ended.extend(seen.ended.clone());
        malformed += seen.malformed;
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
        counters.received_in_window.load(Ordering::Relaxed) as f64 / load.secs.max(1) as f64,
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
    record.ended_early(&ended);
    if malformed > 0 {
        record
            .failures
            .push(format!("{malformed} frames could not be read"));
    }
    drop(members_thread);
    record.verdict = Some(verdict);
    Ok(record)
}
