//! One pass over a backend's finished requests in a window: everything the report needs from the
//! rows, gathered as they stream past. No row is kept whole: only the values each analysis reads
//! (successful requests' latencies, in bounded memory; what the crash analysis keeps of each
//! request; what each server process had served by the times the leak analysis asks about), and
//! the drift's hours are closed as the pass leaves them.

use crate::analysis::attempt::{Attempt, FailureDetail};
use crate::analysis::crash_log::CrashLog;
use crate::analysis::drift::{HourStats, Observation, hourly};
use crate::measure::distribution::{Distribution, EXACT_UP_TO, new_sketch};
use crate::measure::outcome::{stored_counts_as_failure, stored_is_counted};
use crate::store::latency_hours::{self, HourSketch, Kept, Measure};
use crate::store::request_rows::{self, RequestRow};
use crate::store::retention::HOUR_MS;
use chrono::{Local, TimeZone, Timelike};
use rusqlite::Connection;
use std::collections::BTreeMap;

/// The values of one streaming mode's successful, uncontended requests.
#[derive(Debug, Default)]
pub struct ModeValues {
    /// Counted, uncontended requests in this mode, and the `ok` ones.
    pub requests: u64,
    pub ok: u64,
    pub ttft_ms: Distribution,
    pub e2e_ms: Distribution,
    /// Decode rate when streamed, output rate when not.
    pub tps: Distribution,
}

/// What the report takes from a backend's rows.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Finished rows, counted or not.
    pub rows: u64,
    /// Counted requests (not soakd's own cancellations or interruptions), and the `ok` ones.
    pub requests: u64,
    pub ok: u64,
    /// Counted requests left out of the latency figures because others were in flight.
    pub contended_left_out: u64,
    pub failures: BTreeMap<String, u64>,
    /// Of successful, uncontended requests: exact while few, a sketch when many (`Distribution`).
    pub ttft_ms: Distribution,
    pub first_content_ms: Distribution,
    pub e2e_ms: Distribution,
    pub decode_tps: Distribution,
    /// `[non-streamed, streamed]`.
    pub modes: [ModeValues; 2],
    /// Successful, uncontended requests per UTC hour.
    pub hours: Vec<HourStats>,
    /// Every counted request, as the crash analysis keeps them.
    pub crashes: CrashLog,
    /// What each process had served at the times `gather` was asked about.
    pub served: Served,
    /// The longest model load the server reported.
    pub load_ms: Option<f64>,
}

