//! Groups as a member sees them: the group's profile, its members, leaving it, the groups this
//! user is in, who read one of this user's messages, and the notifications that record every
//! change (messages of type `tidings:group` in the group's conversation). Discussions, the groups
//! users make and manage themselves, are made and changed here too.

use tidings_proto::GROUP_EVENT_TYPE;
use tidings_proto::v1::{self, query::Body};

use crate::{Client, ClientError, Message};

/// A group's profile and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub group_id: String,
    /// `managed` (by the app server), `open` (made by naming it when connecting) or
    /// `discussion` (made and managed by its members).
    pub kind: String,
    pub name: String,
    pub portrait: String,
    /// App-defined JSON object as text, or empty.
    pub extra: String,
    pub owner_id: String,
    pub created_time: i64,
    /// 0 while the group lives.
    pub dismissed_time: i64,
    /// Until when (ms) only the owner may send; 0: not muted.
    pub muted_until: i64,
    pub member_count: u64,
    /// A discussion: whether any member may add members (true) or only its owner.
    pub invite_open: bool,
}

impl From<v1::Group> for Group {
    fn from(g: v1::Group) -> Group {
        Group {
            group_id: g.group_id,
            kind: g.kind,
            invite_open: g.invite_open,
            name: g.name,
            portrait: g.portrait,
            extra: g.extra,
            owner_id: g.owner_id,
            created_time: g.created_time,
            dismissed_time: g.dismissed_time,
            muted_until: g.muted_until,
            member_count: g.member_count,
        }
    }
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub user_id: String,
    pub joined_time: i64,
    /// Until when (ms) the member may not send; 0: not muted.
    pub muted_until: i64,
}

/// A page of a group's members, in the order they joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembersPage {
    pub members: Vec<GroupMember>,
    /// Pass to [`Client::group_members`] for the next page; `None` on the last one.
    pub next_page_token: Option<String>,
}

impl From<v1::QueryAck> for GroupMembersPage {
    /// The page of members a QUERYACK carries.
    fn from(ack: v1::QueryAck) -> GroupMembersPage {
        GroupMembersPage {
            members: ack
                .members
                .into_iter()
                .map(|m| GroupMember {
                    user_id: m.user_id,
                    joined_time: m.joined_time,
                    muted_until: m.muted_until,
                })
                .collect(),
            next_page_token: (!ack.next_page_token.is_empty()).then_some(ack.next_page_token),
        }
    }
}

/// Who of a group has read one of this user's messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupReceipt {
    pub read: Vec<String>,
    pub unread: Vec<String>,
}

/// A change to a group, as its notification message reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNotice {
    pub group_id: String,
    /// `create`, `add`, `remove`, `quit`, `update`, `transfer`, `mute`, `unmute` or `dismiss`.
    pub operation: String,
    pub operator_id: String,
    /// The members who joined, left or were muted.
    pub user_ids: Vec<String>,
    /// The owner after the change, when it changed (or on `create`).
    pub owner_id: Option<String>,
    /// The group's name, when it changed (or on `create`).
    pub name: Option<String>,
    /// The group's kind (`managed`, `open` or `discussion`), on `create`.
    pub kind: Option<String>,
    /// A discussion's invitations were opened (true) or closed (false).
    pub invite_open: Option<bool>,
    /// The group was dismissed (by `dismiss`, or by its last member leaving).
    pub dismissed: bool,
}

impl Message {
    /// The group change this message reports, if it is a group notification.
    pub fn group_notice(&self) -> Option<GroupNotice> {
        if self.msg_type != GROUP_EVENT_TYPE {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&self.content).ok()?;
        let text = |key: &str| v.get(key).and_then(|s| s.as_str()).map(str::to_string);
        Some(GroupNotice {
            group_id: self.target_id.clone(),
            operation: text("operation")?,
            operator_id: text("operatorId").unwrap_or_default(),
            user_ids: v
                .get("userIds")
                .and_then(|u| serde_json::from_value(u.clone()).ok())
                .unwrap_or_default(),
            owner_id: text("ownerId"),
            name: text("name"),
            kind: text("kind"),
            invite_open: v.get("inviteOpen").and_then(|o| o.as_bool()),
            dismissed: v.get("dismissed").and_then(|d| d.as_bool()) == Some(true),
        })
    }
}

impl Client {
    /// A group's profile (members only: 22406 otherwise).
    pub async fn group(&self, group_id: &str) -> Result<Group, ClientError> {
        let ack = self
            .query(Body::GetGroup(v1::GetGroup {
                group_id: group_id.into(),
            }))
            .await?;
        first_group(ack)
    }

