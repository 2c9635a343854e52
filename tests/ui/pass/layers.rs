//! `layer = ".."` and `layers = [..]`.
use vorte_cache::cached;

#[cached(ttl = 60, layer = "l1")]
async fn config(key: &str) -> String {
    key.to_owned()
}

#[cached(ttl = 60, layers = ["l1", "l2", "l3", "l4"])]
async fn everywhere(id: u32) -> u32 {
    id
}

fn main() {
    let _ = config("a");
    let _ = everywhere(1);
}
