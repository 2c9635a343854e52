//! The seed page, in Rust: every example of the cache module, on L1 + L4 (`file`, in a temporary
//! directory), with nothing else to run.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vorte_cache::{Cache, Config, Layer, Vorte, cached, on_event};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: i64,
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: i64,
    name: String,
    category: String,
}

/// Stands in for the database; counts its queries so the output shows what the cache saved.
static DB_QUERIES: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
struct DbError;

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("database unavailable")
    }
}

impl std::error::Error for DbError {}

async fn db_fetch_user(user_id: i64) -> Result<Option<User>, DbError> {
    DB_QUERIES.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok((user_id > 0).then(|| User {
        id: user_id,
        name: if user_id == 1 {
            "Alice".into()
        } else {
            format!("user{user_id}")
        },
    }))
}

// ----- @cached -----------------------------------------------------------------------------------

#[cached(ttl = 300, key = "user:{user_id}")]
async fn get_user(user_id: i64) -> Result<Option<User>, DbError> {
    db_fetch_user(user_id).await
}

#[cached(ttl = 60, layer = "l1")]
async fn get_config(key: &str) -> Result<String, DbError> {
    DB_QUERIES.fetch_add(1, Ordering::SeqCst);
    Ok(format!("value-of-{key}"))
}

#[cached(ttl = 3600, tags = ["products", "catalog"])]
async fn get_products(category: &str) -> Result<Vec<Product>, DbError> {
    DB_QUERIES.fetch_add(1, Ordering::SeqCst);
    Ok(vec![Product {
        id: 1,
        name: "Laptop".into(),
        category: category.into(),
    }])
}

// ----- event-driven invalidation -----------------------------------------------------------------

#[on_event("user.updated")]
async fn invalidate_user_cache(user_id: i64) -> vorte_cache::Result<()> {
    // `get_user`'s companion builds its key from its own template: no copy of "user:{user_id}".
    get_user::invalidate(user_id).await?;
    Cache::global()
        .invalidate_tag(&format!("user_data:{user_id}"))
        .await
}

// ----- write-through and cache-aside ---------------------------------------------------------------

