//! Prints the encoded size of a typical delivery as it crosses the bus: a one-to-one text of 64
//! bytes, as `tidings bench pairs` sends, for one receiver on another node. Protobuf is the
//! envelope the bus sends; JSON is the shape the bus sent before it (serde's form of the same
//! event), written out here by hand to compare.
//!
//! `cargo run -p tidings-bus --example envelope_size`

use serde_json::json;
use tidings_bus::{BusEvent, envelope};
use tidings_store::StoredMessage;

fn main() {
    let message = StoredMessage {
        uid: "01KBKZ3V8Q6J5N2W4X7Y9A0B1C".into(),
        conversation_type: 1,
        conversation_id: "1:bench-p17-r|bench-p17-s".into(),
        sender: "bench-p17-s".into(),
        target: "bench-p17-r".into(),
        seq: 1234,
        sent_time: 1_764_860_000_123,
        msg_type: "text".into(),
        content: format!(r#"{{"text":"{}"}}"#, "x".repeat(64 - 11)),
        push_text: String::new(),
        client_msg_id: "c-1234".into(),
        ..StoredMessage::default()
    };
    let event = BusEvent::Deliver {
        message: message.clone(),
        inbox: vec![("bench-p17-r".into(), 617)],
        except_device: Some("bench".into()),
    };
    let protobuf = envelope::encode("node-a", event);
    let json = json!({
        "from": "node-a",
        "event": { "Deliver": {
            "message": {
                "uid": message.uid,
                "conversation_type": message.conversation_type,
                "conversation_id": message.conversation_id,
                "sender": message.sender,
                "target": message.target,
                "seq": message.seq,
                "sent_time": message.sent_time,
                "msg_type": message.msg_type,
                "content": message.content,
                "push_text": message.push_text,
                "client_msg_id": message.client_msg_id,
                "recalled": false,
                "edited": false,
                "reactions": [],
                "mentions": [],
                "mention_all": false,
                "audience": [],
            },
            "inbox": [["bench-p17-r", 617]],
            "except_device": "bench",
        }},
    })
    .to_string();
    println!("a one-to-one delivery of a 64-byte text, for one receiver:");
    println!("  JSON (before):     {} bytes", json.len());
    println!("  protobuf (now):    {} bytes", protobuf.len());
}
