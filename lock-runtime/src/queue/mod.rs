//! First come, first served: the queue of a lock's waiters and the hand-off of the lock
//! on release. Its Lua (`queue.lua`, `acquire_queued.lua`, `release_fast.lua`,
//! `release.lua`), its Rust side
//! (this file) and the memory backend's model of it ([`memory`]) live here together.
//!
//! # The protocol
//!
//! A waiter first tries a plain acquire. When the lock is busy it registers for
//! notifications (so nothing said after its next attempt is missed), then makes *queued*
//! attempts: each one takes the lock if it is free or was handed to it, and otherwise
//! adds the waiter to the lock's queue (keeping its place) and refreshes its entry. A
//! waiter attempts at least once per poll interval, so an entry that is not refreshed
//! for [`QueueSpec::alive_for`] (three intervals) belongs to a waiter that is gone.
//!
//! A release by the owner hands the lock to the first live waiter: the key becomes that
//! waiter's for its claim window ([`QueueSpec::claim_within`], two poll intervals or its
//! TTL if shorter), with its fencing token, and the waiter is told on its channel (its
//! locker's inbox on one server, the lock's own channel on sharded pub/sub in Cluster).
//! The waiter returns the lock at once, without a round trip, and claims it for its full
//! TTL in the background (a renewal). A waiter that crashed holds the lock up for its
//! claim window only.
//!
//! | state of the key | event | next state |
//! | --- | --- | --- |
//! | free | attempt (plain or queued) | the attempter's, for its TTL |
//! | another owner's | queued attempt | unchanged; the attempter is queued (or refreshed) |
//! | the owner's | release, a live waiter queued | the waiter's, for its claim window; waiter told |
//! | the owner's | release, no live waiter within 16 entries | free (deleted) |
//! | the waiter's (handed) | message heard, [`trust_handoff`] | held; claimed for the TTL in the background |
//! | the waiter's (handed) | message missed, queued attempt | the waiter's, for its TTL (claimed) |
//! | the waiter's (handed) | the waiter gave up (its release) | handed on, or free |
//! | the waiter's (handed) | claim window ran out | free |
//! | any | a waiter gives up | unchanged; the waiter leaves the queue |
//!
//! # Semaphores
//!
//! A semaphore runs the same protocol over permits (`semaphore_acquire.lua`,
//! `semaphore_release.lua`, with the leases kept by `scripts/semaphore.lua`): its key is
//! a sorted set of owner tokens scored by lease end, an attempt takes a permit while
//! fewer leases than its count of permits are live (or when one was handed to it), and a
//! release hands its permit to the first live waiter, within the first 16 entries, whose
//! count admits it (with none, the permit is just freed). A waiter's entry carries its
//! count of permits; a lock's entries carry 0.
//!
//! # Bounds
//!
//! Leaving the queue is `O(log n)`; a release or a queued attempt looks at no more than
//! 16 entries, removing dead ones it meets; the queue's keys expire after their
//! longest-lived entry (at most as long again: an attempt that finds an expiry too short
//! sets it to twice its entry's lifetime, so most attempts write none). So a history of
//! abandoned waiters costs bounded work per operation and no memory once they are gone.
//!
//! # Trusting a hand-off message
//!
//! A message can arrive late (a paused process, a slow connection). The waiter trusts it
//! only if the release happened after its last busy attempt on the server's clock (else
//! the hand-off may have expired and been overtaken already) and enough of the claim
//! window is left on this process's clock, measured from when that attempt was *sent*
//! (the release came later, so the key lives at least that long). Otherwise it makes a
//! queued attempt, which claims the lock if it is still its own.

pub(crate) mod memory;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use crate::key::LockKeys;
use crate::millis;
use crate::scripts::Eval;

/// A queued attempt ([`acquire_queued`]).
pub(crate) static ACQUIRE_QUEUED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../scripts/clock.lua"),
        include_str!("queue.lua"),
        include_str!("acquire_queued.lua")
    ))
});

/// A release that hands the lock to the first live waiter ([`release`]); with nobody
/// queued, a delete that runs before the protocol's functions are defined.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("release_fast.lua"),
        include_str!("../scripts/clock.lua"),
        include_str!("queue.lua"),
        include_str!("release.lua")
    ))
});

