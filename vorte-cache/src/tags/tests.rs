//! Tag versions never go back in time (`docs/guarantees.md#g2-invalidation`): a fetch that was in
//! flight during an invalidation, or notices that arrive out of order, never leave an older
//! version memoised. Several `TagIndex`es over one `TestStore` stand in for several processes.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::*;
use crate::error::Error;
use crate::testing::{Call, Op, Pause, TestStore};

const MEMO_TTL: Duration = Duration::from_secs(300);

fn index(store: &TestStore) -> Arc<TagIndex> {
    Arc::new(TagIndex::new(Some(Arc::new(store.clone())), MEMO_TTL))
}

/// The answer of a spawned call; a panicked task fails the test as an error.
async fn joined<T>(task: JoinHandle<Result<T>>) -> Result<T> {
    task.await.map_err(|e| Error::backend(e.to_string()))?
}

fn stamp(tag: &str, version: u64) -> [TagStamp; 1] {
    [TagStamp {
        name: Arc::from(tag),
        version,
    }]
}

/// A reader's `check` of `t@v0` (`writer` wrote v0) whose fetch has read v0 from the authority
/// and is held before it answers.
struct HeldCheck {
    reader: Arc<TagIndex>,
    v0: u64,
    fetch: Pause,
    check: JoinHandle<Result<bool>>,
}

async fn held_check(store: &TestStore, writer: &TagIndex) -> Result<HeldCheck> {
    let v0 = writer.invalidate("t").await?;
    let reader = index(store);
    let fetch = store.pause_call(Call::new(Op::GetTag, "t").after_effect());
    let check = tokio::spawn({
        let reader = reader.clone();
        async move { reader.check(&stamp("t", v0)).await }
    });
    fetch.reached().await;
    Ok(HeldCheck {
        reader,
        v0,
        fetch,
        check,
    })
}

#[tokio::test]
async fn a_fetch_in_flight_never_overwrites_a_newer_local_invalidation() -> Result<()> {
    let store = TestStore::new();
    let HeldCheck {
        reader,
        v0,
        fetch,
        check,
    } = held_check(&store, &index(&store)).await?;
    let v1 = reader.invalidate("t").await?;
    fetch.release();
    let in_flight = joined(check).await?;
    assert!(
        in_flight,
        "the check began before the invalidation and saw v0"
    );
    assert_eq!(
        reader.check_memoised(&stamp("t", v0)),
        Some(false),
        "the fetch that began before invalidate_tag overwrote its version with v0"
    );
    assert_eq!(reader.check_memoised(&stamp("t", v1)), Some(true));
    Ok(())
}

#[tokio::test]
async fn a_fetch_in_flight_never_overwrites_a_notice() -> Result<()> {
    let store = TestStore::new();
    let other = index(&store);
    let HeldCheck {
        reader,
        v0,
        fetch,
        check,
    } = held_check(&store, &other).await?;
    // Another process invalidates, and its notice arrives while the fetch is held.
    let v1 = other.invalidate("t").await?;
    reader.learn("t", v1);
    fetch.release();
    joined(check).await?;
    assert_ne!(
        reader.check_memoised(&stamp("t", v0)),
        Some(true),
        "the fetch that began before the notice memoised v0"
    );
    assert!(reader.check(&stamp("t", v1)).await?);
    assert!(!reader.check(&stamp("t", v0)).await?);
    Ok(())
}

#[tokio::test]
async fn notices_that_arrive_out_of_order_leave_the_authoritys_version() -> Result<()> {
    let store = TestStore::new();
    let (a, c, receiver) = (index(&store), index(&store), index(&store));
    let v0 = a.invalidate("t").await?;
    assert!(receiver.check(&stamp("t", v0)).await?);
    // A writes v1, then C writes v2; their notices arrive the other way round.
    let v1 = a.invalidate("t").await?;
    let v2 = c.invalidate("t").await?;
    let epoch = receiver.epoch();
    receiver.learn("t", v2);
    receiver.learn("t", v1);
    assert_ne!(receiver.epoch(), epoch, "a notice moves the epoch");
    assert_ne!(
        receiver.check_memoised(&stamp("t", v1)),
        Some(true),
        "the later notice, carrying the older version, was taken as current"
    );
    assert!(receiver.check(&stamp("t", v2)).await?);
    assert!(!receiver.check(&stamp("t", v1)).await?);
    assert!(!receiver.check(&stamp("t", v0)).await?);
    Ok(())
}

