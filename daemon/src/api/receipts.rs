//! Receipts in the API: the signing gate applied to each adapter answer, the `receipt` /
//! `receipt_refused` fields of the final response (or chunk), `GET /v1/receipts/{id}`, and
//! the counters `/metrics` shows.
//!
//! What the node signs for an answer (the EIP-712 `Receipt`, see `docs/contracts.md`):
//! - `jobId` = keccak256(node address ‖ response id), unique per answer;
//! - `requester` = the request's OpenAI `user` field, which must be the 0x address whose
//!   escrow pays (no address: no receipt, `no_requester`);
//! - `adapterId` = keccak256(adapter name), `adapterHash` = the store's content hash of the
//!   adapter that ran, `baseModelHash` = the served base model's hash;
//! - `promptHash` = keccak256(prompt token ids as u32 LE), `outputHash` = keccak256(answer text);
//! - `datanetId` = keccak256(Datanet name), `attributionRoot` = keccak256(the attribution
//!   object as returned), shares = the attribution's contributors (keccak256 of each name).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::{Address, B256, keccak256};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use lorad_contracts::receipt::contributor_id;
use lorad_receipts::gate::{Answer, Notary, REFUSAL_CODES, Refusal};
use serde::Serialize;
use serde_json::Value;

use super::attribution::AttributionOut;
use super::errors::ApiError;
use super::ids::unix_now;
use super::state::AppState;

