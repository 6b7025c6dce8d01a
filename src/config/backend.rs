//! One `[[backend]]` entry: which server, which kind of API, where its process and log are.
//!
//! HTTP kinds default their URL to the server's well-known local port; the `mlx-lm` and `mlx`
//! kinds have no server at all (soakd runs the model in a worker process of its own, whose pid it
//! shares with the sampler through a `WorkerPid`).

use crate::fields::{Fields, Place, Problem};
use regex::Regex;
use reqwest::Url;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// One LLM server soakd talks to.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    pub kind: BackendKind,
    /// Base URL, without the `/v1` suffix. For `mlx-lm`: the model folder as a `file:` URL.
    pub url: Url,
    /// Sent as the request's `model` when set. For `mlx-lm`: the model folder (absolute).
    pub model: Option<String>,
    /// The name of an env var holding a bearer token (the token itself never enters the config).
    pub api_key_env: Option<String>,
    pub process: ProcessSelector,
    /// Reuse pooled HTTP connections between requests, as most clients do.
    pub reuse_connections: bool,
    /// The server's own log file, whose last lines are kept with each failure.
    pub log: Option<PathBuf>,
    /// `mlx-lm`: the Python interpreter that has mlx-lm installed.
    pub python: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Any server with an OpenAI-compatible `/v1/chat/completions`.
    OpenAi,
    /// LM Studio: `/v1` traffic plus its REST API (`/api/v0`).
    LmStudio,
    /// Ollama's native API (`/api/chat`, `/api/ps`).
    Ollama,
    /// llama.cpp's `llama-server` (`/health`, `/metrics`, `/slots`, `/props`).
    LlamaCpp,
    /// vLLM's OpenAI server (`/metrics`, `/version`).
    Vllm,
    /// The mlx_lm Python library, run by soakd in a worker process (no server).
    MlxLm,
    /// MLX in-process through mlx-rs, in soakd's own `mlx-worker` process (no server; needs a
    /// build with the `mlx` feature).
    Mlx,
}

impl BackendKind {
    pub const ALL: [BackendKind; 7] = [
        BackendKind::OpenAi,
        BackendKind::LmStudio,
        BackendKind::Ollama,
        BackendKind::LlamaCpp,
        BackendKind::Vllm,
        BackendKind::MlxLm,
        BackendKind::Mlx,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::OpenAi => "openai",
            BackendKind::LmStudio => "lmstudio",
            BackendKind::Ollama => "ollama",
            BackendKind::LlamaCpp => "llamacpp",
            BackendKind::Vllm => "vllm",
            BackendKind::MlxLm => "mlx-lm",
            BackendKind::Mlx => "mlx",
        }
    }

    /// The port the server listens on unless told otherwise.
    pub fn default_port(self) -> Option<u16> {
        match self {
            BackendKind::LmStudio => Some(1234),
            BackendKind::Ollama => Some(11434),
            BackendKind::LlamaCpp => Some(8080),
            BackendKind::Vllm => Some(8000),
            BackendKind::OpenAi | BackendKind::MlxLm | BackendKind::Mlx => None,
        }
    }

    /// Whether the worker process runs the model (no URL, no server).
    pub fn is_worker(self) -> bool {
        matches!(self, BackendKind::MlxLm | BackendKind::Mlx)
    }

    fn parse(k: &str) -> Result<BackendKind, String> {
        if k == "mlx" && !cfg!(feature = "mlx") {
            return Err("kind \"mlx\" (in-process MLX) is not in this build of soakd: rebuild with \
                        --features mlx (README, \"Kind mlx\"), or use kind = \"mlx-lm\" (mlx_lm in a Python worker)"
                .to_string());
        }
        if let Some(kind) = BackendKind::ALL.into_iter().find(|kind| kind.as_str() == k) {
            return Ok(kind);
        }
        Err(format!(
            "unknown kind \"{k}\"; use one of {}",
            BackendKind::ALL.map(|k| format!("\"{}\"", k.as_str())).join(", ")
        ))
    }
}

