//! Building a report: read each backend's rows for the window from the store (`pass` streams the
//! requests), hand them to the pure analysis functions, and assemble the model. With `pass`, the
//! only module of `report` that reads the database. Backends are built side by side, one per
//! core.

use super::model::{BackendReport, CrashPattern, Mode, Overhead, Percentiles, Rate, Report, ServerVersion, WindowOut};
use super::pass::Served;
use super::window::Window;
use crate::analysis::crashes::{CrashLog, analyse};
use crate::analysis::drift::{DriftParams, detect_drift};
use crate::analysis::leaks::{LeakParams, Lifetime, MemPoint, detect_leak};
use crate::analysis::overhead::median_ratio_of;
use crate::analysis::summary::wilson;
use crate::measure::distribution::Distribution;
use crate::store::{memory, queries};
use rusqlite::Connection;
use std::collections::BTreeMap;

/// Significance level for crash patterns and hypotheses (after Holm's correction).
const ALPHA: f64 = 0.05;

/// Builds the report for `window`, for the backends in `only` (all with data when empty).
pub fn build(conn: &Connection, window: Window, only: &[String], now_ms: i64) -> rusqlite::Result<Report> {
    build_with(conn, window, only, now_ms, Options::default())
}

/// Choices a report can make about what it counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Keep requests that ran while soakd measured another backend (`machine_in_flight > 0`) in
    /// the latency and throughput figures; by default they are left out and counted.
    pub include_contended: bool,
    /// Build backends side by side, one per core: for a person waiting on `soakd report`. Off
    /// by default, so a daemon's digest or /metrics analysis takes one core from the machine it
    /// is measuring, not all of them.
    pub parallel: bool,
}

pub fn build_with(
    conn: &Connection,
    window: Window,
    only: &[String],
    now_ms: i64,
    options: Options,
) -> rusqlite::Result<Report> {
    let mut names = queries::backends_in(conn, window.from, window.to)?;
    if !only.is_empty() {
        names.retain(|n| only.contains(n));
    }
    let mut backends = Vec::new();
    let mut samples: BTreeMap<String, (Distribution, Distribution)> = BTreeMap::new();
    let built = each_backend(
        conn,
        &names,
        options.parallel,
        |c, n| memory(c, n, window),
        |c, n, memory| backend(c, n, window, options, memory),
    )?;
    for (name, (report, ttft, tps)) in names.iter().zip(built) {
        samples.insert(name.clone(), (ttft, tps));
        backends.push(report);
    }
    let api_overhead = overhead(&queries::models(conn, window.from, window.to)?, &samples);
    let comparison = super::compare::table(&backends);
    let rankings = super::compare::rankings(&backends);
    let mut report = Report {
        schema_version: super::model::SCHEMA_VERSION,
        generated_at: now_ms,
        window: WindowOut::from(window),
        backends,
        comparison,
        rankings,
        api_overhead,
        findings: Vec::new(),
        raw_horizon: None,
    };
    report.findings = super::findings::derive(&report);
    report.raw_horizon = raw_horizon(conn, window, only)?;
    Ok(report)
}

/// Threads building backends at once, at most: each holds a backend's values while it builds it.
const MAX_THREADS: usize = 4;

