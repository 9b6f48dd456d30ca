//! Files users upload for their messages (`tidings-files` keeps them): uploads and fresh links
//! with the user's own token (`Authorization: Bearer`), downloads by signed link. A fresh link
//! goes to the file's uploader, or to a user who names a message carrying the file that the
//! engine says they can see ([`Engine::can_see_file`](tidings_engine::Engine::can_see_file)).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_engine::{MessageRef, Refusal};
use tidings_files::{FileError, Files, Kind, Meta};
use tidings_proto::Code;

use crate::AppState;
use crate::accounts::bearer;
use crate::api::{base_urls, error, json_body, query};

use crate::FILES_PATH;
/// How long a link asked for lasts when the request does not say (or the maximum lifetime, if
/// that is shorter).
const DEFAULT_LINK_SECS: u64 = 3600;

/// Now, by the engine's clock, in seconds since the Unix epoch.
fn now_secs(state: &AppState) -> u64 {
    u64::try_from(state.engine.now_ms() / 1000).unwrap_or(0)
}

/// The store, or the answer that there is none.
fn store(state: &AppState) -> Result<&Files, Refusal> {
    state.config.files.as_ref().ok_or(Code::NotFound.into())
}

fn refusal(e: FileError) -> Refusal {
    let code = match &e {
        FileError::TooLarge { .. } => Code::FileTooLarge,
        FileError::TypeNotAllowed(_) => Code::FileTypeNotAllowed,
        FileError::Empty | FileError::BadImage(_) => Code::FileInvalid,
        FileError::Storage(detail) => {
            tracing::error!(error = %detail, "file storage failed");
            return Code::ServerError.into();
        }
    };
    Refusal::new(code, e.to_string())
}

/// The links of a file that expire `ttl` seconds from now (at most the maximum lifetime):
/// `url`, `thumbnailUrl` for an image, and `expiresAt` (seconds since the Unix epoch).
fn links(base: &str, files: &Files, meta: &Meta, ttl: u64, now: u64) -> Value {
    let expires = files.expiry(now, ttl);
    let grant = files.grant(&meta.id, expires);
    let mut out = json!({
        "url": format!("{base}{FILES_PATH}/{}?{grant}", meta.id),
        "expiresAt": expires,
    });
    if meta.thumbnail {
        out["thumbnailUrl"] = format!("{base}{FILES_PATH}/{}/thumbnail?{grant}", meta.id).into();
    }
    out
}

fn described(meta: &Meta) -> Value {
    let mut file = json!({
        "id": meta.id,
        "kind": meta.kind,
        "type": meta.content_type,
        "name": meta.name,
        "size": meta.size,
        "created": meta.created,
    });
    if let (Some(w), Some(h)) = (meta.width, meta.height) {
        file["width"] = w.into();
        file["height"] = h.into();
    }
    file
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    name: Option<String>,
}

