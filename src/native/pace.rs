//! How fast scans walk a node: one key budget per node, shared by every scan of it.
//!
//! `throttle.keys_per_second` bounds the keys walked per second on a node by all of the
//! exporter's scans together (hot keys, big keys and key families, every database): each
//! batch a scan takes reserves its share of the node's budget, and the scan waits until that
//! share's time has come. Two scans of one node take turns, so together they keep the pace one
//! scan alone would have.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The largest `SCAN COUNT` used.
pub const MAX_BATCH: u32 = 1000;
/// The most batches of one scan in flight at once.
pub const MAX_DEPTH: u32 = 4;

/// The settings of one scan.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub keys_per_second: u32,
    pub top_n: usize,
}

impl Pace {
    /// Keys per `SCAN`: a thousandth of a second's budget (10 to [`MAX_BATCH`]), so that
    /// one pipelined batch keeps the server busy only briefly at the default throttle (the
    /// server's other clients wait behind it) and round trips vanish at full speed.
    pub fn batch(&self) -> u32 {
        (self.keys_per_second / 1000).clamp(10, MAX_BATCH)
    }

    /// Batches in flight at once: one while the throttle holds batches below [`MAX_BATCH`]
    /// (a batch's work is then a short burst followed by a pause, and a second batch would only
    /// make the burst longer), more as the budget grows past full batches, up to
    /// [`MAX_DEPTH`], so that at full speed the server always has the next batch queued while
    /// the exporter reads the previous one.
    pub fn depth(&self) -> usize {
        (self.keys_per_second / (1000 * MAX_BATCH)).clamp(1, MAX_DEPTH) as usize
    }
}

/// The key budget of one node. After each batch a scan waits until the batch's share of
/// `keys_per_second` has passed. A scan that fell behind (a slow batch, a late timer) goes on
/// at its pace from there instead of catching up in a burst of back-to-back batches, which
/// would hold up the server's other clients just as a bigger batch would.
#[derive(Debug)]
pub struct Budget {
    keys_per_second: f64,
    due: Mutex<Option<Instant>>,
}

impl Budget {
    pub fn new(keys_per_second: u32) -> Self {
        Budget {
            keys_per_second: f64::from(keys_per_second.max(1)),
            due: Mutex::new(None),
        }
    }

    /// Counts `n` keys and sleeps until their share of the budget has passed.
    pub async fn spend(&self, n: u64) {
        let share = Duration::from_secs_f64(n as f64 / self.keys_per_second);
        let now = Instant::now();
        let until = {
            let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
            // Behind by more than this batch's share: the lost time is not made up.
            let earliest = now.checked_sub(share).unwrap_or(now);
            let next = due.unwrap_or(now).max(earliest) + share;
            *due = Some(next);
            next
        };
        if until > now {
            tokio::time::sleep_until(until).await;
        }
    }
}

/// Tells a scan that walks no key any more from one that goes slowly: stalled once the count
/// of keys walked has not moved for `limit`.
#[derive(Debug)]
pub struct Stall {
    limit: Duration,
    last: u64,
    since: Instant,
}

impl Stall {
    pub fn new(limit: Duration) -> Self {
        Stall {
            limit,
            last: 0,
            since: Instant::now(),
        }
    }

    /// Records the keys walked so far; `true` when none were walked for the limit.
    pub fn stalled(&mut self, walked: u64) -> bool {
        if walked != self.last {
            self.last = walked;
            self.since = Instant::now();
            return false;
        }
        self.since.elapsed() >= self.limit
    }
}

/// Counts keys across the nodes of one scan, for its progress.
#[derive(Debug, Default)]
pub struct Counter {
    pub scanned: AtomicU64,
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.scanned.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes back keys counted by a node's walk that starts over.
    pub fn take_back(&self, n: u64) {
        let _ = self
            .scanned
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    pub fn get(&self) -> u64 {
        self.scanned.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_scan_behind_its_budget_does_not_catch_up_in_a_burst() {
        let b = Budget::new(1000);
        let start = Instant::now();
        b.spend(10).await;
        assert_eq!(start.elapsed(), Duration::from_millis(10));
        // A slow batch: 100 ms instead of 10.
        tokio::time::advance(Duration::from_millis(100)).await;
        let late = Instant::now();
        // The next batch goes at once, the one after waits its share: no run of batches
        // making up the 90 ms lost.
        b.spend(10).await;
        assert_eq!(late.elapsed(), Duration::ZERO);
        b.spend(10).await;
        b.spend(10).await;
        assert_eq!(late.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn two_scans_of_one_node_share_its_budget() {
        let b = std::sync::Arc::new(Budget::new(1000));
        let start = Instant::now();
        // Two scans of 500 keys each, in batches of 10, side by side.
        let scan = |b: std::sync::Arc<Budget>| async move {
            for _ in 0..50 {
                b.spend(10).await;
            }
        };
        tokio::join!(scan(b.clone()), scan(b.clone()));
        // 1000 keys at 1000 keys/s: a second, not the half second each would take alone.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_is_stalled_only_after_walking_nothing_for_the_limit() {
        let mut s = Stall::new(Duration::from_secs(600));
        assert!(!s.stalled(0));
        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(!s.stalled(0));
        // One key, however slowly: the clock starts again.
        assert!(!s.stalled(1));
        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(!s.stalled(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(s.stalled(1));
        // A node scanned again from the start counts down: that is movement too.
        assert!(!s.stalled(0));
    }

    #[test]
    fn batch_follows_the_throttle_within_bounds() {
        let p = |k| Pace {
            keys_per_second: k,
            top_n: 1,
        };
        assert_eq!(p(10_000_000).batch(), 1000);
        assert_eq!(p(20_000).batch(), 20);
        assert_eq!(p(5).batch(), 10);
        // One batch at a time at the default throttle; more only at full batches.
        assert_eq!(p(20_000).depth(), 1);
        assert_eq!(p(1_000_000).depth(), 1);
        assert_eq!(p(2_000_000).depth(), 2);
        assert_eq!(p(10_000_000).depth(), MAX_DEPTH as usize);
    }
}
