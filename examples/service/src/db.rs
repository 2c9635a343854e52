//! The database: SQLite through sqlx, its schema, its seed data and every query the routes make.
//!
//! Nothing here knows about the cache: `reads.rs` puts `#[cached]` in front of the reads, and the
//! routes decide when to write the cache and what to invalidate.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// How many users the seed creates (ids `1..=SEED_USERS`); the load test draws ids from this range.
pub(crate) const SEED_USERS: i64 = 500;
/// How many products the seed creates (ids `1..=SEED_PRODUCTS`), spread over [`CATEGORIES`].
pub(crate) const SEED_PRODUCTS: i64 = 200;
/// The product categories of the seed.
pub(crate) const CATEGORIES: [&str; 5] = ["books", "electronics", "garden", "kitchen", "toys"];

/// How long a connection waits for another process's write lock before it reports "database is
/// locked": two service processes share one file, and a writer holds the lock briefly.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How a transaction that writes begins: with the write lock taken at once. A deferred
/// transaction that reads first and then writes must upgrade its lock, and SQLite answers such an
/// upgrade with "database is locked" at once, without the busy timeout, when another process
/// writes meanwhile (seen when two instances seed one file at the same time).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// A user, as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) email: String,
}

/// A product, as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub(crate) struct Product {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) category: String,
    pub(crate) price_cents: i64,
}

/// A failed query. Its text is logged; clients get a plain 500 (`error.rs`).
#[derive(Debug)]
pub(crate) struct DbError(sqlx::Error);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database error: {}", self.0)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError(e)
    }
}

/// The connection pool. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating when missing) the database of `options` in WAL mode, so that several
    /// processes can read while one writes, then creates and seeds the tables.
    ///
    /// Instances started together on a new file race to create it and switch it to WAL. SQLite
    /// refuses some of those steps at once with "database is locked" (`SQLITE_BUSY`) rather than
    /// waiting out the busy timeout (a lock upgrade it will not wait for, to avoid a deadlock),
    /// so the whole opening is tried again, for up to [`BUSY_TIMEOUT`].
    pub(crate) async fn open(options: SqliteConnectOptions) -> Result<Db, DbError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        let deadline = Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(10);
        loop {
            match Self::open_once(options.clone()).await {
                Err(e) if is_busy(&e.0) && Instant::now() + pause < deadline => {
                    tracing::debug!(error = %e, "database busy while opening; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                result => return result,
            }
        }
    }

    async fn open_once(options: SqliteConnectOptions) -> Result<Db, DbError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let db = Db { pool };
        db.create_and_seed().await?;
        Ok(db)
    }

    /// Creates the tables and inserts the seed rows that are missing, in one transaction.
    /// `INSERT OR IGNORE` keeps rows that exist: a second process starting on the same file, or a
    /// restart, never undoes an update.
    async fn create_and_seed(&self) -> Result<(), DbError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS users (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                email TEXT NOT NULL
            )",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS products (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                category TEXT NOT NULL,
                price_cents INTEGER NOT NULL
            )",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS products_by_category ON products (category, id)")
            .execute(&mut *tx)
            .await?;
        for id in 1..=SEED_USERS {
            let user = seed_user(id);
            sqlx::query("INSERT OR IGNORE INTO users (id, name, email) VALUES (?, ?, ?)")
                .bind(user.id)
                .bind(user.name)
                .bind(user.email)
                .execute(&mut *tx)
                .await?;
        }
        for id in 1..=SEED_PRODUCTS {
            let product = seed_product(id);
            sqlx::query(
                "INSERT OR IGNORE INTO products (id, name, category, price_cents) VALUES (?, ?, ?, ?)",
            )
            .bind(product.id)
            .bind(product.name)
            .bind(product.category)
            .bind(product.price_cents)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The user `id`, read from SQLite.
    pub(crate) async fn user(&self, id: i64) -> Result<Option<User>, DbError> {
        Ok(
            sqlx::query_as::<_, User>("SELECT id, name, email FROM users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Sets the user's name (and email, when given) and returns the row as it now is; `None` when
    /// there is no such user.
    pub(crate) async fn update_user(
        &self,
        id: i64,
        name: &str,
        email: Option<&str>,
    ) -> Result<Option<User>, DbError> {
        Ok(sqlx::query_as::<_, User>(
            "UPDATE users SET name = ?, email = COALESCE(?, email) WHERE id = ?
             RETURNING id, name, email",
        )
        .bind(name)
        .bind(email)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The product `id`, read from SQLite.
    pub(crate) async fn product(&self, id: i64) -> Result<Option<Product>, DbError> {
        Ok(sqlx::query_as::<_, Product>(
            "SELECT id, name, category, price_cents FROM products WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every product of `category`, by id.
    pub(crate) async fn products_in(&self, category: &str) -> Result<Vec<Product>, DbError> {
        Ok(sqlx::query_as::<_, Product>(
            "SELECT id, name, category, price_cents FROM products WHERE category = ? ORDER BY id",
        )
        .bind(category)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Applies the given changes to product `id` and returns it as it was and as it now is
    /// (`None` when there is no such product), in one transaction so the pair is exact: the
    /// caller invalidates the categories of both.
    pub(crate) async fn update_product(
        &self,
        id: i64,
        change: &ProductChange,
    ) -> Result<Option<(Product, Product)>, DbError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let before = sqlx::query_as::<_, Product>(
            "SELECT id, name, category, price_cents FROM products WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(before) = before else {
            return Ok(None);
        };
        let after = sqlx::query_as::<_, Product>(
            "UPDATE products SET name = COALESCE(?, name), category = COALESCE(?, category),
                 price_cents = COALESCE(?, price_cents)
             WHERE id = ? RETURNING id, name, category, price_cents",
        )
        .bind(change.name.as_deref())
        .bind(change.category.as_deref())
        .bind(change.price_cents)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some((before, after)))
    }
}

/// The fields of a product update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProductChange {
    pub(crate) name: Option<String>,
    pub(crate) category: Option<String>,
    pub(crate) price_cents: Option<i64>,
}

/// Whether SQLite said "busy" or "locked" (primary result codes 5 and 6, with any extended code).
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// The seed's user `id`: the same in every process, so a restart or a second instance agrees.
fn seed_user(id: i64) -> User {
    const FIRST: [&str; 8] = [
        "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi",
    ];
    const LAST: [&str; 6] = ["Smith", "Jones", "Garcia", "Chen", "Okafor", "Novak"];
    let first = FIRST[usize::try_from(id).unwrap_or(0) % FIRST.len()];
    let last = LAST[usize::try_from(id / 8).unwrap_or(0) % LAST.len()];
    User {
        id,
        name: format!("{first} {last} {id}"),
        email: format!("user{id}@example.com"),
    }
}

/// The seed's product `id`, in category `CATEGORIES[(id - 1) % 5]`.
fn seed_product(id: i64) -> Product {
    const ADJECTIVES: [&str; 4] = ["Classic", "Compact", "Deluxe", "Everyday"];
    let index = usize::try_from(id - 1).unwrap_or(0);
    let category = CATEGORIES[index % CATEGORIES.len()];
    Product {
        id,
        name: format!(
            "{} {category} item {id}",
            ADJECTIVES[index / CATEGORIES.len() % ADJECTIVES.len()]
        ),
        category: category.to_owned(),
        price_cents: 499 + (id * 137) % 10_000,
    }
}
