//! The receipt path on a real EVM node (hardhat): contracts deployed and driven over
//! JSON-RPC with locally signed transactions, the gate's facts from `eth_getProof` verified
//! against the block's state root, a signed + journaled receipt submitted and settled once,
//! and a tampered adapter refused.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256, keccak256};
use common::hardhat::{DEV_KEYS, Hardhat};
use lorad_contracts::bindings::{
    AdapterRegistry, DatanetRegistry, NodeRegistry, OpenToken, Settlement,
};
use lorad_contracts::receipt::{contributor_id, domain};
use lorad_contracts::rpc::RpcChain;
use lorad_contracts::{DeployParams, Deployment, EvmBackendExt, NodeKey, OPEN};
use lorad_lightclient::op::anchor::{L1Anchor, L2Label, VerifiedL2Block};
use lorad_lightclient::rpc::http::HttpExecution;
use lorad_lightclient::verified::{ReadPolicy, VerifiedState};
use lorad_receipts::Journal;
use lorad_receipts::facts::{HeadRpc, ProofFacts, RpcHeadBlocks, VerifiedStateBlocks};
use lorad_receipts::gate::{Answer, FactSource, GatePolicy, Notary};
use lorad_receipts::submit::{Cursor, SubmitOptions, submit};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[test]
fn receipts_are_gated_by_proofs_and_settle_once_on_a_real_node() {
    let Some(node_proc) = Hardhat::start() else { return };
    let key = |s: &str| NodeKey::from_secret(s.parse().expect("hex")).expect("key");
    let (deployer, requester) = (key(DEV_KEYS[0]), key(DEV_KEYS[1]));
    let node = NodeKey::from_secret(keccak256("hardhat test node")).expect("key");
    let (d_addr, r_addr, n_addr) = (deployer.address(), requester.address(), node.address());
    let mut chain = RpcChain::connect(
        &node_proc.url,
        vec![
            deployer,
            requester,
            NodeKey::from_secret(keccak256("hardhat test node")).expect("key"),
        ],
        Duration::from_secs(30),
    )
    .expect("connect");
    // The node's key is fresh: give it gas money.
    chain
        .request("hardhat_setBalance", serde_json::json!([n_addr, "0x56BC75E2D63100000"]))
        .expect("setBalance");

    let treasury = Address::repeat_byte(0x7e);
    let d = Deployment::deploy(&mut chain, d_addr, &DeployParams::with_treasury(treasury))
        .expect("deploy");
    let c = &mut chain;
    c.send_call(
        d_addr,
        d.token,
        &OpenToken::transferCall { to: n_addr, value: U256::from(1_000 * OPEN) },
    )
    .expect("OPEN to node");
    c.send_call(
        d_addr,
        d.token,
        &OpenToken::transferCall { to: r_addr, value: U256::from(10_000 * OPEN) },
    )
    .expect("OPEN to requester");
    c.send_call(
        n_addr,
        d.token,
        &OpenToken::approveCall { spender: d.node_registry, value: U256::MAX },
    )
    .expect("approve");
    c.send_call(
        n_addr,
        d.node_registry,
        &NodeRegistry::stakeCall { amount: U256::from(1_000 * OPEN) },
    )
    .expect("stake");
    let (datanet, adapter) = (keccak256("sql"), keccak256("sql-expert"));
    let adapter_hash = keccak256("the adapter's weights");
    let base = keccak256("SmolLM2-135M-Instruct");
    c.send_call(
        d_addr,
        d.datanet_registry,
        &DatanetRegistry::createCall { datanetId: datanet, recordsRoot: B256::ZERO },
    )
    .expect("datanet");
    let alice = Address::repeat_byte(0xa1);
    let set = DatanetRegistry::setPayoutCall {
        datanetId: datanet,
        contributorId: contributor_id("alice"),
        payout: alice,
    };
    c.send_call(d_addr, d.datanet_registry, &set).expect("payout");
    let register = AdapterRegistry::registerCall {
        adapterId: adapter,
        contentHash: adapter_hash,
        baseModelHash: base,
        datanetId: datanet,
        priceInPer1k: 2 * OPEN,
        priceOutPer1k: 3 * OPEN,
    };
    c.send_call(d_addr, d.adapter_registry, &register).expect("register");
    c.send_call(
        r_addr,
        d.token,
        &OpenToken::approveCall { spender: d.settlement, value: U256::MAX },
    )
    .expect("approve");
    c.send_call(
        r_addr,
        d.settlement,
        &Settlement::depositCall { node: n_addr, amount: U256::from(10_000 * OPEN) },
    )
    .expect("deposit");

    // Facts from proofs at the RPC's head (the development block source).
    let rpc: Arc<dyn HeadRpc> =
        Arc::new(HttpExecution::new(&node_proc.url, Duration::from_secs(30)));
    let facts = ProofFacts::new(
        Arc::new(RpcHeadBlocks { rpc: rpc.clone() }),
        rpc.clone(),
        d.adapter_registry,
        d.node_registry,
        now,
    );
    let f = facts.facts(adapter, n_addr).expect("proven facts");
    assert_eq!(
        (f.adapter_content_hash, f.adapter_base_model_hash, f.adapter_datanet_id),
        (adapter_hash, base, datanet)
    );
    assert_eq!((f.node_stake, f.node_slashed), (U256::from(1_000 * OPEN), false));
    let unknown = facts
        .facts(keccak256("never registered"), Address::repeat_byte(9))
        .expect("proofs of absence");
    assert_eq!((unknown.adapter_content_hash, unknown.node_stake), (B256::ZERO, U256::ZERO));

    // The same through the light client's verified-state source.
    let head = rpc.head_number().expect("head");
    let (header, hash) = rpc.get_header(head).expect("header");
    let state = Arc::new(Mutex::new(VerifiedState::new(4)));
    state.lock().expect("lock").insert(VerifiedL2Block {
        number: head,
        hash,
        state_root: header.state_root,
        timestamp: header.timestamp,
        label: L2Label::Finalized,
        l1: L1Anchor {
            block_number: 1,
            block_hash: B256::ZERO,
            state_root: B256::ZERO,
            timestamp: header.timestamp,
        },
    });
    let policy = ReadPolicy { min_label: L2Label::Safe, max_age_secs: None };
    let lc_facts = facts.with_blocks(Arc::new(VerifiedStateBlocks { state, policy }));
    assert_eq!(lc_facts.facts(adapter, n_addr).expect("facts"), f);

    // Gate → sign → journal → submit → settled exactly once.
    let dir = tempfile::tempdir().expect("tempdir");
    let journal_path = dir.path().join("receipts.log");
    let (journal, _) = Journal::open(&journal_path).expect("journal");
    let gate = GatePolicy { max_block_age_secs: 3600, min_stake: U256::from(1_000 * OPEN) };
    let notary = Notary::new(
        node,
        Arc::new(journal),
        domain(31337, d.settlement),
        Some(Arc::new(lc_facts)),
        gate,
    );
    let answer = Answer {
        job_id: keccak256("job on hardhat"),
        requester: r_addr,
        adapter_id: adapter,
        adapter_hash,
        base_model_hash: base,
        prompt_hash: keccak256("prompt"),
        output_hash: keccak256("output"),
        tokens_in: 1_000,
        tokens_out: 500,
        datanet_id: datanet,
        attribution_root: keccak256("attribution"),
        weights: vec![(contributor_id("alice"), 3.0), (contributor_id("bob"), 1.0)],
    };
    let signed = notary.notarize(&answer, now()).expect("the gate passes");
    assert_eq!(signed.receipt.l2BlockNumber, head);
    let mut tampered = answer.clone();
    tampered.job_id = keccak256("another job");
    tampered.adapter_hash = keccak256("a tampered adapter file");
    assert_eq!(
        notary.notarize(&tampered, now()).expect_err("tampered").code,
        "adapter_hash_mismatch"
    );
    drop(notary);

    let mut cursor = Cursor::open(&dir.path().join("submitted")).expect("cursor");
    let options = SubmitOptions { settlement: d.settlement, from: n_addr, batch: 50 };
    let report =
        submit(&journal_path, &mut cursor, &mut chain, &options, |_, _| {}).expect("submit");
    assert_eq!((report.submitted, report.batches), (1, 1));
    let digest: B256 =
        chain.view(d.settlement, &Settlement::settledDigestCall(signed.job_id())).expect("view");
    assert_eq!(digest, signed.digest(&domain(31337, d.settlement)));
    // fee = (1000·2 + 500·3) OPEN = 3.5 OPEN; contributors' pool 40 %, alice 75 % of it.
    let fee = U256::from(3_500_000_000_000_000_000u128);
    let alice_gets = fee * U256::from(4_000u64) / U256::from(10_000u64) * U256::from(7_500u64)
        / U256::from(10_000u64);
    assert_eq!(
        chain.view(d.settlement, &Settlement::claimableCall(alice)).expect("claimable"),
        alice_gets
    );
    // Resubmitting finds it settled (chain first, then the cursor) and sends nothing.
    let again = submit(&journal_path, &mut cursor, &mut chain, &options, |_, _| {}).expect("again");
    assert_eq!((again.submitted, again.known_settled), (0, 1));
    let mut fresh = Cursor::open(&dir.path().join("fresh-cursor")).expect("cursor");
    let after_crash = submit(&journal_path, &mut fresh, &mut chain, &options, |_, _| {})
        .expect("after a lost cursor");
    assert_eq!((after_crash.submitted, after_crash.found_settled), (0, 1));
}
