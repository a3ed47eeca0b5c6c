//! A held lock: the owning [`LockGuard`] and the cloneable [`LockHandle`].

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::LockError;
use crate::backend::{Backend, ExtendMode};
use crate::key::LockKeys;

/// Where a held lock stands, as far as this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// Held until `valid_until` unless renewed or extended.
    Held,
    /// Known lost: an owner check failed, or the lease ran out.
    Lost,
    /// Given up by its owner (released or dropped).
    Released,
}

/// The lease of a held lock, measured on this process's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    /// The lock is surely held until this instant (it was granted or extended for
    /// `ttl` by a request sent no earlier than `valid_until - ttl`).
    pub(crate) valid_until: Instant,
    pub(crate) state: LeaseState,
}

/// What a release found: whether this owner still held the lock, and on how many of the
/// servers (one for a single server or memory; N for Redlock, where the lock was held
/// when a quorum still had it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Released {
    /// The lock was still this owner's (on a quorum of servers, for Redlock) and is now
    /// released. `false`: it had expired or been taken, so the work done under it was not
    /// fully protected.
    pub held: bool,
    /// How many servers still held the key for this owner and deleted it.
    pub servers_held: usize,
    /// How many servers the lock lives on.
    pub servers: usize,
}

impl Released {
    /// The outcome on a backend with one server.
    pub(crate) fn single(held: bool) -> Self {
        Self {
            held,
            servers_held: usize::from(held),
            servers: 1,
        }
    }
}

/// Everything a guard, its handles and its renewal task share.
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) keys: LockKeys,
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) fence: Option<u64>,
    pub(crate) ttl: Duration,
    pub(crate) acquired_at: Instant,
    pub(crate) lease: watch::Sender<Lease>,
}

impl Shared {
    /// Records that the lock is held until `valid_until`, unless it was lost or released.
    pub(crate) fn renewed(&self, valid_until: Instant) {
        self.lease.send_if_modified(|lease| {
            let held = lease.state == LeaseState::Held;
            if held {
                lease.valid_until = valid_until;
            }
            held
        });
    }

    /// Marks the lease lost (once) and logs it; later calls do nothing.
    pub(crate) fn mark_lost(&self, why: &str) {
        let changed = self.lease.send_if_modified(|lease| {
            let held = lease.state == LeaseState::Held;
            if held {
                lease.state = LeaseState::Lost;
            }
            held
        });
        if changed {
            tracing::warn!(key = %self.keys.key(), why, "distributed lock lost");
        }
    }

    /// Deletes the key if this owner still holds it, and records the outcome: a key found
    /// expired or taken marks the lease lost (and logs it); otherwise it is given up.
    async fn release(&self) -> Result<Released, LockError> {
        let released = self.backend.release(&self.keys, &self.token).await;
        if let Ok(Released { held: false, .. }) = released {
            self.mark_lost("at release the key had expired or had another owner");
        }
        self.mark_released();
        released
    }

    fn mark_released(&self) {
        self.lease.send_if_modified(|lease| {
            let held = lease.state == LeaseState::Held;
            if held {
                lease.state = LeaseState::Released;
            }
            held
        });
    }
}

/// A cheap, cloneable view of a held lock: read its key and fencing token, extend it,
/// watch for its loss. It does not own the lock: the [`LockGuard`] releases it.
///
/// [`LockGuard`] dereferences to this type, so every method here is available on the guard.
#[derive(Clone)]
pub struct LockHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for LockHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lease = *self.shared.lease.borrow();
        f.debug_struct("LockHandle")
            .field("key", &self.shared.keys.key())
            .field("fencing_token", &self.shared.fence)
            .field("ttl", &self.shared.ttl)
            .field("state", &lease.state)
            .finish_non_exhaustive()
    }
}

impl LockHandle {
    /// The lock's name, as given to [`Locker::lock`](crate::Locker::lock).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The Redis key holding the lock: the locker's prefix plus the name in a hash tag,
    /// e.g. `lock:{order:42}`.
    pub fn key(&self) -> &str {
        self.shared.keys.key()
    }

    /// This owner's random token (a UUID v4 from the OS RNG), stored as the key's value.
    /// A resource can use it for check-and-set fencing.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The fencing token, when the request asked for [`fencing`](crate::LockRequest::fencing):
    /// it grows strictly with every acquisition of this lock, across owners and processes.
    /// Pass it to the resource and have it reject writes with a smaller token.
    pub fn fencing_token(&self) -> Option<u64> {
        self.shared.fence
    }

