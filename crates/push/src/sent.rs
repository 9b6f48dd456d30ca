//! What one request to a mobile push provider (FCM, APNs) came to, and the reading of an answer
//! that both clients share.
//!
//! The clients send one request and classify the answer; the caller (the push worker) decides
//! what to do with it: remove a dead token, retry later, or log and give up.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// What one request to a push provider came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The provider accepted it.
    Delivered,
    /// The token is dead (FCM: HTTP 404 or errorCode UNREGISTERED; APNs: 410, or 400 with
    /// reason BadDeviceToken): the caller removes it.
    Unregistered,
    /// Try again later: a network error, 429 or 5xx; with the Retry-After (seconds form) when the
    /// answer had one.
    Retry(Option<Duration>),
    /// Refused for good (any other status, e.g. 400 INVALID_ARGUMENT, 403 on APNs after one
    /// fresh token, a bad key): the text says why (status + provider's reason), for logs.
    Failed(String),
}

/// The most of an answer's body that is read: a provider's error JSON is far smaller, and a
/// misbehaving server must not make us buffer without end.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;

/// The most of a provider's error text kept in [`Sent::Failed`]: it goes to logs.
const MAX_REASON: usize = 300;

/// A `Retry-After` in its seconds form. The HTTP-date form is not read: neither FCM nor APNs
/// documents sending it, and a date would need a trusted clock to turn into a wait.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Up to [`MAX_ANSWER`] bytes of the body; what a broken connection cut off is simply missing
/// (the status, already read, is what counts).
pub(crate) async fn read_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ANSWER - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER {
            break;
        }
    }
    body
}

/// What a request that got no answer came to: a request that could not even be built (a header
/// value that is not one) fails for good; anything else (connect, timeout, reset) is retried.
pub(crate) fn unanswered(provider: &str, e: &reqwest::Error) -> Sent {
    if e.is_builder() {
        Sent::Failed(format!("a request to {provider} cannot be made: {e}"))
    } else {
        tracing::debug!(error = %e, provider, "a push provider did not answer");
        Sent::Retry(None)
    }
}

/// `text` cut to [`MAX_REASON`] characters.
pub(crate) fn short(text: &str) -> &str {
    match text.char_indices().nth(MAX_REASON) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_is_read_in_its_seconds_form_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_REASON + 5);
        assert_eq!(short(&long).chars().count(), MAX_REASON);
        assert_eq!(short("short"), "short");
    }
}
