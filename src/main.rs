//! The `ostiary` binary: parse the command line and run it.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = ostiary::cli::Cli::parse();
    let code = ostiary::cli::run(cli).await;
    std::process::exit(code);
}
