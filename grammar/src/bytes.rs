//! [`ByteSet`]: the terminals of a grammar are sets of bytes.

/// A set of byte values, as a 256-bit bitmap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ByteSet([u64; 4]);

impl std::fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        let mut b = 0usize;
        while b < 256 {
            if self.contains(b as u8) {
                let lo = b;
                while b + 1 < 256 && self.contains((b + 1) as u8) {
                    b += 1;
                }
                list.entry(&format_args!("{lo:#04x}-{b:#04x}"));
            }
            b += 1;
        }
        list.finish()
    }
}

impl ByteSet {
    /// No bytes.
    pub const EMPTY: Self = Self([0; 4]);

    /// One byte.
    pub fn byte(b: u8) -> Self {
        Self::range(b, b)
    }

    /// Bytes `lo..=hi` (empty when `lo > hi`).
    pub fn range(lo: u8, hi: u8) -> Self {
        let mut s = Self::EMPTY;
        for b in lo..=hi {
            s.0[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        s
    }

    /// Every byte in `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        bytes.iter().fold(Self::EMPTY, |s, &b| s.union(Self::byte(b)))
    }

    /// Whether `b` is in the set.
    #[inline]
    pub fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] >> (b & 63) & 1 == 1
    }

    /// Bytes in either set.
    pub fn union(self, o: Self) -> Self {
        Self([self.0[0] | o.0[0], self.0[1] | o.0[1], self.0[2] | o.0[2], self.0[3] | o.0[3]])
    }

    /// Bytes in `self` but not in `o`.
    pub fn minus(self, o: Self) -> Self {
        Self([self.0[0] & !o.0[0], self.0[1] & !o.0[1], self.0[2] & !o.0[2], self.0[3] & !o.0[3]])
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSet;

    #[test]
    fn set_algebra() {
        let digits = ByteSet::range(b'0', b'9');
        assert!(digits.contains(b'0') && digits.contains(b'9') && !digits.contains(b'a'));
        let odd = ByteSet::of(b"13579");
        let even = digits.minus(odd);
        assert!(even.contains(b'4') && !even.contains(b'5'));
        assert_eq!(even.union(odd), digits);
        assert!(ByteSet::range(b'b', b'a').is_empty());
        assert!(ByteSet::byte(255).contains(255) && !ByteSet::byte(255).contains(127));
        assert_eq!(format!("{digits:?}"), "[0x30-0x39]");
    }
}
