use vorte_cache::cached;

#[cached(ttl = 60, failsafe = "1h")]
async fn find_user(id: u32) -> Option<String> {
    Some(id.to_string())
}

fn main() {}
