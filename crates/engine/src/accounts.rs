//! Built-in accounts, for teams without an app server: a user registers an account name (which
//! is the user id) with a password and logs in to get a token like the ones `mint_token` makes,
//! but marked as an account's. Everything else about the user (profile, revocations, bans,
//! messages) is what it would be for a user of an app server.
//!
//! Accounts and the app server's users never share an id: only an id the store has no trace of
//! can be registered (see `WriteOp::CreateAccount`), the app server's tokens are only minted
//! for ids recorded as not an account's, and a token opens only a user of its own origin (see
//! `session::token_current`).
//!
//! Passwords are hashed with Argon2id ([`PARAMS`]) on the blocking pool, a few at a time
//! ([`Accounts::hashing`]), since each hash takes 19 MiB and tens of milliseconds of a core.
//! Password checks are rate-limited per account and per client address, and registrations per
//! client address, with keyed `governor` limiters swept with the engine's others.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tidings_proto::Code;
use tidings_store::{AccountRecord, WriteOp, WriteResult};
use tokio::sync::Semaphore;

use crate::users::check_user;
use crate::validate::Refusal;
use crate::{ApiError, Engine};

/// Argon2id with OWASP's minimum for it: 19 MiB of memory, 2 passes, 1 lane; a 32-byte hash
/// of the password and a 16-byte random salt, kept as a PHC string. A hash records its own
/// parameters, so raising these later still verifies the hashes made before.
const PARAMS: (u32, u32, u32) = (19 * 1024, 2, 1);

/// Passwords are 8 to 256 bytes (of UTF-8).
const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=256;

/// Password checks (logins, password changes, deletions) per account: 5 a minute, all at once
/// at most.
const CHECKS_PER_ACCOUNT: Quota = Quota::per_minute(NonZeroU32::new(5).unwrap());
/// Logins per client address: 20 a minute, all at once at most.
const LOGINS_PER_ADDRESS: Quota = Quota::per_minute(NonZeroU32::new(20).unwrap());
/// Registrations per client address: 10 at once, then one every 2 minutes (30 an hour).
const REGISTRATION_PERIOD: Duration = Duration::from_secs(120);
const REGISTRATION_BURST: NonZeroU32 = NonZeroU32::new(10).unwrap();
/// How long a request waits for one of the hashing slots before it is refused (42012).
const HASHING_WAIT: Duration = Duration::from_secs(10);

/// An Argon2id hash (with [`PARAMS`]) of a password nobody knows. A login for an account that
/// does not exist is checked against it, so it takes as long as one with a wrong password and
/// the answer's timing does not tell which names exist.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$hg5NpLevZ23EsmZReBfQkQ$P2Y3Nb3liv0gscSZJG90U3p3M4C16CEkb6He8f+650Y";

/// A token for an account's user, as register, login and a password change answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountToken {
    pub user: String,
    pub token: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// The rate limiters and the hashing slots.
pub(crate) struct Accounts {
    checks_by_account: DefaultKeyedRateLimiter<String>,
    logins_by_address: DefaultKeyedRateLimiter<IpAddr>,
    registrations_by_address: DefaultKeyedRateLimiter<IpAddr>,
    /// The admin console's sign-ins, counted apart from the accounts' (operators are another
    /// namespace, and users' logins must not lock operators out): per operator name, and per
    /// client address.
    pub(crate) operator_checks: DefaultKeyedRateLimiter<String>,
    pub(crate) operator_logins_by_address: DefaultKeyedRateLimiter<IpAddr>,
    /// Hashes running at once: one per core, so a burst of logins queues here instead of
    /// taking the blocking pool's threads and 19 MiB each.
    hashing: Arc<Semaphore>,
}

impl Accounts {
    pub(crate) fn new() -> Accounts {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Accounts {
            checks_by_account: RateLimiter::keyed(CHECKS_PER_ACCOUNT),
            logins_by_address: RateLimiter::keyed(LOGINS_PER_ADDRESS),
            registrations_by_address: RateLimiter::keyed(
                Quota::with_period(REGISTRATION_PERIOD)
                    .expect("a non-zero period")
                    .allow_burst(REGISTRATION_BURST),
            ),
            operator_checks: RateLimiter::keyed(CHECKS_PER_ACCOUNT),
            operator_logins_by_address: RateLimiter::keyed(LOGINS_PER_ADDRESS),
            hashing: Arc::new(Semaphore::new(cores)),
        }
    }

    /// Drops the limiters' idle entries.
    pub(crate) fn sweep(&self) {
        self.checks_by_account.retain_recent();
        self.checks_by_account.shrink_to_fit();
        self.logins_by_address.retain_recent();
        self.logins_by_address.shrink_to_fit();
        self.registrations_by_address.retain_recent();
        self.registrations_by_address.shrink_to_fit();
        self.operator_checks.retain_recent();
        self.operator_checks.shrink_to_fit();
        self.operator_logins_by_address.retain_recent();
        self.operator_logins_by_address.shrink_to_fit();
    }

