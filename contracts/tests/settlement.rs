//! Settlement, NodeRegistry, AdapterRegistry and DatanetRegistry executing their real
//! compiled bytecode in revm: the documented split to the wei, and every rejection.

mod common;

use alloy_primitives::{Address, U256, keccak256};
use common::{PRICE_IN, PRICE_OUT, World, addr, key, settlement_error};
use lorad_contracts::bindings::{AdapterRegistry, NodeRegistry, Settlement};
use lorad_contracts::fees::{self, SplitBps};
use lorad_contracts::{EvmBackendExt, OPEN, Share};

fn bps(w: &World) -> SplitBps {
    SplitBps {
        model_owner: w.params.model_owner_bps,
        node: w.params.node_bps,
        contributors: w.params.contributors_bps,
    }
}

#[test]
fn happy_path_pays_the_documented_split_to_the_wei() {
    let mut w = World::new();
    let node = w.node.address();
    let treasury = w.params.treasury;
    let r = w.receipt(1, 1_234, 567);
    let signed = w.sign(r.clone());
    let escrow_before = w.escrow(w.requester, node);

    let out = w.settle(&[signed]).expect("settles");

    let fee = fees::fee(1_234, 567, PRICE_IN, PRICE_OUT);
    // Written out independently of lorad_contracts::fees as well: 1234·pIn + 567·pOut, /1000.
    let by_hand = (U256::from(1_234u64) * U256::from(PRICE_IN)
        + U256::from(567u64) * U256::from(PRICE_OUT))
        / U256::from(1_000u64);
    assert_eq!(fee, by_hand);
    let payouts = w.payouts;
    let contributors = w.contributors;
    let split = fees::split(fee, bps(&w), &r.shares, |s| {
        contributors.iter().position(|c| *c == s.contributor).and_then(|i| payouts.get(i).copied())
    });
    assert!(
        split.treasury > fee / U256::from(10u64),
        "protocol share + carol's unclaimed share + dust"
    );
    assert_eq!(w.escrow(w.requester, node), escrow_before - fee);
    assert_eq!(w.claimable(w.model_owner), split.model_owner);
    assert_eq!(w.claimable(node), split.node);
    assert_eq!(w.claimable(payouts[0]), split.contributors[0].1);
    assert_eq!(w.claimable(payouts[1]), split.contributors[1].1);
    assert_eq!(w.claimable(treasury), split.treasury);
    // Conservation: everything taken from escrow is credited to someone.
    let credited = split.model_owner
        + split.node
        + split.contributors[0].1
        + split.contributors[1].1
        + split.treasury;
    assert_eq!(credited, fee);
    // 50 % of a 40 % pool is exactly 20 % of the fee (up to flooring twice).
    assert_eq!(
        split.contributors[0].1,
        fee * U256::from(4_000u64) / U256::from(10_000u64) * U256::from(5_000u64)
            / U256::from(10_000u64)
    );

    // The Settled event names the job and the fee.
    let settled = out
        .logs
        .iter()
        .find_map(|l| <Settlement::Settled as alloy_sol_types::SolEvent>::decode_log(l).ok());
    let settled = settled.expect("a Settled event");
    assert_eq!((settled.jobId, settled.fee), (r.jobId, fee));

    // Claiming moves the credit into the payee's token balance, once.
    let before = w.token_balance(payouts[0]);
    w.chain.fund(payouts[0], U256::from(10u128.pow(18)));
    w.send(payouts[0], w.d.settlement, &Settlement::claimCall {});
    assert_eq!(w.token_balance(payouts[0]), before + split.contributors[0].1);
    assert_eq!(w.claimable(payouts[0]), U256::ZERO);
    assert!(matches!(
        settlement_error(w.try_send(payouts[0], w.d.settlement, &Settlement::claimCall {})),
        Settlement::SettlementErrors::ZeroAmount(_)
    ));
}

