//! Fuzzes seed 001's decoder (JSON `{cmd, data}` packets at `/json/ws`): `Dialect::inbound` on a
//! fresh connection and after an AUTH, over a sequence of frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_dialects::seed001::Seed001;

fuzz_target!(|frames: Vec<&str>| {
    tidings_fuzz::run_json_dialect(
        || Seed001::new(Some("KEY".into())),
        Some(r#"{"cmd":"AUTH","data":{"token":"t","name":"7","group":""}}"#),
        &frames,
    );
});
