//! Crash logs of real servers' shapes: failures triggered by concurrency, by prompt size (also when
//! long prompts are far commoner at high concurrency), by rapid back-to-back requests, at a request
//! count with slow restarts, on the first request after a load; and failures at random, with and
//! without the server dying. Every crash is followed by what a client really sees until the server
//! answers again: refused connections while it is down, "503 Loading model" while it loads, LM
//! Studio's "Model is unloaded" (failure shapes B3, B4, B7, C3; patterns P1, P5, P7, P9, P11).

use super::{Case, CrashTruth, HOUR, Log, MIN, Req, Rng, SEC, T0};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Every crash class: (name, generator).
/// A class: its name and how to draw one case's spec.
pub type Class = (&'static str, fn(&mut Rng) -> Spec);

pub const CLASSES: &[Class] = &[
    ("concurrency", concurrency),
    ("prompt_size", prompt_size),
    ("confounded_prompt_size", confounded_prompt),
    ("confounded_concurrency", confounded_concurrency),
    ("rapid_sequential", rapid),
    ("request_count_slow_restart", request_count),
    ("first_after_load", first_after_load),
    ("random_failures", random_failures),
    ("random_crashes", random_crashes),
];

/// The case of `class` for `seed`.
pub fn case(class: &'static str, seed: u64) -> Case<CrashTruth> {
    let (_, make) = CLASSES.iter().find(|(n, _)| *n == class).expect("a known class");
    let mut rng = Rng::new(class, seed);
    let spec = make(&mut rng);
    let truth = spec.truth.clone();
    let log = simulate(&mut rng, spec);
    Case { class, seed, log, truth }
}

/// A job: fired every `every_min`, `requests` shared by `concurrency` workers, `delay_ms` between
/// a worker's requests; prompts drawn by weight (tokens, weight).
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    pub every_min: f64,
    pub requests: u32,
    pub concurrency: u32,
    pub delay_ms: (f64, f64),
    pub prompts: Vec<(u32, f64)>,
    pub max_tokens: u32,
}

/// What a request meets.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub concurrency: u32,
    pub prompt_tokens: u32,
    pub gap_ms: Option<f64>,
    /// The nth request this process served (1 = the first).
    pub seq: u64,
    /// The first request the model answered since it (re)loaded.
    pub first_after_load: bool,
    pub in_flight: u32,
}

/// How a failure shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fail {
    /// The process dies mid-request; it is restarted (refused connections, then 503 while loading).
    Dies,
    /// LM Studio's engine crash: the server answers "The model has crashed …", then "Model is
    /// unloaded." for a few requests, then loads it again (the pid stays).
    EngineCrash,
    /// The request fails, the server lives on: one of several everyday errors.
    Error,
}

pub type FailModel = Box<dyn FnMut(&Ctx, &mut Rng) -> Option<Fail>>;

pub struct Spec {
    pub hours: f64,
    pub jobs: Vec<Job>,
    pub fail: FailModel,
    pub truth: CrashTruth,
    /// Seconds with no process after a death, and loading after it (503 "Loading model").
    pub down_s: (f64, f64),
    pub loading_s: (f64, f64),
    /// Requests answered "Model is unloaded." after an engine crash.
    pub unloaded: u32,
    /// Hours at which the server is restarted from outside (an update, the user).
    pub restarts: Vec<f64>,
}

fn prompts_mixed(rng: &mut Rng) -> Vec<(u32, f64)> {
    vec![(rng.int(40, 300) as u32, 1.0), (rng.int(800, 3000) as u32, 0.5), (rng.int(5000, 24000) as u32, 0.5)]
}

fn job(name: &'static str, every_min: f64, requests: u32, concurrency: u32, prompts: Vec<(u32, f64)>) -> Job {
    Job { name, every_min, requests, concurrency, delay_ms: (0.0, 300.0), prompts, max_tokens: 64 }
}

