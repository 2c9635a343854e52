use vorte_cache::cached;

#[cached(ttl = 60, early_refresh = 1.5)]
async fn get_price(item: u32) -> u64 {
    u64::from(item) * 100
}

fn main() {}
