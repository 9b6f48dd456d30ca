//! Fuzzes seed 003's decoder (private messages as JSON at `/imserver/{token}`):
//! `Dialect::inbound` on a fresh connection and after the connection opened its session, over a
//! sequence of frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_dialects::seed003::Seed003;

fuzz_target!(|frames: Vec<&str>| {
    tidings_fuzz::run_json_dialect(|| Seed003::new("t".into()), None, &frames);
});
