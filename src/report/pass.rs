//! One pass over a backend's finished requests in a window: everything the report needs from the
//! rows, gathered as they stream past. No row is kept whole: only the values each analysis reads
//! (successful requests' latencies, in bounded memory; what the crash analysis keeps of each
//! request; what each server process had served by the times the leak analysis asks about), and
//! the drift's hours are closed as the pass leaves them.

use crate::analysis::attempt::{Attempt, FailureDetail};
use crate::analysis::crash_log::CrashLog;
use crate::analysis::drift::{HourStats, Observation, hourly};
use crate::measure::distribution::Distribution;
use crate::measure::outcome::{stored_counts_as_failure, stored_is_counted};
use crate::store::queries::{self, RequestRow};
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
/// ran while soakd measured another backend count in the latency figures too.
pub fn gather(
    conn: &Connection,
    name: &str,
    from: i64,
    to: i64,
    include_contended: bool,
    served: Served,
) -> rusqlite::Result<Gathered> {
    let mut g = Gathered { served, ..Gathered::default() };
    let mut local_hour = LocalHour::default();
    // The hour being filled for the drift analysis, closed when a row of a later hour arrives.
    let mut hour: (i64, Vec<Observation>) = (i64::MIN, Vec::new());
    queries::each_request(conn, name, from, to, |r: RequestRow| {
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
        let contended = !include_contended && r.machine_in_flight.is_some_and(|n| n > 0);
        g.contended_left_out += u64::from(contended);
        if !contended {
            let mode = &mut g.modes[usize::from(r.stream)];
            mode.requests += 1;
            if ok {
                mode.ok += 1;
                mode.ttft_ms.extend(r.ttft_ms);
                mode.e2e_ms.extend(r.e2e_ms);
                mode.tps.extend(if r.stream { r.decode_tps } else { r.output_tps });
                g.ttft_ms.extend(r.ttft_ms);
                g.first_content_ms.extend(r.first_content_ms);
                g.e2e_ms.extend(r.e2e_ms);
                g.decode_tps.extend(r.decode_tps);
                let start = r.at_ms.div_euclid(HOUR_MS);
                if start != hour.0 {
                    g.hours.extend(hourly(&hour.1));
                    hour = (start, Vec::new());
                }
                hour.1.push(Observation { at_ms: r.at_ms, ttft_ms: r.ttft_ms, decode_tps: r.decode_tps });
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
    let [plain, streamed] = &mut g.modes;
    [&mut g.ttft_ms, &mut g.first_content_ms, &mut g.e2e_ms, &mut g.decode_tps]
        .into_iter()
        .chain([plain, streamed].into_iter().flat_map(|m| [&mut m.ttft_ms, &mut m.e2e_ms, &mut m.tps]))
        .for_each(Distribution::finish);
    Ok(g)
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
}
