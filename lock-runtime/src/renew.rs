//! Auto-renewal: keeps a held lock alive while its guard lives.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::backend::ExtendMode;
use crate::guard::{LeaseState, Shared};

/// The shortest pause between renewal attempts after a failure.
const MIN_RETRY: Duration = Duration::from_millis(10);

/// Spawns the task that extends the lock to its TTL every `every`; the guard aborts it on
/// release and on drop.
pub(crate) fn spawn(shared: Arc<Shared>, every: Duration) -> AbortHandle {
    tokio::spawn(renew(shared, every)).abort_handle()
}

/// Extends the lock every `every`. A renewal that finds another owner marks the lock lost
/// and stops; one that fails (Redis unreachable) is retried sooner, until the lease runs
/// out, which also marks the lock lost.
async fn renew(shared: Arc<Shared>, every: Duration) {
    let retry = (every / 4).max(MIN_RETRY);
    let mut next = shared.acquired_at + every;
    loop {
        tokio::time::sleep_until(next).await;
        let lease = *shared.lease.borrow();
        if lease.state != LeaseState::Held {
            return;
        }
        if Instant::now() >= lease.valid_until {
            shared.mark_lost("the lease ran out while renewals failed");
            return;
        }
        let sent_at = Instant::now();
        let renewed = shared
            .backend
            .extend(&shared.keys, &shared.token, shared.ttl, ExtendMode::Set)
            .await;
        match renewed {
            Ok(Some(remaining)) => {
                shared.renewed(sent_at + remaining);
                next = sent_at + every;
            }
            Ok(None) => {
                shared.mark_lost("renewal found the key expired or owned by someone else");
                return;
            }
            Err(error) => {
                tracing::warn!(key = %shared.keys.key, %error, "lock renewal failed; retrying");
                next = (Instant::now() + retry).min(lease.valid_until);
            }
        }
    }
}
