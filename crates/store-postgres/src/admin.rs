//! The admin console's operators, their sessions and the audit log (`admin_operators`,
//! `admin_sessions`, `admin_audit`), as the SQLite store keeps them. Nothing here touches the
//! users' tables or their counters: operators are a namespace of their own.

use tidings_store::{AdminOp, AdminResult, AdminSessionRecord, AuditEntry, OperatorRecord};
use tokio_postgres::Row;

use crate::{Db, PgResult, big};

pub(crate) async fn apply(db: Db<'_>, op: AdminOp) -> PgResult<AdminResult> {
    Ok(match op {
        AdminOp::SetOperator(o) => {
            db.execute("DELETE FROM admin_sessions WHERE operator = $1", &[&o.name])
                .await?;
            // `xmax = 0` only for a row this statement inserted.
            let created: bool = db
                .query_one(
                    "INSERT INTO admin_operators (name, password, created) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET password = $2, created = $3 \
                     RETURNING (xmax = 0)",
                    &[&o.name, &o.password_hash, &o.created],
                )
                .await?
                .get(0);
            AdminResult::OperatorSet { created }
        }
        AdminOp::RemoveOperator { name } => {
            db.execute("DELETE FROM admin_sessions WHERE operator = $1", &[&name])
                .await?;
            let removed = db
                .execute("DELETE FROM admin_operators WHERE name = $1", &[&name])
                .await?;
            AdminResult::OperatorRemoved {
                removed: removed > 0,
            }
        }
        AdminOp::CreateSession { session: s, now } => {
            db.execute("DELETE FROM admin_sessions WHERE expires < $1", &[&now])
                .await?;
            let created = db
                .execute(
                    "INSERT INTO admin_sessions (id_hash, operator, created, expires) \
                     SELECT $1, $2, $3, $4 WHERE EXISTS \
                     (SELECT 1 FROM admin_operators WHERE name = $2)",
                    &[&s.id_hash, &s.operator, &s.created, &s.expires],
                )
                .await?;
            AdminResult::SessionCreated {
                created: created > 0,
            }
        }
        AdminOp::TouchSession { id_hash, expires } => {
            db.execute(
                "UPDATE admin_sessions SET expires = $2 WHERE id_hash = $1",
                &[&id_hash, &expires],
            )
            .await?;
            AdminResult::SessionTouched
        }
        AdminOp::EndSession { id_hash } => {
            db.execute("DELETE FROM admin_sessions WHERE id_hash = $1", &[&id_hash])
                .await?;
            AdminResult::SessionEnded
        }
        AdminOp::Audit(e) => {
            let id: i64 = db
                .query_one(
                    "INSERT INTO admin_audit (time, operator, action, target, details) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&e.time, &e.operator, &e.action, &e.target, &e.details],
                )
                .await?
                .get(0);
            AdminResult::Audited { id: id as u64 }
        }
    })
}

fn operator_of(row: &Row) -> OperatorRecord {
    OperatorRecord {
        name: row.get(0),
        password_hash: row.get(1),
        created: row.get(2),
    }
}

pub(crate) async fn operator(db: Db<'_>, name: &str) -> PgResult<Option<OperatorRecord>> {
    Ok(db
        .query_opt(
            "SELECT name, password, created FROM admin_operators WHERE name = $1",
            &[&name],
        )
        .await?
        .as_ref()
        .map(operator_of))
}

pub(crate) async fn operators(db: Db<'_>) -> PgResult<Vec<OperatorRecord>> {
    Ok(db
        .query(
            "SELECT name, password, created FROM admin_operators ORDER BY name",
            &[],
        )
        .await?
        .iter()
        .map(operator_of)
        .collect())
}

pub(crate) async fn session(db: Db<'_>, id_hash: &str) -> PgResult<Option<AdminSessionRecord>> {
    Ok(db
        .query_opt(
            "SELECT id_hash, operator, created, expires FROM admin_sessions WHERE id_hash = $1",
            &[&id_hash],
        )
        .await?
        .map(|row| AdminSessionRecord {
            id_hash: row.get(0),
            operator: row.get(1),
            created: row.get(2),
            expires: row.get(3),
        }))
}

pub(crate) async fn audit_log(db: Db<'_>, before: u64, limit: usize) -> PgResult<Vec<AuditEntry>> {
    let before = if before == 0 { i64::MAX } else { big(before) };
    let limit = big(limit as u64);
    Ok(db
        .query(
            "SELECT id, time, operator, action, target, details FROM admin_audit \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
            &[&before, &limit],
        )
        .await?
        .iter()
        .map(|row| AuditEntry {
            id: row.get::<_, i64>(0) as u64,
            time: row.get(1),
            operator: row.get(2),
            action: row.get(3),
            target: row.get(4),
            details: row.get(5),
        })
        .collect())
}
