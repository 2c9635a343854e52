use vorte_cache::cached;

#[cached(ttl = 60, tags = ["products", "category:{categry}"])]
async fn products(category: &str) -> Vec<String> {
    vec![category.to_owned()]
}

fn main() {}
