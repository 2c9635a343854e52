//! The write path of `PUT /users/{id}` on one instance of the service (an OS process, L1 + L4
//! `file`, over real HTTP): the event's handler runs before the write-through, so the value
//! written through survives and the instance's next read of the user is an L1 hit, not a load.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::Service;

/// The counters that tell where a read was answered, from `GET /ops/cache/stats`.
fn counters(stats: &Value) -> (u64, u64, u64) {
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("a count: {stats}"));
    (
        n(&stats["l1_hits"]),
        n(&stats["misses"]),
        n(&stats["loads"]["runs"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_put_the_same_instances_next_read_of_the_user_is_an_l1_hit() {
    let service = Service::start().await;

    // Cached before the change (a load, then an L1 hit), so the PUT has an entry to replace.
    let before = service.get("/users/7").await;
    assert_eq!(service.get("/users/7").await, before);

    let new_name = "Written Through";
    assert_ne!(before["name"], new_name);
    let updated = service.put("/users/7", &json!({ "name": new_name })).await;
    assert_eq!(updated["name"], new_name);

    let (l1_hits, misses, loads) = counters(&service.stats().await);
    let read = service.get("/users/7").await;
    assert_eq!(read, updated, "the read serves what the PUT wrote");
    let (l1_after, misses_after, loads_after) = counters(&service.stats().await);
    assert_eq!(
        l1_after,
        l1_hits + 1,
        "the read after the PUT is an L1 hit (the write-through survived the event's handler)"
    );
    assert_eq!(misses_after, misses, "and not a miss");
    assert_eq!(loads_after, loads, "so SQLite was not read again");
    assert_eq!(
        service.get("/db/users/7").await,
        updated,
        "the database holds the new user"
    );
}
