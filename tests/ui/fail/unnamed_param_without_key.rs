use vorte_cache::cached;

#[cached(ttl = 60)]
async fn distance((x, y): (i64, i64)) -> i64 {
    x * x + y * y
}

fn main() {}
