use vorte_cache::cached;

#[cached(ttl = 60, layer = "l1", layers = ["l1", "l2"])]
async fn get_config(key: &str) -> String {
    key.to_owned()
}

fn main() {}
