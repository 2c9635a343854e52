//! A type alias hides the shape: `returns = ..` says it.
use vorte_cache::cached;

type DbResult<T> = Result<T, std::io::Error>;
type Maybe<T> = Option<T>;

#[cached(ttl = 60, returns = result)]
async fn load(id: u32) -> DbResult<u32> {
    Ok(id)
}

#[cached(ttl = 60, returns = option, negative_ttl = 5)]
async fn find(id: u32) -> Maybe<u32> {
    Some(id)
}

#[cached(ttl = 60, returns = result_option, negative_ttl = 5)]
async fn lookup(id: u32) -> DbResult<Maybe<u32>> {
    Ok(Some(id))
}

#[cached(ttl = 60, returns = value)]
async fn whole(id: u32) -> Maybe<u32> {
    Some(id)
}

fn main() {
    let _ = load(1);
    let _ = find(1);
    let _ = lookup(1);
    let _ = whole(1);
}
