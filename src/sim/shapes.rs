//! JSON response shapes, faithful to the servers soakd talks to: OpenAI chat completions and
//! chunks, OpenAI-style errors, LM Studio's crash and "unloaded" bodies, the Metal OOM text,
//! `/v1/models`, `/health` and `/sim/stats`. Only builds values; nothing here does I/O.

use serde_json::{Value, json};

use super::options::FaultKind;
use super::plan::Piece;

/// LM Studio's answer when its engine child process dies.
pub(crate) const LMSTUDIO_CRASH: &str =
    "The model has crashed without additional information. (Exit code: 18446744072635812000)";
/// Ollama's answer when its runner process dies.
pub(crate) const OLLAMA_CRASH: &str = "llama runner process has terminated: signal: aborted (core dumped)";
/// LM Studio's answer while the model is unloaded after a crash.
pub(crate) const MODEL_UNLOADED: &str = "Model is unloaded.";
/// The Metal out-of-memory error MLX reports.
pub(crate) const METAL_OOM: &str = "[METAL] Command buffer execution failed: Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)";
/// The invalid line the `malformed` fault streams.
pub(crate) const MALFORMED_LINE: &str = "data: {\"choices\": [ {\"delta\": \n\n";
/// The invalid body the `malformed` fault answers to a non-streamed request.
pub(crate) const MALFORMED_BODY: &str = "{\"id\": \"x\", \"choices\": [";

/// Fields shared by every completion and chunk of one reply.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
}

pub(crate) fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// A full non-streamed completion built from the pieces that were produced.
pub(crate) fn completion(h: &Header, pieces: &[Piece], finish_reason: Option<&str>, prompt_tokens: u64) -> Value {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut tool: Option<(&str, &str)> = None;
    let mut arguments = String::new();
    for piece in pieces {
        match piece {
            Piece::Reasoning(w) => reasoning.push_str(w),
            Piece::Content(w) => content.push_str(w),
            Piece::ToolStart { id, name } => tool = Some((id, name)),
            Piece::ToolArguments(a) => arguments.push_str(a),
        }
    }
    let mut message = json!({ "role": "assistant", "content": content });
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if let Some((id, name)) = tool {
        message["content"] = Value::Null;
        message["tool_calls"] = json!([{
            "id": id,
            "type": "function",
            "function": { "name": name, "arguments": arguments },
        }]);
    }
    json!({
        "id": h.id,
        "object": "chat.completion",
        "created": h.created,
        "model": h.model,
        "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason }],
        "usage": usage(prompt_tokens, pieces.len() as u64),
    })
}

/// The `delta` of one streamed piece; the first piece also carries the role.
pub(crate) fn delta(piece: &Piece, first: bool) -> Value {
    let mut delta = match piece {
        Piece::Reasoning(w) => json!({ "reasoning_content": w }),
        Piece::Content(w) => json!({ "content": w }),
        Piece::ToolStart { id, name } => json!({ "tool_calls": [{
            "index": 0,
            "id": id,
            "type": "function",
            "function": { "name": name, "arguments": "" },
        }]}),
        Piece::ToolArguments(a) => json!({ "tool_calls": [{
            "index": 0,
            "function": { "arguments": a },
        }]}),
    };
    if first {
        delta["role"] = json!("assistant");
    }
    delta
}

/// One `chat.completion.chunk` with a single choice.
pub(crate) fn chunk(h: &Header, delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": h.id,
        "object": "chat.completion.chunk",
        "created": h.created,
        "model": h.model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    })
}

/// The final usage chunk (`stream_options.include_usage`).
pub(crate) fn usage_chunk(h: &Header, prompt: u64, completion: u64) -> Value {
    json!({
        "id": h.id,
        "object": "chat.completion.chunk",
        "created": h.created,
        "model": h.model,
        "choices": [],
        "usage": usage(prompt, completion),
    })
}

/// An OpenAI-shaped `invalid_request_error`.
pub(crate) fn invalid_request(message: &str) -> Value {
    json!({ "error": { "message": message, "type": "invalid_request_error" } })
}

