//! Lock operations on one Redis server, shared by the single-server backend and by every
//! server of a Redlock: owner-checked extend and renewal, inspection, ping. Each works on
//! locks and on semaphores (whose permits are leases in a sorted set).

use std::time::Duration;

use super::{ExtendMode, Remaining, Renewal};
use crate::driver::Server;
use crate::key::{Kind, LockKeys};
use crate::scripts::{EXTEND, EXTEND_MANY, Eval, SEMAPHORE_EXTEND, SEMAPHORE_INSPECT};
use crate::{LockError, millis};

/// Locks renewed per script call: bounds the time one call blocks the server.
pub(super) const RENEWALS_PER_CALL: usize = 500;

/// Changes the expiry if `token` owns the key; the new remaining time, or `None`.
pub(crate) async fn extend(
    server: &Server,
    keys: &LockKeys,
    token: &str,
    by: Duration,
    mode: ExtendMode,
) -> Result<Option<Duration>, LockError> {
    let left: u64 = server
        .eval(&extend_call(keys, token, by, mode), keys.lock_name())
        .await?;
    Ok((left > 0).then(|| millis::reported(left)))
}

/// The owner-checked extend of a lock or a permit, as one script call: it answers the
/// remaining milliseconds, 0 when `token` does not own it.
pub(crate) fn extend_call(keys: &LockKeys, token: &str, by: Duration, mode: ExtendMode) -> Eval {
    let script = match keys.kind() {
        Kind::Lock => &EXTEND,
        Kind::Semaphore { .. } => &SEMAPHORE_EXTEND,
    };
    let mut invocation = Eval::new(script, 1);
    invocation
        .key(keys.key())
        .arg(token)
        .arg(millis::expiry(by))
        .arg(match mode {
            ExtendMode::Renew => "renew",
            ExtendMode::Add => "add",
            ExtendMode::Set => "set",
        });
    invocation
}

/// Renews `batch` (locks of one slot, on Cluster) in calls of at most 500 locks.
pub(crate) async fn extend_many(
    server: &Server,
    batch: &[Renewal<'_>],
) -> Vec<Result<Option<Duration>, LockError>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for chunk in batch.chunks(RENEWALS_PER_CALL) {
        let mut invocation = Eval::new(&EXTEND_MANY, chunk.len());
        for renewal in chunk {
            invocation.key(renewal.keys.key());
        }
        for renewal in chunk {
            invocation
                .arg(renewal.token)
                .arg(millis::expiry(renewal.ttl))
                .arg(match renewal.keys.kind() {
                    Kind::Lock => "l",
                    Kind::Semaphore { .. } => "s",
                });
        }
        match server.eval::<Vec<u64>>(&invocation, "").await {
            Ok(renewed) => outcomes.extend(
                renewed
                    .into_iter()
                    .map(|ms| Ok((ms > 0).then(|| millis::reported(ms)))),
            ),
            Err(error) => outcomes.extend(chunk.iter().map(|renewal| {
                Err(match &error {
                    LockError::Backend { source, .. } => LockError::Backend {
                        name: renewal.keys.lock_name().to_owned(),
                        source: source.clone(),
                    },
                    other => other.clone(),
                })
            })),
        }
    }
    outcomes
}

/// The lock's owner token, if any (a semaphore's: `token` when it holds a permit).
pub(crate) async fn holder(
    server: &Server,
    keys: &LockKeys,
    token: &str,
) -> Result<Option<String>, LockError> {
    if let Kind::Lock = keys.kind() {
        return server
            .query(redis::cmd("GET").arg(keys.key()), keys.lock_name())
            .await;
    }
    let [own, _] = inspect(server, keys, token).await?;
    Ok((own >= 0).then(|| token.to_owned()))
}

/// How long the lock stays held (a semaphore: until its first lease ends).
pub(crate) async fn remaining(server: &Server, keys: &LockKeys) -> Result<Remaining, LockError> {
    if let Kind::Lock = keys.kind() {
        let pttl: i64 = server
            .query(redis::cmd("PTTL").arg(keys.key()), keys.lock_name())
            .await?;
        return Ok(Remaining::from_pttl(pttl));
    }
    let [_, first] = inspect(server, keys, "").await?;
    Ok(match u64::try_from(first) {
        Ok(ms) => Remaining::Expires(millis::reported(ms)),
        Err(_) => Remaining::Free,
    })
}

/// A semaphore: the time left of `token`'s lease and of the first lease to end, in ms
/// (-2: none).
async fn inspect(server: &Server, keys: &LockKeys, token: &str) -> Result<[i64; 2], LockError> {
    let mut invocation = Eval::new(&SEMAPHORE_INSPECT, 1);
    invocation.key(keys.key()).arg(token);
    let reply: Vec<i64> = server.eval(&invocation, keys.lock_name()).await?;
    match reply[..] {
        [own, first] => Ok([own, first]),
        _ => Err(super::unexpected_reply(keys, &reply)),
    }
}

/// Checks that the server answers.
pub(crate) async fn ping(server: &Server) -> Result<(), LockError> {
    let _: String = server.query(&redis::cmd("PING"), "").await?;
    Ok(())
}
