use std::sync::Arc;

use lock_runtime::{LockError, Locker, distributed_lock};

struct State {
    locker: Locker,
    name: String,
}

#[distributed_lock("job", locker = state)]
async fn whole_state(state: Arc<State>) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", locker = state.name)]
async fn wrong_field(state: &State) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", locker = Some(Locker::memory()))]
async fn optional() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
