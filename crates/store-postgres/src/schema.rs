//! Versioned migrations, tracked in `schema_migrations`. They run at start, all pending ones in
//! one transaction that first takes an advisory lock, so nodes starting at once apply each
//! migration exactly once: the second waits for the first and then finds nothing to do.

use crate::{Db, Error};

/// The advisory lock key migrations hold (`'tidings'` as bytes).
const MIGRATION_LOCK: i64 = 0x0074_6964_696e_6773;

/// Each entry migrates from version `index` to `index + 1`. Never edit a released entry: append.
///
/// Every text column that ids or words are ordered or compared by is `COLLATE "C"`: byte order,
/// as SQLite's, whatever the database's locale, so pages and lists come in the same order on
/// both backends (and the b-trees compare bytes, which is faster).
const MIGRATIONS: &[&str] = &[
    r#"
-- Substring search over message texts (`search_text`), through a trigram index.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- What the server records of a user. Users without a row have all-zero state.
CREATE TABLE users (
    id            text COLLATE "C" PRIMARY KEY,
    token_version bigint NOT NULL DEFAULT 0,
    last_seen     bigint NOT NULL DEFAULT 0,
    quiet_start   integer NOT NULL DEFAULT 0,
    quiet_minutes integer NOT NULL DEFAULT 0,
    name          text NOT NULL DEFAULT '',
    portrait      text NOT NULL DEFAULT '',
    extra         text NOT NULL DEFAULT '',
    banned        boolean NOT NULL DEFAULT false
);

-- Messages, conversation-wide. `id` orders them for search pages and keys inbox entries.
CREATE TABLE messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conv_type     integer NOT NULL,
    conv_id       text COLLATE "C" NOT NULL,
    seq           bigint NOT NULL,
    uid           text NOT NULL,
    sender        text COLLATE "C" NOT NULL,
    target        text COLLATE "C" NOT NULL,
    sent_time     bigint NOT NULL,
    msg_type      text NOT NULL,
    content       text NOT NULL,
    push_text     text NOT NULL,
    client_msg_id text COLLATE "C" NOT NULL,
    digest        text NOT NULL,
    counted       boolean NOT NULL,
    -- Bits: 1 recalled, 2 edited, 4 has reactions, 8 directed, 16 mentions everyone.
    state         integer NOT NULL DEFAULT 0,
    mentions      text[] NOT NULL DEFAULT '{}',
    -- The text search finds the message by; NULL: not searchable. Collation "C": ILIKE folds
    -- ASCII letters only, as the contract says.
    search_text   text COLLATE "C",
    UNIQUE (conv_id, seq),
    UNIQUE (sender, client_msg_id)
);
CREATE INDEX messages_search ON messages USING gin (search_text gin_trgm_ops)
    WHERE search_text IS NOT NULL;

-- The newest seq of each conversation and of each user's inbox. A write locks the rows it
-- takes seqs from (in key order) until it commits, so seqs stay gapless with several nodes
-- writing. An inbox row with seq 0 only served as a lock: its user has no entry yet.
CREATE TABLE conversation_seqs (
    conv_id text COLLATE "C" PRIMARY KEY,
    seq     bigint NOT NULL
);
CREATE TABLE inbox_seqs (
    user_id text COLLATE "C" PRIMARY KEY,
    seq     bigint NOT NULL
);

-- One entry per user per message the user can see; `msg` is the message's id.
CREATE TABLE inbox (
    user_id text COLLATE "C" NOT NULL,
    seq     bigint NOT NULL,
    msg     bigint NOT NULL,
    PRIMARY KEY (user_id, seq)
);

CREATE TABLE device_cursors (
    user_id   text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    cursor    bigint NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE nonces (
    nonce      text COLLATE "C" PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at);

-- A user's side of a conversation: settings and read position. The newest message and the
-- unread count are read from messages, so they cannot drift.
CREATE TABLE conversations (
    user_id     text COLLATE "C" NOT NULL,
    conv_type   integer NOT NULL,
    target      text COLLATE "C" NOT NULL,
    conv_id     text COLLATE "C" NOT NULL,
    read_seq    bigint NOT NULL DEFAULT 0,
    pinned      boolean NOT NULL DEFAULT false,
    muted       boolean NOT NULL DEFAULT false,
    -- Out of the list while the conversation's newest seq is at most this.
    removed_seq bigint NOT NULL DEFAULT 0,
    -- The user's inbox seq of the event that reported the last change of these settings.
    version     bigint NOT NULL DEFAULT 0,
    -- History up to this seq is cleared for the user.
    cleared_seq bigint NOT NULL DEFAULT 0,
    -- A member who left the group sees its conversation only up to this seq (0: no bound).
    until_seq   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conv_type, target)
);
CREATE INDEX conversations_by_conv ON conversations (user_id, conv_id);

