//! Files: uploads with the user's own token, image thumbnails, signed and expiring links, and
//! who gets a fresh link: the uploader, and those who can see a message carrying the file.

use serde_json::{Value, json};
use tidings_client::{Client, Outgoing};
use tidings_proto::conversation_type::{CHATROOM, GROUP};

use crate::util::*;

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 200])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// An HTTP call: (status, headers we look at, body bytes).
pub(crate) async fn call(
    method: &str,
    url: &str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let (method, url) = (method.to_string(), url.to_string());
    tokio::task::spawn_blocking(move || {
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let mut resp = agent().run(req.body(body).unwrap()).unwrap();
        let status = resp.status().as_u16();
        let seen = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let bytes = resp.body_mut().read_to_vec().unwrap();
        (status, seen, bytes)
    })
    .await
    .unwrap()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) async fn upload(
    server: &TestServer,
    token: &str,
    name: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let (status, _, bytes) = call(
        "POST",
        &format!("{}/v1/files?name={name}", server.url()),
        vec![
            ("Authorization", format!("Bearer {token}")),
            ("Content-Type", content_type.to_string()),
        ],
        body,
    )
    .await;
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn an_uploaded_image_reaches_the_recipient_by_its_link_with_a_thumbnail() {
    let server = TestServer::start().await;
    let alice = server.token("alice").await;
    let image = png(640, 480);
    let (status, up) = upload(&server, &alice, "holiday.png", "image/png", image.clone()).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["code"], 0);
    let file = &up["file"];
    assert_eq!(
        (&file["kind"], &file["type"], &file["name"], &file["size"]),
        (
            &json!("image"),
            &json!("image/png"),
            &json!("holiday.png"),
            &json!(image.len())
        )
    );
    assert_eq!(
        (&file["width"], &file["height"]),
        (&json!(640), &json!(480))
    );
    let url = up["url"].as_str().unwrap();
    let thumb = up["thumbnailUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/v1/files/", server.url())),
        "{url}"
    );

    // Alice sends it; bob gets the message and downloads the image and its thumbnail.
    let (a, _a_events) = server.client("alice", "phone").await;
    let (_b, mut b_events) = server.client("bob", "phone").await;
    let content = json!({ "url": url, "thumbnail": thumb }).to_string();
    a.send(Outgoing {
        msg_type: "image".into(),
        content: content.clone(),
        ..Outgoing::text("bob", "")
    })
    .await
    .unwrap();
    let got = next_message(&mut b_events).await;
    assert_eq!(got.msg_type, "image");
    let got: Value = serde_json::from_str(&got.content).unwrap();
    let (status, headers, bytes) = call("GET", got["url"].as_str().unwrap(), vec![], vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, image);
    assert_eq!(header(&headers, "content-type"), Some("image/png"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    let (status, headers, bytes) =
        call("GET", got["thumbnail"].as_str().unwrap(), vec![], vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("image/jpeg"));
    let t = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((t.width(), t.height()), (256, 192));
}

#[tokio::test]
async fn other_files_download_as_attachments() {
    let server = TestServer::start().await;
    let alice = server.token("alice").await;
    let (status, up) = upload(
        &server,
        &alice,
        "notes.txt",
        "text/plain",
        b"hello".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["file"]["kind"], "file");
    assert!(up.get("thumbnailUrl").is_none());
    let (status, headers, bytes) = call("GET", up["url"].as_str().unwrap(), vec![], vec![]).await;
    assert_eq!((status, bytes.as_slice()), (200, b"hello".as_slice()));
    assert_eq!(
        header(&headers, "content-disposition"),
        Some("attachment; filename=\"notes.txt\"")
    );
    // A file has no thumbnail.
    let id = up["file"]["id"].as_str().unwrap();
    let thumb = up["url"]
        .as_str()
        .unwrap()
        .replace(&format!("/{id}?"), &format!("/{id}/thumbnail?"));
    let (status, _, _) = call("GET", &thumb, vec![], vec![]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn uploads_outside_the_limits_get_codes() {
    let server = TestServer::start_with(|c| c.max_upload_bytes = 4096).await;
    let alice = server.token("alice").await;
    let code = |v: &Value| v["code"].as_u64();
    let (status, v) = upload(&server, &alice, "big", "text/plain", vec![b'x'; 4097]).await;
    assert_eq!((status, code(&v)), (413, Some(42020)), "{v}");
    let (status, v) = upload(&server, &alice, "ok", "text/plain", vec![b'x'; 4096]).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = upload(&server, &alice, "p.html", "text/html", b"<b>".to_vec()).await;
    assert_eq!((status, code(&v)), (415, Some(42021)), "{v}");
    let (status, v) = upload(
        &server,
        &alice,
        "p.svg",
        "image/svg+xml",
        b"<svg/>".to_vec(),
    )
    .await;
    assert_eq!((status, code(&v)), (415, Some(42021)), "{v}");
    let (status, v) = upload(&server, &alice, "x.png", "image/png", b"no png".to_vec()).await;
    assert_eq!((status, code(&v)), (400, Some(42022)), "{v}");
    let (status, v) = upload(&server, &alice, "e", "text/plain", Vec::new()).await;
    assert_eq!((status, code(&v)), (400, Some(42022)), "{v}");

    // Who may upload: a valid, current token.
    let (status, v) = upload(&server, "forged", "a", "text/plain", b"a".to_vec()).await;
    assert_eq!((status, code(&v)), (401, Some(31004)), "{v}");
    let (status, _, bytes) = call(
        "POST",
        &format!("{}/v1/files", server.url()),
        vec![("Content-Type", "text/plain".into())],
        b"a".to_vec(),
    )
    .await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((status, code(&v)), (401, Some(31004)), "{v}");
    let (status, _) = api(&server, "POST", "/api/v1/users/alice/revoke", Value::Null).await;
    assert_eq!(status, 200);
    let (status, v) = upload(&server, &alice, "a", "text/plain", b"a".to_vec()).await;
    assert_eq!((status, code(&v)), (401, Some(31021)), "{v}");
}

#[tokio::test]
async fn links_cannot_be_forged_and_expire_when_asked_to() {
    let server = TestServer::start().await;
    let alice = server.token("alice").await;
    let (_, up) = upload(&server, &alice, "a.txt", "text/plain", b"secret".to_vec()).await;
    let url = up["url"].as_str().unwrap().to_string();
    let id = up["file"]["id"].as_str().unwrap().to_string();
    let bare = format!("{}/v1/files/{id}", server.url());
    let not_found = |status: u16, bytes: &[u8]| {
        let v: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!((status, v["code"].as_u64()), (404, Some(42023)), "{v}");
    };
    // Unsigned, wrongly signed, another file's signature, no such file.
    let (status, _, bytes) = call("GET", &bare, vec![], vec![]).await;
    not_found(status, &bytes);
    let tampered = format!("{}0", &url[..url.len() - 1]);
    let tampered = if tampered == url {
        format!("{}1", &url[..url.len() - 1])
    } else {
        tampered
    };
    let (status, _, bytes) = call("GET", &tampered, vec![], vec![]).await;
    not_found(status, &bytes);
    let (_, other) = upload(&server, &alice, "b.txt", "text/plain", b"other".to_vec()).await;
    let other_grant = other["url"].as_str().unwrap().split('?').nth(1).unwrap();
    let (status, _, bytes) = call("GET", &format!("{bare}?{other_grant}"), vec![], vec![]).await;
    not_found(status, &bytes);
    let missing = format!("{}/v1/files/{}?{other_grant}", server.url(), "0".repeat(32));
    let (status, _, bytes) = call("GET", &missing, vec![], vec![]).await;
    not_found(status, &bytes);

    // A link made to last one second works, then stops.
    let (status, short) = link(&server, &alice, &id, json!({ "ttlSecs": 1 })).await;
    assert_eq!(status, 200, "{short}");
    let short_url = short["url"].as_str().unwrap().to_string();
    let (status, _, bytes) = call("GET", &short_url, vec![], vec![]).await;
    assert_eq!((status, bytes.as_slice()), (200, b"secret".as_slice()));
    eventually("the one-second link stops working", || async {
        call("GET", &short_url, vec![], vec![]).await.0 == 404
    })
    .await;
    let (status, _, bytes) = call("GET", &short_url, vec![], vec![]).await;
    not_found(status, &bytes);
    // The upload's own link still works.
    let (status, _, _) = call("GET", &url, vec![], vec![]).await;
    assert_eq!(status, 200);
    // Bad link requests.
    for body in [
        r#"{"ttlSecs": 0}"#,
        r#"{"ttlSecs": "x"}"#,
        r#"{"ttl": 5}"#,
        r#"{"seq": 1}"#,
        r#"{"conversationType": 1, "targetId": "bob"}"#,
    ] {
        let (status, _, bytes) = call(
            "POST",
            &format!("{bare}/url"),
            vec![("Authorization", format!("Bearer {alice}"))],
            body.as_bytes().to_vec(),
        )
        .await;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (status, v["code"].as_u64()),
            (400, Some(42007)),
            "{body}: {v}"
        );
    }
}

/// `POST /v1/files/{id}/url` as the holder of `token`, with `body`: (status, answer).
pub(crate) async fn link(server: &TestServer, token: &str, id: &str, body: Value) -> (u16, Value) {
    let (status, _, bytes) = call(
        "POST",
        &format!("{}/v1/files/{id}/url", server.url()),
        vec![
            ("Authorization", format!("Bearer {token}")),
            ("Content-Type", "application/json".into()),
        ],
        body.to_string().into_bytes(),
    )
    .await;
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// A link request naming the message at `seq` of `(conversation_type, target)`.
pub(crate) fn naming(conversation_type: u32, target: &str, seq: u64) -> Value {
    json!({ "conversationType": conversation_type, "targetId": target, "seq": seq })
}

/// A text file alice uploaded, and the link requests made for it.
pub(crate) struct Upload<'a> {
    server: &'a TestServer,
    pub(crate) id: String,
    pub(crate) answer: Value,
}

impl Upload<'_> {
    pub(crate) async fn new(server: &TestServer) -> Upload<'_> {
        let token = server.token("alice").await;
        let (status, answer) =
            upload(server, &token, "plan.txt", "text/plain", b"plan".to_vec()).await;
        assert_eq!(status, 200, "{answer}");
        let id = answer["file"]["id"].as_str().unwrap().to_string();
        Upload { server, id, answer }
    }

    /// A `file` message carrying the upload's link, to `target` of `conversation_type`.
    pub(crate) fn message(&self, conversation_type: u32, target: &str) -> Outgoing {
        Outgoing {
            conversation_type,
            msg_type: "file".into(),
            content: json!({ "url": self.answer["url"], "name": "plan.txt", "size": 4 })
                .to_string(),
            ..Outgoing::text(target, "")
        }
    }

    /// The holder of `token` asks with `body`, and gets a link that downloads the file.
    pub(crate) async fn granted(&self, token: &str, body: Value) {
        let (status, answer) = link(self.server, token, &self.id, body).await;
        assert_eq!(
            (status, answer["code"].as_u64()),
            (200, Some(0)),
            "{answer}"
        );
        let (status, _, bytes) = call("GET", answer["url"].as_str().unwrap(), vec![], vec![]).await;
        assert_eq!((status, bytes.as_slice()), (200, b"plan".as_slice()));
    }

    /// The holder of `token` asks with `body`, and is refused with `code`.
    pub(crate) async fn refused_with(&self, token: &str, body: Value, status: u16, code: u64) {
        let (got, answer) = link(self.server, token, &self.id, body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_u64()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }

    /// The holder of `token` asks with `body`, and is refused with 42024.
    pub(crate) async fn refused(&self, token: &str, body: Value) {
        self.refused_with(token, body, 403, 42024).await;
    }
}

pub(crate) async fn sent_seq(client: &Client, message: Outgoing) -> u64 {
    client.send(message).await.unwrap().seq
}

#[tokio::test]
async fn group_members_get_links_to_files_sent_while_they_were_members() {
    let server = TestServer::start().await;
    create_group(&server, "team", "alice", &["bob", "carol"]).await;
    let file = Upload::new(&server).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob_token, carol_token, dave_token) = (
        server.token("bob").await,
        server.token("carol").await,
        server.token("dave").await,
    );
    let before = sent_seq(&alice, file.message(GROUP, "team")).await;
    file.granted(&bob_token, naming(GROUP, "team", before))
        .await;
    file.refused(&dave_token, naming(GROUP, "team", before))
        .await;

    // Dave joins: what was sent before is not his to see; what follows is.
    let (status, body) = add_group_members(&server, "team", &["dave"]).await;
    assert_eq!(status, 200, "{body}");
    file.refused(&dave_token, naming(GROUP, "team", before))
        .await;
    let after = sent_seq(&alice, file.message(GROUP, "team")).await;
    file.granted(&dave_token, naming(GROUP, "team", after))
        .await;

    // A directed message: its audience only.
    let directed = file.message(GROUP, "team").directed_to(&["bob"]);
    let directed = sent_seq(&alice, directed).await;
    file.granted(&bob_token, naming(GROUP, "team", directed))
        .await;
    file.refused(&carol_token, naming(GROUP, "team", directed))
        .await;

    // Dave leaves: his history keeps what came while he was a member, and nothing after.
    let (dave, _d) = server.client("dave", "phone").await;
    dave.quit_group("team").await.unwrap();
    let later = sent_seq(&alice, file.message(GROUP, "team")).await;
    file.refused(&dave_token, naming(GROUP, "team", later))
        .await;
    file.granted(&dave_token, naming(GROUP, "team", after))
        .await;
}

