//! Distributed locks for async Rust, on Redis.
//!
//! Several instances of a tokio service need one instance at a time to pay an order,
//! decrement stock or run the nightly job. This crate gives them a lock that is
//!
//! - **atomic and owned**: `SET NX PX` with a random owner token; release and extend check
//!   the token in a Lua script, so nobody releases someone else's lock;
//! - **expiring**: a crashed holder's lock frees itself after its TTL;
//! - **renewable**: [`auto_renew`](LockRequest::auto_renew) keeps a long job's lock alive,
//!   and a lock that is lost anyway is reported ([`LockHandle::lost`]), never swallowed;
//! - **fair to waiters**: a waiter is woken by the release itself (pub/sub), not a poll;
//! - **fenced** on request: [`LockHandle::fencing_token`] grows strictly per lock;
//! - **cancellation-safe**: dropping a future never leaves a lock behind, and dropping a
//!   [`LockGuard`] releases it without blocking.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
//! use std::time::Duration;
//! use lock_runtime::{LockError, Locker};
//!
//! // In production: `Locker::redis("redis://127.0.0.1:6379")?` or `Locker::from_env()?`.
//! let locker = Locker::memory();
//!
//! let guard = locker.lock("order:42").ttl(Duration::from_secs(30)).acquire().await?;
//! // A second instance is refused at once...
//! let busy = locker.lock("order:42").acquire().await.unwrap_err();
//! assert!(matches!(busy, LockError::Busy { .. }));
//! // ...and the owner releases it when done (dropping the guard would, too).
//! assert!(guard.release().await?);
//! # Ok(()) }
//! ```
//!
//! # Redis data model
//!
//! A lock named `order:42` under the prefix `lock:` is the key `lock:{order:42}` holding
//! the owner token with a PX expiry; `lock:{order:42}:fence` is its fencing counter and
//! `lock:{order:42}:released` the channel its release is published on. The hash tag keeps
//! all three in one Redis Cluster slot.
//!
//! # Features
//!
//! - `macros` (default): re-exports the `#[distributed_lock]` attribute.
//! - `testing`: the [`testing`] module, a private `redis-server` for tests.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod current;
mod default;
mod error;
mod guard;
mod key;
mod locker;
mod renew;
mod request;
mod token;
mod wait;

#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
pub mod __private;

