//! The accept loop and what bounds a client before it has authenticated: a deadline for every
//! request's head and body, the connection caps of [`crate::admission`], the client's address
//! (from a trusted proxy's header, never from anyone else's), and a lingering close.
//!
//! Each accepted socket is served by hyper's HTTP/1 connection on a task of its own:
//! - the request head (request line and headers, and on a kept-alive connection the wait for
//!   the next request) must arrive within `request_timeout` (hyper's header read timeout, one
//!   deadline for the whole head, not reset by each line);
//! - a request body must arrive within `request_timeout` of its head (`upload_timeout` for
//!   file uploads); a late one is answered 408 with 42015;
//! - every request carries the connection's [`Ticket`] (as a task-local, so the handlers that
//!   authenticate a client can say so with [`authenticated`]) and the client's [`ClientAddr`];
//!   on a plain (not TLS) socket, also the socket's [`Gate`], through which a WebSocket's
//!   chatroom frames may be written directly.
//!
//! With TLS on ([`crate::tls`]), the handshake comes first, within the same `request_timeout`,
//! on a socket that already holds its permit and counts as unauthenticated like any other; a
//! plain-HTTP request to the TLS port is answered 400 in plain HTTP, saying so.
//!
//! Sockets are closed with a lingering close ([`Linger`]): what the client still sends is read
//! and dropped for a moment before the socket is released, because closing a socket with
//! unread data makes the kernel send a reset, which can destroy the last thing the server wrote
//! (a WebSocket close frame, an error response) before the client reads it. A lingering socket
//! keeps its connection's permit, so the permits count every socket the server holds; one
//! closed to make room for another is closed at once.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tidings_proto::Code;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::admission::{Admission, Limits, Ticket};
use crate::gate::Gate;

/// Sockets being closed lingeringly at once (each still holds its permit); past this, a
/// socket is closed at once.
const MAX_LINGERING: usize = 1024;
/// How long a closing socket's input is read and dropped, at most.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// How much of a closing socket's input is read and dropped, at most.
const LINGER_BYTES: usize = 4 << 20;
/// Refusals of a full server being written at once; past this, a socket is closed at once.
/// These sockets hold no permit: the reserve of file descriptors beside the connections'
/// covers them (see `connection_budget` in the server).
pub const MAX_REFUSING: usize = 16;
/// How long a refusal may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);
/// After an accept error (out of file descriptors), wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

tokio::task_local! {
    /// The connection the request being handled came on.
    static TICKET: Ticket;
}

/// Marks the connection the current request came on as authenticated (a valid token, session
/// or signature): it no longer counts as, or makes room like, an unauthenticated one.
pub(crate) fn authenticated() {
    let _ = TICKET.try_with(Ticket::authenticated);
}

/// The ticket of the connection the current request came on (`None` outside a request, as in
/// unit tests). WebSocket handlers take it into the connection's own task.
pub(crate) fn current_ticket() -> Option<Ticket> {
    TICKET.try_with(Ticket::clone).ok()
}

/// The client's address as far as the server can tell: the peer's, or, when the peer is a
/// trusted proxy, the one its header names. An extension of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

/// The proxies whose header names the client, and that header.
#[derive(Debug, Clone)]
pub(crate) struct Proxies {
    trusted: Vec<ipnet::IpNet>,
    header: HeaderName,
}

