//! `crate = path` names the runtime through a re-export.
mod reexport {
    pub use vorte_cache as cache;
}

#[vorte_cache::cached(crate = crate::reexport::cache, ttl = 1)]
async fn through_reexport(id: u32) -> u32 {
    id
}

fn main() {
    let _ = through_reexport(1);
}
