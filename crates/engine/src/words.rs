//! Sensitive words: the app server's list of words messages may not hold. A message holding a
//! word without a replacement is refused (21501) and nothing is stored; words with a replacement
//! are replaced before storage, and the sender is told (PUBACK `notice` 21502, with the content
//! as stored). Matching is case-insensitive for ASCII letters, over every string of the content
//! and the push text. A message holding both kinds of words is refused.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value;
use tidings_proto::Code;

use crate::validate::Refusal;

/// The most sensitive words kept, and the longest word or replacement (in characters).
pub const MAX_WORDS: u64 = 10_000;
pub const MAX_WORD_CHARS: usize = 32;

/// The compiled list.
#[derive(Default)]
pub struct WordFilter {
    matcher: Option<AhoCorasick>,
    /// Each word's replacement, by pattern index.
    replacements: Vec<Option<String>>,
}

/// What a filter did to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    pub content: String,
    pub push_text: String,
}

impl WordFilter {
    pub fn new(words: Vec<(String, Option<String>)>) -> WordFilter {
        if words.is_empty() {
            return WordFilter::default();
        }
        let (patterns, replacements): (Vec<String>, Vec<Option<String>>) =
            words.into_iter().unzip();
        // Longest first at each position, so "badness" wins over "bad".
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        WordFilter {
            matcher,
            replacements,
        }
    }

    /// The content and push text with their words replaced, `Ok(None)` if they hold none, or
    /// the refusal if they hold a word without a replacement.
    pub fn apply(&self, content: &str, push_text: &str) -> Result<Option<Filtered>, Refusal> {
        let Some(matcher) = &self.matcher else {
            return Ok(None);
        };
        let blocked = |text: &str| {
            matcher
                .find_iter(text)
                .any(|m| self.replacements[m.pattern().as_usize()].is_none())
        };
        let mut value: Value = match serde_json::from_str(content) {
            Ok(v) => v,
            // Content was validated as a JSON object before; nothing to filter otherwise.
            Err(_) => return Ok(None),
        };
        let mut strings = Vec::new();
        collect_strings(&value, &mut strings);
        if strings.iter().any(|s| blocked(s)) || blocked(push_text) {
            return Err(Refusal::from(Code::SensitiveWordBlocked));
        }
        let replaced_push = self.replace(matcher, push_text);
        let changed = replace_strings(&mut value, &|s| self.replace(matcher, s));
        if !changed && replaced_push.is_none() {
            return Ok(None);
        }
        Ok(Some(Filtered {
            content: if changed {
                value.to_string()
            } else {
                content.to_string()
            },
            push_text: replaced_push.unwrap_or_else(|| push_text.to_string()),
        }))
    }

    /// `text` with its words replaced; `None` if it holds none.
    fn replace(&self, matcher: &AhoCorasick, text: &str) -> Option<String> {
        let mut out = String::new();
        let mut last = 0;
        for m in matcher.find_iter(text) {
            out.push_str(&text[last..m.start()]);
            out.push_str(self.replacements[m.pattern().as_usize()].as_deref()?);
            last = m.end();
        }
        if last == 0 {
            return None;
        }
        out.push_str(&text[last..]);
        Some(out)
    }
}

fn collect_strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// Replaces every string of `v` that `f` changes; whether any changed.
fn replace_strings(v: &mut Value, f: &dyn Fn(&str) -> Option<String>) -> bool {
    match v {
        Value::String(s) => match f(s) {
            Some(new) => {
                *s = new;
                true
            }
            None => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, i| replace_strings(i, f) | changed),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, i| replace_strings(i, f) | changed),
        _ => false,
    }
}

/// Checks a word and its replacement as the API takes them.
pub fn check_word(word: &str, replacement: Option<&str>) -> Result<(), Refusal> {
    let ok = |s: &str| {
        let n = s.chars().count();
        n <= MAX_WORD_CHARS && !s.chars().any(char::is_control)
    };
    if word.trim().is_empty() || !ok(word) || !replacement.is_none_or(ok) {
        return Err(Refusal::new(
            Code::BadRequest,
            format!(
                "a word is 1-{MAX_WORD_CHARS} characters, its replacement at most \
                 {MAX_WORD_CHARS}, without control characters"
            ),
        ));
    }
    Ok(())
}

