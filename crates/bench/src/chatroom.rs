//! `chatroom`: N members in one chatroom, S of them sending at a combined fixed rate (open loop,
//! latency from the scheduled send time), with the room's loss accounting. A chatroom may drop
//! items for a member that falls behind, but never silently: every acknowledged message of the
//! others must reach each member exactly once, in seq order, or be reported dropped by a gap
//! marker, and the markers' counts must add up to exactly what the member missed. The run fails
//! otherwise.
//!
//! The target load is a 10,000-member room at 100 messages a second — a million deliveries a
//! second — on the machine that also runs the server, so the generator must not be the hidden
//! bottleneck. The members that only listen are therefore not SDK clients: each is one task, all
//! of them on one thread of their own ([`MemberThread`]), over its own WebSocket, framed by hand
//! ([`wsframe`]: a library's cost per frame was most of the generator's); it reads the few fields
//! it needs from a frame in place (an allocation-free protobuf walk, [`wire`]), keeps its seqs in
//! a bitmap, and counts latencies into a shared histogram. The senders are SDK
//! clients and members too; the SDK presents their room's stream.
//!
//! Why the accounting is exact. A member is owed every item of the room's stream after its join
//! (the join's answer carries the room's seq then) — the members' messages and the room's
//! notices alike, which share the seq counter — except its own messages. So each seq of the
//! member's window is one item owed, whatever its kind, and the member need not know which seqs
//! are notices. A gap marker reports `count` dropped items with seqs in `[fromSeq, toSeq]`
//! (others in the range may have arrived). The server notes drops in seq order and reports them
//! at the latest once the member's queue drains, so once the stream has settled, every drop up to
//! the highest seq the member has heard of (received, or a marker's `toSeq`) has been reported,
//! and these checks are exact:
//! - no seq is received twice, and received seqs only increase;
//! - every seq not received (messages and notices alike) lies in some marker's range;
//! - no marker counts more items than are missing in its range;
//! - the counts of all markers add up to the number of seqs not received.
//!
//! Markers may overlap (a marker sent ahead of an item that fitted can span a later drop, which a
//! later marker reports), so the per-range bound and the sum are checked separately.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tidings_client::{ChatroomEvent, Client, Event, Events, Outgoing};
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{CHATROOM_EVENT_TYPE, Encoding, GAP_EVENT_TYPE, codec, conversation_type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;

use super::scenarios::{BENCH_TYPE, content, progress, schedule};
use super::{DRAIN, Latencies, Record, Seqs, Target, Verdict, procstat, run_tag, wsframe};

/// The priority the senders give their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SendPriority {
    Low,
    Normal,
}

/// The chatroom load.
#[derive(Debug, Clone)]
pub struct ChatroomLoad {
    /// Members in the room, the senders among them.
    pub members: usize,
    pub senders: usize,
    /// Messages per second over all senders.
    pub rate: u64,
    pub secs: u64,
    pub size: usize,
    pub priority: SendPriority,
    /// Connection attempts in flight at once while members connect.
    pub concurrency: usize,
}

/// How long a member may take to connect and join.
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest frame a member reads (the server's frames here are a few hundred bytes).
const MAX_FRAME: usize = 1 << 20;
/// Shards of the latency histogram: each thread counts into its own (threads beyond this many
/// share), so the runtime's threads do not contend for the counters.
const SHARDS: usize = 8;

/// A lean member's connection: its socket, and the bytes read of a frame not yet whole.
pub(super) struct Ws {
    pub(super) stream: TcpStream,
    buf: Vec<u8>,
}

/// What the run's driver reads of a member while it runs. Each member writes only its own, and
/// on a cache line of its own, so members on different threads do not contend.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Live {
    /// The highest seq accounted for: received, or in a gap marker's range.
    cover: AtomicU64,
    /// Items received once plus the items gap markers reported dropped.
    accounted: AtomicU64,
    /// Bench messages received once.
    delivered: AtomicU64,
    /// The member's connection ended (or it left the room) before the run did.
    ended: AtomicBool,
}

/// What every member shares.
struct Shared {
    room: String,
    /// The zero of the send times carried in the content.
    epoch: Instant,
    /// The end of the measured window, known once it starts.
    window_end: OnceLock<Instant>,
    e2e: Histogram,
    live: Box<[Live]>,
}

/// A gap marker: `count` items with seqs in `[from, to]` were dropped for the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    count: u64,
    from: u64,
    to: u64,
}

/// What one member saw of the room's stream.
#[derive(Debug, Default)]
struct Seen {
    /// The room's seq when the member joined: it is owed the items after it.
    join: u64,
    /// Seqs received, counted from `join`.
    seqs: Seqs,
    /// Items received once.
    received: u64,
    /// The highest seq received.
    last: u64,
    /// The highest seq received or named by a marker.
    cover: u64,
    /// Bench messages received once, and those of them within the measured window.
    messages: u64,
    in_window: u64,
    notices: u64,
    /// Items of the room of another type, and frames that were not what a member expects.
    others: u64,
    unexpected: u64,
    duplicated: u64,
    out_of_order: u64,
    /// Items at or before the join seq (the server owes the member none).
    early: u64,
    markers: Vec<Marker>,
    /// The sum of the markers' counts.
    marked: u64,
    malformed: u64,
    /// Why the member's connection ended early, if it did.
    ended: Option<String>,
}

/// What an item of the room's stream is, for the accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A bench message, sent at this many nanoseconds after the epoch (if the content says).
    Bench(Option<u64>),
    Notice,
    Other,
}

impl Seen {
    fn new(join: u64) -> Seen {
        Seen {
            join,
            cover: join,
            ..Seen::default()
        }
    }

    /// An item of the room at `seq`, received at `now`; returns whether it is new (not a repeat,
    /// and after the join).
    fn item(&mut self, seq: u64, kind: Kind, shared: &Shared, now: Instant) -> bool {
        if seq <= self.join {
            self.early += 1;
            return false;
        }
        if !self.seqs.insert(seq - self.join) {
            self.duplicated += 1;
            return false;
        }
        if seq < self.last {
            self.out_of_order += 1;
        }
        self.received += 1;
        self.last = self.last.max(seq);
        self.cover = self.cover.max(seq);
        match kind {
            Kind::Bench(sent) => {
                self.messages += 1;
                if let Some(t) = sent {
                    let since = now.duration_since(shared.epoch).as_nanos() as u64;
                    shared.e2e.record(since.saturating_sub(t));
                }
                if shared.window_end.get().is_some_and(|end| now < *end) {
                    self.in_window += 1;
                }
            }
            Kind::Notice => self.notices += 1,
            Kind::Other => self.others += 1,
        }
        true
    }

    fn marker(&mut self, count: u64, from: u64, to: u64) {
        self.markers.push(Marker { count, from, to });
        self.marked += count;
        self.cover = self.cover.max(to);
    }

    /// Tells the driver how far the member is.
    fn publish(&self, live: &Live) {
        live.cover.store(self.cover, Ordering::Relaxed);
        live.accounted
            .store(self.received + self.marked, Ordering::Relaxed);
        live.delivered.store(self.messages, Ordering::Relaxed);
    }

