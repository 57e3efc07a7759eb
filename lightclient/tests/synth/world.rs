//! The whole synthetic world, built once per test binary from fixed seeds:
//!
//! - L2: blocks 900 (Ecotone-style header), 1000 and 1100 (Isthmus) and the unsafe head 1150
//!   (gossip only), each with a lorad registry contract and message-passer storage;
//! - L1: an old state (rollup contracts deployed, nothing proposed yet) and the current state
//!   where outputs of the L2 blocks are posted in an `L2OutputOracle`, a
//!   `DisputeGameFactory` with five games, two `AnchorStateRegistry`s and a `SystemConfig`;
//! - the L1 beacon chain: a bootstrap in period 0, a sync-committee update handing over to
//!   period 1's committee (finalizing the old L1 state), and a period-1 finality update whose
//!   finalized header carries the current L1 state root.
//!
//! Timeline (T = L1 finalized block timestamp): L2 block `n` is at `T - 2400 + 2n`; oracle
//! output 0 (block 1000) was proposed at `T - 380`, output 1 (block 1100) at `T - 180`, so
//! with a 300 s finalization period the first is final and the second is not; game 0 (block
//! 1000) was won by the defender at `T - 350`, game 4 (block 1100) at `T - 100`; the clock
//! (`now`) reads `T + 60`.

use std::sync::OnceLock;

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, U256, address, keccak256};
use k256::ecdsa::SigningKey;
use lorad_lightclient::consensus::{
    LightClientBootstrap, LightClientUpdate, NetworkConfig, SyncCommittee,
};
use lorad_lightclient::op::anchor::{GAME_CHALLENGER_WINS, GAME_DEFENDER_WINS, mapping_slot};
use lorad_lightclient::op::{L2_TO_L1_MESSAGE_PASSER, OpExecutionPayload};

use super::beacon::{
    BuiltHeader, Committee, GENESIS_TIME, SECONDS_PER_SLOT, StateCommitments, build_header, config,
    execution_header,
};
use super::chain::{Block, Chain, L2BlockSpec, l2_block};
use super::l1::{
    GAME_IN_PROGRESS, Game, Proposal, deploy_game, factory_push, oracle_set_length,
    oracle_write_entry, registry_guard_write, registry_write, system_config_write,
};
use super::mpt::{State, slot};

// ---- L1 contracts ----
/// `L2OutputOracle` proxy.
pub(crate) const ORACLE: Address = address!("0x0000000000000000000000000000000000001001");
/// `DisputeGameFactory` proxy.
pub(crate) const FACTORY: Address = address!("0x0000000000000000000000000000000000001002");
/// `AnchorStateRegistry` whose anchor is game 0.
pub(crate) const REGISTRY: Address = address!("0x0000000000000000000000000000000000001003");
/// `AnchorStateRegistry` with no anchor game yet (starting root only).
pub(crate) const FRESH_REGISTRY: Address = address!("0x0000000000000000000000000000000000001004");
/// `AnchorStateRegistry` that has blacklisted game 4 and retires games created up to
/// [`RETIREMENT_AGO`] seconds before the current L1 block (games 0 and 1).
pub(crate) const GUARD_REGISTRY: Address = address!("0x0000000000000000000000000000000000001008");
/// `GUARD_REGISTRY`'s retirement timestamp, as an offset before the current L1 block's time.
pub(crate) const RETIREMENT_AGO: u64 = 188;
/// `SystemConfig` proxy.
pub(crate) const SYSTEM_CONFIG: Address = address!("0x0000000000000000000000000000000000001005");
/// `FaultDisputeGame` implementation the proxies clone.
pub(crate) const GAME_IMPL: Address = address!("0x0000000000000000000000000000000000001006");
/// The proposer EOA (the real `msg.sender` of `DisputeGameFactory.create`).
pub(crate) const PROPOSER: Address = address!("0x0000000000000000000000000000000000001007");
/// Oracle finalization period (seconds).
pub(crate) const FINALIZATION_PERIOD: u64 = 300;
/// Dispute game finality delay (seconds).
pub(crate) const FINALITY_DELAY: u64 = 300;

