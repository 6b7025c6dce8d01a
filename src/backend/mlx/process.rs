//! Kind `mlx`'s side of its worker (`soakd mlx-worker`, this same binary; the worker's own side
//! is `crate::mlx::worker`): the command that starts it, and its output read as JSON lines,
//! bounded. The process itself — pipes, stderr tail, reaping, how it ended — is the shared
//! `backend::worker`.

use crate::backend::worker::Decode;
use serde_json::Value;
use std::path::Path;
use tokio::process::Command;

/// The longest line the worker may send (a token's text is far shorter).
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// `exe mlx-worker --model DIR`.
pub(super) fn command(exe: &Path, model: &Path) -> Command {
    let mut c = Command::new(exe);
    c.arg("mlx-worker").arg("--model").arg(model);
    c
}

/// A worker line that was not one.
#[derive(Debug)]
pub(super) enum ReadError {
    TooLong,
    NotJson(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLong => write!(f, "the worker sent a line over {MAX_LINE_BYTES} bytes"),
            ReadError::NotJson(l) => write!(f, "the worker sent a line that is not JSON: {l}"),
        }
    }
}

/// The worker's stdout as JSON values, one a line; blank lines are skipped.
#[derive(Default)]
pub(super) struct JsonLines {
    buf: Vec<u8>,
    failed: bool,
}

impl Decode for JsonLines {
    type Msg = Value;
    type Error = ReadError;

    fn feed(&mut self, mut bytes: &[u8]) -> Vec<Result<Value, ReadError>> {
        let mut out = Vec::new();
        while !self.failed && !bytes.is_empty() {
            let (piece, rest, complete) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            self.buf.extend_from_slice(piece);
            if self.buf.len() > MAX_LINE_BYTES {
                self.failed = true;
                out.push(Err(ReadError::TooLong));
                break;
            }
            if !complete {
                break;
            }
            let line = std::mem::take(&mut self.buf);
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            out.push(serde_json::from_str(text).map_err(|_| ReadError::NotJson(crate::text::bounded(text, 300))));
        }
        out
    }

    fn is_fatal(error: &ReadError) -> bool {
        matches!(error, ReadError::TooLong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_values_bounded() {
        let mut d = JsonLines::default();
        let got = d.feed(b"{\"event\":\"ready\"}\n\n{\"event\":");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap()["event"], "ready");
        let got = d.feed(b"\"token\"}\nnot json\n");
        assert_eq!(got[0].as_ref().unwrap()["event"], "token");
        assert!(matches!(got[1], Err(ReadError::NotJson(_))));
        let got = d.feed(&vec![b'x'; MAX_LINE_BYTES + 1]);
        assert!(matches!(got[..], [Err(ReadError::TooLong)]));
        assert!(d.feed(b"{}\n").is_empty(), "nothing is read after a line over the limit");
    }
}
