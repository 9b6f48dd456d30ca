//! Reading a user's conversations (their rows, each conversation's newest message, unread
//! counts from read positions, all from one snapshot), history pages and search.

use std::collections::BTreeSet;

use tidings_store::rows::ConversationRow;
use tidings_store::rules::conversations::{SettingsRow, target_seen_by};
use tidings_store::{
    ConversationFilter, ConversationRecord, Conversations, History, HistoryFrom, HistoryQuery,
    SearchPage, SearchQuery, StoredMessage,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::{
    Db, MESSAGE_COLUMN_COUNT, MESSAGE_COLUMNS, PgResult, big, message_from_row, page_rows,
    read_snapshot,
};

pub async fn read(
    client: &mut deadpool_postgres::Client,
    user: &str,
    filter: &ConversationFilter,
) -> PgResult<Conversations> {
    let tx = read_snapshot(client).await?;
    let db = Db::of_tx(&tx);
    let version = db
        .query_opt("SELECT seq FROM inbox_seqs WHERE user_id = $1", &[&user])
        .await?
        .map_or(0, |r| r.get::<_, i64>(0) as u64);
    let rows = match (&filter.one, filter.changed_since) {
        (Some((conv_type, target)), _) => one(db, user, *conv_type, target)
            .await?
            .into_iter()
            .collect(),
        (None, Some(since)) => changed_since(db, user, since).await?,
        (None, None) => all(db, user).await?,
    };
    let mut conversations = Vec::with_capacity(rows.len());
    for row in rows {
        if filter.admits(row.settings.conversation_type) {
            conversations.push(record(db, user, row).await?);
        }
    }
    tx.commit().await?;
    Ok(Conversations {
        conversations,
        version,
    })
}

const ROW_COLUMNS: &str = "conv_type, target, conv_id, read_seq, pinned, muted, removed_seq, \
     cleared_seq, until_seq, peer_read_seq";

fn row_from(r: &Row) -> ConversationRow {
    ConversationRow {
        settings: settings_row(r, 3).into_settings(r.get::<_, i32>(0) as u32, r.get(1)),
        conversation_id: r.get(2),
        peer_read_seq: r.get::<_, i64>(9) as u64,
    }
}

/// The columns `read_seq, pinned, muted, removed_seq, cleared_seq, until_seq` from `at` on.
pub(crate) fn settings_row(r: &Row, at: usize) -> SettingsRow {
    let seq = |i: usize| r.get::<_, i64>(at + i) as u64;
    SettingsRow {
        read_seq: seq(0),
        pinned: r.get(at + 1),
        muted: r.get(at + 2),
        removed_seq: seq(3),
        cleared_seq: seq(4),
        until_seq: seq(5),
    }
}

async fn one(
    db: Db<'_>,
    user: &str,
    conv_type: u32,
    target: &str,
) -> PgResult<Option<ConversationRow>> {
    Ok(db
        .query_opt(
            &format!(
                "SELECT {ROW_COLUMNS} FROM conversations \
                 WHERE user_id = $1 AND conv_type = $2 AND target = $3"
            ),
            &[&user, &(conv_type as i32), &target],
        )
        .await?
        .as_ref()
        .map(row_from))
}

async fn all(db: Db<'_>, user: &str) -> PgResult<Vec<ConversationRow>> {
    Ok(db
        .query(
            &format!("SELECT {ROW_COLUMNS} FROM conversations WHERE user_id = $1"),
            &[&user],
        )
        .await?
        .iter()
        .map(row_from)
        .collect())
}

/// Rows whose settings changed after `since`, and rows of conversations with an inbox entry
/// after it (a new message).
async fn changed_since(db: Db<'_>, user: &str, since: u64) -> PgResult<Vec<ConversationRow>> {
    let touched = db
        .query(
            "SELECT DISTINCT m.conv_type, m.sender, m.target FROM inbox i \
             JOIN messages m ON m.id = i.msg WHERE i.user_id = $1 AND i.seq > $2 \
             AND m.conv_type <> 0",
            &[&user, &big(since)],
        )
        .await?;
    let mut keys = BTreeSet::new();
    for r in &touched {
        let conv_type = r.get::<_, i32>(0) as u32;
        let sender: String = r.get(1);
        keys.insert((conv_type, target_seen_by(user, conv_type, sender, r.get(2))));
    }
    let mut rows: Vec<ConversationRow> = db
        .query(
            &format!("SELECT {ROW_COLUMNS} FROM conversations WHERE user_id = $1 AND version > $2"),
            &[&user, &big(since)],
        )
        .await?
        .iter()
        .map(row_from)
        .collect();
    for r in &rows {
        keys.remove(&(r.settings.conversation_type, r.settings.target_id.clone()));
    }
    for (conv_type, target) in keys {
        rows.extend(one(db, user, conv_type, &target).await?);
    }
    Ok(rows)
}

/// A message `m` that user `$3` is in the audience of (every message but a directed one not
/// addressed to them).
const AUDIENCE: &str = "(m.state & 8 = 0 OR m.sender = $3 OR EXISTS (SELECT 1 \
     FROM message_audience a WHERE a.msg = m.id AND a.user_id = $3))";

/// A message `m` that is not an amend event (see `tidings_store::AMEND_EVENT_TYPES`).
fn not_amend_event() -> String {
    format!(
        "m.msg_type NOT IN ({})",
        tidings_store::amend_event_types_sql()
    )
}

/// A message `m` not deleted by user `$3`, and in their audience.
const VISIBLE: &str = "NOT EXISTS (SELECT 1 FROM deleted_messages d \
     WHERE d.user_id = $3 AND d.conv_id = m.conv_id AND d.seq = m.seq) \
     AND (m.state & 8 = 0 OR m.sender = $3 OR EXISTS (SELECT 1 \
     FROM message_audience a WHERE a.msg = m.id AND a.user_id = $3))";

/// The highest seq a user with this `until_seq` sees.
fn upper_bound(until_seq: u64) -> i64 {
    if until_seq == 0 {
        i64::MAX
    } else {
        big(until_seq)
    }
}

async fn record(db: Db<'_>, user: &str, row: ConversationRow) -> PgResult<ConversationRecord> {
    let until = upper_bound(row.settings.until_seq);
    let conv = row.conversation_id.as_str();
    let cleared = big(row.settings.cleared_seq);
    let mention = user.to_string();
    let newest_sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = $1 AND m.seq <= $2 \
         AND {AUDIENCE} AND {NOT_AMEND} ORDER BY m.seq DESC LIMIT 1",
        NOT_AMEND = not_amend_event()
    );
    let latest_sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = $1 AND m.seq > $2 \
         AND m.seq <= $4 AND {VISIBLE} AND {NOT_AMEND} ORDER BY m.seq DESC LIMIT 1",
        NOT_AMEND = not_amend_event()
    );
    let counts_sql = format!(
        "SELECT count(*) FILTER (WHERE m.counted), \
         count(*) FILTER (WHERE m.state & {all} <> 0 OR $5 = ANY(m.mentions)) \
         FROM messages m WHERE m.conv_id = $1 AND m.seq > $2 AND m.seq <= $4 \
         AND m.sender <> $3 AND {VISIBLE}",
        all = crate::STATE_MENTION_ALL,
    );
    let read_seq = big(row.settings.read_seq);
    // The three reads of one conversation are pipelined.
    let newest_params: [&(dyn ToSql + Sync); 3] = [&conv, &until, &user];
    let latest_params: [&(dyn ToSql + Sync); 4] = [&conv, &cleared, &user, &until];
    let counts_params: [&(dyn ToSql + Sync); 5] = [&conv, &read_seq, &user, &until, &mention];
    let (newest, visible, counts) = tokio::try_join!(
        db.query_opt(&newest_sql, &newest_params),
        db.query_opt(&latest_sql, &latest_params),
        db.query_one(&counts_sql, &counts_params),
    )?;
    let newest: Option<StoredMessage> = newest.map(|r| message_from_row(&r, 0));
    let latest = visible.map(|r| message_from_row(&r, 0));
    let (unread, mentioned): (i64, i64) = (counts.get(0), counts.get(1));
    Ok(row.into_record(newest, latest, unread as u64, mentioned as u64))
}

