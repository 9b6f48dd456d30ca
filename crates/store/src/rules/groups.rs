//! Group changes: who may make them, what they change, and the notification that records them;
//! and who may send a group message, and to whom it goes.
//!
//! A backend applies a [`GroupChange`] in three steps inside its write transaction: it reads
//! the group's row, asks [`needs`] what else the decision depends on and reads only that (the
//! membership of the users the change names, the member count, the successor of an owner who
//! leaves: a change naming one member of a 10,000-member group reads a few rows, not the
//! group), then [`decide`] answers a refusal, "unchanged", or the [`Effects`] to write with
//! the notification's content. For a group message, [`may_send`] and [`fanout`] do the same
//! on the group's row, the sender's membership and the member list.
//!
//! This module does no I/O and reads no clock: "now" is the notification's (or the
//! message's) `sent_time`. It must not depend on any backend.

use std::collections::HashSet;

use crate::{AppendMessage, GroupAction, GroupChange, GroupKind, GroupRefusal, Permit};

/// A group's row as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub kind: GroupKind,
    pub owner: String,
    /// A discussion: whether any member may add members, or only its owner.
    pub invite_open: bool,
    /// When it was dismissed (ms); 0 while it lives.
    pub dismissed: i64,
    /// Until when (ms) only the owner may send.
    pub muted_until: i64,
}

impl GroupRow {
    /// Whether the group lives (it was not dismissed).
    pub fn live(&self) -> bool {
        self.dismissed == 0
    }
}

/// The kind a backend stored; one this build does not know is treated as the most closed.
pub fn stored_kind(stored: &str) -> GroupKind {
    GroupKind::parse(stored).unwrap_or_default()
}

/// What [`decide`] needs to know of a live group beyond its row, for one change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs<'a> {
    /// The users whose membership the decision asks: `by` for a user's change, and those the
    /// change names.
    pub members: Vec<&'a str>,
    /// Whether the decision needs the member count (a change that adds members).
    pub count: bool,
    /// For a change that removes members: the users it may remove. The backend reads the
    /// longest-standing member not among them ([`GroupSnapshot::successor`]).
    pub leaving: Option<Vec<&'a str>>,
}

/// What a change's decision needs to know beyond the group's row. Nothing for a group that
/// does not exist or was dismissed: the decision then reads only the row.
pub fn needs<'a>(c: &'a GroupChange, row: Option<&GroupRow>) -> Needs<'a> {
    let mut needs = Needs::default();
    if !row.is_some_and(GroupRow::live) {
        return needs;
    }
    if c.permit != Permit::App {
        needs.members.push(&c.by);
    }
    match &c.action {
        GroupAction::Create { .. } | GroupAction::Update { .. } | GroupAction::Dismiss => {}
        GroupAction::Mute { user, .. } => needs.members.extend(user.as_deref()),
        GroupAction::TransferOwner(user) => needs.members.push(user),
        GroupAction::Join(user) => {
            needs.members.push(user);
            needs.count = true;
        }
        GroupAction::AddMembers(users) => {
            needs.members.extend(users.iter().map(String::as_str));
            needs.count = true;
        }
        GroupAction::RemoveMembers(users) => {
            needs.members.extend(users.iter().map(String::as_str));
            needs.leaving = Some(users.iter().map(String::as_str).collect());
        }
        GroupAction::Quit(user) => {
            needs.members.push(user);
            needs.leaving = Some(vec![user]);
        }
    }
    needs
}

/// What a backend read for a change, under the group's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// The group's row, if there is one.
    pub row: Option<GroupRow>,
    /// Of [`Needs::members`], those who are members.
    pub members: HashSet<String>,
    /// The number of members, if [`Needs::count`] asked for it.
    pub member_count: u64,
    /// If [`Needs::leaving`] asked for it: the longest-standing member not among the leaving.
    pub successor: Option<String>,
}

impl GroupSnapshot {
    fn is_member(&self, user: &str) -> bool {
        self.members.contains(user)
    }
}

