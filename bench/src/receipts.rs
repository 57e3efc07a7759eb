//! `lorad-bench receipts`: what a receipt costs the node, measured in one run:
//!
//! 1. **signing**: build + EIP-712 hash + secp256k1 sign of receipts with `--shares` shares,
//!    on one thread (receipts/s/core, goal ≥ 10,000) and on every thread; the hash alone
//!    is timed too, so the ECDSA share is visible;
//! 2. **durable**: pre-signed receipts appended to the journal (`--dir`, default the temp
//!    dir: point it at the NVMe the daemon uses) by 1, 8, 64 and 256 concurrent clients,
//!    each waiting for its receipt to be fsynced, as the daemon does before answering.
//!    Receipts/s per concurrency (goal ≥ 5,000) and receipts per fsync; 1 client is the
//!    one-fsync-per-receipt baseline the group commit is compared with;
//! 3. **settlement gas**: one `settle` of `--batch` receipts on the in-process EVM, with the
//!    real bytecode: gas per receipt.
//!
//! Goals are reported, never enforced. Writes `<out>/<name>.{json,md,png}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use anyhow::{Context, bail};
use clap::Args;
use lorad_contracts::bindings::{
    AdapterRegistry, DatanetRegistry, NodeRegistry, OpenToken, Settlement,
};
use lorad_contracts::receipt::{contributor_id, domain};
use lorad_contracts::{
    DeployParams, Deployment, EvmBackendExt, EvmChain, NodeKey, OPEN, Receipt, Share, SignedReceipt,
};
use lorad_receipts::Journal;

use crate::scratch::{Scratch, progress};

const SIGN_GOAL: f64 = 10_000.0;
const DURABLE_GOAL: f64 = 5_000.0;
const CONCURRENCY: [usize; 4] = [1, 8, 64, 256];
const CHAIN_ID: u64 = 31337;

