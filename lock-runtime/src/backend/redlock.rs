//! Redlock: one lock over N independent Redis servers, held when a majority holds it.
//!
//! Every operation goes to all servers at once, each bounded by a per-server timeout, and
//! needs a quorum (`N / 2 + 1`) of agreeing answers. An acquire counts as won only if the
//! quorum granted it and time is left of the TTL after the round trip and a drift margin;
//! otherwise what was granted is released everywhere. Each attempt uses a fresh owner
//! token, so a late clean-up of a failed attempt cannot delete what a later one won. The
//! decisions from the servers' answers are pure functions, tested below.
//!
//! An acquire does not wait for a slow or hung minority: once a quorum granted, the other
//! servers get as long again as the quorum took (at least 1 ms), and the answers still
//! missing then are awaited by a background task (each bounded, as before). Two things
//! make that safe:
//!
//! - Their `SET NX` still goes out: redis-rs drops a command whose caller went away before
//!   its connection wrote it, so the task, not the returning caller, owns those requests.
//!   Otherwise the lock would rest on a bare quorum and be lost at the next server's death.
//! - A release, extend or renewal of that token sends to the servers that answered at
//!   once, and to each slower one after its answer ([`Stragglers`]), so it never reaches
//!   a server before that server's `SET NX`: the key would then outlive the release for
//!   its whole TTL, or keep its first TTL after the extend. Waiting for the answer, not
//!   relying on the order of one connection, also holds while a connection is still being
//!   opened or reopened, when redis-rs has not queued either command yet. A renewal
//!   sends there from a background task, so the renewal task, which renews every lock of
//!   its runtime, never waits for a slow server; the lock counts as silent there.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use super::quorum::{
    Answer, decide_extend, decide_release, majority_holder, quorum, quorum_remaining, split,
};
use super::stragglers::Stragglers;
use super::{Attempt, ExtendMode, Listener, ReleaseReport, Remaining, Renewal, Request, ops};
use crate::driver::{Server, Timeouts};
use crate::error::ServerFailure;
use crate::key::LockKeys;
use crate::queue::Inbox;
use crate::scripts::{Eval, RELEASE_FREE};
use crate::{LockError, millis};

/// Why Redlock refuses fencing tokens.
pub(crate) const NO_FENCING: &str = "fencing tokens need one authoritative counter, and a \
    Redlock quorum of independent servers has none: two owners in a row can read their tokens \
    from different majorities, so the tokens would not strictly increase. Use a single Redis \
    server (with a replica for availability) for fenced locks: `Locker::redis(url)` with \
    `.fencing()`; or keep Redlock without fencing and make the protected writes idempotent";

pub(crate) const NO_SEMAPHORE: &str = "a semaphore needs one count of its holders, and a \
    Redlock quorum of independent servers has none: with 3 servers and 2 permits, holders A, \
    B and C can each be admitted by a different majority ({A, B}, {B, C}, {A, C}), so 3 \
    would hold 2 permits. Keep semaphores on a single Redis server or a Cluster: \
    `Locker::redis(url)` or `Locker::cluster(urls)`";

pub(crate) const NO_ANNOUNCEMENTS: &str = "Redlock has no single server to announce a leader on: leader election needs epochs \
     (fencing tokens), which a Redlock quorum cannot issue";

/// The least time an acquire that a quorum granted still waits for the other servers.
const MIN_QUORUM_GRACE: Duration = Duration::from_millis(1);

/// The per-server timeout bounds when it is derived from the TTL.
const MIN_SERVER_TIMEOUT: Duration = Duration::from_millis(5);
const MAX_SERVER_TIMEOUT: Duration = Duration::from_millis(50);

/// Locks on a majority of independent Redis servers.
#[derive(Debug)]
pub(crate) struct Redlock {
    servers: Vec<Arc<Server>>,
    /// Fixed per-server timeout; `None`: 1% of the TTL, clamped to 5-50 ms.
    server_timeout: Option<Duration>,
    stragglers: Arc<Stragglers>,
}