/// An attempt at a semaphore's permit, plain or queued ([`acquire_permit`],
/// [`acquire_queued`]).
pub(crate) static SEMAPHORE_ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../scripts/clock.lua"),
        include_str!("queue.lua"),
        include_str!("../scripts/semaphore.lua"),
        include_str!("semaphore_acquire.lua")
    ))
});

/// A release of a semaphore's permit that hands it to the first live waiter ([`release`]).
pub(crate) static SEMAPHORE_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../scripts/clock.lua"),
        include_str!("queue.lua"),
        include_str!("../scripts/semaphore.lua"),
        include_str!("semaphore_release.lua")
    ))
});

/// How a waiter stands in a lock's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueSpec {
    /// The entry is dropped when the waiter has not attempted again for this long.
    pub(crate) alive_for: Duration,
    /// A release hands the lock to this waiter for this long; unclaimed, it expires.
    pub(crate) claim_within: Duration,
}

impl QueueSpec {
    /// The entry of a waiter that attempts at least every `poll_interval`, for a lock
    /// with this TTL: alive for three intervals, claimed within two (or the TTL).
    pub(crate) fn new(poll_interval: Duration, ttl: Duration) -> Self {
        Self {
            alive_for: poll_interval.saturating_mul(3),
            claim_within: poll_interval.saturating_mul(2).min(ttl),
        }
    }
}

/// Where a waiter hears that the lock was handed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inbox {
    /// A channel of its connection (one server), announced with `PUBLISH`.
    Channel(Arc<str>),
    /// The lock's own channel, announced with `SPUBLISH` (sharded pub/sub, Cluster).
    Sharded,
}

/// A release's message to the waiter it handed the lock to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handoff {
    /// The waiter's owner token.
    pub(crate) token: Arc<str>,
    /// Its fencing token, or 0 when it asked for none.
    pub(crate) fence: u64,
    /// When the release ran, on the server's clock (microseconds).
    pub(crate) at_us: u64,
}

impl Handoff {
    /// Parses `'<token> <fence> <time in us>'`.
    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        let payload = std::str::from_utf8(payload).ok()?;
        let mut fields = payload.split(' ');
        let token = fields.next().filter(|token| !token.is_empty())?;
        let fence = fields.next()?.parse().ok()?;
        let at_us = fields.next()?.parse().ok()?;
        fields.next().is_none().then(|| Self {
            token: token.into(),
            fence,
            at_us,
        })
    }
}

/// Whether a waiter may take a hand-off message as the lock, without asking the server
/// (see the module docs): the release ran after the waiter's last busy attempt
/// (`busy_at_us`, server clock), and at least a quarter of the claim window is left of
/// the lease it can count on (`left`, measured from when that attempt was sent).
pub(crate) fn trust_handoff(
    handoff: &Handoff,
    busy_at_us: u64,
    left: Duration,
    claim_within: Duration,
) -> bool {
    handoff.at_us > busy_at_us && left >= claim_within / 4
}

/// A call of the queue protocol's `lock` script (or, for a semaphore, `semaphore`) with
/// the four keys every one of them takes: the key, the fencing token, the queue and the
/// waiting entries.
fn queue_call(
    keys: &LockKeys,
    lock: &'static LazyLock<Script>,
    semaphore: &'static LazyLock<Script>,
) -> Eval {
    let script = match keys.permits() {
        None => lock,
        Some(_) => semaphore,
    };
    let mut invocation = Eval::new(script, 4);
    invocation
        .key(keys.key())
        .key(keys.fence())
        .key(keys.queue())
        .key(keys.waiting());
    invocation
}

/// An attempt's call up to its queue arguments: the lock's script (or the semaphore's,
/// with its permits), its keys, owner token, TTL and fencing flag.
fn attempt(keys: &LockKeys, token: &str, (ttl, fencing): (Duration, bool)) -> Eval {
    let mut invocation = queue_call(keys, &ACQUIRE_QUEUED, &SEMAPHORE_ACQUIRE);
    invocation
        .arg(token)
        .arg(millis::expiry(ttl))
        .arg(if fencing { "1" } else { "0" });
    if let Some(permits) = keys.permits() {
        invocation.arg(permits);
    }
    invocation
}

/// The call of an attempt at a semaphore's permit that does not queue; its reply is
/// parsed by [`attempt_reply`].
pub(crate) fn acquire_permit(keys: &LockKeys, token: &str, ttl_fencing: (Duration, bool)) -> Eval {
    debug_assert!(keys.permits().is_some(), "a lock's plain attempt is SET NX");
    attempt(keys, token, ttl_fencing)
}

