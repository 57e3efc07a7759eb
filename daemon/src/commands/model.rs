//! `lorad model fetch`.

use std::path::Path;

use anyhow::Context;

use crate::cli::ModelCommand;
use crate::exit::{ExitExt, ExitKind};

/// Runs a model subcommand.
pub(crate) fn run(home: &Path, command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Fetch => {
            let path = lorad_model::fetch_default_model(home, true)
                .exit_kind(ExitKind::Config)
                .context("cannot fetch the default model")?;
            println!("{}", path.display());
            Ok(())
        }
    }
}
