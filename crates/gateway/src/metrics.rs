//! The gateway's metrics (docs/operations.md): connections open, by transport and dialect.
//! The gauges are made once; a connection holds an [`Open`] for as long as it has a session.

use std::sync::LazyLock;

use ::metrics::{Gauge, describe_gauge, gauge};

pub const CONNECTIONS: &str = "tidings_connections";

/// The transports, as labels.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Ws = 0,
    Poll = 1,
}

/// The dialects, as labels, in the order of [`DIALECTS`].
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    Native = 0,
    Seed000 = 1,
    Seed001 = 2,
    Seed002 = 3,
    Seed003 = 4,
}

impl Dialect {
    /// The dialect's label.
    pub fn name(self) -> &'static str {
        DIALECTS[self as usize]
    }
}

const TRANSPORTS: [&str; 2] = ["ws", "poll"];
const DIALECTS: [&str; 5] = ["native", "seed000", "seed001", "seed002", "seed003"];

static GAUGES: LazyLock<[[Gauge; DIALECTS.len()]; TRANSPORTS.len()]> = LazyLock::new(|| {
    describe_gauge!(
        CONNECTIONS,
        "Connections with an open session, by transport (ws, poll) and dialect (native, seed000 to seed003)."
    );
    std::array::from_fn(|t| {
        std::array::from_fn(
            |d| gauge!(CONNECTIONS, "transport" => TRANSPORTS[t], "dialect" => DIALECTS[d]),
        )
    })
});

/// Makes the gauges with the recorder installed now. Call it once, after installing it.
pub fn register() {
    LazyLock::force(&GAUGES);
}

/// Counts a connection as open until dropped.
pub(crate) struct Open(&'static Gauge);

impl Open {
    pub fn new(transport: Transport, dialect: Dialect) -> Open {
        let gauge = &GAUGES[transport as usize][dialect as usize];
        gauge.increment(1);
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.decrement(1);
    }
}
