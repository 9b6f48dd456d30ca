//! Pure entry points to the gateway's readers of untrusted bytes, for the fuzz targets in `fuzz/`
//! and for tests: each reads what its handler reads, with the handler's own types and functions,
//! and needs no server. The WebSocket frames' readers are elsewhere: the native codec in
//! `tidings-proto`, the dialects in `tidings-dialects`.

use serde::de::DeserializeOwned;
use tidings_engine::Refusal;
use tidings_proto::v1::Frame;
use tidings_proto::{DecodeError, Encoding, codec};

use crate::{accounts, admin, api, api_chatrooms, api_groups, api_users, dialect, files};

/// Reads a JSON body as its handler does, up to where the handler needs the server.
type Reader = fn(&[u8]) -> Result<(), Refusal>;

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<(), Refusal> {
    api::json_body::<T>(body).map(drop)
}

fn seed001_message(body: &[u8]) -> Result<(), Refusal> {
    let value = api::json_body(body)?;
    dialect::seed001_send_request(value, "fuzz".into()).map(drop)
}

/// Every route whose handler takes a JSON body, `(method, path, reader)`: the HTTP API's, the
/// built-in accounts', the admin console's own, file links' and seed 001's HTTP send. The long-poll bodies are frames
/// ([`poll_open`], [`poll_send`]).
const BODIES: &[(&str, &str, Reader)] = &[
    (
        "POST",
        "/api/v1/users/{user_id}/token",
        json::<api::TokenRequest>,
    ),
    ("POST", "/api/v1/users/query", json::<api_users::UserIds>),
    ("PUT", "/api/v1/users/{user_id}", json::<api_users::Profile>),
    (
        "POST",
        "/api/v1/users/{user_id}/blocklist",
        json::<api_users::Blocklist>,
    ),
    (
        "POST",
        "/api/v1/users/{user_id}/push-tokens",
        json::<api_users::PushTokenBody>,
    ),
    (
        "POST",
        "/api/v1/users/{user_id}/push-tokens/remove",
        json::<api_users::RemovePushToken>,
    ),
    (
        "POST",
        "/api/v1/messages/broadcast",
        json::<api_users::Broadcast>,
    ),
    ("POST", "/api/v1/messages/recall", json::<api_users::Recall>),
    ("POST", "/api/v1/sensitive-words", json::<api_users::Words>),
    (
        "POST",
        "/api/v1/sensitive-words/remove",
        json::<api_users::WordList>,
    ),
    ("POST", "/api/v1/messages", json::<api_users::Message>),
    (
        "POST",
        "/api/v1/messages/system",
        json::<api_users::SystemMessage>,
    ),
    ("POST", "/api/v1/groups", json::<api_groups::CreateGroup>),
    (
        "PATCH",
        "/api/v1/groups/{group_id}",
        json::<api_groups::UpdateGroup>,
    ),
    (
        "POST",
        "/api/v1/groups/{group_id}/members",
        json::<api_groups::Members>,
    ),
    (
        "POST",
        "/api/v1/groups/{group_id}/members/remove",
        json::<api_groups::Members>,
    ),
    (
        "POST",
        "/api/v1/groups/{group_id}/owner",
        json::<api_groups::Owner>,
    ),
    (
        "POST",
        "/api/v1/groups/{group_id}/mute",
        json::<api_groups::Mute>,
    ),
    (
        "POST",
        "/api/v1/chatrooms",
        json::<api_chatrooms::CreateChatroom>,
    ),
    (
        "POST",
        "/api/v1/chatrooms/{chatroom_id}/kick",
        json::<api_chatrooms::Kick>,
    ),
    (
        "POST",
        "/api/v1/chatrooms/{chatroom_id}/ban",
        json::<api_chatrooms::Ban>,
    ),
    (
        "POST",
        "/api/v1/chatrooms/{chatroom_id}/mute",
        json::<api_chatrooms::Mute>,
    ),
    (
        "POST",
        "/api/v1/chatrooms/{chatroom_id}/entries",
        json::<api_chatrooms::SetEntry>,
    ),
    (
        "POST",
        "/api/v1/chatrooms/{chatroom_id}/entries/remove",
        json::<api_chatrooms::RemoveEntry>,
    ),
    ("POST", "/v1/accounts/register", json::<accounts::Register>),
    ("POST", "/v1/accounts/login", json::<accounts::Login>),
    ("PATCH", "/v1/accounts/me", json::<api_users::Profile>),
    (
        "POST",
        "/v1/accounts/me/password",
        json::<accounts::PasswordChange>,
    ),
    ("DELETE", "/v1/accounts/me", json::<accounts::Deletion>),
    ("POST", "/admin/api/login", json::<admin::Login>),
    (
        "POST",
        "/admin/api/users/{user_id}/kick",
        json::<admin::Kick>,
    ),
    ("POST", "/v1/files/{id}/url", json::<files::LinkRequest>),
    ("POST", dialect::SEED001_HTTP_PATH, seed001_message),
];

