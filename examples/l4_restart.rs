//! L4 survives a restart: one process writes, a second, brand-new process (cold L1) reads the
//! values back from L4, which promotes them into L1.
//!
//! ```text
//! cargo run --example l4_restart
//! ```
//!
//! Without arguments this program is the *parent*: it makes a temporary directory and runs itself
//! twice as a child process, first with `write <dir>`, then with `read <dir>`, and checks that
//! both children succeeded. Each child builds its cache from TOML: L1 in memory plus L4 `file` in
//! `<dir>`. The reader exits non-zero unless its first read of each key was an L4 hit and its
//! second an L1 hit, as counted by `stats()`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vorte_cache::{Cache, Config, Layer, Vorte};

type BoxError = Box<dyn std::error::Error>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: i64,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: i64,
    name: String,
}

/// The keys the writer stores and the reader reads back.
const KEYS: [&str; 3] = ["user:1", "product:1", "greeting"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [] => parent(),
        [role, dir] if role == "write" => child(Role::Write, PathBuf::from(dir)),
        [role, dir] if role == "read" => child(Role::Read, PathBuf::from(dir)),
        _ => Err("usage: l4_restart [write <dir> | read <dir>]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----- the parent ---------------------------------------------------------------------------------

fn parent() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let l4 = dir.path().join("l4");
    let exe = std::env::current_exe()?;

    println!("L4 directory: {}", l4.display());
    let mut failed = Vec::new();
    for role in ["write", "read"] {
        println!("\n== process {role} (a new OS process)");
        let status = Command::new(&exe).arg(role).arg(&l4).status()?;
        println!("   {role} process: {status}");
        if !status.success() {
            failed.push(role);
        }
    }

    println!("\n== summary");
    if failed.is_empty() {
        println!(
            "   the writer stored {} values in L4 and exited;",
            KEYS.len()
        );
        println!("   a new process with a cold L1 read each one from L4 (an L4 hit),");
        println!("   which promoted it into L1, so the second read was an L1 hit.");
        Ok(())
    } else {
        Err(format!("the {} process(es) failed", failed.join(" and ")).into())
    }
}

// ----- the children -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Role {
    Write,
    Read,
}

fn child(role: Role, dir: PathBuf) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let cache = build_cache(&dir).await?;
        match role {
            Role::Write => write(&cache).await,
            Role::Read => read(&cache, &dir).await,
        }
    })
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// L1 (cold in every new process) plus L4 on the directory `dir`.
async fn build_cache(dir: &Path) -> Result<Cache, BoxError> {
    let path = dir.to_str().ok_or("the temporary directory is not UTF-8")?;
    let toml = format!(
        r#"
[cache]
default_ttl = 300
key_prefix = "l4demo:"

[cache.layers.l1]
max_size = 1000
ttl = 60

[cache.layers.l4]
backend = "file"
path = {path}
ttl = 86400
"#,
        path = toml_string(path)
    );
    let config = Config::from_toml_str(&toml)?;
    let app = Vorte::builder().config(config).build().await?;
    Ok(app.cache().clone())
}

async fn write(cache: &Cache) -> Result<(), BoxError> {
    let alice = User {
        id: 1,
        name: "Alice".into(),
    };
    let laptop = Product {
        id: 1,
        name: "Laptop".into(),
    };
    cache
        .set("user:1", &alice)
        .ttl(Duration::from_secs(3600))
        .await?;
    cache
        .set("product:1", &laptop)
        .tags(["products", "category:electronics"])
        .ttl(Duration::from_secs(3600))
        .await?;
    cache
        .set("greeting", &"hello from the first process")
        .await?;
    println!("   set user:1, product:1 (tags: products, category:electronics) and greeting");

    let (stats, usage) = (cache.stats(), cache.usage().await?);
    let l4_keys = usage.layer(Layer::L4).map_or(0, |l| l.keys);
    println!(
        "   usage: total_keys {}, L4 keys {l4_keys}; stats: l1_hits {}, l4_hits {}",
        usage.total_keys, stats.l1_hits, stats.l4_hits
    );
    if l4_keys != KEYS.len() as u64 {
        return Err(format!("expected {} entries in L4, found {l4_keys}", KEYS.len()).into());
    }
    println!("   exiting: this process's L1 is gone with it");
    Ok(())
}

async fn read(cache: &Cache, dir: &Path) -> Result<(), BoxError> {
    println!("   L4 on disk (encoded names; entries under e/, tag records under t/):");
    for file in files_under(dir)? {
        println!("     {file}");
    }

    // First reads: L1 is cold, so each one is answered by L4 and back-filled into L1.
    let user: Option<User> = cache.get("user:1").await?;
    let product: Option<Product> = cache.get("product:1").await?;
    let greeting: Option<String> = cache.get("greeting").await?;
    let after_first = cache.stats();
    println!(
        "   first reads:  user:1 = {user:?}, product:1 = {product:?}, greeting = {greeting:?}"
    );
    println!(
        "                 l4_hits {}, l1_hits {}, misses {}",
        after_first.l4_hits, after_first.l1_hits, after_first.misses
    );

    // Second reads: now answered by L1.
    let user2: Option<User> = cache.get("user:1").await?;
    let product2: Option<Product> = cache.get("product:1").await?;
    let greeting2: Option<String> = cache.get("greeting").await?;
    let after_second = cache.stats();
    println!(
        "   second reads: l4_hits {}, l1_hits {}, misses {}",
        after_second.l4_hits, after_second.l1_hits, after_second.misses
    );

    let n = KEYS.len() as u64;
    let mut problems = Vec::new();
    if user.is_none() || product.is_none() || greeting.is_none() {
        problems.push("a value written by the first process was not found".to_owned());
    }
    if (user2, product2, greeting2) != (user, product, greeting) {
        problems.push("the second reads returned other values than the first".to_owned());
    }
    if (after_first.l4_hits, after_first.l1_hits) != (n, 0) {
        problems.push(format!(
            "first reads: expected {n} L4 hits and 0 L1 hits, got {} and {}",
            after_first.l4_hits, after_first.l1_hits
        ));
    }
    if (after_second.l4_hits, after_second.l1_hits) != (n, n) {
        problems.push(format!(
            "second reads: expected {n} L4 hits and {n} L1 hits in all, got {} and {}",
            after_second.l4_hits, after_second.l1_hits
        ));
    }
    if after_second.misses != 0 {
        problems.push(format!("expected no misses, got {}", after_second.misses));
    }

    // The tag record was persisted in L4 too: invalidating the tag in this process drops the
    // entry the first process wrote with it.
    cache.invalidate_tag("category:electronics").await?;
    let product3: Option<Product> = cache.get("product:1").await?;
    println!("   after invalidate_tag(\"category:electronics\"): product:1 = {product3:?}");
    if product3.is_some() {
        problems.push("product:1 survived the invalidation of its tag".to_owned());
    }

    if problems.is_empty() {
        println!("   as expected: first read of each key an L4 hit, second an L1 hit");
        Ok(())
    } else {
        Err(problems.join("; ").into())
    }
}

/// The files under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Result<Vec<String>, BoxError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir)?;
                files.push(relative.display().to_string().replace('\\', "/"));
            }
        }
    }
    files.sort();
    Ok(files)
}
