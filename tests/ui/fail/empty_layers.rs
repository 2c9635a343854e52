use vorte_cache::cached;

#[cached(ttl = 60, layers = [])]
async fn get_config(key: &str) -> String {
    key.to_owned()
}

fn main() {}
