//! Micro benchmarks: the cost of building a lock's key, by hand and through the
//! attribute's template expansion.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn key_formatting(c: &mut Criterion) {
    let order_id = 4_242_u64;
    let tenant = "acme";
    c.bench_function("format! key", |b| {
        b.iter(|| format!("tenant:{}:order:{}", black_box(tenant), black_box(order_id)))
    });
    c.bench_function("attribute key builder", |b| {
        b.iter(|| {
            lock_runtime::__private::KeyBuilder::with_capacity(32)
                .text("tenant:")
                .value(black_box(tenant), "<tenant>")
                .text(":order:")
                .value(&black_box(order_id), "<order_id>")
                .finish()
        })
    });
}

criterion_group!(benches, key_formatting);
criterion_main!(benches);
