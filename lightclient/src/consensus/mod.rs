//! L1 consensus: the Altair light-client sync protocol, fork-aware from Capella on.
//!
//! Trust starts at one checkpoint block root chosen by the operator. A bootstrap proves the
//! sync committee at that checkpoint; each update is signed by a committee the store
//! already trusts and may prove the next one, so trust walks forward period by period.
//! The verified beacon headers carry execution payload headers (proven against the block
//! body), which yield the L1 execution state roots that [`crate::proof`] verifies against.
//!
//! - [`config`]: presets, fork schedules (mainnet, sepolia, custom), domains.
//! - [`types`]: the light-client containers, SSZ decoding and `hash_tree_root`.
//! - [`json`]: Beacon-API JSON into those containers.
//! - [`bls`]: sync-committee signature verification (`blst`).
//! - [`store`]: the sync protocol over a [`store::LightClientStore`].

pub mod bls;
pub mod config;
pub mod json;
pub(crate) mod ssz;
pub mod store;
pub mod types;

pub use config::{Fork, NetworkConfig, Preset};
pub use json::{
    parse_bootstrap_json, parse_finality_update_json, parse_optimistic_update_json,
    parse_updates_json,
};
pub use store::{LightClientStore, UpdateOutcome, verify_bootstrap, verify_checkpoint_age};
pub use types::{
    BeaconBlockHeader, ExecutionPayloadHeader, ForkedSsz, LightClientBootstrap, LightClientHeader,
    LightClientUpdate, SyncAggregate, SyncCommittee,
};
