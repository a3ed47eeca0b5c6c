//! Which task of this process holds which lock of a locker: so a task that asks for a
//! lock it already holds learns it at once ([`LockError::Reentrant`](crate::LockError)),
//! or shares the lease it holds (`LockRequest::reentrant`), instead of waiting for
//! itself.
//!
//! The owner of a lock is the tokio task that acquired it (`tokio::task::id`), or, for
//! code that runs outside any task (the future a runtime's `block_on` drives, as
//! `#[tokio::main]`'s body), the thread that drives it. It stays the owner until the lock
//! is released or lost, even if its guard moves to another task. Entries are weak and
//! swept as they go stale (amortized over registrations), so the map holds no more than
//! about twice the locks held at once, plus the emptied maps of at most
//! [`SPARE_OWNERS`] owners, kept so that a task taking lock after lock does not allocate
//! its map again after every sweep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::key::LockKeys;
use crate::lease::{HeldLock, State};

/// Owners whose maps a sweep leaves in place when they are empty (beyond, empty maps
/// are dropped): a long-lived task that takes lock after lock keeps its map.
const SPARE_OWNERS: usize = 256;

/// Who acquired a lock, as far as re-entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

impl Owner {
    fn current() -> Self {
        tokio::task::try_id().map_or_else(|| Self::Thread(std::thread::current().id()), Self::Task)
    }
}

/// The locks of one locker held by each owner.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    state: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Owner -> lock key -> the lock, while it may still be held.
    locks: HashMap<Owner, HashMap<String, Weak<HeldLock>>>,
    /// Entries in `locks`.
    entries: usize,
    /// Registrations since the last sweep.
    since_sweep: usize,
}

/// The lock, while it is held: not released or given up (a dropped guard), not known
/// lost, its lease not run out.
fn live(lock: &Weak<HeldLock>) -> Option<Arc<HeldLock>> {
    lock.upgrade()
        .filter(|lock| lock.state() == State::Held && !lock.is_lost() && !lock.given_up())
}

impl Owners {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock `keys` if the current task (or thread) holds it.
    pub(crate) fn held_here(&self, keys: &LockKeys) -> Option<Arc<HeldLock>> {
        let held = self.held();
        let lock = held.locks.get(&Owner::current())?.get(keys.key())?;
        live(lock)
    }

    /// Records that the current task (or thread) holds `lock`.
    pub(crate) fn register(&self, lock: &Arc<HeldLock>) {
        let mut held = self.held();
        held.since_sweep += 1;
        if held.since_sweep > 64.max(held.entries / 2) {
            let keep_empty = held.locks.len() <= SPARE_OWNERS;
            held.locks.retain(|_, locks| {
                locks.retain(|_, lock| live(lock).is_some());
                keep_empty || !locks.is_empty()
            });
            held.entries = held.locks.values().map(HashMap::len).sum();
            held.since_sweep = 0;
        }
        let key = lock.keys().key().to_owned();
        let added = held
            .locks
            .entry(Owner::current())
            .or_default()
            .insert(key, Arc::downgrade(lock))
            .is_none();
        held.entries += usize::from(added);
    }

    /// How many entries are kept (for tests of the sweep).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held().entries
    }

    /// How many owners have a map (for tests of the sweep).
    #[cfg(test)]
    fn owners(&self) -> usize {
        self.held().locks.len()
    }
}

#[cfg(test)]
mod tests {
    use crate::Locker;

    #[tokio::test]
    async fn released_locks_are_swept() {
        let locker = Locker::memory();
        let held = locker.lock("kept").acquire().await.unwrap();
        for index in 0..2_000 {
            let guard = locker.lock(format!("n:{index}")).acquire().await.unwrap();
            guard.release().await.unwrap();
        }
        // Swept when the registrations since the last sweep outnumber half the entries:
        // at most about twice the live entries plus one interval of 64.
        let entries = locker.owners().len();
        assert!(entries <= 130, "{entries} entries");
        let again = locker.lock("kept").try_acquire().await.unwrap_err();
        assert!(
            matches!(again, crate::LockError::Reentrant { .. }),
            "{again}"
        );
        held.release().await.unwrap();
    }

    #[tokio::test]
    async fn the_maps_of_gone_tasks_are_swept() {
        let locker = Locker::memory();
        for index in 0..3_000 {
            let locker = locker.clone();
            tokio::spawn(async move {
                let guard = locker.lock(format!("t:{index}")).acquire().await.unwrap();
                guard.release().await.unwrap();
            })
            .await
            .unwrap();
        }
        // Empty maps are kept for at most SPARE_OWNERS owners, plus the owners that
        // registered since the last sweep (at most 64 here).
        let owners = locker.owners().owners();
        assert!(
            owners <= super::SPARE_OWNERS + 65,
            "{owners} owners' maps kept"
        );
        assert!(
            locker.owners().len() <= 65,
            "{} entries",
            locker.owners().len()
        );
    }
}
