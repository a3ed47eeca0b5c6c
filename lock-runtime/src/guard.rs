//! A held lock: the owning [`LockGuard`] and the cloneable [`LockHandle`].

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::ReleaseReport;
use crate::lease::HeldLock;
use crate::observe::{Release, TARGET};
use crate::{LockError, millis};

/// A cheap, cloneable view of a held lock: read its name and fencing token, extend it,
/// watch for its loss. It does not own the lock: the [`LockGuard`] releases it.
///
/// [`LockGuard`] dereferences to this type, so every method here is available on the
/// guard. The typical use of a handle is racing the protected work against
/// [`lost`](Self::lost):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// use lock_runtime::Locker;
///
/// let locker = Locker::memory();
/// let guard = locker.lock("report:daily").ttl(Duration::from_secs(30)).auto_renew().acquire().await?;
/// let handle = guard.handle();
/// let work = async { 40 + 2 };
/// let answer = tokio::select! {
///     answer = work => answer,
///     () = handle.lost() => return Err(lock_runtime::LockError::Lost { name: handle.name().into() }),
/// };
/// assert_eq!(answer, 42);
/// assert!(guard.release().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockHandle {
    lock: Arc<HeldLock>,
    /// A re-entry's handle: the lock is another guard's, whose release ends it here too.
    shared: bool,
}

impl fmt::Debug for LockHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockHandle")
            .field("name", &self.name())
            .field("key", &self.key())
            .field("fencing_token", &self.fencing_token())
            .field("ttl", &self.ttl())
            .field("state", &self.lock.state())
            .finish_non_exhaustive()
    }
}

impl LockHandle {
    /// The lock's name, as given to [`Locker::lock`](crate::Locker::lock).
    pub fn name(&self) -> &str {
        self.lock.name()
    }

    /// The Redis key holding the lock: the locker's prefix plus the name in a hash tag,
    /// e.g. `lock:{order:42}` (a `%` or `}` in the name is percent-encoded).
    pub fn key(&self) -> &str {
        self.lock.keys().key()
    }

    /// This owner's token, stored as the key's value: a per-process random prefix (122
    /// bits from the operating system) and a counter, unique to this acquisition.
    pub fn token(&self) -> &str {
        self.lock.token()
    }

    /// The fencing token, when the request asked for [`fencing`](crate::LockRequest::fencing):
    /// it grows strictly with every fenced acquisition of this lock, across owners and
    /// processes (on Redis, a large number that follows the server's clock in µs).
    /// Pass it to the resource and have it reject writes with a smaller token. See the
    /// crate docs ("Fencing") for what the guarantee assumes.
    pub fn fencing_token(&self) -> Option<u64> {
        self.lock.fence()
    }

    /// The TTL the lock was acquired with (and that auto-renewal restores).
    pub fn ttl(&self) -> Duration {
        self.lock.ttl()
    }

    /// How long ago the lock was acquired.
    pub fn held_for(&self) -> Duration {
        self.lock.acquired_at().elapsed()
    }

    /// How long the lock is still surely held, on this process's monotonic clock
    /// (measured from when the last acquire, extend or renewal was *sent*, less the
    /// backend's drift margin). Zero once lost or released.
    pub fn remaining(&self) -> Duration {
        self.lock.remaining()
    }

    /// Adds `by` to the lock's remaining time, if this owner still holds it.
    ///
    /// Returns [`LockError::Lost`] (and marks the lock lost) when the key expired or has
    /// another owner, [`LockError::Config`] for a zero or huge `by`, and
    /// [`LockError::Backend`] when Redis did not answer (the lock may or may not have been
    /// extended; the guard keeps counting from the older lease).
    ///
    /// Cancellation: dropping the future may or may not extend the lock; this process
    /// then keeps assuming the shorter lease, which is the safe side.
    pub async fn extend(&self, by: Duration) -> Result<(), LockError> {
        if by.is_zero() {
            return Err(LockError::Config(
                "extend(by) needs a positive duration".into(),
            ));
        }
        millis::check("extend(by)", by, Duration::from_millis(1)).map_err(LockError::Config)?;
        self.lock.extend(by).await
    }

