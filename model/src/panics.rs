//! Panics that are caught on purpose: a third-party parser (candle's GGUF reader) panics on
//! some malformed files, and lorad turns that into an error naming the file. A process-wide
//! panic hook (the daemon's logs every panic at error priority) asks [`panic_is_expected`] so
//! that such a panic is not reported as a crash next to the clean error that follows it.

use std::cell::Cell;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// While alive, panics on this thread are expected: the code around catches them.
#[derive(Debug)]
pub struct ExpectPanics(());

impl ExpectPanics {
    /// Marks panics on this thread as expected until the guard is dropped (guards nest).
    pub fn enter() -> Self {
        DEPTH.with(|d| d.set(d.get() + 1));
        ExpectPanics(())
    }
}

impl Drop for ExpectPanics {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Whether a panic on this thread now is one the code catches on purpose.
pub fn panic_is_expected() -> bool {
    DEPTH.with(Cell::get) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_nest_and_end() {
        assert!(!panic_is_expected());
        let outer = ExpectPanics::enter();
        {
            let _inner = ExpectPanics::enter();
            assert!(panic_is_expected());
        }
        assert!(panic_is_expected());
        drop(outer);
        assert!(!panic_is_expected());
        let other = std::thread::spawn(panic_is_expected);
        let _here = ExpectPanics::enter();
        assert!(!other.join().unwrap(), "the mark is per thread");
    }
}