/// `second(first(name))` for every name, in the names' order; with `parallel`, on a thread per
/// name (up to `MAX_THREADS`), each reading through its own connection to the same file. There
/// may be more threads than cores: three backends on two cores then share both to the end, where
/// two threads left the third backend's pass to run alone on one core (90-day bench, 2 cores:
/// 4.4 s to 3.5 s). Each name's two parts are separate tasks, every `first` claimed before any
/// `second` (one at a time, each name's two in turn). A log with no file (in memory) is read on
/// this thread alone; so are the tasks a thread could not open the file for (this thread takes
/// tasks until none is left, so every one is done).
fn each_backend<A: Send, B: Send>(
    conn: &Connection,
    names: &[String],
    parallel: bool,
    first: impl Fn(&Connection, &str) -> rusqlite::Result<A> + Sync,
    second: impl Fn(&Connection, &str, A) -> rusqlite::Result<B> + Sync,
) -> rusqlite::Result<Vec<B>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};
    let threads = if parallel { names.len().min(MAX_THREADS) } else { 1 };
    let path = conn.path().filter(|p| !p.is_empty() && threads > 1).map(std::path::PathBuf::from);
    let Some(path) = path else {
        return names.iter().map(|n| first(conn, n).and_then(|a| second(conn, n, a))).collect();
    };
    let next = AtomicUsize::new(0);
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
    // A task claimed is always run by the thread that claimed it, and every `first` is claimed
    // before any `second`: a `second` waits only for a `first` that is running.
    let firsts: (Mutex<Vec<Option<rusqlite::Result<A>>>>, Condvar) =
        (Mutex::new(names.iter().map(|_| None).collect()), Condvar::new());
    let results: Mutex<Vec<Option<rusqlite::Result<B>>>> = Mutex::new(names.iter().map(|_| None).collect());
    let work = |conn: &Connection| {
        loop {
            let task = next.fetch_add(1, Ordering::Relaxed);
            if let Some(name) = names.get(task) {
                // A panic still fills the slot, so that no `second` waits for it forever; it then
                // goes on unwinding (the scope ends in a panic of its own when a spawned thread
                // panicked, this thread's own panic as it was).
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| first(conn, name)));
                let (done, panic) = match done {
                    Ok(done) => (done, None),
                    Err(panic) => (Err(rusqlite::Error::InvalidQuery), Some(panic)),
                };
                lock(&firsts.0)[task] = Some(done);
                firsts.1.notify_all();
                if let Some(panic) = panic {
                    std::panic::resume_unwind(panic);
                }
                continue;
            }
            let i = task - names.len();
            let Some(name) = names.get(i) else { break };
            let ready = firsts.1.wait_while(lock(&firsts.0), |r| r[i].is_none());
            let a = ready.unwrap_or_else(|e| e.into_inner())[i].take();
            let built = a.unwrap_or(Err(rusqlite::Error::InvalidQuery)).and_then(|a| second(conn, name, a));
            lock(&results)[i] = Some(built);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(|| {
                if let Ok(reader) = crate::store::open_read_only(&path) {
                    work(&reader);
                }
            });
        }
        work(conn);
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.into_iter().map(|r| r.unwrap_or(Err(rusqlite::Error::InvalidQuery))).collect()
}

/// The rollups' part of a window that reaches before the raw-retention horizon.
fn raw_horizon(conn: &Connection, w: Window, only: &[String]) -> rusqlite::Result<Option<super::model::RawHorizon>> {
    use crate::store::retention;
    let Some(horizon) = retention::horizon(conn)?.filter(|h| w.from < *h) else { return Ok(None) };
    let mut rolled_up = retention::rolled_up(conn, w.from, horizon.min(w.to))?;
    rolled_up.retain(|r| only.is_empty() || only.contains(&r.backend));
    Ok(Some(super::model::RawHorizon { horizon_at: horizon, horizon_utc: super::window::utc(horizon), rolled_up }))
}