impl Proxies {
    pub(crate) fn new(trusted: Vec<ipnet::IpNet>, header: HeaderName) -> Proxies {
        Proxies { trusted, header }
    }

    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer`. A trusted proxy's header is read from the right:
    /// each proxy appends the address it received the request from, so the rightmost address
    /// that is not a trusted proxy is the client (anything left of it the client could have
    /// written itself). A header that is missing or unreadable leaves the peer.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in headers.get_all(&self.header) {
            let Ok(value) = value.to_str() else {
                return peer;
            };
            for hop in value.split(',') {
                match parse_hop(hop.trim()) {
                    Some(ip) => hops.push(canonical(ip)),
                    None => return peer,
                }
            }
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        client
    }
}

/// An address as an `X-Forwarded-For`-style header writes it: `1.2.3.4`, `1.2.3.4:5678`,
/// `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// IPv4 addresses mapped into IPv6 (a dual-stack listener's peers) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What the accept loop needs, shared by every connection's task.
pub(crate) struct Listening {
    pub(crate) router: Router,
    pub(crate) admission: Arc<Admission>,
    pub(crate) proxies: Proxies,
    pub(crate) request_timeout: Duration,
    pub(crate) upload_timeout: Duration,
    lingering: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    /// TLS on this listener, if on.
    pub(crate) tls: Option<crate::tls::Tls>,
}

impl Listening {
    pub(crate) fn new(
        router: Router,
        limits: Limits,
        proxies: Proxies,
        request_timeout: Duration,
        upload_timeout: Duration,
    ) -> Listening {
        Listening {
            router,
            admission: Admission::new(limits),
            proxies,
            request_timeout,
            upload_timeout,
            lingering: Arc::new(Semaphore::new(MAX_LINGERING)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            tls: None,
        }
    }

    /// Serves HTTPS (and WSS) with `tls`.
    pub(crate) fn with_tls(mut self, tls: Option<crate::tls::Tls>) -> Listening {
        self.tls = tls;
        self
    }
}

/// Accepts connections until `stop` is cancelled, each on a task `tasks` tracks. On `stop`,
/// connections finish the request they are serving and close.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    listening: Arc<Listening>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or the like): the caps should prevent it, but
                    // never spin on it.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        // Small frames must not wait for Nagle's algorithm.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        tasks.spawn(connection(stream, peer, listening.clone(), stop.clone()));
    }
}

/// Serves one socket: takes its permit (or refuses it), completes the TLS handshake when TLS is
/// on, then HTTP/1 with upgrades until the connection ends, is closed to make room, or the
/// server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    listening: Arc<Listening>,
    stop: CancellationToken,
) {
    let Some(permit) = listening.admission.permit().await else {
        refuse_full(stream, &listening).await;
        return;
    };
    let proxied = listening.proxies.trusts(peer.ip());
    // A trusted proxy's connections count for their client once a request names it.
    let address = (!proxied).then(|| tidings_engine::address_key(canonical(peer.ip())));
    let ticket = listening.admission.admit(permit, address);
    let io = Linger::new(stream, listening.lingering.clone(), Some(ticket.clone()));
    let Some(tls) = &listening.tls else {
        // Only a plain socket can be written by a chatroom's fan-out directly.
        let gate = io.gate.clone();
        serve_http(io, peer, listening, ticket, Some(gate), stop).await;
        return;
    };
    // The handshake is part of the request's head: it has the same deadline, and the socket
    // may be closed to make room meanwhile.
    let handshake = tokio::time::timeout(listening.request_timeout, handshake(io, tls));
    let accepted = tokio::select! {
        accepted = handshake => accepted,
        _ = ticket.evicted() => return,
        _ = stop.cancelled() => return,
    };
    match accepted {
        Ok(Ok(Some(io))) => serve_http(io, peer, listening, ticket, None, stop).await,
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake did not complete in time"),
    }
}

/// The TLS handshake on a new socket. A client that speaks plain HTTP instead (its first byte
/// is not a TLS record's) is answered 400 in plain HTTP and `None` returned.
async fn handshake(
    mut io: Linger,
    tls: &crate::tls::Tls,
) -> io::Result<Option<tokio_rustls::server::TlsStream<Linger>>> {
    /// The first byte of a TLS handshake record.
    const HANDSHAKE_RECORD: u8 = 0x16;
    let mut first = [0u8; 1];
    if io.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if first[0] != HANDSHAKE_RECORD {
        tracing::debug!("plain HTTP on the TLS port: answering 400");
        let code = Code::BadRequest;
        let body = serde_json::json!({
            "code": code.as_u32(),
            "message": "this port speaks HTTPS: use https:// or wss://",
        })
        .to_string();
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        io.write_all(answer.as_bytes()).await?;
        io.flush().await?;
        return Ok(None);
    }
    tls.acceptor().accept(io).await.map(Some)
}

