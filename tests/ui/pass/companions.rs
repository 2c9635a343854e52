//! The companions `key`, `invalidate` and `refresh` of free fns: every visibility, generics,
//! `impl Trait` and borrowed arguments, block-local types, `self::`/`super::` paths, `mut`
//! parameters, `#[cfg]`, and `companions = false` where no companion can go.
#![deny(warnings)]

use std::fmt::Display;

use serde::Serialize;
use vorte_cache::cached;

pub struct UserId(pub i64);

impl Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

mod users {
    use vorte_cache::cached;

    /// Public: its companions are public too.
    #[cached(key = "user:{id}")]
    pub async fn get_user(id: super::UserId) -> Option<String> {
        Some(id.to_string())
    }

    #[cached(ttl = 60)]
    pub(crate) async fn by_name(name: &str, mut retries: u8) -> Result<String, std::io::Error> {
        retries += 1;
        Ok(format!("{name}{retries}"))
    }

    /// Private: the companions are usable where the fn is.
    #[cached(key = "secret:{id}")]
    async fn secret(id: u32) -> u32 {
        id
    }

    pub(crate) async fn forget_secret(id: u32) -> vorte_cache::Result<bool> {
        secret::invalidate(id).await
    }

    pub(crate) mod nested {
        use vorte_cache::cached;

        #[cached(key = "nested:{id}")]
        pub(crate) async fn by_parent_type(id: super::super::UserId) -> String {
            id.to_string()
        }

        #[cached(key = "self:{id}")]
        pub(crate) async fn by_self_path(id: self::Local) -> String {
            id.0.to_string()
        }

        #[derive(Clone, Copy)]
        pub(crate) struct Local(pub(crate) u8);

        impl std::fmt::Display for Local {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    }
}

#[cached(key = "pair:{a}:{b}")]
async fn pair<'a, A, B>(a: &'a A, b: B) -> Vec<String>
where
    A: Display + Sync + ?Sized,
    B: Display + Send,
{
    vec![a.to_string(), b.to_string()]
}

#[cached(ttl = 60)]
async fn describe<T: Serialize + Display + Sync + Send>(value: T) -> String {
    value.to_string()
}

/// A type parameter only in the return type: the companions take it by turbofish too.
#[cached(key = "parsed:{text}")]
async fn parsed<T>(text: String) -> Option<T>
where
    T: std::str::FromStr + Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    text.parse().ok()
}

#[cached(key = "greeting:{name}")]
async fn greet(name: impl Display + Send) -> String {
    format!("hello {name}")
}

#[cfg(any())]
#[cached(key = "never:{id}")]
async fn never(id: u32) -> u32 {
    id
}

struct Repo;

impl Repo {
    /// No `self`, in an impl: the macro cannot tell it from a free fn, so it is told.
    #[cached(key = "repo:count:{shop}", companions = false)]
    async fn count(shop: u32) -> u32 {
        shop
    }

    /// A method has no companions, and needs no `companions = false`.
    #[cached(key = "repo:find:{id}")]
    async fn find(&self, id: u32) -> u32 {
        id
    }
}

async fn use_them() -> vorte_cache::Result<()> {
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Local {
        n: u8,
    }

    /// A type declared in the block, seen by the companions as by the fn.
    #[cached(key = "local:{n}")]
    async fn local(n: u8) -> Local {
        Local { n }
    }

    let _: String = users::get_user::key(UserId(1))?;
    let _: bool = users::get_user::invalidate(UserId(1)).await?;
    let _: Option<String> = users::get_user::refresh(UserId(1)).await;
    let _ = users::by_name::key("ann", 0)?;
    let _ = users::by_name::refresh("ann", 0).await;
    let _ = users::forget_secret(1).await?;
    let _ = users::nested::by_parent_type::invalidate(UserId(2)).await?;
    let _ = users::nested::by_self_path::key(users::nested::Local(3))?;
    let _ = pair::key("x", 2)?;
    let _ = pair::refresh("x", 2).await;
    let _ = describe::invalidate(1u8).await?;
    let _ = parsed::key::<u32>("1".to_owned())?;
    let _: Option<u32> = parsed::refresh::<u32>("1".to_owned()).await;
    let _ = greet::key("ann")?;
    let _ = local::refresh(4).await.n;
    let _ = local::key(4)?;
    let _ = Repo::count(1).await;
    let _ = Repo.find(1).await;
    // The invalidation future is `Send + 'static`: it can be spawned.
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    let name = String::from("bob");
    spawnable(greet::invalidate(name.as_str()));
    Ok(())
}

fn main() {
    let _ = use_them();
}
