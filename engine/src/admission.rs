//! Turns at the device budget: acquirers whose adapter needs room wait in arrival order, and
//! only the oldest one asks the pool for room (marking what must drain for it), so a stream of
//! requests on resident adapters cannot keep a newcomer out forever, and two waiters never mark
//! drains for each other at once.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::adapters::AdapterPool;

/// The queue of turns.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<u64>,
    next: u64,
}

/// One acquirer's place in the queue; leaving (drop) lifts the drain marks it may have set.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    turns: &'a Turns,
    pool: &'a AdapterPool,
    ticket: u64,
}

impl Turns {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a queue of integers, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the end of the queue.
    pub(crate) fn enter<'a>(&'a self, pool: &'a AdapterPool) -> Turn<'a> {
        let mut s = self.lock();
        let ticket = s.next;
        s.next += 1;
        s.queue.push_back(ticket);
        Turn { turns: self, pool, ticket }
    }
}

impl Turn<'_> {
    /// Turns ahead of this one.
    pub(crate) fn ahead(&self) -> usize {
        self.turns.lock().queue.iter().take_while(|&&t| t != self.ticket).count()
    }

    /// Blocks until this is the oldest turn (`true`) or `deadline` passes (`false`).
    pub(crate) fn wait_first(&self, deadline: Instant) -> bool {
        let mut s = self.turns.lock();
        loop {
            if s.queue.front() == Some(&self.ticket) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .turns
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut s = self.turns.lock();
        let first = s.queue.front() == Some(&self.ticket);
        s.queue.retain(|&t| t != self.ticket);
        if first {
            // The marks were set for this turn; the next one sets its own.
            self.pool.clear_draining();
        }
        drop(s);
        self.turns.cv.notify_all();
    }
}