    /// Takes one frame a lean member read at `now`.
    fn frame(&mut self, bytes: &[u8], shared: &Shared, now: Instant) {
        let pushed = match wire::read(bytes) {
            Ok(wire::View::Message(p)) => p,
            Ok(wire::View::Other { kind }) => {
                if kind == wire::DISCONNECT {
                    let why = match codec::decode(bytes, Encoding::Protobuf, MAX_FRAME) {
                        Ok(v1::Frame {
                            body: Some(Body::Disconnect(d)),
                            ..
                        }) => format!("DISCONNECT {}: {}", d.code, d.message),
                        _ => "DISCONNECT".into(),
                    };
                    self.ended.get_or_insert(why);
                } else if kind != wire::PINGRESP {
                    self.unexpected += 1;
                }
                return;
            }
            Err(wire::Malformed) => {
                self.malformed += 1;
                return;
            }
        };
        if pushed.conversation_type != conversation_type::CHATROOM
            || pushed.qos != 0
            || pushed.target_id != shared.room.as_bytes()
        {
            self.unexpected += 1;
            return;
        }
        if pushed.msg_type == GAP_EVENT_TYPE.as_bytes() {
            match wire::gap(pushed.content) {
                Some((count, from, to)) => self.marker(count, from, to),
                None => self.malformed += 1,
            }
            return;
        }
        let kind = if pushed.msg_type == BENCH_TYPE.as_bytes() {
            Kind::Bench(wire::sent_at(pushed.content))
        } else if pushed.msg_type == CHATROOM_EVENT_TYPE.as_bytes() {
            Kind::Notice
        } else {
            Kind::Other
        };
        self.item(pushed.seq, kind, shared, now);
    }
}

/// The accounting of one member's stream (see the module doc for why it is exact).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// Acknowledged messages of others after the member's join.
    expected: u64,
    /// Of those: received; missing and reported by a marker; missing and not reported.
    got: u64,
    reported: u64,
    lost: u64,
    /// Other items (notices, messages whose sender got no PUBACK) missing: reported, or not.
    other_reported: u64,
    other_lost: u64,
    /// Items missing up to the member's cover, and what the markers say they dropped.
    missing: u64,
    marked: u64,
    /// Markers that count more items than are missing in their range, or name seqs outside the
    /// member's window.
    bad_markers: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.expected += o.expected;
        self.got += o.got;
        self.reported += o.reported;
        self.lost += o.lost;
        self.other_reported += o.other_reported;
        self.other_lost += o.other_lost;
        self.missing += o.missing;
        self.marked += o.marked;
        self.bad_markers += o.bad_markers;
    }

    /// Whether the markers' counts add up to what was missed.
    fn balanced(&self) -> bool {
        self.marked == self.missing
    }
}

/// Accounts for one member: `acked` holds the seqs of every acknowledged message, `own` those of
/// this member's (it is not sent its own), `top` the highest acknowledged seq. Markers naming seqs
/// past `horizon` count as wrong and are not followed there (a server bug must not make the
/// accounting walk a billion seqs).
fn account(seen: &Seen, acked: &Seqs, own: &Seqs, top: u64, horizon: u64) -> Tally {
    let (join, cover) = (seen.join, seen.cover.min(horizon.max(seen.last)));
    let width = (cover - join) as usize;
    // Markers by coverage: +1 where a range starts, -1 after it ends, summed while walking.
    let mut edges = vec![0i32; width + 2];
    let mut t = Tally {
        marked: seen.marked,
        ..Tally::default()
    };
    for m in &seen.markers {
        if m.from <= join || m.from > m.to || m.to > cover {
            t.bad_markers += 1;
            continue;
        }
        edges[(m.from - join) as usize] += 1;
        edges[(m.to - join + 1) as usize] -= 1;
    }
    // missing_before[k]: slots missing among the first k of the window.
    let mut missing_before = Vec::with_capacity(width + 1);
    missing_before.push(0u64);
    let mut covering = 0i32;
    for k in 1..=width as u64 {
        let seq = join + k;
        covering += edges[k as usize];
        let mine = own.contains(seq);
        let message = acked.contains(seq) && !mine;
        let received = seen.seqs.contains(k);
        t.expected += u64::from(message);
        let missed = !mine && !received;
        missing_before.push(missing_before[k as usize - 1] + u64::from(missed));
        match (missed, message, covering > 0) {
            (false, true, _) => t.got += 1,
            (false, false, _) => {}
            (true, true, true) => t.reported += 1,
            (true, true, false) => t.lost += 1,
            (true, false, true) => t.other_reported += 1,
            (true, false, false) => t.other_lost += 1,
        }
    }
    t.missing = missing_before[width];
    for m in &seen.markers {
        if m.from <= join || m.from > m.to || m.to > cover {
            continue;
        }
        let in_range =
            missing_before[(m.to - join) as usize] - missing_before[(m.from - join - 1) as usize];
        if m.count > in_range {
            t.bad_markers += 1;
        }
    }
    // Acknowledged messages past everything the member heard of never came.
    for seq in cover.max(join) + 1..=top {
        if acked.contains(seq) && !own.contains(seq) {
            t.expected += 1;
            t.lost += 1;
        }
    }
    t
}

/// Delivery latencies in log-linear buckets: 64 per doubling, so a percentile is within 1.6% of
/// the exact one (below 128 ns, exact). A million deliveries a second would make a sample per
/// delivery the biggest thing the generator holds; buckets cost the same at any load.
struct Histogram {
    shards: Box<[Box<[AtomicU64]>]>,
}

/// Sub-buckets per doubling, as a power of two.
const SUB_BITS: u32 = 6;
const HALF: u64 = 1 << SUB_BITS;
/// Latencies are counted up to 2^42 ns (73 minutes).
const TOP_BITS: u32 = 42;
const BUCKETS: usize = (HALF * (TOP_BITS - SUB_BITS + 1) as u64) as usize;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            shards: (0..SHARDS)
                .map(|_| (0..BUCKETS).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    fn bucket(ns: u64) -> usize {
        let v = ns.min((1 << TOP_BITS) - 1);
        if v < 2 * HALF {
            return v as usize;
        }
        let shift = (63 - v.leading_zeros()) - SUB_BITS;
        (HALF * u64::from(shift + 1) + ((v >> shift) - HALF)) as usize
    }

    /// The smallest value of bucket `b`, and its width.
    fn bounds(b: usize) -> (u64, u64) {
        let b = b as u64;
        if b < 2 * HALF {
            return (b, 1);
        }
        let shift = b / HALF - 1;
        ((b % HALF + HALF) << shift, 1 << shift)
    }

    /// Counts `ns` in the shard of the calling thread.
    fn record(&self, ns: u64) {
        static THREADS: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = THREADS.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        let shard = SHARD.with(|s| *s);
        self.shards[shard][Histogram::bucket(ns)].fetch_add(1, Ordering::Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        (0..BUCKETS)
            .map(|b| {
                self.shards
                    .iter()
                    .map(|s| s[b].load(Ordering::Relaxed))
                    .sum()
            })
            .collect()
    }

    /// The nearest-rank percentiles `ps` (0-100), each the middle of its bucket; `None` without
    /// samples.
    fn percentiles(&self, ps: &[f64]) -> Option<Vec<Duration>> {
        let counts = self.counts();
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return None;
        }
        Some(
            ps.iter()
                .map(|p| {
                    let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as u64;
                    let mut seen = 0;
                    let b = counts
                        .iter()
                        .position(|c| {
                            seen += c;
                            seen >= rank
                        })
                        .unwrap_or(BUCKETS - 1);
                    let (low, width) = Histogram::bounds(b);
                    Duration::from_nanos(low + width / 2)
                })
                .collect(),
        )
    }

    #[cfg(test)]
    fn len(&self) -> u64 {
        self.counts().iter().sum()
    }
}

/// The WebSocket URL lean members open (made for `user`; any will do) and the server's IPv4
/// address, which they connect to from source addresses of their own: the receivers' server's
/// when one is set.
pub(super) async fn lean_endpoint(
    target: &Target,
    user: &str,
) -> anyhow::Result<(Arc<str>, SocketAddr)> {
    let url = target
        .client_config_at(target.receivers(), user, "bench")?
        .ws_url();
    if url.starts_with("wss://") {
        bail!(
            "the lean members of the group and chatroom scenarios speak plain ws:// only: \
             load an http:// listener (or use --spawn)"
        );
    }
    let authority = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .context("the server URL has no host")?;
    let remote = tokio::net::lookup_host(authority)
        .await?
        .find(SocketAddr::is_ipv4)
        .context("the server has no IPv4 address")?;
    Ok((url.into(), remote))
}

