//! Rust bindings generated at compile time from the committed artifacts in `contracts/out/`
//! (ABI and bytecode), so the Rust side can never drift from what solc produced: a changed
//! contract changes these types, and `scripts/contracts.sh check` keeps the artifacts fresh.
//!
//! Every contract's module holds its calls (`Settlement::settleCall`), events, custom errors
//! (`Settlement::SettlementErrors` decodes revert data) and `BYTECODE` (init code).

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

use alloy_sol_types::sol;

sol!(
    #[sol(all_derives)]
    OpenToken,
    "out/OpenToken.json"
);
sol!(
    #[sol(all_derives)]
    NodeRegistry,
    "out/NodeRegistry.json"
);
sol!(
    #[sol(all_derives)]
    AdapterRegistry,
    "out/AdapterRegistry.json"
);
sol!(
    #[sol(all_derives)]
    DatanetRegistry,
    "out/DatanetRegistry.json"
);
sol!(
    #[sol(all_derives)]
    Settlement,
    "out/Settlement.json"
);
