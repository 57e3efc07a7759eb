//! Settling journaled receipts exactly once, across crashes.
//!
//! The chain is the source of truth: before a receipt is submitted, Settlement's
//! `settledDigest(jobId)` is read, so a receipt whose batch landed just before a crash is
//! never sent again. A local cursor file (job ids known settled, fsynced after each batch)
//! only saves those reads on the next run. Were a batch sent twice anyway (a crash while its
//! transaction was in flight), Settlement's replay guard reverts the second one: the
//! contract, not this code, makes double settlement impossible.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use alloy_primitives::hex;
use alloy_primitives::{Address, B256};
use alloy_sol_types::SolInterface;
use lorad_contracts::bindings::Settlement;
use lorad_contracts::chain::TxOutcome;
use lorad_contracts::receipt::domain;
use lorad_contracts::{EvmBackend, EvmBackendExt, SignedReceipt};

use crate::{ReceiptsError, read_records};

/// Job ids this node has seen settled: 32 bytes each, appended after every batch.
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    file: File,
    settled: HashSet<[u8; 32]>,
}

impl Cursor {
    /// Opens (creating) the cursor at `path`; a partial last entry (a crash mid-write) is cut.
    pub fn open(path: &Path) -> Result<Self, ReceiptsError> {
        let io = |what, source| ReceiptsError::Io { what, path: path.to_path_buf(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io("opening", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io("reading", e))?;
        let whole = bytes.len() / 32 * 32;
        if whole != bytes.len() {
            file.set_len(whole as u64).map_err(|e| io("truncating", e))?;
        }
        let settled = bytes[..whole]
            .chunks_exact(32)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(c);
                id
            })
            .collect();
        Ok(Self { path: path.to_path_buf(), file, settled })
    }

    /// Whether `id` is known settled.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.settled.contains(id)
    }

    /// Number of job ids known settled.
    pub fn len(&self) -> usize {
        self.settled.len()
    }

    /// Whether no job id is known settled.
    pub fn is_empty(&self) -> bool {
        self.settled.is_empty()
    }

    /// Records `ids` as settled, durably.
    pub fn mark(&mut self, ids: &[[u8; 32]]) -> Result<(), ReceiptsError> {
        let fresh: Vec<[u8; 32]> =
            ids.iter().filter(|id| !self.settled.contains(*id)).copied().collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let bytes: Vec<u8> = fresh.iter().flatten().copied().collect();
        self.file.write_all(&bytes).and_then(|()| self.file.sync_data()).map_err(|source| {
            ReceiptsError::Io { what: "writing", path: self.path.clone(), source }
        })?;
        self.settled.extend(fresh);
        Ok(())
    }
}

/// Where and how to submit.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// The Settlement contract.
    pub settlement: Address,
    /// The account that sends the transactions (pays gas; anyone may submit).
    pub from: Address,
    /// Receipts per `settle` transaction (about 66,000 gas each; 250 fit the 2^24 cap).
    pub batch: usize,
}

/// What a submission did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitReport {
    /// Receipts in the journal.
    pub journaled: usize,
    /// Skipped: the cursor knew them settled.
    pub known_settled: usize,
    /// Skipped: Settlement already had them (a batch that landed before a crash).
    pub found_settled: usize,
    /// Skipped: signed for another chain or Settlement contract.
    pub other_domain: usize,
    /// Settled by this run.
    pub submitted: usize,
    /// `settle` transactions sent.
    pub batches: usize,
    /// Gas of those transactions.
    pub gas_used: u64,
    /// Job ids Settlement settled with a different receipt than the journal's (hex).
    pub conflicts: Vec<String>,
    /// Receipts Settlement refused (job id, its error), taken out of their batch so the rest
    /// settle. Not recorded as settled: a later run tries them again (after a top-up of the
    /// escrow, say).
    pub rejected: Vec<(String, String)>,
}

