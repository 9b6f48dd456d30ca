//! Reading a user's conversations: their rows, each conversation's newest message, and unread
//! counts derived from read positions — all in one read transaction, so they agree.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};
use tidings_store::{
    ConversationFilter, ConversationRecord, Conversations, History, HistoryFrom, HistoryQuery,
    SearchPage, SearchQuery, StoredMessage,
};

use tidings_store::rules::conversations::{SettingsRow, target_seen_by};

use crate::{MESSAGE_COLUMN_COUNT, MESSAGE_COLUMNS, USER_KEY, message_from_row};

use tidings_store::rows::ConversationRow as Row;

pub fn read(
    c: &Connection,
    user: &str,
    filter: &ConversationFilter,
) -> rusqlite::Result<Conversations> {
    let tx = c.unchecked_transaction()?;
    let version = crate::pending::last_inbox_seq(&tx, user)?;
    let rows = match (&filter.one, filter.changed_since) {
        (Some((conv_type, target)), _) => one(&tx, user, *conv_type, target)?.into_iter().collect(),
        (None, Some(since)) => changed_since(&tx, user, since)?,
        (None, None) => all(&tx, user)?,
    };
    let mut conversations = Vec::with_capacity(rows.len());
    for row in rows {
        if filter.admits(row.settings.conversation_type) {
            conversations.push(record(&tx, user, row)?);
        }
    }
    tx.finish()?;
    Ok(Conversations {
        conversations,
        version,
    })
}

const ROW_COLUMNS: &str = "conv_type, target, conv_id, read_seq, pinned, muted, removed_seq, \
     cleared_seq, until_seq, peer_read_seq";

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        settings: settings_row(r, 3)?.into_settings(r.get(0)?, r.get(1)?),
        conversation_id: r.get(2)?,
        peer_read_seq: r.get::<_, i64>(9)? as u64,
    })
}

/// The columns `read_seq, pinned, muted, removed_seq, cleared_seq, until_seq` from `at` on.
pub(crate) fn settings_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<SettingsRow> {
    Ok(SettingsRow {
        read_seq: r.get::<_, i64>(at)? as u64,
        pinned: r.get(at + 1)?,
        muted: r.get(at + 2)?,
        removed_seq: r.get::<_, i64>(at + 3)? as u64,
        cleared_seq: r.get::<_, i64>(at + 4)? as u64,
        until_seq: r.get::<_, i64>(at + 5)? as u64,
    })
}

fn one(c: &Connection, user: &str, conv_type: u32, target: &str) -> rusqlite::Result<Option<Row>> {
    c.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM conversations WHERE user_id = ?1 AND conv_type = ?2 AND target = ?3"
    ))?
    .query_row(params![user, conv_type, target], row_from)
    .optional()
}

fn all(c: &Connection, user: &str) -> rusqlite::Result<Vec<Row>> {
    c.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM conversations WHERE user_id = ?1"
    ))?
    .query_map(params![user], row_from)?
    .collect()
}

/// Rows whose settings changed after `since`, and rows of conversations with an inbox entry
/// after it (a new message).
fn changed_since(c: &Connection, user: &str, since: u64) -> rusqlite::Result<Vec<Row>> {
    let mut keys = BTreeSet::new();
    let mut stmt = c.prepare_cached(&format!(
        "SELECT DISTINCT m.conv_type, m.sender, m.target FROM inbox i \
         JOIN messages m ON m.rowid = i.msg WHERE i.user_key = {USER_KEY} AND i.seq > ?2 \
         AND m.conv_type != 0"
    ))?;
    let touched = stmt.query_map(params![user, since as i64], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut touched: Vec<(u32, String, String)> = touched.collect::<rusqlite::Result<_>>()?;
    // Entries of large fan-outs, staged or in blocks (see `pending`).
    if let Some(key) = crate::pending::user_key(c, user)? {
        let mut stmt = c.prepare_cached(
            "SELECT conv_type, sender, target FROM messages WHERE rowid = ?1 AND conv_type != 0",
        )?;
        for (_, msg) in crate::pending::entries_after(c, key, since, usize::MAX)? {
            if let Some(t) = stmt
                .query_row(params![msg], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?
            {
                touched.push(t);
            }
        }
    }
    for (conv_type, sender, target) in touched {
        keys.insert((conv_type, target_seen_by(user, conv_type, sender, target)));
    }
    let mut rows: Vec<Row> = c
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM conversations WHERE user_id = ?1 AND version > ?2"
        ))?
        .query_map(params![user, since as i64], row_from)?
        .collect::<rusqlite::Result<_>>()?;
    for r in &rows {
        keys.remove(&(r.settings.conversation_type, r.settings.target_id.clone()));
    }
    for (conv_type, target) in keys {
        rows.extend(one(c, user, conv_type, &target)?);
    }
    Ok(rows)
}

