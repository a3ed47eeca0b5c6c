//! One Redlock round: requests to every server at once, awaited until their answers decide
//! the outcome and the slower servers had as long again; what is still outstanding then is
//! the caller's to hand to a background task, so that a slow, hung or unreachable
//! minority never holds up an operation that the others decided.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::runtime::Tracker;

/// The least time a decided round still waits for the other servers.
pub(super) const MIN_GRACE: Duration = Duration::from_millis(1);

/// The servers' answers by index (`None`: not answered yet) and the requests still
/// outstanding.
pub(super) struct Round<T, Fut> {
    pub(super) answers: Vec<Option<T>>,
    pub(super) outstanding: FuturesUnordered<Fut>,
}

/// The indices of the servers without an answer in `answers`.
pub(super) fn missing<T>(answers: &[Option<T>]) -> impl Iterator<Item = usize> + '_ {
    answers
        .iter()
        .enumerate()
        .filter(|(_, answer)| answer.is_none())
        .map(|(index, _)| index)
}

/// Awaits `requests` (each yields its server's index and answer, and is bounded on its
/// own) until every server answered; or until `decided` holds for the answers so far and
/// the others had as long again as that took since `started` (at least [`MIN_GRACE`]);
/// or until `cap`, if any.
///
/// The grace keeps the common case in one task: healthy servers answer within it, and
/// handing their answers to a background task measured slower than waiting for them.
pub(super) async fn until_decided<T, Fut>(
    servers: usize,
    mut requests: FuturesUnordered<Fut>,
    started: Instant,
    cap: Option<Instant>,
    decided: impl Fn(&[Option<T>]) -> bool,
) -> Round<T, Fut>
where
    Fut: Future<Output = (usize, T)>,
{
    let mut answers: Vec<Option<T>> = std::iter::repeat_with(|| None).take(servers).collect();
    let mut until = cap;
    let mut waiting_for_decision = true;
    loop {
        let next = match until {
            None => requests.next().await,
            Some(until) => match tokio::time::timeout_at(until, requests.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some((index, answer)) = next else {
            break;
        };
        answers[index] = Some(answer);
        if waiting_for_decision && decided(&answers) {
            waiting_for_decision = false;
            let grace = Instant::now() + started.elapsed().max(MIN_GRACE);
            until = Some(cap.map_or(grace, |cap| cap.min(grace)));
        }
    }
    Round {
        answers,
        outstanding: requests,
    }
}

/// Lets `outstanding` requests finish in a background task (counted by `tracker`, for
/// `Locker::flush`), calling `answered` with each server's index as it answers.
pub(super) fn finish_in_background<T, Fut>(
    tracker: &Arc<Tracker>,
    mut outstanding: FuturesUnordered<Fut>,
    mut answered: impl FnMut(usize) + Send + 'static,
) where
    Fut: Future<Output = (usize, T)> + Send + 'static,
    T: Send + 'static,
{
    if outstanding.is_empty() {
        return;
    }
    tracker.spawn(async move {
        while let Some((index, _)) = outstanding.next().await {
            answered(index);
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Servers answering `true` after the given delays.
    fn answering(
        delays: &[u64],
    ) -> FuturesUnordered<impl Future<Output = (usize, bool)> + Send + 'static> {
        delays
            .iter()
            .enumerate()
            .map(|(index, delay)| {
                let delay = Duration::from_millis(*delay);
                async move {
                    tokio::time::sleep(delay).await;
                    (index, true)
                }
            })
            .collect()
    }

    fn three(answers: &[Option<bool>]) -> bool {
        answers.iter().flatten().count() >= 3
    }

    #[tokio::test(start_paused = true)]
    async fn a_decided_round_waits_as_long_again_then_leaves_the_rest() {
        let started = Instant::now();
        let round =
            until_decided(5, answering(&[2, 4, 6, 9, 3_600_000]), started, None, three).await;
        // Decided at 6 ms (the third answer); the fourth came within as long again.
        assert_eq!(started.elapsed(), 12 * MS);
        assert_eq!(round.answers.iter().flatten().count(), 4);
        assert_eq!(missing(&round.answers).collect::<Vec<_>>(), [4]);
        assert_eq!(round.outstanding.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_undecided_round_waits_for_every_answer_or_the_cap() {
        let started = Instant::now();
        let round =
            until_decided(5, answering(&[1, 1, 30, 40, 50]), started, None, |_| false).await;
        assert_eq!(started.elapsed(), 50 * MS);
        assert!(round.outstanding.is_empty());
        let started = Instant::now();
        let cap = Some(started + 20 * MS);
        let round = until_decided(5, answering(&[1, 1, 30, 40, 50]), started, cap, three).await;
        assert_eq!(started.elapsed(), 20 * MS);
        assert_eq!(missing(&round.answers).collect::<Vec<_>>(), [2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_is_at_least_a_millisecond_and_at_most_the_cap() {
        let started = Instant::now();
        let round = until_decided(4, answering(&[0, 0, 0, 10]), started, None, three).await;
        assert_eq!(started.elapsed(), MIN_GRACE);
        assert_eq!(missing(&round.answers).count(), 1);
        let started = Instant::now();
        let cap = Some(started + 12 * MS);
        let round = until_decided(4, answering(&[10, 10, 10, 15]), started, cap, three).await;
        assert_eq!(started.elapsed(), 12 * MS);
        assert_eq!(missing(&round.answers).count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_outstanding_requests_still_finish() {
        let round = until_decided(
            3,
            answering(&[1, 1, 500]),
            Instant::now(),
            None,
            |answers| answers.iter().flatten().count() >= 2,
        )
        .await;
        let finished = Arc::new(AtomicUsize::new(usize::MAX));
        let seen = finished.clone();
        finish_in_background(&Arc::default(), round.outstanding, move |index| {
            seen.store(index, Ordering::SeqCst);
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 2);
    }
}
