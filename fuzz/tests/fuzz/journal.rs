//! The receipt journal on disk, damaged (bit rot, a torn tail, a copy gone wrong): opening must
//! either recover, keeping every receipt stored wholly before the first damaged byte, or refuse
//! and leave the file exactly as it was. Signed receipts are what the node gets paid for.

use lorad_fuzz::{Campaign, Mutator, Outcome};
use lorad_receipts::Journal;

fn id(i: u8) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[0] = i;
    id[31] = 0xA5;
    id
}

fn payload(i: u8) -> Vec<u8> {
    (0..40 + usize::from(i) * 13).map(|k| (k as u8).wrapping_mul(i).wrapping_add(7)).collect()
}

#[test]
fn journal_damage() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine.journal");
    let mut ends = Vec::new();
    {
        let (journal, _) = Journal::open(&pristine).expect("creating the journal");
        for i in 0..8u8 {
            journal.append(id(i), payload(i)).expect("append");
            ends.push(std::fs::metadata(&pristine).expect("journal").len());
        }
    }
    let original = std::fs::read(&pristine).expect("journal bytes");
    let path = tmp.path().join("work.journal");
    let campaign = Campaign::new("receipt-journal", 400);
    let mut m =
        Mutator::new(campaign.seed(), original.len() + 4096).with_dictionary([&b"LRC1"[..]]);
    let report = campaign.run(
        std::slice::from_ref(&original),
        |s| m.mutate(s),
        |bytes| -> Outcome {
            std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
            let opened = Journal::open(&path);
            let Ok((journal, recovery)) = opened else {
                let after = std::fs::read(&path).map_err(|e| e.to_string())?;
                assert_eq!(after, *bytes, "a refused journal was changed");
                return Err(opened.err().map(|e| e.to_string()).unwrap_or_default());
            };
            // Records wholly before the first changed byte (and not cut off) were not damaged.
            let first_diff = original.iter().zip(bytes).position(|(a, b)| a != b);
            let intact = first_diff.unwrap_or(original.len().min(bytes.len())) as u64;
            for (i, &end) in ends.iter().enumerate() {
                if end <= intact {
                    let got = journal.get(&id(i as u8)).map_err(|e| e.to_string())?;
                    assert_eq!(got, Some(payload(i as u8)), "receipt {i} lost ({recovery:?})");
                }
            }
            // And the recovered journal takes appends.
            journal.append(id(200), payload(3)).map_err(|e| e.to_string())?;
            if recovery.truncated_bytes > 0 {
                return Err(format!("recovered, cut {} bytes", recovery.truncated_bytes));
            }
            Ok(())
        },
    );
    assert!(report.rejected > 0, "{report:?}");
}
