//! Leases on Redis and Redis Cluster (`docs/leases.md#redis-and-redis-cluster`).
//!
//! A lease is `<key_prefix>l:<key>` holding its token in decimal: apart from entries (`e:`) and
//! tag records (`t:`), inside the prefix, one key per command so that a cluster takes it.
//! Taking it is `SET NX PX`; renewing and releasing are scripts that first compare the token, so
//! a holder whose lease lapsed and was taken by another process can neither extend nor end the
//! new holder's lease.

use std::time::Duration;

use bytes::Bytes;
use fred::prelude::{Expiration, KeysInterface, LuaInterface};
use fred::types::SetOptions;

use super::RedisStore;
use crate::error::Result;

/// Extends `KEYS[1]` to `ARGV[2]` ms while it holds the token `ARGV[1]`; 1 when extended.
const RENEW_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Deletes `KEYS[1]` while it holds the token `ARGV[1]`; 1 when deleted.
const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// A TTL in whole milliseconds, at least 1, as `PX` and `PEXPIRE` take it.
fn millis(ttl: Duration) -> i64 {
    ttl.as_millis().clamp(1, i64::MAX as u128) as i64
}

impl RedisStore {
    fn lease_name(&self, key: &str) -> String {
        format!("{}{key}", self.leases)
    }

    pub(super) async fn acquire_lease(&self, key: &str, token: u64, ttl: Duration) -> Result<bool> {
        let name = self.lease_name(key);
        let (name, px) = (name.as_str(), millis(ttl));
        let set: Option<String> = self
            .mapped("lease acquire", || async move {
                self.client()
                    .set(
                        name,
                        token.to_string(),
                        Some(Expiration::PX(px)),
                        Some(SetOptions::NX),
                        false,
                    )
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    /// Runs a compare-the-token `script` on the lease of `key`; whether it acted.
    pub(super) async fn lease_script(
        &self,
        what: &str,
        script: LeaseScript,
        key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool> {
        let name = self.lease_name(key);
        let args = vec![
            Bytes::from(token.to_string()),
            Bytes::from(millis(ttl).to_string()),
        ];
        let (name, args, script) = (name.as_str(), &args, script.source());
        let acted: i64 = self
            .mapped(what, || async move {
                self.client().eval(script, vec![name], args.clone()).await
            })
            .await?;
        Ok(acted == 1)
    }
}

/// Which compare-the-token script [`RedisStore::lease_script`] runs.
#[derive(Clone, Copy)]
pub(super) enum LeaseScript {
    Renew,
    Release,
}

impl LeaseScript {
    fn source(self) -> &'static str {
        match self {
            LeaseScript::Renew => RENEW_SCRIPT,
            LeaseScript::Release => RELEASE_SCRIPT,
        }
    }
}
