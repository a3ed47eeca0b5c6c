//! Redlock's slower servers: the ones that had not answered a command of an owner token
//! (an acquire, release, extend or renewal) when it returned on the quorum. Their requests
//! are awaited by a background task; a later command of that owner token to one of those
//! servers waits until that server answered, so it never reaches the server before the
//! earlier one: an extend before the acquire's `SET NX` would be lost, and a release
//! after a minimum hold (`release_after`) overtaken by an earlier extend would leave the
//! key for the extend's TTL. The other servers get the command at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The commands that returned while some servers had not answered yet, by owner token,
/// oldest first. An entry lives as long as its background task: at most one per-server
/// timeout, plus the connect timeout for a server that is being connected, after the
/// entries before it.
#[derive(Debug, Default)]
pub(crate) struct Stragglers {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    by_token: HashMap<Box<str>, Vec<Outstanding>>,
    next: u64,
}

/// One command's outstanding servers (by index), each settled when its sender is dropped;
/// all bounded by `until` (see [`Stragglers::settled`]).
#[derive(Debug)]
struct Outstanding {
    id: u64,
    servers: Vec<(usize, watch::Receiver<()>)>,
    until: Instant,
}

impl Stragglers {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers that `servers` have not answered a command of each of `tokens` yet, and
    /// will within `bound` after the entries already registered for those tokens (or
    /// from now). Each server is settled by [`Straggling::answered`], all of them when the
    /// returned entry is dropped (its task finished, or its runtime shut down).
    pub(crate) fn register<'a>(
        self: &Arc<Self>,
        tokens: impl IntoIterator<Item = &'a str>,
        servers: impl IntoIterator<Item = usize>,
        bound: Duration,
    ) -> Straggling {
        let (senders, receivers): (Vec<_>, Vec<_>) = servers
            .into_iter()
            .map(|server| {
                let (sender, receiver) = watch::channel(());
                ((server, sender), (server, receiver))
            })
            .unzip();
        let tokens: Vec<Box<str>> = tokens.into_iter().map(Box::from).collect();
        let mut pending = self.pending();
        pending.next += 1;
        let id = pending.next;
        let after = tokens
            .iter()
            .filter_map(|token| pending.by_token.get(token))
            .flatten()
            .map(|outstanding| outstanding.until)
            .max()
            .map_or_else(Instant::now, |until| until.max(Instant::now()));
        let until = after.checked_add(bound).unwrap_or(after);
        for token in &tokens {
            let entries = pending.by_token.entry(token.clone()).or_default();
            entries.push(Outstanding {
                id,
                servers: receivers.clone(),
                until,
            });
        }
        drop(pending);
        Straggling {
            stragglers: self.clone(),
            tokens,
            id,
            senders,
        }
    }

    /// A wait until `server` has answered every command of each of `tokens` registered
    /// so far (not those registered later), each at most until its bound: the task that
    /// awaits an answer runs on the runtime that sent the command, which may sit idle (a
    /// current-thread runtime outside `block_on`) while another one goes on; then nothing
    /// that task would send goes out before the command that waited.
    pub(crate) fn settled(
        &self,
        tokens: &[&str],
        server: usize,
    ) -> impl Future<Output = ()> + Send + use<> {
        let mut waits: Vec<(watch::Receiver<()>, Instant)> = Vec::new();
        if !tokens.is_empty() {
            let pending = self.pending();
            if !pending.by_token.is_empty() {
                for entries in tokens
                    .iter()
                    .filter_map(|token| pending.by_token.get(*token))
                {
                    for outstanding in entries {
                        let settled = outstanding
                            .servers
                            .iter()
                            .find(|(index, _)| *index == server);
                        if let Some((_, settled)) = settled {
                            waits.push((settled.clone(), outstanding.until));
                        }
                    }
                }
            }
        }
        async move {
            for (mut settled, until) in waits {
                // Nothing is ever sent: this returns when the sender is dropped.
                let _ = tokio::time::timeout_at(until, settled.changed()).await;
            }
        }
    }

    /// For each of `servers` servers, the positions in `tokens` of the tokens with a
    /// command it has not answered yet. Reads nothing of `tokens` when none is
    /// outstanding.
    pub(crate) fn waiting<'a>(
        &self,
        tokens: impl IntoIterator<Item = &'a str>,
        servers: usize,
    ) -> Vec<Vec<usize>> {
        let mut waiting = vec![Vec::new(); servers];
        let pending = self.pending();
        if pending.by_token.is_empty() {
            return waiting;
        }
        for (position, token) in tokens.into_iter().enumerate() {
            let Some(entries) = pending.by_token.get(token) else {
                continue;
            };
            for (server, settled) in entries.iter().flat_map(|entry| &entry.servers) {
                // An error: the sender is gone, the server answered.
                let open = settled.has_changed().is_ok() && *server < servers;
                if open && waiting[*server].last() != Some(&position) {
                    waiting[*server].push(position);
                }
            }
        }
        waiting
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending().by_token.len()
    }
}

/// One command's outstanding servers; dropping it settles those left.
pub(crate) struct Straggling {
    stragglers: Arc<Stragglers>,
    tokens: Vec<Box<str>>,
    id: u64,
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
        let mut pending = self.stragglers.pending();
        for token in &self.tokens {
            if let Some(entries) = pending.by_token.get_mut(token) {
                entries.retain(|entry| entry.id != self.id);
                if entries.is_empty() {
                    pending.by_token.remove(token);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_command_waits_only_for_its_own_servers_and_the_entry_is_reclaimed() {
        let stragglers = Arc::new(Stragglers::default());
        let mut straggling = stragglers.register(["token-1"], [3, 4], HOUR);
        assert_eq!(stragglers.len(), 1);
        // Another token, or a server that had answered: no wait.
        stragglers.settled(&["token-2"], 3).await;
        stragglers.settled(&["token-1"], 0).await;
        let waiting =
            |server: usize| tokio::spawn(stragglers.settled(&["token-2", "token-1"], server));
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

    #[tokio::test(start_paused = true)]
    async fn commands_of_one_token_are_chained_per_server() {
        let stragglers = Arc::new(Stragglers::default());
        let mut first = stragglers.register(["token"], [2], Duration::from_millis(100));
        // A wait taken now is for the first command only, even once a second registered.
        let before_second = tokio::spawn(stragglers.settled(&["token"], 2));
        let second = stragglers.register(["token", "other"], [2], Duration::from_millis(100));
        let after_second = tokio::spawn(stragglers.settled(&["token"], 2));
        tokio::task::yield_now().await;
        first.answered(2);
        before_second.await.unwrap();
        tokio::task::yield_now().await;
        assert!(!after_second.is_finished(), "the second is outstanding");
        assert_eq!(stragglers.waiting(["other", "token"], 3)[2], [0, 1]);
        // The second's bound runs from the first's: 200 ms from now, not 100.
        let started = Instant::now();
        after_second.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        drop((first, second));
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
            let straggling = stragglers.register(["token"], [1], HOUR);
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
        other.block_on(stragglers.settled(&["token"], 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_the_bound_even_if_the_task_never_runs() {
        let stragglers = Arc::new(Stragglers::default());
        let bound = Duration::from_millis(80);
        let _never_answered = stragglers.register(["token"], [2], bound);
        let started = Instant::now();
        stragglers.settled(&["token"], 2).await;
        assert_eq!(started.elapsed(), bound);
    }
}
