//! What the fuzz targets share: running a seed dialect over frames from the fuzzer, on a fresh
//! connection and on one past its handshake, and checking every frame it writes back.

use tidings_dialects::{Dialect, Step, WireIn, WireOut};
use tidings_engine::ConnectInfo;

/// The session a successful CONNECT opens, as the gateway reports it to a dialect. The user id
/// is numeric, as the dialects with numeric ids need.
pub fn session() -> ConnectInfo {
    ConnectInfo {
        user_id: "7".into(),
        session_id: "1".into(),
        heartbeat_ms: 30_000,
        server_time: 0,
        cursor: 0,
        inbox_seq: 0,
    }
}

/// Feeds `frames`, in order, to a dialect's connection made by `new`: once fresh, once past its
/// handshake (`login`, for a dialect whose client logs in with a frame; the others connect as
/// they open, with the token from the URL). `check` sees every frame the dialect writes.
pub fn run_dialect<D: Dialect>(
    new: impl Fn() -> D,
    login: Option<WireIn<'_>>,
    frames: &[WireIn<'_>],
    check: impl Fn(&WireOut),
) {
    let mut fresh = new();
    let mut steps = fresh.open();
    for frame in frames {
        steps.extend(fresh.inbound(*frame));
    }
    checked(&steps, &check);

    let mut connected = new();
    let mut steps = connected.open();
    if let Some(login) = login {
        steps.extend(connected.inbound(login));
    }
    assert!(
        steps.iter().any(|s| matches!(s, Step::Connect(_))),
        "the handshake asks for a session: {steps:?}"
    );
    steps.extend(connected.connected(Ok(&session())));
    for frame in frames {
        steps.extend(connected.inbound(*frame));
    }
    checked(&steps, &check);
}

fn checked(steps: &[Step], check: &impl Fn(&WireOut)) {
    for step in steps {
        if let Step::Send(out) = step {
            check(out);
        }
    }
}

/// For the JSON dialects: every frame written is one JSON text.
pub fn json_text(out: &WireOut) {
    match out {
        WireOut::Text(t) => {
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok(),
                "the dialect wrote a text frame that is not JSON: {t:?}"
            );
        }
        WireOut::Binary(b) => panic!("a JSON dialect wrote a binary frame: {b:?}"),
    }
}

/// Runs a JSON dialect: each frame as a text message, then each as a binary one.
pub fn run_json_dialect<D: Dialect>(new: impl Fn() -> D, login: Option<&str>, frames: &[&str]) {
    let mut wire: Vec<WireIn<'_>> = frames.iter().map(|f| WireIn::Text(f)).collect();
    wire.extend(frames.iter().map(|f| WireIn::Binary(f.as_bytes())));
    run_dialect(new, login.map(WireIn::Text), &wire, json_text);
}
