use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job:<id>")]
async fn peeks(id: u32) -> Result<usize, LockError> {
    // The expansion's locals are invisible to the body.
    Ok(__lock_request.len() + __lock_ret)
}

fn main() {}
