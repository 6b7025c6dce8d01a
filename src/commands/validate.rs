//! The one validation every command runs before it touches the database or a server: what the
//! config file cannot say by itself — variables set in this environment, files and folders on
//! this machine. `check` prints it; `run`, `once`, `install` and `digest --send` refuse to start on
//! it with exit 78 (EX_CONFIG). What `check` rejects, nothing else accepts.
//!
//! It only looks: nothing is created, opened for writing or sent.

use crate::config::{BackendConfig, BackendKind, Config};
use crate::fields::{Place, Problem};
use crate::secrets::Source;
use std::path::{Path, PathBuf};

/// For the daemon (and `check`, which says what the daemon would do): a config with no backend
/// has nothing to soak.
pub fn daemon(config: &Config) -> Option<Problem> {
    config.backends.is_empty().then(|| {
        Place::file(&config.path).problem(Some("backend"), "no [[backend]] entries: add at least one server to soak")
    })
}

/// Every problem of the environment `config` would run in.
pub fn environment(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    for b in &config.backends {
        let place = Place::entry(&config.path, format!("backend \"{}\"", b.name));
        for (field, message) in backend_problems(b) {
            problems.push(place.problem(Some(field), message));
        }
    }
    if let Some(message) = database_problem(&config.db) {
        problems.push(Place::file(&config.path).problem(Some("db"), message));
    }
    if let Some(dir) = &config.log.dir
        && let Some(message) = folder_problem(dir)
    {
        problems.push(Place::entry(&config.path, "[log]".into()).problem(Some("dir"), message));
    }
    if let Some(smtp) = &config.mail.smtp
        && let Err(e) = crate::digest::send::password(smtp.password.as_ref())
    {
        let field = match smtp.password {
            Some(Source::File(_)) => "password_file",
            _ => "password_env",
        };
        problems.push(Place::entry(&config.path, "[smtp]".into()).problem(Some(field), e.to_string()));
    }
    if let Some(metrics) = &config.metrics
        && let Some(token) = &metrics.token
        && let Err(e) = crate::secrets::read(token, "metrics bearer token", "[metrics] bearer_token_env")
    {
        let field = match token {
            Source::File(_) => "bearer_token_file",
            Source::Env(_) => "bearer_token_env",
        };
        problems.push(Place::entry(&config.path, "[metrics]".into()).problem(Some(field), e.to_string()));
    }
    problems
}

fn backend_problems(b: &BackendConfig) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    if let Some(var) = &b.api_key_env
        && std::env::var_os(var).is_none_or(|v| v.is_empty())
    {
        found.push((
            "api_key_env",
            format!("{var} is not set in this environment; export it where soakd runs (its value is never logged)"),
        ));
    }
    // A log that does not exist yet may appear later; one that exists must be a readable file.
    if let Some(log) = &b.log
        && let Ok(meta) = std::fs::metadata(log)
    {
        if !meta.is_file() {
            found.push(("log", format!("{} is not a file; give the server's log file", log.display())));
        } else if let Err(e) = std::fs::File::open(log) {
            found.push((
                "log",
                format!("{} cannot be read ({e}); give a log file soakd's user can read", log.display()),
            ));
        }
    }
    if matches!(b.kind, BackendKind::MlxLm | BackendKind::Mlx) {
        if let Some(python) = b.python.as_ref().filter(|p| !p.is_file()) {
            found.push((
                "python",
                format!("{} is not a file; give an interpreter with mlx-lm installed", python.display()),
            ));
        }
        if let Some(model) = b.model.as_ref().map(Path::new).filter(|m| !m.join("config.json").is_file()) {
            found.push(("model", format!("{} has no config.json; give a local MLX model folder", model.display())));
        }
    }
    found
}

/// The database must be a writable file in a writable folder (SQLite's WAL and shared-memory
/// files sit beside it), or a path whose folder soakd can create.
fn database_problem(db: &Path) -> Option<String> {
    match std::fs::metadata(db) {
        Ok(meta) if !meta.is_file() => Some(format!(
            "{} is not a file; give the path of the SQLite database (it is created if missing)",
            db.display()
        )),
        Ok(_) if !writable(db) => Some(format!("{} cannot be written by this user; fix its permissions", db.display())),
        _ => folder_problem(db.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))),
    }
}

/// A folder soakd can write in, or create: the nearest one that exists must be a writable folder.
fn folder_problem(dir: &Path) -> Option<String> {
    let existing = nearest_existing(dir)?;
    if !existing.is_dir() {
        return Some(format!("{} is not a folder, so {} cannot be created", existing.display(), dir.display()));
    }
    if !writable(&existing) {
        return Some(if existing == dir {
            format!("{} cannot be written by this user; fix its permissions or choose another folder", dir.display())
        } else {
            format!("{} cannot be created: {} is not writable by this user", dir.display(), existing.display())
        });
    }
    None
}

fn nearest_existing(path: &Path) -> Option<PathBuf> {
    let absolute = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().ok()?.join(path) };
    absolute.ancestors().find(|p| p.symlink_metadata().is_ok()).map(Path::to_path_buf)
}

/// Whether this user may write `path`, asked of the kernel (`access(2)`), so nothing is created.
#[cfg(unix)]
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(not(unix))]
fn writable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.permissions().readonly())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_is_a_folder_or_under_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(database_problem(&dir.path().join("new/sub/soakd.db")).is_none(), "a folder that can be created");
        assert!(database_problem(&dir.path().join("soakd.db")).is_none());
        let msg = database_problem(dir.path()).expect("a folder is not a database");
        assert!(msg.contains("is not a file"), "{msg}");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let msg = database_problem(&file.join("soakd.db")).expect("a file is not a folder");
        assert!(msg.contains("is not a folder"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn a_read_only_folder_is_refused_unless_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(folder_problem(&ro.join("logs")).is_some(), !root, "root may write anywhere");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
