use lock_runtime::{LockError, distributed_lock};

const KEY: &str = "job";

#[distributed_lock(KEY, timeout = 30)]
async fn constant_template() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(concat!("a", "b"))]
async fn macro_template() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock("job", "second")]
async fn two_templates() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
