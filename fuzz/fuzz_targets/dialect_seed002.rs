//! Fuzzes seed 002's decoder (rooms as JSON at `/ws/room?token=…`): `Dialect::inbound` on a
//! fresh connection and after the connection opened its session, over a sequence of frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_dialects::seed002::Seed002;

fuzz_target!(|frames: Vec<&str>| {
    tidings_fuzz::run_json_dialect(|| Seed002::new("t".into(), 1000), None, &frames);
});
