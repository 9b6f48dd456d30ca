//! Input rules: identifiers, message types and contents. Each refusal is a client-visible code
//! with a detail that names the rule, never the input.

use serde_json::{Map, Value};
use tidings_proto::Code;
use tidings_store::GroupRefusal;

/// A refusal: a code and a detail safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub detail: String,
}

impl Refusal {
    pub fn new(code: Code, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            detail: detail.into(),
        }
    }

    /// The text sent to the client: the code's fixed text, then the detail.
    pub fn text(&self) -> String {
        if self.detail.is_empty() {
            self.code.text().to_string()
        } else {
            format!("{}: {}", self.code.text(), self.detail)
        }
    }
}

impl From<Code> for Refusal {
    fn from(code: Code) -> Refusal {
        Refusal::new(code, "")
    }
}

/// The code a client sees for a group refusal. Here, below both, because the committer answers a
/// group message the store refused and the group features answer the changes it refused.
pub(crate) fn group_refusal_code(r: GroupRefusal) -> Code {
    match r {
        GroupRefusal::NotFound => Code::GroupNotFound,
        GroupRefusal::Dismissed => Code::GroupDismissed,
        GroupRefusal::Exists => Code::GroupExists,
        GroupRefusal::NotMember => Code::NotInGroup,
        GroupRefusal::Muted => Code::MutedInGroup,
        GroupRefusal::Full => Code::GroupFull,
        // Seed 004 gives this code to an invalid discussion id too.
        GroupRefusal::NotDiscussion => Code::GroupNotFound,
        GroupRefusal::NotOwner => Code::Unauthorized,
        GroupRefusal::InvitesClosed => Code::DiscussionInvitesClosed,
    }
}

/// User ids: 1-64 of `A-Z a-z 0-9 _ - . @`. Device ids follow the same rule.
pub fn is_user_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
}

/// A user id as a target, or the refusal that says what one is.
pub fn check_user_id(s: &str) -> Result<(), Refusal> {
    if is_user_id(s) {
        Ok(())
    } else {
        Err(Refusal::new(
            Code::InvalidTarget,
            "a user id is 1-64 of A-Z a-z 0-9 _ - . @",
        ))
    }
}

/// Group ids follow the rule of user ids.
pub fn check_group_id(s: &str) -> Result<(), Refusal> {
    if is_user_id(s) {
        Ok(())
    } else {
        Err(Refusal::new(
            Code::GroupNotFound,
            "a group id is 1-64 of A-Z a-z 0-9 _ - . @",
        ))
    }
}

/// Client message ids: 1-64 printable ASCII characters without spaces.
pub fn is_client_msg_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The message types whose content the server checks.
pub const BUILTIN_TYPES: &[&str] = &["text", "image", "file", "voice", "location", "rich"];

/// Message types: a built-in one, or an app-defined name of 1-32 of `A-Z a-z 0-9 _ - . :`.
/// Names beginning with `tidings:` are the server's own (user events).
pub fn check_msg_type(t: &str) -> Result<(), Refusal> {
    if t.starts_with("tidings:") {
        return Err(Refusal::new(
            Code::InvalidMessageType,
            "types beginning with tidings: are reserved for the server",
        ));
    }
    let ok = !t.is_empty()
        && t.len() <= 32
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            Code::InvalidMessageType,
            "a message type is 1-32 of A-Z a-z 0-9 _ - . :",
        ))
    }
}

/// How deep the objects and arrays of a message's content may nest (its own object is level 1).
/// Whatever reads content back parses it with a nesting limit of its own (serde_json's is 128
/// levels, and server events such as edits wrap content a level or two deeper), so content is
/// bounded well below it: what is accepted is what every reader gets back whole.
pub const MAX_CONTENT_DEPTH: usize = 32;

