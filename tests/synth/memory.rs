//! Memory shapes of real servers, as soak logs: leaks (per hour, per request, per generated token,
//! across restarts, under a sawtooth GC, only under load, after a warm-up, for every new input
//! size, visible only in the footprint) and the shapes that are not leaks (one step, warm-up then
//! plateau, a bounded cache filling to its cap, a cache that fills and is flushed, restarts at other
//! baselines, many short lives each warming up, lumpy autocorrelated noise, load spikes freed at
//! idle, crash loops, too little data). docs/failure-shapes.md A1–A8, B3, B6, C1–C2.

use super::{Case, HOUR, Log, MB, MIN, MemTruth, Req, Rng, SEC, Sample, T0};

/// Every memory class: (name, generator).
/// A class: its name and how to draw one case's plan, memory shape and truth.
pub type Class = (&'static str, fn(&mut Rng) -> (Plan, Shape, MemTruth));

pub const CLASSES: &[Class] = &[
    ("flat", flat),
    ("flat_lumpy_mlx", flat_lumpy),
    ("lone_step", lone_step),
    ("model_copy_steps", model_copy_steps),
    ("warmup_plateau", warmup_plateau),
    ("bounded_prompt_cache", bounded_cache),
    ("first_60_requests_plateau", first_requests_plateau),
    ("bounded_input_shapes", bounded_input_shapes),
    ("sawtooth_cache", sawtooth_cache),
    ("restarts_other_baselines", restarts_baselines),
    ("short_lives_warmup", short_lives_warmup),
    ("crash_loop", crash_loop),
    ("load_spikes_freed", load_spikes),
    ("idle_unload_reload", idle_unload),
    ("too_little_data", too_little),
    ("leak_per_hour", leak_linear),
    ("leak_per_request", leak_per_request),
    ("leak_per_token", leak_per_token),
    ("leak_across_restarts", leak_across_restarts),
    ("leak_frequent_restarts", leak_frequent_restarts),
    ("leak_sawtooth_rising_troughs", leak_sawtooth),
    ("leak_under_load", leak_under_load),
    ("leak_after_warmup", leak_after_warmup),
    ("leak_new_input_sizes", leak_new_sizes),
    ("leak_footprint_only", leak_footprint_only),
    ("leak_in_lumpy_noise", leak_lumpy),
    ("leak_plus_step", leak_plus_step),
];

/// How far outside its usual ranges a case is drawn: noise up to `noise` times larger (a leak stays
/// as clear of it as before) and idle samples `cadence` times further apart. 1 and 1 unless the
/// bench is asked otherwise (`--noise-scale`, `--cadence-scale`): a check that the verdicts hold on
/// shapes the method was not tuned on.
#[derive(Debug, Clone, Copy)]
pub struct Stretch {
    pub noise: f64,
    pub cadence: f64,
}

static STRETCH: std::sync::OnceLock<Stretch> = std::sync::OnceLock::new();

/// Sets the stretch of every case drawn from now on (once, before the first).
pub fn stretch(s: Stretch) {
    STRETCH.set(s).expect("the stretch is set once, before any case is drawn");
}

fn stretched() -> Stretch {
    *STRETCH.get_or_init(|| Stretch { noise: 1.0, cadence: 1.0 })
}

/// The case of `class` for `seed`.
pub fn case(class: &'static str, seed: u64) -> Case<MemTruth> {
    let (_, make) = CLASSES.iter().find(|(n, _)| *n == class).expect("a known class");
    let mut rng = Rng::new(class, seed);
    let (plan, shape, truth) = make(&mut rng);
    let (log, clean) = simulate(&mut rng, &plan, shape);
    // Rates that depend on the workload as it happened: the least-squares slope of the noise-free
    // memory over the idle samples.
    let truth = match truth {
        MemTruth::Leak { mb_per_hour: None, mb_per_1k_requests } => {
            MemTruth::Leak { mb_per_hour: ols_slope(&clean), mb_per_1k_requests }
        }
        t => t,
    };
    Case { class, seed, log, truth }
}

fn ols_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), p| (a + (p.0 - mx) * (p.1 - my), b + (p.0 - mx).powi(2)));
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Where a sample stands: what the memory shape may depend on.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Hours since the log began.
    pub t_h: f64,
    /// Which process life (0, 1, ...), and hours since it began.
    pub life: usize,
    pub life_h: f64,
    /// Requests this life has finished; completion tokens they generated; distinct prompt sizes
    /// it has seen; distinct prompts it has seen.
    pub served: u64,
    pub tokens: u64,
    pub sizes_seen: u64,
    pub unique_prompts: u64,
    /// Bursts finished in this life, and minutes since the last request ended (None: none yet).
    pub bursts: u64,
    pub idle_min: Option<f64>,
    /// Requests in flight now.
    pub in_flight: u32,
}

