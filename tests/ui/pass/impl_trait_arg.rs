//! `impl Trait` arguments are kept as written.
use std::fmt::Display;

use vorte_cache::cached;

#[cached(key = "greeting:{name}")]
async fn greet(name: impl Display + Send) -> String {
    format!("hello {name}")
}

#[cached]
async fn sum(values: impl IntoIterator<Item = i64> + serde::Serialize + Send) -> i64 {
    values.into_iter().sum()
}

fn main() {
    let _ = greet("ann");
    let _ = sum(vec![1, 2]);
}
