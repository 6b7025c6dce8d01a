//! Kind `mlx`'s engine: a Qwen3 (and Qwen2/Llama) decoder written on mlx-rs's own ops, with the
//! tokenizer and chat template of an MLX-community checkpoint, run in-process by `soakd
//! mlx-worker` (never in the daemon itself: MLX aborts the process on some GPU errors, so the
//! daemon talks to the worker over JSON lines and records an abort as a `crash`).
//!
//! - `config`: `config.json` (architecture, sizes, quantization).
//! - `weights`: `model*.safetensors` into dense or quantized linear layers and embeddings.
//! - `model`: the decoder and its KV cache.
//! - `chat`: `tokenizer.json` and the Jinja chat template of `tokenizer_config.json`.
//! - `generate`: prefill, decode, sampling, stop on eos, timings and MLX memory.
//! - `worker`: the `soakd mlx-worker` loop (protocol in `backend::mlx`).

pub mod chat;
pub mod config;
pub mod generate;
pub mod model;
pub mod weights;
pub mod worker;

/// The MLX library version this binary runs (`mlx_version()` of mlx-c).
pub fn mlx_version() -> String {
    // SAFETY: mlx_string_new/mlx_version/mlx_string_data/mlx_string_free are mlx-c's string API;
    // the data pointer is read before the string is freed.
    unsafe {
        let mut s = mlx_sys::mlx_string_new();
        let text = if mlx_sys::mlx_version(&mut s) == 0 {
            let p = mlx_sys::mlx_string_data(s);
            if p.is_null() { String::new() } else { std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned() }
        } else {
            String::new()
        };
        mlx_sys::mlx_string_free(s);
        text
    }
}
