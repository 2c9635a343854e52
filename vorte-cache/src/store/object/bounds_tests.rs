//! Whole-store passes and bulk deletes on a slow object store: each step gets the layer's timeout,
//! never the whole pass (`scan.rs`, `swap.rs`), and tombstones are neither listed nor counted.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::ObjectStorage;
use crate::codec::Envelope;
use crate::config::{Compression, Serialization};
use crate::store::{Slot, Store, Usage};

/// An in-memory object store whose every read, and every item of every listing, takes `delay`.
#[derive(Debug)]
struct Slow {
    inner: InMemory,
    delay: Duration,
}

impl fmt::Display for Slow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slow({:?})", self.delay)
    }
}

#[async_trait]
impl ObjectStore for Slow {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        tokio::time::sleep(self.delay).await;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let delay = self.delay;
        self.inner
            .list(prefix)
            .then(move |meta| async move {
                tokio::time::sleep(delay).await;
                meta
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A store over [`Slow`] with the layer timeout `timeout`.
fn slow_store(delay: Duration, timeout: Duration) -> ObjectStorage {
    let slow = Slow {
        inner: InMemory::new(),
        delay,
    };
    ObjectStorage::new(
        std::sync::Arc::new(slow),
        "memory",
        "memory".into(),
        None,
        "p:",
        timeout,
        None,
    )
}

fn envelope(key: &str) -> Bytes {
    Envelope {
        expires_at_ms: u64::MAX,
        created_at_ms: 0,
        fresh_until_ms: u64::MAX,
        load_ms: 0,
        validator: None,
        key: key.to_owned(),
        tags: vec![],
        serialization: Serialization::Msgpack,
        payload: Bytes::from_static(b"v"),
    }
    .encode(Compression::None)
}

const LONG: Duration = Duration::from_secs(600);

#[tokio::test]
async fn list_usage_and_clear_of_a_slow_listing_are_bounded_per_page_not_as_a_whole() {
    // 60 entries listed at 5 ms each take 300 ms: three times the layer's timeout.
    let store = slow_store(Duration::from_millis(5), Duration::from_millis(100));
    let keys: Vec<String> = (0..60).map(|i| format!("k{i:02}")).collect();
    let mut bytes = 0;
    for key in &keys {
        let value = envelope(key);
        bytes += value.len() as u64;
        store.put(Slot::Entry(key), value, LONG).await.expect("put");
    }
    let mut listed = store.list("").await.expect("list completes");
    listed.sort();
    assert_eq!(listed, keys);
    assert_eq!(
        store.usage().await.expect("usage completes"),
        Usage { keys: 60, bytes }
    );
    assert_eq!(store.clear().await.expect("clear completes"), 60);
    assert!(store.list("").await.expect("list").is_empty());
}

#[tokio::test]
async fn a_large_delete_many_is_bounded_per_key_not_as_a_whole() {
    // 200 keys, 16 at a time, each read taking 20 ms: about 260 ms in all, over twice the
    // layer's timeout; each key's own delete takes a fraction of it.
    let store = slow_store(Duration::from_millis(20), Duration::from_millis(100));
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    for key in keys.iter().step_by(2) {
        store
            .put(Slot::Entry(key), envelope(key), LONG)
            .await
            .expect("put");
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let found = store
        .delete_many(&refs, Bytes::from_static(b"vorte-tombstone:x"), LONG)
        .await
        .expect("delete_many completes");
    let written: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
    assert_eq!(found, written);
    for key in &keys {
        assert_eq!(
            store.get(Slot::Entry(key)).await.expect("get").as_deref(),
            Some(&b"vorte-tombstone:x"[..]),
            "{key}"
        );
    }
}

#[tokio::test]
async fn tombstones_are_neither_listed_nor_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStorage::open_file(dir.path().into(), None, "p:", Duration::from_secs(5))
        .expect("open");
    let long = ".".repeat(1000); // a hashed name
    for key in ["a", "b", long.as_str()] {
        store
            .put(Slot::Entry(key), envelope(key), LONG)
            .await
            .expect("put");
    }
    let marker = Bytes::from_static(b"vorte-tombstone:1");
    for key in ["a", "never-written", long.as_str()] {
        store
            .tombstone(key, marker.clone(), LONG)
            .await
            .expect("tombstone");
    }
    // An entry exactly as large as a tombstone is still an entry.
    let same_size = Bytes::from(vec![b'x'; super::tombstone::STORED_LEN as usize]);
    store
        .put(Slot::Entry("same-size"), same_size, LONG)
        .await
        .expect("put");
    let mut listed = store.list("").await.expect("list");
    listed.sort();
    assert_eq!(listed, ["b", "same-size"]);
    assert_eq!(
        store.usage().await.expect("usage"),
        Usage {
            keys: 2,
            bytes: envelope("b").len() as u64 + super::tombstone::STORED_LEN
        }
    );
    assert_eq!(
        store.get(Slot::Entry(&long)).await.expect("get"),
        Some(marker)
    );
}