/// A group row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub kind: GroupKind,
    pub owner: String,
    pub name: String,
    pub portrait: String,
    pub extra: String,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub portrait: Option<String>,
    pub extra: Option<String>,
    pub invite_open: Option<bool>,
}

/// A mute to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mute {
    /// One member may not send until then (ms; 0 unmutes).
    Member { user: String, until: i64 },
    /// Only the owner may send until then (ms; 0 unmutes).
    Group { until: i64 },
}

/// What a change writes, in the change's transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The group's row, for a change that makes the group.
    pub insert: Option<NewGroup>,
    pub update: Option<ProfileUpdate>,
    /// The new owner.
    pub owner: Option<String>,
    pub mute: Option<Mute>,
    /// Members who join, in order: each sees the notification and nothing before it.
    pub joined: Vec<String>,
    /// Members who leave, in order: each sees up to the notification and nothing after it.
    pub left: Vec<String>,
    /// The group is dismissed: every member still in it leaves too, after `left`.
    pub dismiss: bool,
    /// The notification's content (JSON).
    pub content: String,
}

impl Effects {
    /// The notification that records the change: `n` as the engine made it (conversation,
    /// sender, uid, time), with its content, and its recipients as the backend found them
    /// after writing the effects (the members, then those who left).
    pub fn notification(self, mut n: AppendMessage, recipients: Vec<String>) -> AppendMessage {
        n.content = self.content;
        n.digest = n.uid.clone();
        n.counted = false;
        n.to_group = false;
        n.participants.clear();
        n.recipients = recipients;
        n
    }
}

/// The decision on a change.
// A decision lives only until its effects are written, and most are changes; boxing the
// effects would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is written.
    Refused(GroupRefusal),
    /// The change changes nothing (adding members already there): nothing is written and no
    /// notification is sent.
    Unchanged,
    Change(Effects),
}

/// Decides a change on what the backend read. "Now" is the notification's `sent_time`.
pub fn decide(c: &GroupChange, s: &GroupSnapshot) -> Decision {
    match decide_effects(c, s) {
        Ok(Some(effects)) => Decision::Change(effects),
        Ok(None) => Decision::Unchanged,
        Err(r) => Decision::Refused(r),
    }
}

fn decide_effects(c: &GroupChange, s: &GroupSnapshot) -> Result<Option<Effects>, GroupRefusal> {
    let now = c.notification.sent_time;
    // A user's own change is checked against the group as it is now; the app server's need none.
    if let Some(row) = s.row.as_ref().filter(|row| row.live()) {
        check_permit(c.permit, row, &c.by, s.is_member(&c.by))?;
    }
    let mut content = serde_json::json!({ "operatorId": c.by });
    let mut e = Effects::default();
    match (&c.action, &s.row) {
        (
            GroupAction::Create {
                kind,
                owner,
                name,
                portrait,
                extra,
                members,
            },
            None,
        ) => {
            e.joined.push(owner.clone());
            for u in members {
                if !e.joined.contains(u) {
                    e.joined.push(u.clone());
                }
            }
            if e.joined.len() as u64 > c.max_members {
                return Err(GroupRefusal::Full);
            }
            created_content(&mut content, *kind, owner, name, &e.joined);
            e.insert = Some(NewGroup {
                kind: *kind,
                owner: owner.clone(),
                name: name.clone(),
                portrait: portrait.clone(),
                extra: extra.clone(),
            });
        }
        // A user naming a group that does not exist makes it, open, as its owner.
        (GroupAction::Join(user), None) => {
            e.joined.push(user.clone());
            created_content(&mut content, GroupKind::Open, user, "", &e.joined);
            e.insert = Some(NewGroup {
                kind: GroupKind::Open,
                owner: user.clone(),
                name: String::new(),
                portrait: String::new(),
                extra: String::new(),
            });
        }
        (GroupAction::Create { .. }, Some(_)) => return Err(GroupRefusal::Exists),
        (_, None) => return Err(GroupRefusal::NotFound),
        (_, Some(row)) if !row.live() => return Err(GroupRefusal::Dismissed),
        (action, Some(row)) => {
            if !change_live(action, row, c, s, now, &mut e, &mut content)? {
                return Ok(None);
            }
        }
    }
    if e.dismiss {
        content["dismissed"] = true.into();
    }
    e.content = content.to_string();
    Ok(Some(e))
}

