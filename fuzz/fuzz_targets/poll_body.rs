//! Fuzzes the long-poll bodies: `POST /v1/poll` (a CONNECT frame) and `POST /v1/poll/{session}`
//! (a frame or an array of frames). Every frame read re-encodes as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_gateway::inputs;
use tidings_proto::{Encoding, codec};

fuzz_target!(|data: &[u8]| {
    let opened = inputs::poll_open(data, 1 << 16);
    let sent = inputs::poll_send(data, 1 << 16);
    for frame in opened.iter().chain(sent.iter().flatten().flatten()) {
        codec::encode(frame, Encoding::Json).expect("a frame read from JSON encodes as JSON");
    }
});
