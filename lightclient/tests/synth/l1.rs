//! OP Stack L1 rollup contracts as raw storage, in the layouts `op/anchor.rs` documents:
//! `L2OutputOracle`, `DisputeGameFactory`, clone-with-immutable-args game proxies,
//! `AnchorStateRegistry` and `SystemConfig`.

use alloy_primitives::{Address, B256, Bytes, U256};
use lorad_lightclient::op::UNSAFE_BLOCK_SIGNER_SLOT;
use lorad_lightclient::op::anchor::{
    FACTORY_GAME_LIST_SLOT, GAME_STATUS_SLOT, ORACLE_OUTPUTS_SLOT, REGISTRY_ANCHOR_GAME_SLOT,
    REGISTRY_RETIREMENT_SLOT, REGISTRY_STARTING_ROOT_SLOT, array_element_slot, registry_game_slots,
};

use super::mpt::{State, slot};

/// Game status `IN_PROGRESS`.
pub(crate) const GAME_IN_PROGRESS: u8 = 0;
/// The `CANNON` game type.
pub(crate) const GAME_TYPE_CANNON: u32 = 0;

fn address_word(a: Address) -> U256 {
    U256::from_be_slice(a.as_slice())
}

fn plus_one(slot: B256) -> B256 {
    B256::from(U256::from_be_bytes(slot.0).wrapping_add(U256::from(1)).to_be_bytes::<32>())
}

/// One `L2OutputOracle.l2Outputs` entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Proposal {
    pub(crate) output_root: B256,
    pub(crate) timestamp: u64,
    pub(crate) l2_block_number: u64,
}

/// Writes `l2Outputs[index]` (root, then `(l2BlockNumber << 128) | timestamp`) without
/// touching the length: deleted proposals leave exactly such stale entries behind.
pub(crate) fn oracle_write_entry(state: &mut State, oracle: Address, index: u64, p: Proposal) {
    let root_slot = array_element_slot(ORACLE_OUTPUTS_SLOT, index, 2);
    state.set_word(oracle, root_slot, p.output_root);
    let meta = (U256::from(p.l2_block_number) << 128) | U256::from(p.timestamp);
    state.set(oracle, plus_one(root_slot), meta);
}

/// Sets `l2Outputs.length`.
pub(crate) fn oracle_set_length(state: &mut State, oracle: Address, length: u64) {
    state.set(oracle, slot(ORACLE_OUTPUTS_SLOT), U256::from(length));
}

/// `gameType(4) ‖ timestamp(8) ‖ proxy(20)`, big-endian.
pub(crate) fn game_id(game_type: u32, timestamp: u64, proxy: Address) -> U256 {
    (U256::from(game_type) << 224) | (U256::from(timestamp) << 160) | address_word(proxy)
}

/// Appends `proxy` to the factory's `_disputeGameList` at `index` and sets the length.
pub(crate) fn factory_push(
    state: &mut State,
    factory: Address,
    index: u64,
    created_at: u64,
    proxy: Address,
) {
    let element = array_element_slot(FACTORY_GAME_LIST_SLOT, index, 1);
    state.set(factory, element, game_id(GAME_TYPE_CANNON, created_at, proxy));
    state.set(factory, slot(FACTORY_GAME_LIST_SLOT), U256::from(index + 1));
}

/// Game immutable args: `creator(20) ‖ rootClaim(32) ‖ l1Head(32) ‖ l2BlockNumber(32)`.
pub(crate) fn game_args(
    creator: Address,
    root_claim: B256,
    l1_head: B256,
    l2_block_number: u64,
) -> Vec<u8> {
    let mut args = Vec::with_capacity(116);
    args.extend_from_slice(creator.as_slice());
    args.extend_from_slice(root_claim.as_slice());
    args.extend_from_slice(l1_head.as_slice());
    args.extend_from_slice(&U256::from(l2_block_number).to_be_bytes::<32>());
    args
}

/// Runtime code of a classic clones-with-immutable-args proxy (as `LibClone.clone(impl, data)`
/// deploys for `DisputeGameFactory.create`): 56-byte prefix, the args, then
/// `uint16(args.len() + 2)`.
pub(crate) fn cwia_clone_code(implementation: Address, args: &[u8]) -> Bytes {
    let extra = u16::try_from(args.len() + 2).expect("args fit a u16");
    let mut code = Vec::with_capacity(56 + args.len() + 2);
    code.extend_from_slice(&[0x36, 0x3d, 0x3d, 0x37, 0x61]);
    code.extend_from_slice(&extra.to_be_bytes());
    code.extend_from_slice(&[0x60, 0x38, 0x36, 0x39, 0x3d, 0x3d, 0x3d, 0x36, 0x61]);
    code.extend_from_slice(&extra.to_be_bytes());
    code.extend_from_slice(&[0x01, 0x3d, 0x73]);
    code.extend_from_slice(implementation.as_slice());
    code.extend_from_slice(&[
        0x5a, 0xf4, 0x3d, 0x82, 0x80, 0x3e, 0x90, 0x3d, 0x91, 0x60, 0x36, 0x57, 0xfd, 0x5b, 0xf3,
    ]);
    assert_eq!(code.len(), 56);
    code.extend_from_slice(args);
    code.extend_from_slice(&extra.to_be_bytes());
    Bytes::from(code)
}

