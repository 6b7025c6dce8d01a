//! Text in and out: the checkpoint's `tokenizer.json` (the `tokenizers` crate, no hub access) and
//! its chat template (`tokenizer_config.json`'s `chat_template`, or `chat_template.jinja`),
//! rendered with minijinja the way Hugging Face's `apply_chat_template` renders it (trim_blocks,
//! lstrip_blocks, Python string methods, `raise_exception`, `strftime_now`, `tojson` with Python's
//! separators).

use anyhow::{Context, Result, anyhow, bail};
use minijinja::value::ValueKind;
use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::path::Path;
use tokenizers::Tokenizer;

/// One chat message as the worker receives it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

pub struct Chat {
    tokenizer: Tokenizer,
    env: Environment<'static>,
    bos: Option<String>,
    eos: Option<String>,
    /// Ids that end a reply: the tokenizer's eos token and `generation_config.json`'s.
    pub eos_ids: BTreeSet<u32>,
}

impl Chat {
    pub fn load(dir: &Path, config_eos: &[u32]) -> Result<Chat> {
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| anyhow!("{}: {e}", tok_path.display()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Json = match std::fs::read_to_string(&cfg_path) {
            Ok(t) => serde_json::from_str(&t).with_context(|| format!("{}: not JSON", cfg_path.display()))?,
            Err(_) => Json::Null,
        };
        let special = |k: &str| match cfg.get(k) {
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Object(o)) => o.get("content").and_then(Json::as_str).map(str::to_string),
            _ => None,
        };
        let template = match cfg.get("chat_template") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Json::as_str))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{}: chat_template has no \"default\" entry", cfg_path.display()))?,
            _ => std::fs::read_to_string(dir.join("chat_template.jinja")).map_err(|_| {
                anyhow!("{}: no chat_template (and no chat_template.jinja beside it)", cfg_path.display())
            })?,
        };
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_filter("tojson", tojson);
        // Llama 3's templates date the system prompt.
        env.add_function("strftime_now", |fmt: String| chrono::Local::now().format(&fmt).to_string());
        env.add_template_owned("chat", template).map_err(|e| anyhow!("{}: chat_template: {e}", cfg_path.display()))?;

        let (bos, eos) = (special("bos_token"), special("eos_token"));
        let mut eos_ids: BTreeSet<u32> = config_eos.iter().copied().collect();
        if let Some(id) = eos.as_deref().and_then(|t| tokenizer.token_to_id(t)) {
            eos_ids.insert(id);
        }
        if let Ok(t) = std::fs::read_to_string(dir.join("generation_config.json"))
            && let Ok(g) = serde_json::from_str::<Json>(&t)
        {
            eos_ids.extend(super::config::eos_ids(g.get("eos_token_id")));
        }
        if eos_ids.is_empty() {
            bail!(
                "{}: no eos token (eos_token in tokenizer_config.json or eos_token_id in config.json)",
                dir.display()
            );
        }
        Ok(Chat { tokenizer, env, bos, eos, eos_ids })
    }

    /// The prompt text for `messages`, ending with the assistant's turn.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        let t = self.env.get_template("chat").expect("added at load");
        t.render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| anyhow!("chat template: {e}"))
    }

    /// Token ids of rendered text (specials in the text are matched, none are added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, false).map_err(|e| anyhow!("tokenizer: {e}"))?.get_ids().to_vec())
    }

    /// `messages` rendered and encoded.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.encode(&self.render(messages)?)
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| anyhow!("tokenizer: {e}"))
    }
}

/// Hugging Face's `tojson`: `json.dumps(x, ensure_ascii=False)`: keys in the template value's
/// order, separators `, ` and `: `.
fn tojson(v: Value) -> Result<Value, Error> {
    let mut out = String::new();
    py_json(&v, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn py_json(v: &Value, out: &mut String) -> Result<(), Error> {
    let leaf = |v: &Value| serde_json::to_string(v).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()));
    match v.kind() {
        ValueKind::Map => {
            out.push('{');
            for (i, k) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&leaf(&Value::from(k.to_string()))?);
                out.push_str(": ");
                py_json(&v.get_item(&k)?, out)?;
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, x) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json(&x, out)?;
            }
            out.push(']');
        }
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        _ => out.push_str(&leaf(v)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_python_methods_and_helpers() {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("strftime_now", |fmt: String| chrono::Local::now().format(&fmt).to_string());
        let t = env
            .template_from_str("{{ 'a</think>b'.split('</think>')[-1].strip() }}|{{ strftime_now('%Y') | length }}")
            .unwrap();
        assert_eq!(t.render(()).unwrap(), "b|4");
    }

    #[test]
    fn tojson_uses_python_separators() {
        let v = Value::from_iter([
            ("name", Value::from("f")),
            ("args", Value::from(vec![Value::from(1), Value::from("é")])),
        ]);
        assert_eq!(tojson(v).unwrap().to_string(), r#"{"name": "f", "args": [1, "é"]}"#);
    }
}
