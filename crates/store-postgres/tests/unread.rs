//! Unread counts, derived from read positions, agree with a model under random sequences of
//! sends, reads (by seq and by time), removals, deletions, cleared history and recalls: the
//! SQLite store's model test, run on PostgreSQL. Needs `TIDINGS_TEST_POSTGRES_URL`; without it
//! the test says it SKIPPED and passes. Every case has users of its own in one database made
//! for the test.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tidings_store::{AmendAction, ConversationFilter, Store, WriteOp, WriteResult, conformance};
use tidings_store_postgres::testing::{TestDatabase, URL_VARIABLE, server_url};
use tidings_store_postgres::{PostgresConfig, PostgresStore};

#[derive(Debug, Clone)]
enum Step {
    /// `from` (0 = a, 1 = b) sends one message, counted or not.
    Send {
        from: usize,
        counted: bool,
    },
    /// `user` reads up to this seq (which may lie beyond the newest message).
    Read {
        user: usize,
        seq: u64,
    },
    /// `user` reads everything sent at or before the send time of message `index`.
    ReadTime {
        user: usize,
        index: u64,
    },
    Remove {
        user: usize,
    },
    /// `user` deletes message `index` (which may not exist) for themself.
    Delete {
        user: usize,
        index: u64,
    },
    /// `user` recalls message `index` (refused unless it exists and is theirs).
    Recall {
        user: usize,
        index: u64,
    },
    /// `user` clears the history sent at or before message `index`'s time.
    Clear {
        user: usize,
        index: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize, any::<bool>()).prop_map(|(from, counted)| Step::Send { from, counted }),
        2 => (0..2usize, 0..40u64).prop_map(|(user, seq)| Step::Read { user, seq }),
        1 => (0..2usize, 1..40u64).prop_map(|(user, index)| Step::ReadTime { user, index }),
        1 => (0..2usize).prop_map(|user| Step::Remove { user }),
        1 => (0..2usize, 1..40u64).prop_map(|(user, index)| Step::Delete { user, index }),
        1 => (0..2usize, 1..40u64).prop_map(|(user, index)| Step::Clear { user, index }),
        2 => (0..2usize, 1..40u64).prop_map(|(user, index)| Step::Recall { user, index }),
    ]
}

/// The model: every message (sender, counted), and each user's read position.
#[derive(Default)]
struct Model {
    messages: Vec<(usize, bool)>,
    read: [u64; 2],
    deleted: [std::collections::BTreeSet<u64>; 2],
    recalled: std::collections::BTreeSet<u64>,
    events: std::collections::BTreeSet<u64>,
}

impl Model {
    fn unread(&self, user: usize) -> u64 {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, (from, counted))| {
                let seq = *i as u64 + 1;
                seq > self.read[user]
                    && *counted
                    && *from != user
                    && !self.deleted[user].contains(&seq)
            })
            .count() as u64
    }
    fn read_to(&mut self, user: usize, seq: u64) {
        let last = self.messages.len() as u64;
        self.read[user] = self.read[user].max(seq.min(last));
    }
}

const T0: i64 = 1_700_000_000_000;

async fn run_case(store: &PostgresStore, case: usize, steps: &[Step]) -> Result<(), TestCaseError> {
    // Fresh users per case: "pa<case>" sorts before "pb<case>", as "pa" before "pb".
    let users = [format!("pa{case}"), format!("pb{case}")];
    let mut model = Model::default();
    for (n, step) in steps.iter().enumerate() {
        let op = match step {
            Step::Send { from, counted } => {
                let mut m = conformance::private_append(
                    &users[*from],
                    &users[1 - from],
                    &format!("m{n}"),
                    "x",
                );
                // Message i (from 1) is sent at T0 + 10 * i.
                m.sent_time = T0 + 10 * (model.messages.len() as i64 + 1);
                m.counted = *counted;
                model.messages.push((*from, *counted));
                WriteOp::Append(m)
            }
            Step::Read { user, seq } => {
                model.read_to(*user, *seq);
                let mut u =
                    conformance::private_update(&users[*user], &users[1 - user], &format!("e{n}"));
                u.read_seq = *seq;
                WriteOp::UpdateConversation(Box::new(u))
            }
            Step::ReadTime { user, index } => {
                model.read_to(*user, *index);
                let mut u =
                    conformance::private_update(&users[*user], &users[1 - user], &format!("e{n}"));
                u.read_time = T0 + 10 * *index as i64;
                WriteOp::UpdateConversation(Box::new(u))
            }
            Step::Remove { user } => {
                let last = model.messages.len() as u64;
                model.read_to(*user, last);
                let mut u =
                    conformance::private_update(&users[*user], &users[1 - user], &format!("e{n}"));
                u.remove = true;
                WriteOp::UpdateConversation(Box::new(u))
            }
            Step::Delete { user, index } => {
                model.deleted[*user].insert(*index);
                WriteOp::DeleteForUser {
                    user: users[*user].clone(),
                    conversation_id: format!("{}|{}", users[0], users[1]),
                    seqs: vec![*index],
                }
            }
            Step::Recall { user, index } => {
                let i = *index as usize;
                let recallable = i >= 1
                    && i <= model.messages.len()
                    && model.messages[i - 1].0 == *user
                    && !model.events.contains(index);
                // The message stops counting, and the recall is a message itself (an
                // event, which cannot be recalled).
                if recallable && model.recalled.insert(*index) {
                    model.messages[i - 1].1 = false;
                    model.messages.push((*user, false));
                    model.events.insert(model.messages.len() as u64);
                }
                let mut op = conformance::private_amend(
                    &users[*user],
                    &users[1 - user],
                    *index,
                    AmendAction::Recall { not_before: 0 },
                    &format!("r{n}"),
                );
                if let WriteOp::Amend(a) = &mut op {
                    // Message i (from 1) is sent at T0 + 10 * i.
                    a.event.sent_time = T0 + 10 * (model.messages.len() as i64);
                }
                op
            }
            Step::Clear { user, index } => {
                model.read_to(*user, *index);
                let mut u =
                    conformance::private_update(&users[*user], &users[1 - user], &format!("e{n}"));
                u.clear_before_time = T0 + 10 * *index as i64;
                WriteOp::UpdateConversation(Box::new(u))
            }
        };
        let r = store.write(vec![op]).await.unwrap();
        if let WriteResult::ConversationUpdated { settings, .. } = &r[0] {
            let user = users.iter().position(|u| *u != settings.target_id).unwrap();
            prop_assert_eq!(settings.read_seq, model.read[user]);
        }
        for (user, name) in users.iter().enumerate() {
            let list = store
                .conversations(name, ConversationFilter::default())
                .await
                .unwrap();
            let unread: u64 = list.conversations.iter().map(|c| c.unread).sum();
            prop_assert_eq!(
                unread,
                model.unread(user),
                "{} after step {}: {:?}",
                name,
                n,
                step
            );
        }
    }
    Ok(())
}

#[test]
fn unread_counts_follow_the_model() {
    let Some(url) = server_url() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED unread_counts_follow_the_model: set {URL_VARIABLE} \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run it"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt
        .block_on(TestDatabase::create(&url))
        .expect("create a test database");
    let store = rt
        .block_on(PostgresStore::connect(&PostgresConfig::new(&db.url)))
        .expect("connect");
    let cases = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let outcome = runner.run(&proptest::collection::vec(step(), 1..60), |steps| {
        let case = cases.fetch_add(1, Ordering::Relaxed);
        rt.block_on(run_case(&store, case, &steps))
    });
    rt.block_on(store.close()).unwrap();
    rt.block_on(db.drop()).unwrap();
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
