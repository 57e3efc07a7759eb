//! lorad, the daemon: one process per GPU node serving many LoRA adapters over one base LLM
//! through an OpenAI-compatible HTTP API.
//!
//! The binary (`main.rs`) only parses the command line, sets up logging and maps errors to exit
//! statuses ([`exit`]); everything else lives here so integration tests can drive it:
//! - [`cli`]: the command line;
//! - [`api`]: the HTTP API ([`api::router`] over an [`api::AppState`]);
//! - [`config`]: the configuration file, merged under flags and environment;
//! - [`try_main`]: runs a parsed command.

pub mod api;
pub mod cli;
mod commands;
pub mod config;
pub mod exit;
pub mod gpu;
pub mod logging;
mod notify;

use cli::{Cli, Command};

/// Runs the command `cli` asks for.
pub fn try_main(cli: Cli) -> anyhow::Result<()> {
    let home = cli.home.unwrap_or_else(lorad_model::default_home);
    match cli.command {
        Command::Model { command } => commands::model::run(&home, command),
        Command::Serve(args) => commands::serve::run(&home, cli.store_io, *args, cli.config),
        Command::Adapter { command } => commands::adapter::run(&home, cli.store_io, command),
        Command::Store { command } => commands::store::run(&home, cli.store_io, command),
        Command::Generate(args) => commands::generate::run(&home, cli.store_io, args),
        Command::Datanet { command } => commands::datanet::run(&home, command),
        Command::Finetune(args) => commands::finetune::run(&home, cli.store_io, args),
        Command::Lightclient { command } => commands::lightclient::run(&home, command),
        Command::Config { command: cli::ConfigCommand::Check } => {
            commands::config::check(cli.config.as_deref())
        }
        Command::Chain { command } => commands::chain::run(&home, cli.store_io, command),
        Command::Receipts { command } => commands::receipts::run(&home, command),
        Command::Attribution { command } => {
            commands::attribution::run(&home, cli.store_io, command)
        }
    }
}
