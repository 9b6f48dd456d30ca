//! The server on PostgreSQL (`--store postgres://…`). Needs a server named by
//! `TIDINGS_TEST_POSTGRES_URL` (`.ci/run` sets it); without one the test says it SKIPPED and
//! passes. It works in a database of its own, made for it and dropped at its end.

use std::io::Write;

use tidings_client::{HistoryStart, Outgoing};
use tidings_server::StoreSetting;
use tidings_store_postgres::testing::{TestDatabase, URL_VARIABLE, server_url};

use crate::util::*;

const PRIVATE: u32 = 1;

#[tokio::test]
async fn a_server_on_postgres_delivers_and_keeps_messages_across_a_restart() {
    let Some(url) = server_url() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_server_on_postgres_delivers_and_keeps_messages_across_a_restart: \
             set {URL_VARIABLE} (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run it"
        );
        return;
    };
    let db = TestDatabase::create(&url)
        .await
        .expect("create a test database");
    let store = StoreSetting::Postgres(db.url.clone());
    let mut server = TestServer::start_with(|c| c.store = store.clone()).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    let sent = alice
        .send(Outgoing::text("bob", "hello from postgres"))
        .await
        .unwrap();
    assert_eq!(sent.seq, 1);
    let got = next_message(&mut bob_events).await;
    assert_eq!((got.uid.as_str(), got.seq), (sent.uid.as_str(), 1));
    assert_eq!(got.content, r#"{"text":"hello from postgres"}"#);
    assert!(
        !server.dir.path().join(tidings_server::DB_FILE).exists(),
        "no SQLite database is made"
    );
    alice.close().await;
    bob.close().await;

    // The same data directory (credentials) and database, a new process's worth of state.
    server.shutdown().await;
    let mut config = tidings_server::Config::with_data_dir(server.dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.send_rate = 0;
    config.store = store;
    let mut server = TestServer {
        running: Some(tidings_server::start(&config).await.unwrap()),
        dir: server.dir,
    };
    // A device that never synced gets the message from the inbox.
    let (bob, mut laptop) = server.client("bob", "laptop").await;
    let again = next_message(&mut laptop).await;
    assert_eq!((again.uid.as_str(), again.seq), (sent.uid.as_str(), 1));
    let page = bob
        .history(PRIVATE, "alice", HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].uid, sent.uid);
    // Seqs go on from where they were.
    let (alice, _a) = server.client("alice", "phone").await;
    let next = alice.send(Outgoing::text("bob", "again")).await.unwrap();
    assert_eq!(next.seq, 2);
    assert_eq!(next_message(&mut laptop).await.seq, 2);
    // `tidings token --store postgres://…` reads the token version there.
    let token = tidings_server::cli::mint_token_in(server.dir.path(), Some(&db.url), "carol", None)
        .await
        .unwrap();
    let mut config = tidings_client::ClientConfig::new(server.url(), token);
    config.device_id = "cli".into();
    let (carol, _c) = tidings_client::Client::connect(config).await.unwrap();
    carol.send(Outgoing::text("bob", "minted")).await.unwrap();
    carol.close().await;
    alice.close().await;
    bob.close().await;
    server.shutdown().await;
    db.drop().await.unwrap();
}