/// A page of a conversation's history as `user` sees it.
pub async fn history(
    client: &mut deadpool_postgres::Client,
    user: &str,
    query: &HistoryQuery,
) -> PgResult<History> {
    let (conversation_id, from, limit) = (query.conversation_id.as_str(), query.from, query.limit);
    let tx = read_snapshot(client).await?;
    let db = Db::of_tx(&tx);
    // What the user cleared, and where their view ends; a user without a conversation row has
    // cleared nothing.
    let row = db
        .query_opt(
            "SELECT cleared_seq, until_seq FROM conversations WHERE user_id = $1 AND conv_id = $2 \
             LIMIT 1",
            &[&user, &conversation_id],
        )
        .await?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
    // A group's history is seen only through a member's row, made when they joined.
    if row.is_none()
        && db
            .query_opt(
                "SELECT 1 FROM messages WHERE conv_id = $1 AND conv_type = 3 LIMIT 1",
                &[&conversation_id],
            )
            .await?
            .is_some()
    {
        return Ok(History::default());
    }
    let (cleared, until) = row.unwrap_or((0, 0));
    let until = upper_bound(until as u64);
    // $1 conversation, $2 the bound, $3 the user, $4 cleared, $5 the page size plus one,
    // $6 the end of the user's view.
    let (bound, condition, order) = match from {
        HistoryFrom::BeforeSeq(s) => (big(s), "m.seq < $2", "DESC"),
        HistoryFrom::AfterSeq(s) => (big(s), "m.seq > $2", "ASC"),
        HistoryFrom::BeforeTime(t) => (t, "m.sent_time < $2", "DESC"),
        HistoryFrom::AfterTime(t) => (t, "m.sent_time > $2", "ASC"),
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = $1 AND {condition} \
         AND m.seq > $4 AND m.seq <= $6 AND {VISIBLE} ORDER BY m.seq {order} LIMIT $5"
    );
    let mut messages: Vec<StoredMessage> = db
        .query(
            &sql,
            &[
                &conversation_id,
                &bound,
                &user,
                &cleared,
                &page_rows(limit),
                &until,
            ],
        )
        .await?
        .iter()
        .map(|r| message_from_row(r, 0))
        .collect();
    tx.commit().await?;
    let has_more = messages.len() > limit;
    messages.truncate(limit);
    if order == "DESC" {
        messages.reverse();
    }
    Ok(History { messages, has_more })
}

