//! Fair sharing between tenants: the Virtual Token Counter of "Fairness in Serving Large
//! Language Models" (Sheng et al., OSDI 2024), the scheduler S-LoRA's authors built for
//! multi-LoRA serving. A tenant here is an adapter (the base model is one tenant): a burst on
//! one adapter must not starve the others on a shared node.
//!
//! Every tenant has a counter of the service it has received, in weighted tokens (a prompt
//! token costs [`PROMPT_WEIGHT`], a generated one [`OUTPUT_WEIGHT`]: decoding is what a batch
//! slot spends its time on). The scheduler admits the oldest waiting request of the tenant
//! with the lowest counter. A tenant that was idle is lifted, when it comes back, to the lowest
//! counter of the tenants with work in the system, so it cannot bank credit while away and then
//! monopolise the node; under a steady backlog the counters of any two backlogged tenants stay
//! within a bounded distance of each other (the paper's Theorem 4.4).

use std::collections::HashMap;
use std::sync::Arc;

/// Cost of one prompt token in a tenant's counter.
pub(crate) const PROMPT_WEIGHT: u64 = 1;
/// Cost of one generated token in a tenant's counter.
pub(crate) const OUTPUT_WEIGHT: u64 = 2;
/// Counters kept before idle tenants that lose nothing by being forgotten are dropped.
const PRUNE_ABOVE: usize = 4096;

/// Per-tenant virtual token counters.
#[derive(Debug, Default)]
pub(crate) struct Vtc {
    counters: HashMap<Arc<str>, u64>,
    /// Counters held when the next pruning runs: doubles with what survives one, so a map of
    /// many tenants above the floor is not walked at every arrival.
    prune_at: usize,
}

impl Vtc {
    /// The service `tenant` has received (0 for a tenant never seen or forgotten).
    pub(crate) fn counter(&self, tenant: &str) -> u64 {
        self.counters.get(tenant).copied().unwrap_or(0)
    }

    /// A request of `tenant` arrives while `backlog` (tenants with a request waiting or
    /// running, repeats allowed) have work. A tenant already in the backlog keeps its counter;
    /// one that was idle is lifted to the backlog's lowest counter, or, when nobody has work,
    /// to the highest counter there is (the paper lifts to the last tenant to leave; the
    /// highest is at least that, so idleness never earns credit).
    pub(crate) fn arrive<'a>(&mut self, tenant: &Arc<str>, backlog: impl Iterator<Item = &'a str>) {
        let mut present = false;
        let mut lowest: Option<u64> = None;
        for t in backlog {
            if t == &**tenant {
                present = true;
                break;
            }
            let c = self.counter(t);
            lowest = Some(lowest.map_or(c, |l| l.min(c)));
        }
        if present {
            return;
        }
        let floor = lowest.unwrap_or_else(|| self.counters.values().copied().max().unwrap_or(0));
        let c = self.counters.entry(tenant.clone()).or_insert(0);
        *c = (*c).max(floor);
        if self.counters.len() > self.prune_at.max(PRUNE_ABOVE) {
            // A forgotten tenant comes back at 0 and is lifted to the floor of that day, which
            // does not fall: forgetting one whose counter is below today's floor changes
            // nothing. Backlogged tenants are at or above it (it is their lowest counter).
            self.counters.retain(|_, c| *c >= floor);
            self.prune_at = 2 * self.counters.len();
        }
    }

    /// Charges `tenant` for `tokens` tokens of `weight` each.
    pub(crate) fn charge(&mut self, tenant: &Arc<str>, tokens: usize, weight: u64) {
        let cost = weight.saturating_mul(tokens as u64);
        match self.counters.get_mut(&**tenant) {
            Some(c) => *c = c.saturating_add(cost),
            None => {
                self.counters.insert(tenant.clone(), cost);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn charges_prompt_and_output_tokens_by_weight() {
        let mut v = Vtc::default();
        let a = t("a");
        v.charge(&a, 10, PROMPT_WEIGHT);
        v.charge(&a, 3, OUTPUT_WEIGHT);
        assert_eq!(v.counter("a"), 10 + 6);
        assert_eq!(v.counter("b"), 0);
    }

    #[test]
    fn an_idle_tenant_is_lifted_to_the_lowest_backlogged_counter() {
        let mut v = Vtc::default();
        let (a, b, c) = (t("a"), t("b"), t("c"));
        v.charge(&a, 100, 1);
        v.charge(&b, 40, 1);
        v.arrive(&c, ["a", "b", "a"].into_iter());
        assert_eq!(v.counter("c"), 40, "lifted to b's counter, not a's");
        // A backlogged tenant keeps its counter: its requests already compete.
        v.arrive(&b, ["a", "b"].into_iter());
        assert_eq!(v.counter("b"), 40);
        // A counter above the floor is kept: arriving never lowers one.
        v.charge(&c, 500, 1);
        v.arrive(&c, ["a"].into_iter());
        assert_eq!(v.counter("c"), 540);
    }

    #[test]
    fn idleness_earns_no_credit_when_the_node_was_empty() {
        let mut v = Vtc::default();
        let (a, b) = (t("a"), t("b"));
        v.charge(&a, 5, 1);
        v.charge(&b, 70, 1);
        v.arrive(&a, std::iter::empty());
        assert_eq!(v.counter("a"), 70, "lifted to the highest counter");
    }

    #[test]
    fn forgetting_tenants_keeps_what_matters() {
        let mut v = Vtc::default();
        for i in 0..=PRUNE_ABOVE {
            v.charge(&t(&format!("idle{i}")), 1, 1);
        }
        let (busy, rich, new) = (t("busy"), t("rich"), t("new"));
        v.charge(&busy, 10, 1);
        v.charge(&rich, 1000, 1);
        v.arrive(&new, ["busy"].into_iter());
        assert_eq!(v.counter("new"), 10);
        assert_eq!(v.counter("rich"), 1000, "a counter above the floor is kept");
        assert_eq!(v.counter("busy"), 10);
        assert!(
            v.counters.len() < 10,
            "idle tenants at the floor were dropped: {}",
            v.counters.len()
        );
    }
}
