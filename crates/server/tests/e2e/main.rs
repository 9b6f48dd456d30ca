//! End-to-end tests: each starts a real server on port 0 with a temporary data directory and
//! drives it through the client SDK, raw WebSocket frames, HTTP, or the `tidings` binary.

mod accounts;
mod admin;
mod api;
mod api_chatrooms;
mod api_users;
mod bad_actors;
mod bad_input;
mod chatrooms;
mod cluster;
mod conversations;
mod delivery;
mod deploy;
mod dialect000;
mod dialect001;
mod dialect002;
mod dialect003;
mod dialect_cross;
mod e2ee;
mod files;
mod groups;
mod hooks;
mod metrics;
mod mobile_push;
mod ops;
mod partition;
mod poll;
mod postgres;
mod process;
mod push;
mod tls;
mod util;
mod web;