/// The notary with the counters of what it did.
#[derive(Debug)]
pub struct ReceiptDesk {
    notary: Notary,
    signed: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl ReceiptDesk {
    /// A desk over `notary`.
    pub fn new(notary: Notary) -> Self {
        let refused = REFUSAL_CODES.iter().chain(DAEMON_CODES.iter()).map(|c| (*c, 0)).collect();
        Self { notary, signed: AtomicU64::new(0), refused: Mutex::new(refused) }
    }

    fn count_refusal(&self, code: &'static str) {
        if let Ok(mut r) = self.refused.lock() {
            *r.entry(code).or_default() += 1;
        }
    }

    /// Receipts signed since start, and refusals by code (for `/metrics`).
    pub(crate) fn counts(&self) -> (u64, Vec<(&'static str, u64)>) {
        let refused = self
            .refused
            .lock()
            .map(|r| r.iter().map(|(c, n)| (*c, *n)).collect())
            .unwrap_or_default();
        (self.signed.load(Ordering::Relaxed), refused)
    }
}

/// Refusals decided here rather than by the gate.
const DAEMON_CODES: [&str; 2] = ["no_requester", "no_adapter"];

/// `receipt_refused` in a response.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RefusedOut {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// What the final response carries: a receipt object, or `null` with the reason.
#[derive(Debug, Clone)]
pub(crate) struct ReceiptOut {
    pub(crate) receipt: Value,
    pub(crate) refused: Option<RefusedOut>,
}

/// What a request needs to be receipted once its answer is complete.
#[derive(Debug)]
pub(crate) struct ReceiptJob {
    pub(crate) desk: std::sync::Arc<ReceiptDesk>,
    /// Adapter name and content hash (hex), `None` for the base model.
    pub(crate) adapter: Option<(String, String)>,
    pub(crate) base_hash: String,
    pub(crate) prompt_hash: B256,
    pub(crate) tokens_in: u32,
    /// The request's `user` field.
    pub(crate) user: Option<Value>,
}

impl ReceiptJob {
    /// Runs the gate for the finished answer (on a blocking thread: proofs and fsync).
    pub(crate) async fn run(
        self,
        response_id: &str,
        text: &str,
        tokens_out: usize,
        attribution: Option<&AttributionOut>,
    ) -> ReceiptOut {
        let desk = self.desk.clone();
        let answer = match self.answer(response_id, text, tokens_out, attribution) {
            Ok(a) => a,
            Err(r) => return refused(&desk, r),
        };
        let notarizing = desk.clone();
        let joined =
            tokio::task::spawn_blocking(move || notarizing.notary.notarize(&answer, unix_now()))
                .await;
        match joined {
            Ok(Ok(signed)) => {
                desk.signed.fetch_add(1, Ordering::Relaxed);
                ReceiptOut { receipt: signed.to_json(Some(desk.notary.domain())), refused: None }
            }
            Ok(Err(r)) => refused(&desk, r),
            Err(e) => refused(
                &desk,
                Refusal::new("signing_failed", format!("the signing task failed: {e}")),
            ),
        }
    }

    fn answer(
        &self,
        response_id: &str,
        text: &str,
        tokens_out: usize,
        attribution: Option<&AttributionOut>,
    ) -> Result<Answer, Refusal> {
        let Some((name, content_hash)) = &self.adapter else {
            return Err(Refusal::new(
                "no_adapter",
                "base-model answers are not settled; only adapter answers are",
            ));
        };
        let requester = requester(self.user.as_ref())?;
        // Without an attribution the gate still runs (its reasons come first); the notary then
        // refuses for lack of shares (`no_attribution`).
        let attribution_json = match attribution {
            Some(att) => serde_json::to_vec(att).map_err(|e| {
                Refusal::new("no_attribution", format!("cannot encode the attribution: {e}"))
            })?,
            None => Vec::new(),
        };
        let hex32 = |what: &str, s: &str| -> Result<B256, Refusal> {
            s.trim_start_matches("0x").parse::<B256>().map_err(|_| {
                Refusal::new("signing_failed", format!("the {what} '{s}' is not 32 bytes of hex"))
            })
        };
        let node = self.desk.notary.node();
        let mut job = node.to_vec();
        job.extend_from_slice(response_id.as_bytes());
        Ok(Answer {
            job_id: keccak256(&job),
            requester,
            adapter_id: keccak256(name.as_bytes()),
            adapter_hash: hex32("adapter content hash", content_hash)?,
            base_model_hash: hex32("base model hash", &self.base_hash)?,
            prompt_hash: self.prompt_hash,
            output_hash: keccak256(text.as_bytes()),
            tokens_in: self.tokens_in,
            tokens_out: u32::try_from(tokens_out).unwrap_or(u32::MAX),
            datanet_id: attribution.map_or(B256::ZERO, |a| keccak256(a.datanet.as_bytes())),
            attribution_root: if attribution.is_some() {
                keccak256(&attribution_json)
            } else {
                B256::ZERO
            },
            weights: attribution
                .map(|a| {
                    a.contributors
                        .iter()
                        .map(|c| (contributor_id(&c.contributor), f64::from(c.weight_bps)))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// keccak256 of the prompt's token ids, each as u32 little-endian.
pub(crate) fn prompt_hash(tokens: &[u32]) -> B256 {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    keccak256(&bytes)
}

fn requester(user: Option<&Value>) -> Result<Address, Refusal> {
    match user {
        Some(Value::String(s)) => s.parse::<Address>().map_err(|_| {
            Refusal::new(
                "no_requester",
                format!("'user' must be the requester's 0x address (its escrow pays), got '{s}'"),
            )
        }),
        _ => Err(Refusal::new(
            "no_requester",
            "set 'user' to the requester's 0x address (its escrow pays) to get a receipt",
        )),
    }
}

fn refused(desk: &ReceiptDesk, r: Refusal) -> ReceiptOut {
    desk.count_refusal(r.code);
    tracing::debug!(code = r.code, reason = %r.message, "answer not receipted");
    ReceiptOut {
        receipt: Value::Null,
        refused: Some(RefusedOut { code: r.code, message: r.message }),
    }
}

/// `GET /v1/receipts/{job_id}`: a journaled receipt by its job id (0x + 64 hex).
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let desk = state.receipts().ok_or_else(|| {
        ApiError::http(
            StatusCode::NOT_FOUND,
            "receipts are not enabled on this node (start lorad serve with --settlement)",
            "receipts_disabled",
        )
    })?;
    let job: B256 = id.parse().map_err(|_| {
        ApiError::bad_request("job_id", format!("'{id}' is not a job id (0x and 64 hex digits)"))
            .code("invalid_value")
    })?;
    let read = tokio::task::spawn_blocking(move || desk.notary.receipt(&job).map(|r| (r, desk)))
        .await
        .map_err(|e| ApiError::internal(format!("reading the journal failed: {e}")))?;
    match read {
        Ok((Some(r), desk)) => Ok(Json(r.to_json(Some(desk.notary.domain())))),
        Ok((None, _)) => Err(ApiError::http(
            StatusCode::NOT_FOUND,
            format!("no receipt for job {id}"),
            "receipt_not_found",
        )),
        Err(e) => Err(ApiError::internal(format!("reading the journal failed: {e}"))),
    }
}
