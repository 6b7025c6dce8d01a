//! The daemon's configuration: where it is found, what it holds, and its validation.
//!
//! Precedence: built-in defaults, then the TOML file, then `SOAKD_*` environment variables.
//! The file is found at `--config PATH`, else `$SOAKD_CONFIG`, else the platform's config
//! folder (`~/Library/Application Support/soakd/config.toml` on macOS,
//! `~/.config/soakd/config.toml` on Linux). Relative paths in it resolve against its folder.

use crate::fields::{Fields, Place, Problem, Problems};
use regex::Regex;
use reqwest::Url;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub db: PathBuf,
    pub schedules: PathBuf,
    /// How long in-flight requests may run on after a stop signal before they are cancelled.
    pub shutdown_grace: Duration,
    pub sampler: SamplerConfig,
    pub backends: Vec<BackendConfig>,
    /// `[smtp]`, `[digest]`, `[alerts]`: the digest and alert mails.
    pub mail: crate::digest::config::MailConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Memory sample cadence while no workload runs on a backend.
    pub idle_interval: Duration,
    /// Memory sample cadence while a workload runs.
    pub during_interval: Duration,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { idle_interval: Duration::from_secs(60), during_interval: Duration::from_secs(2) }
    }
}

/// One LLM server soakd talks to.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    pub kind: BackendKind,
    /// Base URL, without the `/v1` suffix.
    pub url: Url,
    /// Sent as the request's `model` when set.
    pub model: Option<String>,
    /// The name of an env var holding a bearer token (the token itself never enters the config).
    pub api_key_env: Option<String>,
    pub process: ProcessSelector,
    /// Reuse pooled HTTP connections between requests, as most clients do.
    pub reuse_connections: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Any server with an OpenAI-compatible `/v1/chat/completions`.
    OpenAi,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::OpenAi => "openai",
        }
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
    /// Not sampled (a remote server).
    None,
}

impl ProcessSelector {
    pub fn describe(&self) -> String {
        match self {
            ProcessSelector::Port(p) => format!("the process listening on port {p}"),
            ProcessSelector::Pid(p) => format!("pid {p}"),
            ProcessSelector::Name(r) => format!("the process matching /{}/", r.as_str()),
            ProcessSelector::None => "none".to_string(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no config file at {path} ({source_}).\n  Create it (README.md, \"Configuration\", has one to copy), or point soakd at one with --config PATH or SOAKD_CONFIG."
    )]
    Missing { path: PathBuf, source_: &'static str },
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("cannot find a config folder for this user: pass --config PATH or set SOAKD_CONFIG")]
    NoHome,
    #[error("{0}")]
    Invalid(Problems),
}

/// Finds the config file: `--config`, then `$SOAKD_CONFIG`, then the platform's config folder.
pub fn locate(flag: Option<&Path>) -> Result<(PathBuf, &'static str), ConfigError> {
    if let Some(p) = flag {
        return Ok((p.to_path_buf(), "--config"));
    }
    if let Some(p) = std::env::var_os("SOAKD_CONFIG").filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(p), "SOAKD_CONFIG"));
    }
    let base = directories::BaseDirs::new().ok_or(ConfigError::NoHome)?;
    Ok((base.config_dir().join("soakd").join("config.toml"), "the default location"))
}

/// Locates, reads and validates the configuration.
pub fn load(flag: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, source_) = locate(flag)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::Missing { path, source_ });
        }
        Err(err) => return Err(ConfigError::Read { path, err }),
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    parse(&text, &path, &env)
}

