//! Which factor triggers a backend's failures, each tested adjusted for the others: the requests
//! grouped by their factor levels (`Cells`), a Firth-penalised logistic model of "this request
//! triggered a failure" (`logistic`), and one penalised likelihood-ratio test per factor.
//!
//! The mechanisms — concurrency, prompt size, the gap since the previous request, requests since
//! the server started, the first request after a (re)load — are each tested adjusted for all the
//! others, so a factor that only travels with the real one (long prompts that mostly come at
//! concurrency 4) does not survive. Job and time of day are proxies (a job fixes its concurrency,
//! prompts and pace; the schedule fixes the hour): each is tested for what it explains beyond the
//! mechanisms. Levels with fewer than 5 requests join their neighbour.

use std::collections::HashMap;
use std::sync::Arc;

use super::attempt::Attempt;
use super::logistic::{self, Data, Fit};

/// Factors in the model, mechanisms first, then proxies.
pub const FACTORS: [&str; 7] =
    ["concurrency", "prompt_size", "gap", "server_seq", "first_after_load", "job", "time_of_day"];
/// How many of `FACTORS` are mechanisms.
pub const MECHANISMS: usize = 5;
const HOURS: [&str; 6] = ["00-04", "04-08", "08-12", "12-16", "16-20", "20-24"];
/// Requests a level needs; smaller ones join a neighbour.
const MIN_LEVEL: u64 = 5;

/// One factor's levels over the analysed requests, grouped in `Cells`.
#[derive(Debug, Clone)]
pub struct Factor {
    pub name: &'static str,
    pub levels: Vec<String>,
    /// Each cell's level, an index into `levels`.
    pub of: Vec<u16>,
    /// Requests per level.
    pub counts: Vec<u64>,
}

/// A request's key for every factor, before levels are named and merged: concurrency, prompt
/// bucket, gap bucket, server_seq bucket, first after a load, job (an index into `Cells::jobs`),
/// time-of-day bucket.
type Key = [u32; FACTORS.len()];

/// The analysed requests grouped by their keys: one cell per combination that occurs, in the
/// order they first occur, with its requests. This is all the attribution reads of the requests,
/// so a report over months holds a few thousand cells, not a row per request.
#[derive(Debug, Default)]
pub struct Cells {
    keys: Vec<Key>,
    /// Requests per cell.
    pub n: Vec<u64>,
    at: rustc_hash::FxHashMap<Key, u32>,
    jobs: Vec<Arc<str>>,
    job_at: HashMap<Arc<str>, u32>,
    last_job: Option<(Arc<str>, u32)>,
}

impl Cells {
    /// Adds one analysed request; `first_after_load` says whether it was the first a (re)loaded
    /// model answered. Returns its cell.
    pub fn add(&mut self, r: &Attempt, first_after_load: bool) -> u32 {
        let bucket = |x: f64, edges: &[f64]| edges.iter().take_while(|e| x >= **e).count() as u32;
        let key: Key = [
            r.concurrency,
            bucket(f64::from(r.prompt_chars / 4), &[1e3, 4e3, 16e3]),
            match r.gap_ms {
                Some(g) if g >= 0.0 => 1 + bucket(g, &[100.0, 1e3, 1e4]),
                Some(_) => 5,
                // A worker's first request of a run: its previous request was the last run,
                // minutes ago at least (and a run's first requests start together, which
                // is concurrency's business, not the gap's).
                None => 4,
            },
            r.server_seq.filter(|s| *s > 0).map_or(4, |s| bucket(s as f64, &[11.0, 101.0, 1001.0])),
            u32::from(first_after_load),
            self.job(&r.job),
            (u32::from(r.hour_local) / 4).min(HOURS.len() as u32 - 1),
        ];
        let next = self.keys.len() as u32;
        let cell = *self.at.entry(key).or_insert(next);
        if cell == next {
            self.keys.push(key);
            self.n.push(0);
        }
        self.n[cell as usize] += 1;
        cell
    }

