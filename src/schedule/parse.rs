//! Schedule files → validated jobs and the digest's schedule. Parsers take text (tests never touch
//! disk); `load_dir` reads a folder, once. Every problem in every file is reported, each with its
//! file, job and field.

use super::digest::{DigestSchedule, parse_table};
use super::{BackendSelection, CronExpr, Job, Prompt, Schedules, Timeouts, Workload, prompts};
use crate::fields::{Fields, Place, Problem, Problems};
use std::path::Path;
use std::time::Duration;

/// Reads every `*.toml` in `dir` (sorted by name) and validates the jobs against the
/// configured backend names (`None`: the config is unknown, so names are not checked), and the
/// one `[digest]` table, if any.
pub fn load_dir(dir: &Path, backends: Option<&[&str]>) -> Result<Schedules, Problems> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Problems(vec![Problem {
            file: dir.to_path_buf(),
            entry: None,
            field: None,
            message: format!("cannot read the schedules folder ({e}); create it, or set `schedules` in the config"),
        }])
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut jobs = Vec::new();
    let mut digest: Option<DigestSchedule> = None;
    let mut problems = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(Place::file(&file).problem(None, format!("cannot read: {e}")));
                continue;
            }
        };
        let (mut j, d) = parse_text(&text, &file, backends, &mut problems);
        jobs.append(&mut j);
        match (&digest, d) {
            (Some(first), Some(_)) => problems.push(Place::entry(&file, "[digest]".into()).problem(
                None,
                format!(
                    "{} already schedules the digest; keep one [digest] table",
                    first.file.as_deref().unwrap_or(dir).display()
                ),
            )),
            (None, d) => digest = d,
            (Some(_), None) => {}
        }
    }
    for (i, job) in jobs.iter().enumerate() {
        if let Some(first) = jobs[..i].iter().find(|j| j.name == job.name) {
            problems.push(Place::entry(&job.file, format!("job \"{}\"", job.name)).problem(
                Some("name"),
                format!("{} already has a job with this name; job names must be unique", first.file.display()),
            ));
        }
    }
    let schedules = Schedules { jobs, digest: digest.unwrap_or_default() };
    if problems.is_empty() { Ok(schedules) } else { Err(Problems(problems)) }
}

/// Parses one schedule file's text. `file` names it in messages.
pub fn parse_file(text: &str, file: &Path, backends: Option<&[&str]>) -> Result<Schedules, Problems> {
    let mut problems = Vec::new();
    let (jobs, digest) = parse_text(text, file, backends, &mut problems);
    let schedules = Schedules { jobs, digest: digest.unwrap_or_default() };
    if problems.is_empty() { Ok(schedules) } else { Err(Problems(problems)) }
}

/// One file's jobs and `[digest]` table; its problems are added to `problems`.
fn parse_text(
    text: &str,
    file: &Path,
    backends: Option<&[&str]>,
    problems: &mut Vec<Problem>,
) -> (Vec<Job>, Option<DigestSchedule>) {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let message = format!("not valid TOML: {}", crate::fields::toml_error(text, &e));
            problems.push(Place::file(file).problem(None, message));
            return (Vec::new(), None);
        }
    };
    let mut top = Fields::new(table, Place::file(file), problems);
    let entries: Vec<toml::Table> = top.take("job").unwrap_or_default();
    let digest: Option<toml::Table> = top.take("digest");
    top.finish();
    let digest = digest.and_then(|t| parse_table(t, file, problems));
    let mut jobs = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        if let Some(job) = parse_job(entry, i + 1, file, backends, problems) {
            jobs.push(job);
        }
    }
    (jobs, digest)
}

