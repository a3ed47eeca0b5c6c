use lock_runtime::{LockError, distributed_lock};

trait Jobs {
    #[distributed_lock("job")]
    async fn run(&self) -> Result<(), LockError>;
}

#[distributed_lock("job")]
struct NotAFunction;

fn main() {}
