//! The admin console's side of the engine: operators sign in with a password and get a
//! session, every action they take is recorded in the audit log, and the console's own calls
//! (a user's devices online, kicking one). What operators do to users, groups, chatrooms and
//! messages goes through the same engine calls as the app server's HTTP API.
//!
//! Operators are a namespace of their own, apart from users and accounts: an operator's name
//! is never a user id. Passwords are hashed as the accounts' are (Argon2id, on the blocking
//! pool, a few at a time; `accounts.rs`), and sign-ins are rate-limited per operator name and
//! per client address, with limiters of their own.
//!
//! A session is a random 256-bit id, given to the browser in a cookie; the store keeps only its
//! SHA-256, with the operator and an expiry, so every node of a cluster honours it and a copy
//! of the database cannot be used to sign in. A session ends after [`SESSION_IDLE`] without a
//! request (each request moves the expiry on), [`SESSION_MAX`] after the sign-in whatever
//! happens, at sign-out, and when its operator is removed or their password set again.

use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tidings_proto::Code;
use tidings_store::{
    AdminOp, AdminResult, AdminSessionRecord, AuditEntry, OperatorRecord, WriteOp, WriteResult,
};

use crate::accounts::{address_key, check_password};
use crate::{ApiError, Engine, validate};

/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after its sign-in, however busy.
pub const SESSION_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// A request moves a session's expiry on only when it was last moved more than this long ago,
/// so a busy console does not write on every request.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Length of a session id: 32 random bytes in unpadded base64url.
const SESSION_ID_CHARS: usize = 43;

/// A signed-in operator's session, as the sign-in answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    /// The secret session id, for the cookie; never stored.
    pub id: String,
    pub operator: String,
    /// When it ends unless used before (ms).
    pub expires: i64,
}

/// One live device of a user, on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOut {
    /// The session's id on this node.
    pub session: u64,
    /// The device id it connected with; empty for an anonymous device.
    pub device: String,
    pub platform: String,
    /// When it connected (ms).
    pub connected_at: i64,
}

/// The hex SHA-256 of a session id: what the store keeps.
fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

fn store_failed(e: tidings_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "admin store call failed");
    ApiError::from(Code::ServerError)
}

/// A string below every id that starts with `prefix` and above every smaller id: the prefix
/// with its last character lowered by one, then `~`, which sorts after every character an id
/// may hold (ids are compared bytewise).
fn below(prefix: &str) -> String {
    let Some(last) = prefix.bytes().last() else {
        return String::new();
    };
    let mut s = prefix[..prefix.len() - 1].to_string();
    s.push(char::from(last - 1));
    s.push('~');
    s
}

/// Whether `name` may name an operator: as a user id, 1–64 of `A-Za-z0-9_-.@`.
pub fn is_operator_name(name: &str) -> bool {
    validate::is_user_id(name)
}

impl Engine {
    async fn admin_write(&self, op: AdminOp) -> Result<AdminResult, ApiError> {
        match self.write(vec![WriteOp::Admin(op)]).await?.first() {
            Some(WriteResult::Admin(result)) => Ok(*result),
            other => {
                tracing::error!(?other, "unexpected store result for an admin write");
                Err(Code::ServerError.into())
            }
        }
    }

