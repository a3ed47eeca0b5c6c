//! Acquiring: one attempt, waiting woken by releases, and the Python original's retry
//! policy; plus the cleanup that keeps a cancelled acquire from leaving a lock behind.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::LockError;
use crate::backend::{Attempt, Backend, ReleaseWatch};
use crate::key::LockKeys;

/// How a request behaves when another owner holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitPolicy {
    /// Wait up to this long, woken by releases (zero: fail at once).
    Wait(Duration),
    /// Try `1 + times` times with `delay` between the tries (no pub/sub).
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

/// Deletes the lock for `token` if this value is dropped while armed, i.e. while an
/// acquire command that may have succeeded has no known outcome.
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
                    tracing::debug!(key = %keys.key, "removed the lock of a cancelled acquire")
                }
                Ok(false) => {}
                Err(error) => tracing::debug!(
                    key = %keys.key,
                    %error,
                    "cleanup of a cancelled acquire failed; the key expires with its TTL"
                ),
            }
        });
    }
}

impl AcquireSpec<'_> {
    /// One atomic attempt; cancellation-safe (a dropped attempt deletes what it may have set).
    async fn attempt(&self) -> Result<Result<Won, Option<Duration>>, LockError> {
        let mut cleanup = Cleanup {
            spec: self,
            armed: true,
        };
        let sent_at = Instant::now();
        let attempt = self
            .backend
            .acquire(self.keys, self.token, self.ttl, self.fencing)
            .await?;
        cleanup.armed = false;
        Ok(match attempt {
            Attempt::Acquired { fence } => Ok(Won { fence, sent_at }),
            Attempt::Busy { remaining } => Err(remaining),
        })
    }

    /// Acquires per the policy.
    pub(crate) async fn acquire(&self) -> Result<Won, LockError> {
        match self.policy {
            WaitPolicy::Wait(budget) => self.wait(budget).await,
            WaitPolicy::Retry { times, delay } => self.retry(times, delay).await,
        }
    }

    fn busy(&self, started: Instant, waited_at_all: bool) -> LockError {
        let key = self.keys.key.clone();
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
            if let Ok(won) = self.attempt().await? {
                return Ok(won);
            }
            if attempt < times {
                tokio::time::sleep(delay).await;
            }
        }
        Err(self.busy(started, times > 0))
    }

    /// Try; when busy, subscribe to the lock's releases and try again (so a release
    /// between the two is not missed), then sleep until a release, the holder's expiry,
    /// the poll interval or the deadline, whichever comes first.
    async fn wait(&self, budget: Duration) -> Result<Won, LockError> {
        let started = Instant::now();
        let deadline = started.checked_add(budget);
        let mut watch: Option<ReleaseWatch> = None;
        let mut subscribe = true;
        loop {
            let holder_left = match self.attempt().await {
                Ok(Ok(won)) => return Ok(won),
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
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return Err(self.busy(started, !budget.is_zero()));
            }
            if watch.is_none() && subscribe {
                match self.backend.watch(self.keys).await {
                    Ok(subscribed) => {
                        watch = Some(subscribed);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(
                            key = %self.keys.key,
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
            tokio::select! {
                heard = released(&mut watch) => {
                    if !heard {
                        // Notifications stopped (connection lost): subscribe afresh.
                        watch = None;
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// Completes on the next release, or never without a subscription.
async fn released(watch: &mut Option<ReleaseWatch>) -> bool {
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
