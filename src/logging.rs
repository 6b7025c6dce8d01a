//! Logging: tracing to standard error and, for the daemon, to daily-rotated files in the
//! config's `[log] dir` (tracing-appender), of which `keep_days` are kept. Under launchd
//! (`SOAKD_AGENT=launchd`) the files replace standard error, which launchd's
//! `StandardErrorPath` would grow forever; fatal errors are still printed there.
//!
//! Nothing secret reaches a log: the config holds only the names of key variables, the request
//! code logs neither headers nor keys, and every line passes through `secrets::scrub` on its way
//! to stderr or a file (a server's error text may echo a key).

use std::path::Path;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::prelude::*;

/// Daily log files: the folder and how many days are kept (0: none).
pub struct Files<'a> {
    pub dir: &'a Path,
    pub keep_days: u32,
}

/// Installs the global subscriber. `filter` is the `--log` flag; `daemon` picks the default
/// level. A log folder that cannot be created is reported and logging goes on to stderr.
pub fn init(filter: Option<&str>, daemon: bool, files: Option<Files<'_>>) {
    use std::io::IsTerminal;
    let default = if daemon { "warn,soakd=info" } else { "warn" };
    let make_filter = || {
        filter
            .map(EnvFilter::new)
            .or_else(|| EnvFilter::try_from_default_env().ok())
            .unwrap_or_else(|| EnvFilter::new(default))
    };
    let appender = files.filter(|f| f.keep_days > 0).and_then(|f| match appender(f.dir, f.keep_days) {
        Ok(a) => Some(a),
        Err(e) => {
            eprintln!("soakd: logging to standard error only: cannot write log files in {}: {e}", f.dir.display());
            None
        }
    });
    let under_launchd = std::env::var("SOAKD_AGENT").is_ok_and(|v| v == "launchd");
    let stderr = (appender.is_none() || !under_launchd).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(BoxMakeWriter::new(Scrubbing(std::io::stderr)))
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(make_filter())
    });
    let file = appender.map(|a| {
        tracing_subscriber::fmt::layer()
            .with_writer(BoxMakeWriter::new(Scrubbing(a)))
            .with_ansi(false)
            .with_filter(make_filter())
    });
    let _ = tracing_subscriber::registry().with(stderr).with(file).try_init();
}

/// A writer maker whose writers scrub secrets from what they write. The formatter hands each
/// event over in one buffer, so a secret is never split between two writes.
struct Scrubbing<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Scrubbing<M> {
    type Writer = Scrubbed<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        Scrubbed(self.0.make_writer())
    }
}

struct Scrubbed<W>(W);

impl<W: std::io::Write> std::io::Write for Scrubbed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(crate::secrets::scrub(text).as_bytes())?,
            Err(_) => self.0.write_all(crate::secrets::scrub(&String::from_utf8_lossy(buf)).as_bytes())?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `soakd.YYYY-MM-DD.log` in `dir`, a new one each UTC day, `keep` of them kept.
pub fn appender(dir: &Path, keep: u32) -> Result<tracing_appender::rolling::RollingFileAppender, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("soakd")
        .filename_suffix("log")
        .max_log_files(keep.max(1) as usize)
        .build(dir)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_dated_file_in_the_folder() {
        use std::io::Write;
        use tracing_subscriber::fmt::MakeWriter;
        let dir = tempfile::tempdir().unwrap();
        let a = appender(&dir.path().join("logs"), 3).unwrap();
        a.make_writer().write_all(b"hello\n").unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("soakd.") && names[0].ends_with(".log"), "{names:?}");
    }
}