/// Memory at a sample, MB before noise: (RSS, footprint). The footprint is what RSS misses
/// (macOS physical footprint, Linux RssAnon + VmSwap).
pub type Shape = Box<dyn FnMut(&Ctx, &mut Rng) -> (f64, f64)>;

/// How a log is laid out in time.
pub struct Plan {
    pub hours: f64,
    pub workload: Workload,
    /// Hours (since the start) at which the process restarts.
    pub restarts: Vec<f64>,
    pub idle_every_s: f64,
    /// Also `before`/`after` samples around each request (soakd's sampler does, at idle).
    pub around_requests: bool,
    pub noise: Noise,
    /// Write the footprint column (logs from Linux or macOS have it; a script may not).
    pub footprint: bool,
}

#[derive(Clone)]
pub enum Workload {
    /// A request every `every_s`, `tokens` completion tokens.
    Steady { every_s: f64, tokens: u32 },
    /// `requests` back to back every `every_min`, plus a probe every 5 min when `probes`.
    Bursts { every_min: f64, requests: u32, tokens: u32, probes: bool },
    /// Two jobs alternating hourly: max_tokens `a` and `b`.
    TwoJobs { every_s: f64, a: u32, b: u32 },
}

#[derive(Clone, Copy)]
pub enum Noise {
    /// White noise, sd MB.
    White(f64),
    /// Autocorrelated (Ornstein–Uhlenbeck: sd MB, time constant minutes) plus lumps: held
    /// allocations of ±`lump` MB that come every `lump_every` minutes on average and last a while.
    Lumpy { sd: f64, tau_min: f64, lump: f64, lump_every_min: f64 },
    /// Page-granular: white sd MB, rounded to `grain` MB.
    Grainy { sd: f64, grain: f64 },
}

fn noise_pick(rng: &mut Rng, max_sd: f64) -> Noise {
    let max_sd = max_sd * stretched().noise;
    match rng.int(0, 3) {
        0 | 1 => Noise::White(rng.log_range(0.05, max_sd)),
        2 => Noise::Grainy { sd: rng.log_range(0.05, max_sd), grain: *rng.pick(&[0.004, 0.064, 1.0]) },
        _ => Noise::Lumpy {
            sd: rng.log_range(0.1, max_sd),
            tau_min: rng.range(2.0, 40.0),
            lump: rng.log_range(0.2, 3.0 * max_sd),
            lump_every_min: rng.range(20.0, 120.0),
        },
    }
}

fn workload_pick(rng: &mut Rng) -> Workload {
    if rng.chance(0.5) {
        Workload::Steady { every_s: rng.log_range(2.0, 120.0), tokens: *rng.pick(&[16, 64, 200, 256]) }
    } else {
        Workload::Bursts {
            every_min: rng.range(20.0, 90.0),
            requests: rng.int(20, 150) as u32,
            tokens: *rng.pick(&[16, 64, 200]),
            probes: rng.chance(0.7),
        }
    }
}

fn plan(rng: &mut Rng, hours: (f64, f64), max_sd: f64) -> Plan {
    Plan {
        hours: rng.range(hours.0, hours.1 + 1e-9),
        workload: workload_pick(rng),
        restarts: Vec::new(),
        idle_every_s: *rng.pick(&[10.0, 20.0, 30.0, 60.0, 60.0, 120.0]) * stretched().cadence,
        around_requests: rng.chance(0.6),
        noise: noise_pick(rng, max_sd),
        footprint: rng.chance(0.7),
    }
}

/// Restarts every `minutes.0`–`minutes.1` minutes over `hours` (hours since the start).
fn restarts_every(rng: &mut Rng, hours: f64, minutes: (f64, f64)) -> Vec<f64> {
    let (mut t, mut at) = (0.0, Vec::new());
    while t < hours {
        t += rng.range(minutes.0, minutes.1) / 60.0;
        at.push(t);
    }
    at.pop();
    at
}

fn base(rng: &mut Rng) -> f64 {
    rng.log_range(80.0, 30_000.0)
}

/// RSS and footprint from one shape value: RSS also holds `mapped` MB of file-backed pages
/// (mmapped weights) that the footprint does not count.
fn both(mb: f64, mapped: f64) -> (f64, f64) {
    (mb + mapped, mb)
}

// ---------------------------------------------------------------------------------------------
// Not leaks

fn flat(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let p = plan(rng, (1.0, 24.0), 20.0);
    let (b, mapped) = (base(rng), rng.range(0.0, 2000.0));
    (p, Box::new(move |_, _| both(b, mapped)), MemTruth::NoLeak)
}

/// An MLX server (docs/failure-shapes.md, the non-leaking shapes): 16–20 GB, lumpy autocorrelated ±50 MB noise, no trend.
fn flat_lumpy(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (4.0, 24.0), 20.0);
    p.noise = Noise::Lumpy {
        sd: rng.range(12.0, 30.0),
        tau_min: rng.range(5.0, 60.0),
        lump: rng.range(20.0, 60.0),
        lump_every_min: rng.range(15.0, 90.0),
    };
    let b = rng.range(16_000.0, 20_000.0);
    (p, Box::new(move |_, _| both(b, 0.0)), MemTruth::NoLeak)
}