impl crate::Engine {
    fn word_filter(&self) -> std::sync::Arc<WordFilter> {
        self.inner
            .words
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the sensitive words in a message about to be stored; whether any were. Refuses
    /// a message holding a word without a replacement.
    pub(crate) fn filter_words(
        &self,
        message: &mut crate::commit::PendingPublish,
    ) -> Result<bool, Refusal> {
        let Some(filtered) = self
            .word_filter()
            .apply(&message.content, &message.push_text)?
        else {
            return Ok(false);
        };
        message.content = filtered.content;
        message.push_text = filtered.push_text;
        if !message.search_text.is_empty() {
            message.search_text = crate::validate::search_text(&message.msg_type, &message.content);
        }
        Ok(true)
    }

    /// The new content of an edit, with its sensitive words replaced (or the refusal).
    pub(crate) fn filter_edit(&self, content: String) -> Result<String, Refusal> {
        Ok(match self.word_filter().apply(&content, "")? {
            Some(f) => f.content,
            None => content,
        })
    }

    /// Reads the sensitive words from the store and uses them from now on.
    pub async fn load_sensitive_words(&self) -> Result<(), crate::ApiError> {
        let words = self.sensitive_words().await?;
        *self.inner.words.write().unwrap_or_else(|p| p.into_inner()) =
            std::sync::Arc::new(WordFilter::new(words));
        Ok(())
    }

    /// The sensitive words, each with its replacement (`None`: refused).
    pub async fn sensitive_words(&self) -> Result<Vec<(String, Option<String>)>, crate::ApiError> {
        self.inner.store.sensitive_words().await.map_err(|e| {
            tracing::error!(error = %e, "sensitive words read failed");
            crate::ApiError::from(Code::ServerError)
        })
    }

    /// Adds or changes sensitive words (`Some` replacement: replaced; `None`: refused), or with
    /// `remove` removes them; applies the list from the next message on.
    pub async fn change_sensitive_words(
        &self,
        words: Vec<(String, Option<String>)>,
        remove: bool,
    ) -> Result<(), crate::ApiError> {
        if words.is_empty() || words.len() > 100 {
            return Err(crate::ApiError(Refusal::new(
                Code::BadRequest,
                "give 1-100 words",
            )));
        }
        for (word, replacement) in &words {
            check_word(word, replacement.as_deref()).map_err(crate::ApiError)?;
        }
        let ops = words
            .into_iter()
            .map(|(word, replacement)| {
                if remove {
                    tidings_store::WriteOp::RemoveSensitiveWord { word }
                } else {
                    tidings_store::WriteOp::SetSensitiveWord {
                        word,
                        replacement,
                        max: MAX_WORDS,
                    }
                }
            })
            .collect();
        let results = self.write(ops).await?;
        self.load_sensitive_words().await?;
        if results
            .iter()
            .any(|r| matches!(r, tidings_store::WriteResult::WordsFull))
        {
            return Err(crate::ApiError(Refusal::new(
                Code::BadRequest,
                format!("at most {MAX_WORDS} sensitive words; the others were added"),
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> WordFilter {
        WordFilter::new(vec![
            ("darn".into(), Some("d**n".into())),
            ("heck".into(), Some("h*ck".into())),
            ("forbidden".into(), None),
        ])
    }

    #[test]
    fn words_are_replaced_in_every_string_case_insensitively() {
        let got = filter()
            .apply(r#"{"text":"Darn it, heck","meta":["DARN"],"n":1}"#, "heck")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&got.content).unwrap();
        assert_eq!(v["text"], "d**n it, h*ck");
        assert_eq!(v["meta"][0], "d**n");
        assert_eq!(v["n"], 1);
        assert_eq!(got.push_text, "h*ck");
    }

    #[test]
    fn a_word_without_a_replacement_refuses_the_message() {
        let refused = filter()
            .apply(r#"{"text":"darn, this is FORBIDDEN"}"#, "")
            .unwrap_err();
        assert_eq!(refused.code, Code::SensitiveWordBlocked);
        assert!(filter().apply(r#"{"text":"fine"}"#, "forbidden").is_err());
    }

    #[test]
    fn clean_messages_and_empty_lists_change_nothing() {
        assert_eq!(filter().apply(r#"{"text":"all good"}"#, "").unwrap(), None);
        assert_eq!(
            WordFilter::new(Vec::new())
                .apply(r#"{"text":"darn"}"#, "")
                .unwrap(),
            None
        );
    }

    #[test]
    fn word_rules() {
        assert!(check_word("ok", None).is_ok());
        assert!(check_word(" ", None).is_err());
        assert!(check_word(&"x".repeat(33), None).is_err());
        assert!(check_word("ok", Some(&"y".repeat(33))).is_err());
    }
}
