//! Generic parameters and where-clauses are kept; the default key serializes the arguments.
use std::fmt::Display;

use serde::Serialize;
use vorte_cache::cached;

#[cached(ttl = 60)]
async fn describe<T: Serialize + Display + Sync>(value: T, times: usize) -> String
where
    T: Send,
{
    value.to_string().repeat(times)
}

#[cached(key = "pair:{a}:{b}")]
async fn pair<'a, A, B>(a: &'a A, b: B) -> Vec<String>
where
    A: Display + Sync + ?Sized,
    B: Display + Send,
{
    vec![a.to_string(), b.to_string()]
}

fn main() {
    let _ = describe(1u8, 2);
    let _ = pair("x", 2);
}
