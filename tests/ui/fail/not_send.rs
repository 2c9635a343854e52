use std::rc::Rc;

use vorte_cache::cached;

async fn load() -> u32 {
    1
}

#[cached(ttl = 60)]
async fn count(id: u32) -> u32 {
    let shared = Rc::new(id);
    let loaded = load().await;
    *shared + loaded
}

fn main() {}
