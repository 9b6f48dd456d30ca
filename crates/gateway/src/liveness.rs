//! When a WebSocket connection is alive: any frame from the client counts, a WebSocket Pong
//! included. A connection silent for an interval is sent a WebSocket Ping (and another each
//! further interval of silence), which every browser and WebSocket library answers by itself;
//! one silent for three intervals is dropped. So a client of a protocol without heartbeats (a
//! seed-003 page, say) stays connected while it is there, and one that is gone is found.

use std::time::Duration;

use tidings_engine::Session;
use tidings_proto::Code;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A WebSocket Ping's payload: empty (the Pong echoes it).
pub(crate) const PING: bytes::Bytes = bytes::Bytes::new();

/// What the reader's timer finds.
#[derive(Debug, PartialEq, Eq)]
enum Liveness {
    Alive,
    /// Silent for an interval (again): send a Ping.
    Probe,
    /// Silent for three intervals: drop the connection.
    Dead,
}

/// One connection's silence, measured against its heartbeat interval.
pub(crate) struct Silence {
    interval: Duration,
    last_seen: Instant,
    last_probe: Option<Instant>,
}

impl Silence {
    pub(crate) fn new(interval: Duration) -> Silence {
        Silence {
            interval,
            last_seen: Instant::now(),
            last_probe: None,
        }
    }

    /// Something came from the client.
    pub(crate) fn seen(&mut self) {
        self.last_seen = Instant::now();
    }

    /// How often the reader should call [`Silence::on_tick`]: a quarter of the interval (or of
    /// `other`, if shorter).
    pub(crate) fn period(&self, other: Duration) -> Duration {
        (self.interval.min(other) / 4).max(Duration::from_millis(10))
    }

    /// The reader's timer: ends the session of a connection found dead (and answers false), has
    /// the writer send a Ping when one is due, and resends what waits for acknowledgement.
    pub(crate) fn on_tick(&mut self, session: &Session, probe: &mpsc::Sender<()>) -> bool {
        match self.check() {
            Liveness::Dead => {
                tracing::debug!("heartbeat timeout");
                session.end(Code::HeartbeatTimeout);
                return false;
            }
            // Full means a Ping is waiting to go already.
            Liveness::Probe => drop(probe.try_send(())),
            Liveness::Alive => {}
        }
        session.resend_due();
        true
    }

    fn check(&mut self) -> Liveness {
        let now = Instant::now();
        let silent = now.duration_since(self.last_seen);
        if silent >= self.interval * 3 {
            return Liveness::Dead;
        }
        if silent < self.interval {
            return Liveness::Alive;
        }
        let due = match self.last_probe {
            Some(p) => p < self.last_seen || now.duration_since(p) >= self.interval,
            None => true,
        };
        if due {
            self.last_probe = Some(now);
            Liveness::Probe
        } else {
            Liveness::Alive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silence_is_probed_each_interval_and_dropped_at_three() {
        let mut s = Silence::new(Duration::from_secs(10));
        assert_eq!(s.check(), Liveness::Alive);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(s.check(), Liveness::Probe);
        assert_eq!(s.check(), Liveness::Alive, "one Ping per interval");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(s.check(), Liveness::Probe);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(s.check(), Liveness::Dead);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_restarts_the_count() {
        let mut s = Silence::new(Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(s.check(), Liveness::Probe);
        tokio::time::advance(Duration::from_secs(1)).await;
        s.seen(); // the Pong
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(s.check(), Liveness::Alive);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.check(), Liveness::Probe, "silent for an interval again");
        tokio::time::advance(Duration::from_secs(25)).await;
        assert_eq!(s.check(), Liveness::Dead);
    }
}
