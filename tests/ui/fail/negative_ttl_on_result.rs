use vorte_cache::cached;

#[cached(ttl = 60, negative_ttl = 5)]
async fn load(id: u32) -> Result<String, std::io::Error> {
    Ok(id.to_string())
}

fn main() {}
