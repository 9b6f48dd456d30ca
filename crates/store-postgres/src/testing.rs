//! Fresh databases for tests, so tests on one server run in parallel without seeing each
//! other's rows. Tests that need PostgreSQL read its URL from [`URL_VARIABLE`] and skip (saying
//! so) when it is unset.

use tokio_postgres::NoTls;

/// The environment variable naming the PostgreSQL server tests use, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub const URL_VARIABLE: &str = "TIDINGS_TEST_POSTGRES_URL";

/// A database made for one test on the server of [`URL_VARIABLE`].
pub struct TestDatabase {
    /// The URL of the new database.
    pub url: String,
    name: String,
    admin_url: String,
}

/// The server URL tests use, if set.
pub fn server_url() -> Option<String> {
    std::env::var(URL_VARIABLE).ok().filter(|u| !u.is_empty())
}

impl TestDatabase {
    /// Creates `tidings_test_<random>` on the server at `admin_url` (a URL of any database
    /// there, used to create and drop the new one).
    pub async fn create(admin_url: &str) -> Result<TestDatabase, String> {
        let name = format!("tidings_test_{:016x}", rand::random::<u64>());
        admin(admin_url, &format!("CREATE DATABASE {name}")).await?;
        let mut url = url::Url::parse(admin_url).map_err(|e| e.to_string())?;
        url.set_path(&format!("/{name}"));
        Ok(TestDatabase {
            url: url.to_string(),
            name,
            admin_url: admin_url.to_string(),
        })
    }

    /// Drops the database, closing whatever connections to it remain.
    pub async fn drop(self) -> Result<(), String> {
        admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
    }
}

async fn admin(url: &str, sql: &str) -> Result<(), String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let task = tokio::spawn(connection);
    let result = client.batch_execute(sql).await.map_err(|e| e.to_string());
    drop(client);
    let _ = task.await;
    result
}
