//! The chat-completions request a client sends: parse and validate the JSON body into the few
//! things the simulator uses. Pure (`&[u8]` in), so every malformed input is unit-tested; bad
//! input becomes an error message for a 400, never a panic.

use serde_json::Value;

/// Default `max_tokens` when the client does not send one (mlx_lm.server's default).
pub(crate) const DEFAULT_MAX_TOKENS: u32 = 16;
/// Longest reply the simulator will produce.
pub(crate) const MAX_TOKENS_CAP: u32 = 4096;

/// A validated chat request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatRequest {
    pub(crate) prompt_tokens: u64,
    pub(crate) max_tokens: u32,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    /// The first tool's function name, when `tools` is a non-empty array.
    pub(crate) tool: Option<String>,
}

/// Parse a request body. The error is the message for an `invalid_request_error`.
pub(crate) fn parse(body: &[u8]) -> Result<ChatRequest, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("request body is not valid JSON ({e}); send a JSON object with a \"messages\" array"))?;
    let Value::Object(obj) = value else {
        return Err("request body must be a JSON object with a \"messages\" array".into());
    };
    let chars = message_chars(obj.get("messages"))?;
    let max_tokens = max_tokens(obj.get("max_tokens").or(obj.get("max_completion_tokens")))?;
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"stream\" must be true or false".into()),
    };
    let include_usage =
        obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    Ok(ChatRequest {
        prompt_tokens: prompt_tokens(chars),
        max_tokens,
        stream,
        include_usage,
        tool: first_tool(obj.get("tools"))?,
    })
}

/// Parse an Ollama `/api/chat` body: `model` (required), `messages`, `stream` (default true),
/// `options.num_predict` (absent: the default; negative: unlimited, i.e. the cap), `tools`.
pub(crate) fn parse_ollama(body: &[u8]) -> Result<(ChatRequest, String), String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("request body is not valid JSON ({e}); send a JSON object with a \"messages\" array"))?;
    let Value::Object(obj) = value else {
        return Err("request body must be a JSON object with a \"messages\" array".into());
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err("model is required".into()),
    };
    let chars = message_chars(obj.get("messages"))?;
    let max_tokens = match obj.get("options").and_then(|o| o.get("num_predict")) {
        None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
        Some(v) => match v.as_i64() {
            Some(n) if n > 0 => u32::try_from(n).unwrap_or(MAX_TOKENS_CAP).min(MAX_TOKENS_CAP),
            Some(_) => MAX_TOKENS_CAP,
            None => return Err(format!("options.num_predict must be an integer (got {v})")),
        },
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"stream\" must be true or false".into()),
    };
    let chat = ChatRequest {
        prompt_tokens: prompt_tokens(chars),
        max_tokens,
        stream,
        include_usage: false,
        tool: first_tool(obj.get("tools"))?,
    };
    Ok((chat, model))
}

/// Prompt tokens estimated from characters: chars / 4, rounded up, at least 1.
pub(crate) fn prompt_tokens(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX).max(1)
}

fn message_chars(messages: Option<&Value>) -> Result<usize, String> {
    let messages = match messages {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => return Err("\"messages\" must not be empty".into()),
        Some(_) => return Err("\"messages\" must be an array of {role, content} objects".into()),
        None => return Err("missing required field \"messages\"".into()),
    };
    let mut chars = 0usize;
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(m) = message else {
            return Err(format!("messages[{i}] must be an object with \"role\" and \"content\""));
        };
        match m.get("role") {
            Some(Value::String(_)) => {}
            _ => {
                return Err(format!("messages[{i}].role must be a string such as \"user\""));
            }
        }
        match m.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => chars = chars.saturating_add(s.chars().count()),
            Some(_) => return Err(format!("messages[{i}].content must be a string or null")),
        }
    }
    Ok(chars)
}

fn max_tokens(value: Option<&Value>) -> Result<u32, String> {
    match value {
        None | Some(Value::Null) => Ok(DEFAULT_MAX_TOKENS),
        Some(v) => match v.as_u64() {
            Some(0) | None => Err(format!(
                "\"max_tokens\" must be a positive integer (got {v}); the simulator caps it at {MAX_TOKENS_CAP}"
            )),
            Some(n) => Ok(u32::try_from(n).unwrap_or(MAX_TOKENS_CAP).min(MAX_TOKENS_CAP)),
        },
    }
}