// ---- L2 ----
/// lorad's adapter registry on L2.
pub(crate) const L2_REGISTRY: Address = address!("0x000000000000000000000000000000000000c0de");
/// Adapter ids in the registry's `contentHash` mapping (slot 2).
pub(crate) const ADAPTER_A: B256 = B256::repeat_byte(0xa1);
/// An adapter that is registered only from block 1000.
pub(crate) const ADAPTER_B: B256 = B256::repeat_byte(0xb2);
/// The L2 chain id gossip is signed for.
pub(crate) const L2_CHAIN_ID: u64 = 901;
/// L2 blocks with L1 outputs (and the unsafe head).
pub(crate) const L2_OLD: u64 = 900;
/// Finalized via oracle output 0, game 0, and registry anchor game.
pub(crate) const L2_FINAL: u64 = 1000;
/// Safe only: oracle output 1 inside its period, games 1 and 4.
pub(crate) const L2_SAFE: u64 = 1100;
/// The unsafe head, known from gossip only.
pub(crate) const L2_UNSAFE: u64 = 1150;

/// `contentHash[adapter]` storage slot of the L2 registry.
pub(crate) fn adapter_slot(adapter: B256) -> B256 {
    mapping_slot(adapter, 2)
}

/// Everything a test needs.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) cfg: NetworkConfig,
    /// Trusted checkpoint: the bootstrap header's root.
    pub(crate) checkpoint: B256,
    pub(crate) bootstrap: LightClientBootstrap,
    /// Period 0: hands over to committee 1 and finalizes the old L1 block.
    pub(crate) sync_update: LightClientUpdate,
    /// Period 1: finalizes the current L1 block.
    pub(crate) finality_update: LightClientUpdate,
    /// The clock's slot for update processing.
    pub(crate) current_slot: u64,
    /// Committees of periods 0 and 1.
    pub(crate) committees: [Committee; 2],
    /// L1 execution chain: the old and the current block.
    pub(crate) l1: Chain,
    pub(crate) l1_old_number: u64,
    pub(crate) l1_number: u64,
    /// An L1 state that holds forged outputs (never finalized by the beacon chain).
    pub(crate) l1_forged: State,
    pub(crate) l2: Chain,
    /// The unsafe head's payload (block hash set).
    pub(crate) unsafe_payload: OpExecutionPayload,
    /// Dispute games 0..=4, in factory order.
    pub(crate) games: Vec<Game>,
    /// The sequencer's secp256k1 secret.
    sequencer_secret: [u8; 32],
    /// Wall clock for read policies.
    pub(crate) now: u64,
}

impl World {
    /// The sequencer's signing key.
    pub(crate) fn sequencer_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.sequencer_secret.into()).expect("valid scalar")
    }

    /// L1 finalized block timestamp `T`.
    pub(crate) fn l1_timestamp(&self) -> u64 {
        self.l1.block(self.l1_number).header.timestamp
    }
}

/// The shared world (built on first use; about a hundred BLS signatures).
pub(crate) fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build)
}

fn l2_state(number: u64) -> State {
    let mut s = State::default();
    // Some EOAs and predeploys so the state trie has depth.
    for i in 0..24u8 {
        let a = s.account(Address::with_last_byte(i).create(u64::from(i)));
        a.nonce = u64::from(i);
        a.balance = U256::from(1_000_000_000_000u64 * (u64::from(i) + 1));
    }
    let l1_block = address!("0x4200000000000000000000000000000000000015");
    s.set(l1_block, slot(0), U256::from(number / 2));
    s.set(l1_block, slot(1), U256::from(0x1234_5678u64));
    // The registry: owner, adapter count, contentHash mapping at slot 2.
    s.set(L2_REGISTRY, slot(0), U256::from_be_slice(PROPOSER.as_slice()));
    s.account(L2_REGISTRY).code = alloy_primitives::Bytes::from_static(&[0x60, 0x00, 0x35, 0x54]);
    let version = |tag: u8| keccak256([tag, (number % 256) as u8]);
    s.set_word(L2_REGISTRY, adapter_slot(ADAPTER_A), version(0xa1));
    let mut count = 1;
    if number >= L2_FINAL {
        s.set_word(L2_REGISTRY, adapter_slot(ADAPTER_B), version(0xb2));
        count = 2;
    }
    s.set(L2_REGISTRY, slot(1), U256::from(count));
    // L2ToL1MessagePasser: sentMessages[hash] = true (slot 0), msgNonce (slot 1).
    let messages = number / 100;
    for i in 0..messages {
        s.set(L2_TO_L1_MESSAGE_PASSER, mapping_slot(keccak256(i.to_be_bytes()), 0), U256::from(1));
    }
    s.set(L2_TO_L1_MESSAGE_PASSER, slot(1), (U256::from(1) << 240) | U256::from(messages));
    s
}

