//! The chain of trust the OP tests start from: a store synced from the world's checkpoint,
//! the L1 block it verifies, and a Beacon API node serving the world's updates.

use std::cell::RefCell;

use lorad_lightclient::consensus::{LightClientStore, LightClientUpdate};
use lorad_lightclient::l2::finalized_l1_anchor;
use lorad_lightclient::op::anchor::L1Anchor;

use super::beacon_api::{BeaconNode, bootstrap_json, update_value};
use super::world::World;

/// Checkpoint → bootstrap → period-0 sync-committee update → period-1 finality update.
pub(crate) fn synced_store(w: &World) -> LightClientStore {
    let mut store = LightClientStore::bootstrap(&w.cfg, w.checkpoint, w.bootstrap.clone()).unwrap();
    let o = store.process_update(&w.cfg, w.sync_update.clone(), w.current_slot).unwrap();
    assert!(o.finalized_advanced && o.next_committee_learned, "{o:?}");
    let o =
        store.process_finality_update(&w.cfg, w.finality_update.clone(), w.current_slot).unwrap();
    assert!(o.finalized_advanced && o.period_advanced, "{o:?}");
    assert_eq!(store.period(&w.cfg), 1);
    assert_eq!(store.current_sync_committee.committee, w.committees[1].committee);
    store
}

/// Syncs and returns the L1 anchor, checking it is the L1 block the world posted outputs in.
pub(crate) fn l1_anchor(w: &World) -> L1Anchor {
    let l1 = finalized_l1_anchor(&synced_store(w));
    let block = w.l1.block(w.l1_number);
    assert_eq!(l1.block_number, w.l1_number);
    assert_eq!(l1.state_root, block.header.state_root);
    assert_eq!(l1.block_hash, block.header.hash_slow());
    assert_eq!(l1.timestamp, w.l1_timestamp());
    l1
}

/// A Beacon API node serving the world's bootstrap, period-0 update, `finality` and the
/// optimistic update derived from the honest finality update.
pub(crate) fn beacon_node(w: &World, finality: &LightClientUpdate) -> BeaconNode {
    let cfg = &w.cfg;
    let optimistic = LightClientUpdate::from_optimistic(
        w.finality_update.attested_header.clone(),
        w.finality_update.sync_aggregate.clone(),
        w.finality_update.signature_slot,
        cfg.fork_at_slot(w.finality_update.attested_header.beacon.slot),
    );
    BeaconNode {
        checkpoint: w.checkpoint,
        bootstrap: bootstrap_json(cfg, &w.bootstrap),
        updates: vec![(0, update_value(cfg, &w.sync_update))],
        finality: update_value(cfg, finality).to_string(),
        optimistic: update_value(cfg, &optimistic).to_string(),
        requests: RefCell::new(Vec::new()),
    }
}
