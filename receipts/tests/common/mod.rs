//! Helpers shared by the receipts integration tests.
#![allow(dead_code, missing_docs, unreachable_pub)]

pub mod hardhat;
pub mod world;
