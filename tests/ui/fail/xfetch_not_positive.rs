use vorte_cache::cached;

#[cached(ttl = 60, xfetch = 0.0)]
async fn get_price(item: u32) -> u64 {
    u64::from(item) * 100
}

fn main() {}
