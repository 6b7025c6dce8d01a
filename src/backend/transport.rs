//! Plumbing every HTTP client in `backend` shares, below them all: a transport error in words
//! (its whole source chain) and a body read to a size limit.

use crate::text::{MAX_ERROR_BYTES, bounded};
use reqwest::Response;

/// Every message in an error's source chain, joined: reqwest's own message alone hides the cause.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        source = s.source();
    }
    bounded(&parts.join(": "), MAX_ERROR_BYTES)
}

/// Reads at most `max` bytes of a body; `complete` is false when there was more.
pub(crate) async fn read_bounded(mut response: Response, max: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if buf.len() + chunk.len() > max {
            buf.extend_from_slice(&chunk[..max - buf.len()]);
            return Ok((buf, false));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, true))
}
