use lock_runtime::distributed_lock;

// The expansion repeats the return type (to pin the body's type and to convert lock
// errors), but rustc reports the typo once, with its fix on the user's own type and no
// suggestion that involves generated code.
#[distributed_lock("job")]
async fn typo() -> Result<(), LockErr> {
    Ok(())
}

fn main() {}