/// One backend's section, plus its successful requests' TTFTs and decode rates (for overhead), from
/// its rows and its `memory`.
fn backend(
    conn: &Connection,
    name: &str,
    w: Window,
    options: Options,
    memory: Memory,
) -> rusqlite::Result<(BackendReport, Distribution, Distribution)> {
    let Memory { extremes: (peak, last, available), mut lifetimes, asked, footprint } = memory;
    let served = Served::asking(asked);
    let mut g = super::pass::gather(conn, name, w.from, w.to, options.include_contended, served)?;
    let pct =
        |d: &Distribution| Percentiles { p50: d.percentile(50.0), p95: d.percentile(95.0), p99: d.percentile(99.0) };
    let mode = |m: &super::pass::ModeValues| Mode {
        requests: m.requests,
        ok: m.ok,
        ttft_p50_ms: m.ttft_ms.percentile(50.0),
        e2e_p50_ms: m.e2e_ms.percentile(50.0),
        tps_p50: m.tps.percentile(50.0),
    };
    let (streamed, non_streamed) = (mode(&g.modes[1]), mode(&g.modes[0]));
    let (ttft_ms, first_content_ms, e2e_ms) = (pct(&g.ttft_ms), pct(&g.first_content_ms), pct(&g.e2e_ms));
    let quantile_relative_error = [&g.ttft_ms, &g.first_content_ms, &g.e2e_ms, &g.decode_tps]
        .into_iter()
        .chain(g.modes.iter().flat_map(|m| [&m.ttft_ms, &m.e2e_ms, &m.tps]))
        .map(Distribution::relative_error)
        .fold(0.0, f64::max);
    let (requests, ok, not_counted) = (g.requests, g.ok, g.rows - g.requests);
    let (crash, crash_patterns) = crashes(std::mem::take(&mut g.crashes));
    let answers = std::mem::take(&mut g.served).answers();
    debug_assert_eq!(answers.len(), lifetimes.iter().map(|l| l.points.len()).sum::<usize>());
    let points = lifetimes.iter_mut().flat_map(|l| l.points.iter_mut());
    for (point, (requests, tokens)) in points.zip(answers) {
        (point.requests, point.tokens) = (requests, tokens);
    }
    let leak = detect_leak(&lifetimes, available.map(|a| a as f64), &LeakParams::default());
    let memory_metric = if footprint { "footprint" } else { "rss" };
    let restarts = queries::restarts(conn, &[name.to_string()], w.from, w.to)?.get(name).copied().unwrap_or(0);
    let drift = detect_drift(&g.hours, &DriftParams::default());
    let (ttft, tps) = (g.ttft_ms, g.decode_tps);
    let load_ms = g.load_ms;
    let versions = queries::server_versions(conn, name, w.from, w.to)?;
    let stuck = stuck(conn, name, w.to)?;
    let report = BackendReport {
        name: name.to_string(),
        host: crate::store::host::latest(conn).ok().flatten(),
        requests,
        ok,
        success_rate: if requests > 0 { ok as f64 / requests as f64 } else { 0.0 },
        success_ci: {
            let (lo, hi) = wilson(ok, requests);
            [lo, hi]
        },
        failures: g.failures,
        not_counted,
        ttft_ms,
        first_content_ms,
        e2e_ms,
        decode_tps: Rate { mean: tps.mean(), p50: tps.percentile(50.0) },
        quantile_relative_error,
        streamed,
        non_streamed,
        load_time_s: load_ms.map(|ms| ms / 1000.0),
        server_versions: versions
            .into_iter()
            .map(|(version, at)| ServerVersion { version, first_seen: at, first_seen_utc: super::window::utc(at) })
            .collect(),
        peak_rss_bytes: peak,
        last_rss_bytes: last,
        memory_metric,
        restarts,
        mtbf_s: crash.mtbf_s,
        longest_failure_streak: crash.longest_failure_streak,
        median_recovery_s: crash.median_recovery_s,
        leak,
        crash_patterns,
        signatures: crash.signatures,
        at_request_count: crash.at_request_count,
        hypotheses: crash.hypotheses,
        crash_episodes: crash.episodes,
        crash_confounded: crash.confounded,
        drift,
        hourly: g.hours,
        stuck,
        contended_left_out: g.contended_left_out,
    };
    Ok((report, ttft, tps))
}

/// Whether the backend is wedged or failing silently at `to`, from its latest requests.
fn stuck(conn: &Connection, name: &str, to: i64) -> rusqlite::Result<Option<crate::analysis::stuck::Stuck>> {
    use crate::analysis::stuck::{self, Attempt};
    let latest: Vec<Attempt> = queries::latest_outcomes(conn, name, to, 1000)?
        .into_iter()
        .map(|(at, outcome)| Attempt { at, outcome })
        .collect();
    let health = queries::latest_health(conn, name, to)?;
    Ok(stuck::assess(&latest, health.as_deref(), stuck::DEFAULT_AFTER))
}

/// Crash analysis: all failures together and the commonest signatures on their own, under one
/// correction (`analysis::crashes`).
fn crashes(log: CrashLog) -> (crate::analysis::crashes::CrashReport, Vec<CrashPattern>) {
    let report = analyse(log, ALPHA);
    let patterns = report.patterns.iter().map(CrashPattern::from_analysis).collect();
    (report, patterns)
}

impl CrashPattern {
    fn from_analysis(p: &crate::analysis::crashes::Pattern) -> CrashPattern {
        CrashPattern {
            signature: p.signature.clone(),
            count: p.count,
            factor: p.factor,
            level: p.level.clone(),
            rate_inside: p.rate_inside,
            rate_outside: p.rate_outside,
            rate_ratio: p.rate_ratio,
            p_value: p.p_value,
            p_adjusted: p.p_adjusted,
            failed_inside: p.failed_inside,
            total_inside: p.total_inside,
            method: p.method,
            adjusted_for: p.adjusted_for.clone(),
        }
    }
}