    /// Marks the lock given up by its owner before its release is spawned (see
    /// `HeldLock::give_up`).
    pub(crate) fn give_up(&self) {
        self.lock.give_up();
    }

    /// The lock's `lock.hold` span.
    pub(crate) fn span(&self) -> &tracing::Span {
        self.lock.span()
    }

    /// Asks the backend whether this owner still holds the lock (one round trip).
    pub async fn is_held(&self) -> Result<bool, LockError> {
        let lock = &self.lock;
        let holder = lock.backend().holder(lock.keys(), lock.token()).await?;
        Ok(holder.as_deref() == Some(self.token()))
    }

    /// Whether the lock is known lost: an extend or renewal found another owner, or the
    /// lease ran out without a successful renewal. Does not ask the backend. For a
    /// re-entry's guard ([`LockRequest::reentrant`](crate::LockRequest::reentrant)), also
    /// once the guard that owns the lock released or dropped it.
    pub fn is_lost(&self) -> bool {
        self.lock.is_lost()
            || (self.shared
                && (self.lock.state() != crate::lease::State::Held || self.lock.given_up()))
    }

    /// A future that completes when the lock is known lost (see [`is_lost`](Self::is_lost)).
    ///
    /// It owns what it needs (`'static`), so it can be raced against the work the lock
    /// protects, e.g. with `tokio::select!`. It never completes once the lock has been
    /// released by its owner; for a re-entry's guard, that release completes it.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lock.lost(self.shared)
    }
}

/// What the guard's `Drop` still has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Release the lock.
    Release,
    /// Keep the key until this instant (a `release_after` in progress), then let it go.
    KeepUntil(Instant),
    /// Nothing: released, kept or handed on.
    Nothing,
}

