use lock_runtime::{LockError, distributed_lock};

struct User {
    id: u64,
}

#[distributed_lock("user:<user.uid>")]
async fn unknown_field(user: User) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
