use lock_runtime::{LockError, distributed_lock};

struct User {
    id: u64,
}

// Field paths follow Rust's rules; anything else is an ordinary error on the template
// (never a panic), and the function is still emitted, so the calls in `main` add none.
#[distributed_lock("pair:<pair.r#0>")]
async fn raw_tuple_index(pair: (u64, u64)) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("pair:<pair.01>:<pair.4294967296>")]
async fn malformed_indices(pair: (u64, u64)) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("user:<r#self>:<user.r#self>:<user.self>:<user.r#>")]
async fn path_keywords(user: User) -> Result<u64, LockError> {
    Ok(user.id)
}

fn main() {
    let _ = raw_tuple_index((1, 2));
    let _ = malformed_indices((1, 2));
    let _ = path_keywords(User { id: 1 });
}
