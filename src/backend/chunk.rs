//! The OpenAI chat-completion JSON shapes soakd reads — a streamed chunk and a whole
//! response — parsed leniently (every field optional, unknown fields ignored), and the check
//! of tool calls against the tools that were offered.

use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A streamed `chat.completion.chunk` or a whole `chat.completion`. Its texts borrow from the
/// event they were read from where they hold no escapes: a stream parses one per token.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Body<'a> {
    #[serde(default, borrow)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub choices: Vec<Choice<'a>>,
    #[serde(default)]
    pub usage: Option<Usage>,
    /// llama.cpp's server-side numbers.
    #[serde(default)]
    pub timings: Option<Value>,
    /// LM Studio's server-side numbers.
    #[serde(default)]
    pub stats: Option<Value>,
    /// LM Studio's `/api/v0` model facts (`arch`, `quant`, `format`, `context_length`).
    #[serde(default)]
    pub model_info: Option<Value>,
    /// LM Studio's `/api/v0` engine (`name`, `version`).
    #[serde(default)]
    pub runtime: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Choice<'a> {
    #[serde(default, borrow)]
    pub delta: Option<Message<'a>>,
    #[serde(default, borrow)]
    pub message: Option<Message<'a>>,
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Message<'a> {
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub reasoning: Option<Cow<'a, str>>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallPart>>,
}

impl Message<'_> {
    pub fn reasoning(&self) -> Option<&str> {
        self.reasoning_content.as_deref().or(self.reasoning.as_deref()).filter(|s| !s.is_empty())
    }

    pub fn content(&self) -> Option<&str> {
        self.content.as_deref().filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ToolCallPart {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub function: Option<FunctionPart>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FunctionPart {
    #[serde(default)]
    pub name: Option<String>,
    /// A string of JSON (OpenAI); some servers send an object.
    #[serde(default)]
    pub arguments: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
}

/// The text of an `error` member, whatever its shape (`"text"` or `{"message": "text"}`).
pub(crate) fn error_text(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        other => other.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| other.to_string()),
    }
}

/// Tool calls assembled from stream deltas (arguments arrive in pieces) or a whole message.
#[derive(Debug, Default)]
pub(crate) struct ToolCalls {
    calls: BTreeMap<u32, (String, String)>,
}

impl ToolCalls {
    pub fn add(&mut self, parts: &[ToolCallPart]) {
        for (i, part) in parts.iter().enumerate() {
            let slot = self.calls.entry(part.index.unwrap_or(i as u32)).or_default();
            if let Some(f) = &part.function {
                if let Some(name) = &f.name {
                    slot.0.push_str(name);
                }
                match &f.arguments {
                    Some(Value::String(piece)) => slot.1.push_str(piece),
                    Some(Value::Null) | None => {}
                    Some(obj) => slot.1.push_str(&obj.to_string()),
                }
            }
        }
    }

    pub fn seen(&self) -> bool {
        !self.calls.is_empty()
    }

    /// How many calls so far.
    pub fn count(&self) -> usize {
        self.calls.len()
    }

    /// Every call names one of `offered` (an OpenAI `tools` array) and its arguments are a
    /// JSON object. `None` when there was no call.
    pub fn valid(&self, offered: Option<&Value>) -> Option<bool> {
        if self.calls.is_empty() {
            return None;
        }
        let names: Vec<&str> = offered
            .and_then(Value::as_array)
            .map(|tools| tools.iter().filter_map(|t| t.pointer("/function/name").and_then(Value::as_str)).collect())
            .unwrap_or_default();
        Some(self.calls.values().all(|(name, args)| {
            names.contains(&name.as_str()) && serde_json::from_str::<Value>(args).is_ok_and(|v| v.is_object())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])
    }

    #[test]
    fn parses_llama_cpp_final_chunk() {
        let b: Body = serde_json::from_str(
            r#"{"choices":[{"finish_reason":"length","index":0,"delta":{}}],"created":1,"model":"tiny",
                "usage":{"completion_tokens":32,"prompt_tokens":11,"total_tokens":43},
                "timings":{"prompt_n":11,"prompt_ms":1.2,"predicted_n":32,"predicted_ms":8.0,"predicted_per_second":4000.0}}"#,
        )
        .unwrap();
        assert_eq!(b.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(b.usage.unwrap().completion_tokens, Some(32));
        assert_eq!(b.timings.unwrap()["predicted_per_second"], 4000.0);
    }

    #[test]
    fn parses_mlx_usage_chunk_and_reasoning() {
        let b: Body =
            serde_json::from_str(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#).unwrap();
        assert!(b.choices.is_empty());
        let b: Body =
            serde_json::from_str(r#"{"choices":[{"delta":{"reasoning_content":"hm","content":null}}]}"#).unwrap();
        let d = b.choices[0].delta.as_ref().unwrap();
        assert_eq!(d.reasoning(), Some("hm"));
        assert_eq!(d.content(), None);
    }

    #[test]
    fn error_text_reads_both_shapes() {
        assert_eq!(error_text(&json!("Model is unloaded.")), "Model is unloaded.");
        assert_eq!(error_text(&json!({"message": "boom", "type": "x"})), "boom");
    }

    #[test]
    fn streamed_tool_call_pieces_are_joined_and_checked() {
        let mut calls = ToolCalls::default();
        let parts = |v: Value| serde_json::from_value::<Vec<ToolCallPart>>(v).unwrap();
        calls
            .add(&parts(json!([{"index": 0, "id": "c1", "function": {"name": "get_weather", "arguments": "{\"loc"}}])));
        calls.add(&parts(json!([{"index": 0, "function": {"arguments": "ation\": \"Paris\"}"}}])));
        assert!(calls.seen());
        assert_eq!(calls.valid(Some(&tools())), Some(true));
        assert_eq!(calls.valid(None), Some(false), "a call to a tool nobody offered");
    }

    #[test]
    fn broken_arguments_or_unknown_names_are_invalid() {
        let parts = |v: Value| serde_json::from_value::<Vec<ToolCallPart>>(v).unwrap();
        let mut bad_json = ToolCalls::default();
        bad_json.add(&parts(json!([{"function": {"name": "get_weather", "arguments": "{\"location\": "}}])));
        assert_eq!(bad_json.valid(Some(&tools())), Some(false));
        let mut wrong_name = ToolCalls::default();
        wrong_name.add(&parts(json!([{"function": {"name": "get_time", "arguments": {"a": 1}}}])));
        assert_eq!(wrong_name.valid(Some(&tools())), Some(false));
        assert_eq!(ToolCalls::default().valid(Some(&tools())), None);
    }
}
