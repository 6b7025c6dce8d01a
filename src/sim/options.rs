//! Validated simulator options: the flag value types (`--fault KIND=PROB`, `--crash-style`) and
//! the second configuration stage that turns raw [`SimArgs`] into [`Options`] with durations,
//! byte counts and checked ranges. Every error names the flag and says what would be accepted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use super::SimArgs;

/// What a crash trigger does (`--crash-style`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrashStyle {
    /// The process exits with code 134, like an engine abort; a stream in progress is cut.
    #[default]
    Exit,
    /// The server stays up and answers like LM Studio when its engine child dies:
    /// HTTP 500 "The model has crashed…", then "Model is unloaded." for a few requests.
    Lmstudio,
    /// The server stays up and answers like Ollama when its runner dies: HTTP 500 (or an error
    /// line mid-stream) "llama runner process has terminated…"; the model leaves `/api/ps` and
    /// the next request loads it again.
    Ollama,
}

/// Which server's API the sim speaks besides the OpenAI one (`--flavour`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavour {
    /// `/v1/chat/completions`, `/v1/models`, `/health` only.
    #[default]
    Openai,
    /// Adds LM Studio's REST API: `/api/v0/models`, `/api/v0/models/{id}` (with `state`) and
    /// `/api/v0/chat/completions` (with `stats`, `model_info`, `runtime`).
    Lmstudio,
    /// Adds Ollama's API: `/api/chat` (NDJSON or whole, nanosecond durations), `/api/ps`,
    /// `/api/version`, `/api/tags`. The model starts unloaded: the first request loads it.
    Ollama,
    /// Adds vLLM's `/version` and `/metrics` (Prometheus, `vllm:` series).
    Vllm,
}

/// One kind of injected fault (`--fault KIND=PROB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// HTTP 500 with an OpenAI-shaped `server_error` body.
    Http500,
    /// HTTP 503 "Service unavailable: out of memory" (what mlx_lm.server answers on OOM).
    Http503,
    /// HTTP 500 whose body carries the Metal command-buffer out-of-memory message.
    MetalOom,
    /// Read the request, then never send a byte.
    Hang,
    /// Stream a few tokens, pause for `--stall-ms`, then continue.
    Stall,
    /// Stream a few tokens, then abort the connection mid-message.
    Reset,
    /// Stream a few tokens, then end the response cleanly without a finish chunk or `[DONE]`.
    Truncate,
    /// Emit a data line that is not valid JSON.
    Malformed,
    /// Answer 200 with no content at all.
    Empty,
}

impl FaultKind {
    /// Every kind, in the order the help text lists them.
    pub(crate) const ALL: [FaultKind; 9] = [
        FaultKind::Http500,
        FaultKind::Http503,
        FaultKind::MetalOom,
        FaultKind::Hang,
        FaultKind::Stall,
        FaultKind::Reset,
        FaultKind::Truncate,
        FaultKind::Malformed,
        FaultKind::Empty,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Http500 => "http500",
            FaultKind::Http503 => "http503",
            FaultKind::MetalOom => "metal-oom",
            FaultKind::Hang => "hang",
            FaultKind::Stall => "stall",
            FaultKind::Reset => "reset",
            FaultKind::Truncate => "truncate",
            FaultKind::Malformed => "malformed",
            FaultKind::Empty => "empty",
        }
    }

    fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
        names.join(", ")
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| format!("unknown fault kind {s:?}; use one of {}", Self::names()))
    }
}

/// A fault and the probability that it hits a request (`--fault KIND=PROB`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSpec {
    /// Which fault.
    pub kind: FaultKind,
    /// Per-request probability in `0..=1`.
    pub probability: f64,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = format!(
            "expected KIND=PROB such as `reset=0.05` (KIND is one of {}; PROB is between 0 and 1)",
            FaultKind::names()
        );
        let Some((kind, prob)) = s.split_once('=') else {
            return Err(format!("{s:?}: {usage}"));
        };
        let kind: FaultKind = kind.parse().map_err(|e| format!("{e}; write KIND=PROB such as `reset=0.05`"))?;
        let probability: f64 = prob.trim().parse().map_err(|_| format!("{prob:?} is not a number: {usage}"))?;
        if !(0.0..=1.0).contains(&probability) {
            return Err(format!("probability {probability} is out of range: {usage}"));
        }
        Ok(FaultSpec { kind, probability })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind, self.probability)
    }
}