    /// A page of a group's members in the order they joined, at most `limit` (0: 100; at most
    /// 500). Members only.
    pub async fn group_members(
        &self,
        group_id: &str,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<GroupMembersPage, ClientError> {
        let ack = self
            .query(Body::GetGroupMembers(v1::GetGroupMembers {
                group_id: group_id.into(),
                limit,
                page_token: page_token.unwrap_or_default().into(),
            }))
            .await?;
        Ok(GroupMembersPage::from(ack))
    }

    /// Leaves a group. Answers the group as left behind (an owner who leaves hands it to the
    /// longest-standing member; the last member to leave dismisses it).
    pub async fn quit_group(&self, group_id: &str) -> Result<Group, ClientError> {
        let ack = self
            .query(Body::QuitGroup(v1::QuitGroup {
                group_id: group_id.into(),
            }))
            .await?;
        first_group(ack)
    }

    /// The groups this user is a member of, in id order.
    pub async fn groups(&self) -> Result<Vec<Group>, ClientError> {
        let ack = self.query(Body::ListGroups(v1::ListGroups {})).await?;
        Ok(ack.groups.into_iter().map(Group::from).collect())
    }

    /// Who of the group has read this user's message at `seq` (from the members' read
    /// positions).
    pub async fn group_receipt(
        &self,
        group_id: &str,
        seq: u64,
    ) -> Result<GroupReceipt, ClientError> {
        let ack = self
            .query(Body::GetGroupReceipt(v1::GetGroupReceipt {
                group_id: group_id.into(),
                seq,
            }))
            .await?;
        let r = ack.receipt.unwrap_or_default();
        Ok(GroupReceipt {
            read: r.read_user_ids,
            unread: r.unread_user_ids,
        })
    }

    /// Makes a discussion named `name` with this user as its owner and `user_ids` as its other
    /// members; answers it (its id is the server's choice). Leave it with
    /// [`Client::quit_group`].
    pub async fn create_discussion(
        &self,
        name: &str,
        user_ids: &[&str],
    ) -> Result<Group, ClientError> {
        let ack = self
            .query(Body::CreateDiscussion(v1::CreateDiscussion {
                name: name.into(),
                user_ids: user_ids.iter().map(|u| u.to_string()).collect(),
            }))
            .await?;
        first_group(ack)
    }

    /// Adds members to a discussion: any member while its invitations are open, else only its
    /// owner (21407).
    pub async fn add_discussion_members(
        &self,
        group_id: &str,
        user_ids: &[&str],
    ) -> Result<Group, ClientError> {
        let ack = self
            .query(Body::AddDiscussionMembers(v1::AddDiscussionMembers {
                group_id: group_id.into(),
                user_ids: user_ids.iter().map(|u| u.to_string()).collect(),
            }))
            .await?;
        first_group(ack)
    }

    /// Removes a member from a discussion (its owner only: 20406 otherwise).
    pub async fn remove_discussion_member(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Group, ClientError> {
        let ack = self
            .query(Body::RemoveDiscussionMember(v1::RemoveDiscussionMember {
                group_id: group_id.into(),
                user_id: user_id.into(),
            }))
            .await?;
        first_group(ack)
    }

    /// Renames a discussion (any member).
    pub async fn set_discussion_name(
        &self,
        group_id: &str,
        name: &str,
    ) -> Result<Group, ClientError> {
        self.update_discussion(group_id, Some(name), None).await
    }

    /// Opens or closes a discussion's invitations (its owner only: 20406 otherwise).
    pub async fn set_discussion_invite_open(
        &self,
        group_id: &str,
        open: bool,
    ) -> Result<Group, ClientError> {
        self.update_discussion(group_id, None, Some(open)).await
    }

    async fn update_discussion(
        &self,
        group_id: &str,
        name: Option<&str>,
        invite_open: Option<bool>,
    ) -> Result<Group, ClientError> {
        let ack = self
            .query(Body::UpdateDiscussion(v1::UpdateDiscussion {
                group_id: group_id.into(),
                name: name.map(str::to_string),
                invite_open,
            }))
            .await?;
        first_group(ack)
    }
}

fn first_group(ack: v1::QueryAck) -> Result<Group, ClientError> {
    ack.groups
        .into_iter()
        .next()
        .map(Group::from)
        .ok_or_else(|| ClientError::Protocol("the answer holds no group".into()))
}
