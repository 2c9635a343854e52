use vorte_cache::cached;

#[cached(ttl = 60, fail_safe = "1h", soft_timeout = "100ms")]
async fn get_user(name: &str) -> Result<String, std::io::Error> {
    Ok(name.to_uppercase())
}

fn main() {}
