//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the engine, the adapter tiers
//! and the store. Served before the engine is ready too (store metrics only), so a scrape during
//! start-up sees the node, not an error.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use lorad_engine::Histogram;
use lorad_store::disk::EntryState;
use lorad_store::tiers::TierStats;

use super::state::AppState;

/// Appends one metric family: HELP, TYPE, then `name{labels} value` samples.
pub(crate) fn family<L: AsRef<str>>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(L, f64)],
) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{} {value}", labels.as_ref());
    }
}

fn tier_families(out: &mut String, tiers: &[(&str, TierStats)]) {
    let label = |t: &str| format!("{{tier=\"{t}\"}}");
    let labels: Vec<String> = tiers.iter().map(|(t, _)| label(t)).collect();
    let pick = |f: fn(&TierStats) -> u64| -> Vec<(&str, f64)> {
        tiers.iter().zip(&labels).map(|((_, s), l)| (l.as_str(), f(s) as f64)).collect()
    };
    family(
        out,
        "lorad_adapter_tier_hits_total",
        "counter",
        "Adapter lookups served by the tier.",
        &pick(|s| s.hits),
    );
    family(
        out,
        "lorad_adapter_tier_misses_total",
        "counter",
        "Adapter lookups the tier missed.",
        &pick(|s| s.misses),
    );
    family(
        out,
        "lorad_adapter_tier_evictions_total",
        "counter",
        "Adapters evicted from the tier to make room.",
        &pick(|s| s.evictions),
    );
    family(
        out,
        "lorad_adapter_tier_drains_total",
        "counter",
        "Busy adapters the tier stopped giving new requests so that a waiting adapter fits.",
        &pick(|s| s.drains),
    );
    family(
        out,
        "lorad_adapter_tier_bytes",
        "gauge",
        "Bytes of adapters held by the tier.",
        &pick(|s| s.bytes),
    );
    family(
        out,
        "lorad_adapter_tier_budget_bytes",
        "gauge",
        "Byte budget of the tier.",
        &pick(|s| s.budget),
    );
    family(
        out,
        "lorad_adapter_tier_entries",
        "gauge",
        "Adapters held by the tier.",
        &pick(|s| s.entries),
    );
}