#[tokio::test]
async fn a_notice_during_a_local_invalidation_wins_over_its_version() -> Result<()> {
    let store = TestStore::new();
    let (a, c) = (index(&store), index(&store));
    // A's write of v1 has reached the authority; A has not memoised it yet.
    let write = store.pause_call(Call::new(Op::PutTag, "t").after_effect());
    let invalidate = tokio::spawn({
        let a = a.clone();
        async move { a.invalidate("t").await }
    });
    write.reached().await;
    let v2 = c.invalidate("t").await?;
    a.learn("t", v2);
    write.release();
    let v1 = joined(invalidate).await?;
    assert_ne!(
        a.check_memoised(&stamp("t", v1)),
        Some(true),
        "A memoised v1, which C's later write had replaced"
    );
    assert!(a.check(&stamp("t", v2)).await?);
    Ok(())
}

#[tokio::test]
async fn without_an_authority_the_memo_is_the_record() {
    let index = TagIndex::new(None, MEMO_TTL);
    let first = index.current("t").await.ok();
    assert_eq!(index.current("t").await.ok(), first);
    let epoch = index.epoch();
    index.learn("t", 7);
    assert_ne!(index.epoch(), epoch);
    assert_ne!(
        index.current("t").await.ok(),
        first,
        "a notice moves the tag"
    );
}

/// `docs/guarantees.md#f3-invalidations-reach-a-layer-that-comes-back` for tags: an invalidation
/// whose record cannot be written moves the tag here at once, to a local version that nothing
/// the authority says replaces, and the delivery writes a *new* version, which every index then
/// reads.
#[tokio::test]
async fn an_owed_version_holds_until_delivered() -> Result<()> {
    let store = TestStore::new();
    let writer = index(&store);
    let other = index(&store);
    let before = writer.current("t").await?;
    store.fail(Op::PutTag, "t", Error::backend("down"));
    let (local, failed) = writer.invalidate_or_owe("t").await;
    assert!(failed.is_some(), "the record write was made to fail");
    assert_ne!(local, before);
    assert_eq!(writer.owed(), vec![(Arc::from("t"), local)]);
    // The authority still says `before`; the writer does not believe it, however long it waits.
    assert!(!writer.check(&stamp("t", before)).await?);
    assert!(writer.check(&stamp("t", local)).await?);
    assert!(other.check(&stamp("t", before)).await?);
    let delivered = writer.deliver("t", local).await?;
    assert!(writer.owed().is_empty());
    assert_ne!(
        delivered, local,
        "the local version must not become valid elsewhere"
    );
    assert_ne!(delivered, before);
    assert!(writer.check(&stamp("t", delivered)).await?);
    assert!(!writer.check(&stamp("t", local)).await?);
    let third = index(&store);
    assert!(third.check(&stamp("t", delivered)).await?);
    Ok(())
}

/// While a tag is owed, another process's notice or a lost-notices `forget_all` moves it to a
/// new local version: entries stamped with the older local one were made before that move and
/// must not stay valid here; the tag stays owed, and is never refetched from the authority.
#[tokio::test]
async fn a_move_while_owed_invalidates_the_local_version_too() -> Result<()> {
    let store = TestStore::new();
    let writer = index(&store);
    store.fail(Op::PutTag, "t", Error::backend("down"));
    let (first, _) = writer.invalidate_or_owe("t").await;
    writer.learn("t", 7);
    assert!(!writer.check(&stamp("t", first)).await?);
    let second = writer.current("t").await?;
    assert_ne!(second, first);
    writer.forget_all();
    assert!(!writer.check(&stamp("t", second)).await?);
    let owed = writer.owed();
    assert_eq!(owed.len(), 1, "still owed after the notice and the forget");
    // A delivery of a version that is no longer the local one writes, but leaves the debt.
    writer.deliver("t", first).await?;
    assert_eq!(writer.owed(), owed);
    Ok(())
}
