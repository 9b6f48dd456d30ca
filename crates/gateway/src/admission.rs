//! Which connections the listener keeps: a permit per connection out of a fixed number, and a
//! bound on the connections that have not authenticated yet, in all and per client address.
//!
//! A connection that has not authenticated costs a socket and a task and proves nothing, so
//! those are what an attacker holds open to lock others out (sockets that send nothing, or one
//! header line now and then). Two caps bound them: per client address and in all. When a new
//! connection would pass either, the *oldest* unauthenticated connection it competes with is
//! closed rather than the new one refused: a client that is really trying authenticates within
//! a round trip or two, so it is never the oldest for long, while sockets held open on purpose
//! are always the oldest. An attacker then has to keep opening connections faster than real
//! clients authenticate to keep anyone out, instead of opening a few hundred once.
//!
//! Every connection holds one of `max_connections` permits for as long as its socket lives (a
//! semaphore permit, as mini-redis does). When none is free, a new connection first makes room
//! by closing the oldest unauthenticated one; only when every connection has authenticated is
//! it refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a new connection waits for the permit of the connection it had closed.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// The limits, as [`crate::GatewayConfig`] sets them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) connections: usize,
    pub(crate) unauthenticated: usize,
    pub(crate) unauthenticated_per_address: usize,
}

pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    limits: Limits,
    pending: Mutex<Pending>,
}

/// The connections that have not authenticated, oldest first.
#[derive(Default)]
struct Pending {
    next: u64,
    all: BTreeMap<u64, Entry>,
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
}

struct Entry {
    /// `None` while the client's address is not known yet (a trusted proxy's connection
    /// before its first request names the client).
    address: Option<IpAddr>,
    evict: CancellationToken,
}

impl Pending {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.all.remove(&id)?;
        if let Some(address) = entry.address {
            self.forget_address(address, id);
        }
        Some(entry)
    }

    fn forget_address(&mut self, address: IpAddr, id: u64) {
        if let Some(ids) = self.by_address.get_mut(&address) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_address.remove(&address);
            }
        }
    }

    /// Closes the connection `id` (it is no longer counted from here on).
    fn evict(&mut self, id: u64) {
        if let Some(entry) = self.remove(id) {
            tracing::debug!(
                address = ?entry.address,
                "closing the oldest unauthenticated connection to make room"
            );
            entry.evict.cancel();
        }
    }

    /// Closes the oldest connections of `address` until at most `max` remain.
    fn trim_address(&mut self, address: IpAddr, max: usize) {
        while let Some(ids) = self.by_address.get(&address) {
            if ids.len() <= max {
                break;
            }
            let Some(&oldest) = ids.first() else { break };
            self.evict(oldest);
        }
    }

    /// Closes the oldest connection; false if there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some((&oldest, _)) = self.all.first_key_value() else {
            return false;
        };
        self.evict(oldest);
        true
    }

    /// Closes the oldest connections until at most `max` remain.
    fn trim(&mut self, max: usize) {
        while self.all.len() > max {
            let Some((&oldest, _)) = self.all.first_key_value() else {
                break;
            };
            self.evict(oldest);
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            permits: Arc::new(Semaphore::new(limits.connections)),
            limits,
            pending: Mutex::new(Pending::default()),
        })
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection's permit: a free one, or the one the oldest unauthenticated connection
    /// gives back once closed. `None` when every connection has authenticated (or the closed
    /// one did not let go in time): the new one is to be refused.
    pub(crate) async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        // Chosen and closed under one lock: two new connections must never pick the same
        // oldest one, or one of them would wait for a permit nobody gives back.
        if !self.pending().evict_oldest() {
            return None;
        }
        tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Counts a new connection from `address` (`None`: not known yet) as unauthenticated,
    /// closing older ones past the caps.
    pub(crate) fn admit(
        self: &Arc<Admission>,
        permit: OwnedSemaphorePermit,
        address: Option<IpAddr>,
    ) -> Ticket {
        let evicted = CancellationToken::new();
        let mut pending = self.pending();
        let id = pending.next;
        pending.next += 1;
        pending.all.insert(
            id,
            Entry {
                address,
                evict: evicted.clone(),
            },
        );
        if let Some(address) = address {
            pending.by_address.entry(address).or_default().insert(id);
            pending.trim_address(address, self.limits.unauthenticated_per_address);
        }
        pending.trim(self.limits.unauthenticated);
        drop(pending);
        Ticket(Arc::new(TicketInner {
            id,
            admission: self.clone(),
            evicted,
            authenticated: AtomicBool::new(false),
            _permit: permit,
        }))
    }

    /// Connections not authenticated yet (for tests and health).
    #[cfg(test)]
    fn unauthenticated(&self) -> usize {
        self.pending().all.len()
    }
}

/// One connection's place: its permit, and its entry among the unauthenticated until it
/// authenticates. Shared by everything that serves the connection (the HTTP task, a WebSocket
/// task after an upgrade); the permit is given back when the last of them lets go, which is
/// when the socket is closed.
#[derive(Clone)]
pub(crate) struct Ticket(Arc<TicketInner>);