fn build() -> World {
    let cfg = config();
    let size = cfg.preset.sync_committee_size;
    let committees = [Committee::generate(0xc0, size), Committee::generate(0xc1, size)];
    let [a, b] = [&committees[0].committee, &committees[1].committee];

    // ---- L2 chain ----
    let t = GENESIS_TIME + 72 * SECONDS_PER_SLOT;
    let l2_ts = |n: u64| t - 2400 + 2 * n;
    let mut l2 = Chain::default();
    let mut parent = B256::repeat_byte(0x99);
    let mut unsafe_payload = None;
    for (number, isthmus) in [(L2_OLD, false), (L2_FINAL, true), (L2_SAFE, true), (L2_UNSAFE, true)]
    {
        let spec = L2BlockSpec { number, timestamp: l2_ts(number), parent_hash: parent, isthmus };
        let (block, payload) = l2_block(spec, l2_state(number));
        parent = block.header.hash_slow();
        if number == L2_UNSAFE {
            unsafe_payload = Some(payload);
        }
        l2.blocks.insert(number, block);
    }
    let root = |n: u64| l2.block(n).output_root();
    let forged_root = keccak256(b"forged output root");

    // ---- L1 states ----
    let sequencer_secret = [0x5e; 32];
    let sequencer = Address::from_private_key(
        &SigningKey::from_bytes(&sequencer_secret.into()).expect("valid scalar"),
    );
    let mut old = State::default();
    for i in 0..40u8 {
        old.account(Address::repeat_byte(i.wrapping_mul(37))).balance =
            U256::from(u64::from(i) + 1);
    }
    old.account(GAME_IMPL).code =
        alloy_primitives::Bytes::from_static(&[0x60, 0x80, 0x60, 0x40, 0x52]);
    system_config_write(&mut old, SYSTEM_CONFIG, sequencer);
    oracle_set_length(&mut old, ORACLE, 0);
    old.account(ORACLE);
    old.account(FACTORY);
    registry_write(&mut old, FRESH_REGISTRY, Address::ZERO, root(L2_OLD), L2_OLD);

    let mut cur = old.clone();
    oracle_write_entry(
        &mut cur,
        ORACLE,
        0,
        Proposal { output_root: root(L2_FINAL), timestamp: t - 380, l2_block_number: L2_FINAL },
    );
    oracle_write_entry(
        &mut cur,
        ORACLE,
        1,
        Proposal { output_root: root(L2_SAFE), timestamp: t - 180, l2_block_number: L2_SAFE },
    );
    // A deleted proposal: storage left behind past the length.
    oracle_write_entry(
        &mut cur,
        ORACLE,
        2,
        Proposal { output_root: forged_root, timestamp: t - 100, l2_block_number: L2_UNSAFE },
    );
    oracle_set_length(&mut cur, ORACLE, 2);
    // `creator` is `msg.sender` of `DisputeGameFactory.create`: the proposer.
    let game = |i: u8, l2_block_number, root_claim, created_at, resolved_at, status| Game {
        proxy: Address::left_padding_from(&[0x6a, 0x3e, i]),
        creator: PROPOSER,
        root_claim,
        l2_block_number,
        created_at,
        resolved_at,
        status,
    };
    let games = vec![
        game(0, L2_FINAL, root(L2_FINAL), t - 390, t - 350, GAME_DEFENDER_WINS),
        game(1, L2_SAFE, root(L2_SAFE), t - 190, 0, GAME_IN_PROGRESS),
        game(2, L2_SAFE, forged_root, t - 185, t - 120, GAME_CHALLENGER_WINS),
        game(3, L2_SAFE, forged_root, t - 150, 0, GAME_IN_PROGRESS),
        game(4, L2_SAFE, root(L2_SAFE), t - 170, t - 100, GAME_DEFENDER_WINS),
    ];
    for (i, g) in games.iter().enumerate() {
        deploy_game(&mut cur, GAME_IMPL, g);
        factory_push(&mut cur, FACTORY, i as u64, g.created_at, g.proxy);
    }
    registry_write(&mut cur, REGISTRY, games[0].proxy, root(L2_OLD), L2_OLD);
    registry_write(&mut cur, GUARD_REGISTRY, games[0].proxy, root(L2_OLD), L2_OLD);
    registry_guard_write(&mut cur, GUARD_REGISTRY, &[games[4].proxy], 0, t - RETIREMENT_AGO);

    // What an attacker would like L1 to say: a forged output at index 0.
    let mut l1_forged = cur.clone();
    oracle_write_entry(
        &mut l1_forged,
        ORACLE,
        0,
        Proposal { output_root: forged_root, timestamp: t - 380, l2_block_number: L2_FINAL },
    );

    // ---- L1 execution blocks ----
    let l1_header = |slot: u64, state: &State| Header {
        number: 20_000 + slot,
        timestamp: GENESIS_TIME + slot * SECONDS_PER_SLOT,
        state_root: state.root(),
        parent_hash: B256::with_last_byte(slot as u8),
        gas_limit: 36_000_000,
        base_fee_per_gas: Some(7),
        ..Header::default()
    };
    let mut l1 = Chain::default();
    let (old_header, cur_header) = (l1_header(32, &old), l1_header(72, &cur));
    let (l1_old_number, l1_number) = (old_header.number, cur_header.number);
    assert_eq!(cur_header.timestamp, t);
    let exec = |h: &Header| execution_header(h.number, h.timestamp, h.state_root, h.hash_slow());
    let (exec_old, exec_cur) = (exec(&old_header), exec(&cur_header));
    l1.blocks.insert(l1_old_number, Block { state: old, header: old_header });
    l1.blocks.insert(l1_number, Block { state: cur, header: cur_header });

    // ---- Beacon chain ----
    let commits = |current: &SyncCommittee, next: &SyncCommittee, epoch, root| BuiltHeaderInput {
        current: current.clone(),
        next: next.clone(),
        epoch,
        root,
    };
    let filler_exec = |slot: u64| {
        execution_header(
            20_000 + slot,
            GENESIS_TIME + slot * 12,
            keccak256(slot.to_le_bytes()),
            keccak256([slot as u8; 3]),
        )
    };
    let boot = header(&cfg, 8, B256::ZERO, filler_exec(8), &commits(a, b, 0, B256::ZERO));
    let checkpoint = boot.header.beacon.hash_tree_root();
    let fin0 = header(&cfg, 32, checkpoint, exec_old, &commits(a, b, 3, B256::repeat_byte(3)));
    let fin0_root = fin0.header.beacon.hash_tree_root();
    let att0 = header(&cfg, 40, fin0_root, filler_exec(40), &commits(a, b, 4, fin0_root));
    let sync_update = LightClientUpdate {
        sync_aggregate: committees[0].sign(&cfg, &att0.header.beacon, 41, |_| true),
        attested_header: att0.header,
        next_sync_committee: b.clone(),
        next_sync_committee_branch: att0.next_branch,
        finalized_header: fin0.header,
        finality_branch: att0.finality_branch,
        signature_slot: 41,
    };
    let fin1 = header(&cfg, 72, fin0_root, exec_cur, &commits(b, a, 8, fin0_root));
    let fin1_root = fin1.header.beacon.hash_tree_root();
    let att1 = header(&cfg, 80, fin1_root, filler_exec(80), &commits(b, a, 9, fin1_root));
    // 30 of 32 sign: a supermajority, not unanimity.
    let aggregate = committees[1].sign(&cfg, &att1.header.beacon, 81, |i| i % 16 != 5);
    let finality_update = LightClientUpdate::from_finality(
        att1.header,
        fin1.header,
        att1.finality_branch,
        aggregate,
        81,
        cfg.fork_at_slot(80),
    );
    let bootstrap = LightClientBootstrap {
        header: boot.header,
        current_sync_committee: a.clone(),
        current_sync_committee_branch: boot.current_branch,
    };

    World {
        cfg,
        checkpoint,
        bootstrap,
        sync_update,
        finality_update,
        current_slot: 90,
        committees,
        l1,
        l1_old_number,
        l1_number,
        l1_forged,
        l2,
        unsafe_payload: unsafe_payload.expect("built"),
        games,
        sequencer_secret,
        now: t + 60,
    }
}

/// Owned version of [`StateCommitments`] (closures cannot return borrowed ones).
struct BuiltHeaderInput {
    current: SyncCommittee,
    next: SyncCommittee,
    epoch: u64,
    root: B256,
}

fn header(
    cfg: &NetworkConfig,
    slot: u64,
    parent: B256,
    exec: lorad_lightclient::consensus::ExecutionPayloadHeader,
    c: &BuiltHeaderInput,
) -> BuiltHeader {
    let state = StateCommitments {
        current: &c.current,
        next: &c.next,
        finalized_epoch: c.epoch,
        finalized_root: c.root,
    };
    build_header(cfg, slot, parent, exec, &state)
}
