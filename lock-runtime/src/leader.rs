//! Leader election on a lock: [`Campaign`] waits to be elected, [`Leadership`] is held
//! while renewal keeps it, [`LeaderWatch`] follows who leads without polling.
//!
//! A leadership is a fenced, auto-renewed lock whose fencing token is the epoch. A
//! campaigner waits in the lock's queue, so a resigning leader hands the leadership to
//! the next campaigner in one message. The elected leader announces its epoch on the
//! election's channel (`<key>:leader`, in the lock's slot), and again every third of its
//! lease while it leads (so a watch that missed a message learns the epoch soon), and a
//! resigning one announces that it resigned; a leader that dies announces nothing, and
//! watchers learn it when its lease ends (they sleep until then, and look once).

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::backend::Remaining;
use crate::key::LockKeys;
use crate::notify::{Announcement, Event, Registration};
use crate::observe::TARGET;
use crate::{LockError, LockGuard, LockHandle, Locker, millis};

/// A campaign for the leadership `name`, started by [`Locker::leader`]: set the lease
/// and how long to campaign, then `.await` it (or call [`campaign`](Self::campaign)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// use lock_runtime::Locker;
///
/// let locker = Locker::memory();
/// let leadership = locker.leader("scheduler").ttl(Duration::from_secs(10)).await?;
/// assert!(leadership.is_leader());
/// let epoch = leadership.epoch(); // pass it along with every write the leader makes
/// // ... run the schedulers while `leadership.is_leader()`, or until `leadership.lost()` ...
/// assert!(leadership.resign().await?);
/// # let _ = epoch; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a campaign does nothing until it is awaited"]
pub struct Campaign {
    locker: Locker,
    name: String,
    ttl: Duration,
    wait: Option<Duration>,
    label: Option<Cow<'static, str>>,
}

/// The election's channel: announcements of who was elected and who resigned.
fn channel(keys: &LockKeys) -> String {
    format!("{}:leader", keys.key())
}

impl Campaign {
    pub(crate) fn new(locker: Locker, name: String) -> Self {
        Self {
            ttl: locker.default_ttl(),
            locker,
            name,
            wait: None,
            label: None,
        }
    }

