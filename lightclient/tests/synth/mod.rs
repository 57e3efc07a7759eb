//! Deterministic generators for the OP Stack end-to-end test: a minimal-preset beacon chain
//! with real BLS sync committees and Merkle branches, L1 and L2 execution states with real
//! Merkle-Patricia proofs, OP rollup contracts in their documented storage layouts, sequencer
//! gossip, and an `ExecutionRpc` double. Nothing here calls the library's verifiers to build
//! data (only its hashing of containers and public slot helpers), so the tests check the
//! verifiers against independently built inputs.

// Each test binary that includes this module uses a different subset of it.
#![allow(dead_code)]

pub(crate) mod beacon;
pub(crate) mod beacon_api;
pub(crate) mod chain;
pub(crate) mod l1;
pub(crate) mod merkle;
pub(crate) mod mpt;
pub(crate) mod trust;
pub(crate) mod world;
