//! Whether a return type is a `Result` is decided from the type, not from its name: an
//! alias of `Result` is one, a `Default` struct named `...Result` is not.

use lock_runtime::{LockError, Locker, distributed_lock};

#[derive(Debug)]
struct AppError(LockError);

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        Self(error)
    }
}

type Fallible<T> = Result<T, AppError>;

#[derive(Debug, Default, PartialEq)]
struct JobResult {
    rows: u32,
}

#[distributed_lock("alias:plain")]
async fn alias() -> Fallible<u32> {
    Ok(1)
}

#[distributed_lock("alias:skip", skip)]
async fn alias_skip() -> Fallible<u32> {
    Ok(2)
}

#[distributed_lock("struct:skip", skip)]
async fn struct_named_result() -> JobResult {
    JobResult { rows: 3 }
}

#[distributed_lock("generic:skip", skip)]
async fn generic<R: Default + From<u8>>() -> R {
    R::from(4)
}

/// Takes `name` in another task: another owner, as another instance would be (a lock
/// this task held would be re-entry, `LockError::Reentrant`).
async fn held_elsewhere(locker: &Locker, name: &'static str) -> lock_runtime::LockGuard {
    tokio::spawn(locker.lock(name).acquire()).await.unwrap().unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    lock_runtime::set_default(locker.clone());
    assert_eq!(alias().await.unwrap(), 1);
    assert_eq!(alias_skip().await.unwrap(), 2);
    assert_eq!(struct_named_result().await, JobResult { rows: 3 });
    assert_eq!(generic::<u32>().await, 4);
    let _held = [
        held_elsewhere(&locker, "alias:plain").await,
        held_elsewhere(&locker, "alias:skip").await,
        held_elsewhere(&locker, "struct:skip").await,
        held_elsewhere(&locker, "generic:skip").await,
    ];
    assert!(matches!(alias().await, Err(AppError(LockError::Busy { .. }))));
    assert_eq!(alias_skip().await.unwrap(), 0);
    assert_eq!(struct_named_result().await, JobResult::default());
    assert_eq!(generic::<u32>().await, 0);
}
