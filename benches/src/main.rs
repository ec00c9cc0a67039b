//! Comparative benchmarks; each compares us against a peer in the same run and prints ratios.
//! Run with `cargo run --release -p benches -- <name>`.
use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("benches: no benchmark registered yet");
    ExitCode::SUCCESS
}
