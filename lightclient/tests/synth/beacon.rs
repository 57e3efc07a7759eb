//! A synthetic L1 beacon chain on the minimal preset: BLS sync committees from fixed seeds,
//! beacon headers whose state and body roots really commit (by SHA-256 Merkle branches) to the
//! sync committees, the finalized checkpoint and the execution payload header, and sync
//! aggregates really signed over the spec's signing root.

use alloy_primitives::{B256, Bytes, FixedBytes};
use blst::min_pk::{AggregatePublicKey, AggregateSignature, SecretKey, Signature};
use lorad_lightclient::consensus::config::{
    EXECUTION_PAYLOAD_GINDEX, ForkEntry, current_sync_committee_gindex, finalized_root_gindex,
    next_sync_committee_gindex, signing_root,
};
use lorad_lightclient::consensus::{
    BeaconBlockHeader, ExecutionPayloadHeader, Fork, LightClientHeader, NetworkConfig, Preset,
    SyncAggregate, SyncCommittee,
};

use super::merkle::{SparseTree, u64_chunk};

/// The Ethereum consensus BLS ciphersuite.
pub(crate) const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Genesis time of the synthetic network.
pub(crate) const GENESIS_TIME: u64 = 1_750_000_000;
/// Seconds per slot.
pub(crate) const SECONDS_PER_SLOT: u64 = 12;

/// A minimal-preset network with every fork up to Electra at genesis (fork versions as the
/// consensus-spec minimal config spells them).
pub(crate) fn config() -> NetworkConfig {
    let forks = [
        (Fork::Phase0, [0x00, 0, 0, 0x01]),
        (Fork::Altair, [0x01, 0, 0, 0x01]),
        (Fork::Bellatrix, [0x02, 0, 0, 0x01]),
        (Fork::Capella, [0x03, 0, 0, 0x01]),
        (Fork::Deneb, [0x04, 0, 0, 0x01]),
        (Fork::Electra, [0x05, 0, 0, 0x01]),
    ];
    let cfg = NetworkConfig {
        name: "synth-minimal".into(),
        genesis_validators_root: B256::repeat_byte(0x42),
        genesis_time: GENESIS_TIME,
        seconds_per_slot: SECONDS_PER_SLOT,
        preset: Preset::MINIMAL,
        forks: forks
            .into_iter()
            .map(|(fork, v)| ForkEntry { fork, version: FixedBytes(v), epoch: 0 })
            .collect(),
    };
    cfg.validate().expect("synthetic network config is valid");
    cfg
}

/// A sync committee with its secret keys.
#[derive(Debug)]
pub(crate) struct Committee {
    pub(crate) secret_keys: Vec<SecretKey>,
    pub(crate) committee: SyncCommittee,
}

impl Committee {
    /// `size` members whose keys are `KeyGen(ikm)` with `ikm = seed ‖ index ‖ 0…`.
    pub(crate) fn generate(seed: u8, size: usize) -> Self {
        let secret_keys: Vec<SecretKey> = (0..size)
            .map(|i| {
                let mut ikm = [0u8; 32];
                ikm[0] = seed;
                ikm[1..9].copy_from_slice(&(i as u64).to_le_bytes());
                ikm[31] = 0x5e;
                SecretKey::key_gen(&ikm, &[]).expect("32-byte ikm")
            })
            .collect();
        let pks: Vec<_> = secret_keys.iter().map(SecretKey::sk_to_pk).collect();
        let refs: Vec<_> = pks.iter().collect();
        let aggregate = AggregatePublicKey::aggregate(&refs, false).expect("valid keys");
        let committee = SyncCommittee {
            pubkeys: pks.iter().map(|pk| FixedBytes(pk.compress())).collect(),
            aggregate_pubkey: FixedBytes(aggregate.to_public_key().compress()),
        };
        Committee { secret_keys, committee }
    }

