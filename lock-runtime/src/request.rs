//! The request builder returned by [`Locker::lock`](crate::Locker::lock).

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::current;
use crate::guard::{LockGuard, LockHandle};
use crate::key::LockKeys;
use crate::lease::{Grant, HeldLock};
use crate::observe::{Acquisition, DEFAULT_LABEL, Label, Outcome, TARGET, ms};
use crate::wait::{Acquire, WaitPolicy, Won};
use crate::{LockError, Locker, millis};

/// A lock request: set the TTL, the wait policy, renewal and fencing, then
/// [`acquire`](Self::acquire), [`try_acquire`](Self::try_acquire) or [`run`](Self::run).
///
/// Defaults come from the [`Locker`]: TTL 30 s, no waiting, no renewal, no fencing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// use lock_runtime::Locker;
///
/// let locker = Locker::memory();
/// let guard = locker
///     .lock("order:42")
///     .ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(2))
///     .fencing()
///     .acquire()
///     .await?;
/// assert!(guard.fencing_token().is_some());
/// assert!(guard.release().await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a lock request does nothing until you call `.acquire().await` (or `try_acquire`, `run`)"]
pub struct LockRequest {
    locker: Locker,
    name: String,
    ttl: Duration,
    policy: WaitPolicy,
    renew: Renew,
    fencing: bool,
    on_lost: OnLost,
    min_hold: Option<Duration>,
    durable: Option<(u32, Duration)>,
    label: Option<Label>,
    /// A semaphore's permits; `None` for a lock.
    permits: Option<u32>,
    /// Share the lock when the current task already holds it.
    reentrant: bool,
}

/// What [`LockRequest::acquire_in`] got.
enum Acquired {
    /// The lock, won by this request.
    Won(LockKeys, Option<Duration>, Won),
    /// The lock the current task already holds (re-entry).
    Held(Arc<HeldLock>),
}

/// [`HeldLock::replicate`], boxed behind `dyn Future` (see `driver::erased`).
fn replicate(
    lock: &HeldLock,
    replicas: u32,
    wait: Duration,
) -> futures_util::future::BoxFuture<'_, Result<(), LockError>> {
    Box::pin(lock.replicate(replicas, wait))
}

/// What [`LockRequest::run`] (and `#[distributed_lock]`) does when the lock is lost while
/// the work runs: its TTL ran out without a successful renewal, or someone deleted or took
/// over the key.
///
/// Either way the loss is logged at `WARN` and visible to the work through its handle
/// ([`LockHandle::lost`], [`LockHandle::is_lost`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnLost {
    /// The work runs to completion and its output is returned (the default). Use it when
    /// stopping half-way is worse than finishing unprotected; the work can watch
    /// [`LockHandle::lost`] itself.
    #[default]
    Ignore,
    /// The work is dropped at its next `.await` once the loss is known, and the result is
    /// [`LockError::Lost`]. Use it when the work must not continue unprotected.
    Abort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renew {
    Off,
    /// Every third of the TTL.
    Default,
    Every(Duration),
}

impl LockRequest {
    pub(crate) fn new(locker: Locker, name: String) -> Self {
        Self {
            ttl: locker.default_ttl(),
            policy: WaitPolicy::Wait(locker.default_wait()),
            locker,
            name,
            renew: Renew::Off,
            fencing: false,
            on_lost: OnLost::Ignore,
            min_hold: None,
            durable: None,
            label: None,
            permits: None,
            reentrant: false,
        }
    }

    /// A request for one of `permits` permits of the semaphore `name`.
    pub(crate) fn semaphore(locker: Locker, name: String, permits: u32) -> Self {
        Self {
            permits: Some(permits),
            ..Self::new(locker, name)
        }
    }