/// One larger context allocates a few hundred MB once: flat before and after.
fn lone_step(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let p = plan(rng, (2.0, 24.0), 10.0);
    let (b, size, at) = (base(rng), rng.range(100.0, 800.0), rng.range(0.15, 0.85) * p.hours);
    (p, Box::new(move |c, _| both(b + if c.t_h >= at { size } else { 0.0 }, 0.0)), MemTruth::NoLeak)
}

/// LM Studio's JIT reload after the TTL loads a second copy (failure shapes C2): one or two steps of a
/// model's size, then flat.
fn model_copy_steps(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let p = plan(rng, (4.0, 24.0), 10.0);
    let b = base(rng);
    let model = rng.range(500.0, 8000.0);
    let first = rng.range(0.1, 0.5) * p.hours;
    let second = if rng.chance(0.5) { Some(rng.range(first / p.hours + 0.1, 0.8) * p.hours) } else { None };
    let shape = move |c: &Ctx, _: &mut Rng| {
        let copies = u8::from(c.t_h >= first) + u8::from(second.is_some_and(|s| c.t_h >= s));
        both(b + model * f64::from(copies), 0.0)
    };
    (p, Box::new(shape), MemTruth::NoLeak)
}

/// Model load and caches filling: a rise (exponential or linear), then flat for good.
fn warmup_plateau(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let p = plan(rng, (1.0, 24.0), 10.0);
    let (b, rise) = (base(rng), rng.log_range(10.0, 2000.0));
    let (exponential, span) = (rng.chance(0.5), rng.range(0.03, 0.3) * p.hours);
    let shape = move |c: &Ctx, _: &mut Rng| {
        let f = if exponential { 1.0 - (-c.life_h / (span / 3.0)).exp() } else { (c.life_h / span).min(1.0) };
        both(b + rise * f, 0.0)
    };
    (p, Box::new(shape), MemTruth::NoLeak)
}

/// llama-server's host-RAM prompt cache (failure shapes A4): +6–17 MB per unique prompt up to its
/// cap, then flat; repeated prompts add nothing.
fn bounded_cache(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (4.0, 24.0), 10.0);
    let every_s = rng.range(5.0, 60.0);
    p.workload = Workload::Steady { every_s, tokens: 64 };
    let requests = p.hours * 3600.0 / every_s;
    let per = rng.range(6.0, 17.0);
    // The cap is reached after 25–60 % of the unique prompts the soak sends.
    let unique_share = 0.6; // see `simulate`: 60 % of requests carry a new prompt
    let cap = per * requests * unique_share * rng.range(0.25, 0.6);
    let b = base(rng);
    (p, Box::new(move |c, _| both(b + (per * c.unique_prompts as f64).min(cap), 0.0)), MemTruth::NoLeak)
}

/// Ollama's MLX runner (failure shapes A1): +0.147 GiB per request for the first 55–60 requests,
/// then flat for the rest.
fn first_requests_plateau(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (1.0, 1.0), 10.0);
    let every_s = rng.range(10.0, 60.0);
    let total = rng.range(400.0, 1800.0);
    p.hours = total * every_s / 3600.0;
    p.workload = Workload::Steady { every_s, tokens: 64 };
    let (per, stop) = (rng.range(100.0, 200.0), rng.int(50, 65) as f64);
    let b = rng.range(15_000.0, 22_000.0);
    (p, Box::new(move |c, _| both(b + per * (c.served as f64).min(stop), 0.0)), MemTruth::NoLeak)
}

/// MLX's buffer cache keyed by input shape (failure shapes A5), with a bounded set of sizes: steps
/// while new sizes appear early on, then flat.
fn bounded_input_shapes(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (6.0, 24.0), 10.0);
    p.workload = Workload::Steady { every_s: rng.range(20.0, 120.0), tokens: 64 };
    let per = rng.range(50.0, 800.0);
    let b = base(rng);
    // `sizes_seen` counts distinct sizes among 4–10 (see `simulate`); all are seen early.
    (p, Box::new(move |c, _| both(b + per * c.sizes_seen as f64, 0.0)), MemTruth::NoLeak)
}

/// A cache that fills and is flushed: a sawtooth whose troughs stay level.
fn sawtooth_cache(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let p = plan(rng, (3.0, 24.0), 5.0);
    let (b, amp, period_h) = (base(rng), rng.log_range(20.0, 500.0), rng.range(10.0, 90.0) / 60.0);
    let shape = move |c: &Ctx, _: &mut Rng| both(b + amp * (c.t_h % period_h) / period_h, 0.0);
    (p, Box::new(shape), MemTruth::NoLeak)
}

