//! `companions = true` on methods: `Repo::find_key`, `Repo::invalidate_find`,
//! `repo.refresh_find(..)`, in inherent impls, generic ones included, with every receiver.
#![deny(warnings)]

use std::marker::PhantomData;
use std::sync::Arc;

use vorte_cache::cached;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Repo {
    base: i64,
}

impl Repo {
    #[cached(key = "repo:user:{id}", companions = true)]
    pub async fn find(&self, id: i64) -> Option<i64> {
        Some(self.base + id)
    }

    #[cached(ttl = 5, companions = true)]
    async fn count(&mut self, mut step: i64) -> i64 {
        step += 1;
        self.base += step;
        self.base
    }

    #[cached(companions = true)]
    async fn shared(self: Arc<Self>, extra: i64) -> i64 {
        self.base + extra
    }

    #[cached(key = "repo:new:{base}", companions = true)]
    async fn built(base: i64) -> Option<Self> {
        Some(Self { base })
    }
}

struct Typed<T>(PhantomData<T>);

impl<T: Send + Sync> Typed<T> {
    #[cached(key = "typed:{n}", companions = true)]
    async fn get(&self, n: u32) -> u32 {
        n
    }
}

async fn use_them() -> vorte_cache::Result<()> {
    let mut repo = Repo { base: 1 };
    let _: String = Repo::find_key(1)?;
    let _: bool = Repo::invalidate_find(1).await?;
    let _: Option<i64> = repo.refresh_find(1).await;
    let _ = repo.find(1).await;
    let _ = Repo::count_key(2)?;
    let _ = repo.refresh_count(2).await;
    let _ = repo.count(2).await;
    let repo = Arc::new(repo);
    let _ = Repo::shared_key(3)?;
    let _ = repo.clone().refresh_shared(3).await;
    let _ = repo.shared(3).await;
    let _ = Repo::built_key(4)?;
    let _ = Typed::<String>::get_key(5)?;
    let _ = Typed::<String>(PhantomData).refresh_get(5).await;
    Ok(())
}

fn main() {
    let _ = use_them();
}