    /// The sync aggregate of members `participants` over `attested` signed at
    /// `signature_slot` (the domain's fork version is that of `signature_slot - 1`).
    pub(crate) fn sign(
        &self,
        cfg: &NetworkConfig,
        attested: &BeaconBlockHeader,
        signature_slot: u64,
        participants: impl Fn(usize) -> bool,
    ) -> SyncAggregate {
        let version = cfg.fork_version_at_epoch(cfg.epoch_at_slot(signature_slot.max(1) - 1));
        let message = signing_root(attested.hash_tree_root(), cfg.sync_committee_domain(version));
        let size = self.secret_keys.len();
        let mut bits = vec![0u8; size / 8];
        let mut sigs: Vec<Signature> = Vec::new();
        for (i, sk) in self.secret_keys.iter().enumerate().filter(|(i, _)| participants(*i)) {
            bits[i / 8] |= 1 << (i % 8);
            sigs.push(sk.sign(message.as_slice(), DST, &[]));
        }
        let refs: Vec<&Signature> = sigs.iter().collect();
        let aggregate = AggregateSignature::aggregate(&refs, false).expect("at least one signer");
        SyncAggregate {
            sync_committee_bits: bits,
            sync_committee_signature: FixedBytes(aggregate.to_signature().compress()),
        }
    }
}

/// An execution payload header for L1 block `number` at `timestamp` with state root
/// `state_root` and block hash `block_hash` (other fields filler, bloom of the right size).
pub(crate) fn execution_header(
    number: u64,
    timestamp: u64,
    state_root: B256,
    block_hash: B256,
) -> ExecutionPayloadHeader {
    ExecutionPayloadHeader {
        parent_hash: B256::with_last_byte((number % 251) as u8),
        state_root,
        receipts_root: B256::repeat_byte(0xee),
        logs_bloom: Bytes::from(vec![0u8; 256]),
        prev_randao: B256::repeat_byte(0x0d),
        block_number: number,
        gas_limit: 36_000_000,
        gas_used: 21_000,
        timestamp,
        extra_data: Bytes::from_static(b"synth"),
        base_fee_per_gas: alloy_primitives::U256::from(7u64),
        block_hash,
        transactions_root: B256::repeat_byte(0x77),
        withdrawals_root: B256::repeat_byte(0x88),
        blob_gas_used: 0,
        excess_blob_gas: 0,
        ..Default::default()
    }
}

/// What a beacon state commits to (only the fields light clients prove).
#[derive(Debug, Clone)]
pub(crate) struct StateCommitments<'a> {
    pub(crate) current: &'a SyncCommittee,
    pub(crate) next: &'a SyncCommittee,
    pub(crate) finalized_epoch: u64,
    pub(crate) finalized_root: B256,
}

/// A light-client header at `slot`, with its state-tree branches:
/// `(header, current-committee branch, next-committee branch, finality branch)`.
#[derive(Debug, Clone)]
pub(crate) struct BuiltHeader {
    pub(crate) header: LightClientHeader,
    pub(crate) current_branch: Vec<B256>,
    pub(crate) next_branch: Vec<B256>,
    pub(crate) finality_branch: Vec<B256>,
}

/// Builds a beacon block at `slot` whose body commits to `execution` and whose state commits
/// to `state`.
pub(crate) fn build_header(
    cfg: &NetworkConfig,
    slot: u64,
    parent_root: B256,
    execution: ExecutionPayloadHeader,
    state: &StateCommitments<'_>,
) -> BuiltHeader {
    let fork = cfg.fork_at_slot(slot);
    assert_eq!(fork, Fork::Electra, "the synthetic chain is Electra from genesis");
    let finalized_gindex = finalized_root_gindex(fork);
    let mut state_tree = SparseTree::new(
        &[
            (current_sync_committee_gindex(fork), state.current.hash_tree_root()),
            (next_sync_committee_gindex(fork), state.next.hash_tree_root()),
            // finalized_checkpoint = (epoch, root): epoch is the root's left sibling.
            (finalized_gindex - 1, u64_chunk(state.finalized_epoch)),
            (finalized_gindex, state.finalized_root),
        ],
        slot,
    );
    let mut header = LightClientHeader {
        beacon: BeaconBlockHeader {
            slot,
            proposer_index: slot % 17,
            parent_root,
            state_root: state_tree.root(),
            body_root: B256::ZERO,
        },
        execution,
        execution_branch: Vec::new(),
    };
    let mut body_tree =
        SparseTree::new(&[(EXECUTION_PAYLOAD_GINDEX, header.execution_root(cfg))], 1_000 + slot);
    header.beacon.body_root = body_tree.root();
    header.execution_branch = body_tree.branch(EXECUTION_PAYLOAD_GINDEX);
    BuiltHeader {
        current_branch: state_tree.branch(current_sync_committee_gindex(fork)),
        next_branch: state_tree.branch(next_sync_committee_gindex(fork)),
        finality_branch: state_tree.branch(finalized_gindex),
        header,
    }
}