fn record(c: &Connection, user: &str, row: Row) -> rusqlite::Result<ConversationRecord> {
    let until = upper_bound(row.settings.until_seq);
    let newest: Option<StoredMessage> = c
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = ?1 AND m.seq <= ?2 \
             AND {AUDIENCE} AND {NOT_AMEND} ORDER BY m.seq DESC LIMIT 1",
            NOT_AMEND = not_amend_event()
        ))?
        .query_row(params![row.conversation_id, until, user], |r| {
            message_from_row(r, 0)
        })
        .optional()?;
    let cleared = row.settings.cleared_seq as i64;
    let latest = match &newest {
        Some(m) if m.seq as i64 > cleared && !deleted(c, user, &row.conversation_id, m.seq)? => {
            Some(m.clone())
        }
        Some(_) => c
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = ?1 AND m.seq > ?2 \
                 AND m.seq <= ?4 AND {VISIBLE} AND {NOT_AMEND} ORDER BY m.seq DESC LIMIT 1",
                NOT_AMEND = not_amend_event()
            ))?
            .query_row(params![row.conversation_id, cleared, user, until], |r| {
                message_from_row(r, 0)
            })
            .optional()?,
        None => None,
    };
    // Mentions are `"user"` in a JSON array of ids, which hold no quotes.
    let (unread, mentioned): (i64, i64) = c
        .prepare_cached(&format!(
            "SELECT count(*) FILTER (WHERE m.counted = 1), \
             count(*) FILTER (WHERE m.state & {mention_all} OR instr(m.mentions, ?5) > 0) \
             FROM messages m WHERE m.conv_id = ?1 AND m.seq > ?2 AND m.seq <= ?4 \
             AND m.sender != ?3 AND {VISIBLE}",
            mention_all = crate::STATE_MENTION_ALL,
        ))?
        .query_row(
            params![
                row.conversation_id,
                row.settings.read_seq as i64,
                user,
                until,
                format!("\"{user}\"")
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    Ok(row.into_record(newest, latest, unread as u64, mentioned as u64))
}

/// The highest seq a user with this `until_seq` sees.
fn upper_bound(until_seq: u64) -> i64 {
    if until_seq == 0 {
        i64::MAX
    } else {
        until_seq as i64
    }
}

/// A message `m` that user `?3` is in the audience of (every message but a directed one not
/// addressed to them).
const AUDIENCE: &str = "(m.state & 8 = 0 OR m.sender = ?3 OR EXISTS (SELECT 1 \
     FROM message_audience a WHERE a.msg = m.rowid AND a.user_id = ?3))";

/// A message `m` that is not an amend event (see `tidings_store::AMEND_EVENT_TYPES`).
fn not_amend_event() -> String {
    format!(
        "m.msg_type NOT IN ({})",
        tidings_store::amend_event_types_sql()
    )
}

/// A message `m` not deleted by user `?3`, and in their audience.
const VISIBLE: &str = "NOT EXISTS (SELECT 1 FROM deleted_messages d \
     WHERE d.user_id = ?3 AND d.conv_id = m.conv_id AND d.seq = m.seq) \
     AND (m.state & 8 = 0 OR m.sender = ?3 OR EXISTS (SELECT 1 \
     FROM message_audience a WHERE a.msg = m.rowid AND a.user_id = ?3))";

fn deleted(c: &Connection, user: &str, conversation_id: &str, seq: u64) -> rusqlite::Result<bool> {
    c.prepare_cached(
        "SELECT 1 FROM deleted_messages WHERE user_id = ?1 AND conv_id = ?2 AND seq = ?3",
    )?
    .query_row(params![user, conversation_id, seq as i64], |_| Ok(()))
    .optional()
    .map(|r| r.is_some())
}

/// A page of a conversation's history as `user` sees it.
pub fn history(c: &Connection, user: &str, query: &HistoryQuery) -> rusqlite::Result<History> {
    let (conversation_id, from, limit) = (query.conversation_id.as_str(), query.from, query.limit);
    let tx = c.unchecked_transaction()?;
    // What the user cleared, and where their view ends; a user without a conversation row has
    // cleared nothing.
    let row: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT cleared_seq, until_seq FROM conversations WHERE user_id = ?1 AND conv_id = ?2",
        )?
        .query_row(params![user, conversation_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    // A group's history is seen only through a member's row, made when they joined.
    let group = row.is_none()
        && tx
            .prepare_cached("SELECT 1 FROM messages WHERE conv_id = ?1 AND conv_type = 3 LIMIT 1")?
            .query_row(params![conversation_id], |_| Ok(()))
            .optional()?
            .is_some();
    if group {
        return Ok(History::default());
    }
    let (cleared, until) = row.unwrap_or((0, 0));
    let until = upper_bound(until as u64);
    // ?1 conversation, ?2 the bound, ?3 the user, ?4 cleared, ?5 the page size plus one,
    // ?6 the end of the user's view.
    let (bound, condition, order) = match from {
        HistoryFrom::BeforeSeq(s) => (s.min(i64::MAX as u64) as i64, "m.seq < ?2", "DESC"),
        HistoryFrom::AfterSeq(s) => (s.min(i64::MAX as u64) as i64, "m.seq > ?2", "ASC"),
        HistoryFrom::BeforeTime(t) => (t, "m.sent_time < ?2", "DESC"),
        HistoryFrom::AfterTime(t) => (t, "m.sent_time > ?2", "ASC"),
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_id = ?1 AND {condition} \
         AND m.seq > ?4 AND m.seq <= ?6 AND {VISIBLE} ORDER BY m.seq {order} LIMIT ?5"
    );
    let mut messages: Vec<StoredMessage> = tx
        .prepare_cached(&sql)?
        .query_map(
            params![
                conversation_id,
                bound,
                user,
                cleared,
                limit as i64 + 1,
                until
            ],
            |r| message_from_row(r, 0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    tx.finish()?;
    let has_more = messages.len() > limit;
    messages.truncate(limit);
    if order == "DESC" {
        messages.reverse();
    }
    Ok(History { messages, has_more })
}

/// Messages `user` can see whose text contains `query`, newest first.
pub fn search(c: &Connection, user: &str, search: &SearchQuery) -> rusqlite::Result<SearchPage> {
    let (query, conversation_id) = (search.text.as_str(), search.conversation_id.as_deref());
    let (before, limit) = (search.before, search.limit);
    // LIKE uses the trigram index for three characters or more (shorter patterns scan the
    // indexed texts); it is case-insensitive for ASCII letters. It cannot use the index with an
    // ESCAPE clause, so `%` and `_` in the query act as wildcards there and `instr` keeps only
    // the texts that hold the query literally.
    let pattern = format!("%{query}%");
    let before = if before == 0 {
        i64::MAX
    } else {
        before.min(i64::MAX as u64) as i64
    };
    // ?1 user (and ?3, for VISIBLE), ?2 pattern, ?4 before, ?5 conversation or NULL, ?6 limit,
    // ?7 the query.
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, m.rowid FROM message_text t \
         JOIN messages m ON m.rowid = t.rowid \
         JOIN conversations c ON c.user_id = ?1 AND c.conv_id = m.conv_id \
         WHERE t.text LIKE ?2 AND instr(lower(t.text), lower(?7)) > 0 AND m.rowid < ?4 AND (?5 IS NULL OR m.conv_id = ?5) \
         AND m.seq > c.cleared_seq AND (c.until_seq = 0 OR m.seq <= c.until_seq) AND {VISIBLE} \
         ORDER BY m.rowid DESC LIMIT ?6"
    );
    let rows: Vec<(StoredMessage, i64)> = c
        .prepare_cached(&sql)?
        .query_map(
            params![
                user,
                pattern,
                user,
                before,
                conversation_id,
                limit as i64 + 1,
                query
            ],
            |r| Ok((message_from_row(r, 0)?, r.get(MESSAGE_COLUMN_COUNT)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    Ok(SearchPage {
        next: if more {
            rows.last().map(|(_, id)| *id as u64)
        } else {
            None
        },
        messages: rows.iter().map(|(m, _)| m.clone()).collect(),
        positions: rows.iter().map(|(_, id)| *id as u64).collect(),
    })
}
