//! Fuzzes the JSON bodies of the HTTP routes (the HTTP API's, the built-in accounts', file links'
//! and seed 001's HTTP send): the same bytes are read as every route reads its body. A refusal
//! says what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_gateway::inputs;

fuzz_target!(|data: &[u8]| {
    for (method, path, outcome) in inputs::read_json_bodies(data) {
        if let Err(refusal) = outcome {
            assert!(!refusal.text().is_empty(), "{method} {path}");
        }
    }
});
