//! Gradient attribution for an adapter fine-tuned on a Datanet.
//!
//! Every training record's loss gradient with respect to the adapter's LoRA parameters is
//! projected LoGra-style (`lorad_train::Probes`) and stored in an index ([`GradIndex`]) with a
//! block-diagonal preconditioner: per LoRA pair, the inverse of the damped empirical Fisher of the
//! projected gradients (TRAK's `(X^T X + lambda I)^-1`, per block as in DataInf, which is exact here
//! because each block is only `r * (k_in + k_out)` wide). An answer's influence score for record
//! `i` is `g_i^T K q` with `q` the projected gradient of the answer's log-likelihood: positive
//! when a gradient step on the record would have made the answer more likely.

mod build;
mod index;
mod precond;
mod score;

pub use build::{build_grad_index, datanet_example};
pub use index::{GradIndex, GradIndexHeader, IndexedRecord};
pub use precond::{DAMPING_FACTOR, Preconditioner};
pub use score::{GradScores, Scoring};