/// What a backend's report takes from its memory samples, read before its rows.
struct Memory {
    /// Peak and last tree RSS, the machine's latest available memory.
    extremes: (Option<u64>, Option<u64>, Option<u64>),
    /// Each process life's idle samples, thinned; the requests and tokens each point's process had
    /// served are filled in by the row pass, which is asked about them (`asked`, in the order of
    /// the lives' points).
    lifetimes: Vec<Lifetime>,
    asked: Vec<(u32, i64)>,
    /// Whether the points are footprints (else RSS).
    footprint: bool,
}

/// The leak analysis's input, from idle samples split into process lifetimes (a new pid or process
/// start time). The footprint when nine in ten samples have it (RSS misses growth that is swapped
/// out or compressed), else RSS. Each life is thinned to at most `POINTS_PER_LIFE` points by the
/// life's own rule (`store::life_points`), so the verdict does not depend on the window: a life
/// the window holds whole takes the points kept for it, when they were kept from the same
/// samples; the others' samples are read and thinned as they stream past, so months of samples
/// are never held at once. Each point asks what its process had served by its bucket's last
/// sample.
fn memory(conn: &Connection, name: &str, w: Window) -> rusqlite::Result<Memory> {
    use crate::analysis::leaks::POINTS_PER_LIFE;
    use crate::store::life_points::{self, Point, Thinner};
    let extremes = memory::memory_extremes(conn, name, w.from, w.to)?;
    let lives = memory::idle_lives(conn, name, w.from, w.to)?;
    let (samples, with_footprint) = lives.iter().fold((0, 0), |a, l| (a.0 + l.samples, a.1 + l.with_footprint));
    let footprint = samples > 0 && with_footprint * 10 >= samples * 9;
    let mut kept = life_points::read(conn, name, &lives, POINTS_PER_LIFE)?;
    let streamed: Vec<&memory::IdleLife> =
        lives.iter().filter(|l| !kept.contains_key(&(l.pid, l.proc_started_at))).collect();
    let mut thinner = Thinner::new(streamed.iter().copied(), POINTS_PER_LIFE);
    // The samples of the lives streamed: their spans, joined where they overlap.
    let mut spans: Vec<(i64, i64)> =
        streamed.iter().map(|l| (l.first_ms.max(w.from), (l.last_ms + 1).min(w.to))).collect();
    spans.sort_unstable();
    let mut joined: Vec<(i64, i64)> = Vec::new();
    for (a, b) in spans {
        match joined.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => joined.push((a, b)),
        }
    }
    for (from, to) in joined {
        memory::each_idle_sample(conn, name, from, to, |s| {
            if let Some(bytes) = if footprint { s.footprint_bytes } else { Some(s.rss_bytes) } {
                thinner.push(&s, bytes);
            }
        })?;
    }
    let mut thinned = thinner.finish().into_iter();
    let points: Vec<Vec<Point>> = lives
        .iter()
        .map(|l| match kept.remove(&(l.pid, l.proc_started_at)) {
            Some(k) => {
                if footprint {
                    k.footprint
                } else {
                    k.rss
                }
            }
            None => thinned.next().unwrap_or_default(),
        })
        .collect();
    let lifetimes = lives
        .iter()
        .zip(&points)
        .map(|(l, points)| Lifetime {
            pid: l.pid,
            points: points
                .iter()
                .map(|p| MemPoint { at_ms: p.at_ms, bytes: p.bytes, requests: None, tokens: None })
                .collect(),
        })
        .collect();
    let asked = lives.iter().zip(&points).flat_map(|(l, points)| points.iter().map(|p| (l.pid, p.last_ms))).collect();
    Ok(Memory { extremes, lifetimes, asked, footprint })
}