#[test]
fn replay_of_a_settled_job_is_rejected() {
    let mut w = World::new();
    let signed = w.sign(w.receipt(7, 100, 100));
    w.settle(std::slice::from_ref(&signed)).expect("first settles");
    let e = settlement_error(w.settle(std::slice::from_ref(&signed)));
    assert!(
        matches!(e, Settlement::SettlementErrors::AlreadySettled(ref x) if x.jobId == signed.job_id()),
        "{e:?}"
    );
    // Also inside one batch, and the whole batch reverts: the fresh receipt is not charged.
    let fresh = w.sign(w.receipt(8, 100, 100));
    let node = w.node.address();
    let escrow = w.escrow(w.requester, node);
    let e = settlement_error(w.settle(&[fresh.clone(), fresh]));
    assert!(
        matches!(e, Settlement::SettlementErrors::AlreadySettled(ref x) if x.index == U256::from(1u64)),
        "{e:?}"
    );
    assert_eq!(w.escrow(w.requester, node), escrow);
}

#[test]
fn a_receipt_signed_by_another_key_is_rejected() {
    let mut w = World::new();
    let r = w.receipt(1, 10, 10);
    let mut forged = w.sign(r.clone());
    let impostor = key("impostor");
    forged.signature =
        impostor.sign_digest(forged.digest(&w.domain)).expect("sign").to_vec().into();
    let e = settlement_error(w.settle(&[forged]));
    assert!(
        matches!(e, Settlement::SettlementErrors::WrongSigner(ref x) if x.signer == impostor.address()),
        "{e:?}"
    );

    // A signature for another chain's Settlement (another domain) recovers to a wrong key.
    let other_domain = lorad_contracts::receipt::domain(1, w.d.settlement);
    let wrong_domain = w.node.sign_receipt(r.clone(), &other_domain).expect("sign");
    assert!(matches!(
        settlement_error(w.settle(&[wrong_domain])),
        Settlement::SettlementErrors::WrongSigner(_)
    ));

    // Malleated (high-s) and truncated signatures are refused outright.
    let good = w.sign(r);
    let mut bad = good.clone();
    bad.signature = good.signature[..64].to_vec().into();
    assert!(matches!(
        settlement_error(w.settle(&[bad])),
        Settlement::SettlementErrors::BadSignature(_)
    ));
    let mut high_s = good.clone();
    let n = U256::from_str_radix(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        16,
    )
    .expect("n");
    let s = U256::from_be_slice(&good.signature[32..64]);
    let mut sig = good.signature.to_vec();
    sig[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    sig[64] = if sig[64] == 27 { 28 } else { 27 };
    high_s.signature = sig.into();
    assert!(matches!(
        settlement_error(w.settle(&[high_s])),
        Settlement::SettlementErrors::BadSignature(_)
    ));
    w.settle(&[good]).expect("the honest signature still settles");
}

#[test]
fn an_unstaked_node_cannot_settle_and_unbonding_takes_the_delay() {
    let mut w = World::new();
    let node = w.node.address();
    assert!(w.is_staked(node));
    w.send(node, w.d.node_registry, &NodeRegistry::requestUnbondCall { amount: U256::from(1u128) });
    assert!(!w.is_staked(node), "below the minimum stake at once");
    let signed = w.sign(w.receipt(1, 10, 10));
    let e = settlement_error(w.settle(&[signed]));
    assert!(
        matches!(e, Settlement::SettlementErrors::NodeNotStaked(ref x) if x.node == node),
        "{e:?}"
    );

    let early = w.try_send(node, w.d.node_registry, &NodeRegistry::withdrawCall {});
    let data = early.expect_err("too early").revert_data().cloned().expect("revert");
    assert!(matches!(
        <NodeRegistry::NodeRegistryErrors as alloy_sol_types::SolInterface>::abi_decode(&data),
        Ok(NodeRegistry::NodeRegistryErrors::StillUnbonding(_))
    ));
    w.chain.advance_time(w.params.unbonding_delay);
    let before = w.token_balance(node);
    w.send(node, w.d.node_registry, &NodeRegistry::withdrawCall {});
    assert_eq!(w.token_balance(node), before + U256::from(1u128));

    // A node that never staked is not staked either.
    let stranger = key("stranger");
    let mut r = w.receipt(2, 10, 10);
    r.node = stranger.address();
    let signed = stranger.sign_receipt(r, &w.domain).expect("sign");
    assert!(matches!(
        settlement_error(w.settle(&[signed])),
        Settlement::SettlementErrors::NodeNotStaked(_)
    ));
}

#[test]
fn unknown_or_mismatching_adapters_are_rejected() {
    let mut w = World::new();
    let mut r = w.receipt(1, 10, 10);
    r.adapterHash = keccak256("a tampered adapter file");
    let e = settlement_error(w.settle(&[w.sign(r)]));
    assert!(
        matches!(e, Settlement::SettlementErrors::AdapterHashMismatch(ref x) if x.registered == w.adapter_hash),
        "{e:?}"
    );

    let mut r = w.receipt(2, 10, 10);
    r.baseModelHash = keccak256("another base model");
    assert!(matches!(
        settlement_error(w.settle(&[w.sign(r)])),
        Settlement::SettlementErrors::BaseModelMismatch(_)
    ));

    let mut r = w.receipt(3, 10, 10);
    r.datanetId = keccak256("another datanet");
    assert!(matches!(
        settlement_error(w.settle(&[w.sign(r)])),
        Settlement::SettlementErrors::DatanetMismatch(_)
    ));

    let mut r = w.receipt(4, 10, 10);
    r.adapterId = keccak256("never registered");
    let err = w.settle(&[w.sign(r)]).expect_err("unknown adapter");
    let data = err.revert_data().cloned().expect("revert");
    assert!(
        matches!(
            <AdapterRegistry::AdapterRegistryErrors as alloy_sol_types::SolInterface>::abi_decode(
                &data
            ),
            Ok(AdapterRegistry::AdapterRegistryErrors::UnknownAdapter(_))
        ),
        "{err}"
    );

    // After the owner publishes a new version, receipts for the old hash stop settling.
    let new_hash = keccak256("adapter v2");
    let (id, base, dn) = (w.adapter_id, w.base_model_hash, w.datanet_id);
    let update = AdapterRegistry::updateCall {
        adapterId: id,
        contentHash: new_hash,
        baseModelHash: base,
        datanetId: dn,
        priceInPer1k: 1,
        priceOutPer1k: 1,
    };
    assert!(
        w.try_send(addr("other"), w.d.adapter_registry, &update).is_err(),
        "only the owner updates"
    );
    w.send(w.model_owner, w.d.adapter_registry, &update);
    let e = settlement_error(w.settle(&[w.sign(w.receipt(5, 10, 10))]));
    assert!(matches!(e, Settlement::SettlementErrors::AdapterHashMismatch(_)), "{e:?}");
}

#[test]
fn shares_must_sum_to_ten_thousand() {
    let mut w = World::new();
    let node = w.node.address();
    for shares in [
        vec![Share { contributor: w.contributors[0], bps: 9_999 }],
        vec![
            Share { contributor: w.contributors[0], bps: 5_000 },
            Share { contributor: w.contributors[1], bps: 5_001 },
        ],
        vec![],
        vec![Share { contributor: w.contributors[0], bps: 300 }; 40],
    ] {
        let mut r = w.receipt(1, 10, 10);
        r.shares = shares.clone();
        // The node refuses to sign such a receipt ...
        assert!(w.node.sign_receipt(r.clone(), &w.domain).is_err());
        // ... and Settlement refuses it even when signed by hand.
        let digest = alloy_sol_types::SolStruct::eip712_signing_hash(&r, &w.domain);
        let signature = w.node.sign_digest(digest).expect("sign").to_vec().into();
        let forced = lorad_contracts::SignedReceipt { receipt: r, signature };
        let e = settlement_error(w.settle(&[forced]));
        assert!(
            matches!(e, Settlement::SettlementErrors::BadShares(ref x) if x.count == U256::from(shares.len())),
            "{e:?}"
        );
    }
    assert!(w.is_staked(node));
}

#[test]
fn escrow_is_per_node_and_withdrawals_give_notice() {
    let mut w = World::new();
    let node = w.node.address();
    // A requester with escrow for another node only cannot be charged by this node.
    let other = addr("other");
    w.give(other, 100 * OPEN);
    w.deposit(other, addr("some other node"), 100 * OPEN);
    let mut r = w.receipt(1, 10, 10);
    r.requester = other;
    let e = settlement_error(w.settle(&[w.sign(r)]));
    assert!(
        matches!(e, Settlement::SettlementErrors::InsufficientEscrow(ref x) if x.balance == U256::ZERO),
        "{e:?}"
    );

    // Notice, then a receipt settles during the notice, then the rest is withdrawn.
    let all = w.escrow(w.requester, node);
    w.send(w.requester, w.d.settlement, &Settlement::requestWithdrawalCall { node, amount: all });
    assert!(matches!(
        settlement_error(w.try_send(
            w.requester,
            w.d.settlement,
            &Settlement::withdrawCall { node }
        )),
        Settlement::SettlementErrors::WithdrawalNotReady(_)
    ));
    w.settle(&[w.sign(w.receipt(2, 1_000, 1_000))]).expect("settles during the notice");
    let left = w.escrow(w.requester, node);
    assert!(left < all);
    w.chain.advance_time(w.params.withdraw_delay);
    let before = w.token_balance(w.requester);
    w.send(w.requester, w.d.settlement, &Settlement::withdrawCall { node });
    assert_eq!(w.token_balance(w.requester), before + left);
    assert_eq!(w.escrow(w.requester, node), U256::ZERO);
    let e = settlement_error(w.settle(&[w.sign(w.receipt(3, 1, 1))]));
    assert!(matches!(e, Settlement::SettlementErrors::InsufficientEscrow(_)), "{e:?}");
}

#[test]
fn equivocation_slashes_the_whole_stake() {
    let mut w = World::new();
    let node = w.node.address();
    let (reporter, treasury) = (addr("reporter"), w.params.treasury);
    let a = w.sign(w.receipt(9, 100, 100));
    let mut other = w.receipt(9, 100, 100);
    other.outputHash = keccak256("a different answer for the same job");
    let b = w.sign(other);

    let report = |x: &lorad_contracts::SignedReceipt, y: &lorad_contracts::SignedReceipt| {
        Settlement::reportEquivocationCall {
            a: x.receipt.clone(),
            sigA: x.signature.clone(),
            b: y.receipt.clone(),
            sigB: y.signature.clone(),
        }
    };
    // Not equivocation: the same receipt twice, or two jobs, or two signers.
    let e = settlement_error(w.try_send(reporter, w.d.settlement, &report(&a, &a)));
    assert!(matches!(e, Settlement::SettlementErrors::NotEquivocation(_)));
    let c = w.sign(w.receipt(10, 100, 100));
    assert!(matches!(
        settlement_error(w.try_send(reporter, w.d.settlement, &report(&a, &c))),
        Settlement::SettlementErrors::NotEquivocation(_)
    ));
    let mut forged = b.clone();
    forged.signature =
        key("impostor").sign_digest(b.digest(&w.domain)).expect("sign").to_vec().into();
    assert!(matches!(
        settlement_error(w.try_send(reporter, w.d.settlement, &report(&a, &forged))),
        Settlement::SettlementErrors::NotEquivocation(_)
    ));

    // Unbonding stake is slashed too: unstaking cannot outrun a report.
    w.send(
        node,
        w.d.node_registry,
        &NodeRegistry::requestUnbondCall { amount: U256::from(400 * OPEN) },
    );
    let (r0, t0) = (w.token_balance(reporter), w.token_balance(treasury));
    w.send(reporter, w.d.settlement, &report(&a, &b));
    let stake = U256::from(1_000 * OPEN);
    let to_reporter = stake * U256::from(w.params.reporter_bps) / U256::from(10_000u64);
    assert_eq!(w.token_balance(reporter), r0 + to_reporter);
    assert_eq!(w.token_balance(treasury), t0 + stake - to_reporter);
    assert!(!w.is_staked(node));
    let n = w.chain.view(w.d.node_registry, &NodeRegistry::nodesCall(node)).expect("nodes");
    assert_eq!((n.stake, n.unbonding, n.slashed), (U256::ZERO, U256::ZERO, true));
    // The slashed key can neither settle nor stake again.
    assert!(matches!(
        settlement_error(w.settle(&[a])),
        Settlement::SettlementErrors::NodeNotStaked(_)
    ));
    assert!(
        w.try_send(node, w.d.node_registry, &NodeRegistry::stakeCall { amount: U256::from(1u64) })
            .is_err()
    );
    // Nobody but Settlement slashes.
    assert!(
        w.try_send(reporter, w.d.node_registry, &NodeRegistry::slashCall { node, reporter })
            .is_err()
    );
}

#[test]
fn a_batch_of_100_receipts_settles_atomically_and_reports_gas() {
    let mut w = World::new();
    let node = w.node.address();
    let batch: Vec<_> =
        (0..100u64).map(|i| w.sign(w.receipt(1_000 + i, 500 + i as u32, 200))).collect();
    let escrow = w.escrow(w.requester, node);
    let out = w.settle(&batch).expect("the batch settles");
    let per_receipt = out.gas_used / 100;
    println!(
        "settle(100 receipts, 3 shares each): {} gas, {per_receipt} gas per receipt",
        out.gas_used
    );
    let fees: U256 = (0..100u32).map(|i| fees::fee(500 + i, 200, PRICE_IN, PRICE_OUT)).sum();
    assert_eq!(w.escrow(w.requester, node), escrow - fees);
    // A regression guard, not a speed goal: gas is deterministic for fixed bytecode.
    assert!(per_receipt < 150_000, "{per_receipt} gas per receipt");
    for s in &batch {
        let digest =
            w.chain.view(w.d.settlement, &Settlement::settledDigestCall(s.job_id())).expect("view");
        assert_eq!(digest, s.digest(&w.domain));
    }
}

#[test]
fn registries_refuse_what_is_not_theirs_to_change() {
    let mut w = World::new();
    let other = addr("other");
    let datanet = w.datanet_id;
    // A payout, once set, is moved only by its holder.
    let set = lorad_contracts::bindings::DatanetRegistry::setPayoutCall {
        datanetId: datanet,
        contributorId: w.contributors[0],
        payout: other,
    };
    assert!(w.try_send(w.datanet_owner, w.d.datanet_registry, &set).is_err());
    w.chain.fund(w.payouts[0], U256::from(10u128.pow(18)));
    w.send(w.payouts[0], w.d.datanet_registry, &set);
    // Registering an existing adapter id, or with a zero content hash, fails.
    let base = w.base_model_hash;
    let reg = |id, hash| AdapterRegistry::registerCall {
        adapterId: id,
        contentHash: hash,
        baseModelHash: base,
        datanetId: datanet,
        priceInPer1k: 1,
        priceOutPer1k: 1,
    };
    assert!(w.try_send(other, w.d.adapter_registry, &reg(w.adapter_id, keccak256("x"))).is_err());
    assert!(
        w.try_send(other, w.d.adapter_registry, &reg(keccak256("new"), Default::default()))
            .is_err()
    );
    // setSlasher was used once by the deployment; nobody can change it.
    let set_slasher = NodeRegistry::setSlasherCall { slasher_: Address::ZERO };
    assert!(w.try_send(w.deployer, w.d.node_registry, &set_slasher).is_err());
}
