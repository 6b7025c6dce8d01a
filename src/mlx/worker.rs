//! `soakd mlx-worker --model DIR`: loads the model once, then answers JSON-line requests on
//! stdin with JSON lines on stdout until stdin closes. The protocol (one object per line):
//!
//! ```text
//! → after loading   {"event":"ready","load_ms":…,"mlx_version":"…","device":"gpu|cpu","active_bytes":…,"peak_bytes":…}
//!   or, failing     {"event":"error","fatal":true,"message":"…"}   (then exit 1)
//! ← {"op":"generate","messages":[{"role":"user","content":"…"}],"max_tokens":N,"temperature":T,"top_p":P,"seed":S,"ids":false}
//! → {"event":"token","text":"…"}   per token that adds printable text
//! → {"event":"done","prompt_tokens":…,"completion_tokens":…,"finish_reason":"stop|length","ttft_ms":…,
//!    "decode_tps":…,"total_ms":…,"active_bytes":…,"peak_bytes":…,"token_ids":[…] (with "ids":true)}
//!   or {"event":"error","message":"…"}
//! ← {"op":"stats"}  → {"event":"stats","active_bytes":…,"peak_bytes":…}
//! ```
//!
//! Test hook: with `SOAKD_MLX_WORKER_ABORT_ONCE=FILE` set and FILE present, the worker deletes
//! FILE and aborts (SIGABRT, as MLX does on a GPU error) after its second generated token.

use super::chat::{Chat, Message};
use super::generate::{Params, generate};
use super::model::Model;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Generate {
        messages: Vec<Message>,
        max_tokens: u32,
        temperature: Option<f32>,
        top_p: Option<f32>,
        seed: Option<u64>,
        #[serde(default)]
        ids: bool,
    },
    Stats,
}

fn send(v: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn memory() -> (u64, u64) {
    (mlx_rs::memory::active_memory().unwrap_or(0) as u64, mlx_rs::memory::peak_memory().unwrap_or(0) as u64)
}

/// Runs the worker; returns when stdin closes (or stdout does).
pub fn run(model_dir: &Path) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let loaded = Model::load(model_dir).and_then(|m| {
        let chat = Chat::load(model_dir, &m.config.eos_token_ids)?;
        Ok((m, chat))
    });
    let (model, chat) = match loaded {
        Ok(x) => x,
        Err(e) => {
            send(&json!({"event": "error", "fatal": true, "message": format!("{e:#}")}))?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let (active, peak) = memory();
    let device = if cfg!(target_os = "macos") { "gpu" } else { "cpu" };
    send(&json!({
        "event": "ready",
        "load_ms": start.elapsed().as_secs_f64() * 1000.0,
        "mlx_version": super::mlx_version(),
        "device": device,
        "active_bytes": active,
        "peak_bytes": peak,
    }))?;
    let abort_file = std::env::var_os("SOAKD_MLX_WORKER_ABORT_ONCE").map(std::path::PathBuf::from);
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => json!({"event": "error", "message": format!("bad request: {e}")}),
            Ok(Request::Stats) => {
                let (active, peak) = memory();
                json!({"event": "stats", "active_bytes": active, "peak_bytes": peak})
            }
            Ok(Request::Generate { messages, max_tokens, temperature, top_p, seed, ids }) => {
                let params =
                    Params { max_tokens, temperature: temperature.unwrap_or(0.0), top_p: top_p.unwrap_or(1.0), seed };
                let abort = abort_file.as_deref().filter(|f| f.exists());
                match serve(&model, &chat, &messages, params, ids, abort) {
                    Ok(v) => v,
                    Err(e) => json!({"event": "error", "message": format!("{e:#}")}),
                }
            }
        };
        if send(&reply).is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(
    model: &Model,
    chat: &Chat,
    messages: &[Message],
    params: Params,
    want_ids: bool,
    abort: Option<&Path>,
) -> anyhow::Result<Value> {
    let prompt = chat.prompt_ids(messages)?;
    let mut ids: Vec<u32> = Vec::new();
    // Incremental detokenizing over a short window: ids[prefix..read] were sent already.
    let (mut prefix, mut read) = (0usize, 0usize);
    let stats = generate(model, &chat.eos_ids, &prompt, params, |token| {
        ids.push(token);
        if let Some(f) = abort
            && ids.len() == 2
        {
            let _ = std::fs::remove_file(f);
            std::process::abort();
        }
        // Send the text the new token completes (a token may end mid-character: wait then).
        let before = chat.decode(&ids[prefix..read])?;
        let now = chat.decode(&ids[prefix..])?;
        if now.len() > before.len()
            && !now.ends_with('\u{FFFD}')
            && let Some(new) = now.get(before.len()..)
        {
            send(&json!({"event": "token", "text": new}))?;
            (prefix, read) = (read, ids.len());
        }
        Ok(true)
    })?;
    let mut done = json!({
        "event": "done",
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "finish_reason": stats.finish_reason,
        "ttft_ms": stats.ttft_ms,
        "decode_tps": stats.decode_tps,
        "total_ms": stats.total_ms,
        "active_bytes": stats.active_bytes,
        "peak_bytes": stats.peak_bytes,
    });
    if want_ids {
        done["token_ids"] = json!(ids);
    }
    Ok(done)
}