/// Restarts that come back at other levels (a different cache, another context size).
fn restarts_baselines(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (4.0, 24.0), 10.0);
    let lives = rng.int(2, 6) as usize;
    p.restarts = (1..lives).map(|i| p.hours * i as f64 / lives as f64 + rng.range(-0.1, 0.1)).collect();
    let b = base(rng);
    let levels: Vec<f64> = (0..lives).map(|_| b * rng.range(0.7, 1.3)).collect();
    (p, Box::new(move |c, _| both(levels[c.life.min(levels.len() - 1)], 0.0)), MemTruth::NoLeak)
}

/// A server restarted every 20–40 min whose every life warms its caches by tens of MB over its
/// first requests, then stays flat.
fn short_lives_warmup(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (6.0, 24.0), 3.0);
    p.restarts = restarts_every(rng, p.hours, (20.0, 40.0));
    // The warm-up is over within the first 40 % of even the shortest life (then flat).
    p.workload = Workload::Steady { every_s: rng.range(5.0, 20.0), tokens: 64 };
    let (b, rise, tau_min, tau_req) = (base(rng), rng.range(10.0, 80.0), rng.range(0.5, 1.7), rng.range(2.0, 5.0));
    let by_requests = rng.chance(0.5);
    let shape = move |c: &Ctx, _: &mut Rng| {
        let f = if by_requests {
            1.0 - (-(c.served as f64) / tau_req).exp()
        } else {
            1.0 - (-c.life_h * 60.0 / tau_min).exp()
        };
        both(b + rise * f, 0.0)
    };
    (p, Box::new(shape), MemTruth::NoLeak)
}

/// A crash-looping server (failure shapes B6): lives of 2–12 min, each loading its model (memory
/// climbing to the full size over its first minute or two).
fn crash_loop(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (2.0, 12.0), 5.0);
    p.restarts = restarts_every(rng, p.hours, (2.0, 12.0));
    let (b, load_min) = (base(rng), rng.range(0.5, 2.0));
    let shape = move |c: &Ctx, _: &mut Rng| both(b * (0.3 + 0.7 * (c.life_h * 60.0 / load_min).min(1.0)), 0.0);
    (p, Box::new(shape), MemTruth::NoLeak)
}

/// Bursts allocate a lot, freed shortly after the burst ends: samples just after a burst are high,
/// idle ones back at the baseline.
fn load_spikes(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (4.0, 24.0), 5.0);
    p.workload = Workload::Bursts {
        every_min: rng.range(30.0, 120.0),
        requests: rng.int(20, 120) as u32,
        tokens: 128,
        probes: false,
    };
    p.around_requests = true;
    let (b, spike, tau_s) = (base(rng), rng.log_range(100.0, 2000.0), rng.range(10.0, 90.0));
    let shape = move |c: &Ctx, _: &mut Rng| {
        let hot = if c.in_flight > 0 { 1.0 } else { c.idle_min.map_or(0.0, |m| (-m * 60.0 / tau_s).exp()) };
        both(b + spike * hot, 0.0)
    };
    (p, Box::new(shape), MemTruth::NoLeak)
}

/// Ollama's keep-alive / LM Studio's TTL (failure shapes C1): after a long idle gap the model is
/// unloaded (memory back to the runner's baseline) and the next request loads it again; the root
/// process stays the same.
fn idle_unload(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (6.0, 24.0), 5.0);
    let ttl_min = rng.range(5.0, 30.0);
    p.workload =
        Workload::Bursts { every_min: rng.range(ttl_min + 10.0, 120.0), requests: 30, tokens: 64, probes: false };
    let (runner, model) = (rng.range(50.0, 300.0), rng.range(1000.0, 16_000.0));
    let shape = move |c: &Ctx, _: &mut Rng| {
        let loaded = c.in_flight > 0 || c.idle_min.is_some_and(|m| m < ttl_min);
        both(runner + if loaded { model } else { 0.0 }, 0.0)
    };
    (p, Box::new(shape), MemTruth::NoLeak)
}

/// Too short a soak to say anything: minutes of samples, flat or warming up.
fn too_little(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (5.0 / 60.0, 28.0 / 60.0), 5.0);
    p.idle_every_s = rng.range(10.0, 60.0);
    let (b, rise) = (base(rng), if rng.chance(0.5) { rng.range(5.0, 100.0) } else { 0.0 });
    let shape = move |c: &Ctx, _: &mut Rng| both(b + rise * (1.0 - (-c.life_h * 12.0).exp()), 0.0);
    (p, Box::new(shape), MemTruth::NoLeak)
}

// ---------------------------------------------------------------------------------------------
// Leaks

/// Growth that is plainly there: the total over the log is 8–2000 noise sds (and ≥ 20 MB).
fn clear_total(rng: &mut Rng, noise: Noise, hours: f64) -> f64 {
    let sd = noise_sd(noise);
    ((rng.log_range(8.0, 2000.0) * sd).max(20.0) / hours).max(rng.range(2.0, 4.0))
}

