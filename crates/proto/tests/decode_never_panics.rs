//! Decoders read untrusted bytes: whatever arrives, they return a frame or an error. The fuzz
//! targets in `fuzz/` explore this far deeper; this property test keeps a cheap guard in CI.

use proptest::prelude::*;
use tidings_proto::{Encoding, codec};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn protobuf_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode(&bytes, Encoding::Protobuf, 1 << 16);
    }

    #[test]
    fn json_decoder_never_panics(text in "\\PC{0,256}") {
        let _ = codec::decode(text.as_bytes(), Encoding::Json, 1 << 16);
    }

    #[test]
    fn json_like_input_never_panics(
        key in prop::sample::select(vec!["connect", "publish", "puback", "query", "querycon", "pingreq", "disconnect", "x"]),
        inner in "[{}\\[\\]\":,a-zA-Z0-9 -]{0,64}",
    ) {
        let text = format!("{{\"{key}\":{inner}}}");
        let _ = codec::decode(text.as_bytes(), Encoding::Json, 1 << 16);
    }

    #[test]
    fn decoded_frames_reencode_and_decode_to_themselves(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(frame) = codec::decode(&bytes, Encoding::Protobuf, 1 << 16) {
            for enc in [Encoding::Protobuf, Encoding::Json] {
                let again = codec::decode(&codec::encode(&frame, enc).unwrap(), enc, 1 << 20).unwrap();
                prop_assert_eq!(&again, &frame);
            }
        }
    }
}