/// Parses and validates config text. `path` names the file in messages and anchors relative
/// paths; `env` reads `SOAKD_*` overrides (a function, so tests need no process environment).
pub fn parse(text: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax { path: path.to_path_buf(), message: e.to_string() })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut problems = Vec::new();
    let mut f = Fields::new(table, Place::file(path), &mut problems);

    let db: String = f.take("db").unwrap_or_else(|| "soakd.db".into());
    let schedules: String = f.take("schedules").unwrap_or_else(|| "schedules".into());
    let grace_s: f64 = f.take("shutdown_grace_s").unwrap_or(10.0);
    if !(0.0..=3600.0).contains(&grace_s) {
        f.problem("shutdown_grace_s", format!("must be between 0 and 3600 seconds, not {grace_s}"));
    }
    let sampler = f.take::<toml::Table>("sampler");
    let backends = f.take::<Vec<toml::Table>>("backend").unwrap_or_default();
    let (smtp, digest, alerts) = (f.take("smtp"), f.take("digest"), f.take("alerts"));
    f.finish();
    let mail = crate::digest::config::parse(smtp, digest, alerts, path, &mut problems);

    let sampler = sampler.map(|t| parse_sampler(t, path, &mut problems)).unwrap_or_default();
    let mut parsed: Vec<BackendConfig> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, table) in backends.into_iter().enumerate() {
        if let Some(name) = table.get("name").and_then(|v| v.as_str()) {
            if names.iter().any(|n| n == name) {
                problems.push(
                    Place::entry(path, format!("backend \"{name}\" (entry {})", i + 1))
                        .problem(Some("name"), "another backend already has this name; names must be unique"),
                );
            }
            names.push(name.to_string());
        }
        parsed.extend(parse_backend(table, i + 1, path, &mut problems));
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(Problems(problems)));
    }
    let resolve = |p: String| if Path::new(&p).is_absolute() { PathBuf::from(p) } else { base.join(p) };
    Ok(Config {
        path: path.to_path_buf(),
        db: env("SOAKD_DB").map(PathBuf::from).unwrap_or_else(|| resolve(db)),
        schedules: env("SOAKD_SCHEDULES").map(PathBuf::from).unwrap_or_else(|| resolve(schedules)),
        shutdown_grace: Duration::from_secs_f64(grace_s.clamp(0.0, 3600.0)),
        sampler,
        backends: parsed,
        mail,
    })
}

fn parse_sampler(table: toml::Table, path: &Path, problems: &mut Vec<Problem>) -> SamplerConfig {
    let mut f = Fields::new(table, Place::entry(path, "[sampler]".into()), problems);
    let mut s = SamplerConfig::default();
    if let Some(v) = f.take::<f64>("idle_interval_s") {
        if (1.0..=86_400.0).contains(&v) {
            s.idle_interval = Duration::from_secs_f64(v);
        } else {
            f.problem("idle_interval_s", format!("must be between 1 and 86400 seconds, not {v}"));
        }
    }
    if let Some(v) = f.take::<u64>("during_interval_ms") {
        if (100..=600_000).contains(&v) {
            s.during_interval = Duration::from_millis(v);
        } else {
            f.problem("during_interval_ms", format!("must be between 100 and 600000 ms, not {v}"));
        }
    }
    f.finish();
    s
}

fn parse_backend(table: toml::Table, n: usize, path: &Path, problems: &mut Vec<Problem>) -> Option<BackendConfig> {
    let label = match table.get("name").and_then(|v| v.as_str()) {
        Some(name) => format!("backend \"{name}\" (entry {n})"),
        None => format!("backend entry {n}"),
    };
    let mut f = Fields::new(table, Place::entry(path, label), problems);
    let name: Option<String> = f.require("name", "give the backend a short name, e.g. name = \"mlx-server\"");
    if let Some(name) = &name
        && (name.is_empty() || name == "*" || name.len() > 64 || name.chars().any(|c| c.is_control()))
    {
        f.problem("name", "must be 1–64 printable characters and not \"*\"");
    }
    let kind = match f.require::<String>("kind", "say which API the server speaks, e.g. kind = \"openai\"") {
        Some(k) => parse_kind(&k).map_err(|m| f.problem("kind", m)).ok(),
        None => None,
    };
    let url = match f.require::<String>("url", "give the server's base URL, e.g. url = \"http://127.0.0.1:8080\"") {
        Some(u) => parse_url(&u).map_err(|m| f.problem("url", m)).ok(),
        None => None,
    };
    let model: Option<String> = f.take("model");
    let api_key_env: Option<String> = f.take("api_key_env");
    if let Some(var) = &api_key_env
        && (var.is_empty() || var.contains('=') || var.contains('\0'))
    {
        f.problem("api_key_env", "must be the NAME of an environment variable (the key itself never goes in the file)");
    }
    let process = f.take_value("process");
    let reuse_connections: bool = f.take("reuse_connections").unwrap_or(true);
    let process = match process {
        Some(v) => parse_process(v).map_err(|m| f.problem("process", m)).ok(),
        None => Some(default_process(url.as_ref())),
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
    })
}

