use vorte_cache::cached;

#[cached(ttl = 60)]
fn get_config(key: &str) -> String {
    key.to_owned()
}

fn main() {
    let _ = get_config("a");
}