    /// The leader's lease (default: the locker's TTL, 30 s): renewed every third of it
    /// while the leader lives. A leader that dies is replaced within about this long; a
    /// leader that cannot renew for this long loses the leadership.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Campaign at most this long, then fail with [`LockError::WaitTimeout`] (default:
    /// until elected; drop the future to stop campaigning).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// The label of the leadership's metrics and spans (see
    /// [`LockRequest::label`](crate::LockRequest::label)); default `leader`.
    pub fn label(mut self, label: impl Into<Cow<'static, str>>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Waits until elected, and returns the leadership.
    ///
    /// A campaigner waits in the election's queue: when the leader resigns, the first
    /// campaigner is elected at once; when the leader dies, a campaigner is elected when
    /// its lease ends. While the server is unreachable the campaign keeps trying, every
    /// poll interval (warning once per outage), until elected or its
    /// [`wait`](Self::wait) runs out.
    ///
    /// Errors: [`LockError::Config`] (an empty name, a bad TTL, Redlock, which cannot
    /// issue epochs), [`LockError::Reentrant`] (this task leads already),
    /// [`LockError::Auth`], and with a [`wait`](Self::wait): [`LockError::WaitTimeout`],
    /// or the last error of an outage that outlasted it.
    ///
    /// Cancellation: dropping the future stops the campaign and leaves the queue; a
    /// leadership won meanwhile is resigned.
    pub async fn campaign(self) -> Result<Leadership, LockError> {
        if self.locker.backend().fencing_refusal().is_some() {
            return Err(LockError::Config(format!(
                "leader `{}`: leader election needs epochs that grow with every leader \
                 (fencing tokens), and a Redlock quorum cannot issue them; elect leaders \
                 on one Redis server or a Cluster",
                self.name
            )));
        }
        let started = Instant::now();
        let deadline = self.wait.map(|wait| started + wait.min(millis::MAX));
        let label = self.label.clone().unwrap_or(Cow::Borrowed("leader"));
        let mut outage = false;
        loop {
            let budget = deadline.map_or(millis::MAX, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            let request = self
                .locker
                .lock(self.name.as_str())
                .ttl(self.ttl)
                .fencing()
                .auto_renew()
                .wait(budget)
                .label(label.clone());
            match request.acquire().await {
                Ok(guard) => return Ok(Leadership::elected(&self.locker, guard).await),
                Err(error)
                    if error.is_unavailable()
                        && deadline.is_none_or(|deadline| Instant::now() < deadline) =>
                {
                    if !outage {
                        tracing::warn!(
                            name: "lock.campaign_failed",
                            target: TARGET,
                            {
                                lock.name = self.name.as_str(),
                                error = %error,
                            },
                            "campaign interrupted; trying again every poll interval"
                        );
                    }
                    outage = true;
                    let pause = self.locker.poll_interval();
                    let wake = deadline.map_or(Instant::now() + pause, |deadline| {
                        deadline.min(Instant::now() + pause)
                    });
                    tokio::time::sleep_until(wake).await;
                }
                // The wait ran out during an outage: the last try found the lock held.
                Err(LockError::Busy { name, retry_after })
                    if self.wait.is_some_and(|wait| !wait.is_zero()) =>
                {
                    return Err(LockError::WaitTimeout {
                        name,
                        waited: started.elapsed(),
                        retry_after,
                    });
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Follows the election without campaigning: who is elected, and when the leadership
    /// falls vacant. Subscribes to the election's announcements and looks whether someone
    /// leads before it returns, so every change after that is seen. See [`LeaderWatch`].
    ///
    /// Errors: those of a lock request (an empty name, the server unreachable); Redlock
    /// refuses it, as it refuses campaigns.
    pub async fn watch(self) -> Result<LeaderWatch, LockError> {
        let keys = LockKeys::new(self.locker.prefix(), &self.name)?;
        let token = crate::token::next();
        let registration = self
            .locker
            .backend()
            .listen_to(&keys, &channel(&keys), &token)
            .await?;
        let mut watch = LeaderWatch {
            locker: self.locker,
            keys,
            registration,
            state: LeaderState::Vacant,
            look_at: None,
        };
        watch.look().await?;
        Ok(watch)
    }
}

impl IntoFuture for Campaign {
    type Output = Result<Leadership, LockError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.campaign())
    }
}

/// This process leads: the leadership won by a [`Campaign`].
///
/// It is kept by renewal (every third of the lease) and lost, with the signal
/// [`lost`](Self::lost), when renewal cannot keep it: the server did not answer for a
/// whole lease, or the lock was taken over (this process was paused longer than its
/// lease). [`is_leader`](Self::is_leader) is the check to make before each act of
/// leadership: it is `false` from the moment the lease may have ended, on this process's
/// clock, which never counts past the lease on the server (the lease counts from when
/// the request that granted or renewed it was sent). Even so, a leader paused between
/// its check and its write can write late; pass [`epoch`](Self::epoch) with every write
/// and have the store reject epochs older than the newest it has seen.
///
/// Dropping it resigns (in the background).
#[derive(Debug)]
pub struct Leadership {
    guard: Option<LockGuard>,
    locker: Locker,
}

impl Leadership {
    async fn elected(locker: &Locker, guard: LockGuard) -> Self {
        let leadership = Self {
            guard: Some(guard),
            locker: locker.clone(),
        };
        let epoch = leadership.epoch();
        // Announced again every third of the lease while it leads, so a watch that missed
        // the election (a dropped connection, a watch begun later) learns the epoch.
        let (handle, locker_again) = (leadership.handle(), locker.clone());
        let every = leadership.guard().ttl() / 3;
        crate::runtime::spawn(async move {
            let lost = handle.lost();
            tokio::pin!(lost);
            loop {
                tokio::select! {
                    () = &mut lost => return,
                    () = tokio::time::sleep(every) => {}
                }
                if handle.remaining().is_zero() {
                    return; // resigned or lost
                }
                let _ = announce(&locker_again, handle.clone(), Announcement::Elected(epoch)).await;
            }
        });
        if let Err(error) = leadership.announce(Announcement::Elected(epoch)).await {
            tracing::debug!(
                name: "lock.announce_failed",
                target: TARGET,
                {
                    lock.name = leadership.name(),
                    error = %error,
                },
                "could not announce the election; watchers learn it when they look"
            );
        }
        leadership
    }

    fn guard(&self) -> &LockGuard {
        self.guard.as_ref().expect("held until resigned or dropped")
    }

    async fn announce(&self, announcement: Announcement) -> Result<(), LockError> {
        announce(&self.locker, self.guard().handle(), announcement).await
    }

    /// The election's name.
    pub fn name(&self) -> &str {
        self.guard().name()
    }

    /// This leader's epoch: larger than every earlier leader's of this election (its
    /// fencing token; see the crate docs, "Fencing", for what that assumes).
    pub fn epoch(&self) -> u64 {
        self.guard()
            .fencing_token()
            .expect("a leadership is always fenced")
    }

    /// Whether this process still leads: not lost, not resigned, and its lease has not
    /// run out on this process's clock. Does not ask the server.
    pub fn is_leader(&self) -> bool {
        !self.guard().remaining().is_zero()
    }

    /// How long this process surely leads unless renewed (zero once it does not).
    pub fn remaining(&self) -> Duration {
        self.guard().remaining()
    }

    /// Completes when the leadership is lost (never once resigned). Owns what it needs,
    /// so it can be raced against the leader's work with `tokio::select!`.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.guard().lost()
    }

    /// A handle on the leadership's lock (name, epoch as fencing token, extend, loss).
    pub fn handle(&self) -> LockHandle {
        self.guard().handle()
    }

    /// Gives the leadership up: the first campaigner waiting is elected at once (one
    /// message from the server), and watchers hear that this leader resigned. Returns
    /// whether this process still led (`false`: it had already lost the leadership).
    pub async fn resign(mut self) -> Result<bool, LockError> {
        let guard = self.guard.take().expect("held until resigned or dropped");
        let handle = guard.handle();
        let epoch = guard.fencing_token().unwrap_or_default();
        let held = guard.release().await?;
        let _ = announce(&self.locker, handle, Announcement::Resigned(epoch)).await;
        Ok(held)
    }
}

async fn announce(
    locker: &Locker,
    handle: LockHandle,
    announcement: Announcement,
) -> Result<(), LockError> {
    let keys = LockKeys::new(locker.prefix(), handle.name())?;
    locker
        .backend()
        .announce(&keys, &channel(&keys), announcement)
        .await
}

impl Drop for Leadership {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let locker = self.locker.clone();
        let handle = guard.handle();
        let epoch = guard.fencing_token().unwrap_or_default();
        // No longer this task's: a new campaign of it waits for the resignation below.
        guard.give_up();
        // The guard's own drop releases when no runtime is here to resign.
        let tracker = locker.backend().tracker().clone();
        let _ = tracker.spawn(async move {
            let _ = guard.release().await;
            let _ = announce(&locker, handle, Announcement::Resigned(epoch)).await;
        });
    }
}

/// A change a [`LeaderWatch`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderChange {
    /// A campaigner was elected, with this epoch.
    Elected {
        /// The new leader's epoch.
        epoch: u64,
    },
    /// Nobody leads: the leader resigned with nobody waiting, or its lease ran out (it
    /// died, or lost the leadership).
    Vacant,
}

/// Who leads, as far as a [`LeaderWatch`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderState {
    /// Nobody leads.
    Vacant,
    /// Someone leads; `epoch` once the watch heard the leader announce it (`None`: the
    /// leader was elected before the watch began listening, and has not announced since;
    /// a leader announces its epoch again every third of its lease).
    Led {
        /// The leader's epoch, when known.
        epoch: Option<u64>,
    },
}