fn parse_job(
    table: toml::Table,
    n: usize,
    file: &Path,
    backends: Option<&[&str]>,
    problems: &mut Vec<Problem>,
) -> Option<Job> {
    let label = match table.get("name").and_then(|v| v.as_str()) {
        Some(name) => format!("job \"{name}\" (entry {n})"),
        None => format!("job entry {n}"),
    };
    let mut f = Fields::new(table, Place::entry(file, label), problems);
    let name: Option<String> = f.require("name", "give the job a name, e.g. name = \"nightly-soak\"");
    if let Some(name) = &name
        && (name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    {
        f.problem("name", "use 1–64 letters, digits, '-', '_' or '.'");
    }
    let cron = f
        .require::<String>("cron", "say when it fires, e.g. cron = \"0 */15 * * * *\" (sec min hour dom month dow)")
        .and_then(|c| CronExpr::parse(&c).map_err(|m| f.problem("cron", m)).ok());
    let selection = parse_backends(&mut f, backends);
    let sequential = match f.take::<String>("order").as_deref() {
        None | Some("sequential") => true,
        Some("parallel") => false,
        Some(other) => {
            f.problem("order", format!("\"{other}\": use \"sequential\" (one backend after another) or \"parallel\""));
            true
        }
    };
    let enabled = f.take::<bool>("enabled").unwrap_or(true);
    let exclusive = f.take::<bool>("exclusive").unwrap_or(true);
    let max_wait = match f.take::<f64>("max_wait_s") {
        Some(s) if (0.0..=86_400.0).contains(&s) => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            f.problem("max_wait_s", format!("must be between 0 and 86400 seconds, not {s}"));
            None
        }
        None => None,
    };
    let workload = parse_workload(&mut f);
    f.finish();
    Some(Job {
        name: name?,
        file: file.to_path_buf(),
        cron: cron?,
        backends: selection?,
        sequential,
        exclusive,
        max_wait,
        enabled,
        workload: workload?,
    })
}

fn parse_backends(f: &mut Fields<'_>, backends: Option<&[&str]>) -> Option<BackendSelection> {
    let names: Vec<String> = f.take("backends").unwrap_or_else(|| vec!["*".to_string()]);
    if names.is_empty() {
        f.problem("backends", "is empty; list backend names, or [\"*\"] for every backend");
        return None;
    }
    if names.iter().any(|n| n == "*") {
        return Some(BackendSelection::All);
    }
    let Some(backends) = backends else { return Some(BackendSelection::Named(names)) };
    let mut ok = true;
    for n in &names {
        if !backends.contains(&n.as_str()) {
            f.problem(
                "backends",
                format!("no backend named \"{n}\" in the config (configured: {})", list_or_none(backends)),
            );
            ok = false;
        }
    }
    ok.then_some(BackendSelection::Named(names))
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "none".to_string() } else { names.join(", ") }
}

/// Checks `v` against an inclusive range, recording a problem naming the field when outside.
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    f: &mut Fields<'_>,
    field: &str,
    v: T,
    lo: T,
    hi: T,
) -> Option<T> {
    if v < lo || v > hi {
        f.problem(field, format!("must be between {lo} and {hi}, not {v}"));
        None
    } else {
        Some(v)
    }
}

