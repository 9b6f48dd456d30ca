//! The client subcommands: `token` (offline minting), `send`, `listen` and `conversations`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tidings_client::{
    ChatroomEvent, Client, ClientConfig, ClientError, E2ee, E2eeError, Encoding, Event, Outgoing,
    Received,
};

/// The server a client subcommand talks to when `--server` is not given (`tidings bench`'s
/// default too).
pub use tidings_client::DEFAULT_SERVER;

/// Mints a token for `user` from the data directory's credentials, without a running server,
/// recording the user in the data directory's SQLite database.
pub async fn mint_token(
    data_dir: &Path,
    user: &str,
    ttl: Option<Duration>,
) -> anyhow::Result<String> {
    mint_token_in(data_dir, None, user, ttl).await
}

/// As [`mint_token`], recording the user in the store named as `--store` names it (`None`: the
/// data directory's SQLite database). As the app server's API does, it records the id before
/// minting, so that it can never be registered as an account afterwards, and it refuses an id
/// that is a self-registered account's. A server may be running on the store meanwhile.
pub async fn mint_token_in(
    data_dir: &Path,
    store: Option<&str>,
    user: &str,
    ttl: Option<Duration>,
) -> anyhow::Result<String> {
    if !tidings_engine::validate::is_user_id(user) {
        bail!("invalid user id {user:?}: use 1-64 of A-Z a-z 0-9 _ - . @");
    }
    let creds = crate::credentials::load(data_dir)?;
    let record = match store {
        Some(url) if tidings_store_postgres::is_postgres_url(url) => {
            tidings_store_postgres::record_user(url, user)
                .await
                .context("recording the user in the database")?
        }
        _ => {
            let db = store.map_or_else(|| data_dir.join(crate::DB_FILE), Into::into);
            // Off the async threads: the write may wait for a running server's commit.
            let user = user.to_string();
            tokio::task::spawn_blocking(move || tidings_store_sqlite::record_user(&db, &user))
                .await?
                .context("recording the user in the database")?
        }
    };
    if record.account {
        bail!(
            "{user} is a self-registered account's user id: its tokens come from logging in, \
             not from `tidings token`"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let ttl = ttl.unwrap_or(Duration::from_secs(30 * 24 * 3600));
    tidings_engine::auth::mint(
        &creds,
        user,
        record.token_version,
        now,
        now + ttl.as_secs() as i64,
    )
    .map_err(|code| anyhow::anyhow!("minting failed: {code}"))
}

/// TLS settings trusting the public CAs and, when `ca_file` is given, the CA certificates in
/// it (PEM); `None` when there is no file (the SDK's default, the public CAs).
pub fn tls_settings(
    ca_file: Option<&Path>,
) -> anyhow::Result<Option<Arc<tidings_client::rustls::ClientConfig>>> {
    let Some(path) = ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let tls = tidings_client::tls::with_extra_ca(&pem)
        .with_context(|| format!("the CA file {}", path.display()))?;
    Ok(Some(tls))
}

fn client_config(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
    device: &str,
    json: bool,
) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::new(server, token);
    config.device_id = device.to_string();
    config.platform = "cli".into();
    if json {
        config.encoding = Encoding::Json;
    }
    config.tls = tls_settings(ca_file)?;
    Ok(config)
}

fn refused(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Refused { code, message } => {
            anyhow::anyhow!("server refused: {code} {message}")
        }
        other => anyhow::anyhow!(other),
    }
}

/// Who a message from the command line goes to.
pub enum Target {
    User(String),
    Group(String),
    Chatroom(String),
}

/// Sends one message and prints the server's answer as a JSON line. With `state_dir`, encrypted
/// end to end by the device `device` (whose MLS state is kept there).
#[allow(clippy::too_many_arguments)]
pub async fn send(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
    to: &Target,
    msg_type: &str,
    content: String,
    json: bool,
    device: &str,
    state_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let (client, _events) = Client::connect(client_config(server, token, ca_file, device, json)?)
        .await
        .map_err(refused)?;
    if let Some(dir) = state_dir {
        let result = send_encrypted(&client, device, dir, to, msg_type, &content).await;
        client.close().await;
        return print_sent(&result?);
    }
    let mut out = match to {
        Target::User(user) => Outgoing::text(user, ""),
        Target::Group(group) => Outgoing::group_text(group, ""),
        Target::Chatroom(room) => {
            // Only members send to a room: this connection joins it for the message.
            if let Err(e) = client.join_chatroom(room, 0).await {
                client.close().await;
                return Err(refused(e));
            }
            Outgoing::chatroom_text(room, "")
        }
    };
    out.msg_type = msg_type.to_string();
    out.content = content;
    let result = client.send(out).await;
    client.close().await;
    print_sent(&result.map_err(refused)?)
}