struct TicketInner {
    id: u64,
    admission: Arc<Admission>,
    evicted: CancellationToken,
    authenticated: AtomicBool,
    _permit: OwnedSemaphorePermit,
}

impl Ticket {
    /// The connection carried a valid token or signature: it no longer counts against the
    /// caps on unauthenticated connections, and is never closed to make room.
    pub(crate) fn authenticated(&self) {
        if !self.0.authenticated.swap(true, Ordering::AcqRel) {
            self.0.admission.pending().remove(self.0.id);
        }
    }

    /// The client's address became known (a trusted proxy named it): counts the connection
    /// against that address's cap from now on.
    pub(crate) fn address_known(&self, address: IpAddr) {
        if self.0.authenticated.load(Ordering::Acquire) {
            return;
        }
        let mut pending = self.0.admission.pending();
        let id = self.0.id;
        let Some(entry) = pending.all.get_mut(&id) else {
            return;
        };
        let old = entry.address.replace(address);
        if old == Some(address) {
            return;
        }
        if let Some(old) = old {
            pending.forget_address(old, id);
        }
        pending.by_address.entry(address).or_default().insert(id);
        let max = self.0.admission.limits.unauthenticated_per_address;
        pending.trim_address(address, max);
    }

    /// Completes once the connection was closed to make room for a newer one.
    pub(crate) fn evicted(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.0.evicted.cancelled()
    }

    pub(crate) fn is_evicted(&self) -> bool {
        self.0.evicted.is_cancelled()
    }
}

impl Drop for TicketInner {
    fn drop(&mut self) {
        if !self.authenticated.load(Ordering::Acquire) {
            self.admission.pending().remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: usize, unauthenticated: usize, per_address: usize) -> Limits {
        Limits {
            connections,
            unauthenticated,
            unauthenticated_per_address: per_address,
        }
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    async fn admit(a: &Arc<Admission>, address: Option<IpAddr>) -> Ticket {
        let permit = a.permit().await.expect("a permit");
        a.admit(permit, address)
    }

    #[tokio::test]
    async fn an_address_past_its_cap_loses_its_oldest_connection() {
        let a = Admission::new(limits(100, 100, 2));
        let first = admit(&a, ip(1)).await;
        let second = admit(&a, ip(1)).await;
        let other = admit(&a, ip(2)).await;
        assert!(!first.is_evicted());
        let third = admit(&a, ip(1)).await;
        assert!(first.is_evicted(), "the oldest of the address is closed");
        assert!(!second.is_evicted() && !third.is_evicted() && !other.is_evicted());
        assert_eq!(a.unauthenticated(), 3);
    }

    #[tokio::test]
    async fn past_the_total_cap_the_oldest_of_all_goes() {
        let a = Admission::new(limits(100, 3, 100));
        let t: Vec<Ticket> =
            futures_util::future::join_all((1..=3).map(|i| admit(&a, ip(i)))).await;
        let newest = admit(&a, ip(9)).await;
        assert!(t[0].is_evicted());
        assert!(!t[1].is_evicted() && !t[2].is_evicted() && !newest.is_evicted());
    }

    #[tokio::test]
    async fn authenticated_connections_are_neither_counted_nor_evicted() {
        let a = Admission::new(limits(100, 2, 2));
        let user = admit(&a, ip(1)).await;
        user.authenticated();
        let x = admit(&a, ip(1)).await;
        let y = admit(&a, ip(1)).await;
        let z = admit(&a, ip(1)).await;
        assert!(!user.is_evicted());
        assert!(x.is_evicted() && !y.is_evicted() && !z.is_evicted());
        assert_eq!(a.unauthenticated(), 2);
    }

    #[tokio::test]
    async fn a_full_server_makes_room_by_closing_an_unauthenticated_connection() {
        let a = Admission::new(limits(2, 10, 10));
        let user = admit(&a, ip(1)).await;
        user.authenticated();
        let idle = admit(&a, ip(2)).await;
        // The idle connection's task lets go of its ticket once told to close.
        let closer = {
            let idle = idle.clone();
            tokio::spawn(async move {
                idle.evicted().await;
            })
        };
        drop(idle);
        let newcomer = a.permit().await;
        closer.await.unwrap();
        assert!(newcomer.is_some());
        // Everyone authenticated: nothing to close, the next one is refused.
        let newcomer = a.admit(newcomer.unwrap(), ip(3));
        newcomer.authenticated();
        assert!(a.permit().await.is_none());
        drop(user);
        assert!(
            a.permit().await.is_some(),
            "a closed connection's permit is free"
        );
    }

    #[tokio::test]
    async fn a_proxied_connection_counts_for_its_client_once_known() {
        let a = Admission::new(limits(100, 100, 1));
        let direct = admit(&a, ip(7)).await;
        let proxied = admit(&a, None).await;
        assert!(!direct.is_evicted());
        proxied.address_known(IpAddr::from([10, 0, 0, 7]));
        assert!(
            direct.is_evicted(),
            "the proxied client is the same address"
        );
        assert!(!proxied.is_evicted());
    }
}