/// The same configured model on two backends: the first one's numbers relative to the other's.
fn overhead(
    models: &BTreeMap<String, String>,
    samples: &BTreeMap<String, (Distribution, Distribution)>,
) -> Vec<Overhead> {
    let mut by_model: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (backend, model) in models {
        if samples.contains_key(backend) {
            by_model.entry(model).or_default().push(backend);
        }
    }
    let mut out = Vec::new();
    for (model, backends) in by_model {
        for (i, a) in backends.iter().enumerate() {
            for b in &backends[i + 1..] {
                let (sa, sb) = (&samples[*a], &samples[*b]);
                out.push(Overhead {
                    model: model.to_string(),
                    a: a.to_string(),
                    b: b.to_string(),
                    ttft_ratio: median_ratio_of(&sa.0, &sb.0, 1),
                    decode_tps_ratio: median_ratio_of(&sa.1, &sb.1, 2),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_built_side_by_side_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = crate::store::open(&dir.path().join("log.db")).unwrap();
        let memory = Connection::open_in_memory().unwrap();
        let names: Vec<String> = (0..9).map(|i| format!("backend-{i}")).collect();
        let main = std::thread::current().id();
        for (conn, parallel) in [(&file, true), (&file, false), (&memory, true)] {
            let threads = std::sync::Mutex::new(std::collections::HashSet::new());
            let started = std::time::Instant::now();
            let side_by_side = parallel && conn.path().is_some_and(|p| !p.is_empty());
            let built = each_backend(
                conn,
                &names,
                parallel,
                |c, name| {
                    threads.lock().unwrap().insert(std::thread::current().id());
                    // Side by side, the first thread in waits (a while at most) for a second one.
                    while side_by_side && threads.lock().unwrap().len() < 2 && started.elapsed().as_secs() < 5 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    c.query_row("SELECT ?1 || '!'", [name], |r| r.get::<_, String>(0))
                },
                // The second part gets its own name's first part, wherever that ran.
                |c, name, first: String| {
                    assert_eq!(first, format!("{name}!"));
                    c.query_row("SELECT ?1 || '!'", [name], |r| r.get::<_, String>(0))
                },
            )
            .unwrap();
            let want: Vec<String> = names.iter().map(|n| format!("{n}!")).collect();
            assert_eq!(built, want);
            let threads = threads.into_inner().unwrap();
            if !side_by_side {
                assert_eq!(threads.into_iter().collect::<Vec<_>>(), [main], "one thread, this one");
            } else if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
                assert!(threads.len() > 1 || names.len() < 2, "side by side: {threads:?}");
            }
        }
    }

    #[test]
    fn a_part_that_panics_is_passed_on_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        drop(crate::store::open(&path).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let conn = crate::store::open(&path).unwrap();
            let names: Vec<String> = (0..3).map(|i| format!("backend-{i}")).collect();
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                each_backend(
                    &conn,
                    &names,
                    true,
                    |_, name| if name == "backend-1" { panic!("a bug") } else { Ok(()) },
                    |_, _, ()| Ok(()),
                )
            }));
            let _ = tx.send(built.is_err());
        });
        let panicked = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("each_backend returned");
        assert!(panicked, "the panic reached the caller");
    }

    #[test]
    fn kept_life_points_give_the_memory_the_samples_give_in_every_window() {
        use crate::store::life_points::tests::{T0, log};
        use crate::store::retention::HOUR_MS;
        let (_dir, conn) = log();
        crate::store::life_points::fill(&conn, T0 + 9 * HOUR_MS, crate::analysis::leaks::POINTS_PER_LIFE, &|| false)
            .unwrap();
        let kept: i64 = conn.query_row("SELECT count(*) FROM life_points", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 6, "three lives of two backends");
        let windows = [
            (T0, T0 + 8 * HOUR_MS),
            (T0 - 86_400_000, T0 + 9 * HOUR_MS),
            (T0 + HOUR_MS, T0 + 9 * HOUR_MS),
            (T0 + 3 * HOUR_MS / 2, T0 + 4 * HOUR_MS),
        ];
        for (from, to) in windows {
            let w = Window { from, to };
            for name in ["a", "b"] {
                let with = memory(&conn, name, w).unwrap();
                conn.execute_batch("SAVEPOINT s; DELETE FROM life_points;").unwrap();
                let without = memory(&conn, name, w).unwrap();
                conn.execute_batch("ROLLBACK TO s; RELEASE s;").unwrap();
                assert_eq!(with.lifetimes, without.lifetimes, "{name} {from}..{to}");
                assert_eq!(with.asked, without.asked);
                assert_eq!((with.footprint, with.extremes), (without.footprint, without.extremes));
                assert!(!with.lifetimes.is_empty());
            }
        }
    }
}
