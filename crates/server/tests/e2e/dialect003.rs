//! The seed-003 dialect (private messages, `/imserver/{token}`), driven by a client written
//! from the seed document: JSON text frames `{fromId, toId, type, content, timestamp,
//! Describe}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tidings_client::Outgoing;
use tidings_proto::{Code, conversation_type};

use crate::util::{SeedGot, SeedWs, TestServer, eventually, stored_cursor};

async fn open(server: &TestServer, user: &str) -> SeedWs {
    let token = server.token(user).await;
    SeedWs::open(server, &format!("/imserver/{token}")).await
}

fn send(from: i64, to: i64, content: &str, timestamp: &str) -> Value {
    json!({
        "fromId": from,
        "toId": to,
        "type": 0,
        "content": content,
        "timestamp": timestamp,
        "Describe": ""
    })
}

/// The `Describe` of an incoming message, which the seed sends as a JSON string.
fn describe(frame: &Value) -> Value {
    serde_json::from_str(frame["Describe"].as_str().expect("Describe is a string")).unwrap()
}

#[tokio::test]
async fn a_private_message_is_answered_delivered_with_its_sender_and_read_confirmed() {
    let server = TestServer::start().await;
    let engine = &server.running().engine;
    engine
        .set_profile(
            "71",
            Some("小明".into()),
            Some("https://img/71.png".into()),
            None,
        )
        .await
        .unwrap();
    let mut a = open(&server, "71").await;
    let mut b = open(&server, "72").await;

    a.send_json(send(71, 72, "你好", "1589790567")).await;
    let answer = a.json().await;
    assert_eq!(answer["type"], 0, "{answer}");
    assert_eq!(answer["fromId"], 0);
    assert_eq!(answer["toId"], 71);
    assert_eq!(answer["timestamp"], "1589790567");

    let got = b.json().await;
    assert_eq!(got["type"], 2, "{got}");
    assert_eq!(
        (got["fromId"].clone(), got["toId"].clone()),
        (json!(71), json!(72))
    );
    assert_eq!(got["content"], "你好");
    assert!(got["timestamp"].as_str().unwrap().parse::<i64>().unwrap() > 1_600_000_000);
    let d = describe(&got);
    assert_eq!(d["userName"], "小明");
    assert_eq!(d["headURL"], "https://img/71.png");
    let id = d["messageId"].as_str().unwrap().to_string();

    // Before the confirmation the message is unread; after it, not.
    let (reader, _events) = server.client("72", "native").await;
    let unread = || async {
        reader
            .conversation(conversation_type::PRIVATE, "71")
            .await
            .unwrap()
            .unwrap()
            .unread
    };
    assert_eq!(unread().await, 1);
    b.send_json(json!({
        "fromId": 72, "toId": 0, "type": 1,
        "content": format!("[{id}]"), "timestamp": "1589790568", "Describe": ""
    }))
    .await;
    eventually("the read confirmation moves the read position", || async {
        unread().await == 0
    })
    .await;
}

#[tokio::test]
async fn a_user_offline_gets_what_arrived_on_connecting_once() {
    let server = TestServer::start().await;
    let mut a = open(&server, "81").await;
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        a.send_json(send(81, 82, text, &format!("15897905{i}")))
            .await;
        assert_eq!(a.json().await["type"], 0);
    }
    let mut b = open(&server, "82").await;
    let got: Vec<Value> = [b.json().await, b.json().await, b.json().await].into();
    let texts: Vec<&str> = got.iter().map(|f| f["content"].as_str().unwrap()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    drop(b);
    // The cursor is stored as the session ends (a CONNECT of the same device reports it).
    eventually("the seed-003 device's cursor is stored", || async {
        stored_cursor(&server, "82", "seed003").await == 3
    })
    .await;

    // What was written before is not given again; a newer message is.
    let mut b = open(&server, "82").await;
    a.send_json(send(81, 82, "four", "1589790599")).await;
    assert_eq!(a.json().await["type"], 0);
    assert_eq!(b.json().await["content"], "four");
}

#[tokio::test]
async fn a_resent_request_is_stored_once() {
    let server = TestServer::start().await;
    let mut a = open(&server, "91").await;
    // The seed's client resends after 6 s without an answer: the same frame again.
    for _ in 0..2 {
        a.send_json(send(91, 92, "again", "1589790567")).await;
        assert_eq!(a.json().await["type"], 0);
    }
    let (reader, _events) = server.client("92", "native").await;
    let c = reader
        .conversation(conversation_type::PRIVATE, "91")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.unread, c.latest.unwrap().seq), (1, 1));
}

