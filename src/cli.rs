//! Command-line definitions (clap). Behaviour lives in `commands`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "soakd",
    version,
    about = "Soak-tests local LLM servers: cron-scheduled workloads, every request and memory sample in SQLite.",
    long_about = "soakd fires cron-scheduled workloads at every configured LLM server (LM Studio, mlx_lm.server, \
        Ollama, llama.cpp, vLLM — anything OpenAI-compatible — or a model it runs itself: mlx_lm in a Python \
        worker, kind \"mlx-lm\", or MLX in-process, kind \"mlx\" in a build with --features mlx), records each \
        request's outcome, timings and the server's own numbers and memory into SQLite, mails a nightly \
        stability digest, and prints comparison tables.\n\n\
        Start with `soakd demo` (no LLM server needed). Config: --config PATH, else $SOAKD_CONFIG, else \
        ~/Library/Application Support/soakd/config.toml (macOS) or ~/.config/soakd/config.toml (Linux).",
    after_help = "Exit codes: 0 success, 1 runtime error, 2 usage error, 78 invalid configuration or schedules."
)]
pub struct Cli {
    /// The config file (default: $SOAKD_CONFIG, else the platform's config folder).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log filter, e.g. `info`, `debug`, `soakd=trace` (default: `warn,soakd=info` for `run` and
    /// `sim`, `warn` otherwise; or $RUST_LOG). `run` also writes daily files to the config's
    /// `[log] dir`, and as an installed agent by default to ~/Library/Logs/soakd (macOS) or
    /// ~/.local/state/soakd/logs (Linux).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// Where `discover` and `init` look for LLM servers.
#[derive(Debug, Clone, clap::Args)]
pub struct Search {
    /// Another port to look at (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// The host to look on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// How long each endpoint may take to answer, in milliseconds.
    #[arg(long = "timeout-ms", default_value_t = 1500, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub timeout_ms: u64,
}

impl Search {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
}

/// How `soakd export` writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line, a key per column.
    Jsonl,
    /// A header line of column names, then one line per row.
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: fire every schedule until SIGINT/SIGTERM, then finish in-flight requests
    /// within the grace period, record the rest as `cancelled`, and exit 0. With a `[metrics]`
    /// table in the config it also serves Prometheus's /metrics.
    Run,

    /// Run one job now, with a progress bar, and print a per-backend summary. Exits 0 whatever
    /// the servers did: their failures are data.
    Once {
        /// The job's name (see `soakd check`).
        job: String,
        /// Only these backends (repeatable; default: the job's own).
        #[arg(long = "backend", value_name = "NAME")]
        backends: Vec<String>,
    },

    /// Validate the config, every schedule file and what they point at (API key and SMTP password
    /// sources, log files, the database folder), and print each job's next fire times. Reports
    /// every problem (file, entry, field) and exits 78 if there is any; run, once, install and
    /// digest --send refuse to start on the same problems.
    Check {
        /// How many upcoming fire times to show per job.
        #[arg(long, default_value_t = 3)]
        next: usize,
    },

    /// Analyse a window of the log: per-backend summary, the comparison table, leaks, crash
    /// patterns, drift, API overhead and findings (saved, to tell new from resolved).
    Report {
        /// The database (default: the config's `db`). Repeat it, or give a pattern such as
        /// 'logs/*.db', for one report over several machines' logs (backend × host).
        #[arg(long, value_name = "PATH")]
        db: Vec<PathBuf>,
        /// Start of the window: a duration back from now (24h, 7d), a date or an RFC 3339 time.
        #[arg(long, value_name = "WHEN", default_value = "24h")]
        since: String,
        /// End of the window (default: now), in the same forms as --since.
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Only these backends (repeatable).
        #[arg(long = "backend", value_name = "NAME")]
        backends: Vec<String>,
        /// table (terminal), markdown (the seed report's layout), json (a stable interface), csv.
        #[arg(long, value_enum, default_value_t = crate::report::Format::Table)]
        format: crate::report::Format,
        /// Do not save this report's findings.
        #[arg(long)]
        no_save: bool,
        /// Keep requests that ran while soakd measured another backend in the latency and
        /// throughput figures (by default they are left out and counted).
        #[arg(long)]
        include_contended: bool,
    },

    /// Find the LLM servers running on this machine: looks at the well-known ports (LM Studio
    /// 1234, Ollama 11434, mlx_lm / llama.cpp 8080, vLLM 8000) and any given, tells each
    /// server's kind from its endpoints, finds the listening process, and prints
    /// `[[backend]]` entries as TOML on stdout (the summary on stderr), so
    /// `soakd discover >> config.toml` appends them.
    Discover {
        #[command(flatten)]
        search: Search,
    },

    /// The first run in one command: find the LLM servers running here (as `discover` does),
    /// write a commented config with them at the config path (`--config`, $SOAKD_CONFIG, or the
    /// platform's config folder; an existing one is never overwritten without --force), copy the
    /// shipped schedules beside it, check it as `check` does, and print what to run next.
    Init {
        #[command(flatten)]
        search: Search,
        /// Write a new config (and the shipped schedules) over existing ones.
        #[arg(long)]
        force: bool,
    },

