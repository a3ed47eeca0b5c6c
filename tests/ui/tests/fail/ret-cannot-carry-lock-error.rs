use lock_runtime::distributed_lock;

#[distributed_lock("job")]
async fn unit() {}

#[distributed_lock("job")]
async fn option() -> Option<u32> {
    None
}

#[distributed_lock("job")]
async fn error_without_from() -> Result<(), String> {
    Ok(())
}

fn main() {}
