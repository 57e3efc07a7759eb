//! kill -9 during bursts of 10,000 receipts, repeated: after each restart every receipt a
//! client was given is in the journal, none twice; then `submit` settles each exactly once,
//! also when it crashes between a landed batch and its cursor update.
//!
//! The child is this test binary run again with `LORAD_RECEIPTS_CHILD` set: it signs real
//! receipts and prints each job id once the journal acknowledged it (what a client sees).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use lorad_contracts::bindings::Settlement;
use lorad_contracts::chain::TxOutcome;
use lorad_contracts::receipt::domain;
use lorad_contracts::{ContractsError, EvmBackend, EvmBackendExt, EvmChain, SignedReceipt};
use lorad_receipts::submit::{Cursor, SubmitOptions, submit};
use lorad_receipts::{Appended, Journal};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

mod common;
use common::world::{CHAIN_ID, PRICE, addr, deploy, escrow, node_key, receipt, setup_settlement};

const BURST: u64 = 10_000;
const RUNS: u64 = 4;
const CHILD_ENV: &str = "LORAD_RECEIPTS_CHILD";

/// Child: append receipts `first..first + BURST` from 4 threads (each job also retried by a
/// second thread, as a client retry would), printing each acknowledged job id.
#[test]
fn journal_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (dir, first) = spec.split_once(':').expect("dir:first");
    let first: u64 = first.parse().expect("first job");
    let (journal, _) = Journal::open(&Path::new(dir).join("receipts.log")).expect("child open");
    let journal = Arc::new(journal);
    let (_, d) = deploy();
    let domain = domain(CHAIN_ID, d.settlement);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (journal, out, domain) = (Arc::clone(&journal), Arc::clone(&out), domain.clone());
            std::thread::spawn(move || {
                let key = node_key();
                for i in (0..BURST).filter(|i| i % 4 == t || i % 4 == (t + 1) % 4) {
                    let job = first + i;
                    let signed =
                        key.sign_receipt(receipt(job, key.address()), &domain).expect("sign");
                    let outcome =
                        journal.append(signed.job_id().0, signed.encode()).expect("append");
                    assert!(matches!(outcome, Appended::Stored | Appended::Duplicate));
                    let mut o = out.lock().expect("stdout");
                    writeln!(o, "ack {job}").and_then(|()| o.flush()).expect("print");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
}

/// A backend that "crashes" after `sends_left` transactions: the transaction lands, then the
/// call fails, as when lorad dies before it records the batch in its cursor.
struct CrashAfter<'a> {
    inner: &'a mut EvmChain,
    sends_left: usize,
}

impl EvmBackend for CrashAfter<'_> {
    fn chain_id(&self) -> u64 {
        self.inner.chain_id()
    }
    fn deploy(&mut self, from: Address, init_code: Bytes) -> Result<Address, ContractsError> {
        self.inner.deploy(from, init_code)
    }
    fn send(
        &mut self,
        from: Address,
        to: Address,
        data: Bytes,
    ) -> Result<TxOutcome, ContractsError> {
        let outcome = self.inner.send(from, to, data)?;
        if self.sends_left == 0 {
            return Err(ContractsError::Evm {
                reason: "simulated crash after the batch landed".into(),
            });
        }
        self.sends_left -= 1;
        Ok(outcome)
    }
    fn call(&mut self, from: Address, to: Address, data: Bytes) -> Result<Bytes, ContractsError> {
        self.inner.call(from, to, data)
    }
}

#[test]
fn kill_9_during_receipt_bursts_loses_nothing_acknowledged_and_settles_exactly_once() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let journal_path = dir.path().join("receipts.log");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut acked: HashSet<u64> = HashSet::new();
    for run in 0..RUNS {
        // Each run overlaps the previous one's jobs by half a burst (clients retrying).
        let first = run * BURST / 2;
        let kill_after = rng.random_range(200..(BURST as usize * 9 / 10));
        let mut child = Command::new(&exe)
            .args(["journal_child_process", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}:{first}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(job) = line.strip_prefix("ack ") {
                acked.insert(job.parse().expect("job"));
                seen += 1;
                if seen == kill_after {
                    child.kill().expect("SIGKILL");
                    break;
                }
            }
        }
        let status = child.wait().expect("wait");
        assert!(seen == kill_after || status.success(), "run {run}: child failed early: {status}");

        let (journal, recovery) = Journal::open(&journal_path).expect("reopen after kill -9");
        assert_eq!(recovery.duplicate_ids, 0, "run {run}");
        for job in &acked {
            assert!(
                journal.contains(&keccak256(job.to_be_bytes()).0),
                "run {run}: acknowledged job {job} lost"
            );
        }
        eprintln!(
            "run {run}: killed after {seen} acks; journal holds {} receipts; cut {} bytes",
            journal.len(),
            recovery.truncated_bytes
        );
    }

    // Every stored receipt decodes and verifies; no job id twice.
    let (chain, d) = deploy();
    let domain = domain(CHAIN_ID, d.settlement);
    let mut ids = HashSet::new();
    let mut stored = Vec::new();
    lorad_receipts::read_records(&journal_path, |f| {
        assert!(ids.insert(f.id), "job id twice in the journal");
        stored.push(SignedReceipt::decode(&f.payload).expect("decodes"));
    })
    .expect("scan");
    for s in &stored {
        s.verify(&domain).expect("verifies");
    }

    // Settle: crash after the second batch landed, then resume.
    let (mut chain, d) = setup_settlement(chain, d);
    let escrow_before = escrow(&mut chain, &d);
    let options = SubmitOptions { settlement: d.settlement, from: addr("submitter"), batch: 200 };
    let cursor_path = dir.path().join("submitted");
    let mut cursor = Cursor::open(&cursor_path).expect("cursor");
    let crash = submit(
        &journal_path,
        &mut cursor,
        &mut CrashAfter { inner: &mut chain, sends_left: 2 },
        &options,
        |_, _| {},
    );
    assert!(crash.is_err(), "the simulated crash surfaces");
    drop(cursor);
    let mut cursor = Cursor::open(&cursor_path).expect("cursor");
    assert_eq!(cursor.len(), 400, "two batches recorded before the crash");
    let report =
        submit(&journal_path, &mut cursor, &mut chain, &options, |_, _| {}).expect("resume");
    assert_eq!(report.known_settled, 400);
    assert_eq!(
        report.found_settled, 200,
        "the batch that landed during the crash is not sent again"
    );
    assert_eq!(report.submitted + 600, stored.len());
    assert!(report.conflicts.is_empty());
    // Exactly once: every job settled with our digest, escrow charged once per receipt.
    let mut total_fee = U256::ZERO;
    for s in &stored {
        let on_chain: B256 =
            chain.view(d.settlement, &Settlement::settledDigestCall(s.job_id())).expect("view");
        assert_eq!(on_chain, s.digest(&domain));
        total_fee +=
            lorad_contracts::fees::fee(s.receipt.tokensIn, s.receipt.tokensOut, PRICE, PRICE);
    }
    assert_eq!(escrow(&mut chain, &d), escrow_before - total_fee);
    let again =
        submit(&journal_path, &mut cursor, &mut chain, &options, |_, _| {}).expect("idempotent");
    assert_eq!((again.submitted, again.batches, again.known_settled), (0, 0, stored.len()));
}
