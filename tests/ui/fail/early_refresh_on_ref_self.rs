use vorte_cache::cached;

struct Repo;

impl Repo {
    #[cached(ttl = 60, early_refresh = 0.8)]
    async fn find(&self, id: i64) -> Option<i64> {
        Some(id)
    }
}

fn main() {}
