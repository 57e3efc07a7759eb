//! The journal on its own: durability bookkeeping, dedupe, crash recovery, corruption.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use lorad_receipts::record::{self, HEADER_LEN};
use lorad_receipts::{Appended, Journal, ReceiptsError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn id(i: u64) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&i.to_be_bytes());
    id[31] = 0xAB;
    id
}

fn payload(i: u64) -> Vec<u8> {
    format!("receipt {i} ").repeat((i % 7 + 1) as usize).into_bytes()
}

#[test]
fn concurrent_appends_are_durable_deduplicated_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receipts.log");
    let (journal, recovery) = Journal::open(&path).expect("open");
    assert_eq!(recovery.records, 0);
    let journal = Arc::new(journal);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let j = Arc::clone(&journal);
            std::thread::spawn(move || {
                let mut dup = 0;
                // Threads overlap: ids 0..1000 are each appended by two threads.
                for i in (t * 125)..(t * 125 + 250) {
                    let i = i % 1000;
                    if j.append(id(i), payload(i)).expect("append") == Appended::Duplicate {
                        dup += 1;
                    }
                }
                dup
            })
        })
        .collect();
    let duplicates: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(duplicates, 1000, "every id appended twice, stored once");
    assert_eq!(journal.len(), 1000);
    assert_eq!(journal.get(&id(17)).expect("get"), Some(payload(17)));
    assert_eq!(journal.get(&id(5000)).expect("get"), None);
    drop(journal);

    let (journal, recovery) = Journal::open(&path).expect("reopen");
    assert_eq!((recovery.records, recovery.truncated_bytes, recovery.duplicate_ids), (1000, 0, 0));
    for i in 0..1000 {
        assert_eq!(journal.get(&id(i)).expect("get"), Some(payload(i)), "record {i}");
    }
    assert_eq!(
        journal.append(id(3), b"a different payload".to_vec()).expect("append"),
        Appended::Duplicate
    );
    assert_eq!(journal.get(&id(3)).expect("get"), Some(payload(3)), "the first record wins");
    let mut seen = 0;
    journal.for_each(|_| seen += 1).expect("scan");
    assert_eq!(seen, 1000);
}

#[test]
fn a_torn_last_record_is_cut_and_nothing_else_is_lost() {
    let mut rng = ChaCha20Rng::seed_from_u64(44);
    let mut full = Vec::new();
    record::encode(&id(99), &payload(99), &mut full);
    // Every way a crash can leave the tail: cut anywhere in the header or payload, a
    // garbled last record, or zeros where the filesystem extended the file.
    let mut tails: Vec<Vec<u8>> = (1..full.len()).map(|cut| full[..cut].to_vec()).collect();
    let mut garbled = full.clone();
    garbled[HEADER_LEN + 3] ^= 0x40;
    tails.push(garbled);
    tails.push(vec![0u8; 4096]);
    tails.push(vec![0u8; 7]);
    // A header cut short and the rest of the extended block never written.
    let mut header_then_zeros = full[..20].to_vec();
    header_then_zeros.resize(4096, 0);
    tails.push(header_then_zeros);
    tails.push((0..3000).map(|_| rng.random::<u8>()).collect());
    for tail in tails {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("receipts.log");
        let n = rng.random_range(1..20u64);
        {
            let (j, _) = Journal::open(&path).expect("open");
            for i in 0..n {
                j.append(id(i), payload(i)).expect("append");
            }
        }
        let clean_len = std::fs::metadata(&path).expect("meta").len();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&tail))
            .expect("tear");
        let (j, recovery) = Journal::open(&path).expect("recovers");
        assert_eq!(recovery.records as u64, n);
        assert_eq!(recovery.truncated_bytes, tail.len() as u64);
        assert!(recovery.truncated_reason.is_some());
        // What was cut is kept aside, unless it was only zeros.
        match &recovery.saved_to {
            None => assert!(tail.iter().all(|&b| b == 0)),
            Some(saved) => assert_eq!(std::fs::read(saved).expect("saved tail"), tail),
        }
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), clean_len);
        // Appending after recovery works, and the next open is clean.
        j.append(id(99), payload(99)).expect("append");
        drop(j);
        let (j, recovery) = Journal::open(&path).expect("reopen");
        assert_eq!((recovery.records as u64, recovery.truncated_bytes), (n + 1, 0));
        assert_eq!(j.get(&id(99)).expect("get"), Some(payload(99)));
    }
}

/// Two tails cut at the same offset (two crashes before the next acknowledged append) are
/// both kept.
#[test]
fn tails_cut_at_the_same_offset_are_all_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receipts.log");
    drop(Journal::open(&path).expect("open"));
    let mut saved = Vec::new();
    for garbage in [b"first torn tail".as_slice(), b"second torn tail"] {
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(garbage))
            .expect("tear");
        let (_, recovery) = Journal::open(&path).expect("recovers");
        let at = recovery.saved_to.expect("kept");
        assert_eq!(std::fs::read(&at).expect("saved"), garbage);
        saved.push(at);
    }
    assert_ne!(saved[0], saved[1]);
    assert_eq!(std::fs::read(&saved[0]).expect("first kept"), b"first torn tail");
}

#[test]
fn damage_before_the_last_record_is_an_error_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receipts.log");
    {
        let (j, _) = Journal::open(&path).expect("open");
        for i in 0..10 {
            j.append(id(i), payload(i)).expect("append");
        }
    }
    let good = std::fs::read(&path).expect("read");
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    // Stay clear of the last record (the torn-tail case) by flipping in the first half.
    for _ in 0..50 {
        let mut bad = good.clone();
        let at = rng.random_range(0..good.len() / 2);
        bad[at] ^= 1 << rng.random_range(0..8);
        std::fs::write(&path, &bad).expect("write");
        match Journal::open(&path) {
            Err(ReceiptsError::Corrupt { offset, .. }) => assert!(offset <= at as u64),
            other => panic!("a flip at byte {at} gave {other:?}"),
        }
        assert_eq!(std::fs::read(&path).expect("read"), bad, "the damaged file was modified");
    }
}

#[test]
fn one_process_at_a_time_and_oversized_records_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receipts.log");
    let (j, _) = Journal::open(&path).expect("open");
    assert!(matches!(Journal::open(&path), Err(ReceiptsError::Locked { .. })));
    let err = j.append(id(1), vec![0u8; record::MAX_PAYLOAD + 1]).expect_err("too large");
    assert!(matches!(err, ReceiptsError::TooLarge { .. }), "{err}");
    assert!(j.is_empty());
    drop(j);
    Journal::open(&path).expect("the lock is released with the journal");
}
