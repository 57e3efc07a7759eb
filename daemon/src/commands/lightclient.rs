//! `lorad lightclient verify-proof`: offline audit of a saved EIP-1186 response.

use std::io::Write;

use alloy_primitives::B256;
use anyhow::Context;

use crate::cli::LightclientCommand;
use crate::exit::{ExitKind, coded};

/// Runs a lightclient subcommand.
pub(crate) fn run(command: LightclientCommand) -> anyhow::Result<()> {
    match command {
        LightclientCommand::VerifyProof { file, state_root } => {
            let root: B256 = state_root.parse().map_err(|e| {
                coded(
                    ExitKind::Usage,
                    anyhow::anyhow!("--state-root {state_root:?} is not a 32-byte hex value: {e}"),
                )
            })?;
            let json = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(|e| coded(ExitKind::Usage, e))?;
            let response = lorad_lightclient::parse_eip1186_response(&json)
                .map_err(|e| coded(ExitKind::DataErr, e))
                .with_context(|| format!("{} is not an eth_getProof response", file.display()))?;
            let proof = lorad_lightclient::verify_eip1186(root, &response)
                .map_err(|e| coded(ExitKind::DataErr, e))
                .with_context(|| {
                    format!("{} does not verify against state root {root}", file.display())
                })?;
            let a = &proof.account;
            let mut out = std::io::stdout().lock();
            if a.exists {
                writeln!(
                    out,
                    "account {} verified: nonce {}, balance {} wei, storage root {}, code hash {}",
                    a.address, a.nonce, a.balance, a.storage_root, a.code_hash
                )?;
            } else {
                writeln!(out, "account {} verified absent", a.address)?;
            }
            for (slot, value) in &proof.storage {
                writeln!(out, "storage {slot} = {value:#x} verified")?;
            }
            writeln!(out, "all proofs verify against state root {root}")?;
        }
    }
    Ok(())
}
