//! The daemon's configuration: where it is found, what it holds, and its validation.
//!
//! Precedence: built-in defaults, then the TOML file, then `SOAKD_*` environment variables.
//! The file is found at `--config PATH`, else `$SOAKD_CONFIG`, else the platform's config
//! folder (`~/Library/Application Support/soakd/config.toml` on macOS,
//! `~/.config/soakd/config.toml` on Linux). Relative paths in it resolve against its folder.

mod backend;
pub mod mail;
pub mod metrics;
mod upkeep;

pub use backend::{BackendConfig, BackendKind, ProcessSelector, WorkerPid};
pub use upkeep::{LogConfig, RetentionConfig};

use crate::fields::{Fields, Place, Problem, Problems};
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
    pub log: LogConfig,
    pub retention: RetentionConfig,
    /// `[smtp]`, `[digest]`, `[alerts]`: the digest and alert mails.
    pub mail: crate::config::mail::MailConfig,
    /// `[metrics]`: Prometheus's `/metrics` from the daemon; `None`: off.
    pub metrics: Option<metrics::MetricsConfig>,
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
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: crate::fields::toml_error(text, &e),
    })?;
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
    let log = f.take::<toml::Table>("log");
    let retention = f.take::<toml::Table>("retention");
    let (smtp, digest, alerts) = (f.take("smtp"), f.take("digest"), f.take("alerts"));
    let metrics = f.take::<toml::Table>("metrics");
    f.finish();
    let log = log.map(|t| upkeep::parse_log(t, path, &base, &mut problems)).unwrap_or_default();
    let retention = retention.map(|t| upkeep::parse_retention(t, path, &mut problems)).unwrap_or_default();
    let mail = crate::config::mail::parse(smtp, digest, alerts, path, &mut problems);
    let metrics = metrics.and_then(|t| metrics::parse(t, path, &base, &mut problems));

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
        parsed.extend(backend::parse_backend(table, i + 1, path, &mut problems));
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
        log,
        retention,
        mail,
        metrics,
    })
}

/// The field names of a secret's source: `env` names a variable, `file` a file only its owner
/// may read, `inline` the value itself (always refused: secrets never go in the config file).
pub(crate) struct SecretFields {
    pub env: &'static str,
    pub file: &'static str,
    pub inline: &'static str,
    /// What it is, for messages: "password", "token".
    pub noun: &'static str,
}

/// Where a secret comes from, from `names`' fields of `f`; a relative file resolves against
/// `base`. Every mistake is a problem on its field; `None` when no source is given (or both).
pub(crate) fn secret_source(f: &mut Fields, base: &Path, names: &SecretFields) -> Option<crate::secrets::Source> {
    use crate::secrets::Source;
    let env: Option<String> = f.take(names.env);
    let file: Option<String> = f.take(names.file);
    if f.take_value(names.inline).is_some() {
        f.problem(
            names.inline,
            format!(
                "the {} never goes in the config file: set {} = \"NAME\" (an environment variable) or {} = \"PATH\" (chmod 600)",
                names.noun, names.env, names.file
            ),
        );
    }
    match (env, file) {
        (Some(_), Some(_)) => {
            f.problem(names.file, format!("give {} or {}, not both", names.env, names.file));
            None
        }
        (Some(var), None) => {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                f.problem(
                    names.env,
                    format!(
                        "must be the NAME of an environment variable (the {} itself never goes in the file)",
                        names.noun
                    ),
                );
            }
            Some(Source::Env(var))
        }
        (None, Some(file)) => {
            Some(Source::File(if Path::new(&file).is_absolute() { file.into() } else { base.join(file) }))
        }
        (None, None) => None,
    }
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
            kind = "mlx-server"
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
        assert!(has("backend \"a\" (entry 1): field `kind`: unknown kind \"mlx-server\"; use one of"), "{all:#?}");
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
        assert!(e.to_string().starts_with("bad.toml is not valid TOML: line 1, column 6"), "{e}");
    }

    #[test]
    fn a_huge_line_is_quoted_only_around_the_mistake() {
        let text = format!("db = \"{}\" x\n", "a".repeat(50 << 20));
        let Err(e) = parse(&text, Path::new("big.toml"), &no_env) else { panic!("invalid") };
        let shown = e.to_string();
        assert!(shown.len() < 1_000, "{} bytes", shown.len());
        assert!(shown.contains("line 1, column 52428809"), "{shown}");
        let long = format!("[[backend]]\nname = \"n\"\nkind = \"openai\"\nurl = \"{}\"", "u".repeat(1 << 20));
        let Err(e) = parse(&long, Path::new("c.toml"), &no_env) else { panic!("invalid") };
        assert!(e.to_string().len() < 1_500, "a quoted value is bounded too: {} bytes", e.to_string().len());
    }

    #[test]
    fn process_shapes() {
        let p = |s: &str| backend::parse_process(s.parse::<toml::Table>().unwrap().remove("process").unwrap());
        assert!(matches!(p("process = { pid = 42 }"), Ok(ProcessSelector::Pid(42))));
        assert!(matches!(p("process = { name = \"mlx_lm\\\\.server\" }"), Ok(ProcessSelector::Name(_))));
        assert!(matches!(p("process = \"none\""), Ok(ProcessSelector::None)));
        assert!(p("process = { name = \"(\" }").is_err());
        assert!(p("process = { port = 1, pid = 2 }").is_err());
        assert!(p("process = 5").is_err());
    }

    #[test]
    fn kind_mlx_takes_a_model_folder_or_says_how_to_build_it() {
        let text = "[[backend]]\nname = \"m\"\nkind = \"mlx\"\nmodel = \"models/qwen\"";
        let parsed = parse(text, Path::new("/etc/soakd/c.toml"), &no_env);
        if cfg!(feature = "mlx") {
            let c = parsed.expect("valid");
            assert_eq!(c.backends[0].kind, BackendKind::Mlx);
            assert_eq!(c.backends[0].model.as_deref(), Some("/etc/soakd/models/qwen"));
            assert!(matches!(c.backends[0].process, ProcessSelector::Worker(_)));
        } else {
            let Err(e) = parsed else { panic!("kind mlx needs the feature") };
            assert!(format!("{e:#}").contains("rebuild with --features mlx"), "{e:#}");
        }
        let text = "[[backend]]\nname = \"m\"\nkind = \"mlx\"\nurl = \"http://127.0.0.1:1\"\npython = \"py\"";
        let Err(ConfigError::Invalid(Problems(p))) = parse(text, Path::new("c.toml"), &no_env) else {
            panic!("should be invalid")
        };
        let all: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        if cfg!(feature = "mlx") {
            assert!(all.iter().any(|l| l.contains("field `url`: kind \"mlx\" runs no server")), "{all:#?}");
            assert!(all.iter().any(|l| l.contains("field `python`: kind \"mlx\" runs MLX inside soakd")), "{all:#?}");
            assert!(all.iter().any(|l| l.contains("field `model`: missing")), "{all:#?}");
        } else {
            assert!(all.iter().any(|l| l.contains("field `kind`: kind \"mlx\"")), "{all:#?}");
        }
    }
}
