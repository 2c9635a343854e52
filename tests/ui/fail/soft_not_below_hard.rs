use vorte_cache::cached;

#[cached(ttl = 60, soft_timeout = "2s", hard_timeout = 500ms)]
async fn find_user(id: u32) -> Result<String, std::io::Error> {
    Ok(id.to_string())
}

fn main() {}