    /// The job's index; months of rows share a handful of jobs, most often the last one's.
    fn job(&mut self, job: &Arc<str>) -> u32 {
        if let Some((last, i)) = &self.last_job
            && (Arc::ptr_eq(last, job) || last == job)
        {
            return *i;
        }
        let next = self.jobs.len() as u32;
        let i = *self.job_at.entry(job.clone()).or_insert(next);
        if i == next {
            self.jobs.push(job.clone());
        }
        self.last_job = Some((job.clone(), i));
        i
    }

    /// The cells of `rows`, with `first_after_load[i]` for row i, and each row's cell.
    #[cfg(test)]
    pub fn of(rows: &[&Attempt], first_after_load: &[bool]) -> (Cells, Vec<u32>) {
        let mut cells = Cells::default();
        let of = rows.iter().zip(first_after_load).map(|(r, f)| cells.add(r, *f)).collect();
        (cells, of)
    }
}

/// The levels of every factor over `cells`.
pub fn factors(cells: &Cells) -> Vec<Factor> {
    const PROMPT: [&str; 4] = ["<1k", "1k-4k", "4k-16k", ">=16k"];
    const GAP: [&str; 6] = ["first", "<100ms", "100ms-1s", "1-10s", ">=10s", "unknown"];
    const SEQ: [&str; 5] = ["1-10", "11-100", "101-1000", ">1000", "unknown"];
    // Jobs are levels in name order.
    let mut by_name: Vec<u32> = (0..cells.jobs.len() as u32).collect();
    by_name.sort_by(|a, b| cells.jobs[*a as usize].cmp(&cells.jobs[*b as usize]));
    let mut rank = vec![0u32; by_name.len()];
    by_name.iter().enumerate().for_each(|(r, &j)| rank[j as usize] = r as u32);
    (0..FACTORS.len())
        .map(|f| {
            let key = |k: &Key| if f == 5 { rank[k[f] as usize] } else { k[f] };
            let distinct: Vec<u32> =
                cells.keys.iter().map(key).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            let name = |k: u32| -> String {
                let k = k as usize;
                match f {
                    0 => k.to_string(),
                    1 => PROMPT[k].into(),
                    2 => GAP[k].into(),
                    3 => SEQ[k].into(),
                    4 => if k == 1 { "yes" } else { "no" }.into(),
                    5 => cells.jobs[by_name[k] as usize].to_string(),
                    _ => HOURS[k].into(),
                }
            };
            let of: Vec<u16> = (cells.keys.iter())
                .map(|k| u16::try_from(distinct.binary_search(&key(k)).unwrap_or(0)).unwrap_or(u16::MAX))
                .collect();
            merge_small(
                Factor { name: FACTORS[f], levels: distinct.into_iter().map(name).collect(), of, counts: Vec::new() },
                &cells.n,
            )
        })
        .collect()
}

