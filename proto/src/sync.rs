//! The tree's one policy for poisoned locks (feature `std`).

extern crate std;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, going on when a thread panicked while holding it.
///
/// What this assumes, truthfully: the panicking holder may have left the data half-updated.
/// boxlite's critical sections are single inserts, removes, swaps or field stores, so the data
/// is whole between them; and the alternatives are worse: propagating the poison turns one
/// panic into a panic of every later caller (across the C ABI, or a VMM that can no longer stop
/// its VM). In the shim's release build panics abort, so no lock is ever poisoned there.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let mutex = std::sync::Arc::new(Mutex::new(5));
        let holder = std::sync::Arc::clone(&mutex);
        let panicked = std::thread::spawn(move || {
            let _guard = holder.lock().unwrap();
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err() && mutex.is_poisoned());
        *lock(&mutex) += 1;
        assert_eq!(*lock(&mutex), 6);
    }
}
