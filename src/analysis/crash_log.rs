//! What the crash analysis keeps of one backend's requests as they stream past in time order:
//! eight bytes a request (its server_seq and its attribution cell), each failure whole, and the
//! counts the rest of the analysis needs (server lifetimes, failure runs, the hypotheses' sides).
//! A report over months holds this, not a row per request; `crashes` reads nothing else.

use super::attempt::Attempt;
use super::attribution::Cells;
use super::episodes::{self, Runs};

/// A request as the analysis keeps it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request {
    /// Its server_seq; 0 when not known, u32::MAX for any beyond (4 billion requests to one process).
    pub seq: u32,
    /// Its cell in `CrashLog::cells`, or `NOT_ANALYSED` for a failure that says the server was not
    /// there (a consequence: never at risk, left out of the attribution).
    pub cell: u32,
}

pub(super) const NOT_ANALYSED: u32 = u32::MAX;

/// Which side of a hypothesis a request counts on: the suspected condition or the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Inside,
    Outside,
}

impl Side {
    /// Inside when `inside`.
    pub(super) fn of(inside: bool) -> Side {
        if inside { Side::Inside } else { Side::Outside }
    }
}

/// ((triggers, requests) inside, the same outside); triggers are added once roles are known.
pub(super) type Sides = ((u64, u64), (u64, u64));

/// A failed request, whole, with where it stood.
#[derive(Debug)]
pub(super) struct Failure {
    /// Its index among the backend's requests.
    pub row: usize,
    /// Its server lifetime, an index into `CrashLog::lives`.
    pub life: usize,
    pub attempt: Attempt,
    /// Its side of "rapid sequential requests fail" (< 1 s since the previous request or later).
    pub rapid: Option<Side>,
    /// Its side of "a lifetime's state is corrupted after its first success" (after that success,
    /// or the lifetime's first request).
    pub corruption: Option<Side>,
}

/// A server lifetime: it begins at a pid other than the last seen, or where server_seq falls back
/// to 1 or by more than 64 (concurrent requests may finish a little out of order).
#[derive(Debug)]
pub(super) struct Life {
    /// Its first request's start.
    pub start_ms: i64,
    /// Its last successful request, an index among the backend's requests.
    pub last_ok: Option<usize>,
    /// Whether the log saw it begin: not the first lifetime, or one whose first request has a
    /// server_seq of 10 or less.
    seen_begin: bool,
}

/// One backend's requests as the crash analysis keeps them.
#[derive(Debug, Default)]
pub struct CrashLog {
    pub(super) requests: Vec<Request>,
    pub(super) cells: Cells,
    pub(super) failures: Vec<Failure>,
    pub(super) lives: Vec<Life>,
    pub(super) runs: Runs,
    /// The first and the last request's start.
    pub(super) span: Option<(i64, i64)>,
    /// Requests on each side of the two hypotheses (`Failure::rapid`, `Failure::corruption`).
    pub(super) rapid: Sides,
    pub(super) corruption: Sides,
    now: Now,
}

/// The lifetime being read.
#[derive(Debug, Default)]
struct Now {
    pid: Option<u32>,
    last_seq: Option<u64>,
    /// Whether an analysed request of it has come (the first is the first a loaded model answered).
    answered: bool,
    /// Whether one of its analysed requests succeeded.
    succeeded: bool,
}

