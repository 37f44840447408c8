//! The `ostiary` binary: parse the command line and run it.

use clap::Parser;

/// mimalloc, not glibc's malloc: a fifth of the server's CPU went to glibc's allocator under load
/// (bench/results/2026-12-02-mimalloc-no-thp.txt). Its `no_thp` feature keeps it off transparent
/// huge pages, which made 14 MB of its idle memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = ostiary::cli::Cli::parse();
    let code = ostiary::cli::run(cli).await;
    std::process::exit(code);
}
