//! Crash evidence: when a request fails or a server restarts, what the machine knows about it,
//! gathered at once and bounded in size — the last lines of the backend's own log file, crash
//! reports that appeared since the last look (macOS `~/Library/Logs/DiagnosticReports/*.ips`)
//! for the backend's process, and on macOS the unified-log lines of that process and of the
//! GPU driver around that minute (Metal errors such as
//! `kIOGPUCommandBufferCallbackErrorOutOfMemory`, `IOGPUMetalError`, aborts).
//!
//! A burst of failures gathers once: after one gathering for a failed request, the next
//! failed requests get none for `QUIET`; restarts and lost processes always gather.

use crate::config::{BackendConfig, ProcessSelector};
use crate::store::rows::EvidenceItem;
use crate::text::bounded;
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// After gathering for a failed request, the next failures within this long get none.
const QUIET: Duration = Duration::from_secs(30);
/// The most of a log's end that is read, and kept.
const LOG_READ_BYTES: u64 = 64 * 1024;
const LOG_KEEP_BYTES: usize = 8 * 1024;
const LOG_KEEP_LINES: usize = 60;
/// The most of one crash report kept, and reports kept per gathering.
const REPORT_KEEP_BYTES: usize = 16 * 1024;
const MAX_REPORTS: usize = 3;
/// How long the unified-log query may take.
#[cfg(target_os = "macos")]
const UNIFIED_LOG_TIMEOUT: Duration = Duration::from_secs(8);

/// Gathers evidence for one backend.
pub struct Collector {
    log: Option<PathBuf>,
    reports: Option<PathBuf>,
    /// Matches the process name in crash reports (the config's `process = { name = ... }`).
    name: Option<regex::Regex>,
    state: Mutex<State>,
}

struct State {
    last: Option<Instant>,
    since: SystemTime,
    seen: HashSet<PathBuf>,
}

/// Why evidence is gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    FailedRequest,
    Restart,
}

impl Collector {
    pub fn new(config: &BackendConfig) -> Collector {
        let reports = if cfg!(target_os = "macos") {
            std::env::var_os("HOME").map(|h| Path::new(&h).join("Library/Logs/DiagnosticReports"))
        } else {
            None
        };
        Collector::with_reports_dir(config, reports)
    }

    /// A collector that looks for crash reports in `reports` (tests use a temporary folder).
    pub fn with_reports_dir(config: &BackendConfig, reports: Option<PathBuf>) -> Collector {
        let name = match &config.process {
            ProcessSelector::Name(re) => Some(re.clone()),
            _ => None,
        };
        Collector {
            log: config.log.clone(),
            reports,
            name,
            state: Mutex::new(State { last: None, since: SystemTime::now(), seen: HashSet::new() }),
        }
    }

    /// What the machine knows now about a failure of the process `pid`; `None` when a failed
    /// request comes within `QUIET` of the last gathering.
    pub async fn gather(&self, cause: Cause, pid: Option<u32>) -> Option<Vec<EvidenceItem>> {
        let since = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if cause == Cause::FailedRequest {
                if s.last.is_some_and(|t| t.elapsed() < QUIET) {
                    return None;
                }
                s.last = Some(Instant::now());
            }
            s.since
        };
        let log = self.log.clone();
        let reports = self.reports.clone();
        let name = self.name.clone();
        let (mut items, found) = tokio::task::spawn_blocking(move || {
            let mut items = Vec::new();
            if let Some(path) = &log {
                items.extend(log_tail(path));
            }
            let found = match &reports {
                Some(dir) => crash_reports(dir, since, pid, name.as_ref()),
                None => Vec::new(),
            };
            (items, found)
        })
        .await
        .unwrap_or_default();
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for (path, item) in found {
                if s.seen.insert(path) {
                    items.push(item);
                }
            }
        }
        items.extend(unified_log(pid).await);
        Some(items)
    }
}

/// The last lines of a log file.
pub fn log_tail(path: &Path) -> Option<EvidenceItem> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let from = len.saturating_sub(LOG_READ_BYTES);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.take(LOG_READ_BYTES).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    // A read that started mid-file starts mid-line: drop that partial line.
    let text = if from > 0 { text.split_once('\n').map_or("", |(_, rest)| rest) } else { &text };
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_KEEP_LINES)..].join("\n");
    let tail = tail_bounded(&tail, LOG_KEEP_BYTES);
    Some(EvidenceItem { source: "log", path: Some(path.display().to_string()), text: tail })
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail_bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// Crash reports (`.ips`, `.crash`) written since `since` that name `pid` or a process
/// matching `name`.
fn crash_reports(
    dir: &Path,
    since: SystemTime,
    pid: Option<u32>,
    name: Option<&regex::Regex>,
) -> Vec<(PathBuf, EvidenceItem)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| matches!(e.path().extension().and_then(|x| x.to_str()), Some("ips" | "crash")))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        // File times are coarser than the clock: a report written just after `since` may carry
        // an earlier time. The `seen` set keeps one found twice from being kept twice.
        .filter(|(modified, _)| *modified + Duration::from_secs(2) >= since)
        .collect();
    found.sort();
    let mut out = Vec::new();
    for (_, path) in found.into_iter().rev() {
        let Ok(file) = std::fs::File::open(&path) else { continue };
        let mut head = Vec::new();
        if file.take(256 * 1024).read_to_end(&mut head).is_err() {
            continue;
        }
        let text = String::from_utf8_lossy(&head);
        if report_matches(&text, &path, pid, name) {
            let item = EvidenceItem {
                source: "crash_report",
                path: Some(path.display().to_string()),
                text: bounded(&text, REPORT_KEEP_BYTES),
            };
            out.push((path, item));
            if out.len() == MAX_REPORTS {
                break;
            }
        }
    }
    out
}

