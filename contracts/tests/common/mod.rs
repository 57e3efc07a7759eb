//! A deployed, populated contract set on an in-process chain, shared by the contract tests.
#![allow(dead_code, missing_docs, unreachable_pub)]

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolInterface};
use lorad_contracts::bindings::{
    AdapterRegistry, DatanetRegistry, NodeRegistry, OpenToken, Settlement,
};
use lorad_contracts::receipt::{contributor_id, domain};
use lorad_contracts::{
    ContractsError, DeployParams, Deployment, EvmBackendExt, EvmChain, NodeKey, OPEN, Receipt,
    Share, SignedReceipt,
};

pub const CHAIN_ID: u64 = 31337;
/// Prices chosen so fees do not divide evenly: every split produces dust.
pub const PRICE_IN: u128 = 3_333_333_333_333_333;
pub const PRICE_OUT: u128 = 7_777_777_777_777_777;

pub fn addr(label: &str) -> Address {
    Address::from_word(keccak256(label.as_bytes()))
}

pub fn key(label: &str) -> NodeKey {
    NodeKey::from_secret(keccak256(label.as_bytes())).expect("valid secret")
}

pub struct World {
    pub chain: EvmChain,
    pub d: Deployment,
    pub params: DeployParams,
    pub domain: Eip712Domain,
    pub deployer: Address,
    pub node: NodeKey,
    pub model_owner: Address,
    pub datanet_owner: Address,
    pub requester: Address,
    pub adapter_id: B256,
    pub adapter_hash: B256,
    pub base_model_hash: B256,
    pub datanet_id: B256,
    /// Contributors 0 and 1 have payout addresses, 2 does not.
    pub contributors: [B256; 3],
    pub payouts: [Address; 2],
}

impl World {
    pub fn new() -> Self {
        let mut chain = EvmChain::new(CHAIN_ID);
        let deployer = addr("deployer");
        let node = key("node");
        let model_owner = addr("model owner");
        let datanet_owner = addr("datanet owner");
        let requester = addr("requester");
        for who in [
            deployer,
            node.address(),
            model_owner,
            datanet_owner,
            requester,
            addr("reporter"),
            addr("other"),
            addr("submitter"),
        ] {
            chain.fund(who, U256::from(10u128.pow(20)));
        }
        let params = DeployParams::with_treasury(addr("treasury"));
        let d = Deployment::deploy(&mut chain, deployer, &params).expect("deploy");
        let mut w = Self {
            domain: domain(CHAIN_ID, d.settlement),
            chain,
            d,
            params,
            deployer,
            node,
            model_owner,
            datanet_owner,
            requester,
            adapter_id: keccak256("adapter: sql-expert"),
            adapter_hash: keccak256("adapter files"),
            base_model_hash: keccak256("SmolLM2-135M-Instruct"),
            datanet_id: keccak256("datanet: sql"),
            contributors: [contributor_id("alice"), contributor_id("bob"), contributor_id("carol")],
            payouts: [addr("alice payout"), addr("bob payout")],
        };
        let node = w.node.address();
        w.give(node, 5_000 * OPEN);
        w.give(w.requester, 1_000_000 * OPEN);
        w.stake(node, 1_000 * OPEN);
        let (id, root) = (w.datanet_id, keccak256("records root"));
        w.send(
            w.datanet_owner,
            w.d.datanet_registry,
            &DatanetRegistry::createCall { datanetId: id, recordsRoot: root },
        );
        for (c, p) in w.contributors.into_iter().zip(w.payouts) {
            w.send(
                w.datanet_owner,
                w.d.datanet_registry,
                &DatanetRegistry::setPayoutCall { datanetId: id, contributorId: c, payout: p },
            );
        }
        w.send(
            w.model_owner,
            w.d.adapter_registry,
            &AdapterRegistry::registerCall {
                adapterId: w.adapter_id,
                contentHash: w.adapter_hash,
                baseModelHash: w.base_model_hash,
                datanetId: w.datanet_id,
                priceInPer1k: PRICE_IN,
                priceOutPer1k: PRICE_OUT,
            },
        );
        w.deposit(w.requester, node, 10_000 * OPEN);
        w
    }

