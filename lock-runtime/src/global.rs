//! The process-wide default locker, used by `#[distributed_lock]` when it names none.

use std::sync::{PoisonError, RwLock};

use crate::{LockError, Locker};

static DEFAULT: RwLock<Option<Locker>> = RwLock::new(None);

/// Makes `locker` the process-wide default (replacing any earlier one). Call it once at
/// startup, e.g. `lock_runtime::set_default(Locker::from_env()?)`.
pub fn set_default(locker: Locker) {
    *DEFAULT.write().unwrap_or_else(PoisonError::into_inner) = Some(locker);
}

/// The process-wide default locker, or [`LockError::NotConfigured`] when none was set.
pub fn default_locker() -> Result<Locker, LockError> {
    DEFAULT
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .ok_or(LockError::NotConfigured)
}