impl Redlock {
    /// Redlock over the servers of `clients`; refuses an empty list and a server listed
    /// twice (a majority of copies of one server is no majority).
    pub(crate) fn new(
        clients: Vec<redis::Client>,
        prefix: &str,
        server_timeout: Option<Duration>,
        timeouts: Timeouts,
    ) -> Result<Self, LockError> {
        if clients.is_empty() {
            return Err(LockError::Config(
                "Redlock needs at least one Redis URL (3 or 5 independent servers in production)"
                    .into(),
            ));
        }
        let mut seen = HashSet::new();
        let servers = clients
            .into_iter()
            .map(|client| {
                let server = Server::single(client, prefix, timeouts);
                if seen.insert(server.address().to_owned()) {
                    Ok(Arc::new(server))
                } else {
                    Err(LockError::Config(format!(
                        "Redlock server {} is listed twice; the servers must be independent",
                        server.address()
                    )))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            servers,
            server_timeout,
            stragglers: Arc::default(),
        })
    }

    fn quorum(&self) -> usize {
        quorum(self.servers.len())
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.servers[0].timeouts().command
    }

    /// 1% of the TTL plus 2 ms, as the Redlock algorithm prescribes.
    pub(crate) fn drift(&self, ttl: Duration) -> Duration {
        ttl / 100 + Duration::from_millis(2)
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

    /// Why `ttl` cannot work: nothing would be left of it after the drift margin and a
    /// server's answer, so every acquire would fail on a free lock.
    pub(crate) fn refuse_ttl(&self, ttl: Duration) -> Option<String> {
        let works = |ttl: Duration| ttl > self.drift(ttl) + self.timeout_for(ttl);
        if works(ttl) {
            return None;
        }
        // ttl > ttl/100 + 2 ms + timeout: the timeout at the minimum is the configured one
        // or the floor of the derived one; a few steps settle the rounding.
        let floor = self.server_timeout.unwrap_or(MIN_SERVER_TIMEOUT);
        let estimate = (Duration::from_millis(2) + floor).mul_f64(100.0 / 99.0);
        let mut minimum =
            Duration::from_millis(u64::try_from(estimate.as_millis()).unwrap_or(u64::MAX));
        for _ in 0..100 {
            if works(minimum) {
                break;
            }
            minimum += Duration::from_millis(1);
        }
        Some(format!(
            "with Redlock the TTL must be at least {} ms (got {ttl:?}): it must outlast the \
             clock-drift margin (1% + 2 ms) and the per-server timeout ({:?})",
            minimum.as_millis(),
            self.timeout_for(ttl)
        ))
    }

    /// Runs `operation` on every server at once, each bounded by `limit`, plus the connect
    /// timeout for a server that has not answered on this runtime yet (connecting). For
    /// commands of the owner `tokens`: on a server that had not answered the acquire of
    /// one of them yet, once it has ([`Stragglers`]); its bound starts then.
    async fn on_all<'a, T, F, Fut>(
        &'a self,
        tokens: &[&str],
        limit: Option<Duration>,
        operation: F,
    ) -> Vec<Answer<T>>
    where
        F: Fn(&'a Server) -> Fut,
        Fut: Future<Output = Result<T, LockError>> + 'a,
    {
        join_all(self.servers.iter().enumerate().map(|(index, server)| {
            let answer = bounded(server, limit, operation(server));
            async move {
                self.stragglers.settled_on(tokens, index).await;
                answer.await
            }
        }))
        .await
    }

    fn no_quorum(
        &self,
        keys: Option<&LockKeys>,
        answered: usize,
        granted: usize,
        failures: Vec<ServerFailure>,
    ) -> LockError {
        LockError::Quorum {
            name: keys.map(|keys| keys.lock_name().to_owned()),
            servers: self.servers.len(),
            needed: self.quorum(),
            answered,
            granted,
            failures,
        }
    }

    /// Releases `token`'s key on every server, ignoring failures (the keys expire).
    async fn release_everywhere(&self, keys: &LockKeys, token: &str) {
        self.on_all(&[token], Some(self.timeout()), |server| {
            release_on(server, keys, token)
        })
        .await;
    }

    pub(crate) async fn acquire(&self, request: Request<'_>) -> Result<Attempt, LockError> {
        let Request {
            keys, token, ttl, ..
        } = request;
        let limit = self.timeout_for(ttl);
        let started = Instant::now();
        let (answers, elapsed) = self
            .acquire_until_quorum(keys, token, ttl, limit, started)
            .await;
        let (attempts, failures) = split(answers);
        let granted = attempts.iter().filter(|(won, _)| *won).count();
        let validity = ttl.checked_sub(elapsed + self.drift(ttl));
        if granted >= self.quorum() && validity.is_some_and(|left| !left.is_zero()) {
            return Ok(Attempt::Won { fence: None });
        }
        if granted > 0 || !failures.is_empty() {
            // Failures too: a server that timed out may have set the key.
            self.release_everywhere(keys, token).await;
        }
        if attempts.len() < self.quorum() {
            return Err(self.no_quorum(Some(keys), attempts.len(), granted, failures));
        }
        let holder_left = attempts
            .iter()
            .filter(|(won, _)| !won)
            .filter_map(|(_, left)| left.holder_left())
            .min();
        Ok(Attempt::Busy {
            remaining: if granted > 0 || holder_left.is_none() {
                Some(split_vote_backoff(limit))
            } else {
                holder_left
            },
            at_us: None,
        })
    }

    /// Sends the acquire to every server at once, each bounded by `limit`, and returns the
    /// answers (with the time since `started`) once every server answered, or once a
    /// quorum granted and the others had as long again (at least [`MIN_QUORUM_GRACE`]).
    /// The answers still outstanding then are awaited by a background task, registered in
    /// [`Stragglers`] for the later commands of `token`.
    ///
    /// The grace keeps the common case in this task: healthy servers answer within it, and
    /// handing the last answers to a task (a spawn, and a wake-up for the release that
    /// waits for it) measured slower than waiting for them. A hung or far server costs the
    /// acquire about the quorum's time again instead of its per-server timeout.
    async fn acquire_until_quorum(
        &self,
        keys: &LockKeys,
        token: &str,
        ttl: Duration,
        limit: Duration,
        started: Instant,
    ) -> (Vec<Answer<(bool, Remaining)>>, Duration) {
        // Owned, so that the outstanding requests can outlive this call.
        let request = Arc::new((keys.clone(), token.to_owned()));
        let mut outstanding: FuturesUnordered<_> = self
            .servers
            .iter()
            .enumerate()
            .map(|(index, server)| {
                let (server, request) = (server.clone(), request.clone());
                async move {
                    let (keys, token) = &*request;
                    let answer =
                        bounded(&server, Some(limit), acquire_on(&server, keys, token, ttl)).await;
                    (index, answer)
                }
            })
            .collect();
        let mut answers = Vec::with_capacity(self.servers.len());
        let mut answered = vec![false; self.servers.len()];
        let mut granted = 0;
        // Once a quorum granted: until when the other servers' answers are still awaited
        // here.
        let mut grace: Option<Instant> = None;
        loop {
            let next = match grace {
                None => outstanding.next().await,
                Some(until) => match tokio::time::timeout_at(until, outstanding.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        // Each outstanding answer is bounded by `limit`, plus the connect
                        // timeout while connecting; and one more `limit` for its task to
                        // be scheduled.
                        let connect = self.servers[0].timeouts().connect;
                        let bound = limit.saturating_mul(2).saturating_add(connect);
                        let until = started.checked_add(bound).unwrap_or(started);
                        let slower = (0..answered.len()).filter(|index| !answered[*index]);
                        let mut straggling = self.stragglers.register(token, slower, until);
                        crate::runtime::spawn_tracked(async move {
                            while let Some((index, _)) = outstanding.next().await {
                                straggling.answered(index);
                            }
                        });
                        return (answers, started.elapsed());
                    }
                },
            };
            let Some((index, answer)) = next else {
                return (answers, started.elapsed());
            };
            answered[index] = true;
            granted += usize::from(matches!(answer, Ok((true, _))));
            answers.push(answer);
            if grace.is_none() && granted >= self.quorum() {
                grace = Some(Instant::now() + started.elapsed().max(MIN_QUORUM_GRACE));
            }
        }
    }

    /// Waiters do not queue: they hear frees on the lock's channel, on one live server
    /// (a release publishes on every server it reaches). A random one spreads them.
    pub(crate) async fn listen(&self, keys: &LockKeys, token: &str) -> Result<Listener, LockError> {
        let first = fastrand::usize(..self.servers.len());
        let limit = self.timeout().max(Duration::from_millis(250));
        let mut failures = Vec::new();
        for index in 0..self.servers.len() {
            let server = &self.servers[(first + index) % self.servers.len()];
            let channel = keys.channel().to_string();
            let listened = server.listen_on(token, &channel, keys.lock_name());
            match tokio::time::timeout(limit, listened).await {
                Ok(Ok(registration)) => {
                    return Ok(Listener {
                        registration,
                        inbox: Inbox::Channel(server.inbox().clone()),
                    });
                }
                Ok(Err(error)) => failures.push(failure(server, error)),
                Err(_) => failures.push(ServerFailure::Timeout {
                    server: server.address().to_owned(),
                    after: limit,
                }),
            }
        }
        Err(self.no_quorum(Some(keys), 0, 0, failures))
    }

    /// No queue: a plain attempt.
    pub(crate) async fn acquire_queued(
        &self,
        request: Request<'_>,
        _spec: &crate::queue::QueueSpec,
        _listener: &Listener,
    ) -> Result<Attempt, LockError> {
        self.acquire(request).await
    }

    pub(crate) async fn release(
        &self,
        keys: &LockKeys,
        token: &str,
    ) -> Result<ReleaseReport, LockError> {
        let answers = self
            .on_all(&[token], Some(self.timeout()), |server| {
                release_on(server, keys, token)
            })
            .await;
        let (released, failures) = split(answers);
        let servers_held = released.iter().filter(|held| **held).count();
        match decide_release(self.servers.len(), servers_held, failures.len()) {
            Some(held) => Ok(ReleaseReport {
                held,
                servers_held,
                servers: self.servers.len(),
            }),
            None => Err(self.no_quorum(Some(keys), released.len(), servers_held, failures)),
        }
    }

    pub(crate) async fn extend(
        &self,
        keys: &LockKeys,
        token: &str,
        by: Duration,
        mode: ExtendMode,
    ) -> Result<Option<Duration>, LockError> {
        let limit = match mode {
            ExtendMode::Renew | ExtendMode::Set => self.timeout_for(by),
            ExtendMode::Add => self.timeout(),
        };
        // Not before the slower servers' SET NX: it would set their TTL afterwards.
        let answers = self
            .on_all(&[token], Some(limit), |server| {
                ops::extend(server, keys, token, by, mode)
            })
            .await;
        self.decide_extend(keys, answers)
    }

    fn decide_extend(
        &self,
        keys: &LockKeys,
        answers: Vec<Answer<Option<Duration>>>,
    ) -> Result<Option<Duration>, LockError> {
        let (extended, failures) = split(answers);
        let granted: Vec<Duration> = extended.iter().filter_map(|left| *left).collect();
        match decide_extend(self.servers.len(), &granted, failures.len()) {
            Ok(left) => Ok(left),
            Err(()) => Err(self.no_quorum(Some(keys), extended.len(), granted.len(), failures)),
        }
    }

    pub(crate) async fn extend_many(
        &self,
        batch: &[Renewal<'_>],
    ) -> Vec<Result<Option<Duration>, LockError>> {
        // Each lock's budget is its own TTL's; a batch of many chunks gets one per chunk.
        let longest = batch
            .iter()
            .map(|renewal| renewal.ttl)
            .max()
            .unwrap_or_default();
        let chunks =
            u32::try_from(batch.len().div_ceil(ops::RENEWALS_PER_CALL)).unwrap_or(u32::MAX);
        let limit = self.timeout_for(longest).saturating_mul(chunks.max(1));
        // A lock whose acquire a server has not answered yet is renewed there in the
        // background once it has (never before its SET NX), and counts as silent here:
        // the renewal task must not wait for a slow server while the others decide.
        let tokens = batch.iter().map(|renewal| renewal.token);
        let waiting = self.stragglers.waiting(tokens, self.servers.len());
        let per_server = join_all(self.servers.iter().zip(&waiting).enumerate().map(
            |(index, (server, waiting))| async move {
                if waiting.is_empty() {
                    return renew_on(server, batch, limit).await;
                }
                self.renew_once_answered(index, waiting.iter().map(|&lock| &batch[lock]), limit);
                let mut deferred = vec![false; batch.len()];
                waiting.iter().for_each(|&lock| deferred[lock] = true);
                let now: Vec<Renewal<'_>> = batch
                    .iter()
                    .zip(&deferred)
                    .filter(|(_, deferred)| !**deferred)
                    .map(|(renewal, _)| *renewal)
                    .collect();
                let mut answers = renew_on(server, &now, limit).await.into_iter();
                deferred
                    .iter()
                    .map(|deferred| match deferred {
                        true => Err(ServerFailure::Unusable {
                            server: server.address().to_owned(),
                            reason: "has not answered this lock's acquire yet; renewed there \
                                     once it has"
                                .into(),
                        }),
                        false => answers.next().unwrap_or_else(|| {
                            Err(ServerFailure::Unusable {
                                server: server.address().to_owned(),
                                reason: "no answer for this lock in the batch".into(),
                            })
                        }),
                    })
                    .collect()
            },
        ))
        .await;
        // Turn per-server lists into per-lock answers.
        let mut per_lock: Vec<Vec<Answer<Option<Duration>>>> = batch
            .iter()
            .map(|_| Vec::with_capacity(self.servers.len()))
            .collect();
        for answers in per_server {
            for (answer, lock) in answers.into_iter().zip(&mut per_lock) {
                lock.push(answer);
            }
        }
        batch
            .iter()
            .zip(per_lock)
            .map(|(renewal, answers)| self.decide_extend(renewal.keys, answers))
            .collect()
    }

    /// Renews `renewals` on server `index` in the background, once it has answered their
    /// acquires (or at their bound).
    fn renew_once_answered<'a>(
        &self,
        index: usize,
        renewals: impl Iterator<Item = &'a Renewal<'a>>,
        limit: Duration,
    ) {
        let owned: Vec<(LockKeys, Box<str>, Duration)> = renewals
            .map(|renewal| (renewal.keys.clone(), renewal.token.into(), renewal.ttl))
            .collect();
        let (server, stragglers) = (self.servers[index].clone(), self.stragglers.clone());
        crate::runtime::spawn_tracked(async move {
            let tokens: Vec<&str> = owned.iter().map(|(_, token, _)| &**token).collect();
            stragglers.settled_on(&tokens, index).await;
            let renewals: Vec<Renewal<'_>> = owned
                .iter()
                .map(|(keys, token, ttl)| Renewal {
                    keys,
                    token,
                    ttl: *ttl,
                })
                .collect();
            renew_on(&server, &renewals, limit).await;
        });
    }

    pub(crate) async fn holder(
        &self,
        keys: &LockKeys,
        token: &str,
    ) -> Result<Option<String>, LockError> {
        let answers = self
            .on_all(&[], Some(self.timeout()), |server| {
                ops::holder(server, keys, token)
            })
            .await;
        let (holders, failures) = split(answers);
        match majority_holder(self.servers.len(), &holders) {
            Some(holder) => Ok(holder.cloned()),
            None => Err(self.no_quorum(Some(keys), holders.len(), 0, failures)),
        }
    }

    pub(crate) async fn remaining(&self, keys: &LockKeys) -> Result<Remaining, LockError> {
        let answers = self
            .on_all(&[], Some(self.timeout()), |server| {
                ops::remaining(server, keys)
            })
            .await;
        let (mut remaining, failures) = split(answers);
        if remaining.len() < self.quorum() {
            let answered = remaining.len();
            return Err(self.no_quorum(Some(keys), answered, answered, failures));
        }
        Ok(quorum_remaining(self.servers.len(), &mut remaining))
    }

    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        // No per-server bound: a ping also connects, within the connect timeout.
        let answers = self.on_all(&[], None, ops::ping).await;
        let (answered, failures) = split(answers);
        if answered.len() >= self.quorum() {
            if !failures.is_empty() {
                tracing::warn!(
                    name: "lock.servers_unreachable",
                    target: crate::observe::TARGET,
                    ?failures,
                    "some Redlock servers are unreachable"
                );
            }
            return Ok(());
        }
        Err(self.no_quorum(None, answered.len(), answered.len(), failures))
    }
}