/// Which process holds a backend's memory.
#[derive(Debug, Clone)]
pub enum ProcessSelector {
    /// The process listening on this TCP port.
    Port(u16),
    Pid(u32),
    /// The oldest process whose name or command line matches.
    Name(Regex),
    /// A worker process soakd starts itself (`mlx-lm`, `mlx`); its pid is set while it runs.
    Worker(WorkerPid),
    /// Not sampled (a remote server).
    None,
}

impl ProcessSelector {
    pub fn describe(&self) -> String {
        match self {
            ProcessSelector::Port(p) => format!("the process listening on port {p}"),
            ProcessSelector::Pid(p) => format!("pid {p}"),
            ProcessSelector::Name(r) => format!("the process matching /{}/", r.as_str()),
            ProcessSelector::Worker(_) => "soakd's own worker process".to_string(),
            ProcessSelector::None => "none".to_string(),
        }
    }
}

/// The pid of a worker process soakd runs, shared between its adapter and the sampler
/// (0 while none runs).
#[derive(Debug, Clone, Default)]
pub struct WorkerPid(Arc<AtomicU32>);

impl WorkerPid {
    pub fn get(&self) -> Option<u32> {
        Some(self.0.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }

    pub fn set(&self, pid: Option<u32>) {
        self.0.store(pid.unwrap_or(0), Ordering::SeqCst);
    }
}

pub(super) fn parse_backend(
    table: toml::Table,
    n: usize,
    path: &Path,
    problems: &mut Vec<Problem>,
) -> Option<BackendConfig> {
    let label = match table.get("name").and_then(|v| v.as_str()) {
        Some(name) => format!("backend \"{name}\" (entry {n})"),
        None => format!("backend entry {n}"),
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: String| if Path::new(&p).is_absolute() { PathBuf::from(p) } else { base.join(p) };
    let mut f = Fields::new(table, Place::entry(path, label), problems);
    let name: Option<String> = f.require("name", "give the backend a short name, e.g. name = \"mlx-server\"");
    if let Some(name) = &name
        && (name.is_empty() || name == "*" || name.len() > 64 || name.chars().any(|c| c.is_control()))
    {
        f.problem("name", "must be 1–64 printable characters and not \"*\"");
    }
    let kind = match f.require::<String>("kind", "say which API the server speaks, e.g. kind = \"openai\"") {
        Some(k) => BackendKind::parse(&k).map_err(|m| f.problem("kind", m)).ok(),
        None => None,
    };
    let url_text: Option<String> = f.take("url");
    let model: Option<String> = f.take("model");
    let api_key_env: Option<String> = f.take("api_key_env");
    if let Some(var) = &api_key_env
        && (var.is_empty() || var.contains('=') || var.contains('\0'))
    {
        f.problem("api_key_env", "must be the NAME of an environment variable (the key itself never goes in the file)");
    }
    let process = f.take_value("process");
    let reuse_connections: bool = f.take("reuse_connections").unwrap_or(true);
    let log = f.take::<String>("log").map(resolve);
    let python = f.take::<String>("python").map(resolve);

    let (url, model, process) = if let Some(k) = kind.filter(|k| k.is_worker()) {
        worker_entry(k, &mut f, url_text, model, process, python.as_deref(), &resolve)
    } else {
        if python.is_some() {
            f.problem("python", "only kind = \"mlx-lm\" runs a Python worker; remove `python`");
        }
        if kind == Some(BackendKind::Ollama) && model.is_none() {
            f.problem(
                "model",
                "missing; Ollama needs the model to ask for, e.g. model = \"qwen3:8b\" (see `ollama list`)",
            );
        }
        let default_url = kind.and_then(BackendKind::default_port).map(|p| format!("http://127.0.0.1:{p}"));
        let url = match url_text.or(default_url) {
            Some(u) => parse_url(&u).map_err(|m| f.problem("url", m)).ok(),
            None => {
                f.problem("url", "missing; give the server's base URL, e.g. url = \"http://127.0.0.1:8080\"");
                None
            }
        };
        let process = match process {
            Some(v) => parse_process(v).map_err(|m| f.problem("process", m)).ok(),
            None => Some(default_process(url.as_ref())),
        };
        (url, model, process)
    };
    f.finish();
    Some(BackendConfig {
        name: name?,
        kind: kind?,
        url: url?,
        model,
        api_key_env,
        process: process?,
        reuse_connections,
        log,
        python,
    })
}

/// The worker kinds: a model folder (and for `mlx-lm` an interpreter) instead of a URL.
fn worker_entry(
    kind: BackendKind,
    f: &mut Fields,
    url: Option<String>,
    model: Option<String>,
    process: Option<toml::Value>,
    python: Option<&Path>,
    resolve: &dyn Fn(String) -> PathBuf,
) -> (Option<Url>, Option<String>, Option<ProcessSelector>) {
    let k = kind.as_str();
    if url.is_some() {
        f.problem("url", format!("kind \"{k}\" runs no server (soakd runs the model itself); remove `url`"));
    }
    if process.is_some() {
        f.problem("process", format!("kind \"{k}\" samples soakd's own worker process; remove `process`"));
    }
    if kind == BackendKind::Mlx && python.is_some() {
        f.problem("python", "kind \"mlx\" runs MLX inside soakd (no Python); remove `python`");
    }
    if kind == BackendKind::MlxLm && python.is_none() {
        f.problem(
            "python",
            "missing; give an interpreter with mlx-lm installed, e.g. python = \"/opt/venv/bin/python\"",
        );
    }
    let Some(model) = model else {
        f.problem("model", "missing; give the local model folder, e.g. model = \"~/models/Qwen3-0.6B-4bit\"");
        return (None, None, None);
    };
    let folder = resolve(expand_home(&model));
    let url = Url::from_file_path(&folder).ok();
    if url.is_none() {
        f.problem("model", format!("\"{model}\" is not a usable path"));
    }
    (url, Some(folder.display().to_string()), Some(ProcessSelector::Worker(WorkerPid::default())))
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest).display().to_string(),
        _ => p.to_string(),
    }
}

