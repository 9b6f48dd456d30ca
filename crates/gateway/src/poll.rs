//! The native protocol over HTTP long-polling, for clients that cannot use WebSocket (a proxy
//! that strips the upgrade, an old browser). The frames are the protocol's JSON frames; only the
//! carriage differs:
//!
//! - `POST /v1/poll` with a CONNECT frame opens a session: the answer holds the CONNACK and, if
//!   it succeeded, the session's id, an unguessable key that authorises the calls below.
//! - `POST /v1/poll/{session}` with a frame or an array of frames: they are handled in order,
//!   exactly as if they came over a WebSocket; whatever the server answers comes by polling.
//! - `GET /v1/poll/{session}?after=N&wait=MS`: the next batch of frames, held open until there
//!   is one or `wait` passes (then an empty batch). Batches are numbered; `after` names the last
//!   batch the client received, and the server keeps each batch until a poll's `after` shows it
//!   arrived: a poll whose answer was lost is repeated with the same `after` and gets the same
//!   batch again. Nothing is lost to a dropped poll, and deliveries are acknowledged by the
//!   client's PUBACK/QUERYCON frames as on WebSocket.
//!
//! The session's outbound queue is the engine's bounded outbox (an overflow ends the session
//! with 41002, as on WebSocket). A session ends when its DISCONNECT has been delivered and the
//! next poll acknowledged it, or when no request has been open for one heartbeat interval
//! (41001). A newer poll of the same session answers an older one still waiting with an empty
//! batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use tidings_engine::{Outbound, Refusal, Session};
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Code, Encoding, codec};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tidings_dialects::Step;
use tidings_dialects::native::{
    self, connack_frame, decode_error_code, disconnect_frame, outbound_frame,
};

use crate::AppState;
use crate::api::error;
use crate::driver::on_session;

/// Path of the long-poll endpoints.
pub const POLL_PATH: &str = "/v1/poll";
/// How long a poll waits for frames when it does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(25);
/// The longest wait a poll may ask for (below the 60 s idle timeout of common proxies).
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Frames one batch carries at most.
const BATCH_FRAMES: usize = 256;
/// Encoded bytes after which a batch takes no more frames.
const BATCH_BYTES: usize = 256 * 1024;
/// Frames one send may carry at most.
const SEND_FRAMES: usize = 64;

/// The open long-poll sessions, by id.
#[derive(Default)]
pub(crate) struct Polls {
    sessions: Mutex<HashMap<String, Arc<PollSession>>>,
}

impl Polls {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<PollSession>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session `id` names. Its id is a key only its client holds, so a request that names
    /// one authenticates the connection it came on.
    fn get(&self, id: &str) -> Option<Arc<PollSession>> {
        let found = self.lock().get(id).cloned();
        if found.is_some() {
            crate::listener::authenticated();
        }
        found
    }

    /// Removes the session and ends it for good.
    fn remove(&self, id: &str) {
        if let Some(ps) = self.lock().remove(id) {
            ps.gone.cancel();
        }
    }

    /// Open long-poll sessions.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

struct PollSession {
    session: Session,
    batches: tokio::sync::Mutex<Batches>,
    /// Held while a send's frames are handled, so they are handled in the order they came.
    sending: tokio::sync::Mutex<()>,
    /// The waiting poll's token: cancelled when a newer poll takes over.
    waiting: Mutex<CancellationToken>,
    /// Requests in progress.
    active: AtomicUsize,
    /// When the last request started or ended.
    last_seen: Mutex<Instant>,
    /// Cancelled once the session is removed.
    gone: CancellationToken,
    /// Counts the session as an open connection while it lives.
    _open: crate::metrics::Open,
}

#[derive(Default)]
struct Batches {
    /// The number of the last batch handed out (0: none yet).
    number: u64,
    /// That batch's frames, as JSON, until a poll acknowledges it.
    frames: Vec<Vec<u8>>,
    /// The session's last frame has been taken from its queue: nothing more will come.
    ended: bool,
}

/// Counts a request as activity while it lasts.
struct Active<'a>(&'a PollSession);

impl PollSession {
    fn enter(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Active(self)
    }

