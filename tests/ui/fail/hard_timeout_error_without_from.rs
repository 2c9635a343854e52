use vorte_cache::cached;

#[derive(Debug)]
struct DbError;

#[cached(ttl = 60, hard_timeout = "2s")]
async fn find_user(id: u32) -> Result<String, DbError> {
    Ok(id.to_string())
}

fn main() {}
