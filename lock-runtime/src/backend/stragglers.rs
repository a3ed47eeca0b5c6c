//! Redlock's slower servers: the ones that had not answered an acquire when it returned on
//! the quorum. Their requests are awaited by a background task; a later command of that
//! owner token (release, extend, renewal) to one of those servers waits until that server
//! answered, so it never reaches the server before the acquire's `SET NX`. The other
//! servers get the command at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;
use tokio::time::Instant;

/// The acquires that returned while some servers had not answered yet, by owner token.
/// An entry lives as long as its background task: at most one per-server timeout, plus
/// the connect timeout for a server that is being connected.
#[derive(Debug, Default)]
pub(crate) struct Stragglers {
    pending: Mutex<HashMap<Box<str>, Outstanding>>,
}

/// One acquire's outstanding servers (by index), each settled when its sender is dropped;
/// all bounded by `until` (see [`Stragglers::settled_on`]).
#[derive(Debug)]
struct Outstanding {
    servers: Vec<(usize, watch::Receiver<()>)>,
    until: Instant,
}

impl Stragglers {
    fn pending(&self) -> MutexGuard<'_, HashMap<Box<str>, Outstanding>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers that `servers` have not answered `token`'s acquire yet, and will by
    /// `until`. Each is settled by [`Straggling::answered`], all of them when the returned
    /// entry is dropped (its task finished, or its runtime shut down).
    pub(crate) fn register(
        self: &Arc<Self>,
        token: &str,
        servers: impl IntoIterator<Item = usize>,
        until: Instant,
    ) -> Straggling {
        let (senders, receivers) = servers
            .into_iter()
            .map(|server| {
                let (sender, receiver) = watch::channel(());
                ((server, sender), (server, receiver))
            })
            .unzip();
        self.pending().insert(
            token.into(),
            Outstanding {
                servers: receivers,
                until,
            },
        );
        Straggling {
            stragglers: self.clone(),
            token: token.into(),
            senders,
        }
    }

    /// Waits until `server` has answered the acquire of each of `tokens` that it had not
    /// answered when the acquire returned. At most until that answer's bound: the task
    /// that awaits it runs on the runtime that acquired, which may sit idle (a
    /// current-thread runtime outside `block_on`) while another one releases; then
    /// nothing that task would send goes out before the release.
    pub(crate) async fn settled_on(&self, tokens: &[&str], server: usize) {
        if tokens.is_empty() {
            return; // a read: no lock on the map per server and operation
        }
        let waits: Vec<(watch::Receiver<()>, Instant)> = {
            let pending = self.pending();
            if pending.is_empty() {
                return;
            }
            tokens
                .iter()
                .filter_map(|token| pending.get(*token))
                .filter_map(|outstanding| {
                    let (_, settled) = outstanding
                        .servers
                        .iter()
                        .find(|(index, _)| *index == server)?;
                    Some((settled.clone(), outstanding.until))
                })
                .collect()
        };
        for (mut settled, until) in waits {
            // Nothing is ever sent: this returns when the sender is dropped.
            let _ = tokio::time::timeout_at(until, settled.changed()).await;
        }
    }

    /// For each of `servers` servers, the positions in `tokens` of the tokens whose acquire
    /// it has not answered yet. Reads nothing of `tokens` when no acquire is outstanding.
    pub(crate) fn waiting<'a>(
        &self,
        tokens: impl IntoIterator<Item = &'a str>,
        servers: usize,
    ) -> Vec<Vec<usize>> {
        let mut waiting = vec![Vec::new(); servers];
        let pending = self.pending();
        if pending.is_empty() {
            return waiting;
        }
        for (position, token) in tokens.into_iter().enumerate() {
            let Some(outstanding) = pending.get(token) else {
                continue;
            };
            for (server, settled) in &outstanding.servers {
                // An error: the sender is gone, the server answered.
                if settled.has_changed().is_ok() && *server < servers {
                    waiting[*server].push(position);
                }
            }
        }
        waiting
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending().len()
    }
}

/// One acquire's outstanding servers; dropping it settles those left.
pub(crate) struct Straggling {
    stragglers: Arc<Stragglers>,
    token: Box<str>,
    senders: Vec<(usize, watch::Sender<()>)>,
}

impl Straggling {
    /// `server` answered (or timed out): commands to it need not wait any more.
    pub(crate) fn answered(&mut self, server: usize) {
        self.senders.retain(|(index, _)| *index != server);
    }
}

impl Drop for Straggling {
    fn drop(&mut self) {
        self.stragglers.pending().remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn a_command_waits_only_for_its_own_servers_and_the_entry_is_reclaimed() {
        let stragglers = Arc::new(Stragglers::default());
        let mut straggling = stragglers.register("token-1", [3, 4], far());
        assert_eq!(stragglers.len(), 1);
        // Another token, or a server that had answered: no wait.
        stragglers.settled_on(&["token-2"], 3).await;
        stragglers.settled_on(&["token-1"], 0).await;
        let waiting = |server: usize| {
            let stragglers = stragglers.clone();
            tokio::spawn(
                async move { stragglers.settled_on(&["token-2", "token-1"], server).await },
            )
        };
        let (three, four) = (waiting(3), waiting(4));
        tokio::task::yield_now().await;
        assert!(!three.is_finished() && !four.is_finished());
        straggling.answered(3);
        three.await.unwrap();
        tokio::task::yield_now().await;
        assert!(!four.is_finished(), "server 4 has not answered");
        // Positions in the batch, per server: token-1 (position 1) only on server 4 now.
        let waiting = stragglers.waiting(["token-2", "token-1", "token-3"], 5);
        assert_eq!(waiting, vec![vec![], vec![], vec![], vec![], vec![1]]);
        drop(straggling);
        assert_eq!(
            stragglers.waiting(["token-1"], 5),
            vec![Vec::<usize>::new(); 5]
        );
        four.await.unwrap();
        assert_eq!(stragglers.len(), 0);
    }

    #[test]
    fn stragglers_of_a_runtime_that_shut_down_are_settled() {
        let stragglers = Arc::new(Stragglers::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let straggling = stragglers.register("token", [1], far());
            tokio::spawn(async move {
                let _straggling = straggling;
                std::future::pending::<()>().await;
            });
        });
        assert_eq!(stragglers.len(), 1);
        drop(runtime);
        assert_eq!(stragglers.len(), 0);
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        other.block_on(stragglers.settled_on(&["token"], 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_the_bound_even_if_the_task_never_runs() {
        let stragglers = Arc::new(Stragglers::default());
        let bound = Duration::from_millis(80);
        let _never_answered = stragglers.register("token", [2], Instant::now() + bound);
        let started = Instant::now();
        stragglers.settled_on(&["token"], 2).await;
        assert_eq!(started.elapsed(), bound);
    }
}
