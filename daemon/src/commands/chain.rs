//! `lorad chain ...`: the settlement contracts from the command line, over JSON-RPC with
//! locally signed transactions (`--key`, default the node key). What operators need: deploy a
//! set (dev and test chains), stake the node, register adapters and Datanets with the hashes
//! lorad computes, fund escrow, and look at balances.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256, keccak256};
use anyhow::Context;
use lorad_contracts::bindings::{
    AdapterRegistry, DatanetRegistry, NodeRegistry, OpenToken, Settlement,
};
use lorad_contracts::receipt::contributor_id;
use lorad_contracts::rpc::RpcChain;
use lorad_contracts::{DeployParams, Deployment, EvmBackendExt};

use super::common::{datanets_dir, open_store};
use super::receipts::{default_key_path, load_key};
use crate::cli::{ChainCommand, ChainConn, StoreIo};
use crate::exit::{ExitExt, ExitKind, coded};

/// Reads a deployment file (`lorad chain deploy --out`).
pub(crate) fn read_deployment(path: &Path) -> anyhow::Result<Deployment> {
    let text = std::fs::read_to_string(path)
        .exit_kind(ExitKind::Config)
        .with_context(|| format!("cannot read the deployment file {}", path.display()))?;
    serde_json::from_str(&text)
        .exit_kind(ExitKind::Config)
        .with_context(|| format!("{} is not a deployment file", path.display()))
}

/// Parses an OPEN amount with up to 18 decimals ("1000", "2.5") into base units.
pub(crate) fn parse_open(s: &str) -> Result<U256, String> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 18
        || !(whole.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
    {
        return Err(format!("'{s}' is not an OPEN amount (digits, at most 18 decimals)"));
    }
    let digits = format!("{whole}{frac:0<18}");
    U256::from_str_radix(if digits.is_empty() { "0" } else { &digits }, 10)
        .map_err(|e| format!("'{s}': {e}"))
}

/// Connects to the chain `conn` names, sending from its key (default: the node key).
pub(crate) fn connect(home: &Path, conn: &ChainConn) -> anyhow::Result<(RpcChain, Address)> {
    let key = load_key(&conn.key.clone().unwrap_or_else(|| default_key_path(home)))?;
    let me = key.address();
    let chain = RpcChain::connect(&conn.rpc, vec![key], Duration::from_secs(30))
        .exit_kind(ExitKind::Unavailable)
        .with_context(|| format!("cannot reach the chain at {}", conn.rpc))?;
    Ok((chain, me))
}

/// `--deployment`, or `<home>/deployment.json`.
pub(crate) fn deployment_path(home: &Path, conn: &ChainConn) -> PathBuf {
    conn.deployment.clone().unwrap_or_else(|| home.join("deployment.json"))
}

