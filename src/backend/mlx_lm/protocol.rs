//! The mlx-lm worker's protocol: the lines soakd writes (`generate_line`, `cancel_line`,
//! `stats_line`) and the parsing of the lines the worker writes (`Msg`), with their bounds.
//!
//! Protocol, version 1: JSON, one object per line. soakd → worker (stdin); the first line is
//! the worker's own source (see `worker`), then:
//!
//! ```text
//! {"op":"generate","id":7,"messages":[{"role":"system","content":"…"},{"role":"user","content":"…"}],
//!  "max_tokens":256,"temperature":null,"top_p":null,"stream":true}
//! {"op":"cancel","id":7}            stop generation 7 (or skip it if not begun)
//! {"op":"stats","id":8}             MLX memory now
//! end of stdin                      exit
//! ```
//!
//! worker → soakd (stdout; the worker points its own fd 1 at stderr so no library print can
//! break the protocol):
//!
//! ```text
//! {"t":"hello","v":1,"pid":…,"python":"3.11.7","mlx":"0.32.4","mlx_lm":"0.32.2","device":"Device(gpu, 0)","model":"…"}
//! {"t":"loaded","id":7,"load_ms":6760.1,"active_bytes":…,"peak_bytes":…,"cache_bytes":…}
//! {"t":"tok","id":7,"text":" world"}                  one per token (streamed requests only)
//! {"t":"done","id":7,"finish_reason":"length"|"stop"|"cancelled","completion_tokens":256,"text":"…",
//!  "prompt_tokens":13,"prompt_tps":…,"generation_tps":…,"ttft_ms":…,"total_ms":…,
//!  "active_bytes":…,"peak_bytes":…,"cache_bytes":…}
//! {"t":"error","id":7,"error":"ValueError: …"}        that request failed; the worker lives on
//! {"t":"fatal","id":7,"error":"cannot load the model: …"}   the worker exits next
//! {"t":"stats","id":8,"loaded":true,"active_bytes":…,"peak_bytes":…,"cache_bytes":…}
//! ```
//!
//! `peak_bytes` is MLX's peak since the request began (`mx.reset_peak_memory()` before each
//! generation); `ttft_ms` counts from the generation's start (after any load), `total_ms` from
//! the request's arrival (load included).
//!
//! Everything the worker writes is untrusted: a line is at most `MAX_LINE_BYTES`, every text
//! is cut to a bound, every number must be finite and non-negative (else it is dropped), and a
//! message missing a field it needs is a `ProtocolError`, never a panic.

use crate::backend::ChatRequest;
use crate::text::{MAX_ERROR_BYTES, MAX_OUTPUT_BYTES, bounded};
use serde_json::{Map, Value, json};

/// The protocol version soakd speaks.
pub const PROTOCOL: u64 = 1;
/// The longest line soakd reads from the worker.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// The most of one token's text kept (a token is a few bytes; this only stops abuse).
const MAX_TOKEN_BYTES: usize = 4 * 1024;
/// The most of a short label (a version, a finish reason) kept.
const MAX_LABEL_BYTES: usize = 128;

/// MLX's memory counters, in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    pub active_bytes: Option<u64>,
    pub peak_bytes: Option<u64>,
    pub cache_bytes: Option<u64>,
}

/// What the worker says when it has imported mlx_lm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hello {
    pub pid: Option<u32>,
    pub python: Option<String>,
    pub mlx: Option<String>,
    pub mlx_lm: Option<String>,
    pub device: Option<String>,
}

/// The end of one generation, with mlx_lm's own numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Done {
    pub id: u64,
    /// `length`, `stop`, or `cancelled`.
    pub finish_reason: String,
    pub completion_tokens: u32,
    pub prompt_tokens: Option<u32>,
    pub prompt_tps: Option<f64>,
    pub generation_tps: Option<f64>,
    /// From the start of the generation (after any model load) to the first token.
    pub ttft_ms: Option<f64>,
    /// The request's whole time in the worker, model load included.
    pub total_ms: Option<f64>,
    /// A non-streamed reply's text, or what the detokenizer still held after the last token.
    pub text: String,
    pub memory: Memory,
}

