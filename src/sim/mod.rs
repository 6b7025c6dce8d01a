//! `soakd sim`: a built-in OpenAI-compatible LLM server with controllable speed, memory growth,
//! crash triggers and faults, used by `soakd demo` and by fault tests.
//!
//! This file owns the command-line options ([`SimArgs`]), the entry points ([`serve`] on a
//! bound listener, [`run`] for the CLI) and the router. The rest of the module:
//! `options` (validated settings), `behaviour` (pure "what happens to request n"), `request`
//! (parsing the client's JSON), `plan` (the script of one reply), `stream` / `complete`
//! (streamed / non-streamed playback), `shapes` (JSON bodies), `ballast` (memory growth),
//! `state` (counters, lifecycle, crash), `conn` (killable connections), `handlers` (routes),
//! and the other servers' own APIs (`--flavour`): `lmstudio` (REST API v0), `ollama`
//! (`/api/chat`, `/api/ps`, ...), `vllm` (`/version`, `/metrics`).

mod ballast;
mod behaviour;
mod complete;
mod conn;
mod handlers;
mod lmstudio;
mod ollama;
mod options;
mod plan;
mod request;
mod shapes;
mod state;
mod stream;
mod vllm;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod serve_tests;
#[cfg(test)]
mod test_support;

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};
use clap::Parser;

pub use options::{CrashStyle, FaultKind, FaultSpec, Flavour};

use conn::{ConnHandle, SimListener};
use options::Options;
use state::SimState;

/// How long in-flight responses get to finish after shutdown before `serve` returns anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `soakd sim` options (a clap::Args struct; the main crate embeds it as a subcommand).
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on; must be a loopback address (127.0.0.1, ::1 or localhost).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 lets the OS pick a free one (printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Model id the server reports in /v1/models and in every completion.
    #[arg(long, default_value = "sim-model")]
    pub model: String,
    /// Which server's own API to serve beside the OpenAI one: `lmstudio` adds LM Studio's REST
    /// API (/api/v0), `ollama` Ollama's (/api/chat, /api/ps, /api/version, /api/tags).
    #[arg(long, value_enum, default_value_t = Flavour::Openai)]
    pub flavour: Flavour,
    /// How long loading the model takes, in ms: the first request after the model was unloaded
    /// (by a crash, or at start with --flavour ollama) waits this long before its first token.
    /// Default: 1500 with --flavour ollama, else 0.
    #[arg(long, value_name = "MS")]
    pub load_ms: Option<u64>,
    /// Seed for every random choice (faults, words, jitter), so runs are reproducible.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Delay before the first token, in milliseconds.
    #[arg(long, default_value_t = 150)]
    pub ttft_ms: u64,
    /// Generation speed after the first token, in tokens per second.
    #[arg(long, default_value_t = 50.0)]
    pub tokens_per_s: f64,
    /// Each delay is multiplied by a random factor in [1-JITTER, 1+JITTER] (0..=1).
    #[arg(long, default_value_t = 0.1)]
    pub jitter: f64,
    /// The first N tokens of every reply are `reasoning_content` before the content starts.
    #[arg(long, default_value_t = 0)]
    pub reasoning_tokens: u32,

    /// Memory the server grows by (and holds) for every chat request, in KiB.
    #[arg(long, default_value_t = 0)]
    pub grow_per_request_kb: u64,
    /// Memory the server grows by per hour in the background, in MiB (small steps each second).
    #[arg(long, default_value_t = 0)]
    pub grow_per_hour_mb: u64,
    /// Growth stops at this total, in MiB, giving a plateau (0 = no cap).
    #[arg(long, default_value_t = 0)]
    pub memory_cap_mb: u64,
    /// When the ballast reaches this size, in MiB, it is freed back to 0 like a flushed cache (0 = never).
    #[arg(long, default_value_t = 0)]
    pub sawtooth_mb: u64,
    /// Memory noise: every second, hold a fresh buffer of a random 0..N MiB (RSS moves up and
    /// down around the trend, as a real server's does).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub memory_noise_mb: u64,

    /// Crash on the Nth chat request (counting from 1).
    #[arg(long, value_name = "N")]
    pub exit_after: Option<u64>,
    /// Crash each chat request with this probability (0..=1).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub exit_probability: f64,
    /// Crash when more than K chat requests are in flight.
    #[arg(long, value_name = "K")]
    pub exit_above_concurrency: Option<u32>,
    /// Crash when a prompt is longer than T tokens (estimated as characters / 4).
    #[arg(long, value_name = "T")]
    pub exit_above_prompt_tokens: Option<u64>,
    /// Crash when a request starts less than G ms after the previous one ended.
    #[arg(long, value_name = "G")]
    pub exit_on_rapid_ms: Option<u64>,
    /// The process aborts (exit 134) at its Nth request whatever --crash-style says: an engine
    /// dying outright, beside the LM Studio-style answers.
    #[arg(long, value_name = "N")]
    pub abort_after: Option<u64>,
    /// How likely a rapid request (see --exit-on-rapid-ms) is to crash (0..=1).
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    pub rapid_crash_probability: f64,
    /// Streamed requests crash, reset, truncate, stall or go malformed after this many tokens.
    #[arg(long, default_value_t = 3)]
    pub exit_after_tokens: u32,
    /// What a crash does: `exit` ends the process with code 134; `lmstudio` answers like LM
    /// Studio when its engine dies, then reports the model unloaded; `ollama` answers like
    /// Ollama when its runner dies, and the next request reloads the model.
    #[arg(long, value_enum, default_value_t = CrashStyle::Exit)]
    pub crash_style: CrashStyle,
    /// With --crash-style lmstudio: how many requests after a crash get "Model is unloaded."
    /// (the model is `not-loaded` until the request after them loads it again).
    #[arg(long, default_value_t = 2)]
    pub unloaded_requests: u32,

    /// Inject a fault with a per-request probability, KIND=PROB (repeatable; first match wins).
    /// KIND: http500, http503, metal-oom, hang, stall, reset, truncate, malformed, empty.
    #[arg(long, value_name = "KIND=PROB")]
    pub fault: Vec<FaultSpec>,
    /// How long the `stall` fault pauses mid-stream, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub stall_ms: u64,
    /// Request bodies larger than this (KiB) are refused with 413.
    #[arg(long, default_value_t = 1024)]
    pub max_body_kb: u64,

    /// Whether a crash trigger really exits the process (code 134). [`run`] sets it; in-process
    /// users of [`serve`] leave it false and get a dead server (`crashed: true`) instead.
    #[arg(skip)]
    pub exit_on_crash: bool,
}

