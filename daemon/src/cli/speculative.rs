//! `--speculative-config` / `engine.speculative_config`: vLLM's speculative decoding settings,
//! of which lorad runs the `ngram` method (prompt lookup; `lorad_engine::NgramSpec`).

use lorad_engine::NgramSpec;
use serde::Deserialize;

/// vLLM's `--speculative-config` fields for `"method": "ngram"`, as JSON on the command line
/// or a TOML table in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeculativeConfig {
    /// `"ngram"`: drafts from the prompt and answer so far.
    pub method: String,
    /// Draft tokens per step.
    pub num_speculative_tokens: usize,
    /// Longest n-gram looked up [default: `prompt_lookup_min`, or 5 when neither is set].
    pub prompt_lookup_max: Option<usize>,
    /// Shortest n-gram looked up [default: `prompt_lookup_max`, or 5 when neither is set].
    pub prompt_lookup_min: Option<usize>,
    /// No drafts in steps decoding this many sequences or more [default: never].
    pub disable_by_batch_size: Option<usize>,
}

impl SpeculativeConfig {
    /// The engine's settings; errors name the field.
    pub fn to_spec(&self) -> Result<NgramSpec, String> {
        if self.method != "ngram" {
            return Err(format!(
                "method '{}': lorad speculates by prompt lookup only (\"method\": \"ngram\"); it loads no draft model",
                self.method
            ));
        }
        // vLLM's defaults, so a config written for vLLM drafts the same.
        let (min_n, max_n) = match (self.prompt_lookup_min, self.prompt_lookup_max) {
            (None, None) => (5, 5),
            (Some(n), None) | (None, Some(n)) => (n, n),
            (Some(lo), Some(hi)) => (lo, hi),
        };
        let spec = NgramSpec {
            tokens: self.num_speculative_tokens,
            max_n,
            min_n,
            disable_by_batch_size: self.disable_by_batch_size,
        };
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }
}

/// Parses `--speculative-config` (JSON, as vLLM takes it).
pub fn parse_speculative(s: &str) -> Result<NgramSpec, String> {
    let cfg: SpeculativeConfig = serde_json::from_str(s)
        .map_err(|e| format!("not a speculative config such as {{\"method\": \"ngram\", \"num_speculative_tokens\": 4}}: {e}"))?;
    cfg.to_spec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_only_with_fields_checked() {
        let spec = parse_speculative(
            r#"{"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 3}"#,
        )
        .expect("valid");
        let want = NgramSpec { tokens: 5, max_n: 3, min_n: 3, disable_by_batch_size: None };
        assert_eq!(spec, want);
        let spec = parse_speculative(
            r#"{"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_min": 2, "prompt_lookup_max": 4, "disable_by_batch_size": 8}"#,
        )
        .expect("valid");
        assert_eq!(
            spec,
            NgramSpec { tokens: 2, max_n: 4, min_n: 2, disable_by_batch_size: Some(8) }
        );
        let e =
            parse_speculative(r#"{"method": "eagle", "num_speculative_tokens": 3}"#).unwrap_err();
        assert!(e.contains("prompt lookup"), "{e}");
        let e =
            parse_speculative(r#"{"method": "ngram", "num_speculative_tokens": 0}"#).unwrap_err();
        assert!(e.contains("num_speculative_tokens"), "{e}");
        let e =
            parse_speculative(r#"{"method": "ngram", "num_speculative_tokens": 2, "model": "x"}"#)
                .unwrap_err();
        assert!(e.contains("unknown field `model`"), "{e}");
        assert!(parse_speculative("ngram").is_err());
    }
}
