//! The profiles (names, portraits) dialect frames show, kept briefly for every connection.
//!
//! Must not depend on the connection driver or any dialect: it is a cache of engine reads.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tidings_engine::UserOut;
use tokio::time::Instant;

/// How long a profile the dialects show is kept before it is read again.
const PROFILE_TTL: Duration = Duration::from_secs(10);
/// The most profiles kept.
const PROFILE_CACHE_MAX: usize = 65_536;

/// The profiles (names, portraits) dialect frames show, shared by every connection and kept
/// for [`PROFILE_TTL`], so a busy room does not read the store once per message and member: a
/// changed profile shows within that time.
#[derive(Default)]
pub(crate) struct ProfileCache {
    entries: Mutex<HashMap<String, (Instant, UserOut)>>,
}

impl ProfileCache {
    /// The profiles of `users` that could be read (presence as of when each was read).
    pub(crate) async fn get(
        &self,
        engine: &tidings_engine::Engine,
        users: &[String],
    ) -> Vec<UserOut> {
        if users.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        let mut found = Vec::with_capacity(users.len());
        let mut missing = Vec::new();
        {
            let entries = lock(&self.entries);
            for user in users {
                match entries.get(user) {
                    Some((at, out)) if now.duration_since(*at) < PROFILE_TTL => {
                        found.push(out.clone());
                    }
                    _ => missing.push(user.clone()),
                }
            }
        }
        if missing.is_empty() {
            return found;
        }
        match engine.users(&missing).await {
            Ok(fetched) => {
                let mut entries = lock(&self.entries);
                if entries.len() + fetched.len() > PROFILE_CACHE_MAX {
                    entries.retain(|_, (at, _)| now.duration_since(*at) < PROFILE_TTL);
                    if entries.len() + fetched.len() > PROFILE_CACHE_MAX {
                        entries.clear();
                    }
                }
                for out in fetched {
                    entries.insert(out.user.clone(), (now, out.clone()));
                    found.push(out);
                }
            }
            Err(e) => tracing::debug!(error = %e, "profile lookup failed"),
        }
        found
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
