//! [`Campaign`]: runs one fuzz target over its seeds and over mutated inputs derived from them.
//!
//! Environment:
//! - `LORAD_FUZZ_ITERS`: mutated inputs per target (default: the target's own, sized for CI).
//! - `LORAD_FUZZ_SEED`: the seed (default: derived from the target's name, so runs repeat).
//! - `LORAD_FUZZ_TRACE=1`: print each iteration before running it, to find the input behind an
//!   abort or a stack overflow (which kill the process before it can report).
//! - `LORAD_FUZZ_OUT`: where failing inputs are saved (default: the system temp dir).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// What a target made of one input: accepted, or refused with an error message.
pub type Outcome = Result<(), String>;

/// An input that can be saved to a file for reproduction.
pub trait Input {
    /// The bytes to save.
    fn to_bytes(&self) -> Vec<u8>;
}

impl Input for Vec<u8> {
    fn to_bytes(&self) -> Vec<u8> {
        self.clone()
    }
}

impl Input for String {
    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Input for serde_json::Value {
    fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

/// One target's run.
#[derive(Debug, Clone)]
pub struct Campaign {
    name: String,
    seed: u64,
    iterations: usize,
    trace: bool,
}

/// What a campaign saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Mutated inputs the target accepted.
    pub accepted: usize,
    /// Mutated inputs the target refused with an error.
    pub rejected: usize,
    /// Refusals by kind (the start of their message, numbers blanked), most frequent first.
    pub reasons: Vec<(String, usize)>,
}

impl Campaign {
    /// A campaign named `name` (the target; it names saved inputs), running `default_iterations`
    /// mutated inputs unless `LORAD_FUZZ_ITERS` says otherwise.
    pub fn new(name: &str, default_iterations: usize) -> Self {
        let env_u64 =
            |key: &str| std::env::var(key).ok().and_then(|v| v.trim().parse::<u64>().ok());
        // FNV-1a of the name: each target gets its own stream without any configuration.
        let by_name = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Campaign {
            name: name.to_owned(),
            seed: env_u64("LORAD_FUZZ_SEED").unwrap_or(by_name),
            iterations: env_u64("LORAD_FUZZ_ITERS").map_or(default_iterations, |n| n as usize),
            trace: std::env::var("LORAD_FUZZ_TRACE").is_ok_and(|v| v == "1"),
        }
    }

    /// The seed every mutation of this campaign derives from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Mutated inputs this campaign runs.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Runs `target` on every seed (each must be accepted: a refused seed means the target is
    /// set up wrong and its mutations would test nothing), then on `iterations` mutated inputs,
    /// each made by `mutate` from the seeds in turn.
    ///
    /// # Panics
    /// When the target panics (or a seed is refused): the message names the iteration and the
    /// file holding the input.
    pub fn run<T, M, F>(&self, seeds: &[T], mut mutate: M, mut target: F) -> Report
    where
        T: Input,
        M: FnMut(&T) -> T,
        F: FnMut(&T) -> Outcome,
    {
        assert!(!seeds.is_empty(), "fuzz target `{}` has no seeds", self.name);
        for (k, seed) in seeds.iter().enumerate() {
            match self.guarded(&mut target, seed, &format!("seed {k}")) {
                Ok(()) => {}
                Err(reason) => panic!(
                    "fuzz target `{}`: seed {k} is refused ({reason}); the target is set up wrong",
                    self.name
                ),
            }
        }
        let mut report = Report::default();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..self.iterations {
            let input = mutate(&seeds[i % seeds.len()]);
            if self.trace {
                eprintln!("fuzz {} iteration {i}", self.name);
            }
            match self.guarded(&mut target, &input, &format!("iteration {i}")) {
                Ok(()) => report.accepted += 1,
                Err(reason) => {
                    assert!(
                        !reason.trim().is_empty(),
                        "fuzz target `{}`: iteration {i} was refused with an empty message",
                        self.name
                    );
                    report.rejected += 1;
                    *reasons.entry(reason_kind(&reason)).or_default() += 1;
                }
            }
        }
        let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        report.reasons = reasons;
        eprintln!(
            "fuzz {}: seed {:#x}, {} inputs: {} accepted, {} refused",
            self.name, self.seed, self.iterations, report.accepted, report.rejected
        );
        for (reason, n) in report.reasons.iter().take(6) {
            eprintln!("  {n:>6} × {reason}");
        }
        report
    }

    /// Runs the target on one input, turning a panic into a failure that names the input.
    fn guarded<T: Input, F: FnMut(&T) -> Outcome>(
        &self,
        target: &mut F,
        input: &T,
        which: &str,
    ) -> Outcome {
        match catch_unwind(AssertUnwindSafe(|| target(input))) {
            Ok(outcome) => outcome,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic payload)".to_owned());
                let saved = self.save(input, which);
                panic!(
                    "fuzz target `{}` panicked on {which} (LORAD_FUZZ_SEED={}): {message}\n\
                     input saved at {saved}",
                    self.name, self.seed
                );
            }
        }
    }

    fn save<T: Input>(&self, input: &T, which: &str) -> String {
        let dir = std::env::var_os("LORAD_FUZZ_OUT")
            .map_or_else(|| std::env::temp_dir().join("lorad-fuzz"), PathBuf::from);
        let file =
            dir.join(format!("{}-{:x}-{}.bin", self.name, self.seed, which.replace(' ', "-")));
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, input.to_bytes())) {
            Ok(()) => file.display().to_string(),
            Err(e) => format!("(nowhere: writing {} failed: {e})", file.display()),
        }
    }
}

/// A refusal's kind: its first 72 characters with every number shown as `#`, so messages that
/// differ only by a name's counter, an offset or a size group together.
fn reason_kind(reason: &str) -> String {
    let mut out = String::new();
    for c in reason.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
        if out.chars().count() >= 72 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Campaign;

    /// A campaign of exactly `iterations`, whatever a longer campaign's `LORAD_FUZZ_ITERS` says
    /// (the counts below are this test's, not the environment's).
    fn fixed(name: &str, iterations: usize) -> Campaign {
        Campaign { iterations, trace: false, ..Campaign::new(name, iterations) }
    }

    #[test]
    fn counts_outcomes_and_reports_a_panicking_target() {
        let c = fixed("selftest", 50);
        let report = c.run(
            &[vec![1u8, 2, 3]],
            |s| {
                let mut v = s.clone();
                v.push(v.len() as u8);
                v
            },
            |v| if v.len() % 2 == 1 { Ok(()) } else { Err("even".into()) },
        );
        assert_eq!((report.accepted, report.rejected), (0, 50));
        assert_eq!(report.reasons, vec![("even".to_owned(), 50)]);
        let caught = std::panic::catch_unwind(|| {
            fixed("selftest-panics", 5).run(
                &[vec![0u8]],
                |s| vec![s[0] + 1],
                |v| {
                    assert!(v[0] < 1, "boom");
                    Ok(())
                },
            )
        });
        let message = caught.err().and_then(|p| p.downcast_ref::<String>().cloned());
        let message = message.unwrap_or_default();
        assert!(
            message.contains("panicked on iteration 0") && message.contains("boom"),
            "{message}"
        );
    }
}