fn parse_workload(f: &mut Fields<'_>) -> Option<Workload> {
    let mut ok = true;
    let mut num = |f: &mut Fields<'_>, key: &'static str, default: u64, lo: u64, hi: u64| -> u64 {
        match f.take::<u64>(key) {
            None => default,
            Some(v) => in_range(f, key, v, lo, hi).unwrap_or_else(|| {
                ok = false;
                default
            }),
        }
    };
    let requests = num(f, "requests", 1, 1, u64::from(Workload::MAX_REQUESTS)) as u32;
    let concurrency = num(f, "concurrency", 1, 1, u64::from(Workload::MAX_CONCURRENCY)) as u32;
    let delay_ms = num(f, "delay_ms", 0, 0, 3_600_000);
    let max_tokens = num(f, "max_tokens", 256, 1, u64::from(Workload::MAX_TOKENS_LIMIT)) as u32;
    let max_duration_s = num(f, "max_duration_s", 6 * 3600, 1, 7 * 24 * 3600);
    let stream = f.take::<bool>("stream").unwrap_or(true);

    let rate = f.take::<f64>("rate_per_s");
    if let Some(r) = rate {
        if !(r > 0.0 && r <= 10_000.0) {
            f.problem("rate_per_s", format!("must be above 0 and at most 10000, not {r}"));
            ok = false;
        } else if delay_ms > 0 {
            f.problem("rate_per_s", "set either rate_per_s (open loop) or delay_ms (closed loop), not both");
            ok = false;
        }
    }
    let temperature = f.take::<f64>("temperature");
    if let Some(t) = temperature
        && in_range(f, "temperature", t, 0.0, 2.0).is_none()
    {
        ok = false;
    }
    let top_p = f.take::<f64>("top_p");
    if let Some(p) = top_p
        && !(p > 0.0 && p <= 1.0)
    {
        f.problem("top_p", format!("must be above 0 and at most 1, not {p}"));
        ok = false;
    }
    let system: Option<String> = f.take("system");
    let prompts = match f.take_value("prompts") {
        None => prompts::builtin("probe"),
        Some(v) => parse_prompts(v).map_err(|m| f.problem("prompts", m)).ok(),
    };
    let tools = match f.take_value("tools") {
        None => Some(None),
        Some(v) => parse_tools(v).map(Some).map_err(|m| f.problem("tools", m)).ok(),
    };
    let timeouts = match f.take::<toml::Table>("timeouts") {
        None => Some(Timeouts::default()),
        Some(t) => parse_timeouts(t, f),
    };
    Some(Workload {
        requests,
        concurrency: concurrency.min(requests),
        delay: Duration::from_millis(delay_ms),
        rate,
        max_duration: Duration::from_secs(max_duration_s),
        stream,
        max_tokens,
        temperature,
        top_p,
        system,
        prompts: prompts?,
        tools: tools?,
        timeouts: timeouts?,
    })
    .filter(|_| ok)
}

fn parse_prompts(v: toml::Value) -> Result<Vec<Prompt>, String> {
    const SHAPES: &str =
        "write a built-in set name, a list of strings, or a list of { name, text } / { name, context_tokens } tables";
    match v {
        toml::Value::String(set) => prompts::builtin(&set)
            .ok_or_else(|| format!("no built-in prompt set \"{set}\" (there are: {})", prompts::SET_NAMES.join(", "))),
        toml::Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                toml::Value::String(text) if !text.trim().is_empty() => {
                    Ok(Prompt { name: format!("prompt-{}", i + 1), text })
                }
                toml::Value::Table(mut t) => {
                    let name = match t.remove("name") {
                        Some(toml::Value::String(n)) => n,
                        None => format!("prompt-{}", i + 1),
                        Some(other) => return Err(format!("item {}: name must be a string, not {other}", i + 1)),
                    };
                    let text = t.remove("text");
                    let size = t.remove("context_tokens");
                    if let Some(k) = t.keys().next() {
                        return Err(format!("item {}: unknown key `{k}`; {SHAPES}", i + 1));
                    }
                    match (text, size) {
                        (Some(toml::Value::String(text)), None) if !text.trim().is_empty() => Ok(Prompt { name, text }),
                        (None, Some(toml::Value::Integer(n))) if (1..=1_000_000).contains(&n) => {
                            Ok(Prompt { name, text: prompts::context(n as usize).text })
                        }
                        _ => Err(format!("item {}: give a non-empty `text`, or `context_tokens` (1–1000000)", i + 1)),
                    }
                }
                other => Err(format!("item {} ({}): {SHAPES}", i + 1, crate::fields::short(&other))),
            })
            .collect(),
        other => Err(format!("{}: {SHAPES}", crate::fields::short(&other))),
    }
}