/// `query` as an ILIKE pattern that matches it literally anywhere in a text.
fn contains_pattern(query: &str) -> String {
    let mut p = String::with_capacity(query.len() + 2);
    p.push('%');
    for c in query.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Messages `user` can see whose search text contains `query`, newest first.
pub async fn search(db: Db<'_>, user: &str, search: &SearchQuery) -> PgResult<SearchPage> {
    let (query, conversation_id) = (search.text.as_str(), search.conversation_id.as_deref());
    let (before, limit) = (search.before, search.limit);
    // ILIKE finds candidates through the trigram index (a pattern with no trigram, such as two
    // characters, scans the index) and checks each against the text. The column's collation
    // is "C", so case is folded for ASCII letters only.
    let pattern = contains_pattern(query);
    let before = if before == 0 { i64::MAX } else { big(before) };
    // $1 user (and $3, for VISIBLE), $2 pattern, $4 before, $5 conversation or NULL, $6 limit.
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, m.id FROM messages m \
         JOIN conversations c ON c.user_id = $1 AND c.conv_id = m.conv_id \
         WHERE m.search_text ILIKE $2 AND m.id < $4 AND ($5::text IS NULL OR m.conv_id = $5) \
         AND m.seq > c.cleared_seq AND (c.until_seq = 0 OR m.seq <= c.until_seq) AND {VISIBLE} \
         ORDER BY m.id DESC LIMIT $6"
    );
    let rows = db
        .query(
            &sql,
            &[
                &user,
                &pattern,
                &user,
                &before,
                &conversation_id,
                &page_rows(limit),
            ],
        )
        .await?;
    let more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    let positions: Vec<u64> = rows
        .iter()
        .map(|r| r.get::<_, i64>(MESSAGE_COLUMN_COUNT) as u64)
        .collect();
    Ok(SearchPage {
        next: if more {
            positions.last().copied()
        } else {
            None
        },
        messages: rows.iter().map(|r| message_from_row(r, 0)).collect(),
        positions,
    })
}