fn noise_sd(n: Noise) -> f64 {
    match n {
        Noise::White(sd) | Noise::Grainy { sd, .. } => sd,
        Noise::Lumpy { sd, lump, .. } => sd.max(lump / 2.0),
    }
}

/// Steady growth in time (failure shapes A6, A7).
fn leak_linear(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let p = plan(rng, (2.0, 24.0), 10.0);
    let (b, slope) = (base(rng), clear_total(rng, p.noise, p.hours));
    let truth = MemTruth::Leak { mb_per_hour: Some(slope), mb_per_1k_requests: None };
    (p, Box::new(move |c, _| both(b + slope * c.t_h, 0.0)), truth)
}

/// A fixed amount held per finished request (failure shapes A1 before its plateau, A6, llama.cpp
/// #27725): growth follows the requests, in bursts or steadily.
fn leak_per_request(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let p = plan(rng, (2.0, 24.0), 5.0);
    let per_h = requests_per_hour(&p.workload);
    let slope = clear_total(rng, p.noise, p.hours);
    let per = slope / per_h; // MB per request
    let b = base(rng);
    let truth = MemTruth::Leak { mb_per_hour: None, mb_per_1k_requests: Some(per * 1000.0) };
    (p, Box::new(move |c, _| both(b + per * c.served as f64, 0.0)), truth)
}

pub fn requests_per_hour(w: &Workload) -> f64 {
    match *w {
        Workload::Steady { every_s, .. } | Workload::TwoJobs { every_s, .. } => 3600.0 / every_s,
        Workload::Bursts { every_min, requests, probes, .. } => {
            f64::from(requests) * 60.0 / every_min + if probes { 12.0 } else { 0.0 }
        }
    }
}

/// llama-server growing per generated token (failure shapes A2): two jobs at 64 and 512 max_tokens.
fn leak_per_token(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (3.0, 24.0), 5.0);
    let every_s = rng.range(10.0, 90.0);
    p.workload = Workload::TwoJobs { every_s, a: 64, b: 512 };
    let tokens_per_h = 3600.0 / every_s * (64.0 + 512.0) / 2.0;
    let slope = clear_total(rng, p.noise, p.hours);
    let per_token = slope / tokens_per_h;
    let b = base(rng);
    let truth = MemTruth::Leak { mb_per_hour: None, mb_per_1k_requests: None };
    (p, Box::new(move |c, _| both(b + per_token * c.tokens as f64, 0.0)), truth)
}

/// Each life leaks from the same baseline: restarts hide nothing.
fn leak_across_restarts(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (4.0, 24.0), 5.0);
    let lives = rng.int(2, 5) as usize;
    p.restarts = (1..lives).map(|i| p.hours * i as f64 / lives as f64 + rng.range(-0.1, 0.1)).collect();
    let (b, slope) = (base(rng), clear_total(rng, p.noise, p.hours / lives as f64));
    let truth = MemTruth::Leak { mb_per_hour: Some(slope), mb_per_1k_requests: None };
    (p, Box::new(move |c, _| both(b + slope * c.life_h, 0.0)), truth)
}

/// A server restarted every 30–120 min (a nightly job, a watchdog, a crash) that loads its model
/// and warms its caches after each start, then leaks through the rest of every life.
fn leak_frequent_restarts(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (6.0, 24.0), 5.0);
    p.restarts = restarts_every(rng, p.hours, (30.0, 120.0));
    let (b, slope) = (base(rng), clear_total(rng, p.noise, 1.0));
    let (rise, tau_min) = (rng.range(0.0, 80.0), rng.range(0.5, 3.0));
    let truth = MemTruth::Leak { mb_per_hour: Some(slope), mb_per_1k_requests: None };
    let shape =
        move |c: &Ctx, _: &mut Rng| both(b + rise * (1.0 - (-c.life_h * 60.0 / tau_min).exp()) + slope * c.life_h, 0.0);
    (p, Box::new(shape), truth)
}

/// A sawtooth GC over a rising floor: each flush frees the cache, the troughs still climb.
fn leak_sawtooth(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (4.0, 12.0), 2.0);
    p.noise = Noise::White(rng.log_range(0.1, 2.0));
    let (b, amp, period_h) = (base(rng), rng.log_range(50.0, 500.0), rng.range(15.0, 60.0) / 60.0);
    let slope = rng.range(5.0, 40.0).max(30.0 / p.hours);
    let truth = MemTruth::Leak { mb_per_hour: Some(slope), mb_per_1k_requests: None };
    let shape = move |c: &Ctx, _: &mut Rng| both(b + slope * c.t_h + amp * (c.t_h % period_h) / period_h, 0.0);
    (p, Box::new(shape), truth)
}

