//! The native protocol's WebSocket entry point, `GET /v1/ws`: the WebSocket's limits, then the
//! connection driver (`driver.rs`) with the native dialect (`tidings_dialects::native`), which
//! translates its frames.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use tidings_dialects::native::Native;

use crate::AppState;
use crate::driver::{Direct, Fixed};
use crate::gate::Gate;

/// WebSocket messages above this many times the frame limit are cut off by the WebSocket layer
/// itself (close code 1009); smaller oversized frames reach the codec and get DISCONNECT 40003.
const WS_MESSAGE_LIMIT_FACTOR: usize = 4;
const MAX_WRITE_BUFFER: usize = 64 << 20;
const WRITE_BUFFER: usize = 16 * 1024;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    gate: Option<Extension<Arc<Gate>>>,
) -> Response {
    let limit = state.config.max_frame_bytes * WS_MESSAGE_LIMIT_FACTOR;
    let ws = ws
        // The default 128 KiB read buffer would dominate an idle connection's memory.
        .read_buffer_size(1024)
        // Frames collect here until a flush (or this size) so a burst leaves in few writes.
        .write_buffer_size(WRITE_BUFFER)
        // A cap, not an allocation: it must exceed the largest frame the server writes (a sync
        // page is bounded by a quarter of the outbound queue, and JSON escaping can inflate it).
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit);
    let dialect = Native::new(state.config.max_frame_bytes);
    crate::driver::upgrade::<Fixed<Native>>(
        ws,
        state,
        dialect,
        crate::metrics::Dialect::Native,
        Direct::None,
        gate.map(|Extension(gate)| gate),
    )
}
