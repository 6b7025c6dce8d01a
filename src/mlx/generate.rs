//! One generation: prefill the prompt, then decode token by token with the KV cache until eos
//! or `max_tokens`, as mlx_lm's `generate_step` does (the prompt but its last token first, then
//! the last token alone). Greedy (temperature 0) takes the argmax of the log-probabilities on
//! the device; otherwise temperature and top-p sampling run on the host with a seeded RNG.
//! Reports its own timings and MLX's memory counters.

use super::model::Model;
use anyhow::{Result, anyhow};
use mlx_rs::Array;
use mlx_rs::ops::indexing::argmax_axis;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::BTreeSet;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub max_tokens: u32,
    /// 0: greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
}

/// What one generation did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// `stop` (eos) or `length`.
    pub finish_reason: &'static str,
    /// From the call to the first sampled token (prefill included).
    pub ttft_ms: f64,
    /// Tokens after the first, per second of decoding.
    pub decode_tps: Option<f64>,
    pub total_ms: f64,
    /// MLX's active memory after the generation, and its peak during it (bytes).
    pub active_bytes: u64,
    pub peak_bytes: u64,
}

/// Runs the model on `prompt`; `on_token` gets each sampled token (not eos) and may stop the
/// generation by returning false.
pub fn generate(
    model: &Model,
    eos: &BTreeSet<u32>,
    prompt: &[u32],
    params: Params,
    mut on_token: impl FnMut(u32) -> Result<bool>,
) -> Result<Stats> {
    let start = Instant::now();
    if prompt.is_empty() {
        return Err(anyhow!("the prompt has no tokens"));
    }
    mlx_rs::memory::reset_peak_memory()?;
    let mut rng = match params.seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_os_rng(),
    };
    let mut cache = model.new_cache();
    let (head, last) = prompt.split_at(prompt.len() - 1);
    if !head.is_empty() {
        model.forward(head, &mut cache)?.eval()?;
    }
    let mut logits = model.forward(last, &mut cache)?;
    let mut stats = Stats { prompt_tokens: prompt.len() as u32, finish_reason: "length", ..Stats::default() };
    let mut first_at = None;
    while stats.completion_tokens < params.max_tokens {
        let token = sample(&logits, params, &mut rng)?;
        let now = Instant::now();
        if first_at.is_none() {
            first_at = Some(now);
            stats.ttft_ms = ms(now - start);
        }
        if eos.contains(&token) {
            stats.finish_reason = "stop";
            break;
        }
        stats.completion_tokens += 1;
        if !on_token(token)? {
            stats.finish_reason = "stop";
            break;
        }
        if stats.completion_tokens >= params.max_tokens {
            break;
        }
        logits = model.forward(&[token], &mut cache)?;
    }
    let end = Instant::now();
    if let Some(first) = first_at
        && stats.completion_tokens > 1
        && end > first
    {
        stats.decode_tps = Some(f64::from(stats.completion_tokens - 1) / (end - first).as_secs_f64());
    }
    stats.total_ms = ms(end - start);
    stats.active_bytes = mlx_rs::memory::active_memory()? as u64;
    stats.peak_bytes = mlx_rs::memory::peak_memory()? as u64;
    Ok(stats)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The next token from the last position's logits (`[vocab]`).
fn sample(logits: &Array, params: Params, rng: &mut StdRng) -> Result<u32> {
    if params.temperature <= 0.0 {
        // As mlx_lm: argmax of logits - logsumexp(logits).
        let logprobs = logits.subtract(logits.logsumexp(true)?)?;
        let id = argmax_axis(&logprobs, -1, false)?;
        return Ok(id.try_item_cast::<u32>()?);
    }
    let values: Vec<f32> = logits.to_vec_cast::<f32>()?;
    Ok(sample_host(&values, params.temperature, params.top_p, rng.random::<f64>()))
}

/// Temperature then nucleus (top-p) sampling over `logits`, with `u` uniform in [0, 1).
fn sample_host(logits: &[f32], temperature: f32, top_p: f32, u: f64) -> u32 {
    let t = f64::from(temperature);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(u32, f64)> =
        logits.iter().enumerate().map(|(i, &l)| (i as u32, ((f64::from(l) - max) / t).exp())).collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let top_p = if top_p > 0.0 && top_p < 1.0 { f64::from(top_p) } else { 1.0 };
    let mut kept = 0.0;
    let mut n = 0;
    for p in &probs {
        kept += p.1 / total;
        n += 1;
        if kept >= top_p {
            break;
        }
    }
    let kept_total: f64 = probs[..n].iter().map(|p| p.1).sum();
    let mut target = u * kept_total;
    for p in &probs[..n] {
        if target < p.1 {
            return p.0;
        }
        target -= p.1;
    }
    probs[n - 1].0
}

#[cfg(test)]
mod tests {
    use super::sample_host;

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities ~ 0.64, 0.24, 0.09, 0.03: top_p 0.5 keeps only the first token.
        let logits = [3.0, 2.0, 1.0, 0.0];
        for u in [0.0, 0.5, 0.999] {
            assert_eq!(sample_host(&logits, 1.0, 0.5, u), 0);
        }
        // With everything kept, a high u reaches the last token.
        assert_eq!(sample_host(&logits, 1.0, 1.0, 0.9999), 3);
        assert_eq!(sample_host(&logits, 1.0, 1.0, 0.0), 0);
    }
}
