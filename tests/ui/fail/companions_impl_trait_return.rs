use std::fmt::Display;

use vorte_cache::cached;

#[cached(key = "label:{id}", returns = value, companions = true)]
async fn label(id: u32) -> impl Display + Clone + Send {
    id
}

fn main() {
    let _ = label(1);
}
