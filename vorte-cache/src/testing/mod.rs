//! Tools for testing code that uses vorte-cache, and stores written for it (cargo feature
//! `testing`).
//!
//! - [`TestStore`]: an in-memory [`Store`](crate::Store) with compare-and-set, tombstones and
//!   native expiry like Redis, whose calls can be paused or made to fail one at a time, so that
//!   interleavings of two caches over one store (two processes, in effect) can be replayed
//!   deterministically.
//! - [`contract`]: the rules every store must obey, as one suite that runs against any store,
//!   including one written outside this crate.

#[cfg(test)]
mod circuit_tests;
pub mod contract;
mod hooks;
mod store;

pub use hooks::{Call, Op, Pause};
pub use store::TestStore;
