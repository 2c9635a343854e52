//! Tags, literal and templated.
use vorte_cache::cached;

#[cached(ttl = 3600, tags = ["products", "catalog"])]
async fn products(category: &str) -> Vec<String> {
    vec![category.to_owned()]
}

#[cached(ttl = 3600, key = "product:{id}", tags = ["products", "category:{category}", "product:{id}"])]
async fn product(id: u64, category: &str) -> Option<String> {
    Some(format!("{category}/{id}"))
}

fn main() {
    let _ = products("tv");
    let _ = product(1, "tv");
}
