use vorte_cache::cached;

#[cached(ttl = 60, fail_safe = "1h", hard_timeout = "2s")]
async fn find_user(id: u32) -> Option<String> {
    Some(id.to_string())
}

fn main() {}