/// `FaultDisputeGame` slot 0: `createdAt` (low 8 bytes), `resolvedAt` (next 8), `status`
/// (next byte, big-endian index 15).
pub(crate) fn game_status_word(created_at: u64, resolved_at: u64, status: u8) -> U256 {
    U256::from(created_at) | (U256::from(resolved_at) << 64) | (U256::from(status) << 128)
}

/// One dispute game to deploy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Game {
    pub(crate) proxy: Address,
    pub(crate) creator: Address,
    pub(crate) root_claim: B256,
    pub(crate) l2_block_number: u64,
    pub(crate) created_at: u64,
    pub(crate) resolved_at: u64,
    pub(crate) status: u8,
}

/// Deploys a game proxy (code + status slot) cloning `implementation`.
pub(crate) fn deploy_game(state: &mut State, implementation: Address, g: &Game) {
    let args = game_args(g.creator, g.root_claim, B256::repeat_byte(0x11), g.l2_block_number);
    state.account(g.proxy).code = cwia_clone_code(implementation, &args);
    state.set(
        g.proxy,
        slot(GAME_STATUS_SLOT),
        game_status_word(g.created_at, g.resolved_at, g.status),
    );
}

/// `AnchorStateRegistry`: `anchorGame` (slot 2) and `startingAnchorRoot` (slots 3, 4).
pub(crate) fn registry_write(
    state: &mut State,
    registry: Address,
    anchor_game: Address,
    starting_root: B256,
    starting_l2_block: u64,
) {
    // Slot 0 packs `_initialized` with `systemConfig`; not read, but present as on chain.
    state.set(registry, slot(0), U256::from(1) | (address_word(Address::repeat_byte(0x5c)) << 16));
    state.set(registry, slot(REGISTRY_ANCHOR_GAME_SLOT), address_word(anchor_game));
    state.set_word(registry, slot(REGISTRY_STARTING_ROOT_SLOT), starting_root);
    state.set(registry, slot(REGISTRY_STARTING_ROOT_SLOT + 1), U256::from(starting_l2_block));
}

/// `AnchorStateRegistry`'s guard rails: `disputeGameBlacklist[game] = true` for each of
/// `blacklisted` (slot 5), and slot 6 packing `respectedGameType` (low 4 bytes) with
/// `retirementTimestamp` (the 8 above).
pub(crate) fn registry_guard_write(
    state: &mut State,
    registry: Address,
    blacklisted: &[Address],
    respected_type: u32,
    retirement: u64,
) {
    for game in blacklisted {
        state.set(registry, registry_game_slots(*game)[0], U256::from(1));
    }
    let packed = U256::from(respected_type) | (U256::from(retirement) << 32);
    state.set(registry, slot(REGISTRY_RETIREMENT_SLOT), packed);
}

/// `SystemConfig`'s unsafe-block signer.
pub(crate) fn system_config_write(state: &mut State, system_config: Address, signer: Address) {
    state.set(system_config, UNSAFE_BLOCK_SIGNER_SLOT, address_word(signer));
}

#[cfg(test)]
mod tests {
    use super::*;
    use lorad_lightclient::op::anchor::parse_clone_args;

    #[test]
    fn clone_code_parses_back() {
        let args =
            game_args(Address::repeat_byte(1), B256::repeat_byte(2), B256::repeat_byte(3), 77);
        let code = cwia_clone_code(Address::repeat_byte(9), &args);
        let (imp, parsed) = parse_clone_args(&code).unwrap();
        assert_eq!(imp, Address::repeat_byte(9));
        assert_eq!(parsed, &args[..]);
        let word = game_status_word(5, 6, 2).to_be_bytes::<32>();
        assert_eq!(word[15], 2);
        assert_eq!(u64::from_be_bytes(word[16..24].try_into().unwrap()), 6);
        assert_eq!(u64::from_be_bytes(word[24..32].try_into().unwrap()), 5);
    }
}
