//! Two-stage parsing, first stage: take typed fields out of a TOML table one by one, so that a
//! file with many mistakes reports all of them — each with its file, entry and field — instead
//! of stopping at the first (serde's `deny_unknown_fields` would). The second stage (checking
//! values against each other) lives with each type: `config.rs`, `schedule/parse.rs`.

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong in a config or schedule file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// e.g. `backend "lmstudio" (entry 2)`; `None` for the file's top level.
    pub entry: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(entry) = &self.entry {
            write!(f, ": {entry}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} problem{} found:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// The most of a problem's message kept, in bytes.
const MAX_MESSAGE: usize = 600;
/// The most of a line or value quoted in a message, in bytes.
const MAX_QUOTED: usize = 200;

/// A TOML syntax error as "line L, column C: what is wrong", quoting at most ~200 bytes of the
/// line around the column — a one-line 50 MB file must not come back as a 50 MB message.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = crate::text::bounded(e.message().trim(), MAX_MESSAGE);
    let Some(span) = e.span() else { return message };
    let at = floor_boundary(text, span.start.min(text.len()));
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let from = floor_boundary(text, at.saturating_sub(MAX_QUOTED / 2).max(line_start));
    let to = floor_boundary(text, (at + MAX_QUOTED / 2).min(line_end));
    let quoted = text[from..to].trim_end_matches('\r');
    let (open, close) = (if from > line_start { "…" } else { "" }, if to < line_end { "…" } else { "" });
    format!("line {line}, column {column}: {message}\n    {open}{quoted}{close}")
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where in a file a table sits, for messages.
#[derive(Debug, Clone)]
pub struct Place {
    pub file: PathBuf,
    pub entry: Option<String>,
}

impl Place {
    pub fn file(file: &Path) -> Self {
        Place { file: file.to_path_buf(), entry: None }
    }

    pub fn entry(file: &Path, entry: String) -> Self {
        Place { file: file.to_path_buf(), entry: Some(entry) }
    }

    /// A problem here. The message is bounded: it may quote a value from the file, and a file
    /// can hold a 50 MB string.
    pub fn problem(&self, field: Option<&str>, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            entry: self.entry.clone().map(|e| crate::text::bounded(&e, MAX_QUOTED)),
            field: field.map(str::to_string),
            message: crate::text::bounded(&message.into(), MAX_MESSAGE),
        }
    }
}

/// A TOML table whose fields are taken one at a time; what is left at `finish` is unknown.
pub struct Fields<'p> {
    table: toml::Table,
    place: Place,
    known: Vec<&'static str>,
    problems: &'p mut Vec<Problem>,
}

impl<'p> Fields<'p> {
    pub fn new(table: toml::Table, place: Place, problems: &'p mut Vec<Problem>) -> Self {
        Fields { table, place, known: Vec::new(), problems }
    }

    pub fn place(&self) -> &Place {
        &self.place
    }

    /// Records a problem about `field` of this table.
    pub fn problem(&mut self, field: &str, message: impl Into<String>) {
        let p = self.place.problem(Some(field), message);
        self.problems.push(p);
    }

    /// The field's value if present and of the right type; a wrong type is recorded.
    pub fn take<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<T> {
        self.known.push(key);
        let value = self.table.remove(key)?;
        let shown = short(&value);
        match value.try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = e.message().trim().to_string();
                self.problem(key, format!("{msg} (found {shown})"));
                None
            }
        }
    }

    /// Like `take`, but a missing field is a problem too.
    pub fn require<T: DeserializeOwned>(&mut self, key: &'static str, hint: &str) -> Option<T> {
        let present = self.table.contains_key(key);
        let v = self.take(key);
        if !present {
            self.problem(key, format!("missing; {hint}"));
        }
        v
    }

    /// The raw value, for fields with several accepted shapes.
    pub fn take_value(&mut self, key: &'static str) -> Option<toml::Value> {
        self.known.push(key);
        self.table.remove(key)
    }

    /// Reports every field nobody took, suggesting the closest known name.
    pub fn finish(self) {
        for key in self.table.keys() {
            let hint = closest(key, &self.known)
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_else(|| format!("; known fields: {}", self.known.join(", ")));
            let p = self.place.problem(Some(key), format!("unknown field{hint}"));
            self.problems.push(p);
        }
    }
}

/// A value as a user would write it, shortened for a message.
pub fn short(v: &toml::Value) -> String {
    let s = v.to_string();
    crate::text::bounded(&s, 60)
}

fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(key.len()) / 2).max(1))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().expect("test TOML parses")
    }

    #[test]
    fn reports_every_wrong_field_with_its_place() {
        let mut problems = Vec::new();
        let place = Place::entry(Path::new("s.toml"), "job \"a\" (entry 1)".into());
        let mut f = Fields::new(table("requests = \"four\"\nconcurency = 2\n"), place, &mut problems);
        assert_eq!(f.take::<u32>("requests"), None);
        assert_eq!(f.take::<u32>("concurrency"), None);
        let _: Option<String> = f.require("name", "give the job a name");
        f.finish();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].starts_with("s.toml: job \"a\" (entry 1): field `requests`: invalid type"), "{}", text[0]);
        assert!(text[0].contains("\"four\""), "{}", text[0]);
        assert!(text[1].contains("field `name`: missing; give the job a name"), "{}", text[1]);
        assert!(text[2].contains("field `concurency`: unknown field; did you mean `concurrency`?"), "{}", text[2]);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("delay", &["delay_ms", "stream"]), Some("delay_ms"));
        assert_eq!(closest("zzzz", &["delay_ms", "stream"]), None);
    }
}
