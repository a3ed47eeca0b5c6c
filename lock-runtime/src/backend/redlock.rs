//! Redlock: one lock over N independent Redis servers, held when a majority holds it.
//!
//! Every operation goes to all servers at once, each bounded by a per-server timeout, and
//! needs a quorum (`N / 2 + 1`) of agreeing answers. An acquire counts as won only if the
//! quorum granted it and time is left of the TTL after the round trip and a drift margin;
//! otherwise what was granted is released everywhere.

use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use super::redis::RedisBackend;
use super::{Attempt, Backend, BoxFuture, ExtendMode, ReleaseWatch, Remaining, Renewal};
use crate::LockError;
use crate::guard::Released;
use crate::key::LockKeys;

/// Why Redlock refuses fencing tokens.
const NO_FENCING: &str = "fencing tokens need one authoritative counter, and a Redlock quorum of \
    independent servers has none: two owners in a row can read their tokens from different \
    majorities, so the tokens would not strictly increase. Use a single Redis server (with a \
    replica for availability) for fenced locks: `Locker::redis(url)` with `.fencing()`; or \
    keep Redlock without fencing and make the protected writes idempotent";

/// The per-server timeout bounds when it is derived from the TTL.
const MIN_SERVER_TIMEOUT: Duration = Duration::from_millis(5);
const MAX_SERVER_TIMEOUT: Duration = Duration::from_millis(50);

/// Locks on a majority of independent Redis servers.
#[derive(Debug)]
pub(crate) struct RedlockBackend {
    servers: Vec<RedisBackend>,
    /// Fixed per-server timeout; `None`: 1% of the TTL, clamped to 5-50 ms.
    server_timeout: Option<Duration>,
}

/// One server's answer within the per-server timeout, or why there was none.
type Answer<T> = Result<T, String>;

impl RedlockBackend {
    pub(crate) fn new(servers: Vec<RedisBackend>, server_timeout: Option<Duration>) -> Self {
        Self {
            servers,
            server_timeout,
        }
    }

    fn quorum(&self) -> usize {
        self.servers.len() / 2 + 1
    }

    /// The per-server timeout for an operation on a lock with this TTL.
    fn timeout_for(&self, ttl: Duration) -> Duration {
        self.server_timeout
            .unwrap_or_else(|| (ttl / 100).clamp(MIN_SERVER_TIMEOUT, MAX_SERVER_TIMEOUT))
    }

    /// The per-server timeout of operations without a TTL (release, inspection).
    fn timeout(&self) -> Duration {
        self.server_timeout.unwrap_or(MAX_SERVER_TIMEOUT)
    }

    /// Runs `operation` on every server at once, each bounded by `limit`.
    async fn on_all<'a, T, F, Fut>(
        &'a self,
        limit: Option<Duration>,
        operation: F,
    ) -> Vec<Answer<T>>
    where
        F: Fn(&'a RedisBackend) -> Fut,
        Fut: Future<Output = Result<T, LockError>> + 'a,
    {
        join_all(self.servers.iter().map(|server| {
            let answer = operation(server);
            async move {
                let answer = match limit {
                    Some(limit) => match tokio::time::timeout(limit, answer).await {
                        Ok(answer) => answer,
                        Err(_) => {
                            return Err(format!("{}: no answer within {limit:?}", server.server()));
                        }
                    },
                    None => answer.await,
                };
                answer.map_err(|error| format!("{}: {}", server.server(), reason(&error)))
            }
        }))
        .await
    }

    fn no_quorum(
        &self,
        key: &str,
        answered: usize,
        granted: usize,
        failures: Vec<String>,
    ) -> LockError {
        LockError::Quorum {
            key: key.to_owned(),
            servers: self.servers.len(),
            needed: self.quorum(),
            answered,
            granted,
            failures,
        }
    }

    /// An extend's outcome from the servers' answers: held on a quorum until at least the
    /// quorum-th longest expiry (less the drift), lost when a majority says the key is gone
    /// or another owner's, undecided (`Quorum`) otherwise.
    fn decide_extend(
        &self,
        keys: &LockKeys,
        answers: Vec<Answer<Option<Duration>>>,
    ) -> Result<Option<Duration>, LockError> {
        let (extended, failures) = split(answers);
        let mut granted: Vec<Duration> = extended.iter().filter_map(|left| *left).collect();
        if granted.len() >= self.quorum() {
            granted.sort_unstable_by(|a, b| b.cmp(a));
            let left = granted[self.quorum() - 1];
            return Ok(left
                .checked_sub(self.drift(left))
                .filter(|left| !left.is_zero()));
        }
        if granted.len() + failures.len() >= self.quorum() && !failures.is_empty() {
            return Err(self.no_quorum(keys.key(), extended.len(), granted.len(), failures));
        }
        Ok(None)
    }

    /// Releases `token`'s key on every server, ignoring failures (the keys expire).
    async fn release_everywhere(&self, keys: &LockKeys, token: &str) {
        let limit = self.timeout();
        self.on_all(Some(limit), |server| server.release(keys, token))
            .await;
    }
}

