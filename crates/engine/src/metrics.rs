//! The engine's Prometheus metrics, through the `metrics` facade (the binary installs the
//! exporter; without one every handle is a no-op). Handles are made once, on first use, so the
//! per-message path only adds to an atomic: no name lookup, no label hashing. The binary calls
//! [`register`] right after installing the recorder, before the engine starts, so the handles
//! are the recorder's and every metric shows (at zero) from the first scrape.
//!
//! Label values are a closed set: codes, conversation types. Never a user, group or room id.
//! docs/operations.md lists every metric.

use std::sync::LazyLock;
use std::time::Instant;

use ::metrics::{Counter, Gauge, Histogram, counter, describe_counter, describe_gauge};
use ::metrics::{describe_histogram, gauge, histogram};
use tidings_proto::{Code, conversation_type};

pub const CONNECTS: &str = "tidings_connects_total";
pub const CONNECT_REFUSALS: &str = "tidings_connect_refusals_total";
pub const DISCONNECTS: &str = "tidings_disconnects_total";
pub const MESSAGES_ACCEPTED: &str = "tidings_messages_accepted_total";
pub const DELIVERIES: &str = "tidings_deliveries_total";
pub const RESENDS: &str = "tidings_resends_total";
pub const SYNC_PAGES: &str = "tidings_sync_pages_total";
pub const PUBLISH_TO_PUBACK: &str = "tidings_publish_to_puback_seconds";
pub const PUBLISH_TO_DELIVERY: &str = "tidings_publish_to_delivery_seconds";
pub const FANOUT_SESSIONS: &str = "tidings_fanout_sessions";
pub const OUTBOUND_QUEUE_BYTES: &str = "tidings_outbound_queue_bytes";
pub const SESSIONS: &str = "tidings_sessions";
pub const OUTBOUND_OVERFLOWS: &str = "tidings_outbound_overflows_total";
pub const CHATROOM_DROPPED: &str = "tidings_chatroom_items_dropped_total";
pub const CHATROOM_DIRECT: &str = "tidings_chatroom_items_direct_total";
pub const OUTBOUND_DIRECT: &str = "tidings_outbound_items_direct_total";
pub const GAP_MARKERS: &str = "tidings_gap_markers_total";
pub const CLUSTER_CATCHUPS: &str = "tidings_cluster_catchups_total";

/// The conversation types a message is counted under, as labels.
const TYPES: [(u32, &str); 4] = [
    (conversation_type::PRIVATE, "private"),
    (conversation_type::GROUP, "group"),
    (conversation_type::CHATROOM, "chatroom"),
    (conversation_type::SYSTEM, "system"),
];

