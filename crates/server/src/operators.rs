//! `tidings admin`: the admin console's operators, kept in the store the server runs on (as
//! `tidings token` records users, beside a running server). Each change is written to the
//! audit log as done by `cli`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use tidings_store::{
    AdminOp, AdminResult, AuditEntry, OperatorRecord, Store, WriteOp, WriteResult,
};

/// The operator name the audit log gives the command line.
pub const CLI_OPERATOR: &str = "cli";

/// Where the operators are: the store as `--store` names it (`None`: the data directory's
/// SQLite database).
pub struct Place<'a> {
    pub data_dir: &'a Path,
    pub store: Option<&'a str>,
}

impl Place<'_> {
    fn postgres(&self) -> Option<&str> {
        self.store
            .filter(|url| tidings_store_postgres::is_postgres_url(url))
    }

    fn sqlite(&self) -> std::path::PathBuf {
        self.store
            .map_or_else(|| self.data_dir.join(crate::DB_FILE), Into::into)
    }

    /// Applies `ops` in one transaction.
    async fn write(&self, ops: Vec<AdminOp>) -> anyhow::Result<Vec<AdminResult>> {
        match self.postgres() {
            Some(url) => {
                let store = connect(url).await?;
                let results = store
                    .write(ops.into_iter().map(WriteOp::Admin).collect())
                    .await;
                store.close().await?;
                results?
                    .into_iter()
                    .map(|r| match r {
                        WriteResult::Admin(a) => Ok(a),
                        other => bail!("the store answered {other:?}"),
                    })
                    .collect()
            }
            None => {
                let db = self.sqlite();
                // Off the async threads: the write may wait for a running server's commit.
                Ok(tokio::task::spawn_blocking(move || {
                    tidings_store_sqlite::admin_beside(&db, ops)
                })
                .await??)
            }
        }
    }

    async fn operators(&self) -> anyhow::Result<Vec<OperatorRecord>> {
        match self.postgres() {
            Some(url) => {
                let store = connect(url).await?;
                let all = store.operators().await;
                store.close().await?;
                Ok(all?)
            }
            None => {
                let db = self.sqlite();
                Ok(
                    tokio::task::spawn_blocking(move || {
                        tidings_store_sqlite::operators_beside(&db)
                    })
                    .await??,
                )
            }
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<tidings_store_postgres::PostgresStore> {
    let mut config = tidings_store_postgres::PostgresConfig::new(url);
    config.pool_size = 2;
    tidings_store_postgres::PostgresStore::connect(&config)
        .await
        .context("connecting to the database")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn audit(action: &str, name: &str) -> AdminOp {
    AdminOp::Audit(AuditEntry {
        time: now_ms(),
        operator: CLI_OPERATOR.into(),
        action: action.into(),
        target: name.into(),
        details: "{}".into(),
        ..Default::default()
    })
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if !tidings_engine::operators::is_operator_name(name) {
        bail!("invalid operator name {name:?}: use 1-64 of A-Z a-z 0-9 _ - . @");
    }
    Ok(())
}

/// Reads the password: the first line of stdin with `from_stdin`, or typed twice at the
/// terminal without echo.
pub fn read_password(name: &str, from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if from_stdin {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    if !stdin.is_terminal() {
        bail!("stdin is not a terminal: pass --password-stdin to read the password from it");
    }
    let first = prompt(&format!("Password for operator {name}: "))?;
    let again = prompt("Again: ")?;
    if first != again {
        bail!("the passwords differ");
    }
    Ok(first)
}

/// Asks on stderr and reads a line from the terminal with its echo off.
fn prompt(text: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let mut err = std::io::stderr();
    write!(err, "{text}")?;
    err.flush()?;
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turning the echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, OptionalActions::Now, &saved).context("turning the echo back on")?;
    writeln!(err)?;
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Creates operator `name` with `password`, or sets a new password for them (ending their
/// sessions). Returns whether the operator is new.
pub async fn add(place: &Place<'_>, name: &str, password: String) -> anyhow::Result<bool> {
    check_name(name)?;
    let bytes = password.len();
    if !(8..=256).contains(&bytes) {
        bail!("a password is 8-256 bytes (this one is {bytes})");
    }
    let hash = tokio::task::spawn_blocking(move || tidings_engine::hash_password(&password))
        .await?
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let set = AdminOp::SetOperator(OperatorRecord {
        name: name.into(),
        password_hash: hash,
        created: now_ms(),
    });
    let existed = place.operators().await?.iter().any(|o| o.name == name);
    let action = if existed {
        "operator.password"
    } else {
        "operator.add"
    };
    match place.write(vec![set, audit(action, name)]).await?.first() {
        Some(AdminResult::OperatorSet { created }) => Ok(*created),
        other => bail!("the store answered {other:?}"),
    }
}

/// Removes operator `name` and ends their sessions. Returns whether there was one.
pub async fn remove(place: &Place<'_>, name: &str) -> anyhow::Result<bool> {
    check_name(name)?;
    if !place.operators().await?.iter().any(|o| o.name == name) {
        return Ok(false);
    }
    let ops = vec![
        AdminOp::RemoveOperator { name: name.into() },
        audit("operator.remove", name),
    ];
    match place.write(ops).await?.first() {
        Some(AdminResult::OperatorRemoved { removed }) => Ok(*removed),
        other => bail!("the store answered {other:?}"),
    }
}

/// The operators, in name order, with when each was created or last given a password.
pub async fn list(place: &Place<'_>) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(place
        .operators()
        .await?
        .into_iter()
        .map(|o| (o.name, o.created))
        .collect())
}
