//! Redlock: one lock over N independent Redis servers, held when a majority holds it.
//!
//! Every operation goes to all servers at once, each bounded by a per-server timeout, and
//! needs a quorum (`N / 2 + 1`) of agreeing answers. An acquire counts as won only if the
//! quorum granted it and time is left of the TTL after the round trip and a drift margin;
//! otherwise what was granted is released everywhere. Each attempt uses a fresh owner
//! token, so a late clean-up of a failed attempt cannot delete what a later one won. The
//! decisions from the servers' answers are pure functions, tested below.
//!
//! No operation waits for a slow, hung or unreachable minority once the others decided it
//! ([`until_decided`]): the other servers get as long again as the decision took (at
//! least 1 ms), and the requests still outstanding then are awaited by a background task
//! (each bounded, as before); they count as silent. Three things make that safe:
//!
//! - Their commands still go out: redis-rs drops a command whose caller went away before
//!   its connection wrote it, so the task, not the returning caller, owns those requests.
//!   Otherwise a lock would rest on a bare quorum and be lost at the next server's death.
//! - A later command of a token reaches each server only after that server answered the
//!   token's earlier commands still outstanding ([`Stragglers`]), so a release or extend
//!   never reaches a server before that server's `SET NX` (the key would then outlive the
//!   release for its whole TTL, or keep its first TTL after the extend), and a
//!   `release_after` is not overtaken by the extend before it. Waiting for the answer, not
//!   relying on the order of one connection, also holds while a connection is still being
//!   opened or reopened, when redis-rs has not queued either command yet. A renewal sends
//!   there from a background task, so the renewal task, which renews every lock of its
//!   runtime, never waits for a slow server; the lock counts as silent there.
//! - Every command after the `SET NX` is owner-checked, so one that reaches its server
//!   late (a release after the lock went to someone else) changes nothing.
//!
//! A release does not leave a server its runtime is connected to behind: a background
//! task ends with its runtime, and there the `SET NX` was sent, so an awaited release
//! would otherwise need a flush.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use super::quorum::{
    Answer, decide_extend, decide_release, majority_holder, quorum, quorum_remaining, split,
};
use super::round::{Round, finish_in_background, missing, until_decided};
use super::stragglers::Stragglers;
use super::{Attempt, ExtendMode, Listener, ReleaseReport, Remaining, Renewal, Request, ops};
use crate::driver::{Server, Timeouts};
use crate::error::ServerFailure;
use crate::key::LockKeys;
use crate::queue::Inbox;
use crate::runtime::Tracker;
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
    /// This locker's background work, for `Locker::flush`.
    pub(super) tracker: Arc<Tracker>,
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
            tracker: Arc::default(),
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

    /// Runs the read `operation` on every server at once, each bounded by `limit`, plus the
    /// connect timeout for a server that has not answered on this runtime yet
    /// (connecting), and returns every answer.
    async fn on_all<'a, T, F, Fut>(
        &'a self,
        limit: Option<Duration>,
        operation: F,
    ) -> Vec<Answer<T>>
    where
        F: Fn(&'a Server) -> Fut,
        Fut: Future<Output = Result<T, LockError>> + 'a,
    {
        join_all(
            self.servers
                .iter()
                .map(|server| bounded(server, limit, operation(server))),
        )
        .await
    }

    /// Runs `operation` for the owner `token` on every server at once, each bounded by
    /// `limit` (plus the connect timeout while connecting), and returns once the answers
    /// are `decided` and the other servers had as long again ([`until_decided`]). On a
    /// server that had not answered `token`'s acquire yet, the operation waits for that
    /// answer first ([`Stragglers`]), and its bound starts then.
    ///
    /// The requests still outstanding then go on in the background: an owner-checked
    /// command that reaches its server late changes nothing another owner holds. Their
    /// answers count as silent. With `connected_too`, not before every server this
    /// runtime is connected to answered (or timed out): a background task dies with its
    /// runtime, so a release left to one could be lost where it is needed, on a server
    /// that already has (or will run) the `SET NX`. Where the connection is still being
    /// opened, nothing of this runtime's was sent yet, and nothing will be once it ends.
    async fn owner_round<T, Op, Fut>(
        &self,
        keys: &LockKeys,
        token: &str,
        limit: Duration,
        connected_too: bool,
        operation: Op,
        decided: impl Fn(&[Option<Answer<T>>]) -> bool,
    ) -> Vec<Answer<T>>
    where
        Op: Fn(Arc<Server>, Arc<(LockKeys, String)>) -> Fut,
        Fut: Future<Output = Result<T, LockError>> + Send + 'static,
        T: Send + 'static,
    {
        let started = Instant::now();
        // Owned, so that the outstanding requests can outlive this call.
        let request = Arc::new((keys.clone(), token.to_owned()));
        let requests: FuturesUnordered<_> = self
            .servers
            .iter()
            .enumerate()
            .map(|(index, server)| {
                let answer = operation(server.clone(), request.clone());
                let server = server.clone();
                let settled = self.stragglers.settled(&[token], index);
                async move {
                    settled.await;
                    (index, bounded(&server, Some(limit), answer).await)
                }
            })
            .collect();
        let connected: Vec<bool> = match connected_too {
            true => self
                .servers
                .iter()
                .map(|server| server.answered_before())
                .collect(),
            false => Vec::new(),
        };
        let decided = |answers: &[Option<Answer<T>>]| {
            let waited = connected
                .iter()
                .zip(answers)
                .all(|(connected, answer)| !connected || answer.is_some());
            waited && decided(answers)
        };
        let round = until_decided(self.servers.len(), requests, started, None, decided).await;
        let Round {
            answers,
            outstanding,
        } = round;
        self.hand_over(&[token], &answers, outstanding, limit);
        answers
            .into_iter()
            .enumerate()
            .map(|(index, answer)| answer.unwrap_or_else(|| Err(self.undecided(index))))
            .collect()
    }

    /// Lets the `outstanding` requests of a round (the servers without one of `answers`)
    /// finish in a background task, and registers them in [`Stragglers`] for the later
    /// commands of `tokens`.
    fn hand_over<T, Fut>(
        &self,
        tokens: &[&str],
        answers: &[Option<T>],
        outstanding: FuturesUnordered<Fut>,
        limit: Duration,
    ) where
        Fut: Future<Output = (usize, T)> + Send + 'static,
        T: Send + 'static,
    {
        if outstanding.is_empty() {
            return;
        }
        let bound = self.straggler_bound(limit);
        let mut straggling =
            self.stragglers
                .register(tokens.iter().copied(), missing(answers), bound);
        finish_in_background(&self.tracker, outstanding, move |index| {
            straggling.answered(index);
        });
    }

    /// How long a request handed to the background may take: `limit`, plus the connect
    /// timeout while connecting, and one more `limit` for its task to be scheduled.
    fn straggler_bound(&self, limit: Duration) -> Duration {
        let connect = self.servers[0].timeouts().connect;
        limit.saturating_mul(2).saturating_add(connect)
    }

    /// What a server that had not answered when the others decided counts as.
    fn undecided(&self, index: usize) -> ServerFailure {
        ServerFailure::Unusable {
            server: self.servers[index].address().to_owned(),
            reason: "had not answered when the other servers decided; the command goes on \
                     in the background"
                .into(),
        }
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

    /// Releases `token`'s key on every server; the outcome: whether a quorum held it and
    /// the answers, the slower servers' as silent (decided on, as [`decide_release`]).
    async fn release_everywhere(
        &self,
        keys: &LockKeys,
        token: &str,
    ) -> (Option<bool>, Vec<Answer<bool>>) {
        let servers = self.servers.len();
        let release = |server: Arc<Server>, request: Arc<(LockKeys, String)>| async move {
            release_on(&server, &request.0, &request.1).await
        };
        let answers = self
            .owner_round(keys, token, self.timeout(), true, release, |answers| {
                release_outcome(servers, answers.iter().map(Option::as_ref)).is_some()
            })
            .await;
        (release_outcome(servers, answers.iter().map(Some)), answers)
    }

    pub(crate) async fn acquire(&self, request: Request<'_>) -> Result<Attempt, LockError> {
        let Request {
            keys, token, ttl, ..
        } = request;
        let limit = self.timeout_for(ttl);
        let started = Instant::now();
        // Returns once a quorum granted or refused: a hung or far server costs the
        // acquire about the quorum's time again instead of its per-server timeout. The
        // slower servers' `SET NX` goes on in the background (see `owner_round`).
        let quorum = self.quorum();
        let acquire = |server: Arc<Server>, request: Arc<(LockKeys, String)>| async move {
            acquire_on(&server, &request.0, &request.1, ttl).await
        };
        let answers = self
            .owner_round(keys, token, limit, false, acquire, |answers| {
                let said = |granted: bool| {
                    let said = |answer: &&Option<Answer<(bool, Remaining)>>| {
                        matches!(answer, Some(Ok((won, _))) if *won == granted)
                    };
                    answers.iter().filter(said).count()
                };
                said(true) >= quorum || said(false) >= quorum
            })
            .await;
        let elapsed = started.elapsed();
        let (attempts, failures) = split(answers);
        let granted = attempts.iter().filter(|(won, _)| *won).count();
        let validity = ttl.checked_sub(elapsed + self.drift(ttl));
        if granted >= self.quorum() && validity.is_some_and(|left| !left.is_zero()) {
            return Ok(Attempt::Won { fence: None });
        }
        if granted > 0 || !failures.is_empty() {
            // Failures too: a server that timed out, or had not answered yet, may have
            // set the key.
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
        let (outcome, answers) = self.release_everywhere(keys, token).await;
        let (released, failures) = split(answers);
        let servers_held = released.iter().filter(|held| **held).count();
        match outcome {
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
        let extend = |server: Arc<Server>, request: Arc<(LockKeys, String)>| async move {
            ops::extend(&server, &request.0, &request.1, by, mode).await
        };
        let servers = self.servers.len();
        let answers = self
            .owner_round(keys, token, limit, false, extend, |answers| {
                let granted: Vec<Duration> = answers
                    .iter()
                    .flatten()
                    .flatten()
                    .flatten()
                    .copied()
                    .collect();
                let silent = answers.iter().filter(|a| !matches!(a, Some(Ok(_)))).count();
                decide_extend(servers, &granted, silent).is_ok()
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
        let started = Instant::now();
        // Owned, so that a slower server's part can outlive the round.
        let owned: OwnedBatch = batch
            .iter()
            .map(|renewal| (renewal.keys.clone(), renewal.token.into(), renewal.ttl))
            .collect();
        // A lock whose acquire a server has not answered yet is renewed there in the
        // background once it has (never before its SET NX), and counts as silent here:
        // the renewal task must not wait for a slow server while the others decide.
        let tokens = batch.iter().map(|renewal| renewal.token);
        let waiting = self.stragglers.waiting(tokens, self.servers.len());
        let requests: FuturesUnordered<_> = self
            .servers
            .iter()
            .zip(waiting)
            .enumerate()
            .map(|(index, (server, waiting))| {
                let deferred = (!waiting.is_empty()).then(|| {
                    self.renew_once_answered(index, &owned, &waiting, limit);
                    let mut deferred = vec![false; owned.len()];
                    waiting.iter().for_each(|&lock| deferred[lock] = true);
                    deferred
                });
                let (server, owned) = (server.clone(), owned.clone());
                async move { (index, renew_now(&server, &owned, deferred, limit).await) }
            })
            .collect();
        // Every lock decided: renewed by a quorum, or refused by so many that the rest
        // cannot make one. And never longer than a connected server's bound: past it, only
        // servers still being connected are left, and waiting for them would hold up the
        // renewal of every other lock of this runtime.
        let quorum = self.quorum();
        let decided = |answers: &[Option<Vec<Answer<Option<Duration>>>>]| {
            (0..owned.len()).all(|lock| {
                let (mut granted, mut maybe) = (0, 0);
                for answer in answers {
                    match answer.as_ref().map(|answers| &answers[lock]) {
                        Some(Ok(Some(_))) => granted += 1,
                        Some(Ok(None)) => {}
                        Some(Err(_)) | None => maybe += 1,
                    }
                }
                granted >= quorum || granted + maybe < quorum
            })
        };
        let cap = Some(started + limit);
        let Round {
            answers,
            outstanding,
        } = until_decided(self.servers.len(), requests, started, cap, decided).await;
        if !outstanding.is_empty() {
            let tokens: Vec<&str> = batch.iter().map(|renewal| renewal.token).collect();
            self.hand_over(&tokens, &answers, outstanding, limit);
        }
        let per_server: Vec<Vec<Answer<Option<Duration>>>> = answers
            .into_iter()
            .enumerate()
            .map(|(index, answers)| {
                answers.unwrap_or_else(|| vec![Err(self.undecided(index)); owned.len()])
            })
            .collect();
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

    /// Renews the locks at `positions` of `owned` on server `index` in the background,
    /// once it has answered their acquires (or at their bound).
    fn renew_once_answered(
        &self,
        index: usize,
        owned: &OwnedBatch,
        positions: &[usize],
        limit: Duration,
    ) {
        let tokens: Vec<&str> = positions.iter().map(|&lock| &*owned[lock].1).collect();
        // After the commands before it, and before the ones after it.
        let settled = self.stragglers.settled(&tokens, index);
        let bound = self.straggler_bound(limit);
        let straggling = self.stragglers.register(tokens, [index], bound);
        let server = self.servers[index].clone();
        let (owned, positions) = (owned.clone(), positions.to_vec());
        self.tracker.spawn(async move {
            let _straggling = straggling;
            settled.await;
            let renewals: Vec<Renewal<'_>> = positions
                .iter()
                .map(|&lock| renewal(&owned[lock]))
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
            .on_all(Some(self.timeout()), |server| {
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
            .on_all(Some(self.timeout()), |server| ops::remaining(server, keys))
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
        let answers = self.on_all(None, ops::ping).await;
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

/// A renewal batch, owned: each lock's keys, owner token and TTL.
type OwnedBatch = Arc<[(LockKeys, Box<str>, Duration)]>;

fn renewal(owned: &(LockKeys, Box<str>, Duration)) -> Renewal<'_> {
    let (keys, token, ttl) = owned;
    Renewal {
        keys,
        token,
        ttl: *ttl,
    }
}

/// One server's answers to a renewal batch, a lock each: the `deferred` ones (whose
/// acquire the server has not answered yet) count as silent, the others are renewed now,
/// within `limit`.
async fn renew_now(
    server: &Server,
    owned: &[(LockKeys, Box<str>, Duration)],
    deferred: Option<Vec<bool>>,
    limit: Duration,
) -> Vec<Answer<Option<Duration>>> {
    let Some(deferred) = deferred else {
        let renewals: Vec<Renewal<'_>> = owned.iter().map(renewal).collect();
        return renew_on(server, &renewals, limit).await;
    };
    let renewals: Vec<Renewal<'_>> = owned
        .iter()
        .zip(&deferred)
        .filter(|(_, deferred)| !**deferred)
        .map(|(owned, _)| renewal(owned))
        .collect();
    let mut answers = renew_on(server, &renewals, limit).await.into_iter();
    deferred
        .iter()
        .map(|deferred| match deferred {
            true => Err(ServerFailure::Unusable {
                server: server.address().to_owned(),
                reason: "has not answered this lock's acquire yet; renewed there once it has"
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

/// A release's outcome from the servers' answers so far (`None`: not answered yet, as
/// silent as a failure), as [`decide_release`].
fn release_outcome<'a>(
    servers: usize,
    answers: impl Iterator<Item = Option<&'a Answer<bool>>> + Clone,
) -> Option<bool> {
    let held = answers
        .clone()
        .filter(|a| matches!(a, Some(Ok(true))))
        .count();
    let silent = answers.filter(|a| !matches!(a, Some(Ok(_)))).count();
    decide_release(servers, held, silent)
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
            tracker: Arc::default(),
        };
        let refused = redlock.refuse_ttl(Duration::from_millis(3)).unwrap();
        assert!(refused.contains("at least 8 ms"), "{refused}");
        assert!(redlock.refuse_ttl(Duration::from_millis(8)).is_none());
        assert!(redlock.refuse_ttl(Duration::from_secs(30)).is_none());
    }
}
