use vorte_cache::cached;

#[cached(key = "user:{user_id")]
async fn get_user(user_id: i64) -> Option<String> {
    Some(user_id.to_string())
}

fn main() {}
