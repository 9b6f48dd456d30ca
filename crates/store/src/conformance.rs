//! The conformance suite: behaviour every [`Store`] backend must show. A backend's tests call
//! [`run_all`] with a fresh, empty store. Each check panics with a description on failure.

use crate::{AppendMessage, Store, WriteOp, WriteResult};

/// An append of a private message from `from` to `to`, for tests.
pub fn private_append(from: &str, to: &str, client_msg_id: &str, text: &str) -> AppendMessage {
    let (a, b) = if from <= to { (from, to) } else { (to, from) };
    let mut recipients = vec![from.to_string()];
    if to != from {
        recipients.push(to.to_string());
    }
    AppendMessage {
        uid: format!("uid-{from}-{client_msg_id}"),
        conversation_type: 1,
        conversation_id: format!("{a}|{b}"),
        sender: from.into(),
        target: to.into(),
        sent_time: 1_700_000_000_000,
        msg_type: "text".into(),
        content: format!(r#"{{"text":{text:?}}}"#),
        push_text: String::new(),
        client_msg_id: client_msg_id.into(),
        digest: format!("digest-{to}-{text}"),
        recipients,
    }
}

fn appended(r: &WriteResult) -> (&crate::StoredMessage, &[(String, u64)], bool) {
    match r {
        WriteResult::Appended {
            message,
            inbox,
            duplicate,
        } => (message, inbox, *duplicate),
        other => panic!("expected Appended, got {other:?}"),
    }
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: &dyn Store) {
    seqs_are_gapless_per_conversation_and_inbox(store).await;
    duplicates_return_the_first_message(store).await;
    conflicting_client_msg_id_is_refused(store).await;
    inbox_paging(store).await;
    cursors_only_move_forward(store).await;
    nonces_are_single_use(store).await;
    token_versions_increment(store).await;
}

async fn seqs_are_gapless_per_conversation_and_inbox(store: &dyn Store) {
    let ops = (0..5)
        .map(|i| WriteOp::Append(private_append("s1", "r1", &format!("m{i}"), "x")))
        .chain(std::iter::once(WriteOp::Append(private_append(
            "s2", "r1", "m0", "y",
        ))))
        .collect();
    let results = store.write(ops).await.expect("write");
    for (i, r) in results[..5].iter().enumerate() {
        let (m, inbox, dup) = appended(r);
        assert!(!dup);
        assert_eq!(m.seq, i as u64 + 1, "conversation seq");
        assert_eq!(
            inbox,
            &[
                ("s1".to_string(), i as u64 + 1),
                ("r1".to_string(), i as u64 + 1)
            ]
        );
    }
    let (m, inbox, _) = appended(&results[5]);
    assert_eq!(m.seq, 1, "a second conversation starts at seq 1");
    assert_eq!(inbox, &[("s2".to_string(), 1), ("r1".to_string(), 6)]);
    let state = store.user_state("r1").await.expect("user_state");
    assert_eq!(state.inbox_seq, 6);
    let conv = store
        .conversation_after("r1|s1", 0, 100)
        .await
        .expect("conv");
    assert_eq!(
        conv.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
}

async fn duplicates_return_the_first_message(store: &dyn Store) {
    let first = store
        .write(vec![WriteOp::Append(private_append("d1", "d2", "c", "hi"))])
        .await
        .expect("write");
    let mut again = private_append("d1", "d2", "c", "hi");
    again.uid = "another-uid".into();
    again.sent_time += 5;
    let second = store
        .write(vec![WriteOp::Append(again)])
        .await
        .expect("write");
    let (m1, inbox1, dup1) = appended(&first[0]);
    let (m2, inbox2, dup2) = appended(&second[0]);
    assert!(!dup1 && dup2);
    assert_eq!(m1, m2, "a duplicate returns the stored message");
    assert_eq!(inbox1, inbox2);
    assert_eq!(store.user_state("d2").await.expect("state").inbox_seq, 1);
    // A duplicate within one batch is found too.
    let results = store
        .write(vec![
            WriteOp::Append(private_append("d1", "d2", "same", "a")),
            WriteOp::Append(private_append("d1", "d2", "same", "a")),
        ])
        .await
        .expect("write");
    let (a, _, dup_a) = appended(&results[0]);
    let (b, _, dup_b) = appended(&results[1]);
    assert!(!dup_a && dup_b);
    assert_eq!(a.seq, b.seq);
}

async fn conflicting_client_msg_id_is_refused(store: &dyn Store) {
    store
        .write(vec![WriteOp::Append(private_append(
            "k1", "k2", "c", "one",
        ))])
        .await
        .expect("write");
    let r = store
        .write(vec![WriteOp::Append(private_append(
            "k1", "k2", "c", "two",
        ))])
        .await
        .expect("write");
    assert_eq!(r, vec![WriteResult::ClientMsgIdConflict]);
    assert_eq!(store.user_state("k2").await.expect("state").inbox_seq, 1);
}

async fn inbox_paging(store: &dyn Store) {
    let ops = (0..25)
        .map(|i| WriteOp::Append(private_append("p1", "p2", &format!("n{i}"), "z")))
        .collect();
    store.write(ops).await.expect("write");
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.inbox_after("p2", after, 10).await.expect("inbox");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        for e in &page {
            assert_eq!(e.inbox_seq, after + 1, "inbox pages are gapless");
            after = e.inbox_seq;
            seen.push(e.message.client_msg_id.clone());
        }
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen[0], "n0");
    assert_eq!(seen[24], "n24");
    assert!(
        store
            .inbox_after("nobody", 0, 10)
            .await
            .expect("inbox")
            .is_empty()
    );
}

async fn cursors_only_move_forward(store: &dyn Store) {
    assert_eq!(store.device_cursor("c1", "phone").await.expect("cursor"), 0);
    let set = |cursor| WriteOp::SetCursor {
        user: "c1".into(),
        device: "phone".into(),
        cursor,
    };
    store.write(vec![set(7)]).await.expect("write");
    store.write(vec![set(3)]).await.expect("write");
    assert_eq!(store.device_cursor("c1", "phone").await.expect("cursor"), 7);
    assert_eq!(
        store.device_cursor("c1", "laptop").await.expect("cursor"),
        0
    );
}

async fn nonces_are_single_use(store: &dyn Store) {
    let op = |nonce: &str, now| WriteOp::UseNonce {
        nonce: nonce.into(),
        now,
        expires_at: now + 1000,
    };
    let r = store
        .write(vec![op("n-1", 10), op("n-1", 20), op("n-2", 20)])
        .await
        .expect("write");
    assert_eq!(
        r,
        vec![
            WriteResult::Nonce { fresh: true },
            WriteResult::Nonce { fresh: false },
            WriteResult::Nonce { fresh: true }
        ]
    );
    // Once expired, a nonce is forgotten.
    let r = store.write(vec![op("n-1", 5000)]).await.expect("write");
    assert_eq!(r, vec![WriteResult::Nonce { fresh: true }]);
}

async fn token_versions_increment(store: &dyn Store) {
    assert_eq!(
        store.user_state("t1").await.expect("state").token_version,
        0
    );
    let bump = || WriteOp::BumpTokenVersion { user: "t1".into() };
    let r = store.write(vec![bump(), bump()]).await.expect("write");
    assert_eq!(
        r,
        vec![WriteResult::TokenVersion(1), WriteResult::TokenVersion(2)]
    );
    assert_eq!(
        store.user_state("t1").await.expect("state").token_version,
        2
    );
}