    /// Counts a password check of `user`'s account, or refuses it.
    fn check_account(&self, user: &str) -> Result<(), ApiError> {
        self.checks_by_account
            .check_key(&user.to_string())
            .map_err(|_| ApiError::from(Code::TooManyAttempts))
    }

    /// Runs `f` (a hash or a verification) on the blocking pool once a hashing slot is free.
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = tokio::time::timeout(HASHING_WAIT, self.hashing.clone().acquire_owned())
            .await
            .map_err(|_| ApiError(Refusal::new(Code::TooManyAttempts, "the server is busy")))?
            .map_err(|_| ApiError::from(Code::ServerShutdown))?;
        // The slot is held by the hash itself: a caller that goes away does not free it while
        // the hash still runs.
        let run = move || {
            let result = f();
            drop(slot);
            result
        };
        tokio::task::spawn_blocking(run).await.map_err(|e| {
            tracing::error!(error = %e, "password hashing task failed");
            ApiError::from(Code::ServerError)
        })
    }

    /// The PHC string of a new hash of `password`.
    pub(crate) async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let password = password.to_string();
        self.hashing(move || hash_password(&password))
            .await?
            .map_err(|e| {
                tracing::error!(error = %e, "password hashing failed");
                ApiError::from(Code::ServerError)
            })
    }

    /// Whether `password` is the one hashed as `hash` (a PHC string); an absent hash takes as
    /// long and is never matched.
    pub(crate) async fn verify(
        &self,
        password: &str,
        hash: Option<&str>,
    ) -> Result<bool, ApiError> {
        let password = password.to_string();
        let found = hash.is_some();
        let phc = hash.unwrap_or(DECOY_HASH).to_string();
        let matched = self
            .hashing(move || {
                PasswordHash::new(&phc)
                    .map(|hash| argon2().verify_password(password.as_bytes(), &hash).is_ok())
            })
            .await?
            .map_err(|e| {
                tracing::error!(error = %e, "a stored password hash does not parse");
                ApiError::from(Code::ServerError)
            })?;
        Ok(matched && found)
    }
}

/// A new Argon2id hash (PHC string) of `password`, for the store. Runs for tens of
/// milliseconds: the engine calls it on the blocking pool; `tidings admin add` calls it too.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

fn argon2() -> Argon2<'static> {
    let (m, t, p) = PARAMS;
    // The parameters are constants within Argon2's limits (a test checks them).
    let params = Params::new(m, t, p, Some(32)).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The key an address is limited by: IPv4 addresses one by one, IPv6 ones by their /64, which
/// is what one subscriber usually holds.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !0u128 << 64).into()),
        },
    }
}

pub(crate) fn check_password(password: &str) -> Result<(), ApiError> {
    if PASSWORD_BYTES.contains(&password.len()) {
        Ok(())
    } else {
        Err(Code::InvalidPassword.into())
    }
}

fn store_failed(e: tidings_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "account store call failed");
    ApiError::from(Code::ServerError)
}

impl Engine {
    pub(crate) fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    async fn account(&self, user: &str) -> Result<Option<AccountRecord>, ApiError> {
        self.inner.store.account(user).await.map_err(store_failed)
    }

    async fn token_version(&self, user: &str) -> Result<u64, ApiError> {
        let state = self
            .inner
            .store
            .user_state(user)
            .await
            .map_err(store_failed)?;
        Ok(state.token_version)
    }

    /// A token for the account `user` at the user's current token version.
    async fn account_token(&self, user: &str) -> Result<AccountToken, ApiError> {
        let version = self.token_version(user).await?;
        self.account_token_at(user, version)
    }

    fn account_token_at(&self, user: &str, token_version: u64) -> Result<AccountToken, ApiError> {
        let (token, expires_at) =
            self.mint(user, token_version, crate::auth::Origin::Account, None)?;
        Ok(AccountToken {
            user: user.to_string(),
            token,
            expires_at,
        })
    }

    /// Registers account `account` (the user id) with `password`, from client address `from`,
    /// and sets the user's `name` if given. Refused (42010) if the user id has an account, or
    /// is one the server already knows: connected now, or with any trace in the store (a
    /// record, a token minted for it, an inbox, a group, ...; see `WriteOp::CreateAccount`).
    pub async fn register_account(
        &self,
        account: &str,
        password: &str,
        name: Option<String>,
        from: IpAddr,
    ) -> Result<AccountToken, ApiError> {
        check_user(account)?;
        check_password(password)?;
        crate::groups::check_profile(name.as_deref(), None, None)?;
        // Counted once the request is valid: an attempt at a taken name counts.
        self.accounts()
            .registrations_by_address
            .check_key(&address_key(from))
            .map_err(|_| ApiError::from(Code::TooManyAttempts))?;
        if self.registry().by_user.contains_key(account) {
            return Err(Code::AccountTaken.into());
        }
        let password_hash = self.accounts().hash(password).await?;
        let created = self
            .write(vec![WriteOp::CreateAccount(AccountRecord {
                user: account.to_string(),
                password_hash,
                created: self.now_ms(),
            })])
            .await?;
        match created.first() {
            Some(WriteResult::AccountCreated { fresh: true }) => {}
            Some(WriteResult::AccountCreated { fresh: false }) => {
                return Err(Code::AccountTaken.into());
            }
            other => {
                tracing::error!(?other, "unexpected store result for an account");
                return Err(Code::ServerError.into());
            }
        }
        // The account starts at a new token version. A connection made while it was being
        // created, with a token of the app server's minted for the id elsewhere (`tidings
        // token` without the database, an older server), passed its checks before: it ends
        // here, on every node.
        let version = self.token_version(account).await?;
        self.tokens_revoked(account, version);
        if name.is_some() {
            self.set_profile(account, name, None, None).await?;
        }
        tracing::info!(user = %account, "account registered");
        self.account_token_at(account, version)
    }

