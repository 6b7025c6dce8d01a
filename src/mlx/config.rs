//! A checkpoint's `config.json`: the architecture and sizes the decoder needs, and how its
//! weights are quantized. Unknown architectures and settings the decoder cannot honour are
//! errors that name the field, never a silently different model.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::Path;

/// The decoder families this engine runs; they differ only in small ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Per-head RMSNorm on queries and keys, no attention bias.
    Qwen3,
    /// Bias on the q/k/v projections.
    Qwen2,
    Llama,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: Arch,
    pub hidden_size: i32,
    pub num_layers: usize,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    /// 1 / linear scaling factor.
    pub rope_scale: f32,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub eos_token_ids: Vec<u32>,
    /// Default group size and bits of quantized layers (a layer is quantized when its
    /// `scales` are in the weights).
    pub quant: Option<Quant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quant {
    pub group_size: i32,
    pub bits: i32,
}

#[derive(Deserialize)]
struct Raw {
    model_type: String,
    hidden_size: i32,
    num_hidden_layers: usize,
    num_attention_heads: i32,
    num_key_value_heads: Option<i32>,
    head_dim: Option<i32>,
    rms_norm_eps: f32,
    rope_theta: Option<f32>,
    rope_scaling: Option<serde_json::Value>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    eos_token_id: Option<serde_json::Value>,
    quantization: Option<serde_json::Value>,
}

impl ModelConfig {
    pub fn load(dir: &Path) -> Result<ModelConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let raw: Raw =
            serde_json::from_str(&text).with_context(|| format!("{}: not a model config", path.display()))?;
        Self::from_raw(raw).with_context(|| format!("{}", path.display()))
    }

    fn from_raw(raw: Raw) -> Result<ModelConfig> {
        let arch = match raw.model_type.as_str() {
            "qwen3" => Arch::Qwen3,
            "qwen2" => Arch::Qwen2,
            "llama" | "mistral" => Arch::Llama,
            other => bail!("model_type \"{other}\" is not supported by kind \"mlx\" (qwen3, qwen2, llama are)"),
        };
        if raw.hidden_size <= 0 || raw.num_attention_heads <= 0 || raw.num_hidden_layers == 0 {
            bail!("hidden_size, num_attention_heads and num_hidden_layers must be positive");
        }
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if num_kv_heads <= 0 || raw.num_attention_heads % num_kv_heads != 0 {
            bail!("num_key_value_heads must divide num_attention_heads");
        }
        let rope_scale = match &raw.rope_scaling {
            None | Some(serde_json::Value::Null) => 1.0,
            Some(s) => {
                let kind = s.get("type").or_else(|| s.get("rope_type")).and_then(|v| v.as_str()).unwrap_or("");
                let factor = s.get("factor").and_then(|v| v.as_f64()).unwrap_or(1.0) as f32;
                match kind {
                    "default" => 1.0,
                    "linear" if factor > 0.0 => 1.0 / factor,
                    other => bail!("rope_scaling type \"{other}\" is not supported by kind \"mlx\""),
                }
            }
        };
        let quant = match &raw.quantization {
            None | Some(serde_json::Value::Null) => None,
            Some(q) => {
                let n = |k: &str| q.get(k).and_then(|v| v.as_i64()).map(|v| v as i32);
                let mode = q.get("mode").and_then(|v| v.as_str()).unwrap_or("affine");
                if mode != "affine" {
                    bail!("quantization.mode \"{mode}\" is not supported (affine is)");
                }
                Some(Quant { group_size: n("group_size").unwrap_or(64), bits: n("bits").unwrap_or(4) })
            }
        };
        let eos_token_ids = eos_ids(raw.eos_token_id.as_ref());
        Ok(ModelConfig {
            arch,
            hidden_size: raw.hidden_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim: raw.head_dim.unwrap_or(raw.hidden_size / raw.num_attention_heads),
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: raw.rope_theta.unwrap_or(10000.0),
            rope_scale,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(arch != Arch::Llama),
            attention_bias: raw.attention_bias.unwrap_or(arch == Arch::Qwen2),
            eos_token_ids,
            quant,
        })
    }
}

/// `eos_token_id` as a number or a list of numbers.
pub fn eos_ids(v: Option<&serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|n| n.as_u64()).map(|n| n as u32).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(extra: serde_json::Value) -> Result<ModelConfig> {
        let mut v = serde_json::json!({"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6,
            "eos_token_id": 2});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        ModelConfig::from_raw(serde_json::from_value(v)?)
    }

    #[test]
    fn reads_qwen3_with_quantization() {
        let c = raw(serde_json::json!({"quantization": {"group_size": 32, "bits": 8}})).unwrap();
        assert_eq!(c.arch, Arch::Qwen3);
        assert_eq!(c.quant, Some(Quant { group_size: 32, bits: 8 }));
        assert_eq!(c.eos_token_ids, vec![2]);
        assert!(c.tie_word_embeddings);
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        let e = raw(serde_json::json!({"model_type": "gemma3"})).unwrap_err();
        assert!(e.to_string().contains("gemma3"), "{e}");
        let e = raw(serde_json::json!({"rope_scaling": {"type": "yarn", "factor": 4.0}})).unwrap_err();
        assert!(e.to_string().contains("yarn"), "{e}");
        assert!(raw(serde_json::json!({"num_key_value_heads": 3})).is_err());
    }
}