fn spec(rng: &mut Rng, hours: (f64, f64), jobs: Vec<Job>, fail: FailModel, truth: CrashTruth) -> Spec {
    Spec {
        hours: rng.range(hours.0, hours.1 + 1e-9),
        jobs,
        fail,
        truth,
        down_s: (rng.range(0.5, 1.0), rng.range(1.0, 3.0)),
        loading_s: (rng.range(0.3, 1.0), rng.range(1.0, 2.5)),
        unloaded: rng.int(0, 3) as u32,
        restarts: Vec::new(),
    }
}

/// Crashes when more than K requests run at once (failure shapes B4): the failing job runs at a
/// higher concurrency than the others; prompts are the same mix everywhere.
fn concurrency(rng: &mut Rng) -> Spec {
    let high = *rng.pick(&[2u32, 4, 8]);
    let p = rng.range(0.05, 0.4);
    let style = if rng.chance(0.5) { Fail::Dies } else { Fail::EngineCrash };
    let prompts = prompts_mixed(rng);
    let jobs = vec![
        job("single", rng.range(5.0, 20.0), rng.int(5, 30) as u32, 1, prompts.clone()),
        job("parallel", rng.range(20.0, 60.0), rng.int(20, 80) as u32, high, prompts),
    ];
    let fail = move |c: &Ctx, rng: &mut Rng| (c.concurrency >= high && rng.chance(p)).then_some(style);
    let truth = CrashTruth::Factor { factor: "concurrency", level: Some(high.to_string()) };
    spec(rng, (6.0, 48.0), jobs, Box::new(fail), truth)
}

/// Crashes on prompts above T tokens (failure shapes B3, pattern P8), whatever the
/// concurrency.
fn prompt_size(rng: &mut Rng) -> Spec {
    let p = rng.range(0.1, 0.6);
    let style = if rng.chance(0.5) { Fail::Dies } else { Fail::EngineCrash };
    let prompts = prompts_mixed(rng);
    // Somewhere above the mid-sized prompts and below the long ones: a threshold above every
    // prompt the schedule sends crashes nothing, and a log with no failure is no crash log.
    let long = prompts.iter().map(|(tokens, _)| *tokens).max().unwrap_or(8000);
    let threshold = rng.range(4000.0, f64::from(long).min(8000.0)) as u32;
    let jobs = vec![
        job("chat", rng.range(5.0, 20.0), rng.int(5, 30) as u32, *rng.pick(&[1u32, 2]), prompts.clone()),
        job("batch", rng.range(20.0, 60.0), rng.int(20, 80) as u32, *rng.pick(&[1u32, 4]), prompts),
    ];
    let fail = move |c: &Ctx, rng: &mut Rng| (c.prompt_tokens > threshold && rng.chance(p)).then_some(style);
    let truth = CrashTruth::Factor { factor: "prompt_size", level: None };
    spec(rng, (6.0, 48.0), jobs, Box::new(fail), truth)
}

/// Two jobs where long prompts are far commoner at concurrency 4.
fn confounded_jobs(rng: &mut Rng) -> Vec<Job> {
    let (short, long) = (rng.int(50, 400) as u32, rng.int(6000, 20000) as u32);
    let (rare, common) = (rng.range(0.05, 0.2), rng.range(0.7, 0.9));
    vec![
        job("interactive", rng.range(5.0, 15.0), rng.int(10, 40) as u32, 1, vec![(short, 1.0 - rare), (long, rare)]),
        job("agents", rng.range(15.0, 45.0), rng.int(30, 100) as u32, 4, vec![(short, 1.0 - common), (long, common)]),
    ]
}

/// Only prompt size matters, but long prompts mostly come at concurrency 4.
fn confounded_prompt(rng: &mut Rng) -> Spec {
    let p = rng.range(0.1, 0.5);
    let style = if rng.chance(0.5) { Fail::Dies } else { Fail::EngineCrash };
    let jobs = confounded_jobs(rng);
    let fail = move |c: &Ctx, rng: &mut Rng| (c.prompt_tokens >= 6000 && rng.chance(p)).then_some(style);
    let truth = CrashTruth::Factor { factor: "prompt_size", level: None };
    spec(rng, (12.0, 48.0), jobs, Box::new(fail), truth)
}