fn first_tool(tools: Option<&Value>) -> Result<Option<String>, String> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("\"tools\" must be an array of function tools".into()),
    };
    let Some(first) = list.first() else {
        return Ok(None);
    };
    match first.get("function").and_then(|f| f.get("name")) {
        Some(Value::String(name)) if !name.is_empty() => Ok(Some(name.clone())),
        _ => Err(
            "tools[0].function.name must be a non-empty string, e.g. {\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_request_gets_defaults() {
        let req = parse(br#"{"messages":[{"role":"user","content":"hello world!"}]}"#).expect("valid request");
        assert_eq!(
            req,
            ChatRequest {
                prompt_tokens: 3,
                max_tokens: DEFAULT_MAX_TOKENS,
                stream: false,
                include_usage: false,
                tool: None,
            }
        );
    }

    #[test]
    fn all_fields_are_read() {
        let body = br#"{"model":"x","temperature":0.2,"max_tokens":9999,"stream":true,
            "stream_options":{"include_usage":true},
            "messages":[{"role":"system","content":null},{"role":"user","content":"abcde"}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}}],
            "unknown":[1,2,3]}"#;
        let req = parse(body).expect("valid request");
        assert_eq!(req.max_tokens, MAX_TOKENS_CAP);
        assert!(req.stream && req.include_usage);
        assert_eq!(req.prompt_tokens, 2);
        assert_eq!(req.tool.as_deref(), Some("get_weather"));
        let alias =
            parse(br#"{"messages":[{"role":"user","content":""}],"max_completion_tokens":5}"#).expect("valid request");
        assert_eq!(alias.max_tokens, 5);
        assert_eq!(alias.prompt_tokens, 1, "at least one prompt token");
    }

    #[test]
    fn empty_tools_array_means_no_tool_call() {
        let req = parse(br#"{"messages":[{"role":"user","content":"x"}],"tools":[]}"#).expect("valid request");
        assert_eq!(req.tool, None);
    }

    #[test]
    fn bad_bodies_are_explained() {
        let cases: [(&[u8], &str); 12] = [
            (b"not json", "not valid JSON"),
            (b"", "not valid JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "missing required field \"messages\""),
            (br#"{"messages":[]}"#, "must not be empty"),
            (br#"{"messages":"hi"}"#, "array"),
            (br#"{"messages":[3]}"#, "messages[0]"),
            (br#"{"messages":[{"content":"x"}]}"#, "messages[0].role"),
            (br#"{"messages":[{"role":"user","content":5}]}"#, "string or null"),
            (br#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, "positive integer"),
            (br#"{"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#, "\"stream\""),
            (br#"{"messages":[{"role":"user","content":"x"}],"tools":[{"function":{}}]}"#, "tools[0]"),
        ];
        for (body, wanted) in cases {
            let err = parse(body).expect_err("must be rejected");
            assert!(err.contains(wanted), "{:?}: {err}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn ollama_bodies_use_native_fields() {
        let (req, model) = parse_ollama(
            br#"{"model":"qwen3:8b","messages":[{"role":"user","content":"abcdefgh"}],"options":{"num_predict":7}}"#,
        )
        .expect("valid request");
        assert_eq!(model, "qwen3:8b");
        assert_eq!((req.max_tokens, req.stream, req.prompt_tokens), (7, true, 2), "stream defaults to true");
        let (req, _) = parse_ollama(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":false,"options":{"num_predict":-1}}"#,
        )
        .expect("valid request");
        assert_eq!((req.max_tokens, req.stream), (MAX_TOKENS_CAP, false));
        assert!(
            parse_ollama(br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap_err().contains("model is required")
        );
        assert!(
            parse_ollama(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"num_predict":"x"}}"#)
                .is_err()
        );
    }

    #[test]
    fn prompt_tokens_round_up() {
        assert_eq!(prompt_tokens(0), 1);
        assert_eq!(prompt_tokens(4), 1);
        assert_eq!(prompt_tokens(5), 2);
        assert_eq!(prompt_tokens(400), 100);
    }
}