/// Opens a lean member's WebSocket from `local` and authenticates with `token`; returns the
/// socket and the heartbeat interval the server asks for.
pub(super) async fn connect(
    url: &str,
    remote: SocketAddr,
    local: IpAddr,
    token: String,
) -> anyhow::Result<(Ws, Duration)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    let mut stream = socket.connect(remote).await.context("TCP connect")?;
    stream.set_nodelay(true)?;
    let buf = wsframe::connect(&mut stream, url)
        .await
        .context("WebSocket handshake")?;
    let mut ws = Ws { stream, buf };
    send(
        &mut ws,
        Body::Connect(v1::Connect {
            protocol_version: tidings_proto::PROTOCOL_VERSION,
            token,
            device_id: "bench".into(),
            platform: "bench".into(),
        }),
    )
    .await?;
    let heartbeat = loop {
        match next_frame(&mut ws).await? {
            Body::Connack(ack) if ack.code == 0 => {
                break Duration::from_millis(u64::from(ack.heartbeat_ms.max(10)));
            }
            Body::Connack(ack) => bail!("CONNACK {}: {}", ack.code, ack.message),
            Body::Disconnect(d) => bail!("DISCONNECT {}: {}", d.code, d.message),
            _ => {}
        }
    };
    Ok((ws, heartbeat))
}

/// Opens a lean member's WebSocket as [`connect`] does and joins `room`; returns the socket, the
/// heartbeat interval, and the room's seq at the join.
async fn open(
    url: &str,
    remote: SocketAddr,
    local: IpAddr,
    token: String,
    room: &str,
) -> anyhow::Result<(Ws, Duration, u64)> {
    let (mut ws, heartbeat) = connect(url, remote, local, token).await?;
    send(
        &mut ws,
        Body::Query(v1::Query {
            query_id: 1,
            body: Some(v1::query::Body::JoinChatroom(v1::JoinChatroom {
                chatroom_id: room.into(),
                recent: 0,
                after_seq: 0,
            })),
        }),
    )
    .await?;
    // The server queues the answer under the room's lock, so no item of the room comes before it.
    loop {
        match next_frame(&mut ws).await? {
            Body::Queryack(ack) if ack.query_id == 1 => {
                if ack.code != 0 {
                    bail!("joining the room: {}: {}", ack.code, ack.message);
                }
                let seq = ack
                    .chatrooms
                    .first()
                    .context("the join answer has no room")?
                    .seq;
                return Ok((ws, heartbeat, seq));
            }
            Body::Disconnect(d) => bail!("DISCONNECT {}: {}", d.code, d.message),
            _ => {}
        }
    }
}

/// A client frame: masked, as a client's frames must be.
pub(super) fn client_frame(body: Body) -> Vec<u8> {
    let payload = codec::encode_protobuf(&codec::frame(body));
    let mut out = Vec::with_capacity(payload.len() + 14);
    wsframe::put(&mut out, wsframe::BINARY, &payload, Some(rand::random()));
    out
}

async fn send(ws: &mut Ws, body: Body) -> anyhow::Result<()> {
    ws.stream.write_all(&client_frame(body)).await?;
    Ok(())
}

/// The next frame during the handshake (decoded in full: there are two of them).
async fn next_frame(ws: &mut Ws) -> anyhow::Result<Body> {
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((opcode, payload, used)) = wsframe::take(&mut ws.buf, MAX_FRAME)? {
            let body = match opcode {
                wsframe::BINARY => {
                    codec::decode(&ws.buf[payload], Encoding::Protobuf, MAX_FRAME)?.body
                }
                wsframe::CLOSE => bail!("the server closed the connection"),
                _ => None,
            };
            ws.buf.drain(..used);
            if let Some(body) = body {
                return Ok(body);
            }
        }
        let n = ws.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        ws.buf.extend_from_slice(&chunk[..n]);
    }
}

