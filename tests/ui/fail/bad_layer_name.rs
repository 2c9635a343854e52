use vorte_cache::cached;

#[cached(ttl = 60, layers = ["l1", "redis"])]
async fn get_config(key: &str) -> String {
    key.to_owned()
}

fn main() {}