fn parse_tools(v: toml::Value) -> Result<serde_json::Value, String> {
    if let toml::Value::String(name) = &v {
        return prompts::builtin_tools(name)
            .ok_or_else(|| format!("no built-in tool set \"{name}\" (there is: weather)"));
    }
    let json = serde_json::to_value(&v).map_err(|e| e.to_string())?;
    let items = json
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("write \"weather\" or a non-empty array of OpenAI tool tables")?;
    for (i, t) in items.iter().enumerate() {
        if t.pointer("/function/name").and_then(|n| n.as_str()).is_none_or(str::is_empty) {
            return Err(format!(
                "tool {} has no function.name; each tool is {{ type = \"function\", function = {{ name = ..., parameters = {{...}} }} }}",
                i + 1
            ));
        }
    }
    Ok(json)
}

fn parse_timeouts(table: toml::Table, parent: &mut Fields<'_>) -> Option<Timeouts> {
    let mut problems = Vec::new();
    let mut place = parent.place().clone();
    place.entry = Some(format!("{} [timeouts]", place.entry.unwrap_or_default()));
    let mut f = Fields::new(table, place, &mut problems);
    let mut t = Timeouts::default();
    for (key, slot) in [
        ("connect_ms", &mut t.connect),
        ("first_byte_ms", &mut t.first_byte),
        ("stall_ms", &mut t.stall),
        ("total_ms", &mut t.total),
    ] {
        if let Some(v) = f.take::<u64>(key)
            && let Some(v) = in_range(&mut f, key, v, 1, 86_400_000)
        {
            *slot = Duration::from_millis(v);
        }
    }
    f.finish();
    let ok = problems.is_empty();
    for p in problems {
        let field = p.field.clone().unwrap_or_default();
        parent.problem(&format!("timeouts.{field}"), p.message);
    }
    ok.then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKENDS: Option<&[&str]> = Some(&["mlx-server", "llama"]);

    fn one(text: &str) -> Job {
        let mut jobs = parse_file(text, Path::new("s.toml"), BACKENDS).unwrap_or_else(|p| panic!("{p}")).jobs;
        assert_eq!(jobs.len(), 1);
        jobs.remove(0)
    }

    #[test]
    fn defaults_are_safe() {
        let j = one("[[job]]\nname = \"probe\"\ncron = \"*/10 * * * * *\"");
        assert_eq!(j.backends, BackendSelection::All);
        assert_eq!(j.workload.requests, 1);
        assert_eq!(j.workload.max_tokens, 256, "always capped");
        assert!(j.workload.stream);
        assert_eq!(j.workload.prompts[0].name, "probe");
        assert_eq!(j.workload.timeouts, Timeouts::default());
        assert!(j.sequential && j.enabled);
    }

    #[test]
    fn full_job() {
        let j = one(r#"
            [[job]]
            name = "burst"
            cron = "0 0 * * * *"
            backends = ["llama"]
            order = "parallel"
            requests = 100
            concurrency = 4
            delay_ms = 2000
            stream = false
            max_tokens = 200
            temperature = 0.0
            system = "Be brief."
            prompts = ["one", { name = "two", text = "second" }, { name = "big", context_tokens = 2000 }]
            tools = "weather"
            timeouts = { connect_ms = 1000, first_byte_ms = 5000, stall_ms = 3000, total_ms = 60000 }
            "#);
        assert_eq!(j.backends, BackendSelection::Named(vec!["llama".into()]));
        assert!(!j.sequential);
        let w = &j.workload;
        assert_eq!((w.requests, w.concurrency, w.delay.as_millis(), w.stream), (100, 4, 2000, false));
        assert_eq!(w.prompts.len(), 3);
        assert_eq!(w.prompts[1], Prompt { name: "two".into(), text: "second".into() });
        assert!(w.prompts[2].text.len() >= 8000);
        assert!(w.tools.as_ref().unwrap()[0]["function"]["name"] == "get_weather");
        assert_eq!(w.timeouts.stall, Duration::from_secs(3));
    }

    #[test]
    fn every_mistake_is_reported_with_file_job_and_field() {
        let text = r#"
            [[job]]
            name = "a"
            cron = "61 * * * * *"
            requests = 0
            concurrency = "four"
            backends = ["nope"]
            prompts = "unknown-set"
            delay = 5
            [job.timeouts]
            stall_ms = 0
            [[job]]
            cron = "@hourly"
            rate_per_s = 2.0
            delay_ms = 10
            max_tokens = 0
            tools = [{ type = "function" }]
        "#;
        let Err(Problems(p)) = parse_file(text, Path::new("schedules/bad.toml"), BACKENDS) else { panic!("invalid") };
        let all: Vec<String> = p.iter().map(ToString::to_string).collect();
        let has = |s: &str| assert!(all.iter().any(|l| l.contains(s)), "missing {s:?} in {all:#?}");
        has("schedules/bad.toml: job \"a\" (entry 1): field `cron`: \"61 * * * * *\" is not a valid cron");
        has("job \"a\" (entry 1): field `requests`: must be between 1 and");
        has("job \"a\" (entry 1): field `concurrency`: invalid type");
        has(
            "job \"a\" (entry 1): field `backends`: no backend named \"nope\" in the config (configured: mlx-server, llama)",
        );
        has("job \"a\" (entry 1): field `prompts`: no built-in prompt set \"unknown-set\"");
        has("job \"a\" (entry 1): field `delay`: unknown field; did you mean `delay_ms`?");
        has("job \"a\" (entry 1): field `timeouts.stall_ms`: must be between 1 and");
        has("job entry 2: field `name`: missing");
        has("job entry 2: field `rate_per_s`: set either rate_per_s");
        has("job entry 2: field `max_tokens`: must be between 1 and");
        has("job entry 2: field `tools`: tool 1 has no function.name");
        assert_eq!(all.len(), 11, "{all:#?}");
    }

    #[test]
    fn duplicate_names_across_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let job = "[[job]]\nname = \"same\"\ncron = \"@hourly\"\n";
        std::fs::write(dir.path().join("a.toml"), job).unwrap();
        std::fs::write(dir.path().join("b.toml"), job).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let Err(p) = load_dir(dir.path(), BACKENDS) else { panic!("duplicate") };
        assert_eq!(p.0.len(), 1, "{p}");
        assert!(p.to_string().contains("already has a job with this name"), "{p}");
    }

    #[test]
    fn toml_syntax_errors_name_the_file() {
        let Err(p) = parse_file("[[job]\n", Path::new("x.toml"), BACKENDS) else { panic!() };
        assert!(p.to_string().contains("x.toml: not valid TOML"), "{p}");
    }

    #[test]
    fn shipped_schedules_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schedules");
        let jobs = load_dir(&dir, None).unwrap_or_else(|p| panic!("{p}")).jobs;
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        for want in [
            "security-streamed",
            "security-blocking",
            "probe",
            "rapid-burst",
            "spaced-burst",
            "nightly-soak",
            "context-sweep",
            "tool-call",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for j in &jobs {
            assert_eq!(j.backends, BackendSelection::All, "{} should target every backend", j.name);
        }
    }

    #[test]
    fn a_digest_table_and_the_default_read_with_the_jobs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_dir(dir.path(), None).unwrap().digest.cron.written, super::super::digest::DEFAULT_CRON);
        std::fs::write(dir.path().join("digest.toml"), "[digest]\ncron = \"0 30 6 * * *\"\n").unwrap();
        let s = load_dir(dir.path(), None).unwrap();
        assert_eq!(s.digest.cron.written, "0 30 6 * * *");
        assert_eq!(s.digest.file.as_deref(), Some(dir.path().join("digest.toml").as_path()));
        std::fs::write(dir.path().join("other.toml"), "[digest]\ncron = \"0 0 8 * * *\"\n").unwrap();
        let e = load_dir(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("already schedules the digest"), "{e}");
        std::fs::write(dir.path().join("other.toml"), "[digest]\ncron = \"bad\"\n").unwrap();
        let e = load_dir(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("other.toml") && e.contains("cron"), "{e}");
    }
}