-- Messages a user deleted for themself.
CREATE TABLE deleted_messages (
    user_id text COLLATE "C" NOT NULL,
    conv_id text COLLATE "C" NOT NULL,
    seq     bigint NOT NULL,
    PRIMARY KEY (user_id, conv_id, seq)
);

-- Users a user blocks: their messages to the user are refused.
CREATE TABLE blocklist (
    user_id    text COLLATE "C" NOT NULL,
    blocked_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);

CREATE TABLE reactions (
    conv_id text COLLATE "C" NOT NULL,
    seq     bigint NOT NULL,
    emoji   text COLLATE "C" NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (conv_id, seq, emoji, user_id)
);

-- Groups. Their messages are conversation type 3 with conv_id '3:' || id.
CREATE TABLE groups (
    id          text COLLATE "C" PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    portrait    text NOT NULL DEFAULT '',
    extra       text NOT NULL DEFAULT '',
    owner       text COLLATE "C" NOT NULL,
    created     bigint NOT NULL,
    dismissed   bigint NOT NULL DEFAULT 0,
    muted_until bigint NOT NULL DEFAULT 0
);

-- Members; `id` orders them by when they joined (a member who rejoins gets a new one).
CREATE TABLE group_members (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id    text COLLATE "C" NOT NULL,
    user_id     text COLLATE "C" NOT NULL,
    joined      bigint NOT NULL,
    -- The group conversation's seq just before the member joined.
    joined_seq  bigint NOT NULL,
    muted_until bigint NOT NULL DEFAULT 0,
    UNIQUE (group_id, user_id)
);
CREATE INDEX group_members_in_order ON group_members (group_id, id);
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);

-- The members who see a directed group message (state bit 8), besides its sender.
CREATE TABLE message_audience (
    msg     bigint NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (msg, user_id)
);

-- Words messages may not hold: refused, or (with a replacement) replaced before storage.
CREATE TABLE sensitive_words (
    word        text COLLATE "C" PRIMARY KEY,
    replacement text
);