pub(crate) struct Metrics {
    pub connects: Counter,
    /// By conversation type, in the order of `TYPES`; the last counts any other type.
    accepted: [Counter; TYPES.len() + 1],
    pub deliveries: Counter,
    pub resends: Counter,
    pub sync_pages: Counter,
    pub publish_to_puback: Histogram,
    pub publish_to_delivery: Histogram,
    pub fanout_sessions: Histogram,
    outbound_queue_bytes: Gauge,
    sessions: Gauge,
    pub outbound_overflows: Counter,
    pub chatroom_dropped: Counter,
    pub chatroom_direct: Counter,
    pub outbound_direct: Counter,
    pub gap_markers: Counter,
    pub cluster_catchups: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    describe_counter!(
        CONNECTS,
        "Sessions opened (CONNECT accepted), every transport and dialect."
    );
    describe_counter!(CONNECT_REFUSALS, "CONNECTs refused, by code.");
    describe_counter!(DISCONNECTS, "Sessions ended, by the code they ended with.");
    describe_counter!(
        MESSAGES_ACCEPTED,
        "Messages users and the app server sent, stored (chatrooms: numbered), by conversation type; a resend of a stored message is not counted again."
    );
    describe_counter!(
        DELIVERIES,
        "Committed messages queued to a connected device (first push, not resends)."
    );
    describe_counter!(
        RESENDS,
        "Pushes resent with the dup flag after the ack timeout."
    );
    describe_counter!(SYNC_PAGES, "Sync pages (QUERYACKs of inbox sync) served.");
    describe_histogram!(
        PUBLISH_TO_PUBACK,
        ::metrics::Unit::Seconds,
        "From a PUBLISH handed to the engine to its PUBACK queued (validation, moderation, commit)."
    );
    describe_histogram!(
        PUBLISH_TO_DELIVERY,
        ::metrics::Unit::Seconds,
        "From a PUBLISH handed to the engine to its push queued to every recipient device connected to this node."
    );
    describe_histogram!(
        FANOUT_SESSIONS,
        "Devices on this node a committed message was pushed to."
    );
    describe_gauge!(
        OUTBOUND_QUEUE_BYTES,
        ::metrics::Unit::Bytes,
        "Bytes waiting in the outbound queues of all sessions (measured at scrape)."
    );
    describe_gauge!(SESSIONS, "Sessions open on this node (measured at scrape).");
    describe_counter!(
        OUTBOUND_OVERFLOWS,
        "Outbound queues that overflowed: the connection was cut as a slow consumer (41002)."
    );
    describe_counter!(
        CHATROOM_DROPPED,
        "Chatroom items dropped for a connection that fell behind (reported by gap markers)."
    );
    describe_counter!(
        CHATROOM_DIRECT,
        "Chatroom items the room's fan-out wrote straight to a member's socket (its writer idle, nothing queued) instead of queueing them."
    );
    describe_counter!(
        OUTBOUND_DIRECT,
        "Answers and pushes (PUBACKs, deliveries) written straight to a connection's socket by whoever made them (its writer idle, nothing queued) instead of queued for its writer."
    );
    describe_counter!(
        GAP_MARKERS,
        "Gap markers (tidings:gap) queued to connections."
    );
    describe_counter!(
        CLUSTER_CATCHUPS,
        "Catch-up passes over this node's sessions after the bus lost events."
    );
    let accepted = std::array::from_fn(|i| {
        let label = TYPES.get(i).map_or("other", |(_, name)| name);
        counter!(MESSAGES_ACCEPTED, "conversation_type" => label)
    });
    Metrics {
        connects: counter!(CONNECTS),
        accepted,
        deliveries: counter!(DELIVERIES),
        resends: counter!(RESENDS),
        sync_pages: counter!(SYNC_PAGES),
        publish_to_puback: histogram!(PUBLISH_TO_PUBACK),
        publish_to_delivery: histogram!(PUBLISH_TO_DELIVERY),
        fanout_sessions: histogram!(FANOUT_SESSIONS),
        outbound_queue_bytes: gauge!(OUTBOUND_QUEUE_BYTES),
        sessions: gauge!(SESSIONS),
        outbound_overflows: counter!(OUTBOUND_OVERFLOWS),
        chatroom_dropped: counter!(CHATROOM_DROPPED),
        chatroom_direct: counter!(CHATROOM_DIRECT),
        outbound_direct: counter!(OUTBOUND_DIRECT),
        gap_markers: counter!(GAP_MARKERS),
        cluster_catchups: counter!(CLUSTER_CATCHUPS),
    }
});

/// Makes the handles with the recorder installed now. Call it once, after installing it.
pub fn register() {
    LazyLock::force(&METRICS);
}

pub(crate) fn m() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// A message of this conversation type was accepted.
    pub fn accepted(&self, conversation_type: u32) {
        let i = TYPES
            .iter()
            .position(|(t, _)| *t == conversation_type)
            .unwrap_or(TYPES.len());
        self.accepted[i].increment(1);
    }

    /// Seconds since `since`, for a histogram.
    pub fn since(since: Instant) -> f64 {
        since.elapsed().as_secs_f64()
    }
}

/// A refused CONNECT (rare: the handle is looked up each time).
pub(crate) fn connect_refused(code: Code) {
    counter!(CONNECT_REFUSALS, "code" => code.as_u32().to_string()).increment(1);
}

/// A session ended with `code` (once per session).
pub(crate) fn disconnected(code: Code) {
    counter!(DISCONNECTS, "code" => code.as_u32().to_string()).increment(1);
}

impl crate::Engine {
    /// Sets the gauges measured at scrape time (queued bytes and open sessions), walking the
    /// session registry once. The metrics route calls it before rendering.
    pub fn observe_metrics(&self) {
        let all = self.all_sessions();
        let bytes: usize = all.iter().map(|s| s.outbox.queued_bytes()).sum();
        let sessions = all.len();
        let m = m();
        m.sessions.set(sessions as f64);
        m.outbound_queue_bytes.set(bytes as f64);
    }
}
