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
