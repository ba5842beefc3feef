//! `fleet`: parses the command line, runs the command, maps errors to the documented
//! exit codes (see `cli::exit`). No logic lives here.

use clap::Parser;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|arg| arg == fleet::runtime::reaper::KEEPER_ARG)
    {
        let code = match fleet::runtime::reaper::run_keeper() {
            Ok(()) => 0,
            Err(_) => fleet::cli::exit::FAILURE,
        };
        std::process::exit(code);
    }
    let cli = fleet::cli::Cli::parse();
    let code = match fleet::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            fleet::note!("{}", err.message);
            err.code
        }
    };
    std::process::exit(code);
}