/// Reads `name`'s finished requests in `[from, to)` once. With `include_contended`, requests that
/// ran while soakd measured another backend count in the latency figures too. Over a long window
/// the latencies of whole hours come from their kept sketches (`Sketched`), checked against the
/// hour's rows; the rows' own latencies are read for the other hours.
pub fn gather(
    conn: &Connection,
    name: &str,
    from: i64,
    to: i64,
    include_contended: bool,
    served: Served,
) -> rusqlite::Result<Gathered> {
    let mut g = Gathered { served, ..Gathered::default() };
    let mut sketched = Sketched::read(conn, name, from, to, include_contended)?;
    let mut local_hour = LocalHour::default();
    // The hour being filled for the drift analysis, closed when a row of a later hour arrives.
    let mut hour: (i64, Vec<Observation>) = (i64::MIN, Vec::new());
    let without_latencies = sketched.hours.hours.clone();
    request_rows::each_request(conn, name, from, to, &without_latencies, |r: RequestRow| {
        g.rows += 1;
        g.served.push(&r);
        g.load_ms = match (g.load_ms, r.server_load_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if !stored_is_counted(&r.outcome) {
            return;
        }
        g.requests += 1;
        let (ok, failed) = (&*r.outcome == "ok", stored_counts_as_failure(&r.outcome));
        g.ok += u64::from(ok);
        if failed {
            *g.failures.entry(r.outcome.to_string()).or_default() += 1;
        }
        let contended = !include_contended && r.ran_beside_others();
        g.contended_left_out += u64::from(contended);
        if !contended {
            let mode = &mut g.modes[usize::from(r.stream)];
            mode.requests += 1;
            if ok {
                mode.ok += 1;
                if !sketched.counts(&r) {
                    g.latencies(&r);
                    let start = r.at_ms.div_euclid(HOUR_MS);
                    if start != hour.0 {
                        g.hours.extend(hourly(&hour.1));
                        hour = (start, Vec::new());
                    }
                    hour.1.push(observation(&r));
                }
            }
        }
        let failure = failed.then(|| {
            Box::new(FailureDetail {
                http_status: r.http_status,
                e2e_ms: r.e2e_ms,
                signature: r.signature,
                error: r.error,
            })
        });
        g.crashes.push(Attempt {
            at_ms: r.at_ms,
            failed,
            failure,
            concurrency: r.concurrency,
            prompt_chars: r.prompt_chars,
            gap_ms: r.gap_ms,
            server_pid: r.server_pid,
            server_seq: r.server_seq,
            hour_local: local_hour.of(r.at_ms),
            job: r.job,
            outcome: r.outcome,
        });
    })?;
    g.hours.extend(hourly(&hour.1));
    sketched.close(conn, name, include_contended, &mut g)?;
    let [plain, streamed] = &mut g.modes;
    [&mut g.ttft_ms, &mut g.first_content_ms, &mut g.e2e_ms, &mut g.decode_tps]
        .into_iter()
        .chain([plain, streamed].into_iter().flat_map(|m| [&mut m.ttft_ms, &mut m.e2e_ms, &mut m.tps]))
        .for_each(Distribution::finish);
    Ok(g)
}

impl Gathered {
    /// Adds a successful request's latencies (one the latency figures count).
    fn latencies(&mut self, r: &RequestRow) {
        let mode = &mut self.modes[usize::from(r.stream)];
        mode.ttft_ms.extend(r.ttft_ms);
        mode.e2e_ms.extend(r.e2e_ms);
        mode.tps.extend(if r.stream { r.decode_tps } else { r.output_tps });
        self.ttft_ms.extend(r.ttft_ms);
        self.first_content_ms.extend(r.first_content_ms);
        self.e2e_ms.extend(r.e2e_ms);
        self.decode_tps.extend(r.decode_tps);
    }

    /// Adds an hour's kept sketches of the requests the latency figures count.
    fn merge(&mut self, kept: &[&HourSketch]) {
        for h in kept {
            let mode = &mut self.modes[usize::from(h.stream)];
            let tps = if h.stream { Measure::DecodeTps } else { Measure::OutputTps };
            for (d, m) in [(&mut mode.ttft_ms, Measure::Ttft), (&mut mode.e2e_ms, Measure::E2e), (&mut mode.tps, tps)]
                .into_iter()
                .chain([
                    (&mut self.ttft_ms, Measure::Ttft),
                    (&mut self.first_content_ms, Measure::FirstContent),
                    (&mut self.e2e_ms, Measure::E2e),
                    (&mut self.decode_tps, Measure::DecodeTps),
                ])
            {
                // Kept with the bins every Distribution uses (`latency_hours::read` checks).
                let merged = d.merge_sketch(h.sketch(m));
                debug_assert!(merged.is_ok());
            }
        }
    }
}

/// The whole hours of a window whose latencies come from their kept sketches
/// (`store::latency_hours`), and, per hour, the successful requests its rows hold: an hour is
/// taken from its sketches only when the two agree for every mode counted (else its rows are read
/// again for their latencies, after the pass). Used only when the kept hours hold more requests
/// than a `Distribution` keeps exactly, so a short window's percentiles stay exact; over a long
/// one, the merged sketch is the one the rows would have built (the drift's hourly figures, from
/// an hour's sketch, are within its 1 % of a request's value at that rank).
#[derive(Default)]
struct Sketched {
    /// The hours kept, in time order, and per hour the successful requests kept and seen per
    /// `key` (the modes counted only).
    hours: HourSet,
    kept: Vec<[u64; 4]>,
    seen: Vec<[u64; 4]>,
    /// `[first, last)`: the window's whole hours.
    span: (i64, i64),
}

impl Sketched {
    fn read(conn: &Connection, name: &str, from: i64, to: i64, include_contended: bool) -> rusqlite::Result<Sketched> {
        let (first, last) = crate::store::memory::whole_hours(from, to);
        if first >= last {
            return Ok(Sketched::default());
        }
        let mut counts = latency_hours::counts(conn, name, first, last)?;
        counts.retain(|&(_, _, contended, _)| include_contended || !contended);
        if counts.iter().map(|c| c.3).sum::<u64>() <= EXACT_UP_TO as u64 {
            return Ok(Sketched::default());
        }
        let mut s = Sketched { span: (first, last), ..Sketched::default() };
        for (hour_at, stream, contended, ok) in counts {
            if s.hours.hours.last() != Some(&hour_at) {
                s.hours.hours.push(hour_at);
                s.kept.push([0; 4]);
            }
            s.kept.last_mut().expect("pushed")[Self::key(stream, contended)] += ok;
        }
        s.seen = vec![[0; 4]; s.kept.len()];
        Ok(s)
    }

    fn key(stream: bool, contended: bool) -> usize {
        usize::from(stream) * 2 + usize::from(contended)
    }

    /// Counts a successful request the latency figures count; true when its hour is sketched.
    fn counts(&mut self, r: &RequestRow) -> bool {
        match self.hours.find(r.at_ms) {
            Some(i) => {
                self.seen[i][Self::key(r.stream, r.ran_beside_others())] += 1;
                true
            }
            None => false,
        }
    }

    /// After the pass: merges each sketched hour whose counts agree with its rows, and reads the
    /// latencies of the others from their rows.
    fn close(self, conn: &Connection, name: &str, include_contended: bool, g: &mut Gathered) -> rusqlite::Result<()> {
        if self.hours.hours.is_empty() {
            return Ok(());
        }
        let agree: BTreeMap<i64, bool> =
            self.hours.hours.iter().zip(self.kept.iter().zip(&self.seen)).map(|(&h, (k, s))| (h, k == s)).collect();
        let mut reread: Vec<i64> = agree.iter().filter(|(_, ok)| !**ok).map(|(h, _)| *h).collect();
        // The kept rows of one hour, merged once the next hour's first row arrives.
        let mut hour: (i64, Vec<HourSketch>, bool) = (i64::MIN, Vec::new(), true);
        let mut flush = |g: &mut Gathered, (hour_at, kept, readable): &mut (i64, Vec<HourSketch>, bool)| {
            if agree.get(hour_at) == Some(&true) {
                if *readable {
                    let kept: Vec<&HourSketch> = kept.iter().filter(|h| include_contended || !h.contended).collect();
                    g.merge(&kept);
                    g.hours.push(hour_stats(*hour_at, &kept));
                } else {
                    reread.push(*hour_at);
                }
            }
            kept.clear();
            *readable = true;
        };
        latency_hours::read(conn, name, self.span.0, self.span.1, |k| {
            let at = match &k {
                Kept::Hour(h) => h.hour_at,
                Kept::Unreadable { hour_at } => *hour_at,
            };
            if at != hour.0 {
                flush(g, &mut hour);
                hour.0 = at;
            }
            match k {
                Kept::Hour(h) => hour.1.push(*h),
                Kept::Unreadable { .. } => hour.2 = false,
            }
        })?;
        flush(g, &mut hour);
        for hour_at in reread {
            let mut observed = Vec::new();
            request_rows::each_request(conn, name, hour_at, hour_at + HOUR_MS, &[], |r| {
                if &*r.outcome == "ok" && (include_contended || !r.ran_beside_others()) {
                    g.latencies(&r);
                    observed.push(observation(&r));
                }
            })?;
            g.hours.extend(hourly(&observed));
        }
        g.hours.sort_by_key(|h| h.hour_start_ms);
        Ok(())
    }
}

/// Hours in time order, looked up by rows that come in time order.
#[derive(Default)]
struct HourSet {
    hours: Vec<i64>,
    /// The last hour found.
    at: usize,
}

impl HourSet {
    /// The index of the hour holding `at_ms`, when it is one of these.
    fn find(&mut self, at_ms: i64) -> Option<usize> {
        let hour_at = at_ms.div_euclid(HOUR_MS) * HOUR_MS;
        if self.hours.get(self.at) != Some(&hour_at) {
            self.at = self.hours.binary_search(&hour_at).ok()?;
        }
        Some(self.at)
    }
}

/// What the drift analysis reads of a successful request.
fn observation(r: &RequestRow) -> Observation {
    Observation { at_ms: r.at_ms, ttft_ms: r.ttft_ms, decode_tps: r.decode_tps }
}

/// The drift's figures for an hour, from its sketches.
fn hour_stats(hour_at: i64, kept: &[&HourSketch]) -> HourStats {
    let merged = |m: Measure| {
        let mut sketch = new_sketch();
        for h in kept {
            let _ = sketch.merge(h.sketch(m));
        }
        sketch
    };
    let q = |s: &sketches_ddsketch::DDSketch, p: f64| s.quantile(p).ok().flatten();
    let (ttft, tps) = (merged(Measure::Ttft), merged(Measure::DecodeTps));
    HourStats {
        hour_start_ms: hour_at,
        requests: kept.iter().map(|h| h.ok).sum(),
        ttft_p50: q(&ttft, 0.5),
        ttft_p95: q(&ttft, 0.95),
        tps_p50: q(&tps, 0.5),
    }
}

/// What each server process had served by given times (the leak analysis's memory points), found
/// as the rows stream past: its requests (the latest `server_seq` sent to it, or a count of its
/// rows where the log has no `server_seq`) and the completion tokens of its finished requests.
#[derive(Debug, Default)]
pub struct Served {
    /// (time, pid, index of the question), in time order.
    asked: Vec<(i64, u32, usize)>,
    next: usize,
    answers: Vec<(u64, u64)>,
    /// Per process: (requests, tokens) so far.
    by_pid: rustc_hash::FxHashMap<u32, (u64, u64)>,
}

impl Served {
    /// Asks, for each (pid, time), what that process had served by then.
    pub fn asking(questions: impl IntoIterator<Item = (u32, i64)>) -> Served {
        let mut asked: Vec<(i64, u32, usize)> =
            questions.into_iter().enumerate().map(|(i, (pid, at_ms))| (at_ms, pid, i)).collect();
        asked.sort_unstable();
        let answers = vec![(0, 0); asked.len()];
        Served { asked, answers, ..Served::default() }
    }

    /// Adds a row; rows come in time order. Questions about times before it are answered first.
    fn push(&mut self, r: &RequestRow) {
        self.answer_before(Some(r.at_ms));
        let Some(pid) = r.server_pid else { return };
        let (count, tokens) = self.by_pid.entry(pid).or_default();
        *count = r.server_seq.unwrap_or(*count + 1).max(*count);
        *tokens += u64::from(r.completion_tokens.unwrap_or(0));
    }

    /// Answers the questions about times before `at_ms` (all of them with `None`).
    fn answer_before(&mut self, at_ms: Option<i64>) {
        while let Some(&(at, pid, i)) = self.asked.get(self.next)
            && at_ms.is_none_or(|t| at < t)
        {
            self.answers[i] = self.by_pid.get(&pid).copied().unwrap_or((0, 0));
            self.next += 1;
        }
    }

    /// The answers, in the order asked: (requests, completion tokens) process `pid` had served by
    /// that time; `None` for a process that served nothing in the whole window.
    pub fn answers(mut self) -> Vec<(Option<u64>, Option<u64>)> {
        self.answer_before(None);
        let mut out = vec![(None, None); self.answers.len()];
        for &(_, pid, i) in &self.asked {
            if self.by_pid.contains_key(&pid) {
                out[i] = (Some(self.answers[i].0), Some(self.answers[i].1));
            }
        }
        out
    }
}

/// Local hour of day for unix ms, remembering the last hour looked up (rows come in time order).
#[derive(Default)]
struct LocalHour {
    last: Option<(i64, u8)>,
}

impl LocalHour {
    fn of(&mut self, at_ms: i64) -> u8 {
        let hour = at_ms.div_euclid(HOUR_MS);
        if let Some((h, local)) = self.last
            && h == hour
        {
            return local;
        }
        let local = Local.timestamp_millis_opt(at_ms).single().map(|t| t.hour() as u8).unwrap_or(0);
        self.last = Some((hour, local));
        local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at_ms: i64, pid: Option<u32>, seq: Option<u64>, tokens: u32) -> RequestRow {
        RequestRow { at_ms, server_pid: pid, server_seq: seq, completion_tokens: Some(tokens), ..Default::default() }
    }

    #[test]
    fn what_a_process_had_served_is_answered_as_the_rows_pass() {
        let mut served = Served::asking([(7, 2_500), (7, 500), (9, 3_000), (7, 1_000), (8, 2_000), (7, 99_000)]);
        for r in [
            row(1_000, Some(7), Some(41), 10),
            row(1_000, Some(8), None, 5),      // no server_seq: its rows are counted
            row(2_000, Some(7), Some(40), 10), // finished out of order: the count does not fall back
            row(2_000, Some(8), None, 5),
            row(3_000, None, None, 100),
        ] {
            served.push(&r);
        }
        assert_eq!(
            served.answers(),
            [
                (Some(41), Some(20)), // pid 7 by 2.5 s
                (Some(0), Some(0)),   // before its first request
                (None, None),         // pid 9 served nothing in the window
                (Some(41), Some(10)), // a row at the very time counts
                (Some(2), Some(10)),
                (Some(41), Some(20)), // after the last row
            ]
        );
    }

    /// Percentiles (and whether each came from a sketch), the drift's hours and their figures.
    type Figures = (Vec<(Option<f64>, bool)>, Vec<(i64, u64)>, Vec<[Option<f64>; 3]>);

    /// Every percentile the report gives (and whether it came from a sketch), and the drift's hours.
    fn figures(g: &Gathered) -> Figures {
        let ds = [&g.ttft_ms, &g.first_content_ms, &g.e2e_ms, &g.decode_tps]
            .into_iter()
            .chain(g.modes.iter().flat_map(|m| [&m.ttft_ms, &m.e2e_ms, &m.tps]));
        let pcts = ds.flat_map(|d| [50.0, 95.0, 99.0].map(|p| (d.percentile(p), d.relative_error() > 0.0))).collect();
        let hours = g.hours.iter().map(|h| (h.hour_start_ms, h.requests)).collect();
        let stats = g.hours.iter().map(|h| [h.ttft_p50, h.ttft_p95, h.tps_p50]).collect();
        (pcts, hours, stats)
    }

    /// Percentiles from kept hours: the same as the rows' where those came from a sketch too,
    /// else within the sketch's 1 % of a value at that rank (the rows' interpolate between two
    /// values: a little more). How many differ.
    fn within_the_sketch_error(kept: &[(Option<f64>, bool)], rows: &[(Option<f64>, bool)]) -> usize {
        assert_eq!(kept.len(), rows.len());
        let mut differ = 0;
        for (&(a, _), &(b, sketched)) in kept.iter().zip(rows) {
            let (a, b) = (a.expect("a percentile"), b.expect("a percentile"));
            if sketched {
                assert_eq!(a, b);
            }
            assert!((a - b).abs() <= b * 0.015, "{a} vs {b}");
            differ += usize::from(a != b);
        }
        differ
    }

    fn from_rows(conn: &Connection, to: i64, include_contended: bool) -> Gathered {
        conn.execute_batch("SAVEPOINT rows; DELETE FROM latency_hours;").unwrap();
        let g = gather(conn, "a", 0, to, include_contended, Served::default()).unwrap();
        conn.execute_batch("ROLLBACK TO rows; RELEASE rows;").unwrap();
        g
    }

    #[test]
    fn latencies_from_kept_hours_are_those_from_the_rows_within_the_sketch_error() {
        use crate::store::latency_hours::tests::{T0, log, requests};
        let (_dir, mut conn) = log();
        // 110,000 requests 0.7 s apart (21.4 h): ~75,000 successful, uncontended ones.
        requests(&conn, "a", T0, 110_000, 700);
        let to = T0 + 22 * HOUR_MS;
        latency_hours::fill(&mut conn, to + HOUR_MS, &|| false).unwrap();
        for include_contended in [false, true] {
            let rows = from_rows(&conn, to, include_contended);
            let kept = gather(&conn, "a", 0, to, include_contended, Served::default()).unwrap();
            assert_eq!((kept.requests, kept.ok, kept.modes[1].ok), (rows.requests, rows.ok, rows.modes[1].ok));
            assert_eq!(kept.ttft_ms.relative_error(), 0.01);
            let ((p_rows, h_rows, s_rows), (p_kept, h_kept, s_kept)) = (figures(&rows), figures(&kept));
            // Over the window: the same sketch either way where the rows' values were many.
            assert!(p_rows[..3].iter().all(|p| p.1), "TTFT over the window from a sketch either way");
            within_the_sketch_error(&p_kept, &p_rows);
            // The drift's hours: their rows' percentiles are exact, the sketch's within its error.
            assert_eq!(h_kept, h_rows);
            assert_eq!(h_kept.len(), 22);
            let hourly = |s: &[[Option<f64>; 3]]| s.iter().flatten().map(|p| (*p, false)).collect::<Vec<_>>();
            let differ = within_the_sketch_error(&hourly(&s_kept), &hourly(&s_rows));
            assert!(differ > 0, "the hours came from their sketches");
        }
        // A row that arrived after its hour was kept (or a sketch that does not decode): that
        // hour's latencies come from its rows, the others' from their sketches.
        conn.execute(
            "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
                 concurrency, prompt_name, prompt_chars, max_tokens, ttft_ms, e2e_ms, decode_tps)
             VALUES (1, 'a', 'soak', 0, 0, ?1, ?1, 'ok', 1, 1, 'p', 100, 16, 5000, 90000, 1)",
            [T0 + 5 * HOUR_MS + 1],
        )
        .unwrap();
        conn.execute("UPDATE latency_hours SET ttft = x'00' WHERE hour_at = ?1", [T0 + 9 * HOUR_MS]).unwrap();
        let rows = from_rows(&conn, to, false);
        let kept = gather(&conn, "a", 0, to, false, Served::default()).unwrap();
        let ((p_rows, h_rows, s_rows), (p_kept, h_kept, s_kept)) = (figures(&rows), figures(&kept));
        within_the_sketch_error(&p_kept, &p_rows);
        assert_eq!(h_kept, h_rows);
        assert_eq!(kept.e2e_ms.len(), rows.e2e_ms.len());
        for hour in [5, 9] {
            assert_eq!(s_kept[hour], s_rows[hour], "hour {hour} read from its rows");
        }
        assert_ne!(s_kept[6], s_rows[6], "hour 6 from its sketch");
    }

    #[test]
    fn a_short_window_reads_its_rows_and_stays_exact() {
        use crate::store::latency_hours::tests::{T0, log, requests};
        let (_dir, mut conn) = log();
        requests(&conn, "a", T0, 20_000, 2_000);
        let to = T0 + 12 * HOUR_MS;
        latency_hours::fill(&mut conn, to + HOUR_MS, &|| false).unwrap();
        let kept = gather(&conn, "a", 0, to, false, Served::default()).unwrap();
        assert_eq!(kept.ttft_ms.relative_error(), 0.0);
        assert_eq!(figures(&kept), figures(&from_rows(&conn, to, false)));
    }
}
