//! Light-client wire data, as untrusted peers and RPC endpoints send it: OP Stack sequencer
//! gossip (snappy-compressed and raw SSZ), beacon light-client JSON (bootstrap, updates,
//! finality and optimistic updates), and execution RPC JSON (block headers, EIP-1186 proofs,
//! which are then verified against the real block's state root). Seeds are the real-chain
//! fixtures (see `../shared/fixtures/lightclient/README.md`); without them these targets skip
//! loudly, and fail when `CI=true`.

use std::path::Path;

use lorad_fuzz::{Campaign, JsonMutator, Mutator, Outcome};
use lorad_lightclient::consensus::{
    Preset, parse_bootstrap_json, parse_finality_update_json, parse_optimistic_update_json,
    parse_updates_json,
};
use lorad_lightclient::op::{GossipEnvelope, PayloadVersion};
use lorad_lightclient::testing::fixtures_dir;
use lorad_lightclient::{parse_eip1186_response, parse_rpc_block_header, verify_eip1186};
use serde_json::Value;

const HELIOS_LC: &str = "a16z-helios/ethereum/testdata";
const HELIOS_RPC: &str = "a16z-helios/tests/testdata/rpc";
const VERSIONS: [PayloadVersion; 4] =
    [PayloadVersion::V1, PayloadVersion::V2, PayloadVersion::V3, PayloadVersion::V4];

fn read(dir: &Path, rel: &str) -> String {
    let path = dir.join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).expect("fixture hex")
}

/// The op-alloy envelopes, compressed as on the wire, one per payload version.
fn gossip_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let doc: Value =
        serde_json::from_str(&read(dir, "alloy-rs-op-alloy/op_network_payload_envelopes.json"))
            .expect("envelope fixture JSON");
    doc["network_envelopes"]
        .as_array()
        .expect("network_envelopes")
        .iter()
        .map(|v| unhex(v["snappy_block_compressed_hex"].as_str().expect("hex field")))
        .collect()
}

#[test]
fn lightclient_gossip() {
    let Some(dir) = fixtures_dir() else { return };
    let compressed = gossip_seeds(&dir);
    assert_eq!(compressed.len(), VERSIONS.len(), "one envelope per payload version");
    let raw: Vec<Vec<u8>> = compressed
        .iter()
        .map(|c| snap::raw::Decoder::new().decompress_vec(c).expect("fixture is snappy"))
        .collect();
    for (name, seeds, compressed) in
        [("gossip-snappy", &compressed, true), ("gossip-ssz", &raw, false)]
    {
        let campaign = Campaign::new(name, 400);
        let mut m = Mutator::new(campaign.seed(), 1 << 16);
        let mut turn = 0;
        let report = campaign.run(
            seeds,
            |s| m.mutate(s),
            |bytes| {
                // Each input is decoded as the version of the seed it came from.
                let version = VERSIONS[turn % VERSIONS.len()];
                turn += 1;
                let decoded = if compressed {
                    GossipEnvelope::decode(version, bytes)
                } else {
                    GossipEnvelope::decode_uncompressed(version, bytes)
                };
                decoded.map(|_| ()).map_err(|e| e.to_string())
            },
        );
        assert!(report.rejected > 0, "{name}: {report:?}");
    }
}

/// Runs a JSON campaign over `seeds` with `parse` as the target.
fn json_campaign(
    name: &str,
    seeds: &[Value],
    keys: &[&str],
    mut parse: impl FnMut(&str) -> Outcome,
) {
    let campaign = Campaign::new(name, 150);
    let mut m = JsonMutator::new(campaign.seed(), keys.iter().copied());
    let report = campaign.run(seeds, |s| m.mutate(s), |v| parse(&v.to_string()));
    assert!(report.rejected > 0, "{name}: {report:?}");
}

fn json_file(dir: &Path, rel: &str) -> Value {
    serde_json::from_str(&read(dir, rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn lightclient_beacon_json() {
    let Some(dir) = fixtures_dir() else { return };
    let size = Preset::MAINNET.sync_committee_size;
    let keys = [
        "data",
        "version",
        "header",
        "beacon",
        "execution",
        "execution_branch",
        "slot",
        "proposer_index",
        "parent_root",
        "state_root",
        "body_root",
        "current_sync_committee",
        "current_sync_committee_branch",
        "next_sync_committee",
        "next_sync_committee_branch",
        "pubkeys",
        "aggregate_pubkey",
        "attested_header",
        "finalized_header",
        "finality_branch",
        "sync_aggregate",
        "sync_committee_bits",
        "sync_committee_signature",
        "signature_slot",
    ];
    let file = |f: &str| json_file(&dir, &format!("{HELIOS_LC}/{f}"));
    json_campaign("beacon-bootstrap", &[file("bootstrap.json")], &keys, |t| {
        parse_bootstrap_json(t, size).map(|_| ()).map_err(|e| e.to_string())
    });
    json_campaign("beacon-updates", &[file("updates.json")], &keys, |t| {
        parse_updates_json(t, size).map(|_| ()).map_err(|e| e.to_string())
    });
    json_campaign("beacon-finality", &[file("finality.json")], &keys, |t| {
        parse_finality_update_json(t, size).map(|_| ()).map_err(|e| e.to_string())
    });
    json_campaign("beacon-optimistic", &[file("optimistic.json")], &keys, |t| {
        parse_optimistic_update_json(t, size).map(|_| ()).map_err(|e| e.to_string())
    });
}

#[test]
fn lightclient_execution_json() {
    let Some(dir) = fixtures_dir() else { return };
    let file = |f: &str| json_file(&dir, &format!("{HELIOS_RPC}/{f}"));
    let keys = [
        "result",
        "jsonrpc",
        "id",
        "error",
        "stateRoot",
        "hash",
        "parentHash",
        "number",
        "accountProof",
        "storageProof",
        "storageHash",
        "codeHash",
        "balance",
        "nonce",
        "key",
        "value",
        "proof",
        "address",
        "baseFeePerGas",
        "withdrawalsRoot",
    ];
    let (header, _) =
        parse_rpc_block_header(&file("block.json").to_string()).expect("fixture block header");
    json_campaign("rpc-block-header", &[file("block.json")], &keys, |t| {
        parse_rpc_block_header(t).map(|_| ()).map_err(|e| e.to_string())
    });
    json_campaign("rpc-eip1186", &[file("proof.json")], &keys, |t| {
        let response = parse_eip1186_response(t).map_err(|e| e.to_string())?;
        verify_eip1186(header.state_root, &response).map(|_| ()).map_err(|e| e.to_string())
    });
}
