//! Combining: unfenced acquires and releases on one server that arrive while earlier
//! ones are still in flight are sent together, as one script call.
//!
//! A request goes out at once, as its own command, while fewer than [`IN_FLIGHT`]
//! requests are outstanding (so a lone caller pays nothing). Otherwise it joins the
//! pending batch; when an outstanding request completes, the pending batch is sent as one
//! `batch.lua` call by a spawned task, which keeps sending what accumulated meanwhile
//! until nothing is pending. Under load this turns hundreds of commands (each a parse,
//! a reply, a wake-up on both sides) into a few script calls.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};
use tokio::sync::oneshot;

use crate::LockError;
use crate::key::LockKeys;

/// Requests sent on their own before later ones wait to be combined.
const IN_FLIGHT: usize = 2;

/// Operations per script call: bounds how long one call blocks the server.
const PER_CALL: usize = 256;

static BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/release_fn.lua"),
        include_str!("scripts/batch.lua")
    ))
});

/// One operation of a batch, with what it needs to outlive its caller's borrow.
#[derive(Debug)]
pub(crate) enum Op {
    /// `SET key token NX PX ttl`.
    Acquire {
        key: String,
        token: String,
        ttl_ms: u64,
    },
    /// The release script for `keys`.
    Release { keys: LockKeys, token: String },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Self::Acquire { key, .. } => key,
            Self::Release { keys, .. } => keys.key(),
        }
    }
}

/// 1 when acquired or released, else 0; or why the call failed.
type Reply = Result<i64, LockError>;

struct Pending {
    op: Op,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    pending: Vec<Pending>,
}

/// The combining state of one server's connection. Only a lone server combines, so its
/// releases never publish frees (see `release_fn.lua`).
#[derive(Default)]
pub(crate) struct Batcher {
    state: Mutex<State>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

/// How a caller goes ahead: alone, or in the next batch.
pub(crate) enum Entry {
    /// Send your own command; the permit hands on the pending batch when dropped.
    Alone(Permit),
    /// Await the batch's answer.
    Batched(oneshot::Receiver<Reply>),
}

/// One outstanding request of a caller that went alone.
pub(crate) struct Permit {
    batcher: Arc<Batcher>,
    connection: Option<ConnectionManager>,
}

impl Permit {
    /// The connection the pending batch is sent on, once the caller has one.
    pub(crate) fn connection(&mut self, connection: &ConnectionManager) {
        self.connection = Some(connection.clone());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.batcher.finished(self.connection.take());
    }
}

impl Batcher {
    /// Goes alone if few requests are outstanding, or joins the pending batch with `op`.
    pub(crate) fn enter(self: &Arc<Self>, op: impl FnOnce() -> Op) -> Entry {
        let mut state = self.state();
        if state.in_flight < IN_FLIGHT {
            state.in_flight += 1;
            return Entry::Alone(Permit {
                batcher: self.clone(),
                connection: None,
            });
        }
        let (reply, receiver) = oneshot::channel();
        state.pending.push(Pending { op: op(), reply });
        Entry::Batched(receiver)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An outstanding request completed: send what is pending, or count it out.
    fn finished(self: &Arc<Self>, connection: Option<ConnectionManager>) {
        let batch = {
            let mut state = self.state();
            if state.pending.is_empty() {
                state.in_flight -= 1;
                return;
            }
            std::mem::take(&mut state.pending)
        };
        let (Some(connection), Ok(runtime)) = (connection, tokio::runtime::Handle::try_current())
        else {
            // No connection (it failed) or no runtime: the pending callers learn it.
            self.state().in_flight -= 1;
            for pending in batch {
                let error = LockError::Backend {
                    key: pending.op.key().to_owned(),
                    source: RedisError::from(std::io::Error::other(
                        "the request this one was queued behind could not reach the server",
                    )),
                };
                let _ = pending.reply.send(Err(error));
            }
            return;
        };
        runtime.spawn(self.clone().send_all(connection, batch));
    }

    /// Sends `batch`, then whatever is pending, until nothing is.
    async fn send_all(self: Arc<Self>, mut connection: ConnectionManager, mut batch: Vec<Pending>) {
        loop {
            // Nobody waits for these acquires any more: do not take the locks.
            batch.retain(|pending| {
                !(matches!(pending.op, Op::Acquire { .. }) && pending.reply.is_closed())
            });
            let mut orphans = Vec::new();
            while !batch.is_empty() {
                let rest = batch.split_off(batch.len().min(PER_CALL));
                let chunk = std::mem::replace(&mut batch, rest);
                orphans.extend(self.send(&mut connection, chunk).await);
            }
            let mut state = self.state();
            state.pending.extend(orphans);
            if state.pending.is_empty() {
                state.in_flight -= 1;
                return;
            }
            batch = std::mem::take(&mut state.pending);
        }
    }

    /// One script call; answers every caller. Returns releases for locks taken for
    /// callers that went away meanwhile.
    async fn send(&self, connection: &mut ConnectionManager, chunk: Vec<Pending>) -> Vec<Pending> {
        let mut invocation = BATCH.prepare_invoke();
        invocation.arg("0");
        for pending in &chunk {
            match &pending.op {
                Op::Acquire { key, token, ttl_ms } => {
                    invocation.key(key).arg("a").arg(token).arg(ttl_ms);
                }
                Op::Release { keys, token } => {
                    invocation
                        .key(keys.key())
                        .key(keys.queue())
                        .key(keys.waiting())
                        .arg("r")
                        .arg(token)
                        .arg(keys.channel());
                }
            }
        }
        let answers: Result<Vec<i64>, RedisError> = invocation.invoke_async(connection).await;
        let mut orphans = Vec::new();
        match answers {
            Ok(answers) => {
                for (pending, answer) in chunk.into_iter().zip(answers) {
                    let Pending { op, reply } = pending;
                    if reply.send(Ok(answer)).is_err()
                        && answer == 1
                        && let Op::Acquire { key, token, .. } = op
                    {
                        orphans.push(orphaned_release(key, token));
                    }
                }
            }
            Err(source) => {
                for pending in chunk {
                    let error = LockError::Backend {
                        key: pending.op.key().to_owned(),
                        source: source.clone(),
                    };
                    let _ = pending.reply.send(Err(error));
                }
            }
        }
        orphans
    }
}

/// A release, answered to nobody, of a lock acquired for a caller that went away.
fn orphaned_release(key: String, token: String) -> Pending {
    let (reply, _) = oneshot::channel();
    Pending {
        op: Op::Release {
            keys: LockKeys::for_key(&key),
            token,
        },
        reply,
    }
}