    fn touch(&self) {
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// How long no request has been open (zero while one is).
    fn idle(&self) -> Duration {
        if self.active.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn unknown_session() -> Response {
    error(Code::PollSessionUnknown.into())
}

/// A JSON answer: `{"session"?, "batch", "frames": [...]}` with the frames as encoded.
fn batch(session: Option<&str>, number: u64, frames: &[Vec<u8>]) -> Response {
    let mut body = Vec::with_capacity(64 + frames.iter().map(|f| f.len() + 1).sum::<usize>());
    body.push(b'{');
    if let Some(id) = session {
        body.extend_from_slice(b"\"session\":\"");
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(b"\",");
    }
    body.extend_from_slice(format!("\"batch\":{number},\"frames\":[").as_bytes());
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(f);
    }
    body.extend_from_slice(b"]}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A frame of the server's own as JSON, or the code that ends the session in its place: a frame
/// the server cannot encode is the server's failure (logged), never sent empty or skipped.
fn json(frame: &v1::Frame) -> Result<Vec<u8>, Code> {
    codec::encode(frame, Encoding::Json).map_err(|e| {
        tracing::error!(error = %e, "a server frame could not be encoded: ending the session");
        Code::ServerError
    })
}

/// The frames of a send's body, as the JSON text of each: the body is one frame (an object) or
/// an array of them. `None` if it is neither. Each frame is decoded on its own afterwards, so
/// that the ones before a bad one are handled, as on a WebSocket.
pub(crate) fn split_frames(body: &[u8]) -> Option<Vec<&str>> {
    // Raw values keep each frame's text as it came: nothing is parsed twice or re-encoded, and
    // no nesting limit of a JSON tree applies before the frame decoder's own rules.
    let whole: &RawValue = serde_json::from_slice(body).ok()?;
    let text = whole.get();
    match text.as_bytes().first() {
        Some(b'{') => Some(vec![text]),
        Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(text)
            .ok()
            .map(|frames| frames.into_iter().map(RawValue::get).collect()),
        _ => None,
    }
}

/// `POST /v1/poll`: a CONNECT frame opens a session.
pub async fn open(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return crate::api::unreadable_body(rejection),
    };
    if state.stop.is_cancelled() {
        return error(Code::ServerShutdown.into());
    }
    let frame = match codec::decode(&body, Encoding::Json, state.config.max_frame_bytes) {
        Ok(f) => f,
        Err(e) => return error(Refusal::new(decode_error_code(&e), e.to_string())),
    };
    let Some(Body::Connect(connect)) = frame.body else {
        return error(Code::NotConnected.into());
    };
    let opened = match native::connect_request(connect) {
        Ok(request) => crate::driver::connect(&state.engine, request)
            .await
            .map_err(|refusal| connack_frame(refusal.code, refusal.text(), None)),
        Err(code) => Err(connack_frame(code, code.text().into(), None)),
    };
    let (session, info) = match opened {
        Ok(ok) => ok,
        Err(connack) => {
            return match json(&connack) {
                Ok(connack) => batch(None, 0, &[connack]),
                Err(code) => error(code.into()),
            };
        }
    };
    let connack = connack_frame(Code::Ok, String::new(), Some(&info));
    let connack = match json(&connack) {
        Ok(connack) => connack,
        Err(code) => {
            session.end(code);
            return error(code.into());
        }
    };
    crate::listener::authenticated();
    let id = hex::encode(rand::random::<[u8; 16]>());
    let ps = Arc::new(PollSession {
        session,
        batches: Default::default(),
        sending: Default::default(),
        waiting: Mutex::new(CancellationToken::new()),
        active: AtomicUsize::new(0),
        last_seen: Mutex::new(Instant::now()),
        gone: CancellationToken::new(),
        _open: crate::metrics::Open::new(
            crate::metrics::Transport::Poll,
            crate::metrics::Dialect::Native,
        ),
    });
    state.polls.lock().insert(id.clone(), ps.clone());
    tokio::spawn(supervise(state.clone(), id.clone(), ps));
    batch(Some(&id), 0, &[connack])
}

/// Resends deliveries that are due and ends the session once no request has come for a
/// heartbeat interval.
async fn supervise(state: AppState, id: String, ps: Arc<PollSession>) {
    let config = state.engine.config();
    let heartbeat = config.heartbeat;
    let tick = (heartbeat.min(config.ack_timeout) / 4).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if ps.idle() >= heartbeat {
                    tracing::debug!(session = ps.session.id(), "long-poll session expired");
                    ps.session.end(Code::HeartbeatTimeout);
                    break;
                }
                ps.session.resend_due();
            }
            _ = ps.gone.cancelled() => break,
        }
    }
    state.polls.remove(&id);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    after: u64,
    wait: Option<u64>,
}

