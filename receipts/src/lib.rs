//! lorad's receipts after signing: kept durably, served by id, and settled exactly once.
//!
//! - [`facts`]: the gate's facts from storage proofs at a verified L2 block.
//! - [`gate`]: the signing gate (proven registration and stake) and the [`gate::Notary`].
//! - [`journal`]: the append-only, CRC-checked, group-committed receipt journal.
//! - [`record`]: its on-disk record format and crash recovery scan.
//! - [`submit`]: batching journaled receipts to Settlement, resumable after a crash.
//! - [`error`]: [`ReceiptsError`], the crate's single error type.

pub mod error;
pub mod facts;
pub mod gate;
pub mod journal;
pub mod record;
pub mod submit;

pub use error::ReceiptsError;
pub use journal::{Appended, Journal, Recovery, read_records};
