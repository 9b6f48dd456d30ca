//! A room's key-value entries: reading, setting and removing them, each change announced to
//! the members by a notice.

use tidings_proto::Code;

use super::room::{Entry, Room, RoomState};
use super::{EntryOut, MAX_ENTRIES, MAX_VALUE_BYTES, check_key, entry_out};
use crate::stream::Priority;
use crate::validate::Refusal;

pub(super) fn entries_of(st: &RoomState, keys: &[String]) -> Vec<EntryOut> {
    if keys.is_empty() {
        st.entries.iter().map(|(k, e)| entry_out(k, e)).collect()
    } else {
        let mut keys: Vec<&String> = keys.iter().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| st.entries.get(k).map(|e| entry_out(k, e)))
            .collect()
    }
}

pub(super) fn set_entry(
    room: &Room,
    user: &str,
    key: &str,
    value: String,
    force: bool,
    auto_delete: bool,
    now: i64,
) -> Result<EntryOut, Refusal> {
    check_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(Refusal::new(
            Code::ChatroomInvalid,
            format!("a value is at most {MAX_VALUE_BYTES} bytes"),
        ));
    }
    let mut st = room.lock();
    if st.destroyed {
        return Err(Code::ChatroomNotFound.into());
    }
    match st.entries.get(key) {
        Some(e) if e.user != user && !force => return Err(Code::ChatroomEntryTaken.into()),
        None if st.entries.len() >= MAX_ENTRIES => {
            return Err(Refusal::new(
                Code::ChatroomEntriesFull,
                format!("a chatroom holds at most {MAX_ENTRIES} entries"),
            ));
        }
        _ => {}
    }
    let entry = Entry {
        value,
        user: user.to_string(),
        updated: now,
        auto_delete,
    };
    let answer = entry_out(key, &entry);
    st.entries.insert(key.to_string(), entry);
    let content = serde_json::json!({
        "operation": "entry",
        "key": key,
        "value": answer.value,
        "userId": user,
        "autoDelete": auto_delete,
    });
    st.notice(&room.id, user, content, Priority::High, now);
    drop(st);
    room.wake();
    Ok(answer)
}

pub(super) fn remove_entry(
    room: &Room,
    user: &str,
    key: &str,
    force: bool,
    now: i64,
) -> Result<(), Refusal> {
    check_key(key)?;
    let mut st = room.lock();
    if st.destroyed {
        return Err(Code::ChatroomNotFound.into());
    }
    match st.entries.get(key) {
        None => return Err(Code::ChatroomEntryNotFound.into()),
        Some(e) if e.user != user && !force => return Err(Code::ChatroomEntryTaken.into()),
        Some(_) => {}
    }
    st.entries.remove(key);
    let content = serde_json::json!({"operation": "entry-remove", "key": key, "userId": user});
    st.notice(&room.id, user, content, Priority::High, now);
    drop(st);
    room.wake();
    Ok(())
}
