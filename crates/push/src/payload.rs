//! What a notification says, and its shape for each provider: pure functions of a [`Content`]
//! and a device's token, so every rule of the payloads is testable without a network.
//!
//! - **Text**: the title is the sender's display name (private and system messages) or the
//!   group's name; the body the message's push text or a word by type (see
//!   [`Notification::of`]), after `sender: ` in a group. With localisation on, keys and
//!   arguments instead (`tidings_title_private` [sender], `tidings_title_group` [group,
//!   sender], `tidings_body_<type>` [text, sender], `tidings_body_recalled` [sender]), for
//!   the app to translate.
//! - **Grouping**: a thread per conversation (APNs `thread-id`, the data's `thread`); the
//!   message's uid as collapse id (APNs `apns-collapse-id`, FCM's Android `tag`, the Web Push
//!   data's `tag`), so that a recall's follow-up, or a notification sent again after a crash,
//!   replaces the one shown instead of adding a second.
//! - **Data-only**: no text at all (an APNs background push, an FCM data message), for apps
//!   that fetch or decrypt the message themselves; the data fields are the same.

use serde_json::{Value, json};
use tidings_engine::push::Notification;
use tidings_proto::conversation_type;

use crate::apns::ApnsRequest;

/// What kind of notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new message.
    Message,
    /// The withdrawal of an earlier notification whose message was recalled.
    Recall,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Recall => "recall",
        }
    }
}

/// One notification to one user, before it is shaped for a provider.
#[derive(Debug, Clone)]
pub struct Content {
    pub notification: Notification,
    pub kind: Kind,
    /// The message's seq in its conversation.
    pub seq: u64,
    pub msg_type: String,
    /// The uid of the message the notification is about (for a recall, the recalled one's).
    pub collapse: String,
    pub sender_name: String,
    /// The group's name, for a group message; empty otherwise.
    pub group_name: String,
    /// The user's unread count over all their conversations.
    pub badge: u64,
    /// The sender's data for the app (seed 004's `pushData`); empty for none.
    pub push_data: String,
    pub data_only: bool,
    pub localized: bool,
}

/// The text shown for a recalled message.
pub const RECALLED_TEXT: &str = "[Message recalled]";

impl Content {
    fn is_group(&self) -> bool {
        self.notification.conversation_type == conversation_type::GROUP
    }

    /// The conversation as the recipient sees it: `<type>:<target>`.
    pub fn thread(&self) -> String {
        format!(
            "{}:{}",
            self.notification.conversation_type, self.notification.target_id
        )
    }

    pub fn title(&self) -> String {
        if self.is_group() {
            self.group_name.clone()
        } else {
            self.sender_name.clone()
        }
    }

    pub fn body(&self) -> String {
        let text = match self.kind {
            Kind::Message => self.notification.text.as_str(),
            Kind::Recall => RECALLED_TEXT,
        };
        if self.is_group() {
            format!("{}: {text}", self.sender_name)
        } else {
            text.to_string()
        }
    }

    fn title_key(&self) -> (&'static str, Vec<String>) {
        if self.is_group() {
            (
                "tidings_title_group",
                vec![self.group_name.clone(), self.sender_name.clone()],
            )
        } else {
            ("tidings_title_private", vec![self.sender_name.clone()])
        }
    }

    fn body_key(&self) -> (String, Vec<String>) {
        match self.kind {
            Kind::Recall => (
                "tidings_body_recalled".into(),
                vec![self.sender_name.clone()],
            ),
            Kind::Message => {
                let kind = match self.msg_type.as_str() {
                    t @ ("text" | "image" | "file" | "voice" | "location" | "rich") => t,
                    _ => "other",
                };
                (
                    format!("tidings_body_{kind}"),
                    vec![self.notification.text.clone(), self.sender_name.clone()],
                )
            }
        }
    }

    /// The fields every provider's data carries (as strings, which FCM requires).
    fn data(&self) -> serde_json::Map<String, Value> {
        let n = &self.notification;
        let mut data = serde_json::Map::new();
        for (k, v) in [
            ("kind", self.kind.as_str().to_string()),
            ("uid", n.uid.clone()),
            ("tag", self.collapse.clone()),
            ("conversationType", n.conversation_type.to_string()),
            ("targetId", n.target_id.clone()),
            ("senderId", n.sender_id.clone()),
            ("senderName", self.sender_name.clone()),
            ("seq", self.seq.to_string()),
            ("sentTime", n.sent_time.to_string()),
            ("badge", self.badge.to_string()),
            ("thread", self.thread()),
        ] {
            data.insert(k.into(), Value::String(v));
        }
        if !self.push_data.is_empty() {
            data.insert("pushData".into(), Value::String(self.push_data.clone()));
        }
        data
    }
}

