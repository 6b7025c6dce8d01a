//! The layering written in `lib.rs` ("# Layout"), checked: every `crate::` path in a top-level
//! module names a module listed before it, and every module is listed. The list is read from the
//! doc comment itself, so the documentation and the check cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules in the order `lib.rs` lists them, bottom first.
fn written_order() -> Vec<String> {
    let lib = include_str!("lib.rs");
    let layout = lib.split("//! # Layout").nth(1).expect("lib.rs has a # Layout section");
    let block = layout.split("//! ```text").nth(1).expect("the layout is a ```text block");
    let block = block.split("//! ```").next().unwrap();
    block
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter(|l| !l.starts_with(' '))
        .flat_map(|l| l.split("  ").next().unwrap().split(", ").map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// The top-level modules `lib.rs` declares.
fn declared() -> Vec<String> {
    include_str!("lib.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ").or_else(|| l.strip_prefix("mod ")))
        .map(|l| l.trim_end_matches(';').to_string())
        .filter(|m| m != "layout_tests")
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a piece of code names through `crate::` (`crate::a::b`, `crate::{a, b::c}`).
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.push(ident(rest));
            continue;
        };
        // The names at the group's own level: after its `{` and after each of its commas.
        let mut depth = 0;
        let mut starts = vec![0];
        for (i, ch) in group.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => starts.push(i + 1),
                _ => {}
            }
        }
        found.extend(starts.into_iter().map(|i| ident(group[i..].trim_start())).filter(|n| !n.is_empty()));
    }
    found.retain(|n| !n.is_empty());
    found
}

#[test]
fn every_module_is_in_the_written_order_once() {
    let order = written_order();
    let mut sorted = order.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), order.len(), "a module listed twice in lib.rs's # Layout: {order:?}");
    let mut declared = declared();
    declared.sort();
    assert_eq!(sorted, declared, "lib.rs's # Layout must list exactly the modules lib.rs declares");
}

#[test]
fn no_crate_path_points_up_the_written_order() {
    let order = written_order();
    let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        let Some(&own) = rank.get(top.as_str()) else { continue }; // lib.rs, main.rs, this file
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        for used in crate_paths(&code) {
            match rank.get(used.as_str()) {
                Some(&r) if r < own || used == top => {}
                Some(_) => upward.push(format!("{}: crate::{used} (listed after {top})", rel.display())),
                None => {} // an item of lib.rs itself (run_cli)
            }
        }
    }
    assert!(upward.is_empty(), "uses that point up lib.rs's # Layout:\n{}", upward.join("\n"));
}

/// The sibling files a module file names through `super::` (outside its tests).
fn sibling_uses(code: &str) -> BTreeSet<String> {
    let code = code.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("super::") {
        let rest = &code[at + "super::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or_default().split(',').collect(),
            None => vec![rest],
        };
        for n in names {
            let n: String = n.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !n.is_empty() {
                found.insert(n);
            }
        }
    }
    found
}

#[test]
fn no_module_folder_has_files_that_use_each_other_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut folders: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        if name == "mod" || name.ends_with("_tests") || file.parent() == Some(src.as_path()) {
            continue;
        }
        let uses = sibling_uses(&std::fs::read_to_string(file).unwrap());
        folders.entry(file.parent().unwrap().to_path_buf()).or_default().insert(name, uses);
    }
    for (folder, graph) in &folders {
        // Depth-first from every file; a path that comes back to a file on it is a circle.
        fn walk(n: &str, graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == n) {
                return Some(path[i..].iter().cloned().chain([n.to_string()]).collect());
            }
            path.push(n.to_string());
            for m in graph.get(n).into_iter().flatten().filter(|m| graph.contains_key(*m) && *m != n) {
                if let Some(circle) = walk(m, graph, path) {
                    return Some(circle);
                }
            }
            path.pop();
            None
        }
        for n in graph.keys() {
            let circle = walk(n, graph, &mut Vec::new());
            assert!(circle.is_none(), "{}: {}", folder.display(), circle.unwrap().join(" -> "));
        }
    }
}

#[test]
fn the_path_scanner_sees_groups_and_plain_paths() {
    let code =
        "use crate::store::{self, Writer};\nuse crate::{config::{A, B}, measure};\nlet x = crate::time::now_ms();";
    assert_eq!(crate_paths(code), ["store", "config", "measure", "time"]);
}
