//! Deploying the five contracts as one consistent set, on any [`EvmBackend`].

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::SolConstructor;
use serde::{Deserialize, Serialize};

use crate::ContractsError;
use crate::bindings::{AdapterRegistry, DatanetRegistry, NodeRegistry, OpenToken, Settlement};
use crate::chain::{EvmBackend, EvmBackendExt};

/// One OPEN in base units (18 decimals).
pub const OPEN: u128 = 1_000_000_000_000_000_000;

/// The economic parameters fixed at deployment (all immutable in the contracts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployParams {
    /// Smallest active stake that lets a node's receipts settle, in OPEN base units.
    pub min_stake: U256,
    /// Seconds between asking to unstake and being able to withdraw.
    pub unbonding_delay: u64,
    /// Receives the protocol share, rounding dust, unclaimed contributor shares, and the
    /// non-reporter part of slashed stake.
    pub treasury: Address,
    /// Share of a slashed stake paid to the reporter, in basis points.
    pub reporter_bps: u16,
    /// The adapter owner's share of every fee, in basis points.
    pub model_owner_bps: u16,
    /// The serving node's share, in basis points.
    pub node_bps: u16,
    /// The contributors' pool, in basis points (split by the receipt's shares).
    pub contributors_bps: u16,
    /// Seconds of notice a requester gives before withdrawing escrow.
    pub withdraw_delay: u64,
}

impl DeployParams {
    /// The documented defaults with `treasury` as treasury: 1,000 OPEN minimum stake, 7 days
    /// of unbonding, 10 % of a slash to the reporter; fees 30 % model owner, 20 % node,
    /// 40 % contributors, 10 % protocol; 1 day of withdrawal notice.
    pub fn with_treasury(treasury: Address) -> Self {
        Self {
            min_stake: U256::from(1_000 * OPEN),
            unbonding_delay: 7 * 24 * 3600,
            treasury,
            reporter_bps: 1_000,
            model_owner_bps: 3_000,
            node_bps: 2_000,
            contributors_bps: 4_000,
            withdraw_delay: 24 * 3600,
        }
    }
}

/// Where the five contracts live on one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The chain they are deployed on.
    pub chain_id: u64,
    /// `OpenToken`.
    pub token: Address,
    /// `NodeRegistry`.
    pub node_registry: Address,
    /// `AdapterRegistry`.
    pub adapter_registry: Address,
    /// `DatanetRegistry`.
    pub datanet_registry: Address,
    /// `Settlement`.
    pub settlement: Address,
}

impl Deployment {
    /// Deploys token, registries and Settlement from `deployer` (who receives the whole
    /// token supply) and makes Settlement the registry's only slasher.
    pub fn deploy<B: EvmBackend + ?Sized>(
        chain: &mut B,
        deployer: Address,
        params: &DeployParams,
    ) -> Result<Self, ContractsError> {
        let token = chain
            .deploy(deployer, init_code(&OpenToken::BYTECODE, &OpenToken::constructorCall {}))?;
        let node_registry = chain.deploy(
            deployer,
            init_code(
                &NodeRegistry::BYTECODE,
                &NodeRegistry::constructorCall {
                    token_: token,
                    minStake_: params.min_stake,
                    unbondingDelay_: params.unbonding_delay,
                    treasury_: params.treasury,
                    reporterBps_: params.reporter_bps,
                },
            ),
        )?;
        let adapter_registry = chain.deploy(deployer, AdapterRegistry::BYTECODE.clone())?;
        let datanet_registry = chain.deploy(deployer, DatanetRegistry::BYTECODE.clone())?;
        let settlement = chain.deploy(
            deployer,
            init_code(
                &Settlement::BYTECODE,
                &Settlement::constructorCall {
                    token_: token,
                    nodes_: node_registry,
                    adapters_: adapter_registry,
                    datanets_: datanet_registry,
                    treasury_: params.treasury,
                    modelOwnerBps_: params.model_owner_bps,
                    nodeBps_: params.node_bps,
                    contributorsBps_: params.contributors_bps,
                    withdrawDelay_: params.withdraw_delay,
                },
            ),
        )?;
        chain.send_call(
            deployer,
            node_registry,
            &NodeRegistry::setSlasherCall { slasher_: settlement },
        )?;
        Ok(Self {
            chain_id: chain.chain_id(),
            token,
            node_registry,
            adapter_registry,
            datanet_registry,
            settlement,
        })
    }
}

/// Init code followed by the ABI-encoded constructor arguments.
fn init_code<C: SolConstructor>(bytecode: &Bytes, args: &C) -> Bytes {
    let mut code = bytecode.to_vec();
    code.extend_from_slice(&args.abi_encode());
    code.into()
}
