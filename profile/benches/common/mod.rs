//! What every bench binary reports next to its figures: how loaded the machine was
//! and how much CPU this process used.

use std::time::Duration;

/// The 1, 5 and 15-minute load averages (`/proc/loadavg`).
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU time of this process so far (user + system, all threads, including those
/// that already exited), from `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`: exact, unlike
/// the 10 ms ticks of `/proc/self/stat`, which miss short-lived threads.
pub(crate) fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The share of the machine's CPU time that the hypervisor gave to others (steal)
/// from its creation to [`Steal::percent`], from the first line of `/proc/stat`. On a
/// shared VM a run with high steal is a run on fewer cores than the machine has.
#[allow(dead_code, reason = "only the OpLog bench reports it so far")]
pub(crate) struct Steal {
    start: (u64, u64),
}

#[allow(dead_code, reason = "only the OpLog bench reports it so far")]
impl Steal {
    pub(crate) fn start() -> Self {
        Self {
            start: steal_and_total(),
        }
    }

    /// Steal time since [`Steal::start`], in percent of all CPU time.
    pub(crate) fn percent(&self) -> f64 {
        let (steal, total) = steal_and_total();
        let total = total.saturating_sub(self.start.1).max(1);
        steal.saturating_sub(self.start.0) as f64 * 100.0 / total as f64
    }
}

/// (steal, total) jiffies of all CPUs; zeros where `/proc/stat` is unreadable.
#[allow(dead_code, reason = "only the OpLog bench reports it so far")]
fn steal_and_total() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    (fields.get(7).copied().unwrap_or(0), fields.iter().sum())
}
