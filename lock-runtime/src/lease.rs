//! The lease of a held lock: the one owner of its state and of every transition.
//!
//! ```text
//!            renewed / extended                     release answered
//!              +--------+        release begins         (owned)
//!              v        |     +-----------------> Releasing ----------> Released
//!   granted -> Held ----+-----+                      |
//!              |                                     | release answered (not owned)
//!              | renewal or extend finds another     v
//!              | owner; lease runs out  ---------->  Lost
//! ```
//!
//! The lease counts on this process's monotonic clock from when the request that granted
//! or extended it was *sent*, less the backend's clock-drift margin, so it never outlives
//! the key. Renewals and extends in flight are counted on the lease: a release waits for
//! them to land first, so a late one cannot lengthen a key that `release_after` just
//! shortened; and none starts once the release began.
//! Only this module changes a lease; the guard, the renewal task and the request read it.
//!
//! Being the one place that moves a lock between states, it is also the one that tells:
//! each hold is a `lock.hold` span, from the grant to the release or loss, and its end
//! (released and how, or lost and why) is told once, with the hold's metrics
//! (`observability.md`).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;
use tracing::Span;

use crate::LockError;
use crate::backend::{Backend, ExtendMode, ReleaseReport};
use crate::key::LockKeys;
use crate::observe::{self, Label, Lost, Meter, Release, Renewal, TARGET, ms};

/// Where a held lock stands, as far as this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Held until `valid_until` unless renewed or extended.
    Held,
    /// Its owner is releasing it (the release may have been cancelled and retried).
    Releasing,
    /// Known lost: an owner check failed, or the lease ran out.
    Lost,
    /// Given up by its owner.
    Released,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    valid_until: Instant,
    state: State,
    /// Renewals and extends of this lock in flight (a release waits for them to land).
    in_flight: u32,
    /// Successful renewals so far.
    renewals: u32,
    /// Renewals that failed since the last one that did not.
    failures: u32,
    /// Every guard and handle is gone (the lock was given up, not lost).
    gone: bool,
}

/// The lease, shared with the [`HeldLock::lost`] futures (which must not keep the lock
/// alive), and the wake-up of those waiting for it to change. Like a `watch` channel, for
/// a fraction of its size (this is most of a held lock's memory) and its wake-ups (one
/// `Notify`, not nine).
#[derive(Debug, Clone)]
struct LeaseCell(Arc<(Mutex<Lease>, Notify)>);

impl LeaseCell {
    fn new(lease: Lease) -> Self {
        Self(Arc::new((Mutex::new(lease), Notify::new())))
    }

    /// The lease, locked (copy it out: never hold it across a call into this module).
    fn borrow(&self) -> MutexGuard<'_, Lease> {
        self.0.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the lease; wakes the waiters when `modify` says it changed what they wait
    /// for. Returns that.
    fn send_if_modified(&self, modify: impl FnOnce(&mut Lease) -> bool) -> bool {
        let changed = modify(&mut self.borrow());
        if changed {
            self.0.1.notify_waiters();
        }
        changed
    }

    /// Changes the lease and wakes the waiters.
    fn send_modify(&self, modify: impl FnOnce(&mut Lease)) {
        self.send_if_modified(|lease| {
            modify(lease);
            true
        });
    }

    /// Completes at the next change that wakes the waiters (once enabled or first polled).
    fn changed(&self) -> Notified<'_> {
        self.0.1.notified()
    }

    /// Waits until `done` holds of the lease.
    async fn wait_for(&self, done: impl Fn(&Lease) -> bool) {
        loop {
            let mut changed = std::pin::pin!(self.changed());
            changed.as_mut().enable();
            if done(&self.borrow()) {
                return;
            }
            changed.await;
        }
    }
}

/// How a hold ended.
#[derive(Debug, Clone, Copy)]
enum End {
    Released(Release),
    Lost(Lost),
}

