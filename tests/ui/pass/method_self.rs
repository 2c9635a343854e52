//! `&self`, `&mut self` and `self` receivers, in an inherent impl and in a generic impl.
use std::marker::PhantomData;

use vorte_cache::cached;

struct Repo {
    base: i64,
}

impl Repo {
    #[cached(key = "repo:user:{id}")]
    async fn find(&self, id: i64) -> Option<i64> {
        Some(self.base + id)
    }

    #[cached(ttl = 5)]
    pub async fn count(&mut self) -> i64 {
        self.base += 1;
        self.base
    }

    #[cached]
    async fn into_total(self, extra: i64) -> i64 {
        self.base + extra
    }
}

struct Typed<T>(PhantomData<T>);

impl<T: Send + Sync> Typed<T> {
    #[cached(key = "typed:{n}")]
    async fn get(&self, n: u32) -> u32 {
        n
    }
}

fn main() {
    let mut repo = Repo { base: 1 };
    let _ = repo.find(1);
    let _ = repo.count();
    let _ = Repo { base: 1 }.into_total(2);
    let _ = Typed::<String>(PhantomData).get(1);
}
