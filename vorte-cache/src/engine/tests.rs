//! Engine unit tests.

use super::*;

/// The read path's futures are allocated and moved on every call that misses L1: the write
/// path (back-fill, the loader's store) is boxed inside them only when it runs. Inline, it
/// made `get`'s future 6.5 KB; boxed, `get`'s is 0.7 KB and `get_or_set`'s 0.9 KB.
#[test]
fn read_futures_stay_small() {
    let engine = Arc::new(Engine::embedded_default());
    let get = engine.get::<String>("k");
    assert!(
        std::mem::size_of_val(&get) <= 1_024,
        "Engine::get future: {} bytes",
        std::mem::size_of_val(&get)
    );
    let options = LoadOptions::default();
    let get_or_set = engine.get_or_set::<i32, _, _, std::io::Error>(
        "k",
        || async { Ok(1) },
        None,
        None,
        &[],
        LayerSet::ALL,
        &options,
    );
    assert!(
        std::mem::size_of_val(&get_or_set) <= 1_536,
        "Engine::get_or_set future: {} bytes",
        std::mem::size_of_val(&get_or_set)
    );
}

/// A zstd entry read by a build without zstd is another build's, not corrupt: a miss that stays
/// for the builds that can read it. Anything else that does not decode is removed.
#[test]
fn an_entry_this_build_cannot_read_is_left_for_the_builds_that_can() {
    assert!(!Engine::removes_undecodable(&crate::codec::ZSTD_NOT_BUILT));
    assert!(Engine::removes_undecodable(&crate::codec::Corrupt(
        "checksum mismatch"
    )));
}