/// The FCM HTTP v1 `message` for `token`.
pub fn fcm_message(c: &Content, token: &str, ttl_secs: u64) -> Value {
    let mut android = json!({
        "priority": "HIGH",
        "ttl": format!("{ttl_secs}s"),
    });
    let mut apns_aps = serde_json::Map::new();
    let mut message = json!({ "token": token, "data": c.data() });
    if c.data_only {
        apns_aps.insert("content-available".into(), json!(1));
        message["apns"] = json!({
            "headers": { "apns-priority": "5", "apns-push-type": "background" },
            "payload": { "aps": apns_aps },
        });
    } else {
        let mut notification = json!({
            "tag": c.collapse,
            "notification_count": c.badge,
        });
        let mut alert = serde_json::Map::new();
        if c.localized {
            let (title_key, title_args) = c.title_key();
            let (body_key, body_args) = c.body_key();
            notification["title_loc_key"] = json!(title_key);
            notification["title_loc_args"] = json!(title_args);
            notification["body_loc_key"] = json!(body_key);
            notification["body_loc_args"] = json!(body_args);
            alert.insert("title-loc-key".into(), json!(title_key));
            alert.insert("title-loc-args".into(), json!(title_args));
            alert.insert("loc-key".into(), json!(body_key));
            alert.insert("loc-args".into(), json!(body_args));
        } else {
            message["notification"] = json!({ "title": c.title(), "body": c.body() });
        }
        android["notification"] = notification;
        apns_aps.insert("badge".into(), json!(c.badge));
        apns_aps.insert("thread-id".into(), json!(c.thread()));
        apns_aps.insert("mutable-content".into(), json!(1));
        if !alert.is_empty() {
            apns_aps.insert("alert".into(), Value::Object(alert));
        }
        message["apns"] = json!({
            "headers": { "apns-priority": "10", "apns-collapse-id": c.collapse },
            "payload": { "aps": apns_aps },
        });
    }
    message["android"] = android;
    message
}

/// The APNs request for a device token of `topic` (the app's bundle id).
pub fn apns_request(
    c: &Content,
    token: &str,
    sandbox: bool,
    topic: &str,
    expiration: i64,
) -> ApnsRequest {
    let data = Value::Object(c.data());
    let (push_type, priority, aps) = if c.data_only {
        ("background", 5, json!({ "content-available": 1 }))
    } else {
        let alert = if c.localized {
            let (title_key, title_args) = c.title_key();
            let (body_key, body_args) = c.body_key();
            json!({
                "title-loc-key": title_key,
                "title-loc-args": title_args,
                "loc-key": body_key,
                "loc-args": body_args,
            })
        } else {
            json!({ "title": c.title(), "body": c.body() })
        };
        let mut aps = json!({
            "alert": alert,
            "badge": c.badge,
            "thread-id": c.thread(),
            "mutable-content": 1,
        });
        if c.kind == Kind::Message {
            aps["sound"] = json!("default");
        }
        ("alert", 10, aps)
    };
    ApnsRequest {
        token: token.to_string(),
        sandbox,
        topic: topic.to_string(),
        push_type: push_type.to_string(),
        priority,
        collapse_id: Some(c.collapse.clone()),
        expiration,
        payload: json!({ "aps": aps, "tidings": data }),
    }
}

