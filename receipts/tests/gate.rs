//! The signing gate: every reason to refuse, and the receipt it signs when nothing is wrong.
//! The fact source here is a test double behind the `FactSource` trait; the daemon's is the
//! light client.

use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256, U256, keccak256};
use lorad_contracts::receipt::{contributor_id, domain};
use lorad_contracts::{NodeKey, SignedReceipt};
use lorad_receipts::Journal;
use lorad_receipts::gate::{Answer, FactSource, GatePolicy, Notary, ProvenFacts, verify_gate};

const NOW: u64 = 1_800_000_000;

fn answer() -> Answer {
    Answer {
        job_id: keccak256("job 1"),
        requester: Address::repeat_byte(0x11),
        adapter_id: keccak256("adapter"),
        adapter_hash: keccak256("loaded adapter"),
        base_model_hash: keccak256("base"),
        prompt_hash: keccak256("prompt"),
        output_hash: keccak256("output"),
        tokens_in: 12,
        tokens_out: 34,
        datanet_id: keccak256("datanet"),
        attribution_root: keccak256("attribution"),
        weights: vec![(contributor_id("alice"), 0.75), (contributor_id("bob"), 0.25)],
    }
}

fn facts() -> ProvenFacts {
    ProvenFacts {
        block_number: 99,
        block_hash: keccak256("block 99"),
        block_timestamp: NOW - 10,
        adapter_content_hash: keccak256("loaded adapter"),
        adapter_base_model_hash: keccak256("base"),
        adapter_datanet_id: keccak256("datanet"),
        node_stake: U256::from(1_000u64),
        node_slashed: false,
    }
}

/// Spoils one fact.
type Breaks = fn(&mut ProvenFacts);

const POLICY: GatePolicy =
    GatePolicy { max_block_age_secs: 60, min_stake: U256::from_limbs([1_000, 0, 0, 0]) };

#[test]
fn every_broken_fact_is_refused_with_its_own_code() {
    verify_gate(&answer(), &facts(), &POLICY, NOW).expect("all facts hold");
    let cases: [(&str, Breaks); 7] = [
        ("stale_l2_block", |f| f.block_timestamp = NOW - 61),
        ("adapter_not_registered", |f| f.adapter_content_hash = B256::ZERO),
        ("adapter_hash_mismatch", |f| f.adapter_content_hash = keccak256("tampered")),
        ("base_model_mismatch", |f| f.adapter_base_model_hash = keccak256("other base")),
        ("datanet_mismatch", |f| f.adapter_datanet_id = keccak256("other datanet")),
        ("node_slashed", |f| f.node_slashed = true),
        ("node_not_staked", |f| f.node_stake = U256::from(999u64)),
    ];
    for (code, break_it) in cases {
        let mut f = facts();
        break_it(&mut f);
        let refusal = verify_gate(&answer(), &f, &POLICY, NOW).expect_err(code);
        assert_eq!(refusal.code, code, "{refusal}");
        assert!(!refusal.message.is_empty());
    }
    // Exactly at the age limit still passes.
    let mut f = facts();
    f.block_timestamp = NOW - 60;
    verify_gate(&answer(), &f, &POLICY, NOW).expect("60 s is allowed");
}

#[derive(Debug)]
struct Fixed(Mutex<Result<ProvenFacts, String>>);

impl FactSource for Fixed {
    fn facts(&self, _adapter: B256, _node: Address) -> Result<ProvenFacts, String> {
        self.0.lock().expect("lock").clone()
    }
}

fn notary(dir: &std::path::Path, facts: Option<Arc<dyn FactSource>>) -> Notary {
    let (journal, _) = Journal::open(&dir.join("receipts.log")).expect("journal");
    let key = NodeKey::from_secret(keccak256("gate node")).expect("key");
    Notary::new(key, Arc::new(journal), domain(10, Address::repeat_byte(0x5e)), facts, POLICY)
}

#[test]
fn the_notary_signs_journals_and_never_signs_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = Arc::new(Fixed(Mutex::new(Ok(facts()))));
    let n = notary(dir.path(), Some(source.clone()));
    let signed = n.notarize(&answer(), NOW).expect("signed");
    signed.verify(n.domain()).expect("valid signature by the node");
    let r = &signed.receipt;
    assert_eq!((r.l2BlockNumber, r.l2BlockHash, r.timestamp), (99, keccak256("block 99"), NOW));
    assert_eq!(r.shares.iter().map(|s| s.bps).collect::<Vec<_>>(), vec![7_500, 2_500]);
    assert_eq!(n.receipt(&answer().job_id).expect("read"), Some(signed.clone()));

    // The same job again (a retried request) gets the same receipt, even once the facts change.
    *source.0.lock().expect("lock") = Err("RPC down".into());
    assert_eq!(n.notarize(&answer(), NOW + 5).expect("same receipt"), signed);
    assert_eq!(n.journal().len(), 1);

    // A new job while the chain is unreachable: refused, and nothing journaled.
    let mut other = answer();
    other.job_id = keccak256("job 2");
    assert_eq!(n.notarize(&other, NOW).expect_err("no facts").code, "chain_unavailable");
    assert_eq!(n.journal().len(), 1);

    // A tampered adapter file hashes differently from the registration: no receipt.
    *source.0.lock().expect("lock") = Ok(facts());
    other.adapter_hash = keccak256("tampered adapter file");
    assert_eq!(n.notarize(&other, NOW).expect_err("tampered").code, "adapter_hash_mismatch");
    other.adapter_hash = answer().adapter_hash;
    other.weights = vec![];
    assert_eq!(n.notarize(&other, NOW).expect_err("no weights").code, "no_attribution");

    // Survives a restart: the receipt is read back from the journal.
    drop(n);
    let n = notary(dir.path(), None);
    let back: SignedReceipt = n.receipt(&answer().job_id).expect("read").expect("present");
    assert_eq!(back, signed);
    // Without a verified chain, new answers are refused with their reason.
    other.job_id = keccak256("job 3");
    assert_eq!(n.notarize(&other, NOW).expect_err("no chain").code, "no_verified_chain");
}