pub(crate) fn run(home: &Path, io: StoreIo, command: ChainCommand) -> anyhow::Result<()> {
    let conn = command.conn().clone();
    let (mut chain, me) = connect(home, &conn)?;
    let deployment = || read_deployment(&deployment_path(home, &conn));
    let sent =
        |what: &str,
         r: Result<lorad_contracts::chain::TxOutcome, lorad_contracts::ContractsError>| {
            r.exit_kind(ExitKind::Runtime)
                .with_context(|| what.to_string())
                .map(|o| eprintln!("{what}: ok ({} gas)", o.gas_used))
        };
    match command {
        ChainCommand::Deploy { treasury, .. } => {
            let out = deployment_path(home, &conn);
            let params = DeployParams::with_treasury(treasury.unwrap_or(me));
            let d = Deployment::deploy(&mut chain, me, &params)
                .exit_kind(ExitKind::Runtime)
                .context("deploying")?;
            let json = serde_json::to_string_pretty(&d)? + "\n";
            std::fs::write(&out, &json).with_context(|| format!("writing {}", out.display()))?;
            print!("{json}");
        }
        ChainCommand::Stake { amount, .. } => {
            let d = deployment()?;
            sent(
                "approve",
                chain.send_call(
                    me,
                    d.token,
                    &OpenToken::approveCall { spender: d.node_registry, value: amount },
                ),
            )?;
            sent(
                "stake",
                chain.send_call(me, d.node_registry, &NodeRegistry::stakeCall { amount }),
            )?;
        }
        ChainCommand::Transfer { to, amount, .. } => {
            let d = deployment()?;
            sent(
                "transfer",
                chain.send_call(me, d.token, &OpenToken::transferCall { to, value: amount }),
            )?;
        }
        ChainCommand::Deposit { node, amount, .. } => {
            let d = deployment()?;
            sent(
                "approve",
                chain.send_call(
                    me,
                    d.token,
                    &OpenToken::approveCall { spender: d.settlement, value: amount },
                ),
            )?;
            sent(
                "deposit",
                chain.send_call(me, d.settlement, &Settlement::depositCall { node, amount }),
            )?;
        }
        ChainCommand::RegisterAdapter { adapter, datanet, price_in, price_out, .. } => {
            let d = deployment()?;
            let info = open_store(home, io)?.get(&adapter).exit_kind(ExitKind::Usage)?;
            let hex32 = |what: &str, s: &str| {
                s.parse::<B256>().map_err(|_| {
                    coded(
                        ExitKind::DataErr,
                        anyhow::anyhow!("the stored {what} '{s}' is not 32 bytes of hex"),
                    )
                })
            };
            let price = |p: U256| {
                u128::try_from(p)
                    .map_err(|_| coded(ExitKind::Usage, anyhow::anyhow!("price {p} is too large")))
            };
            let call = AdapterRegistry::registerCall {
                adapterId: keccak256(adapter.as_bytes()),
                contentHash: hex32("content hash", &info.content_hash)?,
                baseModelHash: hex32("base hash", &info.base_hash)?,
                datanetId: keccak256(datanet.as_bytes()),
                priceInPer1k: price(price_in)?,
                priceOutPer1k: price(price_out)?,
            };
            sent("register adapter", chain.send_call(me, d.adapter_registry, &call))?;
            println!("adapter {adapter}: id {} content hash {}", call.adapterId, call.contentHash);
        }
        ChainCommand::CreateDatanet { datanet, payouts, .. } => {
            let d = deployment()?;
            let dn = lorad_datanet::Datanet::open_named(&datanets_dir(home), &datanet)
                .exit_kind(ExitKind::Usage)?;
            let id = keccak256(datanet.as_bytes());
            let create =
                DatanetRegistry::createCall { datanetId: id, recordsRoot: dn.merkle_root().into() };
            sent("create datanet", chain.send_call(me, d.datanet_registry, &create))?;
            for p in payouts {
                let (name, addr) = p.split_once('=').ok_or_else(|| {
                    coded(
                        ExitKind::Usage,
                        anyhow::anyhow!("--payout wants CONTRIBUTOR=0xADDRESS, got '{p}'"),
                    )
                })?;
                let payout: Address = addr.parse().map_err(|_| {
                    coded(ExitKind::Usage, anyhow::anyhow!("'{addr}' is not an address"))
                })?;
                let call = DatanetRegistry::setPayoutCall {
                    datanetId: id,
                    contributorId: contributor_id(name),
                    payout,
                };
                sent(&format!("payout of {name}"), chain.send_call(me, d.datanet_registry, &call))?;
            }
            println!(
                "datanet {datanet}: id {id} records root 0x{}",
                alloy_primitives::hex::encode(dn.merkle_root())
            );
        }
        ChainCommand::Status { address, .. } => {
            let d = deployment()?;
            let who = address.unwrap_or(me);
            let view_err = |e| coded(ExitKind::Unavailable, anyhow::Error::new(e));
            let balance = chain.view(d.token, &OpenToken::balanceOfCall(who)).map_err(view_err)?;
            let claimable =
                chain.view(d.settlement, &Settlement::claimableCall(who)).map_err(view_err)?;
            let node =
                chain.view(d.node_registry, &NodeRegistry::nodesCall(who)).map_err(view_err)?;
            let staked = chain
                .view(d.node_registry, &NodeRegistry::isStakedCall { node: who })
                .map_err(view_err)?;
            let status = serde_json::json!({
                "address": who, "open_balance": balance.to_string(), "claimable": claimable.to_string(),
                "stake": node.stake.to_string(), "unbonding": node.unbonding.to_string(), "slashed": node.slashed, "staked": staked,
            });
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
    }
    Ok(())
}
