//! Auto-renewal, batched: one task per [`Locker`](crate::Locker) renews every held lock
//! that asked for it. Renewals that fall due together go to the backend as one batch (one
//! script call per few hundred locks on Redis), so 10,000 held locks cost a handful of
//! round trips per interval, not 10,000 tasks and 10,000 round trips.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backend::{Backend, Renewal};
use crate::guard::{LeaseState, Shared};

/// The shortest pause between renewal attempts after a failure.
const MIN_RETRY: Duration = Duration::from_millis(10);

/// One lock to keep alive.
struct Entry {
    shared: Weak<Shared>,
    every: Duration,
}

/// The renewal service of one locker; starts its task on first use.
pub(crate) struct Renewer {
    backend: Arc<dyn Backend>,
    queue: Mutex<Option<mpsc::UnboundedSender<(Instant, Entry)>>>,
}

impl Renewer {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            queue: Mutex::new(None),
        }
    }

    /// Renews `shared` every `every` from its acquisition until its lease is given up,
    /// lost, or its guard and handles are gone.
    pub(crate) fn register(&self, shared: &Arc<Shared>, every: Duration) {
        let due = shared.acquired_at + every;
        let mut entry = (
            due,
            Entry {
                shared: Arc::downgrade(shared),
                every,
            },
        );
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = queue.as_ref() {
            match sender.send(entry) {
                Ok(()) => return,
                // The task's runtime shut down (another test's, say): start a new one here.
                Err(mpsc::error::SendError(returned)) => entry = returned,
            }
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        sender.send(entry).ok();
        tokio::spawn(run(self.backend.clone(), receiver));
        *queue = Some(sender);
    }
}

/// The renewal task: sleeps until the earliest renewal is due, renews every lock due
/// within the next tenth of its interval in one batch, and reschedules them.
async fn run(backend: Arc<dyn Backend>, mut incoming: mpsc::UnboundedReceiver<(Instant, Entry)>) {
    let mut due: BTreeMap<(Instant, u64), Entry> = BTreeMap::new();
    let mut sequence = 0_u64;
    let mut open = true;
    loop {
        let next = due.first_key_value().map(|((at, _), _)| *at);
        if next.is_none() && !open {
            return;
        }
        tokio::select! {
            received = incoming.recv(), if open => match received {
                Some((at, entry)) => {
                    sequence += 1;
                    due.insert((at, sequence), entry);
                }
                None => open = false,
            },
            () = sleep_until(next) => {
                let batch = take_due(&mut due, Instant::now());
                for (at, entry) in renew_batch(backend.as_ref(), batch).await {
                    sequence += 1;
                    due.insert((at, sequence), entry);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Removes the entries due now, or within a tenth of their interval (renewing a little
/// early costs nothing and lets renewals that fall due close together share a batch).
fn take_due(due: &mut BTreeMap<(Instant, u64), Entry>, now: Instant) -> Vec<Entry> {
    let mut batch = Vec::new();
    while let Some(entry) = due.first_entry() {
        let (at, _) = *entry.key();
        if at > now + entry.get().every / 10 {
            break;
        }
        batch.push(entry.remove());
    }
    batch
}

/// Renews the locks of `batch` that are still held; returns the entries to schedule again.
async fn renew_batch(backend: &dyn Backend, batch: Vec<Entry>) -> Vec<(Instant, Entry)> {
    let now = Instant::now();
    let mut live = Vec::with_capacity(batch.len());
    for entry in batch {
        let Some(shared) = entry.shared.upgrade() else {
            continue;
        };
        let lease = *shared.lease.borrow();
        if lease.state != LeaseState::Held {
            continue;
        }
        if now >= lease.valid_until {
            shared.mark_lost("the lease ran out while renewals failed");
            continue;
        }
        live.push((entry, shared, lease.valid_until));
    }
    if live.is_empty() {
        return Vec::new();
    }
    let renewals: Vec<Renewal<'_>> = live
        .iter()
        .map(|(_, shared, _)| Renewal {
            keys: &shared.keys,
            token: &shared.token,
            ttl: shared.ttl,
        })
        .collect();
    let sent_at = Instant::now();
    let outcomes = backend.extend_many(&renewals).await;
    drop(renewals);
    let mut again = Vec::with_capacity(live.len());
    for ((entry, shared, valid_until), outcome) in live.into_iter().zip(outcomes) {
        match outcome {
            Ok(Some(remaining)) => {
                shared.renewed(sent_at + remaining);
                again.push((sent_at + entry.every, entry));
            }
            Ok(None) => {
                shared.mark_lost("renewal found the key expired or owned by someone else");
            }
            Err(error) => {
                tracing::warn!(key = %shared.keys.key(), %error, "lock renewal failed; retrying");
                let retry = (entry.every / 4).max(MIN_RETRY);
                again.push(((Instant::now() + retry).min(valid_until), entry));
            }
        }
    }
    again
}
