//! Per-name write locks for the `file` backend, held across processes.
//!
//! object_store's local file system has an atomic create (`PutMode::Create`) but no conditional
//! replace (`PutMode::Update`), so a compare-and-set there reads, compares and writes under an
//! exclusive lock, and so does every other write of an entry (`put`, `delete`, `tombstone`, the
//! sweeper's removals): otherwise a write landing between the comparison and the swap would be
//! lost. The locks are advisory `flock`s (through fs4; on Windows, `LockFileEx`) on a fixed set of stripe files in
//! `<dir>/.vorte-locks/`, chosen by a hash of the object's path, so every process that opens the
//! directory takes the same one for the same name. They sit outside every store's root (encoded
//! names never begin with `.`), so `clear` never removes a lock file someone holds; a process that
//! dies holding one loses it with its descriptors.
//!
//! A `flock` belongs to an open file description, so two tasks of one process would both "hold" a
//! stripe through one descriptor: each stripe also has an in-process mutex, taken first.

use std::fs::{File, OpenOptions};

use fs4::{FileExt, TryLockError};
use std::path::PathBuf;
use std::time::Duration;

use object_store::path::Path;
use tokio::sync::{Mutex, MutexGuard};

/// How many stripe files: names that share one only wait for each other.
const STRIPES: usize = 256;

/// The longest pause between two attempts at a stripe another process holds.
const MAX_BACKOFF: Duration = Duration::from_millis(8);

/// The stripe locks of one directory.
#[derive(Debug)]
pub(super) struct FileLocks {
    dir: PathBuf,
    /// Each stripe's file, opened on first use.
    stripes: Box<[Mutex<Option<File>>]>,
}

/// A held stripe: unlocked (and its mutex released) when dropped.
pub(super) struct Held<'a> {
    file: MutexGuard<'a, Option<File>>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.file.as_ref() {
            // Closing would release it too; the descriptor is kept for the next holder.
            // (Called through the trait: std's own `File::unlock` is newer than our MSRV.)
            let _ = FileExt::unlock(file);
        }
    }
}

impl FileLocks {
    /// The locks of the directory `root` (created when missing).
    pub(super) fn new(root: &std::path::Path) -> std::io::Result<Self> {
        let dir = root.join(".vorte-locks");
        std::fs::create_dir_all(&dir)?;
        Ok(FileLocks {
            dir,
            stripes: (0..STRIPES).map(|_| Mutex::new(None)).collect(),
        })
    }

    /// Waits for the stripe of `location`. The caller bounds the wait (the layer's timeout);
    /// dropping the future gives up without holding anything.
    pub(super) async fn lock(&self, location: &Path) -> std::io::Result<Held<'_>> {
        let stripe = xxhash_rust::xxh3::xxh3_64(location.as_ref().as_bytes()) as usize % STRIPES;
        let mut file = self.stripes[stripe].lock().await;
        if file.is_none() {
            let path = self.dir.join(format!("{stripe:03}"));
            let opened = tokio::task::spawn_blocking(move || {
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(path)
            })
            .await
            .map_err(std::io::Error::other)??;
            *file = Some(opened);
        }
        let mut backoff = Duration::from_micros(100);
        loop {
            let attempt = match file.as_ref() {
                Some(f) => FileExt::try_lock(f),
                None => return Err(std::io::Error::other("stripe file not open")),
            };
            match attempt {
                Ok(()) => return Ok(Held { file }),
                Err(TryLockError::WouldBlock) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}
