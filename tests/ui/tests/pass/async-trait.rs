//! Methods of `#[async_trait]` impls (`Send` and `?Send`), whose `async fn`s that
//! attribute has already turned into boxed futures, are locked like any `async fn`.

use async_trait::async_trait;
use lock_runtime::{LockError, Locker, distributed_lock};

#[async_trait]
trait Jobs {
    async fn run(&self, id: u64) -> Result<String, LockError>;
    async fn tick(&self);
}

#[async_trait(?Send)]
trait Local {
    async fn local(&self) -> Result<u8, LockError>;
}

struct Worker {
    name: String,
    locker: Locker,
}

#[async_trait]
impl Jobs for Worker {
    #[distributed_lock("job:<self.name>:<id>", locker = self.locker)]
    async fn run(&self, id: u64) -> Result<String, LockError> {
        Ok(lock_runtime::current().expect("under the lock").name().to_owned())
    }

    #[distributed_lock("tick:<self.name>", skip, locker = self.locker)]
    async fn tick(&self) {
        panic!("ticked while the lock was held elsewhere");
    }
}

#[async_trait(?Send)]
impl Local for Worker {
    #[distributed_lock("local:<self.name>", locker = self.locker)]
    async fn local(&self) -> Result<u8, LockError> {
        Ok(1)
    }
}

/// Takes `name` in another task: another owner, as another instance would be (a lock
/// this task held would be re-entry, `LockError::Reentrant`).
async fn held_elsewhere(locker: &Locker, name: &'static str) -> lock_runtime::LockGuard {
    tokio::spawn(locker.lock(name).acquire()).await.unwrap().unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    let worker = Worker {
        name: "w".into(),
        locker: locker.clone(),
    };
    let jobs: &dyn Jobs = &worker;
    assert_eq!(jobs.run(7).await.unwrap(), "job:w:7");
    let _held = held_elsewhere(&locker, "job:w:7").await;
    assert!(matches!(jobs.run(7).await, Err(LockError::Busy { .. })));
    let _tick = held_elsewhere(&locker, "tick:w").await;
    jobs.tick().await;
    assert_eq!(worker.local().await.unwrap(), 1);
}