/// Renders every metric.
pub(crate) fn render(state: &AppState) -> String {
    let mut out = String::new();
    let store = state.store();
    let pager = store.pager_stats();
    let backend = store.io_backend().as_str();
    let infos = store.list();
    let quarantined =
        infos.iter().filter(|i| matches!(i.state, EntryState::Quarantined { .. })).count();
    family(&mut out, "lorad_up", "gauge", "1 while the process runs.", &[("", 1.0)]);
    let ready = if state.is_ready() { 1.0 } else { 0.0 };
    family(&mut out, "lorad_ready", "gauge", "1 when the engine serves requests.", &[("", ready)]);
    let backend_label = format!("{{backend=\"{backend}\"}}");
    family(
        &mut out,
        "lorad_store_io_backend",
        "gauge",
        "Read path of the adapter store (1 for the one in use).",
        &[(&backend_label, 1.0)],
    );
    let fallback = if store.io_fallback_reason().is_some() { 1.0 } else { 0.0 };
    family(
        &mut out,
        "lorad_store_io_fallback",
        "gauge",
        "1 when the store reads with pread because io_uring was refused or disabled.",
        &[("", fallback)],
    );
    family(
        &mut out,
        "lorad_store_reads_total",
        "counter",
        "Reads issued by the adapter store.",
        &[("", pager.reads as f64)],
    );
    family(
        &mut out,
        "lorad_store_read_bytes_total",
        "counter",
        "Bytes read by the adapter store.",
        &[("", pager.bytes as f64)],
    );
    let (pool, pinner) = store.buffer_stats();
    family(
        &mut out,
        "lorad_store_buffers_total",
        "counter",
        "Read buffers the adapter store allocated, and handed out again from its pool.",
        &[("{how=\"allocated\"}", pool.allocated as f64), ("{how=\"reused\"}", pool.reused as f64)],
    );
    let pinner_label = format!("{{pinner=\"{}\"}}", pinner.as_deref().unwrap_or("none"));
    family(
        &mut out,
        "lorad_store_pinned_bytes",
        "gauge",
        "Bytes of adapter read buffers page-locked for device copies (0 on the CPU).",
        &[(&pinner_label, pool.pinned_bytes as f64)],
    );
    family(
        &mut out,
        "lorad_store_pin_failures_total",
        "counter",
        "Read buffers the driver refused to page-lock (used pageable instead).",
        &[("", pool.pin_failures as f64)],
    );
    family(
        &mut out,
        "lorad_store_disk_bytes",
        "gauge",
        "Bytes of segment files on disk.",
        &[("", store.disk_bytes() as f64)],
    );
    family(
        &mut out,
        "lorad_store_adapters",
        "gauge",
        "Adapters in the store by state.",
        &[
            ("{state=\"ready\"}", (infos.len() - quarantined) as f64),
            ("{state=\"quarantined\"}", quarantined as f64),
        ],
    );
    if let Some(gpu) = state.gpu() {
        gpu.render(&mut out);
    }
    state.telemetry().render(&mut out);
    if let Some(lc) = state.lightclient()
        && let Ok(verified) = lc.lock()
    {
        lightclient_families(&mut out, &verified, super::unix_now());
    }
    if let Some(desk) = state.receipts() {
        let (signed, refused) = desk.counts();
        family(
            &mut out,
            "lorad_receipts_signed_total",
            "counter",
            "Receipts signed (and made durable) for answers.",
            &[("", signed as f64)],
        );
        let labels: Vec<(String, f64)> =
            refused.iter().map(|(code, n)| (format!("{{reason=\"{code}\"}}"), *n as f64)).collect();
        let samples: Vec<(&str, f64)> = labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        family(
            &mut out,
            "lorad_receipts_refused_total",
            "counter",
            "Answers returned with receipt: null, by reason.",
            &samples,
        );
    }
    let Ok(serving) = state.serving() else { return out };
    let device =
        format!("{{device=\"{}\"}}", crate::commands::common::device_name(serving.engine.device()));
    family(
        &mut out,
        "lorad_engine_device",
        "gauge",
        "Device the model runs on (1 for the one in use; `--device`).",
        &[(&device, 1.0)],
    );
    let stats = serving.engine.stats();
    let load =
        |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
    family(
        &mut out,
        "lorad_requests_waiting",
        "gauge",
        "Requests queued for a batch slot.",
        &[("", load(&stats.waiting))],
    );
    family(
        &mut out,
        "lorad_requests_running",
        "gauge",
        "Requests in the running batch.",
        &[("", load(&stats.running))],
    );
    family(
        &mut out,
        "lorad_engine_steps_total",
        "counter",
        "Forward steps run.",
        &[("", load(&stats.steps))],
    );
    family(
        &mut out,
        "lorad_generated_tokens_total",
        "counter",
        "Tokens generated.",
        &[("", load(&stats.generated_tokens))],
    );
    family(
        &mut out,
        "lorad_preemptions_total",
        "counter",
        "Sequences preempted (KV cache full) and recomputed.",
        &[("", load(&stats.preemptions))],
    );
    family(
        &mut out,
        "lorad_spec_decode_draft_tokens_total",
        "counter",
        "Draft tokens proposed by speculative decoding (prompt lookup).",
        &[("", load(&stats.spec_draft_tokens))],
    );
    family(
        &mut out,
        "lorad_spec_decode_accepted_tokens_total",
        "counter",
        "Draft tokens the model accepted (over the drafted: the acceptance rate).",
        &[("", load(&stats.spec_accepted_tokens))],
    );
    family(
        &mut out,
        "lorad_engine_step_tokens_total",
        "counter",
        "Tokens computed by forward steps (over lorad_engine_steps_total: mean batch tokens).",
        &[("", load(&stats.step_tokens))],
    );
    histogram(
        &mut out,
        "lorad_engine_step_seconds",
        "Wall time of a forward step, sampling included.",
        &stats.step_seconds,
    );
    family(
        &mut out,
        "lorad_structured_requests_total",
        "counter",
        "Requests constrained by structured output (JSON Schema, JSON, regex, choice).",
        &[("", load(&stats.structured_requests))],
    );
    family(
        &mut out,
        "lorad_grammar_masks_total",
        "counter",
        "Structured-output token masks computed (new matcher states; cached masks not counted).",
        &[("", load(&stats.grammar_masks))],
    );
    family(
        &mut out,
        "lorad_grammar_dead_ends_total",
        "counter",
        "Constrained answers that ended incomplete: no token could continue them.",
        &[("", load(&stats.grammar_dead_ends))],
    );
    family(
        &mut out,
        "lorad_grammar_cached_mask_bytes",
        "gauge",
        "Bytes of structured-output token masks cached by all grammars (bounded at 256 MiB).",
        &[("", lorad_grammar::cached_mask_bytes() as f64)],
    );
    histogram(
        &mut out,
        "lorad_grammar_mask_seconds",
        "Time to compute one structured-output token mask (overlapped with the forward pass).",
        &stats.grammar_mask_seconds,
    );
    let (total, used, cached) =
        (load(&stats.kv_blocks_total), load(&stats.kv_blocks_used), load(&stats.kv_blocks_cached));
    family(
        &mut out,
        "lorad_kv_cache_blocks",
        "gauge",
        "KV cache blocks by state: held by running requests, cached prefixes, free.",
        &[
            ("{state=\"used\"}", used),
            ("{state=\"cached\"}", cached),
            ("{state=\"free\"}", (total - used - cached).max(0.0)),
        ],
    );
    family(
        &mut out,
        "lorad_kv_cache_usage_ratio",
        "gauge",
        "Share of KV cache blocks held by running requests.",
        &[("", if total > 0.0 { used / total } else { 0.0 })],
    );
    family(
        &mut out,
        "lorad_prefix_cache_queried_tokens_total",
        "counter",
        "Tokens of admitted requests looked up in the prefix cache.",
        &[("", load(&stats.prefix_cache_queried_tokens))],
    );
    family(
        &mut out,
        "lorad_prefix_cache_hit_tokens_total",
        "counter",
        "Tokens whose K/V came from the prefix cache instead of being computed.",
        &[("", load(&stats.prefix_cache_hit_tokens))],
    );
    let r = serving.manager.stats();
    tier_families(&mut out, &[("device", r.device), ("host", r.host)]);
    family(
        &mut out,
        "lorad_adapter_page_ins_total",
        "counter",
        "Adapters read from the store into the host tier.",
        &[("", r.page_ins as f64)],
    );
    histogram(
        &mut out,
        "lorad_adapter_page_in_seconds",
        "Latency of reading one adapter from the store (disk to host tier).",
        serving.manager.page_in_latency(),
    );
    out
}