/// Whether a crash report is about the process: its `"pid" : N` or its process name.
fn report_matches(text: &str, path: &Path, pid: Option<u32>, name: Option<&regex::Regex>) -> bool {
    if let Some(pid) = pid {
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).take(64 * 1024).collect();
        if squeezed.contains(&format!("\"pid\":{pid},")) || squeezed.contains(&format!("\"pid\":{pid}}}")) {
            return true;
        }
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let app = text.lines().next().and_then(|first| serde_json::from_str::<serde_json::Value>(first).ok());
    let app_name = app.as_ref().and_then(|v| v.get("app_name")).and_then(|v| v.as_str()).unwrap_or("");
    name.is_some_and(|re| re.is_match(app_name) || re.is_match(&file_name))
}

/// macOS: the unified log of the last two minutes for the process, and GPU errors.
#[cfg(target_os = "macos")]
async fn unified_log(pid: Option<u32>) -> Option<EvidenceItem> {
    let mut predicate = String::from(
        "eventMessage CONTAINS \"IOGPUMetalError\" OR eventMessage CONTAINS \"kIOGPUCommandBufferCallbackError\"",
    );
    if let Some(pid) = pid {
        predicate = format!("processID == {pid} OR {predicate}");
    }
    let run = tokio::process::Command::new("/usr/bin/log")
        .args(["show", "--style", "compact", "--last", "2m", "--predicate", &predicate])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(UNIFIED_LOG_TIMEOUT, run).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("Timestamp")).collect();
    if lines.is_empty() {
        return None;
    }
    let tail = lines[lines.len().saturating_sub(LOG_KEEP_LINES)..].join("\n");
    Some(EvidenceItem { source: "unified_log", path: None, text: tail_bounded(&tail, LOG_KEEP_BYTES) })
}

#[cfg(not(target_os = "macos"))]
async fn unified_log(_pid: Option<u32>) -> Option<EvidenceItem> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn config(log: Option<PathBuf>) -> BackendConfig {
        crate::config::parse(
            "[[backend]]\nname = \"b\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:9\"\nprocess = { name = \"llama-server\" }",
            Path::new("c.toml"),
            &|_| None,
        )
        .map(|c| BackendConfig { log, ..c.backends[0].clone() })
        .expect("valid")
    }

    #[test]
    fn the_log_tail_is_the_last_lines_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..20_000 {
            writeln!(f, "line {i}").unwrap();
        }
        let item = log_tail(&path).expect("a tail");
        assert_eq!(item.source, "log");
        assert!(item.text.ends_with("line 19999"), "{}", &item.text[item.text.len() - 40..]);
        assert!(item.text.starts_with(&format!("line {}", 20_000 - LOG_KEEP_LINES)));
        assert!(item.text.len() <= LOG_KEEP_BYTES);
        assert!(log_tail(&dir.path().join("missing.log")).is_none());
    }

    #[tokio::test]
    async fn a_burst_gathers_once_and_restarts_always() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, "ggml_metal: error: out of memory\n").unwrap();
        let c = Collector::with_reports_dir(&config(Some(log)), None);
        let first = c.gather(Cause::FailedRequest, Some(1)).await.expect("first failure gathers");
        assert_eq!(first[0].text, "ggml_metal: error: out of memory");
        assert!(c.gather(Cause::FailedRequest, Some(1)).await.is_none(), "quiet after a gathering");
        assert!(c.gather(Cause::Restart, Some(1)).await.is_some(), "a restart always gathers");
        let c = Collector::with_reports_dir(&config(Some(dir.path().join("server.log"))), None);
        assert!(c.gather(Cause::Restart, Some(1)).await.is_some());
        assert!(c.gather(Cause::FailedRequest, Some(1)).await.is_some(), "a restart does not quiet the requests");
    }

    #[tokio::test]
    async fn new_crash_reports_of_the_process_are_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let reports = dir.path().join("DiagnosticReports");
        std::fs::create_dir(&reports).unwrap();
        let c = Collector::with_reports_dir(&config(None), Some(reports.clone()));
        let ips = |pid: u32, app: &str| {
            format!(
                "{{\"app_name\":\"{app}\",\"bug_type\":\"309\"}}\n{{\n  \"pid\" : {pid},\n  \"exception\" : {{\"signal\" : \"SIGABRT\"}}\n}}\n"
            )
        };
        std::fs::write(reports.join("llama-server-2026-11-25-101010.ips"), ips(4242, "llama-server")).unwrap();
        std::fs::write(reports.join("Safari-2026-11-25-101011.ips"), ips(77, "Safari")).unwrap();
        std::fs::write(reports.join("other-2026-11-25-101012.ips"), ips(4242, "other")).unwrap();
        let items = c.gather(Cause::Restart, Some(4242)).await.unwrap();
        let paths: Vec<&str> = items.iter().filter_map(|i| i.path.as_deref()).collect();
        assert_eq!(items.len(), 2, "{paths:?}");
        assert!(items.iter().all(|i| i.source == "crash_report" && i.text.contains("SIGABRT")));
        assert!(!paths.iter().any(|p| p.contains("Safari")));
        let again = c.gather(Cause::Restart, Some(4242)).await.unwrap();
        assert!(again.is_empty(), "a report is kept once: {again:?}");
    }
}
