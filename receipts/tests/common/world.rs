//! A deployed contract set with a staked node, a registered adapter and a funded escrow, on
//! the in-process EVM.

use alloy_primitives::{Address, B256, U256, keccak256};
use lorad_contracts::bindings::{
    AdapterRegistry, DatanetRegistry, NodeRegistry, OpenToken, Settlement,
};
use lorad_contracts::receipt::contributor_id;
use lorad_contracts::{
    DeployParams, Deployment, EvmBackendExt, EvmChain, NodeKey, OPEN, Receipt, Share,
};

pub const CHAIN_ID: u64 = 31337;

pub fn node_key() -> NodeKey {
    NodeKey::from_secret(keccak256("crash-test node")).expect("key")
}

pub fn addr(label: &str) -> Address {
    Address::from_word(keccak256(label.as_bytes()))
}

/// The deployment is deterministic (same deployer, same nonces), so parent and child agree
/// on the Settlement address without talking.
pub fn deploy() -> (EvmChain, Deployment) {
    let mut chain = EvmChain::new(CHAIN_ID);
    let deployer = addr("deployer");
    for who in [deployer, node_key().address(), addr("requester"), addr("owner"), addr("submitter")]
    {
        chain.fund(who, U256::from(10u128.pow(24)));
    }
    let d =
        Deployment::deploy(&mut chain, deployer, &DeployParams::with_treasury(addr("treasury")))
            .expect("deploy");
    (chain, d)
}

pub fn receipt(job: u64, node: Address) -> Receipt {
    Receipt {
        jobId: keccak256(job.to_be_bytes()),
        requester: addr("requester"),
        node,
        adapterId: keccak256("adapter"),
        adapterHash: keccak256("adapter files"),
        baseModelHash: keccak256("base"),
        promptHash: keccak256(format!("prompt {job}")),
        outputHash: keccak256(format!("output {job}")),
        tokensIn: 100 + (job % 50) as u32,
        tokensOut: 20 + (job % 30) as u32,
        datanetId: keccak256("datanet"),
        attributionRoot: keccak256(format!("attribution {job}")),
        shares: vec![
            Share { contributor: contributor_id("alice"), bps: 6_000 },
            Share { contributor: contributor_id("bob"), bps: 4_000 },
        ],
        l2BlockNumber: 7,
        l2BlockHash: keccak256("l2"),
        timestamp: 1_700_000_000 + job,
    }
}

pub const PRICE: u128 = 1_000_000_000_000;

pub fn setup_settlement(mut chain: EvmChain, d: Deployment) -> (EvmChain, Deployment) {
    let node = node_key().address();
    let (deployer, requester, owner) = (addr("deployer"), addr("requester"), addr("owner"));
    let c = &mut chain;
    for (to, amount) in [(node, 1_000 * OPEN), (requester, 1_000_000 * OPEN)] {
        c.send_call(deployer, d.token, &OpenToken::transferCall { to, value: U256::from(amount) })
            .expect("transfer");
    }
    c.send_call(
        node,
        d.token,
        &OpenToken::approveCall { spender: d.node_registry, value: U256::MAX },
    )
    .expect("approve");
    c.send_call(
        node,
        d.node_registry,
        &NodeRegistry::stakeCall { amount: U256::from(1_000 * OPEN) },
    )
    .expect("stake");
    let datanet =
        DatanetRegistry::createCall { datanetId: keccak256("datanet"), recordsRoot: B256::ZERO };
    c.send_call(owner, d.datanet_registry, &datanet).expect("datanet");
    let adapter = AdapterRegistry::registerCall {
        adapterId: keccak256("adapter"),
        contentHash: keccak256("adapter files"),
        baseModelHash: keccak256("base"),
        datanetId: keccak256("datanet"),
        priceInPer1k: PRICE,
        priceOutPer1k: PRICE,
    };
    c.send_call(owner, d.adapter_registry, &adapter).expect("adapter");
    c.send_call(
        requester,
        d.token,
        &OpenToken::approveCall { spender: d.settlement, value: U256::MAX },
    )
    .expect("approve");
    let deposit = Settlement::depositCall { node, amount: U256::from(1_000_000 * OPEN) };
    c.send_call(requester, d.settlement, &deposit).expect("deposit");
    (chain, d)
}

pub fn escrow(chain: &mut EvmChain, d: &Deployment) -> U256 {
    let (requester, node) = (addr("requester"), node_key().address());
    chain
        .view(d.settlement, &Settlement::escrowsCall { _0: requester, _1: node })
        .expect("escrow")
        .balance
}
