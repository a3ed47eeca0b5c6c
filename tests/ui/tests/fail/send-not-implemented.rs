use std::rc::Rc;

use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("job")]
async fn holds_rc_across_await() -> Result<(), LockError> {
    let shared = Rc::new(1);
    tokio::task::yield_now().await;
    drop(shared);
    Ok(())
}

fn main() {
    // The future is Send only when the body is: this one is not.
    tokio::spawn(holds_rc_across_await());
}
