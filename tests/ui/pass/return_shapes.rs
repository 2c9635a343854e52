//! Each return shape: `Result`, `Option`, `Result<Option>`, a plain value, a fully qualified
//! `Result`, and `?`/`return` inside the body.
use vorte_cache::cached;

#[derive(Debug)]
struct DbError;

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("db error")
    }
}

#[cached(ttl = 60)]
async fn result(id: u32) -> Result<u32, DbError> {
    if id == 0 {
        return Err(DbError);
    }
    let parsed: u32 = "7".parse().map_err(|_| DbError)?;
    Ok(id + parsed)
}

#[cached(ttl = 60, negative_ttl = 10)]
async fn option(id: u32) -> Option<u32> {
    (id > 0).then_some(id)
}

#[cached(ttl = 60, negative_ttl = 10)]
async fn result_option(id: u32) -> Result<Option<String>, DbError> {
    Ok(Some(id.to_string()))
}

#[cached(ttl = 60)]
async fn qualified(id: u32) -> std::result::Result<::core::option::Option<u32>, std::io::Error> {
    Ok(Some(id))
}

#[cached(ttl = 60)]
async fn plain(id: u32) -> Vec<u32> {
    vec![id]
}

#[cached(ttl = 60)]
async fn unit(id: u32) {
    let _ = id;
}

fn main() {
    let _ = result(1);
    let _ = option(1);
    let _ = result_option(1);
    let _ = qualified(1);
    let _ = plain(1);
    let _ = unit(1);
}
