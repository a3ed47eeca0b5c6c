//! The generated future is `Send` when the body is, so it can be spawned.

use std::sync::Arc;

use lock_runtime::{LockError, Locker, distributed_lock};

struct State {
    locker: Locker,
}

#[distributed_lock("send:<id>", auto_renew, fencing, on_lost = abort, locker = state.locker)]
async fn handler(state: Arc<State>, id: u64) -> Result<u64, LockError> {
    tokio::task::yield_now().await;
    Ok(id)
}

#[distributed_lock("send:job", skip, min_hold = 1)]
async fn job() -> Option<u8> {
    tokio::task::yield_now().await;
    Some(1)
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::main]
async fn main() {
    lock_runtime::set_default(Locker::memory());
    let state = Arc::new(State {
        locker: Locker::memory(),
    });
    let spawned = tokio::spawn(assert_send(handler(state, 9)));
    assert_eq!(spawned.await.unwrap().unwrap(), 9);
    assert_eq!(tokio::spawn(assert_send(job())).await.unwrap(), Some(1));
}