/// Only concurrency matters, but it mostly comes with long prompts.
fn confounded_concurrency(rng: &mut Rng) -> Spec {
    let p = rng.range(0.05, 0.3);
    let style = if rng.chance(0.5) { Fail::Dies } else { Fail::EngineCrash };
    let jobs = confounded_jobs(rng);
    let fail = move |c: &Ctx, rng: &mut Rng| (c.concurrency >= 4 && rng.chance(p)).then_some(style);
    let truth = CrashTruth::Factor { factor: "concurrency", level: Some("4".into()) };
    spec(rng, (12.0, 48.0), jobs, Box::new(fail), truth)
}

/// The seed report's question: back-to-back requests (gap under G ms) crash the engine.
fn rapid(rng: &mut Rng) -> Spec {
    let g = rng.range(60.0, 100.0);
    let p = rng.range(0.1, 0.5);
    let style = if rng.chance(0.7) { Fail::EngineCrash } else { Fail::Dies };
    let prompts = prompts_mixed(rng);
    let mut rapid = job("rapid-burst", rng.range(20.0, 60.0), rng.int(20, 100) as u32, 1, prompts.clone());
    rapid.delay_ms = (0.0, 40.0);
    let mut spaced = job("spaced-burst", rng.range(20.0, 60.0), rng.int(20, 100) as u32, 1, prompts);
    spaced.delay_ms = (1000.0, 3000.0);
    let fail = move |c: &Ctx, rng: &mut Rng| (c.gap_ms.is_some_and(|g2| g2 < g) && rng.chance(p)).then_some(style);
    let truth = CrashTruth::Factor { factor: "gap", level: Some("<100ms".into()) };
    spec(rng, (6.0, 48.0), vec![rapid, spaced], Box::new(fail), truth)
}

/// Dies at about its Nth request (±15 %), whatever the time (failure shapes B3, llama.cpp #26216),
/// and takes 1–3 s to come back, answering 503 "Loading model" meanwhile.
fn request_count(rng: &mut Rng) -> Spec {
    let n = rng.log_range(30.0, 3000.0);
    let spread = rng.range(0.03, 0.15);
    // Pace varies between jobs, so lives of equal request counts last different times.
    let jobs = vec![
        job("steady", rng.range(2.0, 10.0), rng.int(5, 20) as u32, 1, prompts_mixed(rng)),
        job("burst", rng.range(30.0, 120.0), rng.int(50, 300) as u32, *rng.pick(&[1u32, 2, 4]), prompts_mixed(rng)),
    ];
    let per_hour: f64 = jobs.iter().map(|j| f64::from(j.requests) * 60.0 / j.every_min).sum();
    let hours = (n * rng.range(4.0, 12.0) / per_hour).clamp(3.0, 96.0);
    let mut limit = n * (1.0 + spread * rng.range(-1.0, 1.0));
    let fail = move |c: &Ctx, rng: &mut Rng| {
        if c.first_after_load {
            limit = n * (1.0 + spread * rng.range(-1.0, 1.0));
        }
        (c.seq as f64 >= limit).then_some(Fail::Dies)
    };
    let mut s = spec(rng, (hours, hours), jobs, Box::new(fail), CrashTruth::RequestCount { n });
    s.down_s = (1.0, 3.0);
    s.loading_s = (0.5, 2.0);
    s
}

