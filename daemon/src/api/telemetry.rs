//! Service metrics of the HTTP API: requests, tokens, time to first token, time per output
//! token, attribution time, and per-adapter traffic with bounded label cardinality (the
//! [`TOP_ADAPTERS`] busiest adapters by name, the rest summed as `other`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lorad_engine::Histogram;

use super::family;
use super::metrics::histogram;

/// Adapters with their own label on `/metrics`; the rest are `adapter="other"`.
pub(crate) const TOP_ADAPTERS: usize = 20;

const TTFT_BUCKETS: [f64; 12] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const TPOT_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const QUEUE_BUCKETS: [f64; 13] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const E2E_BUCKETS: [f64; 12] =
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];
const ATTRIBUTION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Requests and tokens of one adapter (or the base model).
#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// What the API counts; one per server.
#[derive(Debug)]
pub(crate) struct Telemetry {
    finished: AtomicU64,
    failed: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    ttft: Histogram,
    tpot: Histogram,
    queue: Histogram,
    e2e: Histogram,
    attribution: Histogram,
    per_model: Mutex<HashMap<String, Traffic>>,
    /// HTTP responses by status code (a few dozen codes at most: bounded).
    http: Mutex<BTreeMap<u16, u64>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            ttft: Histogram::new(&TTFT_BUCKETS),
            tpot: Histogram::new(&TPOT_BUCKETS),
            queue: Histogram::new(&QUEUE_BUCKETS),
            e2e: Histogram::new(&E2E_BUCKETS),
            attribution: Histogram::new(&ATTRIBUTION_BUCKETS),
            per_model: Mutex::new(HashMap::new()),
            http: Mutex::new(BTreeMap::new()),
        }
    }
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended {
    pub(crate) prompt_tokens: usize,
    pub(crate) completion_tokens: usize,
    /// Submission to first generated token.
    pub(crate) ttft: Option<Duration>,
    /// First token to last, over the tokens after the first.
    pub(crate) decode: Option<Duration>,
    /// Waiting for a place in the running batch.
    pub(crate) queued: Duration,
    /// Submission to the last token.
    pub(crate) total: Duration,
}

