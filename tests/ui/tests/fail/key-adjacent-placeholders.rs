use lock_runtime::{LockError, distributed_lock};

// `1`, `23` and `12`, `3` would share the lock `pair:123`.
#[distributed_lock("pair:<a><b>")]
async fn adjacent(a: u32, b: u32) -> Result<(), LockError> {
    Ok(())
}

// `escape` keeps `-` and `%` starts its escapes: neither separates two values.
#[distributed_lock("pair:<a>-<b>:<c>%<d>", escape)]
async fn escaped_without_separator(a: &str, b: &str, c: &str, d: &str) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