#[tokio::test]
async fn bad_requests_get_a_type_1_answer_with_the_code() {
    let server = TestServer::start().await;
    let mut a = open(&server, "61").await;
    let code = |f: &Value| describe(f)["code"].as_u64().unwrap() as u32;

    a.send_text("{not json").await;
    let f = a.json().await;
    assert_eq!(
        (f["type"].clone(), code(&f)),
        (json!(1), Code::MalformedFrame.as_u32())
    );

    // Sending as someone else.
    a.send_json(send(62, 63, "x", "1")).await;
    let f = a.json().await;
    assert_eq!(
        (f["type"].clone(), code(&f)),
        (json!(1), Code::Unauthorized.as_u32())
    );
    assert_eq!(f["timestamp"], "1");

    // An id Tidings cannot have.
    a.send_json(
        json!({"fromId": 61, "toId": "no such user!", "type": 0, "content": "x", "timestamp": "2"}),
    )
    .await;
    let f = a.json().await;
    assert_eq!(
        (f["type"].clone(), code(&f)),
        (json!(1), Code::InvalidTarget.as_u32())
    );

    // Empty text.
    a.send_json(send(61, 64, "", "3")).await;
    let f = a.json().await;
    assert_eq!(
        (f["type"].clone(), code(&f)),
        (json!(1), Code::ContentInvalid.as_u32())
    );

    // A read confirmation that is not an array of ids, and an unknown type.
    a.send_json(json!({"fromId": 61, "toId": 0, "type": 1, "content": "12,13"}))
        .await;
    assert_eq!(code(&a.json().await), Code::MalformedFrame.as_u32());
    a.send_json(json!({"fromId": 61, "toId": 0, "type": 7, "content": ""}))
        .await;
    assert_eq!(code(&a.json().await), Code::UnknownFrameKind.as_u32());

    // The connection still works.
    a.send_json(send(61, 64, "fine", "4")).await;
    assert_eq!(a.json().await["type"], 0);
}

#[tokio::test]
async fn a_bad_token_in_the_path_is_refused_and_closed() {
    let server = TestServer::start().await;
    // The seed's own URL carried a user id; a user id is not a token.
    let mut ws = SeedWs::open(&server, "/imserver/71").await;
    let f = ws.json().await;
    assert_eq!(f["type"], 1, "{f}");
    assert_eq!(
        describe(&f)["code"].as_u64().unwrap() as u32,
        Code::TokenInvalid.as_u32()
    );
    assert!(matches!(ws.recv().await, SeedGot::Closed));
}

#[tokio::test]
async fn a_newer_connection_of_the_user_replaces_the_older() {
    let server = TestServer::start().await;
    let mut first = open(&server, "51").await;
    let mut second = open(&server, "51").await;
    let f = first.json().await;
    assert_eq!(
        describe(&f)["code"].as_u64().unwrap() as u32,
        Code::Kicked.as_u32()
    );
    first.expect_closed().await;
    let mut other = open(&server, "52").await;
    other.send_json(send(52, 51, "to the new one", "1")).await;
    assert_eq!(other.json().await["type"], 0);
    assert_eq!(second.json().await["content"], "to the new one");
}

#[tokio::test]
async fn a_silent_client_stays_connected_through_three_heartbeats_and_receives() {
    let server = TestServer::start_with(|c| c.heartbeat = Duration::from_millis(100)).await;
    let mut b = open(&server, "62").await;
    // The seed has no heartbeat, and a page sends none: only its browser's answers to the
    // server's WebSocket Pings, for four intervals (one more than a connection that answered
    // nothing would last).
    b.until_pinged(4).await;
    let (a, _events) = server.client("61", "native").await;
    a.send(Outgoing::text("62", "are you there?"))
        .await
        .unwrap();
    let got = b.json().await;
    assert_eq!(
        (got["type"].clone(), got["content"].clone()),
        (json!(2), json!("are you there?"))
    );
}

/// A connection that replaces the user's previous one starts after what that one showed: no
/// message is shown twice, however the replacements fall between the messages.
#[tokio::test]
async fn repeated_replacements_show_every_message_once() {
    const ROUNDS: usize = 40;
    let server = TestServer::start().await;
    let (a, _events) = server.client("63", "native").await;
    // Every message shown: the connection that showed it, its id and text.
    let shown: Arc<Mutex<Vec<(usize, String, String)>>> = Arc::default();
    let mut readers = Vec::new();
    for round in 0..ROUNDS {
        // A send and a replacement race each other.
        let send = a.send(Outgoing::text("64", &format!("m{round}")));
        let (sent, mut b) = tokio::join!(send, open(&server, "64"));
        sent.unwrap();
        let shown = shown.clone();
        readers.push(tokio::spawn(async move {
            loop {
                match b.recv().await {
                    SeedGot::Text(f) if f["type"] == 2 => {
                        let id = describe(&f)["messageId"].as_str().unwrap().to_string();
                        let text = f["content"].as_str().unwrap().to_string();
                        shown.lock().unwrap().push((round, id, text));
                    }
                    // The replaced connection is told why, then closed.
                    SeedGot::Text(f) if f["type"] == 1 => {}
                    SeedGot::Closed => return,
                    other => panic!("{other:?}"),
                }
            }
        }));
    }
    eventually("every message shown", || async {
        let ids: std::collections::HashSet<String> = shown
            .lock()
            .unwrap()
            .iter()
            .map(|(_, id, _)| id.clone())
            .collect();
        ids.len() == ROUNDS
    })
    .await;
    // Nothing more is on its way: a marker sent last arrives on the last connection after
    // everything else.
    a.send(Outgoing::text("64", "marker")).await.unwrap();
    eventually("the marker shown", || async {
        shown
            .lock()
            .unwrap()
            .iter()
            .any(|(_, _, text)| text == "marker")
    })
    .await;
    let shown = shown.lock().unwrap().clone();
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    for (round, id, _) in &shown {
        by_id.entry(id.as_str()).or_default().push(*round);
    }
    let twice: Vec<_> = by_id
        .iter()
        .filter(|(_, rounds)| rounds.len() > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "shown more than once (id: connections): {twice:?}"
    );
    assert_eq!(by_id.len(), ROUNDS + 1);
    for r in readers {
        r.abort();
    }
}