/// Leaks only under load: each burst leaves the idle level higher (failure shapes A3's runner, the
/// seed's "memory after load").
fn leak_under_load(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (6.0, 24.0), 5.0);
    let every_min = rng.range(30.0, 90.0);
    p.workload = Workload::Bursts { every_min, requests: rng.int(20, 100) as u32, tokens: 128, probes: false };
    let per_burst = rng.log_range(5.0, 200.0).max(3.0 * noise_sd(p.noise));
    let (b, spike) = (base(rng), rng.range(50.0, 500.0));
    let truth = MemTruth::Leak { mb_per_hour: None, mb_per_1k_requests: None };
    let shape = move |c: &Ctx, _: &mut Rng| {
        let hot = if c.in_flight > 0 { spike } else { 0.0 };
        both(b + per_burst * c.bursts as f64 + hot, 0.0)
    };
    (p, Box::new(shape), truth)
}

/// A warm-up, then steady growth.
fn leak_after_warmup(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let p = plan(rng, (3.0, 24.0), 5.0);
    let (b, rise, span) = (base(rng), rng.log_range(50.0, 2000.0), rng.range(0.05, 0.2) * p.hours);
    let slope = clear_total(rng, p.noise, p.hours);
    let truth = MemTruth::Leak { mb_per_hour: Some(slope), mb_per_1k_requests: None };
    let shape =
        move |c: &Ctx, _: &mut Rng| both(b + rise * (1.0 - (-c.life_h / (span / 3.0)).exp()) + slope * c.t_h, 0.0);
    (p, Box::new(shape), truth)
}

/// MLX's buffer cache keyed by input shape with a fresh random length every time (docs/failure-shapes.md
/// A5): it keeps stepping.
fn leak_new_sizes(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (4.0, 24.0), 5.0);
    let every_s = rng.range(20.0, 120.0);
    p.workload = Workload::Steady { every_s, tokens: 64 };
    let per = rng.range(5.0, 100.0).max(4.0 * noise_sd(p.noise));
    let b = base(rng);
    // Sizes are drawn from thousands (see `simulate`): nearly every request brings a new one.
    let truth = MemTruth::Leak { mb_per_hour: None, mb_per_1k_requests: Some(per * 600.0) };
    (p, Box::new(move |c, _| both(b + per * c.unique_prompts as f64, 0.0)), truth)
}

/// Ollama's runner leaking anonymous memory that is swapped out (failure shapes A3): RSS flat, the
/// footprint (RssAnon + VmSwap) growing 3–12 MB per request.
fn leak_footprint_only(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let mut p = plan(rng, (3.0, 24.0), 3.0);
    p.footprint = true;
    let per = rng.range(3.0, 12.0);
    let (b, rss) = (rng.range(200.0, 2000.0), rng.range(60.0, 400.0));
    let truth = MemTruth::Leak { mb_per_hour: None, mb_per_1k_requests: Some(per * 1000.0) };
    (p, Box::new(move |c, _| (rss, b + per * c.served as f64)), truth)
}

/// A real leak under the MLX server's lumpy noise.
fn leak_lumpy(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let (mut p, _, _) = flat_lumpy(rng);
    let b = rng.range(16_000.0, 20_000.0);
    let slope = rng.log_range(10.0, 100.0) * 60.0 / p.hours; // 600–6000 MB over the log
    p.hours = p.hours.max(4.0);
    let truth = MemTruth::Leak { mb_per_hour: Some(slope), mb_per_1k_requests: None };
    (p, Box::new(move |c, _| both(b + slope * c.t_h, 0.0)), truth)
}

/// Steady growth with one unrelated step in it.
fn leak_plus_step(rng: &mut Rng) -> (Plan, Shape, MemTruth) {
    let p = plan(rng, (3.0, 24.0), 5.0);
    let (b, slope) = (base(rng), clear_total(rng, p.noise, p.hours));
    let (size, at) = (rng.range(100.0, 800.0), rng.range(0.2, 0.8) * p.hours);
    let truth = MemTruth::Leak { mb_per_hour: Some(slope), mb_per_1k_requests: None };
    (p, Box::new(move |c, _| both(b + slope * c.t_h + if c.t_h >= at { size } else { 0.0 }, 0.0)), truth)
}

// ---------------------------------------------------------------------------------------------
// The log

struct Planned {
    start: i64,
    end: i64,
    job: &'static str,
    tokens: u32,
    prompt: u64,
    burst_end: bool,
}