/// Follows an election without campaigning ([`Campaign::watch`]): each
/// [`changed`](Self::changed) waits for the next change of leader.
///
/// Watchers hear elections and resignations as they are announced (Redis pub/sub on the
/// election's channel, in its slot on a Cluster); a leader that dies announces nothing,
/// so a watcher sleeps until the leader's lease ends and then looks once (one `PTTL`):
/// one command per lease while a leader renews, never a polling loop. A leader repeats
/// its announcement every third of its lease, so a watch that missed one (its connection
/// dropped, or it began listening after the election) learns the epoch within that time;
/// repeated announcements of the same epoch are not changes.
///
/// A watch follows its [`Locker`]'s connections: when the connection it listened on is
/// gone (the runtime it ran on ended, a failover replaced it), the next
/// [`changed`](Self::changed) listens on the new one and looks once, so it misses no
/// election. A watch needs the locker's own connections: on a locker built
/// [`from_connection`](crate::Locker::from_connection) it is a
/// [`LockError::Config`] that says so.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
/// use lock_runtime::{LeaderChange, LeaderState, Locker};
///
/// let locker = Locker::memory();
/// let mut watch = locker.leader("scheduler").watch().await?;
/// assert_eq!(watch.state(), LeaderState::Vacant);
/// let leadership = locker.leader("scheduler").await?;
/// let epoch = leadership.epoch();
/// assert_eq!(watch.changed().await?, LeaderChange::Elected { epoch });
/// leadership.resign().await?;
/// assert_eq!(watch.changed().await?, LeaderChange::Vacant);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LeaderWatch {
    locker: Locker,
    keys: LockKeys,
    registration: Registration,
    state: LeaderState,
    /// When to look again whether the leader's lease ended.
    look_at: Option<Instant>,
}