/// The part of an error worth repeating per server.
fn reason(error: &LockError) -> String {
    match error {
        LockError::Connect { source, .. } | LockError::Backend { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// The answers that succeeded, and the reasons of those that did not.
fn split<T>(answers: Vec<Answer<T>>) -> (Vec<T>, Vec<String>) {
    let mut values = Vec::with_capacity(answers.len());
    let mut failures = Vec::new();
    for answer in answers {
        match answer {
            Ok(value) => values.push(value),
            Err(failure) => failures.push(failure),
        }
    }
    (values, failures)
}

/// A short random pause before the next attempt after a split vote, so that contenders
/// who each got part of the servers do not collide again in lockstep.
fn split_vote_backoff(limit: Duration) -> Duration {
    (limit * 2).mul_f64(fastrand::f64()) + Duration::from_millis(1)
}

impl Backend for RedlockBackend {
    fn acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        _fencing: bool,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        Box::pin(async move {
            let limit = self.timeout_for(ttl);
            let started = Instant::now();
            let answers = self
                .on_all(Some(limit), |server| {
                    server.acquire(keys, token, ttl, false)
                })
                .await;
            let elapsed = started.elapsed();
            let (attempts, failures) = split(answers);
            let granted = attempts
                .iter()
                .filter(|attempt| matches!(attempt, Attempt::Acquired { .. }))
                .count();
            let validity = ttl.checked_sub(elapsed + self.drift(ttl));
            if granted >= self.quorum() && validity.is_some_and(|left| !left.is_zero()) {
                return Ok(Attempt::Acquired { fence: None });
            }
            if granted > 0 || !failures.is_empty() {
                // Failures too: a server that timed out may have set the key.
                self.release_everywhere(keys, token).await;
            }
            let answered = attempts.len();
            if answered < self.quorum() {
                return Err(self.no_quorum(keys.key(), answered, granted, failures));
            }
            let holder_left = attempts
                .iter()
                .filter_map(|attempt| match attempt {
                    Attempt::Busy { remaining } => *remaining,
                    Attempt::Acquired { .. } => None,
                })
                .min();
            Ok(Attempt::Busy {
                remaining: if granted > 0 || holder_left.is_none() {
                    Some(split_vote_backoff(limit))
                } else {
                    holder_left
                },
            })
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Released, LockError>> {
        Box::pin(async move {
            let answers = self
                .on_all(Some(self.timeout()), |server| server.release(keys, token))
                .await;
            let (released, failures) = split(answers);
            let servers_held = released.iter().filter(|released| released.held).count();
            let held = servers_held >= self.quorum();
            if !held && servers_held + failures.len() >= self.quorum() {
                // The servers that did not answer may still hold it: undecided.
                return Err(self.no_quorum(keys.key(), released.len(), servers_held, failures));
            }
            Ok(Released {
                held,
                servers_held,
                servers: self.servers.len(),
            })
        })
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        by: Duration,
        mode: ExtendMode,
    ) -> BoxFuture<'a, Result<Option<Duration>, LockError>> {
        Box::pin(async move {
            let limit = match mode {
                ExtendMode::Set => self.timeout_for(by),
                ExtendMode::Add => self.timeout(),
            };
            let answers = self
                .on_all(Some(limit), |server| server.extend(keys, token, by, mode))
                .await;
            self.decide_extend(keys, answers)
        })
    }

    fn extend_many<'a>(
        &'a self,
        batch: &'a [Renewal<'a>],
    ) -> BoxFuture<'a, Vec<Result<Option<Duration>, LockError>>> {
        Box::pin(async move {
            let shortest = batch
                .iter()
                .map(|renewal| renewal.ttl)
                .min()
                .unwrap_or_default();
            let limit = self.timeout_for(shortest);
            let per_server = self
                .on_all(Some(limit), |server| async move {
                    Ok::<_, LockError>(server.extend_many(batch).await)
                })
                .await;
            // Turn per-server lists into per-lock answers.
            let mut per_lock: Vec<Vec<Answer<Option<Duration>>>> = batch
                .iter()
                .map(|_| Vec::with_capacity(self.servers.len()))
                .collect();
            for (server, answers) in self.servers.iter().zip(per_server) {
                match answers {
                    Ok(answers) => {
                        for (answer, lock) in answers.into_iter().zip(&mut per_lock) {
                            lock.push(answer.map_err(|error| {
                                format!("{}: {}", server.server(), reason(&error))
                            }));
                        }
                    }
                    Err(failure) => {
                        for lock in &mut per_lock {
                            lock.push(Err(failure.clone()));
                        }
                    }
                }
            }
            batch
                .iter()
                .zip(per_lock)
                .map(|(renewal, answers)| self.decide_extend(renewal.keys, answers))
                .collect()
        })
    }

    fn holder<'a>(
        &'a self,
        keys: &'a LockKeys,
    ) -> BoxFuture<'a, Result<Option<String>, LockError>> {
        Box::pin(async move {
            let answers = self
                .on_all(Some(self.timeout()), |server| server.holder(keys))
                .await;
            let (holders, failures) = split(answers);
            let majority = holders.iter().flatten().find(|token| {
                holders
                    .iter()
                    .flatten()
                    .filter(|other| other == token)
                    .count()
                    >= self.quorum()
            });
            if let Some(token) = majority {
                return Ok(Some(token.clone()));
            }
            if holders.len() < self.quorum() {
                return Err(self.no_quorum(keys.key(), holders.len(), 0, failures));
            }
            Ok(None)
        })
    }

    fn remaining<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<Remaining, LockError>> {
        Box::pin(async move {
            let answers = self
                .on_all(Some(self.timeout()), |server| server.remaining(keys))
                .await;
            let (mut remaining, failures) = split(answers);
            if remaining.len() < self.quorum() {
                let answered = remaining.len();
                return Err(self.no_quorum(keys.key(), answered, answered, failures));
            }
            // Held for as long as a quorum of servers still has a key: the quorum-th
            // longest, with "forever" longest and "free" shortest.
            remaining.sort_unstable_by_key(|left| match left {
                Remaining::Forever => (0, Duration::ZERO),
                Remaining::Expires(left) => (1, Duration::MAX - *left),
                Remaining::Free => (2, Duration::ZERO),
            });
            Ok(remaining[self.quorum() - 1])
        })
    }

    fn watch<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<ReleaseWatch, LockError>> {
        Box::pin(async move {
            // A release publishes on every server it reaches; hearing one server is
            // enough. Start at a random one to spread the subscriptions.
            let first = fastrand::usize(..self.servers.len());
            let limit = self.timeout().max(Duration::from_millis(250));
            let mut failures = Vec::new();
            for index in 0..self.servers.len() {
                let server = &self.servers[(first + index) % self.servers.len()];
                match tokio::time::timeout(limit, server.watch_channel(keys)).await {
                    Ok(Ok(watch)) => return Ok(watch),
                    Ok(Err(error)) => {
                        failures.push(format!("{}: {}", server.server(), reason(&error)))
                    }
                    Err(_) => {
                        failures.push(format!("{}: no answer within {limit:?}", server.server()))
                    }
                }
            }
            Err(self.no_quorum(keys.key(), 0, 0, failures))
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(async move {
            // No per-server bound: a ping also connects, within the connect timeout.
            let answers = self.on_all(None, RedisBackend::ping).await;
            let (answered, failures) = split(answers);
            if answered.len() >= self.quorum() {
                if !failures.is_empty() {
                    tracing::warn!(failures = ?failures, "some Redlock servers are unreachable");
                }
                return Ok(());
            }
            Err(self.no_quorum("", answered.len(), answered.len(), failures))
        })
    }

    fn fencing_refusal(&self) -> Option<&'static str> {
        Some(NO_FENCING)
    }

    /// 1% of the TTL plus 2 ms, as the Redlock algorithm prescribes.
    fn drift(&self, ttl: Duration) -> Duration {
        ttl / 100 + Duration::from_millis(2)
    }
}