/// Lays out the requests, lives and samples of `plan`, asking `shape` for the memory.
/// Returns the log, and the noise-free memory (hours, MB of the metric soakd will judge) at its idle
/// samples.
pub fn simulate(rng: &mut Rng, plan: &Plan, mut shape: Shape) -> (Log, Vec<(f64, f64)>) {
    let end = T0 + (plan.hours * HOUR as f64) as i64;
    let planned = requests(rng, plan, end);
    // Lives: [start, end) with a pid; a restart leaves 2–30 s with no process.
    let mut lives: Vec<(i64, i64, u32)> = Vec::new();
    let mut from = T0 - rng.int(1, 600) * SEC;
    for (i, r) in plan.restarts.iter().enumerate() {
        let at = T0 + (r * HOUR as f64) as i64;
        lives.push((from, at, 4000 + 17 * i as u32));
        from = at + rng.int(2, 30) * SEC;
    }
    lives.push((from, i64::MAX, 4000 + 17 * plan.restarts.len() as u32));
    let life_of = |t: i64| lives.iter().position(|l| t >= l.0 && t < l.1);

    let mut log = Log { backend: "backend".into(), ..Log::default() };
    let mut seq = vec![0u64; lives.len()];
    for (w, p) in planned.iter().enumerate() {
        let life = life_of(p.start);
        let (pid, s) = match life {
            Some(l) => {
                seq[l] += 1;
                (Some(lives[l].2), Some(seq[l]))
            }
            None => (None, None),
        };
        let up = life.is_some();
        log.requests.push(Req {
            started_at: p.start,
            e2e_ms: if up { (p.end - p.start) as f64 } else { 1.5 },
            outcome: if up { "ok" } else { "connect_refused" },
            http_status: up.then_some(200),
            error: (!up).then(|| "error sending request: tcp connect error: Connection refused (os error 111)".into()),
            job: p.job.into(),
            worker: 0,
            concurrency: 1,
            prompt_chars: 400 + (p.prompt % 50) as u32 * 37,
            prompt_tokens: Some(100),
            completion_tokens: up.then_some(p.tokens),
            max_tokens: p.tokens,
            gap_ms: (w > 0).then(|| (p.start - planned[w - 1].end).max(0) as f64),
            server_pid: pid,
            server_seq: s,
        });
    }

    // Sample times: the idle cadence, plus before/after each request, plus `during` every 10 s.
    let mut times: Vec<(i64, &'static str)> = Vec::new();
    let mut t = T0;
    while t < end {
        times.push((t, "idle"));
        t += (plan.idle_every_s * SEC as f64 * rng.range(0.95, 1.05)) as i64;
    }
    for p in &planned {
        if plan.around_requests {
            times.push((p.start - 1, "before"));
            times.push((p.end + 1, "after"));
        }
        let mut d = p.start + 10 * SEC;
        while d < p.end {
            times.push((d, "during"));
            d += 10 * SEC;
        }
    }
    times.sort_by_key(|t| t.0);

    let mut noise = NoiseState::new(plan.noise);
    let mut clean = Vec::new();
    let (mut next_req, mut served, mut tokens) = (0usize, vec![0u64; lives.len()], vec![0u64; lives.len()]);
    let mut sizes: Vec<std::collections::BTreeSet<u64>> = vec![Default::default(); lives.len()];
    let mut prompts: Vec<std::collections::BTreeSet<u64>> = vec![Default::default(); lives.len()];
    let mut bursts = vec![0u64; lives.len()];
    let mut last_end: Option<i64> = None;
    let mut finished: Vec<usize> = Vec::new(); // requests started, by index, not yet ended
    for (at, phase) in times {
        // Requests that ended by now count as served (in the life they started in).
        while next_req < planned.len() && planned[next_req].start <= at {
            finished.push(next_req);
            next_req += 1;
        }
        let mut in_flight = 0;
        finished.retain(|&i| {
            let p = &planned[i];
            if p.end <= at {
                if let Some(l) = life_of(p.start) {
                    served[l] += 1;
                    tokens[l] += u64::from(p.tokens);
                    sizes[l].insert(p.prompt % 7);
                    prompts[l].insert(p.prompt);
                    bursts[l] += u64::from(p.burst_end);
                }
                last_end = Some(last_end.map_or(p.end, |e: i64| e.max(p.end)));
                false
            } else {
                in_flight += 1;
                true
            }
        });
        let phase = if in_flight > 0 { "during" } else { phase };
        if phase != "during" && in_flight > 0 {
            continue;
        }
        let Some(l) = life_of(at) else { continue };
        let ctx = Ctx {
            t_h: (at - T0) as f64 / HOUR as f64,
            life: l,
            life_h: (at - lives[l].0) as f64 / HOUR as f64,
            served: served[l],
            tokens: tokens[l],
            sizes_seen: sizes[l].len() as u64,
            unique_prompts: prompts[l].len() as u64,
            bursts: bursts[l],
            idle_min: last_end.map(|e| (at - e) as f64 / MIN as f64),
            in_flight,
        };
        let (rss, footprint) = shape(&ctx, rng);
        let n = noise.at(at, rng);
        if in_flight == 0 {
            clean.push((ctx.t_h, if plan.footprint { footprint } else { rss }));
        }
        log.samples.push(Sample {
            taken_at: at,
            pid: Some(lives[l].2),
            proc_started_at: Some(lives[l].0 / 1000),
            phase,
            in_flight,
            rss: Some(((rss + n) * MB).max(1e6)),
            footprint: plan.footprint.then(|| ((footprint + n) * MB).max(1e5)),
            sys_available: 24e9,
        });
    }
    for w in lives.windows(2) {
        let detail = format!("{{\"old_pid\": {}, \"new_pid\": {}}}", w[0].2, w[1].2);
        log.events.push(super::Event { at: w[1].0 + 1000, kind: "restart", detail });
    }
    (log, clean)
}

/// The planned requests of the workload, in start order. `prompt` is the prompt's identity: 60 %
/// of requests carry a new one (unique prompts); its size bucket is `prompt % 7` (a bounded shape
/// set), and `leak_new_input_sizes` counts `unique_prompts`.
fn requests(rng: &mut Rng, plan: &Plan, end: i64) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut next_prompt = 10u64;
    let mut prompt = |rng: &mut Rng| {
        if rng.chance(0.6) {
            next_prompt += 1;
            next_prompt
        } else {
            rng.int(0, 9) as u64
        }
    };
    let e2e = |rng: &mut Rng, tokens: u32| (200.0 + f64::from(tokens) * rng.range(10.0, 40.0)) as i64;
    match plan.workload.clone() {
        Workload::Steady { every_s, tokens } => {
            let mut t = T0 + rng.int(0, 30) * SEC;
            while t < end {
                let d = e2e(rng, tokens);
                out.push(Planned {
                    start: t,
                    end: t + d,
                    job: "steady",
                    tokens,
                    prompt: prompt(rng),
                    burst_end: false,
                });
                t += d + (every_s * SEC as f64 * rng.range(0.8, 1.2)) as i64;
            }
        }
        Workload::TwoJobs { every_s, a, b } => {
            let mut t = T0 + rng.int(0, 30) * SEC;
            while t < end {
                let hour = (t - T0) / HOUR;
                let (job, tokens) = if hour % 2 == 0 { ("short", a) } else { ("long", b) };
                let d = e2e(rng, tokens);
                out.push(Planned { start: t, end: t + d, job, tokens, prompt: prompt(rng), burst_end: false });
                t += d + (every_s * SEC as f64 * rng.range(0.8, 1.2)) as i64;
            }
        }
        Workload::Bursts { every_min, requests, tokens, probes } => {
            let mut t = T0 + rng.int(1, 10) * MIN;
            let mut probe = T0 + 5 * MIN;
            while t < end {
                let mut u = t;
                for i in 0..requests {
                    let d = e2e(rng, tokens);
                    let last = i + 1 == requests;
                    out.push(Planned {
                        start: u,
                        end: u + d,
                        job: "burst",
                        tokens,
                        prompt: prompt(rng),
                        burst_end: last,
                    });
                    u += d + rng.int(0, 2000);
                }
                let next = t + (every_min * MIN as f64) as i64;
                while probes && probe < next.min(end) {
                    if probe > u {
                        let d = e2e(rng, 16);
                        out.push(Planned {
                            start: probe,
                            end: probe + d,
                            job: "probe",
                            tokens: 16,
                            prompt: 1,
                            burst_end: false,
                        });
                    }
                    probe += 5 * MIN;
                }
                t = next.max(u + MIN);
            }
        }
    }
    out.sort_by_key(|p| p.start);
    // Sequential: a request never starts before the previous one ended.
    for i in 1..out.len() {
        if out[i].start <= out[i - 1].end {
            let shift = out[i - 1].end + 5 - out[i].start;
            out[i].start += shift;
            out[i].end += shift;
        }
    }
    out.retain(|p| p.end < end);
    out
}

