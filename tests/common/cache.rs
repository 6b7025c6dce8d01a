//! Where scripts/test-deps installs the real servers and the tiny model: read by the end-to-end
//! tests (`common`) and by `benches/vs_oha.rs`, which includes this file by path.

use std::path::PathBuf;

/// The test cache scripts/test-deps fills: `$SOAKD_TEST_CACHE`, else
/// `${XDG_CACHE_HOME:-~/.cache}/soakd-test`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("SOAKD_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        base.join("soakd-test")
    })
}

/// `var`'s path when it is set, else `inner` in the newest folder of the cache whose name starts
/// with `prefix` (where it exists).
pub fn installed(var: &str, prefix: &str, inner: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache_dir())
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .map(|p| p.join(inner))
        .filter(|p| p.exists())
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop()
}
