//! Redlock's decisions from the servers' answers, as pure functions: how many servers make
//! a quorum, and what a release, an extend, an inspection of the holder or of the
//! remaining time means when some servers granted, some refused and some were silent.

use std::time::Duration;

use super::Remaining;
use crate::error::ServerFailure;

/// One server's answer within the per-server timeout, or why there was none.
pub(super) type Answer<T> = Result<T, ServerFailure>;

pub(super) fn quorum(servers: usize) -> usize {
    servers / 2 + 1
}

/// The answers that succeeded, and the failures of those that did not.
pub(super) fn split<T>(answers: Vec<Answer<T>>) -> (Vec<T>, Vec<ServerFailure>) {
    let mut values = Vec::with_capacity(answers.len());
    let mut failures = Vec::new();
    for answer in answers {
        match answer {
            Ok(value) => values.push(value),
            Err(failure) => failures.push(failure),
        }
    }
    (values, failures)
}

/// A release's outcome: held when a quorum released it; not held when so many said "not
/// mine" that the silent ones cannot make a quorum; undecided (`None`) otherwise.
pub(super) fn decide_release(servers: usize, held: usize, silent: usize) -> Option<bool> {
    if held >= quorum(servers) {
        return Some(true);
    }
    (held + silent < quorum(servers)).then_some(false)
}

/// An extend's outcome from the remaining times granted: held on a quorum until the
/// quorum-th longest (the lease subtracts the drift margin once, from that); lost when the
/// silent servers cannot make a quorum with the granted ones; undecided (`Err`) otherwise.
pub(super) fn decide_extend(
    servers: usize,
    granted: &[Duration],
    silent: usize,
) -> Result<Option<Duration>, ()> {
    let needed = quorum(servers);
    if granted.len() >= needed {
        let mut granted = granted.to_vec();
        granted.sort_unstable_by(|a, b| b.cmp(a));
        return Ok(Some(granted[needed - 1]));
    }
    if granted.len() + silent >= needed && silent > 0 {
        return Err(());
    }
    Ok(None)
}

/// The token a quorum of the answers agrees on: `Some(Some(token))`, `Some(None)` when
/// no token has a quorum but enough answered to say so, `None` when too few answered.
pub(super) fn majority_holder(
    servers: usize,
    holders: &[Option<String>],
) -> Option<Option<&String>> {
    let needed = quorum(servers);
    let majority = holders.iter().flatten().find(|token| {
        holders
            .iter()
            .flatten()
            .filter(|other| other == token)
            .count()
            >= needed
    });
    match majority {
        Some(token) => Some(Some(token)),
        None if holders.len() >= needed => Some(None),
        None => None,
    }
}

/// Held for as long as a quorum of servers still has a key: the quorum-th longest, with
/// "forever" longest and "free" shortest.
pub(super) fn quorum_remaining(servers: usize, remaining: &mut [Remaining]) -> Remaining {
    remaining.sort_unstable_by_key(|left| match left {
        Remaining::Forever => (0, Duration::ZERO),
        Remaining::Expires(left) => (1, Duration::MAX - *left),
        Remaining::Free => (2, Duration::ZERO),
    });
    remaining[quorum(servers) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn releases_decide_on_a_quorum() {
        assert_eq!(decide_release(5, 3, 0), Some(true));
        assert_eq!(decide_release(5, 3, 2), Some(true));
        // Two said "not mine", two are silent: the silent two plus one could still hold it.
        assert_eq!(decide_release(5, 1, 2), None);
        assert_eq!(decide_release(5, 0, 0), Some(false));
        assert_eq!(decide_release(5, 2, 0), Some(false));
        assert_eq!(decide_release(1, 1, 0), Some(true));
    }

    #[test]
    fn extends_keep_the_quorum_th_longest() {
        let granted = [10 * SECOND, 2 * SECOND, 5 * SECOND];
        let left = decide_extend(5, &granted, 0).unwrap().unwrap();
        // The third longest of five servers' grants (the lease subtracts the drift once).
        assert_eq!(left, 2 * SECOND);
        assert_eq!(
            decide_extend(5, &granted[..2], 0),
            Ok(None),
            "lost: a majority said no"
        );
        assert_eq!(decide_extend(5, &granted[..2], 1), Err(()), "undecided");
        assert_eq!(
            decide_extend(3, &[Duration::from_millis(1); 2], 0),
            Ok(Some(Duration::from_millis(1))),
            "granted by a quorum, however short (a min_hold expiry)"
        );
    }

    #[test]
    fn holders_and_remaining_follow_the_majority() {
        let (a, b) = (Some("a".to_owned()), Some("b".to_owned()));
        let holders = [a.clone(), a.clone(), b.clone(), None, a.clone()];
        assert_eq!(majority_holder(5, &holders), Some(Some(&"a".to_owned())));
        assert_eq!(majority_holder(5, &[a.clone(), b, None]), Some(None));
        assert_eq!(majority_holder(5, &[a.clone(), a]), None);
        let mut remaining = [
            Remaining::Free,
            Remaining::Expires(SECOND),
            Remaining::Forever,
            Remaining::Expires(3 * SECOND),
            Remaining::Free,
        ];
        assert_eq!(
            quorum_remaining(5, &mut remaining),
            Remaining::Expires(SECOND)
        );
    }
}
