//! Fuzzes the protobuf frame decoder: any bytes give a frame or an error, and a frame re-encodes
//! to bytes that decode to the same frame in both encodings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_proto::{Encoding, codec};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = codec::decode(data, Encoding::Protobuf, 1 << 16) {
        for enc in [Encoding::Protobuf, Encoding::Json] {
            let bytes = codec::encode(&frame, enc).expect("a decoded frame encodes in both");
            let again = codec::decode(&bytes, enc, 1 << 20)
                .expect("a decoded frame re-encodes to a decodable frame");
            assert_eq!(again, frame);
        }
    }
});