fn parse_url(u: &str) -> Result<Url, String> {
    let url =
        Url::parse(u).map_err(|e| format!("\"{u}\" is not a URL ({e}); write it like \"http://127.0.0.1:8080\""))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("\"{u}\" must start with http:// or https://"));
    }
    if url.host_str().is_none() {
        return Err(format!("\"{u}\" has no host"));
    }
    if url.port() == Some(0) {
        return Err(format!("\"{u}\": port 0 is not a port; give the port the server listens on"));
    }
    if url.path().trim_end_matches('/').ends_with("/v1") {
        return Err(format!(
            "give the base URL without /v1 (soakd adds /v1/chat/completions): \"{}\"",
            u.trim_end_matches('/').trim_end_matches("/v1")
        ));
    }
    Ok(url)
}

pub(super) fn parse_process(v: toml::Value) -> Result<ProcessSelector, String> {
    const SHAPES: &str = "write process = { port = 8080 }, { pid = 1234 }, { name = \"regex\" } or \"none\"";
    if v.as_str() == Some("none") {
        return Ok(ProcessSelector::None);
    }
    let Some(t) = v.as_table() else {
        return Err(format!("{}: {SHAPES}", crate::fields::short(&v)));
    };
    if t.len() != 1 {
        return Err(format!("give exactly one of port, pid, name; {SHAPES}"));
    }
    let (key, value) = t.iter().next().expect("one entry");
    match (key.as_str(), value) {
        ("port", toml::Value::Integer(p)) if (1..=65535).contains(p) => Ok(ProcessSelector::Port(*p as u16)),
        ("pid", toml::Value::Integer(p)) if (1..=i64::from(u32::MAX)).contains(p) => {
            Ok(ProcessSelector::Pid(*p as u32))
        }
        ("name", toml::Value::String(re)) => {
            Regex::new(re).map(ProcessSelector::Name).map_err(|e| format!("name is not a valid regex: {e}"))
        }
        _ => Err(format!("{key} = {}: {SHAPES}", crate::fields::short(value))),
    }
}

/// Without a `process` entry: the process listening on the URL's port, when the server is local.
fn default_process(url: Option<&Url>) -> ProcessSelector {
    let Some(url) = url else { return ProcessSelector::None };
    let local = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match (local, url.port_or_known_default()) {
        (true, Some(port)) => ProcessSelector::Port(port),
        _ => ProcessSelector::None,
    }
}
