//! Acquiring per a request's policy: one attempt; waiting in the lock's queue, woken by
//! the release that hands the lock over; or the Python original's fixed retries.
//!
//! # Behavior
//!
//! - A first, plain attempt. Won: done. Busy with no wait: [`LockError::Busy`].
//! - Otherwise the waiter listens for notifications, then makes queued attempts: each
//!   takes the lock if it is free or was handed to it, else keeps its place in the queue.
//! - Between attempts it sleeps until the first of: a hand-off to it (trusted when
//!   [`trust_handoff`](crate::queue::trust_handoff) says so: it returns at once, and the
//!   lock is claimed for its TTL in the background), a free or an interruption of the
//!   notifications (attempt now), the holder's expiry or the poll interval (jittered),
//!   and the deadline ([`LockError::WaitTimeout`]).
//! - Leaving in any way but winning (deadline, error, cancellation) spawns a release of
//!   its token, which takes it out of the queue and passes on a lock handed to it.
//! - Redlock has no queue: every attempt uses a fresh token, waiters hear frees on the
//!   lock's channel, and a missing quorum is retried with jitter until the deadline.
//! - Each step is told inside the request's `lock.acquire` span (`observability.md`):
//!   busy, queued, woken, handed off, no quorum, timed out; the request counts in
//!   `lock.waiters` from its first busy attempt on, when it is to wait.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::LockError;
use crate::backend::{Attempt, Backend, Listener, Remaining, Request};
use crate::key::LockKeys;
use crate::notify::Event;
use crate::observe::{Acquisition, TARGET, ms};
use crate::queue::{Handoff, QueueSpec, trust_handoff};

/// How a request behaves when another owner holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitPolicy {
    /// Wait up to this long, woken by releases (zero: fail at once).
    Wait(Duration),
    /// Try `1 + times` times with `delay` between the tries (no notifications, no queue).
    Retry { times: u32, delay: Duration },
}

/// As the `lock.wait` field shows it: `none`, `wait 2s`, `retry 5 x 200ms`.
impl fmt::Display for WaitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Wait(budget) if budget.is_zero() => f.write_str("none"),
            Self::Wait(budget) => write!(f, "wait {budget:?}"),
            Self::Retry { times, delay } => write!(f, "retry {times} x {delay:?}"),
        }
    }
}

/// An acquisition to carry out.
#[derive(Debug)]
pub(crate) struct Acquire<'a> {
    pub(crate) backend: &'a Arc<Backend>,
    pub(crate) keys: &'a LockKeys,
    /// The request's owner token (Redlock derives one per attempt from it).
    pub(crate) token: &'a str,
    pub(crate) ttl: Duration,
    pub(crate) fencing: bool,
    pub(crate) policy: WaitPolicy,
    /// The longest sleep between attempts when no notification comes.
    pub(crate) poll_interval: Duration,
    /// Its span and metrics.
    pub(crate) observed: &'a Acquisition,
}

/// A successful acquisition.
#[derive(Debug)]
pub(crate) struct Won {
    /// The owner token the lock is held with.
    pub(crate) token: String,
    pub(crate) fence: Option<u64>,
    /// When the winning attempt was sent (renewals are scheduled from here).
    pub(crate) sent_at: Instant,
    /// When the acquisition completed (what `held_for` and `min_hold` count from: no
    /// earlier than the server granted it).
    pub(crate) acquired_at: Instant,
    /// Until when the lock surely is held (less the drift margin).
    pub(crate) valid_until: Instant,
    /// Handed over by a release: held for its claim window only, until a claim (a
    /// renewal) extends it to the TTL.
    pub(crate) needs_claim: bool,
}

/// Releases `token` if dropped while armed: while an attempt that may have taken the lock
/// has no known outcome, or while the waiter is queued.
struct Cleanup<'a> {
    backend: &'a Arc<Backend>,
    keys: &'a LockKeys,
    token: Option<Cow<'a, str>>,
}

impl<'a> Cleanup<'a> {
    fn arm(&mut self, token: Cow<'a, str>) {
        self.token = Some(token);
    }

