//! Local stand-ins for the mobile push providers, for tests.
//!
//! - [`FakeFcm`]: Firebase Cloud Messaging's HTTP v1 `messages:send` and the Google OAuth token
//!   endpoint its service account points at (HTTP/1.1 and HTTP/2).
//! - [`FakeApns`]: Apple's push service, a production and a sandbox listener, HTTP/2 only (h2c:
//!   plain TCP, prior knowledge), with token-based authentication.
//!
//! Each binds 127.0.0.1:0, checks every request as the provider's public documentation says the
//! real service does (signatures, claims, headers, message shape), answers with the provider's
//! status codes and error bodies, records what it accepted, and can be scripted to fail for a
//! device token. Time comes from an injected [`Clock`], so tests move it instead of sleeping.
//! Dropping a fake stops its listeners and connections.
//!
//! Architecture invariant: test-only. Only dev-dependencies use it, and it depends on no tidings
//! crate, so the clients it checks cannot lend it their mistakes.

pub mod apns;
pub mod fcm;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use apns::{ApnsAccepted, FakeApns};
pub use fcm::{FakeFcm, FcmAccepted};

/// Milliseconds since the Unix epoch: the same shape as `tidings_engine::Clock`, so a test can
/// hand one clock to a client and to its fake.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// Waiting for accepted requests took longer than allowed.
#[derive(Debug, thiserror::Error)]
#[error("waited {waited:?} for {wanted} accepted requests; {got} came")]
pub struct Timeout {
    pub wanted: usize,
    pub got: usize,
    pub waited: Duration,
}

/// What a fake accepted, in order, and a count to wait on.
pub(crate) struct Log<T> {
    items: Mutex<Vec<T>>,
    count: watch::Sender<usize>,
}

impl<T: Clone> Log<T> {
    pub(crate) fn new() -> Log<T> {
        Log {
            items: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        }
    }

    pub(crate) fn push(&self, item: T) {
        let mut items = lock(&self.items);
        items.push(item);
        self.count.send_replace(items.len());
    }

    pub(crate) fn all(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// Everything accepted, once there are at least `n`; an error after `timeout`.
    pub(crate) async fn wait(&self, n: usize, timeout: Duration) -> Result<Vec<T>, Timeout> {
        let mut count = self.count.subscribe();
        let reached = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n))
            .await
            .is_ok();
        if reached {
            Ok(self.all())
        } else {
            Err(Timeout {
                wanted: n,
                got: *count.borrow(),
                waited: timeout,
            })
        }
    }
}

/// A std mutex, taken even if a panicking handler poisoned it (the state stays usable for the
/// test's assertions, which will fail on their own).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A response of the fakes.
pub(crate) type Answer = Response<Full<Bytes>>;

/// An answer with `status`, `headers`, and `body` as JSON (none: empty).
pub(crate) fn answer(
    status: u16,
    headers: &[(&str, String)],
    body: Option<&serde_json::Value>,
) -> Answer {
    let mut response = Response::new(Full::new(
        body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
    ));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let out = response.headers_mut();
    if body.is_some() {
        out.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json; charset=UTF-8"),
        );
    }
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            out.insert(name, value);
        }
    }
    response
}

/// The body, if it is at most `limit` bytes and arrived whole.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Option<Bytes> {
    Limited::new(body, limit)
        .collect()
        .await
        .ok()
        .map(|b| b.to_bytes())
}

/// Which HTTP versions a listener speaks.
#[derive(Clone, Copy)]
pub(crate) enum Versions {
    /// HTTP/1.1 and HTTP/2 (h2c by prior knowledge).
    Both,
    /// HTTP/2 only: anything else fails the connection preface and the connection is closed.
    Http2,
}

/// A listener serving until dropped.
pub(crate) struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    /// Stops accepting; the connections, held by the accepting task, end with it.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on 127.0.0.1 at a port of the system's choosing.
pub(crate) async fn bind() -> io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", 0)).await
}

/// Serves `listener`, each request answered by `handle`.
pub(crate) fn serve<H, F>(
    listener: TcpListener,
    versions: Versions,
    handle: H,
) -> io::Result<Server>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            // An accept error concerns one connection (or a passing lack of descriptors):
            // the listener goes on.
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            connections.spawn(async move {
                let service = service_fn(move |request| {
                    let reply = handle(request);
                    async move { Ok::<_, Infallible>(reply.await) }
                });
                let io = TokioIo::new(stream);
                // A connection that fails (a client that speaks HTTP/1.1 to an HTTP/2-only
                // listener, one that goes away) just ends: the client sees the error.
                match versions {
                    Versions::Http2 => {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    }
                    Versions::Both => {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    }
                }
            });
        }
    });
    Ok(Server { addr, task })
}