/// A change to a live group: fills `e` and `content`, or answers false when nothing changes.
fn change_live(
    action: &GroupAction,
    row: &GroupRow,
    c: &GroupChange,
    s: &GroupSnapshot,
    now: i64,
    e: &mut Effects,
    content: &mut serde_json::Value,
) -> Result<bool, GroupRefusal> {
    match action {
        // An existing group cannot be created again (answered before; kept for completeness).
        GroupAction::Create { .. } => return Err(GroupRefusal::Exists),
        GroupAction::Update {
            name,
            portrait,
            extra,
            invite_open,
        } => {
            updated_content(content, action);
            e.update = Some(ProfileUpdate {
                name: name.clone(),
                portrait: portrait.clone(),
                extra: extra.clone(),
                invite_open: *invite_open,
            });
        }
        GroupAction::Join(user) => {
            if s.is_member(user) {
                return Ok(false);
            }
            if row.kind != GroupKind::Open {
                return Err(GroupRefusal::NotMember);
            }
            e.joined.push(user.clone());
            add(e, s, c.max_members, content)?;
        }
        GroupAction::AddMembers(users) => {
            for u in users {
                if !e.joined.contains(u) && !s.is_member(u) {
                    e.joined.push(u.clone());
                }
            }
            if e.joined.is_empty() {
                return Ok(false);
            }
            add(e, s, c.max_members, content)?;
        }
        GroupAction::RemoveMembers(users) => {
            for u in users {
                if !e.left.contains(u) && s.is_member(u) {
                    e.left.push(u.clone());
                }
            }
            if e.left.is_empty() {
                return Ok(false);
            }
            leave(e, row, s, "remove", content);
        }
        GroupAction::Quit(user) => {
            if !s.is_member(user) {
                return Err(GroupRefusal::NotMember);
            }
            e.left.push(user.clone());
            leave(e, row, s, "quit", content);
        }
        GroupAction::TransferOwner(user) => {
            if !s.is_member(user) {
                return Err(GroupRefusal::NotMember);
            }
            if *user == row.owner {
                return Ok(false);
            }
            content["operation"] = "transfer".into();
            content["ownerId"] = user.as_str().into();
            e.owner = Some(user.clone());
        }
        GroupAction::Mute { user, until } => {
            let until = *until;
            match user {
                Some(u) => {
                    if !s.is_member(u) {
                        return Err(GroupRefusal::NotMember);
                    }
                    content["userIds"] = vec![u.clone()].into();
                    e.mute = Some(Mute::Member {
                        user: u.clone(),
                        until,
                    });
                }
                None => {
                    content["all"] = true.into();
                    e.mute = Some(Mute::Group { until });
                }
            }
            content["operation"] = if until > now { "mute" } else { "unmute" }.into();
            content["until"] = until.into();
        }
        GroupAction::Dismiss => {
            content["operation"] = "dismiss".into();
            e.dismiss = true;
        }
    }
    Ok(true)
}

/// Members join: refused whole if the group would hold more than `max` members.
fn add(
    e: &Effects,
    s: &GroupSnapshot,
    max: u64,
    content: &mut serde_json::Value,
) -> Result<(), GroupRefusal> {
    if s.member_count + e.joined.len() as u64 > max {
        return Err(GroupRefusal::Full);
    }
    content["operation"] = "add".into();
    content["userIds"] = e.joined.clone().into();
    Ok(())
}

/// Members leave: if the owner is one of them, the longest-standing remaining member becomes
/// the owner; if nobody remains, the group is dismissed.
fn leave(
    e: &mut Effects,
    row: &GroupRow,
    s: &GroupSnapshot,
    operation: &str,
    content: &mut serde_json::Value,
) {
    content["operation"] = operation.into();
    content["userIds"] = e.left.clone().into();
    let Some(heir) = &s.successor else {
        e.dismiss = true;
        return;
    };
    if e.left.contains(&row.owner) {
        content["ownerId"] = heir.as_str().into();
        e.owner = Some(heir.clone());
    }
}

