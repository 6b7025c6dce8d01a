//! Memory ballast: the simulated leak. Grows per request and over time, stops at a cap (a
//! plateau) or is freed back to zero at a sawtooth size (a flushed cache). Every byte is written
//! with a non-zero value and held, so the growth really shows in RSS.
//!
//! The ballast grows by writing further into large reserved segments (allocations that big are
//! mapped apart from the heap), never by many small heap allocations: interleaved with each
//! request's short-lived buffers, those would pin freed heap memory and make RSS grow several
//! times faster than the ballast — the sim must leak at exactly the rate it was given.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::options::MemoryOptions;

/// 1 MiB, the unit of the `--*-mb` flags.
const CHUNK: usize = 1024 * 1024;
/// One reserved segment: allocated (virtually) at once, committed page by page as it is filled.
const SEGMENT: usize = 64 * CHUNK;
/// The smallest reservation for a noise buffer (see `noise`).
const NOISE_RESERVE: usize = 33 * CHUNK;
/// How often the per-hour growth task wakes.
const TICK: Duration = Duration::from_secs(1);
/// The byte every ballast page is filled with (non-zero, so no page stays shared/zero).
const FILL: u8 = 0xA5;

/// Held memory, shared by the request handlers and the growth task.
#[derive(Debug, Default)]
pub(crate) struct Ballast {
    cap: Option<usize>,
    sawtooth: Option<usize>,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    chunks: Vec<Vec<u8>>,
    bytes: usize,
}

impl Ballast {
    pub(crate) fn new(opts: &MemoryOptions) -> Ballast {
        Ballast { cap: opts.cap, sawtooth: opts.sawtooth, held: Mutex::new(Held::default()) }
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Grow by `bytes` (clamped to the cap); free everything once the sawtooth size is reached.
    /// Returns the size afterwards.
    pub(crate) fn grow(&self, bytes: usize) -> usize {
        let mut held = self.lock();
        let room = self.cap.map_or(usize::MAX, |cap| cap.saturating_sub(held.bytes));
        let mut left = bytes.min(room);
        while left > 0 {
            if held.chunks.last().is_none_or(|c| c.len() == c.capacity()) {
                held.chunks.push(Vec::with_capacity(SEGMENT));
            }
            let segment = held.chunks.last_mut().expect("a segment with room");
            let size = left.min(segment.capacity() - segment.len());
            segment.resize(segment.len() + size, FILL);
            held.bytes += size;
            left -= size;
        }
        if self.sawtooth.is_some_and(|tooth| held.bytes >= tooth) {
            tracing::debug!(bytes = held.bytes, "sim ballast reached the sawtooth size; freeing it");
            *held = Held::default();
        }
        held.bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // A panic while holding the lock cannot leave `Held` inconsistent, so keep going.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Grow the ballast at `bytes_per_hour`, in one-second steps that follow wall time (a machine
/// that slept catches up in one step), until `stop` changes.
pub(crate) async fn grow_over_time(
    ballast: std::sync::Arc<Ballast>,
    bytes_per_hour: usize,
    mut stop: watch::Receiver<bool>,
) {
    if bytes_per_hour == 0 {
        return;
    }
    let start = Instant::now();
    let mut granted: u128 = 0;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let step = usize::try_from(due(bytes_per_hour, start.elapsed()).saturating_sub(granted)).unwrap_or(usize::MAX);
        if step > 0 {
            granted += step as u128;
            ballast.grow(step);
        }
    }
}

/// Every tick, replace a buffer of random size in `0..=max_bytes` (seeded), until `stop`: the
/// old one is freed (whole segments go back to the system) and the new one written.
pub(crate) async fn noise(max_bytes: usize, seed: u64, mut stop: watch::Receiver<bool>) {
    if max_bytes == 0 {
        return;
    }
    let mut rng = super::behaviour::request_rng(seed, u64::MAX);
    let mut ticker = tokio::time::interval(TICK);
    let mut _held: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let size = rand::Rng::random_range(&mut rng, 0..=max_bytes);
        _held = Vec::new();
        // Reserved above glibc's largest mmap threshold (32 MiB), so every buffer is mapped on
        // its own and really given back when freed; only the written part counts in RSS.
        let mut buffer = Vec::with_capacity(size.max(NOISE_RESERVE));
        buffer.resize(size, FILL);
        _held = buffer;
    }
}

/// Bytes that `bytes_per_hour` has earned after `elapsed`.
fn due(bytes_per_hour: usize, elapsed: Duration) -> u128 {
    (bytes_per_hour as u128) * elapsed.as_millis() / 3_600_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ballast(cap_mb: Option<usize>, sawtooth_mb: Option<usize>) -> Ballast {
        Ballast::new(&MemoryOptions {
            cap: cap_mb.map(|m| m * CHUNK),
            sawtooth: sawtooth_mb.map(|m| m * CHUNK),
            ..MemoryOptions::default()
        })
    }

    #[test]
    fn grows_and_plateaus_at_the_cap() {
        let b = ballast(Some(3), None);
        assert_eq!(b.grow(CHUNK + 10), CHUNK + 10);
        assert_eq!(b.grow(5 * CHUNK), 3 * CHUNK);
        assert_eq!(b.grow(1), 3 * CHUNK);
        assert_eq!(b.bytes(), 3 * CHUNK);
    }

    #[test]
    fn sawtooth_frees_back_to_zero() {
        let b = ballast(None, Some(2));
        assert_eq!(b.grow(CHUNK), CHUNK);
        assert_eq!(b.grow(CHUNK), 0);
        assert_eq!(b.grow(10), 10);
    }

    #[test]
    fn every_byte_is_written() {
        let b = ballast(None, None);
        b.grow(3 * CHUNK / 2);
        let held = b.lock();
        assert!(held.chunks.iter().all(|c| c.iter().all(|&x| x == FILL)));
    }

    #[tokio::test]
    async fn noise_runs_until_stopped() {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(noise(2 * CHUNK, 1, rx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(2), task).await.expect("stops").expect("no panic");
        noise(0, 1, watch::channel(false).1).await; // no noise: returns at once
    }

    #[test]
    fn hourly_rate_is_spread_over_time() {
        assert_eq!(due(3600, Duration::from_secs(1)), 1);
        assert_eq!(due(100 * CHUNK, Duration::from_secs(1800)), 50 * CHUNK as u128);
        assert_eq!(due(0, Duration::from_secs(99)), 0);
    }

    #[tokio::test]
    async fn hourly_growth_runs_until_stopped() {
        let b = std::sync::Arc::new(ballast(None, None));
        let (tx, rx) = watch::channel(false);
        // 3600 MiB/hour = 1 MiB per second
        let task = tokio::spawn(grow_over_time(b.clone(), 3600 * CHUNK, rx));
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let grown = b.bytes();
        assert!((CHUNK / 2..=2 * CHUNK).contains(&grown), "{grown}");
        tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("task stops on shutdown")
            .expect("task did not panic");
    }
}
