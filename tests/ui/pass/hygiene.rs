//! The expansion names everything by absolute path: shadowing `core`, `std`, `Result`, `Option`,
//! `String` or `Vec` in the user's module changes nothing.
#![allow(dead_code, non_camel_case_types)]

mod core {}
mod std {}
struct Option;
struct Result;
struct String;
struct Vec;
struct str;

use vorte_cache::{cached, on_event};

#[cached(key = "hygiene:{id}", tags = ["hygiene"])]
async fn keyed(id: u32) -> u32 {
    id
}

#[cached(ttl = 1)]
async fn defaulted(id: u32) -> u32 {
    id
}

#[on_event("hygiene.event")]
async fn handler(id: u32) {
    let _ = id;
}

fn main() {
    let _ = keyed(1);
    let _ = defaulted(1);
}