    /// Logs in to `account` with `password` from client address `from`. A wrong password and
    /// an account that does not exist get the same answer (42011), after the same work.
    pub async fn login(
        &self,
        account: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<AccountToken, ApiError> {
        self.accounts()
            .logins_by_address
            .check_key(&address_key(from))
            .map_err(|_| ApiError::from(Code::TooManyAttempts))?;
        // No account has such a name or password; the limiter keeps only valid names.
        if check_user(account).is_err() || check_password(password).is_err() {
            return Err(Code::BadCredentials.into());
        }
        let record = self.checked_account(account, password).await?;
        if self
            .inner
            .store
            .user_state(&record.user)
            .await
            .map_err(store_failed)?
            .banned
        {
            return Err(Code::UserBanned.into());
        }
        self.account_token(account).await
    }

    /// `user`'s account if `password` is its password (counted against the account's limit).
    async fn checked_account(&self, user: &str, password: &str) -> Result<AccountRecord, ApiError> {
        self.accounts().check_account(user)?;
        let record = self.account(user).await?;
        let hash = record.as_ref().map(|a| a.password_hash.as_str());
        if self.accounts().verify(password, hash).await? {
            record.ok_or_else(|| Code::BadCredentials.into())
        } else {
            Err(Code::BadCredentials.into())
        }
    }

    /// Replaces the password of `user`'s account (authenticated by a token), revoking every
    /// token of the user; returns a fresh token.
    pub async fn change_password(
        &self,
        user: &str,
        old: &str,
        new: &str,
    ) -> Result<AccountToken, ApiError> {
        check_password(new)?;
        if check_password(old).is_err() {
            return Err(Code::BadCredentials.into());
        }
        let record = self.checked_account(user, old).await?;
        let password_hash = self.accounts().hash(new).await?;
        self.change_account(record, Some(password_hash)).await?;
        tracing::info!(%user, "account password changed");
        self.account_token(user).await
    }

    /// Deletes `user`'s account (authenticated by a token and its password) and revokes every
    /// token of the user. The user's messages, profile and conversations stay, as those of a
    /// user an app server stopped using; the name cannot be registered again.
    pub async fn delete_account(&self, user: &str, password: &str) -> Result<(), ApiError> {
        if check_password(password).is_err() {
            return Err(Code::BadCredentials.into());
        }
        let record = self.checked_account(user, password).await?;
        self.change_account(record, None).await?;
        tracing::info!(%user, "account deleted");
        Ok(())
    }

    /// Replaces or deletes an account's hash if it is still the one checked, with the token
    /// revocation in the same commit, then disconnects the user's sessions.
    async fn change_account(
        &self,
        record: AccountRecord,
        password_hash: Option<String>,
    ) -> Result<(), ApiError> {
        let results = self
            .write(vec![WriteOp::ChangeAccount {
                user: record.user.clone(),
                expected: record.password_hash,
                password_hash,
            }])
            .await?;
        match results.first() {
            Some(WriteResult::AccountChanged {
                token_version: Some(version),
            }) => {
                self.tokens_revoked(&record.user, *version);
                Ok(())
            }
            // The password changed (or the account went) between the check and the write.
            Some(WriteResult::AccountChanged {
                token_version: None,
            }) => Err(Code::BadCredentials.into()),
            other => {
                tracing::error!(?other, "unexpected store result for an account change");
                Err(Code::ServerError.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoy_hash_costs_what_a_real_one_does() {
        let decoy = PasswordHash::new(DECOY_HASH).unwrap();
        let (m, t, p) = PARAMS;
        assert_eq!(decoy.algorithm, Algorithm::Argon2id.ident());
        let params = Params::try_from(&decoy).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (m, t, p)
        );
        let salt = SaltString::generate(&mut OsRng);
        let real = argon2().hash_password(b"password", &salt).unwrap();
        assert_eq!(Params::try_from(&real).unwrap(), params);
        assert!(argon2().verify_password(b"password", &real).is_ok());
        assert!(argon2().verify_password(b"passworD", &real).is_err());
    }

    #[test]
    fn addresses_are_limited_by_ipv4_address_and_ipv6_slash_64() {
        let key = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
    }
}