/// The first request after each (re)load fails (pattern P9; failure shapes C3): the
/// server is restarted from outside every 30–120 min.
fn first_after_load(rng: &mut Rng) -> Spec {
    let p = rng.range(0.6, 1.0);
    let prompts = prompts_mixed(rng);
    let jobs = vec![
        job("probe", rng.range(2.0, 5.0), 1, 1, prompts.clone()),
        job("burst", rng.range(20.0, 60.0), rng.int(10, 40) as u32, *rng.pick(&[1u32, 2]), prompts),
    ];
    let fail = move |c: &Ctx, rng: &mut Rng| (c.first_after_load && rng.chance(p)).then_some(Fail::Error);
    let hours = rng.range(12.0, 48.0);
    let mut s =
        spec(rng, (hours, hours), jobs, Box::new(fail), CrashTruth::Factor { factor: "first_after_load", level: None });
    let mut t = rng.range(0.3, 1.0);
    while t < hours {
        s.restarts.push(t);
        t += rng.range(0.5, 2.0);
    }
    s
}

/// Every job mix, failures at random (3–5 %), of several kinds.
fn mixed_jobs(rng: &mut Rng) -> Vec<Job> {
    let prompts = prompts_mixed(rng);
    let mut rapid = job("rapid-burst", rng.range(30.0, 90.0), rng.int(20, 60) as u32, 1, prompts.clone());
    rapid.delay_ms = (0.0, 30.0);
    let mut spaced = job("spaced-burst", rng.range(30.0, 90.0), rng.int(20, 60) as u32, 1, prompts.clone());
    spaced.delay_ms = (1000.0, 3000.0);
    vec![
        job("probe", 5.0, 1, 1, vec![(60, 1.0)]),
        rapid,
        spaced,
        job("soak", rng.range(60.0, 240.0), rng.int(50, 200) as u32, *rng.pick(&[2u32, 4, 8]), prompts),
    ]
}

fn random_failures(rng: &mut Rng) -> Spec {
    let p = rng.range(0.03, 0.05);
    let fail = move |_: &Ctx, rng: &mut Rng| rng.chance(p).then_some(Fail::Error);
    let jobs = mixed_jobs(rng);
    spec(rng, (6.0, 48.0), jobs, Box::new(fail), CrashTruth::NoPattern)
}

/// The server dies at random (0.3–2 % of requests), restarts, and clients see the refusals and
/// 503s of every restart.
fn random_crashes(rng: &mut Rng) -> Spec {
    let p = rng.range(0.003, 0.02);
    let style = if rng.chance(0.5) { Fail::Dies } else { Fail::EngineCrash };
    let fail = move |_: &Ctx, rng: &mut Rng| rng.chance(p).then_some(style);
    let jobs = mixed_jobs(rng);
    spec(rng, (6.0, 48.0), jobs, Box::new(fail), CrashTruth::NoPattern)
}

// ---------------------------------------------------------------------------------------------

const REFUSED: &str = "error sending request for url (http://127.0.0.1:8080/v1/chat/completions): client error (Connect): tcp connect error: Connection refused (os error 111)";
const LOADING: &str =
    "HTTP 503: {\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}";
const ENGINE_CRASH: &str =
    "HTTP 500: {\"error\":\"The model has crashed without additional information. (Exit code: 18446744072635812000)\"}";
const UNLOADED: &str = "HTTP 400: {\"error\":\"Model is unloaded.\"}";
const RESET: &str = "error decoding response body: connection reset by peer (os error 104)";
const ERRORS: [(&str, &str, Option<i64>); 4] = [
    ("http_error", "HTTP 500: {\"error\":{\"code\":500,\"message\":\"Internal Server Error\"}}", Some(500)),
    ("reset_mid_stream", RESET, Some(200)),
    ("empty", "a well-formed reply with no content", Some(200)),
    ("no_first_byte", "no first byte within 120000 ms", None),
];

struct Worker {
    job: usize,
    left: u32,
    last_end: Option<i64>,
}

struct Process {
    pid: u32,
    seq: u64,
    down_until: i64,
    loading_until: i64,
    unloaded_left: u32,
    loaded_fresh: bool,
    /// Requests in flight on this process: (index in the log, end).
    in_flight: Vec<(usize, i64)>,
}

