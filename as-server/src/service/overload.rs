//! Admission control: when the AS holds `max_sessions` live sessions, or the relay reports it
//! is overloaded, a new join/creation gets `503 Service Unavailable` with `Retry-After`
//! (RFC 3261 sections 21.5.4 and 20.33) instead of degrading everyone already watching.
//!
//! The counter is a plain atomic so the service can reserve a slot before it awaits the store
//! and the relay; the [`Slot`] guard gives it back unless the session is committed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Refusal: answer 503 with this `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// Seconds for `Retry-After`.
    pub retry_after: u32,
}

/// Live-session counter with a ceiling.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    retry_after: u32,
    active: Arc<AtomicUsize>,
}

/// A reserved session slot; dropping it without [`Slot::commit`] frees it.
#[derive(Debug)]
#[must_use = "a slot is freed when dropped; commit it if the session was created"]
pub struct Slot {
    active: Option<Arc<AtomicUsize>>,
}

impl Admission {
    /// Admission for at most `max` sessions; refusals say `Retry-After: retry_after`.
    pub fn new(max: usize, retry_after: u32) -> Self {
        Self {
            max,
            retry_after,
            active: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Reserves a slot, or refuses when `max` are in use.
    pub fn try_admit(&self) -> Result<Slot, Overloaded> {
        let ok = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if ok {
            Ok(Slot {
                active: Some(self.active.clone()),
            })
        } else {
            Err(self.refusal())
        }
    }

    /// The 503 answer to give (also used when the relay says it is overloaded).
    pub fn refusal(&self) -> Overloaded {
        Overloaded {
            retry_after: self.retry_after,
        }
    }

    /// Frees one committed slot (a session ended).
    pub fn release(&self) {
        let _ = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Sessions holding a slot now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

impl Slot {
    /// Keeps the slot taken; [`Admission::release`] frees it when the session ends.
    pub fn commit(mut self) {
        self.active = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(a) = self.active.take() {
            let _ = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_and_release() {
        let a = Admission::new(2, 7);
        let s1 = a.try_admit().unwrap();
        let s2 = a.try_admit().unwrap();
        assert_eq!(a.try_admit().unwrap_err(), Overloaded { retry_after: 7 });
        drop(s1); // not committed: freed
        assert_eq!(a.active(), 1);
        let s3 = a.try_admit().unwrap();
        s2.commit();
        s3.commit();
        assert_eq!(a.active(), 2);
        assert!(a.try_admit().is_err());
        a.release();
        assert_eq!(a.active(), 1);
        a.try_admit().unwrap().commit();
        a.release();
        a.release();
        a.release(); // never below zero
        assert_eq!(a.active(), 0);
    }

    #[test]
    fn zero_max_refuses_everything() {
        let a = Admission::new(0, 1);
        assert!(a.try_admit().is_err());
    }
}
