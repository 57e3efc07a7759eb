//! Settlement's fee split, written out in Rust: the reference the contract tests compare the
//! chain's balances with, and what the daemon shows a requester before anything settles.

use alloy_primitives::{Address, U256};

use crate::receipt::{BPS_TOTAL, Share};

/// The fee parameters a Settlement deployment fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitBps {
    /// Adapter owner's share.
    pub model_owner: u16,
    /// Serving node's share.
    pub node: u16,
    /// Contributors' pool.
    pub contributors: u16,
}

/// Who receives what from one receipt, in OPEN base units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The whole fee, taken from the requester's escrow.
    pub fee: U256,
    /// To the adapter's owner.
    pub model_owner: U256,
    /// To the node.
    pub node: U256,
    /// To each contributor with a payout address, in share order.
    pub contributors: Vec<(Address, U256)>,
    /// To the treasury: protocol share, dust, unclaimed shares.
    pub treasury: U256,
}

/// fee = (tokensIn · priceIn + tokensOut · priceOut) / 1000, floored.
pub fn fee(tokens_in: u32, tokens_out: u32, price_in_per_1k: u128, price_out_per_1k: u128) -> U256 {
    (U256::from(tokens_in) * U256::from(price_in_per_1k)
        + U256::from(tokens_out) * U256::from(price_out_per_1k))
        / U256::from(1000)
}

/// The split of `fee` exactly as Settlement computes it; `payout(contributor)` is the
/// contributor's payout address in the receipt's Datanet, if set.
pub fn split(
    fee: U256,
    bps: SplitBps,
    shares: &[Share],
    payout: impl Fn(&Share) -> Option<Address>,
) -> Split {
    let of = |amount: U256, b: u16| amount * U256::from(b) / U256::from(BPS_TOTAL);
    let model_owner = of(fee, bps.model_owner);
    let node = of(fee, bps.node);
    let pool = of(fee, bps.contributors);
    let contributors: Vec<(Address, U256)> =
        shares.iter().filter_map(|s| payout(s).map(|to| (to, of(pool, s.bps)))).collect();
    let paid = model_owner + node + contributors.iter().map(|(_, a)| *a).sum::<U256>();
    Split { fee, model_owner, node, contributors, treasury: fee - paid }
}
