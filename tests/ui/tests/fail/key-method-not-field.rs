use lock_runtime::{LockError, distributed_lock};

struct User {
    id: u64,
}

impl User {
    fn name(&self) -> String {
        self.id.to_string()
    }
}

// The error points at the template. rustc 1.95 still appends its "use parentheses to
// call the method" help after the literal: that help (like the one for a private field
// with a getter) ignores that the field access is generated, and no span a macro can
// give the access avoids it. It is a rustc limitation, kept here so that a change in it
// shows up; the fix is to name a field, or pass the method's result as an argument.
#[distributed_lock("user:<user.name>")]
async fn method_not_field(user: User) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
