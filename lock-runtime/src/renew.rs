//! Auto-renewal, batched: one task per [`Locker`](crate::Locker) renews every held lock
//! that asked for it (and claims every lock handed over by a release). Renewals that fall
//! due together go to the backend as one batch (one script call per few hundred locks on
//! Redis), so 10,000 held locks cost a handful of round trips per interval.
//!
//! # Behavior
//!
//! - One task per tokio runtime that registers locks, on that runtime (a runtime that is
//!   alive but not being driven, or one that ended, cannot renew anyone else's locks).
//! - A schedule lives outside its task: when a runtime shuts down (even mid-batch), the
//!   next registration from a live runtime adopts its locks and renews overdue ones at
//!   once. Until then they are not renewed, and their guards report them lost when their
//!   leases run out.
//! - A renewal never shortens a key's expiry (an `extend` beyond the TTL stays), and a
//!   lock whose release began is not renewed; a renewal already in flight is awaited by
//!   the release.
//! - A failed renewal is retried every quarter interval until the lease runs out; then,
//!   or when the key is found gone or taken, the lease is marked lost (`lost()` fires).
//! - Each lock's renewals are told by its lease (`lock.renewed`, `lock.renewal_failed`,
//!   in its `lock.hold` span); each answered batch by a `lock.renewal_batch` event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{Backend, Renewal};
use crate::lease::HeldLock;
use crate::observe::{TARGET, ms};
use crate::runtime::RuntimeAlive;

/// The shortest pause between renewal attempts after a failure.
const MIN_RETRY: Duration = Duration::from_millis(10);

/// One lock to keep alive.
#[derive(Clone)]
struct Entry {
    lock: Weak<HeldLock>,
    /// `None`: claim a handed-over lock once (extend it to its TTL), then stop.
    every: Option<Duration>,
}

#[derive(Default)]
struct Schedule {
    due: BTreeMap<(Instant, u64), Entry>,
    sequence: u64,
}

impl Schedule {
    fn insert(&mut self, at: Instant, entry: Entry) -> bool {
        self.sequence += 1;
        let earliest = self
            .due
            .first_key_value()
            .is_none_or(|((first, _), _)| at < *first);
        self.due.insert((at, self.sequence), entry);
        earliest
    }
}

struct Shared {
    backend: Arc<Backend>,
    schedule: Mutex<Schedule>,
    /// Wakes the task when an entry earlier than its sleep arrives, or when closed.
    wake: Notify,
    /// The locker is gone: the task ends once no lock is left to renew.
    closed: AtomicBool,
}

impl Shared {
    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The renewal service of one locker: a schedule and a task per runtime.
pub(crate) struct Renewer {
    backend: Arc<Backend>,
    runtimes: Mutex<Vec<PerRuntime>>,
}

/// The schedule and task of one runtime.
struct PerRuntime {
    runtime_id: tokio::runtime::Id,
    alive: RuntimeAlive,
    shared: Arc<Shared>,
}

impl Renewer {
    pub(crate) fn new(backend: Arc<Backend>) -> Self {
        Self {
            backend,
            runtimes: Mutex::default(),
        }
    }

    /// Renews `lock` every `every` from `first` on until it is given up, lost, or its
    /// guard and handles are gone; with `every` `None`, extends it once at `first`. The
    /// current runtime's task renews it (started on first use).
    pub(crate) fn register(&self, lock: &Arc<HeldLock>, first: Instant, every: Option<Duration>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // acquiring ran on a runtime: unreachable in practice
        };
        let runtime_id = runtime.id();
        let mut runtimes = self.runtimes.lock().unwrap_or_else(PoisonError::into_inner);
        // Adopt the locks of runtimes that shut down.
        let mut orphans = Vec::new();
        runtimes.retain(|per_runtime| {
            let alive = per_runtime.alive.is_alive();
            if !alive {
                orphans
                    .extend(std::mem::take(&mut per_runtime.shared.schedule().due).into_values());
            }
            alive
        });
        let shared = match runtimes
            .iter()
            .find(|per_runtime| per_runtime.runtime_id == runtime_id)
        {
            Some(per_runtime) => per_runtime.shared.clone(),
            None => {
                let shared = Arc::new(Shared {
                    backend: self.backend.clone(),
                    schedule: Mutex::default(),
                    wake: Notify::new(),
                    closed: AtomicBool::new(false),
                });
                let Some(alive) = RuntimeAlive::current() else {
                    return;
                };
                crate::runtime::spawn(run(shared.clone()));
                runtimes.push(PerRuntime {
                    runtime_id,
                    alive,
                    shared: shared.clone(),
                });
                shared
            }
        };
        drop(runtimes);
        let mut schedule = shared.schedule();
        let now = Instant::now();
        for orphan in orphans {
            schedule.insert(now, orphan);
        }
        schedule.insert(
            first,
            Entry {
                lock: Arc::downgrade(lock),
                every,
            },
        );
        drop(schedule);
        shared.wake.notify_one();
    }
}