/// Reads `body` as every route that takes a JSON body reads its own: each route and what its
/// handler would make of the body (a refusal names what is wrong).
pub fn read_json_bodies(
    body: &[u8],
) -> impl Iterator<Item = (&'static str, &'static str, Result<(), Refusal>)> + '_ {
    BODIES
        .iter()
        .map(move |(method, path, read)| (*method, *path, read(body)))
}

/// Reads a `POST /v1/poll` body: one frame.
pub fn poll_open(body: &[u8], max_frame_bytes: usize) -> Result<Frame, DecodeError> {
    codec::decode(body, Encoding::Json, max_frame_bytes)
}

/// Reads a `POST /v1/poll/{session}` body: one frame or an array of them, each decoded on its
/// own. `None` if the body is neither.
pub fn poll_send(body: &[u8], max_frame_bytes: usize) -> Option<Vec<Result<Frame, DecodeError>>> {
    let frames = crate::poll::split_frames(body)?;
    Some(
        frames
            .into_iter()
            .map(|f| codec::decode(f.as_bytes(), Encoding::Json, max_frame_bytes))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The HTTP API's routes whose handlers take no body.
    const BODILESS: &[(&str, &str)] = &[
        ("POST", "/api/v1/users/{user_id}/revoke"),
        ("POST", "/api/v1/users/{user_id}/ban"),
        ("POST", "/api/v1/users/{user_id}/unban"),
        ("DELETE", "/api/v1/groups/{group_id}"),
        ("DELETE", "/api/v1/chatrooms/{chatroom_id}"),
    ];

    #[test]
    fn every_api_route_that_may_take_a_body_has_its_reader() {
        let read: BTreeSet<_> = BODIES.iter().map(|(m, p, _)| (*m, *p)).collect();
        for (method, path) in crate::API_ROUTES {
            if *method != "GET" && !BODILESS.contains(&(method, path)) {
                assert!(read.contains(&(method, path)), "{method} {path}");
            }
        }
        assert_eq!(read.len(), BODIES.len(), "one reader per route");
    }

    #[test]
    fn bodies_are_read_with_their_routes_types() {
        let outcomes: Vec<_> =
            read_json_bodies(br#"{"account":"ann","password":"secret-pw","name":"Ann"}"#).collect();
        let accepted: Vec<_> = outcomes
            .iter()
            .filter(|(_, _, r)| r.is_ok())
            .map(|(m, p, _)| (*m, *p))
            .collect();
        assert_eq!(
            accepted,
            [("POST", "/v1/accounts/register")],
            "only the route of that type"
        );
        assert!(read_json_bodies(b"\xff{").all(|(_, _, r)| r.is_err()));
        let frames = poll_send(br#"[{"pingreq":{}},{"nope":1}]"#, 1024).unwrap();
        assert!(frames[0].is_ok() && frames[1].is_err());
        assert!(poll_open(br#"{"connect":{"token":"t"}}"#, 1024).is_ok());
    }
}
