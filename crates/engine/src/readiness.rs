//! Whether this node can serve: its store answers, and in a cluster its bus is connected.

use std::time::Duration;

use crate::Engine;

/// The parts a node needs to serve, as last checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `Ok`, or why the store did not answer a cheap query in time.
    pub store: Result<(), String>,
    /// Whether the cluster's bus is connected; `None` outside a cluster.
    pub bus: Option<bool>,
}

impl Readiness {
    /// Every part is ready.
    pub fn ready(&self) -> bool {
        self.store.is_ok() && self.bus != Some(false)
    }
}

impl Engine {
    /// Checks the store (a ping it must answer within `deadline`) and the bus.
    pub async fn readiness(&self, deadline: Duration) -> Readiness {
        let store = match tokio::time::timeout(deadline, self.inner.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", deadline.as_millis())),
        };
        Readiness {
            store,
            bus: self.bus_connected(),
        }
    }
}
