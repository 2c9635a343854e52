use vorte_cache::cached;

struct User {
    id: i64,
}

#[cached(ttl = 60, key = "user:{id}")]
async fn get_user(id: i64) -> Option<User> {
    Some(User { id })
}

fn main() {}