/// `GET /v1/poll/{session}?after=N&wait=MS`: the next batch of frames.
pub async fn poll(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<PollQuery>, QueryRejection>,
) -> Response {
    let Some(ps) = state.polls.get(&id) else {
        return unknown_session();
    };
    let q = match crate::api::query(q) {
        Ok(q) => q,
        Err(r) => return error(r),
    };
    let wait = match q.wait.map(Duration::from_millis) {
        None => DEFAULT_WAIT,
        Some(w) if w <= MAX_WAIT => w,
        Some(_) => {
            return error(Refusal::new(
                Code::BadRequest,
                format!("wait is at most {} ms", MAX_WAIT.as_millis()),
            ));
        }
    };
    let _active = ps.enter();
    // A newer poll takes over from one still waiting (its client has most likely gone).
    let token = CancellationToken::new();
    std::mem::replace(
        &mut *ps.waiting.lock().unwrap_or_else(|e| e.into_inner()),
        token.clone(),
    )
    .cancel();
    let mut b = tokio::select! {
        b = ps.batches.lock() => b,
        _ = token.cancelled() => return batch(None, q.after, &[]),
    };
    if q.after == b.number {
        // The last batch arrived.
        b.frames.clear();
        if b.ended {
            drop(b);
            state.polls.remove(&id);
            return unknown_session();
        }
    } else if q.after + 1 == b.number && !b.frames.is_empty() {
        // The last batch's answer was lost: the same batch again.
        return batch(None, b.number, &b.frames);
    } else {
        return error(Refusal::new(
            Code::BadRequest,
            format!(
                "after must be the number of the last batch received ({} or {})",
                b.number.saturating_sub(1),
                b.number
            ),
        ));
    }
    let outbox = ps.session.outbox();
    let first = tokio::select! {
        item = outbox.pop() => item,
        _ = tokio::time::sleep(wait) => return batch(None, b.number, &[]),
        _ = token.cancelled() => return batch(None, b.number, &[]),
        _ = ps.gone.cancelled() => return unknown_session(),
    };
    let mut frames = Vec::new();
    let mut bytes = 0;
    let mut next = first;
    while let Some(item) = next.take() {
        let (frame, last) = match item {
            Outbound::Disconnect(code) => {
                b.ended = true;
                // A client that said goodbye is not told.
                if code == Code::ClientDisconnect {
                    break;
                }
                (json(&disconnect_frame(code)), true)
            }
            item => (json(&outbound_frame(item)), false),
        };
        let frame = match frame {
            Ok(frame) => frame,
            // The session ends, and this poll answers with the code in place of a batch. The
            // frames taken for it are not sent: deliveries stay in the inbox for the next
            // connection's sync, and requests go unanswered, as on a dropped connection.
            Err(code) => {
                ps.session.end(code);
                drop(b);
                state.polls.remove(&id);
                return error(code.into());
            }
        };
        bytes += frame.len();
        frames.push(frame);
        if !last && frames.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
            next = outbox.try_pop();
        }
    }
    if frames.is_empty() {
        // The queue closed with nothing left to say.
        drop(b);
        state.polls.remove(&id);
        return unknown_session();
    }
    b.number += 1;
    b.frames = frames;
    batch(None, b.number, &b.frames)
}

/// `POST /v1/poll/{session}`: one frame, or an array of frames, handled in order.
pub async fn send(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return crate::api::unreadable_body(rejection),
    };
    let Some(ps) = state.polls.get(&id) else {
        return unknown_session();
    };
    let _active = ps.enter();
    let max = state.config.max_frame_bytes;
    let Some(frames) = split_frames(&body) else {
        return end_with(
            &ps,
            Code::MalformedFrame,
            "the body is not a JSON frame or array of frames".into(),
        );
    };
    if frames.len() > SEND_FRAMES {
        return error(Refusal::new(
            Code::BadRequest,
            format!("at most {SEND_FRAMES} frames per request"),
        ));
    }
    let order = ps.sending.lock().await;
    for frame in frames {
        // A frame too large to be one is refused before it is parsed, as on WebSocket.
        let frame = match codec::decode(frame.as_bytes(), Encoding::Json, max) {
            Ok(f) => f,
            Err(e) => return end_with(&ps, decode_error_code(&e), e.to_string()),
        };
        match native::request(frame) {
            Some(Step::End(code)) => {
                if code == Code::ClientDisconnect {
                    drop(order);
                    state.polls.remove(&id);
                    ps.session.end(code);
                    return StatusCode::NO_CONTENT.into_response();
                }
                return end_with(&ps, code, code.text().into());
            }
            Some(step) => on_session(&ps.session, step).await,
            None => {}
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Ends the session for a frame-level error: its DISCONNECT goes to the next poll, and the
/// request is answered with the same code.
fn end_with(ps: &PollSession, code: Code, text: String) -> Response {
    ps.session.end(code);
    error(Refusal::new(code, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_body_is_one_frame_or_an_array_of_them_as_sent() {
        assert_eq!(
            split_frames(br#" {"pingreq": {}} "#),
            Some(vec![r#"{"pingreq": {}}"#])
        );
        assert_eq!(
            split_frames(br#"[{"pingreq":{}}, {"querycon": {"inboxSeq": "3"}}, 7]"#),
            Some(vec![
                r#"{"pingreq":{}}"#,
                r#"{"querycon": {"inboxSeq": "3"}}"#,
                "7"
            ])
        );
        assert_eq!(split_frames(b"[]"), Some(vec![]));
        for bad in [
            &b""[..],
            b"7",
            b"\"x\"",
            b"null",
            b"{",
            b"[{}",
            b"{} {}",
            b"\xff",
        ] {
            assert_eq!(
                split_frames(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_deeply_nested_send_body_is_split_without_a_tree() {
        // Deeper than any JSON tree parser allows: split as text, refused by the frame decoder.
        let deep = format!(
            r#"[{{"pingreq":{{"x":{}{}}}}}]"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let frames = split_frames(deep.as_bytes()).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(codec::decode(frames[0].as_bytes(), Encoding::Json, 1 << 20).is_ok());
    }
}