/// Whether `by` may make a change under `permit` to a live group; `member` says whether `by`
/// is a member of it.
fn check_permit(
    permit: Permit,
    row: &GroupRow,
    by: &str,
    member: bool,
) -> Result<(), GroupRefusal> {
    if permit == Permit::App {
        return Ok(());
    }
    if row.kind != GroupKind::Discussion {
        return Err(GroupRefusal::NotDiscussion);
    }
    if !member {
        return Err(GroupRefusal::NotMember);
    }
    match permit {
        Permit::Owner if by != row.owner => Err(GroupRefusal::NotOwner),
        Permit::Inviter if !row.invite_open && by != row.owner => Err(GroupRefusal::InvitesClosed),
        _ => Ok(()),
    }
}

/// Fills a creation's notification content: `operation` `create`, the kind, owner, name and
/// first members.
fn created_content(
    content: &mut serde_json::Value,
    kind: GroupKind,
    owner: &str,
    name: &str,
    members: &[String],
) {
    content["operation"] = "create".into();
    content["kind"] = kind.as_str().into();
    content["ownerId"] = owner.into();
    content["name"] = name.into();
    content["userIds"] = members.into();
}

/// Fills an update's notification content: `operation` `update` and the fields it changes.
fn updated_content(content: &mut serde_json::Value, action: &GroupAction) {
    let GroupAction::Update {
        name,
        portrait,
        extra,
        invite_open,
    } = action
    else {
        return;
    };
    content["operation"] = "update".into();
    for (key, value) in [("name", name), ("portrait", portrait), ("extra", extra)] {
        if let Some(v) = value {
            content[key] = v.as_str().into();
        }
    }
    if let Some(open) = invite_open {
        content["inviteOpen"] = (*open).into();
    }
}

/// Whether `sender` may send to the group now: `row` is the group's row, if any, and
/// `sender_muted_until` the sender's membership (`None`: not a member) with the time until
/// which the sender is muted.
pub fn may_send(
    row: Option<&GroupRow>,
    sender: &str,
    sender_muted_until: Option<i64>,
    now: i64,
) -> Result<(), GroupRefusal> {
    let Some(row) = row else {
        return Err(GroupRefusal::NotFound);
    };
    if !row.live() {
        return Err(GroupRefusal::Dismissed);
    }
    let Some(muted) = sender_muted_until else {
        return Err(GroupRefusal::NotMember);
    };
    if muted > now || (row.muted_until > now && sender != row.owner) {
        return Err(GroupRefusal::Muted);
    }
    Ok(())
}