/// One server's acquire: `SET NX PX` and the holder's `PTTL` in one round trip.
async fn acquire_on(
    server: &Server,
    keys: &LockKeys,
    token: &str,
    ttl: Duration,
) -> Result<(bool, Remaining), LockError> {
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(keys.key())
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(millis::expiry(ttl))
        .cmd("PTTL")
        .arg(keys.key());
    let mut connection = server.connection().await?;
    let (set, pttl): (redis::Value, i64) = pipe
        .query_async(&mut connection)
        .await
        .map_err(|source| server.error(keys.lock_name(), source))?;
    Ok((set != redis::Value::Nil, Remaining::from_pttl(pttl)))
}

/// One server's answers to a renewal batch, a lock each, within `limit` (none for an
/// empty batch).
async fn renew_on(
    server: &Server,
    renewals: &[Renewal<'_>],
    limit: Duration,
) -> Vec<Answer<Option<Duration>>> {
    if renewals.is_empty() {
        return Vec::new();
    }
    let answers = bounded(server, Some(limit), async {
        Ok::<_, LockError>(ops::extend_many(server, renewals).await)
    })
    .await;
    match answers {
        Ok(answers) => answers
            .into_iter()
            .map(|answer| answer.map_err(|error| failure(server, error)))
            .collect(),
        Err(missing) => renewals.iter().map(|_| Err(missing.clone())).collect(),
    }
}

/// One server's release: owner-checked delete that announces the free.
async fn release_on(server: &Server, keys: &LockKeys, token: &str) -> Result<bool, LockError> {
    let mut invocation = Eval::new(&RELEASE_FREE, 2);
    invocation.key(keys.key()).key(keys.channel()).arg(token);
    let released: i64 = server.eval(&invocation, keys.lock_name()).await?;
    Ok(released == 1)
}

/// `answer`, bounded by `limit` plus the connect timeout for a server that has not
/// answered on this runtime yet (connecting); a failure names the server.
async fn bounded<T>(
    server: &Server,
    limit: Option<Duration>,
    answer: impl Future<Output = Result<T, LockError>>,
) -> Answer<T> {
    let answer = match limit {
        Some(limit) => {
            let after = if server.answered_before() {
                limit
            } else {
                limit + server.timeouts().connect
            };
            tokio::time::timeout(after, answer)
                .await
                .map_err(|_| ServerFailure::Timeout {
                    server: server.address().to_owned(),
                    after,
                })?
        }
        None => answer.await,
    };
    if answer.is_ok() {
        server.answered();
    }
    answer.map_err(|error| failure(server, error))
}

fn failure(server: &Server, error: LockError) -> ServerFailure {
    let server = server.address().to_owned();
    match error {
        LockError::Connect { source, .. }
        | LockError::Auth { source, .. }
        | LockError::Backend { source, .. } => ServerFailure::Failed { server, source },
        other => ServerFailure::Unusable {
            server,
            reason: other.to_string(),
        },
    }
}

/// A short random pause before the next attempt after a split vote, so that contenders
/// who each got part of the servers do not collide again in lockstep.
fn split_vote_backoff(limit: Duration) -> Duration {
    (limit * 2).mul_f64(fastrand::f64()) + Duration::from_millis(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_too_short_for_the_margin_are_refused_with_the_minimum() {
        let redlock = Redlock {
            servers: Vec::new(),
            server_timeout: None,
            stragglers: Arc::default(),
        };
        let refused = redlock.refuse_ttl(Duration::from_millis(3)).unwrap();
        assert!(refused.contains("at least 8 ms"), "{refused}");
        assert!(redlock.refuse_ttl(Duration::from_millis(8)).is_none());
        assert!(redlock.refuse_ttl(Duration::from_secs(30)).is_none());
    }
}