fn parse_kind(k: &str) -> Result<BackendKind, String> {
    match k {
        "openai" => Ok(BackendKind::OpenAi),
        "lmstudio" | "ollama" | "llamacpp" | "vllm" | "mlx-lm" | "mlx" => Err(format!(
            "kind \"{k}\" is not supported by this version of soakd yet; use kind = \"openai\" with the server's OpenAI-compatible URL meanwhile"
        )),
        other => Err(format!("unknown kind \"{other}\"; use \"openai\" for any OpenAI-compatible server")),
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
    if url.path().trim_end_matches('/').ends_with("/v1") {
        return Err(format!(
            "give the base URL without /v1 (soakd adds /v1/chat/completions): \"{}\"",
            u.trim_end_matches('/').trim_end_matches("/v1")
        ));
    }
    Ok(url)
}

fn parse_process(v: toml::Value) -> Result<ProcessSelector, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_the_readme_example() {
        let text = r#"
            db = "soakd.db"
            schedules = "schedules"
            [[backend]]
            name = "mlx-server"
            kind = "openai"
            url = "http://127.0.0.1:8080"
            model = "mlx-community/Qwen3-8B-4bit"
            api_key_env = "MLX_KEY"
            process = { port = 8080 }
            [[backend]]
            name = "lmstudio"
            kind = "openai"
            url = "http://localhost:1234"
        "#;
        let c = parse(text, Path::new("/etc/soakd/config.toml"), &no_env).expect("valid");
        assert_eq!(c.db, PathBuf::from("/etc/soakd/soakd.db"));
        assert_eq!(c.schedules, PathBuf::from("/etc/soakd/schedules"));
        assert_eq!(c.backends.len(), 2);
        assert!(matches!(c.backends[0].process, ProcessSelector::Port(8080)));
        assert!(matches!(c.backends[1].process, ProcessSelector::Port(1234)), "defaults to the URL's port");
        assert_eq!(c.backends[0].model.as_deref(), Some("mlx-community/Qwen3-8B-4bit"));
    }

    #[test]
    fn env_overrides_the_file() {
        let env = |k: &str| (k == "SOAKD_DB").then(|| "/tmp/other.db".to_string());
        let c = parse("db = \"a.db\"", Path::new("/x/c.toml"), &env).expect("valid");
        assert_eq!(c.db, PathBuf::from("/tmp/other.db"));
    }

    #[test]
    fn remote_servers_are_not_sampled() {
        let c = parse(
            "[[backend]]\nname = \"vllm\"\nkind = \"openai\"\nurl = \"http://gpu-box:8000\"",
            Path::new("c.toml"),
            &no_env,
        )
        .expect("valid");
        assert!(matches!(c.backends[0].process, ProcessSelector::None));
    }

    #[test]
    fn reports_every_problem_with_entry_and_field() {
        let text = r#"
            shutdown_grace_s = -1
            colour = "blue"
            [[backend]]
            name = "a"
            kind = "ollama"
            url = "http://127.0.0.1:11434/v1"
            [[backend]]
            kind = "openai"
            url = "not a url"
            process = { port = 99999 }
            [[backend]]
            name = "a"
            kind = "openai"
            url = "http://127.0.0.1:1"
            api_key_env = "sk-abc=1"
        "#;
        let Err(ConfigError::Invalid(Problems(p))) = parse(text, Path::new("c.toml"), &no_env) else {
            panic!("should be invalid")
        };
        let all: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        let has = |s: &str| all.iter().any(|l| l.contains(s));
        assert!(has("c.toml: field `shutdown_grace_s`: must be between 0 and 3600"), "{all:#?}");
        assert!(has("c.toml: field `colour`: unknown field"), "{all:#?}");
        assert!(has("backend \"a\" (entry 1): field `kind`: kind \"ollama\" is not supported"), "{all:#?}");
        assert!(has("backend \"a\" (entry 1): field `url`: give the base URL without /v1"), "{all:#?}");
        assert!(has("backend entry 2: field `name`: missing"), "{all:#?}");
        assert!(has("backend entry 2: field `url`: \"not a url\" is not a URL"), "{all:#?}");
        assert!(has("backend entry 2: field `process`: port = 99999"), "{all:#?}");
        assert!(has("backend \"a\" (entry 3): field `name`: another backend already has this name"), "{all:#?}");
        assert!(has("backend \"a\" (entry 3): field `api_key_env`: must be the NAME"), "{all:#?}");
        assert_eq!(all.len(), 9, "{all:#?}");
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let Err(e) = parse("db = ", Path::new("bad.toml"), &no_env) else { panic!("invalid") };
        assert!(e.to_string().starts_with("bad.toml is not valid TOML"), "{e}");
    }

    #[test]
    fn process_shapes() {
        let p = |s: &str| parse_process(s.parse::<toml::Table>().unwrap().remove("process").unwrap());
        assert!(matches!(p("process = { pid = 42 }"), Ok(ProcessSelector::Pid(42))));
        assert!(matches!(p("process = { name = \"mlx_lm\\\\.server\" }"), Ok(ProcessSelector::Name(_))));
        assert!(matches!(p("process = \"none\""), Ok(ProcessSelector::None)));
        assert!(p("process = { name = \"(\" }").is_err());
        assert!(p("process = { port = 1, pid = 2 }").is_err());
        assert!(p("process = 5").is_err());
    }
}