    /// Install soakd as a launchd agent (macOS), or with --systemd as a systemd user unit (Linux).
    ///
    /// The launchd agent is `~/Library/LaunchAgents/org.soakd.agent.plist`, loaded with `launchctl
    /// bootstrap gui/<uid>`; the unit is `~/.config/systemd/user/soakd.service`, enabled with
    /// `systemctl --user enable --now`. Either runs `soakd --config <the config, absolute> run` at
    /// login and again after an unsuccessful exit (at most once a minute; systemd not after exit
    /// 78). Logs: ~/Library/Logs/soakd (macOS) or ~/.local/state/soakd/logs, one file a day. The
    /// config is checked first: exit 78 if it is invalid.
    Install {
        /// Write a systemd user unit instead of a launchd agent.
        #[arg(long)]
        systemd: bool,
        /// Print the rendered plist (or unit) and install nothing.
        #[arg(long)]
        print: bool,
        /// Write the file but do not load it (no launchctl / systemctl).
        #[arg(long)]
        no_load: bool,
        /// Use DIR as the home folder (tests).
        #[arg(long, hide = true, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Render this binary path instead of soakd's own (tests).
        #[arg(long, hide = true, value_name = "PATH")]
        binary: Option<PathBuf>,
    },

    /// Unload the launchd agent (or with --systemd, stop and disable the user unit) and remove its
    /// file.
    ///
    /// The database and logs stay.
    Uninstall {
        /// The systemd user unit instead of the launchd agent.
        #[arg(long)]
        systemd: bool,
        /// Remove the file without launchctl / systemctl.
        #[arg(long)]
        no_load: bool,
        #[arg(long, hide = true, value_name = "DIR")]
        home: Option<PathBuf>,
    },

    /// Whether the agent is installed and loaded, its last failed start, the last request, the
    /// last digest, the database's size, where raw history ends, and how far the long report's
    /// summaries reach.
    Status {
        /// The database (default: the config's `db`).
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        #[arg(long, hide = true, value_name = "DIR")]
        home: Option<PathBuf>,
    },

    /// Write the log's rows out for DuckDB, pandas or a warehouse: every column of `requests`
    /// (one row per finished request) or `memory_samples`, as JSON lines or CSV on stdout,
    /// streamed (any size of log, constant memory), oldest first. All rows unless a window is
    /// given. Read-only: the log is never changed.
    Export {
        /// The database (default: the config's `db`).
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// Which table.
        #[arg(long, value_enum, default_value_t = crate::store::export::Table::Requests)]
        table: crate::store::export::Table,
        /// jsonl (one JSON object per line) or csv (a header line, then one line per row).
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Only rows from this time on: a duration back from now (24h, 7d), a date or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only rows before this time, in the same forms.
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
    },

    /// Retention by hand: roll raw requests and memory samples older than `[retention]
    /// raw_days` up into hourly aggregates and delete them (the daemon does this every hour).
    Prune {
        /// The database (default: the config's `db`).
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// Keep this many days of raw rows instead of the config's `raw_days`.
        #[arg(long, value_name = "DAYS", value_parser = parse_days)]
        raw_days: Option<f64>,
    },

    /// The stability digest of the log since the previous digest (the daemon mails one every day
    /// at 07:00 with `[smtp]` configured): the comparison, what changed, each backend, the top
    /// crash signatures, and charts. Prints it, writes it as a mail file, or sends it through the
    /// outbox.
    #[command(group(clap::ArgGroup::new("action").required(true).args(["print", "html", "out", "send", "send_queued"])))]
    Digest {
        /// The database (default: the config's `db`). Repeat it, or give a pattern such as
        /// 'logs/*.db', for one digest over several machines' logs (with --send it goes into the
        /// outbox of the config's database).
        #[arg(long, value_name = "PATH")]
        db: Vec<PathBuf>,
        /// Print the plain-text part (nothing is saved or sent).
        #[arg(long)]
        print: bool,
        /// Print the HTML part (nothing is saved or sent).
        #[arg(long)]
        html: bool,
        /// Write the whole mail, with its charts, as an .eml file a mail client opens (nothing is sent).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Make the digest, store it in the outbox and send what the outbox holds (needs `[smtp]`).
        /// If the server cannot be reached it stays in the outbox: the daemon retries it, or run
        /// `soakd digest --send-queued`.
        #[arg(long)]
        send: bool,
        /// Make nothing: send the mails waiting in the outbox now.
        #[arg(long)]
        send_queued: bool,
        /// The window's start instead of the previous digest's end: 24h, 7d, a date or an RFC 3339 time.
        #[arg(long, value_name = "WHEN", conflicts_with_all = ["send", "send_queued"])]
        since: Option<String>,
        /// The window's end instead of now (with --since), in the same forms.
        #[arg(long, value_name = "WHEN", requires = "since")]
        until: Option<String>,
    },

    /// Serve a simulated OpenAI-compatible LLM on 127.0.0.1, with settable speed, memory growth,
    /// crashes and faults (for the demo and fault tests).
    Sim(crate::sim::SimArgs),

    /// Soak two simulated backends that mirror the seed report (one fast but crashing under rapid
    /// requests, one slower and steady) for about a minute, and print the comparison.
    Demo {
        /// Where to write the database.
        #[arg(long, default_value = "soakd-demo.db", value_name = "PATH")]
        db: PathBuf,
        /// How long to soak, in seconds.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
        seconds: u64,
    },

    /// Kind `mlx`'s worker process, started by soakd itself: loads the model in-process with MLX
    /// and answers JSON lines on stdin/stdout (needs a build with `--features mlx`).
    #[command(hide = true)]
    MlxWorker {
        /// The model folder (config.json, model*.safetensors, tokenizer.json).
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
    },
}

fn parse_days(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(d) if (0.01..=36_500.0).contains(&d) => Ok(d),
        _ => Err(format!("{s:?}: give a number of days, e.g. 30 (fractions allowed, from 0.01)")),
    }
}