async fn update_user(user_id: i64, name: &str) -> vorte_cache::Result<User> {
    let user = User {
        id: user_id,
        name: name.into(),
    }; // the database update
    Cache::global()
        .set(&get_user::key(user_id)?, &Some(user.clone()))
        .ttl(Duration::from_secs(300))
        .await?;
    Ok(user)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn get_user_cache_aside(user_id: i64) -> Result<Option<User>, BoxError> {
    let cache = Cache::global();
    let key = format!("user:{user_id}");
    if let Some(cached) = cache.get::<Option<User>>(&key).await? {
        return Ok(cached);
    }
    let user = db_fetch_user(user_id).await?;
    cache.set(&key, &user).ttl(Duration::from_secs(300)).await?;
    Ok(user)
}

fn step(title: &str) {
    println!("\n== {title}");
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let l4_path = dir.path().join("l4");

    step("Configuration (the seed's dict; L2/L3 need servers, so L4 is a local directory here)");
    let mut config = serde_json::json!({
        "cache": {
            "default_ttl": 300,
            "layers": {
                "l1": { "enabled": true, "max_size": 1000, "ttl": 60 },
                "l4": { "enabled": true, "backend": "file", "path": l4_path, "ttl": 86400 },
            },
            "key_prefix": "vorte:",
            "serialization": "msgpack",
        }
    });
    if let Ok(url) = std::env::var("VORTE_REDIS_URL") {
        config["cache"]["layers"]["l2"] =
            serde_json::json!({ "enabled": true, "backend": "redis", "url": url, "ttl": 300 });
    }
    let config = Config::from_json(config)?;
    let app = match Vorte::builder()
        .auto_load(true)
        .config(config.clone())
        .build()
        .await
    {
        Ok(app) => app,
        Err(e)
            if e.kind() == vorte_cache::ErrorKind::Config && config.cache.layers.l2.is_some() =>
        {
            println!("   L2 not added: {e}");
            let mut config = config;
            config.cache.layers.l2 = None;
            Vorte::builder()
                .auto_load(true)
                .config(config)
                .build()
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "   layers: L1 (max_size 1000, ttl 60 s) + L4 file at {}; {} event handler(s) wired",
        l4_path.display(),
        app.events().handler_count()
    );

    step("Basic usage");
    let cache = Cache::global();
    let alice = User {
        id: 1,
        name: "Alice".into(),
    };
    cache
        .set("user:1", &alice)
        .ttl(Duration::from_secs(300))
        .await?;
    let user: Option<User> = cache.get("user:1").await?;
    println!("   set + get user:1 -> {user:?}");
    assert_eq!(user.as_ref(), Some(&alice));
    let removed = cache.delete("user:1").await?;
    let exists = cache.exists("user:1").await?;
    println!("   delete user:1 -> {removed}; exists -> {exists}");
    cache
        .set("counter", &0i64)
        .ttl(Duration::from_secs(3600))
        .await?;
    let n = cache.increment("counter", 1).await?;
    println!("   counter after increment(1) -> {n}");
    cache.set("cfg", &"dark").layer(Layer::L1).await?;
    println!("   set(\"cfg\").layer(L1) -> only in this process's memory");
    for id in 1..=3 {
        cache.set(&format!("user:{id}"), &id).await?;
    }
    let keys = cache.keys("user:*").await?;
    println!("   keys(\"user:*\") -> {keys:?}");
    let deleted = cache.delete_many(&keys).await?;
    println!("   delete_many -> {deleted} removed");
    cache.flush().await?;
    println!("   flush -> {} keys left", cache.keys("*").await?.len());

    step("#[cached]");
    let before = DB_QUERIES.load(Ordering::SeqCst);
    let first = get_user(1).await?;
    let second = get_user(1).await?;
    println!(
        "   get_user(1) twice -> {:?}; database queries: {}",
        second.as_ref().map(|u| &u.name),
        DB_QUERIES.load(Ordering::SeqCst) - before
    );
    assert_eq!(first, second);
    let key = get_user::key(1)?;
    let readable: Option<Option<User>> = cache.get(&key).await?;
    println!("   get_user::key(1) -> {key:?}; the entry under it -> {readable:?}");
    let before = DB_QUERIES.load(Ordering::SeqCst);
    let refreshed = get_user::refresh(1).await?;
    get_user(1).await?;
    println!(
        "   get_user::refresh(1) -> {:?}, stored; then get_user(1) -> database queries: {}",
        refreshed.map(|u| u.name),
        DB_QUERIES.load(Ordering::SeqCst) - before
    );
    println!(
        "   get_config(\"theme\") -> {} (L1 only)",
        get_config("theme").await?
    );
    let products = get_products("electronics").await?;
    println!(
        "   get_products(\"electronics\") -> {} product(s), tagged products+catalog",
        products.len()
    );

    step("Cache tags");
    let p1 = Product {
        id: 1,
        name: "Laptop".into(),
        category: "electronics".into(),
    };
    let p2 = Product {
        id: 2,
        name: "Novel".into(),
        category: "books".into(),
    };
    cache
        .set("product:1", &p1)
        .tags(["products", "category:electronics"])
        .await?;
    cache
        .set("product:2", &p2)
        .tags(["products", "category:books"])
        .await?;
    cache
        .set("featured:electronics", &vec![1])
        .tags(["featured", "category:electronics"])
        .await?;
    cache.invalidate_tag("category:electronics").await?;
    for key in ["product:1", "featured:electronics", "product:2"] {
        let state = if cache.exists(key).await? {
            "kept"
        } else {
            "removed"
        };
        println!("   after invalidate_tag(\"category:electronics\"): {key} {state}");
    }
    assert!(!cache.exists("product:1").await? && cache.exists("product:2").await?);

    step("Time-based invalidation (TTL)");
    cache
        .set("key", &"value")
        .ttl(Duration::from_millis(200))
        .await?;
    println!(
        "   set with ttl 200 ms -> exists: {}",
        cache.exists("key").await?
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("   300 ms later -> exists: {}", cache.exists("key").await?);

    step("Event-driven invalidation");
    get_user(1).await?;
    let ran = vorte_cache::emit("user.updated", &serde_json::json!({ "user_id": 1 })).await?;
    println!(
        "   emit(\"user.updated\", {{user_id: 1}}) ran {ran} handler(s) (get_user::invalidate); \
         user:1 cached: {}",
        cache.exists(&get_user::key(1)?).await?
    );

    step("Write-through");
    let bob = update_user(1, "Bob").await?;
    println!(
        "   update_user(1, \"Bob\") -> cache holds {:?}",
        cache
            .get::<Option<User>>("user:1")
            .await?
            .flatten()
            .map(|u| u.name)
    );
    assert_eq!(get_user(1).await?, Some(bob));

    step("Cache-aside (lazy loading)");
    let before = DB_QUERIES.load(Ordering::SeqCst);
    get_user_cache_aside(7).await?;
    get_user_cache_aside(7).await?;
    println!(
        "   two reads of user 7 -> database queries: {}",
        DB_QUERIES.load(Ordering::SeqCst) - before
    );
    let loaded = cache
        .get_or_set("user:8", || db_fetch_user(8))
        .ttl(Duration::from_secs(300))
        .await?;
    println!("   get_or_set(\"user:8\") -> {:?}", loaded.map(|u| u.name));

    step("Persistence: a fresh cache on the same directory (as after a restart) reads L4");
    let restarted = Cache::from_config(&app.cache().config().clone()).await?;
    let from_l4: Option<Product> = restarted.get("product:2").await?;
    let again: Option<Product> = restarted.get("product:2").await?;
    let s = restarted.stats();
    // The first read misses the cold L1 and is served by the first shared layer (L2 when
    // VORTE_REDIS_URL added one, else L4); the second is an L1 hit.
    let (layer, hits) = if s.l2_hits > 0 {
        ("L2", s.l2_hits)
    } else {
        ("L4", s.l4_hits)
    };
    println!(
        "   product:2 -> {:?}; first read from {layer} ({} hits: {hits}), second from L1 (l1_hits {})",
        from_l4.map(|p| p.name),
        layer.to_lowercase(),
        s.l1_hits
    );
    assert!(again.is_some());

    step("Cache statistics");
    let stats = cache.stats();
    println!("   Hit rate: {:.2}%", stats.hit_rate() * 100.0);
    println!("   L1 hits: {}", stats.l1_hits);
    println!("   L2 hits: {}", stats.l2_hits);
    println!("   L3 hits: {}", stats.l3_hits);
    println!("   L4 hits: {}", stats.l4_hits);
    println!("   Misses: {}", stats.misses);
    // What the cache holds asks every store, so it is a call of its own.
    let usage = cache.usage().await?;
    println!("   Total keys: {}", usage.total_keys);
    println!("   Memory used: {}", usage.memory_used());
    for (layer, held) in stats.layers.iter().zip(&usage.layers) {
        println!(
            "   {} ({}): {} keys, {} bytes, {} hits, {} errors",
            layer.layer, layer.backend, held.keys, held.bytes, layer.hits, layer.errors
        );
    }
    println!("\nDone.");
    Ok(())
}
