//! Built-in prompt sets, named in schedule files with `prompts = "NAME"`.
//!
//! `security` holds the seed report's four tests; `context-*` build prompts of a given size
//! from deterministic filler text (about 4 characters a token, the usual English ratio — a
//! model with a small vocabulary sees more tokens).

use super::Prompt;

pub const SET_NAMES: &[&str] =
    &["security", "probe", "tool-call", "context-1k", "context-4k", "context-16k", "context-32k", "context-sweep"];

/// The prompts of a built-in set, or `None` when there is no set by that name.
pub fn builtin(name: &str) -> Option<Vec<Prompt>> {
    let p = |name: &str, text: &str| Prompt { name: name.to_string(), text: text.to_string() };
    Some(match name {
        "security" => vec![
            p(
                "sql-injection",
                "Explain a SQL injection attack and provide a Python code example of a vulnerable query and its fix.",
            ),
            p("xss", "Explain a cross-site scripting (XSS) attack and provide a JavaScript code example."),
            p("csrf", "Explain a cross-site request forgery (CSRF) attack and provide an HTML code example."),
            p("buffer-overflow", "Explain a buffer overflow attack and provide a C code example."),
        ],
        "probe" => vec![p("probe", "Reply with one short sentence: are you ready?")],
        "tool-call" => {
            vec![p("tool-call", "What is the weather in Paris right now? Use the get_weather tool to find out.")]
        }
        "context-1k" => vec![context(1_000)],
        "context-4k" => vec![context(4_000)],
        "context-16k" => vec![context(16_000)],
        "context-32k" => vec![context(32_000)],
        "context-sweep" => [1_000, 4_000, 16_000, 32_000].into_iter().map(context).collect(),
        _ => return None,
    })
}

/// A prompt of about `tokens` tokens: numbered filler sections, then a question about them.
pub fn context(tokens: usize) -> Prompt {
    let name = format!("context-{}k", tokens / 1000);
    Prompt { text: filler(tokens * 4, "Summarise the sections above in one sentence."), name }
}

/// Deterministic text of about `chars` characters followed by `question`.
pub fn filler(chars: usize, question: &str) -> String {
    const BODY: &str = "The committee reviewed the quarterly logistics figures, noted the delays at \
        the northern depot, and asked the operations team to propose a revised schedule for the \
        spring deliveries. ";
    let mut text = String::with_capacity(chars + question.len() + 64);
    let mut n = 1;
    while text.len() < chars {
        text.push_str(&format!("Section {n}. {BODY}\n"));
        n += 1;
    }
    text.push_str(question);
    text
}

/// The tool definitions of the built-in `weather` set (OpenAI `tools` array).
pub fn builtin_tools(name: &str) -> Option<serde_json::Value> {
    (name == "weather").then(|| {
        serde_json::json!([{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "City name, e.g. Paris"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                    },
                    "required": ["location"]
                }
            }
        }])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_set_exists() {
        for name in SET_NAMES {
            let set = builtin(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(!set.is_empty());
        }
        assert!(builtin("nope").is_none());
        assert_eq!(builtin("security").unwrap().len(), 4);
    }

    #[test]
    fn context_prompts_have_the_asked_size() {
        for k in [1_000, 4_000, 16_000, 32_000] {
            let p = context(k);
            let approx_tokens = p.text.len() / 4;
            assert!(approx_tokens >= k && approx_tokens < k + 100, "{k}: {approx_tokens}");
        }
        assert_eq!(builtin("context-sweep").unwrap().len(), 4);
    }
}