-- Chatrooms the app server created, and the bans and mutes of their users.
CREATE TABLE chatrooms (
    id          text COLLATE "C" PRIMARY KEY,
    name        text NOT NULL,
    extra       text NOT NULL,
    created     bigint NOT NULL,
    max_members bigint NOT NULL,
    muted_until bigint NOT NULL
);
CREATE TABLE chatroom_users (
    room_id      text COLLATE "C" NOT NULL REFERENCES chatrooms (id),
    user_id      text COLLATE "C" NOT NULL,
    banned_until bigint NOT NULL,
    muted_until  bigint NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- Built-in accounts, with an Argon2id PHC string. The user's `users` row outlives the account.
CREATE TABLE accounts (
    user_id  text COLLATE "C" PRIMARY KEY,
    password text NOT NULL,
    created  bigint NOT NULL
);

-- Web Push subscriptions: one per endpoint, read by user.
CREATE TABLE push_subscriptions (
    endpoint text COLLATE "C" PRIMARY KEY,
    user_id  text COLLATE "C" NOT NULL,
    p256dh   text NOT NULL,
    auth     text NOT NULL
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id, endpoint);
"#,
    r#"
-- Whether the id was made by registering an account; it stays set after the account is
-- deleted. Tokens of the app server are refused for such a user, and account tokens for every
-- other. Accounts deleted before this column existed are not known as such.
ALTER TABLE users ADD COLUMN account boolean NOT NULL DEFAULT false;
UPDATE users SET account = true WHERE id IN (SELECT user_id FROM accounts);

-- A registration looks for the id in every table that holds a user's data, by an index.
CREATE INDEX chatroom_users_by_user ON chatroom_users (user_id);
"#,
    r#"
-- The admin console: its operators (a namespace of their own, apart from users and accounts),
-- their sessions (by the SHA-256 of the cookie's secret id) and the audit log of their actions.
CREATE TABLE admin_operators (
    name     text COLLATE "C" PRIMARY KEY,
    password text NOT NULL,
    created  bigint NOT NULL
);
CREATE TABLE admin_sessions (
    id_hash  text COLLATE "C" PRIMARY KEY,
    operator text COLLATE "C" NOT NULL,
    created  bigint NOT NULL,
    expires  bigint NOT NULL
);
CREATE INDEX admin_sessions_by_operator ON admin_sessions (operator);
CREATE TABLE admin_audit (
    id       bigserial PRIMARY KEY,
    time     bigint NOT NULL,
    operator text NOT NULL,
    action   text NOT NULL,
    target   text NOT NULL,
    details  text NOT NULL
);
"#,
    r#"
-- Who makes and manages a group: 'managed' (the app server), 'open' (made by a user naming it
-- when connecting, joined the same way) or 'discussion' (made and managed by its members).
-- `invite_open`: whether any member of a discussion may add members, or only its owner.
ALTER TABLE groups ADD COLUMN kind text NOT NULL DEFAULT 'managed';
ALTER TABLE groups ADD COLUMN invite_open boolean NOT NULL DEFAULT true;
"#,
    r#"
-- How far the other participant of a private conversation has read, as their read receipts
-- told this user. Not filled in from their read_seq: a silent read must stay unknown, so
-- conversations read before this column existed show no position until the next receipt.
ALTER TABLE conversations ADD COLUMN peer_read_seq bigint NOT NULL DEFAULT 0;
"#,
    r#"
-- Push tokens of every provider (Web Push, FCM, APNs), replacing the Web Push subscriptions:
-- one row per (provider, token), owned by one device (`device_id`, '' when none was named) of
-- one user. For Web Push `token` is the endpoint and `p256dh`, `auth` its keys.
CREATE TABLE push_tokens (
    provider  text COLLATE "C" NOT NULL,
    token     text COLLATE "C" NOT NULL,
    user_id   text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    app_id    text COLLATE "C" NOT NULL,
    sandbox   boolean NOT NULL,
    locale    text NOT NULL,
    p256dh    text NOT NULL,
    auth      text NOT NULL,
    PRIMARY KEY (provider, token)
);
CREATE INDEX push_tokens_user ON push_tokens (user_id, device_id);
INSERT INTO push_tokens (provider, token, user_id, device_id, app_id, sandbox, locale, p256dh, auth)
    SELECT 'webpush', endpoint, user_id, '', '', false, '', p256dh, auth FROM push_subscriptions;
DROP TABLE push_subscriptions;

-- Notifications due: written in the commit that appends a message to the inbox of a user with
-- a push token (the rule is `tidings_store::rules::push::push_due`), deleted once sent or
-- decided against; `node` is the committing node's (its connections' `tidings.node`
-- setting), which sends what a crash left at its next start.
CREATE TABLE push_due (
    user_id   text COLLATE "C" NOT NULL,
    inbox_seq bigint NOT NULL,
    msg       bigint NOT NULL,
    node      text COLLATE "C" NOT NULL DEFAULT coalesce(current_setting('tidings.node', true), ''),
    PRIMARY KEY (user_id, inbox_seq)
);
CREATE INDEX push_due_by_node ON push_due (node, msg);
"#,
    r#"
-- The sender's data for the app that a notification carries (seed 004's pushData): kept with
-- what is due, as only notifications need it.
ALTER TABLE push_due ADD COLUMN push_data text NOT NULL DEFAULT '';
"#,
    r#"
-- The MLS key package directory: key packages devices uploaded for others to add them to
-- encrypted groups (the rules are `tidings_store::rules::keys`). `ord` is the upload order.
CREATE TABLE key_packages (
    ord         bigserial PRIMARY KEY,
    reference   bytea NOT NULL UNIQUE,
    user_id     text COLLATE "C" NOT NULL,
    device_id   text COLLATE "C" NOT NULL,
    last_resort boolean NOT NULL,
    not_after   bigint NOT NULL,
    data        bytea NOT NULL
);
CREATE INDEX key_packages_user ON key_packages (user_id, device_id);

-- End-to-end encrypted conversations: each one's MLS group and its current epoch, which the
-- next commit must name (the rule is `tidings_store::rules::e2ee::order`).
CREATE TABLE e2ee_groups (
    conv_id  text COLLATE "C" PRIMARY KEY,
    group_id bytea NOT NULL,
    epoch    bigint NOT NULL
);
"#,
];

/// Applies the pending migrations, all in one transaction under the advisory lock.
pub async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let db = Db::of_tx(&tx);
    let before: i32 = db
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(before as usize) {
        tx.batch_execute(sql).await?;
        let version = i as i32 + 1;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    let before = before as usize;
    let version = MIGRATIONS.len().max(before);
    let applied = MIGRATIONS.len().saturating_sub(before);
    tracing::info!(
        version,
        applied,
        "database schema at version {version} (applied {applied} migrations)"
    );
    Ok(())
}