    /// Signs operator `name` in with `password` from client address `from`. An unknown
    /// operator and a wrong password get the same answer (42011) after the same work; past the
    /// rate limits, 42012.
    pub async fn operator_login(
        &self,
        name: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<OperatorSession, ApiError> {
        let limits = self.accounts();
        limits
            .operator_logins_by_address
            .check_key(&address_key(from))
            .map_err(|_| ApiError::from(Code::TooManyAttempts))?;
        // No operator has such a name or password; the limiter keeps only valid names.
        if !is_operator_name(name) || check_password(password).is_err() {
            return Err(Code::BadCredentials.into());
        }
        limits
            .operator_checks
            .check_key(&name.to_string())
            .map_err(|_| ApiError::from(Code::TooManyAttempts))?;
        let record = self
            .inner
            .store
            .operator(name)
            .await
            .map_err(store_failed)?;
        let hash = record.as_ref().map(|o| o.password_hash.as_str());
        if !limits.verify(password, hash).await? {
            tracing::warn!(operator = %name, %from, "admin sign-in refused");
            return Err(Code::BadCredentials.into());
        }
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = self.now_ms();
        let expires = now + SESSION_IDLE.as_millis() as i64;
        let created = self
            .admin_write(AdminOp::CreateSession {
                session: AdminSessionRecord {
                    id_hash: id_hash(&id),
                    operator: name.to_string(),
                    created: now,
                    expires,
                },
                now,
            })
            .await?;
        // The operator was removed between the check and the write.
        if created != (AdminResult::SessionCreated { created: true }) {
            return Err(Code::BadCredentials.into());
        }
        tracing::info!(operator = %name, %from, "operator signed in");
        Ok(OperatorSession {
            id,
            operator: name.to_string(),
            expires,
        })
    }

    /// The operator whose session `id` is, if it is current (42030 otherwise); moves its
    /// expiry on.
    pub async fn operator_session(&self, id: &str) -> Result<String, ApiError> {
        let refused = || ApiError::from(Code::OperatorSessionRequired);
        if id.len() != SESSION_ID_CHARS {
            return Err(refused());
        }
        let hash = id_hash(id);
        let Some(session) = self
            .inner
            .store
            .admin_session(&hash)
            .await
            .map_err(store_failed)?
        else {
            return Err(refused());
        };
        let now = self.now_ms();
        let last = session.created + SESSION_MAX.as_millis() as i64;
        if now >= session.expires || now >= last {
            return Err(refused());
        }
        let idle = SESSION_IDLE.as_millis() as i64;
        if session.expires - now < idle - TOUCH_EVERY_MS {
            self.admin_write(AdminOp::TouchSession {
                id_hash: hash,
                expires: (now + idle).min(last),
            })
            .await?;
        }
        Ok(session.operator)
    }

    /// Ends the session `id` (nothing if it is not one).
    pub async fn operator_logout(&self, id: &str) -> Result<(), ApiError> {
        self.admin_write(AdminOp::EndSession {
            id_hash: id_hash(id),
        })
        .await
        .map(drop)
    }

    /// Appends an entry (its time set to now) to the audit log and returns its id.
    pub async fn audit(&self, mut entry: AuditEntry) -> Result<u64, ApiError> {
        entry.time = self.now_ms();
        match self.admin_write(AdminOp::Audit(entry)).await? {
            AdminResult::Audited { id } => Ok(id),
            other => {
                tracing::error!(?other, "unexpected store result for an audit entry");
                Err(Code::ServerError.into())
            }
        }
    }

    /// At most `limit` audit entries below id `before` (0: the newest), newest first.
    pub async fn audit_log(&self, before: u64, limit: usize) -> Result<Vec<AuditEntry>, ApiError> {
        self.inner
            .store
            .audit_log(before, limit)
            .await
            .map_err(store_failed)
    }

    /// The operators, in name order (their hashes left out).
    pub async fn operators(&self) -> Result<Vec<OperatorRecord>, ApiError> {
        let mut all = self.inner.store.operators().await.map_err(store_failed)?;
        for o in &mut all {
            o.password_hash.clear();
        }
        Ok(all)
    }

    /// Live sessions on this node's registry, by user: how many users are online here.
    pub fn online_user_count(&self) -> usize {
        self.registry().by_user.len()
    }

    /// Whether `user` has sessions on another node of the cluster.
    pub fn online_on_other_nodes(&self, user: &str) -> bool {
        self.online_elsewhere(user)
    }

    /// Up to `limit` (at most 100) users the store knows whose ids start with `prefix`, in id
    /// order, after `after` (empty: from the first), with their profiles and status; and
    /// whether more follow.
    pub async fn find_users(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<crate::UserOut>, bool), ApiError> {
        for (what, id) in [("prefix", prefix), ("after", after)] {
            if !id.is_empty() && !validate::is_user_id(id) {
                return Err(ApiError(crate::Refusal::new(
                    Code::BadRequest,
                    format!("{what} is up to 64 of A-Z a-z 0-9 _ - . @"),
                )));
            }
        }
        let limit = limit.clamp(1, 100);
        let start = if after.is_empty() {
            below(prefix)
        } else {
            after.to_string()
        };
        let mut ids: Vec<String> = self
            .inner
            .store
            .user_ids_after(&start, limit + 1)
            .await
            .map_err(store_failed)?
            .into_iter()
            .take_while(|id| id.starts_with(prefix))
            .collect();
        let more = ids.len() > limit;
        ids.truncate(limit);
        if ids.is_empty() {
            return Ok((Vec::new(), false));
        }
        Ok((self.users(&ids).await?, more))
    }

    /// The live devices of `user` on this node, oldest first.
    pub fn devices(&self, user: &str) -> Vec<DeviceOut> {
        let mut out: Vec<DeviceOut> = self
            .sessions_of(user)
            .iter()
            .map(|s| DeviceOut {
                session: s.id,
                device: if s.anonymous {
                    String::new()
                } else {
                    s.device.clone()
                },
                platform: s.platform.clone(),
                connected_at: s.connected_at,
            })
            .collect();
        out.sort_by_key(|d| d.session);
        out
    }

    /// Disconnects `user`'s device `device` (every device with `None`; an anonymous one by
    /// its session id on this node, `session`), on every node, with 41008: the SDKs do not
    /// reconnect after it. Returns how many sessions ended on this node.
    pub fn kick_device(
        &self,
        user: &str,
        device: Option<&str>,
        session: Option<u64>,
    ) -> Result<usize, ApiError> {
        crate::users::check_user(user)?;
        if let Some(d) = device
            && !validate::is_user_id(d)
        {
            return Err(Code::InvalidDeviceId.into());
        }
        let n = self.kick_here(user, device, session);
        if session.is_none() {
            self.bus_publish(crate::cluster::BusEvent::Kick {
                user: user.to_string(),
                device: device.map(str::to_string),
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use tidings_store::{AdminOp, OperatorRecord, Store};
    use tidings_store_sqlite::{SqliteConfig, SqliteStore};

    use super::*;
    use crate::{AppCredentials, EngineConfig};

    /// An engine on a fresh store with operator `root` (password `correct horse`), and its
    /// clock, which the test moves.
    async fn engine() -> (Engine, Arc<AtomicI64>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteConfig::new(dir.path().join("t.db"))).unwrap();
        store
            .admin(AdminOp::SetOperator(OperatorRecord {
                name: "root".into(),
                password_hash: crate::accounts::hash_password("correct horse").unwrap(),
                created: 0,
            }))
            .await
            .unwrap();
        let now = Arc::new(AtomicI64::new(1_700_000_000_000));
        let clock = now.clone();
        let config = EngineConfig::new(AppCredentials {
            app_key: "app".into(),
            app_secret: "secret".into(),
            token_key: vec![7; 32],
        });
        let engine = Engine::start(
            config,
            Arc::new(store),
            Arc::new(move || clock.load(Ordering::SeqCst)),
        );
        (engine, now, dir)
    }

    fn code(r: Result<impl std::fmt::Debug, ApiError>) -> Code {
        r.unwrap_err().0.code
    }

    const FROM: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn sessions_last_while_used_and_end_when_idle_at_most_or_at_sign_out() {
        let (engine, now, _dir) = engine().await;
        let session = engine
            .operator_login("root", "correct horse", FROM)
            .await
            .unwrap();
        assert_eq!(session.id.len(), SESSION_ID_CHARS);
        assert_eq!(engine.operator_session(&session.id).await.unwrap(), "root");
        // Used every 11 hours, it outlives the idle time...
        for _ in 0..3 {
            now.fetch_add(11 * 3600 * 1000, Ordering::SeqCst);
            assert_eq!(engine.operator_session(&session.id).await.unwrap(), "root");
        }
        // ...but not 12 hours of silence.
        now.fetch_add(12 * 3600 * 1000, Ordering::SeqCst);
        assert_eq!(
            code(engine.operator_session(&session.id).await),
            Code::OperatorSessionRequired
        );
        // Nor the longest lifetime, however busy.
        let session = engine
            .operator_login("root", "correct horse", FROM)
            .await
            .unwrap();
        let mut used = 0;
        while engine.operator_session(&session.id).await.is_ok() {
            now.fetch_add(6 * 3600 * 1000, Ordering::SeqCst);
            used += 1;
        }
        assert_eq!(used, 7 * 4, "every 6 hours for 7 days");
        // Signing out ends one at once; a made-up id is no session.
        let session = engine
            .operator_login("root", "correct horse", FROM)
            .await
            .unwrap();
        engine.operator_logout(&session.id).await.unwrap();
        assert_eq!(
            code(engine.operator_session(&session.id).await),
            Code::OperatorSessionRequired
        );
        assert_eq!(
            code(engine.operator_session(&"A".repeat(SESSION_ID_CHARS)).await),
            Code::OperatorSessionRequired
        );
    }

    #[tokio::test]
    async fn wrong_passwords_and_unknown_operators_get_one_answer_and_are_rate_limited() {
        let (engine, _now, _dir) = engine().await;
        for (name, password) in [("root", "wrong horse"), ("nobody", "correct horse")] {
            assert_eq!(
                code(engine.operator_login(name, password, FROM).await),
                Code::BadCredentials
            );
        }
        // An account of the same name is another namespace.
        engine
            .register_account("root", "correct horse", None, FROM)
            .await
            .unwrap();
        // Five checks a minute per operator: the first was above.
        for _ in 0..4 {
            let other: IpAddr = "192.0.2.1".parse().unwrap();
            assert_eq!(
                code(engine.operator_login("root", "wrong horse", other).await),
                Code::BadCredentials
            );
        }
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            code(engine.operator_login("root", "correct horse", other).await),
            Code::TooManyAttempts,
            "even the right password, from another address"
        );
    }

    #[tokio::test]
    async fn kicking_a_device_ends_its_session_with_41008_and_leaves_the_others() {
        let (engine, _now, _dir) = engine().await;
        let connect = |device: &str| {
            let engine = engine.clone();
            let device = device.to_string();
            async move {
                let (token, _) = engine.mint_token("ann", None).await.unwrap();
                engine
                    .connect(crate::ConnectRequest {
                        token,
                        device_id: device,
                        platform: "web".into(),
                    })
                    .await
                    .unwrap()
                    .0
            }
        };
        let phone = connect("phone").await;
        let laptop = connect("laptop").await;
        let devices: Vec<String> = engine
            .devices("ann")
            .into_iter()
            .map(|d| d.device)
            .collect();
        assert_eq!(devices, ["phone", "laptop"]);
        assert_eq!(engine.devices("ann")[0].platform, "web");
        assert_eq!(engine.kick_device("ann", Some("phone"), None).unwrap(), 1);
        match phone.outbox().pop().await {
            Some(crate::Outbound::Disconnect(code)) => assert_eq!(code, Code::KickedByOperator),
            other => panic!("expected a DISCONNECT, got {other:?}"),
        }
        assert!(!laptop.outbox().is_closed());
        let devices: Vec<String> = engine
            .devices("ann")
            .into_iter()
            .map(|d| d.device)
            .collect();
        assert_eq!(devices, ["laptop"]);
        assert_eq!(engine.kick_device("ann", None, None).unwrap(), 1);
        assert!(engine.devices("ann").is_empty());
    }

    #[tokio::test]
    async fn users_are_found_by_the_start_of_their_id_a_page_at_a_time() {
        let (engine, _now, _dir) = engine().await;
        for user in ["am", "amzzz", "an", "an-1", "an.2", "ana", "ao", "b"] {
            engine.mint_token(user, None).await.unwrap();
        }
        let ids =
            |found: &[crate::UserOut]| found.iter().map(|u| u.user.clone()).collect::<Vec<_>>();
        let (found, more) = engine.find_users("an", "", 100).await.unwrap();
        assert_eq!(ids(&found), ["an", "an-1", "an.2", "ana"]);
        assert!(!more);
        let (found, more) = engine.find_users("an", "", 3).await.unwrap();
        assert_eq!(ids(&found), ["an", "an-1", "an.2"]);
        assert!(more);
        let (found, more) = engine.find_users("an", "an.2", 3).await.unwrap();
        assert_eq!(ids(&found), ["ana"]);
        assert!(!more);
        let (found, _) = engine.find_users("", "", 100).await.unwrap();
        assert_eq!(found.len(), 8, "no prefix: everyone");
        assert!(engine.find_users("zz", "", 10).await.unwrap().0.is_empty());
        assert_eq!(
            code(engine.find_users("a b", "", 10).await),
            Code::BadRequest
        );
    }
}
