//! Every protocol to every other: a seed-000 client, a seed-001 client, a seed-003 client and
//! a native SDK client send each other messages, and each receives them in its own protocol.

use serde_json::{Value, json};
use tidings_client::Outgoing;
use tidings_proto::conversation_type;

use crate::util::{SeedWs, TestServer, next_message};
use crate::{dialect000, dialect001};

#[tokio::test]
async fn four_protocols_exchange_messages() {
    let server = TestServer::start().await;
    // 4000 speaks seed 000, 4001 seed 001, 4003 seed 003, 4004 the native protocol.
    let mut s0 = dialect000::Client::login(&server, "4000").await;
    let (mut s1, _) = dialect001::Client::auth(&server, "4001", "").await;
    let token = server.token("4003").await;
    let mut s3 = SeedWs::open(&server, &format!("/imserver/{token}")).await;
    let (native, mut events) = server.client("4004", "phone").await;

    // Seed 000 sends to each of the others.
    for to in [4001, 4003, 4004] {
        let id = s0.text(1, to, &format!("000 to {to}")).await;
        s0.stored(id).await;
    }
    // Seed 001.
    for to in ["4000", "4003", "4004"] {
        s1.message("personal", to, &format!("001 to {to}")).await;
    }
    // Seed 003.
    for to in [4000, 4001, 4004] {
        s3.send_json(json!({
            "fromId": 4003, "toId": to, "type": 0,
            "content": format!("003 to {to}"), "timestamp": format!("{to}"), "Describe": ""
        }))
        .await;
    }
    // Native.
    for to in ["4000", "4001", "4003"] {
        native
            .send(Outgoing::text(to, &format!("native to {to}")))
            .await
            .unwrap();
    }

    // Seed 000 receives three messages, each from its sender, and acknowledges them.
    let mut got0 = Vec::new();
    while got0.len() < 3 {
        let m = s0.message().await;
        assert_eq!((m.session_type, m.receiver_id), (1, 4000));
        s0.ack(m.seq).await;
        let text = (m.sender_id, m.content.clone());
        if !got0.contains(&text) {
            got0.push(text);
        }
    }
    got0.sort();
    assert_eq!(
        got0,
        [
            (4001, "001 to 4000".to_string()),
            (4003, "003 to 4000".to_string()),
            (4004, "native to 4000".to_string())
        ]
    );

    // Seed 001: MESSAGE packets (and its own MESSAGE_REPLYs, which are not messages).
    let mut got1 = Vec::new();
    while got1.len() < 3 {
        let p = s1.ws.json().await;
        if p["cmd"] != "MESSAGE" {
            assert_eq!(p["cmd"], "MESSAGE_REPLY", "{p}");
            continue;
        }
        let d = &p["data"];
        assert_eq!(
            (d["sendType"].clone(), d["target"].clone()),
            (json!("personal"), json!("4001"))
        );
        s1.send("MESSAGE_CALLBACK", json!({ "mid": d["mid"] }))
            .await;
        let text = (
            d["from"]["name"].as_str().unwrap().to_string(),
            d["message"]["text"].as_str().unwrap().to_string(),
        );
        if !got1.contains(&text) {
            got1.push(text);
        }
    }
    got1.sort();
    assert_eq!(
        got1,
        [
            ("4000".to_string(), "000 to 4001".to_string()),
            ("4003".to_string(), "003 to 4001".to_string()),
            ("4004".to_string(), "native to 4001".to_string())
        ]
    );

    // Seed 003: type 2 frames (its own sends' answers are type 0).
    let mut got3 = Vec::new();
    while got3.len() < 3 {
        let f = s3.json().await;
        if f["type"] == 0 {
            continue;
        }
        assert_eq!(
            (f["type"].clone(), f["toId"].clone()),
            (json!(2), json!(4003)),
            "{f}"
        );
        got3.push((
            f["fromId"].as_i64().unwrap(),
            f["content"].as_str().unwrap().to_string(),
        ));
    }
    got3.sort();
    assert_eq!(
        got3,
        [
            (4000, "000 to 4003".to_string()),
            (4001, "001 to 4003".to_string()),
            (4004, "native to 4003".to_string())
        ]
    );

    // Native: ordinary text messages in private conversations.
    let mut gotn = Vec::new();
    while gotn.len() < 3 {
        let m = next_message(&mut events).await;
        assert_eq!(m.conversation_type, conversation_type::PRIVATE);
        if m.sender_id == "4004" {
            continue;
        }
        let content: Value = serde_json::from_str(&m.content).unwrap();
        assert_eq!(m.target_id, m.sender_id);
        gotn.push((
            m.sender_id.clone(),
            content["text"].as_str().unwrap().to_string(),
        ));
    }
    gotn.sort();
    assert_eq!(
        gotn,
        [
            ("4000".to_string(), "000 to 4004".to_string()),
            ("4001".to_string(), "001 to 4004".to_string()),
            ("4003".to_string(), "003 to 4004".to_string())
        ]
    );
}
