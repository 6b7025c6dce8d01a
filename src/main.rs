//! The `soakd` binary: parse the command line, run it, print the error chain, exit.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = soakd::cli::Cli::parse();
    match soakd::run_cli(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("soakd: {}", soakd::secrets::scrub(&format!("{e:#}")));
            soakd::commands::exit_code(&e)
        }
    }
}
