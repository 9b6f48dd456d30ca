//! The bus's metrics (docs/operations.md), made once: publishing only adds to an atomic. Both
//! implementations count into the same names.

use std::sync::LazyLock;

use ::metrics::{Counter, counter, describe_counter};

pub const PUBLISHES: &str = "tidings_bus_publishes_total";
pub const RECEIVED: &str = "tidings_bus_received_total";
pub const RESYNCS: &str = "tidings_bus_resyncs_total";
pub const REFUSED: &str = "tidings_bus_refused_total";
pub const GAPS: &str = "tidings_bus_gaps_total";

pub(crate) struct BusMetrics {
    pub sent: Counter,
    pub dropped: Counter,
    pub failed: Counter,
    pub received: Counter,
    pub resyncs: Counter,
    pub refused_version: Counter,
    pub refused_malformed: Counter,
    pub gaps: Counter,
}

static METRICS: LazyLock<BusMetrics> = LazyLock::new(|| {
    describe_counter!(
        PUBLISHES,
        "Events this node published on the bus, by outcome: sent, dropped (a queue was full), failed (NATS refused)."
    );
    describe_counter!(RECEIVED, "Events received from other nodes on the bus.");
    describe_counter!(
        RESYNCS,
        "Times this node asked every node to catch its sessions up from the store (events lost, NATS back after a loss)."
    );
    describe_counter!(
        REFUSED,
        "Events from other nodes this node refused, by reason: version (an envelope version it does not speak), malformed."
    );
    describe_counter!(
        GAPS,
        "Times events from another node were found missing (its numbering on a subject jumped); each time this node caught its sessions up from the store."
    );
    BusMetrics {
        sent: counter!(PUBLISHES, "outcome" => "sent"),
        dropped: counter!(PUBLISHES, "outcome" => "dropped"),
        failed: counter!(PUBLISHES, "outcome" => "failed"),
        received: counter!(RECEIVED),
        resyncs: counter!(RESYNCS),
        refused_version: counter!(REFUSED, "reason" => "version"),
        refused_malformed: counter!(REFUSED, "reason" => "malformed"),
        gaps: counter!(GAPS),
    }
});

/// Makes the handles with the recorder installed now. Call it once, after installing it.
pub fn register() {
    LazyLock::force(&METRICS);
}

pub(crate) fn m() -> &'static BusMetrics {
    &METRICS
}
