//! The demo page and the SDK's modules, served from the binary.

use crate::util::*;

async fn get(server: &TestServer, path: &str) -> (u16, Option<String>, Option<String>, String) {
    let url = format!("{}{path}", server.url());
    tokio::task::spawn_blocking(move || {
        let mut resp = agent().get(&url).call().unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (ct, csp) = (header("content-type"), header("content-security-policy"));
        let status = resp.status().as_u16();
        (status, ct, csp, resp.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_demo_page_and_the_sdk_are_served_with_a_strict_policy() {
    let server = TestServer::start().await;
    let (status, ct, csp, body) = get(&server, "/").await;
    assert_eq!(status, 200);
    assert!(ct.unwrap().starts_with("text/html"));
    let csp = csp.expect("a content security policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(body.contains("/demo/app.js"));
    // Everything the page loads is this server's.
    assert!(!body.contains("http://") && !body.contains("https://"));

    let (status, ct, _, body) = get(&server, "/demo/app.js").await;
    assert_eq!(status, 200);
    assert!(ct.unwrap().contains("javascript"));
    assert!(body.contains("from '/sdk/index.js'"));
    let (status, ct, _, body) = get(&server, "/sdk/index.js").await;
    assert_eq!(status, 200);
    assert!(ct.unwrap().contains("javascript"));
    assert!(body.contains("TidingsClient"));

    for path in [
        "/demo/nope.js",
        "/sdk/../../Cargo.toml",
        "/sdk/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let (status, _, _, body) = get(&server, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("42008"), "{path}: {body}");
    }
}
