//! OP Stack: output roots anchored on L1, and sequencer-signed unsafe blocks from gossip.
//!
//! - [`anchor`]: proving L2 blocks from L1 rollup-contract state (output oracle, dispute
//!   games, anchor registry) and the unsafe-block signer from `SystemConfig`.
//! - [`output`]: v0 output roots (`keccak256(version ‖ state ‖ message-passer root ‖ hash)`),
//!   including the post-Isthmus shortcut through the header's `withdrawals_root`.
//! - [`gossip`]: `blocksV1..V4` gossip envelopes (snappy framing, signed bytes), the sequencer
//!   signature and its L1-proven signer.
//! - [`payload`]: the SSZ execution payloads those envelopes carry, and the L2 header (block
//!   hash) each one commits to.

pub mod anchor;
pub mod gossip;
pub mod output;
pub mod payload;

pub use gossip::{
    GossipEnvelope, MAX_GOSSIP_SIZE, UNSAFE_BLOCK_SIGNER_SLOT, recover_signer, signing_message,
    unsafe_signer_from_slot,
};
pub use output::{
    L2_TO_L1_MESSAGE_PASSER, OUTPUT_VERSION_V0, output_root_from_header,
    output_root_from_isthmus_header, output_root_v0, verify_output_root,
};
pub use payload::{ISTHMUS_REQUESTS_HASH, OpExecutionPayload, OpWithdrawal, PayloadVersion};