    /// How long the lock lives unless released, extended or renewed (default: the
    /// locker's, 30 s). At least 1 ms.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long to wait for another owner to release the lock (default: the locker's,
    /// zero: fail at once with [`LockError::Busy`]).
    ///
    /// Waiters queue first come, first served: a release hands the lock straight to the
    /// first live waiter and tells only that one (Redis pub/sub: on one server, a channel
    /// per locker; on a Cluster, the lock's sharded channel), so the releaser cannot take
    /// it back first and no waiter starves. On [`Locker::from_connection`] nobody is told:
    /// waiters find the lock handed to them at their next attempt. A waiter that gives up
    /// or is cancelled leaves the queue. A waiter that crashed holds up the queue for
    /// about two poll intervals
    /// ([`LockerBuilder::poll_interval`](crate::LockerBuilder::poll_interval)): the time
    /// a hand-off waits to be claimed. Without a release (the holder crashed), waiters
    /// try again when the holder's TTL runs out. With Redlock there is no queue: every
    /// release wakes every waiter. Replaces an earlier [`retry`](Self::retry).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.policy = WaitPolicy::Wait(wait);
        self
    }

    /// The Python original's policy: try, then retry up to `times` more times, sleeping
    /// `delay` between tries (no pub/sub, no place in the queue: while others wait with
    /// [`wait`](Self::wait), releases go to them). Replaces an earlier [`wait`](Self::wait).
    pub fn retry(mut self, times: u32, delay: Duration) -> Self {
        self.policy = WaitPolicy::Retry { times, delay };
        self
    }

    /// Keeps the lock alive while the guard lives, extending it to its TTL every third
    /// of the TTL. If a renewal finds the lock gone, or Redis stays unreachable until the
    /// lease runs out, the guard's [`lost`](LockHandle::lost) fires.
    pub fn auto_renew(mut self) -> Self {
        if self.renew == Renew::Off {
            self.renew = Renew::Default;
        }
        self
    }

    /// Like [`auto_renew`](Self::auto_renew), renewing every `interval` (must be shorter
    /// than the TTL).
    pub fn renew_every(mut self, interval: Duration) -> Self {
        self.renew = Renew::Every(interval);
        self
    }

    /// Asks for a fencing token ([`LockHandle::fencing_token`]), issued atomically with
    /// the acquisition: on Redis `max(last + 1, server time in µs)`, on the memory backend
    /// a counter. It grows strictly with every fenced acquisition of the lock, under the
    /// assumptions in the crate docs ("Fencing"). Refused by Redlock with a
    /// [`LockError::Config`].
    pub fn fencing(mut self) -> Self {
        self.fencing = true;
        self
    }

    /// What [`run`](Self::run) does when the lock is lost while the work runs (default
    /// [`OnLost::Ignore`]). Has no effect on [`acquire`](Self::acquire).
    pub fn on_lost(mut self, on_lost: OnLost) -> Self {
        self.on_lost = on_lost;
        self
    }

    /// After [`run`](Self::run)'s work, keep the lock until at least `min_hold` after it
    /// was acquired (see [`LockGuard::release_after`]): a scheduled job then runs once per
    /// window even when instances' clocks are skewed. Must not exceed the TTL unless the
    /// lock is auto-renewed. Has no effect on [`acquire`](Self::acquire).
    pub fn min_hold(mut self, min_hold: Duration) -> Self {
        self.min_hold = Some(min_hold);
        self
    }

    /// Returns the guard only once `replicas` replicas of the server have the lock,
    /// waiting at most `wait` for them (`WAIT`); otherwise releases it again and fails with
    /// [`LockError::NotReplicated`]. A lock that a master wrote but did not pass on before
    /// failing over is lost in the failover; a durable lock is not, provided the replica
    /// promoted is one that confirmed it (Sentinel and Cluster prefer the replica with the
    /// most replicated data, but do not promise it).
    ///
    /// One round trip more per acquire, on a connection of its own (`WAIT` blocks the
    /// connection it runs on; with [`Locker::from_connection`], the program's connection
    /// is the only one, and `WAIT` blocks it). Refused with a [`LockError::Config`] by Redlock (its
    /// durability is the quorum) and the memory backend.
    pub fn durable(mut self, replicas: u32, wait: Duration) -> Self {
        self.durable = Some((replicas, wait));
        self
    }

    /// The label of this request's metrics (feature `metrics`) and spans, standing for
    /// the lock's kind: its name's template (`"order:<id>"`, which is what
    /// `#[distributed_lock]` passes) or any fixed name. Default: `"unlabelled"`.
    ///
    /// Metrics are labelled with it and never with the lock's name: names take unbounded
    /// values (`order:1`, `order:2`, ...), and every value of a label is a time series to
    /// the metrics backend. So a label must come from a small, fixed set; never build
    /// one from a request's data. See [`observability`](crate::observability).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
    /// let locker = lock_runtime::Locker::memory();
    /// let order_id = 42;
    /// let guard = locker.lock(format!("order:{order_id}")).label("order:<id>").acquire().await?;
    /// # drop(guard); Ok(()) }
    /// ```
    pub fn label(mut self, label: impl Into<Cow<'static, str>>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Re-entry: when the current task already holds this lock (taken through this
    /// locker or a clone of it, and neither released nor lost), the request returns at
    /// once a guard that shares it instead of waiting for itself: the same key, owner
    /// token, fencing token and lease. That guard releases nothing (its `release` says
    /// whether the lock is still held, and the outer guard releases it), and it is lost
    /// when the outer guard releases the lock; the request's own TTL, renewal and wait do
    /// not apply, and asking for `fencing` (when the held lock has no token) or `durable`
    /// is a [`LockError::Config`]. Without `reentrant`, such a request fails at once with
    /// [`LockError::Reentrant`].
    ///
    /// "The current task" is the tokio task that acquired the lock (`tokio::task::id`),
    /// or, outside any task (the body of `#[tokio::main]`, a `block_on`), the thread
    /// that drives it. So a task spawned with `tokio::spawn` is another owner (it waits
    /// for the lock like any other), while branches of one task (`join!`, `select!`)
    /// are the same owner; and a lock stays its acquiring task's until released or
    /// lost, even if its guard moves to another task. Only this process knows: another
    /// process (or another locker on the same server) is another owner. Refused with a
    /// [`LockError::Config`] for a semaphore, where each acquire is one more permit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
    /// use lock_runtime::{LockError, Locker};
    ///
    /// let locker = Locker::memory();
    /// let outer = locker.lock("account:7").acquire().await?;
    /// // Asking again in the same task fails at once rather than waiting for itself ...
    /// let again = locker.lock("account:7").wait(std::time::Duration::from_secs(30)).acquire().await;
    /// assert!(matches!(again, Err(LockError::Reentrant { .. })));
    /// // ... unless re-entry is asked for: the same lock, released by `outer` only.
    /// let inner = locker.lock("account:7").reentrant().acquire().await?;
    /// assert_eq!(inner.token(), outer.token());
    /// assert!(inner.release().await?);
    /// assert!(locker.is_locked("account:7").await?);
    /// assert!(outer.release().await?);
    /// # Ok(()) }
    /// ```
    pub fn reentrant(mut self) -> Self {
        self.reentrant = true;
        self
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn config_error(&self, problem: impl std::fmt::Display) -> LockError {
        LockError::Config(format!("lock `{}`: {problem}", self.name))
    }

    fn renew_interval(&self) -> Result<Option<Duration>, LockError> {
        let interval = match self.renew {
            Renew::Off => return Ok(None),
            Renew::Default => self.ttl / 3,
            Renew::Every(interval) => interval,
        };
        if interval.is_zero() {
            return Err(self.config_error("the renew interval must be positive"));
        }
        if interval >= self.ttl {
            return Err(self.config_error(format_args!(
                "the renew interval ({interval:?}) is not shorter than the TTL ({:?})",
                self.ttl
            )));
        }
        Ok(Some(interval))
    }

    /// Checks every input where it enters: no later step can fail on it or overflow.
    fn validate(&self) -> Result<(LockKeys, Option<Duration>), LockError> {
        let backend = self.locker.backend();
        let keys = match self.permits {
            None => LockKeys::new(self.locker.prefix(), &self.name)?,
            Some(permits) => {
                if let Some(why) = backend.semaphore_refusal() {
                    return Err(LockError::Config(format!(
                        "semaphore `{}`: {why}",
                        self.name
                    )));
                }
                if self.reentrant {
                    return Err(LockError::Config(format!(
                        "semaphore `{}`: re-entry is for locks; each acquire of a semaphore \
                         takes one more permit",
                        self.name
                    )));
                }
                LockKeys::semaphore(self.locker.prefix(), &self.name, permits)?
            }
        };
        let one_ms = Duration::from_millis(1);
        millis::check("the TTL", self.ttl, one_ms).map_err(|problem| self.config_error(problem))?;
        if let Some(problem) = backend.refuse_ttl(self.ttl) {
            return Err(self.config_error(problem));
        }
        match self.policy {
            WaitPolicy::Wait(wait) => millis::check("the wait", wait, Duration::ZERO),
            WaitPolicy::Retry { delay, .. } => {
                millis::check("the retry delay", delay, Duration::ZERO)
            }
        }
        .map_err(|problem| self.config_error(problem))?;
        if let Some(why) = self.fencing.then(|| backend.fencing_refusal()).flatten() {
            return Err(self.config_error(why));
        }
        if let Some((replicas, wait)) = self.durable {
            if let Some(why) = backend.durable_refusal() {
                return Err(self.config_error(why));
            }
            if replicas == 0 {
                return Err(self.config_error("a durable acquire waits for at least 1 replica"));
            }
            millis::check("the durable wait", wait, Duration::from_millis(1))
                .map_err(|problem| self.config_error(problem))?;
        }
        let renew_every = self.renew_interval()?;
        if let Some(min_hold) = self.min_hold {
            millis::check("min_hold", min_hold, Duration::ZERO)
                .map_err(|problem| self.config_error(problem))?;
            if renew_every.is_none() && min_hold > self.ttl {
                return Err(self.config_error(format_args!(
                    "min_hold ({min_hold:?}) is longer than the TTL ({:?}) of a lock that is \
                     not renewed",
                    self.ttl
                )));
            }
        }
        Ok((keys, renew_every))
    }

    /// Acquires the lock, waiting per the request's policy.
    ///
    /// Errors: [`LockError::Busy`] (held, no wait), [`LockError::WaitTimeout`] (still held
    /// when the wait or retries ran out), [`LockError::Config`] (empty name, zero or huge
    /// TTL, renew interval not below the TTL, ...), [`LockError::Connect`] /
    /// [`LockError::Auth`] / [`LockError::Backend`] (Redis unreachable, refusing or
    /// failing).
    ///
    /// Cancellation: dropping the future at any point leaves no lock behind. If it is
    /// dropped while an attempt is in flight (the server may have set the key) or while it
    /// waits in the lock's queue, a release of this request's token is spawned; it also
    /// takes the request out of the queue and passes on a lock handed to it meanwhile.
    ///
    /// Observability: a `lock.acquire` span covers the acquisition and records its
    /// outcome; a granted lock's `lock.hold` span starts here, a child of the current
    /// span, and lasts until it is released or lost.
    pub async fn acquire(mut self) -> Result<LockGuard, LockError> {
        let label = self.label.take().unwrap_or(Cow::Borrowed(DEFAULT_LABEL));
        let observed = Acquisition::start(&self.name, &label, &self.policy);
        let span = observed.span().clone();
        let acquired = self.acquire_in(&observed).instrument(span.clone()).await;
        let outcome = acquired
            .as_ref()
            .map_or_else(Outcome::of_error, |_| Outcome::Acquired);
        let (meter, waited) = observed.finish(outcome);
        let (keys, renew_every, won) = match acquired {
            Ok(Acquired::Won(keys, renew_every, won)) => (keys, renew_every, won),
            Ok(Acquired::Held(lock)) => {
                tracing::debug!(
                    name: "lock.reentered",
                    target: TARGET,
                    parent: &span,
                    {
                        lock.fencing_token = lock.fence(),
                    },
                    "re-entered a lock this task holds"
                );
                return Ok(LockGuard::nested(lock));
            }
            Err(error) => {
                if outcome == Outcome::Error {
                    tracing::debug!(
                        name: "lock.failed",
                        target: TARGET,
                        parent: &span,
                        {
                            error = %error,
                        },
                        "lock acquisition failed"
                    );
                }
                return Err(error);
            }
        };
        let lock = HeldLock::granted(
            self.locker.backend().clone(),
            Grant {
                keys,
                token: won.token,
                fence: won.fence,
                ttl: self.ttl,
                acquired_at: won.acquired_at,
                valid_until: won.valid_until,
                label,
                meter,
            },
        );
        // A lock (not a semaphore's permit) is its task's, for re-entry.
        if lock.keys().permits().is_none() {
            self.locker.owners().register(&lock);
        }
        let renewer = self.locker.renewer();
        match (won.needs_claim, renew_every) {
            // Handed over by a release: claim it for its TTL now, in the background.
            (true, every) => renewer.register(&lock, won.acquired_at, every),
            (false, Some(every)) => renewer.register(&lock, won.sent_at + every, Some(every)),
            (false, None) => {}
        }
        tracing::debug!(
            name: "lock.acquired",
            target: TARGET,
            parent: &span,
            {
                lock.fencing_token = lock.fence(),
                lock.waited_ms = ms(waited),
            },
            "lock acquired"
        );
        let guard = LockGuard::new(lock.clone(), renew_every.is_some());
        // Boxed: a rare step whose futures would deepen every acquire's.
        if let Some((replicas, wait)) = self.durable
            && let Err(error) = replicate(&lock, replicas, wait).await
        {
            // Cancelled meanwhile: the guard's drop releases it instead.
            let _ = guard.release().await;
            return Err(error);
        }
        Ok(guard)
    }

    /// Checks the request and acquires the lock per its policy (or finds that this task
    /// holds it already).
    async fn acquire_in(&self, observed: &Acquisition) -> Result<Acquired, LockError> {
        let (keys, renew_every) = self.validate()?;
        if keys.permits().is_none()
            && let Some(held) = self.locker.owners().held_here(&keys)
        {
            if self.reentrant {
                // Sharing cannot give the held lock what it was not taken with.
                if self.fencing && held.fence().is_none() {
                    return Err(self.config_error(
                        "re-entry shares the lock this task holds, which has no fencing token: \
                         ask for `fencing` where the lock is first taken",
                    ));
                }
                if self.durable.is_some() {
                    return Err(self.config_error(
                        "re-entry shares the lock this task holds and cannot make it durable: \
                         ask for `durable` where the lock is first taken",
                    ));
                }
                return Ok(Acquired::Held(held));
            }
            return Err(LockError::Reentrant {
                name: self.name.clone(),
            });
        }
        let token = crate::token::next();
        let won = Acquire {
            backend: self.locker.backend(),
            keys: &keys,
            token: &token,
            ttl: self.ttl,
            fencing: self.fencing,
            policy: self.policy,
            poll_interval: self.locker.poll_interval(),
            observed,
        }
        .run()
        .await?;
        Ok(Acquired::Won(keys, renew_every, won))
    }

    /// Like [`acquire`](Self::acquire), but contention is `Ok(None)`: `None` when another
    /// owner held the lock throughout the request's wait policy (with the default zero
    /// wait: when it is held right now). Other errors stay errors.
    ///
    /// Cancellation: as for [`acquire`](Self::acquire).
    pub async fn try_acquire(self) -> Result<Option<LockGuard>, LockError> {
        match self.acquire().await {
            Ok(guard) => Ok(Some(guard)),
            Err(error) if error.is_contention() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Acquires the lock, runs `work` under it, and releases it, on every exit path:
    /// normal return, and (through the guard's drop) panic and cancellation. This is the
    /// one acquire-run-release path: `#[distributed_lock]` expands into it.
    ///
    /// While `work` runs, the lock is [`current()`](crate::current) for it (and for
    /// everything it awaits in the same task). After it, the lock is released, or kept
    /// until [`min_hold`](Self::min_hold) after the acquisition.
    ///
    /// If the lock is lost while the work runs, [`on_lost`](Self::on_lost) decides: by
    /// default ([`OnLost::Ignore`]) the work finishes and its output is returned, and the
    /// loss is logged; with [`OnLost::Abort`] the work is dropped and the result is
    /// [`LockError::Lost`]. A release that fails after the work finished is logged too (the
    /// key then expires with its TTL): the work's output is returned either way.
    ///
    /// Errors: those of [`acquire`](Self::acquire), and [`LockError::Lost`] with
    /// [`OnLost::Abort`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
    /// let locker = lock_runtime::Locker::memory();
    /// let total = locker
    ///     .lock("report:daily")
    ///     .auto_renew()
    ///     .run(|lock| async move {
    ///         assert!(!lock.is_lost());
    ///         assert_eq!(lock_runtime::current().unwrap().name(), "report:daily");
    ///         40 + 2
    ///     })
    ///     .await?;
    /// assert_eq!(total, 42);
    /// assert!(!locker.is_locked("report:daily").await?);
    /// # Ok(()) }
    /// ```
    ///
    /// Cancellation: dropping the future releases the lock (through the guard's drop).
    pub async fn run<F, Fut, T>(self, work: F) -> Result<T, LockError>
    where
        F: FnOnce(LockHandle) -> Fut,
        Fut: Future<Output = T>,
    {
        let (on_lost, min_hold) = (self.on_lost, self.min_hold);
        let guard = self.acquire().await?;
        let handle = guard.handle();
        let hold = handle.span().clone();
        let work = work(handle.clone());
        let output = match on_lost {
            OnLost::Ignore => Some(current::scope(handle.clone(), work).instrument(hold).await),
            OnLost::Abort => {
                let lost = handle.lost();
                current::scope(handle.clone(), async move {
                    tokio::select! {
                        biased;
                        () = lost => None,
                        output = work => Some(output),
                    }
                })
                .instrument(hold)
                .await
            }
        };
        let Some(output) = output else {
            drop(guard);
            return Err(LockError::Lost {
                name: handle.name().to_owned(),
            });
        };
        let released = match min_hold {
            Some(min_hold) => guard.release_after(min_hold).await,
            None => guard.release().await,
        };
        // A lock found lost at release is told by its lease; a failed release here.
        if let Err(error) = released {
            tracing::warn!(
                name: "lock.release_failed",
                target: TARGET,
                parent: handle.span(),
                {
                    lock.name = handle.name(),
                    error = %error,
                },
                "release after the work failed; the key expires with its TTL"
            );
        }
        Ok(output)
    }
}
