//! The decoder: token embedding, N transformer blocks (RMSNorm → GQA attention with RoPE and,
//! for Qwen3, per-head q/k RMSNorm → RMSNorm → SwiGLU MLP), final norm, tied or untied head;
//! and the KV cache that carries attention state from one step to the next. The ops and their
//! order follow mlx_lm's `qwen3.py`/`llama.py`, so greedy output matches mlx_lm's token for token.

use super::config::{Arch, ModelConfig};
use super::weights::{Embedding, Linear, Weights};
use anyhow::{Result, bail};
use mlx_rs::Array;
use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops::concatenate;
use std::path::Path;

struct Block {
    input_norm: Array,
    post_norm: Array,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Array>,
    k_norm: Option<Array>,
    gate: Linear,
    up: Linear,
    down: Linear,
}

enum Head {
    Tied,
    Untied(Linear),
}

pub struct Model {
    pub config: ModelConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Array,
    head: Head,
}

/// Keys and values of every layer for the tokens seen so far (`[1, kv_heads, T, head_dim]`).
#[derive(Default)]
pub struct Cache {
    layers: Vec<Option<(Array, Array)>>,
    offset: i32,
}

impl Cache {
    /// Tokens the cache holds.
    pub fn len(&self) -> i32 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }
}

impl Model {
    /// Loads `config.json` and the safetensors of a checkpoint folder.
    pub fn load(dir: &Path) -> Result<Model> {
        let config = ModelConfig::load(dir)?;
        let mut w = Weights::load(dir, config.quant)?;
        let bias = config.attention_bias;
        let mut blocks = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("model.layers.{i}");
            let (q_norm, k_norm) = if config.arch == Arch::Qwen3 {
                (
                    Some(w.take(&format!("{p}.self_attn.q_norm.weight"))?),
                    Some(w.take(&format!("{p}.self_attn.k_norm.weight"))?),
                )
            } else {
                (None, None)
            };
            blocks.push(Block {
                input_norm: w.take(&format!("{p}.input_layernorm.weight"))?,
                post_norm: w.take(&format!("{p}.post_attention_layernorm.weight"))?,
                q: w.linear(&format!("{p}.self_attn.q_proj"), bias)?,
                k: w.linear(&format!("{p}.self_attn.k_proj"), bias)?,
                v: w.linear(&format!("{p}.self_attn.v_proj"), bias)?,
                o: w.linear(&format!("{p}.self_attn.o_proj"), false)?,
                q_norm,
                k_norm,
                gate: w.linear(&format!("{p}.mlp.gate_proj"), false)?,
                up: w.linear(&format!("{p}.mlp.up_proj"), false)?,
                down: w.linear(&format!("{p}.mlp.down_proj"), false)?,
            });
        }
        // As mlx_lm: a checkpoint with `lm_head.weight` has an untied head, whatever the config says.
        let head = if w.has("lm_head.weight") { Head::Untied(w.linear("lm_head", false)?) } else { Head::Tied };
        let model = Model {
            embed: w.embedding("model.embed_tokens")?,
            norm: w.take("model.norm.weight")?,
            blocks,
            head,
            config,
        };
        model.materialize()?;
        Ok(model)
    }

    /// Reads every weight into memory now (MLX is lazy), so load time is paid at load.
    fn materialize(&self) -> Result<()> {
        let mut all: Vec<&Array> = vec![&self.norm];
        for b in &self.blocks {
            all.extend([&b.input_norm, &b.post_norm]);
            all.extend(b.q_norm.iter().chain(b.k_norm.iter()));
        }
        mlx_rs::transforms::eval(all)?;
        // Linear layers and embeddings are evaluated on first use; force one tiny forward pass.
        let mut cache = self.new_cache();
        self.forward(&[0], &mut cache)?.eval()?;
        Ok(())
    }

    pub fn new_cache(&self) -> Cache {
        Cache { layers: (0..self.blocks.len()).map(|_| None).collect(), offset: 0 }
    }

    /// Runs `tokens` through the model after what `cache` holds; returns the logits of the
    /// last position (`[vocab]`, lazy) and extends the cache.
    pub fn forward(&self, tokens: &[u32], cache: &mut Cache) -> Result<Array> {
        if tokens.is_empty() {
            bail!("forward needs at least one token");
        }
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        let len = ids.len() as i32;
        let ids = Array::from_slice(&ids, &[1, len]);
        let mut h = self.embed.lookup(&ids)?;
        let c = &self.config;
        for (i, b) in self.blocks.iter().enumerate() {
            let x = fast::rms_norm(&h, Some(&b.input_norm), c.rms_norm_eps)?;
            let attn = self.attention(b, &x, &mut cache.layers[i], cache.offset, len)?;
            h = h.add(&attn)?;
            let x = fast::rms_norm(&h, Some(&b.post_norm), c.rms_norm_eps)?;
            let g = b.gate.forward(&x)?;
            let mlp = b.down.forward(&mlx_rs::nn::silu(&g)?.multiply(b.up.forward(&x)?)?)?;
            h = h.add(&mlp)?;
        }
        cache.offset += len;
        let h = fast::rms_norm(&h, Some(&self.norm), c.rms_norm_eps)?;
        let logits = match &self.head {
            Head::Tied => self.embed.as_linear(&h)?,
            Head::Untied(l) => l.forward(&h)?,
        };
        let vocab = logits.dim(-1);
        let last = logits.reshape(&[len, vocab])?.take_axis(Array::from_int(len - 1), 0)?;
        Ok(last)
    }

    fn attention(
        &self,
        b: &Block,
        x: &Array,
        layer_cache: &mut Option<(Array, Array)>,
        offset: i32,
        len: i32,
    ) -> Result<Array> {
        let c = &self.config;
        let heads = |a: Array, n: i32, norm: Option<&Array>| -> Result<Array> {
            let a = a.reshape(&[1, len, n, -1])?;
            let a = match norm {
                Some(w) => fast::rms_norm(&a, Some(w), c.rms_norm_eps)?,
                None => a,
            };
            Ok(a.transpose_axes(&[0, 2, 1, 3])?)
        };
        let q = heads(b.q.forward(x)?, c.num_heads, b.q_norm.as_ref())?;
        let k = heads(b.k.forward(x)?, c.num_kv_heads, b.k_norm.as_ref())?;
        let v = heads(b.v.forward(x)?, c.num_kv_heads, None)?;
        let rope = |a: &Array| fast::rope(a, c.head_dim, false, c.rope_theta, c.rope_scale, offset, None);
        let q = rope(&q)?;
        let k = rope(&k)?;
        let (k, v) = match layer_cache.take() {
            Some((pk, pv)) => (concatenate(&[pk, k], 2)?, concatenate(&[pv, v], 2)?),
            None => (k, v),
        };
        let scale = (f64::from(c.head_dim)).powf(-0.5) as f32;
        let mask = (len > 1).then_some(ScaledDotProductAttentionMask::Causal);
        let out = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask, None)?;
        *layer_cache = Some((k, v));
        let out = out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[1, len, -1])?;
        b.o.forward(&out)
    }
}