impl CrashLog {
    /// Adds the backend's next request (requests come in start order; the caller has left out
    /// soakd's own cancellations, interruptions and requests still in flight).
    pub fn push(&mut self, r: Attempt) {
        let row = self.requests.len();
        let now = &mut self.now;
        let new_pid = matches!((now.pid, r.server_pid), (Some(a), Some(b)) if a != b);
        let reload = matches!((now.last_seq, r.seq()), (Some(a), Some(b)) if b == 1 || b.saturating_add(64) < a);
        if self.lives.is_empty() || new_pid || reload {
            let seen_begin = !self.lives.is_empty() || r.seq().is_some_and(|s| s <= 10);
            self.lives.push(Life { start_ms: r.at_ms, last_ok: None, seen_begin });
            *now = Now { pid: now.pid, ..Now::default() };
        }
        (now.pid, now.last_seq) = (r.server_pid.or(now.pid), r.seq().or(now.last_seq));
        let life = self.lives.len() - 1;
        self.runs.push(r.at_ms, r.failed);
        self.span = Some((self.span.map_or(r.at_ms, |s| s.0), r.at_ms));
        if !r.failed {
            self.lives[life].last_ok = Some(row);
        }

        let analysed = !(r.failed && episodes::unavailable(&r));
        let (mut cell, mut rapid, mut corruption) = (NOT_ANALYSED, None, None);
        if analysed {
            let first = !now.answered;
            now.answered = true;
            cell = self.cells.add(&r, first && self.lives[life].seen_begin);
            rapid = match r.gap_ms {
                Some(g) if (0.0..1000.0).contains(&g) => Some(Side::Inside),
                Some(g) if g >= 1000.0 => Some(Side::Outside),
                _ => None,
            };
            // The fresh state is a lifetime's first request, where the log saw the lifetime begin.
            corruption = if first {
                (life > 0 || r.server_seq.is_none_or(|s| s <= 1)).then_some(Side::Outside)
            } else {
                now.succeeded.then_some(Side::Inside)
            };
            now.succeeded |= !r.failed;
            tally(&mut self.rapid, rapid, false);
            tally(&mut self.corruption, corruption, false);
        }
        let seq = r.seq().map_or(0, |s| u32::try_from(s).unwrap_or(u32::MAX));
        self.requests.push(Request { seq, cell });
        if r.failed {
            self.failures.push(Failure { row, life, attempt: r, rapid, corruption });
        }
    }
}

/// Counts a request on its side: among the triggers, or among the requests.
pub(super) fn tally(sides: &mut Sides, side: Option<Side>, trigger: bool) {
    let at = match side {
        Some(Side::Inside) => &mut sides.0,
        Some(Side::Outside) => &mut sides.1,
        None => return,
    };
    if trigger { at.0 += 1 } else { at.1 += 1 }
}

/// The requests split by `side` (`None`: left out), with the triggers among them (`triggers`:
/// indices into `requests`).
pub(super) fn split(requests: &[Request], triggers: &[usize], side: impl Fn(&Request) -> Option<Side>) -> Sides {
    let mut sides = ((0, 0), (0, 0));
    requests.iter().for_each(|r| tally(&mut sides, side(r), false));
    triggers.iter().for_each(|&t| tally(&mut sides, side(&requests[t]), true));
    sides
}

impl FromIterator<Attempt> for CrashLog {
    fn from_iter<I: IntoIterator<Item = Attempt>>(rows: I) -> CrashLog {
        let mut log = CrashLog::default();
        rows.into_iter().for_each(|r| log.push(r));
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at_ms: i64, pid: u32, seq: u64, failed: bool) -> Attempt {
        Attempt {
            at_ms,
            server_pid: Some(pid),
            server_seq: Some(seq),
            failed,
            gap_ms: Some(500.0),
            ..Default::default()
        }
    }

    #[test]
    fn a_request_is_kept_in_eight_bytes() {
        assert_eq!(std::mem::size_of::<Request>(), 8);
    }

    #[test]
    fn lifetimes_begin_at_a_new_pid_or_a_count_that_falls_back() {
        let rows = [
            row(0, 1, 50, false),
            row(1, 1, 51, false),
            row(2, 2, 52, false), // another process
            row(3, 2, 1, false),  // reloaded
            row(4, 2, 2, true),
            row(5, 2, 3, false),
            row(6, 2, 1_000, false),
            row(7, 2, 960, false), // out of order by less than 64: the same life
            row(8, 2, 800, false), // fell back by more
        ];
        let log: CrashLog = rows.into_iter().collect();
        let starts: Vec<i64> = log.lives.iter().map(|l| l.start_ms).collect();
        assert_eq!(starts, [0, 2, 3, 8]);
        assert_eq!(log.lives.iter().map(|l| l.seen_begin).collect::<Vec<_>>(), [false, true, true, true]);
        assert_eq!(log.lives[2].last_ok, Some(7));
        assert_eq!((log.failures.len(), log.failures[0].row, log.failures[0].life), (1, 4, 2));
        assert_eq!(log.requests.iter().map(|r| r.seq).collect::<Vec<_>>(), [50, 51, 52, 1, 2, 3, 1_000, 960, 800]);
        assert_eq!(log.span, Some((0, 8)));
        // A failure after the life's first success counts on the corruption's inside; each later
        // life's first request on the fresh side (the first life began before the log).
        assert_eq!(log.failures[0].corruption, Some(Side::Inside));
        assert_eq!(log.corruption.1.1, 3);
    }
}
