//! Network parameters the sync protocol depends on: presets, fork schedule, domains.
//!
//! The light client needs only a handful of constants per network: the genesis validators
//! root (it is mixed into every signing domain, so signatures from another network never
//! verify), the fork versions and their epochs (the signing domain changes at each fork,
//! and the light-client containers change shape at Capella, Deneb and Electra), and the
//! preset sizes (sync committee size and period length).

use alloy_primitives::{B256, FixedBytes, b256};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::LightClientError;

/// `DOMAIN_SYNC_COMMITTEE`: the domain type sync committees sign block roots under.
pub const DOMAIN_SYNC_COMMITTEE: [u8; 4] = [7, 0, 0, 0];

/// The consensus forks. Only those that change what a light client sees are
/// distinguished after Altair; light-client data before Capella is not supported
/// (it has no execution header, so it cannot anchor execution state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fork {
    /// Genesis (phase 0).
    Phase0,
    /// Altair: sync committees appear.
    Altair,
    /// Bellatrix: the merge.
    Bellatrix,
    /// Capella: light-client headers carry the execution payload header.
    Capella,
    /// Deneb: execution header gains blob gas fields.
    Deneb,
    /// Electra: beacon state grows, so the state gindices gain one level.
    Electra,
    /// Fulu: same light-client containers and gindices as Electra.
    Fulu,
}

impl Fork {
    /// All forks, oldest first.
    pub const ALL: [Fork; 7] = [
        Fork::Phase0,
        Fork::Altair,
        Fork::Bellatrix,
        Fork::Capella,
        Fork::Deneb,
        Fork::Electra,
        Fork::Fulu,
    ];

    /// The Beacon-API `version` string (`"capella"`, `"deneb"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Fork::Phase0 => "phase0",
            Fork::Altair => "altair",
            Fork::Bellatrix => "bellatrix",
            Fork::Capella => "capella",
            Fork::Deneb => "deneb",
            Fork::Electra => "electra",
            Fork::Fulu => "fulu",
        }
    }

    /// Parses a Beacon-API `version` string.
    pub fn from_name(name: &str) -> Result<Fork, LightClientError> {
        Fork::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| LightClientError::UnsupportedFork { fork: name.to_owned() })
    }

    /// Depth of the finality branch in this fork's light-client containers.
    pub fn finality_depth(self) -> usize {
        if self >= Fork::Electra { 7 } else { 6 }
    }

    /// Depth of the (current and next) sync-committee branches.
    pub fn sync_committee_depth(self) -> usize {
        if self >= Fork::Electra { 6 } else { 5 }
    }
}

/// Generalized index of `finalized_checkpoint.root` in the beacon state.
pub fn finalized_root_gindex(fork: Fork) -> u64 {
    if fork >= Fork::Electra { 169 } else { 105 }
}

/// Generalized index of `current_sync_committee` in the beacon state.
pub fn current_sync_committee_gindex(fork: Fork) -> u64 {
    if fork >= Fork::Electra { 86 } else { 54 }
}

/// Generalized index of `next_sync_committee` in the beacon state.
pub fn next_sync_committee_gindex(fork: Fork) -> u64 {
    if fork >= Fork::Electra { 87 } else { 55 }
}

/// Generalized index of `execution_payload` in the beacon block body (Capella onwards).
pub const EXECUTION_PAYLOAD_GINDEX: u64 = 25;

/// Preset sizes (the spec's `mainnet` and `minimal` presets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preset {
    /// `SLOTS_PER_EPOCH`.
    pub slots_per_epoch: u64,
    /// `EPOCHS_PER_SYNC_COMMITTEE_PERIOD`.
    pub epochs_per_sync_committee_period: u64,
    /// `SYNC_COMMITTEE_SIZE`.
    pub sync_committee_size: usize,
}

impl Preset {
    /// The mainnet preset (used by every public network).
    pub const MAINNET: Preset = Preset {
        slots_per_epoch: 32,
        epochs_per_sync_committee_period: 256,
        sync_committee_size: 512,
    };
    /// The minimal preset (spec tests and small devnets).
    pub const MINIMAL: Preset =
        Preset { slots_per_epoch: 8, epochs_per_sync_committee_period: 8, sync_committee_size: 32 };

    /// Slots in one sync-committee period; also the spec's `UPDATE_TIMEOUT`.
    pub fn slots_per_period(&self) -> u64 {
        self.slots_per_epoch * self.epochs_per_sync_committee_period
    }
}

/// One entry of a fork schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkEntry {
    /// Which fork.
    pub fork: Fork,
    /// Its fork version.
    pub version: FixedBytes<4>,
    /// First epoch of the fork.
    pub epoch: u64,
}