impl Telemetry {
    /// Counts a request that finished on `model` (an adapter or the base model's name).
    pub(crate) fn finished(&self, model: &str, f: Ended) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(f.prompt_tokens as u64, Ordering::Relaxed);
        self.completion_tokens.fetch_add(f.completion_tokens as u64, Ordering::Relaxed);
        if let Some(t) = f.ttft {
            self.ttft.observe(t);
        }
        if let Some(d) = f.decode.filter(|_| f.completion_tokens > 1) {
            self.tpot.observe(d / (f.completion_tokens as u32 - 1));
        }
        self.queue.observe(f.queued);
        self.e2e.observe(f.total);
        if let Ok(mut m) = self.per_model.lock() {
            let t = m.entry(model.to_string()).or_default();
            t.requests += 1;
            t.prompt_tokens += f.prompt_tokens as u64;
            t.completion_tokens += f.completion_tokens as u64;
        }
    }

    /// Counts a request that ended in an engine error.
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an HTTP response (every route, refusals included: a surge of 429s, 503s or
    /// 401s is what an operator alerts on).
    pub(crate) fn responded(&self, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry(status).or_default() += 1;
        }
    }

    /// Records how long attributing one answer took.
    pub(crate) fn attributed(&self, d: Duration) {
        self.attribution.observe(d);
    }

    /// Appends the families to `out`.
    pub(crate) fn render(&self, out: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        family(
            out,
            "lorad_requests_total",
            "counter",
            "Generation requests that ended, by outcome.",
            &[
                ("{outcome=\"finished\"}", load(&self.finished)),
                ("{outcome=\"failed\"}", load(&self.failed)),
            ],
        );
        family(
            out,
            "lorad_prompt_tokens_total",
            "counter",
            "Prompt tokens of finished requests.",
            &[("", load(&self.prompt_tokens))],
        );
        family(
            out,
            "lorad_completion_tokens_total",
            "counter",
            "Tokens generated for finished requests.",
            &[("", load(&self.completion_tokens))],
        );
        let codes: Vec<(String, f64)> = self
            .http
            .lock()
            .map(|m| m.iter().map(|(c, n)| (format!("{{code=\"{c}\"}}"), *n as f64)).collect())
            .unwrap_or_default();
        family(
            out,
            "lorad_http_responses_total",
            "counter",
            "HTTP responses by status code.",
            &codes,
        );
        let ttft_help = "Submission to the first generated token.";
        histogram(out, "lorad_time_to_first_token_seconds", ttft_help, &self.ttft);
        let tpot_help = "Mean time per token after the first, per request.";
        histogram(out, "lorad_time_per_output_token_seconds", tpot_help, &self.tpot);
        let queue_help = "Time a finished request waited for a place in the running batch.";
        histogram(out, "lorad_request_queue_seconds", queue_help, &self.queue);
        let e2e_help = "Submission to the last generated token, per finished request.";
        histogram(out, "lorad_request_duration_seconds", e2e_help, &self.e2e);
        let attribution_help = "Time to attribute one answer.";
        histogram(out, "lorad_attribution_seconds", attribution_help, &self.attribution);
        let mut rows: Vec<(String, Traffic)> = self
            .per_model
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        rows.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(&b.0)));
        let mut other = Traffic::default();
        let mut shown: Vec<(String, Traffic)> = Vec::new();
        for (i, (name, t)) in rows.into_iter().enumerate() {
            if i < TOP_ADAPTERS {
                shown.push((format!("{{model=\"{}\"}}", escape(&name)), t));
            } else {
                other.requests += t.requests;
                other.prompt_tokens += t.prompt_tokens;
                other.completion_tokens += t.completion_tokens;
            }
        }
        if other.requests > 0 {
            shown.push(("{model=\"other\"}".to_string(), other));
        }
        let pick = |f: fn(&Traffic) -> u64| -> Vec<(String, f64)> {
            shown.iter().map(|(l, t)| (l.clone(), f(t) as f64)).collect()
        };
        family(
            out,
            "lorad_model_requests_total",
            "counter",
            "Finished requests per model (the busiest adapters by name, the rest as other).",
            &pick(|t| t.requests),
        );
        family(
            out,
            "lorad_model_prompt_tokens_total",
            "counter",
            "Prompt tokens per model.",
            &pick(|t| t.prompt_tokens),
        );
        family(
            out,
            "lorad_model_completion_tokens_total",
            "counter",
            "Generated tokens per model.",
            &pick(|t| t.completion_tokens),
        );
    }
}

/// A label value with `\`, `"` and newlines escaped (Prometheus text format).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_model_labels_are_bounded_and_histograms_cumulative() {
        let t = Telemetry::default();
        for i in 0..(TOP_ADAPTERS + 5) {
            for _ in 0..=i {
                let f = Ended {
                    prompt_tokens: 3,
                    completion_tokens: 5,
                    ttft: Some(Duration::from_millis(30)),
                    decode: Some(Duration::from_millis(40)),
                    queued: Duration::from_millis(if i == 0 { 700 } else { 3 }),
                    total: Duration::from_millis(75),
                };
                t.finished(&format!("adapter-{i:02}"), f);
            }
        }
        let mut out = String::new();
        t.render(&mut out);
        let labelled = out.lines().filter(|l| l.starts_with("lorad_model_requests_total{")).count();
        assert_eq!(labelled, TOP_ADAPTERS + 1, "{out}");
        // The 5 quietest (1..=5 requests each) are summed as other.
        assert!(out.contains("lorad_model_requests_total{model=\"other\"} 15\n"), "{out}");
        assert!(out.contains("lorad_time_to_first_token_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(out.contains("lorad_time_to_first_token_seconds_bucket{le=\"0.05\"} 325\n"));
        // 40 ms over 4 tokens after the first: 10 ms per token.
        assert!(
            out.contains("lorad_time_per_output_token_seconds_bucket{le=\"0.01\"} 325\n"),
            "{out}"
        );
        // One request queued 700 ms, the other 324 for 3 ms.
        assert!(out.contains("lorad_request_queue_seconds_bucket{le=\"0.005\"} 324\n"), "{out}");
        assert!(out.contains("lorad_request_queue_seconds_bucket{le=\"1\"} 325\n"), "{out}");
        assert!(out.contains("lorad_request_duration_seconds_bucket{le=\"0.1\"} 325\n"), "{out}");
        assert!(out.contains("lorad_request_duration_seconds_count 325\n"), "{out}");
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