/// Appends one histogram family (buckets, `+Inf`, sum, count).
pub(crate) fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let (buckets, count, sum) = h.snapshot();
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (le, n) in h.bounds().iter().zip(&buckets) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

/// The light client's newest verified L2 block per label, its lag behind the clock, and the
/// L1 block it is anchored at.
pub(crate) fn lightclient_families(
    out: &mut String,
    state: &lorad_lightclient::verified::VerifiedState,
    now: u64,
) {
    use lorad_lightclient::op::anchor::L2Label;
    let mut newest: Vec<(String, f64)> = Vec::new();
    let mut lag: Vec<(String, f64)> = Vec::new();
    for label in [L2Label::Unsafe, L2Label::Safe, L2Label::Finalized] {
        let name = format!("{label:?}").to_lowercase();
        if let Some(b) = state.blocks().filter(|b| b.label >= label).max_by_key(|b| b.number) {
            newest.push((format!("{{label=\"{name}\"}}"), b.number as f64));
            lag.push((format!("{{label=\"{name}\"}}"), now.saturating_sub(b.timestamp) as f64));
        }
    }
    let l1 = state.blocks().map(|b| b.l1.block_number).max().unwrap_or(0);
    family(
        out,
        "lorad_lightclient_l2_block",
        "gauge",
        "Newest L2 block the light client verified, by weakest label.",
        &newest,
    );
    family(
        out,
        "lorad_lightclient_l2_lag_seconds",
        "gauge",
        "Age of that block (the gate refuses receipts past its policy).",
        &lag,
    );
    family(
        out,
        "lorad_lightclient_l1_block",
        "gauge",
        "L1 block the newest verified L2 block is anchored at.",
        &[("", l1 as f64)],
    );
}

/// `GET /metrics`
pub(crate) async fn handle(State(state): State<AppState>) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || render(&state)).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;
    use lorad_lightclient::op::anchor::{L1Anchor, L2Label, VerifiedL2Block};
    use lorad_lightclient::verified::VerifiedState;

    #[test]
    fn light_client_head_and_lag_by_label() {
        let mut state = VerifiedState::new(8);
        let block = |number: u64, label, timestamp| VerifiedL2Block {
            number,
            hash: B256::repeat_byte(number as u8),
            state_root: B256::ZERO,
            timestamp,
            label,
            l1: L1Anchor {
                block_number: 500 + number,
                block_hash: B256::ZERO,
                state_root: B256::ZERO,
                timestamp,
            },
        };
        state.insert(block(10, L2Label::Finalized, 1_000));
        state.insert(block(20, L2Label::Safe, 1_100));
        let mut out = String::new();
        super::lightclient_families(&mut out, &state, 1_200);
        assert!(out.contains("lorad_lightclient_l2_block{label=\"safe\"} 20\n"), "{out}");
        assert!(out.contains("lorad_lightclient_l2_block{label=\"finalized\"} 10\n"), "{out}");
        assert!(
            out.contains("lorad_lightclient_l2_lag_seconds{label=\"finalized\"} 200\n"),
            "{out}"
        );
        assert!(out.contains("lorad_lightclient_l1_block 520\n"), "{out}");
    }
}
