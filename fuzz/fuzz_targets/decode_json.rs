//! Fuzzes the JSON frame decoder: any text gives a frame or an error, and a frame re-encodes to
//! text that decodes to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_proto::{Encoding, codec};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = codec::decode(data, Encoding::Json, 1 << 16) {
        let text = codec::encode(&frame, Encoding::Json).expect("a decoded frame encodes");
        let again = codec::decode(&text, Encoding::Json, 1 << 20)
            .expect("a decoded frame re-encodes to a decodable frame");
        assert_eq!(again, frame);
    }
});
