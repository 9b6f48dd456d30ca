//! The admin console's operators, their sessions and the audit log (`admin_operators`,
//! `admin_sessions`, `admin_audit`). Nothing here touches the users' tables: operators are a
//! namespace of their own.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tidings_store::{AdminOp, AdminResult, AdminSessionRecord, AuditEntry, OperatorRecord};

pub fn apply(tx: &Transaction<'_>, op: AdminOp) -> rusqlite::Result<AdminResult> {
    Ok(match op {
        AdminOp::SetOperator(o) => {
            tx.prepare_cached("DELETE FROM admin_sessions WHERE operator = ?1")?
                .execute(params![o.name])?;
            let existed = operator(tx, &o.name)?.is_some();
            tx.prepare_cached(
                "INSERT INTO admin_operators (name, password, created) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET password = ?2, created = ?3",
            )?
            .execute(params![o.name, o.password_hash, o.created])?;
            AdminResult::OperatorSet { created: !existed }
        }
        AdminOp::RemoveOperator { name } => {
            tx.prepare_cached("DELETE FROM admin_sessions WHERE operator = ?1")?
                .execute(params![name])?;
            let removed = tx
                .prepare_cached("DELETE FROM admin_operators WHERE name = ?1")?
                .execute(params![name])?;
            AdminResult::OperatorRemoved {
                removed: removed > 0,
            }
        }
        AdminOp::CreateSession { session: s, now } => {
            tx.prepare_cached("DELETE FROM admin_sessions WHERE expires < ?1")?
                .execute(params![now])?;
            let created = tx
                .prepare_cached(
                    "INSERT INTO admin_sessions (id_hash, operator, created, expires) \
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS \
                     (SELECT 1 FROM admin_operators WHERE name = ?2)",
                )?
                .execute(params![s.id_hash, s.operator, s.created, s.expires])?;
            AdminResult::SessionCreated {
                created: created > 0,
            }
        }
        AdminOp::TouchSession { id_hash, expires } => {
            tx.prepare_cached("UPDATE admin_sessions SET expires = ?2 WHERE id_hash = ?1")?
                .execute(params![id_hash, expires])?;
            AdminResult::SessionTouched
        }
        AdminOp::EndSession { id_hash } => {
            tx.prepare_cached("DELETE FROM admin_sessions WHERE id_hash = ?1")?
                .execute(params![id_hash])?;
            AdminResult::SessionEnded
        }
        AdminOp::Audit(e) => {
            let id: i64 = tx
                .prepare_cached(
                    "INSERT INTO admin_audit (time, operator, action, target, details) \
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                )?
                .query_row(
                    params![e.time, e.operator, e.action, e.target, e.details],
                    |row| row.get(0),
                )?;
            AdminResult::Audited { id: id as u64 }
        }
    })
}

fn operator_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<OperatorRecord> {
    Ok(OperatorRecord {
        name: row.get(0)?,
        password_hash: row.get(1)?,
        created: row.get(2)?,
    })
}

pub fn operator(c: &Connection, name: &str) -> rusqlite::Result<Option<OperatorRecord>> {
    c.prepare_cached("SELECT name, password, created FROM admin_operators WHERE name = ?1")?
        .query_row(params![name], operator_of)
        .optional()
}

pub fn operators(c: &Connection) -> rusqlite::Result<Vec<OperatorRecord>> {
    c.prepare_cached("SELECT name, password, created FROM admin_operators ORDER BY name")?
        .query_map([], operator_of)?
        .collect()
}

pub fn session(c: &Connection, id_hash: &str) -> rusqlite::Result<Option<AdminSessionRecord>> {
    c.prepare_cached(
        "SELECT id_hash, operator, created, expires FROM admin_sessions WHERE id_hash = ?1",
    )?
    .query_row(params![id_hash], |row| {
        Ok(AdminSessionRecord {
            id_hash: row.get(0)?,
            operator: row.get(1)?,
            created: row.get(2)?,
            expires: row.get(3)?,
        })
    })
    .optional()
}

pub fn audit_log(c: &Connection, before: u64, limit: usize) -> rusqlite::Result<Vec<AuditEntry>> {
    let before = if before == 0 { i64::MAX } else { before as i64 };
    c.prepare_cached(
        "SELECT id, time, operator, action, target, details FROM admin_audit \
         WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    )?
    .query_map(params![before, limit as i64], |row| {
        Ok(AuditEntry {
            id: row.get::<_, i64>(0)? as u64,
            time: row.get(1)?,
            operator: row.get(2)?,
            action: row.get(3)?,
            target: row.get(4)?,
            details: row.get(5)?,
        })
    })?
    .collect()
}