impl Drop for Renewer {
    /// Lets idle tasks see that their locker is gone.
    fn drop(&mut self) {
        let runtimes = self
            .runtimes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for per_runtime in runtimes.drain(..) {
            per_runtime.shared.closed.store(true, Ordering::Release);
            per_runtime.shared.wake.notify_one();
        }
    }
}

/// The renewal task: sleeps until the earliest entry is due, renews every entry due
/// within the next tenth of its interval in one batch, and reschedules them. Ends when
/// its locker is gone and no lock is left to renew.
async fn run(shared: Arc<Shared>) {
    loop {
        let next = shared
            .schedule()
            .due
            .first_key_value()
            .map(|((at, _), _)| *at);
        if next.is_none() && shared.closed.load(Ordering::Acquire) {
            return;
        }
        let woken = shared.wake.notified();
        tokio::select! {
            () = woken => continue,
            () = sleep_until(next) => {}
        }
        let batch = take_due(&mut shared.schedule(), Instant::now());
        let again = renew_batch(&shared.backend, &batch).await;
        let mut schedule = shared.schedule();
        for ((key, entry), at) in batch.into_iter().zip(again) {
            schedule.due.remove(&key);
            if let Some(at) = at {
                schedule.insert(at, entry);
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

/// The entries due now, or within a tenth of their interval (renewing a little early
/// costs nothing and lets renewals that fall due close together share a batch). They stay
/// in the schedule until their batch is answered, so a task that dies mid-batch loses none.
fn take_due(schedule: &mut Schedule, now: Instant) -> Vec<((Instant, u64), Entry)> {
    let mut batch = Vec::new();
    for (key, entry) in &schedule.due {
        let early = entry.every.map_or(Duration::ZERO, |every| every / 10);
        if key.0 > now + early {
            break;
        }
        batch.push((*key, entry.clone()));
    }
    batch
}

/// Clears the in-flight mark of locks whose renewal never got its answer (the task was
/// dropped mid-batch).
struct InFlight(Vec<Arc<HeldLock>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        for lock in &self.0 {
            lock.renewal_abandoned();
        }
    }
}

/// Renews the locks of `batch` that are still held; returns when to renew each again
/// (`None`: drop it from the schedule).
async fn renew_batch(backend: &Backend, batch: &[((Instant, u64), Entry)]) -> Vec<Option<Instant>> {
    let mut again = vec![None; batch.len()];
    let mut live = Vec::with_capacity(batch.len());
    for (index, (_, entry)) in batch.iter().enumerate() {
        let Some(lock) = entry.lock.upgrade() else {
            continue;
        };
        if let Some(valid_until) = lock.renewal_begins() {
            live.push((index, lock, valid_until));
        }
    }
    if live.is_empty() {
        return again;
    }
    let mut in_flight = InFlight(live.iter().map(|(_, lock, _)| lock.clone()).collect());
    let renewals: Vec<Renewal<'_>> = live
        .iter()
        .map(|(_, lock, _)| Renewal {
            keys: lock.keys(),
            token: lock.token(),
            ttl: lock.ttl(),
        })
        .collect();
    let sent_at = Instant::now();
    let outcomes = backend.extend_many(&renewals).await;
    let round_trip = sent_at.elapsed();
    drop(renewals);
    // Answered: `renewal_ends` settles every lock below.
    in_flight.0.clear();
    let (mut renewed, mut failed, mut refused) = (0_usize, 0_usize, 0_usize);
    for outcome in &outcomes {
        match outcome {
            Ok(Some(_)) => renewed += 1,
            Ok(None) => refused += 1,
            Err(_) => failed += 1,
        }
    }
    tracing::trace!(
        name: "lock.renewal_batch",
        target: TARGET,
        {
            lock.count = live.len(),
            lock.renewed = renewed,
            lock.failed = failed,
            lock.refused = refused,
            lock.round_trip_ms = ms(round_trip),
        },
        "renewal batch answered"
    );
    for ((index, lock, valid_until), outcome) in live.iter().zip(outcomes) {
        if !lock.renewal_ends(sent_at, &outcome) {
            continue;
        }
        let every = batch[*index].1.every;
        again[*index] = match (&outcome, every) {
            (Ok(_), Some(every)) => Some(sent_at + every),
            (Ok(_), None) => None,
            (Err(_), every) => {
                let retry = every.map_or(MIN_RETRY, |every| (every / 4).max(MIN_RETRY));
                Some((Instant::now() + retry).min(*valid_until))
            }
        };
    }
    again
}