/// Everything the light client needs to know about a beacon network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Name for logs (`mainnet`, `sepolia`, or the custom network's name).
    pub name: String,
    /// `genesis_validators_root`: mixed into every signing domain.
    pub genesis_validators_root: B256,
    /// Genesis time (unix seconds), to turn wall-clock time into slots.
    pub genesis_time: u64,
    /// `SECONDS_PER_SLOT`.
    pub seconds_per_slot: u64,
    /// Preset sizes.
    pub preset: Preset,
    /// Fork schedule, oldest first; forks not yet scheduled are simply absent.
    pub forks: Vec<ForkEntry>,
}

fn fork(fork: Fork, version: [u8; 4], epoch: u64) -> ForkEntry {
    ForkEntry { fork, version: FixedBytes(version), epoch }
}

impl NetworkConfig {
    /// Ethereum mainnet.
    pub fn mainnet() -> Self {
        NetworkConfig {
            name: "mainnet".into(),
            genesis_validators_root: b256!(
                "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
            ),
            genesis_time: 1_606_824_023,
            seconds_per_slot: 12,
            preset: Preset::MAINNET,
            forks: vec![
                fork(Fork::Phase0, [0, 0, 0, 0], 0),
                fork(Fork::Altair, [1, 0, 0, 0], 74_240),
                fork(Fork::Bellatrix, [2, 0, 0, 0], 144_896),
                fork(Fork::Capella, [3, 0, 0, 0], 194_048),
                fork(Fork::Deneb, [4, 0, 0, 0], 269_568),
                fork(Fork::Electra, [5, 0, 0, 0], 364_032),
                fork(Fork::Fulu, [6, 0, 0, 0], 411_392),
            ],
        }
    }

    /// The Sepolia testnet.
    pub fn sepolia() -> Self {
        NetworkConfig {
            name: "sepolia".into(),
            genesis_validators_root: b256!(
                "0xd8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078"
            ),
            genesis_time: 1_655_733_600,
            seconds_per_slot: 12,
            preset: Preset::MAINNET,
            forks: vec![
                fork(Fork::Phase0, [0x90, 0, 0, 0x69], 0),
                fork(Fork::Altair, [0x90, 0, 0, 0x70], 50),
                fork(Fork::Bellatrix, [0x90, 0, 0, 0x71], 100),
                fork(Fork::Capella, [0x90, 0, 0, 0x72], 56_832),
                fork(Fork::Deneb, [0x90, 0, 0, 0x73], 132_608),
                fork(Fork::Electra, [0x90, 0, 0, 0x74], 222_464),
                fork(Fork::Fulu, [0x90, 0, 0, 0x75], 272_640),
            ],
        }
    }

    /// A built-in network by name (`mainnet`, `sepolia`); custom networks come from config.
    pub fn by_name(name: &str) -> Result<Self, LightClientError> {
        match name {
            "mainnet" => Ok(Self::mainnet()),
            "sepolia" => Ok(Self::sepolia()),
            other => Err(LightClientError::UnknownNetwork { name: other.to_owned() }),
        }
    }

    /// Checks the schedule is usable: non-empty, epochs non-decreasing, forks in order.
    pub fn validate(&self) -> Result<(), LightClientError> {
        let bad = |reason: &str| LightClientError::BadNetworkConfig {
            name: self.name.clone(),
            reason: reason.to_owned(),
        };
        if self.forks.is_empty() {
            return Err(bad("empty fork schedule"));
        }
        if self.forks.windows(2).any(|w| w[1].epoch < w[0].epoch || w[1].fork <= w[0].fork) {
            return Err(bad("forks must be listed oldest first with non-decreasing epochs"));
        }
        let p = &self.preset;
        if p.slots_per_epoch == 0
            || p.epochs_per_sync_committee_period == 0
            || p.sync_committee_size == 0
            || !p.sync_committee_size.is_multiple_of(8)
        {
            return Err(bad("preset sizes must be positive (sync committee size a multiple of 8)"));
        }
        if self.seconds_per_slot == 0 {
            return Err(bad("seconds_per_slot must be positive"));
        }
        Ok(())
    }

    /// `compute_epoch_at_slot`.
    pub fn epoch_at_slot(&self, slot: u64) -> u64 {
        slot / self.preset.slots_per_epoch
    }

    /// `compute_sync_committee_period_at_slot`.
    pub fn period_at_slot(&self, slot: u64) -> u64 {
        slot / self.preset.slots_per_period()
    }

    fn entry_at_epoch(&self, epoch: u64) -> Option<&ForkEntry> {
        self.forks.iter().rev().find(|f| f.epoch <= epoch)
    }

