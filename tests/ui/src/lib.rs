//! Compile-time tests of `#[distributed_lock]`: `tests/fail` holds inputs that must be
//! rejected with the diagnostics in their `.stderr` files, `tests/pass` the shapes that
//! must compile (and run). Regenerate snapshots with
//! `TRYBUILD=overwrite cargo test -p lock-tests-ui` and review the diff like code.