/// Content is a JSON object of at most `max_bytes` nested at most [`MAX_CONTENT_DEPTH`] levels;
/// built-in types have required fields.
pub fn check_content(msg_type: &str, content: &str, max_bytes: usize) -> Result<(), Refusal> {
    if content.trim().is_empty() {
        return Err(Code::ContentEmpty.into());
    }
    if content.len() > max_bytes {
        return Err(Refusal::new(
            Code::ContentTooLarge,
            format!("{} bytes, the limit is {max_bytes}", content.len()),
        ));
    }
    // Before any parse: the syntax checks below do not all bound nesting (skipping a value
    // does not), and a full parse of very deep input fails with a misleading "not JSON".
    if nests_deeper_than(content, MAX_CONTENT_DEPTH) {
        return Err(Refusal::new(
            Code::ContentTooDeep,
            format!("objects and arrays nest at most {MAX_CONTENT_DEPTH} levels"),
        ));
    }
    if fast_path_ok(msg_type, content) {
        return Ok(());
    }
    let value: Value = serde_json::from_str(content)
        .map_err(|_| Refusal::new(Code::ContentInvalid, "content is not valid JSON"))?;
    let Value::Object(obj) = value else {
        return Err(Refusal::new(
            Code::ContentInvalid,
            "content must be a JSON object",
        ));
    };
    match msg_type {
        "text" => {
            let text = need_str(&obj, "text")?;
            if text.trim().is_empty() {
                return Err(Code::ContentEmpty.into());
            }
        }
        "image" => {
            need_str(&obj, "url")?;
            opt_str(&obj, "thumbnail")?;
        }
        "file" => {
            need_str(&obj, "url")?;
            need_str(&obj, "name")?;
            need_num(&obj, "size")?;
        }
        "voice" => {
            need_str(&obj, "url")?;
            need_num(&obj, "duration")?;
        }
        "location" => {
            let lat = need_num(&obj, "lat")?;
            let lng = need_num(&obj, "lng")?;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
                return Err(Refusal::new(
                    Code::ContentInvalid,
                    "lat must be within -90..90 and lng within -180..180",
                ));
            }
        }
        "rich" => {
            need_str(&obj, "title")?;
            opt_str(&obj, "url")?;
        }
        _ => {}
    }
    Ok(())
}

