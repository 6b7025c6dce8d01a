//! A checkpoint's tensors (`model*.safetensors`, as MLX-community ships them) turned into the
//! decoder's layers: linear layers and embeddings, dense (bf16/f16/f32) or quantized (affine,
//! `weight`/`scales`/`biases` with the config's group size and bits). A layer counts as
//! quantized when its `scales` tensor is present, as in mlx_lm.

use super::config::Quant;
use anyhow::{Context, Result, anyhow, bail};
use mlx_rs::Array;
use mlx_rs::ops::{dequantize, matmul, quantized_matmul, transpose};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// All tensors of a checkpoint, taken out one by one by the layers that use them.
pub struct Weights {
    dir: PathBuf,
    tensors: HashMap<String, Array>,
    quant: Option<Quant>,
}

impl Weights {
    pub fn load(dir: &Path, quant: Option<Quant>) -> Result<Weights> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the model folder {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                name.starts_with("model") && name.ends_with(".safetensors")
            })
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{}: no model*.safetensors files", dir.display());
        }
        let mut tensors = HashMap::new();
        for f in &files {
            let part = Array::load_safetensors(f).map_err(|e| anyhow!("{}: {e}", f.display()))?;
            tensors.extend(part);
        }
        Ok(Weights { dir: dir.to_path_buf(), tensors, quant })
    }

    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    pub fn take(&mut self, key: &str) -> Result<Array> {
        self.tensors
            .remove(key)
            .ok_or_else(|| anyhow!("{}: tensor {key} is missing from the safetensors files", self.dir.display()))
    }

    fn quant_of(&self, prefix: &str) -> Result<Option<Quant>> {
        if !self.has(&format!("{prefix}.scales")) {
            return Ok(None);
        }
        self.quant.map(Some).ok_or_else(|| {
            anyhow!("{}: {prefix} is quantized but config.json has no `quantization` entry", self.dir.display())
        })
    }

    /// The linear layer `prefix` (`prefix.weight`, optional `prefix.bias`, quantized or not).
    pub fn linear(&mut self, prefix: &str, bias: bool) -> Result<Linear> {
        let bias = if bias { Some(self.take(&format!("{prefix}.bias"))?) } else { None };
        let weight = self.take(&format!("{prefix}.weight"))?;
        let kind = match self.quant_of(prefix)? {
            None => LinearKind::Dense(weight),
            Some(q) => LinearKind::Quantized {
                weight,
                scales: self.take(&format!("{prefix}.scales"))?,
                biases: self.tensors.remove(&format!("{prefix}.biases")),
                quant: q,
            },
        };
        Ok(Linear { kind, bias })
    }

    /// The embedding table `prefix` (`prefix.weight`, quantized or not).
    pub fn embedding(&mut self, prefix: &str) -> Result<Embedding> {
        Ok(Embedding(self.linear(prefix, false)?.kind))
    }
}

enum LinearKind {
    /// `[out, in]`.
    Dense(Array),
    /// Packed `[out, in * bits / 32]` with per-group scales and biases.
    Quantized { weight: Array, scales: Array, biases: Option<Array>, quant: Quant },
}

/// `y = x Wᵀ (+ b)`.
pub struct Linear {
    kind: LinearKind,
    bias: Option<Array>,
}

impl Linear {
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let y = matmul_t(&self.kind, x)?;
        Ok(match &self.bias {
            Some(b) => y.add(b)?,
            None => y,
        })
    }
}

fn matmul_t(kind: &LinearKind, x: &Array) -> Result<Array> {
    Ok(match kind {
        LinearKind::Dense(w) => matmul(x, transpose(w)?)?,
        LinearKind::Quantized { weight, scales, biases, quant } => {
            quantized_matmul(x, weight, scales, biases.as_ref(), true, quant.group_size, quant.bits)?
        }
    })
}

/// A token embedding table; with tied weights it is also the output projection.
pub struct Embedding(LinearKind);

impl Embedding {
    /// The rows for `ids` (`[B, L]` → `[B, L, hidden]`).
    pub fn lookup(&self, ids: &Array) -> Result<Array> {
        Ok(match &self.0 {
            LinearKind::Dense(w) => w.take_axis(ids, 0)?,
            LinearKind::Quantized { weight, scales, biases, quant } => {
                let b = biases.as_ref().map(|b| b.take_axis(ids, 0)).transpose()?;
                dequantize(
                    weight.take_axis(ids, 0)?,
                    scales.take_axis(ids, 0)?,
                    b.as_ref(),
                    quant.group_size,
                    quant.bits,
                )?
            }
        })
    }

    /// `x Eᵀ`: logits from hidden states (tied `lm_head`).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        matmul_t(&self.0, x)
    }
}
