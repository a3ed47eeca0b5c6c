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
//! # Observability
//!
//! Each acquisition is a `lock.acquire` span and each held lock a `lock.hold` span (level
//! `INFO`, target `lock_runtime`), with events for contention, queueing, hand-off, renewal
//! failure, loss and release; with the `metrics` feature, counters, histograms and gauges
//! labelled by the lock's [`label`](LockRequest::label), never its name. The
//! [`observability`] page lists every span, event, field and metric.
//!
//! # Features
//!
//! - `macros` (default): re-exports the `#[distributed_lock]` attribute.
//! - `metrics`: the metrics of [`observability`], on the `metrics` 0.24 facade.
//! - `testing`: the [`testing`] module, a private `redis-server` for tests.
#![cfg_attr(docsrs, feature(doc_cfg))]

// Layers, each using only the ones above it in this list (ARCHITECTURE.md):
mod backend;
mod builder;
mod current;
mod driver;
mod env;
mod error;
mod global;
mod guard;
mod key;
mod lease;
mod locker;
mod millis;
mod notify;
mod observe;
mod queue;
mod renew;
mod request;
mod runtime;
mod scripts;
mod settings;
mod token;
mod url;
mod wait;

#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
pub mod __private;

/// The `redis` crate (1.x, 1.8 or newer) this crate is built on, for
/// [`Locker::from_client`], [`LockerBuilder::client`], TLS certificates and the `source()`
/// of errors: use it rather than your own dependency on `redis`, so the types match.
pub use redis;
#[doc = include_str!("observability.md")]
pub mod observability {}

#[doc = include_str!("distributed_lock.md")]
#[cfg(feature = "macros")]
pub use lock_macros::distributed_lock;

pub use backend::ReleaseReport;
pub use builder::LockerBuilder;
pub use current::current;
pub use error::{LockError, ServerFailure};
pub use global::{default_locker, set_default};
pub use guard::{LockGuard, LockHandle};
pub use locker::Locker;
pub use request::{LockRequest, OnLost};
pub use settings::{DEFAULT_PREFIX, DEFAULT_REDIS_URL};