/// The Web Push payload (JSON, encrypted before it is sent): the fields it always had, and the
/// title, badge and tag a service worker shows.
pub fn webpush_body(c: &Content) -> Vec<u8> {
    let n = &c.notification;
    let mut body = json!({
        "uid": n.uid,
        "conversationType": n.conversation_type,
        "targetId": n.target_id,
        "senderId": n.sender_id,
        "sentTime": n.sent_time,
        "kind": c.kind.as_str(),
        "tag": c.collapse,
        "seq": c.seq,
        "badge": c.badge,
        "senderName": c.sender_name,
    });
    if !c.push_data.is_empty() {
        body["pushData"] = json!(c.push_data);
    }
    if !c.data_only {
        body["title"] = json!(c.title());
        body["text"] = json!(match c.kind {
            Kind::Message => n.text.as_str(),
            Kind::Recall => RECALLED_TEXT,
        });
    }
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(conversation_type: u32, kind: Kind) -> Content {
        Content {
            notification: Notification {
                uid: "01UID".into(),
                conversation_type,
                target_id: if conversation_type == conversation_type::GROUP {
                    "g1".into()
                } else {
                    "alice".into()
                },
                sender_id: "alice".into(),
                text: "hi there".into(),
                sent_time: 1_700_000_000_000,
            },
            kind,
            seq: 7,
            msg_type: "text".into(),
            collapse: "01UID".into(),
            sender_name: "Alice".into(),
            group_name: "Climbers".into(),
            badge: 3,
            push_data: String::new(),
            data_only: false,
            localized: false,
        }
    }

    #[test]
    fn fcm_messages_carry_text_badge_tag_and_string_data() {
        let m = fcm_message(&content(conversation_type::PRIVATE, Kind::Message), "t", 60);
        assert_eq!(m["token"], "t");
        assert_eq!(
            m["notification"],
            json!({"title": "Alice", "body": "hi there"})
        );
        assert_eq!(m["android"]["priority"], "HIGH");
        assert_eq!(m["android"]["notification"]["tag"], "01UID");
        assert_eq!(m["android"]["notification"]["notification_count"], 3);
        assert_eq!(m["apns"]["payload"]["aps"]["badge"], 3);
        assert_eq!(m["apns"]["payload"]["aps"]["mutable-content"], 1);
        assert!(
            m["data"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_string),
            "FCM data values are strings"
        );
        assert_eq!(m["data"]["kind"], "message");
        assert_eq!(m["data"]["thread"], "1:alice");
        assert!(m["data"].get("pushData").is_none(), "none given");
        let mut c = content(conversation_type::PRIVATE, Kind::Message);
        c.push_data = r#"{"deepLink":"chat/alice"}"#.into();
        let m = fcm_message(&c, "t", 60);
        assert_eq!(m["data"]["pushData"], r#"{"deepLink":"chat/alice"}"#);
        let r = apns_request(&c, "aa", false, "com.example", 0);
        assert_eq!(
            r.payload["tidings"]["pushData"],
            r#"{"deepLink":"chat/alice"}"#
        );
    }

    #[test]
    fn group_notifications_name_the_group_and_the_sender() {
        let c = content(conversation_type::GROUP, Kind::Message);
        assert_eq!(
            (c.title(), c.body()),
            ("Climbers".into(), "Alice: hi there".into())
        );
        let r = apns_request(&c, "aa", false, "com.example", 0);
        assert_eq!(r.payload["aps"]["thread-id"], "3:g1");
        assert_eq!(r.payload["aps"]["alert"]["title"], "Climbers");
        assert_eq!(r.collapse_id.as_deref(), Some("01UID"));
        assert_eq!((r.push_type.as_str(), r.priority), ("alert", 10));
    }

    #[test]
    fn data_only_notifications_carry_no_text() {
        let mut c = content(conversation_type::PRIVATE, Kind::Message);
        c.data_only = true;
        let m = fcm_message(&c, "t", 60);
        assert!(m.get("notification").is_none() && m["android"].get("notification").is_none());
        assert!(!m.to_string().contains("hi there"), "{m}");
        let r = apns_request(&c, "aa", true, "com.example", 0);
        assert_eq!((r.push_type.as_str(), r.priority), ("background", 5));
        assert_eq!(r.payload["aps"], json!({"content-available": 1}));
        assert!(!r.payload.to_string().contains("hi there"));
        assert!(
            !String::from_utf8(webpush_body(&c))
                .unwrap()
                .contains("hi there")
        );
    }

    #[test]
    fn localised_notifications_carry_keys_and_arguments() {
        let mut c = content(conversation_type::GROUP, Kind::Message);
        c.localized = true;
        c.msg_type = "image".into();
        let r = apns_request(&c, "aa", false, "com.example", 0);
        let alert = &r.payload["aps"]["alert"];
        assert_eq!(alert["title-loc-key"], "tidings_title_group");
        assert_eq!(alert["title-loc-args"], json!(["Climbers", "Alice"]));
        assert_eq!(alert["loc-key"], "tidings_body_image");
        assert!(alert.get("body").is_none());
        let m = fcm_message(&c, "t", 60);
        assert_eq!(
            m["android"]["notification"]["body_loc_key"],
            "tidings_body_image"
        );
        assert!(m.get("notification").is_none());
    }

    #[test]
    fn a_recall_replaces_the_notification_it_withdraws() {
        let mut c = content(conversation_type::PRIVATE, Kind::Recall);
        c.collapse = "01RECALLED".into();
        let r = apns_request(&c, "aa", false, "com.example", 0);
        assert_eq!(r.collapse_id.as_deref(), Some("01RECALLED"));
        assert_eq!(r.payload["aps"]["alert"]["body"], RECALLED_TEXT);
        assert!(
            r.payload["aps"].get("sound").is_none(),
            "a recall is silent"
        );
        let m = fcm_message(&c, "t", 60);
        assert_eq!(m["android"]["notification"]["tag"], "01RECALLED");
        assert_eq!(m["data"]["kind"], "recall");
    }
}
