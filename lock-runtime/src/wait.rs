//! Acquiring: one attempt, waiting in the lock's queue woken by releases, and the Python
//! original's retry policy; plus the cleanup that keeps a cancelled acquire from leaving
//! a lock (or a place in the queue) behind.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::LockError;
use crate::backend::{Attempt, Backend, Handoff, QueueSpec, ReleaseWatch};
use crate::key::LockKeys;

/// How a request behaves when another owner holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitPolicy {
    /// Wait up to this long, woken by releases (zero: fail at once).
    Wait(Duration),
    /// Try `1 + times` times with `delay` between the tries (no pub/sub, no queue).
    Retry { times: u32, delay: Duration },
}

/// What the acquire loop needs to know.
#[derive(Debug)]
pub(crate) struct AcquireSpec<'a> {
    pub(crate) backend: &'a Arc<dyn Backend>,
    pub(crate) keys: &'a LockKeys,
    pub(crate) token: &'a str,
    pub(crate) ttl: Duration,
    pub(crate) fencing: bool,
    pub(crate) policy: WaitPolicy,
    /// The longest sleep between attempts when no release is heard.
    pub(crate) poll_interval: Duration,
}

/// A successful acquisition.
#[derive(Debug)]
pub(crate) struct Won {
    pub(crate) fence: Option<u64>,
    /// When the winning attempt was sent: the lease is counted from here.
    pub(crate) sent_at: Instant,
}

/// Releases the lock for `token` if this value is dropped while armed: while an acquire
/// command that may have succeeded has no known outcome, or while `token` is queued
/// (a release may hand it the lock). The release also takes it out of the queue.
struct Cleanup<'a> {
    spec: &'a AcquireSpec<'a>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let backend = self.spec.backend.clone();
        let keys = self.spec.keys.clone();
        let token = self.spec.token.to_owned();
        runtime.spawn(async move {
            match backend
                .release(&keys, &token)
                .await
                .map(|released| released.held)
            {
                Ok(true) => {
                    tracing::debug!(key = %keys.key(), "passed on the lock of a cancelled or given-up acquire")
                }
                Ok(false) => {}
                Err(error) => tracing::debug!(
                    key = %keys.key(),
                    %error,
                    "cleanup of a cancelled or given-up acquire failed; its key or place in the queue expires"
                ),
            }
        });
    }
}

