//! Rules that depend on the locker's default TTL are checked on every call, not by the
//! macro (which does not know the default), and the error names the attribute.

use std::time::Duration;

use lock_runtime::{LockError, Locker, distributed_lock};

#[distributed_lock("job:renew", auto_renew = 60, locker = locker)]
async fn renews_every_minute(locker: &Locker) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job:hold", min_hold = "5m", skip, locker = locker)]
async fn holds_five_minutes(locker: &Locker) -> Result<u8, LockError> {
    Ok(1)
}

fn config_error(result: Result<impl std::fmt::Debug, LockError>, function: &str) {
    match result {
        Err(LockError::Config(message)) => assert!(
            message.starts_with(&format!("#[distributed_lock] on `{function}`: ")),
            "{message}"
        ),
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The default TTL (30 s) is below both: every call is refused.
    let short = Locker::memory();
    config_error(renews_every_minute(&short).await, "renews_every_minute");
    config_error(holds_five_minutes(&short).await, "holds_five_minutes");
    // With a ten-minute default TTL the same functions are fine.
    let long = Locker::builder().ttl(Duration::from_secs(600)).memory().unwrap();
    renews_every_minute(&long).await.unwrap();
    assert_eq!(holds_five_minutes(&long).await.unwrap(), 1);
}