/// Joins levels with fewer than `MIN_LEVEL` requests to their smaller neighbour (levels are in
/// order), naming the joined level after both ("4,8").
/// `n` is each cell's requests.
fn merge_small(mut f: Factor, n: &[u64]) -> Factor {
    loop {
        let mut counts = vec![0u64; f.levels.len()];
        f.of.iter().zip(n).for_each(|(&l, n)| counts[usize::from(l)] += n);
        let Some((small, _)) = counts.iter().enumerate().filter(|(_, c)| **c < MIN_LEVEL).min_by_key(|(_, c)| **c)
        else {
            return Factor { counts, ..f };
        };
        if f.levels.len() < 2 {
            return Factor { counts, ..f };
        }
        let into = match (small.checked_sub(1), (small + 1 < f.levels.len()).then_some(small + 1)) {
            (Some(a), Some(b)) => {
                if counts[a] <= counts[b] {
                    a
                } else {
                    b
                }
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return Factor { counts, ..f },
        };
        let (lo, hi) = (small.min(into), small.max(into));
        // A handful of requests join under their neighbour's name; comparable ones under both.
        f.levels[lo] = if counts[small] * 20 < counts[into] {
            f.levels[into].clone()
        } else {
            format!("{},{}", f.levels[lo], f.levels[hi])
        };
        f.levels.remove(hi);
        let (lo16, hi16) = (lo as u16, hi as u16);
        f.of.iter_mut().for_each(|l| {
            if *l == hi16 {
                *l = lo16;
            } else if *l > hi16 {
                *l -= 1;
            }
        });
    }
}

/// The result of testing one factor.
#[derive(Debug, Clone)]
pub struct FactorTest {
    /// Index into `FACTORS`.
    pub factor: usize,
    /// Penalised likelihood-ratio χ² and its p-value.
    pub statistic: f64,
    pub p_value: f64,
    /// The level with the highest fitted failure odds.
    pub worst: usize,
    /// The factors it was adjusted for.
    pub adjusted_for: Vec<&'static str>,
}

/// Requests grouped by the levels of every factor: one row per combination that occurs, with its
/// requests and, per family (all failures, each signature), its failures. Built once; every model
/// of every family is collapsed from it, not from the requests again.
pub struct Table {
    keys: Vec<[u16; FACTORS.len()]>,
    n: Vec<f64>,
    /// `k[family][row]`.
    k: Vec<Vec<f64>>,
}

impl Table {
    /// The table of `factors` over cells with `n[cell]` requests and, per family,
    /// `failed[family][cell]` failures.
    pub fn new(factors: &[Factor], n: &[u64], failed: &[&[u64]]) -> Table {
        let mut at: rustc_hash::FxHashMap<[u16; FACTORS.len()], usize> = rustc_hash::FxHashMap::default();
        let mut t = Table { keys: Vec::new(), n: Vec::new(), k: vec![Vec::new(); failed.len()] };
        for (cell, &requests) in n.iter().enumerate() {
            let mut key = [0u16; FACTORS.len()];
            for (f, slot) in factors.iter().zip(key.iter_mut()) {
                *slot = f.of[cell];
            }
            let j = *at.entry(key).or_insert_with(|| {
                t.keys.push(key);
                t.n.push(0.0);
                t.k.iter_mut().for_each(|k| k.push(0.0));
                t.keys.len() - 1
            });
            t.n[j] += requests as f64;
            for (family, k) in failed.iter().enumerate() {
                t.k[family][j] += k[cell] as f64;
            }
        }
        t
    }

    /// Collapsed onto the factors in `include`, for one family.
    fn grouped(&self, include: &[usize], family: usize) -> (Vec<Vec<usize>>, Vec<f64>, Vec<f64>) {
        let mut at: HashMap<Vec<usize>, usize> = HashMap::new();
        let (mut keys, mut n, mut k) = (Vec::new(), Vec::new(), Vec::new());
        for (row, key) in self.keys.iter().enumerate() {
            let sub: Vec<usize> = include.iter().map(|&f| usize::from(key[f])).collect();
            let j = *at.entry(sub.clone()).or_insert_with(|| {
                keys.push(sub);
                n.push(0.0);
                k.push(0.0);
                keys.len() - 1
            });
            n[j] += self.n[row];
            k[j] += self.k[family][row];
        }
        (keys, n, k)
    }

    fn failures(&self, family: usize) -> (f64, f64) {
        (self.k[family].iter().sum(), self.n.iter().sum())
    }
}

/// A model of `failed` on the factors in `include`: its data and, per factor, the columns of its
/// levels (the most common level is the reference and has none).
struct Model {
    data: Data,
    /// (factor, level) of each column after the intercept.
    columns: Vec<(usize, usize)>,
}

fn model(factors: &[Factor], include: &[usize], t: &Table, family: usize) -> Model {
    let (keys, n, k) = t.grouped(include, family);
    let mut columns = Vec::new();
    for &f in include {
        let counts = &factors[f].counts;
        let reference = reference(&factors[f]);
        columns.extend((0..counts.len()).filter(|l| *l != reference && counts[*l] > 0).map(|l| (f, l)));
    }
    let x = keys
        .iter()
        .map(|key| {
            let mut row = vec![1.0];
            row.extend(columns.iter().map(|&(f, l)| {
                let pos = include.iter().position(|g| *g == f).unwrap_or(0);
                f64::from(u8::from(key[pos] == l))
            }));
            row
        })
        .collect();
    Model { data: Data { x, n, k }, columns }
}

impl Model {
    fn term(&self, factor: usize) -> Vec<usize> {
        self.columns.iter().enumerate().filter(|(_, c)| c.0 == factor).map(|(j, _)| j + 1).collect()
    }

    /// The level of `factor` with the highest coefficient (the reference when all are below 0).
    fn worst(&self, fit: &Fit, factor: usize, reference: usize) -> usize {
        let best = self
            .term(factor)
            .into_iter()
            .map(|j| (self.columns[j - 1].1, fit.beta[j]))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((level, coef)) if coef > 0.0 => level,
            _ => reference,
        }
    }
}

