//! Fuzzes the bus envelope decoder, which reads what other nodes publish: any bytes give an
//! event or an error, and a decoded event re-encodes to bytes that decode to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_bus::envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok((from, event)) = envelope::decode(data) {
        let bytes = envelope::encode(&from, event.clone());
        let (again_from, again) =
            envelope::decode(&bytes).expect("a decoded envelope re-encodes to a decodable one");
        assert_eq!((again_from, again), (from, event));
    }
});