/// The crash triggers, checked for every request (see `behaviour::decide`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Triggers {
    pub(crate) exit_after: Option<u64>,
    /// Abort outright at this request, whatever the crash style.
    pub(crate) abort_after: Option<u64>,
    pub(crate) exit_probability: f64,
    pub(crate) exit_above_concurrency: Option<u32>,
    pub(crate) exit_above_prompt_tokens: Option<u64>,
    pub(crate) exit_on_rapid: Option<Duration>,
    /// How likely a rapid request is to crash.
    pub(crate) rapid_probability: f64,
}

/// Memory-ballast settings, in bytes (0 = off).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MemoryOptions {
    pub(crate) grow_per_request: usize,
    pub(crate) grow_per_hour: usize,
    pub(crate) cap: Option<usize>,
    pub(crate) sawtooth: Option<usize>,
    /// Up to this many bytes of noise, redrawn every second.
    pub(crate) noise: usize,
}

/// Token timing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Speed {
    pub(crate) ttft: Duration,
    pub(crate) token_interval: Duration,
    pub(crate) jitter: f64,
}

/// Everything the server needs, validated once at start. (`--host`/`--port` are only used by
/// `run` to bind, through [`parse_loopback`].)
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) model: String,
    pub(crate) flavour: Flavour,
    /// How long loading the model takes (the first request after an unload waits for it).
    pub(crate) load: Duration,
    pub(crate) seed: u64,
    pub(crate) speed: Speed,
    pub(crate) reasoning_tokens: u32,
    pub(crate) memory: MemoryOptions,
    pub(crate) triggers: Triggers,
    pub(crate) crash_style: CrashStyle,
    pub(crate) exit_after_tokens: u32,
    pub(crate) unloaded_requests: u32,
    pub(crate) faults: Vec<FaultSpec>,
    pub(crate) stall: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) exit_on_crash: bool,
}

/// A flag value that cannot work, and what to use instead.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum OptionsError {
    #[error(
        "--host {0} is not a loopback address: soakd sim only listens on loopback; use --host 127.0.0.1 or --host ::1"
    )]
    NotLoopback(String),
    #[error("--{flag} must be {wanted} (got {got}); {hint}")]
    OutOfRange { flag: &'static str, wanted: &'static str, got: String, hint: &'static str },
}

const MIB: u64 = 1024 * 1024;

impl Options {
    /// Check every flag and convert to the units the server works in.
    pub(crate) fn from_args(args: &SimArgs) -> Result<Options, OptionsError> {
        if !(args.tokens_per_s.is_finite() && args.tokens_per_s > 0.0) {
            return Err(range("tokens-per-s", "a positive number", args.tokens_per_s, "try --tokens-per-s 50"));
        }
        if !(0.0..=1.0).contains(&args.jitter) {
            return Err(range("jitter", "between 0 and 1", args.jitter, "0.1 means each delay varies by up to ±10 %"));
        }
        if !(0.0..=1.0).contains(&args.rapid_crash_probability) {
            return Err(range(
                "rapid-crash-probability",
                "between 0 and 1",
                args.rapid_crash_probability,
                "0.4 crashes about two rapid requests in five",
            ));
        }
        if !(0.0..=1.0).contains(&args.exit_probability) {
            return Err(range(
                "exit-probability",
                "between 0 and 1",
                args.exit_probability,
                "0.01 crashes about one request in a hundred",
            ));
        }
        if args.max_body_kb == 0 {
            return Err(range("max-body-kb", "at least 1", 0, "the default is 1024 (1 MiB)"));
        }
        if args.exit_after == Some(0) {
            return Err(range(
                "exit-after",
                "at least 1",
                0,
                "requests are counted from 1; --exit-after 1 crashes on the first request",
            ));
        }
        let kib = |v: u64| usize::try_from(v.saturating_mul(1024)).unwrap_or(usize::MAX);
        let mib = |v: u64| usize::try_from(v.saturating_mul(MIB)).unwrap_or(usize::MAX);
        let nonzero = |v: usize| (v > 0).then_some(v);
        Ok(Options {
            model: args.model.clone(),
            flavour: args.flavour,
            load: Duration::from_millis(args.load_ms.unwrap_or(match args.flavour {
                Flavour::Ollama => 1500,
                Flavour::Openai | Flavour::Lmstudio | Flavour::Vllm => 0,
            })),
            seed: args.seed,
            speed: Speed {
                ttft: Duration::from_millis(args.ttft_ms),
                token_interval: Duration::from_secs_f64(1.0 / args.tokens_per_s),
                jitter: args.jitter,
            },
            reasoning_tokens: args.reasoning_tokens,
            memory: MemoryOptions {
                grow_per_request: kib(args.grow_per_request_kb),
                grow_per_hour: mib(args.grow_per_hour_mb),
                cap: nonzero(mib(args.memory_cap_mb)),
                sawtooth: nonzero(mib(args.sawtooth_mb)),
                noise: mib(args.memory_noise_mb),
            },
            triggers: Triggers {
                exit_after: args.exit_after,
                abort_after: args.abort_after,
                exit_probability: args.exit_probability,
                exit_above_concurrency: args.exit_above_concurrency,
                exit_above_prompt_tokens: args.exit_above_prompt_tokens,
                exit_on_rapid: args.exit_on_rapid_ms.map(Duration::from_millis),
                rapid_probability: args.rapid_crash_probability,
            },
            crash_style: args.crash_style,
            exit_after_tokens: args.exit_after_tokens,
            unloaded_requests: args.unloaded_requests,
            faults: args.fault.clone(),
            stall: Duration::from_millis(args.stall_ms),
            max_body_bytes: kib(args.max_body_kb),
            exit_on_crash: args.exit_on_crash,
        })
    }
}

