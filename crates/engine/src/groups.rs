//! Groups (conversation type 3), of three kinds in one id space (see [`GroupKind`]): the app
//! server manages `managed` ones through the HTTP API (create, profile, members, owner, mutes,
//! dismissal) and can manage every kind; users make and join `open` ones by naming them when
//! connecting (seed 001), and make and manage `discussion`s through their own queries. Members
//! query groups and quit through the protocol. Every change is committed with a notification message (`tidings:group`) in the
//! group's conversation, inboxed to the members and to those who just left, so devices learn of
//! it like any message, online or by sync.
//!
//! Membership lives in the store, which checks it and fans a group message out to every member
//! inside the append's transaction: the engine never holds a member list.

use tidings_proto::{Code, GROUP_EVENT_TYPE, conversation_type};
use tidings_store::{
    AppendMessage, GroupAction, GroupChange, GroupInfo, GroupKind, GroupMembers, GroupRefusal,
    Permit, WriteOp, WriteResult,
};
use tokio::sync::oneshot;

use crate::commit::CommitRequest;
use crate::validate::{self, Refusal, group_refusal_code};
use crate::{ApiError, Engine, Outbound, QueryAckOut, Session};

/// Members per page when the client does not say, and the most it may ask for.
pub const MEMBERS_PAGE_DEFAULT: u32 = 100;
pub const MEMBERS_PAGE_MAX: u32 = 500;
/// The most users one message mentions, and the most a directed message is addressed to.
pub const MAX_MENTIONS: usize = 100;
pub const MAX_DIRECTED: usize = 500;
/// Limits of a group's profile fields, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
pub const MAX_PORTRAIT_BYTES: usize = 1024;
pub const MAX_EXTRA_BYTES: usize = 4096;

/// A group query from a member.
#[derive(Debug, Clone)]
pub enum GroupQuery {
    Get {
        group: String,
    },
    Members {
        group: String,
        limit: u32,
        page_token: String,
    },
    Quit {
        group: String,
    },
    List,
    Receipt {
        group: String,
        seq: u64,
    },
    /// Makes a discussion with this user as owner and these members.
    CreateDiscussion {
        name: String,
        users: Vec<String>,
    },
    AddDiscussionMembers {
        group: String,
        users: Vec<String>,
    },
    RemoveDiscussionMember {
        group: String,
        user: String,
    },
    /// Renames a discussion (any member) or opens or closes its invitations (its owner).
    UpdateDiscussion {
        group: String,
        name: Option<String>,
        invite_open: Option<bool>,
    },
}

/// Prefix of the ids the server gives discussions (followed by a ULID).
pub const DISCUSSION_ID_PREFIX: &str = "d-";

fn refusal(r: GroupRefusal) -> Refusal {
    let detail = match r {
        GroupRefusal::Full => "the group would pass its maximum of members",
        GroupRefusal::NotDiscussion => "the group is not a discussion: users manage only those",
        GroupRefusal::NotOwner => "only the discussion's owner may do this",
        _ => return group_refusal_code(r).into(),
    };
    Refusal::new(group_refusal_code(r), detail)
}

fn store_failed(e: tidings_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "group read failed");
    ApiError::from(Code::ServerError)
}

fn check_users(users: &[String], max: u64) -> Result<(), ApiError> {
    if users.len() as u64 > max {
        return Err(ApiError(Refusal::new(
            Code::GroupFull,
            format!("at most {max} members"),
        )));
    }
    for u in users {
        if !validate::is_user_id(u) {
            return Err(Code::InvalidUserId.into());
        }
    }
    Ok(())
}