    fn disarm(&mut self) {
        self.token = None;
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let Some(token) = self.token.take().map(Cow::into_owned) else {
            return;
        };
        let backend = self.backend.clone();
        let keys = self.keys.clone();
        self.backend.tracker().spawn(async move {
            match backend.release(&keys, &token).await {
                Ok(report) => tracing::debug!(
                    name: "lock.cleanup",
                    target: TARGET,
                    {
                        lock.name = keys.lock_name(),
                        lock.passed_on = report.held,
                    },
                    "a given-up or cancelled acquisition left the queue"
                ),
                Err(error) => tracing::debug!(
                    name: "lock.cleanup",
                    target: TARGET,
                    {
                        lock.name = keys.lock_name(),
                        error = %error,
                    },
                    "cleanup of a given-up or cancelled acquisition failed; its key or queue entry expires"
                ),
            }
        });
    }
}

/// The last busy queued attempt: what a hand-off message is judged against.
#[derive(Debug, Clone, Copy)]
struct LastBusy {
    sent_at: Instant,
    at_us: u64,
}

impl LastBusy {
    /// When the release that sent `handoff` ran, on this process's clock: the server's
    /// clock difference since this attempt, from when it was sent. Early by at most the
    /// attempt's round trip; never before the attempt nor after now.
    fn release_time(&self, handoff: &Handoff) -> Instant {
        let since = Duration::from_micros(handoff.at_us.saturating_sub(self.at_us));
        (self.sent_at + since).min(Instant::now())
    }
}

/// Why a waiter's sleep ended.
#[derive(Debug)]
enum Woken {
    /// Its time was up (the poll interval, the holder's expiry or the deadline).
    Timer,
    /// A free or an interruption of the notifications: attempt now.
    Notified(&'static str),
    /// A release handed the lock to it, at this instant (estimated); `Some` when the
    /// message could be trusted as the lock.
    Handoff(Option<Won>, Option<Instant>),
}

impl<'a> Acquire<'a> {
    /// Acquires per the policy.
    pub(crate) async fn run(&self) -> Result<Won, LockError> {
        match self.policy {
            WaitPolicy::Wait(budget) => self.wait(budget).await,
            WaitPolicy::Retry { times, delay } => self.retry(times, delay).await,
        }
    }

    fn won(&self, token: String, fence: Option<u64>, sent_at: Instant) -> Won {
        let lease = self.ttl.saturating_sub(self.backend.drift(self.ttl));
        Won {
            token,
            fence,
            sent_at,
            acquired_at: Instant::now(),
            valid_until: sent_at + lease,
            needs_claim: false,
        }
    }

    /// One attempt (queued with `listener`), cancellation-safe: dropped while in flight,
    /// it releases what it may have set. Leaves `cleanup` armed when queued.
    async fn attempt(
        &self,
        number: u32,
        listener: Option<&Listener>,
        spec: &QueueSpec,
        cleanup: &mut Cleanup<'a>,
    ) -> Result<Result<Won, (Attempt, Instant)>, LockError> {
        let token = self.backend.attempt_token(self.token, number);
        cleanup.arm(token.clone());
        let sent_at = Instant::now();
        let request = Request {
            keys: self.keys,
            token: &token,
            ttl: self.ttl,
            fencing: self.fencing,
        };
        let attempt = match listener.filter(|_| self.backend.queues()) {
            Some(listener) => self.backend.acquire_queued(request, spec, listener).await,
            None => self.backend.acquire(request).await,
        };
        let queued = listener.is_some() && self.backend.queues();
        match attempt {
            Ok(Attempt::Won { fence }) => {
                cleanup.disarm();
                Ok(Ok(self.won(token.into_owned(), fence, sent_at)))
            }
            Ok(busy) => {
                if !queued {
                    cleanup.disarm();
                }
                Ok(Err((busy, sent_at)))
            }
            // The cleanup stays armed: the command may have reached the server.
            Err(error) => Err(error),
        }
    }

