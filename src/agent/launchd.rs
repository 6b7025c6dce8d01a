//! The launchd agent: the plist rendered from `launchd/soakd.plist` with the `plist` crate
//! (every `{{NAME}}` in a string replaced, so paths are escaped by the crate, not by hand),
//! written to `~/Library/LaunchAgents/`, loaded with `launchctl bootstrap gui/<uid>` and
//! unloaded with `launchctl bootout`.

use super::{LABEL, Paths, Spec, run_tool, uid};
use plist::Value;

/// The template, as committed.
pub const TEMPLATE: &str = include_str!("../../launchd/soakd.plist");

/// The plist for `spec` under `paths`, as XML.
pub fn render(spec: &Spec, paths: &Paths) -> anyhow::Result<String> {
    let mut value = Value::from_reader_xml(TEMPLATE.as_bytes())
        .map_err(|e| anyhow::anyhow!("launchd/soakd.plist is not a valid plist: {e}"))?;
    let vars = [
        ("{{LABEL}}", LABEL.to_string()),
        ("{{BINARY}}", spec.binary.display().to_string()),
        ("{{CONFIG}}", spec.config.display().to_string()),
        ("{{HOME}}", paths.home.display().to_string()),
        ("{{LOG_DIR}}", paths.mac_log_dir().display().to_string()),
        ("{{EXIT_TIMEOUT}}", spec.stop_timeout_s.to_string()),
    ];
    fill(&mut value, &vars);
    let mut out = Vec::new();
    value.to_writer_xml(&mut out)?;
    let mut text = String::from_utf8(out)?;
    text.push('\n');
    Ok(text)
}

fn fill(value: &mut Value, vars: &[(&str, String)]) {
    match value {
        Value::String(s) if s == "{{EXIT_TIMEOUT}}" => {
            let n = vars.iter().find(|(k, _)| *k == "{{EXIT_TIMEOUT}}").and_then(|(_, v)| v.parse::<u64>().ok());
            *value = Value::Integer(n.unwrap_or(30).into());
        }
        Value::String(s) => {
            for (k, v) in vars {
                if s.contains(k) {
                    *s = s.replace(k, v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| fill(v, vars)),
        Value::Dictionary(d) => d.values_mut().for_each(|v| fill(v, vars)),
        _ => {}
    }
}

fn target() -> Result<String, String> {
    Ok(format!("gui/{}/{LABEL}", uid()?))
}

/// Loads the written plist into the user's GUI session (unloading an older one first).
pub fn bootstrap(paths: &Paths) -> Result<(), String> {
    let _ = run_tool("launchctl", &["bootout", &target()?]);
    let plist = paths.plist().display().to_string();
    run_tool("launchctl", &["bootstrap", &format!("gui/{}", uid()?), &plist]).map(|_| ())
}

/// Unloads the agent; not being loaded is not an error.
pub fn bootout() -> Result<(), String> {
    match run_tool("launchctl", &["bootout", &target()?]) {
        Ok(_) => Ok(()),
        Err(e) if e.contains("No such process") || e.contains("Could not find") || e.contains("(113)") => Ok(()),
        Err(e) => Err(e),
    }
}

/// What `launchctl print` says of the agent: `None` when it is not loaded.
pub fn loaded() -> Option<String> {
    let text = run_tool("launchctl", &["print", &target().ok()?]).ok()?;
    Some(summarise(&text))
}

/// The state, pid and last exit code from `launchctl print`'s output.
fn summarise(text: &str) -> String {
    let pick = |key: &str| {
        text.lines().map(str::trim).find_map(|l| l.strip_prefix(key)?.strip_prefix(" = ").map(str::to_string))
    };
    let mut parts = vec![format!("state {}", pick("state").unwrap_or_else(|| "unknown".into()))];
    parts.extend(pick("pid").map(|p| format!("pid {p}")));
    parts.extend(pick("last exit code").map(|c| format!("last exit code {c}")));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launchctl_print_is_summarised() {
        let text = "gui/501/org.soakd.agent = {\n\tactive count = 1\n\tpath = /Users/a/Library/LaunchAgents/org.soakd.agent.plist\n\tstate = running\n\n\tprogram = /usr/local/bin/soakd\n\tpid-local endpoints = {\n\t}\n\tpid = 812\n\tlast exit code = 78: EX_CONFIG\n}\n";
        assert_eq!(summarise(text), "state running, pid 812, last exit code 78: EX_CONFIG");
    }

    #[test]
    fn the_template_renders_with_every_placeholder_filled() {
        let spec = Spec { binary: "/b/soakd".into(), config: "/c/config.toml".into(), stop_timeout_s: 25 };
        let text = render(&spec, &Paths::new("/h")).unwrap();
        assert!(!text.contains("{{"), "{text}");
        assert!(text.contains("<integer>25</integer>"), "{text}");
    }
}
