//! The outbox's drop metrics, read back from a recorder installed for this test binary. Metric
//! handles are made once per process, so this binary holds one test, which installs the
//! recorder before anything makes them.

use std::sync::Arc;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tidings_engine::metrics::{CHATROOM_DROPPED, GAP_MARKERS, OUTBOUND_OVERFLOWS};
use tidings_engine::{Outbound, Outbox, PubAckOut};

/// How much each counter rose since the last call (a snapshot resets them).
fn rises(snapshotter: &Snapshotter) -> impl Fn(&str) -> u64 {
    let values: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((key.key().name().to_string(), n)),
            _ => None,
        })
        .collect();
    move |name| {
        values
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }
}

fn puback(text_bytes: usize) -> Outbound {
    Outbound::PubAck(PubAckOut {
        text: "x".repeat(text_bytes),
        ..Default::default()
    })
}

#[test]
fn overflows_dropped_room_items_and_gap_markers_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    tidings_engine::metrics::register();
    let _ = rises(&snapshotter);

    // Three items of a room dropped, then reported by one marker once the queue drains.
    let outbox = Outbox::new(4096);
    let room: Arc<str> = "lobby".into();
    outbox.note_gap(&room, 3, 5, 7);
    let counted = rises(&snapshotter);
    assert_eq!(counted(CHATROOM_DROPPED), 3);
    assert_eq!(counted(GAP_MARKERS), 0, "not reported yet");
    assert!(matches!(outbox.try_pop(), Some(Outbound::Status(_))));
    let counted = rises(&snapshotter);
    assert_eq!(counted(GAP_MARKERS), 1);
    assert_eq!(counted(OUTBOUND_OVERFLOWS), 0);

    // A push past the bound cuts the connection as a slow consumer, once.
    assert!(outbox.push(puback(3000)).is_ok());
    assert!(outbox.push(puback(3000)).is_err());
    assert!(outbox.push(puback(10)).is_err(), "closed");
    assert_eq!(rises(&snapshotter)(OUTBOUND_OVERFLOWS), 1);
}
