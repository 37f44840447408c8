//! The machine's argon2 limit for `bench/run.sh`: `bench-argon2 SECONDS [THREADS]` verifies
//! bench-user's password against the server's own hash (the `password_hash` of
//! bench/config.toml.in, with the server's parameters) with `ostiary::crypto::secrets::argon2_verify`
//! on THREADS threads (default: the number of cores) for SECONDS, and prints
//! `argon2 verifications/s: N (...)` as measured, then the CPU time one verification took (from
//! /proc/thread-self/schedstat, so other processes on a shared machine do not inflate it) and the
//! limit of the machine's cores at that cost: `argon2 limit: L/s on C cores`. Password sign-ins
//! cannot go faster than that.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ostiary::crypto::secrets::argon2_verify;

#[path = "limit.rs"]
mod limit;

const CONFIG: &str = include_str!("config.toml.in");

fn main() {
    let (secs, threads) = limit::args(5.0);
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

    let m = limit::measure(secs, threads, || {
        assert!(argon2_verify(&phc, "bench-password"));
    });
    println!(
        "argon2 verifications/s: {:.1} ({threads} threads, {} in {:.1} s; {:.1} ms of CPU each)",
        m.rate(),
        m.done,
        m.elapsed,
        m.cpu_ms
    );
    println!("argon2 limit: {:.1}/s on {} cores", m.limit(), m.cores);
}
