//! The namespace generation of each server, which `clear` bumps instead of flushing (see the
//! module doc of `store::memcached`).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_memcached::{Client, MetaProtocol, Status};
use xxhash_rust::xxh3::xxh3_64;

use super::server::Server;
use super::{McError, MemcachedStore};

/// How old a cached generation may get before a call re-reads it: the bound on how long another
/// process's flush can go unseen.
pub(crate) const GEN_REFRESH: Duration = Duration::from_secs(1);

/// The start value of a new generation record: `unix_ms << 16 | 16 random bits`, which grows
/// with time so that a re-created record never repeats an earlier generation.
fn start_generation() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX >> 16) & (u64::MAX >> 16);
    let noise = xxh3_64(
        &[
            now.subsec_nanos().to_le_bytes(),
            std::process::id().to_le_bytes(),
        ]
        .concat(),
    );
    (ms << 16 | (noise & 0xffff)).max(1)
}

fn parse_counter(data: Option<&[u8]>) -> std::result::Result<u64, McError> {
    let text = data.and_then(|d| std::str::from_utf8(d).ok()).unwrap_or("");
    text.trim().parse::<u64>().map_err(|_| {
        McError::Protocol(Status::Error(async_memcached::ErrorKind::Protocol(Some(
            format!("generation record is not an integer: {text:?}"),
        ))))
    })
}

impl MemcachedStore {
    /// The store's clock: nanoseconds since its epoch, plus 1 (0 stands for "never").
    pub(super) fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Records a generation read (or bumped) by a request sent after `at` (from
    /// [`Self::elapsed_ns`]).
    pub(super) fn remember(server: &Server, generation: u64, at: u64) {
        server.generation.store(generation, Ordering::Release);
        server.checked.store(at, Ordering::Release);
    }

    /// The cached generation, if it is younger than [`GEN_REFRESH`] and was read after
    /// `read_after` (0: whenever).
    pub(super) fn is_fresh(&self, server: &Server, read_after: u64) -> Option<u64> {
        // `checked` first: `remember` stores it after the generation, so a `checked` seen here
        // comes with that generation or a later one, never an earlier one.
        let checked = server.checked.load(Ordering::Acquire);
        let generation = server.generation.load(Ordering::Acquire);
        let refresh = u64::try_from(GEN_REFRESH.as_nanos()).unwrap_or(u64::MAX);
        (generation != 0
            && checked > read_after
            && self.elapsed_ns().saturating_sub(checked) < refresh)
            .then_some(generation)
    }

    /// `ma <prefix>gen D<delta> N0 J<start> v`: adds `delta` to the generation record (creating
    /// it, without expiry, with a fresh start value when missing) and returns its value.
    pub(super) async fn bump(
        &self,
        client: &mut Client,
        delta: u64,
    ) -> std::result::Result<u64, McError> {
        let start = format!("J{}", start_generation());
        let value = client
            .meta_increment(
                &self.gen_name,
                false,
                None,
                Some(delta),
                Some(&["v", "N0", &start]),
            )
            .await?;
        parse_counter(value.as_ref().and_then(|v| v.data.as_deref()))
    }

    /// The server's current generation: cached, or re-read when older than [`GEN_REFRESH`] or
    /// read before `read_after`.
    ///
    /// An invalidation passes the time it began as `read_after`, so it acts in a generation read
    /// after it began: one that every flush returned by then has moved past. Were it to act in
    /// an older one, another process's flush up to [`GEN_REFRESH`] earlier would hide it, and
    /// what was written after that flush would outlive it
    /// (`docs/consistency.md#memcached-generations-and-servers`). The calls of one invalidation
    /// share its `read_after`, so it costs one read per server, not one per key.
    pub(super) async fn generation(
        &self,
        server: &Server,
        client: &mut Client,
        read_after: u64,
    ) -> std::result::Result<u64, McError> {
        if let Some(generation) = self.is_fresh(server, read_after) {
            return Ok(generation);
        }
        let _guard = server.gen_lock.lock().await;
        if let Some(generation) = self.is_fresh(server, read_after) {
            return Ok(generation);
        }
        let at = self.elapsed_ns();
        let generation = self.bump(client, 0).await?;
        Self::remember(server, generation, at);
        Ok(generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_generations_grow_with_time() {
        let a = start_generation();
        std::thread::sleep(Duration::from_millis(3));
        let b = start_generation();
        assert!(b > a);
    }
}
