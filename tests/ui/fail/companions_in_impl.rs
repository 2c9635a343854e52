//! An associated fn without `self` looks like a free fn to the macro, which cannot see the impl
//! block around it: its companions' type cannot go there. `companions = false` says so.
use vorte_cache::cached;

struct Repo;

impl Repo {
    #[cached(key = "repo:count:{shop}")]
    async fn count(shop: u32) -> u32 {
        shop
    }
}

fn main() {
    let _ = Repo::count(1);
}