fn range(flag: &'static str, wanted: &'static str, got: impl fmt::Display, hint: &'static str) -> OptionsError {
    OptionsError::OutOfRange { flag, wanted, got: got.to_string(), hint }
}

/// `localhost` or a loopback IP literal; anything else is refused.
pub(crate) fn parse_loopback(host: &str) -> Result<IpAddr, OptionsError> {
    let trimmed = host.trim().trim_start_matches('[').trim_end_matches(']');
    if trimmed.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    match trimmed.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(ip),
        _ => Err(OptionsError::NotLoopback(host.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse_and_explain_mistakes() {
        let spec: FaultSpec = "metal-oom=0.25".parse().expect("valid spec");
        assert_eq!(spec.kind, FaultKind::MetalOom);
        assert_eq!(spec.probability, 0.25);
        for kind in FaultKind::ALL {
            let parsed: FaultSpec = format!("{kind}=1").parse().expect("every kind parses");
            assert_eq!(parsed.kind, kind);
        }
        let err = "reset".parse::<FaultSpec>().unwrap_err();
        assert!(err.contains("KIND=PROB"), "{err}");
        let err = "boom=0.1".parse::<FaultSpec>().unwrap_err();
        assert!(err.contains("http500") && err.contains("empty"), "{err}");
        let err = "hang=1.5".parse::<FaultSpec>().unwrap_err();
        assert!(err.contains("between 0 and 1"), "{err}");
        let err = "hang=lots".parse::<FaultSpec>().unwrap_err();
        assert!(err.contains("not a number"), "{err}");
    }

    #[test]
    fn only_loopback_hosts_are_accepted() {
        assert!(parse_loopback("127.0.0.1").is_ok());
        assert!(parse_loopback("::1").is_ok());
        assert!(parse_loopback("[::1]").is_ok());
        assert!(parse_loopback("localhost").is_ok());
        for bad in ["0.0.0.0", "192.168.1.2", "::", "example.com", ""] {
            let err = parse_loopback(bad).unwrap_err().to_string();
            assert!(err.contains("--host 127.0.0.1"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_ranges_name_the_flag() {
        let args = SimArgs { tokens_per_s: 0.0, ..SimArgs::default() };
        let err = Options::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("--tokens-per-s"), "{err}");

        let args = SimArgs { jitter: 2.0, ..SimArgs::default() };
        let err = Options::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("--jitter"), "{err}");

        let args = SimArgs { exit_after: Some(0), ..SimArgs::default() };
        assert!(Options::from_args(&args).is_err());

        let opts = Options::from_args(&SimArgs::default()).expect("defaults are valid");
        assert_eq!(opts.speed.token_interval, Duration::from_millis(20));
        assert_eq!(opts.max_body_bytes, 1024 * 1024);
        assert!(opts.memory.cap.is_none());
    }
}
