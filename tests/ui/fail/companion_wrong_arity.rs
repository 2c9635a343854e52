use vorte_cache::cached;

#[cached(key = "user:{user_id}")]
async fn get_user(user_id: i64) -> Option<String> {
    Some(user_id.to_string())
}

async fn on_update(user_id: i64) {
    let _ = get_user::invalidate(user_id, true).await;
}

fn main() {
    let _ = on_update(1);
}
