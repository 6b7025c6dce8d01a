//! The verdicts' validation over many seeds (`cargo bench --bench verdicts [-- --seeds N]
//! [--first-seed S] [--noise-scale X] [--cadence-scale X] [-v] [--keep DIR] [memory|crash|CLASS]`):
//! synthetic soak logs of every memory and crash class in `tests/synth` (the shapes of
//! docs/failure-shapes.md), each class drawing its parameters from wide ranges per seed, written
//! into the schema with plain SQL, then judged by `soakd report`. `--noise-scale` and
//! `--cadence-scale` draw the memory classes' noise up to X times larger and their idle samples X
//! times further apart: the same verdicts asked of shapes outside the ranges they were tuned on.
//!
//! Prints per class the share of seeds judged right, and over all classes: leak recall, false
//! leaks on servers that do not leak, the median and worst slope error, verdicts that change with
//! the report window; the top crash factor right, and patterns on logs whose failures are random.

#[path = "../tests/synth/mod.rs"]
mod synth;

use synth::score;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let seeds: u64 = args
        .iter()
        .position(|a| a == "--seeds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let first: u64 = args
        .iter()
        .position(|a| a == "--first-seed")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let scale = |flag: &str| -> f64 {
        let value = args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
        value.map_or(1.0, |v| {
            v.parse().ok().filter(|x: &f64| *x > 0.0).unwrap_or_else(|| panic!("{flag} takes a number > 0, not {v}"))
        })
    };
    let stretch = synth::memory::Stretch { noise: scale("--noise-scale"), cadence: scale("--cadence-scale") };
    synth::memory::stretch(stretch);
    let flag_values: Vec<usize> = ["--seeds", "--first-seed", "--keep", "--noise-scale", "--cadence-scale"]
        .iter()
        .filter_map(|f| args.iter().position(|a| a == f).map(|i| i + 1))
        .collect();
    let filter =
        args.iter().enumerate().find(|(i, a)| !a.starts_with('-') && !flag_values.contains(i)).map(|(_, a)| a.clone());
    let wanted = |group: &str, name: &str| filter.as_deref().is_none_or(|f| f == group || name.contains(f));
    let verbose = args.iter().any(|a| a == "-v");
    let keep = args.iter().position(|a| a == "--keep").and_then(|i| args.get(i + 1)).map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir_path = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir_path).unwrap();
    let dir = &dir_path;
    let started = std::time::Instant::now();

    let mut mem = Vec::new();
    for (class, _) in synth::memory::CLASSES.iter().filter(|(c, _)| wanted("memory", c)) {
        let mut row = Vec::new();
        for seed in first..first + seeds {
            let case = synth::memory::case(class, seed);
            let path = dir.join(format!("{class}-{seed}.db"));
            let (s, wide) = score::judge_memory(&case, &path);
            if verbose && (s.leak != (s.verdict == "leak") || s.slope_error.is_some_and(|e| e > 0.1)) {
                let leak = &wide["backends"][0]["leak"];
                println!(
                    "  MISS {class} seed {seed}: {} est {:?} truth {:?} noise {} ac {} growth {}: {}",
                    s.verdict,
                    s.estimate,
                    s.truth_rate,
                    leak["noise_mb"],
                    leak["autocorrelation"],
                    leak["growth_mb"],
                    s.reason
                );
            }
            row.push(s);
            if keep.is_none() {
                let _ = std::fs::remove_file(&path);
            }
        }
        let right = row.iter().filter(|s| s.leak == (s.verdict == "leak")).count();
        let mut verdicts: std::collections::BTreeMap<&str, usize> = Default::default();
        row.iter().for_each(|s| *verdicts.entry(s.verdict.as_str()).or_default() += 1);
        let errs: Vec<f64> = row.iter().filter_map(|s| s.slope_error).collect();
        println!(
            "memory {:<30} {:>3}/{:<3} right  {:?}{}{}",
            class,
            right,
            row.len(),
            verdicts,
            median(&errs).map_or(String::new(), |m| format!("  slope error median {:.1} %", m * 100.0)),
            if row.iter().all(|s| s.window_stable) { "" } else { "  WINDOW-DEPENDENT" }
        );
        mem.extend(row);
    }
    if !mem.is_empty() {
        let leaks: Vec<_> = mem.iter().filter(|s| s.leak).collect();
        let clean: Vec<_> = mem.iter().filter(|s| !s.leak).collect();
        let found = leaks.iter().filter(|s| s.verdict == "leak").count();
        let false_leaks = clean.iter().filter(|s| s.verdict == "leak").count();
        let mut errs: Vec<f64> = leaks.iter().filter_map(|s| s.slope_error).collect();
        errs.sort_by(f64::total_cmp);
        let unstable = mem.iter().filter(|s| !s.window_stable).count();
        println!(
            "LEAKS: recall {found}/{} ({:.1} %), false leaks {false_leaks}/{} ({:.1} %), slope error median {:.1} % (p90 {:.1} %, max {:.1} %), window-dependent verdicts {unstable}/{}",
            leaks.len(),
            pct(found, leaks.len()),
            clean.len(),
            pct(false_leaks, clean.len()),
            median(&errs).unwrap_or(f64::NAN) * 100.0,
            errs.get(errs.len() * 9 / 10).copied().unwrap_or(f64::NAN) * 100.0,
            errs.last().copied().unwrap_or(f64::NAN) * 100.0,
            mem.len()
        );
    }

    let mut crash = Vec::new();
    for (class, _) in synth::crash::CLASSES.iter().filter(|(c, _)| wanted("crash", c)) {
        let mut row = Vec::new();
        for seed in first..first + seeds {
            let case = synth::crash::case(class, seed);
            let path = dir.join(format!("{class}-{seed}.db"));
            let s = score::judge_crash(&case, &path);
            if verbose && !s.correct {
                println!("  MISS {class} seed {seed}: {}", s.top);
            }
            row.push(s);
            if keep.is_none() {
                let _ = std::fs::remove_file(&path);
            }
        }
        let right = row.iter().filter(|s| s.correct).count();
        let mut tops: std::collections::BTreeMap<String, usize> = Default::default();
        row.iter().for_each(|s| *tops.entry(s.top.split(" (").next().unwrap_or("").to_string()).or_default() += 1);
        let mut tops: Vec<_> = tops.into_iter().collect();
        tops.sort_by_key(|t| std::cmp::Reverse(t.1));
        tops.truncate(4);
        println!("crash  {:<30} {:>3}/{:<3} right  top: {:?}", class, right, row.len(), tops);
        crash.extend(row);
    }
    if !crash.is_empty() {
        let random: Vec<_> = crash.iter().filter(|s| s.class.starts_with("random")).collect();
        let patterned: Vec<_> = crash.iter().filter(|s| !s.class.starts_with("random")).collect();
        let right = patterned.iter().filter(|s| s.correct).count();
        let alarms = random.iter().filter(|s| s.any_pattern).count();
        println!(
            "CRASHES: top factor right {right}/{} ({:.1} %), patterns on random-failure logs {alarms}/{} ({:.1} %)",
            patterned.len(),
            pct(right, patterned.len()),
            random.len(),
            pct(alarms, random.len())
        );
    }
    let stretched = if (stretch.noise, stretch.cadence) == (1.0, 1.0) {
        String::new()
    } else {
        format!(", memory noise ×{} and idle cadence ×{}", stretch.noise, stretch.cadence)
    };
    println!("({seeds} seeds per class from seed {first}{stretched}, {:.0} s)", started.elapsed().as_secs_f64());
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 { f64::NAN } else { 100.0 * a as f64 / b as f64 }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}