/// The body of an HTTP-error fault.
pub(crate) fn fault_error(kind: FaultKind) -> Value {
    match kind {
        FaultKind::Http503 => json!({ "error": {
            "message": "Service unavailable: out of memory",
            "type": "unavailable_error",
            "code": 503,
        }}),
        FaultKind::MetalOom => json!({ "error": { "message": METAL_OOM, "type": "server_error" } }),
        _ => json!({ "error": { "message": "Internal server error", "type": "server_error" } }),
    }
}

/// LM Studio's non-streamed crash body.
pub(crate) fn lmstudio_crash() -> Value {
    json!({ "error": LMSTUDIO_CRASH })
}

/// LM Studio's streamed crash event payload.
pub(crate) fn lmstudio_crash_event() -> Value {
    json!({ "error": { "message": LMSTUDIO_CRASH } })
}

/// Ollama's crash text in an OpenAI-shaped error (its `/v1` side).
pub(crate) fn ollama_crash_event() -> Value {
    json!({ "error": { "message": OLLAMA_CRASH } })
}

/// The message of an HTTP-error fault.
pub(crate) fn fault_message(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Http503 => "Service unavailable: out of memory",
        FaultKind::MetalOom => METAL_OOM,
        _ => "Internal server error",
    }
}

pub(crate) fn model_unloaded() -> Value {
    json!({ "error": MODEL_UNLOADED })
}

pub(crate) fn health() -> Value {
    json!({ "status": "ok" })
}

pub(crate) fn models(model: &str, created: u64) -> Value {
    json!({
        "object": "list",
        "data": [{ "id": model, "object": "model", "created": created, "owned_by": "soakd-sim" }],
    })
}

/// `/sim/stats` for tests.
pub(crate) struct Stats {
    pub(crate) requests: u64,
    pub(crate) in_flight: u32,
    pub(crate) ballast_bytes: usize,
    pub(crate) crashed: bool,
}

pub(crate) fn stats(s: &Stats) -> Value {
    json!({
        "requests": s.requests,
        "in_flight": s.in_flight,
        "ballast_bytes": s.ballast_bytes,
        "crashed": s.crashed,
        "pid": std::process::id(),
    })
}

/// One SSE event line for a JSON payload.
pub(crate) fn sse(value: &Value) -> String {
    format!("data: {value}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header { id: "chatcmpl-1".into(), created: 1, model: "m".into() }
    }

    #[test]
    fn completion_joins_pieces() {
        let pieces = [Piece::Reasoning(" think".into()), Piece::Content(" a".into()), Piece::Content(" b".into())];
        let v = completion(&header(), &pieces, Some("length"), 4);
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], " a b");
        assert_eq!(msg["reasoning_content"], " think");
        assert_eq!(v["usage"]["total_tokens"], 7);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn tool_completion_has_null_content_and_json_arguments() {
        let pieces = [
            Piece::ToolStart { id: "call_1".into(), name: "f".into() },
            Piece::ToolArguments("{\"location\""),
            Piece::ToolArguments(": \"Paris\"}"),
        ];
        let v = completion(&header(), &pieces, Some("tool_calls"), 1);
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], "{\"location\": \"Paris\"}");
        assert!(v["choices"][0]["message"]["content"].is_null());
    }

    #[test]
    fn fault_bodies_match_the_real_servers() {
        assert_eq!(fault_error(FaultKind::Http503)["error"]["code"], 503);
        assert!(fault_error(FaultKind::MetalOom).to_string().contains("kIOGPUCommandBufferCallbackErrorOutOfMemory"));
        assert_eq!(lmstudio_crash().to_string(), format!("{{\"error\":\"{LMSTUDIO_CRASH}\"}}"));
        assert_eq!(model_unloaded().to_string(), r#"{"error":"Model is unloaded."}"#);
        assert!(serde_json::from_str::<Value>(MALFORMED_BODY).is_err());
        let line = MALFORMED_LINE.trim().trim_start_matches("data: ");
        assert!(serde_json::from_str::<Value>(line).is_err());
    }
}