fn print_sent(sent: &tidings_client::Sent) -> anyhow::Result<()> {
    print_line(&serde_json::json!({
        "uid": sent.uid,
        "seq": sent.seq,
        "sentTime": sent.sent_time,
        "clientMsgId": sent.client_msg_id,
    }))
}

fn e2ee_error(e: E2eeError) -> anyhow::Error {
    match e {
        E2eeError::Client(c) => refused(c),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Opens the device's end-to-end encryption state in `state_dir` and tops up its key packages.
async fn open_e2ee(client: &Client, device: &str, state_dir: &Path) -> anyhow::Result<E2ee> {
    let e2ee = E2ee::open(client, device, state_dir).map_err(e2ee_error)?;
    e2ee.publish().await.map_err(e2ee_error)?;
    Ok(e2ee)
}

async fn send_encrypted(
    client: &Client,
    device: &str,
    state_dir: &Path,
    to: &Target,
    msg_type: &str,
    content: &str,
) -> anyhow::Result<tidings_client::Sent> {
    let e2ee = open_e2ee(client, device, state_dir).await?;
    let (conversation_type, target) = match to {
        Target::User(user) => (tidings_proto::conversation_type::PRIVATE, user),
        Target::Group(group) => (tidings_proto::conversation_type::GROUP, group),
        Target::Chatroom(_) => bail!("chatrooms are not encrypted end to end"),
    };
    e2ee.send(conversation_type, target, msg_type, content)
        .await
        .map_err(e2ee_error)
}

/// Prints the user's conversation list, every page, one JSON line per conversation.
pub async fn conversations(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let (client, _events) = Client::connect(client_config(server, token, ca_file, "", json)?)
        .await
        .map_err(refused)?;
    let mut token = None;
    let result = async {
        loop {
            let page = client
                .conversations(&[], 0, token.as_deref())
                .await
                .map_err(refused)?;
            for c in &page.conversations {
                print_line(c)?;
            }
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return anyhow::Ok(()),
            }
        }
    }
    .await;
    client.close().await;
    result
}

/// Registers (or removes) a push token for the user's `device`, and prints `{"code":0}`.
pub async fn push_token(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
    device: &str,
    push: &tidings_client::PushToken,
    remove: bool,
) -> anyhow::Result<()> {
    let (client, _events) = Client::connect(client_config(server, token, ca_file, device, false)?)
        .await
        .map_err(refused)?;
    let result = if remove {
        client
            .unregister_push_token(&push.provider, &push.token)
            .await
    } else {
        client.register_push_token(push).await
    };
    client.close().await;
    result.map_err(refused)?;
    print_line(&serde_json::json!({ "code": 0 }))
}

/// Writes `value` to stdout as one JSON line, flushed, with every message's content as the
/// JSON it is (the wire carries it as text).
fn print_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(value)?;
    contents_as_json(&mut value);
    let line = serde_json::to_string(&value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Replaces each `content` that is a JSON object or array written as text by that object or
/// array, at any depth (a conversation's latest message has one too).
fn contents_as_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "content"
                    && let Value::String(text) = v
                    && let Ok(parsed @ (Value::Object(_) | Value::Array(_))) =
                        serde_json::from_str::<Value>(text)
                {
                    *v = parsed;
                } else {
                    contents_as_json(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(contents_as_json),
        _ => {}
    }
}

/// A chatroom's message as a line of the same shape as other messages, marked `chatroom`.
fn chatroom_message_line(m: &tidings_client::Message) -> anyhow::Result<serde_json::Value> {
    let mut line = serde_json::to_value(m)?;
    line["chatroom"] = serde_json::Value::Bool(true);
    Ok(line)
}

/// Prints one JSON line per message received, acknowledging each after it is written out, and
/// one per item of the chatrooms it joins. Returns when the session ends for good (kicked,
/// token revoked): that is an error.
/// Prints every event as a JSON line. With `state_dir`, end-to-end encrypted messages are
/// decrypted by the device (whose MLS state is kept there), after a first line naming the
/// device and its safety number.
pub async fn listen(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
    device: &str,
    chatrooms: &[String],
    json: bool,
    state_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let mut config = client_config(server, token, ca_file, device, json)?;
    config.auto_ack = false;
    let (client, mut events) = Client::connect(config).await.map_err(refused)?;
    let e2ee = match state_dir {
        Some(dir) => {
            let e2ee = open_e2ee(&client, device, dir).await?;
            print_line(&serde_json::json!({ "e2ee": {
                "identity": format!("{}:{device}", client.user_id()),
                "safetyNumber": e2ee.safety_number().await,
            }}))?;
            Some(e2ee)
        }
        None => None,
    };
    for room in chatrooms {
        client.join_chatroom(room, 0).await.map_err(refused)?;
    }
    while let Some(event) = events.recv().await {
        match event {
            Event::Message(m) => {
                match &e2ee {
                    Some(e2ee) => print_received(e2ee, &m).await?,
                    None => print_line(&m)?,
                }
                client.ack(m.inbox_seq).await;
            }
            Event::Conversation(c) => {
                print_line(&serde_json::json!({ "conversation": c }))?;
                client.ack(c.inbox_seq).await;
            }
            Event::MessagesDeleted(d) => {
                print_line(&serde_json::json!({ "deleted": d }))?;
                client.ack(d.inbox_seq).await;
            }
            Event::Transient(m) => print_line(&serde_json::json!({ "status": m }))?,
            Event::Presence(p) => print_line(&serde_json::json!({ "presence": p }))?,
            Event::QuietHours { hours, inbox_seq } => {
                print_line(&serde_json::json!({ "quietHours": hours }))?;
                client.ack(inbox_seq).await;
            }
            Event::ReadReceipt(r) => {
                print_line(&serde_json::json!({ "read": r }))?;
                client.ack(r.inbox_seq).await;
            }
            Event::Chatroom(ChatroomEvent::Message(m)) => print_line(&chatroom_message_line(&m)?)?,
            Event::Chatroom(ChatroomEvent::Notice(n)) => {
                print_line(&serde_json::json!({ "chatroomNotice": n }))?
            }
            Event::Chatroom(ChatroomEvent::Gap(g)) => {
                print_line(&serde_json::json!({ "chatroomGap": g }))?
            }
            Event::Chatroom(ChatroomEvent::Left { chatroom_id, code }) => print_line(
                &serde_json::json!({ "chatroomLeft": { "chatroomId": chatroom_id, "code": code } }),
            )?,
            Event::Status(s) => tracing::info!(status = ?s, "connection status"),
            Event::Kicked { code, reason } => bail!("disconnected by the server: {code} {reason}"),
        }
    }
    Ok(())
}

/// Prints what a message was to an end-to-end encrypting device: the message itself when it
/// is not encrypted, else what decrypting it gave.
async fn print_received(e2ee: &E2ee, m: &tidings_client::Message) -> anyhow::Result<()> {
    let line = match e2ee.receive(m).await.map_err(e2ee_error)? {
        Received::Plain => return print_line(m),
        Received::Message(d) => {
            let content: serde_json::Value =
                serde_json::from_str(&d.content).unwrap_or(serde_json::Value::Null);
            serde_json::json!({
                "encrypted": true,
                "uid": d.uid,
                "conversationType": d.conversation_type,
                "targetId": d.target_id,
                "senderId": d.sender_id,
                "senderDevice": d.sender_device,
                "seq": d.seq,
                "sentTime": d.sent_time,
                "msgType": d.msg_type,
                "content": content,
            })
        }
        Received::Joined {
            epoch,
            keys_changed,
        } => {
            // A join uses up a key package: top the supply up.
            e2ee.publish().await.map_err(e2ee_error)?;
            let members: Vec<_> = e2ee
                .members(m.conversation_type, &m.target_id)
                .await
                .map_err(e2ee_error)?
                .into_iter()
                .map(|d| {
                    serde_json::json!({
                        "userId": d.user_id, "deviceId": d.device_id,
                        "safetyNumber": d.safety_number,
                    })
                })
                .collect();
            serde_json::json!({ "e2ee": {
                "joined": { "conversationType": m.conversation_type, "targetId": m.target_id,
                            "epoch": epoch, "members": members, "keysChanged": keys_changed },
            }})
        }
        Received::Changed {
            epoch,
            added,
            removed,
            keys_changed,
        } => serde_json::json!({ "e2ee": { "changed": {
            "conversationType": m.conversation_type, "targetId": m.target_id, "epoch": epoch,
            "added": added, "removed": removed, "keysChanged": keys_changed,
        }}}),
        Received::Removed => serde_json::json!({ "e2ee": { "removed": {
            "conversationType": m.conversation_type, "targetId": m.target_id,
        }}}),
        Received::Nothing => return Ok(()),
        Received::Unreadable { uid, reason } => {
            serde_json::json!({ "e2ee": { "unreadable": { "uid": uid, "reason": reason } } })
        }
    };
    print_line(&line)
}