/// Options of `lorad-bench receipts`.
#[derive(Debug, Args)]
pub(crate) struct ReceiptsArgs {
    /// Receipts signed per signing measurement.
    #[arg(long, default_value_t = 20_000)]
    sign: usize,
    /// Contributors per receipt.
    #[arg(long, default_value_t = 8)]
    shares: usize,
    /// Receipts made durable per concurrency level.
    #[arg(long, default_value_t = 20_000)]
    durable: usize,
    /// Receipts in the settlement batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Directory for the journal (its filesystem is what is measured).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
struct Durable {
    clients: usize,
    receipts: usize,
    seconds: f64,
    per_second: f64,
}

fn receipt(job: u64, node: Address, shares: usize) -> Receipt {
    let bps = 10_000 / shares as u16;
    let mut s: Vec<Share> = (0..shares)
        .map(|i| Share { contributor: contributor_id(&format!("contributor {i}")), bps })
        .collect();
    if let Some(first) = s.first_mut() {
        first.bps += 10_000 - bps * shares as u16;
    }
    Receipt {
        jobId: keccak256(job.to_be_bytes()),
        requester: Address::repeat_byte(0x11),
        node,
        adapterId: keccak256("adapter"),
        adapterHash: keccak256("adapter files"),
        baseModelHash: keccak256("base"),
        promptHash: keccak256(job.to_le_bytes()),
        outputHash: keccak256((job + 1).to_le_bytes()),
        tokensIn: 100 + (job % 900) as u32,
        tokensOut: 50 + (job % 200) as u32,
        datanetId: keccak256("datanet"),
        attributionRoot: keccak256((job + 2).to_le_bytes()),
        shares: s,
        l2BlockNumber: 1_000_000 + job,
        l2BlockHash: keccak256((job + 3).to_le_bytes()),
        timestamp: 1_700_000_000 + job,
    }
}

fn key() -> anyhow::Result<NodeKey> {
    NodeKey::from_secret(keccak256("bench node")).context("bench key")
}

/// Receipts/s signing `n` receipts on one thread (receipts built inside the loop).
fn sign_rate(
    key: &NodeKey,
    domain: &Eip712Domain,
    n: usize,
    first: u64,
    shares: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    for job in first..first + n as u64 {
        std::hint::black_box(key.sign_receipt(receipt(job, key.address(), shares), domain)?);
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

pub(crate) fn run(out: &Path, args: &ReceiptsArgs) -> anyhow::Result<()> {
    if args.sign == 0 || args.durable == 0 || args.batch == 0 || !(1..=32).contains(&args.shares) {
        bail!("--sign, --durable and --batch must be at least 1, --shares 1 to 32");
    }
    let key = key()?;
    let node = key.address();
    let domain = domain(CHAIN_ID, Address::repeat_byte(0x5e));

    // 1. Signing.
    let hash_started = Instant::now();
    for job in 0..args.sign as u64 {
        std::hint::black_box(receipt(job, node, args.shares).eip712_signing_hash(&domain));
    }
    let hash_rate = args.sign as f64 / hash_started.elapsed().as_secs_f64();
    let one_core = sign_rate(&key, &domain, args.sign, 0, args.shares)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all_started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (key, domain) = (&key, &domain);
                s.spawn(move || {
                    sign_rate(key, domain, args.sign / threads, (t * args.sign) as u64, args.shares)
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a signing thread panicked"))??;
        }
        Ok(())
    })?;
    let all_cores = (args.sign / threads * threads) as f64 / all_started.elapsed().as_secs_f64();
    eprintln!(
        "signing: {one_core:.0}/s on one core, {all_cores:.0}/s on {threads} threads; hashing alone {hash_rate:.0}/s"
    );

    // 2. Durable appends.
    let scratch = Scratch::create(args.dir.as_deref(), false, "receipts")?;
    let signed: Arc<Vec<SignedReceipt>> = Arc::new(
        (0..args.durable as u64 * CONCURRENCY.len() as u64)
            .map(|job| key.sign_receipt(receipt(job, node, args.shares), &domain))
            .collect::<Result<_, _>>()?,
    );
    let mut durable = Vec::new();
    for (round, &clients) in CONCURRENCY.iter().enumerate() {
        let path = scratch.path.join(format!("journal-{clients}.log"));
        let (journal, _) = Journal::open(&path)?;
        let journal = Arc::new(journal);
        let bar = progress(args.durable as u64, &format!("durable, {clients} clients"));
        let started = Instant::now();
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    let (journal, signed, bar) =
                        (Arc::clone(&journal), Arc::clone(&signed), bar.clone());
                    s.spawn(move || -> anyhow::Result<()> {
                        let base = round * args.durable;
                        for i in (c..args.durable).step_by(clients) {
                            let r = &signed[base + i];
                            journal.append(r.job_id().0, r.encode())?;
                            bar.inc(1);
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
            }
            Ok(())
        })?;
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        if journal.len() != args.durable {
            bail!("the journal holds {} receipts, {} were appended", journal.len(), args.durable);
        }
        durable.push(Durable {
            clients,
            receipts: args.durable,
            seconds,
            per_second: args.durable as f64 / seconds,
        });
        eprintln!("durable, {clients} clients: {:.0} receipts/s", args.durable as f64 / seconds);
    }

    // 3. Settlement gas.
    let (gas, evm_ms) = settle_gas(args)?;

    let best = durable.iter().map(|d| d.per_second).fold(0.0, f64::max);
    let baseline = durable.first().map_or(1.0, |d| d.per_second);
    let name = format!("receipts-{}s-{}d", args.sign, args.durable);
    let mut md = format!(
        "# lorad-bench receipts\n\nBuild: {}; {threads} threads; journal on {}.\n\n\
         | what | measured | goal | |\n|---|---:|---:|:-:|\n\
         | receipts signed / s / core ({} shares) | {one_core:.0} | ≥ {SIGN_GOAL:.0} | {} |\n\
         | durable receipts / s (best concurrency) | {best:.0} | ≥ {DURABLE_GOAL:.0} | {} |\n\n\
         Signing on all {threads} threads: {all_cores:.0} receipts/s. EIP-712 hashing alone: {hash_rate:.0}/s \
         on one core (the rest of a signature is ECDSA).\n\n\
         ## Durable receipts (append + group-committed fdatasync before the client is answered)\n\n\
         | clients | receipts/s | × one client |\n|---:|---:|---:|\n",
        crate::report::profile(),
        scratch.path.display(),
        args.shares,
        if one_core >= SIGN_GOAL { "met" } else { "missed" },
        if best >= DURABLE_GOAL { "met" } else { "missed" },
    );
    for d in &durable {
        md +=
            &format!("| {} | {:.0} | {:.1} |\n", d.clients, d.per_second, d.per_second / baseline);
    }
    md += &format!(
        "\n## Settlement\n\n`settle` of {} receipts ({} shares each) on the in-process EVM: {gas} gas, \
         **{} gas per receipt**; {evm_ms:.1} ms of revm.\n",
        args.batch,
        args.shares,
        gas / args.batch as u64,
    );
    let png = out.join(format!("{name}.png"));
    let groups = vec![
        (
            "signed/s/core".to_string(),
            vec![("measured".to_string(), one_core), ("goal".to_string(), SIGN_GOAL)],
        ),
        (
            "durable/s".to_string(),
            vec![("measured".to_string(), best), ("goal".to_string(), DURABLE_GOAL)],
        ),
    ];
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    match crate::plot::bar_chart(&png, "receipts: measured vs goal", "receipts / s", &groups) {
        Ok(()) => {
            md += &format!(
                "\n![receipts vs goals]({})\n",
                png.file_name().unwrap_or_default().display()
            )
        }
        Err(e) => eprintln!("lorad-bench: no chart: {e:#}"),
    }
    println!("{md}");
    let json = serde_json::json!({
        "benchmark": "receipts",
        "machine": crate::report::machine(),
        "profile": crate::report::profile(),
        "args": { "sign": args.sign, "shares": args.shares, "durable": args.durable, "batch": args.batch },
        "journal_dir": scratch.path.display().to_string(),
        "signing": { "one_core_per_s": one_core, "all_threads_per_s": all_cores, "threads": threads, "hash_only_per_s": hash_rate },
        "durable": durable,
        "settlement": { "receipts": args.batch, "gas": gas, "gas_per_receipt": gas / args.batch as u64, "evm_ms": evm_ms },
        "goals": {
            "signed_per_s_per_core": { "goal": SIGN_GOAL, "measured": one_core, "met": one_core >= SIGN_GOAL },
            "durable_per_s": { "goal": DURABLE_GOAL, "measured": best, "met": best >= DURABLE_GOAL },
        },
    });
    crate::report::write(out, &name, &json, &md)
}

/// Deploys the contracts, stakes, registers, deposits, and settles one batch.
fn settle_gas(args: &ReceiptsArgs) -> anyhow::Result<(u64, f64)> {
    let key = key()?;
    let node = key.address();
    let (deployer, requester) = (Address::repeat_byte(0xde), Address::repeat_byte(0x11));
    let mut chain = EvmChain::new(CHAIN_ID);
    let submitter = Address::repeat_byte(0xaa);
    for who in [deployer, node, requester, submitter] {
        chain.fund(who, U256::from(10u128.pow(24)));
    }
    let d = Deployment::deploy(
        &mut chain,
        deployer,
        &DeployParams::with_treasury(Address::repeat_byte(0x7e)),
    )?;
    let c = &mut chain;
    c.send_call(
        deployer,
        d.token,
        &OpenToken::transferCall { to: node, value: U256::from(1_000 * OPEN) },
    )?;
    c.send_call(
        deployer,
        d.token,
        &OpenToken::transferCall { to: requester, value: U256::from(1_000_000 * OPEN) },
    )?;
    c.send_call(
        node,
        d.token,
        &OpenToken::approveCall { spender: d.node_registry, value: U256::MAX },
    )?;
    c.send_call(
        node,
        d.node_registry,
        &NodeRegistry::stakeCall { amount: U256::from(1_000 * OPEN) },
    )?;
    c.send_call(
        deployer,
        d.datanet_registry,
        &DatanetRegistry::createCall { datanetId: keccak256("datanet"), recordsRoot: B256::ZERO },
    )?;
    let register = AdapterRegistry::registerCall {
        adapterId: keccak256("adapter"),
        contentHash: keccak256("adapter files"),
        baseModelHash: keccak256("base"),
        datanetId: keccak256("datanet"),
        priceInPer1k: 1_000_000_000_000,
        priceOutPer1k: 2_000_000_000_000,
    };
    c.send_call(deployer, d.adapter_registry, &register)?;
    c.send_call(
        requester,
        d.token,
        &OpenToken::approveCall { spender: d.settlement, value: U256::MAX },
    )?;
    c.send_call(
        requester,
        d.settlement,
        &Settlement::depositCall { node, amount: U256::from(1_000_000 * OPEN) },
    )?;
    let domain = domain(CHAIN_ID, d.settlement);
    let signed: Vec<SignedReceipt> = (0..args.batch as u64)
        .map(|job| key.sign_receipt(receipt(job, node, args.shares), &domain))
        .collect::<Result<_, _>>()?;
    let call = Settlement::settleCall {
        receipts: signed.iter().map(|s| s.receipt.clone()).collect(),
        signatures: signed.iter().map(|s| s.signature.clone()).collect(),
    };
    let started = Instant::now();
    let outcome = chain.send_call(submitter, d.settlement, &call).context("settling the batch")?;
    Ok((outcome.gas_used, started.elapsed().as_secs_f64() * 1e3))
}
