//! Key templates: several placeholders, escaped braces, raw identifiers, `mut` parameters.
use vorte_cache::cached;

#[cached(key = "user:{user_id}")]
async fn user(user_id: i64) -> Option<String> {
    Some(user_id.to_string())
}

#[cached(key = "{{literal}}:{org}/{repo}:{type}")]
async fn repo(org: &str, repo: &str, r#type: u8) -> String {
    format!("{org}/{repo}/{type}", type = r#type)
}

#[cached(key = "counter:{start}")]
async fn counter(mut start: u64) -> u64 {
    start += 1;
    start
}

#[cached(key = "static-key")]
async fn constant() -> u64 {
    1
}

fn main() {
    let _ = user(1);
    let _ = repo("a", "b", 1);
    let _ = counter(1);
    let _ = constant();
}
