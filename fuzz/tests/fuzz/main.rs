//! Fuzz targets: every parser of bytes lorad did not write, fed mutated inputs derived from
//! valid ones. Each must answer with a value or a clear error, never panic (see the crate docs
//! for the environment variables that run longer campaigns or reproduce a failure).

mod datanet;
mod gguf;
mod grad;
mod grammar;
mod hf;
mod journal;
mod lightclient;
mod peft;
mod span;
mod store;
mod tokenizer;
