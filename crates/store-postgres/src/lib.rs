//! The PostgreSQL store, for running Tidings as several nodes on one database: versioned
//! migrations run at start (under an advisory lock, so nodes may start at once), a pool of
//! connections for reads, and one writer task per process that commits every write request
//! queued in one transaction (group commit).
//!
//! Seqs stay gapless and correct with several processes writing: a conversation's and an
//! inbox's newest seq live in counter rows (`conversation_seqs`, `inbox_seqs`), which each
//! transaction locks (in key order) before it takes seqs from them and updates before it
//! commits; no seq comes from a cache that another node could make stale. A deadlock or
//! serialization failure rolls the batch back and runs it again whole.
//!
//! Durability: a commit returns once PostgreSQL has flushed it (`synchronous_commit = on`,
//! set on every connection), so [`Store::write`] answers only with durable results.
//!
//! Architecture invariant: this crate is the only one that knows PostgreSQL or its driver;
//! it depends on no Tidings crate but `tidings-store`.

mod accounts;
mod admin;
mod conversations;
mod groups;
mod schema;
pub mod testing;
mod writer;

use std::sync::Mutex;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, StatementCache};
use tidings_store::{
    AccountRecord, AdminSessionRecord, AuditEntry, ChatroomRecord, ChatroomUser,
    ConversationFilter, Conversations, GroupInfo, GroupMembers, GroupReceipt, History,
    HistoryQuery, InboxEntry, OperatorRecord, Page, PushDue, PushProvider, PushTokenRecord, Result,
    SearchPage, SearchQuery, SessionState, Store, StoreError, StoredMessage, UserProfile,
    UserState, WriteOp, WriteResult,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub(crate) use tidings_store::rows::{
    STATE_DIRECTED, STATE_EDITED, STATE_MENTION_ALL, STATE_REACTIONS, STATE_RECALLED,
    reactions_from_json,
};

pub use writer::MAX_BATCH_OPS;

/// Whether a store setting names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(setting: &str) -> bool {
    setting.starts_with("postgres://") || setting.starts_with("postgresql://")
}

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/database`, as libpq takes it.
    pub url: String,
    /// Connections in the pool: the writer keeps one, reads share the others.
    pub pool_size: usize,
    /// The node's id in a cluster, set on its connections (`tidings.node`): the notifications
    /// due that this node's commits write are its own to send, also after a restart with the
    /// same id. Up to 64 of `A-Z a-z 0-9 _ - .`; anything else counts as empty.
    pub node: String,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            pool_size: 8,
            node: String::new(),
        }
    }
}

/// Records `user` in the database at `url` as [`WriteOp::RecordUser`] does, and returns the
/// record: for minting tokens offline while servers run on the database. It opens a store of
/// its own for the one write (migrating the database first, as a starting node would), then
/// closes it; several processes writing at once is what this store is made for.
pub async fn record_user(url: &str, user: &str) -> Result<tidings_store::UserRecord> {
    let store = PostgresStore::connect(&PostgresConfig {
        pool_size: 2,
        ..PostgresConfig::new(url)
    })
    .await?;
    let record = store.record_user(user).await;
    store.close().await?;
    record
}

/// A failure inside this crate, turned into a [`StoreError`] at the trait.
#[derive(Debug)]
pub(crate) enum Error {
    Db(tokio_postgres::Error),
    Pool(deadpool_postgres::PoolError),
    /// A rule of the store's own was broken (an event's uid used twice, for one).
    Invalid(String),
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Error {
        Error::Db(e)
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Error {
        Error::Pool(e)
    }
}

impl Error {
    /// A deadlock or a serialization failure: running the transaction again may succeed.
    pub(crate) fn retryable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            Error::Db(e) => matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
            ),
            _ => false,
        }
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        match e {
            Error::Pool(deadpool_postgres::PoolError::Closed) => StoreError::Closed,
            Error::Db(e) if unreachable(&e) => StoreError::Unreachable(format!("postgres: {e}")),
            Error::Pool(deadpool_postgres::PoolError::Backend(e)) if unreachable(&e) => {
                StoreError::Unreachable(format!("postgres: {e}"))
            }
            Error::Pool(e @ deadpool_postgres::PoolError::Timeout(_)) => {
                StoreError::Unreachable(format!("postgres pool: {e}"))
            }
            Error::Db(e) => match e.as_db_error() {
                // The server's message says what failed, which `Display` of the driver's
                // error alone does not.
                Some(db) => StoreError::Backend(format!("postgres: {}: {}", db.code().code(), db)),
                None => StoreError::Backend(format!("postgres: {e}")),
            },
            Error::Pool(e) => StoreError::Backend(format!("postgres pool: {e}")),
            Error::Invalid(e) => StoreError::Backend(e),
        }
    }
}

/// Whether a failure is the server's being out of reach rather than a statement's: the
/// connection failed, closed, or timed out (`TCP_USER_TIMEOUT` ends one whose packets go
/// unanswered), or the server said it is shutting down or cannot take connections (SQLSTATE
/// classes 08 and 57P).
fn unreachable(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P")
        }
        None => {
            e.is_closed()
                || e.source().is_some_and(|s| s.is::<std::io::Error>())
                || e.to_string().starts_with("timeout")
        }
    }
}

pub(crate) type PgResult<T> = std::result::Result<T, Error>;

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One connection (in a transaction or not) and its cache of prepared statements. Statements
/// go to the connection as soon as their future is first polled, so several polled together
/// are pipelined: sent without waiting for the answers before.
#[derive(Clone, Copy)]
pub(crate) struct Db<'a> {
    client: &'a tokio_postgres::Client,
    cache: &'a StatementCache,
}

impl<'a> Db<'a> {
    pub(crate) fn of_tx(tx: &'a deadpool_postgres::Transaction<'_>) -> Db<'a> {
        Db {
            client: tx.client(),
            cache: &tx.statement_cache,
        }
    }

    pub(crate) fn of_client(client: &'a deadpool_postgres::Client) -> Db<'a> {
        Db {
            client,
            cache: &client.statement_cache,
        }
    }

    async fn statement(&self, sql: &str) -> PgResult<tokio_postgres::Statement> {
        Ok(self.cache.prepare(self.client, sql).await?)
    }

    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> PgResult<Vec<Row>> {
        let st = self.statement(sql).await?;
        Ok(self.client.query(&st, params).await?)
    }

    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> PgResult<Row> {
        let st = self.statement(sql).await?;
        Ok(self.client.query_one(&st, params).await?)
    }

    pub(crate) async fn query_opt(&self, sql: &str, params: Params<'_>) -> PgResult<Option<Row>> {
        let st = self.statement(sql).await?;
        Ok(self.client.query_opt(&st, params).await?)
    }

    /// Runs two statements pipelined: both are sent before either answer is read, and the
    /// server runs them in this order.
    pub(crate) async fn pipeline(
        &self,
        first: &str,
        first_params: Params<'_>,
        second: &str,
        second_params: Params<'_>,
    ) -> PgResult<(Vec<Row>, Vec<Row>)> {
        // Prepared first, so that neither waits for a Parse while the other is sent.
        let (a, b) = tokio::try_join!(self.statement(first), self.statement(second))?;
        // A query is written to the connection when its future is first polled, and
        // `try_join!` polls in order.
        Ok(tokio::try_join!(
            self.client.query(&a, first_params),
            self.client.query(&b, second_params)
        )?)
    }

    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> PgResult<u64> {
        let st = self.statement(sql).await?;
        Ok(self.client.execute(&st, params).await?)
    }
}

/// How long opening a connection may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long data sent on a connection may go unacknowledged by the server's side before the
/// connection is given up (`TCP_USER_TIMEOUT`): a network cut ends the statements waiting on
/// it with an error after this, instead of after the system's retransmissions (about 15
/// minutes). A busy server acknowledges packets, so this never ends a slow statement.
const UNACKNOWLEDGED: std::time::Duration = std::time::Duration::from_secs(5);
/// Idle connections are probed after this long, and given up after three unanswered probes
/// a second apart, so a pool never hands out one that died while idle for long.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a read or the writer waits for a free connection of the pool.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct PostgresStore {
    pool: Pool,
    writer: Mutex<Option<mpsc::UnboundedSender<writer::Request>>>,
}

impl PostgresStore {
    /// Connects, runs pending migrations and starts the writer task (on the current runtime).
    pub async fn connect(config: &PostgresConfig) -> Result<PostgresStore> {
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| StoreError::Backend(format!("postgres url: {e}")))?;
        // The contract: a write is answered only once its commit is durable. This holds even
        // where the server's own default was relaxed.
        // A transaction left open by a node that was cut off mid-way holds its counter rows'
        // locks, which every other node's writes to the same conversations wait for: the
        // server ends a session idle inside a transaction after 15 s (the writer sends a
        // transaction's statements back to back, so no healthy one idles that long), and
        // probes the connection of an idle one as the node does (see below).
        let mut options = "-c synchronous_commit=on -c idle_in_transaction_session_timeout=15000 \
             -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 \
             -c tcp_user_timeout=5000"
            .to_string();
        if !config.node.is_empty()
            && config.node.len() <= 64
            && config
                .node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            options.push_str(" -c tidings.node=");
            options.push_str(&config.node);
        }
        pg.options(&options);
        pg.application_name("tidings");
        pg.connect_timeout(CONNECT_TIMEOUT);
        pg.tcp_user_timeout(UNACKNOWLEDGED);
        pg.keepalives(true);
        pg.keepalives_idle(KEEPALIVE_IDLE);
        pg.keepalives_interval(std::time::Duration::from_secs(1));
        pg.keepalives_retries(3);
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))?;
        let mut client = pool.get().await.map_err(Error::from)?;
        schema::migrate(&mut client).await?;
        drop(client);
        let writer = writer::spawn(pool.clone());
        Ok(PostgresStore {
            pool,
            writer: Mutex::new(Some(writer)),
        })
    }

    async fn client(&self) -> PgResult<deadpool_postgres::Client> {
        Ok(self.pool.get().await?)
    }
}

pub(crate) fn message_from_row(row: &Row, offset: usize) -> StoredMessage {
    let state: i32 = row.get(offset + 11);
    let reactions: Option<String> = row.get(offset + 12);
    StoredMessage {
        uid: row.get(offset),
        conversation_type: row.get::<_, i32>(offset + 1) as u32,
        conversation_id: row.get(offset + 2),
        sender: row.get(offset + 3),
        target: row.get(offset + 4),
        seq: row.get::<_, i64>(offset + 5) as u64,
        sent_time: row.get(offset + 6),
        msg_type: row.get(offset + 7),
        content: row.get(offset + 8),
        push_text: row.get(offset + 9),
        client_msg_id: row.get(offset + 10),
        recalled: state & STATE_RECALLED != 0,
        edited: state & STATE_EDITED != 0,
        reactions: reactions
            .map(|json| reactions_from_json(&json))
            .unwrap_or_default(),
        mentions: row.get(offset + 13),
        mention_all: state & STATE_MENTION_ALL != 0,
        audience: row
            .get::<_, Option<Vec<String>>>(offset + 14)
            .unwrap_or_default(),
    }
}

/// The columns `message_from_row` reads, from `messages m`. Reactions and the audience are read
/// only for messages that have them.
pub(crate) const MESSAGE_COLUMNS: &str = "m.uid, m.conv_type, m.conv_id, m.sender, m.target, \
     m.seq, m.sent_time, m.msg_type, m.content, m.push_text, m.client_msg_id, m.state, \
     CASE WHEN m.state & 4 <> 0 THEN (SELECT json_agg(json_build_array(r.emoji, r.user_id))::text \
     FROM reactions r WHERE r.conv_id = m.conv_id AND r.seq = m.seq) END, m.mentions, \
     CASE WHEN m.state & 8 <> 0 THEN ARRAY(SELECT a.user_id FROM message_audience a \
     WHERE a.msg = m.id ORDER BY a.user_id) END";

/// How many columns [`MESSAGE_COLUMNS`] has.
pub(crate) const MESSAGE_COLUMN_COUNT: usize = 15;

/// A `u64` position or seq as PostgreSQL's `bigint`, saturating.
pub(crate) fn big(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// The rows to read for a page of `limit`: one more, to tell whether there are more. A limit too
/// large for `bigint` means no limit (as `usize::MAX` does in SQLite, whose `LIMIT -1` it was).
pub(crate) fn page_rows(limit: usize) -> i64 {
    big(limit as u64).saturating_add(1)
}

#[async_trait]
impl Store for PostgresStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>> {
        let (reply, rx) = oneshot::channel();
        tidings_store::batch::to_writer(&self.writer, |tx| {
            // Counted before it is sent, so the writer's decrement never comes first.
            let depth = &tidings_store::metrics::m().queue_depth;
            depth.increment(1);
            tx.send(writer::Request::Write { ops, reply }).map_err(|_| {
                depth.decrement(1);
                StoreError::Closed
            })
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn inbox_after(&self, user: &str, after: u64, limit: usize) -> Result<Vec<InboxEntry>> {
        let client = self.client().await?;
        let rows = Db::of_client(&client)
            .query(
                &format!(
                    "SELECT i.seq, {MESSAGE_COLUMNS} FROM inbox i JOIN messages m ON m.id = i.msg \
                     WHERE i.user_id = $1 AND i.seq > $2 ORDER BY i.seq LIMIT $3"
                ),
                &[&user, &big(after), &big(limit as u64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| InboxEntry {
                inbox_seq: r.get::<_, i64>(0) as u64,
                message: message_from_row(r, 1),
            })
            .collect())
    }

    async fn conversation_after(
        &self,
        conversation_id: &str,
        page: Page,
    ) -> Result<Vec<StoredMessage>> {
        let Page { after, limit } = page;
        let client = self.client().await?;
        let rows = Db::of_client(&client)
            .query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = $1 AND m.seq > $2 \
                     ORDER BY m.seq LIMIT $3"
                ),
                &[&conversation_id, &big(after), &big(limit as u64)],
            )
            .await?;
        Ok(rows.iter().map(|r| message_from_row(r, 0)).collect())
    }

    async fn user_state(&self, user: &str) -> Result<UserState> {
        let client = self.client().await?;
        Ok(read_user_state(Db::of_client(&client), user).await?)
    }

    async fn session_state(&self, user: &str, device: Option<&str>) -> Result<SessionState> {
        let client = self.client().await?;
        let db = Db::of_client(&client);
        // Both reads are sent at once (pipelined).
        let (state, cursor) = tokio::try_join!(read_user_state(db, user), async {
            match device {
                Some(device) => read_cursor(db, user, device).await,
                None => Ok(0),
            }
        })?;
        Ok(SessionState {
            user: state,
            cursor,
        })
    }

    async fn device_cursor(&self, user: &str, device: &str) -> Result<u64> {
        let client = self.client().await?;
        Ok(read_cursor(Db::of_client(&client), user, device).await?)
    }

    async fn conversations(&self, user: &str, filter: ConversationFilter) -> Result<Conversations> {
        let mut client = self.client().await?;
        Ok(conversations::read(&mut client, user, &filter).await?)
    }

    async fn search(&self, user: &str, query: SearchQuery) -> Result<SearchPage> {
        let client = self.client().await?;
        Ok(conversations::search(Db::of_client(&client), user, &query).await?)
    }

    async fn blocklist(&self, user: &str) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = Db::of_client(&client)
            .query(
                "SELECT blocked_id FROM blocklist WHERE user_id = $1 ORDER BY blocked_id",
                &[&user],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn is_blocked(&self, user: &str, other: &str) -> Result<bool> {
        let client = self.client().await?;
        let row = Db::of_client(&client)
            .query_opt(
                "SELECT 1 FROM blocklist WHERE user_id = $1 AND blocked_id = $2",
                &[&user, &other],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn quiet_hours(&self, user: &str) -> Result<(u32, u32)> {
        let client = self.client().await?;
        let row = Db::of_client(&client)
            .query_opt(
                "SELECT quiet_start, quiet_minutes FROM users WHERE id = $1",
                &[&user],
            )
            .await?;
        Ok(row.map_or((0, 0), |r| {
            (r.get::<_, i32>(0) as u32, r.get::<_, i32>(1) as u32)
        }))
    }

    async fn push_tokens(&self, users: &[String]) -> Result<Vec<PushTokenRecord>> {
        let client = self.client().await?;
        let rows = Db::of_client(&client)
            .query(
                "SELECT user_id, device_id, provider, token, app_id, sandbox, locale, p256dh, \
                 auth FROM push_tokens WHERE user_id = ANY($1)",
                &[&users],
            )
            .await?;
        let mut tokens: Vec<PushTokenRecord> = rows
            .iter()
            .map(|r| PushTokenRecord {
                user: r.get(0),
                device: r.get(1),
                provider: PushProvider::parse(r.get(2)).unwrap_or_default(),
                token: r.get(3),
                app_id: r.get(4),
                sandbox: r.get(5),
                locale: r.get(6),
                p256dh: r.get(7),
                auth: r.get(8),
            })
            .collect();
        // Ordered by user, then provider (in the enum's order), then token.
        tokens
            .sort_by(|a, b| (&a.user, a.provider, &a.token).cmp(&(&b.user, b.provider, &b.token)));
        Ok(tokens)
    }

    async fn push_due(&self, limit: usize) -> Result<Vec<PushDue>> {
        let client = self.client().await?;
        let rows = Db::of_client(&client)
            .query(
                &format!(
                    "SELECT d.user_id, d.inbox_seq, d.push_data, {MESSAGE_COLUMNS} FROM push_due d \
                     JOIN messages m ON m.id = d.msg \
                     WHERE d.node = coalesce(current_setting('tidings.node', true), '') \
                     ORDER BY d.msg, d.user_id LIMIT $1"
                ),
                &[&(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PushDue {
                user: r.get(0),
                inbox_seq: r.get::<_, i64>(1) as u64,
                push_data: r.get(2),
                message: message_from_row(r, 3),
            })
            .collect())
    }

    async fn user_ids_after(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = Db::of_client(&client)
            .query(
                "SELECT user_id FROM inbox_seqs WHERE seq > 0 AND user_id > $1 \
                 UNION SELECT id FROM users WHERE id > $1 ORDER BY 1 LIMIT $2",
                &[&after, &big(limit as u64)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn sensitive_words(&self) -> Result<Vec<(String, Option<String>)>> {
        let client = self.client().await?;
        let rows = Db::of_client(&client)
            .query(
                "SELECT word, replacement FROM sensitive_words ORDER BY word",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn profiles(&self, users: &[String]) -> Result<Vec<UserProfile>> {
        let client = self.client().await?;
        // In the order asked, repeats included: one row per position.
        let rows = Db::of_client(&client)
            .query(
                "SELECT u.name, u.portrait, u.extra, u.banned, u.last_seen \
                 FROM unnest($1::text[]) WITH ORDINALITY AS q(id, n) \
                 LEFT JOIN users u ON u.id = q.id ORDER BY q.n",
                &[&users],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| UserProfile {
                name: r.get::<_, Option<String>>(0).unwrap_or_default(),
                portrait: r.get::<_, Option<String>>(1).unwrap_or_default(),
                extra: r.get::<_, Option<String>>(2).unwrap_or_default(),
                banned: r.get::<_, Option<bool>>(3).unwrap_or_default(),
                last_seen: r.get::<_, Option<i64>>(4).unwrap_or_default(),
            })
            .collect())
    }

    async fn last_seen(&self, users: &[String]) -> Result<Vec<i64>> {
        let client = self.client().await?;
        let rows = Db::of_client(&client)
            .query(
                "SELECT coalesce(u.last_seen, 0) FROM unnest($1::text[]) WITH ORDINALITY AS q(id, n) \
                 LEFT JOIN users u ON u.id = q.id ORDER BY q.n",
                &[&users],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn history(&self, user: &str, query: HistoryQuery) -> Result<History> {
        let mut client = self.client().await?;
        Ok(conversations::history(&mut client, user, &query).await?)
    }

    async fn group(&self, id: &str) -> Result<Option<GroupInfo>> {
        let client = self.client().await?;
        Ok(groups::group(Db::of_client(&client), id).await?)
    }

    async fn group_members(&self, id: &str, after: u64, limit: usize) -> Result<GroupMembers> {
        let client = self.client().await?;
        Ok(groups::members(Db::of_client(&client), id, after, limit).await?)
    }

    async fn is_group_member(&self, id: &str, user: &str) -> Result<bool> {
        let client = self.client().await?;
        Ok(groups::member_row(Db::of_client(&client), id, user)
            .await?
            .is_some())
    }

    async fn user_groups(&self, user: &str) -> Result<Vec<GroupInfo>> {
        let client = self.client().await?;
        Ok(groups::user_groups(Db::of_client(&client), user).await?)
    }

    async fn group_receipt(&self, id: &str, seq: u64) -> Result<Option<GroupReceipt>> {
        let mut client = self.client().await?;
        Ok(groups::receipt(&mut client, id, seq).await?)
    }

    async fn chatroom(&self, id: &str) -> Result<Option<(ChatroomRecord, Vec<ChatroomUser>)>> {
        let mut client = self.client().await?;
        let tx = read_snapshot(&mut client).await?;
        let db = Db::of_tx(&tx);
        let Some(r) = db
            .query_opt(
                "SELECT id, name, extra, created, max_members, muted_until FROM chatrooms \
                 WHERE id = $1",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let record = ChatroomRecord {
            id: r.get(0),
            name: r.get(1),
            extra: r.get(2),
            created: r.get(3),
            max_members: r.get::<_, i64>(4) as u64,
            muted_until: r.get(5),
        };
        let users = db
            .query(
                "SELECT user_id, banned_until, muted_until FROM chatroom_users \
                 WHERE room_id = $1 ORDER BY user_id",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| ChatroomUser {
                user: r.get(0),
                banned_until: r.get(1),
                muted_until: r.get(2),
            })
            .collect();
        tx.commit().await.map_err(Error::from)?;
        Ok(Some((record, users)))
    }

    async fn account(&self, user: &str) -> Result<Option<AccountRecord>> {
        let client = self.client().await?;
        let row = Db::of_client(&client)
            .query_opt(
                "SELECT password, created FROM accounts WHERE user_id = $1",
                &[&user],
            )
            .await?;
        Ok(row.map(|r| AccountRecord {
            user: user.to_string(),
            password_hash: r.get(0),
            created: r.get(1),
        }))
    }

    async fn operator(&self, name: &str) -> Result<Option<OperatorRecord>> {
        let client = self.client().await?;
        Ok(admin::operator(Db::of_client(&client), name).await?)
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>> {
        let client = self.client().await?;
        Ok(admin::operators(Db::of_client(&client)).await?)
    }

    async fn admin_session(&self, id_hash: &str) -> Result<Option<AdminSessionRecord>> {
        let client = self.client().await?;
        Ok(admin::session(Db::of_client(&client), id_hash).await?)
    }

    async fn audit_log(&self, before: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let client = self.client().await?;
        Ok(admin::audit_log(Db::of_client(&client), before, limit).await?)
    }

    async fn close(&self) -> Result<()> {
        let sender = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(sender) = sender else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        sender
            .send(writer::Request::Close { reply })
            .map_err(|_| StoreError::Closed)?;
        // The writer answers once everything queued before is committed (or failed).
        let _ = rx.await;
        self.pool.close();
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(Error::from)?;
        Ok(())
    }
}

/// A read-only transaction with one snapshot for all its statements.
pub(crate) async fn read_snapshot(
    client: &mut deadpool_postgres::Client,
) -> PgResult<deadpool_postgres::Transaction<'_>> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

async fn read_user_state(db: Db<'_>, user: &str) -> PgResult<UserState> {
    let row = db
        .query_one(
            "SELECT (SELECT token_version FROM users WHERE id = $1), \
             (SELECT banned FROM users WHERE id = $1), \
             (SELECT seq FROM inbox_seqs WHERE user_id = $1), \
             (SELECT account FROM users WHERE id = $1)",
            &[&user],
        )
        .await?;
    Ok(UserState {
        token_version: row.get::<_, Option<i64>>(0).unwrap_or(0) as u64,
        banned: row.get::<_, Option<bool>>(1).unwrap_or(false),
        inbox_seq: row.get::<_, Option<i64>>(2).unwrap_or(0) as u64,
        account: row.get::<_, Option<bool>>(3).unwrap_or(false),
    })
}

async fn read_cursor(db: Db<'_>, user: &str, device: &str) -> PgResult<u64> {
    let row = db
        .query_opt(
            "SELECT cursor FROM device_cursors WHERE user_id = $1 AND device_id = $2",
            &[&user, &device],
        )
        .await?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
}
