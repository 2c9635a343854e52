//! A method's companions are siblings in its impl block, which a trait impl does not accept: the
//! attribute cannot tell the two apart, so they are opt-in (`companions = true`).
use vorte_cache::cached;

trait Find {
    async fn find(&self, id: u32) -> u32;
}

struct Repo;

impl Find for Repo {
    #[cached(key = "find:{id}", companions = true)]
    async fn find(&self, id: u32) -> u32 {
        id
    }
}

fn main() {
    let _ = Repo.find(1);
}
