use lock_runtime::{LockError, distributed_lock};

struct User {
    id: u64,
}

// rustc reports these on the template, but must not offer to rewrite the string
// literal with the generated code (it used to suggest `#[distributed_lock(id)]`).
#[distributed_lock("user:<user.uid>")]
async fn similar_field(user: User) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("user:<user.id>")]
async fn field_inside_option(user: Option<User>) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