    async fn retry(&self, times: u32, delay: Duration) -> Result<Won, LockError> {
        let started = Instant::now();
        let spec = QueueSpec::new(self.poll_interval, self.ttl);
        let mut cleanup = self.cleanup();
        let mut remaining = None;
        for number in 0..=times {
            match self.attempt(number, None, &spec, &mut cleanup).await? {
                Ok(won) => return Ok(won),
                Err((
                    Attempt::Busy {
                        remaining: left, ..
                    },
                    _,
                )) => remaining = left,
                Err((Attempt::Won { .. }, _)) => unreachable!("a won attempt is Ok"),
            }
            if number == 0 {
                self.busy_first(remaining, times > 0);
            }
            if number < times {
                tokio::time::sleep(delay).await;
            }
        }
        Err(self.busy(started, times > 0, remaining).await)
    }

    fn cleanup(&self) -> Cleanup<'_> {
        Cleanup {
            backend: self.backend,
            keys: self.keys,
            token: None,
        }
    }

    /// The first attempt found the lock held; the request waits from now on if `waits`.
    fn busy_first(&self, holder_left: Option<Duration>, waits: bool) {
        tracing::debug!(
            name: "lock.busy",
            target: TARGET,
            {
                lock.retry_after_ms = holder_left.map(ms),
                lock.will_wait = waits,
            },
            "lock held by another owner"
        );
        if waits {
            self.observed.waiting();
        }
    }

    /// The contention error, with the holder's remaining time (asked for when unknown).
    async fn busy(&self, started: Instant, waited: bool, remaining: Option<Duration>) -> LockError {
        let retry_after = match remaining {
            Some(left) => Some(left),
            None => match self.backend.remaining(self.keys).await {
                Ok(Remaining::Expires(left)) => Some(left),
                Ok(Remaining::Free | Remaining::Forever) | Err(_) => None,
            },
        };
        let name = self.keys.lock_name().to_owned();
        if waited {
            let waited = started.elapsed();
            tracing::debug!(
                name: "lock.timeout",
                target: TARGET,
                {
                    lock.waited_ms = ms(waited),
                    lock.retry_after_ms = retry_after.map(ms),
                },
                "gave up waiting: the lock stayed held by another owner"
            );
            LockError::WaitTimeout {
                name,
                waited,
                retry_after,
            }
        } else {
            LockError::Busy { name, retry_after }
        }
    }

