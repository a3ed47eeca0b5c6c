//! User items named like the expansion's types do not capture its paths.
#![allow(dead_code)]

use lock_runtime::{LockError, Locker, distributed_lock};

#[derive(Debug)]
struct AppError;

impl From<LockError> for AppError {
    fn from(_: LockError) -> Self {
        AppError
    }
}

type Result<T> = std::result::Result<T, AppError>;

struct String;
struct Option;
struct Duration;
enum Outcome {
    Ran,
}

#[distributed_lock("shadow:<n>", timeout = "2s", wait = 1)]
async fn shadowed(n: u32) -> Result<u32> {
    use Outcome::*;
    let _ = Ran;
    Ok(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lock_runtime::set_default(Locker::memory());
    assert_eq!(shadowed(3).await.unwrap(), 3);
}
