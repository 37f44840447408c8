//! What `bench-argon2` and `bench-sign` share: run one operation on every core for a while and
//! turn the CPU time it took into the machine's limit for it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What [`measure`] saw.
pub struct Limit {
    /// Operations done (those still running when told to stop included).
    pub done: u64,
    /// Wall-clock seconds.
    pub elapsed: f64,
    /// Milliseconds of CPU one operation took (from /proc/thread-self/schedstat, so other
    /// processes on a shared machine do not inflate it).
    pub cpu_ms: f64,
    /// The machine's cores.
    pub cores: usize,
}

impl Limit {
    /// Operations a second as measured.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed
    }

    /// Operations a second that every core could do at this CPU cost.
    pub fn limit(&self) -> f64 {
        self.cores as f64 * 1000.0 / self.cpu_ms
    }
}

/// Runs `op` in a loop on `threads` threads for `secs` seconds.
pub fn measure(secs: f64, threads: usize, op: impl Fn() + Sync) -> Limit {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let cpu_ns = Mutex::new(0u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let t0 = thread_cpu_ns();
                while !stop.load(Ordering::Relaxed) {
                    op();
                    done.fetch_add(1, Ordering::Relaxed);
                }
                *cpu_ns.lock().unwrap() += thread_cpu_ns() - t0;
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let done = done.load(Ordering::Relaxed);
    let cpu_ns = *cpu_ns.lock().unwrap();
    Limit {
        done,
        elapsed: start.elapsed().as_secs_f64(),
        cpu_ms: cpu_ns as f64 / 1e6 / done as f64,
        cores: cores(),
    }
}

/// The tool's arguments `[SECONDS [THREADS]]`: SECONDS (default `default_secs`) and THREADS
/// (default: the machine's cores).
pub fn args(default_secs: f64) -> (f64, usize) {
    let args: Vec<String> = std::env::args().collect();
    let secs = args
        .get(1)
        .map_or(default_secs, |s| s.parse().expect("SECONDS is a number"));
    let threads = args
        .get(2)
        .map_or_else(cores, |s| s.parse().expect("THREADS is a number"));
    (secs, threads)
}

/// The machine's cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time of the calling thread so far, in nanoseconds (the first field of
/// /proc/thread-self/schedstat).
fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux /proc");
    s.split_whitespace().next().unwrap().parse().unwrap()
}