    async fn listen(&self) -> Option<Listener> {
        match self.backend.listen(self.keys, self.token).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(
                    name: "lock.listen_failed",
                    target: TARGET,
                    {
                        lock.name = self.keys.lock_name(),
                        error = %error,
                    },
                    "cannot listen for releases; polling instead"
                );
                None
            }
        }
    }

    async fn wait(&self, budget: Duration) -> Result<Won, LockError> {
        let started = Instant::now();
        let deadline = started + budget;
        let spec = QueueSpec::new(self.poll_interval, self.ttl);
        let mut cleanup = self.cleanup();
        let mut listener: Option<Listener> = None;
        let mut last_busy: Option<LastBusy> = None;
        let (mut busy_seen, mut queued) = (false, false);
        // A hand-off message was heard that did not make the lock ours by itself: when
        // (estimated) the release ran.
        let mut handed_off: Option<Option<Instant>> = None;
        for number in 0_u32.. {
            let (holder_left, sent_at, at_us) = match self
                .attempt(number, listener.as_ref(), &spec, &mut cleanup)
                .await
            {
                Ok(Ok(won)) => {
                    if let Some(released_at) = handed_off {
                        self.handed_off(released_at, true);
                    }
                    return Ok(won);
                }
                Ok(Err((Attempt::Busy { remaining, at_us }, sent_at))) => {
                    (remaining, sent_at, at_us)
                }
                Ok(Err((Attempt::Won { .. }, _))) => unreachable!("a won attempt is Ok"),
                // Redlock without a quorum: retry until the deadline, then report why.
                Err(error @ LockError::Quorum { .. }) => {
                    cleanup.disarm();
                    if Instant::now() >= deadline {
                        return Err(error);
                    }
                    tracing::debug!(
                        name: "lock.no_quorum",
                        target: TARGET,
                        {
                            error = %error,
                        },
                        "no quorum of servers decided; trying again"
                    );
                    let pause = jitter(self.poll_interval.min(deadline - Instant::now()) / 2);
                    tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            if !busy_seen {
                busy_seen = true;
                self.busy_first(holder_left, !budget.is_zero());
            }
            if !queued && listener.is_some() && self.backend.queues() {
                queued = true;
                tracing::debug!(name: "lock.queued", target: TARGET, "waiting in the lock's queue");
            }
            if let Some(at_us) = at_us.filter(|_| listener.is_some()) {
                last_busy = Some(LastBusy { sent_at, at_us });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.busy(started, !budget.is_zero(), holder_left).await);
            }
            if listener.is_none() && number == 0 {
                // Listen before the next attempt, so nothing announced after it is missed.
                listener = self.listen().await;
                continue;
            }
            let nap = holder_left.map_or(self.poll_interval, |left| left.min(self.poll_interval));
            let wake = (now + nap + jitter(nap)).min(deadline);
            let woken = self.sleep(wake, listener.as_mut(), last_busy, &spec).await;
            let by = match woken {
                Woken::Handoff(Some(won), released_at) => {
                    cleanup.disarm();
                    self.handed_off(released_at, false);
                    return Ok(won);
                }
                Woken::Handoff(None, released_at) => {
                    handed_off = Some(released_at);
                    "untrusted_handoff"
                }
                Woken::Notified(by) => by,
                Woken::Timer => "timer",
            };
            tracing::trace!(
                name: "lock.woken",
                target: TARGET,
                {
                    lock.by = by,
                },
                "waiter woken; attempting again"
            );
        }
        unreachable!("the attempts loop only ends by returning")
    }

    /// The lock came by a hand-off from a release that ran at `released_at` (unknown on
    /// the memory backend, whose hand-offs are in-process); `claimed`: by a queued
    /// attempt, not by trusting the message.
    fn handed_off(&self, released_at: Option<Instant>, claimed: bool) {
        let latency = released_at.map(|at| at.elapsed());
        if let Some(latency) = latency {
            self.observed.handed_off(latency);
        }
        tracing::debug!(
            name: "lock.handed_off",
            target: TARGET,
            {
                lock.handoff_ms = latency.map(ms),
                lock.claimed = claimed,
            },
            "a release handed the lock over"
        );
    }

    /// Sleeps until `wake` or a notification; returns the lock when a trusted hand-off
    /// arrived.
    async fn sleep(
        &self,
        wake: Instant,
        listener: Option<&mut Listener>,
        last_busy: Option<LastBusy>,
        spec: &QueueSpec,
    ) -> Woken {
        let Some(listener) = listener else {
            tokio::time::sleep_until(wake).await;
            return Woken::Timer;
        };
        let event = tokio::select! {
            event = listener.registration.next() => event,
            () = tokio::time::sleep_until(wake) => return Woken::Timer,
        };
        let handoff = match event {
            Event::Handoff(handoff) => handoff,
            Event::Free | Event::Announced(_) => return Woken::Notified("free"),
            Event::Interrupted => return Woken::Notified("interrupted"),
        };
        let Some(last_busy) = last_busy else {
            return Woken::Handoff(None, None);
        };
        // The memory backend's clock counts operations, not microseconds.
        let released_at = (!matches!(**self.backend, Backend::Memory(_)))
            .then(|| last_busy.release_time(&handoff));
        let claim_until = last_busy.sent_at + spec.claim_within;
        let left = claim_until.saturating_duration_since(Instant::now());
        let fenced = !self.fencing || handoff.fence > 0;
        if !fenced || !trust_handoff(&handoff, last_busy.at_us, left, spec.claim_within) {
            // The next (queued) attempt claims it if it is still ours.
            return Woken::Handoff(None, released_at);
        }
        let won = Won {
            token: self.token.to_owned(),
            fence: self.fencing.then_some(handoff.fence),
            sent_at: last_busy.sent_at,
            acquired_at: Instant::now(),
            valid_until: claim_until,
            needs_claim: true,
        };
        Woken::Handoff(Some(won), released_at)
    }
}

/// Up to 5% of `nap` plus up to 1 ms, so timer-woken waiters do not all retry at once.
fn jitter(nap: Duration) -> Duration {
    let spread = nap / 20 + Duration::from_millis(1);
    spread.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_small_and_never_overflows() {
        for nap in [Duration::ZERO, Duration::from_secs(1), crate::millis::MAX] {
            let spread = jitter(nap);
            assert!(spread <= nap / 20 + Duration::from_millis(1), "{nap:?}");
        }
    }
}
