//! A socket's write side, shared: every byte the server writes to an accepted socket passes
//! through its [`Gate`], which takes each write whole (what the socket does not take at once is
//! held and written before anything after it), so the socket is always between two writes.
//! That lets a chatroom's fan-out write a room's frames straight to a member's socket from its
//! own task ([`Gate::write_now`]) while the connection's writer is idle, without waking the
//! writer and without ever splitting another frame: the frames of both are whole, and in the
//! order they were taken.
//!
//! The socket itself is shared with the connection (the listener's `Linger` reads from it
//! without the gate's lock); [`Gate::close`] takes it out of the gate before the socket is
//! closed, so nothing is ever written to a closed descriptor (or one reused by another socket).

use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The write side of one socket.
pub(crate) struct Gate {
    state: Mutex<State>,
    /// Woken when a direct write left bytes held: the connection's writer writes them out.
    held: Notify,
}

struct State {
    /// `None` once the socket is closing.
    stream: Option<Arc<TcpStream>>,
    /// Bytes taken but not yet in the socket (the rest of a write the socket took in part).
    held: Vec<u8>,
}

/// Writes what is held; ready once nothing is.
fn poll_drain(state: &mut State, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let Some(stream) = &state.stream else {
        return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
    };
    while !state.held.is_empty() {
        match stream.try_write(&state.held) {
            Ok(n) => {
                state.held.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready!(stream.poll_write_ready(cx))?;
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    // A burst's buffer is not kept by an idle connection.
    state.held = Vec::new();
    Poll::Ready(Ok(()))
}

/// Keeps what of `bufs` is past the first `written` bytes.
fn hold_rest(held: &mut Vec<u8>, bufs: &[IoSlice<'_>], mut written: usize) {
    for buf in bufs {
        if written >= buf.len() {
            written -= buf.len();
            continue;
        }
        held.extend_from_slice(&buf[written..]);
        written = 0;
    }
}

impl Gate {
    pub(crate) fn new(stream: Arc<TcpStream>) -> Gate {
        Gate {
            state: Mutex::new(State {
                stream: Some(stream),
                held: Vec::new(),
            }),
            held: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change of the state is one call that leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes all of `bufs` once what is held is written and the socket takes some of them:
    /// what it does not take now is held. The connection's own writes (hyper's, the WebSocket
    /// library's) come through here.
    pub(crate) fn poll_write(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.lock();
        ready!(poll_drain(&mut state, cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let state = &mut *state;
        let Some(stream) = &state.stream else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        loop {
            match stream.try_write_vectored(bufs) {
                Ok(n) => {
                    hold_rest(&mut state.held, bufs, n);
                    return Poll::Ready(Ok(total));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(stream.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Ready once everything taken is in the socket.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_drain(&mut self.lock(), cx)
    }

    /// Writes what is held, then ends the socket's output.
    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        ready!(poll_drain(&mut state, cx))?;
        match &state.stream {
            Some(stream) => Poll::Ready(
                rustix::net::shutdown(&**stream, rustix::net::Shutdown::Write).map_err(Into::into),
            ),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Writes `bufs` now, without waiting, if nothing is held and the socket takes some of
    /// them: then all of them are taken (the rest held, and the connection's writer woken to
    /// write it) and true is returned. False if nothing was written.
    pub(crate) fn write_now(&self, bufs: &[IoSlice<'_>]) -> bool {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(stream) = &state.stream else {
            return false;
        };
        if !state.held.is_empty() {
            return false;
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let written = match bufs {
            [one] => stream.try_write(one),
            _ => stream.try_write_vectored(bufs),
        };
        match written {
            Ok(n) if n == total => true,
            Ok(n) if n > 0 => {
                hold_rest(&mut state.held, bufs, n);
                self.held.notify_one();
                true
            }
            // A full socket, or a failed one: the connection's writer finds out which.
            _ => false,
        }
    }

    /// Completes when a direct write has left bytes held.
    pub(crate) async fn holding(&self) {
        self.held.notified().await;
    }

    /// Takes the socket out: nothing is written through the gate after this.
    pub(crate) fn close(&self) {
        self.lock().stream = None;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A gate over a server socket, and its client.
    pub(crate) async fn pair() -> (Arc<Gate>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // A small send buffer, so that the socket takes a write in part once it is near full.
        rustix::net::sockopt::set_socket_send_buffer_size(&server, 8 * 1024).unwrap();
        rustix::net::sockopt::set_socket_recv_buffer_size(&client, 64 * 1024).unwrap();
        server.set_nodelay(true).unwrap();
        client.set_nodelay(true).unwrap();
        (Arc::new(Gate::new(Arc::new(server))), client)
    }

    /// A record of `len` bytes: its number in the first four, then that number's low byte.
    fn record(n: u32, len: usize) -> Vec<u8> {
        let mut r = n.to_be_bytes().to_vec();
        r.resize(len, n as u8);
        r
    }

    /// Splits what was read into records of `len` bytes, checking that each is whole.
    fn records(bytes: &[u8], len: usize) -> Vec<u32> {
        assert_eq!(bytes.len() % len, 0, "a record was cut off");
        bytes
            .chunks(len)
            .map(|r| {
                let n = u32::from_be_bytes(r[..4].try_into().unwrap());
                assert!(r[4..].iter().all(|b| *b == n as u8), "record {n} mixed");
                n
            })
            .collect()
    }

    /// Writes from the connection's side and direct writes from another task interleave only
    /// between writes, even when the socket is full and takes writes in part; every write that
    /// was taken arrives once, in the order taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_from_both_sides_stay_whole_and_in_order() {
        const LEN: usize = 100_000;
        const EACH: u32 = 20;
        let (gate, mut client) = pair().await;
        // The reader starts once the socket is full, so that writes are taken in part.
        let full = Arc::new(Notify::new());
        let reader = {
            let full = full.clone();
            tokio::spawn(async move {
                full.notified().await;
                let mut all = Vec::new();
                client.read_to_end(&mut all).await.unwrap();
                all
            })
        };
        let (taken_tx, mut taken_rx) = tokio::sync::mpsc::unbounded_channel();
        let direct = {
            let gate = gate.clone();
            let taken = taken_tx.clone();
            let full = full.clone();
            tokio::spawn(async move {
                let mut held_writes = 0;
                for n in 0..EACH {
                    let r = record(2 * n + 1, LEN);
                    let bufs = [IoSlice::new(&r[..100]), IoSlice::new(&r[100..])];
                    // Until the socket takes it: a full socket takes nothing and holds nothing.
                    // (Like a room's fan-out, this side never waits on the socket: only the
                    // connection's side below does, as one task, the connection's writer, does.)
                    while !gate.write_now(&bufs) {
                        full.notify_one();
                        tokio::task::yield_now().await;
                    }
                    taken.send(2 * n + 1).unwrap();
                    if !gate.lock().held.is_empty() {
                        held_writes += 1;
                        full.notify_one();
                    }
                }
                held_writes
            })
        };
        for n in 0..EACH {
            let r = record(2 * n, LEN);
            let written = poll_fn(|cx| {
                let p = gate.poll_write(cx, &[IoSlice::new(&r)]);
                if p.is_pending() {
                    full.notify_one();
                }
                p
            })
            .await
            .unwrap();
            assert_eq!(written, LEN);
            taken_tx.send(2 * n).unwrap();
            tokio::task::yield_now().await;
        }
        // The connection's writer flushes its own writes (a write of its own taken in part is
        // held without waking anyone: the writer itself writes it out), ...
        poll_fn(|cx| {
            let p = gate.poll_flush(cx);
            if p.is_pending() {
                full.notify_one();
            }
            p
        })
        .await
        .unwrap();
        // ... and once it is idle writes out what a direct write left held whenever it is
        // told to.
        let mut direct = direct;
        let held_writes = loop {
            tokio::select! {
                done = &mut direct => break done.unwrap(),
                () = gate.holding() => poll_fn(|cx| gate.poll_flush(cx)).await.unwrap(),
            }
        };
        poll_fn(|cx| gate.poll_shutdown(cx)).await.unwrap();
        drop(taken_tx);
        let mut order = Vec::new();
        while let Some(n) = taken_rx.recv().await {
            order.push(n);
        }
        let got = records(&reader.await.unwrap(), LEN);
        assert_eq!(got.len(), 2 * EACH as usize);
        // Taken order and arrival order agree for the direct writes among themselves and the
        // connection's among themselves (the two sides' channel sends race each other).
        for parity in [0, 1] {
            let sent: Vec<u32> = order.iter().copied().filter(|n| n % 2 == parity).collect();
            let arrived: Vec<u32> = got.iter().copied().filter(|n| n % 2 == parity).collect();
            assert_eq!(sent, arrived);
        }
        assert!(
            held_writes > 0,
            "no direct write was taken in part: the test proves nothing"
        );
    }

    #[tokio::test]
    async fn nothing_is_written_after_close() {
        let (gate, mut client) = pair().await;
        assert!(gate.write_now(&[IoSlice::new(b"one")]));
        gate.close();
        assert!(!gate.write_now(&[IoSlice::new(b"two")]));
        let err = poll_fn(|cx| gate.poll_write(cx, &[IoSlice::new(b"three")]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
        let mut got = [0u8; 3];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one");
    }
}
