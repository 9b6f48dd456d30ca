//! Fuzzes seed 000's decoder (protobuf `Input` frames at `/ws`): `Dialect::inbound` on a fresh
//! connection and after a login, over a sequence of binary (and text) frames. Every frame the
//! dialect writes back must be an `Output`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tidings_dialects::seed000::{Seed000, kind, wire};
use tidings_dialects::{WireIn, WireOut};

fuzz_target!(|frames: Vec<&[u8]>| {
    let login = wire::Input {
        r#type: kind::LOGIN,
        data: wire::Login { token: "t".into() }.encode_to_vec(),
    }
    .encode_to_vec();
    let mut wire_frames: Vec<WireIn<'_>> = frames.iter().map(|f| WireIn::Binary(f)).collect();
    if let Some(text) = frames.first().and_then(|f| std::str::from_utf8(f).ok()) {
        wire_frames.push(WireIn::Text(text));
    }
    tidings_fuzz::run_dialect(
        Seed000::new,
        Some(WireIn::Binary(&login)),
        &wire_frames,
        |out| match out {
            WireOut::Binary(b) => {
                wire::Output::decode(b.as_slice()).expect("the dialect writes Output frames");
            }
            WireOut::Text(t) => panic!("seed 000 wrote a text frame: {t:?}"),
        },
    );
});