#[tokio::test]
async fn chatroom_members_get_links_while_they_are_in_the_room() {
    let server = TestServer::start().await;
    let file = Upload::new(&server).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    alice.join_chatroom("lobby", 0).await.unwrap();
    bob.join_chatroom("lobby", 0).await.unwrap();
    let (bob_token, carol_token) = (server.token("bob").await, server.token("carol").await);
    let seq = sent_seq(&alice, file.message(CHATROOM, "lobby")).await;
    let text = Outgoing {
        conversation_type: CHATROOM,
        ..Outgoing::text("lobby", "no file here")
    };
    let text = sent_seq(&alice, text).await;
    file.granted(&bob_token, naming(CHATROOM, "lobby", seq))
        .await;
    file.refused(&bob_token, naming(CHATROOM, "lobby", text))
        .await;
    file.refused(&carol_token, naming(CHATROOM, "lobby", seq))
        .await;
    file.refused(&carol_token, naming(CHATROOM, "elsewhere", seq))
        .await;
    bob.quit_chatroom("lobby").await.unwrap();
    file.refused(&bob_token, naming(CHATROOM, "lobby", seq))
        .await;
}

/// The `exp` of a link.
pub(crate) fn expiry_of(url: &str) -> u64 {
    let query = url.split_once('?').unwrap().1;
    let exp = query.split('&').find_map(|kv| kv.strip_prefix("exp="));
    exp.unwrap().parse().unwrap()
}

pub(crate) fn now_secs() -> u64 {
    (now_ms() / 1000) as u64
}