/// Parses nothing but the defaults, for `SimArgs::default()`.
#[derive(Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    args: SimArgs,
}

impl Default for SimArgs {
    /// The same values as `soakd sim` with no flags.
    fn default() -> Self {
        DefaultsOnly::parse_from(["sim"]).args
    }
}

/// Serve on an already-bound listener until `shutdown` resolves, or until a crash trigger makes the
/// process exit (std::process::exit / abort) — only when `exit_on_crash` is true; in-process tests pass false and get a 'crashed' state instead.
pub async fn serve(
    listener: tokio::net::TcpListener,
    args: SimArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let opts = Options::from_args(&args)?;
    let addr = listener.local_addr().context("cannot read the listener's address")?;
    if !addr.ip().is_loopback() {
        anyhow::bail!("soakd sim refuses to serve on {addr}: bind the listener to 127.0.0.1 (or ::1) instead");
    }
    let state = SimState::new(opts);
    let grower = tokio::spawn(ballast::grow_over_time(
        state.ballast.clone(),
        state.opts.memory.grow_per_hour,
        state.stop_signal(),
    ));
    let noise = tokio::spawn(ballast::noise(state.opts.memory.noise, state.opts.seed, state.stop_signal()));
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stopper = {
        let state = state.clone();
        tokio::spawn(async move {
            shutdown.await;
            state.stop();
            // The receiver is gone only when serving already ended.
            let _ = shutdown_tx.send(());
        })
    };
    let app = router(state.clone()).into_make_service_with_connect_info::<ConnHandle>();
    let server = axum::serve(SimListener::new(listener), app).with_graceful_shutdown(async move {
        // A dropped sender also means "stop".
        let _ = shutdown_rx.await;
    });
    let mut server = tokio::spawn(async move { server.await });
    // Serve until shutdown is asked for (an in-process crash keeps /sim/stats answering until
    // then); afterwards give open responses a grace period.
    let result = tokio::select! {
        joined = &mut server => joined,
        _ = &mut stopper => match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(joined) => joined,
            Err(_elapsed) => {
                tracing::warn!("soakd sim: connections still open after shutdown; leaving them");
                server.abort();
                Ok(Ok(()))
            }
        },
    };
    grower.abort();
    noise.abort();
    stopper.abort();
    result.context("soakd sim server task failed")?.context("soakd sim stopped serving")?;
    Ok(())
}

/// Bind `args.host:args.port` (host must be a loopback address: refuse anything else with a clear error), print one line `soakd sim listening on http://127.0.0.1:PORT` to stdout (tests read it; with --port 0 the OS picks the port), serve until Ctrl-C/SIGTERM.
pub async fn run(mut args: SimArgs) -> anyhow::Result<()> {
    let host = options::parse_loopback(&args.host)?;
    Options::from_args(&args)?;
    let listener = tokio::net::TcpListener::bind((host, args.port)).await.with_context(|| {
        format!("cannot listen on {host} port {}; pick another --port (0 lets the OS choose)", args.port)
    })?;
    let addr = listener.local_addr().context("cannot read the bound address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "soakd sim listening on http://{addr}").context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    drop(stdout);
    args.exit_on_crash = true;
    serve(listener, args, termination()).await
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn termination() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!("soakd sim: cannot listen for Ctrl-C: {err}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::warn!("soakd sim: cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The routes.
fn router(state: Arc<SimState>) -> Router {
    let router = Router::new()
        .route("/health", get(handlers::health))
        .route("/v1/models", get(handlers::models))
        .route("/v1/chat/completions", post(handlers::chat))
        .route("/sim/stats", get(handlers::stats));
    let router = match state.opts.flavour {
        Flavour::Openai => router,
        Flavour::Lmstudio => router
            .route("/api/v0/models", get(lmstudio::models))
            .route("/api/v0/models/{id}", get(lmstudio::model))
            .route("/api/v0/chat/completions", post(handlers::lmstudio_chat)),
        Flavour::Ollama => router
            .route("/api/chat", post(handlers::ollama_chat))
            .route("/api/ps", get(ollama::ps))
            .route("/api/version", get(ollama::version))
            .route("/api/tags", get(ollama::tags)),
        Flavour::Vllm => router.route("/version", get(vllm::version)).route("/metrics", get(vllm::metrics)),
    };
    router.fallback(handlers::not_found).with_state(state)
}