/// HTTP/1 with upgrades on an accepted (and, with TLS, decrypted) socket.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    listening: Arc<Listening>,
    ticket: Ticket,
    gate: Option<Arc<Gate>>,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let io = TokioIo::new(io);
    let service = {
        let listening = listening.clone();
        let ticket = ticket.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(
                request,
                peer,
                listening.clone(),
                ticket.clone(),
                gate.clone(),
            )
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(listening.request_timeout);
    let conn = http.serve_connection(io, service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let evicted = ticket.clone();
    // The service holds the ticket while the connection is served, and a WebSocket task after
    // an upgrade; this task's own reference must not keep the permit past both.
    drop(ticket);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = evicted.evicted() => return,
        _ = stop.cancelled() => {}
    }
    drop(evicted);
    // Shutting down: finish the request under way (a long poll answers at once), then close.
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// One request: its extensions, the body's deadline, and the connection's ticket in scope.
async fn handle(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    listening: Arc<Listening>,
    ticket: Ticket,
    gate: Option<Arc<Gate>>,
) -> Result<Response<Body>, Infallible> {
    let client = listening.proxies.client(peer.ip(), request.headers());
    if listening.proxies.trusts(peer.ip()) {
        ticket.address_known(tidings_engine::address_key(client));
    }
    request.extensions_mut().insert(ClientAddr(client));
    if let Some(gate) = gate {
        request.extensions_mut().insert(gate);
    }
    let limit = if request.method() == Method::POST && request.uri().path() == crate::FILES_PATH {
        listening.upload_timeout
    } else {
        listening.request_timeout
    };
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        if hyper::body::Body::is_end_stream(&body) {
            Body::new(body)
        } else {
            Body::new(DeadlineBody {
                inner: body,
                deadline: Box::pin(tokio::time::sleep(limit)),
                expired: expired.clone(),
            })
        }
    });
    let router = listening.router.clone();
    let response = TICKET.scope(ticket, router.oneshot(request)).await?;
    if expired.load(Ordering::Acquire) {
        return Ok(late_body());
    }
    Ok(response)
}

/// The answer to a request whose body did not arrive in time; the connection closes after it.
fn late_body() -> Response<Body> {
    let code = Code::RequestTimeout;
    let body = serde_json::json!({ "code": code.as_u32(), "message": code.text() }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

/// Refuses a socket the server has no room for with a complete HTTP answer (503, 41006), which
/// a WebSocket client reports as a failed handshake with that status, instead of leaving it in
/// the accept queue to time out.
async fn refuse_full(stream: TcpStream, listening: &Listening) {
    let Ok(_slot) = listening.refusing.clone().try_acquire_owned() else {
        tracing::debug!("refusing a connection: server full");
        return;
    };
    tracing::debug!("refusing a connection with 503: server full");
    let code = Code::ServerFull;
    let body = serde_json::json!({ "code": code.as_u32(), "message": code.text() }).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let io = Linger::new(stream, listening.lingering.clone(), None);
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        match &listening.tls {
            None => write_and_flush(io, answer.as_bytes()).await,
            // The handshake counts in the same second: a client that does not complete it
            // promptly gets nothing. TLS ends with its close_notify.
            Some(tls) => {
                let mut io = tls.acceptor().accept(io).await?;
                write_and_flush(&mut io, answer.as_bytes()).await?;
                io.shutdown().await
            }
        }
    })
    .await;
}

async fn write_and_flush(mut io: impl AsyncWrite + Unpin, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

/// A request body that fails once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

/// The error a late body ends with.
#[derive(Debug)]
struct LateBody;

impl std::fmt::Display for LateBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for LateBody {}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(LateBody))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that is closed lingeringly: when dropped, it stops writing (FIN) and reads and
/// drops what the client still sends, until the client closes, for at most [`LINGER_TIME`] and
/// [`LINGER_BYTES`], before the socket (and its connection's permit) is released. A socket
/// closed to make room is closed at once. Its writes go through its [`Gate`], which a plain
/// WebSocket connection shares with its chatrooms' fan-out.
pub(crate) struct Linger {
    stream: Option<Arc<TcpStream>>,
    gate: Arc<Gate>,
    lingering: Arc<Semaphore>,
    /// The connection's ticket, held while lingering.
    ticket: Option<Ticket>,
}