impl AcquireSpec<'_> {
    /// One atomic attempt (a queued one with `queue`); cancellation-safe (a dropped
    /// attempt releases what it may have set).
    async fn attempt(
        &self,
        queue: Option<&QueueSpec>,
    ) -> Result<Result<Won, Option<Duration>>, LockError> {
        let mut cleanup = Cleanup {
            spec: self,
            armed: true,
        };
        let sent_at = Instant::now();
        let attempt = match queue {
            None => {
                self.backend
                    .acquire(self.keys, self.token, self.ttl, self.fencing)
                    .await?
            }
            Some(queue) => {
                self.backend
                    .acquire_queued(self.keys, self.token, self.ttl, self.fencing, queue)
                    .await?
            }
        };
        cleanup.armed = false;
        Ok(match attempt {
            Attempt::Acquired { fence } => Ok(Won { fence, sent_at }),
            Attempt::Busy { remaining } => Err(remaining),
        })
    }

    /// A waiter's place in the queue: it lives three poll intervals (a waiter attempts
    /// at least every interval), and a lock handed to it waits two intervals (or its TTL,
    /// if shorter) to be claimed, so a missed hand-off message is made up for by the
    /// next timed attempt.
    fn queue_spec(&self, watch: &ReleaseWatch) -> QueueSpec {
        QueueSpec {
            alive_for: self.poll_interval * 3,
            claim_within: (self.poll_interval * 2).min(self.ttl),
            inbox: watch.inbox().cloned(),
        }
    }

    /// Acquires per the policy.
    pub(crate) async fn acquire(&self) -> Result<Won, LockError> {
        match self.policy {
            WaitPolicy::Wait(budget) => self.wait(budget).await,
            WaitPolicy::Retry { times, delay } => self.retry(times, delay).await,
        }
    }

    fn busy(&self, started: Instant, waited_at_all: bool) -> LockError {
        let key = self.keys.key().to_owned();
        if waited_at_all {
            LockError::WaitTimeout {
                key,
                waited: started.elapsed(),
            }
        } else {
            LockError::Busy { key }
        }
    }

    async fn retry(&self, times: u32, delay: Duration) -> Result<Won, LockError> {
        let started = Instant::now();
        for attempt in 0..=times {
            if let Ok(won) = self.attempt(None).await? {
                return Ok(won);
            }
            if attempt < times {
                tokio::time::sleep(delay).await;
            }
        }
        Err(self.busy(started, times > 0))
    }

    /// Try; when busy, subscribe to the lock's releases and try again in the lock's
    /// queue (so a release between the two is not missed), then sleep until a release
    /// that frees the lock or hands it to us, the holder's expiry, the poll interval or
    /// the deadline, whichever comes first. Every timed attempt keeps the queue entry
    /// alive; leaving (deadline, error, cancellation) takes it out again.
    async fn wait(&self, budget: Duration) -> Result<Won, LockError> {
        let started = Instant::now();
        let deadline = started.checked_add(budget);
        let mut watch: Option<ReleaseWatch> = None;
        let mut subscribe = true;
        let mut queue = None;
        let mut queued = Cleanup {
            spec: self,
            armed: false,
        };
        loop {
            let holder_left = match self.attempt(queue.as_ref()).await {
                Ok(Ok(won)) => {
                    queued.armed = false;
                    return Ok(won);
                }
                Ok(Err(holder_left)) => holder_left,
                // Redlock without a quorum: retry until the deadline, then report why.
                Err(error @ LockError::Quorum { .. }) => {
                    let now = Instant::now();
                    match deadline {
                        Some(deadline) if now < deadline => {
                            let pause = jitter(self.poll_interval.min(deadline - now) / 2);
                            tokio::time::sleep(pause.min(deadline - now)).await;
                            continue;
                        }
                        _ => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            };
            queued.armed = queue.is_some();
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return Err(self.busy(started, !budget.is_zero()));
            }
            if watch.is_none() && subscribe {
                match self.backend.watch(self.keys).await {
                    Ok(subscribed) => {
                        queue = Some(self.queue_spec(&subscribed));
                        watch = Some(subscribed);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(
                            key = %self.keys.key(),
                            %error,
                            "cannot subscribe to lock releases; polling instead"
                        );
                        subscribe = false;
                    }
                }
            }
            let nap = holder_left.map_or(self.poll_interval, |left| left.min(self.poll_interval));
            let mut wake = now + nap + jitter(nap);
            if let Some(deadline) = deadline {
                wake = wake.min(deadline);
            }
            loop {
                tokio::select! {
                    heard = released(&mut watch) => match heard {
                        // Handed to a waiter ahead of us: keep sleeping.
                        Some(handoff) if !handoff.invites(self.token) => continue,
                        Some(_) => break,
                        // Notifications stopped (connection lost): subscribe afresh.
                        None => {
                            watch = None;
                            break;
                        }
                    },
                    () = tokio::time::sleep_until(wake) => break,
                }
            }
        }
    }
}

/// Completes on the next release, or never without a subscription; `None` when the
/// notifications stopped.
async fn released(watch: &mut Option<ReleaseWatch>) -> Option<Handoff> {
    match watch {
        Some(watch) => watch.released().await,
        None => std::future::pending().await,
    }
}

/// Up to 5% of `nap` plus up to 1 ms, so timer-woken waiters do not all retry at once.
fn jitter(nap: Duration) -> Duration {
    let spread = nap / 20 + Duration::from_millis(1);
    spread.mul_f64(fastrand::f64())
}
