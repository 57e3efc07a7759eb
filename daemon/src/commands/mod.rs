//! The subcommands' implementations, one module each.

pub(crate) mod adapter;
pub(crate) mod attribution;
pub(crate) mod chain;
pub(crate) mod common;
pub(crate) mod config;
pub(crate) mod datanet;
pub(crate) mod finetune;
pub(crate) mod follow;
pub(crate) mod generate;
pub(crate) mod lightclient;
pub(crate) mod model;
pub(crate) mod receipts;
pub(crate) mod serve;
pub(crate) mod store;

pub(crate) use chain::parse_open;
