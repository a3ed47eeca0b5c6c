//! Distributed locks for async Rust, on Redis.
//!
//! Several instances of a tokio service need one instance at a time to pay an order,
//! decrement stock or run the nightly job. A lock is a Redis key holding a random owner
//! token with an expiry; every change to it checks the token on the server.
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
//! // Another owner (another instance, or here another task) is refused at once...
//! let elsewhere = tokio::spawn(locker.lock("order:42").acquire()).await.unwrap();
//! assert!(matches!(elsewhere, Err(LockError::Busy { .. })));
//! // ...while this task, which holds it, would wait for itself: it is told so at once.
//! let again = locker.lock("order:42").acquire().await;
//! assert!(matches!(again, Err(LockError::Reentrant { .. })));
//! // ...and the owner releases it when done (dropping the guard would, too).
//! assert!(guard.release().await?);
//! # Ok(()) }
//! ```
//!
//! The same request can wait ([`wait`](LockRequest::wait)), renew itself
//! ([`auto_renew`](LockRequest::auto_renew)), take a fencing token
//! ([`fencing`](LockRequest::fencing)), wait for replicas
//! ([`durable`](LockRequest::durable)) or run a closure under the lock
//! ([`run`](LockRequest::run)); the [`distributed_lock`][distributed-lock]
//! attribute expands into it.
//!
//! Beyond a mutex, on the same backends (Redlock refuses the first two, saying why):
//! - [`Locker::semaphore`]: at most N owners at once, each with a lease of its own;
//! - [`Locker::leader`]: leader election, with an epoch that grows with every leader, a
//!   signal when the leadership is lost, and a [`LeaderWatch`] for followers;
//! - [`LockRequest::reentrant`]: a task that asks for a lock it already holds fails at
//!   once with [`LockError::Reentrant`] instead of waiting for itself, or shares it.
//!
//! # Guarantees, and what each assumes
//!
//! - **One owner at a time.** A lock is taken with `SET NX PX` and a random owner token;
//!   release, extend and renewal check the token in a Lua script, so nobody releases or
//!   extends another owner's lock. *Assumes* the server keeps the key until it expires:
//!   no restart without persistence, no eviction, no failover before the key reached the
//!   replica ([Choosing a backend](#choosing-a-backend)).
//! - **The lease never outlives the key.** [`LockHandle::remaining`] counts on this
//!   process's monotonic clock from when the request was *sent*, less Redlock's drift
//!   margin. *Assumes* the server's clock runs at the rate of this process's and does not
//!   step forward (Redis expires keys on its wall clock). A process that stalls (a VM
//!   pause, swapping) can still act after its lease ended: the crate cannot stop it,
//!   [fencing tokens](#fencing) let the resource refuse it.
//! - **Expiring.** A crashed holder's lock frees itself after its TTL, counted by the
//!   server.
//! - **Loss is reported, never swallowed.** With [`auto_renew`](LockRequest::auto_renew)
//!   the lock is extended every third of its TTL; when a renewal finds the key gone or
//!   taken, or Redis stays unreachable until the lease ends, [`LockHandle::lost`] fires.
//!   *Assumes* the tokio runtime that took the lock keeps running
//!   ([Runtimes and shutdown](#runtimes-and-shutdown)).
//! - **First come, first served.** Requests that [`wait`](LockRequest::wait) queue on the
//!   server in order of arrival; a release hands the lock to the first live waiter and
//!   wakes only that one. Not with Redlock (it has no queue) and not for
//!   [`retry`](LockRequest::retry) (it does not queue). A waiter that crashed holds the
//!   queue up for about two poll intervals (the time a hand-off waits to be claimed);
//!   when that hand-off expires, or a holder's lease runs out without a release, the lock
//!   is free and goes to whoever attempts first, a queued waiter or a newcomer (order is
//!   kept by releases, not by expiries).
//! - **Fenced**, on request: [`LockHandle::fencing_token`] grows strictly with every
//!   fenced acquisition of a lock, under the assumptions of [Fencing](#fencing).
//! - **Cancellation-safe.** Dropping an acquiring future leaves no lock and no queue
//!   entry behind; dropping a [`LockGuard`] releases the lock without blocking. Both spawn
//!   the clean-up on the current runtime: *assumes* it runs long enough for that (see
//!   [`Locker::flush`]); otherwise the key expires with its TTL.
//! - **Bounded.** Each command waits at most the connect timeout (one reconnection; twice
//!   that to ask the sentinels or open a Cluster connection) plus the command timeout;
//!   each wait ends at its deadline.
//!
//! # Contents
//!
//! - [Choosing a backend](#choosing-a-backend): one server with fencing, Sentinel,
//!   Cluster, Redlock, memory; what each promises when servers fail.
//! - [Fencing](#fencing): the exact guarantee of fencing tokens.
//! - [Connecting](#connecting): URLs, TLS, ACL, Sentinel, Cluster, the environment, the
//!   connections a locker opens, supported versions.
//! - [Runtimes and shutdown](#runtimes-and-shutdown).
//! - [Redis data model](#redis-data-model), [Observability](#observability),
//!   [Features](#features).
//! - The [`distributed_lock`][distributed-lock] attribute, and the
//!   [`observability`] page: every span, event and metric.
#![doc = ""]
#![doc = include_str!("backends.md")]
#![doc = ""]
#![doc = include_str!("fencing.md")]
#![doc = ""]
#![doc = include_str!("connecting.md")]
#![doc = ""]
#![doc = include_str!("runtimes.md")]
//!
//! # Redis data model
//!
//! For the lock `order:42` under the prefix `lock:` (a `%` or `}` in a name is
//! percent-encoded; the prefix may not contain braces):
//!
//! | name | type | what | lives |
//! | --- | --- | --- | --- |
//! | `lock:{order:42}` | string | the owner token | the lease (`PX`), renewed by its owner |
//! | `lock:{order:42}:fence` | string | the last fencing token issued | the TTL of the acquisition that issued it (a hand-off's: its claim window) |
//! | `lock:{order:42}:queue` | sorted set | the waiters' owner tokens, scored by arrival (server time, µs) | its longest-lived entry (at most twice as long) |
//! | `lock:{order:42}:waiting` | hash | owner token -> `alive-until-µs:claim-ms:fencing:permits:p\|s:channel` (permits 0 for a lock) | the same |
//! | `lock:{order:42}:released` | channel | Redlock: frees (`PUBLISH`); Cluster: hand-offs (`SPUBLISH`) | subscribed while someone waits |
//! | `lock:{scheduler}:leader` | channel | leader election: `elected <epoch>`, `resigned <epoch>` | subscribed while a watch lives |
//! | `lock:inbox:<uuid>` | channel | one server and Sentinel: hand-offs to one locker's waiters (`<prefix>inbox:<uuid>`) | subscribed once per connection |
//!
//! A semaphore `api:7` has the same names after `lock:{api:7}:sem`, which is a sorted set
//! of owner tokens scored by the end of each one's lease (server ms); it expires with the
//! longest lease.
//!
//! The hash tag is the whole lock name, so all of a lock's keys and its channel share one
//! Redis Cluster slot, and every script touches one slot and only keys passed in `KEYS`.
//! The inbox is under the prefix, so one key pattern and one channel pattern cover
//! everything (see the ACL under [Connecting](#connecting)).
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
//! - `macros` (default): re-exports the [`distributed_lock`][distributed-lock]
//!   attribute.
//! - `metrics`: the metrics of [`observability`], on the `metrics` 0.24 facade.
//! - `testing`: the [`testing`][testing-module] module: private `redis-server`s (one
//!   server, Cluster, Sentinel, TLS) and a `valkey-server`, for tests.
//! - `tls-rustls-ring`: `rediss://` over rustls, with ring as its crypto provider; the
//!   usual choice ([TLS](#tls)).
//! - `tls-rustls-aws-lc-rs`: the same with aws-lc-rs.
//! - `tls-rustls`: `rediss://` over rustls, without a crypto provider: the program
//!   installs one.
//! - `tls-rustls-webpki-roots`: rustls trusting Mozilla's roots compiled in, instead of
//!   the operating system's.
//! - `tls-native-tls`: `rediss://` over native-tls (OpenSSL on Linux).
//!
// Links to items that exist only with a feature: to the item when it exists, else to the
// section that names the feature (so the docs build without warnings either way).
#![cfg_attr(
    feature = "macros",
    doc = "[distributed-lock]: macro@crate::distributed_lock"
)]
#![cfg_attr(not(feature = "macros"), doc = "[distributed-lock]: #features")]
#![cfg_attr(feature = "testing", doc = "[testing-module]: crate::testing")]
#![cfg_attr(not(feature = "testing"), doc = "[testing-module]: #features")]
#![cfg_attr(
    any(feature = "tls-rustls", feature = "tls-native-tls"),
    doc = "[tls-certificates]: LockerBuilder::tls_certificates"
)]
#![cfg_attr(
    not(any(feature = "tls-rustls", feature = "tls-native-tls")),
    doc = "[tls-certificates]: #tls"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The modules, in the order rustfmt sorts them; ARCHITECTURE.md draws their layers (each
// uses only the layers below it).
mod backend;
mod builder;
mod current;
mod driver;
mod env;
mod error;
mod global;
mod guard;
mod key;
mod leader;
mod lease;
mod locker;
mod millis;
mod notify;
mod observe;
mod owners;
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
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
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
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use lock_macros::distributed_lock;

pub use backend::ReleaseReport;
pub use builder::LockerBuilder;
pub use current::current;
pub use error::{LockError, ServerFailure};
pub use global::{default_locker, set_default};
pub use guard::{LockGuard, LockHandle};
pub use leader::{Campaign, LeaderChange, LeaderState, LeaderWatch, Leadership};
pub use locker::Locker;
pub use request::{LockRequest, OnLost};
pub use settings::{DEFAULT_PREFIX, DEFAULT_REDIS_URL};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
