//! `lorad`: the daemon's entry point. See the library crate for everything else.
//!
//! # Exit statuses
//!
//! | status | meaning | examples |
//! |---|---|---|
//! | 0 | success | `serve` stopped by SIGINT/SIGTERM after a graceful shutdown |
//! | 1 | runtime failure | the engine failed, a write to stdout failed (a closed pipe, as in `lorad ... \| head`, is success) |
//! | 2 | command-line syntax error (clap) | unknown flag, `--dtype f8`, `--listen nowhere` |
//! | 64 (`EX_USAGE`) | an argument value is unusable | `--max-batch-size 0`, invalid `--log-level`, `adapter rm` / `generate --adapter` of an unknown adapter |
//! | 65 (`EX_DATAERR`) | a bad input file | `adapter import` of an adapter that fails validation or conflicts with an existing one |
//! | 69 (`EX_UNAVAILABLE`) | the listen address cannot be bound | port in use, address not local |
//! | 78 (`EX_CONFIG`) | misconfiguration | unusable home directory, `--model` missing or unloadable, default model absent and not fetchable |
//!
//! For systemd: `RestartPreventExitStatus=2 64 65 78` keeps a misconfigured unit from restart
//! loops; 1 and 69 are worth retrying.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use lorad::cli::Cli;
use lorad::exit::{exit_code_of, is_broken_pipe, render};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The config file fills in what flags and environment left at their defaults, before
    // logging starts (it may set the log level).
    let result = lorad::config::merge(&mut cli, &matches)
        .and_then(|()| lorad::logging::init(cli.log_level.as_deref(), cli.log_format))
        .map(|()| lorad::logging::install_panic_hook())
        .and_then(|()| lorad::try_main(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            lorad::logging::fatal(&render(&err));
            ExitCode::from(exit_code_of(&err))
        }
    }
}
