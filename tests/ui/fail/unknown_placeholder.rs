use vorte_cache::cached;

#[cached(ttl = 60, key = "user:{id}")]
async fn get_user(user_id: i64) -> Option<String> {
    Some(user_id.to_string())
}

fn main() {}
