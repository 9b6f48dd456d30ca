//! Pages of a room's member list, in the order they joined: for the app server and for
//! members.

use tidings_proto::Code;
use tidings_store::{GroupMember, GroupMembers};

use super::room::{Room, RoomState, member_key};
use crate::Engine;
use crate::validate::Refusal;

impl Engine {
    /// A page of a room's members in the order they joined, after `page_token`. In a cluster
    /// the page is made of every node's members (asked for over the bus, see `home.rs`), and
    /// its token is a member key ([`member_key`]), not a join number.
    pub(super) async fn members_page(
        &self,
        room: &Room,
        page_token: &str,
        limit: u32,
    ) -> Result<GroupMembers, Refusal> {
        let (after, limit) = page_bounds(page_token, limit)?;
        if self.cluster().is_none() {
            return Ok(local_page(room, after, limit));
        }
        let mut page = room.lock().members_after_key(after, limit + 1);
        for (user, joined) in self.room_members_elsewhere(room, after, limit + 1).await {
            page.push((member_key(joined, &user), user, joined));
        }
        page.sort_unstable();
        // A user in the room on two nodes is listed once, where they joined first.
        let mut seen = std::collections::HashSet::new();
        page.retain(|(_, user, _)| seen.insert(user.clone()));
        let next = (page.len() > limit).then(|| page[limit - 1].0);
        let rows = page.into_iter().map(|(_, user, joined)| (user, joined));
        Ok(page_of(&room.lock(), rows.take(limit), next))
    }
}

/// The position after which a page starts, and its size.
fn page_bounds(page_token: &str, limit: u32) -> Result<(u64, usize), Refusal> {
    let max = crate::groups::MEMBERS_PAGE_MAX;
    if limit > max {
        return Err(Refusal::new(
            Code::ChatroomInvalid,
            format!("limit is at most {max}"),
        ));
    }
    let after = match page_token {
        "" => 0,
        t => t.parse().map_err(|_| {
            Refusal::new(
                Code::ChatroomInvalid,
                "page token is not one this server issued",
            )
        })?,
    };
    let limit = if limit == 0 {
        crate::groups::MEMBERS_PAGE_DEFAULT
    } else {
        limit
    } as usize;
    Ok((after, limit))
}

/// A page of the members on this node (one node: the whole room), after join number `after`.
fn local_page(room: &Room, after: u64, limit: usize) -> GroupMembers {
    let st = room.lock();
    let page = st.members_page(after, limit + 1);
    let next = (page.len() > limit).then(|| page[limit - 1].2);
    let rows = page.into_iter().map(|(user, joined, _)| (user, joined));
    page_of(&st, rows.take(limit), next)
}

/// A page of `(user, joined ms)` rows, with each member's mute as this node knows it.
fn page_of(
    st: &RoomState,
    rows: impl Iterator<Item = (String, i64)>,
    next: Option<u64>,
) -> GroupMembers {
    GroupMembers {
        members: rows
            .map(|(user, joined)| GroupMember {
                muted_until: st.standing(&user).muted_until,
                user,
                joined,
            })
            .collect(),
        next,
    }
}