/// The call of a queued attempt at a lock or a semaphore's permit; its reply is parsed by
/// [`attempt_reply`].
pub(crate) fn acquire_queued(
    keys: &LockKeys,
    token: &str,
    ttl_fencing: (Duration, bool),
    spec: &QueueSpec,
    inbox: &Inbox,
) -> Eval {
    let mut invocation = attempt(keys, token, ttl_fencing);
    invocation
        .arg(millis::expiry(spec.alive_for))
        .arg(millis::expiry(spec.claim_within));
    match inbox {
        Inbox::Channel(channel) => invocation.arg("p").arg(&**channel),
        Inbox::Sharded => invocation.arg("s").arg(keys.channel()),
    };
    invocation
}

/// The call of a release of a lock or a semaphore's permit; its reply is 1 (released) or
/// 0 (not the owner's).
pub(crate) fn release(keys: &LockKeys, token: &str) -> Eval {
    let mut invocation = queue_call(keys, &RELEASE, &SEMAPHORE_RELEASE);
    invocation.arg(token);
    invocation
}

/// What a queued (or fenced) attempt's reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Taken; the fencing token (0 when none was asked for).
    Won { fence: u64 },
    /// Busy: the holder's PTTL (negative: none or gone) and the server time, when given.
    Busy { pttl: i64, at_us: Option<u64> },
}

/// Parses `{1, fence}` or `{0, pttl[, time]}`.
pub(crate) fn attempt_reply(reply: &[i64]) -> Option<Reply> {
    match *reply {
        [1, fence] => Some(Reply::Won {
            fence: u64::try_from(fence).ok()?,
        }),
        [0, pttl] => Some(Reply::Busy { pttl, at_us: None }),
        [0, pttl, at] => Some(Reply::Busy {
            pttl,
            at_us: u64::try_from(at).ok(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_messages_parse_strictly() {
        let handoff = Handoff::parse(b"abc 17 1700000000000000").unwrap();
        assert_eq!(&*handoff.token, "abc");
        assert_eq!((handoff.fence, handoff.at_us), (17, 1_700_000_000_000_000));
        for bad in [
            &b""[..],
            b" 1 2",
            b"abc 1",
            b"abc x 2",
            b"abc 1 2 3",
            b"\xff 1 2",
        ] {
            assert_eq!(Handoff::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_late_or_overtaken_handoff_is_not_trusted() {
        let handoff = Handoff {
            token: "w".into(),
            fence: 0,
            at_us: 1_000,
        };
        let claim = Duration::from_secs(2);
        assert!(trust_handoff(&handoff, 999, Duration::from_secs(1), claim));
        // A busy attempt after the release: the hand-off was overtaken.
        assert!(!trust_handoff(
            &handoff,
            1_000,
            Duration::from_secs(1),
            claim
        ));
        assert!(!trust_handoff(
            &handoff,
            5_000,
            Duration::from_secs(1),
            claim
        ));
        // Too little of the claim window left to count on.
        assert!(!trust_handoff(
            &handoff,
            999,
            Duration::from_millis(499),
            claim
        ));
        assert!(!trust_handoff(&handoff, 999, Duration::ZERO, claim));
    }

    #[test]
    fn queue_spec_follows_the_poll_interval_and_ttl() {
        let spec = QueueSpec::new(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(spec.alive_for, Duration::from_secs(3));
        assert_eq!(spec.claim_within, Duration::from_secs(2));
        let short = QueueSpec::new(Duration::from_secs(1), Duration::from_millis(500));
        assert_eq!(short.claim_within, Duration::from_millis(500));
        let huge = QueueSpec::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.alive_for, Duration::MAX);
    }

    #[test]
    fn attempt_replies_parse() {
        assert_eq!(attempt_reply(&[1, 0]), Some(Reply::Won { fence: 0 }));
        assert_eq!(attempt_reply(&[1, 9]), Some(Reply::Won { fence: 9 }));
        assert_eq!(
            attempt_reply(&[0, 1500, 42]),
            Some(Reply::Busy {
                pttl: 1500,
                at_us: Some(42)
            })
        );
        assert_eq!(
            attempt_reply(&[0, -2]),
            Some(Reply::Busy {
                pttl: -2,
                at_us: None
            })
        );
        assert_eq!(attempt_reply(&[2]), None);
        assert_eq!(attempt_reply(&[1, -1]), None);
    }
}