impl LeaderWatch {
    /// Who leads, as far as this watch knows (it looked when it was created, and follows
    /// every change [`changed`](Self::changed) reported).
    pub fn state(&self) -> LeaderState {
        self.state
    }

    /// Waits for the next change of leader: an election (with the new epoch) or a
    /// vacancy. Never completes while the same leader keeps leading.
    ///
    /// Errors: those of a lock request when the server cannot be reached (the watch can
    /// be used again; it looks anew).
    ///
    /// Cancellation: safe; dropping this future loses no change (the state changes only
    /// as a change is returned, or after a look whose answer arrived).
    pub async fn changed(&mut self) -> Result<LeaderChange, LockError> {
        // On this runtime's connection: the one it subscribed on may be gone (its runtime
        // ended, or it was replaced after a failover).
        let channel = channel(&self.keys);
        self.locker
            .backend()
            .keep_listening(&self.keys, &channel)
            .await?;
        loop {
            let event = match self.look_at {
                Some(at) => tokio::select! {
                    event = self.registration.next() => Some(event),
                    () = tokio::time::sleep_until(at) => None,
                },
                None => Some(self.registration.next().await),
            };
            let was = self.state;
            match event {
                Some(Event::Announced(Announcement::Elected(epoch))) => {
                    if was == (LeaderState::Led { epoch: Some(epoch) }) {
                        continue;
                    }
                    self.state = LeaderState::Led { epoch: Some(epoch) };
                    // The new lease's end is learned by looking at the next call.
                    self.look_at = Some(Instant::now());
                    return Ok(LeaderChange::Elected { epoch });
                }
                // Only the resignation of the leader this watch knows of is news (a late
                // one of an earlier leader is not).
                Some(Event::Announced(Announcement::Resigned(epoch)))
                    if was != (LeaderState::Led { epoch: Some(epoch) })
                        && was != (LeaderState::Led { epoch: None }) => {}
                // A resignation, the lease's end, or messages missed: look (owed until the
                // answer arrives, so a cancelled or failed look is made again at once).
                Some(_) | None => {
                    self.look_at = Some(Instant::now());
                    self.look().await?;
                }
            }
            if was != LeaderState::Vacant && self.state == LeaderState::Vacant {
                return Ok(LeaderChange::Vacant);
            }
        }
    }

    /// Looks at the lock: vacant, or led until its lease ends (then look again).
    async fn look(&mut self) -> Result<(), LockError> {
        let led = match self.state {
            LeaderState::Led { epoch } => LeaderState::Led { epoch },
            LeaderState::Vacant => LeaderState::Led { epoch: None },
        };
        match self.locker.backend().remaining(&self.keys).await? {
            Remaining::Free => {
                self.state = LeaderState::Vacant;
                self.look_at = None;
            }
            Remaining::Expires(left) => {
                self.state = led;
                // Just after the lease would end; a renewed lease is looked at again then.
                self.look_at = Some(Instant::now() + left + Duration::from_millis(1));
            }
            Remaining::Forever => {
                self.state = led;
                self.look_at = None;
            }
        }
        Ok(())
    }
}
