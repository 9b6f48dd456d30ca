//! Files: uploads with the user's own token, image thumbnails, signed and expiring links.

use std::time::Duration;

use serde_json::{Value, json};
use tidings_client::Outgoing;

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
async fn call(
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

async fn upload(
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
    let bob = server.token("bob").await;
    let (status, _, bytes) = call(
        "POST",
        &format!("{bare}/url"),
        vec![
            ("Authorization", format!("Bearer {bob}")),
            ("Content-Type", "application/json".into()),
        ],
        br#"{"ttlSecs": 1}"#.to_vec(),
    )
    .await;
    let short: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 200, "{short}");
    let short_url = short["url"].as_str().unwrap();
    let (status, _, bytes) = call("GET", short_url, vec![], vec![]).await;
    assert_eq!((status, bytes.as_slice()), (200, b"secret".as_slice()));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, bytes) = call("GET", short_url, vec![], vec![]).await;
    not_found(status, &bytes);
    // The upload's own link does not expire.
    let (status, _, _) = call("GET", &url, vec![], vec![]).await;
    assert_eq!(status, 200);
    // Bad link requests.
    for body in [r#"{"ttlSecs": 0}"#, r#"{"ttlSecs": "x"}"#, r#"{"ttl": 5}"#] {
        let (status, _, bytes) = call(
            "POST",
            &format!("{bare}/url"),
            vec![("Authorization", format!("Bearer {bob}"))],
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