    /// The fork active at `epoch` (phase 0 before the first scheduled fork).
    pub fn fork_at_epoch(&self, epoch: u64) -> Fork {
        self.entry_at_epoch(epoch).map_or(Fork::Phase0, |f| f.fork)
    }

    /// The fork active at `slot`.
    pub fn fork_at_slot(&self, slot: u64) -> Fork {
        self.fork_at_epoch(self.epoch_at_slot(slot))
    }

    /// `compute_fork_version`.
    pub fn fork_version_at_epoch(&self, epoch: u64) -> FixedBytes<4> {
        self.entry_at_epoch(epoch).map_or(FixedBytes::ZERO, |f| f.version)
    }

    /// The first epoch of `fork`, if scheduled.
    pub fn fork_epoch(&self, fork: Fork) -> Option<u64> {
        self.forks.iter().find(|f| f.fork == fork).map(|f| f.epoch)
    }

    /// `compute_fork_data_root(version, genesis_validators_root)`.
    pub fn fork_data_root(&self, version: FixedBytes<4>) -> B256 {
        let mut leaf = [0u8; 64];
        leaf[..4].copy_from_slice(version.as_slice());
        leaf[32..].copy_from_slice(self.genesis_validators_root.as_slice());
        B256::from_slice(&Sha256::digest(leaf))
    }

    /// `compute_fork_digest` as defined up to Electra (first 4 bytes of the fork data root).
    pub fn fork_digest(&self, version: FixedBytes<4>) -> FixedBytes<4> {
        FixedBytes::from_slice(&self.fork_data_root(version)[..4])
    }

    /// The fork whose digest is `digest` (how spec vectors and p2p name container types).
    pub fn fork_for_digest(&self, digest: FixedBytes<4>) -> Option<Fork> {
        self.forks.iter().find(|f| self.fork_digest(f.version) == digest).map(|f| f.fork)
    }

    /// `compute_domain(DOMAIN_SYNC_COMMITTEE, version, genesis_validators_root)`.
    pub fn sync_committee_domain(&self, version: FixedBytes<4>) -> B256 {
        let mut domain = [0u8; 32];
        domain[..4].copy_from_slice(&DOMAIN_SYNC_COMMITTEE);
        domain[4..].copy_from_slice(&self.fork_data_root(version)[..28]);
        B256::from(domain)
    }

    /// The slot in progress at `unix_seconds` (0 before genesis).
    pub fn slot_at_time(&self, unix_seconds: u64) -> u64 {
        unix_seconds.saturating_sub(self.genesis_time) / self.seconds_per_slot
    }

    /// Start time (unix seconds) of `slot`.
    pub fn slot_start_time(&self, slot: u64) -> u64 {
        self.genesis_time.saturating_add(slot.saturating_mul(self.seconds_per_slot))
    }
}

/// `compute_signing_root(object_root, domain)`: the message BLS signatures cover.
pub fn signing_root(object_root: B256, domain: B256) -> B256 {
    let mut leaf = [0u8; 64];
    leaf[..32].copy_from_slice(object_root.as_slice());
    leaf[32..].copy_from_slice(domain.as_slice());
    B256::from_slice(&Sha256::digest(leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainnet_capella_digest_matches_the_published_value() {
        // The Capella fork digest of mainnet is 0xbba4da96 (p2p topics use it).
        let cfg = NetworkConfig::mainnet();
        let digest = cfg.fork_digest(FixedBytes([3, 0, 0, 0]));
        assert_eq!(digest, FixedBytes([0xbb, 0xa4, 0xda, 0x96]));
        assert_eq!(cfg.fork_for_digest(digest), Some(Fork::Capella));
    }

    #[test]
    fn fork_lookup_by_epoch_and_period_math() {
        let cfg = NetworkConfig::mainnet();
        cfg.validate().unwrap();
        assert_eq!(cfg.fork_at_epoch(194_047), Fork::Bellatrix);
        assert_eq!(cfg.fork_at_epoch(194_048), Fork::Capella);
        assert_eq!(cfg.fork_at_slot(7_069_376), Fork::Capella);
        assert_eq!(cfg.period_at_slot(7_069_376), 862);
        assert_eq!(Fork::from_name("Deneb").unwrap(), Fork::Deneb);
        assert!(Fork::from_name("verkle").is_err());
    }

    #[test]
    fn bad_schedules_are_rejected() {
        let mut cfg = NetworkConfig::mainnet();
        cfg.forks.swap(2, 3);
        assert!(cfg.validate().is_err());
        let mut cfg = NetworkConfig::mainnet();
        cfg.preset.sync_committee_size = 7;
        assert!(cfg.validate().is_err());
        assert!(NetworkConfig::by_name("holesky").is_err());
    }
}
