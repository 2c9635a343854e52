use vorte_cache::cached;

struct Repo;

impl Repo {
    #[cached(key = "repo:{self}:{id}")]
    async fn find(&self, id: i64) -> Option<i64> {
        Some(id)
    }
}

fn main() {}