/// Everything a guard, its handles and the renewal task share about one held lock.
pub(crate) struct HeldLock {
    backend: Arc<Backend>,
    keys: LockKeys,
    token: String,
    fence: Option<u64>,
    ttl: Duration,
    acquired_at: Instant,
    lease: LeaseCell,
    /// The `lock.hold` span.
    span: Span,
    meter: Meter,
    /// Its guard was dropped (its release is spawned): no longer its task's to re-enter.
    given_up: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lease = *self.lease.borrow();
        f.debug_struct("HeldLock")
            .field("name", &self.keys.lock_name())
            .field("fencing_token", &self.fence)
            .field("ttl", &self.ttl)
            .field("state", &lease.state)
            .finish_non_exhaustive()
    }
}

/// What a granted acquisition hands to [`HeldLock::granted`].
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) keys: LockKeys,
    pub(crate) token: String,
    pub(crate) fence: Option<u64>,
    pub(crate) ttl: Duration,
    /// When the request that won was sent.
    pub(crate) acquired_at: Instant,
    /// Until when the lock surely is held (already less the drift margin).
    pub(crate) valid_until: Instant,
    /// The request's metrics label, and its instruments.
    pub(crate) label: Label,
    pub(crate) meter: Meter,
}

impl HeldLock {
    /// A held lock; its `lock.hold` span starts here, a child of the current span.
    pub(crate) fn granted(backend: Arc<Backend>, grant: Grant) -> Arc<Self> {
        let lease = LeaseCell::new(Lease {
            valid_until: grant.valid_until,
            state: State::Held,
            in_flight: 0,
            renewals: 0,
            failures: 0,
            gone: false,
        });
        let span = tracing::info_span!(
            target: TARGET,
            "lock.hold",
            lock.name = grant.keys.lock_name(),
            lock.label = &*grant.label,
            lock.fencing_token = grant.fence,
            lock.ttl_ms = ms(grant.ttl),
            lock.held_ms = tracing::field::Empty,
            lock.renewals = tracing::field::Empty,
            lock.lost = tracing::field::Empty,
            lock.release = tracing::field::Empty,
        );
        grant.meter.held(1.0);
        Arc::new(Self {
            backend,
            keys: grant.keys,
            token: grant.token,
            fence: grant.fence,
            ttl: grant.ttl,
            acquired_at: grant.acquired_at,
            lease,
            span,
            meter: grant.meter,
            given_up: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The `lock.hold` span.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    pub(crate) fn keys(&self) -> &LockKeys {
        &self.keys
    }

    pub(crate) fn name(&self) -> &str {
        self.keys.lock_name()
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn fence(&self) -> Option<u64> {
        self.fence
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    pub(crate) fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    pub(crate) fn state(&self) -> State {
        self.lease.borrow().state
    }

    /// How long the lock is surely held; zero unless held.
    pub(crate) fn remaining(&self) -> Duration {
        let lease = *self.lease.borrow();
        match lease.state {
            State::Held => lease.valid_until.saturating_duration_since(Instant::now()),
            State::Releasing | State::Lost | State::Released => Duration::ZERO,
        }
    }

    /// Its owner gave it up (dropped the guard; the release runs in the background).
    pub(crate) fn give_up(&self) {
        self.given_up
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether its owner gave it up (see [`give_up`](Self::give_up)).
    pub(crate) fn given_up(&self) -> bool {
        self.given_up.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Known lost: marked lost, or held with the lease run out.
    pub(crate) fn is_lost(&self) -> bool {
        let lease = *self.lease.borrow();
        match lease.state {
            State::Lost => true,
            State::Held => Instant::now() >= lease.valid_until,
            State::Releasing | State::Released => false,
        }
    }

    /// Completes when the lock is known lost; never once it was released by its owner,
    /// unless `shared`: for a re-entry, which shares a lock another guard releases, that
    /// release ends the lock too.
    pub(crate) fn lost(&self, shared: bool) -> impl Future<Output = ()> + Send + 'static {
        let lease = self.lease.clone();
        async move {
            loop {
                let mut changed = std::pin::pin!(lease.changed());
                changed.as_mut().enable();
                let current = *lease.borrow();
                match current.state {
                    State::Lost => return,
                    State::Releasing | State::Released if shared => return,
                    // Every handle is gone: the lock was given up, not lost.
                    _ if current.gone => std::future::pending::<()>().await,
                    State::Released => std::future::pending::<()>().await,
                    State::Held | State::Releasing => {}
                }
                let expiry = (current.state == State::Held).then_some(current.valid_until);
                tokio::select! {
                    () = changed => {}
                    () = sleep_until(expiry) => {
                        let now = *lease.borrow();
                        if now.state == State::Held && now.valid_until <= Instant::now() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Marks the lease lost (once, and only while held) and tells.
    fn mark_lost(&self, reason: Lost) {
        let changed = self.lease.send_if_modified(|lease| {
            let held = lease.state == State::Held;
            if held {
                lease.state = State::Lost;
            }
            held
        });
        if changed {
            self.ended(End::Lost(reason));
        }
    }

    /// Tells how the hold ended: called once per lock, on its move to `Lost` or
    /// `Released` (or, never settled, when it is dropped).
    fn ended(&self, end: End) {
        let held = self.acquired_at.elapsed();
        let renewals = self.lease.borrow().renewals;
        let span = &self.span;
        let release = match end {
            End::Released(how) => Some(how.as_str()),
            End::Lost(_) => None,
        };
        observe::record(
            span,
            [
                ("lock.held_ms", &ms(held)),
                ("lock.renewals", &renewals),
                ("lock.lost", &release.is_none()),
                ("lock.release", &release),
            ],
        );
        match end {
            End::Released(how) => {
                self.meter.hold_ended(held, None);
                tracing::debug!(
                    name: "lock.released",
                    target: TARGET,
                    parent: span,
                    {
                        lock.release = how.as_str(),
                        lock.held_ms = ms(held),
                    },
                    "lock released"
                );
            }
            End::Lost(reason) => {
                self.meter.hold_ended(held, Some(reason));
                tracing::warn!(
                    name: "lock.lost",
                    target: TARGET,
                    parent: span,
                    {
                        lock.name = self.name(),
                        lock.reason = reason.as_str(),
                        lock.held_ms = ms(held),
                    },
                    "distributed lock lost: {reason}"
                );
            }
        }
    }

    /// The lease was extended or renewed by a request sent at `sent_at` that found `left`.
    fn extended(&self, sent_at: Instant, left: Duration) {
        let valid_until = sent_at + left.saturating_sub(self.backend.drift(left));
        self.lease.send_if_modified(|lease| {
            let longer = lease.state == State::Held && valid_until > lease.valid_until;
            if longer {
                lease.valid_until = valid_until;
            }
            longer
        });
    }

    /// Adds `by` to the lock's expiry on the server, if this owner still holds it.
    /// Refused without a server call once the lock was released or lost.
    pub(crate) async fn extend(&self, by: Duration) -> Result<(), LockError> {
        match self.begin(false) {
            State::Held => {}
            State::Lost => {
                return Err(LockError::Lost {
                    name: self.name().to_owned(),
                });
            }
            State::Releasing | State::Released => {
                return Err(LockError::NotHeld {
                    name: self.name().to_owned(),
                });
            }
        }
        let landed = Landed(self);
        let sent_at = Instant::now();
        let answer = self
            .backend
            .extend(&self.keys, &self.token, by, ExtendMode::Add)
            .await;
        drop(landed);
        match answer? {
            Some(left) => {
                self.extended(sent_at, left);
                Ok(())
            }
            None => {
                self.mark_lost(Lost::ExtendRefused);
                Err(LockError::Lost {
                    name: self.name().to_owned(),
                })
            }
        }
    }

    /// Waits until `replicas` replicas have the lock (at most `wait`): a durable acquire.
    pub(crate) async fn replicate(&self, replicas: u32, wait: Duration) -> Result<(), LockError> {
        if self.begin(false) != State::Held {
            return Err(LockError::Lost {
                name: self.name().to_owned(),
            });
        }
        let landed = Landed(self);
        let sent_at = Instant::now();
        let answer = self
            .backend
            .replicate(&self.keys, &self.token, self.ttl, replicas, wait)
            .await;
        drop(landed);
        match answer? {
            (Some(left), acknowledged) => {
                self.extended(sent_at, left);
                if acknowledged >= replicas {
                    return Ok(());
                }
                Err(LockError::NotReplicated {
                    name: self.name().to_owned(),
                    acknowledged,
                    needed: replicas,
                })
            }
            (None, _) => {
                self.mark_lost(Lost::ExtendRefused);
                Err(LockError::Lost {
                    name: self.name().to_owned(),
                })
            }
        }
    }

    /// Counts an operation in flight if the lock is held (for a renewal: and its lease has
    /// not run out, else it reports `Lost`); returns the state it found.
    fn begin(&self, renewal: bool) -> State {
        let now = Instant::now();
        let mut found = State::Held;
        self.lease.send_if_modified(|lease| {
            found = lease.state;
            if lease.state == State::Held {
                if renewal && lease.valid_until <= now {
                    found = State::Lost;
                } else {
                    lease.in_flight += 1;
                }
            }
            false
        });
        found
    }

    /// An operation in flight landed (or never will).
    fn landed(&self) {
        self.lease.send_if_modified(|lease| {
            lease.in_flight = lease.in_flight.saturating_sub(1);
            lease.in_flight == 0
        });
    }

    /// Starts a renewal: counts it in flight, unless the lock is no longer held (or its
    /// lease ran out, which marks it lost). Returns the lease's end to retry until.
    pub(crate) fn renewal_begins(&self) -> Option<Instant> {
        match self.begin(true) {
            State::Held => Some(self.lease.borrow().valid_until),
            State::Lost => {
                self.mark_lost(Lost::LeaseExpired);
                None
            }
            State::Releasing | State::Released => None,
        }
    }

    /// Ends a renewal sent at `sent_at` with the backend's answer. Returns whether to
    /// renew again (held, or the answer was an error worth retrying).
    pub(crate) fn renewal_ends(
        &self,
        sent_at: Instant,
        answer: &Result<Option<Duration>, LockError>,
    ) -> bool {
        let mut failures = 0;
        self.lease.send_modify(|lease| {
            lease.in_flight = lease.in_flight.saturating_sub(1);
            match answer {
                Ok(Some(_)) => {
                    lease.renewals += 1;
                    lease.failures = 0;
                }
                Ok(None) => {}
                Err(_) => {
                    lease.failures += 1;
                    failures = lease.failures;
                }
            }
        });
        match answer {
            Ok(Some(left)) => {
                self.meter.renewal(Renewal::Renewed);
                self.extended(sent_at, *left);
                tracing::trace!(
                    name: "lock.renewed",
                    target: TARGET,
                    parent: &self.span,
                    {
                        lock.remaining_ms = ms(self.remaining()),
                    },
                    "lock renewed"
                );
                self.state() == State::Held
            }
            Ok(None) => {
                self.meter.renewal(Renewal::Refused);
                self.mark_lost(Lost::RenewalRefused);
                false
            }
            Err(error) => {
                self.meter.renewal(Renewal::Failed);
                // Loud once per outage of this lock, quiet for its retries.
                macro_rules! failed {
                    ($level:ident) => {
                        tracing::$level!(
                            name: "lock.renewal_failed",
                            target: TARGET,
                            parent: &self.span,
                            {
                                lock.name = self.name(),
                                lock.failures = failures,
                                lock.remaining_ms = ms(self.remaining()),
                                error = %error,
                            },
                            "lock renewal failed; retrying while the lease lasts"
                        )
                    };
                }
                if failures == 1 {
                    failed!(warn);
                } else {
                    failed!(debug);
                }
                self.state() == State::Held
            }
        }
    }

    /// Clears the in-flight mark of a renewal whose answer will never come (its task was
    /// dropped with its runtime).
    pub(crate) fn renewal_abandoned(&self) {
        self.landed();
    }

    /// Gives the lock up without a server call (the key expires with its TTL); `how`:
    /// kept on purpose, or not released for want of a runtime.
    pub(crate) fn keep(&self, how: Release) {
        self.finish(how);
    }

    fn finish(&self, how: Release) {
        let changed = self.lease.send_if_modified(|lease| {
            let open = matches!(lease.state, State::Held | State::Releasing);
            if open {
                lease.state = State::Released;
            }
            open
        });
        if changed {
            self.ended(End::Released(how));
        }
    }

    /// Moves to `Releasing` and waits (bounded) for a renewal in flight to land. Returns
    /// whether this is the first release attempt (not a retry after a cancelled one).
    async fn begin_release(&self) -> bool {
        let mut first = false;
        self.lease.send_if_modified(|lease| {
            first = lease.state == State::Held;
            if first {
                lease.state = State::Releasing;
            }
            first
        });
        if self.lease.borrow().in_flight > 0 {
            let renewal_landed = self.lease.wait_for(|lease| lease.in_flight == 0);
            // A renewal or extend is bounded by the command timeout; this bound only
            // guards against one that vanished with its runtime mid-flight.
            let _ = tokio::time::timeout(self.backend.command_timeout(), renewal_landed).await;
        }
        first
    }

    /// Deletes the key (or hands it to the next waiter) if this owner still holds it.
    /// A key found gone or taken marks the lease lost and tells, unless an earlier,
    /// cancelled release may have removed it. `how`: asked for, or by a dropped guard.
    pub(crate) async fn release(&self, how: Release) -> Result<ReleaseReport, LockError> {
        let first = self.begin_release().await;
        let report = self.backend.release(&self.keys, &self.token).await;
        match &report {
            Ok(report) if !report.held && first => self.mark_releasing_lost(),
            Ok(_) => self.finish(how),
            // Told by whoever sees the error; the hold ends when the lock is dropped.
            Err(_) => {}
        }
        report
    }

    /// Keeps the key until `left` from now (at least 1 ms: never deletes it), then lets
    /// it expire; reports whether this owner still held it.
    pub(crate) async fn release_after(
        &self,
        left: Duration,
        how: Release,
    ) -> Result<bool, LockError> {
        let first = self.begin_release().await;
        let kept = self
            .backend
            .extend(&self.keys, &self.token, left, ExtendMode::Set)
            .await?;
        if kept.is_some() || !first {
            self.finish(how);
        } else {
            self.mark_releasing_lost();
        }
        Ok(kept.is_some())
    }

    fn mark_releasing_lost(&self) {
        let changed = self.lease.send_if_modified(|lease| {
            let open = matches!(lease.state, State::Held | State::Releasing);
            if open {
                lease.state = State::Lost;
            }
            open
        });
        if changed {
            self.ended(End::Lost(Lost::GoneAtRelease));
        }
    }
}

impl Drop for HeldLock {
    /// A hold that never settled (its release failed, or never ran) ends here.
    fn drop(&mut self) {
        if matches!(self.state(), State::Held | State::Releasing) {
            self.ended(End::Released(Release::Abandoned));
        }
        self.lease.send_modify(|lease| lease.gone = true);
    }
}

/// Marks an operation in flight as landed when dropped (also when cancelled).
struct Landed<'a>(&'a HeldLock);

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        self.0.landed();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