pub(crate) fn check_profile(
    name: Option<&str>,
    portrait: Option<&str>,
    extra: Option<&str>,
) -> Result<(), ApiError> {
    let bad = |text: String| Err(ApiError(Refusal::new(Code::BadRequest, text)));
    if name.is_some_and(|n| n.len() > MAX_NAME_BYTES) {
        return bad(format!("name is at most {MAX_NAME_BYTES} bytes"));
    }
    if portrait.is_some_and(|p| p.len() > MAX_PORTRAIT_BYTES) {
        return bad(format!("portrait is at most {MAX_PORTRAIT_BYTES} bytes"));
    }
    if let Some(extra) = extra.filter(|e| !e.is_empty()) {
        let object = serde_json::from_str::<serde_json::Value>(extra).is_ok_and(|v| v.is_object());
        if extra.len() > MAX_EXTRA_BYTES || !object {
            return bad(format!(
                "extra is a JSON object of at most {MAX_EXTRA_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

impl Engine {
    /// Applies a change to group `group` made by `by` (the notification's sender). Returns the
    /// group as it is after the change.
    pub async fn change_group(
        &self,
        group: &str,
        by: &str,
        action: GroupAction,
    ) -> Result<GroupInfo, ApiError> {
        self.change_group_as(group, by, action, Permit::App).await
    }

    /// As [`Engine::change_group`], made by a user under `permit` (checked by the store).
    pub(crate) async fn change_group_as(
        &self,
        group: &str,
        by: &str,
        action: GroupAction,
        permit: Permit,
    ) -> Result<GroupInfo, ApiError> {
        validate::check_group_id(group).map_err(ApiError)?;
        if !validate::is_user_id(by) {
            return Err(Code::InvalidUserId.into());
        }
        let max = self.inner.config.max_group_members;
        match &action {
            GroupAction::Create {
                owner,
                name,
                portrait,
                extra,
                members,
                ..
            } => {
                check_users(std::slice::from_ref(owner), max)?;
                check_users(members, max)?;
                check_profile(Some(name), Some(portrait), Some(extra))?;
            }
            GroupAction::Update {
                name,
                portrait,
                extra,
                ..
            } => check_profile(name.as_deref(), portrait.as_deref(), extra.as_deref())?,
            GroupAction::AddMembers(users) | GroupAction::RemoveMembers(users) => {
                if users.is_empty() {
                    return Err(ApiError(Refusal::new(
                        Code::BadRequest,
                        "give at least one user",
                    )));
                }
                check_users(users, max)?;
            }
            GroupAction::Quit(user)
            | GroupAction::TransferOwner(user)
            | GroupAction::Join(user) => {
                check_users(std::slice::from_ref(user), max)?;
            }
            GroupAction::Mute { user, .. } => {
                check_users(user.as_slice(), max)?;
            }
            GroupAction::Dismiss => {}
        }
        let change = GroupChange {
            group: group.to_string(),
            by: by.to_string(),
            action,
            permit,
            max_members: max,
            notification: AppendMessage {
                conversation_type: conversation_type::GROUP,
                conversation_id: tidings_store::group_conversation_id(group),
                sender: by.to_string(),
                target: group.to_string(),
                msg_type: GROUP_EVENT_TYPE.into(),
                ..Default::default()
            },
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .commits
            .send(CommitRequest::UserChange {
                ops: vec![WriteOp::Group(Box::new(change))],
                reply,
            })
            .await
            .map_err(|_| ApiError::from(Code::ServerShutdown))?;
        let results = match answer.await {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a group change failed");
                return Err(Code::ServerError.into());
            }
            Err(_) => return Err(Code::ServerShutdown.into()),
        };
        match results.into_iter().next() {
            Some(WriteResult::GroupChanged { group, .. }) => Ok(group),
            Some(WriteResult::GroupRefused(r)) => Err(ApiError(refusal(r))),
            other => {
                tracing::error!(?other, "unexpected store result for a group change");
                Err(Code::ServerError.into())
            }
        }
    }

    /// A group, dismissed or not.
    pub async fn group(&self, id: &str) -> Result<GroupInfo, ApiError> {
        validate::check_group_id(id).map_err(ApiError)?;
        self.inner
            .store
            .group(id)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| Code::GroupNotFound.into())
    }

    /// A page of a group's members (see [`MEMBERS_PAGE_MAX`]), after `page_token` (empty: from
    /// the first).
    pub async fn group_members(
        &self,
        id: &str,
        page_token: &str,
        limit: u32,
    ) -> Result<GroupMembers, ApiError> {
        validate::check_group_id(id).map_err(ApiError)?;
        if limit > MEMBERS_PAGE_MAX {
            return Err(ApiError(Refusal::new(
                Code::BadRequest,
                format!("limit is at most {MEMBERS_PAGE_MAX}"),
            )));
        }
        let after = match page_token {
            "" => 0,
            t => t.parse().map_err(|_| {
                ApiError(Refusal::new(
                    Code::BadRequest,
                    "page token is not one this server issued",
                ))
            })?,
        };
        let limit = if limit == 0 {
            MEMBERS_PAGE_DEFAULT
        } else {
            limit
        };
        self.inner
            .store
            .group_members(id, after, limit as usize)
            .await
            .map_err(store_failed)
    }

    /// The live groups `user` is a member of.
    pub async fn user_groups(&self, user: &str) -> Result<Vec<GroupInfo>, ApiError> {
        if !validate::is_user_id(user) {
            return Err(Code::InvalidUserId.into());
        }
        self.inner
            .store
            .user_groups(user)
            .await
            .map_err(store_failed)
    }
}

impl Session {
    /// Answers a group query; the QUERYACK arrives through the outbox.
    pub async fn group_query(&self, query_id: u32, query: GroupQuery) {
        let answer = match self.answer_group(query).await {
            Ok(mut out) => {
                out.query_id = query_id;
                out
            }
            Err(ApiError(refusal)) => QueryAckOut::refused(query_id, refusal),
        };
        self.shared
            .reply(&self.engine, Outbound::QueryAck(Box::new(answer)));
    }

    async fn answer_group(&self, query: GroupQuery) -> Result<QueryAckOut, ApiError> {
        let user = self.shared.user.clone();
        match query {
            GroupQuery::Get { group } => {
                let info = self.member_of(&group).await?;
                Ok(QueryAckOut {
                    groups: vec![info],
                    ..Default::default()
                })
            }
            GroupQuery::Members {
                group,
                limit,
                page_token,
            } => {
                self.member_of(&group).await?;
                let page = self
                    .engine
                    .group_members(&group, &page_token, limit)
                    .await?;
                Ok(QueryAckOut {
                    members: page.members,
                    next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
                    ..Default::default()
                })
            }
            GroupQuery::Quit { group } => {
                let info = self
                    .engine
                    .change_group(&group, &user, GroupAction::Quit(user.clone()))
                    .await?;
                Ok(QueryAckOut {
                    groups: vec![info],
                    ..Default::default()
                })
            }
            GroupQuery::List => Ok(QueryAckOut {
                groups: self.engine.user_groups(&user).await?,
                ..Default::default()
            }),
            GroupQuery::CreateDiscussion { name, users } => Ok(QueryAckOut {
                groups: vec![self.create_discussion(name, users).await?],
                ..Default::default()
            }),
            GroupQuery::AddDiscussionMembers { group, users } => {
                self.refuse_blockers(&users).await?;
                let action = GroupAction::AddMembers(users);
                self.change_discussion(&group, action, Permit::Inviter)
                    .await
            }
            GroupQuery::RemoveDiscussionMember { group, user: who } => {
                let action = GroupAction::RemoveMembers(vec![who]);
                self.change_discussion(&group, action, Permit::Owner).await
            }
            GroupQuery::UpdateDiscussion {
                group,
                name,
                invite_open,
            } => {
                if name.is_none() && invite_open.is_none() {
                    return Err(ApiError(Refusal::new(
                        Code::BadRequest,
                        "give name or inviteOpen",
                    )));
                }
                // Renaming is any member's; opening or closing invitations the owner's.
                let permit = if invite_open.is_some() {
                    Permit::Owner
                } else {
                    Permit::Member
                };
                let action = GroupAction::Update {
                    name,
                    portrait: None,
                    extra: None,
                    invite_open,
                };
                self.change_discussion(&group, action, permit).await
            }
            GroupQuery::Receipt { group, seq } => {
                validate::check_group_id(&group).map_err(ApiError)?;
                let receipt = self
                    .engine
                    .inner
                    .store
                    .group_receipt(&group, seq)
                    .await
                    .map_err(store_failed)?
                    .ok_or(ApiError::from(Code::MessageNotFound))?;
                if receipt.sender != user {
                    return Err(Code::NotMessageSender.into());
                }
                Ok(QueryAckOut {
                    receipt: Some(receipt),
                    ..Default::default()
                })
            }
        }
    }

    /// Seed 001's AUTH naming `group`: a member of a group of any kind is answered with it; a
    /// group that does not exist is made (kind `open`, this user its owner and member); an open
    /// group is joined; anything else is refused (not a member: 22406; dismissed: 35001).
    /// Making or joining a group stores a message (its notification), so either counts against
    /// the user's send rate (20604 past it); naming a group the user is in already does not.
    pub async fn join_named_group(&self, group: &str) -> Result<GroupInfo, Refusal> {
        validate::check_group_id(group)?;
        let user = self.shared.user.clone();
        let store = &self.engine.inner.store;
        let found = store.group(group).await.map_err(|e| store_failed(e).0)?;
        if let Some(info) = found.filter(|g| g.dismissed == 0) {
            let member = store
                .is_group_member(group, &user)
                .await
                .map_err(|e| store_failed(e).0)?;
            if member {
                return Ok(info);
            }
        }
        if !self.engine.may_send(&user) {
            return Err(Refusal::new(
                Code::SendTooFast,
                "making or joining a group counts as a message sent",
            ));
        }
        // The store decides again, under the group's lock: the kind and membership may have
        // changed since the read above.
        self.engine
            .change_group_as(group, &user, GroupAction::Join(user.clone()), Permit::App)
            .await
            .map_err(|ApiError(r)| r)
    }

    /// Makes a discussion owned by this user, with `users` as its other members, under an id
    /// the server chooses ([`DISCUSSION_ID_PREFIX`] and a ULID).
    async fn create_discussion(
        &self,
        name: String,
        users: Vec<String>,
    ) -> Result<GroupInfo, ApiError> {
        let user = self.shared.user.clone();
        check_profile(Some(&name), None, None)?;
        if !self.engine.may_send(&user) {
            return Err(ApiError(Refusal::new(
                Code::SendTooFast,
                "making a discussion counts as a message sent",
            )));
        }
        // After the send rate: the reads are per user named.
        self.refuse_blockers(&users).await?;
        // An app server may have taken an id of this form: then another is drawn.
        let mut attempts = 0;
        loop {
            let id = format!("{DISCUSSION_ID_PREFIX}{}", crate::new_uid());
            let action = GroupAction::Create {
                kind: GroupKind::Discussion,
                owner: user.clone(),
                name: name.clone(),
                portrait: String::new(),
                extra: String::new(),
                members: users.clone(),
            };
            match self.engine.change_group(&id, &user, action).await {
                Err(ApiError(r)) if r.code == Code::GroupExists && attempts < 3 => attempts += 1,
                other => return other,
            }
        }
    }

    /// Refuses to put into a discussion anyone who blocks this user (405, as a private message
    /// to them is refused): a blocklist is not got round by inviting its owner somewhere.
    /// More users than a group may hold are refused before any is read (40022, as the store
    /// would refuse them), so one request costs at most that many reads.
    async fn refuse_blockers(&self, users: &[String]) -> Result<(), ApiError> {
        if users.len() as u64 > self.engine.inner.config.max_group_members {
            return Err(Code::GroupFull.into());
        }
        for other in users {
            let blocked = self
                .engine
                .inner
                .store
                .is_blocked(other, &self.shared.user)
                .await
                .map_err(store_failed)?;
            if blocked {
                return Err(ApiError(Refusal::new(
                    Code::RejectedByBlacklist,
                    format!("{other} takes no invitation from this user"),
                )));
            }
        }
        Ok(())
    }

    /// A change this user makes to a discussion; the QUERYACK carries the discussion after it.
    async fn change_discussion(
        &self,
        group: &str,
        action: GroupAction,
        permit: Permit,
    ) -> Result<QueryAckOut, ApiError> {
        let info = self
            .engine
            .change_group_as(group, &self.shared.user, action, permit)
            .await?;
        Ok(QueryAckOut {
            groups: vec![info],
            ..Default::default()
        })
    }

    /// The group, if this user is a member of it.
    async fn member_of(&self, group: &str) -> Result<GroupInfo, ApiError> {
        let info = self.engine.group(group).await?;
        if info.dismissed != 0 {
            return Err(Code::GroupDismissed.into());
        }
        let member = self
            .engine
            .inner
            .store
            .is_group_member(group, &self.shared.user)
            .await
            .map_err(store_failed)?;
        if !member {
            return Err(Code::NotInGroup.into());
        }
        Ok(info)
    }
}
