//! The lock held by the running `#[distributed_lock]` body.

use std::future::Future;

use crate::LockHandle;

tokio::task_local! {
    static CURRENT: LockHandle;
}

/// The lock held by the enclosing `#[distributed_lock]` function, when called from its
/// body (or from anything it awaits); `None` elsewhere.
///
/// The handle reads the key and fencing token, extends the lock and watches for its loss.
/// It is task-local: a task the body spawns with `tokio::spawn` does not see it (pass the
/// handle along instead). In nested locked functions, the innermost lock is current.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
/// use lock_runtime::{LockError, Locker, distributed_lock};
///
/// #[distributed_lock("invoice:<id>", fencing, locker = locker)]
/// async fn write_invoice(locker: &Locker, id: u32) -> Result<u64, LockError> {
///     let lock = lock_runtime::current().expect("called under the lock");
///     assert_eq!(lock.name(), format!("invoice:{id}"));
///     Ok(lock.fencing_token().unwrap_or_default())
/// }
///
/// let locker = Locker::memory();
/// assert_eq!(write_invoice(&locker, 7).await?, 1);
/// assert_eq!(write_invoice(&locker, 7).await?, 2);
/// assert!(lock_runtime::current().is_none());
/// # Ok(()) }
/// ```
pub fn current() -> Option<LockHandle> {
    CURRENT.try_with(LockHandle::clone).ok()
}

/// Runs `body` with `handle` as the [`current`] lock.
pub(crate) async fn scope<F: Future>(handle: LockHandle, body: F) -> F::Output {
    CURRENT.scope(handle, body).await
}
