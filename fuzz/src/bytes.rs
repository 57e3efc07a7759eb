//! [`Mutator`]: byte-level mutations of a valid input, aimed at what binary formats get wrong.
//!
//! Parsers fail on lengths, counts and offsets far more than on payload bytes, so besides bit
//! flips and splices the mutator overwrites aligned 2-, 4- and 8-byte little-endian integers
//! with boundary values (0, 1, 2^31, 2^32, `u64::MAX`, the input's own length…) and nudges them
//! by a few units, and it cuts, repeats and moves whole chunks.

use crate::rng::Rng;

/// Integers that break length, count and offset arithmetic.
const BOUNDARY: [u64; 16] = [
    0,
    1,
    2,
    3,
    7,
    255,
    256,
    0x7FFF,
    0xFFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0x1_0000_0000,
    0x7FFF_FFFF_FFFF_FFFF,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Derives mutated inputs from valid ones, deterministically from its seed.
#[derive(Debug, Clone)]
pub struct Mutator {
    rng: Rng,
    dictionary: Vec<Vec<u8>>,
    max_len: usize,
}

impl Mutator {
    /// A mutator drawing from `seed`, growing inputs to at most `max_len` bytes.
    pub fn new(seed: u64, max_len: usize) -> Self {
        Mutator { rng: Rng::new(seed), dictionary: Vec::new(), max_len: max_len.max(1) }
    }

    /// Adds tokens the format gives meaning to (keywords, magic numbers, delimiters), which
    /// mutations insert and overwrite with.
    pub fn with_dictionary<I, W>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = W>,
        W: AsRef<[u8]>,
    {
        self.dictionary.extend(words.into_iter().map(|w| w.as_ref().to_vec()));
        self
    }

    /// The generator, for targets that draw their own choices.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// A mutated copy of `input`: one to four stacked mutations.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        let rounds = 1 + self.rng.below(4);
        for _ in 0..rounds {
            self.mutate_once(&mut out);
        }
        out.truncate(self.max_len);
        out
    }

    fn mutate_once(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            let len = 1 + self.rng.below(16);
            out.extend((0..len).map(|_| self.rng.next_u64() as u8));
            return;
        }
        match self.rng.below(11) {
            0 => {
                let i = self.rng.below(out.len());
                out[i] ^= 1 << self.rng.below(8);
            }
            1 => {
                let i = self.rng.below(out.len());
                out[i] = *self.rng.pick(&[0u8, 1, 0x7F, 0x80, 0xFF, b'0', b'"', b'\\', b'{', b'[']);
            }
            2 | 3 => self.overwrite_int(out),
            4 => self.nudge_int(out),
            5 => {
                let at = self.rng.below(out.len());
                out.truncate(at);
            }
            6 => {
                let (start, len) = self.chunk(out.len());
                out.drain(start..start + len);
            }
            7 => {
                let (start, len) = self.chunk(out.len());
                let piece = out[start..start + len].to_vec();
                let at = self.rng.below(out.len() + 1);
                let times = if self.rng.one_in(8) { 1 + self.rng.below(64) } else { 1 };
                for _ in 0..times {
                    if out.len() + piece.len() > self.max_len {
                        break;
                    }
                    out.splice(at..at, piece.iter().copied());
                }
            }
            8 => {
                let at = self.rng.below(out.len() + 1);
                let len = 1 + self.rng.below(32);
                let bytes: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
                out.splice(at..at, bytes);
            }
            9 | 10 if !self.dictionary.is_empty() => {
                let word = self.rng.pick(&self.dictionary).clone();
                let at = self.rng.below(out.len() + 1);
                if self.rng.one_in(2) {
                    out.splice(at..at, word);
                } else {
                    let end = (at + word.len()).min(out.len());
                    out.splice(at..end, word);
                }
            }
            _ => {
                let i = self.rng.below(out.len());
                out[i] = self.rng.next_u64() as u8;
            }
        }
    }

    /// A `(start, len)` chunk of a buffer of `n > 0` bytes, usually short.
    fn chunk(&mut self, n: usize) -> (usize, usize) {
        let start = self.rng.below(n);
        let room = n - start;
        let cap = if self.rng.one_in(4) { room } else { room.min(64) };
        (start, 1 + self.rng.below(cap))
    }

    /// Width in bytes and a start offset for an integer field, aligned to the width half the
    /// time (binary headers align their fields), or `None` when the buffer is too short.
    fn int_slot(&mut self, n: usize) -> Option<(usize, usize)> {
        let width = *self.rng.pick(&[2usize, 4, 4, 8, 8]);
        if n < width {
            return None;
        }
        let mut at = self.rng.below(n - width + 1);
        if self.rng.one_in(2) {
            at -= at % width;
        }
        Some((width, at))
    }

    fn overwrite_int(&mut self, out: &mut [u8]) {
        let Some((width, at)) = self.int_slot(out.len()) else { return };
        let value = match self.rng.below(4) {
            0 => out.len() as u64,
            1 => self.rng.next_u64() >> self.rng.below(64),
            _ => *self.rng.pick(&BOUNDARY),
        };
        out[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }

    fn nudge_int(&mut self, out: &mut [u8]) {
        let Some((width, at)) = self.int_slot(out.len()) else { return };
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(&out[at..at + width]);
        let delta = 1 + self.rng.below(16) as u64;
        let value = u64::from_le_bytes(le);
        let value =
            if self.rng.one_in(2) { value.wrapping_add(delta) } else { value.wrapping_sub(delta) };
        out[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

#[cfg(test)]
mod tests {
    use super::Mutator;

    #[test]
    fn deterministic_bounded_and_actually_mutating() {
        let input: Vec<u8> = (0..200u8).collect();
        let run = |seed| {
            let mut m = Mutator::new(seed, 256).with_dictionary(["GGUF"]);
            (0..200).map(|_| m.mutate(&input)).collect::<Vec<_>>()
        };
        let a = run(3);
        assert_eq!(a, run(3));
        assert_ne!(a, run(4));
        assert!(a.iter().all(|m| m.len() <= 256));
        // Stacked mutations can cancel out, but almost never do.
        assert!(a.iter().filter(|m| **m != input).count() > 190);
        assert!(a.iter().any(|m| m.len() < input.len()) && a.iter().any(|m| m.len() > input.len()));
        assert!(a.iter().any(|m| m.windows(4).any(|w| w == b"GGUF")));
    }
}