fn reference(f: &Factor) -> usize {
    f.counts.iter().enumerate().max_by_key(|(_, c)| **c).map_or(0, |(i, _)| i)
}

/// Tests every factor with two levels or more: mechanisms adjusted for the other mechanisms,
/// proxies for what they add to all mechanisms.
pub fn adjusted_tests(factors: &[Factor], t: &Table, family: usize) -> Vec<FactorTest> {
    let varies = |f: usize| factors[f].levels.len() >= 2;
    let mechanisms: Vec<usize> = (0..MECHANISMS).filter(|&f| varies(f)).collect();
    let mut out = Vec::new();
    let (k, n) = t.failures(family);
    if k == 0.0 || k == n {
        return out;
    }
    let full = model(factors, &mechanisms, t, family);
    if let Some(fit) = logistic::fit(&full.data, &[]) {
        for &f in &mechanisms {
            let Some((statistic, p_value)) = logistic::lr_test(&full.data, &fit, &full.term(f)) else { continue };
            let adjusted_for = mechanisms.iter().filter(|g| **g != f).map(|&g| FACTORS[g]).collect();
            let worst = full.worst(&fit, f, reference(&factors[f]));
            out.push(FactorTest { factor: f, statistic, p_value, worst, adjusted_for });
        }
    }
    for f in (MECHANISMS..FACTORS.len()).filter(|&f| varies(f)) {
        let mut include = mechanisms.clone();
        include.push(f);
        let with = model(factors, &include, t, family);
        let Some(fit) = logistic::fit(&with.data, &[]) else { continue };
        let Some((statistic, p_value)) = logistic::lr_test(&with.data, &fit, &with.term(f)) else { continue };
        let worst = with.worst(&fit, f, reference(&factors[f]));
        out.push(FactorTest {
            factor: f,
            statistic,
            p_value,
            worst,
            adjusted_for: mechanisms.iter().map(|&g| FACTORS[g]).collect(),
        });
    }
    out
}

/// The p-value of `factor` on its own (no adjustment).
pub fn unadjusted_p(factors: &[Factor], t: &Table, family: usize, factor: usize) -> Option<f64> {
    let alone = model(factors, &[factor], t, family);
    let fit = logistic::fit(&alone.data, &[])?;
    logistic::lr_test(&alone.data, &fit, &alone.term(factor)).map(|t| t.1)
}