/// `POST /v1/files?name=…`: the body is the file, its `Content-Type` its type.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Response {
    let owner = match bearer(&state, &headers).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let outcome = async {
        let files = store(&state)?;
        let q = query(q)?;
        let base = base_urls(&state, &headers)?.remove(0);
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // Read no more than one byte past the limit: enough to refuse it.
        let bytes = axum::body::to_bytes(body, files.max_bytes() + 1)
            .await
            .map_err(|_| {
                refusal(FileError::TooLarge {
                    max: files.max_bytes(),
                })
            })?;
        let meta = files
            .put(
                &owner,
                q.name.as_deref().unwrap_or("file"),
                content_type,
                bytes,
                state.engine.now_ms(),
            )
            .await
            .map_err(refusal)?;
        // The upload's own links live as long as any link may.
        let mut answer = links(&base, files, &meta, files.max_link_secs(), now_secs(&state));
        answer["code"] = 0.into();
        answer["file"] = described(&meta);
        Ok::<_, Refusal>(answer)
    }
    .await;
    match outcome {
        Ok(answer) => Json(answer).into_response(),
        Err(r) => error(r),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkRequest {
    ttl_secs: Option<u64>,
    /// The message the user sees the file in (all three, or none).
    conversation_type: Option<u32>,
    target_id: Option<String>,
    seq: Option<u64>,
}

impl LinkRequest {
    /// The message named, if one is.
    fn message(self) -> Result<Option<MessageRef>, Refusal> {
        match (self.conversation_type, self.target_id, self.seq) {
            (None, None, None) => Ok(None),
            (Some(conversation_type), Some(target_id), Some(seq)) => Ok(Some(MessageRef {
                conversation_type,
                target_id,
                seq,
            })),
            _ => Err(Refusal::new(
                Code::BadRequest,
                "name the message by conversationType, targetId and seq together",
            )),
        }
    }
}

/// `POST /v1/files/{id}/url` `{"ttlSecs"?, "conversationType"?, "targetId"?, "seq"?}`: links
/// to the file that expire after `ttlSecs` (default 3,600; at most the maximum lifetime), for
/// its uploader, or for a user who names a message they can see that carries the file.
pub async fn link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let user = match bearer(&state, &headers).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return crate::api::unreadable_body(rejection),
    };
    let outcome = async {
        let files = store(&state)?;
        let request: LinkRequest = if body.is_empty() {
            LinkRequest::default()
        } else {
            json_body(&body)?
        };
        let ttl = request.ttl_secs.unwrap_or(DEFAULT_LINK_SECS);
        if ttl == 0 {
            return Err(Refusal::new(Code::BadRequest, "ttlSecs is at least 1"));
        }
        let message = request.message()?;
        let meta = files
            .meta(&id)
            .await
            .map_err(refusal)?
            .ok_or(Refusal::from(Code::FileNotFound))?;
        if meta.owner != user {
            let Some(message) = message else {
                return Err(Refusal::new(
                    Code::FileLinkRefused,
                    "only its uploader may leave out the message: name the message you see \
                     the file in (its conversationType, targetId and seq)",
                ));
            };
            state.engine.can_see_file(&user, &meta.id, &message).await?;
        }
        let base = base_urls(&state, &headers)?.remove(0);
        let mut answer = links(&base, files, &meta, ttl, now_secs(&state));
        answer["code"] = 0.into();
        Ok(answer)
    }
    .await;
    match outcome {
        Ok(answer) => Json(answer).into_response(),
        Err(r) => error(r),
    }
}

#[derive(Deserialize)]
pub struct Grant {
    exp: Option<u64>,
    sig: Option<String>,
}

/// `GET /v1/files/{id}?exp=…&sig=…`.
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<Grant>, QueryRejection>,
) -> Response {
    serve(&state, &id, q, false).await
}

/// `GET /v1/files/{id}/thumbnail?exp=…&sig=…`: an image's JPEG thumbnail.
pub async fn thumbnail(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<Grant>, QueryRejection>,
) -> Response {
    serve(&state, &id, q, true).await
}

async fn serve(
    state: &AppState,
    id: &str,
    q: Result<Query<Grant>, QueryRejection>,
    thumb: bool,
) -> Response {
    let outcome = async {
        let files = store(state)?;
        let grant = query(q)?;
        // Unsigned, wrongly signed, expired and missing all look the same.
        let (Some(exp), Some(sig)) = (grant.exp, grant.sig) else {
            return Err(Code::FileNotFound.into());
        };
        if !files.allows(id, exp, &sig, now_secs(state)) {
            return Err(Code::FileNotFound.into());
        }
        // A valid link is the server's own signature: the connection is a client's.
        crate::listener::authenticated();
        files
            .get(id, thumb)
            .await
            .map_err(refusal)?
            .ok_or(Refusal::from(Code::FileNotFound))
    }
    .await;
    let file = match outcome {
        Ok(f) => f,
        Err(r) => return error(r),
    };
    let content_type = if thumb {
        "image/jpeg"
    } else {
        file.meta.content_type.as_str()
    };
    // Media shows in the page; anything else is a download. Nothing is sniffed or run.
    let inline = thumb || matches!(file.meta.kind, Kind::Image | Kind::Voice);
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        file.meta
            .name
            .replace(|c: char| !c.is_ascii() || c == '\\', "_")
    );
    let mut response = file.bytes.into_response();
    let h = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("file"));
    h.insert(header::CONTENT_TYPE, value(content_type));
    h.insert(header::CONTENT_DISPOSITION, value(&disposition));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    // A file never changes; its link decides who may fetch it.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    response
}