/// Whether the objects and arrays of JSON text nest deeper than `max` levels. Counts brackets
/// outside strings in one pass, without parsing; text that is not JSON gets some answer, and is
/// refused by the syntax check anyway.
fn nests_deeper_than(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Stored content as JSON to embed as it is in an answer (see [`MAX_CONTENT_DEPTH`] for why not
/// as a tree). Content is checked to be JSON before it is stored, so `None` (to be shown as
/// `null`) means the store holds something no send could have put there: logged, not passed
/// over.
pub fn content_json(content: &str) -> Option<&serde_json::value::RawValue> {
    match serde_json::from_str(content) {
        Ok(raw) => Some(raw),
        Err(e) => {
            tracing::error!(error = %e, "stored message content is not JSON: shown as null");
            None
        }
    }
}

/// The text of a (valid) message that search finds it by: a text message's text, a file's
/// name, a rich message's title and description, a location's name, and an app-defined type's
/// `text` field if it has one. Empty when there is nothing to find.
pub fn search_text(msg_type: &str, content: &str) -> String {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(content) else {
        return String::new();
    };
    let fields: &[&str] = match msg_type {
        "image" | "voice" => &[],
        "file" | "location" => &["name"],
        "rich" => &["title", "content"],
        _ => &["text"],
    };
    let parts: Vec<&str> = fields
        .iter()
        .filter_map(|f| obj.get(*f).and_then(Value::as_str))
        .collect();
    parts.join("\n")
}

/// Accepts the common valid contents without building a JSON tree: an app-defined type's object
/// is only checked for syntax, and a text message's `text` is read in place. Anything this does
/// not accept goes through the full check, which says what is wrong.
fn fast_path_ok(msg_type: &str, content: &str) -> bool {
    if !content.trim_start().starts_with('{') {
        return false;
    }
    match msg_type {
        "text" => {
            #[derive(serde::Deserialize)]
            struct Text<'a> {
                #[serde(borrow)]
                text: std::borrow::Cow<'a, str>,
            }
            serde_json::from_str::<Text<'_>>(content).is_ok_and(|t| !t.text.trim().is_empty())
        }
        t if BUILTIN_TYPES.contains(&t) => false,
        _ => serde_json::from_str::<serde::de::IgnoredAny>(content).is_ok(),
    }
}

fn need_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, Refusal> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(Refusal::new(
            Code::ContentInvalid,
            format!("field {key:?} must be a non-empty string"),
        )),
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> Result<(), Refusal> {
    match obj.get(key) {
        None | Some(Value::String(_)) => Ok(()),
        _ => Err(Refusal::new(
            Code::ContentInvalid,
            format!("field {key:?} must be a string"),
        )),
    }
}

fn need_num(obj: &Map<String, Value>, key: &str) -> Result<f64, Refusal> {
    match obj.get(key).and_then(Value::as_f64) {
        Some(n) => Ok(n),
        None => Err(Refusal::new(
            Code::ContentInvalid,
            format!("field {key:?} must be a number"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_user_id("alice.b@x-1_2"));
        assert!(!is_user_id(""));
        assert!(!is_user_id("a b"));
        assert!(!is_user_id("a|b"));
        assert!(!is_user_id(&"a".repeat(65)));
        assert!(is_client_msg_id("c-1"));
        assert!(!is_client_msg_id("c 1"));
    }

    /// A content object (valid for text, image and rich messages) whose field `a` holds an
    /// object holding an object ... `levels` deep in all.
    fn nested(levels: usize) -> String {
        let inner = format!(
            "{}{{}}{}",
            r#"{"a":"#.repeat(levels - 2),
            "}".repeat(levels - 2)
        );
        format!(r#"{{"text":"hi","url":"u","title":"t","a":{inner}}}"#)
    }

    #[test]
    fn content_nesting_is_bounded() {
        let check = |t, c: &str| check_content(t, c, 1 << 20).map_err(|r| r.code);
        let at_limit = nested(MAX_CONTENT_DEPTH);
        assert_eq!(at_limit.matches('{').count(), MAX_CONTENT_DEPTH);
        assert_eq!(check("text", &at_limit), Ok(()));
        assert_eq!(check("app:card", &at_limit), Ok(()));
        let over = nested(MAX_CONTENT_DEPTH + 1);
        for t in ["text", "app:card", "image", "rich"] {
            assert_eq!(check(t, &over), Err(Code::ContentTooDeep), "{t}");
        }
        // Arrays count as objects do; far deeper content is refused the same way (not as
        // invalid JSON, which is what a parser's own limit would say).
        let arrays = format!(
            r#"{{"text":"x","a":{}1{}}}"#,
            "[".repeat(32),
            "]".repeat(32)
        );
        assert_eq!(check("text", &arrays), Err(Code::ContentTooDeep));
        let deep = nested(200);
        assert_eq!(check("app:card", &deep), Err(Code::ContentTooDeep));
        // Brackets inside strings, escaped quotes included, are text.
        // Read back raw, content is whole at any depth.
        let deep = nested(300);
        assert_eq!(content_json(&deep).map(|r| r.get()), Some(deep.as_str()));
        assert!(content_json("not json").is_none());
        let quoted = format!(r#"{{"text":"{}\"{}"}}"#, "[{".repeat(40), "}]".repeat(40));
        assert_eq!(check("text", &quoted), Ok(()));
    }

    #[test]
    fn contents() {
        let check = |t, c| check_content(t, c, 100).map_err(|r| r.code);
        assert_eq!(check("text", r#"{"text":"hi"}"#), Ok(()));
        assert_eq!(check("text", ""), Err(Code::ContentEmpty));
        assert_eq!(check("text", r#"{"text":"  "}"#), Err(Code::ContentEmpty));
        assert_eq!(check("text", r#"{"txt":"hi"}"#), Err(Code::ContentInvalid));
        assert_eq!(check("text", "[1]"), Err(Code::ContentInvalid));
        assert_eq!(check("text", "{"), Err(Code::ContentInvalid));
        let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(200));
        assert_eq!(check("text", &big), Err(Code::ContentTooLarge));
        assert_eq!(
            check("image", r#"{"url":"https://x/y.png","thumbnail":"AAA"}"#),
            Ok(())
        );
        assert_eq!(
            check("file", r#"{"url":"u","name":"n"}"#),
            Err(Code::ContentInvalid)
        );
        assert_eq!(check("voice", r#"{"url":"u","duration":3}"#), Ok(()));
        assert_eq!(
            check("location", r#"{"lat":1,"lng":200}"#),
            Err(Code::ContentInvalid)
        );
        assert_eq!(check("app:card", r#"{"anything":[1,2]}"#), Ok(()));
        assert_eq!(check_msg_type("app:card"), Ok(()));
        assert_eq!(
            check_msg_type("").map_err(|r| r.code),
            Err(Code::InvalidMessageType)
        );
        assert_eq!(search_text("text", r#"{"text":"你好世界"}"#), "你好世界");
        assert_eq!(
            search_text("file", r#"{"url":"u","name":"a.pdf","size":1}"#),
            "a.pdf"
        );
        assert_eq!(
            search_text("rich", r#"{"title":"T","content":"C"}"#),
            "T\nC"
        );
        assert_eq!(search_text("image", r#"{"url":"u"}"#), "");
        assert_eq!(search_text("app:card", r#"{"text":"x","n":1}"#), "x");
        assert_eq!(search_text("app:card", r#"{"n":1}"#), "");
        assert_eq!(
            check_msg_type("tidings:conversation").map_err(|r| r.code),
            Err(Code::InvalidMessageType),
            "the server's own types"
        );
    }
}