/// Cramér's V between two factors' levels over cells of `n` requests: 1 when one determines the
/// other.
pub fn association(a: &Factor, b: &Factor, n: &[u64]) -> f64 {
    let (ra, rb) = (a.levels.len(), b.levels.len());
    let total: u64 = n.iter().sum();
    if ra < 2 || rb < 2 || total == 0 {
        return 0.0;
    }
    let mut table = vec![vec![0.0f64; rb]; ra];
    for ((&x, &y), &requests) in a.of.iter().zip(&b.of).zip(n) {
        table[usize::from(x)][usize::from(y)] += requests as f64;
    }
    let n = total as f64;
    let rows: Vec<f64> = table.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<f64> = (0..rb).map(|j| table.iter().map(|r| r[j]).sum()).collect();
    let mut chi = 0.0;
    for i in 0..ra {
        for j in 0..rb {
            let e = rows[i] * cols[j] / n;
            if e > 0.0 {
                chi += (table[i][j] - e).powi(2) / e;
            }
        }
    }
    (chi / n / (ra.min(rb) - 1) as f64).sqrt().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn attempt(concurrency: u32, prompt_chars: u32) -> Attempt {
        Attempt {
            concurrency,
            prompt_chars,
            gap_ms: Some(500.0),
            server_seq: Some(50),
            job: Arc::from("j"),
            ..Default::default()
        }
    }

    #[test]
    fn small_levels_join_a_neighbour() {
        let rows: Vec<Attempt> = (0..40)
            .map(|i| {
                attempt(
                    if i < 3 {
                        8
                    } else if i < 20 {
                        1
                    } else {
                        4
                    },
                    400,
                )
            })
            .collect();
        let refs: Vec<&Attempt> = rows.iter().collect();
        let (cells, _) = Cells::of(&refs, &vec![false; rows.len()]);
        let f = factors(&cells);
        assert_eq!(f[0].levels, ["1", "4,8"]);
        assert_eq!(f[0].counts, [17, 23]);
        assert_eq!(f[0].of.iter().zip(&cells.n).filter(|(l, _)| **l == 1).map(|(_, n)| n).sum::<u64>(), 23);
        assert_eq!(f[4].levels, ["no"]);
    }

    #[test]
    fn jobs_are_levels_in_name_order_whatever_came_first() {
        let rows: Vec<Attempt> = ["zeta", "alpha", "zeta", "mid"]
            .iter()
            .cycle()
            .take(40)
            .map(|j| Attempt { job: Arc::from(*j), ..attempt(1, 400) })
            .collect();
        let refs: Vec<&Attempt> = rows.iter().collect();
        let (cells, of) = Cells::of(&refs, &vec![false; rows.len()]);
        assert_eq!(cells.n, [20, 10, 10], "one cell per job, in the order they came");
        let f = factors(&cells);
        assert_eq!(f[5].levels, ["alpha", "mid", "zeta"]);
        assert_eq!(of.iter().map(|&c| f[5].of[c as usize]).take(4).collect::<Vec<_>>(), [2, 0, 2, 1]);
    }

    #[test]
    fn the_factor_that_matters_survives_adjustment() {
        // Long prompts nine times in ten at concurrency 4, once in ten at 1; only long prompts fail.
        let mut rows = Vec::new();
        for i in 0..2000u32 {
            let c = if i % 2 == 0 { 4 } else { 1 };
            let long = if c == 4 { i % 10 != 0 } else { i % 10 == 1 };
            rows.push(attempt(c, if long { 40_000 } else { 400 }));
        }
        let failed: Vec<bool> = rows.iter().enumerate().map(|(i, r)| r.prompt_chars > 1000 && i % 3 == 0).collect();
        let refs: Vec<&Attempt> = rows.iter().collect();
        let (cells, of) = Cells::of(&refs, &vec![false; rows.len()]);
        let mut k = vec![0u64; cells.n.len()];
        of.iter().zip(&failed).for_each(|(&c, &fail)| k[c as usize] += u64::from(fail));
        let f = factors(&cells);
        let table = Table::new(&f, &cells.n, &[&k]);
        let tests = adjusted_tests(&f, &table, 0);
        let p = |name: &str| tests.iter().find(|t| FACTORS[t.factor] == name).map(|t| t.p_value).unwrap();
        assert!(p("prompt_size") < 1e-10 && p("concurrency") > 0.01, "{tests:?}");
        assert!(unadjusted_p(&f, &table, 0, 0).unwrap() < 1e-10);
        let v = association(&f[0], &f[1], &cells.n);
        assert!(v > 0.5, "{v}");
    }
}
