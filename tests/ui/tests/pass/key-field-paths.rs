//! Field paths follow Rust's rules: field names, raw identifiers (also written without
//! `r#`), tuple indices, nested, from arguments and from `self`.

use lock_runtime::{LockError, Locker, distributed_lock};

struct Order {
    r#type: &'static str,
    r#match: (u8, (u8, u8)),
}

struct Shop {
    r#loop: u8,
    locker: Locker,
}

fn name() -> String {
    lock_runtime::current().expect("under the lock").name().to_owned()
}

#[distributed_lock(
    "order:<order.r#type>:<order.type>:<order.match.1.0>:<order.r#match.0>:<pair.0.1>",
    locker = locker
)]
async fn paths(locker: &Locker, order: Order, pair: ((u8, u8), u8)) -> Result<String, LockError> {
    Ok(name())
}

impl Shop {
    #[distributed_lock("shop:<self.r#loop>:<self.loop>", locker = self.locker)]
    async fn keyword_field(&self) -> Result<String, LockError> {
        Ok(name())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locker = Locker::memory();
    let order = Order {
        r#type: "gift",
        r#match: (1, (2, 3)),
    };
    assert_eq!(
        paths(&locker, order, ((4, 5), 6)).await.unwrap(),
        "order:gift:gift:2:1:5"
    );
    let shop = Shop { r#loop: 9, locker };
    assert_eq!(shop.keyword_field().await.unwrap(), "shop:9:9");
}
