//! Compile-time behaviour of `#[cached]` and `#[on_event]`: what must compile (`ui/pass`) and the
//! diagnostics of each misuse (`ui/fail`, one mistake per file, with its expected `.stderr`).
//!
//! Diagnostics change between compiler releases, so this runs on stable only. After a deliberate
//! change to a message, regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p vorte-cache-tests --test ui` and read the diff.

#[rustversion::stable]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
