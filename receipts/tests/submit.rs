//! Submission around receipts Settlement refuses: each is taken out of its batch with the
//! contract's reason, the rest settle, and a later run offers the refused ones again.

mod common;

use alloy_primitives::keccak256;
use common::world::{CHAIN_ID, addr, deploy, node_key, receipt, setup_settlement};
use lorad_contracts::EvmBackendExt;
use lorad_contracts::bindings::Settlement;
use lorad_contracts::receipt::domain;
use lorad_receipts::Journal;
use lorad_receipts::submit::{Cursor, SubmitOptions, submit};

#[test]
fn refused_receipts_leave_their_batch_and_the_rest_settle() {
    let (chain, d) = deploy();
    let (mut chain, d) = setup_settlement(chain, d);
    let key = node_key();
    let dom = domain(CHAIN_ID, d.settlement);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receipts.log");
    let (journal, _) = Journal::open(&path).expect("journal");
    let mut bad = Vec::new();
    for job in 0..30u64 {
        let mut r = receipt(job, key.address());
        match job {
            // The adapter's registered hash differs from this one.
            7 => r.adapterHash = keccak256("tampered"),
            // An adapter nobody registered (AdapterRegistry reverts, without an index).
            13 | 14 => r.adapterId = keccak256("unregistered adapter"),
            // Charged to a requester with no escrow for this node.
            21 => r.requester = addr("nobody"),
            _ => {}
        }
        if matches!(job, 7 | 13 | 14 | 21) {
            bad.push(r.jobId);
        }
        let signed = key.sign_receipt(r, &dom).expect("sign");
        journal.append(signed.job_id().0, signed.encode()).expect("append");
    }
    drop(journal);

    let options = SubmitOptions { settlement: d.settlement, from: addr("submitter"), batch: 10 };
    let mut cursor = Cursor::open(&dir.path().join("submitted")).expect("cursor");
    let report = submit(&path, &mut cursor, &mut chain, &options, |_, _| {}).expect("submit");
    assert_eq!(report.submitted, 26, "{report:?}");
    assert_eq!(report.batches, 3);
    let mut rejected: Vec<String> = report.rejected.iter().map(|(j, _)| j.clone()).collect();
    rejected.sort();
    let mut expected: Vec<String> = bad.iter().map(|b| b.to_string()).collect();
    expected.sort();
    assert_eq!(rejected, expected);
    let reason = |job: u64| {
        let id = receipt(job, key.address()).jobId.to_string();
        report.rejected.iter().find(|(j, _)| *j == id).map(|(_, r)| r.clone()).unwrap_or_default()
    };
    assert!(reason(7).contains("AdapterHashMismatch"), "{}", reason(7));
    assert!(reason(21).contains("InsufficientEscrow"), "{}", reason(21));
    for job in 0..30u64 {
        let id = receipt(job, key.address()).jobId;
        let digest = chain.view(d.settlement, &Settlement::settledDigestCall(id)).expect("view");
        assert_eq!(digest.is_zero(), bad.contains(&id), "job {job}");
    }
    // The refused ones are offered again next time (and refused again); nothing else is sent.
    let again = submit(&path, &mut cursor, &mut chain, &options, |_, _| {}).expect("again");
    assert_eq!((again.submitted, again.known_settled, again.rejected.len()), (0, 26, 4));
}