/// Owns a held lock and releases it.
///
/// (A guard from a re-entry, [`LockRequest::reentrant`](crate::LockRequest::reentrant),
/// shares a lock that an outer guard owns: its release, `release_after` and `keep` do
/// nothing to the lock, and report whether it is still held.)
///
/// Release it with [`release`](Self::release) to learn whether it was still held.
/// Dropping the guard also releases it, without blocking: `Drop` stops the renewal and
/// spawns the release on the current tokio runtime (outside a runtime it does nothing,
/// and the key expires with its TTL). The guard dereferences to [`LockHandle`] for the
/// name, fencing token, extend and loss.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// use lock_runtime::Locker;
///
/// let locker = Locker::memory();
/// let guard = locker.lock("invoice:7").fencing().acquire().await?;
/// assert_eq!(guard.name(), "invoice:7");
/// let token = guard.fencing_token().expect("asked for one"); // pass it to the resource
/// guard.extend(Duration::from_secs(60)).await?;               // a long step ahead
/// assert!(guard.remaining() > Duration::from_secs(60));
/// assert!(guard.release().await?, "held until the release");
/// # let _ = token; Ok(()) }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped; bind it: `let guard = ...`"]
pub struct LockGuard {
    handle: LockHandle,
    auto_renew: bool,
    pending: Pending,
    /// A re-entry: shares a lock that another guard releases.
    nested: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.handle.name())
            .field("key", &self.handle.key())
            .field("fencing_token", &self.handle.fencing_token())
            .field("auto_renew", &self.auto_renew)
            .field("reentered", &self.nested)
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
    pub(crate) fn new(lock: Arc<HeldLock>, auto_renew: bool) -> Self {
        Self {
            handle: LockHandle {
                lock,
                shared: false,
            },
            auto_renew,
            pending: Pending::Release,
            nested: false,
        }
    }

    /// A guard that shares `lock`, held by an outer guard of this task, and releases
    /// nothing ([`LockRequest::reentrant`](crate::LockRequest::reentrant)).
    pub(crate) fn nested(lock: Arc<HeldLock>) -> Self {
        Self {
            handle: LockHandle { lock, shared: true },
            auto_renew: false,
            pending: Pending::Nothing,
            nested: true,
        }
    }

    /// A cloneable view of this lock (name, token, extend, loss) that does not own it.
    pub fn handle(&self) -> LockHandle {
        self.handle.clone()
    }

    /// Releases the lock: deletes the key if this owner still holds it (or hands it to
    /// the first waiter in its queue). Stops auto-renewal first.
    ///
    /// Returns `Ok(true)` when it released the lock, `Ok(false)` when the lock had
    /// already expired or been taken by another owner (so the work done under it was not
    /// fully protected; this is also logged), and `Err` when Redis did not answer (the key
    /// then expires with its TTL).
    ///
    /// Cancellation: dropping this future before it completes still releases the lock,
    /// through the guard's `Drop`.
    pub async fn release(self) -> Result<bool, LockError> {
        self.release_report().await.map(|report| report.held)
    }

    /// Like [`release`](Self::release), but also says on how many servers the lock was
    /// still held: with Redlock, how close it came to being lost.
    pub async fn release_report(mut self) -> Result<ReleaseReport, LockError> {
        if self.nested {
            return Ok(ReleaseReport::single(!self.is_lost()));
        }
        // Inline: if this future is dropped before the answer, the guard is dropped with
        // it and its `Drop` releases again (quietly, if the first release got through).
        let report = self.handle.lock.release(Release::Released).await;
        self.pending = Pending::Nothing;
        report
    }

    /// Releases the lock, but not before `min_hold` has passed since it was acquired: if
    /// less has passed, the key's expiry is set to the remainder (rounded up to whole
    /// milliseconds, so never deleted early) instead of deleting it, so no other instance
    /// can take the lock (and repeat a scheduled job) until then.
    ///
    /// Returns what [`release`](Self::release) returns; `Ok(true)` also when the key was
    /// left to expire at the end of `min_hold`.
    ///
    /// Cancellation: dropping this future still completes it through the guard's `Drop`,
    /// which keeps the key until the same instant.
    pub async fn release_after(mut self, min_hold: Duration) -> Result<bool, LockError> {
        if self.nested {
            return Ok(!self.is_lost());
        }
        let Some(left) = min_hold
            .checked_sub(self.held_for())
            .filter(|left| !left.is_zero())
        else {
            return self.release().await;
        };
        self.pending = Pending::KeepUntil(Instant::now() + left.min(millis::MAX));
        let kept = self
            .handle
            .lock
            .release_after(left.min(millis::MAX), Release::MinHold)
            .await;
        self.pending = Pending::Nothing;
        kept
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
        if self.nested {
            return;
        }
        self.pending = Pending::Nothing;
        self.handle.lock.keep(Release::Kept);
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let pending = std::mem::replace(&mut self.pending, Pending::Nothing);
        if pending == Pending::Nothing {
            return;
        }
        let lock = self.handle.lock.clone();
        // No longer this task's to re-enter: a new request waits for the release below.
        lock.give_up();
        let tracker = lock.backend().tracker().clone();
        let spawned = tracker.spawn(async move {
            let outcome = match pending {
                Pending::KeepUntil(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    lock.release_after(left, Release::Dropped).await.map(drop)
                }
                _ => lock.release(Release::Dropped).await.map(drop),
            };
            if let Err(error) = outcome {
                tracing::warn!(
                    name: "lock.release_failed",
                    target: TARGET,
                    parent: lock.span(),
                    {
                        lock.name = lock.name(),
                        error = %error,
                    },
                    "release of a dropped lock guard failed; the key expires with its TTL"
                );
            }
        });
        if !spawned {
            tracing::warn!(
                name: "lock.dropped_outside_runtime",
                target: TARGET,
                parent: self.handle.lock.span(),
                {
                    lock.name = self.handle.name(),
                },
                "lock guard dropped outside a tokio runtime; the key expires with its TTL"
            );
            self.handle.lock.keep(Release::Abandoned);
        }
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
