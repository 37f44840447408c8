//! The machine's argon2 limit for `bench/run.sh`: `bench-argon2 SECONDS [THREADS]` verifies
//! bench-user's password against the server's own hash (the `password_hash` of
//! bench/config.toml.in, with the server's parameters) with `ostiary::crypto::secrets::argon2_verify`
//! on THREADS threads (default: the number of cores) for SECONDS, and prints
//! `argon2 verifications/s: N (...)` as measured, then the CPU time one verification took (from
//! /proc/thread-self/schedstat, so other processes on a shared machine do not inflate it) and the
//! limit of the machine's cores at that cost: `argon2 limit: L/s on C cores`. Password sign-ins
//! cannot go faster than that.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ostiary::crypto::secrets::argon2_verify;

const CONFIG: &str = include_str!("config.toml.in");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args
        .get(1)
        .map_or(5.0, |s| s.parse().expect("SECONDS is a number"));
    let threads: usize = args.get(2).map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |s| s.parse().expect("THREADS is a number"),
    );
    let phc = CONFIG
        .lines()
        .find_map(|l| l.trim().strip_prefix("password_hash = \""))
        .and_then(|rest| rest.split('"').next())
        .expect("bench/config.toml.in has a password_hash")
        .to_string();
    assert!(
        argon2_verify(&phc, "bench-password"),
        "the hash is not bench-password's"
    );
    assert!(!argon2_verify(&phc, "wrong"), "a wrong password verified");

    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let cpu_ns = Mutex::new(0u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let t0 = thread_cpu_ns();
                while !stop.load(Ordering::Relaxed) {
                    assert!(argon2_verify(&phc, "bench-password"));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                *cpu_ns.lock().unwrap() += thread_cpu_ns() - t0;
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    // Verifications still running when told to stop are counted, and so is their time.
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let per = *cpu_ns.lock().unwrap() as f64 / 1e6 / n as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "argon2 verifications/s: {:.1} ({threads} threads, {n} in {elapsed:.1} s; {per:.1} ms of CPU each)",
        n as f64 / elapsed
    );
    println!(
        "argon2 limit: {:.1}/s on {cores} cores",
        cores as f64 * 1000.0 / per
    );
}

/// CPU time of the calling thread so far, in nanoseconds (the first field of
/// /proc/thread-self/schedstat).
fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux /proc");
    s.split_whitespace().next().unwrap().parse().unwrap()
}
