//! The demo chat page (`web/demo/public`) at `/`, and the browser SDK's modules (`web/sdk/src`) at
//! `/sdk/`, compiled into the binary: a release build serves them with nothing else installed
//! (a debug build reads them from the source tree, so edits show on reload).

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;
use tidings_proto::Code;

use crate::api::error;

#[derive(Embed)]
#[folder = "../../web/demo/public/"]
struct Demo;

#[derive(Embed)]
#[folder = "../../web/sdk/src/"]
struct Sdk;

#[derive(Embed)]
#[folder = "../../web/admin/public/"]
struct Admin;

/// What the page may load and talk to: this server only.
const POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
     connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

fn asset<E: Embed>(path: &str) -> Response {
    let Some(file) = E::get(path) else {
        return error(Code::NotFound.into());
    };
    let mut response = file.data.into_owned().into_response();
    let h = response.headers_mut();
    let mime = file.metadata.mimetype();
    if let Ok(v) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    // Revalidated on every load: a new server version brings new files at the same paths.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /`: the demo page.
pub async fn index() -> Response {
    asset::<Demo>("index.html")
}

/// `GET /demo/{*path}`: the page's scripts and styles.
pub async fn demo(Path(path): Path<String>) -> Response {
    asset::<Demo>(&path)
}

/// `GET /sdk/{*path}`: the SDK's ES modules.
pub async fn sdk(Path(path): Path<String>) -> Response {
    asset::<Sdk>(&path)
}

/// `GET /admin`: the admin console's page.
pub async fn admin_index() -> Response {
    asset::<Admin>("index.html")
}

/// `GET /admin/static/{*path}`: the console's script and styles.
pub async fn admin_asset(Path(path): Path<String>) -> Response {
    asset::<Admin>(&path)
}