/// One line from the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Hello(Hello),
    /// The model was loaded for request `id`, taking `load_ms`.
    Loaded {
        id: Option<u64>,
        load_ms: f64,
        memory: Memory,
    },
    Token {
        id: u64,
        text: String,
    },
    Done(Done),
    /// A request failed; the worker lives on.
    Error {
        id: Option<u64>,
        error: String,
    },
    /// The worker cannot go on (mlx_lm does not import, the model does not load) and exits.
    Fatal {
        id: Option<u64>,
        error: String,
    },
    Stats {
        id: Option<u64>,
        loaded: bool,
        memory: Memory,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("a line longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    #[error("a line that is not a JSON object ({0}): {1}")]
    NotJson(String, String),
    #[error("a \"{0}\" message without a valid \"{1}\"")]
    Missing(String, &'static str),
    #[error("a message of unknown type \"{0}\"")]
    Unknown(String),
    #[error("protocol version {0}, but this soakd speaks version {PROTOCOL}")]
    Version(String),
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Msg, ProtocolError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ProtocolError::TooLong);
    }
    let shown = || bounded(String::from_utf8_lossy(line).trim(), 256);
    let value: Value = serde_json::from_slice(line).map_err(|e| ProtocolError::NotJson(e.to_string(), shown()))?;
    let Value::Object(m) = value else {
        return Err(ProtocolError::NotJson("not an object".into(), shown()));
    };
    let kind = m.get("t").and_then(Value::as_str).unwrap_or_default();
    let kind_owned = || bounded(kind, MAX_LABEL_BYTES);
    let missing = |field: &'static str| ProtocolError::Missing(kind_owned(), field);
    let id = number(&m, "id").map(|v| v as u64);
    Ok(match kind {
        "hello" => {
            let v = m.get("v").cloned().unwrap_or(Value::Null);
            if v.as_u64() != Some(PROTOCOL) {
                return Err(ProtocolError::Version(bounded(&v.to_string(), MAX_LABEL_BYTES)));
            }
            Msg::Hello(Hello {
                pid: number(&m, "pid").map(|p| p as u32),
                python: label(&m, "python"),
                mlx: label(&m, "mlx"),
                mlx_lm: label(&m, "mlx_lm"),
                device: label(&m, "device"),
            })
        }
        "loaded" => {
            Msg::Loaded { id, load_ms: number(&m, "load_ms").ok_or_else(|| missing("load_ms"))?, memory: memory(&m) }
        }
        "tok" => Msg::Token {
            id: id.ok_or_else(|| missing("id"))?,
            text: text(&m, "text", MAX_TOKEN_BYTES).ok_or_else(|| missing("text"))?,
        },
        "done" => Msg::Done(Done {
            id: id.ok_or_else(|| missing("id"))?,
            finish_reason: label(&m, "finish_reason").ok_or_else(|| missing("finish_reason"))?,
            completion_tokens: number(&m, "completion_tokens")
                .filter(|n| *n <= f64::from(u32::MAX))
                .ok_or_else(|| missing("completion_tokens"))? as u32,
            prompt_tokens: number(&m, "prompt_tokens").filter(|n| *n <= f64::from(u32::MAX)).map(|n| n as u32),
            prompt_tps: number(&m, "prompt_tps"),
            generation_tps: number(&m, "generation_tps"),
            ttft_ms: number(&m, "ttft_ms"),
            total_ms: number(&m, "total_ms"),
            text: text(&m, "text", MAX_OUTPUT_BYTES).unwrap_or_default(),
            memory: memory(&m),
        }),
        "error" => Msg::Error { id, error: text(&m, "error", MAX_ERROR_BYTES).ok_or_else(|| missing("error"))? },
        "fatal" => Msg::Fatal { id, error: text(&m, "error", MAX_ERROR_BYTES).ok_or_else(|| missing("error"))? },
        "stats" => {
            Msg::Stats { id, loaded: m.get("loaded").and_then(Value::as_bool).unwrap_or(false), memory: memory(&m) }
        }
        other => return Err(ProtocolError::Unknown(bounded(other, MAX_LABEL_BYTES))),
    })
}

/// A finite, non-negative number.
fn number(m: &Map<String, Value>, key: &str) -> Option<f64> {
    m.get(key).and_then(Value::as_f64).filter(|v| v.is_finite() && *v >= 0.0)
}

fn text(m: &Map<String, Value>, key: &str, max: usize) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(|s| bounded(s, max))
}

fn label(m: &Map<String, Value>, key: &str) -> Option<String> {
    text(m, key, MAX_LABEL_BYTES)
}

fn memory(m: &Map<String, Value>) -> Memory {
    let bytes = |k| number(m, k).map(|v| v as u64);
    Memory { active_bytes: bytes("active_bytes"), peak_bytes: bytes("peak_bytes"), cache_bytes: bytes("cache_bytes") }
}

/// Splits the worker's stdout into lines, refusing one that grows past `MAX_LINE_BYTES`
/// (an unterminated line would otherwise be buffered without end).
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
    failed: bool,
}