/// Runs an `async fn`'s body under a distributed lock whose key is built from the
/// function's arguments.
///
/// ```
/// # use lock_runtime::{distributed_lock, LockError, Locker};
/// # #[derive(Debug)] struct AppError;
/// # impl From<LockError> for AppError { fn from(_: LockError) -> Self { AppError } }
/// #[distributed_lock("order:<order_id>", timeout = 30, auto_renew)]
/// async fn pay(order_id: u64, amount: u32) -> Result<u32, AppError> {
///     // Runs on one instance at a time per order; the lock is released on every exit.
///     Ok(amount)
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # lock_runtime::set_default(Locker::memory());
/// # assert_eq!(pay(42, 10).await.unwrap(), 10);
/// # }
/// ```
///
/// The function keeps its signature, docs, attributes, visibility and generics. Before
/// the body runs, the key is formatted, the lock acquired (from the process-wide
/// [`default_locker`] unless `locker = ...` names one); after it, the lock is released:
/// on normal return, `return`, `?`, panic, and when the caller drops the future.
///
/// # The key template
///
/// The first argument is a string literal: literal text and `<...>` placeholders, each
/// formatted with `Display`:
///
/// - `<order_id>`: an argument (also one bound by a pattern, like `(a, b): (u32, u32)`);
/// - `<user.id>`, `<pair.0>`: a field path from an argument;
/// - `<self.tenant>`: a field of the receiver (methods only);
/// - `<<` writes a literal `<`.
///
/// Every placeholder is checked at compile time: a name that is no argument is an error on
/// the attribute that suggests the closest name, and a value without `Display` is an
/// error naming its type. The lock's Redis key is the locker's prefix plus the formatted
/// name in a hash tag: `lock:{order:42}`.
///
/// # Options
///
/// | option | default | meaning |
/// | --- | --- | --- |
/// | `timeout = 30` | the locker's (30 s) | TTL: seconds (`30`, `0.5`) or a string with a unit (`"250ms"`, `"30s"`, `"2m"`, `"1h"`) |
/// | `auto_renew` / `auto_renew = 10` | off | renew every third of the timeout (or every given interval, shorter than the timeout) while the body runs |
/// | `wait = 5` | 0 | wait up to this long for the holder's release (woken by the release itself); 0 fails at once |
/// | `retry = 5, retry_delay = "200ms"` | off; delay 100 ms | the Python original's policy: retry N times after a fixed delay; excludes `wait` |
/// | `skip` | off | when another instance holds the lock, do not run the body: return `Ok(T::default())`, or `Default::default()` for a non-`Result` function |
/// | `min_hold = 60` | off | after the body, keep the key until at least this long after acquisition (a scheduled job runs once per window even on skewed clocks) |
/// | `fencing` | off | take a fencing token (`lock_runtime::current()?.fencing_token()`) |
/// | `on_lost = abort` | `ignore` | `abort`: if the lock is lost during the body, drop the body and return `LockError::Lost`; `ignore`: the body continues and can check [`current`] |
/// | `locker = expr` | [`default_locker`] | the [`Locker`] to use: `self.locker`, `state.locker`, a `&Locker` argument... |
/// | `crate = "path"` | `::lock_runtime` | where `lock_runtime` is, if renamed |
///
/// Unknown, duplicate and contradictory options are compile errors that list the valid
/// ones: `timeout = 0`, an `auto_renew` interval not shorter than `timeout`, `min_hold`
/// beyond `timeout` without `auto_renew`, `retry_delay` without `retry`, `retry` with `wait`.
///
/// # Errors and return types
///
/// Without `skip`, the function must return `Result<T, E>` (any type whose name ends in
/// `Result`) with `E: From<`[`LockError`]`>`: contention is `Err(LockError::Busy)` or
/// `Err(LockError::WaitTimeout)`, a Redis failure `Err(LockError::Connect/Backend)`, a
/// missing default locker `Err(LockError::NotConfigured)`.
///
/// With `skip`, contention skips the body. Redis failures are still returned as errors by
/// a function returning `Result`; a function returning anything else (`()`, `Option<T>`,
/// `bool`) logs them with `tracing::error!` and skips the body.
///
/// ```
/// # use lock_runtime::{distributed_lock, LockError, Locker};
/// # use std::sync::atomic::{AtomicU32, Ordering};
/// static RUNS: AtomicU32 = AtomicU32::new(0);
///
/// // A scheduled job: the first instance runs it, the others skip, and nobody runs it
/// // again within 60 s of the start.
/// #[distributed_lock("job:daily-report", timeout = 300, auto_renew, skip, min_hold = 60, locker = locker)]
/// async fn daily_report(locker: &Locker) {
///     RUNS.fetch_add(1, Ordering::SeqCst);
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let locker = Locker::memory();
/// daily_report(&locker).await;
/// daily_report(&locker).await; // within the window: skipped
/// assert_eq!(RUNS.load(Ordering::SeqCst), 1);
/// # }
/// ```
///
/// Methods name their locker and key parts through `self`:
///
/// ```
/// # use lock_runtime::{distributed_lock, LockError, Locker};
/// struct Accounts { tenant: String, locker: Locker }
/// struct User { id: u64 }
///
/// impl Accounts {
///     #[distributed_lock("tenant:<self.tenant>:user:<user.id>", timeout = "500ms", wait = 5, fencing, locker = self.locker)]
///     async fn update(&self, user: &User) -> Result<u64, LockError> {
///         let lock = lock_runtime::current().expect("under the lock");
///         assert_eq!(lock.name(), format!("tenant:{}:user:{}", self.tenant, user.id));
///         Ok(lock.fencing_token().unwrap())
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), LockError> {
/// let accounts = Accounts { tenant: "acme".into(), locker: Locker::memory() };
/// assert_eq!(accounts.update(&User { id: 7 }).await?, 1);
/// # Ok(()) }
/// ```
///
/// The generated future is `Send` whenever the body's is. Put `#[distributed_lock]` above
/// attributes that turn the function into something other than an `async fn`, such as
/// `#[tokio::test]`.
#[cfg(feature = "macros")]
pub use lock_macros::distributed_lock;

pub use current::current;
pub use default::{default_locker, set_default};
pub use error::LockError;
pub use guard::{LockGuard, LockHandle, Released};
pub use locker::{DEFAULT_PREFIX, DEFAULT_REDIS_URL, Locker, LockerBuilder};
pub use request::LockRequest;
