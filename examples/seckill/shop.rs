//! The shop: stock and sales in Redis (or in memory), and the purchase with and without
//! a lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lock_runtime::{LockError, Locker, distributed_lock};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

/// Why a purchase failed (not "sold out": that is a normal answer).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShopError {
    /// The lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Stock and sales of every product in one demo run, under `namespace`.
#[derive(Clone)]
pub(crate) struct Shop {
    pub(crate) locker: Locker,
    store: Store,
    namespace: String,
}

#[derive(Clone)]
enum Store {
    Redis(ConnectionManager),
    Memory(Arc<Mutex<Memory>>),
}

#[derive(Default)]
struct Memory {
    stock: HashMap<u32, i64>,
    sales: HashMap<u32, Vec<i64>>,
    served: u64,
}

/// What was sold of some products.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Units sold.
    pub(crate) sold: u64,
    /// Units sold more than once (two buyers got the same serial number).
    pub(crate) duplicates: u64,
    /// Stock left, summed over the products (negative: oversold).
    pub(crate) final_stock: i64,
}

impl Shop {
    /// A shop in Redis at `url`; its keys (and its locks) start with `namespace`.
    pub(crate) async fn redis(url: &str, namespace: &str) -> Result<Self, ShopError> {
        let locker = Locker::builder()
            .prefix(format!("lock:{namespace}:"))
            .redis(url)?;
        locker.ping().await?;
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client).await?;
        Ok(Self {
            locker,
            store: Store::Redis(connection),
            namespace: namespace.to_owned(),
        })
    }

    /// A shop in this process's memory, with the in-memory lock backend.
    pub(crate) fn memory(namespace: &str) -> Self {
        Self {
            locker: Locker::memory(),
            store: Store::Memory(Arc::default()),
            namespace: namespace.to_owned(),
        }
    }

    fn key(&self, what: &str, product: u32) -> String {
        format!("{}:{what}:{product}", self.namespace)
    }

    /// Puts `stock` units of each of `products` on sale, with no sales yet.
    pub(crate) async fn stock_up(&self, products: u32, stock: i64) -> Result<(), ShopError> {
        match &self.store {
            Store::Redis(connection) => {
                let mut pipe = redis::pipe();
                pipe.del(format!("{}:served", self.namespace));
                for product in 0..products {
                    pipe.set(self.key("stock", product), stock)
                        .del(self.key("sales", product));
                }
                pipe.exec_async(&mut connection.clone()).await?;
            }
            Store::Memory(memory) => {
                let mut memory = locked(memory);
                *memory = Memory::default();
                memory.stock = (0..products).map(|product| (product, stock)).collect();
            }
        }
        Ok(())
    }

    async fn stock(&self, product: u32) -> Result<i64, ShopError> {
        Ok(match &self.store {
            Store::Redis(connection) => {
                let stock: Option<i64> = connection.clone().get(self.key("stock", product)).await?;
                stock.unwrap_or(0)
            }
            Store::Memory(memory) => locked(memory).stock.get(&product).copied().unwrap_or(0),
        })
    }

    /// Takes one unit off the stock and records the sale of unit number `unit`.
    async fn sell(&self, product: u32, unit: i64) -> Result<(), ShopError> {
        match &self.store {
            Store::Redis(connection) => {
                redis::pipe()
                    .atomic()
                    .decr(self.key("stock", product), 1)
                    .rpush(self.key("sales", product), unit)
                    .exec_async(&mut connection.clone())
                    .await?;
            }
            Store::Memory(memory) => {
                let mut memory = locked(memory);
                *memory.stock.entry(product).or_default() -= 1;
                memory.sales.entry(product).or_default().push(unit);
            }
        }
        Ok(())
    }

    /// Counts one buyer as served (for the progress line).
    pub(crate) async fn served(&self) -> Result<(), ShopError> {
        match &self.store {
            Store::Redis(connection) => {
                let _: u64 = connection
                    .clone()
                    .incr(format!("{}:served", self.namespace), 1)
                    .await?;
            }
            Store::Memory(memory) => locked(memory).served += 1,
        }
        Ok(())
    }

    /// How many buyers have been served.
    pub(crate) async fn served_count(&self) -> Result<u64, ShopError> {
        Ok(match &self.store {
            Store::Redis(connection) => {
                let served: Option<u64> = connection
                    .clone()
                    .get(format!("{}:served", self.namespace))
                    .await?;
                served.unwrap_or(0)
            }
            Store::Memory(memory) => locked(memory).served,
        })
    }

    /// What was sold of `products`.
    pub(crate) async fn tally(&self, products: u32) -> Result<Tally, ShopError> {
        let mut tally = Tally::default();
        for product in 0..products {
            let sales: Vec<i64> = match &self.store {
                Store::Redis(connection) => {
                    connection
                        .clone()
                        .lrange(self.key("sales", product), 0, -1)
                        .await?
                }
                Store::Memory(memory) => locked(memory)
                    .sales
                    .get(&product)
                    .cloned()
                    .unwrap_or_default(),
            };
            let sold = sales.len();
            let mut units = sales;
            units.sort_unstable();
            units.dedup();
            tally.sold += sold as u64;
            tally.duplicates += (sold - units.len()) as u64;
            tally.final_stock += self.stock(product).await?;
        }
        Ok(tally)
    }
}

/// The in-memory store, also after a buyer task panicked while holding it.
fn locked(memory: &Mutex<Memory>) -> MutexGuard<'_, Memory> {
    memory.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One purchase, as a naive service writes it: read the stock, create the order (this
/// takes `work`), take the unit off the stock. Returns whether a unit was sold.
///
/// Without a lock, every buyer that reads the stock before the others decrement it
/// sells the same unit: the flash sale oversells.
pub(crate) async fn purchase(shop: &Shop, product: u32, work: Duration) -> Result<bool, ShopError> {
    let stock = shop.stock(product).await?;
    if stock <= 0 {
        return Ok(false);
    }
    tokio::time::sleep(work).await; // create the order, reserve the payment...
    shop.sell(product, stock).await?;
    Ok(true)
}

/// The same purchase under one lock per product: buyers of different products do not
/// wait for each other.
#[distributed_lock("stock:<product>", timeout = 10, wait = 60, locker = shop.locker)]
pub(crate) async fn purchase_per_product(
    shop: &Shop,
    product: u32,
    work: Duration,
) -> Result<bool, ShopError> {
    purchase(shop, product, work).await
}

/// The same purchase under one global lock: correct, but every purchase of every product
/// waits for every other one.
#[distributed_lock("stock:all-products", timeout = 10, wait = 60, locker = shop.locker)]
pub(crate) async fn purchase_global(
    shop: &Shop,
    product: u32,
    work: Duration,
) -> Result<bool, ShopError> {
    purchase(shop, product, work).await
}