struct NoiseState {
    kind: Noise,
    last: Option<(i64, f64)>,
    lump: f64,
    lump_until: i64,
}

impl NoiseState {
    fn new(kind: Noise) -> NoiseState {
        NoiseState { kind, last: None, lump: 0.0, lump_until: 0 }
    }

    /// The noise at `at` (MB); successive calls move forward in time.
    fn at(&mut self, at: i64, rng: &mut Rng) -> f64 {
        match self.kind {
            Noise::White(sd) => sd * rng.normal(),
            Noise::Grainy { sd, grain } => (sd * rng.normal() / grain).round() * grain,
            Noise::Lumpy { sd, tau_min, lump, lump_every_min } => {
                let dt_min = self.last.map_or(1e9, |(t, _)| (at - t) as f64 / MIN as f64);
                let prev = self.last.map_or(0.0, |(_, x)| x);
                let a = (-dt_min / tau_min).exp();
                let x = prev * a + sd * (1.0 - a * a).sqrt() * rng.normal();
                self.last = Some((at, x));
                if at >= self.lump_until {
                    self.lump = 0.0;
                    if rng.chance((dt_min.min(60.0) / lump_every_min).min(1.0)) {
                        self.lump = lump * rng.range(-1.0, 1.0);
                        self.lump_until = at + (rng.range(2.0, 30.0) * MIN as f64) as i64;
                    }
                }
                x + self.lump
            }
        }
    }
}
