//! Support for the end-to-end tests: where the real servers and the tiny model are (installed
//! by `scripts/test-deps`), starting servers on 127.0.0.1, writing configs, reading the log.
//!
//! A test that needs a server never skips: when one is missing it fails and says how to
//! install it.

#![allow(dead_code)]

use rusqlite::Connection;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod cache;
pub use cache::cache_dir;

pub const SOAKD: &str = env!("CARGO_BIN_EXE_soakd");

/// Installed test dependencies.
pub struct Deps {
    pub mlx_server: PathBuf,
    pub llama_server: PathBuf,
    pub models: PathBuf,
}

/// The dependencies from `SOAKD_TEST_*` (set by `scripts/test`), else from the default cache.
pub fn deps() -> Deps {
    let pick = |var: &str, prefix: &str, inner: &str| -> PathBuf {
        cache::installed(var, prefix, inner).filter(|p| p.exists()).unwrap_or_else(|| {
            panic!(
                "{var} is not set and nothing was found in {}: run `scripts/test` (it installs the real servers and the tiny model), or `eval \"$(scripts/test-deps)\"` before `cargo test`",
                cache_dir().display()
            )
        })
    };
    Deps {
        mlx_server: pick("SOAKD_TEST_MLX_SERVER", "venv-", "bin/mlx_lm.server"),
        llama_server: pick("SOAKD_TEST_LLAMA_SERVER", "llama-server-", "llama-server"),
        models: pick("SOAKD_TEST_MODELS", "model-", ""),
    }
}

impl Deps {
    /// A tiny model variant: `babble` (never stops) or `silent` (always stops at once).
    pub fn hf(&self, variant: &str) -> PathBuf {
        self.models.join(variant).join("hf")
    }

    pub fn gguf(&self, variant: &str) -> PathBuf {
        self.models.join(variant).join("model.gguf")
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process, killed when dropped. Its output goes to `log`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(mut cmd: Command, port: u16, log_dir: &Path, name: &str) -> Server {
    let log = log_dir.join(format!("{name}-{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Server { child, port, log }
}

/// Starts llama-server on the tiny GGUF on 127.0.0.1:`port`, ready to serve.
pub fn start_llama(deps: &Deps, variant: &str, port: u16, log_dir: &Path) -> Server {
    let mut cmd = Command::new(&deps.llama_server);
    cmd.args(["-m"])
        .arg(deps.gguf(variant))
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--alias", "tiny"])
        .args(["-c", "4096", "-np", "2", "-t", "2", "--metrics", "--slots", "--jinja", "--no-webui"]);
    let mut s = spawn(cmd, port, log_dir, "llama-server");
    wait_healthy(&mut s, Duration::from_secs(60));
    s
}

/// Starts mlx_lm.server on the tiny HF model on 127.0.0.1:`port`, ready to serve.
pub fn start_mlx(deps: &Deps, variant: &str, port: u16, log_dir: &Path) -> Server {
    let hub = log_dir.join("hf-hub");
    std::fs::create_dir_all(&hub).unwrap();
    let mut cmd = Command::new(&deps.mlx_server);
    cmd.arg("--model")
        .arg(deps.hf(variant))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("HF_HUB_CACHE", &hub)
        .env("HF_HUB_OFFLINE", "1");
    let mut s = spawn(cmd, port, log_dir, "mlx_lm.server");
    wait_healthy(&mut s, Duration::from_secs(120));
    s
}

/// Starts `soakd sim` with extra flags on a free port, ready to serve.
pub fn start_sim(args: &[&str], log_dir: &Path) -> Server {
    let port = free_port();
    let mut cmd = Command::new(SOAKD);
    cmd.args(["sim", "--port", &port.to_string()]).args(args);
    let mut s = spawn(cmd, port, log_dir, "sim");
    wait_healthy(&mut s, Duration::from_secs(20));
    s
}

/// Polls `GET /health` until it answers 200.
pub fn wait_healthy(server: &mut Server, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("the server exited ({status}) before it was ready:\n{}", server.log_text());
        }
        if http_get(server.port, "/health").is_some_and(|(code, _)| code == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server on port {} was not healthy within {limit:?}:\n{}", server.port, server.log_text());
}

/// A minimal blocking `GET`, returning the status code and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// A config file and a schedules folder in `dir`; returns the config's path.
pub fn write_config(dir: &Path, backends: &str, schedules: &str) -> PathBuf {
    let sched = dir.join("schedules");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(sched.join("jobs.toml"), schedules).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("db = \"soakd.db\"\nschedules = \"schedules\"\n[sampler]\nidle_interval_s = 1\nduring_interval_ms = 200\n{backends}")).unwrap();
    config
}

/// A `[[backend]]` entry for an OpenAI-compatible server on a local port.
pub fn backend(name: &str, port: u16) -> String {
    format!("[[backend]]\nname = \"{name}\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:{port}\"\n")
}

/// A `[[backend]]` entry of kind `llamacpp` for a llama-server, with its log file.
pub fn llamacpp_backend(name: &str, server: &Server) -> String {
    format!(
        "[[backend]]\nname = \"{name}\"\nkind = \"llamacpp\"\nurl = \"http://127.0.0.1:{}\"\nlog = \"{}\"\n",
        server.port,
        server.log.display()
    )
}

/// Runs soakd with arguments; returns (exit code, stdout, stderr).
pub fn soakd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(SOAKD).args(args).output().expect("soakd runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `soakd run` on `config` as a plain process (not an agent), its output discarded.
pub fn spawn_run(config: &Path) -> Child {
    Command::new(SOAKD)
        .args(["--config", config.to_str().unwrap(), "run"])
        .env_remove("SOAKD_AGENT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("soakd run starts")
}

/// Stops a `soakd run` with SIGTERM; it must exit 0.
pub fn stop(mut child: Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success(), "soakd run exits 0 on SIGTERM");
}

/// A bare HTTP/1.1 server on 127.0.0.1 for `connections` connections: each request's head is
/// read (its body skipped) and `answer(head)` is written back as the whole response.
pub fn raw_http_server(connections: usize, answer: impl Fn(&str) -> String + Send + 'static) -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let (mut head, mut length) = (String::new(), 0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = writer.write_all(answer(&head).as_bytes());
        }
    });
    port
}

pub fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("soakd.db")).expect("the database exists")
}

/// One value from a query.
pub fn one<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> T {
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Serialises the tests that run real servers: two cores cannot hold several at full speed,
/// and timing comparisons need a quiet machine.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
