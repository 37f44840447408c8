//! The machine's argon2 limit for `bench/run.sh`: `bench-argon2 SECONDS [THREADS]` verifies
//! bench-user's password against the server's own hash (the `password_hash` of
//! bench/config.toml.in, with the server's parameters) with `ostiary::crypto::secrets::argon2_verify`
//! on THREADS threads (default: the number of cores) for SECONDS, and prints
//! `argon2 verifications/s: N (T threads, S s)`. Password sign-ins cannot go faster than this.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    assert!(argon2_verify(&phc, "bench-password"));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    // Verifications still running when told to stop are counted, and so is their time.
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "argon2 verifications/s: {:.1} ({threads} threads, {n} in {elapsed:.1} s)",
        n as f64 / elapsed
    );
}
