//! The L2 follower `lorad serve` runs for the signing gate: every `--l2-follow-secs` it syncs
//! the L1 light client from its saved finalized root, proves the newest output root the
//! rollup's L1 anchor holds and the L2 block it names (`lorad_lightclient::l2::follow_once`),
//! and adds that block to the verified state the gate reads at. A failed round is logged and
//! retried; the gate meanwhile refuses receipts once the newest block is older than its policy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use lorad_lightclient::l2::{RollupConfig, follow_once};
use lorad_lightclient::rpc::http::{HttpBeacon, HttpExecution};
use lorad_lightclient::sync::SyncOptions;
use lorad_lightclient::verified::VerifiedState;

use super::lightclient::online::{SavedState, load_state, now_unix, save_state, state_path};
use super::lightclient::{network_config, parse_root};
use crate::cli::ServeArgs;
use crate::exit::{ExitExt, ExitKind, coded};

/// Oldest checkpoint the follower starts from (the weak-subjectivity window).
const MAX_CHECKPOINT_AGE: u64 = 14 * 24 * 3600;

/// What the follower needs, checked before serving starts.
#[derive(Debug)]
pub(crate) struct FollowConfig {
    beacon_url: String,
    l1_url: String,
    l2_url: String,
    rollup: RollupConfig,
    network: String,
    checkpoint: Option<String>,
    interval: Duration,
    state_file: PathBuf,
}

impl FollowConfig {
    /// From `lorad serve`'s flags; `None` unless `--l2-rpc` is given without the dev trust.
    pub(crate) fn from_args(home: &Path, args: &ServeArgs) -> anyhow::Result<Option<Self>> {
        let Some(l2_url) = &args.l2_rpc else { return Ok(None) };
        if args.l2_trust_rpc_head {
            return Ok(None);
        }
        let missing = |flag: &str| {
            coded(
                ExitKind::Usage,
                anyhow::anyhow!(
                    "--l2-rpc needs {flag} (the light client proves L2 blocks from L1), or \
                     --l2-trust-rpc-head on a development chain"
                ),
            )
        };
        let beacon_url = args.l1_beacon_url.clone().ok_or_else(|| missing("--l1-beacon-url"))?;
        let l1_url = args.l1_execution_url.clone().ok_or_else(|| missing("--l1-execution-url"))?;
        let rollup_path = args.rollup.clone().ok_or_else(|| missing("--rollup"))?;
        let text = std::fs::read_to_string(&rollup_path)
            .exit_kind(ExitKind::Config)
            .with_context(|| format!("cannot read {}", rollup_path.display()))?;
        let rollup: RollupConfig = serde_json::from_str(&text)
            .exit_kind(ExitKind::Config)
            .with_context(|| format!("{} is not a rollup config", rollup_path.display()))?;
        let cfg = network_config(&args.lc_network)?;
        let state_file = state_path(home, &cfg.name);
        if args.lc_checkpoint.is_none() && load_state(&state_file)?.is_none() {
            return Err(missing("--lc-checkpoint (no saved light-client state yet)"));
        }
        if args.l2_follow_secs == 0 {
            return Err(coded(
                ExitKind::Usage,
                anyhow::anyhow!("--l2-follow-secs must be at least 1"),
            ));
        }
        Ok(Some(Self {
            beacon_url,
            l1_url,
            l2_url: l2_url.clone(),
            rollup,
            network: args.lc_network.clone(),
            checkpoint: args.lc_checkpoint.clone(),
            interval: Duration::from_secs(args.l2_follow_secs),
            state_file,
        }))
    }

    /// Starts the follower thread; it feeds `state` until the process ends.
    pub(crate) fn spawn(self, state: Arc<Mutex<VerifiedState>>) -> anyhow::Result<()> {
        std::thread::Builder::new()
            .name("l2-follower".into())
            .spawn(move || {
                loop {
                    if let Err(e) = self.round(&state) {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "L2 follower round failed; retrying"
                        );
                    }
                    std::thread::sleep(self.interval);
                }
            })
            .context("cannot start the L2 follower thread")?;
        Ok(())
    }

    fn round(&self, state: &Mutex<VerifiedState>) -> anyhow::Result<()> {
        let cfg = network_config(&self.network)?;
        let checkpoint = match load_state(&self.state_file)? {
            Some(saved) => saved.finalized.beacon_root,
            None => parse_root("--lc-checkpoint", self.checkpoint.as_deref().unwrap_or_default())?,
        };
        let now = now_unix();
        let opts = SyncOptions {
            current_slot: cfg.slot_at_time(now),
            max_checkpoint_age: Some((now, MAX_CHECKPOINT_AGE)),
            finality: true,
            optimistic: false,
        };
        let timeout = Duration::from_secs(30);
        let beacon = HttpBeacon::new(&self.beacon_url, timeout);
        let (l1, l2) =
            (HttpExecution::new(&self.l1_url, timeout), HttpExecution::new(&self.l2_url, timeout));
        let (block, report) =
            follow_once(&cfg, &beacon, checkpoint, opts, &l1, &l2, &self.rollup.anchor)?;
        tracing::info!(
            l2_block = block.number,
            label = ?block.label,
            l1_block = report.finalized.execution_block_number,
            "verified L2 block for receipts"
        );
        state
            .lock()
            .map_err(|_| anyhow::anyhow!("the verified state lock is poisoned"))?
            .insert(block);
        let saved = SavedState {
            network: cfg.name.clone(),
            checkpoint,
            finalized: report.finalized.clone(),
            optimistic: report.optimistic.clone(),
            synced_at_unix: now,
        };
        save_state(&self.state_file, &saved)
    }
}