impl crate::backend::worker::Decode for Lines {
    type Msg = Msg;
    type Error = ProtocolError;

    fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Msg, ProtocolError>> {
        Lines::feed(self, bytes)
    }

    fn is_fatal(error: &ProtocolError) -> bool {
        matches!(error, ProtocolError::TooLong)
    }
}

impl Lines {
    /// Feeds bytes in; returns the messages of the lines they completed. After `TooLong`,
    /// nothing more is parsed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<Result<Msg, ProtocolError>> {
        let mut out = Vec::new();
        while !self.failed && !bytes.is_empty() {
            let (piece, rest, complete) = match bytes.iter().position(|b| *b == b'\n') {
                Some(pos) => (&bytes[..pos], &bytes[pos + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if self.buf.len() + piece.len() > MAX_LINE_BYTES {
                self.failed = true;
                self.buf = Vec::new();
                out.push(Err(ProtocolError::TooLong));
                break;
            }
            self.buf.extend_from_slice(piece);
            if complete {
                let line = std::mem::take(&mut self.buf);
                if !line.iter().all(u8::is_ascii_whitespace) {
                    out.push(parse_line(&line));
                }
            }
        }
        out
    }
}

/// The request line for one generation.
pub fn generate_line(id: u64, req: ChatRequest<'_>) -> String {
    let w = req.workload;
    let mut messages = Vec::new();
    if let Some(system) = &w.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": req.prompt.text}));
    let line = json!({
        "op": "generate",
        "id": id,
        "messages": messages,
        "max_tokens": w.max_tokens,
        "temperature": w.temperature,
        "top_p": w.top_p,
        "stream": w.stream,
    });
    format!("{line}\n")
}

pub fn cancel_line(id: u64) -> String {
    format!("{}\n", json!({"op": "cancel", "id": id}))
}

pub fn stats_line(id: u64) -> String {
    format!("{}\n", json!({"op": "stats", "id": id}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Msg, ProtocolError> {
        parse_line(s.as_bytes())
    }

    #[test]
    fn the_worker_lines_parse() {
        let hello = parse(
            r#"{"t": "hello", "v": 1, "pid": 42, "python": "3.11.7", "mlx": "0.32.4", "mlx_lm": "0.32.2", "device": "Device(gpu, 0)"}"#,
        );
        assert_eq!(
            hello,
            Ok(Msg::Hello(Hello {
                pid: Some(42),
                python: Some("3.11.7".into()),
                mlx: Some("0.32.4".into()),
                mlx_lm: Some("0.32.2".into()),
                device: Some("Device(gpu, 0)".into()),
            }))
        );
        assert_eq!(
            parse(r#"{"t": "tok", "id": 3, "text": " world"}"#),
            Ok(Msg::Token { id: 3, text: " world".into() })
        );
        let done = parse(
            r#"{"t": "done", "id": 3, "finish_reason": "length", "completion_tokens": 64, "text": "", "ttft_ms": 5.5,
                "total_ms": 80.0, "prompt_tokens": 13, "prompt_tps": 900.5, "generation_tps": 600.0,
                "active_bytes": 565012, "peak_bytes": 704904, "cache_bytes": null}"#,
        );
        let Ok(Msg::Done(d)) = done else { panic!("{done:?}") };
        assert_eq!((d.id, d.completion_tokens, d.prompt_tokens), (3, 64, Some(13)));
        assert_eq!(d.generation_tps, Some(600.0));
        assert_eq!(d.memory, Memory { active_bytes: Some(565012), peak_bytes: Some(704904), cache_bytes: None });
        assert_eq!(
            parse(r#"{"t": "loaded", "id": 1, "load_ms": 6760.5, "active_bytes": 4}"#),
            Ok(Msg::Loaded {
                id: Some(1),
                load_ms: 6760.5,
                memory: Memory { active_bytes: Some(4), ..Memory::default() }
            })
        );
        assert_eq!(
            parse(r#"{"t": "fatal", "error": "cannot import mlx_lm: ModuleNotFoundError"}"#),
            Ok(Msg::Fatal { id: None, error: "cannot import mlx_lm: ModuleNotFoundError".into() })
        );
    }

    #[test]
    fn missing_fields_and_garbage_are_errors() {
        assert!(matches!(parse(r#"{"t": "tok", "text": "x"}"#), Err(ProtocolError::Missing(_, "id"))));
        assert!(matches!(parse(r#"{"t": "tok", "id": 1}"#), Err(ProtocolError::Missing(_, "text"))));
        assert!(matches!(
            parse(r#"{"t": "done", "id": 1, "completion_tokens": 3}"#),
            Err(ProtocolError::Missing(_, "finish_reason"))
        ));
        assert!(matches!(
            parse(r#"{"t": "done", "id": 1, "finish_reason": "stop", "completion_tokens": -3}"#),
            Err(ProtocolError::Missing(_, "completion_tokens"))
        ));
        assert!(matches!(parse(r#"{"t": "loaded", "load_ms": "slow"}"#), Err(ProtocolError::Missing(_, "load_ms"))));
        assert!(matches!(parse("Traceback (most recent call last):"), Err(ProtocolError::NotJson(..))));
        assert!(matches!(parse("[1, 2]"), Err(ProtocolError::NotJson(..))));
        assert!(matches!(parse(r#"{"t": "surprise"}"#), Err(ProtocolError::Unknown(t)) if t == "surprise"));
        assert!(matches!(parse(r#"{"t": "hello", "v": 2}"#), Err(ProtocolError::Version(v)) if v == "2"));
        assert!(matches!(parse(r#"{"t": "hello"}"#), Err(ProtocolError::Version(_))));
        // Non-finite or negative numbers are dropped, not stored.
        let Ok(Msg::Done(d)) = parse(
            r#"{"t": "done", "id": 1, "finish_reason": "stop", "completion_tokens": 0, "generation_tps": -1, "ttft_ms": "fast"}"#,
        ) else {
            panic!("a done line with odd numbers still parses")
        };
        assert_eq!((d.generation_tps, d.ttft_ms), (None, None));
    }

    #[test]
    fn texts_are_bounded() {
        let long = "é".repeat(MAX_ERROR_BYTES);
        let Ok(Msg::Error { error, .. }) = parse(&format!(r#"{{"t": "error", "id": 1, "error": "{long}"}}"#)) else {
            panic!("an error line parses")
        };
        assert!(error.len() < MAX_ERROR_BYTES + 64, "{}", error.len());
        let Ok(Msg::Token { text, .. }) =
            parse(&format!(r#"{{"t": "tok", "id": 1, "text": "{}"}}"#, "x".repeat(100_000)))
        else {
            panic!("a token line parses")
        };
        assert!(text.len() < MAX_TOKEN_BYTES + 64);
    }

    #[test]
    fn lines_split_across_reads_and_an_endless_line_is_refused() {
        let mut lines = Lines::default();
        assert!(lines.feed(br#"{"t": "tok", "id": 1, "#).is_empty());
        let got = lines.feed(b"\"text\": \"a\"}\n\n{\"t\": \"tok\", \"id\": 1, \"text\": \"b\"}\n{\"t\"");
        assert_eq!(got, vec![Ok(Msg::Token { id: 1, text: "a".into() }), Ok(Msg::Token { id: 1, text: "b".into() })]);
        let chunk = vec![b'x'; MAX_LINE_BYTES / 2];
        assert!(lines.feed(&chunk).is_empty());
        assert_eq!(lines.feed(&chunk), vec![Err(ProtocolError::TooLong)]);
        assert!(
            lines.feed(b"\n{\"t\": \"tok\", \"id\": 1, \"text\": \"c\"}\n").is_empty(),
            "nothing after a refused line"
        );
    }

    #[test]
    fn request_lines_carry_the_workload() {
        let prompt = crate::schedule::Prompt { name: "p".into(), text: "Say \"hi\"\n".into() };
        let workload = crate::schedule::Workload {
            requests: 1,
            concurrency: 1,
            delay: std::time::Duration::ZERO,
            rate: None,
            max_duration: std::time::Duration::from_secs(60),
            stream: true,
            max_tokens: 7,
            temperature: Some(0.5),
            top_p: None,
            system: Some("be brief".into()),
            prompts: vec![prompt.clone()],
            tools: None,
            timeouts: crate::schedule::Timeouts::default(),
        };
        let line = generate_line(9, ChatRequest { prompt: &prompt, workload: &workload });
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "one line: {line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["op"], "generate");
        assert_eq!(v["id"], 9);
        assert_eq!(v["max_tokens"], 7);
        assert_eq!(v["temperature"], 0.5);
        assert_eq!(v["top_p"], Value::Null);
        assert_eq!(v["messages"][0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(v["messages"][1]["content"], "Say \"hi\"\n");
        assert_eq!(serde_json::from_str::<Value>(&cancel_line(9)).unwrap(), json!({"op": "cancel", "id": 9}));
    }
}