impl Linger {
    fn new(stream: TcpStream, lingering: Arc<Semaphore>, ticket: Option<Ticket>) -> Linger {
        let stream = Arc::new(stream);
        Linger {
            gate: Arc::new(Gate::new(stream.clone())),
            stream: Some(stream),
            lingering,
            ticket,
        }
    }

    /// Reads the next bytes without taking them off the socket.
    async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream().peek(buf).await
    }

    fn stream(&self) -> &TcpStream {
        // Only `Drop` takes the stream out.
        self.stream.as_ref().expect("a socket until dropped")
    }
}

impl AsyncRead for Linger {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = self.get_mut().stream();
        loop {
            std::task::ready!(stream.poll_read_ready(cx))?;
            let into = buf.initialize_unfilled();
            let room = into.len();
            let mut got = 0;
            // A read that fills less than the buffer has drained the socket. Saying so to the
            // runtime (a `WouldBlock` from `try_io`'s closure clears its readiness, unless the
            // socket became readable again meanwhile) makes the next read wait for the socket,
            // as the runtime's own `TcpStream` reads do, instead of trying it once more: one
            // `recvfrom` that finds nothing for every frame a client sends.
            let read = stream.try_io(tokio::io::Interest::READABLE, || {
                got = stream.try_read(&mut into[..])?;
                if got > 0 && got < room {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(()) => {
                    buf.advance(got);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {
                    buf.advance(got);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Linger {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.gate.poll_write(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.gate.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.gate.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.gate.poll_write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }
}

impl Drop for Linger {
    fn drop(&mut self) {
        // Nothing more is written to the socket, by the connection or its chatrooms.
        self.gate.close();
        let Some(stream) = self.stream.take().and_then(Arc::into_inner) else {
            return;
        };
        let ticket = self.ticket.take();
        if ticket.as_ref().is_some_and(Ticket::is_evicted) {
            return;
        }
        // The usual case costs nothing more: the client already closed, and nothing of its
        // is left unread.
        let mut scratch = [0u8; 4096];
        loop {
            match stream.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        let Ok(slot) = self.lingering.clone().try_acquire_owned() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _slot = slot;
            match &ticket {
                Some(t) => {
                    tokio::select! {
                        _ = linger(stream) => {}
                        _ = t.evicted() => {}
                    }
                }
                None => linger(stream).await,
            }
        });
    }
}

async fn linger(mut stream: TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = stream.shutdown().await;
    let mut scratch = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut read = 0;
        while read < LINGER_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> Proxies {
        Proxies::new(
            nets.iter().map(|n| n.parse().unwrap()).collect(),
            HeaderName::from_static("x-forwarded-for"),
        )
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let p = proxies(&[]);
        assert_eq!(
            p.client(ip("203.0.113.9"), &headers(&["198.51.100.1"])),
            ip("203.0.113.9")
        );
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            p.client(ip("203.0.113.9"), &headers(&["10.0.0.1"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_rightmost_untrusted_hop() {
        let p = proxies(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client wrote the first entry itself; the proxies appended the rest.
        let h = headers(&["6.6.6.6, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(p.client(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        assert_eq!(p.client(ip("::ffff:127.0.0.1"), &h), ip("198.51.100.7"));
        // Ports and brackets as some proxies write them.
        let h = headers(&["[2001:db8::1]:4711"]);
        assert_eq!(p.client(ip("10.9.9.9"), &h), ip("2001:db8::1"));
        let h = headers(&["198.51.100.8:80"]);
        assert_eq!(p.client(ip("10.9.9.9"), &h), ip("198.51.100.8"));
        // No header, garbage, or only proxies: the peer, or the leftmost proxy.
        assert_eq!(p.client(ip("10.9.9.9"), &HeaderMap::new()), ip("10.9.9.9"));
        assert_eq!(
            p.client(ip("10.9.9.9"), &headers(&["nonsense"])),
            ip("10.9.9.9")
        );
        assert_eq!(
            p.client(ip("10.9.9.9"), &headers(&["10.0.0.2, 10.0.0.3"])),
            ip("10.0.0.2")
        );
    }
}
