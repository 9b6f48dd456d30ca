//! Pages of a room's member list, in the order they joined: for the app server and for
//! members.

use tidings_proto::Code;
use tidings_store::{GroupMember, GroupMembers};

use super::room::Room;
use crate::validate::Refusal;

pub(super) fn members_page(
    room: &Room,
    page_token: &str,
    limit: u32,
) -> Result<GroupMembers, Refusal> {
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
    let st = room.lock();
    let page = st.members_page(after, limit + 1);
    let next = (page.len() > limit).then(|| page[limit - 1].2);
    Ok(GroupMembers {
        members: page
            .into_iter()
            .take(limit)
            .map(|(user, joined, _)| GroupMember {
                muted_until: st.standing(&user).muted_until,
                user,
                joined,
            })
            .collect(),
        next,
    })
}