pub fn simulate(rng: &mut Rng, mut spec: Spec) -> Log {
    let end = T0 + (spec.hours * HOUR as f64) as i64;
    let mut log = Log { backend: "backend".into(), ..Log::default() };
    // Firings: every job from a random offset.
    let mut events: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new(); // (time, worker)
    let mut workers: Vec<Worker> = Vec::new();
    let mut firings: Vec<(i64, usize)> = Vec::new();
    for (j, job) in spec.jobs.iter().enumerate() {
        let mut t = T0 + (rng.range(0.0, job.every_min) * MIN as f64) as i64;
        while t < end {
            firings.push((t, j));
            t += (job.every_min * MIN as f64 * rng.range(0.97, 1.03)) as i64;
        }
    }
    for (t, j) in firings {
        let job = &spec.jobs[j];
        for i in 0..job.concurrency {
            let share = job.requests / job.concurrency + u32::from(i < job.requests % job.concurrency);
            if share > 0 {
                workers.push(Worker { job: j, left: share, last_end: None });
                events.push(Reverse((t + i64::from(i) * 7, workers.len() - 1)));
            }
        }
    }
    let mut restarts: Vec<i64> = spec.restarts.iter().map(|h| T0 + (h * HOUR as f64) as i64).collect();
    restarts.reverse();
    let mut proc = Process {
        pid: 5000,
        seq: 0,
        down_until: 0,
        loading_until: 0,
        unloaded_left: 0,
        loaded_fresh: true,
        in_flight: Vec::new(),
    };
    let respawn = |proc: &mut Process, at: i64, rng: &mut Rng, spec: &Spec| {
        proc.pid += 13;
        proc.seq = 0;
        proc.down_until = at + (rng.range(spec.down_s.0, spec.down_s.1) * SEC as f64) as i64;
        proc.loading_until = proc.down_until + (rng.range(spec.loading_s.0, spec.loading_s.1) * SEC as f64) as i64;
        proc.unloaded_left = 0;
        proc.loaded_fresh = true;
    };
    // A crash decided at a request's start happens a little later: requests started meanwhile are
    // still served, and die with it if still in flight.
    let mut pending: Option<i64> = None;
    while let Some(Reverse((t, w))) = events.pop() {
        if t >= end {
            break;
        }
        if let Some(at) = pending.filter(|at| *at <= t) {
            pending = None;
            kill_in_flight(&mut log, &mut proc, at);
            respawn(&mut proc, at, rng, &spec);
        }
        while restarts.last().is_some_and(|r| *r <= t) {
            let at = restarts.pop().unwrap();
            kill_in_flight(&mut log, &mut proc, at);
            respawn(&mut proc, at, rng, &spec);
        }
        proc.in_flight.retain(|(_, e)| *e > t);
        let job = spec.jobs[workers[w].job].clone();
        let tokens = pick_prompt(rng, &job.prompts);
        let gap_ms = workers[w].last_end.map(|e| (t - e).max(0) as f64);
        let mut req = Req {
            started_at: t,
            e2e_ms: 0.0,
            outcome: "ok",
            http_status: Some(200),
            error: None,
            job: job.name.into(),
            worker: w as u32,
            concurrency: job.concurrency,
            prompt_chars: tokens * 4,
            prompt_tokens: Some(tokens),
            completion_tokens: Some(job.max_tokens),
            max_tokens: job.max_tokens,
            gap_ms,
            server_pid: Some(proc.pid),
            server_seq: None,
        };
        let idx = log.requests.len();
        if t < proc.down_until {
            (req.outcome, req.error, req.http_status, req.server_pid) =
                ("connect_refused", Some(REFUSED.into()), None, None);
            req.e2e_ms = rng.range(0.3, 3.0);
        } else {
            proc.seq += 1;
            req.server_seq = Some(proc.seq);
            if t < proc.loading_until {
                (req.outcome, req.error, req.http_status) = ("http_error", Some(LOADING.into()), Some(503));
                req.e2e_ms = rng.range(1.0, 15.0);
            } else if proc.unloaded_left > 0 {
                proc.unloaded_left -= 1;
                (req.outcome, req.error, req.http_status) = ("server_reported_crash", Some(UNLOADED.into()), Some(400));
                req.e2e_ms = rng.range(2.0, 20.0);
                proc.loaded_fresh = proc.unloaded_left == 0;
            } else {
                let ctx = Ctx {
                    concurrency: job.concurrency,
                    prompt_tokens: tokens,
                    gap_ms,
                    seq: proc.seq,
                    first_after_load: proc.loaded_fresh,
                    in_flight: proc.in_flight.len() as u32 + 1,
                };
                proc.loaded_fresh = false;
                let prefill = f64::from(tokens) * rng.range(0.05, 0.2);
                req.e2e_ms = 80.0 + prefill + f64::from(job.max_tokens) * rng.range(15.0, 30.0);
                match (spec.fail)(&ctx, rng) {
                    None => {}
                    Some(Fail::Error) => {
                        let (outcome, error, status) = *rng.pick(&ERRORS);
                        (req.outcome, req.error, req.http_status) = (outcome, Some(error.into()), status);
                        if outcome == "no_first_byte" {
                            req.e2e_ms = 120_000.0;
                        } else {
                            req.e2e_ms *= rng.range(0.05, 0.5);
                        }
                    }
                    Some(Fail::EngineCrash) => {
                        let at = t + (req.e2e_ms * rng.range(0.1, 0.5)) as i64;
                        (req.outcome, req.error, req.http_status) =
                            ("server_reported_crash", Some(ENGINE_CRASH.into()), Some(500));
                        req.e2e_ms = (at - t) as f64;
                        crash_in_flight(&mut log, &mut proc, at, "server_reported_crash", ENGINE_CRASH);
                        proc.unloaded_left = spec.unloaded;
                        proc.loaded_fresh = spec.unloaded == 0;
                    }
                    Some(Fail::Dies) if pending.is_none() => {
                        let at = t + (req.e2e_ms * rng.range(0.1, 0.9)) as i64;
                        (req.outcome, req.error, req.http_status) = ("reset_mid_stream", Some(RESET.into()), Some(200));
                        req.e2e_ms = (at - t) as f64;
                        pending = Some(at);
                    }
                    Some(Fail::Dies) => {}
                }
            }
        }
        if !req.ok() {
            req.completion_tokens = None;
        }
        let req_end = t + req.e2e_ms.ceil() as i64;
        if req.server_pid.is_some() && req.outcome == "ok" {
            proc.in_flight.push((idx, req_end));
        }
        log.requests.push(req);
        let worker = &mut workers[w];
        worker.left -= 1;
        worker.last_end = Some(req_end);
        if worker.left > 0 {
            let delay = rng.range(job.delay_ms.0, job.delay_ms.1) as i64;
            events.push(Reverse((req_end + delay, w)));
        }
    }
    log.requests.sort_by_key(|r| r.started_at);
    log
}

/// The process died at `at`: requests still in flight on it end there, reset.
fn kill_in_flight(log: &mut Log, proc: &mut Process, at: i64) {
    crash_in_flight(log, proc, at, "reset_mid_stream", RESET);
}

fn crash_in_flight(log: &mut Log, proc: &mut Process, at: i64, outcome: &'static str, error: &str) {
    for (i, end) in proc.in_flight.drain(..) {
        if end > at {
            let r = &mut log.requests[i];
            (r.outcome, r.error, r.completion_tokens) = (outcome, Some(error.into()), None);
            r.e2e_ms = (at - r.started_at).max(1) as f64;
        }
    }
}

fn pick_prompt(rng: &mut Rng, prompts: &[(u32, f64)]) -> u32 {
    let total: f64 = prompts.iter().map(|p| p.1).sum();
    let mut u = rng.range(0.0, total);
    for (tokens, w) in prompts {
        if u < *w {
            return *tokens;
        }
        u -= w;
    }
    prompts[prompts.len() - 1].0
}