    /// The TTL the lock was acquired with (and that auto-renewal restores).
    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// How long ago the lock was acquired.
    pub fn held_for(&self) -> Duration {
        self.shared.acquired_at.elapsed()
    }

    /// How long the lock is still surely held, on this process's monotonic clock
    /// (measured from when the last acquire, extend or renewal was *sent*). Zero once lost.
    pub fn remaining(&self) -> Duration {
        let lease = *self.shared.lease.borrow();
        match lease.state {
            LeaseState::Held => lease.valid_until.saturating_duration_since(Instant::now()),
            LeaseState::Lost | LeaseState::Released => Duration::ZERO,
        }
    }

    /// Adds `by` to the lock's remaining time, if this owner still holds it.
    ///
    /// Returns [`LockError::Lost`] (and marks the lock lost) when the key expired or has
    /// another owner, and [`LockError::Backend`] when Redis did not answer (the lock may
    /// or may not have been extended; the guard keeps counting from the older lease).
    ///
    /// Cancellation: dropping the future may or may not extend the lock; this process
    /// then keeps assuming the shorter lease, which is the safe side.
    pub async fn extend(&self, by: Duration) -> Result<(), LockError> {
        if by.is_zero() {
            return Err(LockError::Config(
                "extend(by) needs a positive duration".into(),
            ));
        }
        let shared = &self.shared;
        let sent_at = Instant::now();
        match shared
            .backend
            .extend(&shared.keys, &shared.token, by, ExtendMode::Add)
            .await?
        {
            Some(remaining) => {
                shared.renewed(sent_at + remaining);
                Ok(())
            }
            None => {
                shared.mark_lost("extend found the key expired or owned by someone else");
                Err(LockError::Lost {
                    key: shared.keys.key().to_owned(),
                })
            }
        }
    }

    /// Asks the backend whether this owner still holds the lock (one round trip).
    pub async fn is_held(&self) -> Result<bool, LockError> {
        let shared = &self.shared;
        let holder = shared.backend.holder(&shared.keys).await?;
        Ok(holder.as_deref() == Some(shared.token.as_str()))
    }

    /// Whether the lock is known lost: an extend or renewal found another owner, or the
    /// lease ran out without a successful renewal. Does not ask the backend.
    pub fn is_lost(&self) -> bool {
        let lease = *self.shared.lease.borrow();
        match lease.state {
            LeaseState::Lost => true,
            LeaseState::Held => Instant::now() >= lease.valid_until,
            LeaseState::Released => false,
        }
    }