thread_local! {
    /// What one read from a member's socket lands in (the members share a thread, so one will do).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// Takes the whole frames at the start of `bytes`, handing each binary one's payload to
/// `on_frame`; answers how many bytes they took, or why the connection is over.
fn frames(bytes: &mut [u8], on_frame: &mut dyn FnMut(&[u8])) -> Result<usize, String> {
    let mut at = 0;
    loop {
        match wsframe::take(&mut bytes[at..], MAX_FRAME) {
            Ok(Some((opcode, payload, used))) => {
                match opcode {
                    wsframe::BINARY => on_frame(&bytes[at + payload.start..at + payload.end]),
                    wsframe::CLOSE => return Err("closed by the server".into()),
                    // The server sends no WebSocket pings; a stray control frame is skipped.
                    _ => {}
                }
                at += used;
            }
            Ok(None) => return Ok(at),
            Err(e) => return Err(format!("{e:#}")),
        }
    }
}

/// Reads everything the socket has ready, handing each binary frame's payload to `on_frame`;
/// answers whether anything was read, and why the connection is over if it is. Registers for the
/// next readiness when the socket has nothing more.
pub(super) fn poll_frames(
    ws: &mut Ws,
    cx: &mut std::task::Context<'_>,
    on_frame: &mut dyn FnMut(&[u8]),
) -> (bool, Option<String>) {
    let mut read = false;
    let ended = SCRATCH.with_borrow_mut(|scratch| {
        loop {
            match ws.stream.poll_read_ready(cx) {
                Poll::Pending => break None,
                Poll::Ready(Err(e)) => break Some(format!("connection failed: {e}")),
                Poll::Ready(Ok(())) => {}
            }
            let n = match ws.stream.try_read(scratch) {
                Ok(0) => break Some("the server closed the connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => break Some(format!("connection failed: {e}")),
            };
            read = true;
            // A frame cut by the read waits in the member's own buffer.
            let taken = if ws.buf.is_empty() {
                frames(&mut scratch[..n], on_frame).map(|used| {
                    ws.buf.extend_from_slice(&scratch[used..n]);
                })
            } else {
                ws.buf.extend_from_slice(&scratch[..n]);
                frames(&mut ws.buf, on_frame).map(|used| {
                    ws.buf.drain(..used);
                })
            };
            if let Err(why) = taken {
                break Some(why);
            }
        }
    });
    (read, ended)
}

/// Why a lean member's task woke.
enum Wake {
    Stop,
    Ping,
    Ended(String),
}

/// A lean member's life after joining: reads the room's stream until `stop`, sending a PINGREQ
/// every heartbeat interval (the server drops a connection silent for three).
///
/// Each wakeup reads every frame that is ready before it looks at the stop signal and the
/// heartbeat again, and stamps them all with one clock reading: they came in one read from the
/// socket. (A `select!` per frame would poll three futures and read the clock a million times a
/// second more.)
async fn listen(
    mut ws: Ws,
    heartbeat: Duration,
    mut seen: Seen,
    shared: Arc<Shared>,
    index: usize,
    mut stop: oneshot::Receiver<()>,
) -> Seen {
    let live = &shared.live[index];
    let ping = client_frame(Body::Pingreq(v1::PingReq {}));
    let pinging = tokio::time::sleep(heartbeat);
    tokio::pin!(pinging);
    loop {
        let wake = std::future::poll_fn(|cx| {
            if Pin::new(&mut stop).poll(cx).is_ready() {
                return Poll::Ready(Wake::Stop);
            }
            let mut now = None;
            let (read, ended) = poll_frames(&mut ws, cx, &mut |bytes| {
                let now = *now.get_or_insert_with(Instant::now);
                seen.frame(bytes, &shared, now);
            });
            if read {
                seen.publish(live);
            }
            if let Some(why) = ended {
                return Poll::Ready(Wake::Ended(why));
            }
            if pinging.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Ping);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Stop => break,
            Wake::Ended(why) => {
                seen.ended.get_or_insert(why);
                break;
            }
            Wake::Ping => {
                let sent = tokio::time::timeout(heartbeat, ws.stream.write_all(&ping)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    seen.ended
                        .get_or_insert("a PINGREQ could not be sent".into());
                    break;
                }
                pinging.as_mut().reset(Instant::now() + heartbeat);
            }
        }
    }
    if seen.ended.is_some() {
        live.ended.store(true, Ordering::Relaxed);
    }
    seen
}

/// A sender's view of the room, as the SDK presents it, until `stop` (or the end of its events).
/// It must stop before its client is closed: a closing client may leave out events it was about
/// to present, and the stream would seem to have a hole.
async fn sender_stream(
    mut events: Events,
    mut seen: Seen,
    shared: Arc<Shared>,
    index: usize,
    mut stop: oneshot::Receiver<()>,
) -> Seen {
    let live = &shared.live[index];
    loop {
        let e = tokio::select! {
            biased;
            _ = &mut stop => break,
            e = events.recv() => match e {
                Some(e) => e,
                None => break,
            },
        };
        let Event::Chatroom(e) = e else { continue };
        match e {
            ChatroomEvent::Message(m) => {
                let kind = if m.msg_type == BENCH_TYPE {
                    Kind::Bench(wire::sent_at(m.content.as_bytes()))
                } else {
                    Kind::Other
                };
                seen.item(m.seq, kind, &shared, Instant::now());
            }
            ChatroomEvent::Notice(n) => {
                seen.item(n.seq, Kind::Notice, &shared, Instant::now());
            }
            ChatroomEvent::Gap(g) => seen.marker(g.count, g.from_seq, g.to_seq),
            ChatroomEvent::Left { code, .. } => {
                seen.ended.get_or_insert(format!("left the room ({code})"));
                live.ended.store(true, Ordering::Relaxed);
            }
        }
        seen.publish(live);
    }
    seen
}

/// The thread the lean members run on: a single-threaded runtime of their own. A member's work
/// per frame is small, so what a runtime adds to it shows: on one thread an event wakes its task
/// without crossing threads or stealing work, and the generator takes at most one core from the
/// server beside it. It stops when dropped (after the members' tasks are done with).
pub(super) struct MemberThread {
    pub(super) handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemberThread {
    pub(super) fn start() -> std::io::Result<MemberThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-members".into())
            .spawn(move || {
                // Either a stop or the sender's drop ends it.
                runtime.block_on(async { stopped.await.ok() });
            })?;
        Ok(MemberThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for MemberThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The thread may have ended already (a panic); joining below says so.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the bench members' thread panicked");
        }
    }
}

/// A member being connected: its answer once joined, and how to stop it.
struct Pending {
    joined: oneshot::Receiver<anyhow::Result<u64>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Seen>,
}

pub async fn chatroom(target: &Target, load: &ChatroomLoad) -> anyhow::Result<Record> {
    anyhow::ensure!(
        load.senders >= 1 && load.senders <= load.members,
        "--senders is 1 to --members"
    );
    let mut record = Record::new(
        "chatroom",
        target,
        json!({
            "members": load.members, "senders": load.senders, "rate": load.rate,
            "secs": load.secs, "size": load.size,
            "priority": match load.priority {
                SendPriority::Low => "low",
                SendPriority::Normal => "normal",
            },
            "concurrency": load.concurrency,
        }),
    );
    let tag = run_tag();
    let room = format!("c{tag}");
    let users: Vec<String> = (0..load.members).map(|i| format!("r{tag}-{i}")).collect();
    // Members 0..listeners are lean; the senders come after them.
    let listeners = load.members - load.senders;
    let shared = Arc::new(Shared {
        room: room.clone(),
        epoch: Instant::now(),
        window_end: OnceLock::new(),
        e2e: Histogram::new(),
        live: (0..load.members).map(|_| Live::default()).collect(),
    });
    let (url, remote) = lean_endpoint(target, &users[0]).await?;

    let joined_count = Arc::new(AtomicU64::new(0));
    let connecting = Arc::new(AtomicBool::new(false));
    progress(
        "chatroom joining",
        vec![("joined", joined_count.clone())],
        connecting.clone(),
    );
    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(load.concurrency.max(1)));
    let members_thread = MemberThread::start()?;
    let mut pending = Vec::with_capacity(listeners);
    for (i, user) in users.iter().take(listeners).enumerate() {
        let token = target.token(user)?;
        let (joined_tx, joined) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel();
        let (gate, url, shared, room, count) = (
            gate.clone(),
            url.clone(),
            shared.clone(),
            room.clone(),
            joined_count.clone(),
        );
        // Spread over source addresses: one address's ephemeral ports do not last 10,000
        // connections.
        let local = IpAddr::from([127, 0, 1, (i % 16) as u8 + 1]);
        let task = members_thread.handle.spawn(async move {
            let opened = match gate.acquire_owned().await {
                Ok(_permit) => {
                    tokio::time::timeout(OPEN_TIMEOUT, open(&url, remote, local, token, &room))
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer in {OPEN_TIMEOUT:?}")))
                }
                Err(e) => Err(e.into()),
            };
            match opened {
                Ok((ws, heartbeat, join)) => {
                    count.fetch_add(1, Ordering::Relaxed);
                    // The driver waits for every answer; if it gave up, nobody listens.
                    if joined_tx.send(Ok(join)).is_err() {
                        return Seen::new(join);
                    }
                    listen(ws, heartbeat, Seen::new(join), shared, i, stop_rx).await
                }
                Err(e) => {
                    let seen = Seen {
                        ended: Some(format!("{e:#}")),
                        ..Seen::default()
                    };
                    // As above: if the driver is gone, so is the need to know.
                    let _ = joined_tx.send(Err(e));
                    seen
                }
            }
        });
        pending.push(Pending { joined, stop, task });
    }
    let mut joins = Vec::with_capacity(load.members);
    let mut failures = Vec::new();
    for p in &mut pending {
        match (&mut p.joined).await {
            Ok(Ok(join)) => joins.push(join),
            Ok(Err(e)) => {
                joins.push(0);
                failures.push(format!("{e:#}"));
            }
            Err(_) => {
                joins.push(0);
                failures.push("the member's task ended".into());
            }
        }
    }
    if !failures.is_empty() {
        connecting.store(true, Ordering::Relaxed);
        for p in &pending {
            p.task.abort();
        }
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for f in &failures {
            match kinds.iter_mut().find(|(k, _)| k == f) {
                Some((_, n)) => *n += 1,
                None => kinds.push((f.clone(), 1)),
            }
        }
        let shown: Vec<String> = kinds
            .iter()
            .take(5)
            .map(|(k, n)| format!("{n} × {k}"))
            .collect();
        bail!(
            "{} of {listeners} members could not connect and join: {}",
            failures.len(),
            shown.join("; ")
        );
    }

    // The senders: SDK clients, members too.
    let mut senders: Vec<Client> = Vec::with_capacity(load.senders);
    let mut sender_tasks = Vec::with_capacity(load.senders);
    for (k, user) in users.iter().enumerate().skip(listeners) {
        let mut config = target.client_config(user, "bench")?;
        config.local_addr = Some(IpAddr::from([127, 0, 1, (k % 16) as u8 + 1]));
        let (client, events) = Client::connect(config)
            .await
            .with_context(|| format!("connecting sender {user}"))?;
        let joined = client
            .join_chatroom(&room, 0)
            .await
            .with_context(|| format!("sender {user} joining the room"))?;
        let join = joined.chatroom.seq;
        joins.push(join);
        joined_count.fetch_add(1, Ordering::Relaxed);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(sender_stream(
            events,
            Seen::new(join),
            shared.clone(),
            k,
            stop_rx,
        ));
        sender_tasks.push((stop, task));
        senders.push(client);
    }
    connecting.store(true, Ordering::Relaxed);
    let connect_secs = connect_start.elapsed().as_secs_f64();
    eprintln!(
        "  {} members joined {room} in {connect_secs:.1} s",
        load.members
    );

    // Deliveries so far, for the progress line: the members' own counters, summed now and then.
    let delivered = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    {
        let (shared, delivered, done) = (shared.clone(), delivered.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let sum = shared
                    .live
                    .iter()
                    .map(|l| l.delivered.load(Ordering::Relaxed))
                    .sum();
                delivered.store(sum, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }
    progress(
        "chatroom",
        vec![("sent", sent.clone()), ("delivered", delivered.clone())],
        done.clone(),
    );

    // (seq, member index) of every acknowledged message.
    let acked = Arc::new(Mutex::new(Vec::<(u64, usize)>::new()));
    let puback = Arc::new(Mutex::new(Latencies::default()));
    let send_failed = Arc::new(AtomicU64::new(0));
    let priority = match load.priority {
        SendPriority::Low => tidings_client::Priority::Low,
        SendPriority::Normal => tidings_client::Priority::Normal,
    };
    // Let the join notices settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticks = procstat::ticks_per_second();
    let generator = procstat::read(std::process::id(), ticks).ok();
    let before = target.reading();
    let steal_before = procstat::machine_steal();
    let window_start = Instant::now();
    let deadline = window_start + Duration::from_secs(load.secs);
    let _ = shared.window_end.set(deadline);
    let timer = super::timer::PreciseTimer::new()?;
    let mut tasks = Vec::new();
    for (n, scheduled) in schedule(window_start, load.rate, load.secs).enumerate() {
        timer.sleep_until(scheduled).await?;
        let who = n % senders.len();
        let client = senders[who].clone();
        let (acked, puback, sent, send_failed, room) = (
            acked.clone(),
            puback.clone(),
            sent.clone(),
            send_failed.clone(),
            room.clone(),
        );
        let (size, epoch) = (load.size, shared.epoch);
        tasks.push(tokio::spawn(async move {
            let t = scheduled.duration_since(epoch).as_nanos() as u64;
            let out = Outgoing {
                msg_type: BENCH_TYPE.into(),
                content: content(t, size),
                ..Outgoing::chatroom_text(&room, "")
            }
            .with_priority(priority);
            match client.send(out).await {
                Ok(s) => {
                    puback
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(Instant::now().duration_since(scheduled));
                    acked
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((s.seq, listeners + who));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    if send_failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("  send failed: {e}");
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let sending_ended = Instant::now();
    let after = target.reading();
    let generator_after = procstat::read(std::process::id(), ticks).ok();
    let steal = procstat::machine_steal()
        .zip(steal_before)
        .map(|(a, b)| a.saturating_sub(b));
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));
    let top = acked.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
    let mut all_acked = Seqs::default();
    let mut own = vec![Seqs::default(); load.senders];
    for &(seq, who) in &acked {
        all_acked.insert(seq);
        own[who - listeners].insert(seq);
    }
    let own_of = |i: usize| i.checked_sub(listeners).map(|k| &own[k]);
    // The highest acknowledged seq each member is owed (a sender is not sent its own).
    let top_of = |i: usize| {
        acked
            .iter()
            .filter(|(_, who)| *who != i)
            .map(|(seq, _)| *seq)
            .max()
            .unwrap_or(0)
    };
    let tops: Vec<u64> = (0..load.members)
        .map(|i| if i < listeners { top } else { top_of(i) })
        .collect();

    // Drain: until every member has heard of the last acknowledged message and its stream has
    // settled (what it received and what markers reported cover its window exactly), or until
    // the deadline, after which what is missing counts against the run.
    let drain_deadline = Instant::now() + DRAIN;
    let settled = |i: usize| {
        let live = &shared.live[i];
        if live.ended.load(Ordering::Relaxed) {
            return true;
        }
        let cover = live.cover.load(Ordering::Relaxed);
        if cover < tops[i] {
            return false;
        }
        let mine = own_of(i).map_or(0, |o| {
            (joins[i] + 1..=cover).filter(|s| o.contains(*s)).count() as u64
        });
        live.accounted.load(Ordering::Relaxed) + mine == cover - joins[i]
    };
    while Instant::now() < drain_deadline && !(0..load.members).all(settled) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = (0..load.members).all(settled);
    done.store(true, Ordering::Relaxed);
    // Every member stops at once, before any connection closes: a member that leaves sends the
    // others a leave notice, and items that come after the streams settled are best not read.
    let mut tasks = Vec::with_capacity(load.members);
    let stops = pending
        .into_iter()
        .map(|p| (p.stop, p.task))
        .chain(sender_tasks);
    for (stop, task) in stops {
        // A member that ended early has dropped its receiver and returns regardless.
        let _ = stop.send(());
        tasks.push(task);
    }
    let mut seens = Vec::with_capacity(load.members);
    for t in tasks {
        seens.push(t.await?);
    }
    let mut repeats = 0;
    let mut reconnects = 0;
    for c in &senders {
        let stats = c.stats().await;
        repeats += stats.chatroom_repeats;
        reconnects += stats.reconnects;
        c.close().await;
    }

    // No marker can name a seq far past every item any member received (or was sent).
    let horizon = seens.iter().map(|s| s.last).max().unwrap_or(0).max(top) + 100_000;
    let mut tally = Tally::default();
    let mut unbalanced = 0u64;
    let (mut duplicated, mut out_of_order, mut early, mut unexpected, mut malformed) =
        (0, 0, 0, 0, 0);
    let (mut received, mut in_window, mut notices, mut markers) = (0, 0, 0, 0);
    let mut ended: Vec<String> = Vec::new();
    let empty = Seqs::default();
    for (i, seen) in seens.iter().enumerate() {
        let t = account(seen, &all_acked, own_of(i).unwrap_or(&empty), top, horizon);
        if !t.balanced() {
            unbalanced += 1;
            if unbalanced <= 3 {
                let own = own_of(i).unwrap_or(&empty);
                let missing: Vec<u64> = (seen.join + 1..=seen.cover)
                    .filter(|s| !own.contains(*s) && !seen.seqs.contains(s - seen.join))
                    .take(10)
                    .collect();
                eprintln!(
                    "  member {i}: markers report {} dropped, {} missing (join {}, cover {}, \
                     markers {:?}, first missing {missing:?})",
                    t.marked,
                    t.missing,
                    seen.join,
                    seen.cover,
                    &seen.markers[..seen.markers.len().min(10)],
                );
            }
        }
        tally.add(&t);
        duplicated += seen.duplicated;
        out_of_order += seen.out_of_order;
        early += seen.early;
        unexpected += seen.unexpected;
        malformed += seen.malformed;
        received += seen.messages;
        in_window += seen.in_window;
        notices += seen.notices;
        markers += seen.markers.len() as u64;
        if let Some(why) = &seen.ended {
            ended.push(why.clone());
        }
    }

    let window = sending_ended.duration_since(window_start).as_secs_f64();
    record.figure("connectSecs", "members joined in", connect_secs, "s");
    record.figure("sent", "messages acknowledged", acked.len() as f64, "");
    record.figure(
        "sendFailed",
        "sends failed",
        send_failed.load(Ordering::Relaxed) as f64,
        "",
    );
    record.figure("expected", "deliveries expected", tally.expected as f64, "");
    record.figure("received", "deliveries received", tally.got as f64, "");
    record.figure(
        "droppedReported",
        "deliveries dropped, reported by gap markers",
        tally.reported as f64,
        "",
    );
    record.figure("lost", "lost (not reported)", tally.lost as f64, "");
    record.figure("duplicated", "duplicated", duplicated as f64, "");
    record.figure("outOfOrder", "out of order", out_of_order as f64, "");
    record.figure("gapMarkers", "gap markers received", markers as f64, "");
    record.figure(
        "gapItems",
        "items the markers report dropped",
        tally.marked as f64,
        "",
    );
    record.figure(
        "gapNotices",
        "of which notices (or unacknowledged messages)",
        tally.other_reported as f64,
        "",
    );
    record.figure("notices", "notices received", notices as f64, "");
    record.figure(
        "deliveredPerSec",
        "deliveries",
        in_window as f64 / load.secs.max(1) as f64,
        "msg/s",
    );
    record.percentiles(
        "puback",
        "PUBACK",
        &mut puback.lock().unwrap_or_else(|p| p.into_inner()),
    );
    if let Some(ps) = shared.e2e.percentiles(&[50.0, 90.0, 99.0, 99.9]) {
        for ((key, label), d) in [
            ("e2eP50Ms", "delivery p50"),
            ("e2eP90Ms", "delivery p90"),
            ("e2eP99Ms", "delivery p99"),
            ("e2eP999Ms", "delivery p99.9"),
        ]
        .into_iter()
        .zip(ps)
        {
            record.figure(key, label, d.as_secs_f64() * 1e3, "ms");
        }
    }
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
        in_window,
        ("serverCpuUsPerDelivery", "server CPU per delivery"),
        steal,
    );
    if let Some(peak) = target.peak_rss_kib() {
        record.figure("serverPeakRssKib", "server peak RSS", peak as f64, "KiB");
    }
    if repeats > 0 {
        record.figure(
            "senderRepeats",
            "items the senders' SDK dropped as repeats",
            repeats as f64,
            "",
        );
    }

    // The delivery checks beyond the verdict's.
    if unbalanced > 0 {
        record.failures.push(format!(
            "{unbalanced} members' gap markers do not add up to what they missed \
             ({} reported dropped, {} missing)",
            tally.marked, tally.missing
        ));
    }
    if tally.other_lost > 0 {
        record.failures.push(format!(
            "{} notices missing and not reported by a gap marker",
            tally.other_lost
        ));
    }
    if tally.bad_markers > 0 {
        record.failures.push(format!(
            "{} gap markers count more than is missing in their range, or name seqs outside \
             the member's window",
            tally.bad_markers
        ));
    }
    if early > 0 {
        record
            .failures
            .push(format!("{early} items at or before the member's join seq"));
    }
    record.ended_early(&ended);
    if reconnects > 0 {
        record
            .failures
            .push(format!("the senders reconnected {reconnects} times"));
    }
    if unexpected + malformed > 0 {
        record.failures.push(format!(
            "{unexpected} unexpected and {malformed} unreadable frames"
        ));
    }
    if !drained {
        eprintln!("  not every member's stream settled within {DRAIN:?}");
    }
    record.verdict = Some(Verdict {
        acked: tally.expected,
        received: received + duplicated,
        lost: tally.lost,
        duplicated,
        out_of_order,
    });
    Ok(record)
}

/// Reads the few fields a member needs from a frame's protobuf bytes in place: a room item comes
/// as `Frame.publish(3).message(3)`, of which the member wants `conversation_type` (2),
/// `target_id` (3), `seq` (5), `msg_type` (7) and `content` (8), and the frame's `qos` (15).
/// Decoding the whole frame would allocate a dozen strings per delivery; this allocates nothing.
/// Field numbers are those of `crates/proto/proto/tidings.proto`.
pub(super) mod wire {
    pub const PUBLISH: u32 = 3;
    pub const PINGRESP: u32 = 13;
    pub const DISCONNECT: u32 = 14;
    const QOS: u32 = 15;
    const PUBLISH_MESSAGE: u32 = 3;
    const CONVERSATION_TYPE: u32 = 2;
    const TARGET_ID: u32 = 3;
    const SEQ: u32 = 5;
    const MSG_TYPE: u32 = 7;
    const CONTENT: u32 = 8;
    const INBOX_SEQ: u32 = 11;

    /// The bytes are not a well-formed protobuf message.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Malformed;

    /// A pushed message's fields, borrowed from the frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Pushed<'a> {
        pub qos: u32,
        pub conversation_type: u32,
        pub target_id: &'a [u8],
        pub seq: u64,
        pub msg_type: &'a [u8],
        pub content: &'a [u8],
        /// Read only by [`read_inbox`] (a chatroom item has none).
        pub inbox_seq: u64,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum View<'a> {
        /// A PUBLISH carrying a message.
        Message(Pushed<'a>),
        /// Any other frame: its body's field number (the frame kind), 0 if none.
        Other { kind: u32 },
    }

    enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
        Fixed,
    }

    /// A cursor over one message's bytes.
    struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn new(buf: &'a [u8]) -> Reader<'a> {
            Reader { buf, pos: 0 }
        }

        fn at_end(&self) -> bool {
            self.pos >= self.buf.len()
        }

        #[inline(always)]
        fn varint(&mut self) -> Result<u64, Malformed> {
            let mut value = 0u64;
            let mut shift = 0;
            loop {
                let b = *self.buf.get(self.pos).ok_or(Malformed)?;
                self.pos += 1;
                value |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return Ok(value);
                }
                shift += 7;
                if shift > 63 {
                    return Err(Malformed);
                }
            }
        }

        #[inline(always)]
        fn skip(&mut self, n: u64) -> Result<&'a [u8], Malformed> {
            let rest = self.buf.len() - self.pos;
            if n > rest as u64 {
                return Err(Malformed);
            }
            let start = self.pos;
            self.pos += n as usize;
            Ok(&self.buf[start..self.pos])
        }

        /// The next field: its number and value.
        #[inline(always)]
        fn field(&mut self) -> Result<(u32, Value<'a>), Malformed> {
            let key = self.varint()?;
            let number = u32::try_from(key >> 3).map_err(|_| Malformed)?;
            if number == 0 {
                return Err(Malformed);
            }
            // Tested in order of frequency (a jump table mispredicts on this mix).
            let wire = key & 7;
            let value = if wire == 2 {
                let len = self.varint()?;
                Value::Bytes(self.skip(len)?)
            } else if wire == 0 {
                Value::Varint(self.varint()?)
            } else if wire == 1 {
                self.skip(8).map(|_| Value::Fixed)?
            } else if wire == 5 {
                self.skip(4).map(|_| Value::Fixed)?
            } else {
                // Groups (3, 4) are not in the schema; 6 and 7 do not exist.
                return Err(Malformed);
            };
            Ok((number, value))
        }
    }

    /// Reads a frame. Fields the member does not need (or does not know) are skipped; as in
    /// protobuf, a field that appears twice counts as its last value, except that the walk over
    /// the message ends once it has read each wanted field (an encoder writes each field once).
    /// The frame kinds are the body fields 1-7 and 12-14.
    pub fn read(frame: &[u8]) -> Result<View<'_>, Malformed> {
        read_wanting(frame, false)
    }

    /// As [`read`], and the message's `inbox_seq` (11) too: an inbox delivery's.
    pub fn read_inbox(frame: &[u8]) -> Result<View<'_>, Malformed> {
        read_wanting(frame, true)
    }

    fn read_wanting(frame: &[u8], inbox: bool) -> Result<View<'_>, Malformed> {
        let (mut kind, mut publish, mut qos) = (0, &[][..], 0);
        let mut r = Reader::new(frame);
        while !r.at_end() {
            match r.field()? {
                (QOS, Value::Varint(q)) => qos = q as u32,
                (n @ (1..=7 | 12..=14), Value::Bytes(b)) => {
                    kind = n;
                    publish = b;
                }
                _ => {}
            }
        }
        if kind != PUBLISH {
            return Ok(View::Other { kind });
        }
        let mut message = None;
        let mut r = Reader::new(publish);
        while !r.at_end() {
            if let (PUBLISH_MESSAGE, Value::Bytes(b)) = r.field()? {
                message = Some(b);
            }
        }
        let Some(message) = message else {
            return Ok(View::Other { kind });
        };
        let mut p = Pushed {
            qos,
            ..Pushed::default()
        };
        // The walk ends once each wanted field has been read: a message has a dozen more fields
        // after `content`, and a member reads a million messages a second.
        let mut wanted =
            1u32 << CONVERSATION_TYPE | 1 << TARGET_ID | 1 << SEQ | 1 << MSG_TYPE | 1 << CONTENT;
        if inbox {
            wanted |= 1 << INBOX_SEQ;
        }
        let mut r = Reader::new(message);
        while wanted != 0 && !r.at_end() {
            let number = match r.field()? {
                (n @ CONVERSATION_TYPE, Value::Varint(v)) => {
                    p.conversation_type = v as u32;
                    n
                }
                (n @ TARGET_ID, Value::Bytes(b)) => {
                    p.target_id = b;
                    n
                }
                (n @ SEQ, Value::Varint(v)) => {
                    p.seq = v;
                    n
                }
                (n @ MSG_TYPE, Value::Bytes(b)) => {
                    p.msg_type = b;
                    n
                }
                (n @ CONTENT, Value::Bytes(b)) => {
                    p.content = b;
                    n
                }
                (n @ INBOX_SEQ, Value::Varint(v)) => {
                    p.inbox_seq = v;
                    n
                }
                _ => continue,
            };
            wanted &= !(1 << number);
        }
        Ok(View::Message(p))
    }

    /// The decimal number at the start of `bytes`, if any.
    fn number(bytes: &[u8]) -> Option<u64> {
        let (mut n, mut digits) = (0u64, 0);
        for &b in bytes {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(d))?;
            digits += 1;
        }
        (digits > 0).then_some(n)
    }

    /// The send time a bench message's content carries: `scenarios::content` puts `"t":` first.
    pub fn sent_at(content: &[u8]) -> Option<u64> {
        number(content.strip_prefix(br#"{"t":"#)?)
    }

    /// The number under `key` in a flat JSON object of numbers.
    fn field_of(content: &[u8], key: &[u8]) -> Option<u64> {
        let mut rest = content;
        while let Some(i) = rest.iter().position(|&b| b == b'"') {
            rest = &rest[i + 1..];
            if let Some(value) = rest.strip_prefix(key).and_then(|r| r.strip_prefix(b"\":")) {
                return number(value.trim_ascii_start());
            }
        }
        None
    }

    /// A gap marker's `(count, fromSeq, toSeq)`.
    pub fn gap(content: &[u8]) -> Option<(u64, u64, u64)> {
        Some((
            field_of(content, b"count")?,
            field_of(content, b"fromSeq")?,
            field_of(content, b"toSeq")?,
        ))
    }

    #[cfg(test)]
    mod tests {
        use tidings_proto::codec;
        use tidings_proto::v1::{self, frame::Body};

        use super::*;

        fn encoded(body: Body, qos: u32, dup: bool) -> Vec<u8> {
            codec::encode_protobuf(&v1::Frame {
                body: Some(body),
                qos,
                dup,
            })
        }

        fn room_message(seq: u64, msg_type: &str, content: &str) -> v1::Message {
            v1::Message {
                uid: "01JBENCH00000000000000000".into(),
                conversation_type: 4,
                target_id: "room-1".into(),
                sender_id: "alice".into(),
                seq,
                sent_time: 1_700_000_000_000,
                msg_type: msg_type.into(),
                content: content.into(),
                push_text: "push".into(),
                client_msg_id: "c-1".into(),
                inbox_seq: 0,
                recalled: false,
                edited: true,
                reactions: vec![v1::Reaction {
                    emoji: "👍".into(),
                    user_ids: vec!["bob".into()],
                }],
                mentioned_user_ids: vec!["carol".into()],
                mention_all: true,
                directed_user_ids: vec!["dave".into()],
            }
        }

        fn publish(m: v1::Message) -> Body {
            Body::Publish(v1::Publish {
                packet_id: 9,
                body: Some(v1::publish::Body::Message(m)),
            })
        }

        #[test]
        fn reads_a_room_message_as_prost_encodes_it() {
            let content = super::super::content(123_456_789, 64);
            let bytes = encoded(publish(room_message(300, "bench", &content)), 0, false);
            let View::Message(p) = read(&bytes).unwrap() else {
                panic!("not a message")
            };
            assert_eq!(p.qos, 0);
            assert_eq!(p.conversation_type, 4);
            assert_eq!(p.target_id, b"room-1");
            assert_eq!(p.seq, 300);
            assert_eq!(p.msg_type, b"bench");
            assert_eq!(p.content, content.as_bytes());
            assert_eq!(sent_at(p.content), Some(123_456_789));
        }

        #[test]
        fn reads_qos_and_large_numbers() {
            let mut m = room_message(u64::MAX, "text", "{}");
            m.conversation_type = 1;
            let bytes = encoded(publish(m), 1, true);
            let View::Message(p) = read(&bytes).unwrap() else {
                panic!("not a message")
            };
            assert_eq!((p.qos, p.conversation_type, p.seq), (1, 1, u64::MAX));
            // Fields at their defaults are absent from the bytes and read as defaults.
            let bytes = encoded(publish(v1::Message::default()), 0, false);
            assert_eq!(read(&bytes).unwrap(), View::Message(Pushed::default()));
        }

        #[test]
        fn reads_the_inbox_seq_only_when_asked() {
            let mut m = room_message(7, "text", "{}");
            m.conversation_type = 3;
            m.inbox_seq = 41;
            let bytes = encoded(publish(m), 1, false);
            let View::Message(p) = read_inbox(&bytes).unwrap() else {
                panic!("not a message")
            };
            assert_eq!((p.seq, p.inbox_seq), (7, 41));
            let View::Message(p) = read(&bytes).unwrap() else {
                panic!("not a message")
            };
            assert_eq!((p.seq, p.inbox_seq), (7, 0));
        }

        #[test]
        fn reads_a_gap_marker_as_the_server_writes_it() {
            let content =
                serde_json::json!({ "count": 17, "fromSeq": 40, "toSeq": 1_000_000 }).to_string();
            let bytes = encoded(
                publish(v1::Message {
                    conversation_type: 4,
                    target_id: "room-1".into(),
                    msg_type: "tidings:gap".into(),
                    content: content.clone(),
                    ..Default::default()
                }),
                0,
                false,
            );
            let View::Message(p) = read(&bytes).unwrap() else {
                panic!("not a message")
            };
            assert_eq!((p.seq, p.msg_type), (0, &b"tidings:gap"[..]));
            assert_eq!(gap(p.content), Some((17, 40, 1_000_000)));
            assert_eq!(
                gap(br#"{"toSeq": 9, "count":2,"fromSeq":8}"#),
                Some((2, 8, 9))
            );
            assert_eq!(gap(br#"{"count":2,"fromSeq":8}"#), None);
        }

        #[test]
        fn other_frames_are_told_by_their_kind() {
            let ping = encoded(Body::Pingresp(v1::PingResp {}), 0, false);
            assert_eq!(read(&ping).unwrap(), View::Other { kind: PINGRESP });
            let bye = encoded(
                Body::Disconnect(v1::Disconnect {
                    code: 41001,
                    message: "slow".into(),
                    reconnect: true,
                }),
                0,
                false,
            );
            assert_eq!(read(&bye).unwrap(), View::Other { kind: DISCONNECT });
            let ack = encoded(
                Body::Queryack(v1::QueryAck {
                    query_id: 1,
                    chatrooms: vec![v1::Chatroom {
                        seq: 5,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                0,
                false,
            );
            assert_eq!(read(&ack).unwrap(), View::Other { kind: 6 });
            // A PUBLISH that carries a send, not a message.
            let send = encoded(
                Body::Publish(v1::Publish {
                    packet_id: 1,
                    body: Some(v1::publish::Body::Send(v1::Send::default())),
                }),
                0,
                false,
            );
            assert_eq!(read(&send).unwrap(), View::Other { kind: PUBLISH });
            assert_eq!(read(&[]).unwrap(), View::Other { kind: 0 });
        }

        #[test]
        fn unknown_fields_of_every_wire_type_are_skipped() {
            let mut bytes = encoded(publish(room_message(7, "bench", "{}")), 0, false);
            // Keys of fields 16 and up take two bytes: (number << 3 | wire type) as a varint.
            let key = |number: u8, wire: u8| [(number << 3 | wire) | 0x80, number >> 4];
            // Field 20 fixed64, 21 fixed32, 22 varint, 23 length-delimited, and 10 and 11 (unused
            // numbers among the frame kinds) as a varint and bytes.
            bytes.extend(key(20, 1).into_iter().chain([1, 2, 3, 4, 5, 6, 7, 8]));
            bytes.extend(key(21, 5).into_iter().chain([1, 2, 3, 4]));
            bytes.extend(key(22, 0).into_iter().chain([0xff, 0xff, 0x03]));
            bytes.extend(key(23, 2).into_iter().chain([3, b'a', b'b', b'c']));
            bytes.extend_from_slice(&[10 << 3, 5, 11 << 3 | 2, 1, 0]);
            let View::Message(p) = read(&bytes).unwrap() else {
                panic!("not a message")
            };
            assert_eq!((p.seq, p.msg_type), (7, &b"bench"[..]));
        }

        #[test]
        fn malformed_bytes_are_refused_not_misread() {
            let bytes = encoded(publish(room_message(7, "bench", "{}")), 0, false);
            // Every cut inside the PUBLISH body leaves a length that runs past the end.
            for cut in 1..bytes.len() {
                assert_eq!(read(&bytes[..cut]), Err(Malformed), "cut at {cut}");
            }
            // A group start (wire type 3), field number 0, an endless varint.
            assert_eq!(read(&[1 << 3 | 3]), Err(Malformed));
            assert_eq!(read(&[0, 0]), Err(Malformed));
            assert_eq!(read(&[0x78, 0xff, 0xff, 0xff]), Err(Malformed));
            let mut endless = vec![0x78];
            endless.extend([0xff; 10]);
            endless.push(0x01);
            assert_eq!(read(&endless), Err(Malformed));
        }

        #[test]
        fn sent_at_reads_the_leading_time_only() {
            assert_eq!(sent_at(br#"{"t":0,"text":"x"}"#), Some(0));
            assert_eq!(sent_at(br#"{"t":18446744073709551615}"#), Some(u64::MAX));
            assert_eq!(sent_at(br#"{"t":18446744073709551616}"#), None);
            assert_eq!(sent_at(br#"{"text":"x","t":5}"#), None);
            assert_eq!(sent_at(br#"{"t":"5"}"#), None);
            assert_eq!(sent_at(b""), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(seqs: impl IntoIterator<Item = u64>) -> Seqs {
        let mut b = Seqs::default();
        for s in seqs {
            b.insert(s);
        }
        b
    }

    /// A member that joined at `join` and received `got` (in this order) and `markers`.
    fn seen(join: u64, got: &[u64], markers: &[(u64, u64, u64)]) -> Seen {
        let shared = Shared {
            room: "r".into(),
            epoch: Instant::now(),
            window_end: OnceLock::new(),
            e2e: Histogram::new(),
            live: Box::new([]),
        };
        let mut s = Seen::new(join);
        for &seq in got {
            s.item(seq, Kind::Notice, &shared, Instant::now());
        }
        for &(count, from, to) in markers {
            s.marker(count, from, to);
        }
        s
    }

    #[test]
    fn a_clean_stream_with_notices_between_messages() {
        // Joined at 2; messages 3, 4, 6, 7 (7 the member's own); 5 is a notice.
        let acked = bits([3, 4, 6, 7]);
        let s = seen(2, &[3, 4, 5, 6], &[]);
        let t = account(&s, &acked, &bits([7]), 7, 100);
        assert_eq!((t.expected, t.got, t.lost, t.missing), (3, 3, 0, 0));
        assert!(t.balanced());
        assert_eq!(t.bad_markers, 0);
    }

    #[test]
    fn drops_reported_by_markers_balance_even_when_markers_overlap() {
        // Messages 1-9 but 5 (a notice). The fan-out dropped 2 and 6 in one round (one marker
        // over 2..6, sent before 3), then 4 did not fit the member's queue (a later marker).
        let acked = bits([1, 2, 3, 4, 6, 7, 8, 9]);
        let s = seen(0, &[1, 3, 5, 7, 8, 9], &[(2, 2, 6), (1, 4, 4)]);
        let t = account(&s, &acked, &Seqs::default(), 9, 100);
        assert_eq!((t.expected, t.got, t.reported, t.lost), (8, 5, 3, 0));
        assert_eq!((t.missing, t.marked), (3, 3));
        assert!(t.balanced());
        assert_eq!(t.bad_markers, 0);
    }

    #[test]
    fn a_dropped_notice_counts_in_the_balance() {
        let acked = bits([1, 3]);
        let t = account(
            &seen(0, &[1, 3], &[(1, 2, 2)]),
            &acked,
            &Seqs::default(),
            3,
            100,
        );
        assert_eq!((t.other_reported, t.other_lost, t.lost), (1, 0, 0));
        assert!(t.balanced());
        // Unreported, it is a failure even though it is not a message.
        let t = account(&seen(0, &[1, 3], &[]), &acked, &Seqs::default(), 3, 100);
        assert_eq!((t.other_lost, t.missing, t.marked), (1, 1, 0));
        assert!(!t.balanced());
    }

    #[test]
    fn silent_losses_and_false_markers_are_caught() {
        let acked = bits(1..=6);
        // 3 missing with no marker; 6 never came at all.
        let t = account(
            &seen(0, &[1, 2, 4, 5], &[]),
            &acked,
            &Seqs::default(),
            6,
            100,
        );
        assert_eq!((t.lost, t.expected, t.got), (2, 6, 4));
        // A marker that counts two where one is missing, and one before the join.
        let t = account(
            &seen(2, &[3, 5, 6], &[(2, 4, 5), (1, 1, 2)]),
            &acked,
            &Seqs::default(),
            6,
            100,
        );
        assert_eq!(t.bad_markers, 2);
        assert!(!t.balanced());
        // A marker whose count is right but whose range misses the gap.
        let t = account(
            &seen(0, &[1, 3, 4, 5, 6], &[(1, 3, 4)]),
            &acked,
            &Seqs::default(),
            6,
            100,
        );
        assert_eq!((t.lost, t.bad_markers), (1, 1));
        // A marker far past anything the room produced is wrong, and not followed there.
        let t = account(
            &seen(0, &[1, 2, 3, 4, 5, 6], &[(1, 7, u64::MAX / 2)]),
            &acked,
            &Seqs::default(),
            6,
            100,
        );
        assert_eq!((t.lost, t.bad_markers, t.missing), (0, 1, 94));
    }

    #[test]
    fn repeats_and_reordering_are_counted() {
        let s = seen(10, &[11, 13, 12, 13, 9], &[]);
        assert_eq!((s.duplicated, s.out_of_order, s.early), (1, 1, 1));
        assert_eq!(s.received, 3);
    }

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for b in 1..BUCKETS {
            let (low, width) = Histogram::bounds(b);
            let (prev_low, prev_width) = Histogram::bounds(b - 1);
            assert_eq!(prev_low + prev_width, low, "bucket {b}");
            assert!(width * 64 <= low.max(64), "bucket {b} is wide");
            assert_eq!(Histogram::bucket(low), b);
            assert_eq!(Histogram::bucket(low + width - 1), b);
            last = low + width;
        }
        assert_eq!(last, 1 << TOP_BITS);
        assert_eq!(Histogram::bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn histogram_percentiles_are_within_their_bucket() {
        let h = Histogram::new();
        assert!(h.percentiles(&[50.0]).is_none());
        for ms in 1..=1000u64 {
            h.record(ms * 1_000_000);
        }
        let ps = h.percentiles(&[50.0, 99.0, 99.9]).unwrap();
        for (p, want) in ps.iter().zip([500.0, 990.0, 999.0]) {
            let got = p.as_secs_f64() * 1e3;
            assert!((got - want).abs() / want < 0.016, "{got} vs {want}");
        }
        assert_eq!(h.len(), 1000);
    }
}
