//! `#[on_event]` handlers: by-value, `&str`, `&T` and `Option` parameters, with and without a
//! `Result`, and with a visibility and doc attributes kept.
use vorte_cache::on_event;

#[derive(serde::Deserialize)]
struct Profile {
    name: String,
}

/// Drops the cached user.
#[on_event("user.updated")]
pub async fn invalidate_user(user_id: i64, name: &str) -> vorte_cache::Result<()> {
    let _ = (user_id, name);
    Ok(())
}

#[on_event("user.updated")]
async fn audit(profile: &Profile, reason: Option<String>) {
    let _ = (&profile.name, reason);
}

#[on_event("cache.flushed")]
async fn no_params() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = invalidate_user(1, "a");
}