/// Who a group message goes to: `(recipients, audience)`. The recipients are the sender
/// first, then every other member (in join order) or, for a message directed to an
/// `audience`, only its members; the audience as stored keeps only members, once each, without
/// the sender.
pub fn fanout(sender: &str, members: &[String], audience: &[String]) -> (Vec<String>, Vec<String>) {
    let mut recipients = Vec::with_capacity(members.len());
    recipients.push(sender.to_string());
    let mut kept = Vec::new();
    if audience.is_empty() {
        recipients.extend(members.iter().filter(|u| *u != sender).cloned());
    } else {
        let members: HashSet<&String> = members.iter().collect();
        for user in audience {
            if user != sender && members.contains(user) && !kept.contains(user) {
                kept.push(user.clone());
                recipients.push(user.clone());
            }
        }
    }
    (recipients, kept)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const NOW: i64 = 1_000;

    fn change(by: &str, action: GroupAction) -> GroupChange {
        GroupChange {
            group: "g".into(),
            by: by.into(),
            action,
            permit: Permit::App,
            max_members: 4,
            notification: AppendMessage {
                uid: "n1".into(),
                sent_time: NOW,
                to_group: true,
                counted: true,
                ..Default::default()
            },
        }
    }

    fn as_user(permit: Permit, by: &str, action: GroupAction) -> GroupChange {
        GroupChange {
            permit,
            ..change(by, action)
        }
    }

    fn row(kind: GroupKind, owner: &str) -> GroupRow {
        GroupRow {
            kind,
            owner: owner.into(),
            invite_open: true,
            dismissed: 0,
            muted_until: 0,
        }
    }

    /// A live managed group owned by `a`, where `members` are members (of those asked).
    fn snapshot(members: &[&str]) -> GroupSnapshot {
        GroupSnapshot {
            row: Some(row(GroupKind::Managed, "a")),
            members: members.iter().map(|u| u.to_string()).collect(),
            member_count: members.len() as u64,
            successor: None,
        }
    }

    fn strings(users: &[&str]) -> Vec<String> {
        users.iter().map(|u| u.to_string()).collect()
    }

    fn effects(c: &GroupChange, s: &GroupSnapshot) -> Effects {
        match decide(c, s) {
            Decision::Change(e) => e,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    fn content(e: &Effects) -> Value {
        serde_json::from_str(&e.content).expect("the content is JSON")
    }

    fn changes(c: &GroupChange, s: &GroupSnapshot) -> bool {
        matches!(decide(c, s), Decision::Change(_))
    }

    fn refused(c: &GroupChange, s: &GroupSnapshot) -> GroupRefusal {
        match decide(c, s) {
            Decision::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn create(members: &[&str]) -> GroupAction {
        GroupAction::Create {
            kind: GroupKind::Managed,
            owner: "a".into(),
            name: "Team".into(),
            portrait: "p".into(),
            extra: "{}".into(),
            members: strings(members),
        }
    }

    #[test]
    fn create_inserts_the_row_and_its_members_once_each_owner_first() {
        let e = effects(
            &change("a", create(&["b", "a", "c", "b"])),
            &GroupSnapshot::default(),
        );
        assert_eq!(e.joined, strings(&["a", "b", "c"]));
        assert_eq!(
            e.insert,
            Some(NewGroup {
                kind: GroupKind::Managed,
                owner: "a".into(),
                name: "Team".into(),
                portrait: "p".into(),
                extra: "{}".into(),
            })
        );
        assert_eq!(
            e.content,
            r#"{"kind":"managed","name":"Team","operation":"create","operatorId":"a","ownerId":"a","userIds":["a","b","c"]}"#
        );
    }

    #[test]
    fn create_beyond_the_maximum_or_of_an_existing_group_is_refused() {
        let none = GroupSnapshot::default();
        assert_eq!(
            refused(&change("a", create(&["b", "c", "d", "e"])), &none),
            GroupRefusal::Full
        );
        assert_eq!(
            refused(&change("a", create(&["b"])), &snapshot(&[])),
            GroupRefusal::Exists
        );
    }

    #[test]
    fn a_join_makes_a_missing_group_open_with_the_user_as_owner() {
        let e = effects(
            &change("u", GroupAction::Join("u".into())),
            &GroupSnapshot::default(),
        );
        assert_eq!(e.joined, strings(&["u"]));
        assert_eq!(e.insert.as_ref().map(|g| g.kind), Some(GroupKind::Open));
        assert_eq!(e.insert.as_ref().map(|g| g.owner.as_str()), Some("u"));
        assert_eq!(
            content(&e),
            json!({"operation": "create", "kind": "open", "ownerId": "u", "name": "",
                   "userIds": ["u"], "operatorId": "u"})
        );
    }

    #[test]
    fn a_join_adds_to_an_open_group_and_is_refused_by_others() {
        let mut s = snapshot(&[]);
        s.row = Some(row(GroupKind::Open, "a"));
        s.member_count = 2;
        let e = effects(&change("u", GroupAction::Join("u".into())), &s);
        assert_eq!(e.joined, strings(&["u"]));
        assert_eq!(e.insert, None);
        assert_eq!(
            content(&e),
            json!({"operation": "add", "userIds": ["u"], "operatorId": "u"})
        );
        s.member_count = 4;
        assert_eq!(
            refused(&change("u", GroupAction::Join("u".into())), &s),
            GroupRefusal::Full
        );
        // A member of a group of another kind is answered unchanged; anyone else is refused.
        let managed = snapshot(&["u"]);
        assert_eq!(
            decide(&change("u", GroupAction::Join("u".into())), &managed),
            Decision::Unchanged
        );
        assert_eq!(
            refused(&change("v", GroupAction::Join("v".into())), &managed),
            GroupRefusal::NotMember
        );
    }

    #[test]
    fn changes_to_a_missing_or_dismissed_group_are_refused() {
        let actions = [
            GroupAction::AddMembers(strings(&["b"])),
            GroupAction::Quit("a".into()),
            GroupAction::Dismiss,
        ];
        let mut dismissed = snapshot(&["a"]);
        if let Some(r) = dismissed.row.as_mut() {
            r.dismissed = 5;
        }
        for action in actions {
            let c = as_user(Permit::Owner, "a", action);
            assert_eq!(
                refused(&c, &GroupSnapshot::default()),
                GroupRefusal::NotFound
            );
            // The permit is not checked against a dismissed group: it is simply dismissed.
            assert_eq!(refused(&c, &dismissed), GroupRefusal::Dismissed);
        }
    }

    #[test]
    fn update_changes_only_the_fields_given() {
        let update = GroupAction::Update {
            name: Some("New".into()),
            portrait: None,
            extra: Some("{\"x\":1}".into()),
            invite_open: Some(false),
        };
        let e = effects(&change("a", update), &snapshot(&[]));
        assert_eq!(
            e.update,
            Some(ProfileUpdate {
                name: Some("New".into()),
                portrait: None,
                extra: Some("{\"x\":1}".into()),
                invite_open: Some(false),
            })
        );
        assert_eq!(
            content(&e),
            json!({"operation": "update", "name": "New", "extra": "{\"x\":1}",
                   "inviteOpen": false, "operatorId": "a"})
        );
    }

    #[test]
    fn adds_skip_members_and_repeats_and_are_unchanged_when_nobody_is_new() {
        let s = snapshot(&["a", "b"]);
        let e = effects(
            &change("a", GroupAction::AddMembers(strings(&["b", "c", "c", "d"]))),
            &s,
        );
        assert_eq!(e.joined, strings(&["c", "d"]));
        assert_eq!(
            content(&e),
            json!({"operation": "add", "userIds": ["c", "d"], "operatorId": "a"})
        );
        assert_eq!(
            decide(
                &change("a", GroupAction::AddMembers(strings(&["a", "b"]))),
                &s
            ),
            Decision::Unchanged
        );
    }

    #[test]
    fn an_add_beyond_the_maximum_is_refused_whole() {
        let s = snapshot(&["a", "b", "c"]);
        assert_eq!(
            refused(
                &change("a", GroupAction::AddMembers(strings(&["d", "e"]))),
                &s
            ),
            GroupRefusal::Full
        );
        assert!(changes(
            &change("a", GroupAction::AddMembers(strings(&["d"]))),
            &s
        ));
    }

    #[test]
    fn removes_skip_non_members_and_are_unchanged_when_nobody_leaves() {
        let mut s = snapshot(&["b", "c"]);
        s.successor = Some("a".into());
        let e = effects(
            &change(
                "a",
                GroupAction::RemoveMembers(strings(&["x", "c", "b", "c"])),
            ),
            &s,
        );
        assert_eq!(e.left, strings(&["c", "b"]));
        assert_eq!((e.owner.as_deref(), e.dismiss), (None, false));
        assert_eq!(
            content(&e),
            json!({"operation": "remove", "userIds": ["c", "b"], "operatorId": "a"})
        );
        assert_eq!(
            decide(
                &change("a", GroupAction::RemoveMembers(strings(&["x"]))),
                &s
            ),
            Decision::Unchanged
        );
    }

    #[test]
    fn an_owner_who_leaves_hands_the_group_to_the_longest_standing_member() {
        let mut s = snapshot(&["a"]);
        s.successor = Some("b".into());
        let e = effects(&change("a", GroupAction::Quit("a".into())), &s);
        assert_eq!(e.left, strings(&["a"]));
        assert_eq!(e.owner.as_deref(), Some("b"));
        assert!(!e.dismiss);
        assert_eq!(
            content(&e),
            json!({"operation": "quit", "userIds": ["a"], "ownerId": "b", "operatorId": "a"})
        );
        // A member who is not the owner leaves without a hand-over.
        let mut s = snapshot(&["c"]);
        s.successor = Some("a".into());
        let e = effects(&change("c", GroupAction::Quit("c".into())), &s);
        assert_eq!((e.owner, e.dismiss), (None, false));
    }

    #[test]
    fn the_last_member_to_leave_dismisses_the_group() {
        let e = effects(
            &change("a", GroupAction::Quit("a".into())),
            &snapshot(&["a"]),
        );
        assert!(e.dismiss);
        assert_eq!(e.owner, None);
        assert_eq!(
            content(&e),
            json!({"operation": "quit", "userIds": ["a"], "dismissed": true, "operatorId": "a"})
        );
        let e = effects(
            &change("a", GroupAction::RemoveMembers(strings(&["a", "b"]))),
            &snapshot(&["a", "b"]),
        );
        assert!(e.dismiss);
        assert_eq!(e.left, strings(&["a", "b"]));
    }

    #[test]
    fn quitting_transferring_to_or_muting_a_non_member_is_refused() {
        let s = snapshot(&["a"]);
        for action in [
            GroupAction::Quit("x".into()),
            GroupAction::TransferOwner("x".into()),
            GroupAction::Mute {
                user: Some("x".into()),
                until: NOW + 1,
            },
        ] {
            assert_eq!(refused(&change("a", action), &s), GroupRefusal::NotMember);
        }
    }

    #[test]
    fn transfer_names_the_new_owner_and_to_the_owner_changes_nothing() {
        let s = snapshot(&["a", "b"]);
        let e = effects(&change("a", GroupAction::TransferOwner("b".into())), &s);
        assert_eq!(e.owner.as_deref(), Some("b"));
        assert_eq!(
            content(&e),
            json!({"operation": "transfer", "ownerId": "b", "operatorId": "a"})
        );
        assert_eq!(
            decide(&change("a", GroupAction::TransferOwner("a".into())), &s),
            Decision::Unchanged
        );
    }

    #[test]
    fn mutes_of_a_member_or_the_group_and_unmutes() {
        let s = snapshot(&["b"]);
        let mute = |user: Option<&str>, until| GroupAction::Mute {
            user: user.map(String::from),
            until,
        };
        let e = effects(&change("a", mute(Some("b"), NOW + 1)), &s);
        assert_eq!(
            e.mute,
            Some(Mute::Member {
                user: "b".into(),
                until: NOW + 1
            })
        );
        assert_eq!(
            content(&e),
            json!({"operation": "mute", "userIds": ["b"], "until": NOW + 1, "operatorId": "a"})
        );
        let e = effects(&change("a", mute(None, i64::MAX)), &s);
        assert_eq!(e.mute, Some(Mute::Group { until: i64::MAX }));
        assert_eq!(
            content(&e),
            json!({"operation": "mute", "all": true, "until": i64::MAX, "operatorId": "a"})
        );
        // A time not after now unmutes.
        let e = effects(&change("a", mute(None, NOW)), &s);
        assert_eq!(content(&e)["operation"], "unmute");
    }

    #[test]
    fn dismiss_takes_everyone_out() {
        let e = effects(&change("a", GroupAction::Dismiss), &snapshot(&[]));
        assert!(e.dismiss);
        assert!(e.left.is_empty(), "the backend takes every member out");
        assert_eq!(
            content(&e),
            json!({"operation": "dismiss", "dismissed": true, "operatorId": "a"})
        );
    }

    #[test]
    fn a_users_change_needs_a_discussion_a_membership_and_its_permit() {
        let add = || GroupAction::AddMembers(strings(&["d"]));
        let mut discussion = snapshot(&["a", "b"]);
        discussion.row = Some(row(GroupKind::Discussion, "a"));
        // Not a discussion.
        assert_eq!(
            refused(&as_user(Permit::Member, "a", add()), &snapshot(&["a"])),
            GroupRefusal::NotDiscussion
        );
        // Not a member.
        assert_eq!(
            refused(&as_user(Permit::Member, "x", add()), &discussion),
            GroupRefusal::NotMember
        );
        // Only the owner.
        assert_eq!(
            refused(&as_user(Permit::Owner, "b", add()), &discussion),
            GroupRefusal::NotOwner
        );
        assert!(changes(&as_user(Permit::Owner, "a", add()), &discussion));
        // Invitations: anyone while open, only the owner while closed.
        assert!(changes(&as_user(Permit::Inviter, "b", add()), &discussion));
        if let Some(r) = discussion.row.as_mut() {
            r.invite_open = false;
        }
        assert_eq!(
            refused(&as_user(Permit::Inviter, "b", add()), &discussion),
            GroupRefusal::InvitesClosed
        );
        assert!(changes(&as_user(Permit::Inviter, "a", add()), &discussion));
        // The app server's change needs none of this.
        assert!(changes(&change("x", add()), &snapshot(&[])));
    }

    #[test]
    fn needs_reads_only_what_the_change_names() {
        let live = row(GroupKind::Managed, "a");
        let c = change("a", GroupAction::RemoveMembers(strings(&["b", "c"])));
        assert_eq!(
            needs(&c, Some(&live)),
            Needs {
                members: vec!["b", "c"],
                count: false,
                leaving: Some(vec!["b", "c"]),
            }
        );
        let c = as_user(
            Permit::Inviter,
            "a",
            GroupAction::AddMembers(strings(&["d"])),
        );
        assert_eq!(
            needs(&c, Some(&live)),
            Needs {
                members: vec!["a", "d"],
                count: true,
                leaving: None,
            }
        );
        assert_eq!(needs(&c, None), Needs::default(), "nothing without a row");
        let dismissed = GroupRow {
            dismissed: 1,
            ..live
        };
        assert_eq!(needs(&c, Some(&dismissed)), Needs::default());
    }

    #[test]
    fn the_notification_carries_the_content_to_the_recipients_uncounted() {
        let e = effects(&change("a", GroupAction::Dismiss), &snapshot(&[]));
        let content = e.content.clone();
        let n = e.notification(
            change("a", GroupAction::Dismiss).notification,
            strings(&["a", "b"]),
        );
        assert_eq!(n.content, content);
        assert_eq!(n.digest, "n1");
        assert!(!n.counted && !n.to_group);
        assert_eq!(n.recipients, strings(&["a", "b"]));
    }

    #[test]
    fn a_group_message_is_refused_to_non_members_and_the_muted() {
        let mut r = row(GroupKind::Managed, "a");
        assert_eq!(
            may_send(None, "a", Some(0), NOW),
            Err(GroupRefusal::NotFound)
        );
        assert_eq!(
            may_send(Some(&r), "x", None, NOW),
            Err(GroupRefusal::NotMember)
        );
        assert_eq!(may_send(Some(&r), "b", Some(0), NOW), Ok(()));
        assert_eq!(
            may_send(Some(&r), "b", Some(NOW + 1), NOW),
            Err(GroupRefusal::Muted)
        );
        // A muted group: only its owner sends.
        r.muted_until = NOW + 1;
        assert_eq!(
            may_send(Some(&r), "b", Some(0), NOW),
            Err(GroupRefusal::Muted)
        );
        assert_eq!(may_send(Some(&r), "a", Some(0), NOW), Ok(()));
        r.dismissed = NOW;
        assert_eq!(
            may_send(Some(&r), "a", Some(0), NOW),
            Err(GroupRefusal::Dismissed)
        );
    }

    #[test]
    fn a_group_message_goes_to_the_sender_then_the_members_or_its_audience() {
        let members = strings(&["a", "b", "c"]);
        assert_eq!(
            fanout("b", &members, &[]),
            (strings(&["b", "a", "c"]), vec![])
        );
        assert_eq!(
            fanout("b", &members, &strings(&["c", "x", "b", "c"])),
            (strings(&["b", "c"]), strings(&["c"]))
        );
    }
}