    /// A future that completes when the lock is known lost (see [`is_lost`](Self::is_lost)).
    ///
    /// It owns what it needs (`'static`), so it can be raced against the work the lock
    /// protects, e.g. with `tokio::select!`. It never completes once the lock has been
    /// released by its owner.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut lease = self.shared.lease.subscribe();
        async move {
            loop {
                let current = *lease.borrow_and_update();
                match current.state {
                    LeaseState::Lost => return,
                    LeaseState::Released => std::future::pending::<()>().await,
                    LeaseState::Held => {}
                }
                tokio::select! {
                    changed = lease.changed() => {
                        if changed.is_err() {
                            // Every handle is gone: the lock was given up, not lost.
                            std::future::pending::<()>().await;
                        }
                    }
                    () = tokio::time::sleep_until(current.valid_until) => {
                        let now = *lease.borrow();
                        if now.state == LeaseState::Held && now.valid_until <= Instant::now() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Owns a held lock and releases it.
///
/// Release it with [`release`](Self::release) to learn whether it was still held. Dropping
/// the guard also releases it, without blocking: Drop stops the renewal and spawns a
/// best-effort release on the current tokio runtime (outside a runtime it does nothing,
/// and the key expires with its TTL).
///
/// The guard dereferences to [`LockHandle`] for the key, fencing token, extend and loss.
#[must_use = "the lock is released as soon as the guard is dropped; bind it: `let guard = ...`"]
pub struct LockGuard {
    handle: LockHandle,
    auto_renew: bool,
    finished: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.handle.key())
            .field("fencing_token", &self.handle.fencing_token())
            .field("auto_renew", &self.auto_renew)
            .field("remaining", &self.handle.remaining())
            .finish_non_exhaustive()
    }
}

impl Deref for LockGuard {
    type Target = LockHandle;

    fn deref(&self) -> &LockHandle {
        &self.handle
    }
}

impl LockGuard {
    pub(crate) fn new(shared: Arc<Shared>, auto_renew: bool) -> Self {
        Self {
            handle: LockHandle { shared },
            auto_renew,
            finished: false,
        }
    }

    /// A cloneable view of this lock (key, token, extend, loss) that does not own it.
    pub fn handle(&self) -> LockHandle {
        self.handle.clone()
    }

    /// Releases the lock: deletes the key if this owner still holds it, and wakes the
    /// waiters. Stops auto-renewal first.
    ///
    /// Returns `Ok(true)` when it released the lock, `Ok(false)` when the lock had
    /// already expired or been taken by another owner (so the work done under it was not
    /// fully protected; this is also logged), and `Err` when Redis did not answer (the key
    /// then expires with its TTL).
    ///
    /// Cancellation: dropping this future before it completes still releases the lock,
    /// through the guard's `Drop`.
    pub async fn release(self) -> Result<bool, LockError> {
        self.release_report().await.map(|released| released.held)
    }

    /// Like [`release`](Self::release), but also says on how many servers the lock was
    /// still held: with Redlock, how close it came to being lost.
    pub async fn release_report(mut self) -> Result<Released, LockError> {
        // Inline (no task to spawn and join); if this future is dropped before the answer,
        // the guard is dropped with it and its `Drop` releases instead.
        let released = self.handle.shared.release().await;
        self.finished = true;
        released
    }

    /// Releases the lock, but not before `min_hold` has passed since it was acquired: if
    /// less has passed, the key's expiry is shortened to the remainder instead of deleting
    /// it, so no other instance can take the lock (and repeat a scheduled job) until then.
    ///
    /// Returns what [`release`](Self::release) returns; `Ok(true)` also when the key was
    /// left to expire at the end of `min_hold`.
    ///
    /// Cancellation: the work runs in a spawned task (the `Drop` fallback would delete the
    /// key instead of keeping it for `min_hold`), so dropping this future still completes it.
    pub async fn release_after(mut self, min_hold: Duration) -> Result<bool, LockError> {
        let Some(left) = min_hold
            .checked_sub(self.held_for())
            .filter(|left| !left.is_zero())
        else {
            return self.release().await;
        };
        self.finished = true;
        let shared = self.handle.shared.clone();
        let task = tokio::spawn(async move {
            let kept = shared
                .backend
                .extend(&shared.keys, &shared.token, left, ExtendMode::Set)
                .await?;
            if kept.is_some() {
                shared.mark_released();
            } else {
                shared.mark_lost("at release the key had expired or had another owner");
            }
            Ok(kept.is_some())
        });
        join_release(task, self.handle.shared.keys.key()).await
    }

    /// Gives up ownership without releasing: stops auto-renewal and leaves the key to
    /// expire with its TTL, so nobody can take the lock until then. This is how a lock
    /// serves as a time window, such as "one call per user every 5 s":
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use lock_runtime::Locker;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
    /// let locker = Locker::memory();
    /// let request = || locker.lock("rate_limit:user:7").ttl(Duration::from_secs(5));
    /// if let Some(window) = request().try_acquire().await? {
    ///     window.keep(); // the call is allowed; the window stays closed for 5 s
    /// }
    /// assert!(request().try_acquire().await?.is_none()); // a second call within 5 s
    /// # Ok(()) }
    /// ```
    pub fn keep(mut self) {
        self.finished = true;
        self.handle.shared.mark_released();
    }
}

/// Awaits a spawned release; a dropped caller does not cancel it.
async fn join_release<T>(
    task: tokio::task::JoinHandle<Result<T, LockError>>,
    key: &str,
) -> Result<T, LockError> {
    match task.await {
        Ok(released) => released,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => Err(LockError::Backend {
            key: key.to_owned(),
            source: redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the tokio runtime shut down before the release completed; the key expires with its TTL",
            )),
        }),
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let shared = self.handle.shared.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            shared.mark_released();
            tracing::warn!(
                key = %shared.keys.key(),
                "lock guard dropped outside a tokio runtime; the key expires with its TTL"
            );
            return;
        };
        runtime.spawn(async move {
            if let Err(error) = shared.release().await {
                tracing::warn!(
                    key = %shared.keys.key(),
                    %error,
                    "release on drop failed; the key expires with its TTL"
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_and_handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<LockGuard>();
        send_sync::<LockHandle>();
        send_sync::<crate::Locker>();
    }
}