    pub fn send<C: alloy_sol_types::SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
    ) -> lorad_contracts::chain::TxOutcome {
        self.chain.send_call(from, to, call).unwrap_or_else(|e| panic!("{}: {e}", C::SIGNATURE))
    }

    pub fn try_send<C: alloy_sol_types::SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<lorad_contracts::chain::TxOutcome, ContractsError> {
        self.chain.send_call(from, to, call)
    }

    pub fn give(&mut self, to: Address, amount: u128) {
        self.send(
            self.deployer,
            self.d.token,
            &OpenToken::transferCall { to, value: U256::from(amount) },
        );
    }

    pub fn stake(&mut self, node: Address, amount: u128) {
        let (token, registry) = (self.d.token, self.d.node_registry);
        self.send(
            node,
            token,
            &OpenToken::approveCall { spender: registry, value: U256::from(amount) },
        );
        self.send(node, registry, &NodeRegistry::stakeCall { amount: U256::from(amount) });
    }

    pub fn deposit(&mut self, requester: Address, node: Address, amount: u128) {
        let (token, settlement) = (self.d.token, self.d.settlement);
        self.send(
            requester,
            token,
            &OpenToken::approveCall { spender: settlement, value: U256::from(amount) },
        );
        self.send(
            requester,
            settlement,
            &Settlement::depositCall { node, amount: U256::from(amount) },
        );
    }

    pub fn token_balance(&mut self, who: Address) -> U256 {
        self.chain.view(self.d.token, &OpenToken::balanceOfCall(who)).expect("balanceOf")
    }

    pub fn claimable(&mut self, who: Address) -> U256 {
        self.chain.view(self.d.settlement, &Settlement::claimableCall(who)).expect("claimable")
    }

    pub fn escrow(&mut self, requester: Address, node: Address) -> U256 {
        self.chain
            .view(self.d.settlement, &Settlement::escrowsCall { _0: requester, _1: node })
            .expect("escrows")
            .balance
    }

    pub fn is_staked(&mut self, node: Address) -> bool {
        self.chain
            .view(self.d.node_registry, &NodeRegistry::isStakedCall { node })
            .expect("isStaked")
    }

    /// A receipt for job `job` by this world's node on its adapter.
    pub fn receipt(&self, job: u64, tokens_in: u32, tokens_out: u32) -> Receipt {
        Receipt {
            jobId: keccak256(job.to_be_bytes()),
            requester: self.requester,
            node: self.node.address(),
            adapterId: self.adapter_id,
            adapterHash: self.adapter_hash,
            baseModelHash: self.base_model_hash,
            promptHash: keccak256(format!("prompt {job}")),
            outputHash: keccak256(format!("output {job}")),
            tokensIn: tokens_in,
            tokensOut: tokens_out,
            datanetId: self.datanet_id,
            attributionRoot: keccak256(format!("attribution {job}")),
            shares: vec![
                Share { contributor: self.contributors[0], bps: 5_000 },
                Share { contributor: self.contributors[1], bps: 3_333 },
                Share { contributor: self.contributors[2], bps: 1_667 },
            ],
            l2BlockNumber: 1_234_567,
            l2BlockHash: keccak256("l2 block"),
            timestamp: 1_700_000_000 + job,
        }
    }

    pub fn sign(&self, r: Receipt) -> SignedReceipt {
        self.node.sign_receipt(r, &self.domain).expect("sign")
    }

    pub fn settle(
        &mut self,
        receipts: &[SignedReceipt],
    ) -> Result<lorad_contracts::chain::TxOutcome, ContractsError> {
        let call = Settlement::settleCall {
            receipts: receipts.iter().map(|s| s.receipt.clone()).collect(),
            signatures: receipts.iter().map(|s| s.signature.clone()).collect::<Vec<Bytes>>(),
        };
        self.chain.send_call(addr("submitter"), self.d.settlement, &call)
    }
}

/// The Settlement error a failed call reverted with.
pub fn settlement_error(
    result: Result<impl std::fmt::Debug, ContractsError>,
) -> Settlement::SettlementErrors {
    let err = result.expect_err("the call should revert");
    let data = err.revert_data().unwrap_or_else(|| panic!("not a revert: {err}"));
    Settlement::SettlementErrors::abi_decode(data)
        .unwrap_or_else(|_| panic!("not a Settlement error: {err}"))
}