/// Submits every journaled receipt not yet settled, in batches, recording progress in
/// `cursor` after each batch. `progress(done, total)` is called after each batch.
pub fn submit<B: EvmBackend + ?Sized>(
    journal: &Path,
    cursor: &mut Cursor,
    chain: &mut B,
    options: &SubmitOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<SubmitReport, ReceiptsError> {
    let domain = domain(chain.chain_id(), options.settlement);
    let mut report = SubmitReport::default();
    let mut receipts = Vec::new();
    let mut bad = None;
    read_records(journal, |f| {
        report.journaled += 1;
        if cursor.contains(&f.id) {
            report.known_settled += 1;
            return;
        }
        match SignedReceipt::decode(&f.payload) {
            Ok(r) => receipts.push(r),
            Err(source) if bad.is_none() => {
                bad = Some(ReceiptsError::BadReceipt { id: hex::encode_prefixed(f.id), source })
            }
            Err(_) => {}
        }
    })?;
    if let Some(e) = bad {
        return Err(e);
    }

    let mut pending = Vec::with_capacity(receipts.len());
    let mut found = Vec::new();
    for r in receipts {
        match r.recover_signer(&domain) {
            Ok(signer) if signer == r.receipt.node => {}
            _ => {
                report.other_domain += 1;
                continue;
            }
        }
        let on_chain: B256 = chain
            .view(options.settlement, &Settlement::settledDigestCall(r.job_id()))
            .map_err(|source| ReceiptsError::Chain { source })?;
        if on_chain.is_zero() {
            pending.push(r);
        } else if on_chain == r.digest(&domain) {
            found.push(r.job_id().0);
        } else {
            report.conflicts.push(hex::encode_prefixed(r.job_id()));
        }
    }
    report.found_settled = found.len();
    cursor.mark(&found)?;

    let total = pending.len();
    for chunk in pending.chunks(options.batch.max(1)) {
        let mut queue: Vec<&SignedReceipt> = chunk.iter().collect();
        while !queue.is_empty() {
            let data = match send_batch(chain, options, &queue) {
                Ok(outcome) => {
                    report.batches += 1;
                    report.gas_used += outcome.gas_used;
                    report.submitted += queue.len();
                    cursor.mark(&queue.iter().map(|r| r.job_id().0).collect::<Vec<_>>())?;
                    progress(report.submitted, total);
                    break;
                }
                Err(ReceiptsError::Chain { source }) => match source.revert_data() {
                    Some(data) if !data.is_empty() => data.clone(),
                    _ => return Err(ReceiptsError::Chain { source }),
                },
                Err(e) => return Err(e),
            };
            // One receipt Settlement refuses must not hold back the others in its batch.
            let Some(refused) = refused_receipts(&data, &queue) else {
                return Err(ReceiptsError::Chain {
                    source: lorad_contracts::chain::reverted("settle", data),
                });
            };
            let reason = lorad_contracts::chain::decode_revert(&data);
            let mut settled_meanwhile = Vec::new();
            for &i in refused.iter().rev() {
                let r = queue.remove(i);
                if reason.contains("AlreadySettled") {
                    settled_meanwhile.push(r.job_id().0);
                } else {
                    report.rejected.push((hex::encode_prefixed(r.job_id()), reason.clone()));
                }
            }
            report.found_settled += settled_meanwhile.len();
            cursor.mark(&settled_meanwhile)?;
        }
    }
    Ok(report)
}

/// Which receipts of `queue` a `settle` revert names: the index Settlement's errors carry,
/// or every receipt of an adapter AdapterRegistry does not know. `None`: not a per-receipt
/// refusal (the whole submission stops).
fn refused_receipts(data: &[u8], queue: &[&SignedReceipt]) -> Option<Vec<usize>> {
    use lorad_contracts::bindings::AdapterRegistry::AdapterRegistryErrors;
    use lorad_contracts::bindings::Settlement::SettlementErrors as E;
    if let Ok(AdapterRegistryErrors::UnknownAdapter(u)) = AdapterRegistryErrors::abi_decode(data) {
        let all: Vec<usize> =
            (0..queue.len()).filter(|&i| queue[i].receipt.adapterId == u.adapterId).collect();
        return (!all.is_empty()).then_some(all);
    }
    let index = match E::abi_decode(data).ok()? {
        E::BadSignature(e) => e.index,
        E::WrongSigner(e) => e.index,
        E::NodeNotStaked(e) => e.index,
        E::AlreadySettled(e) => e.index,
        E::AdapterHashMismatch(e) => e.index,
        E::BaseModelMismatch(e) => e.index,
        E::DatanetMismatch(e) => e.index,
        E::BadShares(e) => e.index,
        E::InsufficientEscrow(e) => e.index,
        _ => return None,
    };
    let i = usize::try_from(index).ok().filter(|&i| i < queue.len())?;
    Some(vec![i])
}

fn send_batch<B: EvmBackend + ?Sized>(
    chain: &mut B,
    options: &SubmitOptions,
    chunk: &[&SignedReceipt],
) -> Result<TxOutcome, ReceiptsError> {
    let call = Settlement::settleCall {
        receipts: chunk.iter().map(|r| r.receipt.clone()).collect(),
        signatures: chunk.iter().map(|r| r.signature.clone()).collect(),
    };
    chain
        .send_call(options.from, options.settlement, &call)
        .map_err(|source| ReceiptsError::Chain { source })
}
